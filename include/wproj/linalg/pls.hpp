// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// PLS2 regression by NIPALS (Wold 1966; Wegelin 2000, "A survey of partial least squares
/// methods"), centred and unscaled — the x_weights of scikit-learn's
/// `PLSRegression(scale=False)`, which DAMA (Limisiewicz et al. 2024) orthonormalises into the
/// subspace it projects out.

#include "../core/config.hpp"
#include "../core/reduction.hpp"

#include <Eigen/Core>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace wproj {

/// Partial least squares regression of Y (n×t) on X (n×d), PLS2 with the NIPALS inner loop.
///
/// Both blocks are centred (never scaled). For each component: the x-weight w is the dominant
/// left singular vector of XₖᵀYₖ, found by the NIPALS power iteration started from the first
/// non-zero column of Yₖ (w = Xᵀu/‖Xᵀu‖, t = Xw, c = Yᵀt/(tᵀt), u = Yc/(cᵀc), until
/// ‖Δw‖² < tolerance); its sign makes the largest-|.| entry positive. Scores t = Xₖw,
/// loadings p = Xₖᵀt/(tᵀt), q = Yₖᵀt/(tᵀt), and regression deflation Xₖ₊₁ = Xₖ − tpᵀ,
/// Yₖ₊₁ = Yₖ − tqᵀ. This reproduces `sklearn.cross_decomposition.PLSRegression(scale=False)`
/// (x_weights_, x_loadings_, y_loadings_, x_scores_).
///
/// If Yₖ becomes zero before all components are found, the fit stops early:
/// `components()` is then smaller than requested and `info()` is `Eigen::NumericalIssue`.
/// A component whose power iteration did not converge within `maxIterations` also sets
/// `info()` to `Eigen::NoConvergence` (the iterate is kept, as scikit-learn does).
template <typename Scalar_>
class PartialLeastSquares {
  static_assert(!Eigen::NumTraits<Scalar_>::IsComplex && !Eigen::NumTraits<Scalar_>::IsInteger,
                "PartialLeastSquares: real floating-point scalars only");

 public:
  /// Floating-point type of the data and results.
  using Scalar = Scalar_;
  /// Dense matrix type of the data and results.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type of the means.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// An unfitted model: set the components, then call `compute()`.
  PartialLeastSquares() = default;

  /// Fits `components` components of Y (n×t) on X (n×d).
  template <typename DX, typename DY>
  PartialLeastSquares(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DY>& y, Index components) {
    setComponents(components);
    compute(x, y);
  }

  /// Number of components to extract (1 ≤ r ≤ min(n − 1, d)).
  PartialLeastSquares& setComponents(Index r) {
    requireArg(r >= 1, "PartialLeastSquares::setComponents", "r", r, ">= 1");
    m_requested = r;
    return *this;
  }
  /// Cap on NIPALS iterations per component (scikit-learn: 500).
  PartialLeastSquares& setMaxIterations(Index it) {
    requireArg(it >= 1, "PartialLeastSquares::setMaxIterations", "it", it, ">= 1");
    m_maxIterations = it;
    return *this;
  }
  /// Convergence threshold on ‖w_new − w_old‖² (scikit-learn: 1e-6).
  PartialLeastSquares& setTolerance(double tol) {
    requireArg(std::isfinite(tol) && tol > 0, "PartialLeastSquares::setTolerance", "tol", tol, "a finite value > 0");
    m_tolerance = tol;
    return *this;
  }

  /// Fits on samples split over processes: each process passes its own rows to compute() (a
  /// process may hold none), and every sum over samples (the means, each NIPALS product XᵀU and
  /// Yᵀt with its norm, the loadings) and the column maxima of Y go through `r`, so every process
  /// obtains the weights and loadings of all rows (to rounding) and the scores of its own rows.
  /// Per NIPALS iteration d + t + 2 values are reduced, per component d + t + 1 and t more.
  /// Every process must call compute() together with the same settings; see `wproj::mpi::fitPls`.
  PartialLeastSquares& setSampleReduction(const SampleReduction& r) {
    m_reduction = r;
    return *this;
  }

  /// The number of components asked for.
  Index requestedComponents() const { return m_requested; }
  /// The cap on NIPALS iterations per component.
  Index maxIterations() const { return m_maxIterations; }
  /// The convergence threshold on ‖w_new − w_old‖².
  double tolerance() const { return m_tolerance; }

