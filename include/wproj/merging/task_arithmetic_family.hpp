// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// mergekit's task-arithmetic family and its averaging methods, per tensor (the interface of
/// method.hpp: `TensorMergeParams` + `TensorMergeInputs` → the merged θ of one tensor):
///
///   - `GeneralizedTaskArithmetic`: `task_arithmetic`, `ties`, `dare_ties`, `dare_linear`,
///     `breadcrumbs`, `breadcrumbs_ties`, `della`, `della_linear` — weighted, sparsified task
///     vectors (sparsify.hpp), an optional TIES sign consensus, normalisation by the summed weights
///     and the scale `lambda`;
///   - `linearMergeTensor`: `linear`, the weighted mean of the models (model soups);
///   - `sceMergeTensor`: `sce` (select by variance, calculate weights, erase by sign);
///   - `modelStockMergeTensor`: `model_stock`, with mergekit's meaning (optionally per row).
///
/// `detail::taskArithmeticFamilyMethods()` returns their registry entries, with mergekit's names,
/// parameters, defaults and required-ness.
///
/// Streaming: the task-arithmetic family and `linear` hold the base, one model and their
/// accumulators, whatever the number of models; they fetch each model once per pass (two passes
/// with the sign consensus: the first elects the signs, the second sums the agreeing entries; the
/// random masks are re-drawn identically). `sce` and `model_stock` hold every model of the tensor.

#include "../core/config.hpp"
#include "method.hpp"
#include "sparsify.hpp"
#include "task_vectors.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace wproj {

namespace detail {

/// The global value `name`, or `fallback` when the front end left it out.
inline double globalOr(const TensorMergeParams& p, const std::string& name, double fallback) {
  const auto it = p.global.find(name);
  return it == p.global.end() ? fallback : it->second;
}

/// Per-model value `name` of model i, or `fallback`; `required` parameters throw `InvalidArgument` when absent.
inline double modelValue(const TensorMergeParams& p, Index i, const std::string& name, double fallback, bool required,
                         const std::string& where) {
  if (std::size_t(i) < p.models.size()) {
    const auto it = p.models[std::size_t(i)].find(name);
    if (it != p.models[std::size_t(i)].end()) return it->second;
  }
  if (required)
    throw InvalidArgument(where + ": parameter '" + name + "' of model " + std::to_string(i) +
                          " is not given; expected a number (mergekit requires it, no default)");
  return fallback;
}

/// Checks the inputs every base-using per-tensor method needs: a base fetch, model fetches.
template <typename Scalar>
void checkTensorInputs(const TensorMergeInputs<Scalar>& in, const std::string& where, bool needsBase) {
  if (needsBase)
    requireArg(in.hasBase && static_cast<bool>(in.base), where.c_str(), "base model", "none",
               "a base model (the method merges task vectors theta_i - theta_0)");
  requireArg(in.numModels >= 0, where.c_str(), "numModels", in.numModels, ">= 0");
  requireArg(in.numModels == 0 || static_cast<bool>(in.model), where.c_str(), "model", "no fetch", "a fetch of each model");
}

/// θ_i, checked against the reference shape.
template <typename Scalar>
MergeMatrix<Scalar> fetchShapedModel(const TensorMergeInputs<Scalar>& in, Index i, Index rows, Index cols, const std::string& where,
                               const char* reference) {
  MergeMatrix<Scalar> theta = in.model(i);
  checkShapeAgainst(theta.rows(), theta.cols(), rows, cols, where, "tensor '" + in.name + "' of model " + std::to_string(i),
                    reference);
  return theta;
}

/// θ₀ + Δ, refusing a non-finite result.
template <typename Scalar>
MergeMatrix<Scalar> finishMerged(MergeMatrix<Scalar> merged, const std::string& where) {
  if (!merged.allFinite()) throw NumericalError(where + ": the merged tensor is not finite (non-finite inputs?)");
  return merged;
}

}  // namespace detail

