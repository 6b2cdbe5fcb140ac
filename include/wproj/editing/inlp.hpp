// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// INLP — Iterative Null-space Projection (Ravfogel, Elazar, Gonen, Twiton, Goldberg, "Null It
/// Out: Guarding Protected Attributes by Iterative Nullspace Projection", ACL 2020).

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "../linalg/nullspace.hpp"
#include "../linalg/subspace.hpp"
#include "linear_classifier.hpp"

#include <Eigen/Core>

#include <cmath>
#include <string>
#include <vector>

namespace wproj {

/// Iteratively removes the directions linear classifiers use to predict a protected attribute.
///
///   X' = X; repeat n times: fit a linear classifier (weights w_i, c_i×d) on X' for z;
///   if its accuracy (on the dev set when given, else on the training set) < minAccuracy: stop;
///   keep w_i; P = I − P_R(Σ_i P_R(w_i)) — the projector onto ∩ N(w_i) (Ben-Israel,
///   `intersectNullSpaces`); X' = X·P (always reprojecting the ORIGINAL X).
///
/// `subspace()` is the removed subspace span{rows of all w_i} = (∩ N(w_i))^⊥, which
/// `WeightEditor` projects out of a weight; `nullSpace()` is what P projects onto.
/// The classifier is a prototype copied and refitted each iteration: `LinearSVM` (the paper's
/// LinearSVC without intercept, the default) or `LogisticRegression`, or any class with
/// `fit(X, labels)`, `coefficients()` and `score(X, labels)`. Multiclass attributes use the
/// classifier's one-vs-rest rows. Paper defaults: 35 iterations for word vectors, 300 for BERT.
/// Iteration stops early when a classifier is below minAccuracy or has zero weights (its
/// refits would be identical: the classifiers are deterministic).
template <typename Scalar_, typename Classifier = LinearSVM<Scalar_>>
class InlpEstimator {
 public:
  /// Floating-point type of the data and the subspace.
  using Scalar = Scalar_;
  /// Dense matrix type of data and projectors.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// An estimator with a default-constructed classifier prototype.
  InlpEstimator() = default;
  /// An estimator refitting copies of `prototype`.
  explicit InlpEstimator(const Classifier& prototype) : m_prototype(prototype) {}

  /// Maximum number of classifiers (default 35).
  InlpEstimator& setIterations(Index n) {
    requireArg(n >= 1, "InlpEstimator::setIterations", "n", n, ">= 1");
    m_iterations = n;
    return *this;
  }
  /// Accuracy a classifier needs for its directions to be removed (default 0: always remove).
  InlpEstimator& setMinAccuracy(double acc) {
    requireArg(std::isfinite(acc) && acc >= 0 && acc <= 1, "InlpEstimator::setMinAccuracy", "acc", acc, "in [0, 1]");
    m_minAccuracy = acc;
    return *this;
  }
  /// The classifier prototype (its settings are reused for every iteration).
  InlpEstimator& setClassifier(const Classifier& prototype) {
    m_prototype = prototype;
    return *this;
  }
  /// The classifier prototype, to adjust its settings in place.
  Classifier& classifier() { return m_prototype; }
  /// Runs INLP on samples split over processes: each process passes its own rows (and dev rows)
  /// to fit(); the classifiers are fitted on all rows through `r` (the classifier must have
  /// `setSampleReduction`, as `LogisticRegression` has; `LinearSVM`'s coordinate descent visits
  /// samples one by one and cannot be split), accuracies and the majority rate are those of all
  /// rows, and every process obtains the same subspace: the serial fit on all rows to rounding.
  /// Every process must call fit() together; see `wproj::mpi::fitInlp`.
  InlpEstimator& setSampleReduction(const SampleReduction& r) {
    setReductionOf(m_prototype, r, 0);
    m_reduction = r;
    return *this;
  }

  /// Runs INLP on x (n×d, rows = samples) with labels z; accuracies are measured on x.
  template <typename D>
  InlpEstimator& fit(const Eigen::MatrixBase<D>& x, const Eigen::Ref<const Labels>& labels) {
    return run(x, labels, nullptr, nullptr);
  }

  /// Runs INLP on a training set, measuring each classifier's accuracy on a dev set.
  template <typename D, typename DD>
  InlpEstimator& fit(const Eigen::MatrixBase<D>& x, const Eigen::Ref<const Labels>& labels,
                     const Eigen::MatrixBase<DD>& xDev, const Eigen::Ref<const Labels>& labelsDev) {
    const char* where = "InlpEstimator::fit";
    checkShape(xDev, -1, x.cols(), where, "xDev");
    checkShape(labelsDev, xDev.rows(), 1, where, "labelsDev");
    checkNonEmpty(xDev, where, "xDev");
    checkFinite(xDev, where, "xDev");
    const Matrix dev = xDev.template cast<Scalar>();
    return run(x, labels, &dev, &labelsDev);
  }

