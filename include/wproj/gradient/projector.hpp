// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// `GradientProjector<Basis>`: GaLore's projector (Zhao et al. 2024) with explicit side state,
/// a refresh schedule with per-layer offsets, Q-GaLore's adaptive gap, statistics and
/// checkpointing.

#include "basis.hpp"
#include "persistence.hpp"

#include <Eigen/Core>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace wproj {

/// What a projector has done so far.
struct ProjectorStats {
  Index refreshes = 0;           ///< successful refreshes (the first basis included)
  Index failedRefreshes = 0;     ///< refreshes whose result was rejected (previous basis kept)
  Index gapIncreases = 0;        ///< times the adaptive gap grew
  double refreshSeconds = 0;     ///< wall time spent in refreshes
  double lastOverlap = std::numeric_limits<double>::quiet_NaN();  ///< overlap of the last refresh with its predecessor
  double overlapSum = 0;         ///< sum of the overlaps (mean = overlapSum / overlapCount)
  /// Number of overlaps in overlapSum (refreshes that had a previous basis).
  Index overlapCount = 0;
  /// Mean overlap overlapSum / overlapCount (NaN before the first overlap).
  double meanOverlap() const { return overlapCount > 0 ? overlapSum / double(overlapCount) : std::numeric_limits<double>::quiet_NaN(); }
};

/// Where the next scheduled refresh falls once the update gap has changed (adaptive gap or
/// `setUpdateGap`).
enum class RefreshSchedule {
  /// Steps o + kT of the current gap T (default): GaLore's and Q-GaLore's rule `step % T == 0`
  /// (o = 0). After a gap increase at step s the next refresh is the first multiple of the new T
  /// after s.
  Multiples,
  /// The refresh step plus the current gap T (wproj 0.1). Same as `Multiples` while T is fixed.
  FromLastRefresh
};

/// Projects the gradient G (m×n) of one weight matrix into a rank-r subspace chosen by the basis
/// policy `Basis` (SVDBasis, RandomizedBasis, DCTBasis, OnlinePCABasis, GaussianBasis,
/// RowSelectionBasis, QuantizedBasis\<Inner\>) and maps low-rank updates back, as GaLore does.
///
/// - The side is explicit state resolved once from the projection type and the shape
///   (`ProjectionType::Std`: the smaller dimension); back-projection uses it, never the shape
///   of the projected matrix (galore_torch infers it and fails for square projected matrices).
/// - `rank` must satisfy 1 ≤ r ≤ min(m, n); a larger rank is an `InvalidArgument` (galore_torch
///   silently truncates).
/// - Refreshes happen on the first step and then on steps o, o+T, o+2T, … (T = update gap,
///   o = offset ∈ [0, T), so layers with different offsets refresh on different steps). With the
///   adaptive gap (Q-GaLore) the overlap of each new basis with the previous one enters a sliding
///   window (length 5); whenever the window is full and its mean is ≥ 0.4 the gap is multiplied
///   by 2 (the window is not cleared, as in Q-GaLore's code), up to `setMaxUpdateGap`. After a
///   gap change the next refresh is the next step o + kT of the new T (`RefreshSchedule::Multiples`,
///   Q-GaLore's `step % T == 0`), or the refresh step + T (`RefreshSchedule::FromLastRefresh`).
/// - A tracking basis (online PCA) takes its first step on P at step 1: the step that computed the
///   first basis does not track (as Online Subspace Descent, whose first P update follows the
///   first optimizer step).
/// - A refresh that fails (non-finite or failed decomposition) keeps the previous basis and is
///   counted; only a failure with no previous basis throws `NumericalError`.
/// - The back-projected update is multiplied by the scale α.
///
/// A step is `beginStep(G)` (refresh if due), `project(G, R)`, the optimizer's update of R into
/// N, `addBack(N, c, W)` (W += c·α·back(N)), `endStep(G)`. After the first step none of these
/// allocate, except refresh steps (which run a decomposition). `project` and `addBack` need a
/// basis: called before the first `beginStep` they throw `InvalidArgument`.
///
/// \code
///   wproj::GradientProjector<wproj::RandomizedBasis<float>> proj;
///   proj.setRank(64).setUpdateGap(200).setScale(0.25f);
///   proj.beginStep(g);                         // g: m×n gradient; refreshes when due
///   Eigen::MatrixXf r = proj.project(g);       // low-rank gradient
///   /* … optimizer update of r in place … */
///   proj.addBack(r, -1e-3f, w);                // w += −lr·α·back(r)
///   proj.endStep(g);
/// \endcode
template <typename Basis>
class GradientProjector {
  static_assert(detail::BasisHasNames<Basis>::value,
                "GradientProjector<Basis>: Basis must define Scalar, kName (const char*) and kTracksSteps (bool)");
  static_assert(detail::BasisHasRefresh<Basis>::value,
                "GradientProjector<Basis>: Basis must provide RefreshResult refresh(G, side, rank, refreshIndex, Matrix* transition)");
  static_assert(detail::BasisHasProducts<Basis>::value,
                "GradientProjector<Basis>: Basis must provide project(G, side, out), backProject(N, side, out), "
                "addBack(N, side, c, W) and denseBasis(P) as const members");
  static_assert(detail::BasisHasState<Basis>::value,
                "GradientProjector<Basis>: Basis must provide hasBasis(), stateBytes(), save(os) and load(is, ambient, rank)");
  static_assert(detail::BasisTracksWhenDeclared<Basis>::value,
                "GradientProjector<Basis>: a Basis with kTracksSteps = true must provide track(G, side, lr)");

