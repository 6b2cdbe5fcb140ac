// Tests: linear probes (logistic regression, linear SVM) and INLP.
#include "editing_data.hpp"

#include <wproj/editing/inlp.hpp>
#include <wproj/editing/linear_classifier.hpp>

using namespace wproj_test;
using wproj::Index;
using wproj::Labels;

namespace {

// Gradient of ½‖w‖² + C Σ log(1 + exp(−y(wᵀx + b))) at (w, b) (intercept unpenalised), in double.
Eigen::VectorXd logisticGradient(const Mat<double>& x, const Eigen::VectorXd& y, const Eigen::VectorXd& w, double b,
                                 double c) {
  Eigen::VectorXd g(w.size() + 1);
  g.head(w.size()) = w;
  g(w.size()) = 0;
  for (Index i = 0; i < x.rows(); ++i) {
    const double m = y(i) * (x.row(i).dot(w) + b);
    const double s = 1.0 / (1.0 + std::exp(m));
    g.head(w.size()) -= c * s * y(i) * x.row(i).transpose();
    g(w.size()) -= c * s * y(i);
  }
  return g;
}

Eigen::VectorXd signs(const Labels& z, int positive) {
  Eigen::VectorXd y(z.size());
  for (Index i = 0; i < z.size(); ++i) y(i) = z(i) == positive ? 1.0 : -1.0;
  return y;
}

}  // namespace

TEMPLATE_TEST_CASE("LogisticRegression: stationary point of the regularised objective", "[classifier]", float, double) {
  using T = TestType;
  const Planted<T> data(300, 12, 2, 1.5, 5);
  Labels z = data.z;
  for (Index i = 0; i < z.size(); ++i) z(i) = z(i) == 0 ? -3 : 7;  // arbitrary label values
  wproj::LogisticRegression<T> lr;
  lr.setC(0.5).fit(data.x, z);
  REQUIRE(lr.info() == Eigen::Success);
  REQUIRE(lr.coefficients().rows() == 1);
  CHECK(lr.classes() == std::vector<int>{-3, 7});
  const Mat<double> xd = data.x.template cast<double>();
  const Eigen::VectorXd w = lr.coefficients().row(0).transpose().template cast<double>();
  const Eigen::VectorXd g = logisticGradient(xd, signs(z, 7), w, double(lr.intercepts()(0)), 0.5);
  const double scale = 0.5 * xd.norm();
  CHECK(g.norm() < (std::is_same<T, float>::value ? 1e-4 : 1e-8) * scale);
  CHECK(lr.score(data.x, z) > 0.7);
  // no intercept: the gradient without the intercept entry vanishes
  wproj::LogisticRegression<T> lr0;
  lr0.setFitIntercept(false).fit(data.x, z);
  CHECK(lr0.intercepts()(0) == T(0));
  const Eigen::VectorXd w0 = lr0.coefficients().row(0).transpose().template cast<double>();
  CHECK(logisticGradient(xd, signs(z, 7), w0, 0.0, 1.0).head(12).norm() < (std::is_same<T, float>::value ? 1e-4 : 1e-8) * xd.norm());
}

