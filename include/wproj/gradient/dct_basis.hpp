// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// SVD-free DCT column selection (Modoranu et al. 2025, IST-DASLab `dct_adamw`).

#include "basis.hpp"
#include "../linalg/dct.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <vector>

namespace wproj {

/// The orthonormal DCT basis Q (n×n, columns = DCT-II basis vectors, Q = Cᵀ for `dctMatrix`)
/// shared by every layer of the same size: built once per (scalar type, n) and kept alive as long
/// as a basis uses it.
template <typename Scalar>
std::shared_ptr<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> sharedDctBasis(Index n) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  static std::mutex mutex;
  static std::map<Index, std::weak_ptr<const Matrix>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[n];
  if (auto q = slot.lock()) return q;
  auto q = std::make_shared<const Matrix>(dctMatrix<Scalar>(n).transpose());
  slot = q;
  return q;
}

/// DCT column selection: P = Q[:, idx] where Q is the shared orthonormal DCT basis of the
/// ambient dimension and idx are the r columns of S = G·Q (right side; S = QᵀG rows on the
/// left) with the largest ℓ1 (default, as dct_adamw) or ℓ2 norm. A refresh costs one product
/// with Q and a partial sort; the state is r indices (int32), the dense Q is shared by all layers
/// of the same size (`sharedDctBasis`). Because Q is orthonormal, R = P_oldᵀP_new is the exact
/// partial permutation [idx_old_i = idx_new_j], so the `Rotate` moment policy is exact.
///
/// Knobs: `setScore` (L1). The gathered P is a per-layer workspace for the GEMMs (`workspaceBytes`).
template <typename Scalar_>
class DCTBasis : public detail::DenseBasisStorage<Scalar_> {
  using Base = detail::DenseBasisStorage<Scalar_>;

 public:
  /// Floating-point type of the basis.
  using Scalar = Scalar_;
  /// Dense matrix type of the gathered P and the transitions.
  using Matrix = typename Base::Matrix;
  /// Tag of this policy in checkpoints.
  static constexpr const char* kName = "DCTBasis";
  /// False: the basis changes only at refreshes.
  static constexpr bool kTracksSteps = false;

  /// Norm that ranks the DCT columns (default L1, as dct_adamw).
  DCTBasis& setScore(ScoreNorm s) {
    m_score = s;
    return *this;
  }
  /// The norm that ranks the DCT columns.
  ScoreNorm score() const { return m_score; }
  /// Selected DCT columns (sorted ascending).
  const std::vector<Index>& indices() const { return m_idx; }
  /// True once columns have been selected.
  bool hasBasis() const { return !m_idx.empty(); }

  /// Selects the r DCT columns with the largest scores for G and gathers P; R is the exact partial
  /// permutation between the old and new columns. A non-finite G fails (the basis is kept).
  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t, Matrix* transition) {
    if (!g.allFinite()) return RefreshResult{};
    const Index ambient = detail::ambientOf(g.rows(), g.cols(), side);
    if (!m_q || m_q->rows() != ambient) m_q = sharedDctBasis<Scalar>(ambient);
    const Matrix& q = *m_q;
    // Scores of the DCT directions (column norms of G·Q on the right, row norms of QᵀG on the
    // left) and the top-r selection come from linalg's dctTopIndices (fast transform by cost; the
    // fast path streams the transform and never stores it).
    std::vector<Index> idx = dctTopIndices(g, rank, side, m_score);
    std::sort(idx.begin(), idx.end());
    RefreshResult res;
    res.ok = true;
    if (hasBasis() && Index(m_idx.size()) == rank) {
      Index common = 0;
      if (transition) transition->setZero(rank, rank);
      for (Index i = 0; i < rank; ++i)
        for (Index j = 0; j < rank; ++j)
          if (m_idx[std::size_t(i)] == idx[std::size_t(j)]) {
            ++common;
            if (transition) (*transition)(i, j) = Scalar(1);
          }
      res.overlap = double(common) / double(rank);
    }
    m_idx.swap(idx);
    gather(q, ambient, rank);
    return res;
  }

  // project / backProject / addBack / denseBasis: the dense products of DenseBasisStorage on
  // the gathered columns P = Q[:, idx].
  /// Persistent state: the r indices (int32); the gathered P is a workspace.
  std::size_t stateBytes() const { return m_idx.size() * sizeof(std::int32_t); }
  /// Bytes of the gathered P (ambient×r).
  std::size_t workspaceBytes() const { return Base::stateBytes(); }

  /// Writes the tag, the score norm and the indices (not P).
  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_score));
    std::vector<std::int32_t> idx(m_idx.begin(), m_idx.end());
    ckpt::writeVector(os, idx);
  }
  /// Restores a basis written by `save` and gathers P (ambient×rank) from the shared DCT basis;
  /// throws `IoError` on malformed data or indices, or when the score norm differs from this object's.
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    const auto score = ckpt::readBounded<std::int32_t>(is, "DCT score", 0, 1);
    ckpt::expectSetting(kName, "score", std::string(score == 0 ? "L1" : "L2"), std::string(m_score == ScoreNorm::L1 ? "L1" : "L2"));
    const auto idx = ckpt::readVector<std::int32_t>(is, "DCT indices");
    if (!idx.empty() && Index(idx.size()) != rank)
      throw IoError("checkpoint: DCT basis has " + std::to_string(idx.size()) + " indices; expected " + std::to_string(rank));
    for (std::size_t k = 0; k < idx.size(); ++k)
      if (idx[k] < 0 || idx[k] >= ambient || (k > 0 && idx[k] <= idx[k - 1]))
        throw IoError("checkpoint: DCT indices must be increasing and in [0, " + std::to_string(ambient) + ")");
    m_idx.assign(idx.begin(), idx.end());
    if (m_idx.empty()) {
      this->m_p.resize(0, 0);
      return;
    }
    m_q = sharedDctBasis<Scalar>(ambient);
    gather(*m_q, ambient, rank);
  }

 private:
  void gather(const Matrix& q, Index ambient, Index rank) {
    this->m_p.resize(ambient, rank);
    for (Index j = 0; j < rank; ++j) this->m_p.col(j) = q.col(m_idx[std::size_t(j)]);
  }

  ScoreNorm m_score = ScoreNorm::L1;
  std::vector<Index> m_idx;
  std::shared_ptr<const Matrix> m_q;
};

// Names before 0.2.0 (see the naming rule in docs/index.md); they will be removed in 1.0.
template <typename Scalar_>
using DctBasis [[deprecated("renamed wproj::DCTBasis")]] = DCTBasis<Scalar_>;

}  // namespace wproj