 public:
  /// The basis policy type.
  using BasisType = Basis;
  /// Floating-point type of gradients, weights and the basis.
  using Scalar = typename Basis::Scalar;
  /// Dense matrix type of projected gradients, transitions and dense bases.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  GradientProjector() = default;
  /// A projector whose basis policy starts as a copy of `prototype` (its knobs, no state).
  explicit GradientProjector(const Basis& prototype) : m_a(prototype) {}

  /// Rank r ≥ 1 (default 128; r ≤ min(m, n) is checked by `init`). Set before the first step.
  GradientProjector& setRank(Index r) {
    requireArg(r >= 1, "GradientProjector::setRank", "r", r, ">= 1");
    requireNotInitialized("GradientProjector::setRank");
    m_rank = r;
    return *this;
  }
  /// Update gap T ≥ 1 between scheduled refreshes (default 200), greater than the offset. Before the
  /// first step it also sets the T of online PCA's learning rate; a later change applies after the
  /// refresh already scheduled.
  GradientProjector& setUpdateGap(Index t) {
    requireArg(t >= 1, "GradientProjector::setUpdateGap", "t", t, ">= 1");
    requireArg(m_offset < t, "GradientProjector::setUpdateGap", "t", t, "> offset = " + std::to_string(m_offset));
    m_gap = t;
    if (!m_initialized) m_initialGap = t;
    return *this;
  }
  /// Scale α of the back-projected update (finite; default 0.25).
  GradientProjector& setScale(Scalar alpha) {
    requireArg(std::isfinite(double(alpha)), "GradientProjector::setScale", "alpha", alpha, "a finite number");
    m_scale = alpha;
    return *this;
  }
  /// Which side(s) of G to project (default `Std`). Set before the first step.
  GradientProjector& setProjectionType(ProjectionType t) {
    requireNotInitialized("GradientProjector::setProjectionType");
    m_type = t;
    return *this;
  }
  /// Refresh offset o ∈ [0, T): refreshes on steps 0, o, o+T, … (stagger layers by giving them different offsets).
  GradientProjector& setOffset(Index o) {
    requireArg(o >= 0 && o < m_gap, "GradientProjector::setOffset", "o", o, "in [0, update gap = " + std::to_string(m_gap) + ")");
    requireNotInitialized("GradientProjector::setOffset");
    m_offset = o;
    return *this;
  }
  /// Q-GaLore's adaptive gap: a sliding window of the last `queueLength` overlaps; after each
  /// refresh, when the window is full and its mean is ≥ `threshold`, the gap is multiplied by
  /// `factor` (defaults 5, 0.4, 2, Q-GaLore's). The window is not cleared by an increase.
  GradientProjector& setAdaptiveGap(bool on, Index queueLength = 5, double threshold = 0.4, Index factor = 2) {
    requireArg(queueLength >= 1, "GradientProjector::setAdaptiveGap", "queueLength", queueLength, ">= 1");
    requireArg(threshold >= 0 && threshold <= 1, "GradientProjector::setAdaptiveGap", "threshold", threshold, "in [0, 1]");
    requireArg(factor >= 2, "GradientProjector::setAdaptiveGap", "factor", factor, ">= 2");
    m_adaptive = on;
    m_queueLength = queueLength;
    m_threshold = threshold;
    m_factor = factor;
    m_queue.clear();
    m_queue.reserve(std::size_t(queueLength));
    return *this;
  }
  /// Rule for the next refresh after a gap change (default `RefreshSchedule::Multiples`, Q-GaLore's).
  GradientProjector& setRefreshSchedule(RefreshSchedule s) {
    m_schedule = s;
    return *this;
  }
  /// The rule for the next refresh after a gap change.
  RefreshSchedule refreshSchedule() const { return m_schedule; }
  /// Upper bound of the adaptive gap (default: unbounded).
  GradientProjector& setMaxUpdateGap(Index t) {
    requireArg(t >= 1, "GradientProjector::setMaxUpdateGap", "t", t, ">= 1");
    m_maxGap = t;
    return *this;
  }