  /// The removed subspace (span of every kept classifier's weight rows) of R^d.
  const Subspace<Scalar>& subspace() const { WPROJ_ASSERT(m_fitted); return m_removed; }
  /// ∩ N(w_i): the subspace P projects onto.
  const Subspace<Scalar>& nullSpace() const { WPROJ_ASSERT(m_fitted); return m_null; }
  /// X·P for rows-as-samples data (the debiased representations).
  template <typename D>
  Matrix project(const Eigen::MatrixBase<D>& x) const {
    WPROJ_ASSERT(m_fitted);
    return m_removed.projectOut(x.template cast<Scalar>(), Side::Right);
  }
  /// P = I − P_R(Σ P_R(w_i)) (d×d, formed on request).
  Matrix projector() const { return nullSpace().projector(); }
  /// The weight rows w_i of every kept classifier, in order.
  const std::vector<Matrix>& classifierWeights() const { WPROJ_ASSERT(m_fitted); return m_weights; }
  /// Accuracy of every classifier trained (the last may be the one that stopped the loop).
  const std::vector<double>& accuracies() const { WPROJ_ASSERT(m_fitted); return m_accuracies; }
  /// Number of classifiers kept.
  Index classifiersKept() const { WPROJ_ASSERT(m_fitted); return Index(m_weights.size()); }
  /// Accuracy of always predicting the training majority class (the target after erasure).
  double majorityAccuracy() const { WPROJ_ASSERT(m_fitted); return m_majority; }

 private:
  template <typename D>
  InlpEstimator& run(const Eigen::MatrixBase<D>& x, const Eigen::Ref<const Labels>& labels, const Matrix* dev,
                     const Eigen::Ref<const Labels>* labelsDev) {
    const char* where = "InlpEstimator::fit";
    if (m_reduction.active()) requireArg(x.cols() >= 1, where, "x.cols()", x.cols(), ">= 1");
    else checkNonEmpty(x, where, "x");
    checkShape(labels, x.rows(), 1, where, "labels");
    checkFinite(x, where, "x");
    const LabelEncoding enc(labels, m_reduction);
    requireArg(enc.numClasses() >= 2, where, "labels", "one class (" + std::to_string(enc.classes.front()) + ")",
               "at least two distinct classes");
    m_majority = enc.majorityRate();
    const Index d = x.cols();
    const Matrix x0 = x.template cast<Scalar>();
    Matrix xp = x0;
    Matrix devp;
    if (dev) devp = *dev;
    m_weights.clear();
    m_accuracies.clear();
    m_removed = Subspace<Scalar>(d);
    m_null = Subspace<Scalar>::fromOrthonormal(Matrix::Identity(d, d));
    for (Index it = 0; it < m_iterations; ++it) {
      Classifier clf = m_prototype;
      clf.fit(xp, labels);
      const double acc = dev ? score(clf, devp, *labelsDev) : score(clf, xp, labels);
      m_accuracies.push_back(acc);
      const Matrix w = clf.coefficients().template cast<Scalar>();
      if (acc < m_minAccuracy || !(w.cwiseAbs().maxCoeff() > Scalar(0))) break;
      m_weights.push_back(w);
      m_null = intersectNullSpaces<Scalar>(m_weights);
      m_removed = m_null.complement();
      if (x0.rows() > 0) xp = m_removed.projectOut(x0, Side::Right);  // X·P of the original data
      if (dev && dev->rows() > 0) devp = m_removed.projectOut(*dev, Side::Right);
      if (m_removed.dim() == d) break;  // nothing left to remove
    }
    m_fitted = true;
    return *this;
  }

  // Accuracy of `clf` on the rows of x (of every process's rows under a reduction).
  double score(const Classifier& clf, const Matrix& x, const Eigen::Ref<const Labels>& labels) const {
    if (!m_reduction.active()) return clf.score(x, labels);
    double counts[2] = {0.0, double(x.rows())};
    if (x.rows() > 0) counts[0] = double((clf.predict(x).array() == labels.array()).count());
    m_reduction.sumInPlace(counts, 2);
    return counts[1] > 0 ? counts[0] / counts[1] : 0.0;
  }
  template <typename C>
  static auto setReductionOf(C& c, const SampleReduction& r, int) -> decltype(c.setSampleReduction(r), void()) {
    c.setSampleReduction(r);
  }
  template <typename C>
  static void setReductionOf(C&, const SampleReduction& r, long) {
    requireArg(!r.active(), "InlpEstimator::setSampleReduction", "classifier", "one without setSampleReduction",
               "a classifier that fits samples split over processes (LogisticRegression)");
  }

  Classifier m_prototype;
  SampleReduction m_reduction;
  Index m_iterations = 35;
  double m_minAccuracy = 0.0;
  double m_majority = 0.0;
  bool m_fitted = false;
  std::vector<Matrix> m_weights;
  std::vector<double> m_accuracies;
  Subspace<Scalar> m_removed, m_null;
};

}  // namespace wproj
