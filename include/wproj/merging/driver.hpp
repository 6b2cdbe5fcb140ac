// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The model-level driver: walks a list of tensor names one tensor at a time, asks the caller for
/// the base tensor θ₀ and each fine-tuned tensor θ_i of that name on demand, applies the per-name
/// rule (project / average / skip) with any per-tensor merger of baselines.hpp or spectral.hpp,
/// hands θ₀ + Δ to a sink and records what it did. Only the tensors of one name are resident
/// at a time, and of those only a fixed number whatever the number of models: θ₀, one task
/// vector at a time and the merger's streaming state (task_vectors.hpp) — a running sum, or
/// per-task factors of fixed total size. Methods with two passes fetch each fine-tuned tensor
/// twice, which costs nothing extra when the inputs are memory-mapped. For models arriving one
/// at a time use `OpcmMerging` (opcm.hpp), which has the same callback style.

#include "../core/config.hpp"
#include "report.hpp"
#include "task_vectors.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <functional>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

namespace wproj {

namespace detail {
/// True when Merger has the streaming form (`begin(rows, cols, count, report)`).
template <typename Merger, typename = void>
struct HasStreamingForm : std::false_type {};
template <typename Merger>
struct HasStreamingForm<Merger, std::void_t<decltype(std::declval<const Merger&>().begin(
                                    Index(1), Index(1), Index(1), static_cast<TensorReport*>(nullptr)))>> : std::true_type {};
}  // namespace detail

/// Callback types of the drivers, for tensors of scalar type Scalar.
template <typename Scalar>
struct TensorCallbacks {
  /// Dense matrix type of the tensors.
  using Matrix = MergeMatrix<Scalar>;
  /// θ₀ of a tensor.
  using BaseFetch = std::function<Matrix(const std::string& name)>;
  /// θ_i of a tensor, for fine-tuned model i in [0, numModels); called once per pass of the merger.
  using ModelFetch = std::function<Matrix(Index model, const std::string& name)>;
  /// Receives a merged tensor θ₀ + Δ.
  using Sink = std::function<void(const std::string& name, const Matrix& tensor)>;
};

/// Merges T fine-tuned models at once with a per-tensor merger `Merger` (TaskArithmeticMerging,
/// TiesMerging, DareMerging, SlerpMerging, ModelStockMerging, IsoCMerging, IsoCtsMerging, TsvMerging).
///
/// For each name (in the order given): fetch θ₀, decide the action with the rules, then stream
/// τ_i = θ_i − θ₀ (shapes checked, with the tensor and model named in the error) one at a time
/// into the merger's accumulator: Project → Δ = the merger's result (the same bits as
/// `merger.mergeDelta(τ)`); Average → Δ = mean_i τ_i (a running sum); Skip → Δ = 0 (the
/// fine-tuned tensors are not even fetched). The sink receives θ₀ + Δ. Every tensor appears in
/// the report; a tensor with no elements is passed to the sink unchanged (action Skip, rule
/// "empty tensor"); `peakResidentBytes` is θ₀ plus the merger's `workingSetBytes` for the largest
/// tensor, which does not depend on T. A merger without a streaming form (only `mergeDelta`)
/// is fed the T task vectors at once.
///
/// \code
/// // base, models: std::map<std::string, Eigen::MatrixXf> of θ₀ and of each θ_i, by tensor name.
/// wproj::ModelMerger<wproj::TiesMerging<float>> mm(wproj::TiesMerging<float>().setDensity(0.2));
/// std::map<std::string, Eigen::MatrixXf> merged;
/// wproj::MergeReport report = mm.merge(
///     names, Index(models.size()), [&](const std::string& n) { return base.at(n); },
///     [&](Index i, const std::string& n) { return models[i].at(n); },
///     [&](const std::string& n, const Eigen::MatrixXf& t) { merged[n] = t; });
/// \endcode
template <typename Merger>
class ModelMerger {
 public:
  /// Scalar type of the merger and the tensors.
  using Scalar = typename Merger::Scalar;
  /// Dense matrix type of the tensors.
  using Matrix = MergeMatrix<Scalar>;
  /// The callback types `merge()` takes.
  using Callbacks = TensorCallbacks<Scalar>;

