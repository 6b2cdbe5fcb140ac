// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Streaming first and second moments: Welford's mean / covariance / cross-covariance with
/// batched updates (the pairwise combination of Chan, Golub & LeVeque 1979), and a
/// Ledoit–Wolf-style linear shrinkage of a covariance towards a scaled identity (as used by
/// LEACE, Belrose et al. 2023).

#include "../core/blas_threads.hpp"
#include "../core/config.hpp"
#include "gram.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace wproj {

/// Streaming mean and covariance of a variable x ∈ R^d and, optionally, its cross-covariance
/// with a second variable z ∈ R^c (Welford's algorithm, batched).
///
/// Samples are the ROWS of each batch (n×d for x, n×c for z). A batch of m rows with mean x̄_b
/// and centred scatter S_b is merged into the running state (count n, mean μ, scatter M) by
///   δ = x̄_b − μ,  μ ← μ + δ·m/(n+m),  M ← M + S_b + δδᵀ·n·m/(n+m),
/// and the cross scatter likewise with δ_x δ_zᵀ. The result equals the two-pass statistics up
/// to rounding for any split into batches. Accessors apply Bessel's correction (divide by n − 1).
template <typename Scalar_>
class StreamingCovariance {
  static_assert(!Eigen::NumTraits<Scalar_>::IsComplex && !Eigen::NumTraits<Scalar_>::IsInteger,
                "StreamingCovariance: real floating-point scalars only");

 public:
  /// Floating-point type of the samples and statistics.
  using Scalar = Scalar_;
  /// Dense matrix type of batches and (cross-)covariances.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type of the means.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// An accumulator with no dimension yet (fixed by the first update).
  StreamingCovariance() = default;

  /// An accumulator for x ∈ R^xDim and (when zDim > 0) z ∈ R^zDim.
  explicit StreamingCovariance(Index xDim, Index zDim = 0) { reset(xDim, zDim); }

  /// An accumulator holding a given state: `count` samples with means μ_x (d), μ_z (c) and centred
  /// scatters Σ(x − μ_x)(x − μ_x)ᵀ (d×d) and Σ(x − μ_x)(z − μ_z)ᵀ (d×c) — e.g. statistics merged
  /// from several processes. Throws `InvalidArgument` for inconsistent shapes, count < 0 or
  /// non-finite values.
  static StreamingCovariance fromState(Index count, Vector meanX, Vector meanZ, Matrix scatterX, Matrix scatterXZ) {
    const char* where = "StreamingCovariance::fromState";
    requireArg(count >= 0, where, "count", count, ">= 0");
    requireArg(meanX.size() >= 1, where, "meanX", "empty", "a vector of length xDim >= 1");
    const Index d = meanX.size(), c = meanZ.size();
    checkShape(scatterX, d, d, where, "scatterX");
    checkShape(scatterXZ, d, c, where, "scatterXZ");
    checkFinite(meanX, where, "meanX");
    checkFinite(meanZ, where, "meanZ");
    checkFinite(scatterX, where, "scatterX");
    checkFinite(scatterXZ, where, "scatterXZ");
    StreamingCovariance s;
    s.m_count = count;
    s.m_meanX = std::move(meanX);
    s.m_meanZ = std::move(meanZ);
    s.m_scatterX = std::move(scatterX);
    s.m_scatterXZ = std::move(scatterXZ);
    return s;
  }

  /// Forgets every sample and sets the dimensions.
  StreamingCovariance& reset(Index xDim, Index zDim = 0) {
    requireArg(xDim >= 1, "StreamingCovariance::reset", "xDim", xDim, ">= 1");
    requireArg(zDim >= 0, "StreamingCovariance::reset", "zDim", zDim, ">= 0");
    m_count = 0;
    m_meanX = Vector::Zero(xDim);
    m_meanZ = Vector::Zero(zDim);
    m_scatterX = Matrix::Zero(xDim, xDim);
    m_scatterXZ = Matrix::Zero(xDim, zDim);
    return *this;
  }

  /// Adds a batch of samples of x only (rows = samples). Only valid when zDim() == 0.
  template <typename DX>
  StreamingCovariance& update(const Eigen::MatrixBase<DX>& x) {
    const char* where = "StreamingCovariance::update";
    if (m_meanX.size() == 0 && m_count == 0) reset(x.cols(), 0);
    requireArg(zDim() == 0, where, "z", "missing", "a z batch (this accumulator tracks a cross-covariance with " +
                                                      std::to_string(zDim()) + " columns)");
    Matrix none(x.rows(), 0);
    return updateImpl(x, none, where);
  }

