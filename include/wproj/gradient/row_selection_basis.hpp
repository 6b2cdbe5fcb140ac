// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Structured sparse projection by row (or column) selection: GRASS (Muhamed et al. 2024).

#include "basis.hpp"
#include "../core/random.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace wproj {

/// How GRASS chooses the r rows.
enum class RowSelection {
  TopNorm,       ///< the r rows of largest ‖G_i‖ (ρ = 1, deterministic, no repeats)
  NormSampling,  ///< r draws with replacement, q_i ∝ ‖G_i‖², ρ_jj = 1/√(r·q_σj) (unbiased: E[P Pᵀ] = I)
  Uniform        ///< r draws with replacement, q_i = 1/ambient, same unbiased ρ
};

/// GRASS's sparse projection Pᵀ = ρ·B, where B selects r of the ambient rows (left side: rows
/// of G; right side: columns). The projected gradient is ρ·G[σ,:] (a gather), and the update is
/// scattered back with an index-add W[σ,:] += c·ρ·N — no dense P and no GEMM. State: the r
/// indices σ and the r scales ρ.
///
/// Knobs: `setSelection` (default `TopNorm`), `setSeed` (sampling modes; refresh k uses
/// stream k). The overlap reported at a refresh is the fraction of new indices that were
/// already selected.
template <typename Scalar_>
class RowSelectionBasis {
 public:
  /// Floating-point type of the scales ρ and the gradients.
  using Scalar = Scalar_;
  /// Dense matrix type of the transitions and `denseBasis`.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Tag of this policy in checkpoints.
  static constexpr const char* kName = "RowSelectionBasis";
  /// False: the basis changes only at refreshes.
  static constexpr bool kTracksSteps = false;

