// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// INT4 group quantisation of a dense matrix, as Q-GaLore stores its projection matrices
/// (Zhang et al. 2024): asymmetric min/max per group of `groupSize` consecutive coefficients
/// (in column-major or row-major coefficient order, `Int4Order`), scale = max(max − min, 1e-5)/15, zero = clamp(−round(min/scale), 0, 15),
/// q = clamp(round(w/scale) + zero, 0, 15), dequantised as scale·(q − zero). Two 4-bit codes are
/// packed per byte (low nibble first), so the codes take ⌈mn/2⌉ bytes.
///
/// Error bound: for a group whose range contains 0 (min ≤ 0 ≤ max — every group of an
/// orthonormal basis in practice) each entry is reproduced within scale/2. For a group of one
/// sign the zero point saturates at 0 or 15 (a property of the Q-GaLore rule, kept here) and
/// the error can be larger.

#include "../core/config.hpp"
#include "persistence.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace wproj {

/// Coefficient order in which an `Int4Matrix` forms its groups and stores its codes.
enum class Int4Order {
  ColumnMajor,  ///< k-th coefficient = (k mod rows, k div rows)
  RowMajor      ///< k-th coefficient = (k div cols, k mod cols): PyTorch's `reshape(-1, group)` of a C-order tensor
};

/// A matrix quantised to 4 bits per coefficient in groups (see the file comment).
template <typename Scalar_>
struct Int4Matrix {
  /// Floating-point type of the matrix and the scales.
  using Scalar = Scalar_;
  /// Dense matrix type that is quantised and dequantised.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// \var rows
  /// Rows of the quantised matrix.
  /// \var cols
  /// Columns of the quantised matrix.
  /// \var groupSize
  /// Consecutive coefficients (in `order`) per group (even; default 256).
  Index rows = 0, cols = 0, groupSize = 256;
  /// Coefficient order of the groups and codes (default column-major).
  Int4Order order = Int4Order::ColumnMajor;
  std::vector<std::uint8_t> codes;  ///< ⌈rows·cols/2⌉ bytes, two codes per byte (low nibble = even index)
  std::vector<Scalar> scales;       ///< one per group
  std::vector<std::uint8_t> zeros;  ///< one zero point (0..15) per group

  /// Number of groups, ⌈rows·cols / groupSize⌉.
  Index groups() const { return groupSize > 0 ? (rows * cols + groupSize - 1) / groupSize : 0; }
  /// Bytes held by codes, scales and zero points.
  std::size_t bytes() const { return codes.size() + scales.size() * sizeof(Scalar) + zeros.size(); }
  /// The 4-bit code of the k-th coefficient (in `order`).
  std::uint8_t code(Index k) const {
    const std::uint8_t b = codes[std::size_t(k / 2)];
    return (k % 2 == 0) ? std::uint8_t(b & 0x0F) : std::uint8_t(b >> 4);
  }
  /// Scale of the group holding the k-th coefficient.
  Scalar scaleOf(Index k) const { return scales[std::size_t(k / groupSize)]; }

