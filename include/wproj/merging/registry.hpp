// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The table of merge methods: for every method its name (as in configs, mergekit's where the
/// method exists there), its typed parameters with defaults, ranges and meaning, whether it needs
/// or accepts a base model, whether it is elementwise or spectral, its number of passes and the
/// number of models it accepts, its per-tensor form (what `wproj merge` runs: mergekit's methods
/// of task_arithmetic_family.hpp and interpolation.hpp, and wproj's per-tensor mergers of
/// baselines.hpp and spectral.hpp) and a whole-model run (`MergeMethod::run`; `OpcmMerging` for
/// OPCM). Front ends (the `wproj merge` command, its documentation) read their method names,
/// defaults and messages from here.
///
/// \code
/// const wproj::MergeMethod& ties = wproj::mergeMethod("ties");
/// wproj::MergeParams params{{"density", wproj::ParamValue::number(0.3)}, {"weight", wproj::ParamValue::number(1.0)}};
/// wproj::MergeJob<float> job{names, /*numModels=*/3, wproj::MergeRules(), base, model, sink};
/// wproj::MergeReport report = ties.run(params, job);   // defaults for the parameters not given
/// \endcode

#include "../core/config.hpp"
#include "baselines.hpp"
#include "driver.hpp"
#include "method.hpp"
#include "opcm.hpp"
#include "report.hpp"
#include "spectral.hpp"
#include "interpolation.hpp"
#include "task_arithmetic_family.hpp"

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

/// The per-tensor form of a merger built by `Build::make<Scalar>`: the merger gets the values
/// that hold for this tensor; the weighted task vectors θ₀ + w_i(θ_i − θ₀) − θ₀ stream through
/// its accumulator (two passes for two-pass methods, each θ_i fetched again); returns θ₀ + Δ.
template <typename Build, typename Scalar>
MergeMatrix<Scalar> tensorFormOf(const TensorMergeParams& tp, const TensorMergeInputs<Scalar>& in) {
  const std::string where = "merge of tensor '" + in.name + "'";
  requireArg(in.hasBase && static_cast<bool>(in.base), where.c_str(), "base model", "none", "a base model (the method merges task vectors)");
  requireArg(in.numModels >= 1 && static_cast<bool>(in.model), where.c_str(), "numModels", in.numModels, ">= 1 model");
  const ResolvedParams p = ResolvedParams::fromTensor(tp);
  const auto merger = Build::template make<Scalar>(p);
  MergeMatrix<Scalar> theta0 = in.base();
  std::vector<double> w(std::size_t(in.numModels), 1.0);
  for (std::size_t i = 0; i < w.size() && i < tp.models.size(); ++i) {
    const auto it = tp.models[i].find("weight");
    if (it != tp.models[i].end()) w[i] = it->second;
  }
  auto tau = [&](Index i) {
    MergeMatrix<Scalar> theta = in.model(i);
    checkShapeAgainst(theta.rows(), theta.cols(), theta0.rows(), theta0.cols(), where.c_str(),
                      "tensor '" + in.name + "' of model " + std::to_string(i), "its shape in the base model");
    theta -= theta0;
    if (w[std::size_t(i)] != 1.0) theta *= Scalar(w[std::size_t(i)]);
    return theta;
  };
  if (theta0.size() == 0) return theta0;
  auto acc = merger.begin(theta0.rows(), theta0.cols(), in.numModels, nullptr);
  const MergeMatrix<Scalar> delta = drain(acc, tau);
  if (!delta.allFinite()) throw NumericalError(where + ": non-finite merged delta");
  theta0 += delta;
  return theta0;
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
  m.tensorFloat = &tensorFormOf<Build, float>;
  m.tensorDouble = &tensorFormOf<Build, double>;
  m.workingSet = &tensorWorkingSet<Build>;
  return m;
}

inline bool finiteValue(double) { return true; }
inline bool unitOpenClosed(double x) { return x > 0 && x <= 1; }
inline bool unitClosedOpen(double x) { return x >= 0 && x < 1; }
inline bool unitClosed(double x) { return x >= 0 && x <= 1; }
inline bool seedValue(double x) { return x >= 0 && x <= 9007199254740992.0 && x == std::floor(x); }

struct BuildSlerp {
  template <typename S>
  static SlerpMerging<S> make(const ResolvedParams& p) {
    return SlerpMerging<S>().setT(p.number("t"));
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
    // mergekit's methods, with mergekit's names, parameters and defaults.
    for (auto& m : detail::taskArithmeticFamilyMethods()) t.push_back(std::move(m));
    for (auto& m : detail::interpolationMethods()) t.push_back(std::move(m));
    for (auto& m : t)
      if (m.name == "dare_linear") m.aliases.push_back("dare");  // the name of wproj 0.1.0
    // wproj's own: spherical interpolation of task vectors, the spectral and continual methods.
    t.push_back(tensorMethod<detail::BuildSlerp>(
        "task_slerp", {}, "spherical interpolation of the two task vectors, added to the base", "Shoemake 1985",
        {{"t", ParamKind::Scalar, 0.5, "interpolation parameter (0: first model, 1: second)", &detail::unitClosed,
          "a value in [0, 1]"}},
        2, 2));
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
