// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Task vectors τ_i = θ_i − θ₀ (Ilharco et al. 2023), the checks every merger runs on them, and
/// the streaming protocol the per-tensor mergers share.
/// A tensor of any rank is handled as a matrix: 2-D weights as (out, in), anything else
/// flattened by the caller (a bias as n×1, a convolution kernel as out×(in·kh·kw), …).
///
/// **Streaming.** Every per-tensor merger `M` (baselines.hpp, spectral.hpp) has, besides its
/// batch `mergeDelta(std::vector<Matrix>)`, a streaming form that holds a fixed number of
/// tensor-sized buffers whatever the number T of task vectors:
///
///     auto acc = merger.begin(rows, cols, T, &report);      // M::Accumulator
///     for (Index pass = 0; pass < acc.passes(); ++pass)     // 1 or 2 passes (M::passes())
///       for (Index i = 0; i < T; ++i) acc.add(pass, i, tau(i));
///     Matrix delta = acc.finish();
///
/// Task vectors arrive in order (pass 0: τ_0 … τ_{T−1}, then pass 1 again, …) and each pass must
/// present the same task vectors; `detail::drain(acc, fetch)` runs that loop. The batch
/// `mergeDelta` is this loop over the vector, so the two forms give bit-identical results.
/// `M::workingSetBytes(rows, cols, T)` is the memory the streaming form holds for one tensor.

