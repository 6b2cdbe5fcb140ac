// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Linear probes for concept erasure: L2-regularised logistic regression (Newton's method with
/// a backtracking line search) and a linear support-vector machine (dual coordinate descent,
/// Hsieh et al., ICML 2008 — the LIBLINEAR / scikit-learn `LinearSVC` solver). Multiclass
/// problems are solved one-vs-rest. Samples are the ROWS of X.
///
/// These probes are what INLP (Ravfogel et al. 2020) trains at every iteration, and what one
/// retrains after an erasure to check that a concept is no longer linearly decodable.

#include "../core/config.hpp"
#include "../core/random.hpp"
#include "../core/reduction.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace wproj {

/// Integer class labels, one per sample.
using Labels = Eigen::Matrix<int, Eigen::Dynamic, 1>;

/// The classes present in `labels` (sorted) and, per sample, the index of its class.
struct LabelEncoding {
  std::vector<int> classes;          ///< distinct labels, ascending
  std::vector<Index> index;          ///< class index of each sample
  std::vector<Index> counts;         ///< samples per class
  Index total = 0;                   ///< number of samples (of every process, under a reduction)
  /// Encodes `labels`; under an active `reduction` the classes, counts and total are those of the
  /// samples of every process.
  explicit LabelEncoding(const Eigen::Ref<const Labels>& labels, const SampleReduction& reduction = SampleReduction()) {
    classes.assign(labels.data(), labels.data() + labels.size());
    std::sort(classes.begin(), classes.end());
    classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
    if (reduction.unite) reduction.unite(classes);
    index.resize(static_cast<std::size_t>(labels.size()));
    counts.assign(classes.size(), 0);
    for (Index i = 0; i < labels.size(); ++i) {
      const auto it = std::lower_bound(classes.begin(), classes.end(), labels(i));
      index[static_cast<std::size_t>(i)] = Index(it - classes.begin());
      ++counts[static_cast<std::size_t>(it - classes.begin())];
    }
    total = labels.size();
    if (reduction.active()) {
      std::vector<double> c(counts.begin(), counts.end());
      c.push_back(double(total));
      reduction.sumInPlace(c.data(), Index(c.size()));
      for (std::size_t j = 0; j < counts.size(); ++j) counts[j] = Index(c[j]);
      total = Index(c.back());
    }
  }
  /// Number of distinct classes.
  Index numClasses() const { return Index(classes.size()); }
  /// Accuracy of always predicting the most frequent class.
  double majorityRate() const {
    if (total == 0) return 0.0;
    return double(*std::max_element(counts.begin(), counts.end())) / double(total);
  }
};

/// Shared state and prediction of a fitted linear classifier: one weight row per one-vs-rest
/// problem (a single row for two classes, whose positive class is the larger label).
template <typename Scalar_>
class LinearClassifierBase {
 public:
  /// Floating-point type of the weights and inputs.
  using Scalar = Scalar_;
  /// Dense matrix type of inputs and weight rows.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type of intercepts.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// Weight rows w_j (c×d): c = 1 for two classes, else one row per class.
  const Matrix& coefficients() const { WPROJ_ASSERT(m_fitted); return m_coef; }
  /// Intercepts b_j (c); zero when no intercept is fitted.
  const Vector& intercepts() const { WPROJ_ASSERT(m_fitted); return m_intercept; }
  /// The classes seen in training, ascending.
  const std::vector<int>& classes() const { WPROJ_ASSERT(m_fitted); return m_classes; }
  /// Success, or NoConvergence when some one-vs-rest problem hit the iteration cap.
  Eigen::ComputationInfo info() const { WPROJ_ASSERT(m_fitted); return m_info; }
  /// True once the classifier has been fitted.
  bool fitted() const { return m_fitted; }

  /// Decision values XWᵀ + b (n×c).
  template <typename Derived>
  Matrix decisionFunction(const Eigen::MatrixBase<Derived>& x) const {
    WPROJ_ASSERT(m_fitted);
    checkShape(x, -1, m_coef.cols(), "LinearClassifier::decisionFunction", "x");
    Matrix s = x.template cast<Scalar>() * m_coef.transpose();
    s.rowwise() += m_intercept.transpose();
    return s;
  }

