// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Randomized, warm-started refreshes (GaLore 2, GaLore+, COAP).

#include "basis.hpp"
#include "../linalg/randomized_svd.hpp"

#include <cstdint>

namespace wproj {

/// Randomized SVD basis: a refresh runs `RandomizedSVD` and, once a basis exists, warm-starts
/// it from the previous one (`setStartingRightBasis(P)` for the right side, where Y = G·P_old;
/// `setStartingLeftBasis(P)` for the left side) — one subspace iteration with two passes over G
/// replaces a full SVD when the gradient subspace drifts slowly (GaLore 2 / GaLore+ /
/// COAP's range finder Y = G·P_oldᵀ, QR, SVD of the small B).
///
/// Knobs: `setOversampling` (default 8), `setPowerIterations` (default −1: automatic, i.e. the
/// RandomizedSVD default for a cold start and 0 extra iterations after a warm start),
/// `setWarmStart` (default true), `setSeed` (refresh k uses seed + k). State: P (ambient×r).
template <typename Scalar_>
class RandomizedBasis : public detail::DenseBasisStorage<Scalar_> {
  using Base = detail::DenseBasisStorage<Scalar_>;

 public:
  using Scalar = Scalar_;
  using Matrix = typename Base::Matrix;
  static constexpr const char* kName = "RandomizedBasis";
  static constexpr bool kTracksSteps = false;

  RandomizedBasis& setOversampling(Index p) {
    requireArg(p >= 0, "RandomizedBasis::setOversampling", "p", p, ">= 0");
    m_oversampling = p;
    return *this;
  }
  RandomizedBasis& setPowerIterations(Index q) {
    requireArg(q >= -1, "RandomizedBasis::setPowerIterations", "q", q, ">= -1 (-1 = automatic)");
    m_power = q;
    return *this;
  }
  RandomizedBasis& setWarmStart(bool on) {
    m_warm = on;
    return *this;
  }
  RandomizedBasis& setSeed(std::uint64_t s) {
    m_seed = s;
    return *this;
  }
  Index oversampling() const { return m_oversampling; }
  Index powerIterations() const { return m_power; }
  bool warmStart() const { return m_warm; }
  std::uint64_t seed() const { return m_seed; }

  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t refreshIndex,
                        Matrix* transition) {
    if (!g.allFinite()) return RefreshResult{};
    RandomizedSVD<Matrix> rsvd;
    rsvd.setRank(rank).setOversampling(m_oversampling).setPowerIterations(m_power).setSeed(m_seed + refreshIndex);
    const bool warm = m_warm && this->hasBasis() && this->m_p.cols() == rank;
    if (warm) {
      if (side == Side::Right)
        rsvd.setStartingRightBasis(this->m_p);
      else
        rsvd.setStartingLeftBasis(this->m_p);
    }
    rsvd.compute(g);
    if (rsvd.info() != Eigen::Success) return RefreshResult{};
    Matrix cand = side == Side::Left ? rsvd.matrixU() : rsvd.matrixV();
    return this->commitIfValid(cand, rank, transition);
  }

  std::size_t workspaceBytes() const { return 0; }
  void save(std::ostream& os) const { this->saveTagged(os, kName); }
  void load(std::istream& is, Index ambient, Index rank) { this->loadTagged(is, kName, ambient, rank); }

 private:
  Index m_oversampling = 8;
  Index m_power = -1;
  bool m_warm = true;
  std::uint64_t m_seed = 0;
};

}  // namespace wproj
