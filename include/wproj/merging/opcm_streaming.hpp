// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// OPCM (Tang et al. 2025, see opcm.hpp) over a whole set of checkpoints in constant memory:
/// tensor by tensor instead of model by model. `OpcmMerging` keeps one model's worth of
/// accumulators in memory between arrivals; when all models are at hand, one tensor's
/// accumulator S needs only that tensor of every model, and λ = mean_t ‖τ_t‖ / ‖S‖ needs the
/// global norms only. So:
///
///   pass 1, for each tensor: S over the models in their order (OPCM's projections), added to the
///           global norms ‖τ_t‖² and ‖S‖², and S handed to a `SpillStore`;
///   pass 2, for each tensor: θ₀ + λ S, with S read back from the store.
///
/// Resident at once: θ₀, one θ_t, S and the SVD of S of one tensor. The result is the bits of
/// `OpcmMerging::addModel` over the models followed by `writeMerged`.

#include "../core/config.hpp"
#include "opcm.hpp"
#include "report.hpp"
#include "task_vectors.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace wproj {

/// Where a two-pass streaming merge keeps the first pass's per-tensor results until the second
/// pass reads them back (each exactly once). `MemorySpillStore` keeps them in memory;
/// `io::SpillFile` (io/spill_file.hpp) in an unnamed temporary file.
class SpillStore {
 public:
  virtual ~SpillStore() = default;
  /// Stores `bytes` bytes and returns the handle that reads them back.
  virtual std::uint64_t put(const void* data, std::size_t bytes) = 0;
  /// Copies the `bytes` bytes stored under `handle` to `out`.
  virtual void get(std::uint64_t handle, void* out, std::size_t bytes) const = 0;
};

/// A `SpillStore` in memory (for models whose accumulators fit in RAM).
class MemorySpillStore : public SpillStore {
 public:
  std::uint64_t put(const void* data, std::size_t bytes) override {
    const char* c = static_cast<const char*>(data);
    m_blocks.emplace_back(c, c + bytes);
    return std::uint64_t(m_blocks.size() - 1);
  }
  void get(std::uint64_t handle, void* out, std::size_t bytes) const override {
    requireArg(handle < m_blocks.size(), "MemorySpillStore::get", "handle", handle, "a handle returned by put");
    requireArg(m_blocks[std::size_t(handle)].size() == bytes, "MemorySpillStore::get", "bytes", bytes,
               "the stored size " + std::to_string(m_blocks[std::size_t(handle)].size()));
    if (bytes) std::memcpy(out, m_blocks[std::size_t(handle)].data(), bytes);
  }

 private:
  std::vector<std::vector<char>> m_blocks;
};

/// What `opcmMergeStreaming` did: the per-tensor report and the adaptive scale λ.
struct OpcmStreamingResult {
  MergeReport report;  ///< one entry per tensor, in the order given (action, method, split rank, ‖Δ‖)
  double scale = 0;    ///< λ = mean_t ‖τ_t‖ / ‖S‖ (0 when S = 0)
};

