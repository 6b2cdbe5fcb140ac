// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The table of merge methods: for every method its name (as in configs, mergekit's where the
/// method exists there), its typed parameters with defaults, ranges and meaning, whether it needs
/// a base model, whether it is elementwise or spectral, its number of passes and the number of
/// models it accepts, and a factory that builds the merger from a parameter map and runs it
/// through the driver (`ModelMerger`, or `OpcmMerging` for OPCM). Front ends (the `wproj merge`
/// command, its documentation) read their method names, defaults and messages from here.
///
/// \code
/// const wproj::MergeMethod& ties = wproj::mergeMethod("ties");
/// wproj::MergeParams params{{"density", wproj::ParamValue::number(0.3)}};
/// wproj::MergeJob<float> job{names, /*numModels=*/3, wproj::MergeRules(), base, model, sink};
/// wproj::MergeReport report = ties.run(params, job);   // defaults for the parameters not given
/// \endcode

#include "../core/config.hpp"
#include "baselines.hpp"
#include "driver.hpp"
#include "opcm.hpp"
#include "report.hpp"
#include "spectral.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace wproj {

/// Type of a merge-method parameter.
enum class ParamKind {
  Scalar,   ///< one real number for the whole merge
  Integer,  ///< one non-negative integer (a seed)
  Bool,     ///< true or false
  PerModel  ///< one real number per fine-tuned model
};

/// Name of a parameter type as shown in listings ("scalar", "integer", "bool", "per-model").
inline const char* toString(ParamKind k) {
  switch (k) {
    case ParamKind::Scalar: return "scalar";
    case ParamKind::Integer: return "integer";
    case ParamKind::Bool: return "bool";
    case ParamKind::PerModel: return "per-model";
  }
  return "?";
}

/// A value given for a parameter: a number, a flag or one number per model.
struct ParamValue {
  /// What the value holds: Scalar (a number, also accepted for Integer parameters), Bool or PerModel.
  ParamKind kind = ParamKind::Scalar;
  /// The number (Scalar), or 0/1 (Bool).
  double value = 0;
  /// One number per model (PerModel).
  std::vector<double> values;

  /// A number.
  static ParamValue number(double x) { return {ParamKind::Scalar, x, {}}; }
  /// A flag.
  static ParamValue flag(bool b) { return {ParamKind::Bool, b ? 1.0 : 0.0, {}}; }
  /// One number per model, in the order of the models.
  static ParamValue perModel(std::vector<double> v) { return {ParamKind::PerModel, 0, std::move(v)}; }
};

/// Parameters given to a method, by name; the ones not given take their defaults.
using MergeParams = std::map<std::string, ParamValue>;

/// One parameter of a merge method.
struct ParamSpec {
  std::string name;             ///< the name in configs (mergekit's where mergekit has the parameter)
  ParamKind kind;               ///< its type
  double defaultValue;          ///< the default (per model for PerModel; 0/1 for Bool)
  std::string meaning;          ///< one line: what it does
  bool (*valid)(double);        ///< the range check of one value (nullptr: any finite value)
  std::string expected;         ///< the range in words, as error messages state it
};

/// A method's parameters after validation: every parameter, given or defaulted.
class ResolvedParams {
 public:
  /// The number of a Scalar or Integer parameter (0/1 for a Bool).
  double number(const std::string& name) const { return at(name).value; }
  /// The value of a Bool parameter.
  bool flag(const std::string& name) const { return at(name).value != 0; }
  /// The values of a PerModel parameter, one per model.
  const std::vector<double>& perModel(const std::string& name) const { return at(name).values; }
  /// True when the parameter was given rather than defaulted.
  bool given(const std::string& name) const { return m_given.count(name) != 0; }
  /// Every parameter by name.
  const std::map<std::string, ParamValue>& all() const { return m_values; }

