// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Orthonormal DCT-II bases (the SVD-free GaLore variant of IST-DASLab's `dct_adamw`): the
/// explicit matrix, fast transforms of all rows or all columns of a matrix through one FFT per
/// row (Makhoul 1980, through a batched FFT vectorised across rows: batch_fft.hpp) and the inverse
/// (DCT-III). Column/row scoring and top-r selection are in dct_selection.hpp (included at the end).
///
/// Convention: C[k, j] = α_k cos(π(2j+1)k / (2N)), α_0 = √(1/N), α_k = √(2/N) for k ≥ 1, so
/// y = C x equals `scipy.fft.dct(x, type=2, norm='ortho')` and C⁻¹ = Cᵀ (the orthonormal DCT-III).
/// `dctOfRows(X)` = X Cᵀ transforms every row; `dctOfColumns(X)` = C X every column.

#include "../core/config.hpp"
#include "../core/side.hpp"

#include "batch_fft.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <numeric>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace wproj {

/// How a DCT of many rows/columns is evaluated.
enum class DCTAlgorithm {
  Auto,   ///< the cheaper of Dense and Fast by `DCT::fastIsCheaper` (cost model)
  Dense,  ///< one GEMM with the explicit N×N matrix (2·count·N² flops, at GEMM speed)
  Fast    ///< one length-N FFT per row (Makhoul), O(count·N log N)
};

/// How a column (or row) is scored for top-r selection.
enum class ScoreNorm { L1, L2 };

/// The orthonormal DCT-II matrix C (n×n): C[k, j] = α_k cos(π(2j+1)k/(2n)). Requires n ≥ 1.
/// Built from a table of 4n cosines (exact index reduction, no accumulated rounding).
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> dctMatrix(Index n) {
  requireArg(n >= 1, "dctMatrix", "n", n, ">= 1");
  const double pi = 3.14159265358979323846264338327950288;
  std::vector<double> table(static_cast<std::size_t>(4 * n));
  for (Index t = 0; t < 4 * n; ++t) table[std::size_t(t)] = std::cos(pi * double(t) / double(2 * n));
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> c(n, n);
  const double a0 = std::sqrt(1.0 / double(n)), a1 = std::sqrt(2.0 / double(n));
  for (Index j = 0; j < n; ++j)
    for (Index k = 0; k < n; ++k) {
      const Index t = ((2 * j + 1) * k) % (4 * n);
      c(k, j) = Scalar((k == 0 ? a0 : a1) * table[std::size_t(t)]);
    }
  return c;
}

/// An orthonormal DCT-II of size n with a reusable plan: Makhoul's reordering, one batched
/// complex FFT (batch_fft.hpp) for every 2·Lanes vectors — two real vectors packed as the real
/// and imaginary parts of one complex sequence, across a full SIMD lane group — and the
/// twiddle post-processing, all vectorised across vectors. Large transforms are split over
/// `threads()` threads (default: all hardware threads once the matrix has ≥ 2²⁰ entries).
/// Workspaces are kept between calls, so repeated single-threaded calls do not allocate beyond
/// their result. A `DCT` may be shared by threads only for concurrent calls with the Dense
/// algorithm; give each thread its own otherwise.
/// Example:
/// \code
/// Eigen::MatrixXf g = Eigen::MatrixXf::Random(64, 256);
/// wproj::DCT<float> dct(256);
/// Eigen::MatrixXf s = dct.ofRows(g);         // G Cᵀ: the DCT-II of every row
/// Eigen::MatrixXf back = dct.inverseOfRows(s);  // G again, up to rounding
/// \endcode
template <typename Scalar_>
class DCT {
 public:
  /// Floating-point type of the transformed values (float or double).
  using Scalar = Scalar_;
  /// Dense matrix type of inputs and results.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type of a single signal.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  static_assert(std::is_floating_point<Scalar>::value, "DCT: float or double");

