// Tests: streaming covariance (Welford, batched), shrinkage, PLS2 (NIPALS).
#include "test_common.hpp"

#include <wproj/linalg/covariance.hpp>
#include <wproj/linalg/gram.hpp>
#include <wproj/linalg/pls.hpp>

#include <Eigen/Eigenvalues>

#include <tuple>
#include <vector>

using namespace wproj_test;
using wproj::Index;

namespace {

// Two-pass reference covariance / cross-covariance in double.
Mat<double> twoPassCov(const Mat<double>& x, const Mat<double>& z) {
  const Eigen::RowVectorXd mx = x.colwise().mean(), mz = z.colwise().mean();
  return (x.rowwise() - mx).transpose() * (z.rowwise() - mz) / double(x.rows() - 1);
}

// A straightforward PLS2 NIPALS reference (Wold), written with plain loops over samples:
// centre, then per component iterate w ∝ Xᵀu, t = Xw, c = Yᵀt/tᵀt, u = Yc/cᵀc, and deflate.
struct ReferencePls {
  Mat<double> w, p, q;
  ReferencePls(Mat<double> x, Mat<double> y, int r, int iters, double tol) {
    const Index n = x.rows(), d = x.cols(), t = y.cols();
    for (Index j = 0; j < d; ++j) x.col(j).array() -= x.col(j).sum() / double(n);
    for (Index j = 0; j < t; ++j) y.col(j).array() -= y.col(j).sum() / double(n);
    w.setZero(d, r);
    p.setZero(d, r);
    q.setZero(t, r);
    for (int k = 0; k < r; ++k) {
      Eigen::VectorXd u = y.col(0), wk = Eigen::VectorXd::Zero(d), s(n), c(t);
      for (int it = 0; it < iters; ++it) {
        Eigen::VectorXd wn = Eigen::VectorXd::Zero(d);
        for (Index i = 0; i < n; ++i) wn += x.row(i).transpose() * u(i);
        wn /= wn.norm();
        for (Index i = 0; i < n; ++i) s(i) = x.row(i).dot(wn);
        c.setZero();
        for (Index i = 0; i < n; ++i) c += y.row(i).transpose() * s(i);
        c /= s.squaredNorm();
        for (Index i = 0; i < n; ++i) u(i) = y.row(i).dot(c) / c.squaredNorm();
        const double diff = (wn - wk).squaredNorm();
        wk = wn;
        if (diff < tol) break;
      }
      Index imax;
      wk.cwiseAbs().maxCoeff(&imax);
      if (wk(imax) < 0) wk = -wk;
      for (Index i = 0; i < n; ++i) s(i) = x.row(i).dot(wk);
      const Eigen::VectorXd pk = x.transpose() * s / s.squaredNorm();
      const Eigen::VectorXd qk = y.transpose() * s / s.squaredNorm();
      x -= s * pk.transpose();
      y -= s * qk.transpose();
      w.col(k) = wk;
      p.col(k) = pk;
      q.col(k) = qk;
    }
  }
};

}  // namespace

TEMPLATE_TEST_CASE("StreamingCovariance: batched Welford equals two-pass statistics", "[covariance]", float, double) {
  using T = TestType;
  const Index n = 157, d = 9, c = 3;
  Mat<double> xd = gaussian<double>(n, d, 11);
  xd.array() += 5.0;  // a large mean makes naive one-pass formulas lose digits
  xd.col(2) *= 10.0;
  Mat<double> zd = gaussian<double>(n, c, 12);
  const Mat<T> x = xd.cast<T>(), z = zd.cast<T>();
  const Mat<double> xr = x.template cast<double>(), zr = z.template cast<double>();

  wproj::StreamingCovariance<T> acc(d, c);
  // uneven batches, including a single row and an empty batch
  const Index cuts[] = {0, 1, 40, 40, 99, 150, n};
  for (int b = 0; b + 1 < 7; ++b) {
    const Index s = cuts[b], m = cuts[b + 1] - cuts[b];
    acc.update(x.middleRows(s, m), z.middleRows(s, m));
  }
  REQUIRE(acc.count() == n);
  const double tol = 50 * eps<T>() * 100;  // entries are O(100) at most
  CHECK((acc.meanX().template cast<double>() - xr.colwise().mean().transpose()).norm() < tol);
  CHECK((acc.meanZ().template cast<double>() - zr.colwise().mean().transpose()).norm() < tol);
  const Mat<double> cxx = twoPassCov(xr, xr), cxz = twoPassCov(xr, zr);
  CHECK((acc.covariance().template cast<double>() - cxx).norm() < tol * cxx.norm());
  CHECK((acc.crossCovariance().template cast<double>() - cxz).norm() < tol * (1 + cxz.norm()));
  CHECK((acc.covarianceMle().template cast<double>() - cxx * double(n - 1) / double(n)).norm() < tol * cxx.norm());

  // one batch and merge of two accumulators give the same thing
  wproj::StreamingCovariance<T> one(d, c), a(d, c), b(d, c);
  one.update(x, z);
  a.update(x.topRows(70), z.topRows(70));
  b.update(x.bottomRows(n - 70), z.bottomRows(n - 70));
  a.merge(b);
  CHECK((one.covariance() - acc.covariance()).norm() <= T(tol) * T(cxx.norm()));
  CHECK((a.crossCovariance() - one.crossCovariance()).norm() <= T(tol) * T(1 + cxz.norm()));
}