  /// Fits the model to X (n×d, rows = samples) and Y (n×t).
  template <typename DX, typename DY>
  PartialLeastSquares& compute(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DY>& y) {
    const char* where = "PartialLeastSquares::compute";
    const SampleReduction& red = m_reduction;
    if (red.active()) {
      requireArg(x.cols() >= 1, where, "x", detail::shapeString(x.rows(), x.cols()), "at least one column");
      requireArg(y.cols() >= 1, where, "y", detail::shapeString(y.rows(), y.cols()), "at least one column");
    } else {
      checkNonEmpty(x, where, "x");
      checkNonEmpty(y, where, "y");
    }
    checkShape(y, x.rows(), -1, where, "y");
    checkFinite(x, where, "x");
    checkFinite(y, where, "y");
    const Index nl = x.rows(), d = x.cols(), t = y.cols();  // nl: this process's rows
    Index n = nl;
    if (!red.active()) {
      m_xMean = x.colwise().mean().transpose().template cast<Scalar>();
      m_yMean = y.colwise().mean().transpose().template cast<Scalar>();
    } else {
      Eigen::VectorXd sums(1 + d + t);
      sums(0) = double(nl);
      sums.segment(1, d) = x.template cast<double>().colwise().sum().transpose();
      sums.tail(t) = y.template cast<double>().colwise().sum().transpose();
      red.sumInPlace(sums);
      n = Index(sums(0));
      requireArg(n >= 1, where, "x", "no rows on any process", "at least one sample");
      m_xMean = (sums.segment(1, d) / double(n)).template cast<Scalar>();
      m_yMean = (sums.tail(t) / double(n)).template cast<Scalar>();
    }
    requireArg(m_requested <= d, where, "components", m_requested, "<= x.cols() = " + std::to_string(d));
    requireArg(m_requested <= n - 1, where, "components", m_requested,
               "<= samples - 1 = " + std::to_string(n - 1) + " (centred data has rank at most n - 1)");
    m_samples = n;
    Matrix xk = x.template cast<Scalar>().rowwise() - m_xMean.transpose();
    Matrix yk = y.template cast<Scalar>().rowwise() - m_yMean.transpose();

    const Index r = m_requested;
    m_xWeights = Matrix::Zero(d, r);
    m_yWeights = Matrix::Zero(t, r);
    m_xLoadings = Matrix::Zero(d, r);
    m_yLoadings = Matrix::Zero(t, r);
    m_xScores = Matrix::Zero(nl, r);
    m_iterations.assign(static_cast<std::size_t>(r), 0);
    m_info = Eigen::Success;
    const Scalar eps = std::numeric_limits<Scalar>::epsilon();
    // max_i |Y_k(i, j)| per column (over every process's rows).
    auto columnMaxima = [&]() {
      Vector m = Vector::Zero(t);
      if (nl > 0) m = yk.cwiseAbs().colwise().maxCoeff().transpose();
      red.maxInPlace(m);
      return m;
    };
    // [Aᵀv; ‖v‖²] summed over the processes (BLAS refuses a process's empty operands).
    auto productAndNorm = [&](const Matrix& a, const Vector& v) {
      Vector out = Vector::Zero(a.cols() + 1);
      if (nl > 0) out.head(a.cols()).noalias() = a.transpose() * v;
      out(a.cols()) = v.squaredNorm();
      red.sumInPlace(out);
      return out;
    };

    Vector colMax = columnMaxima();  // of Y_k: kept up to date by the deflation below
    Index k = 0;
    for (; k < r; ++k) {
      // Start from the first column of Y_k with a non-negligible entry.
      Index start = -1;
      for (Index j = 0; j < t && start < 0; ++j)
        if (colMax(j) > eps) start = j;
      if (start < 0) {
        m_info = Eigen::NumericalIssue;  // Y residual is zero: nothing left to explain
        break;
      }
      Vector u = yk.col(start);
      Vector w = Vector::Zero(d), c(t), score = Vector::Zero(nl);
      Index it = 0;
      bool converged = false;
      while (it < m_maxIterations) {
        ++it;
        const Vector xu = productAndNorm(xk, u);
        Vector wNew = xu.head(d) / xu(d);
        wNew /= std::sqrt(wNew.squaredNorm()) + eps;
        if (nl > 0) score.noalias() = xk * wNew;
        const Vector yt = productAndNorm(yk, score);
        c = yt.head(t) / (yt(t) + eps);
        if (nl > 0) u.noalias() = yk * c / (c.squaredNorm() + eps);
        const Scalar diff = (wNew - w).squaredNorm();
        w = wNew;
        if (double(diff) < m_tolerance || t == 1) {
          converged = true;
          break;
        }
      }
      if (!converged) m_info = Eigen::NoConvergence;
      m_iterations[static_cast<std::size_t>(k)] = it;
      // Deterministic sign: the largest-|.| entry of w is positive (the y-weights follow).
      Index imax = 0;
      w.cwiseAbs().maxCoeff(&imax);
      if (w(imax) < Scalar(0)) {
        w = -w;
        c = -c;
      }
      if (nl > 0) score.noalias() = xk * w;
      Vector loads = Vector::Zero(d + t + 1);  // [Xₖᵀt; Yₖᵀt; tᵀt] over every process
      if (nl > 0) {
        loads.head(d).noalias() = xk.transpose() * score;
        loads.segment(d, t).noalias() = yk.transpose() * score;
      }
      loads(d + t) = score.squaredNorm();
      red.sumInPlace(loads);
      const Scalar tt = loads(d + t);
      if (!(tt > Scalar(0))) {
        m_info = Eigen::NumericalIssue;  // X residual is orthogonal to Y residual
        break;
      }
      const Vector p = loads.head(d) / tt;
      const Vector q = loads.segment(d, t) / tt;
      if (nl > 0) {
        xk.noalias() -= score * p.transpose();
        yk.noalias() -= score * q.transpose();
      }
      // Zero the Y columns that are numerically exhausted (as scikit-learn does).
      colMax = columnMaxima();
      for (Index j = 0; j < t; ++j)
        if (colMax(j) < Scalar(10) * eps) {
          yk.col(j).setZero();
          colMax(j) = Scalar(0);
        }
      m_xWeights.col(k) = w;
      m_yWeights.col(k) = c;
      m_xLoadings.col(k) = p;
      m_yLoadings.col(k) = q;
      m_xScores.col(k) = score;
    }
    if (k < r) {
      m_xWeights.conservativeResize(d, k);
      m_yWeights.conservativeResize(t, k);
      m_xLoadings.conservativeResize(d, k);
      m_yLoadings.conservativeResize(t, k);
      m_xScores.conservativeResize(nl, k);
      m_iterations.resize(static_cast<std::size_t>(k));
    }
    m_computed = true;
    return *this;
  }

