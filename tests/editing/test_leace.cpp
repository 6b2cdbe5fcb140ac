// Tests: LEACE (closed-form linear concept erasure), streaming fitter and eraser properties.
#include "editing_data.hpp"

#include <wproj/editing/leace.hpp>
#include <wproj/editing/linear_classifier.hpp>

#include <tuple>

using namespace wproj_test;
using wproj::Index;
using wproj::Labels;

namespace {

// Largest deviation of any class mean from the overall mean (rows of x, labels z), in double.
template <typename T>
double classMeanGap(const Mat<T>& x, const Labels& z) {
  const Mat<double> xd = x.template cast<double>();
  const Eigen::RowVectorXd mu = xd.colwise().mean();
  double gap = 0;
  for (int c = z.minCoeff(); c <= z.maxCoeff(); ++c) {
    Eigen::RowVectorXd m = Eigen::RowVectorXd::Zero(x.cols());
    Index count = 0;
    for (Index i = 0; i < x.rows(); ++i)
      if (z(i) == c) { m += xd.row(i); ++count; }
    if (count > 0) gap = std::max(gap, (m / double(count) - mu).norm());
  }
  return gap;
}

template <typename T>
Mat<T> anisotropic(const Planted<T>& p, std::uint64_t seed) {
  // correlated, anisotropic features: x ← x·A with a fixed random A
  const Mat<T> a = gaussian<T>(p.x.cols(), p.x.cols(), seed) * T(0.5);
  return p.x * (a + Mat<T>::Identity(p.x.cols(), p.x.cols()));
}

}  // namespace

TEMPLATE_TEST_CASE("LEACE: class means equal, idempotent, low-rank, mean preserved, probe at majority", "[leace]", float, double) {
  using T = TestType;
  const Index d = 12;
  const Planted<T> data(600, d, 3, 1.5, 51, 1.5);
  const Mat<T> x = anisotropic(data, 52);
  const double xs = x.cwiseAbs().maxCoeff();
  const double tol = (std::is_same<T, float>::value ? 2e-4 : 1e-10) * xs;

  wproj::LeaceFitter<T> fitter(d, 3);
  fitter.setTraceConstraint(false);
  fitter.update(x.topRows(100), data.z.head(100)).update(x.middleRows(100, 350), data.z.segment(100, 350));
  fitter.update(x.bottomRows(150), data.z.tail(150));
  const wproj::LeaceEraser<T> e = fitter.eraser();
  REQUIRE(e.rank() >= 1);
  CHECK(e.rank() <= 2);  // one-hot of 3 classes: centred cross-covariance has rank ≤ 2
  CHECK(classMeanGap(x, data.z) > 0.5);
  const Mat<T> r = e.erase(x);
  CHECK(classMeanGap(r, data.z) < tol);                                 // class means equal
  CHECK((e.erase(r) - r).cwiseAbs().maxCoeff() < tol);                  // idempotent
  Eigen::JacobiSVD<Mat<double>> svd((x - r).template cast<double>());   // rank(X − r(X)) ≤ k
  CHECK(svd.singularValues()(e.rank()) < tol * 10);
  CHECK(((r.colwise().mean() - x.colwise().mean()).template cast<double>()).norm() < tol);  // mean preserved
  // P = I − LRᵀ is a projection; erase(x) = Px + (I − P)μ
  const Mat<T> p = e.projector();
  CHECK((p * p - p).norm() < T(1e3) * std::numeric_limits<T>::epsilon() * p.norm());
  Mat<T> viaP = x * p.transpose();
  viaP.rowwise() += (e.bias().transpose() * (Mat<T>::Identity(d, d) - p).transpose());
  CHECK((viaP - r).cwiseAbs().maxCoeff() < tol * 10);

  // probes retrained on the erased data learn nothing (coefficients ~0, majority accuracy)
  wproj::LogisticRegression<T> probe;
  probe.fit(r, data.z);
  CHECK(probe.coefficients().norm() < T(std::is_same<T, float>::value ? 1e-2 : 1e-5));
  CHECK(probe.score(r, data.z) <= wproj::LabelEncoding(data.z).majorityRate() + 0.02);
  // the independent label survives
  wproj::LogisticRegression<T> other;
  other.fit(r, data.other);
  CHECK(other.score(r, data.other) > 0.8);
}

