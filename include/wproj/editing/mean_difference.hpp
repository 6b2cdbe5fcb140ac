// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// A mean-difference direction between two sets of activations — ThinkEdit's "short reasoning"
/// direction (Sun et al., "ThinkEdit: Interpretable Weight Editing to Mitigate Overly Short
/// Thinking in Reasoning Models"), also the classic difference-in-means steering direction.

#include "../core/config.hpp"
#include "../linalg/subspace.hpp"

#include <Eigen/Core>

#include <cmath>
#include <string>

namespace wproj {

/// v = (mean(A) − mean(B)) / ‖mean(A) − mean(B)‖ for activations A (n₁×d) and B (n₂×d),
/// rows = samples. ThinkEdit uses A = residuals after attention over long-reasoning examples and
/// B = over short ones (the sign does not matter for the edit), then edits the chosen heads'
/// o_proj column blocks: slice ← (I − αvvᵀ)·slice (α = 1); see `WeightEditor`.
template <typename Scalar_>
class MeanDifferenceEstimator {
 public:
  /// Floating-point type of the activations and the direction.
  using Scalar = Scalar_;
  /// Dense matrix type of activations.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type of the direction v.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// Fits the direction from the rows of a and b.
  template <typename DA, typename DB>
  MeanDifferenceEstimator& fit(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b) {
    const char* where = "MeanDifferenceEstimator::fit";
    checkNonEmpty(a, where, "a");
    checkNonEmpty(b, where, "b");
    checkShape(b, -1, a.cols(), where, "b");
    // evaluate once (inputs may be expressions such as products), in double: a long sum of
    // float activations loses digits
    const Eigen::MatrixXd ad = a.template cast<double>(), bd = b.template cast<double>();
    checkFinite(ad, where, "a");
    checkFinite(bd, where, "b");
    const Eigen::VectorXd diff = ad.colwise().mean().transpose() - bd.colwise().mean().transpose();
    const double norm = diff.norm();
    requireArg(norm > 0 && std::isfinite(norm), where, "mean(a) - mean(b)", norm,
               "a non-zero difference of the two means");
    m_gap = Scalar(norm);
    m_direction = (diff / norm).cast<Scalar>();
    m_direction /= m_direction.norm();
    m_subspace = Subspace<Scalar>::fromOrthonormal(m_direction);
    m_fitted = true;
    return *this;
  }

  /// The unit direction v (d).
  const Vector& direction() const { WPROJ_ASSERT(m_fitted); return m_direction; }
  /// ‖mean(A) − mean(B)‖ before normalisation.
  Scalar gap() const { WPROJ_ASSERT(m_fitted); return m_gap; }
  /// span(v) as a one-dimensional subspace (what `WeightEditor` consumes).
  const Subspace<Scalar>& subspace() const { WPROJ_ASSERT(m_fitted); return m_subspace; }

 private:
  bool m_fitted = false;
  Scalar m_gap = 0;
  Vector m_direction;
  Subspace<Scalar> m_subspace;
};

}  // namespace wproj
