// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// OPCM — continual merging by orthogonal projection and adaptive scaling (Tang et al. 2025,
/// "Merging Models on the Fly Without Retraining: A Sequential Approach to Scalable Continual
/// Model Merging").
///
/// Models arrive one at a time. The merger keeps, per tensor, the running sum S of the
/// (projected) task vectors, plus the number of models t and the sum of their global task-vector
/// norms: memory is one model's worth of tensors whatever the number of models.
///
/// First model: S = τ₁. Model t > 1, for each 2-D weight with thin SVD S = U Σ Vᵀ (k = min(m, n)):
///   r = first (0-based) index with cumsum(σ)_r / Σσ > α   (sum of σ, not σ²; 0 if none),
///   τ'_t = τ_t − U_r (U_rᵀ τ_t V_r) V_rᵀ − Σ_{i ≥ r} (u_iᵀ τ_t v_i) u_i v_iᵀ,
/// i.e. the top-r×r block and the whole diagonal of Uᵀτ_tV are removed — exactly what the
/// reference code does with full m×m / n×n factors, computed here from the thin factors only.
/// Other tensors (biases, norms, embeddings: rule `Average`): τ'_t = τ_t. Then S ← S + τ'_t.
/// Adaptive scaling: θ = θ₀ + λ S with λ = mean_t ‖τ_t‖ / ‖S‖, norms global (L2 over all
/// merged tensors of a model).

#include "../core/atomic_file.hpp"
#include "../core/config.hpp"
#include "../core/serialization.hpp"
#include "../linalg/truncated_svd.hpp"
#include "report.hpp"
#include "task_vectors.hpp"

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <istream>
#include <limits>
#include <ostream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace wproj {

/// The split index r of OPCM: the first (0-based) index i with Σ_{j≤i} σ_j / Σ σ > α, or 0 when
/// there is none (as `argmax` of an all-false mask returns 0 in the reference code). Sums are
/// accumulated in double. Returns −1 for an all-zero spectrum.
template <typename V>
Index opcmSplitRank(const Eigen::MatrixBase<V>& sigma, double alpha) {
  double total = 0;
  for (Index i = 0; i < sigma.size(); ++i) total += double(sigma.coeff(i));
  if (!(total > 0)) return -1;
  double partial = 0;
  for (Index i = 0; i < sigma.size(); ++i) {
    partial += double(sigma.coeff(i));
    if (partial / total > alpha) return i;
  }
  return 0;
}

/// One OPCM projection: removes from `tau` its top-r×r block and its diagonal in the singular
/// basis of `accumulated` (see the file comment), using the thin SVD of `accumulated` from
/// `TruncatedSVD` (all min(m, n) triplets). `splitRank` receives r (−1 when `accumulated` is
/// zero: then there is nothing to be orthogonal to and `tau` is returned unchanged).
/// Shapes must match; inputs must be finite.
template <typename DS, typename DT>
MergeMatrix<typename DT::Scalar> opcmProject(const Eigen::MatrixBase<DS>& accumulated, const Eigen::MatrixBase<DT>& tau,
                                             double alpha, Index* splitRank = nullptr) {
  using Scalar = typename DT::Scalar;
  using Matrix = MergeMatrix<Scalar>;
  static_assert(std::is_same<typename DS::Scalar, Scalar>::value, "opcmProject: accumulated and tau must share a scalar type");
  checkNonEmpty(tau, "opcmProject", "tau");
  checkShape(accumulated, tau.rows(), tau.cols(), "opcmProject", "accumulated");
  requireArg(alpha >= 0 && alpha <= 1, "opcmProject", "alpha", alpha, "a value in [0, 1]");
  checkFinite(tau, "opcmProject", "tau");
  Matrix out = tau;
  if (accumulated.isZero(0)) {
    if (splitRank) *splitRank = -1;
    return out;
  }
  TruncatedSVD<Matrix> svd;
  svd.setRankRule(RankRule::all()).compute(accumulated);
  if (svd.info() != Eigen::Success) throw NumericalError("opcmProject: the SVD of the merged delta did not converge");
  const Matrix& u = svd.matrixU();
  const Matrix& v = svd.matrixV();
  const Index k = svd.rank();
  const Index r = opcmSplitRank(svd.singularValues(), alpha);
  if (splitRank) *splitRank = r;
  if (r < 0) return out;
  Matrix w;
  w.noalias() = tau * v;  // m×k: τ V
  Matrix x(tau.rows(), k);  // U·B with B = blockdiag(C_rr, diag(d_{≥r}))
  if (r > 0) {
    Matrix c;
    c.noalias() = u.leftCols(r).transpose() * w.leftCols(r);  // U_rᵀ τ V_r
    x.leftCols(r).noalias() = u.leftCols(r) * c;
  }
  for (Index i = r; i < k; ++i) x.col(i) = u.col(i) * u.col(i).dot(w.col(i));
  out.noalias() -= x * v.transpose();
  return out;
}