/// One member of mergekit's generalized task arithmetic (mergekit's
/// `GeneralizedTaskArithmeticMerge`): for models i with weight w_i and task vector τ_i = θ_i − θ₀,
///
///   d_i = sparsify(τ_i; density_i, gamma_i | epsilon_i, rescale)      (sparsify.hpp)
///   with the sign consensus (TIES' "elect"): s = Σ_i w_i d_i, m = +1 where s ≥ 0 else −1,
///     a_i = [sign(w_i d_i) = m];  Δ = Σ_i a_i w_i d_i,  D = Σ_i a_i w_i,  D := 1 where D = 0;
///   without it:  Δ = Σ_i w_i d_i,  D = Σ_i w_i,  D := 1 where |D| < 1e-8;
///   Δ := Δ / D when `normalize`;  Δ := λ Δ;  θ = θ₀ + Δ.
///
/// The members: task_arithmetic (Ilharco et al., ICLR 2023: no sparsification, no consensus),
/// ties (Yadav et al., NeurIPS 2023: magnitude + consensus, normalize), dare_ties / dare_linear
/// (Yu et al., ICML 2024: random keep with rescale, with / without consensus), breadcrumbs /
/// breadcrumbs_ties (Davari & Belilovsky, ECCV 2024: outlier-trimmed magnitude band), della /
/// della_linear (Deep et al. 2024: magnitude-rank sampling with rescale; della normalizes).
/// Parameters (mergekit's): global `normalize`, `rescale` (defaults per member), `lambda` (1),
/// `int8_mask` (accepted, no effect: it only changes mergekit's mask dtype); per model `weight`
/// (required), `density` (1), `gamma` (0.01, breadcrumbs), `epsilon` (0.15, della).
///
/// Where this differs from mergekit (besides the random masks and magnitude ties of
/// sparsify.hpp): a model whose tensor has another shape is an error (mergekit skips it with a
/// warning, or takes a sub-matrix of an embedding), and a non-finite result is an error. Sums run
/// in the tensor's Scalar as torch's do, in another order (rounding apart).
struct GeneralizedTaskArithmetic {
  std::string name;                                                   ///< mergekit's method name
  SparsificationMethod sparsification = SparsificationMethod::None;  ///< how each task vector is sparsified
  bool consensus = false;                                             ///< TIES sign consensus ("sum")
  bool defaultNormalize = false;                                      ///< default of `normalize`
  bool defaultRescale = false;                                        ///< default of `rescale`

  /// The eight members, in mergekit's registry order.
  static const std::vector<GeneralizedTaskArithmetic>& all() {
    using SM = SparsificationMethod;
    static const std::vector<GeneralizedTaskArithmetic> v = {
        {"task_arithmetic", SM::None, false, false, false},
        {"ties", SM::Magnitude, true, true, false},
        {"dare_ties", SM::Random, true, false, true},
        {"dare_linear", SM::Random, false, false, true},
        {"breadcrumbs", SM::MagnitudeOutliers, false, false, false},
        {"breadcrumbs_ties", SM::MagnitudeOutliers, true, false, false},
        {"della", SM::DellaMagprune, true, true, true},
        {"della_linear", SM::DellaMagprune, false, false, true},
    };
    return v;
  }
  /// The member named `n`; `InvalidArgument` otherwise.
  static const GeneralizedTaskArithmetic& byName(const std::string& n) {
    for (const auto& m : all())
      if (m.name == n) return m;
    throw InvalidArgument("GeneralizedTaskArithmetic::byName: argument 'name' = '" + n +
                          "'; expected task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs, breadcrumbs_ties, della or della_linear");
  }
  /// Passes over the models of a tensor: 2 with the sign consensus, else 1.
  Index passes() const { return consensus ? 2 : 1; }
  /// True when the masks are random.
  bool randomized() const { return sparsification == SparsificationMethod::Random || sparsification == SparsificationMethod::DellaMagprune; }

  /// The sparsifier of model i with the values of this tensor (validated; errors name the parameter and the model).
  TaskVectorSparsifier sparsifier(const TensorMergeParams& p, Index i, std::uint64_t seed, const std::string& where) const {
    const std::string w = where + ", model " + std::to_string(i);
    TaskVectorSparsifier s;
    s.setMethod(sparsification).setSeed(seed).setRescale(detail::globalOr(p, "rescale", defaultRescale) != 0);
    if (sparsification == SparsificationMethod::None) return s;
    const double density = detail::modelValue(p, i, "density", 1.0, false, where);
    requireArg(density > 0 && density <= 1, w.c_str(), "density", density, "a value in (0, 1]");
    s.setDensity(density);
    if (sparsification == SparsificationMethod::MagnitudeOutliers) {
      const double gamma = detail::modelValue(p, i, "gamma", 0.01, false, where);
      requireArg(gamma >= 0 && gamma <= 1, w.c_str(), "gamma", gamma, "a value in [0, 1]");
      s.setGamma(gamma);
    }
    if (sparsification == SparsificationMethod::DellaMagprune) {
      const double eps = detail::modelValue(p, i, "epsilon", 0.15, false, where);
      requireArg(eps >= 0 && eps < 1, w.c_str(), "epsilon", eps, "a value in [0, 1)");
      if (density < 1)
        requireArg(density - eps > 0 && density + eps < 1, w.c_str(), "epsilon", eps,
                   "density - epsilon > 0 and density + epsilon < 1 (density = " + detail::describe(density) + ")");
      s.setEpsilon(eps);
    }
    return s;
  }