 private:
  friend struct MergeMethod;
  const ParamValue& at(const std::string& name) const {
    const auto it = m_values.find(name);
    if (it == m_values.end()) throw InvalidArgument("ResolvedParams: no parameter '" + name + "'");
    return it->second;
  }
  std::map<std::string, ParamValue> m_values;
  std::set<std::string> m_given;
};

/// What a merge run needs besides the parameters: the tensor names in order, the number of
/// fine-tuned models, the per-name rules and the callbacks of the driver (driver.hpp).
template <typename Scalar>
struct MergeJob {
  std::vector<std::string> names;                      ///< tensors to merge, in this order
  Index numModels = 0;                                 ///< number of fine-tuned models
  MergeRules rules;                                    ///< which tensors are merged, averaged or kept
  typename TensorCallbacks<Scalar>::BaseFetch base;    ///< θ₀ of a tensor
  typename TensorCallbacks<Scalar>::ModelFetch model;  ///< θ_i of a tensor
  typename TensorCallbacks<Scalar>::Sink sink;         ///< receives θ₀ + Δ
};

/// One merge method of the registry: what it is, its parameters and how to run it.
struct MergeMethod {
  std::string name;                  ///< the config name (mergekit's where the method exists there)
  std::vector<std::string> aliases;  ///< other accepted names
  std::string title;                 ///< one line: what it computes
  std::string reference;             ///< the paper it implements
  std::vector<ParamSpec> params;     ///< its parameters (every method has the per-model `weight`)
  bool needsBase = true;             ///< merges task vectors θ_i − θ₀, so a base model is required
  bool elementwise = true;           ///< entry by entry (streams any tensor); false: spectral (2-D weights)
  bool continual = false;            ///< models merged one at a time with a state (OPCM)
  Index passes = 1;                  ///< passes over the task vectors of a tensor
  Index minModels = 1;               ///< fewest fine-tuned models accepted
  Index maxModels = std::numeric_limits<Index>::max();  ///< most fine-tuned models accepted
  /// Pairs of parameters that are two spellings of one setting: at most one of each may be given.
  std::vector<std::pair<std::string, std::string>> exclusive;

  /// The run for float tensors (what `run<float>` calls).
  MergeReport (*runFloat)(const ResolvedParams&, const MergeJob<float>&) = nullptr;
  /// The run for double tensors (what `run<double>` calls).
  MergeReport (*runDouble)(const ResolvedParams&, const MergeJob<double>&) = nullptr;
  /// Bytes the merger holds for one rows×cols tensor of `count` task vectors, for `bytesPerScalar` 4 or 8.
  std::size_t (*workingSet)(Index rows, Index cols, Index count, std::size_t bytesPerScalar) = nullptr;

  /// The parameter `name`, or nullptr.
  const ParamSpec* param(const std::string& pname) const {
    for (const auto& p : params)
      if (p.name == pname) return &p;
    return nullptr;
  }
  /// True when `n` is the name or an alias.
  bool answersTo(const std::string& n) const {
    if (n == name) return true;
    for (const auto& a : aliases)
      if (a == n) return true;
    return false;
  }
  /// The parameter names, comma separated.
  std::string paramNames() const {
    std::string s;
    for (const auto& p : params) s += (s.empty() ? "" : ", ") + p.name;
    return s;
  }
  /// The error-message prefix naming the method.
  std::string where() const { return "merge method '" + name + "'"; }

