// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Randomized, warm-started refreshes (GaLore 2, GaLore+, COAP).

#include "basis.hpp"
#include "../linalg/randomized_svd.hpp"

#include <cmath>
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
/// A warm refresh without extra power iterations (the default) is `warmSubspaceIteration`:
/// span(G GᵀP) (left) or span(GᵀG P) (right) — the subspace of the p = 0 warm-started randomized
/// SVD — from the two products with G and one orthonormalisation of the ambient×r block; the
/// warm-started `RandomizedSVD` also orthonormalises the long side and forms singular vectors
/// (measured costs: docs/performance.md, "Warm refresh").
/// The columns then follow the previous basis instead of being singular vectors, which keeps
/// the coordinates of kept moments aligned; a zero G keeps the previous basis. Oversampling
/// applies to the cold refresh and, with `setPowerIterations(q ≥ 1)`, to warm refreshes, which
/// then run the warm-started `RandomizedSVD` with q iterations.
template <typename Scalar_>
class RandomizedBasis : public detail::DenseBasisStorage<Scalar_> {
  using Base = detail::DenseBasisStorage<Scalar_>;

 public:
  /// Floating-point type of the basis.
  using Scalar = Scalar_;
  /// Dense matrix type of P and the transitions.
  using Matrix = typename Base::Matrix;
  /// Tag of this policy in checkpoints.
  static constexpr const char* kName = "RandomizedBasis";
  /// False: the basis changes only at refreshes.
  static constexpr bool kTracksSteps = false;

  /// Extra sketch columns p beyond r (≥ 0; default 8) of the cold refresh (and of warm refreshes
  /// with power iterations q ≥ 1).
  RandomizedBasis& setOversampling(Index p) {
    requireArg(p >= 0, "RandomizedBasis::setOversampling", "p", p, ">= 0");
    m_oversampling = p;
    return *this;
  }
  /// Power iterations q (≥ −1; default −1: automatic).
  RandomizedBasis& setPowerIterations(Index q) {
    requireArg(q >= -1, "RandomizedBasis::setPowerIterations", "q", q, ">= -1 (-1 = automatic)");
    m_power = q;
    return *this;
  }
  /// Start each refresh from the previous basis (default true).
  RandomizedBasis& setWarmStart(bool on) {
    m_warm = on;
    return *this;
  }
  /// Seed of the random sketch; refresh k uses seed + k (default 0).
  RandomizedBasis& setSeed(std::uint64_t s) {
    m_seed = s;
    return *this;
  }
  /// Extra sketch columns p.
  Index oversampling() const { return m_oversampling; }
  /// Power iterations q (−1: automatic).
  Index powerIterations() const { return m_power; }
  /// True when refreshes start from the previous basis.
  bool warmStart() const { return m_warm; }
  /// Seed of the random sketch.
  std::uint64_t seed() const { return m_seed; }

  /// New P from a randomized SVD of G, warm-started from the previous P when enabled; a non-finite
  /// G, a failed decomposition or non-finite vectors keep the previous basis.
  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t refreshIndex,
                        Matrix* transition) {
    // One pass over G answers both "finite?" and "zero?": a NaN/Inf makes the norm non-finite;
    // only a norm that overflowed needs the second look.
    const auto normSq = g.squaredNorm();
    if (!std::isfinite(double(normSq)) && !allFinite(g)) return RefreshResult{};
    const bool warm = m_warm && this->hasBasis() && this->m_p.cols() == rank;
    if (warm && m_power <= 0) {
      // One subspace iteration: span(G Gᵀ P) (left) / span(Gᵀ G P) (right) directly, from two
      // products with G (the span of the p = 0 warm-started randomized SVD).
      if (normSq == 0) return RefreshResult{};
      Matrix cand = warmSubspaceIteration(g, this->m_p, side);
      return this->commitIfValid(cand, rank, transition);
    }
    RandomizedSVD<Matrix> rsvd;
    rsvd.setRank(rank).setOversampling(m_oversampling).setPowerIterations(m_power).setSeed(m_seed + refreshIndex);
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

  /// No workspace beyond P (0).
  std::size_t workspaceBytes() const { return 0; }
  /// Writes the tag, the knobs (oversampling, power iterations, warm start, seed) and P.
  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::int64_t>(os, m_oversampling);
    ckpt::writePod<std::int64_t>(os, m_power);
    ckpt::writePod<std::uint8_t>(os, m_warm ? 1 : 0);
    ckpt::writePod<std::uint64_t>(os, m_seed);
    this->saveDenseWithFlag(os);
  }
  /// Restores P (ambient×rank) written by `save`; throws `IoError` on malformed data or when a
  /// knob differs from the stored one (a version-1 checkpoint holds no knobs and loads with the
  /// current ones).
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    if (ckpt::streamVersion(is) >= 2) {
      const auto p = ckpt::readBounded<std::int64_t>(is, "oversampling", 0, ckpt::kMaxExtent);
      const auto q = ckpt::readBounded<std::int64_t>(is, "power iterations", -1, ckpt::kMaxExtent);
      const bool warm = ckpt::readBounded<std::uint8_t>(is, "warm start flag", 0, 1) != 0;
      const auto seed = ckpt::readPod<std::uint64_t>(is, "seed");
      ckpt::expectSetting(kName, "oversampling", std::int64_t(p), std::int64_t(m_oversampling));
      ckpt::expectSetting(kName, "powerIterations", std::int64_t(q), std::int64_t(m_power));
      ckpt::expectSetting(kName, "warmStart", warm, m_warm);
      ckpt::expectSetting(kName, "seed", seed, m_seed);
    }
    this->loadDense(is, ambient, rank);
  }

 private:
  Index m_oversampling = 8;
  Index m_power = -1;
  bool m_warm = true;
  std::uint64_t m_seed = 0;
};

}  // namespace wproj
