// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The classic per-tensor mergers: task arithmetic, TIES, DARE, SLERP and Model Stock.
///
/// Every per-tensor merger has the same shape of API:
///   - `Matrix mergeDelta(const std::vector<Matrix>& taskVectors, TensorReport* report = nullptr) const`
///     returns the merged delta Δ (so θ = θ₀ + Δ) from the task vectors τ_i = θ_i − θ₀ of one tensor;
///   - the streaming form of the same computation (see task_vectors.hpp): `Index passes() const`,
///     `Accumulator begin(rows, cols, count, report) const` with `add(pass, i, τ_i)` and
///     `finish()`, and `workingSetBytes(rows, cols, count)`, the bytes it holds for one tensor,
///     which do not grow with the number of task vectors; `mergeDelta` runs the streaming form;
///   - `bool elementwise() const` says whether the method is defined entry by entry (then the
///     default rules apply it to every tensor, not only to 2-D weights);
///   - `std::string describe() const` names the method and its parameters (used in reports).
/// The defaults of this protocol (`passes`, `elementwise`, `begin`, `mergeDelta`) come from one
/// base, `detail::TensorMergerBase` (task_vectors.hpp); each merger states only its parameters,
/// its accumulator and its working set. `ModelMerger` (driver.hpp) walks a whole model with any
/// of them, streaming; registry.hpp lists them by name with their parameters.

#include "../core/config.hpp"
#include "../core/random.hpp"
#include "report.hpp"
#include "task_vectors.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
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
class TaskArithmeticMerging : public detail::TensorMergerBase<TaskArithmeticMerging<Scalar_>, Scalar_> {
 public:
  /// Floating-point type of the task vectors.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged deltas.
  using Matrix = MergeMatrix<Scalar>;

  TaskArithmeticMerging() = default;
  /// A merger with scale λ = `scale` (finite).
  explicit TaskArithmeticMerging(double scale) { setScale(scale); }
  /// Sets λ (finite).
  TaskArithmeticMerging& setScale(double lambda) {
    requireArg(std::isfinite(lambda), "TaskArithmeticMerging::setScale", "lambda", lambda, "a finite number");
    m_scale = lambda;
    return *this;
  }
  /// The scale λ.
  double scale() const { return m_scale; }
  /// Number of passes of the streaming form.
  static constexpr Index kPasses = 1;
  /// Defined entry by entry (or on the tensor as a flat vector): the default rules apply it to every tensor.
  static constexpr bool kElementwise = true;
  /// The name `mergeDelta` errors carry.
  static constexpr const char* kWhere = "TaskArithmeticMerging::mergeDelta";
  /// Method name and λ, as used in reports.
  std::string describe() const { return "task arithmetic (lambda=" + detail::fmt(m_scale) + ")"; }

