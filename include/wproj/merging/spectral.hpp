// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Spectral mergers of 2-D weights: isotropic merging Iso-C and Iso-CTS (Marczak et al. 2025,
/// "No Task Left Behind: Isotropic Model Merging with Common and Task-Specific Subspaces") and
/// TSV-M (Gargiulo et al., CVPR 2025, "Task Singular Vectors: Reducing Task Interference in
/// Model Merging"). Same per-tensor API as baselines.hpp; every SVD and polar factor comes from
/// linalg/ (`TruncatedSVD`, `polarFactor`). On tensors that are not 2-D weights the default
/// rules average the task vectors instead (as the reference code does).

#include "../core/config.hpp"
#include "../linalg/polar.hpp"
#include "../linalg/truncated_svd.hpp"
#include "baselines.hpp"
#include "report.hpp"
#include "task_vectors.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace wproj {

namespace detail {
template <typename Matrix, typename Derived>
TruncatedSVD<Matrix> fullThinSvd(const Eigen::MatrixBase<Derived>& a, const char* where) {
  TruncatedSVD<Matrix> svd;
  svd.setRankRule(RankRule::all()).compute(a);
  if (svd.info() != Eigen::Success) throw NumericalError(std::string(where) + ": SVD did not converge");
  return svd;
}
}  // namespace detail

/// Iso-C: Δ = Σ_t τ_t = U Σ Vᵀ (thin SVD, all min(m, n) triplets), Δ_iso = α·mean(σ)·U Vᵀ —
/// the spectrum is flattened to its mean. α = 1 by default (the paper tunes it in 0.1…3.0).
/// A zero sum gives a zero delta (reported).
template <typename Scalar_>
class IsoCMerging : public detail::TensorMergerBase<IsoCMerging<Scalar_>, Scalar_> {
 public:
  /// Floating-point type of the task vectors.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged deltas.
  using Matrix = MergeMatrix<Scalar>;

  /// Scale α of the merged delta (finite).
  IsoCMerging& setScale(double alpha) {
    requireArg(std::isfinite(alpha), "IsoCMerging::setScale", "alpha", alpha, "a finite number");
    m_scale = alpha;
    return *this;
  }
  /// The scale α.
  double scale() const { return m_scale; }
  /// Number of passes of the streaming form.
  static constexpr Index kPasses = 1;
  /// Defined on 2-D weights: the default rules average the task vectors of other tensors.
  static constexpr bool kElementwise = false;
  /// The name `mergeDelta` errors carry.
  static constexpr const char* kWhere = "IsoCMerging::mergeDelta";
  /// Method name and α, as used in reports.
  std::string describe() const { return "iso-c (alpha=" + detail::fmt(m_scale) + ")"; }

  /// Streaming form: a running sum of the task vectors (one pass), its SVD at `finish()`.
  class Accumulator {
   public:
    /// An accumulator for `count` task vectors of a rows×cols tensor (what `begin()` returns).
    Accumulator(const IsoCMerging& m, Index rows, Index cols, Index count, TensorReport* report)
        : m_scale(m.m_scale), m_report(report), m_sum("IsoCMerging", m.describe(), rows, cols, count, report, 1.0) {}
    /// Number of passes (1).
    Index passes() const { return 1; }
    /// Number of task vectors per pass.
    Index count() const { return m_sum.count(); }
    /// Takes task vector `task` (tasks in order, pass 0) into the running sum.
    void add(Index pass, Index task, const Matrix& tau) { m_sum.add(pass, task, tau); }
    /// Returns Δ = α · mean(σ) · U Vᵀ from the SVD of the sum (zero, with a warning, for a zero sum) and fills the
    /// report.
    Matrix finish() {
      Matrix sum = m_sum.finish();
      if (sum.isZero(0)) {
        if (m_report) m_report->warnings.push_back("sum of task vectors is zero: merged delta is zero");
        sum.setZero();
        return sum;
      }
      const auto svd = detail::fullThinSvd<Matrix>(sum, "IsoCMerging::mergeDelta");
      sum.resize(0, 0);
      const double mean = double(svd.singularValues().mean());
      if (m_report) m_report->rank = svd.rank();
      return (svd.matrixU() * svd.matrixV().transpose()) * Scalar(m_scale * mean);
    }