TEMPLATE_TEST_CASE("LinearSVM: KKT conditions of the squared-hinge primal, hinge on separable data", "[classifier]", float, double) {
  using T = TestType;
  const Planted<T> data(250, 10, 2, 2.0, 6);
  const double c = 0.3;
  wproj::LinearSVM<T> svm;
  svm.setC(c).setTolerance(1e-9).setMaxIterations(20000).fit(data.x, data.z);
  REQUIRE(svm.info() == Eigen::Success);
  // ∇ [½‖w‖² + C Σ max(0, 1 − y wᵀx)²] = w − 2C Σ_{margin<1} (1 − y wᵀx) y x
  const Mat<double> xd = data.x.template cast<double>();
  const Eigen::VectorXd y = signs(data.z, 1);
  const Eigen::VectorXd w = svm.coefficients().row(0).transpose().template cast<double>();
  Eigen::VectorXd g = w;
  for (Index i = 0; i < xd.rows(); ++i) {
    const double m = y(i) * xd.row(i).dot(w);
    if (m < 1) g -= 2 * c * (1 - m) * y(i) * xd.row(i).transpose();
  }
  CHECK(g.norm() < (std::is_same<T, float>::value ? 1e-3 : 1e-6) * (1 + w.norm()));
  CHECK(svm.intercepts()(0) == T(0));  // no intercept by default (INLP's LinearSVC)

  // hinge loss on linearly separable data (through the origin): perfect training accuracy
  Mat<T> sep = data.x;
  Labels zs(sep.rows());
  const Vec<T> u = randomOrthonormal<T>(10, 1, 8).col(0);
  for (Index i = 0; i < sep.rows(); ++i) {
    zs(i) = i % 2;
    const T proj = sep.row(i).dot(u);
    sep.row(i) += (T(zs(i) ? 1 : -1) * T(1.0) - proj) * u.transpose();  // margin ±1 along u
  }
  wproj::LinearSVM<T> hinge;
  hinge.setLoss(wproj::SVMLoss::Hinge).setC(100).setFitIntercept(true).fit(sep, zs);
  CHECK(hinge.score(sep, zs) == 1.0);
}

TEMPLATE_TEST_CASE("Linear classifiers: multiclass one-vs-rest, row-major maps, balanced weights", "[classifier]", float, double) {
  using T = TestType;
  const Planted<T> data(360, 8, 3, 3.0, 9);
  wproj::LinearSVM<T> svm;
  svm.setFitIntercept(true).fit(data.x, data.z);
  REQUIRE(svm.coefficients().rows() == 3);
  CHECK(svm.score(data.x, data.z) > 0.85);
  const RowMajorMat<T> xr = data.x;
  Eigen::Map<const RowMajorMat<T>> xm(xr.data(), xr.rows(), xr.cols());
  wproj::LinearSVM<T> svmMap;
  svmMap.setFitIntercept(true).fit(xm, data.z);
  CHECK((svmMap.coefficients() - svm.coefficients()).norm() <= T(1e-5) * svm.coefficients().norm());
  wproj::LogisticRegression<T> lr;
  lr.setBalanced(true).fit(xm, data.z);
  CHECK(lr.coefficients().rows() == 3);
  CHECK(lr.score(data.x, data.z) > 0.85);
  const Labels p = lr.predict(data.x);
  CHECK(p.minCoeff() >= 0);
  CHECK(p.maxCoeff() <= 2);
}

