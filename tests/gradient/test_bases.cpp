// Basis policies against their definitions: exact SVD, randomized (warm-started), online PCA,
// seeded Gaussian, GRASS row selection (top-r, unbiased sampling), INT4 quantisation, DCT.
#include "test_common.hpp"

#include <wproj/gradient.hpp>

#include <algorithm>
#include <numeric>

using namespace wproj;
using namespace wproj_test;

namespace {

template <typename Basis, typename S>
Mat<S> refreshed(Basis& b, const Mat<S>& g, Side side, Index r, std::uint64_t k = 0, Mat<S>* trans = nullptr) {
  const RefreshResult res = b.refresh(g, side, r, k, trans);
  REQUIRE(res.ok);
  Mat<S> p;
  b.denseBasis(p);
  return p;
}

}  // namespace

TEMPLATE_TEST_CASE("SVDBasis: P spans the leading singular vectors of G", "[gradient][bases]", float, double) {
  using S = TestType;
  const Mat<S> g = withSpectrum<S>(30, 18, geometricSpectrum(18, 1e3), 11);
  const Eigen::BDCSVD<Mat<double>> ref(g.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  for (Index r : {Index(1), Index(5), Index(18)}) {
    SVDBasis<S> b;
    const Mat<S> pl = refreshed(b, g, Side::Left, r);
    CHECK(pl.rows() == 30);
    CHECK(orthoError(pl) < 1e3 * eps<S>());
    CHECK(overlap(pl, ref.matrixU().leftCols(r)) == Approx(1.0).margin(1e3 * eps<S>() * 30));
    SVDBasis<S> c;
    const Mat<S> pr = refreshed(c, g, Side::Right, r);
    CHECK(pr.rows() == 18);
    CHECK(overlap(pr, ref.matrixV().leftCols(r)) == Approx(1.0).margin(1e3 * eps<S>() * 30));
  }
  // A non-finite gradient is rejected and the previous basis kept.
  SVDBasis<S> b;
  const Mat<S> p0 = refreshed(b, g, Side::Left, 3);
  Mat<S> bad = g;
  bad(2, 2) = std::numeric_limits<S>::quiet_NaN();
  CHECK_FALSE(b.refresh(bad, Side::Left, 3, 1, nullptr).ok);
  CHECK(b.matrixP() == p0);
}

TEMPLATE_TEST_CASE("RandomizedBasis: cold and warm-started refreshes find the dominant subspace", "[gradient][bases]", float, double) {
  using S = TestType;
  Vec<double> sigma = Vec<double>::Constant(40, 1e-3);
  sigma.head(6) << 10, 8, 6, 5, 4, 3;
  const Mat<S> g = withSpectrum<S>(60, 40, sigma, 21);
  const Eigen::BDCSVD<Mat<double>> ref(g.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  for (Side side : {Side::Left, Side::Right}) {
    RandomizedBasis<S> b;
    b.setSeed(3);
    const Mat<S> p = refreshed(b, g, side, 6);
    const Mat<double> truth = side == Side::Left ? Mat<double>(ref.matrixU().leftCols(6)) : Mat<double>(ref.matrixV().leftCols(6));
    CHECK(overlap(p, truth) > 0.9999);
    // Warm start from the previous basis after a small drift: still accurate, transition ≈ orthogonal.
    const Mat<S> g2 = g + S(1e-2) * gaussian<S>(60, 40, 5);
    Mat<S> trans;
    const Mat<S> p2 = refreshed(b, g2, side, 6, 1, &trans);
    const Eigen::BDCSVD<Mat<double>> ref2(g2.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Mat<double> truth2 = side == Side::Left ? Mat<double>(ref2.matrixU().leftCols(6)) : Mat<double>(ref2.matrixV().leftCols(6));
    CHECK(overlap(p2, truth2) > 0.999);
    CHECK((trans.template cast<double>() - (p.transpose() * p2).template cast<double>()).norm() < 1e-4);
  }
}

TEMPLATE_TEST_CASE("RandomizedBasis: warm refreshes by one subspace iteration", "[gradient][bases]",
                   float, double) {
  using S = TestType;
  Vec<double> sigma = Vec<double>::Constant(40, 1e-3);
  sigma.head(6) << 10, 8, 6, 5, 4, 3;
  const Mat<S> g = withSpectrum<S>(60, 40, sigma, 21);
  const Mat<S> g2 = g + S(1e-2) * gaussian<S>(60, 40, 5);
  const Eigen::BDCSVD<Mat<double>> ref2(g2.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  for (Side side : {Side::Left, Side::Right}) {
    for (Index p0 : {Index(0), Index(8)}) {  // the oversampling of the cold refresh does not matter
      CAPTURE(p0);
      RandomizedBasis<S> b;
      b.setSeed(3).setOversampling(p0);
      const Mat<S> p = refreshed(b, g, side, 6);  // cold: a randomized SVD
      Mat<S> trans;
      const Mat<S> p2 = refreshed(b, g2, side, 6, 1, &trans);  // warm: span(G Gᵀ P) or span(Gᵀ G P)
      const Mat<S> expect = wproj::warmSubspaceIteration(g2, p, side);
      CHECK((p2 - expect).norm() == 0);  // exactly the subspace iteration
      const Mat<double> truth2 = side == Side::Left ? Mat<double>(ref2.matrixU().leftCols(6)) : Mat<double>(ref2.matrixV().leftCols(6));
      CHECK(overlap(p2, truth2) > 0.999);
      CHECK((trans.template cast<double>() - (p.transpose() * p2).template cast<double>()).norm() < 1e-4);
      // A zero or non-finite gradient is a failed refresh: the previous basis stays.
      const Mat<S> zero = Mat<S>::Zero(60, 40);
      CHECK_FALSE(b.refresh(zero, side, 6, 2, nullptr).ok);
      CHECK(b.matrixP() == p2);
      for (S badValue : {std::numeric_limits<S>::quiet_NaN(), std::numeric_limits<S>::infinity()}) {
        Mat<S> bad = g2;
        bad(7, 3) = badValue;
        CHECK_FALSE(b.refresh(bad, side, 6, 3, nullptr).ok);
        CHECK(b.matrixP() == p2);
      }
    }
    // With power iterations the warm refresh is the warm-started RandomizedSVD (singular vectors).
    RandomizedBasis<S> q1;
    q1.setSeed(3).setPowerIterations(1);
    const Mat<S> c = refreshed(q1, g, side, 6);
    const Mat<S> w = refreshed(q1, g2, side, 6, 1);
    wproj::RandomizedSVD<Mat<S>> rsvd;
    rsvd.setRank(6).setOversampling(8).setPowerIterations(1).setSeed(3 + 1);
    if (side == Side::Left)
      rsvd.setStartingLeftBasis(c);
    else
      rsvd.setStartingRightBasis(c);
    rsvd.compute(g2);
    CHECK((w - (side == Side::Left ? rsvd.matrixU() : rsvd.matrixV())).norm() == 0);
  }
}

TEMPLATE_TEST_CASE("GaussianBasis: N(0, 1/r) entries regenerated from (seed, refresh index)", "[gradient][bases]", float, double) {
  using S = TestType;
  const Mat<S> g = gaussian<S>(200, 150, 1);
  GaussianBasis<S> a, b, c;
  a.setSeed(42);
  b.setSeed(42);
  c.setSeed(43);
  const Mat<S> pa = refreshed(a, g, Side::Left, 16, 5), pb = refreshed(b, g, Side::Left, 16, 5);
  const Mat<S> pc = refreshed(c, g, Side::Left, 16, 5), pd = refreshed(b, g, Side::Left, 16, 6);
  CHECK(pa == pb);
  CHECK(pa != pc);
  CHECK(pd != pa);
  CHECK(pa.rows() == 200);
  CHECK(pa.cols() == 16);
  // Second moment of the entries: 1/r within a few standard errors (3200 samples).
  const double ms = pa.template cast<double>().squaredNorm() / double(pa.size());
  CHECK(std::abs(ms * 16 - 1.0) < 0.1);
  CHECK(std::abs(pa.template cast<double>().mean()) < 4.0 / std::sqrt(16.0 * double(pa.size())));
  CHECK(a.stateBytes() == 16);
}

TEMPLATE_TEST_CASE("RowSelectionBasis: top-r rows by norm, gather and scatter-add", "[gradient][bases]", float, double) {
  using S = TestType;
  Mat<S> g = gaussian<S>(12, 9, 2);
  const std::vector<Index> big{2, 5, 7, 10};
  for (Index i : big) g.row(i) *= S(10);
  RowSelectionBasis<S> b;
  REQUIRE(b.refresh(g, Side::Left, 4, 0, nullptr).ok);
  CHECK(b.indices() == big);
  Mat<S> low(4, 9);
  b.project(g, Side::Left, low);
  for (Index j = 0; j < 4; ++j) CHECK(low.row(j) == g.row(big[std::size_t(j)]));
  Mat<S> w = Mat<S>::Zero(12, 9);
  b.addBack(low, Side::Left, S(2), w);
  for (Index i = 0; i < 12; ++i) {
    const bool sel = std::find(big.begin(), big.end(), i) != big.end();
    CHECK((sel ? Mat<S>(w.row(i) - S(2) * g.row(i)) : Mat<S>(w.row(i))).norm() == S(0));
  }
  // Right side selects columns.
  RowSelectionBasis<S> c;
  Mat<S> gt = g.transpose();
  REQUIRE(c.refresh(gt, Side::Right, 4, 0, nullptr).ok);
  CHECK(c.indices() == big);
  CHECK(c.stateBytes() == 4 * (sizeof(std::int32_t) + sizeof(S)));
}

TEST_CASE("RowSelectionBasis: norm-proportional and uniform sampling are unbiased", "[gradient][bases]") {
  const Index m = 8, n = 5, r = 3, trials = 6000;
  Mat<double> g = gaussian<double>(m, n, 3);
  g.row(1) *= 4;
  g.row(6) *= 0.2;
  for (auto mode : {RowSelection::NormSampling, RowSelection::Uniform}) {
    RowSelectionBasis<double> b;
    b.setSelection(mode).setSeed(7);
    Mat<double> mean = Mat<double>::Zero(m, n), pptMean = Mat<double>::Zero(m, m);
    Mat<double> low(r, n), p;
    for (Index t = 0; t < trials; ++t) {
      REQUIRE(b.refresh(g, Side::Left, r, std::uint64_t(t), nullptr).ok);
      b.project(g, Side::Left, low);
      b.addBack(low, Side::Left, 1.0, mean);
      b.denseBasis(p);
      pptMean += p * p.transpose();
    }
    mean /= double(trials);
    pptMean /= double(trials);
    INFO("mode " << int(mode));
    // E[P Pᵀ G] = G: the sample mean converges like 1/√trials (bound ≈ 5 standard errors).
    CHECK((mean - g).norm() / g.norm() < 0.06);
    // E[P Pᵀ] = I: diag_i = Count_i/(r q_i) with Count_i ~ Bin(r, q_i), standard error
    // sqrt((1 − q_i)/(r q_i trials)); allow 5 standard errors per row.
    for (Index i = 0; i < m; ++i) {
      const double q = mode == RowSelection::Uniform ? 1.0 / double(m) : g.row(i).squaredNorm() / g.squaredNorm();
      const double se = std::sqrt((1 - q) / (double(r) * q * double(trials)));
      CHECK(std::abs(pptMean(i, i) - 1.0) <= 5 * se);
    }
    // The same estimator with ρ = 1 (no correction) is biased: the check above can fail.
    if (mode == RowSelection::NormSampling) {
      Mat<double> biased = Mat<double>::Zero(m, n);
      for (Index t = 0; t < 500; ++t) {
        REQUIRE(b.refresh(g, Side::Left, r, std::uint64_t(t), nullptr).ok);
        for (Index j = 0; j < r; ++j) biased.row(b.indices()[std::size_t(j)]) += g.row(b.indices()[std::size_t(j)]);
      }
      CHECK((biased / 500.0 - g).norm() / g.norm() > 0.2);
    }
  }
}

TEST_CASE("Int4Matrix: Q-GaLore quantiser, known answer and round-trip bound", "[gradient][bases]") {
  Mat<float> w(4, 1);
  w << -1.0f, 0.0f, 0.5f, 2.0f;
  Int4Matrix<float> q;
  q.quantize(w, 4);
  CHECK(q.scales[0] == Approx(0.2f));
  CHECK(int(q.zeros[0]) == 5);
  CHECK(int(q.code(0)) == 0);
  CHECK(int(q.code(1)) == 5);
  CHECK(int(q.code(2)) == 7);  // round(2.5) = 2 (ties to even, as torch.round) + 5
  CHECK(int(q.code(3)) == 15);
  CHECK(q.codes.size() == 2);
  CHECK(q.codes[0] == std::uint8_t(0 | (5 << 4)));

  const Mat<float> p = randomOrthonormal<float>(300, 20, 4);
  Int4Matrix<float> qp;
  qp.quantize(p);
  CHECK(qp.codes.size() == 3000);
  CHECK(qp.groups() == (6000 + 255) / 256);
  CHECK(qp.bytes() < std::size_t(p.size()) * sizeof(float) / 6);
  const Mat<float> d = qp.dequantized();
  for (Index k = 0; k < p.size(); ++k) CHECK(std::abs(d(k) - p(k)) <= qp.scaleOf(k) * 0.5f * (1 + 1e-5f) + 1e-7f);
  // The quantised basis stays close to orthonormal and spans almost the same subspace.
  CHECK(overlap(d, p) > 0.99);
}

TEST_CASE("QuantizedBasis: projections use the dequantised INT4 basis", "[gradient][bases]") {
  const Mat<float> g = gaussian<float>(64, 40, 8);
  QuantizedBasis<SVDBasis<float>> qb;
  REQUIRE(qb.refresh(g, Side::Left, 8, 0, nullptr).ok);
  Mat<float> p;
  qb.denseBasis(p);
  CHECK(p == qb.quantized().dequantized());
  CHECK(overlap(p, qb.inner().matrixP()) > 0.97);
  CHECK(qb.stateBytes() == qb.quantized().bytes());
}

TEST_CASE("OnlinePCABasis: the tracked gradient matches finite differences of ‖X P Pᵀ − X‖²", "[gradient][bases]") {
  const Mat<double> g = gaussian<double>(15, 10, 9);
  for (Side side : {Side::Left, Side::Right}) {
    OnlinePCABasis<double> b;
    b.setRule(OnlinePCARule::Sgd);
    const Mat<double> p0 = refreshed(b, gaussian<double>(15, 10, 10), side, 3);
    const Mat<double> ghat = g / g.norm();
    const Mat<double> x = side == Side::Right ? ghat : Mat<double>(ghat.transpose());
    auto loss = [&](const Mat<double>& p) { return (x * p * p.transpose() - x).squaredNorm(); };
    const double lr = 0.05;
    b.track(g, side, lr);
    const Mat<double>& grad = b.lastGradient();
    Mat<double> fd(p0.rows(), p0.cols());
    const double h = 1e-6;
    for (Index i = 0; i < p0.rows(); ++i)
      for (Index j = 0; j < p0.cols(); ++j) {
        Mat<double> pp = p0, pm = p0;
        pp(i, j) += h;
        pm(i, j) -= h;
        fd(i, j) = (loss(pp) - loss(pm)) / (2 * h);
      }
    CHECK((grad - fd).norm() < 1e-6 * (1 + fd.norm()));
    CHECK((b.matrixP() - (p0 - lr * grad)).norm() < 1e-12);
    // Starting from a random orthonormal P, SGD steps decrease the loss towards the PCA optimum.
    OnlinePCABasis<double> c;
    c.setRule(OnlinePCARule::Adam);
    refreshed(c, gaussian<double>(15, 10, 11), side, 3);
    const double before = loss(c.matrixP());
    for (int t = 0; t < 200; ++t) c.track(g, side, 0.01);
    CHECK(loss(c.matrixP()) < before);
  }
  // With re-orthonormalisation a scheduled refresh restores PᵀP = I.
  OnlinePCABasis<double> d;
  d.setRule(OnlinePCARule::Sgd).setReorthonormalize(true);
  refreshed(d, g, Side::Left, 3);
  d.track(gaussian<double>(15, 10, 12), Side::Left, 0.5);
  CHECK(orthoError(d.matrixP()) > 1e-6);
  REQUIRE(d.refresh(g, Side::Left, 3, 1, nullptr).ok);
  CHECK(orthoError(d.matrixP()) < 1e-12);
}

TEMPLATE_TEST_CASE("DCTBasis: selects the DCT columns with the largest l1 scores", "[gradient][bases]", float, double) {
  using S = TestType;
  const Mat<double> c = dctMatrix<double>(12);  // rows are the DCT-II basis vectors
  // A gradient whose rows live on frequencies {2, 5, 7}, plus small noise: those must be chosen.
  const Mat<double> a = gaussian<double>(20, 3, 1);
  Mat<double> gd = a.col(0) * c.row(2) + a.col(1) * c.row(5) + 0.5 * a.col(2) * c.row(7);
  gd += 1e-3 * gaussian<double>(20, 12, 2);
  const Mat<S> g = gd.cast<S>();
  DCTBasis<S> b;
  REQUIRE(b.refresh(g, Side::Right, 3, 0, nullptr).ok);
  CHECK(b.indices() == std::vector<Index>{2, 5, 7});
  // Against brute force: l1 norms of the columns of S = G Cᵀ, top 5.
  const Mat<double> g2 = gaussian<double>(20, 12, 3);
  const Mat<double> s = g2 * c.transpose();
  std::vector<Index> order(12);
  std::iota(order.begin(), order.end(), Index(0));
  std::sort(order.begin(), order.end(), [&](Index x, Index y) { return s.col(x).cwiseAbs().sum() > s.col(y).cwiseAbs().sum(); });
  std::vector<Index> top(order.begin(), order.begin() + 5);
  std::sort(top.begin(), top.end());
  DCTBasis<S> d;
  Mat<S> trans;
  REQUIRE(d.refresh(gd.cast<S>(), Side::Right, 5, 0, nullptr).ok);
  const std::vector<Index> before = d.indices();
  REQUIRE(d.refresh(g2.cast<S>(), Side::Right, 5, 1, &trans).ok);
  CHECK(d.indices() == top);
  Mat<S> p;
  d.denseBasis(p);
  for (Index j = 0; j < 5; ++j) CHECK((p.col(j).template cast<double>() - c.row(top[std::size_t(j)]).transpose()).norm() < 1e-6);
  // The transition is the exact partial permutation between the two index sets.
  for (Index i = 0; i < 5; ++i)
    for (Index j = 0; j < 5; ++j) CHECK(trans(i, j) == (before[std::size_t(i)] == top[std::size_t(j)] ? S(1) : S(0)));
  // Left side: rows of C G, on the transposed problem.
  DCTBasis<S> l;
  REQUIRE(l.refresh(Mat<S>(g2.transpose().cast<S>()), Side::Left, 5, 0, nullptr).ok);
  CHECK(l.indices() == top);
  // One shared DCT per size.
  CHECK(sharedDctBasis<S>(12).get() == sharedDctBasis<S>(12).get());
  CHECK(d.stateBytes() == 5 * sizeof(std::int32_t));
}

namespace {

/// Q-GaLore's `_quantize` for one group (a plain loop): scale = max(max − min, 1e-5)/15,
/// zero = clamp(−round(min/scale), 0, 15), q = clamp(round(w/scale) + zero, 0, 15), dequantised.
std::vector<double> qgaloreGroup(const std::vector<double>& w) {
  const double lo = *std::min_element(w.begin(), w.end()), hi = *std::max_element(w.begin(), w.end());
  const double scale = std::max(hi - lo, 1e-5) / 15;
  const double zero = std::min(15.0, std::max(0.0, -std::nearbyint(lo / scale)));
  std::vector<double> out;
  for (double x : w) out.push_back(scale * (std::min(15.0, std::max(0.0, std::nearbyint(x / scale) + zero)) - zero));
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("QuantizedBasis: INT4 groups follow Q-GaLore's row-major layout on both sides by default", "[gradient][bases]",
                   float, double) {
  using S = TestType;
  const Index r = 4, gs = 4;
  for (Side side : {Side::Left, Side::Right}) {
    for (Int4Grouping grouping : {Int4Grouping::QGaLore, Int4Grouping::ColumnMajor}) {
      const Mat<S> g = gaussian<S>(10, 16, 8);
      QuantizedBasis<SVDBasis<S>> qb;
      if (grouping == Int4Grouping::ColumnMajor) qb.setGrouping(Int4Grouping::ColumnMajor);
      qb.setGroupSize(gs);
      CHECK(qb.grouping() == grouping);
      REQUIRE(qb.refresh(g, side, r, 0, nullptr).ok);
      const Mat<S> p = qb.inner().matrixP();  // ambient×r, full precision
      // Q-GaLore's stored matrix: Vh[:r, :] (r×n) on the right, U[:, :r] (m×r) on the left, in
      // C order, cut into consecutive groups. Rows of Vh are columns of P; rows of U are rows of P.
      const bool alongRows = grouping == Int4Grouping::QGaLore && side == Side::Left;
      std::vector<std::pair<Index, Index>> order;  // coefficient positions in group order
      if (alongRows) {
        for (Index i = 0; i < p.rows(); ++i)
          for (Index j = 0; j < p.cols(); ++j) order.emplace_back(i, j);
      } else {
        for (Index j = 0; j < p.cols(); ++j)
          for (Index i = 0; i < p.rows(); ++i) order.emplace_back(i, j);
      }
      Mat<double> expect(p.rows(), p.cols());
      for (std::size_t b = 0; b < order.size(); b += std::size_t(gs)) {
        std::vector<double> grp;
        for (std::size_t k = b; k < std::min(order.size(), b + std::size_t(gs)); ++k) grp.push_back(double(p(order[k].first, order[k].second)));
        const std::vector<double> dq = qgaloreGroup(grp);
        for (std::size_t k = 0; k < dq.size(); ++k) expect(order[b + k].first, order[b + k].second) = dq[k];
      }
      Mat<S> used;
      qb.denseBasis(used);
      INFO((side == Side::Left ? "left" : "right") << (alongRows ? ", groups along rows of P" : ", groups along columns of P"));
      // Equal up to the rounding of a scale (one code step would be ≥ 1e-2 here).
      CHECK((used.template cast<double>() - expect).cwiseAbs().maxCoeff() < 1e-5);
      CHECK(qb.quantized().order == (alongRows ? Int4Order::RowMajor : Int4Order::ColumnMajor));
    }
  }
}

TEMPLATE_TEST_CASE("OnlinePCABasis: the step that computes the first basis does not track", "[gradient][bases]", float, double) {
  using S = TestType;
  const Mat<S> g0 = gaussian<S>(40, 24, 31), g1 = gaussian<S>(40, 24, 32);
  ProjectedAdamW<OnlinePCABasis<S>> opt;
  opt.projector().setRank(6).setUpdateGap(10);
  Mat<S> w = gaussian<S>(40, 24, 33);
  opt.step(w, g0);
  // After step 0, P is exactly the SVD basis of G₀: orthonormal to rounding, no Adam step on it.
  CHECK(opt.projector().basis().updates() == 0);
  CHECK(orthoError(opt.projector().denseBasis()) < 100 * eps<S>() * 24);
  const Eigen::BDCSVD<Mat<double>> svd(g0.template cast<double>(), Eigen::ComputeThinV);
  CHECK(overlap(opt.projector().denseBasis(), svd.matrixV().leftCols(6)) == Approx(1.0).margin(1e3 * eps<S>()));
  // Step 1 takes the first online-PCA step (upstream: the first P update is at step 1).
  const Mat<S> p0 = opt.projector().denseBasis();
  opt.step(w, g1);
  CHECK(opt.projector().basis().updates() == 1);
  CHECK(opt.projector().denseBasis() != p0);
}
