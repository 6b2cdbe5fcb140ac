// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// PLS2 regression by NIPALS (Wold 1966; Wegelin 2000, "A survey of partial least squares
/// methods"), centred and unscaled — the x_weights of scikit-learn's
/// `PLSRegression(scale=False)`, which DAMA (Limisiewicz et al. 2024) orthonormalises into the
/// subspace it projects out.

#include "../core/config.hpp"

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

  /// Fits the model to X (n×d, rows = samples) and Y (n×t).
  template <typename DX, typename DY>
  PartialLeastSquares& compute(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DY>& y) {
    const char* where = "PartialLeastSquares::compute";
    checkNonEmpty(x, where, "x");
    checkNonEmpty(y, where, "y");
    checkShape(y, x.rows(), -1, where, "y");
    checkFinite(x, where, "x");
    checkFinite(y, where, "y");
    const Index n = x.rows(), d = x.cols(), t = y.cols();
    requireArg(m_requested <= d, where, "components", m_requested, "<= x.cols() = " + std::to_string(d));
    requireArg(m_requested <= n - 1, where, "components", m_requested,
               "<= samples - 1 = " + std::to_string(n - 1) + " (centred data has rank at most n - 1)");

    m_xMean = x.colwise().mean().transpose().template cast<Scalar>();
    m_yMean = y.colwise().mean().transpose().template cast<Scalar>();
    Matrix xk = x.template cast<Scalar>().rowwise() - m_xMean.transpose();
    Matrix yk = y.template cast<Scalar>().rowwise() - m_yMean.transpose();

    const Index r = m_requested;
    m_xWeights = Matrix::Zero(d, r);
    m_yWeights = Matrix::Zero(t, r);
    m_xLoadings = Matrix::Zero(d, r);
    m_yLoadings = Matrix::Zero(t, r);
    m_xScores = Matrix::Zero(n, r);
    m_iterations.assign(static_cast<std::size_t>(r), 0);
    m_info = Eigen::Success;
    const Scalar eps = std::numeric_limits<Scalar>::epsilon();

    Index k = 0;
    for (; k < r; ++k) {
      // Start from the first column of Y_k with a non-negligible entry.
      Index start = -1;
      for (Index j = 0; j < t && start < 0; ++j)
        if ((yk.col(j).array().abs() > eps).any()) start = j;
      if (start < 0) {
        m_info = Eigen::NumericalIssue;  // Y residual is zero: nothing left to explain
        break;
      }
      Vector u = yk.col(start);
      Vector w = Vector::Zero(d), c(t), score(n);
      Index it = 0;
      bool converged = false;
      while (it < m_maxIterations) {
        ++it;
        Vector wNew = xk.transpose() * u / u.squaredNorm();
        wNew /= std::sqrt(wNew.squaredNorm()) + eps;
        score.noalias() = xk * wNew;
        c.noalias() = yk.transpose() * score / (score.squaredNorm() + eps);
        u.noalias() = yk * c / (c.squaredNorm() + eps);
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
      score.noalias() = xk * w;
      const Scalar tt = score.squaredNorm();
      if (!(tt > Scalar(0))) {
        m_info = Eigen::NumericalIssue;  // X residual is orthogonal to Y residual
        break;
      }
      const Vector p = xk.transpose() * score / tt;
      const Vector q = yk.transpose() * score / tt;
      xk.noalias() -= score * p.transpose();
      yk.noalias() -= score * q.transpose();
      // Zero the Y columns that are numerically exhausted (as scikit-learn does).
      for (Index j = 0; j < t; ++j)
        if ((yk.col(j).array().abs() < Scalar(10) * eps).all()) yk.col(j).setZero();
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
      m_xScores.conservativeResize(n, k);
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
  /// x_scores t_k (n×r) of the training data.
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
  Eigen::ComputationInfo m_info = Eigen::Success;
  Matrix m_xWeights, m_yWeights, m_xLoadings, m_yLoadings, m_xScores;
  Vector m_xMean, m_yMean;
  std::vector<Index> m_iterations;
};

}  // namespace wproj