  /// Checks `given` (names, types, ranges, per-model lengths against `numModels`; `numModels` ≤ 0
  /// skips the model-count checks) and fills in the defaults. Errors (`InvalidArgument`) name the
  /// method, the parameter, the value and the expectation.
  ResolvedParams resolve(const MergeParams& given, Index numModels) const {
    const std::string w = where();
    if (numModels > 0) {
      const std::string range = maxModels == minModels ? "exactly " + std::to_string(minModels)
                                : maxModels == std::numeric_limits<Index>::max()
                                    ? "at least " + std::to_string(minModels)
                                    : std::to_string(minModels) + " to " + std::to_string(maxModels);
      requireArg(numModels >= minModels && numModels <= maxModels, w.c_str(), "number of models", numModels,
                 range + " fine-tuned model(s)");
    }
    ResolvedParams r;
    for (const auto& kv : given) {
      const ParamSpec* p = param(kv.first);
      if (!p)
        throw InvalidArgument(w + ": unknown parameter '" + kv.first + "'; expected " +
                              (params.empty() ? std::string("none") : "one of " + paramNames()));
      const ParamValue& v = kv.second;
      const char* pn = p->name.c_str();
      if (p->kind == ParamKind::PerModel) {
        // A single number stands for the same value for every model.
        ParamValue pv = v;
        if (v.kind == ParamKind::Scalar && numModels > 0) pv = ParamValue::perModel(std::vector<double>(std::size_t(numModels), v.value));
        requireArg(pv.kind == ParamKind::PerModel, w.c_str(), pn, v.kind == ParamKind::Bool ? std::string(v.value ? "true" : "false") : std::string("a number"),
                   "one number per model");
        if (numModels > 0)
          requireArg(Index(pv.values.size()) == numModels, w.c_str(), pn, std::to_string(pv.values.size()) + " values",
                     std::to_string(numModels) + " (one per model)");
        for (double x : pv.values) requireArg(std::isfinite(x) && (!p->valid || p->valid(x)), w.c_str(), pn, x, p->expected);
        r.m_values[p->name] = pv;
      } else if (p->kind == ParamKind::Bool) {
        requireArg(v.kind == ParamKind::Bool, w.c_str(), pn, v.kind == ParamKind::Scalar ? detail::describe(v.value) : std::string("a list"),
                   "true or false");
        r.m_values[p->name] = v;
      } else {
        requireArg(v.kind == ParamKind::Scalar, w.c_str(), pn, v.kind == ParamKind::Bool ? std::string(v.value ? "true" : "false") : std::string("a list"),
                   p->kind == ParamKind::Integer ? "an integer" : "a number");
        requireArg(std::isfinite(v.value) && (!p->valid || p->valid(v.value)), w.c_str(), pn, v.value, p->expected);
        r.m_values[p->name] = v;
      }
      r.m_given.insert(p->name);
    }
    for (const auto& e : exclusive)
      if (r.m_given.count(e.first) && r.m_given.count(e.second))
        throw InvalidArgument(w + ": parameters '" + e.first + "' and '" + e.second +
                              "' are both given; expected one of them (they set the same thing)");
    for (const auto& p : params) {
      if (r.m_values.count(p.name)) continue;
      if (p.kind == ParamKind::PerModel)
        r.m_values[p.name] = ParamValue::perModel(std::vector<double>(std::size_t(std::max<Index>(numModels, 0)), p.defaultValue));
      else if (p.kind == ParamKind::Bool) r.m_values[p.name] = ParamValue::flag(p.defaultValue != 0);
      else r.m_values[p.name] = ParamValue::number(p.defaultValue);
    }
    return r;
  }

  /// Validates `given` against `job.numModels`, builds the merger and runs it over `job`.
  template <typename Scalar>
  MergeReport run(const MergeParams& given, const MergeJob<Scalar>& job) const {
    const ResolvedParams r = resolve(given, job.numModels);
    if constexpr (std::is_same<Scalar, float>::value) return runFloat(r, job);
    else return runDouble(r, job);
  }
};

