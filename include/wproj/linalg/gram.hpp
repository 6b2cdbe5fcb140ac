// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// How a tall batch is cut into row blocks for Gram matrices computed on wproj's own threads.

#include "../core/blas_threads.hpp"
#include "../core/config.hpp"

#include <algorithm>

namespace wproj {
namespace detail {

/// Into how many row blocks a batch of n rows of width d is cut before its Gram XᵀX is summed
/// block by block (`StreamingCovariance::update`): blocks of at least 2²⁰ entries and 256 rows, at
/// most 8 blocks, and at most as many d×d partial sums as fit in 2²⁴ entries (64 MiB of float).
/// With OpenBLAS's thread control the blocks run on their own threads with single-threaded BLAS
/// (OpenBLAS threads a tall ?syrk poorly: two thirds of its ?gemm rate on two cores at 8192×512);
/// without it the answer is 1. It depends on n and d only — never on a thread count — so the
/// sums, added in block order, are the same to the bit for any thread count.
inline int gramRowParts(Index n, Index d) {
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
  const Index minRows = std::max<Index>(256, (Index(1) << 20) / std::max<Index>(1, d));
  const Index byMemory = std::max<Index>(1, (Index(1) << 24) / std::max<Index>(1, d * d));
  return int(std::max<Index>(1, std::min<Index>({n / minRows, 8, byMemory})));
#else
  (void)n;
  (void)d;
  return 1;
#endif
}

}  // namespace detail
}  // namespace wproj
