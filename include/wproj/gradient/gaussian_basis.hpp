// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Seeded Gaussian projection (Flora, Hao et al. 2024; APOLLO, Zhu et al. 2024).

#include "basis.hpp"
#include "../core/random.hpp"

#include <cstdint>

namespace wproj {

/// A random projection P (ambient×r) with i.i.d. N(0, 1/r) entries, regenerated from
/// (seed, refresh index) on every refresh — the state is the seed, never the matrix (Flora).
/// E[P Pᵀ] = I, so the back-projected update is unbiased. With the `Rotate` moment policy a
/// refresh carries the moments as m ← m·P_oldᵀP_new, which is Flora's momentum transfer
/// m ← down_new(up_old(m)).
///
/// Knobs: `setSeed` (default 0). The dense P is kept as a workspace so that a step is two
/// GEMMs (`workspaceBytes`); `stateBytes` counts what a checkpoint needs (seed and index).
template <typename Scalar_>
class GaussianBasis : public detail::DenseBasisStorage<Scalar_> {
  using Base = detail::DenseBasisStorage<Scalar_>;

 public:
  /// Floating-point type of the basis.
  using Scalar = Scalar_;
  /// Dense matrix type of P and the transitions.
  using Matrix = typename Base::Matrix;
  /// Tag of this policy in checkpoints.
  static constexpr const char* kName = "GaussianBasis";
  /// False: the basis changes only at refreshes.
  static constexpr bool kTracksSteps = false;

  /// Seed of the generator; refresh k uses stream k of this seed.
  GaussianBasis& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }
  /// The generator seed.
  std::uint64_t seed() const { return m_seed; }

  /// Draws P for refresh number `refreshIndex`; `g` only fixes the shape.
  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t refreshIndex,
                        Matrix* transition) {
    const Index ambient = detail::ambientOf(g.rows(), g.cols(), side);
    Matrix cand = generate(ambient, rank, refreshIndex);
    m_index = refreshIndex;
    return this->commit(cand, transition);
  }

  /// Persistent state: the seed and the refresh index (16 bytes).
  std::size_t stateBytes() const { return sizeof(m_seed) + sizeof(m_index); }
  /// Bytes of the dense P kept for the GEMMs.
  std::size_t workspaceBytes() const { return Base::stateBytes(); }

  /// Writes the tag, the seed, the refresh index and a presence flag (never P).
  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::uint64_t>(os, m_seed);
    ckpt::writePod<std::uint64_t>(os, m_index);
    ckpt::writePod<std::uint8_t>(os, this->hasBasis() ? 1 : 0);
  }
  /// Restores the refresh index written by `save` and regenerates P (ambient×rank) when one was
  /// saved; throws `IoError` when the stored seed differs from this object's.
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    const auto seed = ckpt::readPod<std::uint64_t>(is, "Gaussian seed");
    ckpt::expectSetting(kName, "seed", seed, m_seed);
    m_index = ckpt::readPod<std::uint64_t>(is, "Gaussian refresh index");
    const bool has = ckpt::readBounded<std::uint8_t>(is, "basis present flag", 0, 1) != 0;
    if (has)
      this->m_p = generate(ambient, rank, m_index);
    else
      this->m_p.resize(0, 0);
  }

 private:
  Matrix generate(Index ambient, Index rank, std::uint64_t index) const {
    return gaussianMatrix<Matrix>(ambient, rank, m_seed, index, 1.0 / std::sqrt(double(rank)));
  }
  std::uint64_t m_seed = 0;
  std::uint64_t m_index = 0;
};

}  // namespace wproj
