// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The orthogonal polar factor: the nearest matrix with orthonormal columns (or rows).
///
/// For X = P Σ Qᵀ (thin SVD), the polar decomposition is X = (P Qᵀ)(Q Σ Qᵀ), and P Qᵀ is the
/// matrix with orthonormal columns (m ≥ n) or rows (m < n) closest to X in every unitarily
/// invariant norm (Fan & Hoffman 1955; Higham, "Functions of Matrices", ch. 8). Isotropic
/// merging (Iso-CTS) and TSV-M use it to orthogonalise stacked singular vectors.

#include "../core/config.hpp"
#include "truncated_svd.hpp"

#include <Eigen/Core>

namespace wproj {

/// The orthogonal polar factor P Qᵀ of x (m×n) from its thin SVD x = P Σ Qᵀ (computed by
/// `TruncatedSVD` with every singular triplet kept). The result has orthonormal columns when
/// m ≥ n and orthonormal rows when m < n. When x is rank-deficient the factor is not unique (the
/// directions of its zero singular values are completed deterministically by the SVD).
/// Non-finite or empty input throws `InvalidArgument`.
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> polarFactor(const Eigen::MatrixBase<Derived>& x) {
  using Matrix = Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  checkNonEmpty(x, "polarFactor", "x");
  TruncatedSVD<Matrix> svd;
  svd.setRankRule(RankRule::all()).compute(x);
  if (svd.info() != Eigen::Success) throw NumericalError("polarFactor: the SVD of x did not converge");
  return svd.matrixU() * svd.matrixV().transpose();
}

}  // namespace wproj