namespace detail {

/// The model fetch with the per-model weights applied: θ₀ + w_i (θ_i − θ₀) (unchanged when w_i = 1).
template <typename Scalar>
typename TensorCallbacks<Scalar>::ModelFetch weightedFetch(const ResolvedParams& p, const MergeJob<Scalar>& job) {
  const std::vector<double> w = p.perModel("weight");
  bool ones = true;
  for (double x : w) ones = ones && x == 1.0;
  if (ones) return job.model;
  auto model = job.model;
  auto base = job.base;
  return [w, model, base](Index i, const std::string& name) {
    MergeMatrix<Scalar> theta = model(i, name);
    const double wi = w[std::size_t(i)];
    if (wi != 1.0) {
      const MergeMatrix<Scalar> theta0 = base(name);
      if (theta.rows() == theta0.rows() && theta.cols() == theta0.cols())  // else the driver reports the mismatch
        theta = theta0 + Scalar(wi) * (theta - theta0);
    }
    return theta;
  };
}

/// Runs a per-tensor merger built by `Build::make<Scalar>(params)` through `ModelMerger`.
template <typename Build, typename Scalar>
MergeReport runTensorMethod(const ResolvedParams& p, const MergeJob<Scalar>& job) {
  auto merger = Build::template make<Scalar>(p);
  ModelMerger<decltype(merger)> mm(std::move(merger));
  mm.setRules(job.rules);
  return mm.merge(job.names, job.numModels, job.base, weightedFetch(p, job), job.sink);
}

template <typename Build>
std::size_t tensorWorkingSet(Index rows, Index cols, Index count, std::size_t bytesPerScalar) {
  using F = decltype(Build::template make<float>(std::declval<const ResolvedParams&>()));
  using D = decltype(Build::template make<double>(std::declval<const ResolvedParams&>()));
  return bytesPerScalar == sizeof(float) ? F::workingSetBytes(rows, cols, count) : D::workingSetBytes(rows, cols, count);
}

/// An entry for the per-tensor merger `Build::make` builds; passes and elementwise come from the merger.
template <typename Build>
MergeMethod tensorMethod(std::string name, std::vector<std::string> aliases, std::string title, std::string reference,
                         std::vector<ParamSpec> params, Index minModels = 1,
                         Index maxModels = std::numeric_limits<Index>::max()) {
  using D = decltype(Build::template make<double>(std::declval<const ResolvedParams&>()));
  MergeMethod m;
  m.name = std::move(name);
  m.aliases = std::move(aliases);
  m.title = std::move(title);
  m.reference = std::move(reference);
  m.params = std::move(params);
  m.params.push_back({"weight", ParamKind::PerModel, 1.0, "scales the model's task vector: theta_0 + weight (theta_i - theta_0)",
                      nullptr, "a finite number"});
  m.elementwise = D::kElementwise;
  m.passes = D::kPasses;
  m.minModels = minModels;
  m.maxModels = maxModels;
  m.runFloat = &runTensorMethod<Build, float>;
  m.runDouble = &runTensorMethod<Build, double>;
  m.workingSet = &tensorWorkingSet<Build>;
  return m;
}

inline bool finiteValue(double) { return true; }
inline bool unitOpenClosed(double x) { return x > 0 && x <= 1; }
inline bool unitClosedOpen(double x) { return x >= 0 && x < 1; }
inline bool unitClosed(double x) { return x >= 0 && x <= 1; }
inline bool seedValue(double x) { return x >= 0 && x <= 9007199254740992.0 && x == std::floor(x); }

struct BuildTaskArithmetic {
  template <typename S>
  static TaskArithmeticMerging<S> make(const ResolvedParams& p) {
    return TaskArithmeticMerging<S>().setScale(p.number("lambda"));
  }
};
struct BuildTies {
  template <typename S>
  static TiesMerging<S> make(const ResolvedParams& p) {
    return TiesMerging<S>().setDensity(p.number("density")).setScale(p.number("lambda"));
  }
};
struct BuildDare {
  template <typename S>
  static DareMerging<S> make(const ResolvedParams& p) {
    const double drop = p.given("density") ? 1.0 - p.number("density") : p.number("drop");
    return DareMerging<S>()
        .setDropRate(drop)
        .setScale(p.number("lambda"))
        .setSeed(std::uint64_t(p.number("seed")))
        .setRescale(p.flag("rescale"));
  }
};
struct BuildSlerp {
  template <typename S>
  static SlerpMerging<S> make(const ResolvedParams& p) {
    return SlerpMerging<S>().setT(p.number("t"));
  }
};
struct BuildModelStock {
  template <typename S>
  static ModelStockMerging<S> make(const ResolvedParams&) {
    return ModelStockMerging<S>();
  }
};
struct BuildIsoC {
  template <typename S>
  static IsoCMerging<S> make(const ResolvedParams& p) {
    return IsoCMerging<S>().setScale(p.number("alpha"));
  }
};
struct BuildIsoCts {
  template <typename S>
  static IsoCtsMerging<S> make(const ResolvedParams& p) {
    return IsoCtsMerging<S>().setScale(p.number("alpha")).setCommonFraction(p.number("common_fraction"));
  }
};
struct BuildTsv {
  template <typename S>
  static TsvMerging<S> make(const ResolvedParams& p) {
    return TsvMerging<S>().setScale(p.number("alpha"));
  }
};

/// OPCM through `OpcmMerging`: the models are added one at a time (τ_i = θ_i − θ₀), then
/// θ₀ + λS is written.
template <typename Scalar>
MergeReport runOpcm(const ResolvedParams& p, const MergeJob<Scalar>& job) {
  OpcmMerging<Scalar> cm;
  cm.setAlpha(p.number("alpha")).setRules(job.rules);
  const auto model = weightedFetch(p, job);
  std::size_t peak = 0;
  for (Index i = 0; i < job.numModels; ++i) {
    const MergeReport step = cm.addModel(job.names, [&](const std::string& name) {
      MergeMatrix<Scalar> theta = model(i, name);
      const MergeMatrix<Scalar> theta0 = job.base(name);
      checkShapeAgainst(theta.rows(), theta.cols(), theta0.rows(), theta0.cols(), "merge method 'opcm'",
                        "tensor '" + name + "' of model " + std::to_string(i), "its shape in the base model");
      theta -= theta0;
      return theta;
    });
    peak = std::max(peak, step.peakResidentBytes);
  }
  MergeReport rep = cm.writeMerged(job.base, job.sink);
  rep.peakResidentBytes = std::max(rep.peakResidentBytes, peak);
  return rep;
}

inline std::size_t opcmWorkingSet(Index rows, Index cols, Index, std::size_t bytesPerScalar) {
  // S, τ, θ, the projected τ and the thin factors U, V.
  return 6 * std::size_t(rows) * std::size_t(cols) * bytesPerScalar;
}

}  // namespace detail