  /// The merged θ of one tensor (see the class comment). Fetches the base once and each model
  /// `passes()` times; holds θ₀, one model and the accumulators.
  template <typename Scalar>
  MergeMatrix<Scalar> mergeTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) const {
    using Matrix = MergeMatrix<Scalar>;
    const std::string where = "merge method '" + name + "', tensor '" + in.name + "'";
    detail::checkTensorInputs(in, where, true);
    const Index count = in.numModels;
    const bool normalize = detail::globalOr(p, "normalize", defaultNormalize) != 0;
    const double lambda = detail::globalOr(p, "lambda", 1.0);
    requireArg(std::isfinite(lambda), where.c_str(), "lambda", lambda, "a finite number");
    std::vector<double> w(static_cast<std::size_t>(count));
    std::vector<TaskVectorSparsifier> sp;
    for (Index i = 0; i < count; ++i) {
      w[std::size_t(i)] = detail::modelValue(p, i, "weight", 1.0, true, where);
      requireArg(std::isfinite(w[std::size_t(i)]), (where + ", model " + std::to_string(i)).c_str(), "weight", w[std::size_t(i)],
                 "a finite number");
      sp.push_back(sparsifier(p, i, in.seed, where));
    }
    Matrix theta0 = in.base();
    if (count == 0 || theta0.size() == 0) return theta0;
    const Index rows = theta0.rows(), cols = theta0.cols(), n = theta0.size();
    // d_i: the sparsified task vector of model i (the same mask in every pass).
    auto delta = [&](Index i) {
      Matrix d = detail::fetchShapedModel(in, i, rows, cols, where, "its shape in the base model");
      d -= theta0;
      sp[std::size_t(i)].applyInPlace(d, in.name, i);
      return d;
    };
    Matrix mixed = Matrix::Zero(rows, cols);
    if (!consensus) {
      double divisor = 0;
      for (Index i = 0; i < count; ++i) {
        const Matrix d = delta(i);
        mixed += Scalar(w[std::size_t(i)]) * d;
        divisor += w[std::size_t(i)];
      }
      if (std::abs(divisor) < 1e-8) divisor = 1;
      if (normalize) mixed /= Scalar(divisor);
    } else {
      // Pass 0: the elected sign of every entry, from the sum of the weighted deltas.
      for (Index i = 0; i < count; ++i) mixed += Scalar(w[std::size_t(i)]) * delta(i);
      std::vector<signed char> sign(static_cast<std::size_t>(n));
      for (Index k = 0; k < n; ++k) sign[std::size_t(k)] = mixed.data()[k] >= Scalar(0) ? 1 : -1;
      mixed.setZero();
      // Pass 1: the agreeing weighted deltas and their weights.
      Matrix divisor = Matrix::Zero(rows, cols);
      for (Index i = 0; i < count; ++i) {
        const Matrix d = delta(i);
        const Scalar wi = Scalar(w[std::size_t(i)]);
        for (Index k = 0; k < n; ++k) {
          const Scalar v = wi * d.data()[k];
          const signed char s = v > Scalar(0) ? 1 : (v < Scalar(0) ? -1 : 0);
          if (s == sign[std::size_t(k)]) {
            mixed.data()[k] += v;
            divisor.data()[k] += wi;
          }
        }
      }
      if (normalize)
        for (Index k = 0; k < n; ++k) {
          const Scalar dv = divisor.data()[k];
          mixed.data()[k] /= dv == Scalar(0) ? Scalar(1) : dv;
        }
    }
    if (lambda != 1) mixed *= Scalar(lambda);
    theta0 += mixed;
    return detail::finishMerged(std::move(theta0), where);
  }

  /// Bytes held for one rows×cols tensor: θ₀, one model, the merged delta, the divisor and the
  /// signs (the sparsifier works in place: a 64 K-entry histogram, no copy, no mask).
  static std::size_t workingSetBytes(Index rows, Index cols, Index, std::size_t bytesPerScalar) {
    return detail::tensorBytes(rows, cols, 4 * bytesPerScalar + 1) + (std::size_t(1) << 19);
  }
};