TEST_CASE("Linear classifiers: bad input", "[classifier]") {
  const Mat<double> x = gaussian<double>(10, 3, 1);
  Labels one = Labels::Constant(10, 4);
  wproj::LinearSVM<double> svm;
  CHECK_THROWS_WITH(svm.fit(x, one), Catch::Contains("at least two distinct classes"));
  wproj::LogisticRegression<double> lr;
  CHECK_THROWS_WITH(lr.fit(x, Labels::Zero(9)), Catch::Contains("labels"));
  Mat<double> bad = x;
  bad(2, 2) = std::numeric_limits<double>::quiet_NaN();
  Labels z(10);
  z << 0, 1, 0, 1, 0, 1, 0, 1, 0, 1;
  CHECK_THROWS_WITH(lr.fit(bad, z), Catch::Contains("non-finite"));
  CHECK_THROWS_AS(svm.setC(0), wproj::InvalidArgument);
  CHECK_THROWS_AS(lr.setC(-1), wproj::InvalidArgument);
  svm.fit(x, z);
  CHECK_THROWS_AS(svm.predict(Mat<double>(2, 4)), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("INLP: projector, classifiers in the removed space, probe at majority", "[inlp]", float, double) {
  using T = TestType;
  const Index d = 24;
  const Planted<T> train(800, d, 2, 2.0, 21, 2.0), test(800, d, 2, 2.0, 22, 2.0);
  wproj::InlpEstimator<T> inlp;
  inlp.setIterations(10).setMinAccuracy(0.56);  // stop once the attribute is no longer decodable on dev
  inlp.fit(train.x, train.z, test.x, test.z);
  REQUIRE(inlp.classifiersKept() >= 1);
  CHECK(inlp.classifiersKept() < 10);
  CHECK(inlp.accuracies().back() < 0.56);
  CHECK(inlp.accuracies().front() > 0.8);  // the attribute was decodable

  const Mat<T> p = inlp.projector();
  const T tol = T(200) * std::numeric_limits<T>::epsilon();
  CHECK((p * p - p).norm() < tol * T(d));                                // P² = P
  CHECK((p - p.transpose()).norm() < tol * T(d));                        // orthogonal projector
  CHECK(inlp.subspace().dim() + inlp.nullSpace().dim() == d);
  const Mat<T> xp = inlp.project(train.x);
  for (const Mat<T>& w : inlp.classifierWeights()) {                    // w_i · Px = 0
    CHECK((w * p).norm() < tol * T(10) * w.norm());
    CHECK((xp * w.transpose()).cwiseAbs().maxCoeff() < T(1e-3) * train.x.cwiseAbs().maxCoeff() * w.norm());
  }
  // a probe retrained on the projected data is at majority accuracy on held-out data
  wproj::LogisticRegression<T> probe;
  probe.fit(xp, train.z);
  const double majority = wproj::LabelEncoding(test.z).majorityRate();
  CHECK(probe.score(inlp.project(test.x), test.z) < majority + 0.06);
  // while the other (independent) label is still decodable
  wproj::LogisticRegression<T> mainTask;
  mainTask.fit(xp, train.other);
  CHECK(mainTask.score(inlp.project(test.x), test.other) > 0.8);
}

TEST_CASE("INLP: multiclass with logistic regression, minimum accuracy, bad input", "[inlp]") {
  const Index d = 16;
  const Planted<double> train(600, d, 3, 2.5, 31), test(600, d, 3, 2.5, 32);
  wproj::LogisticRegression<double> lr;
  lr.setC(1.0);
  wproj::InlpEstimator<double, wproj::LogisticRegression<double>> inlp(lr);
  inlp.setIterations(6).setMinAccuracy(0.45);
  inlp.fit(train.x, train.z, test.x, test.z);
  // every kept classifier reached the minimum; stopping happened at the first one that did not
  for (Index i = 0; i < inlp.classifiersKept(); ++i) CHECK(inlp.accuracies()[std::size_t(i)] >= 0.45);
  CHECK(inlp.classifierWeights().front().rows() == 3);  // one-vs-rest rows
  const Mat<double> xp = inlp.project(test.x);
  wproj::LogisticRegression<double> probe;
  probe.fit(inlp.project(train.x), train.z);
  CHECK(probe.score(xp, test.z) < wproj::LabelEncoding(test.z).majorityRate() + 0.08);
  // training-set accuracy variant runs as well
  wproj::InlpEstimator<double> plain;
  plain.setIterations(2).fit(train.x, train.z);
  CHECK(plain.classifiersKept() == 2);

  CHECK_THROWS_WITH(plain.fit(train.x, Labels::Zero(train.x.rows())), Catch::Contains("two distinct classes"));
  CHECK_THROWS_AS(plain.fit(train.x, Labels::Zero(5)), wproj::InvalidArgument);
  CHECK_THROWS_AS(plain.fit(train.x, train.z, Mat<double>(4, d + 1), Labels::Zero(4)), wproj::InvalidArgument);
  CHECK_THROWS_AS(plain.setMinAccuracy(1.5), wproj::InvalidArgument);
  Mat<double> bad = train.x;
  bad(0, 0) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(plain.fit(bad, train.z), Catch::Contains("non-finite"));
}
