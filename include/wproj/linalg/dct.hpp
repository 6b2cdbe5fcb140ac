// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Orthonormal DCT-II bases (the SVD-free GaLore variant of IST-DASLab's `dct_adamw`): the
/// explicit matrix, fast transforms of all rows or all columns of a matrix through one FFT per
/// row (Makhoul 1980, Eigen's FFT module with its kissfft backend), the inverse (DCT-III),
/// column/row scoring and top-r selection.
///
/// Convention: C[k, j] = α_k cos(π(2j+1)k / (2N)), α_0 = √(1/N), α_k = √(2/N) for k ≥ 1, so
/// y = C x equals `scipy.fft.dct(x, type=2, norm='ortho')` and C⁻¹ = Cᵀ (the orthonormal DCT-III).
/// `dctOfRows(X)` = X Cᵀ transforms every row; `dctOfColumns(X)` = C X every column.

#include "../core/config.hpp"
#include "../core/side.hpp"

#include <unsupported/Eigen/FFT>

#include <algorithm>
#include <cmath>
#include <complex>
#include <numeric>
#include <vector>

namespace wproj {

/// How a DCT of many rows/columns is evaluated.
enum class DctAlgorithm {
  Auto,   ///< the cheaper of Dense and Fast by `Dct::fastIsCheaper` (cost model)
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

/// An orthonormal DCT-II of size n with a reusable FFT plan, twiddle factors and (on demand)
/// the explicit matrix. Not thread-safe (the FFT plan cache is mutable); use one per thread.
template <typename Scalar_>
class Dct {
 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Complex = std::complex<Scalar>;
  static_assert(std::is_floating_point<Scalar>::value, "Dct: float or double");

  /// A DCT of size n ≥ 1 evaluated with `algorithm` (default Auto).
  explicit Dct(Index n, DctAlgorithm algorithm = DctAlgorithm::Auto) : m_n(n), m_algorithm(algorithm) {
    requireArg(n >= 1, "Dct", "n", n, ">= 1");
    const double pi = 3.14159265358979323846264338327950288;
    m_twiddle.resize(std::size_t(n));
    for (Index k = 0; k < n; ++k) {
      const double ang = -pi * double(k) / double(2 * n);
      m_twiddle[std::size_t(k)] = std::complex<double>(std::cos(ang), std::sin(ang));
    }
    m_scale0 = std::sqrt(1.0 / (4.0 * double(n)));
    m_scale = std::sqrt(1.0 / (2.0 * double(n)));
  }

  Index size() const { return m_n; }
  DctAlgorithm algorithm() const { return m_algorithm; }
  Dct& setAlgorithm(DctAlgorithm a) {
    m_algorithm = a;
    return *this;
  }

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
    return m_algorithm == DctAlgorithm::Fast || (m_algorithm == DctAlgorithm::Auto && fastIsCheaper(m_n));
  }

  /// X Cᵀ: the DCT of every row of x (x has n columns).
  template <typename Derived>
  Matrix ofRows(const Eigen::MatrixBase<Derived>& x) const {
    checkShape(x, -1, m_n, "Dct::ofRows", "x");
    checkFinite(x, "Dct::ofRows", "x");
    if (!usesFast()) return x * matrix().transpose();
    Matrix out(x.rows(), m_n);
    for (Index i = 0; i < x.rows(); ++i) forward(x.row(i), out.row(i));
    return out;
  }

  /// C X: the DCT of every column of x (x has n rows).
  template <typename Derived>
  Matrix ofColumns(const Eigen::MatrixBase<Derived>& x) const {
    checkShape(x, m_n, -1, "Dct::ofColumns", "x");
    checkFinite(x, "Dct::ofColumns", "x");
    if (!usesFast()) return matrix() * x;
    Matrix out(m_n, x.cols());
    for (Index j = 0; j < x.cols(); ++j) forward(x.col(j), out.col(j));
    return out;
  }

  /// X C: the inverse DCT (orthonormal DCT-III) of every row of x.
  template <typename Derived>
  Matrix inverseOfRows(const Eigen::MatrixBase<Derived>& x) const {
    checkShape(x, -1, m_n, "Dct::inverseOfRows", "x");
    checkFinite(x, "Dct::inverseOfRows", "x");
    if (!usesFast()) return x * matrix();
    Matrix out(x.rows(), m_n);
    for (Index i = 0; i < x.rows(); ++i) inverse(x.row(i), out.row(i));
    return out;
  }

