// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// GaLore's basis: the leading singular vectors of the gradient (Zhao et al. 2024).

#include "basis.hpp"
#include "../linalg/truncated_svd.hpp"

namespace wproj {

/// Exact SVD basis: on each refresh P = U[:, :r] (left side) or V[:, :r] (right side) of the
/// current gradient, computed by `TruncatedSVD` (singular values discarded, wproj's sign
/// convention). A decomposition that fails (`info() != Success`) or returns non-finite vectors
/// is rejected and the previous basis kept.
///
/// Knobs: `setMethod` (SvdMethod::Auto by default: BDCSVD or a double-precision Gram
/// eigendecomposition). State: P (ambient×r).
template <typename Scalar_>
class SvdBasis : public detail::DenseBasisStorage<Scalar_> {
  using Base = detail::DenseBasisStorage<Scalar_>;

 public:
  using Scalar = Scalar_;
  using Matrix = typename Base::Matrix;
  static constexpr const char* kName = "SvdBasis";
  static constexpr bool kTracksSteps = false;

  SvdBasis& setMethod(SvdMethod m) {
    m_method = m;
    return *this;
  }
  SvdMethod method() const { return m_method; }

  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t, Matrix* transition) {
    if (!g.allFinite()) return RefreshResult{};
    TruncatedSVD<Matrix> svd;
    svd.setRank(rank).setMethod(m_method).compute(g);
    if (svd.info() != Eigen::Success) return RefreshResult{};
    Matrix cand = side == Side::Left ? svd.matrixU() : svd.matrixV();
    return this->commitIfValid(cand, rank, transition);
  }

  std::size_t workspaceBytes() const { return 0; }
  void save(std::ostream& os) const { this->saveTagged(os, kName); }
  void load(std::istream& is, Index ambient, Index rank) { this->loadTagged(is, kName, ambient, rank); }

 private:
  SvdMethod m_method = SvdMethod::Auto;
};

}  // namespace wproj
