// Tests: DeTox/ProFS, DAMA, mean-difference (ThinkEdit) and AlphaEdit estimators.
#include "test_common.hpp"

#include <wproj/editing/alpha_edit.hpp>
#include <wproj/editing/dama.hpp>
#include <wproj/editing/detox.hpp>
#include <wproj/editing/mean_difference.hpp>
#include <wproj/editing/weight_editor.hpp>

#include <Eigen/LU>

using namespace wproj_test;
using wproj::Index;

namespace {

// Top-k right singular vectors of a (double oracle).
Mat<double> topRight(const Mat<double>& a, Index k) {
  Eigen::JacobiSVD<Mat<double>> svd(a, Eigen::ComputeThinV);
  return svd.matrixV().leftCols(k);
}

// Straightforward PLS2 NIPALS x-weights (centred, unscaled): for each component, power-iterate
// w ← XᵀYYᵀXw / ‖·‖ from w = Xᵀy₁, then deflate X and Y by the scores' regressions.
Mat<double> nipalsWeights(Mat<double> x, Mat<double> y, Index r) {
  x.rowwise() -= x.colwise().mean();
  y.rowwise() -= y.colwise().mean();
  Mat<double> w(x.cols(), r);
  for (Index k = 0; k < r; ++k) {
    Eigen::VectorXd wk = x.transpose() * y.col(0);
    wk.normalize();
    for (int it = 0; it < 5000; ++it) {
      Eigen::VectorXd next = x.transpose() * (y * (y.transpose() * (x * wk)));
      next.normalize();
      const double change = (next - wk).norm();
      wk = next;
      if (change < 1e-14) break;
    }
    Index imax;
    wk.cwiseAbs().maxCoeff(&imax);
    if (wk(imax) < 0) wk = -wk;
    const Eigen::VectorXd t = x * wk;
    x -= t * (x.transpose() * t / t.squaredNorm()).transpose();
    y -= t * (y.transpose() * t / t.squaredNorm()).transpose();
    w.col(k) = wk;
  }
  return w;
}

// Orthonormal basis of the column span (Householder on a full-column-rank input).
Mat<double> orthBasis(const Mat<double>& a) {
  Eigen::HouseholderQR<Mat<double>> qr(a);
  return qr.householderQ() * Mat<double>::Identity(a.rows(), a.cols());
}

}  // namespace

TEMPLATE_TEST_CASE("DetoxEstimator: removes exactly the top-k directions of the centred difference", "[detox]", float, double) {
  using T = TestType;
  const Index n = 80, d = 30, k = 3;
  // preferred = a strong common direction + noise; toxic = preferred − 2·(planted rank-4 signal) + noise
  Mat<double> common = Eigen::VectorXd::Constant(n, 5.0) * randomOrthonormal<double>(d, 1, 3).transpose();
  const Mat<double> pos = common + 0.3 * gaussian<double>(n, d, 4);
  const Mat<double> planted = withSpectrum<double>(n, d, (Vec<double>(4) << 9, 7, 5, 3).finished(), 5);
  const Mat<double> neg = pos - 2 * planted + 0.05 * gaussian<double>(n, d, 6);
  const Mat<T> xp = pos.cast<T>(), xn = neg.cast<T>();

  wproj::DetoxEstimator<T> detox;
  detox.setRank(k).fit(xp, xn);
  REQUIRE(detox.subspace().dim() == k);
  // oracle: v₀ from the uncentred preferred set, T(I − v₀v₀ᵀ), top-k right singular vectors
  const Mat<double> xpd = xp.template cast<double>(), xnd = xn.template cast<double>();
  const Eigen::VectorXd v0 = topRight(xpd, 1).col(0);
  Mat<double> t = (xpd - xnd) / 2;
  t -= (t * v0) * v0.transpose();
  const Mat<double> vk = topRight(t, k);
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  CHECK(overlap(detox.subspace().basis(), vk) > 1 - tol);
  CHECK(std::abs(std::abs(detox.centeringDirection().template cast<double>().dot(v0)) - 1) < tol);
  Eigen::JacobiSVD<Mat<double>> full(t);
  for (Index i = 0; i < k; ++i)
    CHECK(std::abs(double(detox.singularValues()(i)) - full.singularValues()(i)) < tol * full.singularValues()(0));
  // after projecting the directions out, what is left of T is exactly its tail spectrum
  const Mat<double> rest = t - (t * vk) * vk.transpose();
  Eigen::JacobiSVD<Mat<double>> tail(rest);
  CHECK(std::abs(tail.singularValues()(0) - full.singularValues()(k)) < tol * full.singularValues()(0));
  const Mat<T> p = detox.projector();
  CHECK((p * p - p).norm() < T(100) * std::numeric_limits<T>::epsilon() * T(k));  // P² = P

  // without centring, the subspace is that of the raw difference
  wproj::DetoxEstimator<T> raw;
  raw.setRank(k).setCentering(false).fit(xp, xn);
  CHECK(raw.centeringDirection().size() == 0);
  CHECK(overlap(raw.subspace().basis(), topRight((xpd - xnd) / 2, k)) > 1 - tol);

  // row-major maps
  const RowMajorMat<T> pr = xp, nr = xn;
  Eigen::Map<const RowMajorMat<T>> pm(pr.data(), n, d), nm(nr.data(), n, d);
  wproj::DetoxEstimator<T> mapped;
  mapped.setRank(k).fit(pm, nm);
  CHECK(overlap(mapped.subspace().basis(), detox.subspace().basis()) > 1 - tol);
}

