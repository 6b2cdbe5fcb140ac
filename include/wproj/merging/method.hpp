// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// What a merge method is, independent of any particular method: its typed parameters
/// (`ParamSpec`, `ParamValue`, validated into `ResolvedParams`), the whole-model job it runs
/// (`MergeJob`, through the driver of driver.hpp) and the per-tensor form front ends such as
/// `wproj merge` use (`TensorMergeParams`, `TensorMergeInputs`): the parameters that hold for
/// one tensor — mergekit evaluates gradients and filters per tensor, so `weight`, `density`, `t`
/// … may differ from one tensor to the next — and the fetches of that tensor in the base and in
/// each model. The table of methods is registry.hpp.

#include "../core/config.hpp"
#include "driver.hpp"
#include "report.hpp"
#include "task_vectors.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace wproj {

/// The parameter values that hold for one tensor: method-level ones (`lambda`, `t`, `normalize`
/// as 0/1 …) in `global`, and one map per model (in the order of the models, the base excluded)
/// for the per-model ones (`weight`, `density`, `epsilon`, `gamma` …). Every parameter of the
/// method is present (given or defaulted); the front end evaluated gradients and filters for
/// this tensor's name and layer.
struct TensorMergeParams {
  std::map<std::string, double> global;               ///< method-level values
  std::vector<std::map<std::string, double>> models;  ///< per-model values, one map per model

  /// The global value `name`; `InvalidArgument` naming it when absent.
  double at(const std::string& name) const {
    const auto it = global.find(name);
    if (it == global.end()) throw InvalidArgument("TensorMergeParams: no global parameter '" + name + "'");
    return it->second;
  }
  /// The value `name` of model `i`; `InvalidArgument` naming both when absent.
  double at(std::size_t i, const std::string& name) const {
    if (i >= models.size()) throw InvalidArgument("TensorMergeParams: no model " + std::to_string(i));
    const auto it = models[i].find(name);
    if (it == models[i].end())
      throw InvalidArgument("TensorMergeParams: no parameter '" + name + "' for model " + std::to_string(i));
    return it->second;
  }
};