  /// A DCT of size n ≥ 1 evaluated with `algorithm` (default Auto).
  explicit DCT(Index n, DCTAlgorithm algorithm = DCTAlgorithm::Auto)
      : m_n(n), m_algorithm(algorithm), m_fft((requireArg(n >= 1, "DCT", "n", n, ">= 1"), n)) {
    const double pi = 3.14159265358979323846264338327950288;
    m_wr.resize(n);
    m_wi.resize(n);
    m_perm.resize(std::size_t(n));
    for (Index k = 0; k < n; ++k) {
      // W_k = e^{−iπk/(2n)} times the orthonormal scale α_k/2 (the DCT is 2·Re(W_k V_k)·α_k/2).
      const double ang = -pi * double(k) / double(2 * n);
      const double scale = k == 0 ? std::sqrt(1.0 / (4.0 * double(n))) : std::sqrt(1.0 / (2.0 * double(n)));
      m_scale.push_back(scale);
      m_wr(k) = Scalar(std::cos(ang) * scale);
      m_wi(k) = Scalar(std::sin(ang) * scale);
      // Makhoul's order: v_t = x_{2t} for t < ⌈n/2⌉, v_{n−1−t} = x_{2t+1}.
      m_perm[std::size_t(k)] = 2 * k < n ? 2 * k : 2 * (n - 1 - k) + 1;
    }
    // The inverse: V_k = conj(W_k)·(Y_k/α_k − i·Y_{n−k}/α_{n−k})/2, then x = IFFT(V) (1/n).
    m_iwr.resize(n);
    m_iwi.resize(n);
    for (Index k = 0; k < n; ++k) {
      const double ang = -pi * double(k) / double(2 * n);
      m_iwr(k) = Scalar(std::cos(ang) * 0.5 / double(n));
      m_iwi(k) = Scalar(std::sin(ang) * 0.5 / double(n));
    }
  }

  /// Transform length n.
  Index size() const { return m_n; }
  /// The evaluation algorithm (`DCTAlgorithm::Auto` unless set).
  DCTAlgorithm algorithm() const { return m_algorithm; }
  /// Selects the evaluation algorithm. Returns *this.
  DCT& setAlgorithm(DCTAlgorithm a) {
    m_algorithm = a;
    return *this;
  }
  /// Threads of the fast path: 0 (default) = all hardware threads for matrices of ≥ 2²⁰
  /// entries and one below; t ≥ 1 = exactly t (at most one per batch of vectors).
  DCT& setThreads(int threads) {
    requireArg(threads >= 0, "DCT::setThreads", "threads", threads, ">= 0 (0 = automatic)");
    m_threads = threads;
    return *this;
  }
  /// The thread setting (0 = automatic; see `setThreads`).
  int threads() const { return m_threads; }

  /// The explicit matrix C (built on first use, then cached).
  const Matrix& matrix() const {
    if (m_matrix.rows() != m_n) m_matrix = dctMatrix<Scalar>(m_n);
    return m_matrix;
  }

  /// Cost model: the FFT route costs about 25·N·(log₂N + largest prime factor of N) scalar
  /// operations per row against 2·N² for the dense product, and the GEMM runs ≈ 8× faster per
  /// operation; it also avoids building the N×N matrix. Fast when 8·25·(log₂N + p) < 2·N, i.e.
  /// for N ≳ 200–300 with small prime factors (see docs/decompositions.md).
  static bool fastIsCheaper(Index n) {
    if (n < 32) return false;
    const double lg = std::log2(double(n));
    return 100.0 * (lg + double(largestPrimeFactor(n))) < double(n);
  }

  /// Whether `Auto` (or the fixed choice) evaluates with the FFT.
  bool usesFast() const {
    return m_algorithm == DCTAlgorithm::Fast || (m_algorithm == DCTAlgorithm::Auto && fastIsCheaper(m_n));
  }

  /// X Cᵀ: the DCT of every row of x (x has n columns).
  template <typename Derived>
  Matrix ofRows(const Eigen::MatrixBase<Derived>& x) const {
    Matrix out;
    apply<false, true>(x, out, "DCT::ofRows");
    return out;
  }

  /// C X: the DCT of every column of x (x has n rows).
  template <typename Derived>
  Matrix ofColumns(const Eigen::MatrixBase<Derived>& x) const {
    Matrix out;
    apply<false, false>(x, out, "DCT::ofColumns");
    return out;
  }