/// OPCM at model level, with a state that can be saved after any model and resumed when the
/// next one arrives (`save` / `load`). Tensors are visited one at a time through a callback, so
/// an I/O layer can stream each incoming checkpoint: besides the state (one model's worth of
/// accumulators) only the tensor being merged is resident.
///
/// \code
/// OpcmMerging<float> opcm;
/// opcm.setAlpha(0.5);
/// for (auto& theta : models) opcm.add(theta - theta0);   // single-tensor use
/// Eigen::MatrixXf merged = theta0 + opcm.mergedDelta();
/// \endcode
///
/// Which tensors are projected is decided by `MergeRules` when a tensor is first seen (default:
/// 2-D weights projected, others added unprojected), and recorded in the state. On an exception
/// in the middle of `addModel` (e.g. a tensor with a different shape) the merger is left
/// invalid: further calls throw `StateError` until a saved state is loaded.
template <typename Scalar_>
class OpcmMerging {
 public:
  /// Floating-point type of the task vectors and the state.
  using Scalar = Scalar_;
  /// Dense matrix type of task vectors and merged tensors.
  using Matrix = MergeMatrix<Scalar>;
  /// Supplies the task vector τ_t of a tensor on demand.
  using TensorFetch = std::function<Matrix(const std::string& name)>;
  /// Receives a merged tensor.
  using TensorSink = std::function<void(const std::string& name, const Matrix& tensor)>;

  /// Version of the state file format that `save` writes: wproj's common container
  /// (core/serialization.hpp, kind "wproj.opcm"). `load` also reads version-1 files ("WPJOPCM",
  /// written by wproj 0.1).
  static constexpr std::uint32_t kFormatVersion = serial::kFormatVersion;
  /// The version of the 0.1 state format that `load` still reads.
  static constexpr std::uint32_t kLegacyFormatVersion = 1;
  /// Kind tag of OPCM state files.
  static constexpr const char* kKind = "wproj.opcm";