/// mergekit's `linear` (Wortsman et al., ICML 2022, "model soups"): θ = Σ_i w_i θ_i, divided by
/// Σ_i w_i when `normalize` (default true); per-model `weight` is required. One pass, holding one
/// model and the running sum. The base takes part only as mergekit lets it, as a listed model:
/// a front end passes a base listed among the models either as one more model, or (with
/// `hasBase`) with its per-model values in `p.models[numModels]`; without that map the base is
/// not read. Differences from mergekit: weights summing to 0 with `normalize` are an error
/// (mergekit divides by 0); a model of another shape is an error, as in mergekit.
template <typename Scalar>
MergeMatrix<Scalar> linearMergeTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  using Matrix = MergeMatrix<Scalar>;
  const std::string where = "merge method 'linear', tensor '" + in.name + "'";
  detail::checkTensorInputs(in, where, false);
  const Index count = in.numModels;
  const bool withBase = in.hasBase && static_cast<bool>(in.base) && p.models.size() > std::size_t(count);
  requireArg(count + (withBase ? 1 : 0) >= 1, where.c_str(), "numModels", count, "at least one model");
  const bool normalize = detail::globalOr(p, "normalize", 1.0) != 0;
  std::vector<double> w(std::size_t(count + (withBase ? 1 : 0)));
  double total = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const std::string wi = where + (Index(i) == count ? std::string(", base model") : ", model " + std::to_string(i));
    w[i] = detail::modelValue(p, Index(i), "weight", 1.0, true, where);
    requireArg(std::isfinite(w[i]), wi.c_str(), "weight", w[i], "a finite number");
    total += w[i];
  }
  if (normalize)
    requireArg(total != 0, where.c_str(), "weight", "weights summing to 0", "weights with a non-zero sum (normalize: true divides by it)");
  // The running sum Σ w_i θ_i; the first tensor read fixes the shape the others must have.
  Matrix sum;
  bool first = true;
  auto add = [&](const Matrix& theta, double wi, const std::string& subject) {
    if (first) {
      sum = Scalar(wi) * theta;
      first = false;
      return;
    }
    detail::checkShapeAgainst(theta.rows(), theta.cols(), sum.rows(), sum.cols(), where, subject, "its shape in the first model");
    sum += Scalar(wi) * theta;
  };
  for (Index i = 0; i < count; ++i) add(in.model(i), w[std::size_t(i)], "tensor '" + in.name + "' of model " + std::to_string(i));
  if (withBase) add(in.base(), w.back(), "tensor '" + in.name + "' of the base model");
  if (normalize) sum /= Scalar(total);
  return detail::finishMerged(std::move(sum), where);
}

/// mergekit's `sce` (Wan et al. 2024, FuseChat, arXiv:2408.07990: select, calculate, erase), on
/// the task vectors τ_i = θ_i − θ₀ of one tensor:
///   select: with `select_topk` < 1, keep in every τ_i only the k = ⌊select_topk · #{v ≠ 0}⌋
///           entries of largest variance v (over the models, population variance); k = 0 keeps none;
///   calculate: w_i = mean(τ_i²) / Σ_j mean(τ_j²) (1/N each when that sum is below 1e-6);
///   erase: TIES' sign consensus on the τ_i (m = +1 where Σ_i τ_i ≥ 0), a_i = [sign τ_i = m];
///   θ = θ₀ + Σ_i a_i w_i τ_i / max(Σ_i a_i w_i, 1e-6).
/// Global `select_topk` (1.0) and `int8_mask` (no effect); no per-model parameters (mergekit's sce
/// has none). Holds every model. Variances, means and sums in double (torch: the tensor's dtype);
/// entries of equal variance are selected by position.
template <typename Scalar>
MergeMatrix<Scalar> sceMergeTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  using Matrix = MergeMatrix<Scalar>;
  const std::string where = "merge method 'sce', tensor '" + in.name + "'";
  detail::checkTensorInputs(in, where, true);
  const double topk = detail::globalOr(p, "select_topk", 1.0);
  requireArg(topk >= 0 && topk <= 1, where.c_str(), "select_topk", topk, "a value in [0, 1]");
  Matrix theta0 = in.base();
  const Index count = in.numModels;
  if (count == 0 || theta0.size() == 0) return theta0;
  const Index rows = theta0.rows(), cols = theta0.cols(), n = theta0.size();
  std::vector<Matrix> tau;
  tau.reserve(std::size_t(count));
  for (Index i = 0; i < count; ++i) {
    tau.push_back(detail::fetchShapedModel(in, i, rows, cols, where, "its shape in the base model"));
    tau.back() -= theta0;
  }
  if (topk < 1) {
    std::vector<double> var(static_cast<std::size_t>(n));
    Index nonzero = 0;
    for (Index k = 0; k < n; ++k) {
      double mean = 0;
      for (const auto& t : tau) mean += static_cast<double>(t.data()[k]);
      mean /= double(count);
      double v = 0;
      for (const auto& t : tau) v += (static_cast<double>(t.data()[k]) - mean) * (static_cast<double>(t.data()[k]) - mean);
      var[std::size_t(k)] = v / double(count);
      nonzero += var[std::size_t(k)] != 0 ? 1 : 0;
    }
    const Index keepCount = static_cast<Index>(double(nonzero) * topk);
    std::vector<unsigned char> keep(static_cast<std::size_t>(n), 0);
    // Equal variances are ordered by row-major position, as torch's flattening.
    if (keepCount > 0) detail::markRankRange(var.data(), rows, cols, n - keepCount, n, keep);
    for (auto& t : tau)
      for (Index k = 0; k < n; ++k)
        if (!keep[std::size_t(k)]) t.data()[k] = Scalar(0);
  }
  std::vector<double> w(static_cast<std::size_t>(count));
  double wsum = 0;
  for (Index i = 0; i < count; ++i) {
    w[std::size_t(i)] = tau[std::size_t(i)].template cast<double>().squaredNorm() / double(n);
    wsum += w[std::size_t(i)];
  }
  for (auto& x : w) x = std::abs(wsum) < 1e-6 ? 1.0 / double(count) : x / wsum;
  Matrix out = theta0;
  for (Index k = 0; k < n; ++k) {
    double s = 0;
    for (const auto& t : tau) s += static_cast<double>(t.data()[k]);
    const int m = s >= 0 ? 1 : -1;
    double num = 0, den = 0;
    for (Index i = 0; i < count; ++i) {
      const double v = static_cast<double>(tau[std::size_t(i)].data()[k]);
      const int sg = v > 0 ? 1 : (v < 0 ? -1 : 0);
      if (sg == m) {
        num += w[std::size_t(i)] * v;
        den += w[std::size_t(i)];
      }
    }
    out.data()[k] += Scalar(num / std::max(den, 1e-6));
  }
  return detail::finishMerged(std::move(out), where);
}