  /// Adds a batch of paired samples (x_i, z_i): x is n×d, z is n×c.
  template <typename DX, typename DZ>
  StreamingCovariance& update(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DZ>& z) {
    const char* where = "StreamingCovariance::update";
    if (m_meanX.size() == 0 && m_count == 0) reset(x.cols(), z.cols());
    checkShape(z, x.rows(), zDim(), where, "z");
    return updateImpl(x, z, where);
  }

  /// Merges another accumulator with the same dimensions (as if its samples had been added here).
  StreamingCovariance& merge(const StreamingCovariance& other) {
    const char* where = "StreamingCovariance::merge";
    requireArg(other.xDim() == xDim() && other.zDim() == zDim(), where, "other",
               detail::shapeString(other.xDim(), other.zDim()), "dimensions " + detail::shapeString(xDim(), zDim()));
    combine(other.m_count, other.m_meanX, other.m_meanZ, other.m_scatterX, other.m_scatterXZ);
    return *this;
  }

  /// Number of samples seen.
  Index count() const { return m_count; }
  /// Dimension d of x (0 until it is fixed).
  Index xDim() const { return m_meanX.size(); }
  /// Dimension c of z (0 when no cross-covariance is tracked).
  Index zDim() const { return m_meanZ.size(); }

  /// Running mean of x (zero before the first sample).
  const Vector& meanX() const { return m_meanX; }
  /// Running mean of z.
  const Vector& meanZ() const { return m_meanZ; }
  /// Centred scatter Σ_i (x_i − μ)(x_i − μ)ᵀ (d×d).
  const Matrix& scatterX() const { return m_scatterX; }
  /// Centred cross scatter Σ_i (x_i − μ_x)(z_i − μ_z)ᵀ (d×c).
  const Matrix& scatterXZ() const { return m_scatterXZ; }

  /// Sample covariance of x with Bessel's correction, scatter/(n − 1) (requires n ≥ 2).
  Matrix covariance() const {
    requireArg(m_count >= 2, "StreamingCovariance::covariance", "count()", m_count, ">= 2 samples");
    Matrix s = (m_scatterX + m_scatterX.transpose()) * Scalar(0.5);
    return s / Scalar(m_count - 1);
  }

  /// Maximum-likelihood covariance of x, scatter/n (requires n ≥ 1).
  Matrix covarianceMle() const {
    requireArg(m_count >= 1, "StreamingCovariance::covarianceMle", "count()", m_count, ">= 1 sample");
    Matrix s = (m_scatterX + m_scatterX.transpose()) * Scalar(0.5);
    return s / Scalar(m_count);
  }

  /// Cross-covariance of x and z with Bessel's correction, cross scatter/(n − 1) (d×c).
  Matrix crossCovariance() const {
    requireArg(m_count >= 2, "StreamingCovariance::crossCovariance", "count()", m_count, ">= 2 samples");
    return m_scatterXZ / Scalar(m_count - 1);
  }

 private:
  template <typename DX, typename DZ>
  StreamingCovariance& updateImpl(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DZ>& z, const char* where) {
    checkShape(x, -1, xDim(), where, "x");
    checkFinite(z, where, "z");
    const Index m = x.rows();
    if (m == 0) return *this;
    // The batch is cut into row blocks that depend on its shape only (detail::gramRowParts: one
    // block without OpenBLAS's thread control); with OpenBLAS the blocks run on wproj's threads
    // with single-threaded BLAS, which parallelises the Gram better than OpenBLAS's threaded
    // ?syrk, keeps OpenBLAS's idle workers from competing for the cores, and makes the statistics
    // the same to the bit for any thread count.
    const Index d = xDim();
    const int parts = detail::gramRowParts(m, d);
    const int threads = detail::BlasThreadSplit::available();
    auto rowStart = [&](int p) { return m * p / parts; };

    // 1. Column sums of each block. A NaN or ±Inf entry makes its column's sum non-finite, so
    //    the full finiteness check (which names the entry) only runs when a sum is not finite.
    m_partSums.resize(d, parts);
    if (m_ones.size() < m) m_ones.setConstant(m, Scalar(1));  // before the threads share it
    detail::BlasThreadSplit::run(parts, threads, [&](int p) {
      const Index r0 = rowStart(p), r1 = rowStart(p + 1);
      columnSums(x.middleRows(r0, r1 - r0), m_partSums.col(p));
    });
    Vector mx = m_partSums.col(0);
    for (int p = 1; p < parts; ++p) mx += m_partSums.col(p);
    if (!allFinite(mx)) checkFinite(x, where, "x");
    mx /= Scalar(m);
    const Vector mz = z.colwise().mean().transpose().template cast<Scalar>();

    // 2. Each block centred on the batch mean (the two-pass scatter within the batch: no
    //    cancellation for data with large means) into a work buffer of the input's storage order,
    //    kept between calls (no batch-sized allocation after the first batch); then
    //    its Gram (a rank update of the lower triangle: BLAS ?syrk, half the multiply-adds of a
    //    GEMM) and its cross product with the centred z. The blocks' sums are added in order.
    if constexpr (bool(DX::IsRowMajor)) {
      centredScatter(x, mx, m_workXRowMajor, z, mz, parts, threads);
    } else {
      centredScatter(x, mx, m_workX, z, mz, parts, threads);
    }
    combine(m, mx, mz, m_batchX, m_batchXZ);
    return *this;
  }