   private:
    double m_scale;
    TensorReport* m_report;
    detail::SumAccumulator<Scalar> m_sum;
  };
  /// The incoming task vector, the running sum, its SVD and the result.
  static std::size_t workingSetBytes(Index rows, Index cols, Index) {
    return 2 * detail::tensorBytes(rows, cols, sizeof(Scalar)) + detail::svdBytes<Scalar>(rows, cols);
  }

 private:
  double m_scale = 1.0;
};

/// Iso-CTS: with s = min(m, n) and T tasks, k₀ = ⌊f·s⌋ (f = 0.8 by default); each task gets
/// d = round((s − k₀)/T) directions (rounded half to even, as the reference code's Python
/// `round`; capped at ⌊s/T⌋) from the top of svd(τ_i − U_cU_cᵀτ_i), and the common subspace
/// gets the remainder k = s − d·T (top of svd(Σ τ_t)), so all s directions are used. The
/// stacked U* = [U_1 … U_T | U_c] and V* are orthogonalised by their polar factors, and
/// Δ = α·mean(kept σ)·polar(U*)·polar(V*)ᵀ, the mean taken over the s kept σ. When d = 0
/// ((s − k₀)/T ≤ 1/2) every direction is common (reported).
template <typename Scalar_>
class IsoCtsMerging : public detail::TensorMergerBase<IsoCtsMerging<Scalar_>, Scalar_> {
 public:
  /// Floating-point type of the task vectors.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged deltas.
  using Matrix = MergeMatrix<Scalar>;

  /// Scale α of the merged delta (finite).
  IsoCtsMerging& setScale(double alpha) {
    requireArg(std::isfinite(alpha), "IsoCtsMerging::setScale", "alpha", alpha, "a finite number");
    m_scale = alpha;
    return *this;
  }
  /// Fraction f of the min(m, n) directions taken from the common subspace, in [0, 1].
  IsoCtsMerging& setCommonFraction(double f) {
    requireArg(f >= 0 && f <= 1, "IsoCtsMerging::setCommonFraction", "f", f, "a value in [0, 1]");
    m_common = f;
    return *this;
  }
  /// The fraction f of the directions taken from the common subspace.
  double commonFraction() const { return m_common; }
  /// Number of passes of the streaming form.
  static constexpr Index kPasses = 2;
  /// Defined on 2-D weights: the default rules average the task vectors of other tensors.
  static constexpr bool kElementwise = false;
  /// The name `mergeDelta` errors carry.
  static constexpr const char* kWhere = "IsoCtsMerging::mergeDelta";
  /// Method name, α and common fraction, as used in reports.
  std::string describe() const {
    return "iso-cts (alpha=" + detail::fmt(m_scale) + ", common=" + detail::fmt(m_common) + ")";
  }

  /// The stacked, orthogonalised factors of the last call (for inspection and tests).
  const Matrix& lastU() const { return m_u; }
  /// polar(V*), the right factor of the last `mergeDelta` call (empty when Δ = 0).
  const Matrix& lastV() const { return m_v; }