  /// Rank r.
  Index rank() const { return m_rank; }
  /// Current update gap T (grown by the adaptive gap).
  Index updateGap() const { return m_gap; }
  /// Refresh offset o.
  Index offset() const { return m_offset; }
  /// Scale α of the back-projected update.
  Scalar scale() const { return m_scale; }
  /// The projection type.
  ProjectionType projectionType() const { return m_type; }
  /// True when Q-GaLore's adaptive gap is on.
  bool adaptiveGap() const { return m_adaptive; }
  /// The basis policy (the left basis when the type is Full). Configure it before the first step.
  Basis& basis() { return m_a; }
  /// The basis policy (the left basis when the type is Full).
  const Basis& basis() const { return m_a; }
  /// The right basis B of a two-sided (Full) projector.
  const Basis& rightBasis() const { return m_b; }
  /// Refreshes, failed refreshes, refresh time, overlaps and gap increases so far.
  const ProjectorStats& stats() const { return m_stats; }
  /// Number of steps seen (the index of the next step).
  Index step() const { return m_step; }
  /// The step on which the next scheduled refresh happens.
  Index nextRefresh() const { return m_nextRefresh; }

  /// True once the gradient shape is fixed (by `init` or the first step).
  bool initialized() const { return m_initialized; }
  /// Rows m of the gradient (0 before `init`).
  Index rows() const { return m_rows; }
  /// Columns n of the gradient (0 before `init`).
  Index cols() const { return m_cols; }
  /// True for a two-sided projector.
  bool twoSided() const { return m_type == ProjectionType::Full; }
  /// The side of a one-sided projector (Left for Full: its first factor).
  Side side() const { return m_side; }
  /// Rows of the projected gradient R: r for a left or two-sided projection, else m.
  Index projectedRows() const { return twoSided() || m_side == Side::Left ? m_rank : m_rows; }
  /// Columns of the projected gradient R: r for a right or two-sided projection, else n.
  Index projectedCols() const { return twoSided() || m_side == Side::Right ? m_rank : m_cols; }

