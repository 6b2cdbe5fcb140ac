// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The classic per-tensor mergers: task arithmetic, TIES, DARE, SLERP and Model Stock.
///
/// Every per-tensor merger has the same shape of API:
///   - `Matrix mergeDelta(const std::vector<Matrix>& taskVectors, TensorReport* report = nullptr) const`
///     returns the merged delta Δ (so θ = θ₀ + Δ) from the task vectors τ_i = θ_i − θ₀ of one tensor;
///   - `bool elementwise() const` says whether the method is defined entry by entry (then the
///     default rules apply it to every tensor, not only to 2-D weights);
///   - `std::string describe() const` names the method and its parameters (used in reports).
/// `ModelMerger` (driver.hpp) walks a whole model with any of them.

#include "../core/config.hpp"
#include "../core/random.hpp"
#include "report.hpp"
#include "task_vectors.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace wproj {

namespace detail {
inline std::string fmt(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}
}  // namespace detail

/// Task arithmetic (Ilharco et al., ICLR 2023): Δ = λ Σ_i τ_i. λ = 1 by default (0.3 is the usual
/// choice for eight CLIP tasks).
template <typename Scalar_>
class TaskArithmetic {
 public:
  using Scalar = Scalar_;
  using Matrix = MergeMatrix<Scalar>;

  TaskArithmetic() = default;
  explicit TaskArithmetic(double scale) { setScale(scale); }
  /// Sets λ (finite).
  TaskArithmetic& setScale(double lambda) {
    requireArg(std::isfinite(lambda), "TaskArithmetic::setScale", "lambda", lambda, "a finite number");
    m_scale = lambda;
    return *this;
  }
  double scale() const { return m_scale; }
  bool elementwise() const { return true; }
  std::string describe() const { return "task arithmetic (lambda=" + detail::fmt(m_scale) + ")"; }

  /// Δ = λ Σ τ_i.
  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    detail::checkTaskVectors(taus, "TaskArithmetic::mergeDelta");
    Matrix d = detail::sumOf(taus) * Scalar(m_scale);
    if (report) {
      detail::describeInputs(taus, *report);
      report->method = describe();
    }
    return d;
  }

 private:
  double m_scale = 1.0;
};

/// TIES-Merging (Yadav et al., NeurIPS 2023), per tensor: (1) trim each τ_i to its
/// ⌈density·N⌉ largest-magnitude entries (ties broken by position, so the result is
/// deterministic); (2) elect a sign per entry, s = sign(Σ_i τ̂_i), where an entry whose sum is
/// exactly 0 takes the majority sign sign(Σ_entries s) (+ when that is 0 too); (3) disjoint
/// mean: the mean over the tasks whose trimmed entry is non-zero and has the elected sign
/// (0 when none). Δ = λ·merged. Defaults: density 0.2, λ = 1.
template <typename Scalar_>
class TiesMerging {
 public:
  using Scalar = Scalar_;
  using Matrix = MergeMatrix<Scalar>;

  /// Fraction of entries kept per task vector, in (0, 1].
  TiesMerging& setDensity(double density) {
    requireArg(density > 0 && density <= 1, "TiesMerging::setDensity", "density", density, "a value in (0, 1]");
    m_density = density;
    return *this;
  }
  /// Scale λ of the merged delta (finite).
  TiesMerging& setScale(double lambda) {
    requireArg(std::isfinite(lambda), "TiesMerging::setScale", "lambda", lambda, "a finite number");
    m_scale = lambda;
    return *this;
  }
  double density() const { return m_density; }
  double scale() const { return m_scale; }
  bool elementwise() const { return true; }
  std::string describe() const {
    return "ties (density=" + detail::fmt(m_density) + ", lambda=" + detail::fmt(m_scale) + ")";
  }

  /// Keeps the ⌈density·N⌉ largest |entries| of `tau` (ties: lower column-major index first).
  Matrix trim(const Matrix& tau) const {
    const Index n = tau.size();
    const Index keep = std::min<Index>(n, static_cast<Index>(std::ceil(m_density * double(n) - 1e-9)));
    Matrix out = Matrix::Zero(tau.rows(), tau.cols());
    if (keep <= 0) return out;
    std::vector<Index> idx(static_cast<std::size_t>(n));
    std::iota(idx.begin(), idx.end(), Index(0));
    const Scalar* p = tau.data();
    auto before = [p](Index a, Index b) {
      const Scalar fa = std::abs(p[a]), fb = std::abs(p[b]);
      return fa > fb || (fa == fb && a < b);
    };
    std::nth_element(idx.begin(), idx.begin() + (keep - 1), idx.end(), before);
    for (Index k = 0; k < keep; ++k) out.data()[idx[std::size_t(k)]] = p[idx[std::size_t(k)]];
    return out;
  }

  /// The elected sign (+1/−1 per entry) of already-trimmed task vectors.
  static Matrix electSigns(const std::vector<Matrix>& trimmed) {
    Matrix sum = detail::sumOf(trimmed);
    Matrix sign = sum.unaryExpr([](Scalar x) { return x > 0 ? Scalar(1) : (x < 0 ? Scalar(-1) : Scalar(0)); });
    const Scalar total = sign.sum();
    const Scalar majority = total < 0 ? Scalar(-1) : Scalar(1);
    return sign.unaryExpr([majority](Scalar s) { return s == 0 ? majority : s; });
  }