TEMPLATE_TEST_CASE("StreamingCovariance: a mean of 1e4 standard deviations, column- and row-major batches",
                   "[covariance]", float, double) {
  using T = TestType;
  const Index n = 600, d = 5, c = 2;
  Mat<double> xd = gaussian<double>(n, d, 41);
  xd.array() += 1e4;  // one-pass formulas (XᵀX − n x̄x̄ᵀ) lose 8 digits here: all of float's
  const Mat<double> zd = gaussian<double>(n, c, 42).array() + 1e4;
  const Mat<T> x = xd.cast<T>(), z = zd.cast<T>();
  const RowMajorMat<T> xRow = x;
  // Two-pass reference in double on the same (rounded) data.
  const Mat<double> xr = x.template cast<double>(), zr = z.template cast<double>();
  const Mat<double> cxx = twoPassCov(xr, xr), cxz = twoPassCov(xr, zr);
  wproj::StreamingCovariance<T> col(d, c), row(d, c);
  for (Index s = 0; s < n; s += 64) {
    const Index m = std::min<Index>(64, n - s);
    col.update(x.middleRows(s, m), z.middleRows(s, m));
    row.update(xRow.middleRows(s, m), z.middleRows(s, m));
  }
  // Error bound: the batch means carry eps·1e4 of rounding, i.e. 1e4·eps relative to σ = 1.
  const double tol = 1e4 * 50 * eps<T>();
  CHECK((col.covariance().template cast<double>() - cxx).norm() < tol * cxx.norm());
  CHECK((row.covariance().template cast<double>() - cxx).norm() < tol * cxx.norm());
  CHECK((col.crossCovariance().template cast<double>() - cxz).norm() < tol * (1 + cxz.norm()));
  CHECK((row.crossCovariance().template cast<double>() - cxz).norm() < tol * (1 + cxz.norm()));
  CHECK((col.meanX().template cast<double>() - xr.colwise().mean().transpose()).norm() < 1e4 * 50 * eps<T>());
  CHECK((row.meanX() - col.meanX()).norm() < T(1e4 * 50 * eps<T>()));
}

