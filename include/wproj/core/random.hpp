// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Counter-based random numbers (Philox4x32-10, Salmon et al., SC 2011).
///
/// Every random value is a pure function of (seed, stream, counter): the k-th value of a fill
/// uses counter `position + k`, so a sketch depends on the seed only — not on the thread count,
/// the platform's `<random>` distributions, or any global state. Gaussians are produced from raw
/// bits with the Box–Muller transform (one normal per counter, cosine branch). Sketches that
/// need many normals fast (`fillGaussianSketch`) use both branches of two 32-bit pairs per
/// counter, in float with vectorised log/sin/cos.

#include "config.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

namespace wproj {

/// The Philox4x32 block function with 10 rounds: a bijection of a 128-bit counter under a
/// 64-bit key. Matches the Random123 reference (known-answer tested).
struct Philox4x32 {
  /// 128-bit counter as four 32-bit words.
  using Counter = std::array<std::uint32_t, 4>;
  /// 64-bit key as two 32-bit words.
  using Key = std::array<std::uint32_t, 2>;

  /// Encrypts `ctr` under `key` (10 rounds).
  static Counter block(Counter ctr, Key key) {
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        key[0] += 0x9E3779B9u;
        key[1] += 0xBB67AE85u;
      }
      const std::uint64_t p0 = std::uint64_t(0xD2511F53u) * ctr[0];
      const std::uint64_t p1 = std::uint64_t(0xCD9E8D57u) * ctr[2];
      const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
      const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
      ctr = Counter{hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    }
    return ctr;
  }
};

/// A seeded, stream-separated counter-based generator.
///
/// Pure accessors (`bits64(i)`, `uniform(i)`, `gaussian(i)`) evaluate the value at counter i
/// without touching state; the `next…()` and `fill…()` members consume counters from the
/// current position. Two generators with the same seed and stream produce identical bits.
class CounterRng {
 public:
  /// A generator keyed by `seed`; `stream` selects an independent sequence for the same seed.
  explicit CounterRng(std::uint64_t seed = 0, std::uint64_t stream = 0) : m_seed(seed), m_stream(stream) {}

  /// The seed that keys the generator.
  std::uint64_t seed() const { return m_seed; }
  /// The stream that selects the sequence for this seed.
  std::uint64_t stream() const { return m_stream; }
  /// The next counter the stateful members will use.
  std::uint64_t position() const { return m_position; }
  /// Moves the generator to counter `position` (e.g. to restore a checkpoint).
  void setPosition(std::uint64_t position) { m_position = position; }

  /// The raw 128-bit block at counter `index`.
  Philox4x32::Counter block(std::uint64_t index) const {
    const Philox4x32::Counter ctr{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
                                  static_cast<std::uint32_t>(m_stream), static_cast<std::uint32_t>(m_stream >> 32)};
    const Philox4x32::Key key{static_cast<std::uint32_t>(m_seed), static_cast<std::uint32_t>(m_seed >> 32)};
    return Philox4x32::block(ctr, key);
  }

  /// 64 random bits at counter `index`.
  std::uint64_t bits64(std::uint64_t index) const {
    const auto b = block(index);
    return (std::uint64_t(b[1]) << 32) | b[0];
  }

  /// A uniform double in (0, 1] at counter `index` (53 random bits).
  double uniform(std::uint64_t index) const { return toUnit(bits64(index)); }

  /// A standard normal double at counter `index` (Box–Muller on two 53-bit uniforms).
  double gaussian(std::uint64_t index) const {
    const auto b = block(index);
    const double u1 = toUnit((std::uint64_t(b[1]) << 32) | b[0]);
    const double u2 = toUnit((std::uint64_t(b[3]) << 32) | b[2]);
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
  }

  /// A Rademacher value (−1 or +1) at counter `index`.
  double rademacher(std::uint64_t index) const { return (block(index)[0] & 1u) ? 1.0 : -1.0; }

  /// 64 random bits at the current position; advances it by one.
  std::uint64_t nextBits() { return bits64(m_position++); }
  /// A uniform double in (0, 1] at the current position; advances it by one.
  double nextUniform() { return uniform(m_position++); }
  /// A standard normal double at the current position; advances it by one.
  double nextGaussian() { return gaussian(m_position++); }
  /// A uniform integer in [0, n) (n ≥ 1), by rejection so that it is exactly unbiased.
  std::uint64_t nextBelow(std::uint64_t n) {
    WPROJ_ASSERT(n > 0);
    const std::uint64_t limit = std::uint64_t(-1) - (std::uint64_t(-1) % n);
    for (;;) {
      const std::uint64_t x = nextBits();
      if (x < limit) return x % n;
    }
  }