#include "../core/config.hpp"
#include "report.hpp"

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace wproj {

/// The dense matrix type the mergers of Scalar work with.
template <typename Scalar>
using MergeMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

namespace detail {

/// The one shape check of the merging layer: throws `InvalidArgument`
/// "<where>: <subject> has shape AxB; expected RxC (<reference>)" unless the shapes agree.
inline void checkShapeAgainst(Index rows, Index cols, Index expectRows, Index expectCols, const std::string& where,
                              const std::string& subject, const std::string& reference) {
  if (rows == expectRows && cols == expectCols) return;
  throw InvalidArgument(where + ": " + subject + " has shape " + shapeString(rows, cols) + "; expected " +
                        shapeString(expectRows, expectCols) + " (" + reference + ")");
}

/// Checks that a list of task vectors all have the shape of the first (the values are checked
/// when an accumulator receives them). Messages name the offending task vector and both shapes.
template <typename Matrix>
void checkTaskVectorShapes(const std::vector<Matrix>& taus, const char* where) {
  for (std::size_t i = 1; i < taus.size(); ++i)
    checkShapeAgainst(taus[i].rows(), taus[i].cols(), taus[0].rows(), taus[0].cols(), where,
                      "task vector " + std::to_string(i), "the shape of task vector 0");
}

/// Bytes of a rows×cols matrix of `bytesPerEntry`-byte entries.
inline std::size_t tensorBytes(Index rows, Index cols, std::size_t bytesPerEntry) {
  return std::size_t(rows) * std::size_t(cols) * bytesPerEntry;
}

/// An estimate of what a full thin SVD of a rows×cols matrix holds: its factors (m×s and n×s,
/// s = min(m, n)) and the s×s Gram matrix and eigenvectors it works on in double.
template <typename Scalar>
std::size_t svdBytes(Index rows, Index cols) {
  const Index s = std::min(rows, cols);
  return tensorBytes(rows + cols, s, sizeof(Scalar)) + 2 * tensorBytes(s, s, sizeof(double));
}

/// The part of the streaming protocol every accumulator shares: the argument checks of
/// `begin()`, the order of the task vectors (pass by pass, task 0…count−1), their shape and
/// finiteness, and the report's shape and mean task-vector norm.
template <typename Scalar>
class TaskStream {
 public:
  using Matrix = MergeMatrix<Scalar>;

  /// `where` names the merger in messages; count must lie in [minCount, maxCount]
  /// (`expected` says so in words).
  TaskStream(const char* where, Index rows, Index cols, Index count, Index passes, TensorReport* report,
             Index minCount = 1, Index maxCount = std::numeric_limits<Index>::max(), const char* expected = nullptr)
      : m_where(where), m_rows(rows), m_cols(cols), m_count(count), m_passes(passes), m_report(report) {
    requireArg(count >= minCount && count <= maxCount, where, "taskVectors.size()", count,
               expected ? std::string(expected) : "at least " + std::to_string(minCount) + " task vector(s)");
    requireArg(rows >= 1 && cols >= 1, where, "shape", shapeString(rows, cols), "a non-empty tensor");
  }

  Index rows() const { return m_rows; }
  Index cols() const { return m_cols; }
  Index count() const { return m_count; }
  Index passes() const { return m_passes; }
  /// Bytes of one task vector.
  std::size_t bytes() const { return tensorBytes(m_rows, m_cols, sizeof(Scalar)); }

  /// Checks the next task vector: the expected (pass, task) (misuse: `WPROJ_ASSERT`), its shape
  /// and its finiteness; accumulates its norm in pass 0.
  void accept(Index pass, Index task, const Matrix& tau) {
    WPROJ_ASSERT(pass == m_pass && task == m_task);
    const std::string name = "taskVectors[" + std::to_string(task) + "]";
    checkShapeAgainst(tau.rows(), tau.cols(), m_rows, m_cols, m_where, "task vector " + std::to_string(task),
                      "the shape of the tensor being merged");
    checkFinite(tau, m_where, name.c_str());
    if (pass == 0) m_normSum += double(tau.norm());
    if (++m_task == m_count) {
      m_task = 0;
      ++m_pass;
    }
  }

  /// True once every pass has seen every task vector.
  bool complete() const { return m_pass == m_passes; }

  /// At `finish()`: checks completeness and fills the report's shape, mean norm and method.
  /// Returns the report (nullptr when there is none).
  TensorReport* report(const std::string& method) {
    WPROJ_ASSERT(complete());
    if (m_report) {
      m_report->rows = m_rows;
      m_report->cols = m_cols;
      m_report->taskNormMean = m_normSum / double(m_count);
      m_report->method = method;
    }
    return m_report;
  }

 private:
  const char* m_where;
  Index m_rows, m_cols, m_count, m_passes;
  TensorReport* m_report;
  Index m_pass = 0, m_task = 0;
  double m_normSum = 0;
};

/// Runs the streaming protocol: every pass of `acc` visits task 0…count−1 in order, taking
/// τ_i from `fetch(i)` (a matrix or a const reference), and returns `acc.finish()`.
template <typename Accumulator, typename Fetch>
auto drain(Accumulator& acc, Fetch&& fetch) {
  for (Index pass = 0; pass < acc.passes(); ++pass)
    for (Index i = 0; i < acc.count(); ++i) acc.add(pass, i, fetch(i));
  return acc.finish();
}

/// The batch form of a merger on a list of task vectors: shape check, then `drain`; `after(acc)`
/// may then take what the merger keeps for inspection from the accumulator.
struct NoAfter {
  template <typename Accumulator>
  void operator()(Accumulator&) const {}
};
template <typename Merger, typename Matrix, typename After = NoAfter>
Matrix mergeBatch(const Merger& merger, const std::vector<Matrix>& taus, TensorReport* report, const char* where,
                  After&& after = After()) {
  checkTaskVectorShapes(taus, where);
  const Index rows = taus.empty() ? 0 : taus[0].rows(), cols = taus.empty() ? 0 : taus[0].cols();
  auto acc = merger.begin(rows, cols, Index(taus.size()), report);
  Matrix d = drain(acc, [&taus](Index i) -> const Matrix& { return taus[std::size_t(i)]; });
  after(acc);
  return d;
}

/// The common part of the per-tensor mergers (a CRTP base): the defaults of the per-tensor
/// protocol, so that a merger states only what differs. `Derived` declares
///   - `static constexpr Index kPasses` (1 or 2) and `static constexpr bool kElementwise`;
///   - `static constexpr const char* kWhere`, the name its `mergeDelta` errors carry;
///   - a nested `Accumulator` constructed from `(const Derived&, rows, cols, count, report)`;
///   - `static std::size_t workingSetBytes(rows, cols, count)` and `std::string describe() const`.
/// It gets `passes()`, `elementwise()`, `begin()` and the batch `mergeDelta()` (which runs the
/// streaming form); a merger whose accumulator is built differently, or that keeps something
/// from the last batch call, declares its own `begin()` or `mergeDelta()`, which hides these.
template <typename Derived, typename Scalar_>
class TensorMergerBase {
 public:
  /// Floating-point type of the task vectors.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged deltas.
  using Matrix = MergeMatrix<Scalar>;

  /// Number of passes of the streaming form over the task vectors (1 or 2).
  Index passes() const { return Derived::kPasses; }
  /// True when the method is defined entry by entry (or on any tensor seen as a flat vector):
  /// then the default rules apply it to every tensor, not only to 2-D weights; false for the
  /// spectral methods, whose default on other tensors is the mean of the task vectors.
  bool elementwise() const { return Derived::kElementwise; }
  /// Starts the streaming merge of one rows×cols tensor from `count` task vectors (the merger
  /// says how many it accepts); `report`, when given, is filled at `finish()`.
  auto begin(Index rows, Index cols, Index count, TensorReport* report = nullptr) const {
    return typename Derived::Accumulator(self(), rows, cols, count, report);
  }
  /// The merged delta Δ (θ = θ₀ + Δ) of the task vectors τ_i = θ_i − θ₀ of one tensor, computed
  /// by the streaming form.
  Matrix mergeDelta(const std::vector<Matrix>& taus, TensorReport* report = nullptr) const {
    return mergeBatch(self(), taus, report, Derived::kWhere);
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

/// A running sum of the task vectors, finished as Δ = factor·Σ τ_i, or as the mean Σ τ_i / T
/// (`mean`, the treatment of `TensorAction::Average`). One pass; holds one tensor besides the
/// incoming one.
template <typename Scalar>
class SumAccumulator {
 public:
  using Matrix = MergeMatrix<Scalar>;
  SumAccumulator(const char* where, std::string method, Index rows, Index cols, Index count, TensorReport* report,
                 double factor, bool mean = false)
      : m_in(where, rows, cols, count, 1, report), m_method(std::move(method)), m_factor(factor), m_mean(mean) {}
  Index passes() const { return 1; }
  Index count() const { return m_in.count(); }
  void add(Index pass, Index task, const Matrix& tau) {
    m_in.accept(pass, task, tau);
    if (task == 0) m_sum = tau;
    else m_sum += tau;
  }
  /// Changes the method named in the report and the factor, before `finish()`.
  void setResult(std::string method, double factor) {
    m_method = std::move(method);
    m_factor = factor;
  }
  Matrix finish() {
    m_in.report(m_method);
    if (m_mean) m_sum /= Scalar(double(m_in.count()));
    else m_sum *= Scalar(m_factor);
    return std::move(m_sum);
  }
  static std::size_t workingSetBytes(Index rows, Index cols, Index) { return 2 * tensorBytes(rows, cols, sizeof(Scalar)); }

 private:
  TaskStream<Scalar> m_in;
  std::string m_method;
  double m_factor;
  bool m_mean;
  Matrix m_sum;
};

}  // namespace detail

/// τ = θ − θ₀ with a shape check that names both shapes (and `name`, when given).
template <typename DA, typename DB>
MergeMatrix<typename DA::Scalar> taskVector(const Eigen::MatrixBase<DA>& finetuned, const Eigen::MatrixBase<DB>& base,
                                            const std::string& name = "") {
  detail::checkShapeAgainst(finetuned.rows(), finetuned.cols(), base.rows(), base.cols(), "taskVector",
                            "tensor '" + name + "' of the fine-tuned model", "its shape in the base model");
  return finetuned - base;
}

}  // namespace wproj