  /// Streaming form: a running sum of the task vectors, scaled by λ at the end (one pass).
  using Accumulator = detail::SumAccumulator<Scalar>;
  /// Starts the streaming merge of one rows×cols tensor from `count` ≥ 1 task vectors; `report`, when given, is filled
  /// at `finish()`.
  Accumulator begin(Index rows, Index cols, Index count, TensorReport* report = nullptr) const {
    return Accumulator("TaskArithmeticMerging", describe(), rows, cols, count, report, m_scale);
  }
  /// The incoming task vector and the running sum.
  static std::size_t workingSetBytes(Index rows, Index cols, Index count) {
    return Accumulator::workingSetBytes(rows, cols, count);
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
///
/// \code
/// std::vector<Eigen::MatrixXf> taus = {theta1 - theta0, theta2 - theta0, theta3 - theta0};
/// Eigen::MatrixXf merged = theta0 + wproj::TiesMerging<float>().setDensity(0.2).mergeDelta(taus);
/// \endcode
template <typename Scalar_>
class TiesMerging : public detail::TensorMergerBase<TiesMerging<Scalar_>, Scalar_> {
 public:
  /// Floating-point type of the task vectors.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged deltas.
  using Matrix = MergeMatrix<Scalar>;
  /// Elected signs, one byte an entry.
  using SignArray = Eigen::Array<signed char, Eigen::Dynamic, Eigen::Dynamic>;

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
  /// Fraction of entries kept per task vector.
  double density() const { return m_density; }
  /// The scale λ of the merged delta.
  double scale() const { return m_scale; }
  /// Number of passes of the streaming form.
  static constexpr Index kPasses = 2;
  /// Defined entry by entry (or on the tensor as a flat vector): the default rules apply it to every tensor.
  static constexpr bool kElementwise = true;
  /// The name `mergeDelta` errors carry.
  static constexpr const char* kWhere = "TiesMerging::mergeDelta";
  /// Method name, density and λ, as used in reports.
  std::string describe() const {
    return "ties (density=" + detail::fmt(m_density) + ", lambda=" + detail::fmt(m_scale) + ")";
  }

  /// Keeps the ⌈density·N⌉ largest |entries| of `tau` (ties: lower column-major index first).
  Matrix trim(const Matrix& tau) const {
    Matrix out = Matrix::Zero(tau.rows(), tau.cols());
    forEachKept(tau, [&](Index k) { out.data()[k] = tau.data()[k]; });
    return out;
  }

  /// The elected sign (+1/−1 per entry) of already-trimmed task vectors.
  static Matrix electSigns(const std::vector<Matrix>& trimmed) {
    Matrix sum = trimmed.front();
    for (std::size_t i = 1; i < trimmed.size(); ++i) sum += trimmed[i];
    return electedSigns(sum).template cast<Scalar>().matrix();
  }

  /// Streaming form, two passes (trimming is recomputed from τ_i in each): pass 0 keeps the
  /// running sum of the trimmed task vectors and elects the signs from it; pass 1 keeps the
  /// running sum and count of the trimmed entries that agree with the elected sign.
  class Accumulator {
   public:
    /// An accumulator for `count` task vectors of a rows×cols tensor (what `begin()` returns).
    Accumulator(const TiesMerging& m, Index rows, Index cols, Index count, TensorReport* report)
        : m_ties(m), m_in("TiesMerging", rows, cols, count, 2, report) {}
    /// Number of passes (2).
    Index passes() const { return 2; }
    /// Number of task vectors per pass.
    Index count() const { return m_in.count(); }
    /// Takes task vector `task` in pass `pass`, tasks in order: pass 0 sums the trimmed task vectors and elects the
    /// signs after the last one; pass 1 sums and counts the trimmed entries that agree with the elected sign.
    void add(Index pass, Index task, const Matrix& tau) {
      m_in.accept(pass, task, tau);
      const Scalar* p = tau.data();
      if (pass == 0) {
        if (task == 0) m_sum = Matrix::Zero(tau.rows(), tau.cols());
        m_ties.forEachKept(tau, [&](Index k) { m_sum.data()[k] += p[k]; });
        if (task + 1 == m_in.count()) {
          m_sign = electedSigns(m_sum);
          m_sum = Matrix::Zero(tau.rows(), tau.cols());  // now the numerator of the disjoint mean
          m_cnt = Matrix::Zero(tau.rows(), tau.cols());
        }
        return;
      }
      m_ties.forEachKept(tau, [&](Index k) {
        if (p[k] * Scalar(m_sign.data()[k]) > Scalar(0)) {
          m_sum.data()[k] += p[k];
          m_cnt.data()[k] += Scalar(1);
        }
      });
    }
    /// After both passes: returns Δ = λ · disjoint mean and fills the report.
    Matrix finish() {
      m_in.report(m_ties.describe());
      m_sum.array() = (m_sum.array() / m_cnt.array().max(Scalar(1))) * Scalar(m_ties.m_scale);
      return std::move(m_sum);
    }

   private:
    TiesMerging m_ties;
    detail::TaskStream<Scalar> m_in;
    Matrix m_sum, m_cnt;
    SignArray m_sign;
  };
  /// The incoming task vector, its magnitudes (for the selection), the numerator and count of
  /// the disjoint mean and the elected signs (one byte an entry).
  static std::size_t workingSetBytes(Index rows, Index cols, Index) {
    return 4 * detail::tensorBytes(rows, cols, sizeof(Scalar)) + detail::tensorBytes(rows, cols, 1);
  }

 private:
  Index keepCount(Index n) const {
    return std::min<Index>(n, static_cast<Index>(std::ceil(m_density * double(n) - 1e-9)));
  }

  /// Calls f(k), in increasing k, for the entries `trim` keeps: those of magnitude above the
  /// keep-th largest, then the lowest-index ones equal to it.
  template <typename F>
  void forEachKept(const Matrix& tau, F&& f) const {
    const Index n = tau.size(), keep = keepCount(n);
    if (keep <= 0) return;
    const Scalar* p = tau.data();
    Scalar threshold;
    {
      std::vector<Scalar> mag(static_cast<std::size_t>(n));
      for (Index k = 0; k < n; ++k) mag[std::size_t(k)] = std::abs(p[k]);
      std::nth_element(mag.begin(), mag.begin() + (keep - 1), mag.end(), std::greater<Scalar>());
      threshold = mag[std::size_t(keep - 1)];
    }
    Index ties = keep;
    for (Index k = 0; k < n; ++k)
      if (std::abs(p[k]) > threshold) --ties;
    for (Index k = 0; k < n; ++k) {
      const Scalar a = std::abs(p[k]);
      if (a > threshold || (a == threshold && ties-- > 0)) f(k);
    }
  }

  /// +1/−1 per entry of a sum of trimmed task vectors; a zero entry takes the majority sign
  /// (+ when the non-zero signs balance).
  static SignArray electedSigns(const Matrix& sum) {
    Index balance = 0;
    for (Index k = 0; k < sum.size(); ++k) balance += sum.data()[k] > 0 ? 1 : (sum.data()[k] < 0 ? -1 : 0);
    const signed char majority = balance < 0 ? -1 : 1;
    SignArray sign(sum.rows(), sum.cols());
    for (Index k = 0; k < sum.size(); ++k)
      sign.data()[k] = sum.data()[k] > 0 ? 1 : (sum.data()[k] < 0 ? -1 : majority);
    return sign;
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
class DareMerging : public detail::TensorMergerBase<DareMerging<Scalar_>, Scalar_> {
 public:
  /// Floating-point type of the task vectors.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged deltas.
  using Matrix = MergeMatrix<Scalar>;

  /// Drop probability p in [0, 1).
  DareMerging& setDropRate(double p) {
    requireArg(p >= 0 && p < 1, "DareMerging::setDropRate", "p", p, "a value in [0, 1)");
    m_drop = p;
    return *this;
  }
  /// Scale λ of the merged delta (finite).
  DareMerging& setScale(double lambda) {
    requireArg(std::isfinite(lambda), "DareMerging::setScale", "lambda", lambda, "a finite number");
    m_scale = lambda;
    return *this;
  }
  /// Whether the survivors are rescaled by 1/(1 − p) (true by default, which keeps E[τ̂_i] = τ_i;
  /// false keeps them as they are, mergekit's `rescale: false`).
  DareMerging& setRescale(bool rescale) {
    m_rescale = rescale;
    return *this;
  }
  /// True when the survivors are rescaled by 1/(1 − p).
  bool rescale() const { return m_rescale; }
  /// Seed of the drop masks.
  DareMerging& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }
  /// The drop probability p.
  double dropRate() const { return m_drop; }
  /// The seed of the drop masks.
  std::uint64_t seed() const { return m_seed; }
  /// Number of passes of the streaming form.
  static constexpr Index kPasses = 1;
  /// Defined entry by entry (or on the tensor as a flat vector): the default rules apply it to every tensor.
  static constexpr bool kElementwise = true;
  /// The name `mergeDelta` errors carry.
  static constexpr const char* kWhere = "DareMerging::mergeDelta";
  /// Method name, p, λ and seed, as used in reports.
  std::string describe() const {
    return "dare (p=" + detail::fmt(m_drop) + ", lambda=" + detail::fmt(m_scale) + ", seed=" + std::to_string(m_seed) +
           (m_rescale ? ")" : ", no rescale)");
  }

  /// τ̂ = mask ⊙ τ / (1 − p) (mask ⊙ τ without rescaling) with the mask of (tensor `index`, task `task`).
  Matrix dropAndRescale(const Matrix& tau, Index index, Index task) const {
    Matrix out(tau.rows(), tau.cols());
    addDropped(out, tau, index, task, true);
    return out;
  }

  /// Streaming form: a running sum of the masked, rescaled task vectors (mask i depends only on
  /// the seed, the tensor's position `report->index` and i), scaled by λ at the end (one pass).
  class Accumulator {
   public:
    /// An accumulator for `count` task vectors of a rows×cols tensor (what `begin()` returns); the masks use the tensor
    /// position `report->index` (0 without a report).
    Accumulator(const DareMerging& m, Index rows, Index cols, Index count, TensorReport* report)
        : m_dare(m), m_index(report ? report->index : 0), m_in("DareMerging", rows, cols, count, 1, report) {}
    /// Number of passes (1).
    Index passes() const { return 1; }
    /// Number of task vectors per pass.
    Index count() const { return m_in.count(); }
    /// Takes task vector `task` (tasks in order, pass 0) and adds its masked, rescaled copy to the running sum.
    void add(Index pass, Index task, const Matrix& tau) {
      m_in.accept(pass, task, tau);
      if (task == 0) m_sum.resize(tau.rows(), tau.cols());
      m_dare.addDropped(m_sum, tau, m_index, task, task == 0);
    }
    /// Returns Δ = λ Σ τ̂_i and fills the report.
    Matrix finish() {
      m_in.report(m_dare.describe());
      m_sum *= Scalar(m_dare.m_scale);
      return std::move(m_sum);
    }

   private:
    DareMerging m_dare;
    Index m_index;
    detail::TaskStream<Scalar> m_in;
    Matrix m_sum;
  };
  /// The incoming task vector and the running sum.
  static std::size_t workingSetBytes(Index rows, Index cols, Index) { return 2 * detail::tensorBytes(rows, cols, sizeof(Scalar)); }

 private:
  /// acc (=, when `first`, else +=) mask ⊙ τ / (1 − p).
  void addDropped(Matrix& acc, const Matrix& tau, Index index, Index task, bool first) const {
    const CounterRng rng(m_seed, (std::uint64_t(index) << 32) + std::uint64_t(task));
    const double keep = 1.0 - m_drop;
    const Scalar rescale = m_rescale ? Scalar(1.0 / keep) : Scalar(1);
    for (Index k = 0; k < tau.size(); ++k) {
      const Scalar v = rng.uniform(std::uint64_t(k)) <= keep ? tau.data()[k] * rescale : Scalar(0);
      if (first) acc.data()[k] = v;
      else acc.data()[k] += v;
    }
  }

  double m_drop = 0.5;
  double m_scale = 1.0;
  std::uint64_t m_seed = 0;
  bool m_rescale = true;
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
class SlerpMerging : public detail::TensorMergerBase<SlerpMerging<Scalar_>, Scalar_> {
 public:
  /// Floating-point type of the task vectors.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged deltas.
  using Matrix = MergeMatrix<Scalar>;

  /// Interpolation parameter t in [0, 1] (0 gives τ_a, 1 gives τ_b).
  SlerpMerging& setT(double t) {
    requireArg(t >= 0 && t <= 1, "SlerpMerging::setT", "t", t, "a value in [0, 1]");
    m_t = t;
    return *this;
  }
  /// |cos Ω| above which linear interpolation is used instead, in (0, 1].
  SlerpMerging& setLerpThreshold(double threshold) {
    requireArg(threshold > 0 && threshold <= 1, "SlerpMerging::setLerpThreshold", "threshold", threshold, "a value in (0, 1]");
    m_threshold = threshold;
    return *this;
  }
  /// Number of passes of the streaming form.
  static constexpr Index kPasses = 1;
  /// Defined entry by entry (or on the tensor as a flat vector): the default rules apply it to every tensor.
  static constexpr bool kElementwise = true;
  /// The name `mergeDelta` errors carry.
  static constexpr const char* kWhere = "SlerpMerging::mergeDelta";
  /// Method name and t, as used in reports.
  std::string describe() const { return "slerp (t=" + detail::fmt(m_t) + ")"; }

  /// Streaming form: keeps τ_a, interpolates when τ_b arrives (one pass, exactly two task vectors).
  class Accumulator {
   public:
    /// An accumulator for `count` task vectors of a rows×cols tensor (what `begin()` returns); `count` must be 2.
    Accumulator(const SlerpMerging& m, Index rows, Index cols, Index count, TensorReport* report)
        : m_slerp(m), m_in("SlerpMerging", rows, cols, count, 1, report, 2, 2, "exactly 2 (SLERP merges two models)") {}
    /// Number of passes (1).
    Index passes() const { return 1; }
    /// Number of task vectors per pass.
    Index count() const { return m_in.count(); }
    /// Takes τ_a (task 0), then τ_b (task 1), on whose arrival the two are interpolated (pass 0).
    void add(Index pass, Index task, const Matrix& tau) {
      m_in.accept(pass, task, tau);
      if (task == 0) {
        m_a = tau;
      } else {
        m_d = slerp(m_a, tau, m_slerp.m_t, m_slerp.m_threshold, &m_lerp);
        m_a.resize(0, 0);
      }
    }
    /// Returns the interpolated Δ and fills the report, with a warning when linear interpolation was used.
    Matrix finish() {
      if (TensorReport* r = m_in.report(m_slerp.describe() + (m_lerp ? " -> lerp" : "")))
        if (m_lerp) r->warnings.push_back("slerp fell back to linear interpolation (|cos| > threshold or a zero task vector)");
      return std::move(m_d);
    }

   private:
    SlerpMerging m_slerp;
    detail::TaskStream<Scalar> m_in;
    Matrix m_a, m_d;
    bool m_lerp = false;
  };
  /// τ_a, τ_b and the result.
  static std::size_t workingSetBytes(Index rows, Index cols, Index) { return 3 * detail::tensorBytes(rows, cols, sizeof(Scalar)); }

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
class ModelStockMerging : public detail::TensorMergerBase<ModelStockMerging<Scalar_>, Scalar_> {
 public:
  /// Floating-point type of the task vectors.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged deltas.
  using Matrix = MergeMatrix<Scalar>;

 private:
  /// Σ_{i<j} cos(τ_i, τ_j) over the task vectors added so far, in one pass.
  struct CosineStream {
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic> r;  // Σ τ_j / ‖τ_j‖ over the non-zero τ_j seen
    double sum = 0;
    Index seen = 0, zeros = 0;
    void add(const Matrix& tau) {
      ++seen;
      const double n = static_cast<double>(tau.norm());
      if (n == 0) {
        ++zeros;
        return;
      }
      if (r.size() == 0) {
        r = tau.template cast<double>() / n;
        return;
      }
      sum += tau.template cast<double>().cwiseProduct(r).sum() / n;
      r += tau.template cast<double>() / n;
    }
    double mean() const {
      const Index pairs = seen * (seen - 1) / 2;
      return pairs ? sum / double(pairs) : 0.0;
    }
  };

 public:
  /// Number of passes of the streaming form.
  static constexpr Index kPasses = 1;
  /// Defined entry by entry (or on the tensor as a flat vector): the default rules apply it to every tensor.
  static constexpr bool kElementwise = true;
  /// The name `mergeDelta` errors carry.
  static constexpr const char* kWhere = "ModelStockMerging::mergeDelta";
  /// Method name, as used in reports (a tensor's report entry adds cos θ and t).
  std::string describe() const { return "model stock"; }

  /// The interpolation ratio t for N models with mean pairwise cosine c (clamped to [0, 1]).
  static double ratio(Index n, double c) {
    c = std::clamp(c, 0.0, 1.0);
    return double(n) * c / (1.0 + double(n - 1) * c);
  }

  /// Mean pairwise cosine of the task vectors (zero vectors count as 0); `zeros` receives how many are zero.
  static double meanCosine(const std::vector<Matrix>& taus, Index* zeros = nullptr) {
    CosineStream c;
    for (const auto& t : taus) c.add(t);
    if (zeros) *zeros = c.zeros;
    return c.mean();
  }

  /// Streaming form, one pass: the running sum of the task vectors and, for the mean pairwise
  /// cosine, the running sum R of the normalised task vectors seen so far (in double):
  /// Σ_{j<i} cos(τ_i, τ_j) = ⟨τ_i, R⟩ / ‖τ_i‖ when τ_i arrives.
  class Accumulator {
   public:
    /// An accumulator for `count` task vectors of a rows×cols tensor (what `begin()` returns); `count` must be at least
    /// 2.
    Accumulator(const ModelStockMerging& m, Index rows, Index cols, Index count, TensorReport* report)
        : m_report(report), m_sum("ModelStockMerging", m.describe(), rows, cols, count, report, 1.0) {
      requireArg(count >= 2, "ModelStockMerging", "taskVectors.size()", count, "at least 2 fine-tuned models");
    }
    /// Number of passes (1).
    Index passes() const { return 1; }
    /// Number of task vectors per pass.
    Index count() const { return m_sum.count(); }
    /// Takes task vector `task` (tasks in order, pass 0): adds it to the running sum and its cosines with the earlier
    /// task vectors to the cosine sum.
    void add(Index pass, Index task, const Matrix& tau) {
      m_sum.add(pass, task, tau);
      m_cos.add(tau);
    }
    /// Returns Δ = t · mean τ_i and fills the report (cos θ, t, warnings for zero task vectors or a negative mean
    /// cosine).
    Matrix finish() {
      const double c = m_cos.mean();
      const double t = ratio(m_sum.count(), c);
      m_sum.setResult("model stock (cos=" + detail::fmt(c) + ", t=" + detail::fmt(t) + ")", t / double(m_sum.count()));
      Matrix d = m_sum.finish();
      if (m_report) {
        if (m_cos.zeros > 0)
          m_report->warnings.push_back(std::to_string(m_cos.zeros) + " zero task vector(s): their cosines count as 0");
        if (c < 0) m_report->warnings.push_back("negative mean cosine " + detail::fmt(c) + " clamped to 0 (t = 0, base kept)");
      }
      return d;
    }

   private:
    TensorReport* m_report;
    detail::SumAccumulator<Scalar> m_sum;
    CosineStream m_cos;
  };
  /// The incoming task vector, the running sum and R (in double).
  static std::size_t workingSetBytes(Index rows, Index cols, Index) {
    return 2 * detail::tensorBytes(rows, cols, sizeof(Scalar)) + detail::tensorBytes(rows, cols, sizeof(double));
  }
};

// Names before 0.2.0 (see the naming rule in docs/index.md); they will be removed in 1.0.
template <typename Scalar_>
using TaskArithmetic [[deprecated("renamed wproj::TaskArithmeticMerging")]] = TaskArithmeticMerging<Scalar_>;
template <typename Scalar_>
using ModelStock [[deprecated("renamed wproj::ModelStockMerging")]] = ModelStockMerging<Scalar_>;

}  // namespace wproj