  /// Fixes the gradient shape (m×n), resolves the side and checks the rank. Called by the first
  /// `beginStep`; call it yourself to validate early.
  void init(Index rows, Index cols) {
    if (m_initialized && rows == m_rows && cols == m_cols) return;  // the per-step path: no checks that build strings
    requireArg(rows >= 1, "GradientProjector::init", "rows", rows, ">= 1");
    requireArg(cols >= 1, "GradientProjector::init", "cols", cols, ">= 1");
    const Index maxRank = std::min(rows, cols);
    requireArg(m_rank <= maxRank, "GradientProjector::init", "rank", m_rank,
               "<= min(m, n) = " + std::to_string(maxRank) + " for a " + detail::shapeString(rows, cols) + " gradient");
    if (m_initialized) {
      requireArg(rows == m_rows && cols == m_cols, "GradientProjector::init", "shape", detail::shapeString(rows, cols),
                 "the shape seen first, " + detail::shapeString(m_rows, m_cols));
      return;
    }
    m_rows = rows;
    m_cols = cols;
    switch (m_type) {
      case ProjectionType::Std: m_side = rows >= cols ? Side::Right : Side::Left; break;
      case ProjectionType::ReverseStd: m_side = rows >= cols ? Side::Left : Side::Right; break;
      case ProjectionType::Left: m_side = Side::Left; break;
      case ProjectionType::Right: m_side = Side::Right; break;
      case ProjectionType::Full: m_side = Side::Left; break;
      case ProjectionType::MinState: m_side = rows > cols ? Side::Left : Side::Right; break;
    }
    if (twoSided()) {
      m_b = m_a;
      m_tmp.resize(m_rank, m_cols);  // AᵀG, then N Bᵀ
    }
    m_transA.resize(m_rank, m_rank);
    m_transB.resize(m_rank, m_rank);
    m_nextRefresh = m_offset;
    m_initialized = true;
  }

  /// Refreshes the basis when due (first step, then the schedule). Returns true when a new
  /// basis replaced a previous one, i.e. when `transition()` holds R = P_oldᵀP_new for the moments.
  template <typename DG>
  bool beginStep(const Eigen::MatrixBase<DG>& g) {
    init(g.rows(), g.cols());
    const bool has = hasBasis();
    if (has && m_step < m_nextRefresh) return false;
    return refreshNow(g);
  }