  /// Fills `x` (column-major order) with N(0, stddev²) values; consumes rows·cols counters.
  template <typename Derived>
  void fillGaussian(Eigen::DenseBase<Derived>& x, double stddev = 1.0) {
    using S = typename Derived::Scalar;
    fill(x, [&](std::uint64_t i) { return static_cast<S>(stddev * gaussian(i)); });
  }
  /// Overload for an rvalue expression (e.g. `m.col(j)` or a block); same values as the lvalue overload.
  template <typename Derived>
  void fillGaussian(Eigen::DenseBase<Derived>&& x, double stddev = 1.0) {
    fillGaussian(x, stddev);
  }

  /// Fills `x` (column-major order) with standard normal values for random sketches: four
  /// normals per counter (Box–Muller, both branches, on the two 32-bit pairs of a Philox block),
  /// evaluated in single precision with vectorised log/sin/cos — about 20× faster than
  /// `fillGaussian`. The values lie within ±6.7 (the tail beyond is truncated by the 32-bit
  /// uniforms), which randomized range finders do not notice. Consumes ⌈rows·cols/4⌉ counters;
  /// the values depend only on (seed, stream, position) for a given build.
  template <typename Derived>
  void fillGaussianSketch(Eigen::DenseBase<Derived>& x) {
    SketchChunk out;
    const Index rows = x.rows(), cols = x.cols();
    const std::uint64_t total = std::uint64_t(rows) * std::uint64_t(cols);
    const std::uint64_t base = m_position;
    Index i = 0, j = 0;
    for (std::uint64_t start = 0; start < total; start += kSketchChunk) {
      sketchChunk(base + start / 4, out);
      const std::uint64_t count = std::min<std::uint64_t>(kSketchChunk, total - start);
      for (std::uint64_t t = 0; t < count; ++t) {
        x.coeffRef(i, j) = static_cast<typename Derived::Scalar>(chunkValue(out, t));
        if (++i == rows) {
          i = 0;
          ++j;
        }
      }
    }
    m_position = base + (total + 3) / 4;
  }
  /// Overload for an rvalue expression (e.g. `m.middleCols(a, b)`); same values as the lvalue overload.
  template <typename Derived>
  void fillGaussianSketch(Eigen::DenseBase<Derived>&& x) {
    fillGaussianSketch(x);
  }

  /// Fills `x` (localRows×cols) with rows [firstRow, firstRow + localRows) of the matrix that
  /// `fillGaussianSketch` would write into a totalRows×cols matrix from the current position,
  /// bit for bit, and advances the position exactly as that full fill would (⌈totalRows·cols/4⌉
  /// counters). Only the 512-value chunks of the full fill that overlap the requested rows are
  /// generated, so each rank of a row-distributed sketch pays for its own rows only (plus at most
  /// two partial chunks per column). Requires 0 ≤ firstRow and firstRow + localRows ≤ totalRows.
  template <typename Derived>
  void fillGaussianSketchRows(Eigen::DenseBase<Derived>& x, Index totalRows, Index firstRow) {
    requireArg(totalRows >= 0, "CounterRng::fillGaussianSketchRows", "totalRows", totalRows, ">= 0");
    requireArg(firstRow >= 0 && firstRow + x.rows() <= totalRows, "CounterRng::fillGaussianSketchRows", "firstRow",
               firstRow, "in [0, totalRows - x.rows()] = [0, " + std::to_string(totalRows - x.rows()) + "]");
    SketchChunk out;
    const Index rows = x.rows(), cols = x.cols();
    const std::uint64_t base = m_position;
    std::uint64_t have = ~std::uint64_t(0);  // index of the chunk held in `out`
    for (Index j = 0; j < cols; ++j) {
      const std::uint64_t colStart = std::uint64_t(j) * std::uint64_t(totalRows) + std::uint64_t(firstRow);
      for (Index i = 0; i < rows; ++i) {
        const std::uint64_t k = colStart + std::uint64_t(i);  // index in the full fill
        const std::uint64_t chunk = k / kSketchChunk;
        if (chunk != have) {
          sketchChunk(base + chunk * (kSketchChunk / 4), out);
          have = chunk;
        }
        x.coeffRef(i, j) = static_cast<typename Derived::Scalar>(chunkValue(out, k % kSketchChunk));
      }
    }
    m_position = base + (std::uint64_t(totalRows) * std::uint64_t(cols) + 3) / 4;
  }
  /// Overload for an rvalue expression (e.g. `m.leftCols(c)`); same values as the lvalue overload.
  template <typename Derived>
  void fillGaussianSketchRows(Eigen::DenseBase<Derived>&& x, Index totalRows, Index firstRow) {
    fillGaussianSketchRows(x, totalRows, firstRow);
  }

