// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// AlphaEdit (Fang et al., "AlphaEdit: Null-Space Constrained Knowledge Editing for Language
/// Models", ICLR 2025): a closed-form key→value edit projected onto the null space of preserved
/// keys, so that the preserved associations are left untouched.

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "../linalg/nullspace.hpp"
#include "../linalg/subspace.hpp"

#include <Eigen/Core>
#include <Eigen/LU>

#include <cmath>
#include <string>

namespace wproj {

/// Null-space constrained edits of a linear layer W (m×d, `nn.Linear` layout: y = Wk).
///
/// 1. `setPreservedKeys(K₀)` (d×n₀, keys as columns): P = projector onto the eigenvectors of
///    K₀K₀ᵀ/n₀ with eigenvalue < threshold (2e-2 absolute, as the official code) — `psdNullSpace`.
/// 2. `update(K, R)` with new keys K (d×u) and residuals R = V_target − WK (m×u):
///    Δᵀ = solve(P(KKᵀ + C) + λI, PKRᵀ) (λ = 10), returns Δ (m×d); then C += KKᵀ, so that later
///    batches also protect the keys edited before (sequential editing). Apply with W ← W + Δ.
///
/// Δ = ΔP, hence ΔK₀ ≈ 0: the outputs on preserved keys change only by the residual of the
/// threshold (eigenvalues < 2e-2 are treated as zero).
template <typename Scalar_>
class AlphaEdit {
 public:
  /// Floating-point type of the weights and keys.
  using Scalar = Scalar_;
  /// Dense matrix type of keys, residuals and updates.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// An editor with no preserved keys yet; call `setPreservedKeys()` first.
  AlphaEdit() = default;

  /// Eigenvalue threshold of K₀K₀ᵀ/n₀ below which a direction counts as null (default 2e-2).
  AlphaEdit& setNullSpaceThreshold(double threshold) {
    requireArg(std::isfinite(threshold) && threshold >= 0, "AlphaEdit::setNullSpaceThreshold", "threshold", threshold,
               "a finite value >= 0");
    m_threshold = threshold;
    return *this;
  }
  /// Ridge λ ≥ 0 of the update (default 10).
  AlphaEdit& setLambda(double lambda) {
    requireArg(std::isfinite(lambda) && lambda >= 0, "AlphaEdit::setLambda", "lambda", lambda, "a finite value >= 0");
    m_lambda = lambda;
    return *this;
  }

  /// Computes the null-space projector from preserved keys K₀ (d×n₀, columns = keys) and resets
  /// the running key covariance C to zero.
  template <typename DK>
  AlphaEdit& setPreservedKeys(const Eigen::MatrixBase<DK>& k0) {
    const char* where = "AlphaEdit::setPreservedKeys";
    checkNonEmpty(k0, where, "k0");
    checkFinite(k0, where, "k0");
    Matrix s = Matrix::Zero(k0.rows(), k0.rows());
    const Matrix k = k0.template cast<Scalar>();
    s.template selfadjointView<Eigen::Lower>().rankUpdate(k, Scalar(1) / Scalar(k0.cols()));
    s.template triangularView<Eigen::StrictlyUpper>() = s.transpose();
    return setPreservedSecondMoment(s);
  }

  /// Same from the uncentred second moment S = K₀K₀ᵀ/n₀ (d×d) accumulated elsewhere.
  template <typename DS>
  AlphaEdit& setPreservedSecondMoment(const Eigen::MatrixBase<DS>& s) {
    m_null = psdNullSpace(s.template cast<Scalar>(), Scalar(m_threshold));
    m_cache = Matrix::Zero(s.rows(), s.rows());
    m_ready = true;
    return *this;
  }

  /// The update Δ (m×d) for keys K (d×u) and residuals R (m×u), without changing C.
  template <typename DK, typename DR>
  Matrix computeUpdate(const Eigen::MatrixBase<DK>& keys, const Eigen::MatrixBase<DR>& residuals) const {
    const char* where = "AlphaEdit::computeUpdate";
    requireArg(m_ready, where, "preserved keys", "not set", "setPreservedKeys() before computing an update");
    const Index d = m_null.ambientDim();
    checkNonEmpty(keys, where, "keys");
    checkShape(keys, d, -1, where, "keys");
    checkShape(residuals, -1, keys.cols(), where, "residuals");
    checkFinite(keys, where, "keys");
    checkFinite(residuals, where, "residuals");
    const Matrix k = keys.template cast<Scalar>();
    Matrix a = m_cache;
    a.noalias() += k * k.transpose();
    Matrix lhs = m_null.project(a, Side::Left);               // P(KKᵀ + C)
    lhs.diagonal().array() += Scalar(m_lambda);
    const Matrix rhs = m_null.project(k * residuals.template cast<Scalar>().transpose(), Side::Left);  // PKRᵀ
    Eigen::PartialPivLU<Matrix> lu(lhs);
    const Matrix deltaT = lu.solve(rhs);                       // d×m
    if (!deltaT.allFinite())
      throw NumericalError(std::string(where) + ": P(KK^T + C) + lambda*I is singular (lambda = " +
                           detail::describe(m_lambda) + ")");
    return deltaT.transpose();
  }

  /// The update Δ (m×d) for keys K and residuals R; then C += KKᵀ.
  template <typename DK, typename DR>
  Matrix update(const Eigen::MatrixBase<DK>& keys, const Eigen::MatrixBase<DR>& residuals) {
    Matrix delta = computeUpdate(keys, residuals);
    const Matrix k = keys.template cast<Scalar>();
    m_cache.noalias() += k * k.transpose();
    return delta;
  }

  /// The null space of the preserved keys (what P projects onto).
  const Subspace<Scalar>& nullSpace() const { WPROJ_ASSERT(m_ready); return m_null; }
  /// The running covariance C of keys edited so far (d×d).
  const Matrix& cache() const { WPROJ_ASSERT(m_ready); return m_cache; }
  /// Replaces C (e.g. when resuming a sequence of edits).
  template <typename DC>
  AlphaEdit& setCache(const Eigen::MatrixBase<DC>& c) {
    WPROJ_ASSERT(m_ready);
    checkShape(c, m_null.ambientDim(), m_null.ambientDim(), "AlphaEdit::setCache", "c");
    checkFinite(c, "AlphaEdit::setCache", "c");
    m_cache = c.template cast<Scalar>();
    return *this;
  }
  /// The ridge λ of the update.
  double lambda() const { return m_lambda; }
  /// The eigenvalue threshold of the null space.
  double nullSpaceThreshold() const { return m_threshold; }

 private:
  double m_threshold = 2e-2;
  double m_lambda = 10.0;
  bool m_ready = false;
  Subspace<Scalar> m_null;
  Matrix m_cache;
};

}  // namespace wproj