  /// How the r indices are chosen (default `TopNorm`).
  RowSelectionBasis& setSelection(RowSelection s) {
    m_mode = s;
    return *this;
  }
  /// Seed of the sampling modes; refresh k uses stream k (default 0).
  RowSelectionBasis& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }
  /// How the r indices are chosen.
  RowSelection selection() const { return m_mode; }
  /// Selected ambient indices σ (size r; may repeat when sampling).
  const std::vector<Index>& indices() const { return m_idx; }
  /// Scales ρ (size r).
  const std::vector<Scalar>& scales() const { return m_rho; }
  /// True once indices have been selected.
  bool hasBasis() const { return !m_idx.empty(); }

  /// Selects r indices σ and scales ρ from the squared row (left) or column (right) norms of G;
  /// R = P_oldᵀP_new is exact. A non-finite G fails (the previous selection is kept).
  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t refreshIndex,
                        Matrix* transition) {
    const Index ambient = detail::ambientOf(g.rows(), g.cols(), side);
    m_score.resize(std::size_t(ambient));
    double total = 0;
    for (Index i = 0; i < ambient; ++i) {
      const double s = side == Side::Left ? double(g.row(i).squaredNorm()) : double(g.col(i).squaredNorm());
      m_score[std::size_t(i)] = s;
      total += s;
    }
    RefreshResult res;
    if (!std::isfinite(total)) return res;  // keep the previous selection
    std::vector<Index> idx(static_cast<std::size_t>(rank));
    std::vector<Scalar> rho(static_cast<std::size_t>(rank));
    if (m_mode == RowSelection::TopNorm) {
      std::vector<Index> order(static_cast<std::size_t>(ambient));
      std::iota(order.begin(), order.end(), Index(0));
      std::partial_sort(order.begin(), order.begin() + rank, order.end(), [&](Index a, Index b) {
        const double sa = m_score[std::size_t(a)], sb = m_score[std::size_t(b)];
        return sa > sb || (sa == sb && a < b);
      });
      std::copy(order.begin(), order.begin() + rank, idx.begin());
      std::sort(idx.begin(), idx.end());
      std::fill(rho.begin(), rho.end(), Scalar(1));
    } else {
      const bool uniform = m_mode == RowSelection::Uniform || !(total > 0);
      // Cumulative distribution of q.
      std::vector<double> cdf(static_cast<std::size_t>(ambient));
      double acc = 0;
      for (Index i = 0; i < ambient; ++i) {
        acc += uniform ? 1.0 : m_score[std::size_t(i)];
        cdf[std::size_t(i)] = acc;
      }
      CounterRng rng(m_seed, refreshIndex);
      for (Index j = 0; j < rank; ++j) {
        const double u = rng.nextUniform() * acc;  // in (0, acc]
        auto it = std::lower_bound(cdf.begin(), cdf.end(), u);
        Index i = Index(it - cdf.begin());
        if (i >= ambient) i = ambient - 1;
        while (i > 0 && !uniform && m_score[std::size_t(i)] == 0) --i;  // never pick a zero-probability row
        const double q = uniform ? 1.0 / double(ambient) : m_score[std::size_t(i)] / acc;
        idx[std::size_t(j)] = i;
        rho[std::size_t(j)] = Scalar(1.0 / std::sqrt(double(rank) * q));
      }
    }
    res.ok = true;
    if (hasBasis() && Index(m_idx.size()) == rank) {
      Index common = 0;
      for (Index j = 0; j < rank; ++j)
        if (std::find(m_idx.begin(), m_idx.end(), idx[std::size_t(j)]) != m_idx.end()) ++common;
      res.overlap = double(common) / double(rank);
      if (transition) {
        // (P_oldᵀ P_new)_ij = ρ_i ρ'_j [σ_i = σ'_j], exactly.
        transition->setZero(rank, rank);
        for (Index i = 0; i < rank; ++i)
          for (Index j = 0; j < rank; ++j)
            if (m_idx[std::size_t(i)] == idx[std::size_t(j)])
              (*transition)(i, j) = m_rho[std::size_t(i)] * rho[std::size_t(j)];
      }
    }
    m_idx.swap(idx);
    m_rho.swap(rho);
    m_ambient = ambient;
    return res;
  }

  /// out = ρ·G[σ,:] (left) or G[:,σ]·ρ (right).
  template <typename DG, typename DO>
  void project(const Eigen::MatrixBase<DG>& g, Side side, Eigen::MatrixBase<DO>& out) const {
    const Index r = Index(m_idx.size());
    if (side == Side::Left)
      for (Index j = 0; j < r; ++j) out.row(j) = m_rho[std::size_t(j)] * g.row(m_idx[std::size_t(j)]);
    else
      for (Index j = 0; j < r; ++j) out.col(j) = m_rho[std::size_t(j)] * g.col(m_idx[std::size_t(j)]);
  }
  /// out = P N (left: rows scattered to σ) or N Pᵀ (right), with repeated indices added.
  template <typename DN, typename DO>
  void backProject(const Eigen::MatrixBase<DN>& n, Side side, Eigen::MatrixBase<DO>& out) const {
    out.setZero();
    addBack(n, side, Scalar(1), out);
  }
  /// Index-add: W[σ_j,:] += c·ρ_j·N[j,:] (left) or W[:,σ_j] += c·ρ_j·N[:,j] (right).
  template <typename DN, typename DW>
  void addBack(const Eigen::MatrixBase<DN>& n, Side side, Scalar c, Eigen::MatrixBase<DW>& w) const {
    const Index r = Index(m_idx.size());
    if (side == Side::Left)
      for (Index j = 0; j < r; ++j) w.row(m_idx[std::size_t(j)]) += (c * m_rho[std::size_t(j)]) * n.row(j);
    else
      for (Index j = 0; j < r; ++j) w.col(m_idx[std::size_t(j)]) += (c * m_rho[std::size_t(j)]) * n.col(j);
  }
  /// P = B ρ as a dense ambient×r matrix (for tests and diagnostics).
  void denseBasis(Matrix& p) const {
    const Index r = Index(m_idx.size());
    p.setZero(m_ambient, r);
    for (Index j = 0; j < r; ++j) p(m_idx[std::size_t(j)], j) = m_rho[std::size_t(j)];
  }
  /// Persistent state: the r indices (4 bytes each) and the r scales.
  std::size_t stateBytes() const { return m_idx.size() * sizeof(std::int32_t) + m_rho.size() * sizeof(Scalar); }
  /// Bytes of the score buffer (one double per ambient index).
  std::size_t workspaceBytes() const { return m_score.size() * sizeof(double); }

  /// Writes the tag, the mode, the seed, the ambient dimension, the indices and the scales.
  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_mode));
    ckpt::writePod<std::uint64_t>(os, m_seed);
    ckpt::writePod<std::int64_t>(os, m_ambient);
    std::vector<std::int64_t> idx(m_idx.begin(), m_idx.end());
    ckpt::writeVector(os, idx);
    ckpt::writeVector(os, m_rho);
  }
  /// Restores a selection written by `save` (r = rank indices in [0, ambient)); throws `IoError` on
  /// malformed data or when the selection mode or seed differs from this object's.
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    const auto mode = ckpt::readBounded<std::int32_t>(is, "row selection mode", 0, 2);
    const auto seed = ckpt::readPod<std::uint64_t>(is, "row selection seed");
    ckpt::expectSetting(kName, "selection", std::int32_t(mode), std::int32_t(m_mode));
    ckpt::expectSetting(kName, "seed", seed, m_seed);
    const auto amb = ckpt::readPod<std::int64_t>(is, "row selection ambient dimension");
    const auto idx = ckpt::readVector<std::int64_t>(is, "row indices");
    const auto rho = ckpt::readVector<Scalar>(is, "row scales", std::int64_t(idx.size()));
    if (!idx.empty() && (Index(idx.size()) != rank || amb != ambient))
      throw IoError("checkpoint: row selection has " + std::to_string(idx.size()) + " indices over " + std::to_string(amb) +
                    " rows; expected " + std::to_string(rank) + " over " + std::to_string(ambient));
    for (auto i : idx)
      if (i < 0 || i >= ambient) throw IoError("checkpoint: row index " + std::to_string(i) + " out of range");
    for (auto s : rho)
      if (!std::isfinite(double(s))) throw IoError("checkpoint: non-finite row scale");
    m_idx.assign(idx.begin(), idx.end());
    m_rho = rho;
    m_ambient = idx.empty() ? 0 : ambient;
  }

 private:
  RowSelection m_mode = RowSelection::TopNorm;
  std::uint64_t m_seed = 0;
  Index m_ambient = 0;
  std::vector<Index> m_idx;
  std::vector<Scalar> m_rho;
  std::vector<double> m_score;
};

}  // namespace wproj