  /// Quantises `w` (any storage order) into this object, forming groups of `groupSize_`
  /// consecutive coefficients in the coefficient order `order_`. Reuses its buffers, so
  /// requantising a matrix of the same shape does not allocate.
  template <typename Derived>
  void quantize(const Eigen::MatrixBase<Derived>& w, Index groupSize_ = 256, Int4Order order_ = Int4Order::ColumnMajor) {
    requireArg(groupSize_ >= 2 && groupSize_ % 2 == 0, "Int4Matrix::quantize", "groupSize", groupSize_, "an even number >= 2");
    checkFinite(w, "Int4Matrix::quantize", "w");
    rows = w.rows();
    cols = w.cols();
    groupSize = groupSize_;
    order = order_;
    const Index total = rows * cols, ng = groups();
    codes.assign(std::size_t((total + 1) / 2), 0);
    scales.resize(std::size_t(ng));
    zeros.resize(std::size_t(ng));
    const bool rowMajor = order == Int4Order::RowMajor;
    auto at = [&](Index k) { return rowMajor ? w.coeff(k / cols, k % cols) : w.coeff(k % rows, k / rows); };
    for (Index g = 0; g < ng; ++g) {
      const Index b = g * groupSize, e = std::min(total, b + groupSize);
      Scalar lo = at(b), hi = at(b);
      for (Index k = b + 1; k < e; ++k) {
        lo = std::min(lo, at(k));
        hi = std::max(hi, at(k));
      }
      const Scalar scale = std::max(hi - lo, Scalar(1e-5)) / Scalar(15);
      const Scalar zero = std::min(Scalar(15), std::max(Scalar(0), -std::nearbyint(lo / scale)));
      scales[std::size_t(g)] = scale;
      zeros[std::size_t(g)] = static_cast<std::uint8_t>(zero);
      for (Index k = b; k < e; ++k) {
        const Scalar q = std::min(Scalar(15), std::max(Scalar(0), std::nearbyint(at(k) / scale) + zero));
        const auto c = static_cast<std::uint8_t>(q);
        std::uint8_t& byte = codes[std::size_t(k / 2)];
        byte = (k % 2 == 0) ? std::uint8_t((byte & 0xF0) | c) : std::uint8_t((byte & 0x0F) | (c << 4));
      }
    }
  }

  /// Writes scale·(q − zero) into `out` (resized to rows×cols).
  void dequantize(Matrix& out) const {
    out.resize(rows, cols);
    Scalar* d = out.data();
    const Index total = rows * cols;
    const bool rowMajor = order == Int4Order::RowMajor;
    for (Index k = 0; k < total; ++k) {
      const std::size_t g = std::size_t(k / groupSize);
      const Scalar v = scales[g] * (Scalar(code(k)) - Scalar(zeros[g]));
      if (rowMajor)
        d[(k % cols) * rows + k / cols] = v;
      else
        d[k] = v;
    }
  }
  /// The dequantised matrix, as a new object (allocates).
  Matrix dequantized() const {
    Matrix out;
    dequantize(out);
    return out;
  }

  /// Writes shape, group size, coefficient order, codes, scales and zero points to a checkpoint.
  void save(std::ostream& os) const {
    ckpt::writeTag(os, "Int4Matrix");
    ckpt::writePod<std::int64_t>(os, rows);
    ckpt::writePod<std::int64_t>(os, cols);
    ckpt::writePod<std::int64_t>(os, groupSize);
    ckpt::writePod<std::int32_t>(os, std::int32_t(order));
    ckpt::writeVector(os, codes);
    ckpt::writeVector(os, scales);
    ckpt::writeVector(os, zeros);
  }
  /// Reads a matrix written by `save`; throws `IoError` on malformed data. Version-1 checkpoints
  /// hold no order field: their codes are column-major.
  void load(std::istream& is) {
    ckpt::expectTag(is, "Int4Matrix");
    rows = ckpt::readBounded<std::int64_t>(is, "Int4Matrix rows", 0, ckpt::kMaxExtent);
    cols = ckpt::readBounded<std::int64_t>(is, "Int4Matrix cols", 0, ckpt::kMaxExtent);
    groupSize = ckpt::readBounded<std::int64_t>(is, "Int4Matrix group size", 2, ckpt::kMaxExtent);
    order = ckpt::streamVersion(is) >= 2 ? Int4Order(ckpt::readBounded<std::int32_t>(is, "Int4Matrix order", 0, 1))
                                         : Int4Order::ColumnMajor;
    codes = ckpt::readVector<std::uint8_t>(is, "Int4Matrix codes", (rows * cols + 1) / 2);
    scales = ckpt::readVector<Scalar>(is, "Int4Matrix scales", groups());
    zeros = ckpt::readVector<std::uint8_t>(is, "Int4Matrix zero points", groups());
    for (auto z : zeros)
      if (z > 15) throw IoError("checkpoint: Int4Matrix zero point out of range");
    for (auto s : scales)
      if (!(std::isfinite(double(s)) && s > Scalar(0))) throw IoError("checkpoint: Int4Matrix scale is not a positive finite number");
  }
};

}  // namespace wproj