  // Column sums of a block of rows: one GEMV against ones for a row-major block of this scalar
  // type (Eigen's column-wise reduction walks a row-major matrix column by column).
  template <typename Rows, typename Out>
  void columnSums(const Rows& rows, Out out) {
    using Plain = typename Rows::PlainObject;
    if constexpr (std::is_same<typename Rows::Scalar, Scalar>::value && bool(Plain::IsRowMajor)) {
      out.noalias() = rows.transpose() * m_ones.head(rows.rows());
    } else {
      out = rows.colwise().sum().transpose().template cast<Scalar>();
    }
  }

  // m_batchX = XcᵀXc and m_batchXZ = XcᵀZc with Xc = x − 1mxᵀ (in `work`) and Zc = z − 1mzᵀ,
  // block by block; the strictly upper triangle of m_batchX is mirrored at the end.
  template <typename DX, typename Work, typename DZ>
  void centredScatter(const Eigen::MatrixBase<DX>& x, const Vector& mx, Work& work, const Eigen::MatrixBase<DZ>& z,
                      const Vector& mz, int parts, int threads) {
    const Index m = x.rows(), d = xDim(), c = zDim();
    if (work.rows() < m || work.cols() != d) work.resize(m, d);
    if (c > 0 && (m_workZ.rows() < m || m_workZ.cols() != c)) m_workZ.resize(m, c);
    if (m_gramParts.size() < std::size_t(parts)) m_gramParts.resize(std::size_t(parts));
    if (m_crossParts.size() < std::size_t(parts)) m_crossParts.resize(std::size_t(parts));
    // Block 0 accumulates straight into the batch's sums, the others into their own buffers.
    auto gramOf = [&](int p) -> Matrix& { return p == 0 ? m_batchX : m_gramParts[std::size_t(p)]; };
    auto crossOf = [&](int p) -> Matrix& { return p == 0 ? m_batchXZ : m_crossParts[std::size_t(p)]; };
    // Row-major work with a narrow z (a concept of a few classes): the cross product is
    // accumulated row by row while each centred row is still in cache, instead of a GEMM that
    // reads the whole centred block again.
    constexpr bool rowMajorWork = bool(Work::IsRowMajor);
    const bool fuseCross = rowMajorWork && c > 0 && c <= kFusedCrossColumns;
    detail::BlasThreadSplit::run(parts, threads, [&](int p) {
      const Index r0 = m * p / parts, rows = m * (p + 1) / parts - r0;
      auto xc = work.middleRows(r0, rows);
      Matrix& cross = crossOf(p);
      cross.resize(d, c);
      if (c > 0) {
        auto zc = m_workZ.middleRows(r0, rows);
        zc.noalias() = z.middleRows(r0, rows).template cast<Scalar>().rowwise() - mz.transpose();
        if (fuseCross) {
          cross.setZero();
          for (Index i = 0; i < rows; ++i) {
            auto row = xc.row(i);
            row.noalias() = x.row(r0 + i).template cast<Scalar>() - mx.transpose();
            for (Index j = 0; j < c; ++j) cross.col(j) += zc(i, j) * row.transpose();
          }
        } else {
          xc.noalias() = x.middleRows(r0, rows).template cast<Scalar>().rowwise() - mx.transpose();
          cross.noalias() = xc.transpose() * zc;
        }
      } else {
        xc.noalias() = x.middleRows(r0, rows).template cast<Scalar>().rowwise() - mx.transpose();
      }
      Matrix& g = gramOf(p);
      g.setZero(d, d);
      g.template selfadjointView<Eigen::Lower>().rankUpdate(xc.transpose());
    });
    for (int p = 1; p < parts; ++p) {
      m_batchX.template triangularView<Eigen::Lower>() += m_gramParts[std::size_t(p)];
      m_batchXZ += m_crossParts[std::size_t(p)];
    }
    m_batchX.template triangularView<Eigen::StrictlyUpper>() = m_batchX.transpose();
  }

