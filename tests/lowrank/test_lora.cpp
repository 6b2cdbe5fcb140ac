#include "test_common.hpp"

#include <wproj/lowrank/lora.hpp>

#include <functional>
#include <random>

using namespace wproj_test;
using wproj::LoraOptions;
using wproj::LoraSolver;
using wproj::LoraSplit;
using wproj::RankRule;

namespace {

/// The optimal rank-k approximation of x by Eigen's BDCSVD in double (the independent oracle).
template <typename T>
Mat<double> bestRankK(const Mat<T>& x, Index k) {
  Eigen::BDCSVD<Mat<double>> svd(x.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  k = std::min<Index>(k, svd.singularValues().size());
  return svd.matrixU().leftCols(k) * svd.singularValues().head(k).asDiagonal() * svd.matrixV().leftCols(k).transpose();
}

template <typename T>
Vec<double> spectrumOf(const Mat<T>& x) {
  Eigen::BDCSVD<Mat<double>> svd(x.template cast<double>());
  return svd.singularValues();
}

}  // namespace

TEMPLATE_TEST_CASE("extractLora equals the truncated SVD of the task vector", "[lora]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 3e-5 : 1e-11;
  // tall, wide, square, rank-deficient, and ranks at or above min(m, n).
  struct Case { Index m, n, r, k; };
  const Case cases[] = {{120, 50, 50, 8}, {50, 120, 50, 8}, {70, 70, 70, 16}, {90, 60, 5, 12}, {40, 30, 30, 30}, {40, 30, 30, 45}};
  for (const auto& c : cases) {
    CAPTURE(c.m, c.n, c.r, c.k);
    const Vec<double> sigma = geometricSpectrum(c.r, 1e3);
    const Mat<T> base = gaussian<T>(c.m, c.n, 3);
    const Mat<T> ft = base + withSpectrum<T>(c.m, c.n, sigma, 17);
    for (double scale : {1.0, 2.0, 0.25}) {
      LoraOptions opt;
      opt.rule = RankRule::fixed(c.k);
      opt.scale = scale;
      opt.solver = LoraSolver::Exact;
      const auto f = wproj::extractLora(ft, base, opt);
      const Mat<T> tau = ft - base;
      const Index expect = std::min({c.k, c.r});
      REQUIRE(f.rank() == expect);
      REQUIRE(f.B.rows() == c.m);
      REQUIRE(f.A.cols() == c.n);
      const Mat<double> oracle = bestRankK(tau, expect);
      const double tauNorm = tau.template cast<double>().norm();
      CHECK((f.delta().template cast<double>() - oracle).norm() <= tol * 10 * tauNorm);
      // Error and energy as reported, against Eckart–Young.
      const Vec<double> s = spectrumOf(tau);
      CHECK(std::abs(std::sqrt(f.errorSq) - tailNorm(s, expect)) <= tol * 10 * tauNorm);
      CHECK(f.relativeError() == Approx(tailNorm(s, expect) / tauNorm).margin(tol * 10));
      CHECK(f.keptEnergy() == Approx(s.head(expect).squaredNorm() / s.squaredNorm()).margin(tol * 10));
      CHECK(f.scale == scale);
    }
  }
}

TEMPLATE_TEST_CASE("extractLora splits the singular values as asked", "[lora]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  const Mat<T> tau = withSpectrum<T>(80, 60, geometricSpectrum(60, 100), 5);
  LoraOptions opt;
  opt.rule = RankRule::fixed(10);
  opt.split = LoraSplit::Balanced;
  const auto bal = wproj::extractLora(tau, opt);
  // Balanced: column j of B and row j of A have the same norm, √σ_j.
  for (Index j = 0; j < 10; ++j) {
    CHECK(double(bal.B.col(j).norm()) == Approx(std::sqrt(double(bal.sigma(j)))).epsilon(tol));
    CHECK(double(bal.A.row(j).norm()) == Approx(std::sqrt(double(bal.sigma(j)))).epsilon(tol));
  }
  opt.split = LoraSplit::IntoB;
  const auto intoB = wproj::extractLora(tau, opt);
  CHECK(orthoError(Mat<T>(intoB.A.transpose())) < tol * 10);
  opt.split = LoraSplit::IntoA;
  const auto intoA = wproj::extractLora(tau, opt);
  CHECK(orthoError(intoA.B) < tol * 10);
  const double n = bal.delta().template cast<double>().norm();
  CHECK((intoB.delta() - bal.delta()).template cast<double>().norm() < tol * n);
  CHECK((intoA.delta() - bal.delta()).template cast<double>().norm() < tol * n);
}

TEMPLATE_TEST_CASE("extractLora rank rules: energy, relative error, threshold, cap", "[lora]", float, double) {
  using T = TestType;
  Vec<double> sigma(40);
  for (Index i = 0; i < 40; ++i) sigma(i) = 1.0 / double(i + 1);
  const Mat<T> tau = withSpectrum<T>(90, 70, sigma, 9);
  const double total = sigma.squaredNorm();
  for (LoraSolver solver : {LoraSolver::Exact, LoraSolver::Randomized}) {
    CAPTURE(int(solver));
    LoraOptions opt;
    opt.solver = solver;
    opt.powerIterations = 4;
    for (double e : {0.5, 0.9, 0.99}) {
      opt.rule = RankRule::energy(e);
      const auto f = wproj::extractLora(tau, opt);
      // Smallest k with Σ_{i<k} σ_i² ≥ e·‖τ‖².
      Index k = 0;
      double acc = 0;
      while (acc < e * total) acc += sigma(k) * sigma(k), ++k;
      CHECK(f.rank() == k);
      CHECK(f.keptEnergy() >= e * (1 - 1e-5));
    }
    // absoluteTolerance: mergekit's --sv-epsilon (keep σ > ε).
    opt.rule = RankRule::absoluteTolerance(0.0999);
    CHECK(wproj::extractLora(tau, opt).rank() == 10);
    opt.rule = RankRule::absoluteTolerance(0.0999).withMaxRank(6);
    CHECK(wproj::extractLora(tau, opt).rank() == 6);
    opt.rule = RankRule::energy(0.999).withMaxRank(5);
    CHECK(wproj::extractLora(tau, opt).rank() == 5);
  }
}

TEMPLATE_TEST_CASE("extractLora: the randomized solver is within 1% of the optimal error", "[lora]", float, double) {
  using T = TestType;
  // Slowly decaying spectrum plus noise, like a fine-tuning delta; 600×400, rank 20.
  Vec<double> sigma(400);
  for (Index i = 0; i < 400; ++i) sigma(i) = 1.0 / std::sqrt(double(i + 1));
  const Mat<T> tau = withSpectrum<T>(600, 400, sigma, 21);
  LoraOptions opt;
  opt.rule = RankRule::fixed(20);
  // The cost model: randomized when 5·columns ≤ s + 10·s³/(m·n) and s = min(m, n) > 256; block
  // Krylov at r = 20: b = 10, q = 3 (b(q+1) ≥ 2r), 40 columns; power iteration: 3·(r + p).
  CHECK(opt.randomizedColumns(20) == 40);
  CHECK(opt.randomizedIsCheaper(600, 400, 20));
  CHECK_FALSE(opt.randomizedIsCheaper(5000, 200, 1));  // small side ≤ 256: exact
  CHECK(opt.randomizedIsCheaper(4096, 11008, 64));
  CHECK_FALSE(opt.randomizedIsCheaper(600, 400, 200));
  LoraOptions power = opt;
  power.blockKrylov = false;
  CHECK(power.randomizedColumns(20) == 90);
  opt.solver = LoraSolver::Randomized;
  const double optimal = tailNorm(sigma, 20);
  power.solver = LoraSolver::Randomized;
  const auto fp = wproj::extractLora(tau, power);
  CHECK(fp.randomized);
  CHECK(std::sqrt(fp.errorSq) <= 1.01 * optimal);
  const auto f = wproj::extractLora(tau, opt);
  CHECK(f.randomized);
  REQUIRE(f.rank() == 20);
  CHECK(std::sqrt(f.errorSq) <= 1.01 * optimal);
  CHECK(std::sqrt(f.errorSq) >= optimal * (1 - 1e-5));
  // The identity ‖τ‖² − Σσ² agrees with the measured error (Rayleigh–Ritz factors).
  CHECK(f.normSq - f.sigma.template cast<double>().squaredNorm() == Approx(f.errorSq).epsilon(1e-3));
  // Deterministic in the seed.
  const auto g = wproj::extractLora(tau, opt);
  CHECK((g.B - f.B).norm() == 0);
  CHECK((g.A - f.A).norm() == 0);
}

TEMPLATE_TEST_CASE("extractLora on row-major maps, zero and non-finite inputs", "[lora]", float, double) {
  using T = TestType;
  const Mat<T> tau = withSpectrum<T>(50, 30, geometricSpectrum(30, 10), 4);
  const RowMajorMat<T> rm = tau;
  Eigen::Map<const RowMajorMat<T>> map(rm.data(), rm.rows(), rm.cols());
  LoraOptions opt;
  opt.rule = RankRule::fixed(5);
  const auto a = wproj::extractLora(tau, opt);
  const auto b = wproj::extractLora(map, opt);
  CHECK((a.delta() - b.delta()).template cast<double>().norm() <= 1e-4 * tau.template cast<double>().norm());

  const Mat<T> zero = Mat<T>::Zero(20, 10);
  const auto z = wproj::extractLora(zero, opt);
  CHECK(z.rank() == 0);
  CHECK(z.B.rows() == 20);
  CHECK(z.A.cols() == 10);
  CHECK(z.relativeError() == 0.0);

  Mat<T> bad = tau;
  bad(3, 4) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_AS(wproj::extractLora(bad, opt), wproj::InvalidArgument);
  opt.scale = 0;
  CHECK_THROWS_WITH(wproj::extractLora(tau, opt), Catch::Contains("scale"));
  opt.scale = 1;
  const Mat<T> other = Mat<T>::Zero(50, 31);
  CHECK_THROWS_WITH(wproj::extractLora(tau, other, opt), Catch::Contains("base") && Catch::Contains("50x31"));
  const Mat<T> empty(0, 4);
  CHECK_THROWS_AS(wproj::extractLora(empty, opt), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("applyLora and removeLora round-trip; extract then apply reproduces W_ft", "[lora]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-5 : 1e-12;
  const Mat<T> base = gaussian<T>(64, 48, 1);
  const Mat<T> ft = base + withSpectrum<T>(64, 48, geometricSpectrum(48, 1e4), 2);
  LoraOptions opt;
  opt.rule = RankRule::fixed(12);
  opt.scale = 0.5;
  const auto f = wproj::extractLora(ft, base, opt);
  Mat<T> w = base;
  wproj::applyLora(w, f.B, f.A, f.scale);
  // ‖W_ft − (W_base + scale·B·A)‖ is the reported error.
  CHECK((ft - w).template cast<double>().norm() == Approx(std::sqrt(f.errorSq)).epsilon(1e-3).margin(tol * 100));
  wproj::removeLora(w, f.B, f.A, f.scale);
  CHECK((w - base).template cast<double>().norm() <= tol * 10 * base.template cast<double>().norm());
  // Embedding layout: W is (in × out) and gets (B·A)ᵀ.
  Mat<T> wt = base.transpose();
  wproj::applyLora(wt, f.B, f.A, f.scale, 1.0, true);
  Mat<T> w2 = base;
  wproj::applyLora(w2, f.B, f.A, f.scale);
  CHECK((wt.transpose() - w2).template cast<double>().norm() <= tol * 10 * w2.template cast<double>().norm());
  // Shape errors name the argument.
  Mat<T> wrong(10, 10);
  CHECK_THROWS_WITH(wproj::applyLora(wrong, f.B, f.A, 1.0), Catch::Contains("'W'"));
  CHECK_THROWS_WITH(wproj::applyLora(w, f.B, Mat<T>(f.A.topRows(3)), 1.0), Catch::Contains("'A'"));
  CHECK_THROWS_WITH(wproj::applyLora(w, f.B, f.A, 1.0, 2.0), Catch::Contains("sign"));
}

namespace {

wproj::LoraBudgetItem item(std::vector<double> s, double tail, std::uint64_t cost, Index minRank = 1) {
  wproj::LoraBudgetItem it;
  it.spectrum.sigma = Eigen::Map<Eigen::VectorXd>(s.data(), Index(s.size()));
  it.spectrum.normSq = it.spectrum.sigma.squaredNorm() + tail;
  it.bytesPerRank = cost;
  it.minRank = minRank;
  return it;
}

/// The optimum by enumerating every rank vector.
double bruteForce(const std::vector<wproj::LoraBudgetItem>& items, std::uint64_t budget) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<Index> r(items.size());
  std::function<void(std::size_t, std::uint64_t, double)> rec = [&](std::size_t t, std::uint64_t used, double err) {
    if (t == items.size()) {
      best = std::min(best, err);
      return;
    }
    const auto& s = items[t].spectrum;
    double kept = 0;
    for (Index k = 0; k <= s.sigma.size(); ++k) {
      if (k > 0) kept += s.sigma(k - 1) * s.sigma(k - 1);
      if (k < std::min(items[t].minRank, s.sigma.size())) continue;
      const std::uint64_t c = used + std::uint64_t(k) * items[t].bytesPerRank;
      if (c > budget) break;
      rec(t + 1, c, err + s.normSq - kept);
    }
  };
  rec(0, 0, 0.0);
  return best;
}

}  // namespace

TEST_CASE("allocateLoraBudget is optimal on small cases (brute force)", "[lora][budget]") {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 60; ++trial) {
    CAPTURE(trial);
    const bool equalCosts = trial % 3 == 0;
    std::vector<wproj::LoraBudgetItem> items;
    const int T = 2 + trial % 3;
    std::uint64_t floor = 0;
    for (int t = 0; t < T; ++t) {
      std::vector<double> s(std::size_t(2 + (trial + t) % 5));
      double v = 1.0 + double(rng() % 100) / 10.0;
      for (auto& x : s) {
        x = v;
        v *= 0.2 + double(rng() % 80) / 100.0;
      }
      const std::uint64_t cost = equalCosts ? 96 : 32 * (1 + rng() % 5);
      items.push_back(item(s, 0.01, cost));
      floor += cost;
    }
    const std::uint64_t budget = floor + rng() % 600;
    const auto exact = wproj::allocateLoraBudget(items, budget);
    CHECK(exact.exact);
    CHECK(exact.bytes <= budget);
    const double opt = bruteForce(items, budget);
    CHECK(exact.errorSq == Approx(opt).epsilon(1e-12));
    for (std::size_t t = 0; t < items.size(); ++t) CHECK(exact.ranks[t] >= 1);
    // The greedy solver: optimal with equal costs, otherwise within its stated bound.
    const auto greedy = wproj::allocateLoraBudget(items, budget, true);
    CHECK_FALSE(greedy.exact);
    CHECK(greedy.bytes <= budget);
    CHECK(greedy.errorSq >= opt * (1 - 1e-12));
    if (equalCosts) CHECK(greedy.errorSq == Approx(opt).epsilon(1e-12));
    CHECK(greedy.errorSq - opt <= greedy.gapBound * (1 + 1e-12) + 1e-12);
  }
}

TEST_CASE("allocateLoraBudget: errors, minimum ranks, zero tensors, exhausted spectra", "[lora][budget]") {
  std::vector<wproj::LoraBudgetItem> items = {item({3, 2, 1}, 0.5, 100), item({5, 1}, 0.0, 50)};
  // Below rank 1 everywhere: 150 bytes needed.
  CHECK_THROWS_WITH(wproj::allocateLoraBudget(items, 149), Catch::Contains("budgetBytes") && Catch::Contains("150"));
  const auto tight = wproj::allocateLoraBudget(items, 150);
  CHECK(tight.ranks == std::vector<Index>{1, 1});
  // Everything fits: every singular value kept, error = the tails.
  const auto all = wproj::allocateLoraBudget(items, 10000);
  CHECK(all.ranks == std::vector<Index>{3, 2});
  CHECK(all.errorSq == Approx(0.5));
  // A zero tensor (no singular values) takes no room; minRank 0 lets a tensor drop out.
  items.push_back(item({}, 0.0, 70));
  items.push_back(item({0.1}, 0.0, 1000, 0));
  const auto z = wproj::allocateLoraBudget(items, 400);
  CHECK(z.ranks[2] == 0);
  CHECK(z.ranks[3] == 0);
  CHECK(z.bytes <= 400);
  items[0].bytesPerRank = 0;
  CHECK_THROWS_WITH(wproj::allocateLoraBudget(items, 1000), Catch::Contains("bytesPerRank"));
  items[0] = item({1, 2}, 0.0, 10);
  CHECK_THROWS_WITH(wproj::allocateLoraBudget(items, 1000), Catch::Contains("descending"));
}

TEMPLATE_TEST_CASE("loraSpectrum feeds the allocator; the chosen ranks reproduce the predicted error", "[lora][budget]",
                   float, double) {
  using T = TestType;
  std::vector<Mat<T>> taus = {withSpectrum<T>(60, 40, geometricSpectrum(40, 1e3), 1),
                              withSpectrum<T>(30, 80, geometricSpectrum(30, 10), 2),
                              withSpectrum<T>(50, 50, geometricSpectrum(50, 1e5), 3)};
  std::vector<wproj::LoraBudgetItem> items;
  for (const auto& t : taus) {
    wproj::LoraBudgetItem it;
    it.spectrum = wproj::loraSpectrum(t, 24);
    it.bytesPerRank = std::uint64_t(t.rows() + t.cols()) * sizeof(T);
    items.push_back(it);
    CHECK(it.spectrum.sigma.size() == 24);
    CHECK(it.spectrum.normSq == Approx(t.template cast<double>().squaredNorm()).epsilon(1e-6));
    // Values only (Gram eigenvalues in double) against BDCSVD: σ_i² within u_d·σ_0²-ish rounding of the input.
    const Vec<double> exact = spectrumOf(t);
    const double tolSq = (std::is_same<T, float>::value ? 1e-6 : 1e-13) * exact(0) * exact(0);
    CHECK((it.spectrum.sigma.array().square() - exact.head(24).array().square()).abs().maxCoeff() <= tolSq);
    // The randomized route on the same tensor: the leading values agree.
    LoraOptions ro;
    ro.solver = LoraSolver::Randomized;
    ro.powerIterations = 6;
    const auto rs = wproj::loraSpectrum(t, 8, ro);
    REQUIRE(rs.sigma.size() == 8);
    CHECK((rs.sigma - exact.head(8)).cwiseAbs().maxCoeff() <= 1e-3 * exact(0));
  }
  const std::uint64_t budget = 30 * 100 * sizeof(T);
  const auto alloc = wproj::allocateLoraBudget(items, budget);
  double measured = 0;
  for (std::size_t i = 0; i < taus.size(); ++i) {
    LoraOptions opt;
    opt.rule = RankRule::fixed(alloc.ranks[i]);
    measured += wproj::extractLora(taus[i], opt).errorSq;
  }
  CHECK(measured == Approx(alloc.errorSq).epsilon(1e-3).margin(1e-6));
}