/// OPCM of `numModels` models over the tensors `names`, tensor by tensor in two passes (see the
/// file comment). `base(name)` gives θ₀, `model(t, name)` θ_t of model t in [0, numModels) (called
/// once per tensor and model, in model order), `sink(name, θ)` receives θ₀ + λS in the order of
/// `names`. `rules` decides which tensors are projected (default: 2-D weights), averaged
/// unprojected or skipped (then θ₀ is written; only the first model is fetched, for the shape). `progress`, when
/// set, is told after each tensor of each pass (name, pass 0 or 1). Errors: `InvalidArgument`
/// for bad arguments or a shape that differs between base and models (naming tensor and model);
/// `NumericalError` for a non-finite merged tensor — nothing is handed to the sink before pass 2.
template <typename Scalar>
OpcmStreamingResult opcmMergeStreaming(
    const std::vector<std::string>& names, Index numModels, double alpha, const MergeRules& rules,
    const std::function<MergeMatrix<Scalar>(const std::string&)>& base,
    const std::function<MergeMatrix<Scalar>(Index, const std::string&)>& model,
    const std::function<void(const std::string&, const MergeMatrix<Scalar>&)>& sink, SpillStore& spill,
    const std::function<void(const std::string&, int)>& progress = {}) {
  using Matrix = MergeMatrix<Scalar>;
  const char* where = "opcmMergeStreaming";
  requireArg(numModels >= 1, where, "numModels", numModels, ">= 1");
  requireArg(alpha >= 0 && alpha <= 1, where, "alpha", alpha, "a value in [0, 1]");
  requireArg(static_cast<bool>(base) && static_cast<bool>(model) && static_cast<bool>(sink), where, "callbacks",
             "an empty std::function", "callable base, model and sink");
  OpcmStreamingResult out;
  out.report.method = "opcm (alpha=" + detail::describe(alpha) + "), " + std::to_string(numModels) + " models, streamed";
  std::vector<double> normSq(std::size_t(numModels), 0.0);
  double sumSq = 0;
  std::vector<std::uint64_t> handle(names.size(), 0);
  std::vector<char> merged(names.size(), 0);
  std::size_t peak = 0;
  for (std::size_t k = 0; k < names.size(); ++k) {
    const std::string& n = names[k];
    OpcmMerging<Scalar> cm;
    cm.setAlpha(alpha).setRules(rules);
    TensorReport tr;
    Matrix theta0;
    std::vector<double> tensorNorm(std::size_t(numModels), 0.0);
    for (Index t = 0; t < numModels; ++t) {
      const MergeReport step = cm.addModel({n}, [&](const std::string& name) {
        if (t == 0) theta0 = base(name);
        Matrix theta = model(t, name);
        if (theta.rows() != theta0.rows() || theta.cols() != theta0.cols())
          throw InvalidArgument(std::string(where) + ": tensor '" + name + "' of model " + std::to_string(t) + " is " +
                                std::to_string(theta.rows()) + "x" + std::to_string(theta.cols()) + ", the base's is " +
                                std::to_string(theta0.rows()) + "x" + std::to_string(theta0.cols()));
        theta -= theta0;
        return theta;
      });
      tr = step.tensors.front();
      if (tr.action == TensorAction::Skip) break;  // decided on the first model: nothing to add
      tensorNorm[std::size_t(t)] = tr.taskNormMean;  // ‖τ_t‖ of this tensor
    }
    tr.index = Index(k);
    tr.taskNormMean = 0;
    out.report.tensors.push_back(tr);
    if (tr.action != TensorAction::Skip) {
      // The global norms, over the merged tensors only, summed in the order OpcmMerging sums them.
      merged[k] = 1;
      for (Index t = 0; t < numModels; ++t) {
        normSq[std::size_t(t)] += tensorNorm[std::size_t(t)] * tensorNorm[std::size_t(t)];
        tr.taskNormMean += tensorNorm[std::size_t(t)] / double(numModels);
      }
      const Matrix& s = cm.accumulator(n);
      sumSq += double(s.squaredNorm());
      handle[k] = spill.put(s.data(), std::size_t(s.size()) * sizeof(Scalar));
      peak = std::max(peak, std::size_t(3 * s.size()) * sizeof(Scalar));
    }
    if (progress) progress(n, 0);
  }
  double meanNorm = 0;
  for (double v : normSq) meanNorm += std::sqrt(v);
  meanNorm /= double(numModels);
  out.scale = sumSq > 0 ? meanNorm / std::sqrt(sumSq) : 0.0;
  for (std::size_t k = 0; k < names.size(); ++k) {
    const std::string& n = names[k];
    Matrix theta = base(n);
    TensorReport& tr = out.report.tensors[k];
    if (merged[k]) {
      Matrix s(theta.rows(), theta.cols());
      spill.get(handle[k], s.data(), std::size_t(s.size()) * sizeof(Scalar));
      theta += Scalar(out.scale) * s;
      tr.deltaNorm = double(Scalar(out.scale)) * double(s.norm());
    } else {
      tr.deltaNorm = 0;
    }
    if (!theta.allFinite()) throw NumericalError(std::string(where) + ": the merged tensor '" + n + "' has non-finite entries");
    sink(n, theta);
    if (progress) progress(n, 1);
  }
  if (out.scale == 0) out.report.warnings.push_back("the merged delta is zero: scale set to 0 (merged model = base)");
  out.report.peakResidentBytes = peak;
  return out;
}

}  // namespace wproj