/// mergekit's `ram` and `ramplus_tl` (Reinforced Agent Merging, arXiv 2601.13572): with
/// τ_i = θ_i − θ₀, an entry of model i contributes when |τ_i| > ε, and c counts the contributing
/// models of each entry. `ram`: θ = θ₀ + Σ_i [contributing] τ_i · (1 if c = 1, else 1/c) — unique
/// contributions kept whole, shared ones averaged. `ramplus_tl` (tensor-local): model i's unique
/// contributions are scaled by λ_i = 1 + r·clamp(ρ_i, 0, α) with ρ_i = (its shared entries) /
/// max(its unique entries, ε) over the tensor. Two passes: the counts c, then the sum in model
/// order, each term rounded as torch rounds it (τ/c, then τ·λ). No models: the base.
template <typename Scalar>
MergeMatrix<Scalar> ramMergeTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in, bool plus) {
  using Matrix = MergeMatrix<Scalar>;
  const std::string where = std::string("merge method '") + (plus ? "ramplus_tl" : "ram") + "', tensor '" + in.name + "'";
  detail::checkTensorInputs(in, where, true);
  const double eps = detail::globalOr(p, "epsilon", 1e-5);
  requireArg(eps >= 0 && std::isfinite(eps), where.c_str(), "epsilon", eps, "a finite value >= 0");
  const double r = plus ? detail::globalOr(p, "r", 0.1) : 0.0, alpha = plus ? detail::globalOr(p, "alpha", 0.2) : 0.0;
  requireArg(std::isfinite(r), where.c_str(), "r", r, "a finite number");
  requireArg(std::isfinite(alpha), where.c_str(), "alpha", alpha, "a finite number");
  Matrix theta0 = in.base();
  const Index count = in.numModels;
  if (count == 0 || theta0.size() == 0) return theta0;
  const Index rows = theta0.rows(), cols = theta0.cols(), n = theta0.size();
  const Scalar e = Scalar(eps);
  auto tau = [&](Index i) {
    Matrix d = detail::fetchShapedModel(in, i, rows, cols, where, "its shape in the base model");
    d -= theta0;
    return d;
  };
  std::vector<std::int32_t> c(static_cast<std::size_t>(n), 0);
  for (Index i = 0; i < count; ++i) {
    const Matrix d = tau(i);
    for (Index k = 0; k < n; ++k) c[std::size_t(k)] += std::abs(d.data()[k]) > e ? 1 : 0;
  }
  Matrix merged = Matrix::Zero(rows, cols);
  for (Index i = 0; i < count; ++i) {
    const Matrix d = tau(i);
    Scalar lambda = Scalar(1);
    if (plus) {
      double shared = 0, unique = 0;
      for (Index k = 0; k < n; ++k)
        if (std::abs(d.data()[k]) > e) (c[std::size_t(k)] > 1 ? shared : unique) += 1;
      const double rho = shared / std::max(unique, eps);
      lambda = Scalar(1 + r * std::clamp(rho, 0.0, alpha));
    }
    for (Index k = 0; k < n; ++k) {
      const Scalar v = d.data()[k];
      if (!(std::abs(v) > e)) continue;
      const std::int32_t ck = c[std::size_t(k)];
      merged.data()[k] += ck == 1 ? v * lambda : v / Scalar(ck);
    }
  }
  theta0 += merged;
  return detail::finishMerged(std::move(theta0), where);
}