TEMPLATE_TEST_CASE("StreamingCovariance: batches cut into row blocks (threads) match two-pass statistics",
                   "[covariance]", float, double) {
  using T = TestType;
  // 9000 rows of width 256: two row blocks under OpenBLAS (detail::gramRowParts), one without it.
  const Index n = 9000, d = 256, c = 3;
  Mat<double> xd = gaussian<double>(n, d, 51);
  xd.array() += 100.0;
  const Mat<T> x = xd.cast<T>();
  const RowMajorMat<T> xRow = x;
  const Mat<T> z = gaussian<double>(n, c, 52).cast<T>();
  const Mat<double> xr = x.template cast<double>(), zr = z.template cast<double>();
  const Mat<double> cxx = twoPassCov(xr, xr), cxz = twoPassCov(xr, zr);
  const int parts = wproj::detail::gramRowParts(n, d);
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
  CHECK(parts == 2);
  CHECK(wproj::detail::gramRowParts(8192, 512) == 4);
  CHECK(wproj::detail::gramRowParts(100000, 64) == 6);
  CHECK(wproj::detail::gramRowParts(1 << 20, 8) == 8);
  CHECK(wproj::detail::gramRowParts(1 << 20, 8192) == 1);  // 64 MiB of partial sums at most
  CHECK(wproj::detail::gramRowParts(300, 4096) == 1);
#else
  CHECK(parts == 1);
#endif
  wproj::StreamingCovariance<T> col(d, c), row(d, c);
  col.update(x, z);
  row.update(xRow, z);
  const double tol = 100 * 50 * eps<T>();
  CHECK((col.covariance().template cast<double>() - cxx).norm() < tol * cxx.norm());
  CHECK((row.covariance().template cast<double>() - cxx).norm() < tol * cxx.norm());
  CHECK((row.crossCovariance().template cast<double>() - cxz).norm() < tol * (1 + cxz.norm()));
  CHECK((row.meanX().template cast<double>() - xr.colwise().mean().transpose()).norm() < tol * 100);
  // The covariance is exactly symmetric (the lower triangle mirrored).
  CHECK(row.scatterX() == row.scatterX().transpose());

  // The result depends on the batch's shape only, never on the thread count.
  for (int threads : {1, 2, 3}) {
    wproj::StreamingCovariance<T> again(d, c);
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
    const int before = openblas_get_num_threads();
    openblas_set_num_threads(threads);
    again.update(xRow, z);
    openblas_set_num_threads(before);
#else
    again.update(xRow, z);
#endif
    INFO("OpenBLAS threads " << threads);
    CHECK(again.scatterX() == row.scatterX());
    CHECK(again.scatterXZ() == row.scatterXZ());
    CHECK(again.meanX() == row.meanX());
  }

  // A NaN or an Inf anywhere — also +Inf and -Inf in one column, whose sum is NaN — is named.
  for (auto [r, j, v] : {std::tuple<Index, Index, T>{8999, 255, std::numeric_limits<T>::quiet_NaN()},
                         std::tuple<Index, Index, T>{2500, 0, std::numeric_limits<T>::infinity()}}) {
    RowMajorMat<T> bad = xRow;
    bad(r, j) = v;
    if (std::isinf(v)) bad(r + 1000, j) = -v;
    wproj::StreamingCovariance<T> acc(d, c);
    CHECK_THROWS_WITH(acc.update(bad, z), Catch::Contains("non-finite") && Catch::Contains("x"));
    CHECK(acc.count() == 0);
  }
}

TEST_CASE("BlasThreadSplit: every task runs once; a task's exception reaches the caller", "[covariance]") {
  std::vector<int> hits(9, 0);
  wproj::detail::BlasThreadSplit::run(9, 3, [&](int p) { hits[std::size_t(p)] += 1; });
  CHECK(hits == std::vector<int>(9, 1));
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
  const int before = openblas_get_num_threads();
  openblas_set_num_threads(2);
#endif
  int held = 0;
  CHECK_THROWS_WITH(wproj::detail::BlasThreadSplit::run(4, 2,
                                                        [&](int p) {
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
                                                          if (p == 0) held = openblas_get_num_threads();
#else
                                                          if (p == 0) held = 1;
#endif
                                                          if (p == 2) throw wproj::InvalidArgument("task 2 failed");
                                                        }),
                    Catch::Contains("task 2 failed"));
  // OpenBLAS ran at one thread inside the tasks; the hold is released after a failure too (a
  // leaked hold would leave OpenBLAS at one thread).
  CHECK(held == 1);
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
  CHECK(openblas_get_num_threads() == 2);
  CHECK(wproj::detail::BlasThreadSplit::available() == 2);
  openblas_set_num_threads(before);
#endif
}