TEMPLATE_TEST_CASE("LEACE: streaming equals one-shot; variants; trace never grows", "[leace]", float, double) {
  using T = TestType;
  const Index d = 10;
  const Planted<T> data(400, d, 2, 2.0, 61);
  const Mat<T> x = anisotropic(data, 62);
  const T tol = T(std::is_same<T, float>::value ? 1e-3 : 1e-9);

  wproj::LeaceFitter<T> batched(d, 2), whole(d, 2);
  for (Index s = 0; s < 400; s += 64) {
    const Index m = std::min<Index>(64, 400 - s);
    batched.update(x.middleRows(s, m), data.z.segment(s, m));
  }
  whole.update(x, data.z);
  const wproj::LeaceEraser<T> eb = batched.eraser(), ew = whole.eraser();
  CHECK((eb.projector() - ew.projector()).norm() < tol * T(d));
  CHECK(eb.rank() == 1);
  // the one-shot helper with the default trace constraint: the trace of the covariance never grows
  const wproj::LeaceEraser<T> ed = wproj::LeaceFitter<T>::fit(x, data.z, 2);
  const Mat<T> sigma = whole.sigmaXX();
  const Mat<T> pd = ed.projector();
  CHECK((pd * sigma * pd.transpose()).trace() <= sigma.trace() * (T(1) + tol));

  // a binary concept as a single 0/1 column gives the same eraser as one-hot labels
  wproj::LeaceFitter<T> column(d, 1);
  column.update(x, data.z.template cast<T>());
  CHECK((column.eraser().projector() - ew.projector()).norm() < tol * T(d));

  // orthogonal variant: a symmetric projector, means still equal
  wproj::LeaceFitter<T> orth(d, 2);
  orth.setMethod(wproj::LeaceMethod::Orthogonal).update(x, data.z);
  const wproj::LeaceEraser<T> eo = orth.eraser();
  const Mat<T> po = eo.projector();
  CHECK((po - po.transpose()).norm() < tol);
  CHECK((po * po - po).norm() < tol);
  CHECK(classMeanGap(eo.erase(x), data.z) < double(tol) * 10 * double(x.cwiseAbs().maxCoeff()));

  // linear (non-affine) variant: r(x) = Px, zero bias, r(0) = 0
  wproj::LeaceFitter<T> lin(d, 2);
  lin.setAffine(false).setShrinkage(false).update(x, data.z);
  const wproj::LeaceEraser<T> el = lin.eraser();
  CHECK(el.bias().norm() == T(0));
  CHECK(el.erase(Mat<T>::Zero(1, d)).norm() == T(0));
  CHECK((el.erase(x) - x * el.projector().transpose()).norm() < tol * x.norm());

  // row-major map input
  const RowMajorMat<T> xr = x;
  Eigen::Map<const RowMajorMat<T>> xm(xr.data(), xr.rows(), d);
  wproj::LeaceFitter<T> mapped(d, 2);
  mapped.update(xm, data.z);
  CHECK((mapped.eraser().projector() - ew.projector()).norm() < tol * T(d));
}