  /// X C: the inverse DCT (orthonormal DCT-III) of every row of x.
  template <typename Derived>
  Matrix inverseOfRows(const Eigen::MatrixBase<Derived>& x) const {
    Matrix out;
    apply<true, true>(x, out, "DCT::inverseOfRows");
    return out;
  }

  /// Cᵀ X: the inverse DCT of every column of x.
  template <typename Derived>
  Matrix inverseOfColumns(const Eigen::MatrixBase<Derived>& x) const {
    Matrix out;
    apply<true, false>(x, out, "DCT::inverseOfColumns");
    return out;
  }

  /// `ofRows` into `out` (resized only when its shape differs: no allocation when reused).
  /// `out` must not alias x.
  template <typename Derived>
  void ofRowsInto(const Eigen::MatrixBase<Derived>& x, Matrix& out) const {
    apply<false, true>(x, out, "DCT::ofRowsInto");
  }

  /// `ofColumns` into `out` (resized only when its shape differs). `out` must not alias x.
  template <typename Derived>
  void ofColumnsInto(const Eigen::MatrixBase<Derived>& x, Matrix& out) const {
    apply<false, false>(x, out, "DCT::ofColumnsInto");
  }

  /// Score of every frequency over the DCTs of the rows of x: Σ_i |(X Cᵀ)_ik| (L1) or its
  /// ℓ2 analogue = `columnScores(ofRows(x), norm)`, without storing the transform (the fast
  /// path keeps one batch of rows at a time).
  template <typename Derived>
  Eigen::VectorXd scoresOfRows(const Eigen::MatrixBase<Derived>& x, ScoreNorm norm = ScoreNorm::L1) const {
    return frequencyScores<true>(x, norm, "DCT::scoresOfRows");
  }

  /// Score of every frequency over the DCTs of the columns of x = `rowScores(ofColumns(x), norm)`,
  /// without storing the transform.
  template <typename Derived>
  Eigen::VectorXd scoresOfColumns(const Eigen::MatrixBase<Derived>& x, ScoreNorm norm = ScoreNorm::L1) const {
    return frequencyScores<false>(x, norm, "DCT::scoresOfColumns");
  }

  /// Columns `idx` of ofRows(x) (rows(x) × idx.size()), without storing the whole transform.
  template <typename Derived>
  Matrix selectedOfRows(const Eigen::MatrixBase<Derived>& x, const std::vector<Index>& idx) const {
    checkShape(x, -1, m_n, "DCT::selectedOfRows", "x");
    return selectedFrequencies<true>(x, idx, "DCT::selectedOfRows");
  }

  /// Rows `idx` of ofColumns(x) (idx.size() × cols(x)), without storing the whole transform.
  template <typename Derived>
  Matrix selectedOfColumns(const Eigen::MatrixBase<Derived>& x, const std::vector<Index>& idx) const {
    checkShape(x, m_n, -1, "DCT::selectedOfColumns", "x");
    return selectedFrequencies<false>(x, idx, "DCT::selectedOfColumns");
  }

  /// The largest prime factor of n (1 for n = 1).
  static Index largestPrimeFactor(Index n) {
    Index p = 1;
    for (Index f = 2; f * f <= n; ++f)
      while (n % f == 0) {
        p = f;
        n /= f;
      }
    return n > 1 ? std::max(p, n) : p;
  }

 private:
  using Fft = detail::BatchFFT<Scalar>;
  using Lane = typename Fft::Lane;
  using LaneMap = typename Fft::LaneMap;
  using ConstLaneMap = typename Fft::ConstLaneMap;
  static constexpr int L = Fft::Lanes;