  /// Δ = α · mean(kept σ) · polar(U*) polar(V*)ᵀ; keeps the factors for `lastU()` and `lastV()`.
  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    return detail::mergeBatch(*this, taus, report, "IsoCtsMerging::mergeDelta",
                              [this](Accumulator& acc) { acc.takeFactors(m_u, m_v); });
  }

  /// The split of s = min(rows, cols) directions among `tasks` tasks for common fraction f:
  /// {k, d} with d = round((s − ⌊f·s⌋)/T) (half to even, at most ⌊s/T⌋) and k = s − d·T.
  static std::pair<Index, Index> split(Index rows, Index cols, Index tasks, double f) {
    const Index s = std::min(rows, cols);
    if (tasks < 1 || s < 1) return {std::max<Index>(s, 0), 0};
    const Index k0 = std::min<Index>(s, Index(std::floor(f * double(s))));
    const Index x = s - k0, q = x / tasks, r = x % tasks;
    Index d = q;
    if (2 * r > tasks || (2 * r == tasks && q % 2 == 1)) ++d;
    d = std::min(d, s / tasks);
    return {s - d * tasks, d};
  }

  /// Streaming form, two passes. Pass 0: running sum of the task vectors; its SVD gives the k
  /// common directions. Pass 1: each task's d residual directions go into the stacked factors
  /// (m×s and n×s with s = T·d + k = min(m, n)). `finish()` orthogonalises them.
  class Accumulator {
   public:
    /// An accumulator for `count` task vectors of a rows×cols tensor (what `begin()` returns); fixes k and d.
    Accumulator(const IsoCtsMerging& m, Index rows, Index cols, Index count, TensorReport* report)
        : m_scale(m.m_scale), m_describe(m.describe()), m_in("IsoCtsMerging", rows, cols, count, 2, report) {
      const auto kd = split(rows, cols, count, m.m_common);
      m_k = kd.first;
      m_d = kd.second;
    }
    /// Number of passes (2).
    Index passes() const { return 2; }
    /// Number of task vectors per pass.
    Index count() const { return m_in.count(); }
    /// Takes task vector `task` in pass `pass`, tasks in order: pass 0 adds it to the running sum (after the last one,
    /// its SVD gives the common directions); pass 1 puts its top d residual directions into the stacked factors.
    void add(Index pass, Index task, const Matrix& tau) {
      m_in.accept(pass, task, tau);
      if (pass == 0) {
        if (task == 0) m_sum = tau;
        else m_sum += tau;
        if (task + 1 == m_in.count()) common();
        return;
      }
      if (m_zero || m_d == 0) return;
      Matrix residual = tau;
      if (m_k > 0) {
        const auto uc = m_u.rightCols(m_k);
        residual.noalias() -= uc * (uc.transpose() * tau);
      }
      TruncatedSVD<Matrix> svd;
      svd.setRank(m_d).compute(residual);
      if (svd.info() != Eigen::Success) throw NumericalError("IsoCtsMerging::mergeDelta: SVD did not converge");
      const Index got = svd.rank();
      m_u.middleCols(task * m_d, got) = svd.matrixU();
      m_v.middleCols(task * m_d, got) = svd.matrixV();
      m_sigma.segment(task * m_d, got) = svd.singularValues().template cast<double>();
    }
    /// After both passes: orthogonalises the stacked factors, returns Δ and fills the report (rank k; a warning when
    /// the sum is zero, no direction is kept or d = 0).
    Matrix finish() {
      TensorReport* report = m_in.report(m_describe);
      const Index rows = m_in.rows(), cols = m_in.cols(), t = m_in.count();
      if (m_zero) {
        if (report) report->warnings.push_back("sum of task vectors is zero: merged delta is zero");
        m_u.resize(0, 0);
        m_v.resize(0, 0);
        return Matrix::Zero(rows, cols);
      }
      if (m_u.cols() == 0) {
        if (report) report->warnings.push_back("no direction kept (common fraction 0 and more tasks than directions)");
        return Matrix::Zero(rows, cols);
      }
      if (m_d == 0 && report)
        report->warnings.push_back(std::to_string(t) + " tasks for " + std::to_string(std::min(rows, cols)) +
                                   " directions: no task-specific subspace, common subspace only");
      m_u = polarFactor(m_u);
      m_v = polarFactor(m_v);
      if (report) report->rank = m_k;
      return (m_u * m_v.transpose()) * Scalar(m_scale * m_sigma.mean());
    }

    /// Moves the orthogonalised stacked factors out (after `finish()`; empty when Δ = 0).
    void takeFactors(Matrix& u, Matrix& v) {
      u = std::move(m_u);
      v = std::move(m_v);
    }

   private:
    /// End of pass 0: the common directions go to the right end of the stacked factors.
    void common() {
      m_zero = m_sum.isZero(0);
      const Index w = m_in.count() * m_d + m_k;
      TruncatedSVD<Matrix> svd;
      if (!m_zero && w > 0) svd = detail::fullThinSvd<Matrix>(m_sum, "IsoCtsMerging::mergeDelta");
      m_sum.resize(0, 0);
      if (m_zero || w == 0) return;
      // Zero-filled: a task whose residual has rank < d leaves zero columns and zero σ behind.
      m_u.setZero(m_in.rows(), w);
      m_v.setZero(m_in.cols(), w);
      m_sigma.setZero(w);
      m_u.rightCols(m_k) = svd.matrixU().leftCols(m_k);
      m_v.rightCols(m_k) = svd.matrixV().leftCols(m_k);
      m_sigma.tail(m_k) = svd.singularValues().head(m_k).template cast<double>();
    }

    double m_scale;
    std::string m_describe;
    detail::TaskStream<Scalar> m_in;
    Index m_k = 0, m_d = 0;
    bool m_zero = false;
    Matrix m_sum, m_u, m_v;
    Eigen::Matrix<double, Eigen::Dynamic, 1> m_sigma;
  };
  /// The incoming task vector, the running sum and its SVD, then a residual and the stacked
  /// factors (at most m×min(m, n) and n×min(m, n)) with their polar factors, and the result.
  static std::size_t workingSetBytes(Index rows, Index cols, Index) {
    return 3 * detail::tensorBytes(rows, cols, sizeof(Scalar)) + 2 * detail::svdBytes<Scalar>(rows, cols);
  }

 private:
  double m_scale = 1.0;
  double m_common = 0.8;
  mutable Matrix m_u, m_v;
};