  /// α in [0, 1] (default 0.5): fraction of Σσ that defines the protected top block.
  OpcmMerging& setAlpha(double alpha) {
    requireArg(alpha >= 0 && alpha <= 1, "OpcmMerging::setAlpha", "alpha", alpha, "a value in [0, 1]");
    m_alpha = alpha;
    return *this;
  }
  /// Per-name rules, applied when a tensor is first seen (the decision is then part of the state).
  OpcmMerging& setRules(const MergeRules& rules) {
    m_rules = rules;
    return *this;
  }
  /// The threshold α of the split index r.
  double alpha() const { return m_alpha; }
  /// Number of models merged so far.
  Index numModels() const { return m_count; }
  /// Names of the tensors in the state, in first-seen order.
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& e : m_entries) n.push_back(e.name);
    return n;
  }
  /// Method name and α, as used in reports.
  std::string describe() const { return "opcm (alpha=" + detail::describe(m_alpha) + ")"; }

  /// Merges the next model with a single tensor (name "").
  template <typename Derived>
  OpcmMerging& add(const Eigen::MatrixBase<Derived>& taskVector) {
    const Matrix tau = taskVector;
    addModel({std::string()}, [&tau](const std::string&) { return tau; });
    return *this;
  }

  /// Merges the next model: visits `names` in order and asks `fetch` for each task vector
  /// τ_t = θ_t − θ₀ (skipped tensors are not fetched). After the first model, `names` must hold
  /// the same set of tensors. Returns the per-tensor report of this step.
  MergeReport addModel(const std::vector<std::string>& names, const TensorFetch& fetch) {
    checkUsable("OpcmMerging::addModel");
    requireArg(static_cast<bool>(fetch), "OpcmMerging::addModel", "fetch", "empty std::function", "a callable");
    requireArg(!names.empty(), "OpcmMerging::addModel", "names.size()", names.size(), ">= 1 tensor name");
    checkNames(names);
    MergeReport rep;
    rep.method = describe() + ", model " + std::to_string(m_count + 1);
    const bool first = m_count == 0;
    m_valid = false;  // until the whole model went through
    double normSq = 0;
    std::size_t peak = 0;
    Index index = 0;
    for (const auto& name : names) {
      TensorReport tr;
      tr.name = name;
      tr.index = index++;
      if (first) {
        // Shape is known only from the tensor itself: fetch, then decide.
        Matrix tau = fetchChecked(fetch, name, -1, -1);
        const RuleDecision d = m_rules.decide(name, tau.rows(), tau.cols(), false);
        Entry e;
        e.name = name;
        e.action = d.action;
        e.rule = d.rule;
        e.rows = tau.rows();
        e.cols = tau.cols();
        tr.rows = e.rows;
        tr.cols = e.cols;
        tr.action = e.action;
        tr.rule = e.rule;
        if (e.action == TensorAction::Skip) {
          tr.method = "skipped (base kept)";
        } else {
          const double n = double(tau.norm());
          normSq += n * n;
          tr.taskNormMean = n;
          tr.method = e.action == TensorAction::Project ? "opcm: first model, S = tau" : "opcm: added unprojected (first model)";
          e.sum = std::move(tau);
        }
        peak = std::max(peak, std::size_t(e.rows * e.cols) * sizeof(Scalar));
        m_index[name] = m_entries.size();
        m_entries.push_back(std::move(e));
      } else {
        Entry& e = m_entries[m_index.at(name)];
        tr.rows = e.rows;
        tr.cols = e.cols;
        tr.action = e.action;
        tr.rule = e.rule;
        if (e.action == TensorAction::Skip) {
          tr.method = "skipped (base kept)";
        } else {
          Matrix tau = fetchChecked(fetch, name, e.rows, e.cols);
          const double n = double(tau.norm());
          normSq += n * n;
          tr.taskNormMean = n;
          peak = std::max(peak, std::size_t(2 * e.rows * e.cols) * sizeof(Scalar));
          if (e.action == TensorAction::Project) {
            Index r = -1;
            const Matrix projected = opcmProject(e.sum, tau, m_alpha, &r);
            tr.rank = r;
            const double kept = n > 0 ? double(projected.norm()) / n : 0.0;
            const long permille = std::lround(kept * 1000);
            tr.method = "opcm projection (r=" + std::to_string(r) + "/" + std::to_string(std::min(e.rows, e.cols)) +
                        ", kept " + std::to_string(permille / 10) + "." + std::to_string(permille % 10) + "% of |tau|)";
            if (r < 0) tr.warnings.push_back("merged delta is zero: nothing to project against, tau added unprojected");
            e.sum += projected;
          } else {
            tr.method = "opcm: added unprojected (tau' = tau)";
            e.sum += tau;
          }
        }
      }
      rep.tensors.push_back(std::move(tr));
    }
    m_normSum += std::sqrt(normSq);
    ++m_count;
    m_valid = true;
    const double lambda = scale();
    for (auto& tr : rep.tensors) {
      const Entry& e = m_entries[m_index.at(tr.name)];
      tr.deltaNorm = e.action == TensorAction::Skip ? 0.0 : lambda * double(e.sum.norm());
    }
    if (std::sqrt(normSq) == 0) rep.warnings.push_back("model " + std::to_string(m_count) + " has a zero task vector");
    if (lambda == 0) rep.warnings.push_back("the merged delta is zero: scale set to 0 (merged model = base)");
    rep.peakResidentBytes = stateBytes() + peak;
    rep.stateBytes = stateBytes();
    return rep;
  }

  /// The adaptive scale λ = mean_t ‖τ_t‖ / ‖S‖ (0 when S = 0, 1 before any model).
  double scale() const {
    if (m_count == 0) return 1.0;
    double s2 = 0;
    for (const auto& e : m_entries)
      if (e.action != TensorAction::Skip) s2 += double(e.sum.squaredNorm());
    if (!(s2 > 0)) return 0.0;
    return (m_normSum / double(m_count)) / std::sqrt(s2);
  }

  /// The mean global task-vector norm over the merged models.
  double meanTaskNorm() const { return m_count ? m_normSum / double(m_count) : 0.0; }

  /// The merged delta λ·S of tensor `name` (zero for a skipped tensor).
  Matrix mergedDelta(const std::string& name = std::string()) const {
    checkUsable("OpcmMerging::mergedDelta");
    auto it = m_index.find(name);
    if (it == m_index.end()) throw InvalidArgument("OpcmMerging::mergedDelta: unknown tensor '" + name + "'");
    const Entry& e = m_entries[it->second];
    if (e.action == TensorAction::Skip) return Matrix::Zero(e.rows, e.cols);
    return e.sum * Scalar(scale());
  }

  /// The unscaled accumulator S of tensor `name` (empty for a skipped tensor).
  const Matrix& accumulator(const std::string& name = std::string()) const {
    auto it = m_index.find(name);
    if (it == m_index.end()) throw InvalidArgument("OpcmMerging::accumulator: unknown tensor '" + name + "'");
    return m_entries[it->second].sum;
  }

  /// Writes θ = θ₀ + λS of every tensor (in first-seen order) to `sink`, asking `base` for θ₀
  /// one tensor at a time. Returns the report (one entry per tensor, skipped ones included).
  MergeReport writeMerged(const TensorFetch& base, const TensorSink& sink) const {
    checkUsable("OpcmMerging::writeMerged");
    requireArg(m_count > 0, "OpcmMerging::writeMerged", "numModels()", m_count, ">= 1 merged model");
    MergeReport rep;
    rep.method = describe() + ", " + std::to_string(m_count) + " models, scale " + detail::describe(scale());
    const Scalar lambda = Scalar(scale());
    Index index = 0;
    for (const auto& e : m_entries) {
      TensorReport tr;
      tr.name = e.name;
      tr.index = index++;
      tr.rows = e.rows;
      tr.cols = e.cols;
      tr.action = e.action;
      tr.rule = e.rule;
      Matrix theta = base(e.name);
      detail::checkShapeAgainst(theta.rows(), theta.cols(), e.rows, e.cols, "OpcmMerging::writeMerged",
                                "base tensor '" + e.name + "'", "the shape of the merged task vectors");
      if (e.action == TensorAction::Skip) {
        tr.method = "skipped (base kept)";
      } else {
        theta += lambda * e.sum;
        tr.method = std::string(e.action == TensorAction::Project ? "opcm projected sum" : "opcm unprojected sum") +
                    " x scale";
        tr.deltaNorm = double(lambda) * double(e.sum.norm());
      }
      rep.peakResidentBytes = std::max(rep.peakResidentBytes, stateBytes() + std::size_t(e.rows * e.cols) * sizeof(Scalar));
      sink(e.name, theta);
      rep.tensors.push_back(std::move(tr));
    }
    rep.stateBytes = stateBytes();
    return rep;
  }

  /// Bytes held by the state's tensors (independent of the number of models).
  std::size_t stateBytes() const {
    std::size_t b = 0;
    for (const auto& e : m_entries) b += std::size_t(e.sum.size()) * sizeof(Scalar);
    return b;
  }

  // ---------------------------------------------------------------------------------------
  // Checkpoint / resume, in wproj's persistence format (core/serialization.hpp), kind
  // "wproj.opcm". Sections: "settings" (u32 sizeof(Scalar), f64 alpha, u64 t, f64 Σ‖τ‖,
  // u64 #tensors), then one "tensor" per tensor (name, u8 action, rule, u64 rows, u64 cols,
  // u8 hasData, the accumulator as a matrix when hasData).
  // ---------------------------------------------------------------------------------------

  /// Writes the whole state to `os`.
  void save(std::ostream& os) const {
    checkUsable("OpcmMerging::save");
    serial::writeContainer(
        os, kKind,
        [this](auto& enc) {
          enc.section("settings", [this](auto& s) {
            s.template pod<std::uint32_t>(std::uint32_t(sizeof(Scalar)));
            s.template pod<double>(m_alpha);
            s.template pod<std::uint64_t>(std::uint64_t(m_count));
            s.template pod<double>(m_normSum);
            s.template pod<std::uint64_t>(std::uint64_t(m_entries.size()));
          });
          for (const auto& e : m_entries) {
            enc.section("tensor", [&e](auto& s) {
              s.string(e.name);
              s.template pod<std::uint8_t>(std::uint8_t(e.action));
              s.string(e.rule);
              s.template pod<std::uint64_t>(std::uint64_t(e.rows));
              s.template pod<std::uint64_t>(std::uint64_t(e.cols));
              const bool has = e.sum.size() > 0;
              s.template pod<std::uint8_t>(has ? 1 : 0);
              if (has) s.matrix(e.sum);
            });
          }
        },
        "OpcmMerging::save");
  }

  /// Writes the state to `path` all-or-nothing through `AtomicFile` (a unique temporary file in
  /// the same folder, fsynced, renamed into place, folder fsynced).
  void save(const std::string& path) const {
    checkUsable("OpcmMerging::save");
    AtomicFile file(path);
    AtomicFileBuf buf(file);
    std::ostream os(&buf);
    save(os);
    buf.finish();
    file.commit();
  }

  /// Replaces the state by the one read from `is` (validated; `IoError` on any inconsistency).
  /// Rules are not part of the file: the per-tensor decisions are.
  void load(std::istream& is) {
    const char* where = "OpcmMerging::load";
    const std::string magic = serial::readMagic(is, where);
    if (magic == std::string(kMagic, 8)) return loadVersion1(is);
    if (magic != std::string(serial::kMagic, 8)) throw IoError("OpcmMerging::load: not an OPCM state (bad magic)");
    serial::Decoder d(is, serial::readHeaderAfterMagic(is, kKind, where), where);
    const std::uint64_t settingsLength = d.section("settings");
    const std::uint64_t settingsEnd = d.remaining() - settingsLength;
    const auto scalarSize = d.pod<std::uint32_t>("scalar size");
    if (scalarSize != sizeof(Scalar))
      throw IoError("OpcmMerging::load: state holds " + std::to_string(scalarSize) + "-byte scalars; this merger uses " +
                    std::to_string(sizeof(Scalar)) + "-byte scalars");
    const double alpha = d.pod<double>("alpha");
    const auto count = d.pod<std::uint64_t>("model count");
    const double normSum = d.pod<double>("norm sum");
    const auto n = d.pod<std::uint64_t>("tensor count");
    if (d.remaining() != settingsEnd) throw IoError("OpcmMerging::load: the settings section has an unexpected length");
    if (!(alpha >= 0 && alpha <= 1)) throw IoError("OpcmMerging::load: alpha out of [0, 1]");
    if (!(std::isfinite(normSum) && normSum >= 0)) throw IoError("OpcmMerging::load: invalid norm sum");
    if (count > std::uint64_t(std::numeric_limits<std::int64_t>::max()) || (count == 0 && n != 0))
      throw IoError("OpcmMerging::load: invalid model count");
    std::vector<Entry> entries;
    std::unordered_map<std::string, std::size_t> index;
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t sectionLength = d.section("tensor");
      const std::uint64_t end = d.remaining() - sectionLength;
      Entry e;
      e.name = d.string("tensor name");
      const auto action = d.pod<std::uint8_t>("tensor action");
      if (action > std::uint8_t(TensorAction::Skip)) throw IoError("OpcmMerging::load: invalid action for '" + e.name + "'");
      e.action = TensorAction(action);
      e.rule = d.string("rule name");
      const auto rows = d.pod<std::uint64_t>("rows"), cols = d.pod<std::uint64_t>("cols");
      const auto has = d.pod<std::uint8_t>("data flag");
      if (rows == 0 || cols == 0 || rows > serial::kMaxExtent || cols > serial::kMaxExtent)
        throw IoError("OpcmMerging::load: tensor '" + e.name + "' has an impossible shape");
      e.rows = Index(rows);
      e.cols = Index(cols);
      if (has > 1 || (has == 1) != (e.action != TensorAction::Skip))
        throw IoError("OpcmMerging::load: inconsistent data flag for '" + e.name + "'");
      if (has) e.sum = d.template matrix<Scalar>(("accumulator of '" + e.name + "'").c_str(), e.rows, e.cols);
      if (d.remaining() != end) throw IoError("OpcmMerging::load: section of tensor '" + e.name + "' has an unexpected length");
      if (!index.emplace(e.name, entries.size()).second) throw IoError("OpcmMerging::load: duplicate tensor '" + e.name + "'");
      entries.push_back(std::move(e));
    }
    d.finish();
    if (is.peek() != std::char_traits<char>::eof()) throw IoError("OpcmMerging::load: trailing bytes after the state");
    commit(alpha, count, normSum, std::move(entries), std::move(index));
  }

  /// Loads the state from the file `path`.
  void load(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw IoError("OpcmMerging::load: cannot open '" + path + "'");
    load(f);
  }

 private:
  static constexpr char kMagic[9] = "WPJOPCM";  // version-1 magic: 7 characters + NUL = 8 bytes on disk

  struct Entry {
    std::string name;
    TensorAction action = TensorAction::Project;
    std::string rule;
    Index rows = 0, cols = 0;
    Matrix sum;
  };

  void commit(double alpha, std::uint64_t count, double normSum, std::vector<Entry>&& entries,
              std::unordered_map<std::string, std::size_t>&& index) {
    m_alpha = alpha;
    m_count = Index(count);
    m_normSum = normSum;
    m_entries = std::move(entries);
    m_index = std::move(index);
    m_valid = true;
  }

  // Reads a version-1 state (wproj 0.1), after its magic: "WPJOPCM\0" | u32 version |
  // u32 0x01020304 | u32 sizeof(Scalar) | u32 0 | f64 alpha | u64 t | f64 Σ‖τ‖ | u64 #tensors |
  // per tensor: u64 len, name, u8 action, u64 len, rule, u64 rows, u64 cols, u8 hasData,
  // rows·cols scalars (column-major) | u64 FNV-1a of all before.
  void loadVersion1(std::istream& is) {
    Reader r{is, remainingBytes(is)};
    r.hash = fnv(r.hash, kMagic, 8);
    const auto version = r.template pod<std::uint32_t>();
    if (version != kLegacyFormatVersion)
      throw IoError("OpcmMerging::load: format version " + std::to_string(version) + " in a WPJOPCM file; expected " +
                    std::to_string(kLegacyFormatVersion) + " (later versions use the WPROJBIN container)");
    if (r.template pod<std::uint32_t>() != 0x01020304u) throw IoError("OpcmMerging::load: byte order mismatch");
    const auto scalarSize = r.template pod<std::uint32_t>();
    if (scalarSize != sizeof(Scalar))
      throw IoError("OpcmMerging::load: state holds " + std::to_string(scalarSize) + "-byte scalars; this merger uses " +
                    std::to_string(sizeof(Scalar)) + "-byte scalars");
    r.template pod<std::uint32_t>();
    const double alpha = r.template pod<double>();
    const auto count = r.template pod<std::uint64_t>();
    const double normSum = r.template pod<double>();
    const auto n = r.template pod<std::uint64_t>();
    if (!(alpha >= 0 && alpha <= 1)) throw IoError("OpcmMerging::load: alpha out of [0, 1]");
    if (!(std::isfinite(normSum) && normSum >= 0)) throw IoError("OpcmMerging::load: invalid norm sum");
    if (count > std::uint64_t(std::numeric_limits<std::int64_t>::max()) || (count == 0 && n != 0))
      throw IoError("OpcmMerging::load: invalid model count");
    std::vector<Entry> entries;
    std::unordered_map<std::string, std::size_t> index;
    for (std::uint64_t i = 0; i < n; ++i) {
      Entry e;
      e.name = r.str();
      const auto action = r.template pod<std::uint8_t>();
      if (action > std::uint8_t(TensorAction::Skip)) throw IoError("OpcmMerging::load: invalid action for '" + e.name + "'");
      e.action = TensorAction(action);
      e.rule = r.str();
      const auto rows = r.template pod<std::uint64_t>(), cols = r.template pod<std::uint64_t>();
      const auto has = r.template pod<std::uint8_t>();
      if (rows == 0 || cols == 0 || rows > (std::uint64_t(1) << 40) || cols > (std::uint64_t(1) << 40))
        throw IoError("OpcmMerging::load: tensor '" + e.name + "' has an impossible shape");
      e.rows = Index(rows);
      e.cols = Index(cols);
      if (has > 1 || (has == 1) != (e.action != TensorAction::Skip))
        throw IoError("OpcmMerging::load: inconsistent data flag for '" + e.name + "'");
      if (has) {
        if (rows > r.remaining / sizeof(Scalar) / cols) throw IoError("OpcmMerging::load: truncated data for '" + e.name + "'");
        e.sum.resize(e.rows, e.cols);
        r.bytes(e.sum.data(), std::size_t(rows * cols) * sizeof(Scalar));
        if (!e.sum.allFinite()) throw IoError("OpcmMerging::load: non-finite values in '" + e.name + "'");
      }
      if (!index.emplace(e.name, entries.size()).second) throw IoError("OpcmMerging::load: duplicate tensor '" + e.name + "'");
      entries.push_back(std::move(e));
    }
    const std::uint64_t expect = r.hash;
    std::uint64_t stored = 0;
    r.rawBytes(&stored, sizeof stored);
    if (stored != expect) throw IoError("OpcmMerging::load: checksum mismatch (corrupted state)");
    if (r.remaining != 0 || is.peek() != std::char_traits<char>::eof())
      throw IoError("OpcmMerging::load: trailing bytes after the state");
    commit(alpha, count, normSum, std::move(entries), std::move(index));
  }

  static std::uint64_t fnv(std::uint64_t h, const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
    return h;
  }

  struct Reader {
    std::istream& is;
    std::uint64_t remaining;
    std::uint64_t hash = 1469598103934665603ull;
    void rawBytes(void* p, std::size_t n) {
      if (n > remaining) throw IoError("OpcmMerging::load: truncated state");
      is.read(static_cast<char*>(p), std::streamsize(n));
      if (std::size_t(is.gcount()) != n) throw IoError("OpcmMerging::load: truncated state");
      remaining -= n;
    }
    void bytes(void* p, std::size_t n) {
      rawBytes(p, n);
      hash = fnv(hash, p, n);
    }
    template <typename T>
    T pod() {
      T v;
      bytes(&v, sizeof v);
      return v;
    }
    std::string str() {
      const auto len = pod<std::uint64_t>();
      if (len > remaining || len > (std::uint64_t(1) << 20)) throw IoError("OpcmMerging::load: invalid string length");
      std::string s(std::size_t(len), '\0');
      bytes(&s[0], std::size_t(len));
      return s;
    }
  };

  /// Bytes left in a seekable stream (or the largest value when it cannot seek).
  static std::uint64_t remainingBytes(std::istream& is) {
    const auto here = is.tellg();
    if (here < 0) return std::numeric_limits<std::uint64_t>::max();
    is.seekg(0, std::ios::end);
    const auto end = is.tellg();
    is.seekg(here);
    if (end < here) return 0;
    return std::uint64_t(end - here);
  }

  void checkUsable(const char* where) const {
    if (!m_valid)
      throw StateError(std::string(where) +
                       ": the merger was left invalid by an error during addModel; load a saved state first");
  }

  void checkNames(const std::vector<std::string>& names) const {
    std::unordered_set<std::string> seen;
    for (const auto& n : names)
      if (!seen.insert(n).second) throw InvalidArgument("OpcmMerging::addModel: tensor name '" + n + "' appears twice");
    if (m_count == 0) return;
    for (const auto& n : names)
      if (!m_index.count(n))
        throw InvalidArgument("OpcmMerging::addModel: tensor '" + n + "' was not in the first model; expected the same " +
                              std::to_string(m_entries.size()) + " tensors");
    if (names.size() != m_entries.size())
      throw InvalidArgument("OpcmMerging::addModel: model has " + std::to_string(names.size()) +
                            " tensors; expected the same " + std::to_string(m_entries.size()) + " tensors as the first model");
  }

  Matrix fetchChecked(const TensorFetch& fetch, const std::string& name, Index rows, Index cols) const {
    Matrix tau = fetch(name);
    checkNonEmpty(tau, "OpcmMerging::addModel", ("tensor '" + name + "'").c_str());
    if (rows >= 0)
      detail::checkShapeAgainst(tau.rows(), tau.cols(), rows, cols, "OpcmMerging::addModel",
                                "tensor '" + name + "' of model " + std::to_string(m_count + 1), "its shape in the first model");
    checkFinite(tau, "OpcmMerging::addModel", ("tensor '" + name + "'").c_str());
    return tau;
  }

  double m_alpha = 0.5;
  MergeRules m_rules;
  Index m_count = 0;
  double m_normSum = 0;
  std::vector<Entry> m_entries;
  std::unordered_map<std::string, std::size_t> m_index;
  bool m_valid = true;
};

// Names before 0.2.0 (see the naming rule in docs/index.md); they will be removed in 1.0.
template <typename Scalar_>
using ContinualMerger [[deprecated("renamed wproj::OpcmMerging")]] = OpcmMerging<Scalar_>;

}  // namespace wproj