/// mergekit's `model_stock` (Jang et al., ECCV 2024): with τ_i = θ_i − θ₀ of N ≥ 2 models and
/// c the mean over pairs i < j of clamp(⟨τ_i, τ_j⟩ / max(‖τ_i‖‖τ_j‖, 1e-6), −1, 1),
/// t = N c / (1 + (N − 1) c) and θ = t · mean_i θ_i + (1 − t) θ₀ — over the whole tensor, or per
/// row with `filter_wise` (a one-column matrix, i.e. a 1-D tensor, is one row, as mergekit's
/// unsqueeze makes it). Unlike `ModelStockMerging` (baselines.hpp), c is not clamped to [0, 1]
/// (mergekit does not clamp it; t may be negative), so that class is not reused. A pole
/// (1 + (N − 1)c = 0) is a `NumericalError` (mergekit returns inf/NaN). No base models and no
/// other models: the base. Holds every model; dot products in double (torch: the dtype).
template <typename Scalar>
MergeMatrix<Scalar> modelStockMergeTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  using Matrix = MergeMatrix<Scalar>;
  const std::string where = "merge method 'model_stock', tensor '" + in.name + "'";
  detail::checkTensorInputs(in, where, true);
  const Index count = in.numModels;
  Matrix theta0 = in.base();
  if (count == 0) return theta0;
  requireArg(count >= 2, where.c_str(), "numModels", count, "at least 2 models besides the base (mergekit: base plus two or more)");
  const bool filterWise = detail::globalOr(p, "filter_wise", 0.0) != 0;
  const Index rows = theta0.rows(), cols = theta0.cols();
  std::vector<Matrix> theta;
  theta.reserve(std::size_t(count));
  for (Index i = 0; i < count; ++i) theta.push_back(detail::fetchShapedModel(in, i, rows, cols, where, "its shape in the base model"));
  if (theta0.size() == 0) return theta0;
  const bool perRow = filterWise && cols > 1;
  const Index segments = perRow ? rows : 1;
  Matrix avg = theta[0];
  for (Index i = 1; i < count; ++i) avg += theta[std::size_t(i)];
  avg /= Scalar(count);
  Matrix out(rows, cols);
  for (Index s = 0; s < segments; ++s) {
    // The segment's task vectors in double: the whole tensor, or row s.
    std::vector<Eigen::VectorXd> t(static_cast<std::size_t>(count));
    for (Index i = 0; i < count; ++i) {
      if (perRow) t[std::size_t(i)] = (theta[std::size_t(i)].row(s) - theta0.row(s)).transpose().template cast<double>();
      else t[std::size_t(i)] = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>((theta[std::size_t(i)] - theta0).eval().data(), theta0.size()).template cast<double>();
    }
    double c = 0;
    Index pairs = 0;
    for (Index i = 0; i < count; ++i)
      for (Index j = i + 1; j < count; ++j) {
        const double np = t[std::size_t(i)].norm() * t[std::size_t(j)].norm();
        c += std::clamp(t[std::size_t(i)].dot(t[std::size_t(j)]) / std::max(np, 1e-6), -1.0, 1.0);
        ++pairs;
      }
    c /= double(pairs);
    const double den = 1.0 + double(count - 1) * c;
    const double ratio = double(count) * c / den;
    if (!std::isfinite(ratio))
      throw NumericalError(where + ": mean cosine " + detail::describe(c) + " puts the interpolation ratio at its pole (1 + (N - 1) cos = 0)");
    const Scalar ts = Scalar(ratio), us = Scalar(1.0 - ratio);
    if (perRow) out.row(s) = ts * avg.row(s) + us * theta0.row(s);
    else out = ts * avg + us * theta0;
  }
  return detail::finishMerged(std::move(out), where);
}