/// TSV-M: each task keeps its top k = ⌊min(m, n)/T⌋ singular triplets; the stacked U (m×Tk) and
/// V (n×Tk) are orthogonalised by their polar factors, Δ = α·U_o diag(σ) V_oᵀ (α = 1 by default).
///
/// More tasks than the rank allows (k = 0, i.e. T > min(m, n)): the reference code writes an
/// all-zero delta. Here the tensor falls back to task arithmetic, Δ = α Σ τ_t (the quantity
/// TSV-M approximates), and the report carries a warning.
template <typename Scalar_>
class TsvMerging : public detail::TensorMergerBase<TsvMerging<Scalar_>, Scalar_> {
 public:
  /// Floating-point type of the task vectors.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged deltas.
  using Matrix = MergeMatrix<Scalar>;

  /// Scale α of the merged delta (finite).
  TsvMerging& setScale(double alpha) {
    requireArg(std::isfinite(alpha), "TsvMerging::setScale", "alpha", alpha, "a finite number");
    m_scale = alpha;
    return *this;
  }
  /// The scale α.
  double scale() const { return m_scale; }
  /// Number of passes of the streaming form.
  static constexpr Index kPasses = 1;
  /// Defined on 2-D weights: the default rules average the task vectors of other tensors.
  static constexpr bool kElementwise = false;
  /// The name `mergeDelta` errors carry.
  static constexpr const char* kWhere = "TsvMerging::mergeDelta";
  /// Method name and α, as used in reports.
  std::string describe() const { return "tsv-m (alpha=" + detail::fmt(m_scale) + ")"; }

  /// U_o, the orthogonalised left factor of the last `mergeDelta` call (empty when Δ = 0 or after the task-arithmetic
  /// fallback).
  const Matrix& lastU() const { return m_u; }
  /// V_o, the orthogonalised right factor of the last `mergeDelta` call (empty when Δ = 0 or after the task-arithmetic
  /// fallback).
  const Matrix& lastV() const { return m_v; }

