// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Null spaces, row spaces and column spaces of matrices (rank from an SVD with SciPy's rule:
/// s > eps·max(m, n)·s_max by default, s > tol·s_max for `tol ≥ 0`), the null space of a
/// symmetric PSD matrix below an eigenvalue threshold (AlphaEdit), and the intersection of the
/// null spaces of several matrices (INLP, via Ben-Israel's ∩ N(w_i) = N(Σ P_R(w_i))).

#include "../core/config.hpp"
#include "subspace.hpp"

#include <Eigen/Eigenvalues>
#include <Eigen/SVD>

#include <cmath>
#include <string>
#include <vector>

namespace wproj {

namespace detail {
template <typename T>
struct NonDeduced {
  using type = T;
};
}  // namespace detail

/// An orthonormal basis (n×k) of the null space N(a) = {x : a x = 0} of the m×n matrix `a`:
/// the right singular vectors whose singular values fail the rank rule, so k = n − rank(a).
/// A zero (or 0×n) `a` gives the identity; `a` with n = 0 gives a 0×0 basis.
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> nullSpaceBasis(
    const Eigen::MatrixBase<Derived>& a, typename Derived::Scalar tol = typename Derived::Scalar(-1)) {
  using Scalar = typename Derived::Scalar;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  static_assert(!Eigen::NumTraits<Scalar>::IsComplex && !Eigen::NumTraits<Scalar>::IsInteger,
                "nullSpaceBasis: real floating-point scalars only");
  const char* where = "nullSpaceBasis";
  detail::checkTolerance(tol, where);
  const Matrix am = a;  // evaluate expressions (e.g. products) once, before any coefficient access
  checkFinite(am, where, "a");
  const Index m = am.rows(), n = am.cols();
  if (m == 0 || n == 0) return Matrix::Identity(n, n);
  Eigen::BDCSVD<Matrix> svd(am, Eigen::ComputeFullV);
  const Index r = detail::rankFromSingularValues(svd.singularValues(), m, n, tol);
  return svd.matrixV().rightCols(n - r);
}

/// The null space N(a) of the m×n matrix `a` as a subspace of Rⁿ (see `nullSpaceBasis`).
template <typename Derived>
Subspace<typename Derived::Scalar> nullSpace(const Eigen::MatrixBase<Derived>& a,
                                             typename Derived::Scalar tol = typename Derived::Scalar(-1)) {
  return Subspace<typename Derived::Scalar>::fromOrthonormal(nullSpaceBasis(a, tol));
}

/// The row space R(aᵀ) of the m×n matrix `a`, a subspace of Rⁿ; its projector is P_R(a) = BBᵀ
/// with B = orth(aᵀ). The complement of `nullSpace(a)`.
template <typename Derived>
Subspace<typename Derived::Scalar> rowSpace(const Eigen::MatrixBase<Derived>& a,
                                            typename Derived::Scalar tol = typename Derived::Scalar(-1)) {
  return Subspace<typename Derived::Scalar>::fromRows(a, tol);
}

/// The column space R(a) of the m×n matrix `a`, a subspace of Rᵐ (SciPy `orth`).
template <typename Derived>
Subspace<typename Derived::Scalar> columnSpace(const Eigen::MatrixBase<Derived>& a,
                                               typename Derived::Scalar tol = typename Derived::Scalar(-1)) {
  return Subspace<typename Derived::Scalar>::fromColumns(a, tol);
}

/// The span of the eigenvectors of the symmetric positive semi-definite n×n matrix `s` whose
/// eigenvalues are below `threshold` (absolute). AlphaEdit (Fang et al. 2025) projects updates
/// onto this null space with s = K₀K₀ᵀ/n and threshold 2e-2. `s` must be symmetric up to
/// ‖s − sᵀ‖_F ≤ √eps·‖s‖_F (it is symmetrised), finite; `threshold` finite and ≥ 0.
template <typename Derived>
Subspace<typename Derived::Scalar> psdNullSpace(const Eigen::MatrixBase<Derived>& s,
                                                typename Derived::Scalar threshold) {
  using Scalar = typename Derived::Scalar;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const char* where = "psdNullSpace";
  requireArg(s.rows() == s.cols(), where, "s", detail::shapeString(s.rows(), s.cols()), "a square matrix");
  requireArg(std::isfinite(static_cast<double>(threshold)) && threshold >= Scalar(0), where, "threshold",
             static_cast<double>(threshold), "a finite value >= 0");
  Matrix sym = s;  // evaluate expressions once, before any coefficient access
  checkFinite(sym, where, "s");
  const Index n = sym.rows();
  if (n == 0) return Subspace<Scalar>(0);
  const Scalar asym = (sym - sym.transpose()).norm();
  const Scalar bound = std::sqrt(std::numeric_limits<Scalar>::epsilon()) * sym.norm();
  requireArg(asym <= bound, where, "||s - s^T||_F", static_cast<double>(asym),
             "<= " + detail::describe(static_cast<double>(bound)) + " (a symmetric matrix)");
  sym = (sym + sym.transpose().eval()) * Scalar(0.5);
  Eigen::SelfAdjointEigenSolver<Matrix> eig(sym);
  if (eig.info() != Eigen::Success)
    throw NumericalError("psdNullSpace: the symmetric eigensolver did not converge");
  Index k = 0;
  while (k < n && eig.eigenvalues()(k) < threshold) ++k;  // eigenvalues ascending
  return Subspace<Scalar>::fromOrthonormal(eig.eigenvectors().leftCols(k));
}

/// The intersection ∩ N(w_i) of the null spaces of the matrices w_i (each c_i×d), a subspace of
/// R^d. By Ben-Israel, ∩ N(w_i) = N(Σ P_R(w_i)), so its projector is I − P_R(Σ_i P_R(w_i)) (the
/// INLP projector, Ravfogel et al. 2020). Computed as the null space of the stacked row-space
/// bases M = [B₁ᵀ; B₂ᵀ; …] (MᵀM = Σ P_R(w_i)), which avoids squaring singular values. `tol`
/// applies to every rank decision (default: SciPy rule). `ws` must be non-empty.
template <typename Scalar>
Subspace<Scalar> intersectNullSpaces(const std::vector<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>& ws,
                                     typename detail::NonDeduced<Scalar>::type tol = Scalar(-1)) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const char* where = "intersectNullSpaces";
  requireArg(!ws.empty(), where, "ws.size()", ws.size(), ">= 1 (the ambient dimension comes from the matrices)");
  detail::checkTolerance(tol, where);
  const Index d = ws.front().cols();
  Index rows = 0;
  std::vector<Matrix> bases;
  bases.reserve(ws.size());
  for (std::size_t i = 0; i < ws.size(); ++i) {
    const std::string name = "ws[" + std::to_string(i) + "]";
    requireArg(ws[i].cols() == d, where, name.c_str(), detail::shapeString(ws[i].rows(), ws[i].cols()),
               std::to_string(d) + " columns like ws[0]");
    checkFinite(ws[i], where, name.c_str());
    bases.push_back(Subspace<Scalar>::fromRows(ws[i], tol).basis());
    rows += bases.back().cols();
  }
  Matrix stacked(rows, d);
  Index at = 0;
  for (const Matrix& b : bases) {
    stacked.middleRows(at, b.cols()) = b.transpose();
    at += b.cols();
  }
  return nullSpace(stacked, tol);
}

}  // namespace wproj