namespace detail {

template <int Member, typename Scalar>
MergeMatrix<Scalar> gtaTensorForm(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  return GeneralizedTaskArithmetic::all()[std::size_t(Member)].mergeTensor(p, in);
}

inline std::size_t linearWorkingSet(Index rows, Index cols, Index, std::size_t bytesPerScalar) {
  return tensorBytes(rows, cols, 2 * bytesPerScalar);
}
inline std::size_t holdAllWorkingSet(Index rows, Index cols, Index count, std::size_t bytesPerScalar) {
  // every model, the base, the result and the double scratch of one segment per model
  return tensorBytes(rows, cols, std::size_t(count + 2) * bytesPerScalar + std::size_t(count) * sizeof(double));
}

inline bool anyFinite(double x) { return std::isfinite(x); }
inline bool nonNegative(double x) { return std::isfinite(x) && x >= 0; }
template <typename Scalar>
MergeMatrix<Scalar> ramTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  return ramMergeTensor(p, in, false);
}
template <typename Scalar>
MergeMatrix<Scalar> ramPlusTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  return ramMergeTensor(p, in, true);
}
inline std::size_t ramWorkingSet(Index rows, Index cols, Index, std::size_t bytesPerScalar) {
  return tensorBytes(rows, cols, 3 * bytesPerScalar + sizeof(std::int32_t));  // θ₀, one model, the sum, the counts
}
inline bool densityRange(double x) { return x > 0 && x <= 1; }
inline bool gammaRange(double x) { return x >= 0 && x <= 1; }
inline bool epsilonRange(double x) { return x >= 0 && x < 1; }

