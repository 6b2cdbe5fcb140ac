// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Orthonormalising tall-skinny blocks: thin Householder Q, CholeskyQR2 (Yamamoto et al. 2015),
/// shifted CholeskyQR3 (Fukaya et al. 2020) and an automatic choice; and the orthonormalisers of
/// the randomized solvers (`detail::orthonormalizeSketch` for sketches and power iterates,
/// `detail::orthonormalizeSquaredSketch` for G Gᵀ P, `detail::projectOutBlock` for block
/// Gram–Schmidt against a basis) with the double-precision Gram matrix they share. Every
/// orthonormalisation of wproj lives here.
///
/// Every method returns Q with the sign convention diag(R) ≥ 0, so for a full-rank input all
/// methods agree (up to rounding) on the same Q.

#include "../core/config.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Householder>
#include <Eigen/QR>

#include <algorithm>
#include <cmath>
#include <type_traits>

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

namespace detail {

/// Gram matrix of the columns (XᵀX, `ofColumns`) or of the rows (XXᵀ) of x, accumulated in double
/// precision, written to g. Single-precision inputs are converted block by block (no full copy of
/// x) into `buf` (a caller's buffer kept between calls, or null for a temporary one).
template <typename Derived>
void gramInDouble(const Eigen::MatrixBase<Derived>& x, bool ofColumns, Eigen::MatrixXd& g, Eigen::MatrixXd* buf) {
  using Scalar = typename Derived::Scalar;
  const auto& a = x.derived();
  const Index s = ofColumns ? a.cols() : a.rows();
  g.setZero(s, s);
  if constexpr (std::is_same<Scalar, double>::value) {
    (void)buf;
    if (ofColumns)
      g.selfadjointView<Eigen::Lower>().rankUpdate(a.transpose().template cast<double>());
    else
      g.selfadjointView<Eigen::Lower>().rankUpdate(a.template cast<double>());
  } else {
    const Index len = ofColumns ? a.rows() : a.cols();
    // Blocks of ≈ 1 MiB in double (at least 256 lines): SYRK calls deep enough for full speed.
    const Index block = std::max<Index>(256, (Index(1) << 17) / std::max<Index>(s, 1));
    Eigen::MatrixXd local;
    Eigen::MatrixXd& work = buf ? *buf : local;
    for (Index start = 0; start < len; start += block) {
      const Index b = std::min(block, len - start);
      // The buffer keeps its full-block size, so a buffer reused between calls is not reallocated.
      if (ofColumns) {
        if (work.rows() < b || work.cols() != s) work.resize(std::min(block, len), s);
        work.topRows(b) = a.middleRows(start, b).template cast<double>();  // b×s (a transposing cast is slow)
        g.selfadjointView<Eigen::Lower>().rankUpdate(work.topRows(b).transpose());
      } else {
        if (work.rows() != s || work.cols() < b) work.resize(s, std::min(block, len));
        work.leftCols(b) = a.middleCols(start, b).template cast<double>();  // s×b
        g.selfadjointView<Eigen::Lower>().rankUpdate(work.leftCols(b));
      }
    }
  }
  g.triangularView<Eigen::StrictlyUpper>() = g.transpose();
}

/// Gram matrix of the columns (XᵀX, `ofColumns`) or of the rows (XXᵀ) of x, accumulated in double.
template <typename Derived>
Eigen::MatrixXd gramInDouble(const Eigen::MatrixBase<Derived>& x, bool ofColumns) {
  Eigen::MatrixXd g;
  gramInDouble(x, ofColumns, g, nullptr);
  return g;
}

/// Orthonormalises a sketch or power iterate X (m×ℓ) by Cholesky QR. The first pass needs
/// κ(X)² ≤ 0.1/u (rcond of XᵀX ≥ 10u); it leaves XᵀX within ≈ u·κ² of I. A power iterate
/// (`full` = false) stops there when rcond ≥ 10³u (orthonormal to ≈ 10⁻³: all the next product
/// needs); otherwise a second pass, accepted when its input deviates from orthonormality by
/// less than 1/2, gives an O(u)-orthonormal basis (CholeskyQR2, with the span accuracy O(u·κ)
/// a range finder needs), or a third pass when the second one's input was still within 10³ of
/// orthonormal. Anything else falls back to `orthonormalizeInPlace` (shifted
/// CholeskyQR3 or Householder). Saves the ≈ 3× cost of that fallback on the κ ≈ 10²–10³
/// sketches of slowly decaying spectra, which `orthonormalizeInPlace`'s stricter a-priori test
/// (made for O(u·√k) span accuracy) sends to shifted CholeskyQR3. `scratch` (a caller's buffer
/// kept between calls, or null) holds the copy of X the fallback restores.
template <typename MatrixT>
void orthonormalizeSketch(MatrixT& x, bool full, MatrixT* scratch = nullptr) {
  using RealScalar = typename Eigen::NumTraits<typename MatrixT::Scalar>::Real;
  const RealScalar u = unitRoundoff<RealScalar>();
  MatrixT local;
  MatrixT& saved = scratch ? *scratch : local;
  saved = x;
  RealScalar rcond = 0, dev = 0;
  if (detail::choleskyQrPass(x, RealScalar(0), nullptr, &rcond, RealScalar(10) * u)) {
    if (!full && rcond >= RealScalar(1e3) * u) return;
    // Each pass shrinks the deviation from orthonormality by ≈ u·κ²; a third pass (CholeskyQR3)
    // covers the sketches whose first pass leaves it just above 1/2.
    if (detail::choleskyQrPass(x, RealScalar(0), &dev) && dev < RealScalar(0.5)) return;
    if (dev < RealScalar(1e3) && x.allFinite() && detail::choleskyQrPass(x, RealScalar(0), &dev) &&
        dev < RealScalar(0.5))
      return;
  }
  x = saved;
  orthonormalizeInPlace(x, OrthoMethod::Auto);
}

/// Restores the orthonormality of an almost orthonormal block X (e.g. V = ZWΣ⁻¹ of a small SVD):
/// one Cholesky-QR pass, which leaves XᵀX within O(u) of I when the input's ‖XᵀX − I‖_F is below
/// 1/10 (κ(X)² < 1.3); otherwise (or when that pass fails) `orthonormalizeSketch(x, true)`.
template <typename MatrixT>
void reorthonormalize(MatrixT& x, MatrixT* scratch = nullptr) {
  using RealScalar = typename Eigen::NumTraits<typename MatrixT::Scalar>::Real;
  RealScalar dev = 0;
  MatrixT local;
  MatrixT& saved = scratch ? *scratch : local;
  saved = x;
  if (choleskyQrPass(x, RealScalar(0), &dev) && dev < RealScalar(0.1)) return;
  x = saved;
  orthonormalizeSketch(x, true, scratch);
}

/// x ← x − Q(Qᵀx), `passes` times (block classical Gram–Schmidt, all GEMM).
template <typename QType, typename MatrixT>
void projectOutBlock(const QType& q, MatrixT& x, int passes = 2) {
  if (q.cols() == 0) return;
  MatrixT c;
  for (int pass = 0; pass < passes; ++pass) {
    c.noalias() = q.transpose() * x;
    x.noalias() -= q * c;
  }
}

/// Orthonormalises Z = G Gᵀ P (m×r), whose condition number is the square of G's spectral
/// spread and so far beyond a single-precision CholeskyQR: the first Cholesky-QR pass takes R
/// from the Gram matrix ZᵀZ accumulated and factorised in double (resolving κ(Z) up to ≈ 10⁶),
/// the second is an ordinary pass on the now well-conditioned block, accepted when its input is
/// within 1/2 of orthonormal. For double Z, or when either test fails (rank-deficient Z, κ beyond
/// that), `orthonormalizeInPlace` runs instead. The result equals the Householder Q with
/// diag(R) ≥ 0 up to rounding; it costs about a third of shifted CholeskyQR3. Returns true when
/// the double-Gram route produced the result, false after the fallback.
template <typename MatrixT>
bool orthonormalizeSquaredSketch(MatrixT& z) {
  using Scalar = typename MatrixT::Scalar;
  using Real = typename Eigen::NumTraits<Scalar>::Real;
  if constexpr (std::is_same<Scalar, float>::value) {
    const MatrixT saved = z;
    const Eigen::MatrixXd gram = gramInDouble(z, true);
    Eigen::LLT<Eigen::MatrixXd> llt(gram);
    if (llt.info() == Eigen::Success && llt.matrixLLT().diagonal().allFinite() &&
        llt.rcond() >= 1e3 * unitRoundoff<double>()) {
      const MatrixT r = llt.matrixU().toDenseMatrix().template cast<Scalar>();
      r.template triangularView<Eigen::Upper>().template solveInPlace<Eigen::OnTheRight>(z);
      Real dev = 0;
      if (z.allFinite() && choleskyQrPass(z, Real(0), &dev) && dev < Real(0.5)) return true;
    }
    z = saved;
  }
  orthonormalizeInPlace(z, OrthoMethod::Auto);
  return false;
}

}  // namespace detail

}  // namespace wproj