  /// Cᵀ X: the inverse DCT of every column of x.
  template <typename Derived>
  Matrix inverseOfColumns(const Eigen::MatrixBase<Derived>& x) const {
    checkShape(x, m_n, -1, "Dct::inverseOfColumns", "x");
    checkFinite(x, "Dct::inverseOfColumns", "x");
    if (!usesFast()) return matrix().transpose() * x;
    Matrix out(m_n, x.cols());
    for (Index j = 0; j < x.cols(); ++j) inverse(x.col(j), out.col(j));
    return out;
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
  /// y = C x for one vector (Makhoul: reorder, real FFT, twiddle).
  template <typename In, typename Out>
  void forward(const In& x, Out&& y) const {
    const Index n = m_n;
    if (n == 1) {  // C = [1]
      y.coeffRef(0) = x.coeff(0);
      return;
    }
    m_real.resize(std::size_t(n));
    for (Index j = 0; 2 * j < n; ++j) m_real[std::size_t(j)] = x.coeff(2 * j);
    for (Index j = 0; 2 * j + 1 < n; ++j) m_real[std::size_t(n - 1 - j)] = x.coeff(2 * j + 1);
    m_fft.fwd(m_spec, m_real);  // full spectrum V_0..V_{n−1}
    for (Index k = 0; k < n; ++k) {
      const std::complex<double> v(double(m_spec[std::size_t(k)].real()), double(m_spec[std::size_t(k)].imag()));
      const double yk = 2.0 * (m_twiddle[std::size_t(k)] * v).real();
      y.coeffRef(k) = Scalar(yk * (k == 0 ? m_scale0 : m_scale));
    }
  }

  /// x = Cᵀ y for one vector: V_k = e^{iπk/(2n)}(Y_k − i·Y_{n−k})/2, inverse FFT, un-reorder.
  template <typename In, typename Out>
  void inverse(const In& y, Out&& x) const {
    const Index n = m_n;
    if (n == 1) {
      x.coeffRef(0) = y.coeff(0);
      return;
    }
    m_spec.resize(std::size_t(n));
    for (Index k = 0; k < n; ++k) {
      const double yk = double(y.coeff(k)) / (k == 0 ? m_scale0 : m_scale);
      const double ynk = k == 0 ? 0.0 : double(y.coeff(n - k)) / m_scale;
      const std::complex<double> v = std::conj(m_twiddle[std::size_t(k)]) * std::complex<double>(yk, -ynk) * 0.5;
      m_spec[std::size_t(k)] = Complex(Scalar(v.real()), Scalar(v.imag()));
    }
    m_fft.inv(m_real, m_spec);  // scaled by 1/n
    for (Index j = 0; 2 * j < n; ++j) x.coeffRef(2 * j) = m_real[std::size_t(j)];
    for (Index j = 0; 2 * j + 1 < n; ++j) x.coeffRef(2 * j + 1) = m_real[std::size_t(n - 1 - j)];
  }

  Index m_n;
  DctAlgorithm m_algorithm;
  std::vector<std::complex<double>> m_twiddle;
  double m_scale0 = 1, m_scale = 1;
  mutable Matrix m_matrix;
  mutable Eigen::FFT<Scalar> m_fft;
  mutable std::vector<Scalar> m_real;
  mutable std::vector<Complex> m_spec;
};

/// X Cᵀ: the orthonormal DCT-II of every row of x (scipy.fft.dct(x, axis=1, norm='ortho')).
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> dctOfRows(
    const Eigen::MatrixBase<Derived>& x, DctAlgorithm algorithm = DctAlgorithm::Auto) {
  checkNonEmpty(x, "dctOfRows", "x");
  return Dct<typename Derived::Scalar>(x.cols(), algorithm).ofRows(x);
}

/// C X: the orthonormal DCT-II of every column of x (scipy.fft.dct(x, axis=0, norm='ortho')).
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> dctOfColumns(
    const Eigen::MatrixBase<Derived>& x, DctAlgorithm algorithm = DctAlgorithm::Auto) {
  checkNonEmpty(x, "dctOfColumns", "x");
  return Dct<typename Derived::Scalar>(x.rows(), algorithm).ofColumns(x);
}

/// X C: the inverse (orthonormal DCT-III) of every row (scipy.fft.idct(x, axis=1, norm='ortho')).
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> idctOfRows(
    const Eigen::MatrixBase<Derived>& x, DctAlgorithm algorithm = DctAlgorithm::Auto) {
  checkNonEmpty(x, "idctOfRows", "x");
  return Dct<typename Derived::Scalar>(x.cols(), algorithm).inverseOfRows(x);
}

/// Cᵀ X: the inverse (orthonormal DCT-III) of every column.
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> idctOfColumns(
    const Eigen::MatrixBase<Derived>& x, DctAlgorithm algorithm = DctAlgorithm::Auto) {
  checkNonEmpty(x, "idctOfColumns", "x");
  return Dct<typename Derived::Scalar>(x.rows(), algorithm).inverseOfColumns(x);
}

/// Score of every column of x: Σ_i |x_ij| (L1) or (Σ_i x_ij²)^{1/2} (L2), accumulated in double.
template <typename Derived>
Eigen::VectorXd columnScores(const Eigen::MatrixBase<Derived>& x, ScoreNorm norm = ScoreNorm::L1) {
  Eigen::VectorXd s(x.cols());
  for (Index j = 0; j < x.cols(); ++j)
    s(j) = norm == ScoreNorm::L1 ? x.col(j).template cast<double>().template lpNorm<1>()
                                 : x.col(j).template cast<double>().norm();
  return s;
}

/// Score of every row of x (see `columnScores`).
template <typename Derived>
Eigen::VectorXd rowScores(const Eigen::MatrixBase<Derived>& x, ScoreNorm norm = ScoreNorm::L1) {
  return columnScores(x.transpose(), norm);
}

/// Indices of the r largest scores, by decreasing score (ties: smaller index first).
/// Requires 1 ≤ r ≤ scores.size() and finite scores.
template <typename Derived>
std::vector<Index> topIndices(const Eigen::MatrixBase<Derived>& scores, Index r) {
  requireArg(r >= 1 && r <= scores.size(), "topIndices", "r", r,
             "a value in [1, " + std::to_string(scores.size()) + "]");
  checkFinite(scores, "topIndices", "scores");
  std::vector<Index> idx(static_cast<std::size_t>(scores.size()));
  std::iota(idx.begin(), idx.end(), Index(0));
  auto better = [&](Index a, Index b) {
    const double sa = double(scores.coeff(a)), sb = double(scores.coeff(b));
    return sa > sb || (sa == sb && a < b);
  };
  std::partial_sort(idx.begin(), idx.begin() + r, idx.end(), better);
  idx.resize(static_cast<std::size_t>(r));
  return idx;
}

/// Result of `dctSelect`: the chosen DCT frequencies and the projected matrix.
template <typename Scalar>
struct DctSelection {
  std::vector<Index> indices;  ///< r frequencies, by decreasing score
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> projected;  ///< Right: S[:, idx] (m×r); Left: S[idx, :] (r×n)
};

/// SVD-free low-rank projection of g (m×n) on the r best DCT frequencies (GaLore DCT variant):
/// Side::Right: S = g Cᵀ (= g·Q with Q = Cᵀ, n×n), score columns, keep the top r → S[:, idx];
/// Side::Left: S = C g, score rows, keep the top r → S[idx, :]. The basis of the selection is
/// Q[:, idx] = rows idx of C, transposed. (dct_adamw uses Right when m ≥ n, scored by L1.)
template <typename Derived>
DctSelection<typename Derived::Scalar> dctSelect(const Eigen::MatrixBase<Derived>& g, Index r, Side side,
                                                 ScoreNorm norm = ScoreNorm::L1,
                                                 DctAlgorithm algorithm = DctAlgorithm::Auto) {
  using Scalar = typename Derived::Scalar;
  checkNonEmpty(g, "dctSelect", "g");
  const Index dim = side == Side::Right ? g.cols() : g.rows();
  requireArg(r >= 1 && r <= dim, "dctSelect", "r", r, "a value in [1, " + std::to_string(dim) + "]");
  DctSelection<Scalar> out;
  Dct<Scalar> dct(dim, algorithm);
  if (side == Side::Right) {
    const auto s = dct.ofRows(g);
    out.indices = topIndices(columnScores(s, norm), r);
    out.projected.resize(g.rows(), r);
    for (Index j = 0; j < r; ++j) out.projected.col(j) = s.col(out.indices[std::size_t(j)]);
  } else {
    const auto s = dct.ofColumns(g);
    out.indices = topIndices(rowScores(s, norm), r);
    out.projected.resize(r, g.cols());
    for (Index i = 0; i < r; ++i) out.projected.row(i) = s.row(out.indices[std::size_t(i)]);
  }
  return out;
}

}  // namespace wproj
