// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// INT4-quantised projection matrices (Q-GaLore, Zhang et al. 2024) around any dense basis.

#include "basis.hpp"
#include "int4.hpp"

namespace wproj {

/// Wraps a dense basis policy `Inner` (e.g. `SvdBasis<float>`): after each refresh the new P is
/// quantised to INT4 (`Int4Matrix`, groups of 256, asymmetric min/max) and the projections use
/// the dequantised matrix, so training sees exactly the precision Q-GaLore stores. The overlap
/// and the moment transition are computed on the dequantised bases. Pair it with
/// `GradientProjector::setAdaptiveGap` for Q-GaLore's lazy refreshes.
///
/// Knobs: `setGroupSize` (default 256), `inner()` to configure the wrapped policy.
/// `stateBytes()` counts the INT4 codes, scales and zero points; the dequantised copy used by
/// the GEMMs (and the inner policy's own matrix) are reported by `workspaceBytes()`.
template <typename Inner>
class QuantizedBasis : public detail::DenseBasisStorage<typename Inner::Scalar> {
  using Base = detail::DenseBasisStorage<typename Inner::Scalar>;

 public:
  using Scalar = typename Inner::Scalar;
  using Matrix = typename Base::Matrix;
  static constexpr const char* kName = "QuantizedBasis";
  static constexpr bool kTracksSteps = false;

  QuantizedBasis& setGroupSize(Index g) {
    requireArg(g >= 2 && g % 2 == 0, "QuantizedBasis::setGroupSize", "g", g, "an even number >= 2");
    m_groupSize = g;
    return *this;
  }
  Index groupSize() const { return m_groupSize; }
  Inner& inner() { return m_inner; }
  const Inner& inner() const { return m_inner; }
  /// The stored INT4 basis.
  const Int4Matrix<Scalar>& quantized() const { return m_q; }

  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t refreshIndex,
                        Matrix* transition) {
    const RefreshResult inner = m_inner.refresh(g, side, rank, refreshIndex, nullptr);
    if (!inner.ok) return inner;
    Matrix p;
    m_inner.denseBasis(p);
    m_q.quantize(p, m_groupSize);
    Matrix cand;
    m_q.dequantize(cand);
    return this->commit(cand, transition);
  }

  std::size_t stateBytes() const { return m_q.bytes(); }
  std::size_t workspaceBytes() const { return Base::stateBytes() + m_inner.stateBytes(); }

  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::int64_t>(os, m_groupSize);
    ckpt::writePod<std::uint8_t>(os, this->hasBasis() ? 1 : 0);
    if (this->hasBasis()) m_q.save(os);
    m_inner.save(os);
  }
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    m_groupSize = ckpt::readBounded<std::int64_t>(is, "INT4 group size", 2, ckpt::kMaxExtent);
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
};

}  // namespace wproj