  /// Predicted labels of the rows of x.
  template <typename Derived>
  Labels predict(const Eigen::MatrixBase<Derived>& x) const {
    const Matrix s = decisionFunction(x);
    Labels out(x.rows());
    for (Index i = 0; i < x.rows(); ++i) {
      if (m_coef.rows() == 1) {
        out(i) = s(i, 0) > Scalar(0) ? m_classes[1] : m_classes[0];
      } else {
        Index j = 0;
        s.row(i).maxCoeff(&j);
        out(i) = m_classes[static_cast<std::size_t>(j)];
      }
    }
    return out;
  }

  /// Fraction of rows of x whose predicted label equals `labels`.
  template <typename Derived>
  double score(const Eigen::MatrixBase<Derived>& x, const Eigen::Ref<const Labels>& labels) const {
    checkShape(labels, x.rows(), 1, "LinearClassifier::score", "labels");
    if (x.rows() == 0) return 0.0;
    const Labels p = predict(x);
    return double((p.array() == labels.array()).count()) / double(x.rows());
  }

 protected:
  /// Checks the inputs of fit() and returns the label encoding (of every process's samples under
  /// an active reduction, where this process may hold no rows).
  template <typename Derived>
  LabelEncoding prepare(const Eigen::MatrixBase<Derived>& x, const Eigen::Ref<const Labels>& labels,
                        const char* where) const {
    if (m_reduction.active()) requireArg(x.cols() >= 1, where, "x.cols()", x.cols(), ">= 1");
    else checkNonEmpty(x, where, "x");
    checkShape(labels, x.rows(), 1, where, "labels");
    checkFinite(x, where, "x");
    LabelEncoding enc(labels, m_reduction);
    requireArg(enc.numClasses() >= 2, where, "labels", "one class (" + std::to_string(enc.classes.front()) + ")",
               "at least two distinct classes");
    return enc;
  }

  /// Per-sample weights: 1, or n/(K·n_class) for balanced class weights (scikit-learn's rule).
  static Eigen::VectorXd sampleWeights(const LabelEncoding& enc, bool balanced) {
    const Index n = Index(enc.index.size());
    Eigen::VectorXd w = Eigen::VectorXd::Ones(n);
    if (balanced)
      for (Index i = 0; i < n; ++i)
        w(i) = double(enc.total) / (double(enc.numClasses()) * double(enc.counts[static_cast<std::size_t>(enc.index[std::size_t(i)])]));
    return w;
  }

  /// Runs `solve(targets ±1, weights, w, b)` for every one-vs-rest problem and stores the result.
  template <typename Solve>
  void fitOneVsRest(const LabelEncoding& enc, Index d, bool balanced, Solve&& solve) {
    const Index n = Index(enc.index.size()), k = enc.numClasses();
    const Index problems = k == 2 ? 1 : k;
    m_coef.resize(problems, d);
    m_intercept.resize(problems);
    m_info = Eigen::Success;
    const Eigen::VectorXd weights = sampleWeights(enc, balanced);
    for (Index j = 0; j < problems; ++j) {
      const Index positive = k == 2 ? 1 : j;
      Eigen::VectorXd y(n);
      for (Index i = 0; i < n; ++i) y(i) = enc.index[std::size_t(i)] == positive ? 1.0 : -1.0;
      Eigen::VectorXd w = Eigen::VectorXd::Zero(d);
      double b = 0;
      if (!solve(y, weights, w, b)) m_info = Eigen::NoConvergence;
      m_coef.row(j) = w.cast<Scalar>().transpose();
      m_intercept(j) = Scalar(b);
    }
    m_classes = enc.classes;
    m_fitted = true;
  }

  /// How the samples are split over processes (default: not split).
  SampleReduction m_reduction;
  /// Weight rows w_j (c×d).
  Matrix m_coef;
  /// Intercepts b_j (c).
  Vector m_intercept;
  /// The classes seen in training, ascending.
  std::vector<int> m_classes;
  /// Outcome of the last fit.
  Eigen::ComputationInfo m_info = Eigen::Success;
  /// True once the classifier has been fitted.
  bool m_fitted = false;
};

