// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Sparsification of one task vector τ = θ_i − θ₀, as mergekit's `sparsify` does it for its
/// generalized task arithmetic family (task_vectors.hpp has the task vectors, and
/// task_arithmetic_family.hpp the methods that use this):
///
///   - `Magnitude` (TIES, Yadav et al., NeurIPS 2023): keep the k = ⌊density·n⌋ entries of largest
///     magnitude (mergekit refuses k = 0, and so does this);
///   - `Random` (DARE, Yu et al., ICML 2024): keep each entry with probability density;
///   - `MagnitudeOutliers` (Model Breadcrumbs, Davari & Belilovsky, ECCV 2024): with entries
///     sorted by magnitude, drop the n_top = ⌊gamma·n⌋ largest and the
///     n_bot = n − ⌊density·n⌋ − n_top smallest (when n_bot < 0, n_top shrinks by −n_bot and
///     n_bot = 0);
///   - `DellaMagprune` (DELLA, Deep et al. 2024): within each row, the entry of ascending
///     magnitude rank r (0-based, row length m) is kept with probability
///     density − ε + 2ε·r/(m − 1).
///
/// With `rescale`, the kept entries are scaled by ‖τ‖₁ / ‖mask ⊙ τ‖₁ (mergekit's L1 rescale; no
/// scaling when either norm is below 1e-7). density ≥ 1 returns τ unchanged (no rescale), as in
/// mergekit.
///
/// Where this cannot match mergekit bit for bit, and what it does instead:
///   - random masks come from wproj's counter-based generator (core/random.hpp), not torch's: the
///     mask of an entry is a pure function of (merge seed, tensor name, model index, the entry's
///     row-major position), so a second pass over the same model draws the same mask, whatever
///     the order tensors or models are visited in; mergekit's depend on torch's global RNG state;
///   - entries of equal magnitude are ordered by row-major position (torch's sorts leave their
///     order unspecified);
///   - the L1 norms of the rescale are summed in double (torch sums in the tensor's dtype);
///   - a matrix with one column is taken as the 1-D tensor it comes from (io maps a length-n
///     tensor to n×1), so DELLA ranks it as one row; a tensor of more than two dimensions, which
///     io flattens to shape[0] × (the rest), is ranked over each flattened row (mergekit ranks
///     along dimension 1 only);
///   - DELLA on a single entry (m = 1, where mergekit's rank normalisation divides 0 by 0) keeps
///     it with probability density;
///   - mergekit's breadcrumbs keeps `indices[n_bot:-n_top]` of the ascending sort: when n_top is
///     0 (gamma·n < 1, e.g. gamma = 0.01 on fewer than 100 entries) that Python slice is empty and
///     nothing is kept. This does the same, so that the merged tensors are mergekit's.

#include "../core/config.hpp"
#include "../core/random.hpp"
#include "task_vectors.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace wproj {

/// Which entries of a task vector are kept (mergekit's `SparsificationMethod`, plus `None`).
enum class SparsificationMethod {
  None,               ///< keep everything (task arithmetic, linear)
  Magnitude,          ///< mergekit "magnitude": top ⌊density·n⌋ by magnitude (TIES)
  Random,             ///< mergekit "random": Bernoulli(density) per entry (DARE)
  MagnitudeOutliers,  ///< mergekit "magnitude_outliers": drop the gamma largest, keep the next density (Breadcrumbs)
  DellaMagprune       ///< mergekit "della_magprune": keep probability rising with magnitude rank in its row (DELLA)
};

/// mergekit's name of a sparsification method ("magnitude", "random", "magnitude_outliers", "della_magprune", "none").
inline const char* toString(SparsificationMethod m) {
  switch (m) {
    case SparsificationMethod::None: return "none";
    case SparsificationMethod::Magnitude: return "magnitude";
    case SparsificationMethod::Random: return "random";
    case SparsificationMethod::MagnitudeOutliers: return "magnitude_outliers";
    case SparsificationMethod::DellaMagprune: return "della_magprune";
  }
  return "?";
}