/// The registry entries of mergekit's task-arithmetic family and averaging methods: task_arithmetic,
/// ties, dare_ties, dare_linear, breadcrumbs, breadcrumbs_ties, della, della_linear, linear, sce,
/// model_stock — mergekit's names, parameters, defaults and required-ness (`weight`).
inline std::vector<MergeMethod> taskArithmeticFamilyMethods() {
  std::vector<MergeMethod> out;
  const ParamSpec int8Mask{"int8_mask", ParamKind::Bool, 0.0, "accepted for mergekit configs; no effect (mergekit's mask dtype)",
                           nullptr, "true or false"};
  const ParamSpec lambda{"lambda", ParamKind::Scalar, 1.0, "scale of the merged delta", &anyFinite, "a finite number"};
  ParamSpec weight{"weight", ParamKind::PerModel, 1.0, "the model's weight (required, as in mergekit)", &anyFinite,
                   "a finite number"};
  weight.required = true;
  const ParamSpec density{"density", ParamKind::PerModel, 1.0, "fraction of the task vector's entries kept", &densityRange,
                          "a value in (0, 1]"};
  const ParamSpec gamma{"gamma", ParamKind::PerModel, 0.01, "fraction of the largest-magnitude entries dropped",
                        &gammaRange, "a value in [0, 1]"};
  const ParamSpec epsilon{"epsilon", ParamKind::PerModel, 0.15,
                          "half-width of the keep probabilities (density - epsilon .. density + epsilon by magnitude rank)",
                          &epsilonRange, "a value in [0, 1) with density +/- epsilon in (0, 1)"};
  struct Text {
    const char* title;
    const char* reference;
  };
  const Text text[] = {
      {"theta_0 + lambda * sum_i weight_i (theta_i - theta_0)", "Ilharco et al., ICLR 2023 (task arithmetic)"},
      {"top-density task vector entries by magnitude, sign consensus, weighted mean of the agreeing entries",
       "Yadav et al., NeurIPS 2023 (TIES-Merging)"},
      {"random keep with probability density, L1 rescale, sign consensus", "Yu et al., ICML 2024 (DARE)"},
      {"random keep with probability density, L1 rescale, weighted sum", "Yu et al., ICML 2024 (DARE)"},
      {"drop the gamma largest and the smallest entries (keep density), weighted sum",
       "Davari & Belilovsky, ECCV 2024 (Model Breadcrumbs)"},
      {"drop the gamma largest and the smallest entries (keep density), sign consensus",
       "Davari & Belilovsky, ECCV 2024 (Model Breadcrumbs)"},
      {"keep probability rising with magnitude rank per row, L1 rescale, sign consensus, normalized",
       "Deep et al. 2024 (DELLA-Merging)"},
      {"keep probability rising with magnitude rank per row, L1 rescale, weighted sum", "Deep et al. 2024 (DELLA-Merging)"},
  };
  using Fn32 = MergeMatrix<float> (*)(const TensorMergeParams&, const TensorMergeInputs<float>&);
  using Fn64 = MergeMatrix<double> (*)(const TensorMergeParams&, const TensorMergeInputs<double>&);
  const Fn32 f32[] = {&gtaTensorForm<0, float>, &gtaTensorForm<1, float>, &gtaTensorForm<2, float>, &gtaTensorForm<3, float>,
                      &gtaTensorForm<4, float>, &gtaTensorForm<5, float>, &gtaTensorForm<6, float>, &gtaTensorForm<7, float>};
  const Fn64 f64[] = {&gtaTensorForm<0, double>, &gtaTensorForm<1, double>, &gtaTensorForm<2, double>, &gtaTensorForm<3, double>,
                      &gtaTensorForm<4, double>, &gtaTensorForm<5, double>, &gtaTensorForm<6, double>, &gtaTensorForm<7, double>};
  const auto& members = GeneralizedTaskArithmetic::all();
  for (std::size_t k = 0; k < members.size(); ++k) {
    const GeneralizedTaskArithmetic& g = members[k];
    MergeMethod m;
    m.name = g.name;
    m.title = text[k].title;
    m.reference = text[k].reference;
    m.params = {int8Mask,
                {"normalize", ParamKind::Bool, g.defaultNormalize ? 1.0 : 0.0, "divide by the sum of the (agreeing) weights", nullptr,
                 "true or false"},
                {"rescale", ParamKind::Bool, g.defaultRescale ? 1.0 : 0.0, "rescale the kept entries to the task vector's L1 norm",
                 nullptr, "true or false"},
                lambda, weight, density};
    if (g.sparsification == SparsificationMethod::MagnitudeOutliers) m.params.push_back(gamma);
    if (g.sparsification == SparsificationMethod::DellaMagprune) m.params.push_back(epsilon);
    m.needsBase = true;
    m.acceptsBase = true;
    m.elementwise = true;
    m.passes = g.passes();
    m.minModels = 1;
    m.randomized = g.randomized();
    m.rowSeparable = g.sparsification == SparsificationMethod::None && !g.consensus;
    m.tensorFloat = f32[k];
    m.tensorDouble = f64[k];
    m.workingSet = &GeneralizedTaskArithmetic::workingSetBytes;
    out.push_back(std::move(m));
  }
  {
    MergeMethod m;
    m.name = "linear";
    m.title = "weighted mean of the models: sum_i weight_i theta_i / sum_i weight_i";
    m.reference = "Wortsman et al., ICML 2022 (model soups)";
    m.params = {{"normalize", ParamKind::Bool, 1.0, "divide by the sum of the weights", nullptr, "true or false"}, weight};
    m.needsBase = false;
    m.acceptsBase = true;
    m.passes = 1;
    m.rowSeparable = true;
    m.tensorFloat = &linearMergeTensor<float>;
    m.tensorDouble = &linearMergeTensor<double>;
    m.workingSet = &linearWorkingSet;
    out.push_back(std::move(m));
  }
  {
    MergeMethod m;
    m.name = "sce";
    m.title = "select entries by variance across models, weight by mean square, erase by sign consensus";
    m.reference = "Wan et al. 2024 (FuseChat: SCE)";
    m.params = {int8Mask,
                {"select_topk", ParamKind::Scalar, 1.0, "fraction of the entries (by variance across models) kept",
                 &gammaRange, "a value in [0, 1]"}};
    m.needsBase = true;
    m.passes = 1;
    m.tensorFloat = &sceMergeTensor<float>;
    m.tensorDouble = &sceMergeTensor<double>;
    m.workingSet = &holdAllWorkingSet;
    out.push_back(std::move(m));
  }
  for (const bool plus : {false, true}) {
    MergeMethod m;
    m.name = plus ? "ramplus_tl" : "ram";
    m.title = plus ? "as ram, each model's unique entries scaled by 1 + r clamp(shared/unique, 0, alpha) over the tensor"
                   : "entries changed by one model kept whole, entries changed by several averaged over those models";
    m.reference = "Reinforced Agent Merging (arXiv 2601.13572), mergekit's ram";
    m.params = {{"epsilon", ParamKind::Scalar, 1e-5, "an entry counts as changed when |theta_i - theta_0| > epsilon", &nonNegative,
                 "a value >= 0"}};
    if (plus) {
      m.params.push_back({"r", ParamKind::Scalar, 0.1, "strength of the unique-entry boost", &anyFinite, "a finite number"});
      m.params.push_back({"alpha", ParamKind::Scalar, 0.2, "cap of the shared/unique ratio", &anyFinite, "a finite number"});
    }
    m.needsBase = true;
    m.passes = 2;
    m.tensorFloat = plus ? &ramPlusTensor<float> : &ramTensor<float>;
    m.tensorDouble = plus ? &ramPlusTensor<double> : &ramTensor<double>;
    m.workingSet = &ramWorkingSet;
    out.push_back(std::move(m));
  }
  {
    MergeMethod m;
    m.name = "model_stock";
    m.title = "mean of the models interpolated with the base by a ratio from the mean pairwise cosine";
    m.reference = "Jang et al., ECCV 2024 (Model Stock)";
    m.params = {{"filter_wise", ParamKind::Bool, 0.0, "one ratio per row instead of per tensor", nullptr, "true or false"}};
    m.needsBase = true;
    m.passes = 1;
    m.minModels = 2;
    m.tensorFloat = &modelStockMergeTensor<float>;
    m.tensorDouble = &modelStockMergeTensor<double>;
    m.workingSet = &holdAllWorkingSet;
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace detail

}  // namespace wproj
