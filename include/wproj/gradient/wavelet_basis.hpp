// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Gradient Wavelet Transform (GWT, Wen et al. 2025): the orthonormal Haar wavelet transform of
/// the gradient, with the optimizer's moments kept on the approximation coefficients only.

#include "basis.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace wproj {

/// Length of the Haar approximation after `levels` levels of a signal of length n: each level
/// keeps ⌈n/2⌉ coefficients (an odd length carries its last entry to the next level unchanged).
inline Index haarApproximationSize(Index n, int levels) {
  for (int l = 0; l < levels; ++l) n = (n + 1) / 2;
  return n;
}

namespace detail {

inline void checkHaarLevels(int levels, const char* where) {
  requireArg(levels >= 1 && levels <= 30, where, "levels", levels, "in [1, 30]");
}

/// One lifting level along the first `n` entries of dimension `side` of x (Left: rows of x are
/// the samples, so every column is transformed; Right: every row). `work` holds n samples.
template <typename D, typename Work>
void haarLevel(Eigen::MatrixBase<D>& x, Side side, Index n, bool forward, Work& work) {
  using S = typename D::Scalar;
  const S h = S(1) / std::sqrt(S(2));
  const Index half = n / 2, approx = (n + 1) / 2;
  const Index lanes = side == Side::Left ? x.cols() : x.rows();
  for (Index j = 0; j < lanes; ++j) {
    auto lane = [&](Index i) -> S& { return side == Side::Left ? x.derived().coeffRef(i, j) : x.derived().coeffRef(j, i); };
    if (forward) {
      // Predict d = even − odd, update a = even − d/2 = (even + odd)/2; normalise a·√2, d/√2.
      for (Index k = 0; k < half; ++k) {
        const S e = lane(2 * k), o = lane(2 * k + 1);
        const S d = e - o;
        const S a = e - d / S(2);
        work(k) = a * (S(2) * h);
        work(approx + k) = d * h;
      }
      if (n % 2 == 1) work(half) = lane(n - 1);
      for (Index i = 0; i < n; ++i) lane(i) = work(i);
    } else {
      for (Index k = 0; k < half; ++k) {
        // e = (a + d)/√2, o = (a − d)/√2 for the normalised pair.
        const S a = lane(k) * h, d = lane(approx + k) * h;
        work(2 * k) = a + d;
        work(2 * k + 1) = a - d;
      }
      if (n % 2 == 1) work(n - 1) = lane(half);
      for (Index i = 0; i < n; ++i) lane(i) = work(i);
    }
  }
}

}  // namespace detail

/// In-place multilevel orthonormal Haar transform of x along dimension `side` (Left: each column
/// is a signal of length rows; Right: each row is a signal of length cols), by lifting: per level
/// a = (x₂ₖ + x₂ₖ₊₁)/√2, d = (x₂ₖ − x₂ₖ₊₁)/√2 on the current approximation, packed as
/// [a_L | d_L | d_{L−1} | … | d_1]. An odd length carries its last sample into the approximation
/// unchanged (so the transform stays orthonormal for every length). O(rows·cols) time, one buffer
/// of one signal's length; no dense transform matrix.
template <typename D>
void haarForward(Eigen::MatrixBase<D>& x, int levels, Side side) {
  detail::checkHaarLevels(levels, "haarForward");
  Eigen::Matrix<typename D::Scalar, Eigen::Dynamic, 1> work(side == Side::Left ? x.rows() : x.cols());
  Index n = work.size();
  for (int l = 0; l < levels && n >= 2; ++l) {
    detail::haarLevel(x, side, n, true, work);
    n = (n + 1) / 2;
  }
}

/// Inverse of `haarForward` (the transpose of the orthonormal transform), in place.
template <typename D>
void haarInverse(Eigen::MatrixBase<D>& x, int levels, Side side) {
  detail::checkHaarLevels(levels, "haarInverse");
  Eigen::Matrix<typename D::Scalar, Eigen::Dynamic, 1> work(side == Side::Left ? x.rows() : x.cols());
  std::vector<Index> lengths;
  Index n = work.size();
  for (int l = 0; l < levels && n >= 2; ++l) {
    lengths.push_back(n);
    n = (n + 1) / 2;
  }
  for (auto it = lengths.rbegin(); it != lengths.rend(); ++it) detail::haarLevel(x, side, *it, false, work);
}