  // Shape check, then the dense product or the batched FFT; non-finite input is an error
  // (detected during the FFT route's gather, reported by checkFinite with its message).
  template <bool Inverse, bool ByRows, typename Derived>
  void apply(const Eigen::MatrixBase<Derived>& x, Matrix& out, const char* where) const {
    if (ByRows)
      checkShape(x, -1, m_n, where, "x");
    else
      checkShape(x, m_n, -1, where, "x");
    if (!usesFast()) {
      checkFinite(x, where, "x");
      if (ByRows && Inverse)
        out.noalias() = x * matrix();
      else if (ByRows)
        out.noalias() = x * matrix().transpose();
      else if (Inverse)
        out.noalias() = matrix().transpose() * x;
      else
        out.noalias() = matrix() * x;
      return;
    }
    const Index count = ByRows ? x.rows() : x.cols();
    if (ByRows) {
      if (out.rows() != count || out.cols() != m_n) out.resize(count, m_n);
      if (!transform<Inverse>(x.derived(), count, scatterInto<Inverse>(out))) checkFinite(x, where, "x");
    } else {
      if (out.rows() != m_n || out.cols() != count) out.resize(m_n, count);
      auto outT = out.transpose();
      if (!transform<Inverse>(x.derived().transpose(), count, scatterInto<Inverse>(outT))) checkFinite(x, where, "x");
    }
  }

  // Sink writing a batch's results to rows row0… of out (count × n), in tiles (see gather).
  template <bool Inverse, typename Out>
  auto scatterInto(Out& out) const {
    return [this, &out](Index row0, Index rows, const Scalar* src, Index /*chunk*/) {
      const Index n = m_n;
      for (Index k0 = 0; k0 < n; k0 += kTile) {
        const Index k1 = std::min(n, k0 + kTile);
        for (Index l = 0; l < rows; ++l)
          for (Index k = k0; k < k1; ++k) out.coeffRef(row0 + l, Inverse ? m_perm[std::size_t(k)] : k) = src[k * L + l];
      }
    };
  }

  // Σ over vectors of |y_k| (L1) or y_k² (L2) for every frequency k, without storing the
  // transform. Partial sums per chunk of batches are added in chunk order, so the result does
  // not depend on the number of threads.
  template <bool ByRows, typename Derived>
  Eigen::VectorXd frequencyScores(const Eigen::MatrixBase<Derived>& x, ScoreNorm norm, const char* where) const {
    if (ByRows)
      checkShape(x, -1, m_n, where, "x");
    else
      checkShape(x, m_n, -1, where, "x");
    const Index count = ByRows ? x.rows() : x.cols();
    Eigen::VectorXd scores = Eigen::VectorXd::Zero(m_n);
    if (!usesFast() || count == 0) {
      checkFinite(x, where, "x");
      const Matrix y = ByRows ? Matrix(x * matrix().transpose()) : Matrix((matrix() * x).transpose());
      for (Index v = 0; v < y.rows(); ++v) {
        if (norm == ScoreNorm::L1)
          scores += y.row(v).transpose().template cast<double>().cwiseAbs();
        else
          scores += y.row(v).transpose().template cast<double>().cwiseAbs2();
      }
    } else {
      const Index chunks = (count + kChunkRows - 1) / kChunkRows;
      Eigen::MatrixXd partial = Eigen::MatrixXd::Zero(m_n, chunks);
      auto sink = [&](Index, Index, const Scalar* src, Index chunk) {
        double* p = partial.col(chunk).data();
        for (Index k = 0; k < m_n; ++k) {
          const ConstLaneMap v(src + k * L);  // padding lanes hold zeros
          p[k] += norm == ScoreNorm::L1 ? double(v.abs().sum()) : double(v.square().sum());
        }
      };
      const bool ok = ByRows ? transform<false>(x.derived(), count, sink)
                             : transform<false>(x.derived().transpose(), count, sink);
      if (!ok) checkFinite(x, where, "x");
      scores = partial.rowwise().sum();
    }
    if (norm == ScoreNorm::L2) scores = scores.cwiseSqrt();
    return scores;
  }