namespace {

/// LEACE in closed form, computed in double from the raw samples without any wproj statistic:
/// Σxx (Bessel, or the shrunk MLE covariance S* = αS + (1 − α)(tr S/p)I with
/// α = 1 − (tr(S)²/n)/(‖S‖²_F − tr(S)²/p)), Σxz with one-hot z, W = Σxx^{-1/2} and W⁺ = Σxx^{1/2}
/// from Σxx's own eigendecomposition, the orthogonal projector onto the column space of WΣxz as
/// M(MᵀM)⁻¹Mᵀ (M = WΣxz without its last, dependent, column) and P = I − W⁺P_M W.
struct LeaceOracle {
  Mat<double> p, orthogonal;
  Vec<double> mean;
};

template <typename T>
LeaceOracle leaceOracle(const Mat<T>& xt, const wproj::Labels& z, int classes, bool shrink) {
  const Mat<double> x = xt.template cast<double>();
  const Index n = x.rows(), d = x.cols();
  Mat<double> onehot = Mat<double>::Zero(n, classes);
  for (Index i = 0; i < n; ++i) onehot(i, z(i)) = 1.0;
  LeaceOracle o;
  o.mean = x.colwise().mean().transpose();
  const Mat<double> xc = x.rowwise() - o.mean.transpose();
  const Mat<double> zc = onehot.rowwise() - onehot.colwise().mean();
  Mat<double> sxx;
  if (shrink) {
    const Mat<double> s = xc.transpose() * xc / double(n);
    const double tr = s.trace(), alpha = std::clamp(1.0 - (tr * tr / double(n)) / (s.squaredNorm() - tr * tr / double(d)), 0.0, 1.0);
    sxx = alpha * s + (1.0 - alpha) * tr / double(d) * Mat<double>::Identity(d, d);
  } else {
    sxx = xc.transpose() * xc / double(n - 1);
  }
  const Mat<double> sxz = xc.transpose() * zc / double(n - 1);
  Eigen::SelfAdjointEigenSolver<Mat<double>> eig(sxx);
  const Mat<double>& v = eig.eigenvectors();
  const Vec<double> l = eig.eigenvalues();
  const Mat<double> w = v * l.cwiseSqrt().cwiseInverse().asDiagonal() * v.transpose();
  const Mat<double> wPlus = v * l.cwiseSqrt().asDiagonal() * v.transpose();
  const Mat<double> m = w * sxz.leftCols(classes - 1);
  const Mat<double> pm = m * (m.transpose() * m).ldlt().solve(m.transpose());
  o.p = Mat<double>::Identity(d, d) - wPlus * pm * w;
  const Mat<double> mo = sxz.leftCols(classes - 1);
  o.orthogonal = Mat<double>::Identity(d, d) - mo * (mo.transpose() * mo).ldlt().solve(mo.transpose());
  return o;
}

}  // namespace

TEMPLATE_TEST_CASE("LEACE equals the closed form I − W⁺P_{WΣxz}W, with and without shrinkage", "[leace]", float, double) {
  using T = TestType;
  const Index d = 12;
  const int classes = 3;
  const Planted<T> data(500, d, classes, 1.5, 81);
  const Mat<T> x = anisotropic(data, 82);
  const double tol = std::is_same<T, float>::value ? 1e-3 : 1e-9;
  for (const bool shrink : {false, true}) {
    CAPTURE(shrink);
    const LeaceOracle o = leaceOracle(x, data.z, classes, shrink);
    // The data is anisotropic enough that the oblique and the orthogonal erasers differ.
    REQUIRE((o.p - o.orthogonal).norm() > 0.1);
    wproj::LeaceFitter<T> fitter(d, classes);
    fitter.setShrinkage(shrink).setTraceConstraint(false).update(x, data.z);
    const wproj::LeaceEraser<T> e = fitter.eraser();
    CHECK(e.rank() == classes - 1);
    const Mat<double> p = e.projector().template cast<double>();
    CHECK((p - o.p).norm() <= tol * o.p.norm());
    // Eraser: x ↦ x − W⁺P_M W(x − μ), on the fitted samples and on fresh ones.
    const Mat<T> fresh = gaussian<T>(40, d, 83) * T(3);
    for (const Mat<T>* pts : {&x, &fresh}) {
      const Mat<double> xd = pts->template cast<double>();
      const Mat<double> expect =
          xd - (xd.rowwise() - o.mean.transpose()) * (Mat<double>::Identity(d, d) - o.p).transpose();
      CHECK((e.erase(*pts).template cast<double>() - expect).norm() <= tol * xd.norm());
    }
    // The orthogonal eraser is the other closed form, and does not pass for LEACE's.
    wproj::LeaceFitter<T> orth(d, classes);
    orth.setMethod(wproj::LeaceMethod::Orthogonal).setShrinkage(shrink).setTraceConstraint(false).update(x, data.z);
    const Mat<double> po = orth.eraser().projector().template cast<double>();
    CHECK((po - o.orthogonal).norm() <= tol * o.orthogonal.norm());
    CHECK((po - o.p).norm() > 100 * tol * o.p.norm());
  }
}

