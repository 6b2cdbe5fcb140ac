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
#include <string>
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
class IsoCMerging {
 public:
  using Scalar = Scalar_;
  using Matrix = MergeMatrix<Scalar>;

  IsoCMerging& setScale(double alpha) {
    requireArg(std::isfinite(alpha), "IsoCMerging::setScale", "alpha", alpha, "a finite number");
    m_scale = alpha;
    return *this;
  }
  double scale() const { return m_scale; }
  bool elementwise() const { return false; }
  std::string describe() const { return "iso-c (alpha=" + detail::fmt(m_scale) + ")"; }

  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    detail::checkTaskVectors(taus, "IsoCMerging::mergeDelta");
    const Matrix sum = detail::sumOf(taus);
    if (report) {
      detail::describeInputs(taus, *report);
      report->method = describe();
    }
    if (sum.isZero(0)) {
      if (report) report->warnings.push_back("sum of task vectors is zero: merged delta is zero");
      return Matrix::Zero(sum.rows(), sum.cols());
    }
    const auto svd = detail::fullThinSvd<Matrix>(sum, "IsoCMerging::mergeDelta");
    const double mean = double(svd.singularValues().mean());
    if (report) report->rank = svd.rank();
    return (svd.matrixU() * svd.matrixV().transpose()) * Scalar(m_scale * mean);
  }

 private:
  double m_scale = 1.0;
};

/// Iso-CTS: with s = min(m, n), k = ⌊f·s⌋ common directions (top of svd(Σ τ_t), f = 0.8 by
/// default) and d = ⌊(s − k)/T⌋ task-specific directions per task (the top of
/// svd(τ_i − U_cU_cᵀτ_i)). The stacked U* = [U_1 … U_T | U_c] and V* are orthogonalised by their
/// polar factors, and Δ = α·mean(kept σ)·polar(U*)·polar(V*)ᵀ. When d = 0 (T > s − k) only the
/// common subspace is kept (reported).
template <typename Scalar_>
class IsoCtsMerging {
 public:
  using Scalar = Scalar_;
  using Matrix = MergeMatrix<Scalar>;

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
  double commonFraction() const { return m_common; }
  bool elementwise() const { return false; }
  std::string describe() const {
    return "iso-cts (alpha=" + detail::fmt(m_scale) + ", common=" + detail::fmt(m_common) + ")";
  }

  /// The stacked, orthogonalised factors of the last call (for inspection and tests).
  const Matrix& lastU() const { return m_u; }
  const Matrix& lastV() const { return m_v; }

  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    detail::checkTaskVectors(taus, "IsoCtsMerging::mergeDelta");
    const Index m = taus[0].rows(), n = taus[0].cols(), s = std::min(m, n), t = Index(taus.size());
    const Matrix sum = detail::sumOf(taus);
    if (report) {
      detail::describeInputs(taus, *report);
      report->method = describe();
    }
    if (sum.isZero(0)) {
      if (report) report->warnings.push_back("sum of task vectors is zero: merged delta is zero");
      m_u.resize(0, 0);
      m_v.resize(0, 0);
      return Matrix::Zero(m, n);
    }
    const Index k = std::min<Index>(s, Index(std::floor(m_common * double(s))));
    const Index d = (s - k) / t;
    const auto common = detail::fullThinSvd<Matrix>(sum, "IsoCtsMerging::mergeDelta");
    const Index w = t * d + k;
    if (w == 0) {
      if (report) report->warnings.push_back("no direction kept (common fraction 0 and more tasks than directions)");
      return Matrix::Zero(m, n);
    }
    Matrix ustack(m, w), vstack(n, w);
    Eigen::Matrix<double, Eigen::Dynamic, 1> sigma(w);
    if (d > 0) {
      const Matrix uc = common.matrixU().leftCols(k);
      for (Index i = 0; i < t; ++i) {
        Matrix residual = taus[std::size_t(i)];
        if (k > 0) residual.noalias() -= uc * (uc.transpose() * taus[std::size_t(i)]);
        TruncatedSVD<Matrix> svd;
        svd.setRank(d).compute(residual);
        if (svd.info() != Eigen::Success) throw NumericalError("IsoCtsMerging::mergeDelta: SVD did not converge");
        const Index got = svd.rank();
        ustack.middleCols(i * d, got) = svd.matrixU();
        vstack.middleCols(i * d, got) = svd.matrixV();
        sigma.segment(i * d, got) = svd.singularValues().template cast<double>();
      }
    } else if (report) {
      report->warnings.push_back(std::to_string(t) + " tasks but only " + std::to_string(s - k) +
                                 " task-specific directions: no task-specific subspace, common subspace only");
    }
    ustack.rightCols(k) = common.matrixU().leftCols(k);
    vstack.rightCols(k) = common.matrixV().leftCols(k);
    sigma.tail(k) = common.singularValues().head(k).template cast<double>();
    m_u = polarFactor(ustack);
    m_v = polarFactor(vstack);
    if (report) report->rank = k;
    return (m_u * m_v.transpose()) * Scalar(m_scale * sigma.mean());
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
class TsvMerging {
 public:
  using Scalar = Scalar_;
  using Matrix = MergeMatrix<Scalar>;