  /// Δ = α · U_o diag(σ) V_oᵀ (α Σ τ_i when k = 0); keeps the factors for `lastU()` and `lastV()`.
  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    return detail::mergeBatch(*this, taus, report, "TsvMerging::mergeDelta",
                              [this](Accumulator& acc) { acc.takeFactors(m_u, m_v); });
  }

  /// Streaming form, one pass: each task's top-k triplets go into the stacked factors (m×Tk and
  /// n×Tk with Tk ≤ min(m, n), whatever T); `finish()` orthogonalises them. With k = 0 it is a
  /// running sum (the task-arithmetic fallback).
  class Accumulator {
   public:
    /// An accumulator for `count` task vectors of a rows×cols tensor (what `begin()` returns); fixes k.
    Accumulator(const TsvMerging& m, Index rows, Index cols, Index count, TensorReport* report)
        : m_scale(m.m_scale), m_describe(m.describe()), m_in("TsvMerging", rows, cols, count, 1, report),
          m_k(std::min(rows, cols) / count) {
      if (m_k == 0) {
        m_fallback.reset(new detail::SumAccumulator<Scalar>("TsvMerging", m_describe + " -> task arithmetic", rows, cols,
                                                            count, nullptr, m_scale));
        return;
      }
      m_u.resize(rows, count * m_k);
      m_v.resize(cols, count * m_k);
      m_sigma.resize(count * m_k);
    }
    /// Number of passes (1).
    Index passes() const { return 1; }
    /// Number of task vectors per pass.
    Index count() const { return m_in.count(); }
    /// Takes task vector `task` (tasks in order, pass 0): puts its top-k singular triplets into the stacked factors
    /// (adds it to the running sum when k = 0).
    void add(Index pass, Index task, const Matrix& tau) {
      m_in.accept(pass, task, tau);
      if (m_fallback) return m_fallback->add(pass, task, tau);
      const Index k = m_k;
      if (tau.isZero(0)) {
        // A zero task contributes nothing; keep the slot orthogonal-completable and σ = 0.
        ++m_zeros;
        m_u.middleCols(task * k, k).setZero();
        m_v.middleCols(task * k, k).setZero();
        m_sigma.segment(task * k, k).setZero();
        return;
      }
      TruncatedSVD<Matrix> svd;
      svd.setRank(k).compute(tau);
      if (svd.info() != Eigen::Success) throw NumericalError("TsvMerging::mergeDelta: SVD did not converge");
      m_u.middleCols(task * k, k) = svd.matrixU();
      m_v.middleCols(task * k, k) = svd.matrixV();
      m_sigma.segment(task * k, k) = svd.singularValues().template cast<Scalar>();
    }
    /// Orthogonalises the stacked factors, returns Δ and fills the report (rank k, warnings for the fallback and zero
    /// task vectors).
    Matrix finish() {
      const Index t = m_in.count(), s = std::min(m_in.rows(), m_in.cols());
      TensorReport* report = m_in.report(m_describe + (m_fallback ? " -> task arithmetic" : ""));
      if (report) report->rank = m_k;
      if (m_fallback) {
        if (report)
          report->warnings.push_back(std::to_string(t) + " tasks exceed min(m, n) = " + std::to_string(s) +
                                     " (k = 0): fell back to task arithmetic (alpha * sum of task vectors)");
        return m_fallback->finish();
      }
      if (m_zeros == t) {
        if (report) report->warnings.push_back("all task vectors are zero: merged delta is zero");
        m_u.resize(0, 0);
        m_v.resize(0, 0);
        return Matrix::Zero(m_in.rows(), m_in.cols());
      }
      if (m_zeros > 0 && report) report->warnings.push_back(std::to_string(m_zeros) + " zero task vector(s) contribute nothing");
      m_u = polarFactor(m_u);
      m_v = polarFactor(m_v);
      return (m_u * m_sigma.asDiagonal() * m_v.transpose()) * Scalar(m_scale);
    }

    /// Moves the orthogonalised stacked factors out (after `finish()`; empty when Δ = 0).
    void takeFactors(Matrix& u, Matrix& v) {
      u = std::move(m_u);
      v = std::move(m_v);
    }

   private:
    double m_scale;
    std::string m_describe;
    detail::TaskStream<Scalar> m_in;
    Index m_k;
    Index m_zeros = 0;
    std::unique_ptr<detail::SumAccumulator<Scalar>> m_fallback;
    Matrix m_u, m_v;
    Eigen::Matrix<Scalar, Eigen::Dynamic, 1> m_sigma;
  };
  /// The incoming task vector, the stacked factors (at most m×min(m, n) and n×min(m, n)), one
  /// task's SVD, the polar factors and the result.
  static std::size_t workingSetBytes(Index rows, Index cols, Index) {
    return 2 * detail::tensorBytes(rows, cols, sizeof(Scalar)) + 2 * detail::svdBytes<Scalar>(rows, cols);
  }

 private:
  double m_scale = 1.0;
  mutable Matrix m_u, m_v;
};

}  // namespace wproj
