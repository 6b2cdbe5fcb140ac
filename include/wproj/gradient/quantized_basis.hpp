// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// INT4-quantised projection matrices (Q-GaLore, Zhang et al. 2024) around any dense basis.

#include "basis.hpp"
#include "int4.hpp"

namespace wproj {

/// Which coefficients of P (ambient×r) share an INT4 group.
enum class Int4Grouping {
  /// Q-GaLore's grouping (default): groups run along the rows of the basis as Q-GaLore stores it
  /// in PyTorch (C order, `reshape(-1, group)`): the r×n matrix Vh[:r, :] on the right side, i.e.
  /// along each basis vector (column-major order of P), and the m×r matrix U[:, :r] on the left
  /// side, i.e. across the r basis vectors row by row (row-major order of P).
  QGaLore,
  /// Column-major order of P on both sides: each group runs along one basis vector (wproj 0.1).
  ColumnMajor
};

/// Wraps a dense basis policy `Inner` (e.g. `SVDBasis<float>`): after each refresh the new P is
/// quantised to INT4 (`Int4Matrix`, groups of 256, asymmetric min/max) and the projections use
/// the dequantised matrix, so training sees exactly the precision Q-GaLore stores. The overlap
/// and the moment transition are computed on the dequantised bases. Pair it with
/// `GradientProjector::setAdaptiveGap` for Q-GaLore's lazy refreshes.
///
/// Knobs: `setGroupSize` (default 256), `setGrouping` (default `Int4Grouping::QGaLore`), `inner()`
/// to configure the wrapped policy.
/// `stateBytes()` counts the INT4 codes, scales and zero points; the dequantised copy used by
/// the GEMMs (and the inner policy's own matrix) are reported by `workspaceBytes()`.
template <typename Inner>
class QuantizedBasis : public detail::DenseBasisStorage<typename Inner::Scalar> {
  using Base = detail::DenseBasisStorage<typename Inner::Scalar>;

 public:
  /// Floating-point type of the inner policy.
  using Scalar = typename Inner::Scalar;
  /// Dense matrix type of the dequantised P and the transitions.
  using Matrix = typename Base::Matrix;
  /// Tag of this policy in checkpoints.
  static constexpr const char* kName = "QuantizedBasis";
  /// False: the basis changes only at refreshes.
  static constexpr bool kTracksSteps = false;

  /// Coefficients per INT4 group (even, ≥ 2; default 256).
  QuantizedBasis& setGroupSize(Index g) {
    requireArg(g >= 2 && g % 2 == 0, "QuantizedBasis::setGroupSize", "g", g, "an even number >= 2");
    m_groupSize = g;
    return *this;
  }
  /// Coefficients per INT4 group.
  Index groupSize() const { return m_groupSize; }
  /// Which coefficients share a group (default `Int4Grouping::QGaLore`).
  QuantizedBasis& setGrouping(Int4Grouping g) {
    m_grouping = g;
    return *this;
  }
  /// Which coefficients share a group.
  Int4Grouping grouping() const { return m_grouping; }
  /// The wrapped dense policy, to configure it.
  Inner& inner() { return m_inner; }
  /// The wrapped dense policy.
  const Inner& inner() const { return m_inner; }
  /// The stored INT4 basis.
  const Int4Matrix<Scalar>& quantized() const { return m_q; }

  /// Refreshes the inner policy, quantises its P to INT4 and installs the dequantised matrix; the
  /// overlap and R use the dequantised bases. A failed inner refresh keeps the basis.
  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t refreshIndex,
                        Matrix* transition) {
    const RefreshResult inner = m_inner.refresh(g, side, rank, refreshIndex, nullptr);
    if (!inner.ok) return inner;
    Matrix p;
    m_inner.denseBasis(p);
    const bool rowMajor = m_grouping == Int4Grouping::QGaLore && side == Side::Left;
    m_q.quantize(p, m_groupSize, rowMajor ? Int4Order::RowMajor : Int4Order::ColumnMajor);
    Matrix cand;
    m_q.dequantize(cand);
    return this->commit(cand, transition);
  }

  /// Persistent state: the INT4 codes, scales and zero points.
  std::size_t stateBytes() const { return m_q.bytes(); }
  /// The dequantised P plus the inner policy's own state.
  std::size_t workspaceBytes() const { return Base::stateBytes() + m_inner.stateBytes(); }

  /// Writes the tag, the group size and grouping, the INT4 basis (when present) and the inner policy.
  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::int64_t>(os, m_groupSize);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_grouping));
    ckpt::writePod<std::uint8_t>(os, this->hasBasis() ? 1 : 0);
    if (this->hasBasis()) m_q.save(os);
    m_inner.save(os);
  }
  /// Restores a basis written by `save` (P ambient×rank) and the inner policy; throws `IoError` on
  /// malformed data, a wrong shape, or a group size or grouping that differs from this object's
  /// (a version-1 checkpoint holds no grouping: its stored codes are column-major, and later
  /// refreshes use this object's grouping).
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    const auto gs = ckpt::readBounded<std::int64_t>(is, "INT4 group size", 2, ckpt::kMaxExtent);
    ckpt::expectSetting(kName, "groupSize", std::int64_t(gs), std::int64_t(m_groupSize));
    if (ckpt::streamVersion(is) >= 2) {
      const auto grouping = ckpt::readBounded<std::int32_t>(is, "INT4 grouping", 0, 1);
      auto name = [](std::int32_t g) { return std::string(g == 0 ? "QGaLore" : "ColumnMajor"); };
      ckpt::expectSetting(kName, "grouping", name(grouping), name(std::int32_t(m_grouping)));
    }
    const bool has = ckpt::readBounded<std::uint8_t>(is, "basis present flag", 0, 1) != 0;
    if (has) {
      m_q.load(is);
      if (m_q.rows != ambient || m_q.cols != rank)
        throw IoError("checkpoint: INT4 basis has shape " + std::to_string(m_q.rows) + "x" + std::to_string(m_q.cols) +
                      "; expected " + std::to_string(ambient) + "x" + std::to_string(rank));
      m_q.dequantize(this->m_p);
    } else {
      this->m_p.resize(0, 0);
    }
    m_inner.load(is, ambient, rank);
  }

 private:
  Inner m_inner;
  Int4Matrix<Scalar> m_q;
  Index m_groupSize = 256;
  Int4Grouping m_grouping = Int4Grouping::QGaLore;
};

}  // namespace wproj