namespace detail {

/// 64-bit FNV-1a of a string.
inline std::uint64_t fnv1a64(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

/// The SplitMix64 finaliser (a bijection that mixes all bits).
inline std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// The bits of |v| as an unsigned integer of v's width: for IEEE floating point, the integer
/// order of these keys is the order of the magnitudes (±0 share key 0; a NaN sorts above ∞).
template <typename S>
auto magnitudeKey(S v) {
  static_assert(std::is_same<S, float>::value || std::is_same<S, double>::value, "magnitudeKey: float or double");
  using U = typename std::conditional<sizeof(S) == 4, std::uint32_t, std::uint64_t>::type;
  U u;
  std::memcpy(&u, &v, sizeof(S));
  return U(u & (~U(0) >> 1));
}

/// The magnitude key at ascending rank r (0 ≤ r < n) of x[0..n) and how many entries below it
/// have that same key (r − #{keys < it}). Radix selection on 16-bit digits of the keys, most
/// significant first: two passes over x for float, four for double, no copy of the data.
template <typename S>
void magnitudeAtRank(const S* x, Index n, Index r, decltype(magnitudeKey(S())) & key, Index& tiesBefore) {
  using U = decltype(magnitudeKey(S()));
  constexpr int bits = int(8 * sizeof(U));
  std::vector<Index> hist(std::size_t(1) << 16);
  U prefix = 0, mask = 0;
  Index rank = r;
  for (int shift = bits - 16; shift >= 0; shift -= 16) {
    std::fill(hist.begin(), hist.end(), Index(0));
    for (Index k = 0; k < n; ++k) {
      const U kk = magnitudeKey(x[k]);
      if ((kk & mask) == prefix) ++hist[std::size_t((kk >> shift) & U(0xffff))];
    }
    std::size_t d = 0;
    while (rank >= hist[d]) rank -= hist[d++];
    prefix |= U(d) << shift;
    mask |= U(0xffff) << shift;
  }
  key = prefix;
  tiesBefore = rank;
}

/// Calls decide(k, kept) once for every entry k of the column-major rows×cols array x, with kept
/// true when the entry's ascending rank by (|x|, row-major position) lies in [lo, hi). The
/// boundary magnitudes come from `magnitudeAtRank` (no copy of x); only the entries equal to a
/// boundary magnitude are ordered by their row-major position, and they are decided last, so
/// `decide` may overwrite the entries it is told about (x is read before it is called for them).
template <typename S, typename Decide>
void decideRankRange(const S* x, Index rows, Index cols, Index lo, Index hi, Decide&& decide) {
  using U = decltype(magnitudeKey(S()));
  const Index n = rows * cols;
  lo = std::max<Index>(lo, 0);
  hi = std::min<Index>(hi, n);
  if (lo >= hi) {
    for (Index k = 0; k < n; ++k) decide(k, false);
    return;
  }
  U tLo = 0, tHi = 0;
  Index skipLo = 0, takeHi = 0;
  const bool fromStart = lo == 0, toEnd = hi == n;
  if (!fromStart) magnitudeAtRank(x, n, lo, tLo, skipLo);
  if (!toEnd) magnitudeAtRank(x, n, hi, tHi, takeHi);
  std::vector<Index> tied;  // entries equal to a boundary magnitude, decided in row-major order
  for (Index k = 0; k < n; ++k) {
    const U a = magnitudeKey(x[k]);
    if ((!fromStart && a == tLo) || (!toEnd && a == tHi)) {
      tied.push_back(k);
      continue;
    }
    decide(k, (fromStart || a > tLo) && (toEnd || a < tHi));
  }
  auto rowMajor = [&](Index k) { return (k % rows) * cols + k / rows; };
  std::sort(tied.begin(), tied.end(), [&](Index a, Index b) { return rowMajor(a) < rowMajor(b); });
  Index seenLo = 0, seenHi = 0;
  for (Index k : tied) {
    const U a = magnitudeKey(x[k]);
    bool atLeastLo = true, belowHi = true;
    if (!fromStart) atLeastLo = a > tLo || (a == tLo && seenLo++ >= skipLo);
    if (!toEnd) belowHi = a < tHi || (a == tHi && seenHi++ < takeHi);
    decide(k, atLeastLo && belowHi);
  }
}

/// Marks keep[k] = 1 for the entries of the column-major rows×cols array x whose ascending rank
/// by (|x|, row-major position) lies in [lo, hi) (see `decideRankRange`).
template <typename S>
void markRankRange(const S* x, Index rows, Index cols, Index lo, Index hi, std::vector<unsigned char>& keep) {
  decideRankRange(x, rows, cols, lo, hi, [&](Index k, bool kept) {
    if (kept) keep[std::size_t(k)] = 1;
  });
}

/// Sets to zero the entries of x whose ascending rank by (|x|, row-major position) lies outside
/// [lo, hi), in place and without a mask.
template <typename S>
void zeroOutsideRankRange(S* x, Index rows, Index cols, Index lo, Index hi) {
  decideRankRange(static_cast<const S*>(x), rows, cols, lo, hi, [&](Index k, bool kept) {
    if (!kept) x[k] = S(0);
  });
}

}  // namespace detail

/// The stream of the random mask of model `model` in tensor `tensorName`: the tensor name and
/// the model index mixed into 64 bits (the merge seed keys the generator).
inline std::uint64_t sparsificationStream(const std::string& tensorName, Index model) {
  return detail::mix64(detail::fnv1a64(tensorName) ^ detail::mix64(std::uint64_t(model) + 1));
}

/// DELLA's keep probability of the entry of ascending magnitude rank `rank` (0-based) in a row of
/// `rowLength` entries: density − ε + 2ε·rank/(rowLength − 1) (density for a row of one entry).
inline double dellaKeepProbability(Index rank, Index rowLength, double density, double epsilon) {
  const double norm = rowLength > 1 ? double(rank) / double(rowLength - 1) : 0.5;
  return (density - epsilon) + norm * 2.0 * epsilon;
}

/// Sparsifies one task vector as mergekit's `sparsify` does (see the file comment for the four
/// methods and where the results differ from mergekit's): magnitude top-k (TIES, Yadav et al.
/// 2023), random keep (DARE, Yu et al. 2024), outlier-trimmed magnitude band (Model Breadcrumbs,
/// Davari & Belilovsky 2024) and magnitude-rank sampling (DELLA, Deep et al. 2024), with
/// mergekit's optional L1 rescale. Random masks are seeded by (seed, tensor name, model index),
/// so re-fetching a model in a second pass draws the same mask.
///
/// \code
/// wproj::TaskVectorSparsifier s;
/// s.setMethod(wproj::SparsificationMethod::Random).setDensity(0.3).setRescale(true).setSeed(7);
/// s.applyInPlace(tau, "model.layers.0.mlp.up_proj.weight", /*model=*/1);
/// \endcode
class TaskVectorSparsifier {
 public:
  /// The method (None keeps everything).
  TaskVectorSparsifier& setMethod(SparsificationMethod m) {
    m_method = m;
    return *this;
  }
  /// Fraction of entries kept, in (0, 1] (1 keeps τ unchanged).
  TaskVectorSparsifier& setDensity(double density) {
    requireArg(density > 0 && density <= 1, "TaskVectorSparsifier::setDensity", "density", density, "a value in (0, 1]");
    m_density = density;
    return *this;
  }
  /// Fraction of the largest entries dropped by `MagnitudeOutliers`, in [0, 1] (mergekit's default 0.01).
  TaskVectorSparsifier& setGamma(double gamma) {
    requireArg(gamma >= 0 && gamma <= 1, "TaskVectorSparsifier::setGamma", "gamma", gamma, "a value in [0, 1]");
    m_gamma = gamma;
    return *this;
  }
  /// Half-width ε of DELLA's keep probabilities, in [0, 1) (mergekit's default 0.15); density ± ε
  /// must lie in (0, 1) when density < 1 (checked when applied).
  TaskVectorSparsifier& setEpsilon(double epsilon) {
    requireArg(epsilon >= 0 && epsilon < 1, "TaskVectorSparsifier::setEpsilon", "epsilon", epsilon, "a value in [0, 1)");
    m_epsilon = epsilon;
    return *this;
  }
  /// Rescale the kept entries to the L1 norm of τ (mergekit's `rescale`).
  TaskVectorSparsifier& setRescale(bool rescale) {
    m_rescale = rescale;
    return *this;
  }
  /// Seed of the random masks (the merge's seed).
  TaskVectorSparsifier& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }
  /// The method.
  SparsificationMethod method() const { return m_method; }
  /// The density.
  double density() const { return m_density; }
  /// gamma (MagnitudeOutliers).
  double gamma() const { return m_gamma; }
  /// ε (DellaMagprune).
  double epsilon() const { return m_epsilon; }
  /// True when the kept entries are rescaled.
  bool rescale() const { return m_rescale; }
  /// The seed.
  std::uint64_t seed() const { return m_seed; }
  /// True when the masks are random (Random, DellaMagprune).
  bool randomized() const { return m_method == SparsificationMethod::Random || m_method == SparsificationMethod::DellaMagprune; }