  /// Δ = λ · disjoint mean of the trimmed, sign-agreeing entries.
  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    detail::checkTaskVectors(taus, "TiesMerging::mergeDelta");
    std::vector<Matrix> trimmed;
    trimmed.reserve(taus.size());
    for (const auto& t : taus) trimmed.push_back(trim(t));
    const Matrix sign = electSigns(trimmed);
    Matrix num = Matrix::Zero(sign.rows(), sign.cols()), cnt = Matrix::Zero(sign.rows(), sign.cols());
    for (const auto& t : trimmed) {
      const auto agree = ((t.array() * sign.array()) > Scalar(0)).template cast<Scalar>();
      num.array() += agree * t.array();
      cnt.array() += agree;
    }
    Matrix d = (num.array() / cnt.array().max(Scalar(1))).matrix() * Scalar(m_scale);
    if (report) {
      detail::describeInputs(taus, *report);
      report->method = describe();
    }
    return d;
  }

 private:
  double m_density = 0.2;
  double m_scale = 1.0;
};

/// DARE (Yu et al., ICML 2024, "Language Models are Super Mario"): drop each entry of τ_i with
/// probability p and rescale the survivors by 1/(1 − p), so E[τ̂_i] = τ_i; then Δ = λ Σ_i τ̂_i.
/// The mask of task i for the tensor at walk position `index` comes from
/// CounterRng(seed, stream = index·2³² + i): the same seed gives the same masks, independently of
/// the order other tensors are visited in. Defaults: p = 0.5, λ = 1, seed 0.
template <typename Scalar_>
class DareMerging {
 public:
  using Scalar = Scalar_;
  using Matrix = MergeMatrix<Scalar>;

  /// Drop probability p in [0, 1).
  DareMerging& setDropRate(double p) {
    requireArg(p >= 0 && p < 1, "DareMerging::setDropRate", "p", p, "a value in [0, 1)");
    m_drop = p;
    return *this;
  }
  DareMerging& setScale(double lambda) {
    requireArg(std::isfinite(lambda), "DareMerging::setScale", "lambda", lambda, "a finite number");
    m_scale = lambda;
    return *this;
  }
  DareMerging& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }
  double dropRate() const { return m_drop; }
  std::uint64_t seed() const { return m_seed; }
  bool elementwise() const { return true; }
  std::string describe() const {
    return "dare (p=" + detail::fmt(m_drop) + ", lambda=" + detail::fmt(m_scale) + ", seed=" + std::to_string(m_seed) + ")";
  }

  /// τ̂ = mask ⊙ τ / (1 − p) with the mask of (tensor `index`, task `task`).
  Matrix dropAndRescale(const Matrix& tau, Index index, Index task) const {
    const CounterRng rng(m_seed, (std::uint64_t(index) << 32) + std::uint64_t(task));
    const double keep = 1.0 - m_drop;
    const Scalar rescale = Scalar(1.0 / keep);
    Matrix out(tau.rows(), tau.cols());
    for (Index k = 0; k < tau.size(); ++k)
      out.data()[k] = rng.uniform(std::uint64_t(k)) <= keep ? tau.data()[k] * rescale : Scalar(0);
    return out;
  }

  /// Δ = λ Σ_i dropAndRescale(τ_i); the tensor's position is taken from `report->index` (0 without a report).
  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    detail::checkTaskVectors(taus, "DareMerging::mergeDelta");
    const Index index = report ? report->index : 0;
    Matrix d = dropAndRescale(taus[0], index, 0);
    for (std::size_t i = 1; i < taus.size(); ++i) d += dropAndRescale(taus[i], index, Index(i));
    d *= Scalar(m_scale);
    if (report) {
      detail::describeInputs(taus, *report);
      report->method = describe();
    }
    return d;
  }

 private:
  double m_drop = 0.5;
  double m_scale = 1.0;
  std::uint64_t m_seed = 0;
};

/// Spherical linear interpolation of two tensors viewed as flat vectors (Shoemake 1985, as used
/// by mergekit): with cos Ω = ⟨a, b⟩/(‖a‖‖b‖), slerp = sin((1−t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b.
/// Falls back to the linear interpolation (1−t)a + tb when |cos Ω| > `threshold` (nearly
/// collinear, where the formula loses accuracy) or when either input is zero; `usedLerp` tells.
template <typename DA, typename DB>
MergeMatrix<typename DA::Scalar> slerp(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b, double t,
                                       double threshold = 0.9995, bool* usedLerp = nullptr) {
  using Scalar = typename DA::Scalar;
  checkShape(b, a.rows(), a.cols(), "slerp", "b");
  requireArg(t >= 0 && t <= 1, "slerp", "t", t, "a value in [0, 1]");
  const double na = static_cast<double>(a.norm()), nb = static_cast<double>(b.norm());
  double c = 1.0;
  if (na > 0 && nb > 0) c = std::clamp(static_cast<double>(a.template cast<double>().cwiseProduct(b.template cast<double>()).sum()) / (na * nb), -1.0, 1.0);
  const bool lerp = !(na > 0 && nb > 0) || std::abs(c) > threshold;
  if (usedLerp) *usedLerp = lerp;
  if (lerp) return (Scalar(1 - t) * a + Scalar(t) * b).eval();
  const double omega = std::acos(c), s = std::sin(omega);
  return (Scalar(std::sin((1 - t) * omega) / s) * a + Scalar(std::sin(t * omega) / s) * b).eval();
}

