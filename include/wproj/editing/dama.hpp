// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// DAMA (Limisiewicz, Mareček, Musil, "Debiasing Algorithm through Model Adaptation", ICLR 2024):
/// the subspace of a layer's inputs (or outputs) that linearly predicts an unwanted target
/// (e.g. the he − she logit shift), found by PLS2 regression.

#include "../core/config.hpp"
#include "../linalg/pls.hpp"
#include "../linalg/subspace.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <cmath>
#include <string>

namespace wproj {

/// Estimates DAMA's projection subspace from inputs X (n×d) and target deltas Y (n×t):
///
///   optional whitening X ← X(λC + XᵀX)⁻¹ (C: d×d key second moment, λ = 2e4 in the paper;
///   computed with a Cholesky/LDLᵀ solve, never an explicit inverse);
///   PLS2 (NIPALS, centred, unscaled) with r components → x_weights B (d×r);
///   subspace = orth(B) (SciPy rank rule), M = I − QQᵀ.
///
/// Use "after" mode (X = U Wᵀ, the layer's outputs; edit W ← MW, output side) or "before" mode
/// (X = U, the inputs; edit W ← WM, input side) — the estimator only sees X. The paper's
/// configuration: r = 1024 on LLaMA-7B layers 21–29 (128 in the provided script).
template <typename Scalar_>
class DamaEstimator {
 public:
  /// Floating-point type of the data and the subspace.
  using Scalar = Scalar_;
  /// Dense matrix type of inputs, targets and weights.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// An unfitted estimator with the default settings.
  DamaEstimator() = default;

  /// Number of PLS components r (default 128; must be ≤ min(n − 1, d)).
  DamaEstimator& setRank(Index r) {
    requireArg(r >= 1, "DamaEstimator::setRank", "r", r, ">= 1");
    m_rank = r;
    return *this;
  }
  /// Enables whitening with the d×d symmetric PSD matrix C and strength λ ≥ 0 (default 2e4).
  template <typename DC>
  DamaEstimator& setWhitening(const Eigen::MatrixBase<DC>& c, double lambda = 2e4) {
    const char* where = "DamaEstimator::setWhitening";
    requireArg(c.rows() == c.cols(), where, "c", detail::shapeString(c.rows(), c.cols()), "a square matrix");
    checkFinite(c, where, "c");
    requireArg(std::isfinite(lambda) && lambda >= 0, where, "lambda", lambda, "a finite value >= 0");
    m_whitenC = c.template cast<Scalar>();
    m_lambda = lambda;
    m_whiten = true;
    return *this;
  }
  /// Disables whitening (the default).
  DamaEstimator& clearWhitening() {
    m_whiten = false;
    m_whitenC.resize(0, 0);
    return *this;
  }
  /// NIPALS settings forwarded to PartialLeastSquares (defaults 500 and 1e-6, as scikit-learn).
  DamaEstimator& setPlsIterations(Index it, double tol = 1e-6) {
    m_pls.setMaxIterations(it).setTolerance(tol);
    return *this;
  }

  /// Fits on samples split over processes: each process passes its own rows to fit(); XᵀX of the
  /// whitening (d² values) and every sum of the PLS fit (`PartialLeastSquares::setSampleReduction`)
  /// go through `r`, so every process obtains the subspace of all rows, to rounding. Every
  /// process must call fit() together with the same settings; see `wproj::mpi::fitDama`.
  DamaEstimator& setSampleReduction(const SampleReduction& r) {
    m_reduction = r;
    m_pls.setSampleReduction(r);
    return *this;
  }

  /// The whitening strength λ.
  double lambda() const { return m_lambda; }
  /// The whitening matrix C (empty without whitening).
  const Matrix& whiteningMatrix() const { return m_whitenC; }
  /// The NIPALS iteration cap.
  Index plsIterations() const { return m_pls.maxIterations(); }
  /// The NIPALS tolerance.
  double plsTolerance() const { return m_pls.tolerance(); }

  /// Fits the subspace from inputs x (n×d) and targets y (n×t), rows = samples.
  template <typename DX, typename DY>
  DamaEstimator& fit(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DY>& y) {
    const char* where = "DamaEstimator::fit";
    const SampleReduction& red = m_reduction;
    if (red.active()) requireArg(x.cols() >= 1, where, "x", detail::shapeString(x.rows(), x.cols()), "at least one column");
    else checkNonEmpty(x, where, "x");
    checkShape(y, x.rows(), -1, where, "y");
    checkFinite(x, where, "x");
    const Index n = red.active() ? Index(red.total(double(x.rows()))) : x.rows();
    requireArg(m_rank <= n - 1, where, "rank", m_rank,
               "<= samples - 1 = " + std::to_string(n - 1) + " (fewer samples than the rank)");
    requireArg(m_rank <= x.cols(), where, "rank", m_rank, "<= x.cols() = " + std::to_string(x.cols()));
    Matrix u = x.template cast<Scalar>();
    if (m_whiten) {
      checkShape(m_whitenC, x.cols(), x.cols(), where, "whitening matrix c");
      Matrix m = Scalar(m_lambda) * m_whitenC;
      if (!red.active()) {
        m.noalias() += u.transpose() * u;
      } else {
        Matrix gram = Matrix::Zero(x.cols(), x.cols());
        if (u.rows() > 0) gram.noalias() += u.transpose() * u;
        red.sumInPlace(gram);
        m += gram;
      }
      Eigen::LDLT<Matrix> ldlt(m);
      Matrix solved(x.cols(), u.rows());  // (λC + UᵀU)⁻¹Uᵀ, M symmetric
      if (u.rows() > 0) solved = ldlt.solve(u.transpose());
      // (one verdict for every process: the factorisation is the same everywhere, the solve is not)
      const bool failed = ldlt.info() != Eigen::Success || red.total(solved.allFinite() ? 0.0 : 1.0) > 0;
      if (failed) throw NumericalError(std::string(where) + ": lambda*C + X^T X is singular; whitening failed");
      u = solved.transpose();
    }
    m_pls.setComponents(m_rank).compute(u, y);
    m_subspace = Subspace<Scalar>::fromColumns(m_pls.xWeights());
    m_fitted = true;
    return *this;
  }

  /// The removed subspace orth(x_weights) of R^d.
  const Subspace<Scalar>& subspace() const { WPROJ_ASSERT(m_fitted); return m_subspace; }
  /// PLS x_weights B (d×r).
  const Matrix& xWeights() const { WPROJ_ASSERT(m_fitted); return m_pls.xWeights(); }
  /// The underlying PLS fit (scores, loadings, info()).
  const PartialLeastSquares<Scalar>& pls() const { WPROJ_ASSERT(m_fitted); return m_pls; }
  /// Number of PLS components r.
  Index rank() const { return m_rank; }
  /// Whether whitening is enabled.
  bool whitening() const { return m_whiten; }
  /// Success, or the PLS outcome (NoConvergence / NumericalIssue when it stopped early).
  Eigen::ComputationInfo info() const { WPROJ_ASSERT(m_fitted); return m_pls.info(); }

 private:
  Index m_rank = 128;
  bool m_whiten = false;
  double m_lambda = 2e4;
  bool m_fitted = false;
  Matrix m_whitenC;
  PartialLeastSquares<Scalar> m_pls;
  SampleReduction m_reduction;
  Subspace<Scalar> m_subspace;
};

}  // namespace wproj