  /// Sparsifies `tau` in place; `tensorName` and `model` select the random mask (and name the
  /// tensor in errors). Throws `InvalidArgument` when the magnitude method would keep nothing
  /// (⌊density·n⌋ = 0) or DELLA's density ± ε leaves (0, 1).
  template <typename Derived>
  void applyInPlace(Eigen::MatrixBase<Derived>& tau, const std::string& tensorName, Index model) const {
    using S = typename Derived::Scalar;
    if (m_method == SparsificationMethod::None || m_density >= 1 || tau.size() == 0) return;
    if constexpr (std::is_same<Derived, MergeMatrix<S>>::value) {
      applyColumnMajor(tau.derived().data(), tau.rows(), tau.cols(), tensorName, model);
    } else {  // another layout (a row-major map, a block): through a column-major copy
      MergeMatrix<S> copy = tau;
      applyColumnMajor(copy.data(), copy.rows(), copy.cols(), tensorName, model);
      tau = copy;
    }
  }

  /// The sparsified copy of `tau` (see `applyInPlace`).
  template <typename Derived>
  MergeMatrix<typename Derived::Scalar> apply(const Eigen::MatrixBase<Derived>& tau, const std::string& tensorName, Index model) const {
    MergeMatrix<typename Derived::Scalar> out = tau;
    applyInPlace(out, tensorName, model);
    return out;
  }

