#include "test_common.hpp"

#include <wproj/linalg/linear_operator.hpp>
#include <wproj/linalg/randomized_svd.hpp>

#include <vector>

using namespace wproj_test;
using wproj::PowerNormalization;
using wproj::RandomizedSVD;

namespace {

/// σ_i = 1/(i+1): a slowly decaying spectrum.
Vec<double> harmonicSpectrum(Index r) {
  Vec<double> s(r);
  for (Index i = 0; i < r; ++i) s(i) = 1.0 / double(i + 1);
  return s;
}

template <typename T, typename Svd>
double relError(const Mat<T>& a, const Svd& svd) {
  return (a.template cast<double>() - svd.reconstruct().template cast<double>()).norm() / a.template cast<double>().norm();
}

}  // namespace

TEMPLATE_TEST_CASE("RandomizedSVD recovers a fast-decaying spectrum", "[randomized_svd]", float, double) {
  using T = TestType;
  const Index shapes[][2] = {{200, 120}, {120, 200}};
  for (const auto& sh : shapes) {
    const Index m = sh[0], n = sh[1];
    const Vec<double> sigma = geometricSpectrum(std::min(m, n), 1e6);
    const Mat<T> a = withSpectrum<T>(m, n, sigma, 5);
    RandomizedSVD<Mat<T>> svd;
    svd.setRank(10).setSeed(7).compute(a);
    REQUIRE(svd.info() == Eigen::Success);
    REQUIRE(svd.rank() == 10);
    CHECK_FALSE(svd.usedExact());
    const double tol = std::is_same<T, float>::value ? 1e-5 : 1e-10;
    CHECK((svd.singularValues().template cast<double>() - sigma.head(10)).cwiseAbs().maxCoeff() < tol);
    CHECK(orthoError(svd.matrixU()) < 100 * eps<T>() * std::sqrt(double(m)));
    CHECK(orthoError(svd.matrixV()) < 100 * eps<T>() * std::sqrt(double(n)));
    const double opt = tailNorm(sigma, 10) / sigma.norm();
    CHECK(relError(a, svd) <= opt * 1.001 + 50 * eps<T>());
    Eigen::BDCSVD<Mat<T>> ref(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
    CHECK(overlap(svd.matrixU(), ref.matrixU().leftCols(10)) > 1 - 1e-4);
    CHECK(overlap(svd.matrixV(), ref.matrixV().leftCols(10)) > 1 - 1e-4);
    // Same signs as the exact SVD (wproj's convention on both).
    wproj::TruncatedSVD<Mat<T>> exact(a, 10);
    CHECK((svd.matrixU() - exact.matrixU()).norm() < 1e-2);
  }
}

TEMPLATE_TEST_CASE("RandomizedSVD on a slowly decaying spectrum: power iterations and block Krylov", "[randomized_svd]",
                   float, double) {
  using T = TestType;
  const Index m = 240, n = 180, k = 15;
  const Vec<double> sigma = harmonicSpectrum(n);
  const Mat<T> a = withSpectrum<T>(m, n, sigma, 13);
  const double opt = tailNorm(sigma, k) / sigma.norm();

  RandomizedSVD<Mat<T>> plain;
  plain.setRank(k).setPowerIterations(0).setSeed(1).compute(a);
  const double errPlain = relError(a, plain);

  RandomizedSVD<Mat<T>> autoQ;
  autoQ.setRank(k).setSeed(1).compute(a);
  CHECK(autoQ.powerIterationsUsed() == 7);  // k < 0.1·min(m,n)
  const double errAuto = relError(a, autoQ);
  CHECK(errAuto <= opt * 1.01);
  CHECK(errAuto < errPlain);

  RandomizedSVD<Mat<T>> krylov;
  krylov.setRank(k).setBlockKrylov(true).setPowerIterations(3).setSeed(1).compute(a);
  CHECK(relError(a, krylov) <= opt * 1.01);
  CHECK(orthoError(krylov.matrixU()) < 1e3 * eps<T>());
  CHECK(orthoError(krylov.matrixV()) < 1e3 * eps<T>());

  for (PowerNormalization norm : {PowerNormalization::None, PowerNormalization::LU, PowerNormalization::Orthonormalize}) {
    CAPTURE(wproj::toString(norm));
    RandomizedSVD<Mat<T>> svd;
    // Without normalisation the small directions drown in rounding after a few products.
    svd.setRank(k).setPowerIterations(norm == PowerNormalization::None ? 1 : 3).setNormalization(norm).setSeed(2).compute(a);
    CHECK(relError(a, svd) <= opt * (norm == PowerNormalization::None ? 1.1 : 1.02));
    CHECK(orthoError(svd.matrixU()) < 1e3 * eps<T>());
  }

  // The a-posteriori estimate tracks the true error.
  const double est = autoQ.errorEstimate();
  CHECK(est > 0.9 * errAuto);
  CHECK(est < 1.1 * errAuto);
  // Over seeds: each estimate within 15% of the true error, their mean within 5% (the estimate
  // draws only the residual from probes; ‖A‖ follows from Pythagoras).
  double meanRatio = 0;
  const int seeds = 10;
  for (int seed = 0; seed < seeds; ++seed) {
    RandomizedSVD<Mat<T>> svd;
    svd.setRank(k).setPowerIterations(1).setSeed(std::uint64_t(100 + seed)).compute(a);
    const double ratio = svd.errorEstimate() / relError(a, svd);
    CAPTURE(seed, ratio);
    CHECK(ratio > 0.85);
    CHECK(ratio < 1.15);
    meanRatio += ratio / seeds;
  }
  CHECK(std::abs(meanRatio - 1.0) < 0.05);
}

TEMPLATE_TEST_CASE("RandomizedSVD block Krylov with small blocks", "[randomized_svd][krylov]", float, double) {
  using T = TestType;
  const Index m = 300, n = 260, k = 24;
  const Vec<double> sigma = harmonicSpectrum(n);
  const Mat<T> a = withSpectrum<T>(m, n, sigma, 31);
  const double opt = tailNorm(sigma, k) / sigma.norm();
  Eigen::BDCSVD<Mat<T>> ref(a, Eigen::ComputeThinU | Eigen::ComputeThinV);

  // Automatic depth: the smallest q ≥ 2 with b(q+1) ≥ 2k → b = 8: q = 5 (a 48-column space).
  RandomizedSVD<Mat<T>> small;
  small.setRank(k).setBlockKrylov(true).setKrylovBlockSize(8).setSeed(3).compute(a);
  CHECK(small.krylovBlockSize() == 8);
  CHECK(small.powerIterationsUsed() == 5);
  CHECK(small.sketchSize() == 8);
  REQUIRE(small.rank() == k);
  CHECK_FALSE(small.usedExact());
  CHECK(relError(a, small) <= opt * 1.01);
  CHECK(orthoError(small.matrixU()) < 1e3 * eps<T>());
  CHECK(orthoError(small.matrixV()) < 1e3 * eps<T>());
  CHECK(overlap(small.matrixU().leftCols(5), ref.matrixU().leftCols(5)) > 0.999);
  // b = k/2, q = 3: 8 products of 12 columns reach 1.01× optimal, as power iteration (q = 3) does
  // with 8 products of ℓ = k + 10 = 34 columns.
  RandomizedSVD<Mat<T>> kb, power;
  kb.setRank(k).setBlockKrylov(true).setKrylovBlockSize(12).setPowerIterations(3).setSeed(4).compute(a);
  power.setRank(k).setPowerIterations(3).setSeed(4).compute(a);
  CHECK(kb.powerIterationsUsed() == 3);
  CHECK(relError(a, kb) <= opt * 1.01);
  CHECK(relError(a, power) <= opt * 1.01);

  // An explicit q too small for k directions is raised to ⌈k/b⌉ − 1; b = 7: 4 blocks of 7.
  RandomizedSVD<Mat<T>> raised;
  raised.setRank(k).setBlockKrylov(true).setKrylovBlockSize(7).setPowerIterations(1).setSeed(5).compute(a);
  CHECK(raised.powerIterationsUsed() == 3);
  CHECK(raised.rank() == k);
  CHECK(raised.singularValues().allFinite());

  // A space of ⌈k/b⌉ blocks that does not fit in min(m, n) falls back to the exact SVD.
  const Mat<T> smallA = withSpectrum<T>(40, 30, harmonicSpectrum(30), 32);
  RandomizedSVD<Mat<T>> fits;
  fits.setRank(25).setBlockKrylov(true).setKrylovBlockSize(20).compute(smallA);
  CHECK(fits.usedExact());
  CHECK(fits.rank() == 25);

  // Row-major map input gives the same result as the column-major matrix.
  const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm = a;
  const Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> map(rm.data(), m, n);
  RandomizedSVD<Mat<T>> fromMap;
  fromMap.setRank(k).setBlockKrylov(true).setKrylovBlockSize(8).setSeed(3).compute(map);
  CHECK((fromMap.singularValues() - small.singularValues()).cwiseAbs().maxCoeff() <= 1e2 * eps<T>());

  CHECK_THROWS_AS(small.setKrylovBlockSize(0), wproj::InvalidArgument);
  CHECK_THROWS_AS(small.setKrylovBlockSize(-2), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("RandomizedSVD warm start converges to the exact subspace", "[randomized_svd][warm]", float, double) {
  using T = TestType;
  const Index m = 160, n = 220, k = 12;
  Vec<double> sigma = geometricSpectrum(m, 1e3);
  Mat<T> a = withSpectrum<T>(m, n, sigma, 3);
  RandomizedSVD<Mat<T>> svd;
  svd.setRank(k).setSeed(4).compute(a);
  Mat<T> v = svd.matrixV();
  // The matrix drifts slowly (as a gradient between GaLore refreshes); one warm-started
  // subspace iteration per step keeps the basis on the exact top-k subspace.
  for (int step = 0; step < 5; ++step) {
    a += Mat<T>(T(1e-3) * gaussian<T>(m, n, 100 + step));
    svd.setStartingRightBasis(v).setPowerIterations(-1).compute(a);
    CHECK(svd.powerIterationsUsed() == 0);
    wproj::TruncatedSVD<Mat<T>> exact(a, k);
    CHECK(overlap(svd.matrixU(), exact.matrixU()) > 0.99);
    CHECK(overlap(svd.matrixV(), exact.matrixV()) > 0.99);
    v = svd.matrixV();
  }
  // A left warm start (previous U) works on Aᵀ and reaches the same subspace.
  svd.setStartingLeftBasis(svd.matrixU()).compute(a);
  wproj::TruncatedSVD<Mat<T>> exact(a, k);
  CHECK(overlap(svd.matrixU(), exact.matrixU()) > 0.99);
  // A warm start with fewer columns than ℓ is padded; a bad shape is rejected.
  svd.setStartingRightBasis(v.leftCols(3)).setPowerIterations(2).compute(a);
  CHECK(overlap(svd.matrixU(), exact.matrixU()) > 0.99);
  svd.setStartingRightBasis(Mat<T>::Ones(n + 1, 3));
  CHECK_THROWS_AS(svd.compute(a), wproj::InvalidArgument);
  svd.clearStartingBasis();
  CHECK_NOTHROW(svd.compute(a));
}

TEMPLATE_TEST_CASE("warmSubspaceIteration spans the p = 0 warm-started randomized SVD's subspace", "[randomized_svd][warm]",
                   float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-3 : 1e-9;
  for (auto shape : {std::pair<Index, Index>{90, 140}, std::pair<Index, Index>{140, 90}, std::pair<Index, Index>{70, 70}}) {
    const Index m = shape.first, n = shape.second, k = 9;
    CAPTURE(m, n);
    const Mat<T> a0 = withSpectrum<T>(m, n, geometricSpectrum(std::min(m, n), 1e2), 5);
    const Mat<T> a = a0 + Mat<T>(T(1e-2) * gaussian<T>(m, n, 6));  // drifted
    const wproj::TruncatedSVD<Mat<T>> prev(a0, k);
    for (wproj::Side side : {wproj::Side::Left, wproj::Side::Right}) {
      const Mat<T> p0 = side == wproj::Side::Left ? prev.matrixU() : prev.matrixV();
      const Mat<T> p = wproj::warmSubspaceIteration(a, p0, side);
      REQUIRE(p.rows() == p0.rows());
      REQUIRE(p.cols() == k);
      CHECK(wproj::orthogonalityError(p) < 50 * eps<T>() * std::sqrt(double(k)));
      RandomizedSVD<Mat<T>> rsvd;
      rsvd.setRank(k).setOversampling(0).setErrorProbes(0);
      if (side == wproj::Side::Left)
        rsvd.setStartingLeftBasis(p0);
      else
        rsvd.setStartingRightBasis(p0);
      rsvd.compute(a);
      const Mat<T> ref = side == wproj::Side::Left ? rsvd.matrixU() : rsvd.matrixV();
      CHECK(overlap(p, ref) > 1 - tol);  // the same subspace
      // Row-major maps of G give the same basis.
      RowMajorMat<T> rm = a;
      Eigen::Map<const RowMajorMat<T>> map(rm.data(), m, n);
      CHECK(overlap(wproj::warmSubspaceIteration(map, p0, side), p) > 1 - tol);
    }
  }
  const Mat<T> g = gaussian<T>(20, 30, 1);
  CHECK_THROWS_AS(wproj::warmSubspaceIteration(g, gaussian<T>(21, 3, 2), wproj::Side::Left), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::warmSubspaceIteration(g, gaussian<T>(30, 21, 2), wproj::Side::Right), wproj::InvalidArgument);
  Mat<T> bad = g;
  bad(3, 4) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_AS(wproj::warmSubspaceIteration(bad, gaussian<T>(20, 3, 2), wproj::Side::Left), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("The squared-sketch orthonormalisation of warmSubspaceIteration", "[randomized_svd][warm]", float,
                   double) {
  using T = TestType;
  const Index m = 400, k = 24;
  // κ(Z) from 1 to 10⁵: far beyond single-precision CholeskyQR2 (κ ≲ 10²) at the top.
  for (double kappa : {1.0, 1e2, 1e4, 1e5}) {
    CAPTURE(kappa);
    const Mat<T> z = withSpectrum<T>(m, k, geometricSpectrum(k, kappa), 40);
    Mat<T> q = z;
    const bool viaDoubleGram = wproj::detail::orthonormalizeSquaredSketch(q);
    CHECK(viaDoubleGram == std::is_same<T, float>::value);  // float: no fallback up to κ = 10⁵
    REQUIRE(q.allFinite());
    CHECK(wproj::orthogonalityError(q) < 50 * eps<T>() * std::sqrt(double(k)));
    // The same Q as Householder with diag(R) ≥ 0 (unique for full rank), up to ≈ u·κ.
    Mat<T> h = z;
    wproj::orthonormalizeInPlace(h, wproj::OrthoMethod::Householder);
    CHECK((q - h).norm() < 1e2 * eps<T>() * std::max(1.0, kappa) * std::sqrt(double(k)));
  }
  // Rank-deficient and zero blocks fall back and still come back orthonormal.
  Mat<T> deficient = withSpectrum<T>(m, k, geometricSpectrum(k, 10.0), 41);
  deficient.col(5).setZero();
  deficient.col(9) = deficient.col(2);
  CHECK_FALSE(wproj::detail::orthonormalizeSquaredSketch(deficient));
  CHECK(wproj::orthogonalityError(deficient) < 50 * eps<T>() * std::sqrt(double(k)));
  Mat<T> zero = Mat<T>::Zero(m, k);
  CHECK_FALSE(wproj::detail::orthonormalizeSquaredSketch(zero));
  CHECK(wproj::orthogonalityError(zero) < 50 * eps<T>() * std::sqrt(double(k)));
  // A wide-spread gradient: warmSubspaceIteration against the explicit basis of G Gᵀ P0.
  const Mat<T> g = withSpectrum<T>(300, 500, geometricSpectrum(300, 1e3), 42);
  const Mat<T> p0 = wproj::orthonormalized(gaussian<T>(300, 20, 43));
  const Mat<T> p = wproj::warmSubspaceIteration(g, p0, wproj::Side::Left);
  Mat<T> ref = g * (g.transpose() * p0);
  wproj::orthonormalizeInPlace(ref, wproj::OrthoMethod::Householder);
  CHECK(wproj::orthogonalityError(p) < 50 * eps<T>() * std::sqrt(20.0));
  CHECK(overlap(p, ref) > 1 - (std::is_same<T, float>::value ? 1e-4 : 1e-12));
}

TEMPLATE_TEST_CASE("RandomizedSVD fixed-accuracy mode meets its tolerance", "[randomized_svd][tolerance]", float, double) {
  using T = TestType;
  const Index m = 150, n = 130;
  struct Case {
    const char* name;
    Vec<double> sigma;
    double tol;
  };
  Vec<double> flat = Vec<double>::Ones(n);
  std::vector<Case> cases = {{"fast", geometricSpectrum(n, 1e8), 1e-3},
                             {"slow", harmonicSpectrum(n), 0.2},
                             {"flat", flat, 0.3}};
  if (std::is_same<T, double>::value) cases.push_back({"fast, below sqrt(u)", geometricSpectrum(n, 1e14), 1e-10});
  else cases.push_back({"fast, below sqrt(u)", geometricSpectrum(n, 1e6), 5e-5});
  for (const auto& c : cases) {
    CAPTURE(c.name, c.tol);
    const Mat<T> a = withSpectrum<T>(m, n, c.sigma, 17);
    RandomizedSVD<Mat<T>> svd;
    svd.setTolerance(c.tol).setSeed(3).compute(a);
    REQUIRE(svd.info() == Eigen::Success);
    const double err = relError(a, svd);
    CHECK(err <= c.tol);
    CHECK(svd.errorEstimate() <= c.tol);
    // The reported figure bounds the truth, and the rank is not much above the optimal one.
    CHECK(err <= svd.errorEstimate() + 1e3 * eps<T>());
    Index kopt = 0;
    while (tailNorm(c.sigma, kopt) > c.tol * c.sigma.norm()) ++kopt;
    CHECK(svd.rank() >= kopt);
    CHECK(svd.rank() <= kopt + 64);
    CHECK(orthoError(svd.matrixU()) < 1e3 * eps<T>());
  }
  // A cap below the needed rank: rank-cap result and NoConvergence.
  const Mat<T> a = withSpectrum<T>(m, n, harmonicSpectrum(n), 17);
  RandomizedSVD<Mat<T>> capped;
  capped.setTolerance(0.01).setRank(5).compute(a);
  CHECK(capped.info() == Eigen::NoConvergence);
  CHECK(capped.rank() == 5);
  CHECK(capped.errorEstimate() > 0.01);
}

TEMPLATE_TEST_CASE("RandomizedSVD fixed-accuracy mode: Success means the tolerance is met, over 200 seeds",
                   "[randomized_svd][tolerance]", float, double) {
  using T = TestType;
  const Index m = 150, n = 130;
  struct Case {
    const char* name;
    int kind;  // 0: geometric from 1 to 1/p; 1: σ_i = (i + 1)^−p
    double p, tol;
  };
  // Both stopping tests: ‖A‖² − ‖QᵀA‖² (tol² ≥ 1000·u) and the probe bound (below).
  const std::vector<Case> cases =
      std::is_same<T, float>::value
          ? std::vector<Case>{{"geometric 1e6", 0, 1e6, 5e-5}, {"power 2", 1, 2, 1e-2}, {"power 3", 1, 3, 1e-3}}
          : std::vector<Case>{{"geometric 1e14", 0, 1e14, 1e-10}, {"power 2", 1, 2, 1e-2}, {"power 4", 1, 4, 1e-7}};
  for (const auto& c : cases) {
    CAPTURE(c.name, c.tol);
    Vec<double> sigma(n);
    for (Index i = 0; i < n; ++i)
      sigma(i) = c.kind == 0 ? std::pow(c.p, -double(i) / double(n - 1)) : std::pow(double(i + 1), -c.p);
    int missed = 0, successes = 0;
    for (int seed = 0; seed < 200; ++seed) {
      const Mat<T> a = withSpectrum<T>(m, n, sigma, 1000 + std::uint64_t(seed));
      RandomizedSVD<Mat<T>> svd;
      svd.setTolerance(c.tol).setSeed(std::uint64_t(seed)).compute(a);
      if (svd.info() != Eigen::Success) continue;
      ++successes;
      const double err = relError(a, svd);
      if (err > c.tol) ++missed;
      if (err > svd.errorEstimate() + 1e3 * eps<T>()) ++missed;  // the reported bound holds too
    }
    CHECK(successes == 200);
    CHECK(missed == 0);
  }
}

TEST_CASE("RandomizedSVD probe bound factor: (τe^{1−τ})^{r/2} = δ, and rank-one residuals miss it at most δ of the time",
          "[randomized_svd][tolerance]") {
  for (const Index r : {1, 4, 10, 64}) {
    for (const double delta : {1e-10, 1e-3, 0.05, 0.5}) {
      CAPTURE(r, delta);
      const double tau = RandomizedSVD<Eigen::MatrixXd>::probeBoundFactor(r, delta);
      REQUIRE(tau > 0);
      REQUIRE(tau < 1);
      const double logFail = 0.5 * double(r) * (std::log(tau) + 1.0 - tau);
      // At or just below the root (conservative): (τe^{1−τ})^{r/2} ≤ δ, up to the rounding of this check.
      CHECK(logFail <= std::log(delta) + 1e-12 * std::abs(std::log(delta)));
      CHECK(logFail >= std::log(delta) - 1e-9 * std::abs(std::log(delta)));
    }
  }
  // Monte Carlo on the worst case, E of rank one: Σ_i ‖Eω_i‖² = ‖E‖²_F·χ²_r.
  const Index draws = 40000;
  for (const Index r : {1, 4, 10}) {
    const double delta = 0.05;
    const double tau = RandomizedSVD<Eigen::MatrixXd>::probeBoundFactor(r, delta);
    const Eigen::MatrixXd g = wproj::gaussianMatrix<Eigen::MatrixXd>(r, draws, 77 + std::uint64_t(r));
    const Eigen::Index below = (g.colwise().squaredNorm().array() < tau * double(r)).count();
    CAPTURE(r, tau, below);
    CHECK(double(below) / double(draws) <= delta);
    CHECK(below > 0);  // not vacuous: the bound is within a small factor of the true tail
  }
  CHECK_THROWS_AS(RandomizedSVD<Eigen::MatrixXd>().setFailureProbability(0.0), wproj::InvalidArgument);
  CHECK_THROWS_AS(RandomizedSVD<Eigen::MatrixXd>().setFailureProbability(1.0), wproj::InvalidArgument);
  CHECK_THROWS_AS(RandomizedSVD<Eigen::MatrixXd>().setCertificateProbes(0), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("RandomizedSVD on matrix-free operators", "[randomized_svd][operator]", float, double) {
  using T = TestType;
  const Index m = 120, n = 90;
  const Mat<T> a = withSpectrum<T>(m, n, geometricSpectrum(n, 1e4), 31);
  const Mat<T> b = withSpectrum<T>(m, n, geometricSpectrum(n, 1e2), 32);
  wproj::SumOperator<Mat<T>> sum;
  sum.add(a).add(b, T(0.5));
  const Mat<T> dense = a + T(0.5) * b;
  RandomizedSVD<Mat<T>> x, y;
  x.setRank(8).setSeed(9).computeOperator(sum);
  y.setRank(8).setSeed(9).compute(dense);
  CHECK((x.singularValues() - y.singularValues()).norm() < 1e-3 * y.singularValues()(0));
  CHECK(overlap(x.matrixU(), y.matrixU()) > 1 - 1e-4);
  CHECK((sum.toDense() - dense).norm() < 1e-5 * dense.norm());
  // A dense operator over a row-major map gives the same bits as compute() on that map.
  RowMajorMat<T> rm = dense;
  Eigen::Map<const RowMajorMat<T>> map(rm.data(), m, n);
  RandomizedSVD<Mat<T>> z, w;
  z.setRank(8).setSeed(9).computeOperator(wproj::makeOperator(map));
  w.setRank(8).setSeed(9).compute(map);
  CHECK((z.singularValues() - w.singularValues()).norm() == 0);
  CHECK((z.matrixU() - y.matrixU()).norm() < 1e-2);
  // Fixed-accuracy mode on an operator (‖A‖_F estimated from probes).
  RandomizedSVD<Mat<T>> t;
  t.setTolerance(1e-2).computeOperator(sum);
  CHECK(relError(dense, t) <= 1e-2);
  // Rank >= min(m,n) falls back to the exact SVD.
  t.clearTolerance().setRank(n).computeOperator(sum);
  CHECK(t.usedExact());
  CHECK(relError(dense, t) < 1e3 * eps<T>());
}

TEMPLATE_TEST_CASE("RandomizedSVD edge cases: exact fallback, zero matrix, reproducibility", "[randomized_svd]", float, double) {
  using T = TestType;
  const Mat<T> a = gaussian<T>(40, 25, 2);
  RandomizedSVD<Mat<T>> svd;
  // k + p ≥ min(m,n): exact.
  svd.setRank(20).compute(a);
  CHECK(svd.usedExact());
  CHECK(svd.rank() == 20);
  wproj::TruncatedSVD<Mat<T>> exact(a, 20);
  CHECK((svd.singularValues() - exact.singularValues()).norm() < 1e2 * eps<T>() * exact.singularValues()(0));
  svd.setRank(100).compute(a);
  CHECK(svd.rank() == 25);
  CHECK(svd.errorEstimate() < 1e3 * eps<T>());

  // Zero matrix: finite orthonormal factors, zero values, estimate 0.
  const Mat<T> zero = Mat<T>::Zero(100, 80);
  svd.setRank(5).compute(zero);
  CHECK(svd.rank() == 5);
  CHECK(svd.singularValues().isZero());
  CHECK(svd.matrixU().allFinite());
  CHECK(svd.matrixV().allFinite());
  CHECK(orthoError(svd.matrixU()) < 1e3 * eps<T>());
  CHECK(orthoError(svd.matrixV()) < 1e3 * eps<T>());
  CHECK(svd.errorEstimate() == 0);
  svd.setTolerance(0.1).compute(zero);
  CHECK(svd.rank() == 0);
  CHECK(svd.reconstruct().isZero());
  svd.clearTolerance();

  // Rank-deficient input, rank above its rank.
  const Mat<T> low = withSpectrum<T>(100, 80, geometricSpectrum(3, 10), 4);
  svd.setRank(6).compute(low);
  CHECK(orthoError(svd.matrixV()) < 1e3 * eps<T>());
  CHECK(relError(low, svd) < 1e3 * eps<T>());

  // Same seed → identical bits; another seed → different bits.
  const Mat<T> big = withSpectrum<T>(150, 110, harmonicSpectrum(110), 8);
  RandomizedSVD<Mat<T>> p, q, r;
  p.setRank(6).setSeed(42).compute(big);
  q.setRank(6).setSeed(42).compute(big);
  r.setRank(6).setSeed(43).compute(big);
  CHECK((p.matrixU().array() == q.matrixU().array()).all());
  CHECK((p.singularValues().array() == q.singularValues().array()).all());
  CHECK(p.errorEstimate() == q.errorEstimate());
  CHECK((p.matrixU().array() != r.matrixU().array()).any());
}

TEMPLATE_TEST_CASE("RandomizedSVD reuses its workspace: repeated calls match fresh objects bit for bit",
                   "[randomized_svd][workspace]", float, double) {
  using T = TestType;
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Mat<T> tall = withSpectrum<T>(300, 120, harmonicSpectrum(120), 11);
  const Mat<T> wide = withSpectrum<T>(90, 260, harmonicSpectrum(90), 12);
  const RowMat wideRows = wide;
  const Eigen::Map<const RowMat> wideMap(wideRows.data(), wideRows.rows(), wideRows.cols());

  auto configure = [](RandomizedSVD<Mat<T>>& svd, bool krylov) -> RandomizedSVD<Mat<T>>& {
    svd.setRank(12).setOversampling(6).setPowerIterations(2).setSeed(5).setBlockKrylov(krylov);
    if (krylov) svd.setKrylovBlockSize(5);
    else svd.setKrylovBlockSize(-1);
    return svd;
  };
  auto same = [](const RandomizedSVD<Mat<T>>& x, const RandomizedSVD<Mat<T>>& y) {
    return x.matrixU().rows() == y.matrixU().rows() && x.matrixV().rows() == y.matrixV().rows() &&
           (x.matrixU().array() == y.matrixU().array()).all() && (x.matrixV().array() == y.matrixV().array()).all() &&
           (x.singularValues().array() == y.singularValues().array()).all() && x.errorEstimate() == y.errorEstimate();
  };

  RandomizedSVD<Mat<T>> reused;
  CHECK(reused.workspaceBytes() == 0);
  for (int round = 0; round < 2; ++round) {
    for (bool krylov : {false, true}) {
      // Tall, then wide (the transposed orientation) through a row-major Map, then tall again:
      // each shape change resizes the kept matrices, each repeat reuses them.
      for (int which = 0; which < 3; ++which) {
        RandomizedSVD<Mat<T>> fresh;
        if (which == 1) {
          configure(reused, krylov).compute(wideMap);
          configure(fresh, krylov).compute(wide);
        } else {
          configure(reused, krylov).compute(tall);
          configure(fresh, krylov).compute(tall);
        }
        CHECK(same(reused, fresh));
        CHECK(reused.workspaceBytes() > 0);
      }
    }
  }
  // The results are a real rank-12 SVD of the input, not merely reproducible.
  const double opt = std::sqrt(harmonicSpectrum(120).tail(120 - 12).squaredNorm() / harmonicSpectrum(120).squaredNorm());
  CHECK(relError(tall, reused) < 1.2 * opt);
  CHECK(orthoError(reused.matrixU()) < 1e2 * eps<T>());
  CHECK(orthoError(reused.matrixV()) < 1e2 * eps<T>());

  // The kept matrices are about (m + n)·ℓ·(q + 2) scalars; releasing them keeps the results.
  const Mat<T> u = reused.matrixU();
  reused.releaseWorkspace();
  CHECK(reused.workspaceBytes() == 0);
  CHECK((reused.matrixU().array() == u.array()).all());
  RandomizedSVD<Mat<T>> fresh;
  configure(reused, true).compute(tall);
  configure(fresh, true).compute(tall);
  CHECK(same(reused, fresh));
}

TEST_CASE("RandomizedSVD rejects invalid arguments", "[randomized_svd][errors]") {
  using wproj::InvalidArgument;
  RandomizedSVD<Eigen::MatrixXd> svd;
  CHECK_THROWS_AS(svd.setRank(0), InvalidArgument);
  CHECK_THROWS_AS(svd.setOversampling(-1), InvalidArgument);
  CHECK_THROWS_AS(svd.setPowerIterations(-2), InvalidArgument);
  CHECK_THROWS_AS(svd.setTolerance(0.0), InvalidArgument);
  CHECK_THROWS_AS(svd.setTolerance(1.0), InvalidArgument);
  CHECK_THROWS_AS(svd.setTolerance(std::nan("")), InvalidArgument);
  CHECK_THROWS_AS(svd.setBlockSize(0), InvalidArgument);
  CHECK_THROWS_AS(svd.setErrorProbes(-1), InvalidArgument);
  Eigen::MatrixXd bad = Eigen::MatrixXd::Ones(5, 2);
  bad(1, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(svd.setStartingRightBasis(bad), InvalidArgument);
  CHECK_THROWS_AS(svd.setStartingRightBasis(Eigen::MatrixXd(0, 0)), InvalidArgument);
  // Rank not set.
  Eigen::MatrixXd a = wproj::gaussianMatrix<Eigen::MatrixXd>(60, 50, 1);
  CHECK_THROWS_AS(svd.compute(a), InvalidArgument);
  svd.setRank(3);
  CHECK_THROWS_AS(svd.compute(Eigen::MatrixXd(0, 4)), InvalidArgument);
  a(7, 3) = std::numeric_limits<double>::infinity();
  try {
    svd.compute(a);
    FAIL("expected an exception");
  } catch (const InvalidArgument& e) {
    CHECK(std::string(e.what()).find("(7, 3)") != std::string::npos);
  }
  a(7, 3) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(svd.compute(a), InvalidArgument);
}