/// Every merge method, in the order of the documentation.
inline const std::vector<MergeMethod>& mergeMethods() {
  using detail::tensorMethod;
  static const std::vector<MergeMethod> table = [] {
    std::vector<MergeMethod> t;
    const ParamSpec lambda{"lambda", ParamKind::Scalar, 1.0, "scale of the merged delta", nullptr, "a finite number"};
    t.push_back(tensorMethod<detail::BuildTaskArithmetic>(
        "task_arithmetic", {}, "delta = lambda * sum of the task vectors", "Ilharco et al., ICLR 2023", {lambda}));
    t.push_back(tensorMethod<detail::BuildTies>(
        "ties", {}, "trim each task vector to its top entries, elect a sign per entry, disjoint mean",
        "Yadav et al., NeurIPS 2023",
        {{"density", ParamKind::Scalar, 0.2, "fraction of entries kept per task vector", &detail::unitOpenClosed,
          "a value in (0, 1]"},
         lambda}));
    t.push_back(tensorMethod<detail::BuildDare>(
        "dare", {"dare_linear"}, "drop entries at random, rescale the survivors, lambda * sum",
        "Yu et al., ICML 2024",
        {{"drop", ParamKind::Scalar, 0.5, "probability p that an entry is dropped (or give density = 1 - p)",
          &detail::unitClosedOpen, "a value in [0, 1)"},
         {"density", ParamKind::Scalar, 0.5, "fraction of entries kept, 1 - p (mergekit's name; excludes drop)",
          &detail::unitOpenClosed, "a value in (0, 1]"},
         {"rescale", ParamKind::Bool, 1.0, "rescale the survivors by 1/(1 - p)", nullptr, "true or false"},
         {"seed", ParamKind::Integer, 0.0, "seed of the drop masks", &detail::seedValue, "an integer in [0, 2^53]"},
         lambda}));
    t.back().exclusive = {{"density", "drop"}};
    t.push_back(tensorMethod<detail::BuildSlerp>(
        "slerp", {}, "spherical interpolation of the two task vectors", "Shoemake 1985, as in mergekit",
        {{"t", ParamKind::Scalar, 0.5, "interpolation parameter (0: first model, 1: second)", &detail::unitClosed,
          "a value in [0, 1]"}},
        2, 2));
    t.push_back(tensorMethod<detail::BuildModelStock>(
        "model_stock", {}, "mean task vector scaled by a ratio from the mean pairwise cosine",
        "Jang et al., ECCV 2024", {}, 2));
    t.push_back(tensorMethod<detail::BuildIsoC>(
        "iso_c", {}, "sum of the task vectors with its spectrum flattened to the mean singular value",
        "Marczak et al. 2025",
        {{"alpha", ParamKind::Scalar, 1.0, "scale of the merged delta", nullptr, "a finite number"}}));
    t.push_back(tensorMethod<detail::BuildIsoCts>(
        "iso_cts", {}, "common subspace plus per-task subspaces, isotropic spectrum", "Marczak et al. 2025",
        {{"alpha", ParamKind::Scalar, 1.0, "scale of the merged delta", nullptr, "a finite number"},
         {"common_fraction", ParamKind::Scalar, 0.8, "fraction of the directions taken from the common subspace",
          &detail::unitClosed, "a value in [0, 1]"}}));
    t.push_back(tensorMethod<detail::BuildTsv>(
        "tsv", {"tsv_m"}, "top singular triplets of each task, orthogonalised jointly", "Gargiulo et al., CVPR 2025",
        {{"alpha", ParamKind::Scalar, 1.0, "scale of the merged delta", nullptr, "a finite number"}}));
    MergeMethod opcm;
    opcm.name = "opcm";
    opcm.title = "continual: each model's task vector projected away from the merged subspace, adaptive scale";
    opcm.reference = "Tang et al. 2025";
    opcm.params = {{"alpha", ParamKind::Scalar, 0.5, "fraction of the sum of singular values that defines the protected top block",
                    &detail::unitClosed, "a value in [0, 1]"},
                   {"weight", ParamKind::PerModel, 1.0,
                    "scales the model's task vector: theta_0 + weight (theta_i - theta_0)", nullptr, "a finite number"}};
    opcm.elementwise = false;
    opcm.continual = true;
    opcm.passes = 1;
    opcm.runFloat = &detail::runOpcm<float>;
    opcm.runDouble = &detail::runOpcm<double>;
    opcm.workingSet = &detail::opcmWorkingSet;
    t.push_back(std::move(opcm));
    return t;
  }();
  return table;
}

/// The names of every method, separated by `sep`.
inline std::string mergeMethodNames(const std::string& sep = ", ") {
  std::string s;
  for (const auto& m : mergeMethods()) s += (s.empty() ? "" : sep) + m.name;
  return s;
}

/// The method named `name` (or one of its aliases), or nullptr.
inline const MergeMethod* findMergeMethod(const std::string& name) {
  for (const auto& m : mergeMethods())
    if (m.answersTo(name)) return &m;
  return nullptr;
}

/// The method named `name` (or one of its aliases); `InvalidArgument` listing the methods otherwise.
inline const MergeMethod& mergeMethod(const std::string& name) {
  if (const MergeMethod* m = findMergeMethod(name)) return *m;
  throw InvalidArgument("mergeMethod: argument 'name' = '" + name + "'; expected one of " + mergeMethodNames());
}

}  // namespace wproj