/// L2-regularised logistic regression, one-vs-rest for more than two classes.
///
/// Minimises ½‖w‖² + C Σ_i s_i log(1 + exp(−y_i(wᵀx_i + b))) (scikit-learn's parametrisation;
/// the intercept b is not penalised; s_i = 1 or balanced class weights) by Newton's method on
/// the (d+1)-dimensional problem with a backtracking (Armijo) line search; stops when the
/// gradient norm is below tolerance·max(1, ‖initial gradient‖). Computes in double.
template <typename Scalar_>
class LogisticRegression : public LinearClassifierBase<Scalar_> {
  using Base = LinearClassifierBase<Scalar_>;

 public:
  /// Dense matrix type of inputs and weight rows.
  using typename Base::Matrix;
  /// Floating-point type of the weights and inputs.
  using typename Base::Scalar;
  /// Dense vector type of intercepts.
  using typename Base::Vector;

  /// Inverse regularisation strength C > 0 (default 1).
  LogisticRegression& setC(double c) {
    requireArg(std::isfinite(c) && c > 0, "LogisticRegression::setC", "c", c, "a finite value > 0");
    m_c = c;
    return *this;
  }
  /// Fit an unpenalised intercept (default true).
  LogisticRegression& setFitIntercept(bool on) { m_fitIntercept = on; return *this; }
  /// Balanced class weights n/(K·n_class) (default false).
  LogisticRegression& setBalanced(bool on) { m_balanced = on; return *this; }
  /// Newton iteration cap per one-vs-rest problem (default 100).
  LogisticRegression& setMaxIterations(Index it) {
    requireArg(it >= 1, "LogisticRegression::setMaxIterations", "it", it, ">= 1");
    m_maxIterations = it;
    return *this;
  }
  /// Relative gradient-norm tolerance (default 1e-8).
  LogisticRegression& setTolerance(double tol) {
    requireArg(std::isfinite(tol) && tol > 0, "LogisticRegression::setTolerance", "tol", tol, "a finite value > 0");
    m_tolerance = tol;
    return *this;
  }

  /// Fits on samples split over processes: each process passes its own rows to fit(), and the
  /// objective, gradient and Hessian are summed over the processes through `r`, so every process
  /// obtains the fit of all rows (to rounding: the sums are taken in another order). Every process
  /// must call fit() together; see `SampleReduction` and `wproj::mpi::sampleReduction`.
  LogisticRegression& setSampleReduction(const SampleReduction& r) {
    this->m_reduction = r;
    return *this;
  }

  /// Fits the classifier to the rows of x (n×d) with integer labels (n).
  template <typename Derived>
  LogisticRegression& fit(const Eigen::MatrixBase<Derived>& x, const Eigen::Ref<const Labels>& labels) {
    const LabelEncoding enc = Base::prepare(x, labels, "LogisticRegression::fit");
    const Eigen::MatrixXd xd = x.template cast<double>();
    const Index n = xd.rows(), d = xd.cols(), p = d + (m_fitIntercept ? 1 : 0);
    Eigen::MatrixXd xa(n, p);
    xa.leftCols(d) = xd;
    if (m_fitIntercept) xa.col(d).setOnes();
    const double c = m_c;
    Eigen::VectorXd reg = Eigen::VectorXd::Ones(p);
    if (m_fitIntercept) reg(d) = 0;
    const SampleReduction& red = this->m_reduction;
    // y_i (x_iᵀθ): none on a process that holds no rows (BLAS refuses empty operands).
    auto margins = [&](const Eigen::VectorXd& theta, const Eigen::VectorXd& y) -> Eigen::VectorXd {
      if (n == 0) return Eigen::VectorXd(0);
      return (xa * theta).cwiseProduct(y);
    };
    auto objective = [&](const Eigen::VectorXd& theta, const Eigen::VectorXd& y, const Eigen::VectorXd& s) {
      const Eigen::VectorXd m = margins(theta, y);
      double loss = 0;
      for (Index i = 0; i < n; ++i) loss += c * s(i) * softplus(-m(i));
      return 0.5 * theta.cwiseProduct(reg).squaredNorm() + red.total(loss);
    };
    Base::fitOneVsRest(enc, d, m_balanced, [&](const Eigen::VectorXd& y, const Eigen::VectorXd& s, Eigen::VectorXd& w, double& b) {
      Eigen::VectorXd theta = Eigen::VectorXd::Zero(p);
      double f = objective(theta, y, s);
      double g0 = -1;
      bool converged = false;
      for (Index it = 0; it < m_maxIterations; ++it) {
        const Eigen::VectorXd m = margins(theta, y);
        Eigen::VectorXd coefG(n), curv(n);
        for (Index i = 0; i < n; ++i) {
          const double sig = sigmoid(-m(i));  // = 1 − σ(m)
          coefG(i) = -c * s(i) * sig * y(i);
          curv(i) = c * s(i) * sig * (1 - sig);
        }
        Eigen::VectorXd grad = Eigen::VectorXd::Zero(p);
        if (n > 0) grad.noalias() = xa.transpose() * coefG;
        red.sumInPlace(grad.data(), p);
        grad += theta.cwiseProduct(reg);
        const double gnorm = grad.norm();
        if (g0 < 0) g0 = std::max(1.0, gnorm);
        if (gnorm <= m_tolerance * g0) {
          converged = true;
          break;
        }
        Eigen::MatrixXd h = Eigen::MatrixXd::Zero(p, p);
        if (n > 0)
          h.selfadjointView<Eigen::Lower>().rankUpdate((xa.array().colwise() * curv.array().sqrt()).matrix().transpose());
        red.sumInPlace(h.data(), p * p);
        h.diagonal() += reg;
        h.diagonal().array() += 1e-10 * (1.0 + h.diagonal().cwiseAbs().maxCoeff());
        const Eigen::VectorXd step = h.selfadjointView<Eigen::Lower>().ldlt().solve(-grad);
        double t = 1.0;
        const double slope = grad.dot(step);
        double fNew = objective(theta + step, y, s);
        while (fNew > f + 1e-4 * t * slope && t > 1e-10) {
          t *= 0.5;
          fNew = objective(theta + t * step, y, s);
        }
        theta += t * step;
        if (std::abs(f - fNew) <= 1e-15 * std::max(1.0, std::abs(f))) {
          f = fNew;
          converged = true;
          break;
        }
        f = fNew;
      }
      w = theta.head(d);
      b = m_fitIntercept ? theta(d) : 0.0;
      return converged;
    });
    return *this;
  }