/// GWT's basis (Wen et al. 2025, "Breaking Memory Limits: Gradient Wavelet Transform Enhances
/// LLMs Training"): P holds the Haar approximation functions of `levels` levels, so that the
/// projected gradient PᵀG (left) or G P (right) is exactly the approximation block A of the
/// orthonormal Haar transform (`haarForward`) and the back-projection P N is the inverse
/// transform of [N | 0]. Used with `ProjectedAdamW`, Adam's moments live on A only
/// (r = `haarApproximationSize(ambient, levels)`: 1/2ᴸ of the ambient dimension).
///
/// Every approximation function is supported on one contiguous block of samples, so project,
/// back-project and add-back are single O(m·n) passes with no dense P, no workspace and no
/// allocation. The basis depends only on (ambient, levels): it never changes after the first
/// refresh (transitions are the identity) and has no persistent state (`stateBytes()` = 0).
///
/// Knobs: `setLevels` (default 2). The projector's rank must equal
/// `haarApproximationSize(ambient, levels)`; `refresh` throws `InvalidArgument` otherwise.
/// Deviation from the paper: the detail coefficients D are dropped (GaLore-style projection)
/// instead of being applied as D/(√v + ε); see docs/gradient.md.
template <typename Scalar_>
class WaveletBasis {
 public:
  /// Floating-point type of the basis.
  using Scalar = Scalar_;
  /// Dense matrix type (for `denseBasis` and the transitions).
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Tag of this policy in checkpoints.
  static constexpr const char* kName = "WaveletBasis";
  /// False: the basis never moves.
  static constexpr bool kTracksSteps = false;

  /// Number of Haar levels L ≥ 1 (default 2: the moments are ¼ of the ambient dimension).
  WaveletBasis& setLevels(int levels) {
    detail::checkHaarLevels(levels, "WaveletBasis::setLevels");
    m_levels = levels;
    return *this;
  }
  /// The number of Haar levels.
  int levels() const { return m_levels; }
  /// True once the block structure is built (first refresh or load).
  bool hasBasis() const { return m_ambient > 0; }