  // y_{idx[j]} of every vector: ByRows → count × r, else r × count.
  template <bool ByRows, typename Derived>
  Matrix selectedFrequencies(const Eigen::MatrixBase<Derived>& x, const std::vector<Index>& idx, const char* where) const {
    const Index count = ByRows ? x.rows() : x.cols(), r = Index(idx.size());
    for (Index k : idx) requireArg(k >= 0 && k < m_n, where, "index", k, "a frequency in [0, " + std::to_string(m_n) + ")");
    Matrix out(ByRows ? count : r, ByRows ? r : count);
    if (!usesFast() || count == 0) {
      checkFinite(x, where, "x");
      const Matrix y = ByRows ? Matrix(x * matrix().transpose()) : Matrix((matrix() * x).transpose());
      for (Index j = 0; j < r; ++j)
        for (Index v = 0; v < count; ++v) (ByRows ? out(v, j) : out(j, v)) = y(v, idx[std::size_t(j)]);
      return out;
    }
    auto sink = [&](Index row0, Index rows, const Scalar* src, Index) {
      for (Index l = 0; l < rows; ++l)
        for (Index j = 0; j < r; ++j) {
          const Scalar y = src[idx[std::size_t(j)] * L + l];
          if (ByRows)
            out(row0 + l, j) = y;
          else
            out(j, row0 + l) = y;
        }
    };
    const bool ok =
        ByRows ? transform<false>(x.derived(), count, sink) : transform<false>(x.derived().transpose(), count, sink);
    if (!ok) checkFinite(x, where, "x");
    return out;
  }

  struct Workspace {
    typename Fft::Buffer aRe, aIm, bRe, bIm, scratch;
  };

  Workspace& workspace(std::size_t t) const {
    if (m_workspaces.size() <= t) m_workspaces.resize(t + 1);
    Workspace& w = m_workspaces[t];
    if (w.aRe.size() != m_n * L) {
      w.aRe = m_fft.makeBuffer();
      w.aIm = m_fft.makeBuffer();
      w.bRe = m_fft.makeBuffer();
      w.bIm = m_fft.makeBuffer();
      w.scratch = m_fft.makeScratch();
    }
    return w;
  }

  static constexpr Index kTile = 16;       // elements per transposition tile (≤ 1 KiB in L1)
  static constexpr Index kChunkRows = 16 * 2 * L;  // rows per chunk: the unit of work of a thread

  // Transforms the `count` rows of x (count × n), Inverse selecting the DCT-III, in batches of
  // 2·L rows; each batch's results go to sink(row0, rows, buffer, chunk) with the result of
  // row row0 + l, element k at buffer[k·L + l]. Threads take contiguous ranges of chunks.
  // Returns false when x has a NaN or infinite entry.
  template <bool Inverse, typename In, typename Sink>
  bool transform(const In& x, Index count, Sink&& sink) const {
    if constexpr (!(Eigen::internal::traits<In>::Flags & Eigen::DirectAccessBit)) {
      const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> xe = x;  // evaluate an expression once
      return transformEvaluated<Inverse>(xe, count, sink);
    } else {
      return transformEvaluated<Inverse>(x, count, sink);
    }
  }

  template <bool Inverse, typename In, typename Sink>
  bool transformEvaluated(const In& x, Index count, Sink& sink) const {
    const Index chunks = (count + kChunkRows - 1) / kChunkRows;
    int threads = m_threads;
    if (threads == 0) threads = count * m_n >= (Index(1) << 20) ? int(std::max(1u, std::thread::hardware_concurrency())) : 1;
    threads = int(std::min<Index>(threads, chunks));
    if (threads <= 1) return transformRange<Inverse>(x, sink, 0, count, workspace(0));
    for (int t = 0; t < threads; ++t) workspace(std::size_t(t));
    std::vector<std::thread> pool;
    pool.reserve(std::size_t(threads - 1));
    auto rangeOf = [&](int t) {
      const Index c0 = chunks * t / threads, c1 = chunks * (t + 1) / threads;
      return std::make_pair(std::min(count, c0 * kChunkRows), std::min(count, c1 * kChunkRows));
    };
    std::vector<char> finite(std::size_t(threads), 1);
    for (int t = 1; t < threads; ++t)
      pool.emplace_back([&, t] {
        const auto r = rangeOf(t);
        finite[std::size_t(t)] = transformRange<Inverse>(x, sink, r.first, r.second, m_workspaces[std::size_t(t)]);
      });
    const auto r0 = rangeOf(0);
    finite[0] = transformRange<Inverse>(x, sink, r0.first, r0.second, m_workspaces[0]);
    for (auto& th : pool) th.join();
    return std::all_of(finite.begin(), finite.end(), [](char f) { return f != 0; });
  }