  /// x_weights: d×r, unit columns (the directions DAMA projects out after orthonormalising).
  const Matrix& xWeights() const { WPROJ_ASSERT(m_computed); return m_xWeights; }
  /// y_weights c_k (t×r).
  const Matrix& yWeights() const { WPROJ_ASSERT(m_computed); return m_yWeights; }
  /// x_loadings p_k (d×r).
  const Matrix& xLoadings() const { WPROJ_ASSERT(m_computed); return m_xLoadings; }
  /// y_loadings q_k (t×r).
  const Matrix& yLoadings() const { WPROJ_ASSERT(m_computed); return m_yLoadings; }
  /// The number of samples n (of every process, under a reduction).
  Index samples() const { WPROJ_ASSERT(m_computed); return m_samples; }
  /// x_scores t_k (n×r) of the training data (of this process's rows, under a reduction).
  const Matrix& xScores() const { WPROJ_ASSERT(m_computed); return m_xScores; }
  /// Column means of X (length d) used for centring.
  const Vector& xMean() const { WPROJ_ASSERT(m_computed); return m_xMean; }
  /// Column means of Y (length t) used for centring.
  const Vector& yMean() const { WPROJ_ASSERT(m_computed); return m_yMean; }
  /// Number of components actually extracted (≤ requested).
  Index components() const { WPROJ_ASSERT(m_computed); return m_xWeights.cols(); }
  /// NIPALS iterations used by each component.
  const std::vector<Index>& iterations() const { WPROJ_ASSERT(m_computed); return m_iterations; }
  /// Success, NoConvergence (a power iteration hit the cap) or NumericalIssue (stopped early).
  Eigen::ComputationInfo info() const { WPROJ_ASSERT(m_computed); return m_info; }

 private:
  Index m_requested = 2;
  Index m_maxIterations = 500;
  double m_tolerance = 1e-6;
  bool m_computed = false;
  Index m_samples = 0;
  SampleReduction m_reduction;
  Eigen::ComputationInfo m_info = Eigen::Success;
  Matrix m_xWeights, m_yWeights, m_xLoadings, m_yLoadings, m_xScores;
  Vector m_xMean, m_yMean;
  std::vector<Index> m_iterations;
};

}  // namespace wproj