/// SLERP merger of exactly two task vectors: Δ = slerp(τ_a, τ_b; t) (defaults t = 0.5, lerp
/// threshold 0.9995). To interpolate full weights instead, call `slerp(θ_a, θ_b, t)` directly.
template <typename Scalar_>
class SlerpMerging {
 public:
  using Scalar = Scalar_;
  using Matrix = MergeMatrix<Scalar>;

  SlerpMerging& setT(double t) {
    requireArg(t >= 0 && t <= 1, "SlerpMerging::setT", "t", t, "a value in [0, 1]");
    m_t = t;
    return *this;
  }
  SlerpMerging& setLerpThreshold(double threshold) {
    requireArg(threshold > 0 && threshold <= 1, "SlerpMerging::setLerpThreshold", "threshold", threshold, "a value in (0, 1]");
    m_threshold = threshold;
    return *this;
  }
  bool elementwise() const { return true; }
  std::string describe() const { return "slerp (t=" + detail::fmt(m_t) + ")"; }

  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    requireArg(taus.size() == 2, "SlerpMerging::mergeDelta", "taskVectors.size()", taus.size(), "exactly 2 (SLERP merges two models)");
    detail::checkTaskVectors(taus, "SlerpMerging::mergeDelta", 2);
    bool lerp = false;
    Matrix d = slerp(taus[0], taus[1], m_t, m_threshold, &lerp);
    if (report) {
      detail::describeInputs(taus, *report);
      report->method = describe() + (lerp ? " -> lerp" : "");
      if (lerp) report->warnings.push_back("slerp fell back to linear interpolation (|cos| > threshold or a zero task vector)");
    }
    return d;
  }

 private:
  double m_t = 0.5;
  double m_threshold = 0.9995;
};

/// Model Stock (Jang et al., ECCV 2024): with N fine-tuned models and cos θ the mean pairwise
/// cosine between their task vectors, t = N cos θ / (1 + (N − 1) cos θ) and
/// θ = t·mean(θ_i) + (1 − t)·θ₀, i.e. Δ = t·mean(τ_i). cos θ is clamped to [0, 1] (a negative
/// mean cosine would give t < 0 or a pole; this is reported); pairs with a zero task vector
/// count as cosine 0 (reported).
template <typename Scalar_>
class ModelStock {
 public:
  using Scalar = Scalar_;
  using Matrix = MergeMatrix<Scalar>;

  bool elementwise() const { return true; }
  std::string describe() const { return "model stock"; }

  /// The interpolation ratio t for N models with mean pairwise cosine c (clamped to [0, 1]).
  static double ratio(Index n, double c) {
    c = std::clamp(c, 0.0, 1.0);
    return double(n) * c / (1.0 + double(n - 1) * c);
  }

  /// Mean pairwise cosine of the task vectors (zero vectors count as 0); `zeros` receives how many are zero.
  static double meanCosine(const std::vector<Matrix>& taus, Index* zeros = nullptr) {
    const std::size_t n = taus.size();
    std::vector<double> norms(n);
    Index z = 0;
    for (std::size_t i = 0; i < n; ++i) {
      norms[i] = static_cast<double>(taus[i].norm());
      if (norms[i] == 0) ++z;
    }
    if (zeros) *zeros = z;
    double sum = 0;
    Index pairs = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = i + 1; j < n; ++j, ++pairs)
        if (norms[i] > 0 && norms[j] > 0)
          sum += static_cast<double>(taus[i].template cast<double>().cwiseProduct(taus[j].template cast<double>()).sum()) /
                 (norms[i] * norms[j]);
    return pairs ? sum / double(pairs) : 0.0;
  }

  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    requireArg(taus.size() >= 2, "ModelStock::mergeDelta", "taskVectors.size()", taus.size(), "at least 2 fine-tuned models");
    detail::checkTaskVectors(taus, "ModelStock::mergeDelta", 2);
    Index zeros = 0;
    const double c = meanCosine(taus, &zeros);
    const double t = ratio(Index(taus.size()), c);
    Matrix d = detail::sumOf(taus) * Scalar(t / double(taus.size()));
    if (report) {
      detail::describeInputs(taus, *report);
      report->method = "model stock (cos=" + detail::fmt(c) + ", t=" + detail::fmt(t) + ")";
      if (zeros > 0) report->warnings.push_back(std::to_string(zeros) + " zero task vector(s): their cosines count as 0");
      if (c < 0) report->warnings.push_back("negative mean cosine " + detail::fmt(c) + " clamped to 0 (t = 0, base kept)");
    }
    return d;
  }
};

}  // namespace wproj
