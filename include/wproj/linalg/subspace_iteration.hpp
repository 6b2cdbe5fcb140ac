// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Subspace (power) iteration pieces shared by the randomized solvers: the normalisation
/// between power-iteration products (`PowerNormalization`, the LU normalisation of
/// scikit-learn) and one warm subspace iteration for a slowly drifting matrix
/// (`warmSubspaceIteration`, the GaLore refresh without its SVD).

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "orthonormalize.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <utility>
#include <vector>

namespace wproj {

/// How a block is re-normalised between the products of a power (subspace) iteration.
enum class PowerNormalization {
  None,            ///< no normalisation (fastest; loses the small directions when q is large)
  LU,              ///< partial-pivoted LU, keeping P·L (scikit-learn's choice for q > 2)
  Orthonormalize,  ///< orthonormal basis through `orthonormalizeInPlace` (CholeskyQR2 when well conditioned)
  Auto             ///< one Cholesky-QR pass when the block's Gram matrix is well conditioned
                   ///< (κ(Y)² ≤ 10⁻³/u: the result is orthonormal to ≈ 10⁻³, all a power
                   ///< iterate needs), else Orthonormalize; the final basis is always fully orthonormalised
};

/// Name of a normalisation ("none", "lu", "orthonormalize", "auto").
inline const char* toString(PowerNormalization n) {
  switch (n) {
    case PowerNormalization::None: return "none";
    case PowerNormalization::LU: return "lu";
    case PowerNormalization::Orthonormalize: return "orthonormalize";
    case PowerNormalization::Auto: return "auto";
  }
  return "?";
}

namespace detail {

/// Replaces the tall block y (m×l, m ≥ l) by P·L from its partial-pivoted LU factorisation
/// y = P·L·U (L unit lower trapezoidal): a cheap normalisation with span(P·L) = span(y) when y
/// has full column rank.
template <typename MatrixT>
void luNormalizeInPlace(MatrixT& y) {
  using Scalar = typename MatrixT::Scalar;
  const Index m = y.rows(), l = y.cols();
  std::vector<Index> perm(static_cast<std::size_t>(m));
  for (Index i = 0; i < m; ++i) perm[std::size_t(i)] = i;
  for (Index j = 0; j < l && j < m; ++j) {
    Index p = 0;
    y.col(j).tail(m - j).cwiseAbs().maxCoeff(&p);
    p += j;
    if (p != j) {
      y.row(j).swap(y.row(p));
      std::swap(perm[std::size_t(j)], perm[std::size_t(p)]);
    }
    const Scalar pivot = y(j, j);
    if (pivot == Scalar(0)) continue;
    y.col(j).tail(m - j - 1) /= pivot;
    if (j + 1 < l)
      y.block(j + 1, j + 1, m - j - 1, l - j - 1).noalias() -=
          y.col(j).tail(m - j - 1) * y.row(j).segment(j + 1, l - j - 1);
  }
  MatrixT out(m, l);
  for (Index i = 0; i < m; ++i) {
    const Index r = perm[std::size_t(i)];
    for (Index j = 0; j < l; ++j) out(r, j) = j < i ? y(i, j) : (j == i ? Scalar(1) : Scalar(0));
  }
  y.swap(out);
}

}  // namespace detail

/// One warm subspace iteration for a slowly drifting matrix (the GaLore refresh without its SVD):
/// from an orthonormal basis P0 of the previous top-r subspace, returns an orthonormal basis of
///   span(G Gᵀ P0) (m×r) for Side::Left, or span(Gᵀ G P0) (n×r) for Side::Right —
/// exactly the subspace spanned by the r singular vectors a warm-started `RandomizedSVD` with
/// oversampling 0 and no power iteration returns (span(G·orth(GᵀP0)) = span(G GᵀP0)), at the cost
/// of the two products with G and one orthonormalisation of the small m×r (or n×r) block —
/// no orthonormalisation of the long side, no small SVD. The columns are not singular vectors:
/// column j follows p_j (CholeskyQR keeps the order of P0), which suits optimizers that keep
/// their moments across refreshes. Directions with σ_i/σ_1 below ≈ √u are not resolved (G Gᵀ
/// squares the spectrum); when G Gᵀ P0 is rank-deficient (e.g. G = 0) the basis is completed
/// with arbitrary orthonormal directions, as `orthonormalizeInPlace` does.
template <typename DerivedG, typename DerivedP>
Eigen::Matrix<typename DerivedG::Scalar, Eigen::Dynamic, Eigen::Dynamic> warmSubspaceIteration(
    const Eigen::MatrixBase<DerivedG>& g, const Eigen::MatrixBase<DerivedP>& p0, Side side) {
  using Matrix = Eigen::Matrix<typename DerivedG::Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  checkNonEmpty(g, "warmSubspaceIteration", "g");
  checkShape(p0, side == Side::Left ? g.rows() : g.cols(), -1, "warmSubspaceIteration", "p0");
  requireArg(p0.cols() >= 1 && p0.cols() <= std::min(g.rows(), g.cols()), "warmSubspaceIteration", "p0.cols()",
             p0.cols(), "a rank in [1, min(m, n)]");
  checkFinite(p0, "warmSubspaceIteration", "p0");
  Matrix y, z;
  if (side == Side::Left) {
    y.noalias() = g.transpose() * p0;  // n×r
    z.noalias() = g * y;               // m×r
  } else {
    y.noalias() = g * p0;              // m×r
    z.noalias() = g.transpose() * y;   // n×r
  }
  if (!z.allFinite()) {  // a NaN/Inf in G reaches z: name it, otherwise the products overflowed
    checkFinite(g, "warmSubspaceIteration", "g");
    throw NumericalError("warmSubspaceIteration: G·Gᵀ·P0 overflowed (|G| too large for the scalar type)");
  }
  detail::orthonormalizeSquaredSketch(z);
  return z;
}

}  // namespace wproj