 private:
  static double softplus(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }
  static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
    const double e = std::exp(z);
    return e / (1.0 + e);
  }

  double m_c = 1.0;
  bool m_fitIntercept = true;
  bool m_balanced = false;
  Index m_maxIterations = 100;
  double m_tolerance = 1e-8;
};

/// The loss of a linear SVM.
enum class SVMLoss {
  Hinge,        ///< max(0, 1 − y f)  (L1-loss SVM)
  SquaredHinge  ///< max(0, 1 − y f)²  (L2-loss SVM; scikit-learn LinearSVC's default)
};

/// Linear support-vector machine trained by dual coordinate descent (Hsieh, Chang, Lin, Keerthi,
/// Sundararajan, ICML 2008), one-vs-rest for more than two classes — the LinearSVC solver.
///
/// Minimises ½‖w‖² + C Σ_i s_i ℓ(y_i wᵀx_i) through its dual; with an intercept, x is augmented
/// by a constant feature 1 (penalised, as in LIBLINEAR). Coordinates are visited in an order
/// shuffled by CounterRng(seed) each epoch; stops when the spread of the projected gradient is
/// below tolerance (LIBLINEAR's criterion) or after maxIterations epochs. Computes in double.
/// Default: no intercept (what INLP uses), squared hinge, C = 1.
template <typename Scalar_>
class LinearSVM : public LinearClassifierBase<Scalar_> {
  using Base = LinearClassifierBase<Scalar_>;

 public:
  /// Dense matrix type of inputs and weight rows.
  using typename Base::Matrix;
  /// Floating-point type of the weights and inputs.
  using typename Base::Scalar;
  /// Dense vector type of intercepts.
  using typename Base::Vector;