  void combine(Index m, const Vector& mx, const Vector& mz, const Matrix& sx, const Matrix& sxz) {
    if (m == 0) return;
    const Scalar n = Scalar(m_count), mm = Scalar(m), total = n + mm;
    const Vector dx = mx - m_meanX, dz = mz - m_meanZ;
    const Scalar w = n * mm / total;
    m_scatterX += sx;
    m_scatterX.noalias() += (w * dx) * dx.transpose();
    m_scatterXZ += sxz;
    m_scatterXZ.noalias() += (w * dx) * dz.transpose();
    m_meanX += dx * (mm / total);
    m_meanZ += dz * (mm / total);
    m_count += m;
  }

  // Widest z whose cross product is fused into the centring pass (row-major batches).
  static constexpr Index kFusedCrossColumns = 8;

  Index m_count = 0;
  Vector m_meanX, m_meanZ;
  Matrix m_scatterX, m_scatterXZ;
  // Work buffers of update (not part of the state): the centred batch (in the input's storage
  // order) and z, and the batch's scatters.
  Matrix m_workX, m_workZ, m_batchX, m_batchXZ;
  // Per-row-block column sums, Grams and cross products of a batch (blocks 1, 2, …).
  Matrix m_partSums;
  std::vector<Matrix> m_gramParts, m_crossParts;
  Vector m_ones;
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m_workXRowMajor;
};

/// Ledoit–Wolf-style linear shrinkage intensity α ∈ [0, 1] for a p×p covariance estimate S from
/// n samples: α = 1 − (tr(S)²/n) / (‖S‖²_F − tr(S)²/p), clamped to [0, 1]; α = 0 (full
/// shrinkage) when S is already a multiple of the identity, α = 1 for a zero matrix.
template <typename Derived>
typename Derived::Scalar shrinkageIntensity(const Eigen::MatrixBase<Derived>& s, Index n) {
  using Scalar = typename Derived::Scalar;
  const char* where = "shrinkageIntensity";
  requireArg(s.rows() == s.cols(), where, "s", detail::shapeString(s.rows(), s.cols()), "a square matrix");
  checkNonEmpty(s, where, "s");
  requireArg(n >= 1, where, "n", n, ">= 1 sample");
  checkFinite(s, where, "s");
  const Scalar p = Scalar(s.rows());
  const Scalar tr = s.trace();
  const Scalar fro2 = s.squaredNorm();
  const Scalar tiny = std::numeric_limits<Scalar>::min();
  if (!(fro2 > tiny)) return Scalar(1);
  const Scalar numer = tr * tr / Scalar(n);
  const Scalar denom = fro2 - tr * tr / p;
  // eps guard: the dispersion of the eigenvalues is only known to ~eps·‖S‖²_F
  if (!(denom > std::numeric_limits<Scalar>::epsilon() * fro2)) return Scalar(0);
  return std::clamp(Scalar(1) - numer / denom, Scalar(0), Scalar(1));
}

/// Shrunk covariance S* = αS + (1 − α)(tr(S)/p)·I with α = shrinkageIntensity(s, n) — the
/// Ledoit–Wolf-style estimator LEACE applies to a p×p sample covariance from n samples.
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> shrinkCovariance(
    const Eigen::MatrixBase<Derived>& s, Index n) {
  using Scalar = typename Derived::Scalar;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const Scalar alpha = shrinkageIntensity(s, n);
  const Scalar mu = s.trace() / Scalar(s.rows());
  Matrix out = alpha * s;
  out.diagonal().array() += (Scalar(1) - alpha) * mu;
  return out;
}

}  // namespace wproj