  // Rows [first, last) of x, in batches of 2·L: lane l of the real part is row c0 + l, of the
  // imaginary part row c0 + L + l (missing rows are zero and not passed to the sink).
  template <bool Inverse, typename In, typename Sink>
  bool transformRange(const In& x, Sink& sink, Index first, Index last, Workspace& w) const {
    const Index n = m_n;
    Lane finite = Lane::Zero();  // x − x summed: stays 0 unless an entry is NaN or ±Inf
    for (Index c0 = first; c0 < last; c0 += 2 * L) {
      const Index na = std::min<Index>(L, last - c0), nb = std::max<Index>(0, std::min<Index>(L, last - c0 - L));
      if (na < L || nb < L) {
        w.aRe.setZero();
        w.aIm.setZero();
      }
      // Tiles of kTile elements × the batch's rows: a tile stays in L1 while it is transposed,
      // and each source row is read in runs of kTile elements.
      auto gather = [&](Scalar* dst, Index row0, Index rows) {
        for (Index t0 = 0; t0 < n; t0 += kTile) {
          const Index t1 = std::min(n, t0 + kTile);
          for (Index l = 0; l < rows; ++l)
            for (Index t = t0; t < t1; ++t) dst[t * L + l] = x.coeff(row0 + l, Inverse ? t : m_perm[std::size_t(t)]);
          for (Index t = t0; t < t1; ++t) {
            const ConstLaneMap v(dst + t * L);
            finite += v - v;
          }
        }
      };
      gather(w.aRe.data(), c0, na);
      gather(w.aIm.data(), c0 + L, nb);
      if (Inverse) {
        prepareInverse(w);
        m_fft.forward(w.bRe.data(), w.bIm.data(), w.aRe.data(), w.aIm.data(), w.scratch.data());
        // x_a = Re(F), x_b = −Im(F) (the 1/n is folded into the twiddles).
        LaneMapArray(w.aIm.data(), n) = -LaneMapArray(w.aIm.data(), n);
      } else {
        m_fft.forward(w.aRe.data(), w.aIm.data(), w.bRe.data(), w.bIm.data(), w.scratch.data());
        finishForward(w);
      }
      const Index chunk = c0 / kChunkRows;
      sink(c0, na, static_cast<const Scalar*>(w.aRe.data()), chunk);
      if (nb > 0) sink(c0 + L, nb, static_cast<const Scalar*>(w.aIm.data()), chunk);
    }
    return (finite == Scalar(0)).all();
  }

  static Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>> LaneMapArray(Scalar* p, Index n) {
    return Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>(p, n * L);
  }

  // Z = FFT(a + i·b) in (bRe, bIm) → the DCT-II of a in aRe and of b in aIm:
  // A_k = (Z_k + conj Z_{n−k})/2, B_k = (Z_k − conj Z_{n−k})/(2i), y_k = 2·Re(W_k·A_k)·α_k/2.
  void finishForward(Workspace& w) const {
    const Index n = m_n;
    const Scalar *zr = w.bRe.data(), *zi = w.bIm.data();
    for (Index k = 0; k < n; ++k) {
      const Index nk = k == 0 ? 0 : n - k;
      const ConstLaneMap r(zr + k * L), i(zi + k * L), rn(zr + nk * L), in(zi + nk * L);
      const Scalar wr = m_wr(k), wi = m_wi(k);
      LaneMap(w.aRe.data() + k * L) = (r + rn) * wr - (i - in) * wi;
      LaneMap(w.aIm.data() + k * L) = (i + in) * wr - (rn - r) * wi;
    }
  }