  /// First call: builds the approximation functions for the ambient dimension of G (the rank
  /// must be `haarApproximationSize(ambient, levels)`). Later calls keep the basis (identity
  /// transition, overlap 1). Never fails on the gradient's values.
  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t, Matrix* transition) {
    const Index ambient = detail::ambientOf(g.rows(), g.cols(), side);
    const Index expected = haarApproximationSize(ambient, m_levels);
    if (rank != expected)
      throw InvalidArgument("WaveletBasis::refresh: rank = " + std::to_string(rank) + " must equal the Haar approximation size " +
                            std::to_string(expected) + " of ambient dimension " + std::to_string(ambient) + " at " +
                            std::to_string(m_levels) + " levels");
    RefreshResult res;
    res.ok = true;
    if (hasBasis() && m_ambient == ambient) {
      if (transition) transition->setIdentity(rank, rank);
      res.overlap = 1.0;
      return res;
    }
    build(ambient);
    return res;
  }

  /// out = PᵀG (left, r×n) or G P (right, m×r): the Haar approximation coefficients.
  template <typename DG, typename DO>
  void project(const Eigen::MatrixBase<DG>& g, Side side, Eigen::MatrixBase<DO>& out) const {
    out.derived().setZero();
    if (side == Side::Left) {
      for (Index j = 0; j < g.cols(); ++j)
        for (Index i = 0; i < m_ambient; ++i) out.derived().coeffRef(m_block[std::size_t(i)], j) += m_weight(i) * g.derived().coeff(i, j);
    } else {
      for (Index i = 0; i < m_ambient; ++i) out.derived().col(m_block[std::size_t(i)]) += m_weight(i) * g.derived().col(i);
    }
  }
  /// out = P N (left) or N Pᵀ (right): the inverse Haar transform of [N | 0].
  template <typename DN, typename DO>
  void backProject(const Eigen::MatrixBase<DN>& n, Side side, Eigen::MatrixBase<DO>& out) const {
    if (side == Side::Left) {
      for (Index j = 0; j < n.cols(); ++j)
        for (Index i = 0; i < m_ambient; ++i) out.derived().coeffRef(i, j) = m_weight(i) * n.derived().coeff(m_block[std::size_t(i)], j);
    } else {
      for (Index i = 0; i < m_ambient; ++i) out.derived().col(i) = m_weight(i) * n.derived().col(m_block[std::size_t(i)]);
    }
  }
  /// W += c·P N (left) or c·N Pᵀ (right).
  template <typename DN, typename DW>
  void addBack(const Eigen::MatrixBase<DN>& n, Side side, Scalar c, Eigen::MatrixBase<DW>& w) const {
    if (side == Side::Left) {
      for (Index j = 0; j < n.cols(); ++j)
        for (Index i = 0; i < m_ambient; ++i) w.derived().coeffRef(i, j) += c * m_weight(i) * n.derived().coeff(m_block[std::size_t(i)], j);
    } else {
      for (Index i = 0; i < m_ambient; ++i) w.derived().col(i) += (c * m_weight(i)) * n.derived().col(m_block[std::size_t(i)]);
    }
  }
  /// P as a dense ambient×r matrix (for tests and inspection).
  void denseBasis(Matrix& p) const {
    p.setZero(m_ambient, m_rank);
    for (Index i = 0; i < m_ambient; ++i) p(i, m_block[std::size_t(i)]) = m_weight(i);
  }

  /// No persistent state: the basis is a function of (ambient, levels).
  std::size_t stateBytes() const { return 0; }
  /// Bytes of the block map and the weights (one index and one scalar per ambient sample).
  std::size_t workspaceBytes() const { return m_block.size() * sizeof(Index) + std::size_t(m_weight.size()) * sizeof(Scalar); }

  /// Writes the tag, the levels and the ambient dimension (0 before the first refresh).
  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_levels));
    ckpt::writePod<std::int64_t>(os, std::int64_t(m_ambient));
  }
  /// Restores a basis written by `save`; throws `IoError` on malformed data, when the levels
  /// differ from this object's, or when the ambient dimension or rank do not match.
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    const auto levels = ckpt::readBounded<std::int32_t>(is, "Haar levels", 1, 30);
    ckpt::expectSetting(kName, "levels", std::int64_t(levels), std::int64_t(m_levels));
    const auto stored = ckpt::readBounded<std::int64_t>(is, "Haar ambient dimension", 0, std::int64_t(ambient));
    if (stored == 0) {
      m_ambient = m_rank = 0;
      m_block.clear();
      m_weight.resize(0);
      return;
    }
    if (stored != ambient || haarApproximationSize(ambient, m_levels) != rank)
      throw IoError("checkpoint: Haar basis of ambient dimension " + std::to_string(stored) + " does not match " +
                    std::to_string(ambient) + " at rank " + std::to_string(rank));
    build(ambient);
  }

 private:
  // Block structure of the approximation functions: sample i belongs to coefficient m_block[i]
  // with weight m_weight(i). Level by level: coefficients 2k and 2k+1 merge into k with their
  // weights scaled by 1/√2; an odd last coefficient moves to ⌊n/2⌋ unchanged.
  void build(Index ambient) {
    m_ambient = ambient;
    m_block.resize(std::size_t(ambient));
    m_weight.setOnes(ambient);
    for (Index i = 0; i < ambient; ++i) m_block[std::size_t(i)] = i;
    const Scalar h = Scalar(1) / std::sqrt(Scalar(2));
    Index n = ambient;
    for (int l = 0; l < m_levels && n >= 2; ++l) {
      const Index half = n / 2;
      for (Index i = 0; i < ambient; ++i) {
        Index& b = m_block[std::size_t(i)];
        if (b < 2 * half) {
          b /= 2;
          m_weight(i) *= h;
        } else {
          b = half;  // the odd carry
        }
      }
      n = (n + 1) / 2;
    }
    m_rank = haarApproximationSize(ambient, m_levels);
  }

  int m_levels = 2;
  Index m_ambient = 0, m_rank = 0;
  std::vector<Index> m_block;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> m_weight;
};

}  // namespace wproj