TEST_CASE("LEACE: bad input", "[leace]") {
  const Index d = 5;
  const Mat<double> x = gaussian<double>(20, d, 71);
  wproj::LeaceFitter<double> f(d, 2);
  CHECK_THROWS_WITH(f.eraser(), Catch::Contains(">= 2"));
  CHECK_THROWS_AS(f.update(x, Labels::Zero(19)), wproj::InvalidArgument);
  CHECK_THROWS_AS(f.update(Mat<double>(20, d + 1), Labels::Zero(20)), wproj::InvalidArgument);
  CHECK_THROWS_WITH(f.update(x, Labels::Constant(20, 2)), Catch::Contains("class index"));
  f.update(x, Labels::Zero(20));  // one class only
  CHECK_THROWS_WITH(f.eraser(), Catch::Contains("at least two classes"));
  Mat<double> bad = x;
  bad(1, 1) = std::numeric_limits<double>::quiet_NaN();
  wproj::LeaceFitter<double> g(d, 2);
  CHECK_THROWS_WITH(g.update(bad, Labels::Zero(20)), Catch::Contains("non-finite"));
  CHECK_THROWS_AS(g.setSvdTolerance(-1), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::LeaceFitter<double>(d, 0), wproj::InvalidArgument);
  const wproj::LeaceEraser<double> e = wproj::LeaceFitter<double>::fit(x, (Labels(20) << Labels::Zero(10), Labels::Ones(10)).finished(), 2);
  CHECK_THROWS_AS(e.erase(Mat<double>(3, d + 1)), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("LEACE: statistics and eraser are the same to the bit for any OpenBLAS thread count", "[leace]",
                   float, double) {
  using T = TestType;
  // 8500 rows of width 256: two row blocks run on wproj's threads (with OpenBLAS); 500: one.
  const Index n = 9000, d = 256;
  Mat<double> xd = gaussian<double>(n, d, 81);
  Labels labels(n);
  for (Index i = 0; i < n; ++i) {
    labels(i) = int((i * 7919) % 3 == 0);
    xd.row(i).head(4).array() += 2.0 * labels(i);
  }
  const RowMajorMat<T> x = xd.cast<T>();
  auto fit = [&](int threads) {
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
    const int before = openblas_get_num_threads();
    openblas_set_num_threads(threads);
#else
    (void)threads;
#endif
    wproj::LeaceFitter<T> f(d, 2);
    f.update(x.topRows(8500), labels.head(8500)).update(x.bottomRows(500), labels.tail(500));
    auto e = f.eraser();
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
    openblas_set_num_threads(before);
#endif
    return std::make_tuple(f.statistics().scatterX(), Mat<T>(e.left()), Mat<T>(e.right()));
  };
  const auto one = fit(1);
  for (int threads : {2, 3}) {
    INFO("OpenBLAS threads " << threads);
    const auto many = fit(threads);
    CHECK(std::get<0>(many) == std::get<0>(one));
    CHECK(std::get<1>(many) == std::get<1>(one));
    CHECK(std::get<2>(many) == std::get<2>(one));
  }
  // And the eraser still erases: the class means agree after erasure.
  const Mat<T> erased = wproj::LeaceEraser<T>(std::get<1>(one), std::get<2>(one), Mat<T>(x).colwise().mean().transpose(), true)
                            .erase(Mat<T>(x));
  Eigen::Matrix<double, 1, Eigen::Dynamic> m0 = Eigen::RowVectorXd::Zero(d), m1 = m0;
  Index c0 = 0, c1 = 0;
  for (Index i = 0; i < n; ++i) {
    if (labels(i)) {
      m1 += erased.row(i).template cast<double>();
      ++c1;
    } else {
      m0 += erased.row(i).template cast<double>();
      ++c0;
    }
  }
  CHECK((m0 / double(c0) - m1 / double(c1)).norm() < 1e-2);
}