  /// Refreshes now, regardless of the schedule (also advances the schedule when due).
  template <typename DG>
  bool refreshNow(const Eigen::MatrixBase<DG>& g) {
    init(g.rows(), g.cols());
    const bool had = hasBasis();
    const auto t0 = std::chrono::steady_clock::now();
    RefreshResult ra, rb;
    const std::uint64_t index = std::uint64_t(m_stats.refreshes + m_stats.failedRefreshes);
    bool ok = false, allOk = false;
    if (twoSided()) {
      // Each factor is refreshed on its own; a factor whose refresh fails keeps its basis and
      // contributes an identity transition.
      ra = m_a.refresh(g, Side::Left, m_rank, 2 * index, &m_transA);
      rb = m_b.refresh(g, Side::Right, m_rank, 2 * index + 1, &m_transB);
      if (!ra.ok) m_transA.setIdentity(m_rank, m_rank);
      if (!rb.ok) m_transB.setIdentity(m_rank, m_rank);
      ok = ra.ok || rb.ok;
      allOk = ra.ok && rb.ok;
    } else {
      ra = m_a.refresh(g, m_side, m_rank, index, &m_transA);
      ok = allOk = ra.ok;
    }
    m_stats.refreshSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!allOk) {
      ++m_stats.failedRefreshes;
      if (!hasBasis())
        throw NumericalError("GradientProjector::refresh: the first basis could not be computed (" +
                             std::string(Basis::kName) + "); the gradient may be degenerate");
    }
    if (ok) {
      ++m_stats.refreshes;
      double ov = ra.overlap;
      if (twoSided() && std::isfinite(rb.overlap)) ov = 0.5 * (ra.overlap + rb.overlap);
      if (std::isfinite(ov)) {
        m_stats.lastOverlap = ov;
        m_stats.overlapSum += ov;
        ++m_stats.overlapCount;
        if (m_adaptive) adapt(ov);
      }
    }
    if (m_nextRefresh <= m_step) {
      if (m_schedule == RefreshSchedule::FromLastRefresh) {
        while (m_nextRefresh <= m_step) m_nextRefresh += m_gap;
      } else {
        // The first step s > m_step with s = o + kT (k ≥ 0) for the current T.
        const Index s = m_step + 1;
        m_nextRefresh = s <= m_offset ? m_offset : m_offset + ((s - m_offset + m_gap - 1) / m_gap) * m_gap;
      }
    }
    if (ok && !had) m_skipTrack = true;  // the initialising step does not track (Online Subspace Descent)
    return ok && had;
  }

  /// R = P_oldᵀ P_new of the last refresh (r×r; the left factor A for Full).
  const Matrix& transition() const { return m_transA; }
  /// R_B = B_oldᵀ B_new of the last refresh of a two-sided projector.
  const Matrix& transitionRight() const { return m_transB; }
  /// Sets the transitions of the last refresh (r×r each; `right` only for a two-sided
  /// projector), for a projector whose basis was loaded from the one that refreshed it (checkpoints
  /// hold the basis, not the transitions; `wproj::mpi::DistributedRefresh` sends both).
  void setTransitions(const Matrix& left, const Matrix& right = Matrix()) {
    const char* where = "GradientProjector::setTransitions";
    checkShape(left, m_rank, m_rank, where, "left");
    if (twoSided()) checkShape(right, m_rank, m_rank, where, "right");
    m_transA = left;
    if (twoSided()) m_transB = right;
  }

  /// out = PᵀG (left, r×n), G P (right, m×r) or AᵀG B (full, r×r). No allocation. Throws
  /// `InvalidArgument` before the first basis or for a G of another shape.
  template <typename DG, typename DO>
  void project(const Eigen::MatrixBase<DG>& g, Eigen::MatrixBase<DO>& out) {
    checkReady(g.rows(), g.cols(), "GradientProjector::project");
    checkShape(out, projectedRows(), projectedCols(), "GradientProjector::project", "out");
    if (twoSided()) {
      m_a.project(g, Side::Left, m_tmp);
      m_b.project(m_tmp, Side::Right, out);
    } else {
      m_a.project(g, m_side, out);
    }
  }
  /// Overload for a temporary destination, such as an Eigen block or `Map`.
  template <typename DO, typename DG>
  void project(const Eigen::MatrixBase<DG>& g, Eigen::MatrixBase<DO>&& out) {
    project(g, out);
  }
  /// Convenience: returns the projected gradient (allocates).
  template <typename DG>
  Matrix project(const Eigen::MatrixBase<DG>& g) {
    Matrix out(projectedRows(), projectedCols());
    project(g, out);
    return out;
  }

  /// W += c·α·back(N), with back(N) = P N (left), N Pᵀ (right) or A N Bᵀ (full). No allocation.
  /// Throws `InvalidArgument` before the first basis or for an N or W of another shape.
  template <typename DN, typename DW>
  void addBack(const Eigen::MatrixBase<DN>& n, Scalar c, Eigen::MatrixBase<DW>& w) {
    if (!m_initialized || !hasBasis()) throw InvalidArgument("GradientProjector::addBack: no basis yet; call beginStep(G) first");
    checkShape(n, projectedRows(), projectedCols(), "GradientProjector::addBack", "n");
    checkShape(w, m_rows, m_cols, "GradientProjector::addBack", "w");
    const Scalar coeff = c * m_scale;
    if (twoSided()) {
      m_b.backProject(n, Side::Right, m_tmp);  // N Bᵀ (r×n)
      m_a.addBack(m_tmp, Side::Left, coeff, w);
    } else {
      m_a.addBack(n, m_side, coeff, w);
    }
  }
  /// Overload for a temporary destination, such as an Eigen block or `Map`.
  template <typename DN, typename DW>
  void addBack(const Eigen::MatrixBase<DN>& n, Scalar c, Eigen::MatrixBase<DW>&& w) {
    addBack(n, c, w);
  }
  /// Returns α·back(N) as a new m×n matrix (allocates; for tests and one-off use).
  template <typename DN>
  Matrix projectBack(const Eigen::MatrixBase<DN>& n) {
    Matrix out = Matrix::Zero(m_rows, m_cols);
    addBack(n, Scalar(1), out);
    return out;
  }

  /// Ends a step: lets a tracking basis (online PCA) update itself from G, then advances the
  /// step counter. `lrRatio` = lr_t / lr_0 of the optimizer's schedule.
  template <typename DG>
  void endStep(const Eigen::MatrixBase<DG>& g, double lrRatio = 1.0) {
    trackIf(g, lrRatio, std::integral_constant<bool, Basis::kTracksSteps>());
    ++m_step;
  }

  /// True once a basis exists (both factors for Full).
  bool hasBasis() const { return m_a.hasBasis() && (!twoSided() || m_b.hasBasis()); }

  /// The dense projection matrix P (ambient×r; A for Full), for tests and diagnostics.
  Matrix denseBasis() const {
    Matrix p;
    m_a.denseBasis(p);
    return p;
  }
  /// The dense right factor B (n×r) of a two-sided projector.
  Matrix denseRightBasis() const {
    Matrix p;
    m_b.denseBasis(p);
    return p;
  }

  /// Bytes of persistent projector state (what a checkpoint must hold for the bases).
  std::size_t stateBytes() const { return m_a.stateBytes() + (twoSided() ? m_b.stateBytes() : 0); }

  /// Writes the projector to a checkpoint: settings, schedule, adaptive-gap window, statistics and
  /// basis state.
  void save(std::ostream& os) const {
    ckpt::writeTag(os, "GradientProjector");
    ckpt::writeString(os, Basis::kName);
    ckpt::writePod<std::uint8_t>(os, m_initialized ? 1 : 0);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_type));
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_side));
    for (Index v : {m_rows, m_cols, m_rank, m_gap, m_initialGap, m_offset, m_step, m_nextRefresh, m_queueLength, m_factor,
                    m_maxGap})
      ckpt::writePod<std::int64_t>(os, v);
    ckpt::writePod<double>(os, double(m_scale));
    ckpt::writePod<std::uint8_t>(os, m_adaptive ? 1 : 0);
    ckpt::writePod<double>(os, m_threshold);
    ckpt::writeVector(os, m_queue);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_schedule));
    for (Index v : {m_stats.refreshes, m_stats.failedRefreshes, m_stats.gapIncreases, m_stats.overlapCount})
      ckpt::writePod<std::int64_t>(os, v);
    for (double v : {m_stats.refreshSeconds, m_stats.lastOverlap, m_stats.overlapSum}) ckpt::writePod<double>(os, v);
    m_a.save(os);
    if (twoSided()) m_b.save(os);
  }

  /// Restores a state written by `save`: the projector's settings (rank, gap, scale, type, adaptive
  /// gap, refresh schedule) come from the checkpoint; the basis policy's settings must equal this
  /// object's. Throws `IoError` on malformed data, a checkpoint of another basis policy, or other
  /// basis settings (this object is unchanged then).
  void load(std::istream& is) {
    ckpt::expectTag(is, "GradientProjector");
    const std::string name = ckpt::readString(is, "basis name");
    if (!ckpt::tagMatches(name, Basis::kName))
      throw IoError("checkpoint: projector was saved with basis '" + name + "'; this projector uses '" + Basis::kName + "'");
    GradientProjector p(m_a);  // build into a fresh object, commit at the end
    p.m_initialized = ckpt::readBounded<std::uint8_t>(is, "initialized flag", 0, 1) != 0;
    p.m_type = ProjectionType(ckpt::readBounded<std::int32_t>(is, "projection type", 0, 5));
    p.m_side = Side(ckpt::readBounded<std::int32_t>(is, "side", 0, 1));
    const std::int64_t big = ckpt::kMaxExtent;
    p.m_rows = ckpt::readBounded<std::int64_t>(is, "rows", 0, big);
    p.m_cols = ckpt::readBounded<std::int64_t>(is, "cols", 0, big);
    p.m_rank = ckpt::readBounded<std::int64_t>(is, "rank", 1, big);
    p.m_gap = ckpt::readBounded<std::int64_t>(is, "update gap", 1, std::numeric_limits<std::int64_t>::max());
    p.m_initialGap = ckpt::readBounded<std::int64_t>(is, "initial gap", 1, std::numeric_limits<std::int64_t>::max());
    p.m_offset = ckpt::readBounded<std::int64_t>(is, "offset", 0, p.m_initialGap - 1);
    p.m_step = ckpt::readBounded<std::int64_t>(is, "step", 0, std::numeric_limits<std::int64_t>::max());
    p.m_nextRefresh = ckpt::readBounded<std::int64_t>(is, "next refresh", 0, std::numeric_limits<std::int64_t>::max());
    p.m_queueLength = ckpt::readBounded<std::int64_t>(is, "queue length", 1, 1 << 20);
    p.m_factor = ckpt::readBounded<std::int64_t>(is, "gap factor", 2, 1 << 20);
    p.m_maxGap = ckpt::readBounded<std::int64_t>(is, "max gap", 1, std::numeric_limits<std::int64_t>::max());
    const double sc = ckpt::readPod<double>(is, "scale");
    if (!std::isfinite(sc)) throw IoError("checkpoint: projector scale is not finite");
    p.m_scale = Scalar(sc);
    p.m_adaptive = ckpt::readBounded<std::uint8_t>(is, "adaptive flag", 0, 1) != 0;
    p.m_threshold = ckpt::readPod<double>(is, "adaptive threshold");
    if (!(p.m_threshold >= 0 && p.m_threshold <= 1)) throw IoError("checkpoint: adaptive threshold out of [0, 1]");
    p.m_queue = ckpt::readVector<double>(is, "overlap queue");
    if (Index(p.m_queue.size()) > p.m_queueLength) throw IoError("checkpoint: overlap queue longer than its capacity");
    p.m_queue.reserve(std::size_t(p.m_queueLength));
    // Version-1 checkpoints were written under the rule of their time, refresh + T.
    p.m_schedule = ckpt::streamVersion(is) >= 2
                       ? RefreshSchedule(ckpt::readBounded<std::int32_t>(is, "refresh schedule", 0, 1))
                       : RefreshSchedule::FromLastRefresh;
    p.m_stats.refreshes = ckpt::readBounded<std::int64_t>(is, "refresh count", 0, std::numeric_limits<std::int64_t>::max());
    p.m_stats.failedRefreshes = ckpt::readBounded<std::int64_t>(is, "failed refresh count", 0, std::numeric_limits<std::int64_t>::max());
    p.m_stats.gapIncreases = ckpt::readBounded<std::int64_t>(is, "gap increases", 0, std::numeric_limits<std::int64_t>::max());
    p.m_stats.overlapCount = ckpt::readBounded<std::int64_t>(is, "overlap count", 0, std::numeric_limits<std::int64_t>::max());
    p.m_stats.refreshSeconds = ckpt::readPod<double>(is, "refresh seconds");
    p.m_stats.lastOverlap = ckpt::readPod<double>(is, "last overlap");
    p.m_stats.overlapSum = ckpt::readPod<double>(is, "overlap sum");
    if (p.m_initialized) {
      if (p.m_rows < 1 || p.m_cols < 1 || p.m_rank > std::min(p.m_rows, p.m_cols))
        throw IoError("checkpoint: projector shape " + detail::shapeString(p.m_rows, p.m_cols) + " is inconsistent with rank " +
                      std::to_string(p.m_rank));
      const Index ambientA = p.twoSided() ? p.m_rows : detail::ambientOf(p.m_rows, p.m_cols, p.m_side);
      p.m_a.load(is, ambientA, p.m_rank);
      if (p.twoSided()) {
        p.m_b = p.m_a;
        p.m_b.load(is, p.m_cols, p.m_rank);
        p.m_tmp.resize(p.m_rank, p.m_cols);
      }
      p.m_transA.resize(p.m_rank, p.m_rank);
      p.m_transB.resize(p.m_rank, p.m_rank);
    }
    *this = std::move(p);
  }

 private:
  void requireNotInitialized(const char* where) const {
    if (m_initialized) throw InvalidArgument(std::string(where) + ": the projector is already in use (shape fixed by its first step)");
  }
  void checkReady(Index rows, Index cols, const char* where) const {
    if (!m_initialized || !hasBasis()) throw InvalidArgument(std::string(where) + ": no basis yet; call beginStep(G) first");
    if (rows != m_rows || cols != m_cols)
      throw InvalidArgument(std::string(where) + ": argument 'g' has shape " + detail::shapeString(rows, cols) + "; expected " +
                            detail::shapeString(m_rows, m_cols));
  }
  void adapt(double ov) {
    if (Index(m_queue.size()) == m_queueLength) m_queue.erase(m_queue.begin());
    m_queue.push_back(ov);
    if (Index(m_queue.size()) == m_queueLength) {
      double mean = 0;
      for (double q : m_queue) mean += q;
      mean /= double(m_queue.size());
      // Q-GaLore's rule (their GaLoreProjector.project): the queue is a sliding window that is
      // not cleared after an increase, so every refresh whose window mean stays above the
      // threshold multiplies the gap again.
      if (mean >= m_threshold && m_gap < m_maxGap) {
        m_gap = std::min(m_maxGap, m_gap * m_factor);
        ++m_stats.gapIncreases;
      }
    }
  }
  template <typename DG>
  void trackIf(const Eigen::MatrixBase<DG>& g, double lrRatio, std::true_type) {
    if (!hasBasis()) return;
    if (m_skipTrack) {
      // The basis was computed on this step: upstream's first P update is on the next step.
      m_skipTrack = false;
      return;
    }
    // Online Subspace Descent: projection learning rate (1/T)·(lr/lr₀).
    const double lr = lrRatio / double(m_initialGap);
    if (twoSided()) {
      m_a.track(g, Side::Left, lr);
      m_b.track(g, Side::Right, lr);
    } else {
      m_a.track(g, m_side, lr);
    }
  }
  template <typename DG>
  void trackIf(const Eigen::MatrixBase<DG>&, double, std::false_type) {}

  Basis m_a, m_b;
  ProjectionType m_type = ProjectionType::Std;
  Side m_side = Side::Right;
  Index m_rows = 0, m_cols = 0;
  Index m_rank = 128;
  Index m_gap = 200, m_initialGap = 200;
  Index m_offset = 0;
  Scalar m_scale = Scalar(0.25);
  bool m_adaptive = false;
  Index m_queueLength = 5;
  double m_threshold = 0.4;
  Index m_factor = 2;
  Index m_maxGap = std::numeric_limits<std::int64_t>::max() / 4;
  std::vector<double> m_queue;
  bool m_initialized = false;
  bool m_skipTrack = false;
  RefreshSchedule m_schedule = RefreshSchedule::Multiples;
  Index m_step = 0;
  Index m_nextRefresh = 0;
  Matrix m_transA, m_transB, m_tmp;
  ProjectorStats m_stats;
};

}  // namespace wproj