TEST_CASE("StreamingCovariance: row-major maps, x-only mode and bad input", "[covariance]") {
  const Index n = 30, d = 4;
  RowMajorMat<double> xr = gaussian<double>(n, d, 3);
  Eigen::Map<const RowMajorMat<double>> xm(xr.data(), n, d);
  wproj::StreamingCovariance<double> acc;
  acc.update(xm.topRows(10)).update(xm.bottomRows(20));
  const Mat<double> x = xr;
  CHECK((acc.covariance() - twoPassCov(x, x)).norm() < 1e-13);
  CHECK(acc.zDim() == 0);

  wproj::StreamingCovariance<double> paired(d, 2);
  CHECK_THROWS_AS(paired.update(x), wproj::InvalidArgument);             // z missing
  CHECK_THROWS_AS(paired.update(x, Mat<double>(n - 1, 2)), wproj::InvalidArgument);  // row mismatch
  CHECK_THROWS_AS(paired.update(Mat<double>(n, d + 1), Mat<double>(n, 2)), wproj::InvalidArgument);
  Mat<double> bad = x;
  bad(3, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(acc.update(bad), Catch::Contains("non-finite"));
  wproj::StreamingCovariance<double> single(d);
  single.update(x.topRows(1));
  CHECK_THROWS_WITH(single.covariance(), Catch::Contains(">= 2 samples"));
}

TEMPLATE_TEST_CASE("shrinkCovariance: Ledoit-Wolf-style formula and limits", "[covariance]", float, double) {
  using T = TestType;
  const Index p = 12, n = 20;
  const Mat<T> x = gaussian<T>(n, p, 21);
  wproj::StreamingCovariance<T> acc(p);
  acc.update(x);
  const Mat<T> s = acc.covarianceMle();
  const double tr = double(s.trace()), fro2 = double(s.squaredNorm());
  const double alphaRef = std::clamp(1.0 - (tr * tr / n) / (fro2 - tr * tr / p), 0.0, 1.0);
  const T alpha = wproj::shrinkageIntensity(s, n);
  CHECK(std::abs(double(alpha) - alphaRef) < 1e3 * eps<T>());
  const Mat<T> shrunk = wproj::shrinkCovariance(s, n);
  Mat<double> ref = alphaRef * s.template cast<double>();
  ref.diagonal().array() += (1 - alphaRef) * tr / p;
  CHECK((shrunk.template cast<double>() - ref).norm() < 1e3 * eps<T>() * ref.norm());
  CHECK(std::abs(double(shrunk.trace()) - tr) < 1e3 * eps<T>() * tr);  // trace preserved

  // Many samples in few dimensions: little shrinkage. Identity: full shrinkage (already isotropic).
  const Mat<T> big = gaussian<T>(4000, 3, 22) * Vec<T>::LinSpaced(3, 1, 3).asDiagonal();
  wproj::StreamingCovariance<T> accBig(3);
  accBig.update(big);
  CHECK(wproj::shrinkageIntensity(accBig.covarianceMle(), 4000) > T(0.99));
  CHECK(wproj::shrinkageIntensity(Mat<T>::Identity(5, 5), 10) == T(0));
  CHECK(wproj::shrinkageIntensity(Mat<T>::Zero(5, 5), 10) == T(1));
  CHECK_THROWS_AS(wproj::shrinkageIntensity(Mat<T>(3, 4), 10), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::shrinkageIntensity(s, 0), wproj::InvalidArgument);
}

TEST_CASE("PartialLeastSquares: matches scikit-learn PLSRegression(scale=False)", "[pls]") {
  // Values printed by sklearn 1.2 PLSRegression(n_components=3, scale=False).fit(X, Y).
  Mat<double> x(7, 4), y(7, 2);
  x << 0, 1, 2, 3, 1, 0, -1, 2, 2, 3, 1, 0, -1, 2, 0, 1, 3, 1, 1, -2, 0, -2, 1, 1, 2, 2, -1, 0;
  y << 1, 0, 0, 1, 2, 1, -1, 0, 1, -1, 0, 2, 1, 1;
  Mat<double> w(4, 3), p(4, 3), q(2, 3);
  w << 0.6309326357818791, 0.22154811196928825, 0.7434813046172744, 0.5756965146379616, -0.08895074403124338,
      -0.46981795669862997, 0.29573913176811184, 0.6895910851249865, -0.4507901495779632, -0.42782694875390553,
      0.6837165600855921, 0.15262659758900216;
  p << 0.6044905857625341, -0.07091346339429627, 0.7389280868654586, 0.573688495929962, 0.07836009684711386,
      -0.8162555007162431, 0.03088993287084377, 0.8794315922714406, -0.1982411548948206, -0.6526034246097532,
      0.608779677334942, -0.14568803701581526;
  q << 0.348420892198356, 0.4865031515504294, 0.28802197213629327, -0.2362832721592099, -0.14224863061896256,
      0.24674940362521175;
  wproj::PartialLeastSquares<double> pls(x, y, 3);
  REQUIRE(pls.components() == 3);
  CHECK((pls.xWeights() - w).norm() < 1e-10);
  CHECK((pls.xLoadings() - p).norm() < 1e-10);
  CHECK((pls.yLoadings() - q).norm() < 1e-10);
}

TEMPLATE_TEST_CASE("PartialLeastSquares: NIPALS reference, SVD oracle, layouts", "[pls]", float, double) {
  using T = TestType;
  const Index n = 60, d = 15, t = 4, r = 5;
  const Mat<double> xd = gaussian<double>(n, d, 31);
  Mat<double> yd = xd.leftCols(6) * gaussian<double>(6, t, 32) + 0.3 * gaussian<double>(n, t, 33);
  yd.array() += 2.0;
  const Mat<T> x = xd.cast<T>(), y = yd.cast<T>();

  wproj::PartialLeastSquares<T> pls;
  pls.setComponents(r).setTolerance(1e-24).setMaxIterations(20000).compute(x, y);
  REQUIRE(pls.components() == r);
  const ReferencePls ref(x.template cast<double>(), y.template cast<double>(), int(r), 20000, 1e-24);
  const double tol = std::is_same<T, float>::value ? 2e-3 : 1e-8;
  CHECK((pls.xWeights().template cast<double>() - ref.w).norm() < tol);
  CHECK((pls.xLoadings().template cast<double>() - ref.p).norm() < tol * 10);
  CHECK((pls.yLoadings().template cast<double>() - ref.q).norm() < tol * 10);
  // first x-weight = dominant left singular vector of XcᵀYc (up to sign)
  const Mat<double> xc = xd.rowwise() - xd.colwise().mean(), yc = yd.rowwise() - yd.colwise().mean();
  Eigen::JacobiSVD<Mat<double>> svd(xc.transpose() * yc, Eigen::ComputeThinU);
  CHECK(std::abs(std::abs(svd.matrixU().col(0).dot(pls.xWeights().col(0).template cast<double>())) - 1) < tol);
  // x-scores are mutually orthogonal, weights are unit vectors
  const Mat<double> ts = pls.xScores().template cast<double>();
  Mat<double> g = ts.transpose() * ts;
  const Vec<double> gd = g.diagonal();
  g.diagonal().setZero();
  CHECK(g.norm() < 1e-4 * gd.norm());
  CHECK((pls.xWeights().colwise().norm().array() - T(1)).abs().maxCoeff() < T(100) * std::numeric_limits<T>::epsilon());

  // row-major map input gives the same weights
  const RowMajorMat<T> xr = x, yr = y;
  Eigen::Map<const RowMajorMat<T>> xm(xr.data(), n, d), ym(yr.data(), n, t);
  wproj::PartialLeastSquares<T> plsMap;
  plsMap.setComponents(r).setTolerance(1e-24).setMaxIterations(20000).compute(xm, ym);
  CHECK((plsMap.xWeights() - pls.xWeights()).norm() < T(tol));
}

TEST_CASE("PartialLeastSquares: early stop, single target, bad input", "[pls]") {
  const Index n = 20, d = 6;
  const Mat<double> x = gaussian<double>(n, d, 41);
  // Single target that is an exact linear function of X: one component explains all of it.
  const Mat<double> y = x * Vec<double>::LinSpaced(d, -1, 1);
  wproj::PartialLeastSquares<double> pls(x, y, 3);
  CHECK(pls.iterations().front() == 1);  // single target: one NIPALS pass (as scikit-learn)
  CHECK(pls.components() >= 1);
  // Y constant: no component can be found
  wproj::PartialLeastSquares<double> none(x, Mat<double>::Ones(n, 2), 2);
  CHECK(none.components() == 0);
  CHECK(none.info() == Eigen::NumericalIssue);

  wproj::PartialLeastSquares<double> p;
  CHECK_THROWS_WITH(p.setComponents(0), Catch::Contains("'r'"));
  p.setComponents(4);
  CHECK_THROWS_AS(p.compute(x, Mat<double>(n + 1, 2)), wproj::InvalidArgument);
  CHECK_THROWS_WITH(p.compute(x.topRows(4), y.topRows(4)), Catch::Contains("samples - 1"));
  p.setComponents(d + 1);
  CHECK_THROWS_WITH(p.compute(x, y), Catch::Contains("x.cols()"));
  Mat<double> bad = x;
  bad(0, 0) = std::numeric_limits<double>::infinity();
  p.setComponents(2);
  CHECK_THROWS_WITH(p.compute(bad, y), Catch::Contains("non-finite"));
  CHECK_THROWS_AS(p.compute(Mat<double>(0, 3), Mat<double>(0, 1)), wproj::InvalidArgument);
}
