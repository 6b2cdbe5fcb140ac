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
/// Knobs: `setMethod` (SVDMethod::Auto by default: BDCSVD or a double-precision Gram
/// eigendecomposition). State: P (ambient×r).
template <typename Scalar_>
class SVDBasis : public detail::DenseBasisStorage<Scalar_> {
  using Base = detail::DenseBasisStorage<Scalar_>;

 public:
  /// Floating-point type of the basis.
  using Scalar = Scalar_;
  /// Dense matrix type of P and the transitions.
  using Matrix = typename Base::Matrix;
  /// Tag of this policy in checkpoints.
  static constexpr const char* kName = "SVDBasis";
  /// False: the basis changes only at refreshes.
  static constexpr bool kTracksSteps = false;

  /// Decomposition used by `TruncatedSVD` (default `SVDMethod::Auto`).
  SVDBasis& setMethod(SVDMethod m) {
    m_method = m;
    return *this;
  }
  /// The decomposition used by `TruncatedSVD`.
  SVDMethod method() const { return m_method; }

  /// New P: the leading r left (Left side) or right (Right side) singular vectors of G. A non-finite
  /// G, a failed decomposition or non-finite vectors keep the previous basis.
  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t, Matrix* transition) {
    if (!allFinite(g)) return RefreshResult{};
    TruncatedSVD<Matrix> svd;
    svd.setRank(rank).setMethod(m_method).compute(g);
    if (svd.info() != Eigen::Success) return RefreshResult{};
    Matrix cand = side == Side::Left ? svd.matrixU() : svd.matrixV();
    return this->commitIfValid(cand, rank, transition);
  }

  /// No workspace beyond P (0).
  std::size_t workspaceBytes() const { return 0; }
  /// Writes the tag, the method and P.
  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_method));
    this->saveDenseWithFlag(os);
  }
  /// Restores P (ambient×rank) written by `save`; throws `IoError` on malformed data or when the
  /// checkpoint was saved with another method (a version-1 checkpoint holds no method and loads
  /// with the current one).
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    if (ckpt::streamVersion(is) >= 2) {
      const auto m = SVDMethod(ckpt::readBounded<std::int32_t>(is, "SVD method", 0, 2));
      ckpt::expectSetting(kName, "method", std::string(toString(m)), std::string(toString(m_method)));
    }
    this->loadDense(is, ambient, rank);
  }

 private:
  SVDMethod m_method = SVDMethod::Auto;
};

// Names before 0.2.0 (see the naming rule in docs/index.md); they will be removed in 1.0.
template <typename Scalar_>
using SvdBasis [[deprecated("renamed wproj::SVDBasis")]] = SVDBasis<Scalar_>;

}  // namespace wproj