  // (aRe, aIm) hold the DCT coefficients of a and b → conj(V_a + i·V_b) in (bRe, bIm), whose
  // forward FFT F gives a = Re(F), b = −Im(F).
  void prepareInverse(Workspace& w) const {
    const Index n = m_n;
    const Scalar s0 = Scalar(1.0 / m_scale[0]), s1 = Scalar(1.0 / (n > 1 ? m_scale[1] : m_scale[0]));
    const Scalar *ya = w.aRe.data(), *yb = w.aIm.data();
    for (Index k = 0; k < n; ++k) {
      const Scalar sk = k == 0 ? s0 : s1;
      const Lane pa = ConstLaneMap(ya + k * L) * sk, pb = ConstLaneMap(yb + k * L) * sk;
      Lane qa = Lane::Zero(), qb = Lane::Zero();
      if (k != 0) {
        qa = ConstLaneMap(ya + (n - k) * L) * s1;
        qb = ConstLaneMap(yb + (n - k) * L) * s1;
      }
      const Scalar wr = m_iwr(k), wi = m_iwi(k);
      // V = conj(W)(P − iQ)/2: Re = Wr·P − Wi·Q, Im = −(Wr·Q + Wi·P) (the 1/2 and 1/n are in W).
      const Lane var = pa * wr - qa * wi, vai = -(qa * wr + pa * wi);
      const Lane vbr = pb * wr - qb * wi, vbi = -(qb * wr + pb * wi);
      LaneMap(w.bRe.data() + k * L) = var - vbi;     // Re Z
      LaneMap(w.bIm.data() + k * L) = -(vai + vbr);  // −Im Z
    }
  }

  Index m_n;
  DCTAlgorithm m_algorithm;
  Fft m_fft;
  Eigen::Array<Scalar, Eigen::Dynamic, 1> m_wr, m_wi, m_iwr, m_iwi;
  std::vector<double> m_scale;
  std::vector<Index> m_perm;
  int m_threads = 0;
  mutable Matrix m_matrix;
  mutable std::vector<Workspace> m_workspaces;
};

/// X Cᵀ: the orthonormal DCT-II of every row of x (scipy.fft.dct(x, axis=1, norm='ortho')).
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> dctOfRows(
    const Eigen::MatrixBase<Derived>& x, DCTAlgorithm algorithm = DCTAlgorithm::Auto) {
  checkNonEmpty(x, "dctOfRows", "x");
  return DCT<typename Derived::Scalar>(x.cols(), algorithm).ofRows(x);
}

/// C X: the orthonormal DCT-II of every column of x (scipy.fft.dct(x, axis=0, norm='ortho')).
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> dctOfColumns(
    const Eigen::MatrixBase<Derived>& x, DCTAlgorithm algorithm = DCTAlgorithm::Auto) {
  checkNonEmpty(x, "dctOfColumns", "x");
  return DCT<typename Derived::Scalar>(x.rows(), algorithm).ofColumns(x);
}

/// X C: the inverse (orthonormal DCT-III) of every row (scipy.fft.idct(x, axis=1, norm='ortho')).
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> idctOfRows(
    const Eigen::MatrixBase<Derived>& x, DCTAlgorithm algorithm = DCTAlgorithm::Auto) {
  checkNonEmpty(x, "idctOfRows", "x");
  return DCT<typename Derived::Scalar>(x.cols(), algorithm).inverseOfRows(x);
}

/// Cᵀ X: the inverse (orthonormal DCT-III) of every column.
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> idctOfColumns(
    const Eigen::MatrixBase<Derived>& x, DCTAlgorithm algorithm = DCTAlgorithm::Auto) {
  checkNonEmpty(x, "idctOfColumns", "x");
  return DCT<typename Derived::Scalar>(x.rows(), algorithm).inverseOfColumns(x);
}

// Names before 0.2.0 (see the naming rule in docs/index.md); they will be removed in 1.0.
template <typename Scalar_>
using Dct [[deprecated("renamed wproj::DCT")]] = DCT<Scalar_>;
using DctAlgorithm [[deprecated("renamed wproj::DCTAlgorithm")]] = DCTAlgorithm;

}  // namespace wproj

// Scoring and top-r selection of DCT frequencies (kept available to every includer of dct.hpp).
#include "dct_selection.hpp"