  /// Fills `x` with ±scale (Rademacher); consumes rows·cols counters.
  template <typename Derived>
  void fillRademacher(Eigen::DenseBase<Derived>& x, double scale = 1.0) {
    using S = typename Derived::Scalar;
    fill(x, [&](std::uint64_t i) { return static_cast<S>(scale * rademacher(i)); });
  }
  /// Overload for an rvalue expression (e.g. `m.col(j)` or a block); same values as the lvalue overload.
  template <typename Derived>
  void fillRademacher(Eigen::DenseBase<Derived>&& x, double scale = 1.0) {
    fillRademacher(x, scale);
  }

  /// Fills `x` with uniform values in (lo, hi]; consumes rows·cols counters.
  template <typename Derived>
  void fillUniform(Eigen::DenseBase<Derived>& x, double lo = 0.0, double hi = 1.0) {
    using S = typename Derived::Scalar;
    fill(x, [&](std::uint64_t i) { return static_cast<S>(lo + (hi - lo) * uniform(i)); });
  }
  /// Overload for an rvalue expression (e.g. `m.col(j)` or a block); same values as the lvalue overload.
  template <typename Derived>
  void fillUniform(Eigen::DenseBase<Derived>&& x, double lo = 0.0, double hi = 1.0) {
    fillUniform(x, lo, hi);
  }

 private:
  static double toUnit(std::uint64_t bits) { return double((bits >> 11) + 1) * 0x1.0p-53; }

  // The sketch fills work on chunks of 512 normals (a multiple of every packet size): chunk c of
  // a fill starting at counter `base` uses counters base + 128c … base + 128c + 127.
  static constexpr int kSketchChunk = 512;
  using SketchChunk = Eigen::Array<float, kSketchChunk, 1>;

  // One chunk from the 128 Philox blocks at counters counter0 …: radii and angles of 256
  // Box–Muller pairs, cosine branch in the head of `out`, sine branch in its tail. The only
  // place these values are computed, so a full fill and a row fill agree bit for bit.
  void sketchChunk(std::uint64_t counter0, SketchChunk& out) const {
    using Pairs = Eigen::Array<float, kSketchChunk / 2, 1>;
    Pairs u1, u2;
    for (int b = 0; b < kSketchChunk / 4; ++b) {
      const auto blk = block(counter0 + std::uint64_t(b));
      // (bits + 0.5)·2⁻³² lies in (0, 1); in float it may round to 1, where the radius is 0.
      u1(2 * b) = float((double(blk[0]) + 0.5) * 0x1.0p-32);
      u2(2 * b) = float((double(blk[1]) + 0.5) * 0x1.0p-32);
      u1(2 * b + 1) = float((double(blk[2]) + 0.5) * 0x1.0p-32);
      u2(2 * b + 1) = float((double(blk[3]) + 0.5) * 0x1.0p-32);
    }
    const Pairs radius = (float(-2) * u1.log()).sqrt();
    const Pairs angle = float(6.283185307179586) * u2 - float(3.141592653589793);
    out.head(kSketchChunk / 2) = radius * angle.cos();
    out.tail(kSketchChunk / 2) = radius * angle.sin();
  }
  // The t-th value of a chunk: the two branches interleaved, so that the k-th value of a fill is
  // fixed by k alone.
  static float chunkValue(const SketchChunk& out, std::uint64_t t) {
    return (t & 1u) ? out(kSketchChunk / 2 + Index(t / 2)) : out(Index(t / 2));
  }

  template <typename Derived, typename F>
  void fill(Eigen::DenseBase<Derived>& x, F&& value) {
    const Index rows = x.rows(), cols = x.cols();
    const std::uint64_t base = m_position;
    for (Index j = 0; j < cols; ++j)
      for (Index i = 0; i < rows; ++i) x.coeffRef(i, j) = value(base + std::uint64_t(j) * std::uint64_t(rows) + std::uint64_t(i));
    m_position = base + std::uint64_t(rows) * std::uint64_t(cols);
  }

  std::uint64_t m_seed;
  std::uint64_t m_stream;
  std::uint64_t m_position = 0;
};

/// A rows×cols matrix of N(0, stddev²) values that depends only on (seed, stream).
template <typename MatrixType>
MatrixType gaussianMatrix(Index rows, Index cols, std::uint64_t seed, std::uint64_t stream = 0, double stddev = 1.0) {
  requireArg(rows >= 0, "gaussianMatrix", "rows", rows, ">= 0");
  requireArg(cols >= 0, "gaussianMatrix", "cols", cols, ">= 0");
  MatrixType m(rows, cols);
  CounterRng rng(seed, stream);
  rng.fillGaussian(m, stddev);
  return m;
}

}  // namespace wproj
