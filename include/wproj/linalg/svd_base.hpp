// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The common part of wproj's SVD classes (`TruncatedSVD`, `RandomizedSVD`, `IncrementalSVD`),
/// in the manner of Eigen's `SVDBase<Derived>`: the factors, their accessors and U Σ Vᵀ.

#include "../core/config.hpp"

#include <Eigen/Core>

namespace wproj {

/// What `SVDBase` needs to know of a derived SVD class: specialise with
/// `using MatrixType = …;` and `static constexpr bool ChecksComputed` (whether the accessors
/// assert that a decomposition was computed).
template <typename Derived>
struct SVDTraits;

/// Base of the thin/truncated SVD classes (curiously recurring template pattern): holds
/// A ≈ U Σ Vᵀ with U m×k and V n×k (orthonormal columns) and the k singular values
/// σ_0 ≥ … ≥ σ_{k−1} ≥ 0, and gives them the same accessors in every class. The derived class
/// computes them (it writes m_u, m_s, m_v, m_info, m_computed).
template <typename Derived>
class SVDBase {
 public:
  /// The matrix type the derived class decomposes.
  using MatrixType = typename SVDTraits<Derived>::MatrixType;
  /// Scalar type of the decomposed matrix.
  using Scalar = typename MatrixType::Scalar;
  /// Real type of the singular values.
  using RealScalar = typename Eigen::NumTraits<Scalar>::Real;
  /// Dense matrix type of U and V.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Vector type of the singular values.
  using Vector = Eigen::Matrix<RealScalar, Eigen::Dynamic, 1>;
  static_assert(!Eigen::NumTraits<Scalar>::IsComplex, "SVDBase: real scalars only");

  /// m×k left singular vectors (orthonormal columns).
  const Matrix& matrixU() const {
    requireComputed();
    return m_u;
  }
  /// The k singular values, descending.
  const Vector& singularValues() const {
    requireComputed();
    return m_s;
  }
  /// n×k right singular vectors (orthonormal columns).
  const Matrix& matrixV() const {
    requireComputed();
    return m_v;
  }
  /// Number of triplets k.
  Index rank() const {
    requireComputed();
    return m_s.size();
  }
  /// `Success`, or the numerical outcome the derived class documents.
  Eigen::ComputationInfo info() const {
    requireComputed();
    return m_info;
  }
  /// U Σ Vᵀ (m×n).
  Matrix reconstruct() const {
    requireComputed();
    if (m_s.size() == 0) return Matrix::Zero(m_u.rows(), m_v.rows());
    return m_u * m_s.template cast<Scalar>().asDiagonal() * m_v.transpose();
  }

  /// The derived object.
  Derived& derived() { return static_cast<Derived&>(*this); }
  /// The derived object.
  const Derived& derived() const { return static_cast<const Derived&>(*this); }

 protected:
  SVDBase() = default;

  void requireComputed() const {
    if constexpr (SVDTraits<Derived>::ChecksComputed) WPROJ_ASSERT(m_computed);
  }

  Matrix m_u, m_v;
  Vector m_s;
  Eigen::ComputationInfo m_info = Eigen::Success;
  bool m_computed = false;
};

}  // namespace wproj
