// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Matrix products of the per-step paths that allocate nothing once warmed up, with Eigen's own
/// GEMM as well as with a BLAS backend.
///
/// Eigen's GEMM packs its operands into two blocks of kc·mc and kc·nc scalars. It takes them from
/// the stack up to EIGEN_STACK_ALLOCATION_LIMIT (128 KiB) and from the heap above, so a plain
/// `dst.noalias() = A * B` allocates on every call for realistic sizes (counts per projected
/// step: docs/performance.md, "Gradient steps"). `gemmInto` runs the
/// same kernel (`general_matrix_matrix_product` with the blocking sizes Eigen would choose, so
/// the results are bit-identical to the expression) on packing blocks kept in a per-thread
/// scratch that only grows: after the largest product of a thread has run once, no product
/// allocates. With `EIGEN_USE_BLAS` (WPROJ_USE_BLAS) the product goes to the BLAS `gemm`, which
/// packs in its own buffers, and the scratch is never used.

#include "../core/config.hpp"

#include <Eigen/Core>

#include <type_traits>

namespace wproj {
namespace detail {

/// Packing blocks of one thread for `gemmInto` (grown on demand, never shrunk).
template <typename Scalar>
struct GemmScratch {
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> a, b;
  static GemmScratch& local() {
    static thread_local GemmScratch s;
    return s;
  }
};

/// Eigen's `level3_blocking` over caller-provided packing blocks.
template <typename Scalar>
class ScratchBlocking : public Eigen::internal::level3_blocking<Scalar, Scalar> {
 public:
  ScratchBlocking(Index rows, Index cols, Index depth) {
    this->m_mc = rows;
    this->m_nc = cols;
    this->m_kc = depth;
    Eigen::internal::computeProductBlockingSizes<Scalar, Scalar, 1>(this->m_kc, this->m_mc, this->m_nc, Index(1));
    GemmScratch<Scalar>& s = GemmScratch<Scalar>::local();
    const Index sizeA = this->m_kc * this->m_mc, sizeB = this->m_kc * this->m_nc;
    if (s.a.size() < sizeA) s.a.resize(sizeA);
    if (s.b.size() < sizeB) s.b.resize(sizeB);
    this->m_blockA = s.a.data();
    this->m_blockB = s.b.data();
  }
};

/// Grows this thread's packing scratch for a rows×depth by depth×cols product of `gemmInto`, so
/// that a product first run later does not allocate (no-op with a BLAS backend).
template <typename Scalar>
void reserveGemm(Index rows, Index cols, Index depth) {
#ifndef EIGEN_USE_BLAS
  if (rows > 1 && cols > 1 && depth > 0) (void)ScratchBlocking<Scalar>(rows, cols, depth);
#else
  (void)rows;
  (void)cols;
  (void)depth;
#endif
}

template <typename X, typename Scalar>
constexpr bool gemmOperand() {
  return std::is_same<typename X::Scalar, Scalar>::value && (int(X::Flags) & Eigen::DirectAccessBit) != 0 &&
         int(X::InnerStrideAtCompileTime) == 1;
}

/// dst = α·A·B (accumulate = false) or dst += α·A·B, without allocating once the scratch of this
/// thread is as large as the product needs (see the file comment). Operands without direct
/// access, other scalar types, small products (Eigen's coefficient-based range) and
/// matrix-vector shapes use the ordinary Eigen product. `dst` must not alias A or B.
template <typename DA, typename DB, typename DD>
void gemmInto(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b, typename DD::Scalar alpha, bool accumulate,
              Eigen::MatrixBase<DD>& dst) {
  using Scalar = typename DD::Scalar;
  const auto& A = a.derived();
  const auto& B = b.derived();
  auto& D = dst.derived();
  const Index rows = D.rows(), cols = D.cols(), depth = A.cols();
  eigen_assert(A.rows() == rows && B.cols() == cols && B.rows() == depth);
  constexpr bool direct = gemmOperand<DA, Scalar>() && gemmOperand<DB, Scalar>() && gemmOperand<DD, Scalar>();
#ifdef EIGEN_USE_BLAS
  constexpr bool custom = direct && false;  // the BLAS gemm packs in its own buffers
#else
  constexpr bool custom = direct;
#endif
  bool generic = !custom || rows <= 1 || cols <= 1 || depth == 0 || depth + rows + cols < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD;
  if constexpr (direct) {  // an expression operand (e.g. 2·G) has no strides: it takes the Eigen product
    if (!generic && (A.innerStride() != 1 || B.innerStride() != 1 || D.innerStride() != 1)) generic = true;
  }
  if (generic) {
    if (accumulate)
      D.noalias() += alpha * A * B;
    else
      D.noalias() = alpha * A * B;
    return;
  }
  if constexpr (custom) {
    if constexpr (bool(DD::IsRowMajor)) {
      // Dᵀ (column-major) = α·Bᵀ·Aᵀ: the same arithmetic as Eigen's row-major specialisation.
      auto dt = D.transpose();
      gemmInto(B.transpose(), A.transpose(), alpha, accumulate, dt);
    } else {
      if (!accumulate) D.setZero();
      ScratchBlocking<Scalar> blocking(rows, cols, depth);
      Eigen::internal::general_matrix_matrix_product<Index, Scalar, DA::IsRowMajor ? Eigen::RowMajor : Eigen::ColMajor, false, Scalar,
                                                     DB::IsRowMajor ? Eigen::RowMajor : Eigen::ColMajor, false, Eigen::ColMajor,
                                                     1>::run(rows, cols, depth, A.data(), A.outerStride(), B.data(), B.outerStride(),
                                                             D.data(), 1, D.outerStride(), alpha, blocking, nullptr);
    }
  }
}

/// Overload for a temporary destination (a `Block`, `Map` or `Transpose` expression).
template <typename DA, typename DB, typename DD>
void gemmInto(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b, typename DD::Scalar alpha, bool accumulate,
              Eigen::MatrixBase<DD>&& dst) {
  gemmInto(a, b, alpha, accumulate, dst);
}

}  // namespace detail
}  // namespace wproj