/// One tensor to merge: its name, the number of models, and fetches of the base tensor and of
/// each model's tensor. A fetch may be called more than once (once per pass of a streaming
/// method); inputs are memory-mapped, so a second read costs no memory. Shapes are the
/// method's to check (errors name the tensor and the model).
template <typename Scalar>
struct TensorMergeInputs {
  std::string name;                                     ///< the tensor's name (errors, seeding)
  Index numModels = 0;                                  ///< models other than the base
  bool hasBase = false;                                 ///< a base model was given
  std::function<MergeMatrix<Scalar>()> base;            ///< θ_base (when hasBase)
  std::function<MergeMatrix<Scalar>(Index i)> model;    ///< θ_i, i in [0, numModels)
  std::uint64_t seed = 0;                               ///< the merge's seed; random masks also mix in the name and model
};

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
  bool required = false;        ///< must be given (mergekit's `required=True`: no default applies)
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

  /// The values of one tensor as resolved parameters (every value counts as given): global ones
  /// as numbers, per-model ones as one number per model. For running a whole-model merger with
  /// the parameters that hold for one tensor.
  static ResolvedParams fromTensor(const TensorMergeParams& t) {
    ResolvedParams r;
    for (const auto& kv : t.global) {
      r.m_values[kv.first] = ParamValue::number(kv.second);
      r.m_given.insert(kv.first);
    }
    for (std::size_t i = 0; i < t.models.size(); ++i)
      for (const auto& kv : t.models[i]) {
        ParamValue& v = r.m_values[kv.first];
        if (v.kind != ParamKind::PerModel || v.values.size() != t.models.size())
          v = ParamValue::perModel(std::vector<double>(t.models.size(), 0.0));
        r.m_given.insert(kv.first);
      }
    for (std::size_t i = 0; i < t.models.size(); ++i)
      for (const auto& kv : t.models[i]) r.m_values[kv.first].values[i] = kv.second;
    return r;
  }

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
  std::uint64_t seed = 0;                              ///< seed of the random methods (per-tensor runs)
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
  /// Row i of the merged tensor depends only on row i of the inputs (and on per-tensor
  /// parameters): a front end may merge row blocks of one tensor on several cores and get the
  /// same bits as the whole tensor.
  bool rowSeparable = false;
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
  /// A base model may be given (false: the method never reads one, and a config naming one is refused).
  bool acceptsBase = true;
  /// The method draws random masks (DARE, DELLA): its results depend on `TensorMergeInputs::seed`.
  bool randomized = false;
  /// The per-tensor form for float tensors: the merged θ of one tensor from the parameters that
  /// hold for that tensor (`TensorMergeParams`, gradients and filters already evaluated by the
  /// front end). What `wproj merge` runs for every method but the continual ones.
  MergeMatrix<float> (*tensorFloat)(const TensorMergeParams&, const TensorMergeInputs<float>&) = nullptr;
  /// The per-tensor form for double tensors.
  MergeMatrix<double> (*tensorDouble)(const TensorMergeParams&, const TensorMergeInputs<double>&) = nullptr;

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
      if (p.required)
        throw InvalidArgument(w + ": parameter '" + p.name + "' is not given; expected " +
                              (p.kind == ParamKind::PerModel ? "a value for every model (it has no default)" : "a value (it has no default)"));
      if (p.kind == ParamKind::PerModel)
        r.m_values[p.name] = ParamValue::perModel(std::vector<double>(std::size_t(std::max<Index>(numModels, 0)), p.defaultValue));
      else if (p.kind == ParamKind::Bool) r.m_values[p.name] = ParamValue::flag(p.defaultValue != 0);
      else r.m_values[p.name] = ParamValue::number(p.defaultValue);
    }
    return r;
  }

  /// True when the method has the per-tensor form (`mergeTensor`).
  bool hasTensorForm() const { return tensorFloat != nullptr && tensorDouble != nullptr; }

  /// The per-tensor values of `r` (validated, defaults filled in) for `numModels` models: Scalar,
  /// Integer and Bool parameters in `global` (Bool as 0/1), PerModel ones in each model's map.
  static TensorMergeParams tensorParams(const ResolvedParams& r, Index numModels) {
    TensorMergeParams t;
    t.models.resize(std::size_t(std::max<Index>(numModels, 0)));
    for (const auto& kv : r.all()) {
      if (kv.second.kind == ParamKind::PerModel) {
        for (std::size_t i = 0; i < t.models.size() && i < kv.second.values.size(); ++i) t.models[i][kv.first] = kv.second.values[i];
      } else {
        t.global[kv.first] = kv.second.value;
      }
    }
    return t;
  }

  /// Merges one tensor with the per-tensor form. `InvalidArgument` when the method has none.
  template <typename Scalar>
  MergeMatrix<Scalar> mergeTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) const {
    if (!hasTensorForm()) throw InvalidArgument(where() + ": merges whole models only (no per-tensor form)");
    if constexpr (std::is_same<Scalar, float>::value) return tensorFloat(p, in);
    else return tensorDouble(p, in);
  }

  /// Validates `given` against `job.numModels`, builds the merger and runs it over `job`.
  template <typename Scalar>
  MergeReport run(const MergeParams& given, const MergeJob<Scalar>& job) const {
    const ResolvedParams r = resolve(given, job.numModels);
    if (std::is_same<Scalar, float>::value ? runFloat == nullptr : runDouble == nullptr) return runTensorwise(r, job);
    if constexpr (std::is_same<Scalar, float>::value) return runFloat(r, job);
    else return runDouble(r, job);
  }

  /// Runs the per-tensor form over every tensor of `job` with the same parameters for all
  /// (what `run` does for a method without a whole-model run). The rules decide per tensor:
  /// Project → the method; Average → the mean of the models' tensors; Skip → the base tensor
  /// (the first model's without a base).
  template <typename Scalar>
  MergeReport runTensorwise(const ResolvedParams& r, const MergeJob<Scalar>& job) const {
    const TensorMergeParams tp = tensorParams(r, job.numModels);
    MergeReport rep;
    rep.method = name + ", " + std::to_string(job.numModels) + " models";
    Index index = 0;
    for (const auto& n : job.names) {
      TensorReport tr;
      tr.name = n;
      tr.index = index++;
      TensorMergeInputs<Scalar> in;
      in.name = n;
      in.numModels = job.numModels;
      in.seed = job.seed;
      in.hasBase = static_cast<bool>(job.base);
      if (in.hasBase) in.base = [&job, &n]() { return job.base(n); };
      in.model = [&job, &n](Index i) { return job.model(i, n); };
      MergeMatrix<Scalar> first = in.hasBase ? in.base() : in.model(0);
      tr.rows = first.rows();
      tr.cols = first.cols();
      const RuleDecision d = job.rules.decide(n, tr.rows, tr.cols, elementwise);
      tr.action = first.size() == 0 ? TensorAction::Skip : d.action;
      tr.rule = first.size() == 0 ? std::string("empty tensor") : d.rule;
      MergeMatrix<Scalar> out;
      if (tr.action == TensorAction::Skip) {
        tr.method = "skipped (base kept)";
        out = std::move(first);
      } else if (tr.action == TensorAction::Average) {
        tr.method = "mean of the models";
        out = MergeMatrix<Scalar>::Zero(tr.rows, tr.cols);
        for (Index i = 0; i < job.numModels; ++i) {
          const MergeMatrix<Scalar> t = in.model(i);
          detail::checkShapeAgainst(t.rows(), t.cols(), tr.rows, tr.cols, where(),
                            "tensor '" + n + "' of model " + std::to_string(i), "its shape in the first input");
          out += t;
        }
        out /= Scalar(job.numModels);
      } else {
        tr.method = name;
        out = mergeTensor(tp, in);
      }
      rep.peakResidentBytes = std::max(rep.peakResidentBytes, std::size_t(3) * std::size_t(first.size()) * sizeof(Scalar));
      job.sink(n, out);
      rep.tensors.push_back(std::move(tr));
    }
    return rep;
  }
};

}  // namespace wproj