TEST_CASE("DetoxEstimator: bad input", "[detox]") {
  const Mat<double> a = gaussian<double>(5, 8, 1), b = gaussian<double>(5, 8, 2);
  wproj::DetoxEstimator<double> detox;
  CHECK_THROWS_AS(detox.fit(a, Mat<double>(4, 8)), wproj::InvalidArgument);
  CHECK_THROWS_WITH(detox.setRank(6).fit(a, b), Catch::Contains("number of pairs"));
  CHECK_THROWS_WITH(detox.setRank(8).fit(gaussian<double>(20, 8, 3), gaussian<double>(20, 8, 4)),
                    Catch::Contains("centring"));
  Mat<double> bad = b;
  bad(0, 3) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(detox.setRank(2).fit(a, bad), Catch::Contains("non-finite"));
  CHECK_THROWS_AS(detox.setRank(0), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("DamaEstimator: PLS weights match an independent NIPALS, whitening by solve", "[dama]", float, double) {
  using T = TestType;
  const Index n = 90, d = 20, t = 3, r = 4;
  const Mat<double> xd = gaussian<double>(n, d, 11);
  const Mat<double> yd = xd.leftCols(5) * gaussian<double>(5, t, 12) + 0.2 * gaussian<double>(n, t, 13);
  wproj::DamaEstimator<T> dama;
  dama.setRank(r).setPlsIterations(20000, 1e-24).fit(xd.cast<T>(), yd.cast<T>());
  const Mat<double> ref = nipalsWeights(xd.cast<T>().template cast<double>(), yd.cast<T>().template cast<double>(), r);
  const double tol = std::is_same<T, float>::value ? 2e-3 : 1e-8;
  CHECK((dama.xWeights().template cast<double>() - ref).norm() < tol);
  REQUIRE(dama.subspace().dim() == r);
  CHECK(overlap(dama.subspace().basis(), orthBasis(ref)) > 1 - tol);
  CHECK(orthoError(dama.subspace().basis()) < 1e3 * eps<T>());

  // whitening: X ← X(λC + XᵀX)⁻¹, compared with an explicit inverse in double
  const Mat<double> kk = gaussian<double>(d, 2 * d, 14);
  const Mat<double> c = kk * kk.transpose() / double(2 * d);
  const double lambda = 3.0;
  wproj::DamaEstimator<T> white;
  white.setRank(r).setPlsIterations(20000, 1e-24).setWhitening(c.cast<T>(), lambda).fit(xd.cast<T>(), yd.cast<T>());
  const Mat<double> xw = xd * (lambda * c + xd.transpose() * xd).inverse();
  const Mat<double> refW = nipalsWeights(xw, yd, r);
  CHECK(overlap(white.subspace().basis(), orthBasis(refW)) > 1 - 10 * tol);
}

TEST_CASE("DamaEstimator: bad input", "[dama]") {
  const Mat<double> x = gaussian<double>(10, 6, 21), y = gaussian<double>(10, 2, 22);
  wproj::DamaEstimator<double> dama;
  CHECK_THROWS_WITH(dama.setRank(10).fit(x, y), Catch::Contains("fewer samples than the rank"));
  CHECK_THROWS_WITH(dama.setRank(7).fit(gaussian<double>(30, 6, 23), gaussian<double>(30, 1, 24)), Catch::Contains("x.cols()"));
  CHECK_THROWS_AS(dama.setRank(2).fit(x, Mat<double>(9, 2)), wproj::InvalidArgument);
  CHECK_THROWS_AS(dama.setWhitening(Mat<double>(6, 5)), wproj::InvalidArgument);
  dama.setWhitening(Mat<double>::Identity(5, 5), 1.0);
  CHECK_THROWS_WITH(dama.fit(x, y), Catch::Contains("whitening matrix"));
  dama.clearWhitening();
  Mat<double> bad = y;
  bad(0, 0) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(dama.fit(x, bad), Catch::Contains("non-finite"));
}

TEMPLATE_TEST_CASE("MeanDifferenceEstimator + WeightEditor: ThinkEdit's head edit zeroes W_o v", "[thinkedit]", float, double) {
  using T = TestType;
  const Index d = 24, heads = 4, dh = 6, n = 50;
  const Vec<double> v0 = randomOrthonormal<double>(d, 1, 31).col(0);
  Mat<double> longA = gaussian<double>(n, d, 32), shortB = gaussian<double>(n + 7, d, 33);
  longA.rowwise() += 2.0 * v0.transpose();
  wproj::MeanDifferenceEstimator<T> est;
  est.fit(longA.cast<T>(), shortB.cast<T>());
  const Eigen::VectorXd diff = longA.colwise().mean().transpose() - shortB.colwise().mean().transpose();
  const Vec<T> v = est.direction();
  CHECK(std::abs(double(v.norm()) - 1) < 10 * eps<T>());
  CHECK((v.template cast<double>() - diff.normalized()).norm() < 100 * eps<T>());
  CHECK(std::abs(double(est.gap()) - diff.norm()) < 100 * eps<T>() * diff.norm());

  // o_proj (d × heads·dh): edit the slice of head 2 on the output side
  const Mat<T> wo = gaussian<T>(d, heads * dh, 34);
  wproj::WeightEditor<T> editor;
  editor.setSide(wproj::WeightSide::Output).setInputRange(2 * dh, dh);
  const auto res = editor.apply(wo, est.subspace());
  const Mat<T> slice = res.weight.middleCols(2 * dh, dh);
  CHECK((v.transpose() * slice).norm() < T(100) * std::numeric_limits<T>::epsilon() * wo.norm());  // ‖vᵀW_o‖ → 0
  CHECK(res.report.normAfter(0) < 100 * eps<T>() * double(wo.norm()));
  CHECK(res.report.normBefore(0) > 0.5);
  CHECK((res.weight.leftCols(2 * dh) - wo.leftCols(2 * dh)).norm() == T(0));  // other heads untouched
  CHECK((res.weight.rightCols(dh) - wo.rightCols(dh)).norm() == T(0));
  const Mat<T> expected = wo.middleCols(2 * dh, dh) - v * (v.transpose() * wo.middleCols(2 * dh, dh));
  CHECK((slice - expected).norm() < T(100) * std::numeric_limits<T>::epsilon() * wo.norm());

  CHECK_THROWS_WITH(est.fit(longA.cast<T>(), longA.cast<T>()), Catch::Contains("non-zero difference"));
  CHECK_THROWS_AS(est.fit(longA.cast<T>(), Mat<T>(3, d + 1)), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("AlphaEdit: Delta K0 = 0, explicit formula, keys reach their targets, running C", "[alphaedit]", float, double) {
  using T = TestType;
  const Index d = 16, m = 10, n0 = 40, u = 3;
  const Mat<double> basis = randomOrthonormal<double>(d, d, 41);
  const Mat<double> keep = basis.leftCols(10), free = basis.rightCols(d - 10);
  const Mat<double> k0 = keep * gaussian<double>(10, n0, 42) * 3.0;       // preserved keys span 10 dims
  const Mat<double> w = gaussian<double>(m, d, 43);
  const Mat<double> keys = free * gaussian<double>(d - 10, u, 44) * 10.0 + keep * gaussian<double>(10, u, 45) * 0.5;
  const Mat<double> targets = gaussian<double>(m, u, 46) * 5.0;
  const Mat<double> resid = targets - w * keys;

  wproj::AlphaEdit<T> ae;
  ae.setPreservedKeys(k0.cast<T>());
  REQUIRE(ae.nullSpace().dim() == d - 10);
  const Mat<T> delta = ae.update(keys.cast<T>(), resid.cast<T>());
  const Mat<double> dd = delta.template cast<double>();
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-11;
  CHECK((dd * k0).norm() < tol * dd.norm() * k0.norm());                   // ΔK₀ ≈ 0

  // explicit formula with an independently computed null-space projector (double oracle)
  const Mat<double> pOracle = free * free.transpose();
  Mat<double> lhs = pOracle * (keys * keys.transpose());
  lhs.diagonal().array() += 10.0;
  const Mat<double> deltaRef = lhs.fullPivLu().solve(pOracle * keys * resid.transpose()).transpose();
  CHECK((dd - deltaRef).norm() < 10 * tol * deltaRef.norm());
  // the new keys move to their targets as far as the null-space constraint allows: their
  // null-space components dominate, so most of the residual is gone
  const double before = resid.norm(), after = ((w + dd) * keys - targets).norm();
  CHECK(after < 0.1 * before);
  // running covariance C += KKᵀ, and the next batch uses it
  CHECK((ae.cache().template cast<double>() - keys * keys.transpose()).norm() < tol * keys.squaredNorm());
  const Mat<double> keys2 = free * gaussian<double>(d - 10, 2, 47) * 10.0;
  const Mat<double> resid2 = gaussian<double>(m, 2, 48);
  const Mat<T> delta2 = ae.computeUpdate(keys2.cast<T>(), resid2.cast<T>());
  Mat<double> lhs2 = pOracle * (keys * keys.transpose() + keys2 * keys2.transpose());
  lhs2.diagonal().array() += 10.0;
  const Mat<double> ref2 = lhs2.fullPivLu().solve(pOracle * keys2 * resid2.transpose()).transpose();
  CHECK((delta2.template cast<double>() - ref2).norm() < 10 * tol * ref2.norm());
  CHECK((delta2.template cast<double>() * k0).norm() < tol * ref2.norm() * k0.norm());
}

TEST_CASE("AlphaEdit: threshold and bad input", "[alphaedit]") {
  const Index d = 8;
  wproj::AlphaEdit<double> ae;
  CHECK_THROWS_WITH(ae.computeUpdate(Mat<double>::Ones(d, 1), Mat<double>::Ones(3, 1)), Catch::Contains("setPreservedKeys"));
  // keys of norm² ≈ 1e-3 per sample are below the 2e-2 threshold: everything is null space
  const Mat<double> tiny = gaussian<double>(d, 100, 51) * 0.03;
  ae.setPreservedKeys(tiny);
  CHECK(ae.nullSpace().dim() == d);
  ae.setNullSpaceThreshold(0).setPreservedKeys(tiny);
  CHECK(ae.nullSpace().dim() == 0);
  CHECK_THROWS_AS(ae.update(Mat<double>::Ones(d + 1, 2), Mat<double>::Ones(3, 2)), wproj::InvalidArgument);
  CHECK_THROWS_AS(ae.update(Mat<double>::Ones(d, 2), Mat<double>::Ones(3, 1)), wproj::InvalidArgument);
  Mat<double> bad = Mat<double>::Ones(d, 2);
  bad(0, 0) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(ae.update(bad, Mat<double>::Ones(3, 2)), Catch::Contains("non-finite"));
  CHECK_THROWS_AS(ae.setLambda(-1), wproj::InvalidArgument);
}
