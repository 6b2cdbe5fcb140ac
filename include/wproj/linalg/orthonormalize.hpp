// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Orthonormalising tall-skinny blocks: thin Householder Q, CholeskyQR2 (Yamamoto et al. 2015),
/// shifted CholeskyQR3 (Fukaya et al. 2020) and an automatic choice.
///
/// Every method returns Q with the sign convention diag(R) ≥ 0, so for a full-rank input all
/// methods agree (up to rounding) on the same Q.

#include "../core/config.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Householder>
#include <Eigen/QR>

#include <cmath>

namespace wproj {

/// Which algorithm orthonormalises a block.
enum class OrthoMethod {
  Auto,               ///< CholeskyQR2 when the Gram matrix is well conditioned, else shifted CholeskyQR3, else Householder
  Householder,        ///< thin Householder QR: stable for any condition number, BLAS-2 panels
  CholeskyQR2,        ///< two Cholesky-QR passes: all BLAS-3, O(u) orthogonality for κ ≲ u^{-1/2}
  ShiftedCholeskyQR3  ///< a shifted Cholesky-QR pass then CholeskyQR2: κ up to O(u^{-1})
};

/// Name of a method ("auto", "householder", …).
inline const char* toString(OrthoMethod m) {
  switch (m) {
    case OrthoMethod::Auto: return "auto";
    case OrthoMethod::Householder: return "householder";
    case OrthoMethod::CholeskyQR2: return "cholesky-qr2";
    case OrthoMethod::ShiftedCholeskyQR3: return "shifted-cholesky-qr3";
  }
  return "?";
}

namespace detail {

/// One Cholesky-QR pass: X ← X R⁻¹ with RᵀR = XᵀX + shift·I. Returns false when the Cholesky
/// factorisation fails or the Gram matrix' estimated reciprocal condition number is below
/// `minRcond` (X is left unchanged then). `gramDeviation` receives ‖XᵀX − I‖_F of the input.
template <typename Derived>
bool choleskyQrPass(Eigen::MatrixBase<Derived>& x, typename Derived::RealScalar shift,
                    typename Derived::RealScalar* gramDeviation = nullptr,
                    typename Derived::RealScalar* rcond = nullptr,
                    typename Derived::RealScalar minRcond = 0) {
  using Scalar = typename Derived::Scalar;
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const Index k = x.cols();
  Mat g = Mat::Zero(k, k);
  g.template selfadjointView<Eigen::Lower>().rankUpdate(x.derived().adjoint());
  g.template triangularView<Eigen::StrictlyUpper>() = g.adjoint();
  if (gramDeviation) *gramDeviation = (g - Mat::Identity(k, k)).norm();
  if (shift > 0) g.diagonal().array() += shift;
  Eigen::LLT<Mat> llt(g);
  if (llt.info() != Eigen::Success) return false;
  if (!llt.matrixLLT().diagonal().allFinite()) return false;
  if (rcond || minRcond > 0) {
    const auto rc = llt.rcond();
    if (rcond) *rcond = rc;
    if (!(rc >= minRcond)) return false;
  }
  llt.matrixU().template solveInPlace<Eigen::OnTheRight>(x);
  return x.allFinite();
}

}  // namespace detail

/// Orthonormalises the columns of the m×k block `x` (m ≥ k) in place, so that XᵀX = I and
/// span(X) ⊇ span(input). Returns the method that produced the result (for `Auto`, the one it
/// chose; a Cholesky-based request falls back to Householder when its factorisation fails).
///
/// For a rank-deficient input, Householder completes the basis with arbitrary orthonormal
/// directions; use `Subspace::fromColumns` when a rank-revealing basis is wanted.
template <typename Derived>
OrthoMethod orthonormalizeInPlace(Eigen::MatrixBase<Derived>& x, OrthoMethod method = OrthoMethod::Auto) {
  using Scalar = typename Derived::Scalar;
  using Real = typename Derived::RealScalar;
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  static_assert(!Eigen::NumTraits<Scalar>::IsInteger, "orthonormalizeInPlace: floating-point scalars only");
  const Index m = x.rows(), k = x.cols();
  requireArg(m >= k, "orthonormalizeInPlace", "x.rows()", m, ">= x.cols() = " + std::to_string(k));
  checkFinite(x, "orthonormalizeInPlace", "x");
  if (k == 0) return method;
  const Real u = unitRoundoff<Real>();

  auto householder = [&]() {
    Eigen::HouseholderQR<Mat> qr(x);
    Mat q = Mat::Identity(m, k);
    q.applyOnTheLeft(qr.householderQ());
    for (Index j = 0; j < k; ++j)
      if (Eigen::numext::real(qr.matrixQR()(j, j)) < Real(0)) q.col(j) = -q.col(j);
    x = q;
    return OrthoMethod::Householder;
  };
  if (method == OrthoMethod::Householder) return householder();

  const Mat saved = x;
  auto restoreAndHouseholder = [&]() {
    x = saved;
    return householder();
  };
  // The final pass of a CholeskyQR chain sees an almost orthonormal block; its Gram deviation
  // bounds the output's loss of orthogonality, so we accept only when it is small.
  const Real acceptDeviation = Real(0.5);

  auto shiftedChain = [&]() {
    const Real norm2 = saved.squaredNorm();  // ≥ ‖X‖₂², the bound the analysis allows
    const Real shift = Real(11) * Real(double(m) * double(k) + double(k) * double(k + 1)) * u * norm2;
    Real dev = 0;
    if (!detail::choleskyQrPass(x, shift) || !detail::choleskyQrPass(x, Real(0)) ||
        !detail::choleskyQrPass(x, Real(0), &dev) || !(dev < acceptDeviation))
      return restoreAndHouseholder();
    return OrthoMethod::ShiftedCholeskyQR3;
  };
  if (method == OrthoMethod::ShiftedCholeskyQR3) return shiftedChain();

  Real rcond = 0, dev = 0;
  if (!detail::choleskyQrPass(x, Real(0), nullptr, &rcond)) {
    x = saved;
    return method == OrthoMethod::Auto ? shiftedChain() : householder();
  }
  // CholeskyQR2 is safe when κ(X)² = κ(XᵀX) stays well below u⁻¹.
  if (method == OrthoMethod::Auto && !(rcond > Real(1e3) * u)) {
    x = saved;
    return shiftedChain();
  }
  if (!detail::choleskyQrPass(x, Real(0), &dev) || !(dev < acceptDeviation)) {
    x = saved;
    return method == OrthoMethod::Auto ? shiftedChain() : householder();
  }
  return OrthoMethod::CholeskyQR2;
}

/// Returns an orthonormal basis of the columns of `x` (m ≥ k) computed by `method`.
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> orthonormalized(
    const Eigen::MatrixBase<Derived>& x, OrthoMethod method = OrthoMethod::Auto) {
  Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> q = x;
  orthonormalizeInPlace(q, method);
  return q;
}

/// ‖QᵀQ − I‖_F: the loss of orthogonality of a basis.
template <typename Derived>
typename Derived::RealScalar orthogonalityError(const Eigen::MatrixBase<Derived>& q) {
  using Mat = Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const Mat g = q.adjoint() * q;
  return (g - Mat::Identity(q.cols(), q.cols())).norm();
}

}  // namespace wproj