  TsvMerging& setScale(double alpha) {
    requireArg(std::isfinite(alpha), "TsvMerging::setScale", "alpha", alpha, "a finite number");
    m_scale = alpha;
    return *this;
  }
  double scale() const { return m_scale; }
  bool elementwise() const { return false; }
  std::string describe() const { return "tsv-m (alpha=" + detail::fmt(m_scale) + ")"; }

  const Matrix& lastU() const { return m_u; }
  const Matrix& lastV() const { return m_v; }

  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    detail::checkTaskVectors(taus, "TsvMerging::mergeDelta");
    const Index m = taus[0].rows(), n = taus[0].cols(), s = std::min(m, n), t = Index(taus.size());
    const Index k = s / t;
    if (report) {
      detail::describeInputs(taus, *report);
      report->method = describe();
      report->rank = k;
    }
    if (k == 0) {
      if (report) {
        report->method = describe() + " -> task arithmetic";
        report->warnings.push_back(std::to_string(t) + " tasks exceed min(m, n) = " + std::to_string(s) +
                                   " (k = 0): fell back to task arithmetic (alpha * sum of task vectors)");
      }
      m_u.resize(0, 0);
      m_v.resize(0, 0);
      return detail::sumOf(taus) * Scalar(m_scale);
    }
    Matrix ustack(m, t * k), vstack(n, t * k);
    Eigen::Matrix<Scalar, Eigen::Dynamic, 1> sigma(t * k);
    Index zeros = 0;
    for (Index i = 0; i < t; ++i) {
      const Matrix& tau = taus[std::size_t(i)];
      if (tau.isZero(0)) {
        // A zero task contributes nothing; keep the slot orthogonal-completable and σ = 0.
        ++zeros;
        ustack.middleCols(i * k, k).setZero();
        vstack.middleCols(i * k, k).setZero();
        sigma.segment(i * k, k).setZero();
        continue;
      }
      TruncatedSVD<Matrix> svd;
      svd.setRank(k).compute(tau);
      if (svd.info() != Eigen::Success) throw NumericalError("TsvMerging::mergeDelta: SVD did not converge");
      ustack.middleCols(i * k, k) = svd.matrixU();
      vstack.middleCols(i * k, k) = svd.matrixV();
      sigma.segment(i * k, k) = svd.singularValues().template cast<Scalar>();
    }
    if (zeros == t) {
      if (report) report->warnings.push_back("all task vectors are zero: merged delta is zero");
      return Matrix::Zero(m, n);
    }
    if (zeros > 0 && report) report->warnings.push_back(std::to_string(zeros) + " zero task vector(s) contribute nothing");
    m_u = polarFactor(ustack);
    m_v = polarFactor(vstack);
    return (m_u * sigma.asDiagonal() * m_v.transpose()) * Scalar(m_scale);
  }

 private:
  double m_scale = 1.0;
  mutable Matrix m_u, m_v;
};

}  // namespace wproj