  /// Penalty C > 0 (default 1).
  LinearSVM& setC(double c) {
    requireArg(std::isfinite(c) && c > 0, "LinearSVM::setC", "c", c, "a finite value > 0");
    m_c = c;
    return *this;
  }
  /// The loss ℓ (default `SVMLoss::SquaredHinge`).
  LinearSVM& setLoss(SVMLoss loss) { m_loss = loss; return *this; }
  /// Fit an intercept through a constant feature (default false).
  LinearSVM& setFitIntercept(bool on) { m_fitIntercept = on; return *this; }
  /// Balanced class weights n/(K·n_class) (default false).
  LinearSVM& setBalanced(bool on) { m_balanced = on; return *this; }
  /// Epoch cap per one-vs-rest problem (default 1000, as LinearSVC).
  LinearSVM& setMaxIterations(Index it) {
    requireArg(it >= 1, "LinearSVM::setMaxIterations", "it", it, ">= 1");
    m_maxIterations = it;
    return *this;
  }
  /// Projected-gradient spread tolerance (default 1e-4, as LinearSVC).
  LinearSVM& setTolerance(double tol) {
    requireArg(std::isfinite(tol) && tol > 0, "LinearSVM::setTolerance", "tol", tol, "a finite value > 0");
    m_tolerance = tol;
    return *this;
  }
  /// Seed of the coordinate order (default 0).
  LinearSVM& setSeed(std::uint64_t seed) { m_seed = seed; return *this; }

  /// Fits the classifier to the rows of x (n×d) with integer labels (n).
  template <typename Derived>
  LinearSVM& fit(const Eigen::MatrixBase<Derived>& x, const Eigen::Ref<const Labels>& labels) {
    const LabelEncoding enc = Base::prepare(x, labels, "LinearSVM::fit");
    const Index n = x.rows(), d = x.cols(), p = d + (m_fitIntercept ? 1 : 0);
    Eigen::MatrixXd xt(p, n);  // samples as columns: contiguous access per coordinate
    xt.topRows(d) = x.template cast<double>().transpose();
    if (m_fitIntercept) xt.row(d).setOnes();
    const Eigen::VectorXd sq = xt.colwise().squaredNorm().transpose();
    std::uint64_t problem = 0;
    Base::fitOneVsRest(enc, d, m_balanced, [&](const Eigen::VectorXd& y, const Eigen::VectorXd& s, Eigen::VectorXd& w, double& b) {
      CounterRng rng(m_seed, problem++);
      Eigen::VectorXd alpha = Eigen::VectorXd::Zero(n), upper(n), diag(n), qii(n);
      for (Index i = 0; i < n; ++i) {
        const double ci = m_c * s(i);
        upper(i) = m_loss == SVMLoss::Hinge ? ci : std::numeric_limits<double>::infinity();
        diag(i) = m_loss == SVMLoss::Hinge ? 0.0 : 0.5 / ci;
        qii(i) = sq(i) + diag(i);
      }
      Eigen::VectorXd theta = Eigen::VectorXd::Zero(p);
      std::vector<Index> order(static_cast<std::size_t>(n));
      std::iota(order.begin(), order.end(), Index(0));
      bool converged = false;
      for (Index epoch = 0; epoch < m_maxIterations; ++epoch) {
        for (Index i = n - 1; i > 0; --i) std::swap(order[std::size_t(i)], order[std::size_t(rng.nextBelow(std::uint64_t(i + 1)))]);
        double pgMax = -std::numeric_limits<double>::infinity(), pgMin = std::numeric_limits<double>::infinity();
        for (const Index i : order) {
          if (!(qii(i) > 0)) continue;
          const double g = y(i) * theta.dot(xt.col(i)) - 1.0 + diag(i) * alpha(i);
          double pg = g;
          if (alpha(i) == 0.0) pg = std::min(g, 0.0);
          else if (alpha(i) == upper(i)) pg = std::max(g, 0.0);
          pgMax = std::max(pgMax, pg);
          pgMin = std::min(pgMin, pg);
          if (std::abs(pg) > 1e-12) {
            const double old = alpha(i);
            alpha(i) = std::min(std::max(old - g / qii(i), 0.0), upper(i));
            theta += ((alpha(i) - old) * y(i)) * xt.col(i);
          }
        }
        if (pgMax - pgMin <= m_tolerance) {
          converged = true;
          break;
        }
      }
      w = theta.head(d);
      b = m_fitIntercept ? theta(d) : 0.0;
      return converged;
    });
    return *this;
  }

 private:
  double m_c = 1.0;
  SVMLoss m_loss = SVMLoss::SquaredHinge;
  bool m_fitIntercept = false;
  bool m_balanced = false;
  Index m_maxIterations = 1000;
  double m_tolerance = 1e-4;
  std::uint64_t m_seed = 0;
};

// Names before 0.2.0 (see the naming rule in docs/index.md); they will be removed in 1.0.
using SvmLoss [[deprecated("renamed wproj::SVMLoss")]] = SVMLoss;

}  // namespace wproj