 private:
  /// The work of `applyInPlace` on a column-major rows×cols array (storage k = j·rows + i; the
  /// row-major position of the same entry, torch's flat index, is i·cols + j).
  template <typename S>
  void applyColumnMajor(S* x, Index rows, Index cols, const std::string& tensorName, Index model) const {
    const Index n = rows * cols;
    const std::string where = "sparsification (" + std::string(toString(m_method)) + ") of tensor '" + tensorName +
                              "', model " + std::to_string(model);
    double l1Before = 0;
    if (m_rescale)
      for (Index k = 0; k < n; ++k) l1Before += std::abs(static_cast<double>(x[k]));
    switch (m_method) {
      case SparsificationMethod::Magnitude: {
        const Index k = static_cast<Index>(m_density * double(n));
        requireArg(k > 0, where.c_str(), "density", m_density,
                   "a value with density * " + std::to_string(n) + " entries >= 1 (mergekit refuses to zero the whole tensor)");
        detail::zeroOutsideRankRange(x, rows, cols, n - k, n);
        break;
      }
      case SparsificationMethod::MagnitudeOutliers: {
        const Index target = static_cast<Index>(m_density * double(n));
        Index nTop = static_cast<Index>(m_gamma * double(n));
        Index nBot = n - target - nTop;
        if (nBot < 0) {
          nTop += nBot;
          nBot = 0;
        }
        // indices[nBot:-nTop] of the ascending sort; empty when nTop = 0 (Python's -0 is 0).
        detail::zeroOutsideRankRange(x, rows, cols, nBot, nTop > 0 ? n - nTop : nBot);
        break;
      }
      case SparsificationMethod::Random: {
        const CounterRng rng(m_seed, sparsificationStream(tensorName, model));
        for (Index j = 0; j < cols; ++j)
          for (Index i = 0; i < rows; ++i)
            if (!(rng.uniform(std::uint64_t(i * cols + j)) <= m_density)) x[j * rows + i] = S(0);
        break;
      }
      case SparsificationMethod::DellaMagprune: {
        if (m_density + m_epsilon >= 1 || m_density - m_epsilon <= 0)
          throwInvalid(where.c_str(), "epsilon", m_epsilon,
                       "density - epsilon > 0 and density + epsilon < 1 (density = " + detail::describe(m_density) + ")");
        const CounterRng rng(m_seed, sparsificationStream(tensorName, model));
        // A one-column matrix is a 1-D tensor: one row of n entries (storage = row-major position).
        const bool vector = cols == 1;
        const Index rowCount = vector ? 1 : rows, rowLength = vector ? rows : cols;
        std::vector<Index> order(static_cast<std::size_t>(rowLength));
        std::vector<S> mag(static_cast<std::size_t>(rowLength));
        for (Index r = 0; r < rowCount; ++r) {
          for (Index c = 0; c < rowLength; ++c) {
            mag[std::size_t(c)] = std::abs(x[vector ? c : c * rows + r]);
            order[std::size_t(c)] = c;
          }
          std::sort(order.begin(), order.end(), [&](Index a, Index b) {
            return mag[std::size_t(a)] < mag[std::size_t(b)] || (mag[std::size_t(a)] == mag[std::size_t(b)] && a < b);
          });
          for (Index rank = 0; rank < rowLength; ++rank) {
            const Index c = order[std::size_t(rank)];
            const double p = dellaKeepProbability(rank, rowLength, m_density, m_epsilon);
            if (!(rng.uniform(std::uint64_t(r * rowLength + c)) <= p)) x[vector ? c : c * rows + r] = S(0);
          }
        }
        break;
      }
      case SparsificationMethod::None: return;
    }
    if (!m_rescale) return;
    double l1After = 0;  // the dropped entries are zero now and add nothing
    for (Index k = 0; k < n; ++k) l1After += std::abs(static_cast<double>(x[k]));
    if (l1Before >= 1e-7 && l1After >= 1e-7) {
      const S scale = S(l1Before / l1After);
      for (Index k = 0; k < n; ++k) x[k] *= scale;
    }
  }

  SparsificationMethod m_method = SparsificationMethod::None;
  double m_density = 1.0;
  double m_gamma = 0.01;
  double m_epsilon = 0.15;
  bool m_rescale = false;
  std::uint64_t m_seed = 0;
};

}  // namespace wproj