  /// A driver for `merger`, with the default rules.
  explicit ModelMerger(Merger merger = Merger()) : m_merger(std::move(merger)) {}

  /// Per-name rules deciding which tensors are projected, averaged or skipped.
  ModelMerger& setRules(const MergeRules& rules) {
    m_rules = rules;
    return *this;
  }
  /// The per-tensor merger.
  const Merger& merger() const { return m_merger; }
  /// The per-tensor merger, to change its settings in place.
  Merger& merger() { return m_merger; }

  /// Runs the merge. `numModels` ≥ 1 fine-tuned models.
  MergeReport merge(const std::vector<std::string>& names, Index numModels, const typename Callbacks::BaseFetch& base,
                    const typename Callbacks::ModelFetch& model, const typename Callbacks::Sink& sink) const {
    requireArg(numModels >= 1, "ModelMerger::merge", "numModels", numModels, ">= 1");
    requireArg(static_cast<bool>(base) && static_cast<bool>(model) && static_cast<bool>(sink), "ModelMerger::merge",
               "callbacks", "an empty std::function", "three callables (base, model, sink)");
    {
      std::unordered_set<std::string> seen;
      for (const auto& n : names)
        if (!seen.insert(n).second) throw InvalidArgument("ModelMerger::merge: tensor name '" + n + "' appears twice");
    }
    MergeReport rep;
    rep.method = m_merger.describe() + ", " + std::to_string(numModels) + " models";
    Index index = 0;
    for (const auto& name : names) {
      TensorReport tr;
      tr.name = name;
      tr.index = index++;
      Matrix theta0 = base(name);
      tr.rows = theta0.rows();
      tr.cols = theta0.cols();
      if (theta0.size() == 0) {
        // Nothing to merge: an empty tensor passes through unchanged (fine-tuned ones not fetched).
        tr.action = TensorAction::Skip;
        tr.rule = "empty tensor";
        tr.method = "empty (copied from the base)";
        sink(name, theta0);
        rep.tensors.push_back(std::move(tr));
        continue;
      }
      const RuleDecision d = m_rules.decide(name, tr.rows, tr.cols, m_merger.elementwise());
      tr.action = d.action;
      tr.rule = d.rule;
      std::size_t resident = std::size_t(theta0.size()) * sizeof(Scalar);
      if (d.action == TensorAction::Skip) {
        tr.method = "skipped (base kept)";
        sink(name, theta0);
      } else {
        auto tau = [&](Index i) {
          Matrix theta = model(i, name);
          detail::checkShapeAgainst(theta.rows(), theta.cols(), tr.rows, tr.cols, "ModelMerger::merge",
                                    "tensor '" + name + "' of model " + std::to_string(i), "its shape in the base model");
          theta -= theta0;
          return theta;
        };
        Matrix delta;
        if (d.action == TensorAction::Project) {
          if constexpr (detail::HasStreamingForm<Merger>::value) {
            auto acc = m_merger.begin(tr.rows, tr.cols, numModels, &tr);
            delta = detail::drain(acc, tau);
            resident += m_merger.workingSetBytes(tr.rows, tr.cols, numModels);
          } else {
            std::vector<Matrix> taus;
            for (Index i = 0; i < numModels; ++i) taus.push_back(tau(i));
            delta = m_merger.mergeDelta(taus, &tr);
            resident += std::size_t(numModels + 1) * std::size_t(theta0.size()) * sizeof(Scalar);
          }
        } else {
          detail::SumAccumulator<Scalar> acc("ModelMerger::merge", "mean of task vectors", tr.rows, tr.cols, numModels,
                                             &tr, 1.0, true);
          delta = detail::drain(acc, tau);
          resident += acc.workingSetBytes(tr.rows, tr.cols, numModels);
        }
        if (!delta.allFinite()) throw NumericalError("ModelMerger::merge: non-finite merged delta for tensor '" + name + "'");
        tr.deltaNorm = double(delta.norm());
        theta0 += delta;
        sink(name, theta0);
      }
      rep.peakResidentBytes = std::max(rep.peakResidentBytes, resident);
      rep.tensors.push_back(std::move(tr));
    }
    return rep;
  }

 private:
  Merger m_merger;
  MergeRules m_rules;
};

}  // namespace wproj
