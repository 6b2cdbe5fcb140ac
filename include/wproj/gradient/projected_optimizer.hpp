// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// `ProjectedOptimizer<Basis, Rule>`: the part every GaLore-style optimizer shares (Zhao et al.
/// 2024) — projector, refresh, step counting, moment policy on a basis change, non-finite
/// handling, the learning-rate ratio of a tracking basis and the common checkpoint fields — with
/// the update rule (Adam, Adafactor, …) as a policy.

#include "persistence.hpp"
#include "moments.hpp"
#include "projector.hpp"

#include <Eigen/Core>

#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <type_traits>
#include <utility>

namespace wproj {

/// What an optimizer does with a NaN/Inf gradient.
enum class NonFinitePolicy {
  Throw,  ///< throw `InvalidArgument` naming the first non-finite entry (default)
  Skip    ///< leave weights and state untouched and count the skipped step
};

/// Outcome of one optimizer step.
enum class StepOutcome { Applied, Skipped };

/// What a rule's update asks the optimizer to apply: W += coefficient·α·back(N), and the
/// decoupled weight decay W ← W·(1 − decayLearningRate·wd).
struct RuleStep {
  double coefficient = 0;        ///< multiplier c of the back-projected update N
  double decayLearningRate = 0;  ///< the learning rate that scales the weight decay
};

namespace detail {

/// Handles a non-finite gradient according to the policy; returns true when the step must be skipped.
template <typename DG>
bool rejectNonFinite(const Eigen::MatrixBase<DG>& g, NonFinitePolicy policy, const char* where, Index& skipped) {
  if (allFinite(g)) return false;
  ++skipped;
  if (policy == NonFinitePolicy::Throw) checkFinite(g, where, "g");
  return true;
}

template <typename...>
using VoidT = void;

// Detection traits of what `ProjectedOptimizer` needs from a Rule (one trait per requirement so
// that a failing static_assert names the missing piece).
template <typename R, typename = void>
struct RuleHasTypes : std::false_type {};
template <typename R>
struct RuleHasTypes<R, VoidT<typename R::Scalar, typename R::Options>> : std::true_type {};

template <typename R, typename = void>
struct RuleHasNames : std::false_type {};
template <typename R>
struct RuleHasNames<R, VoidT<decltype(std::declval<const char*&>() = R::kProjectedName),
                             decltype(std::declval<const char*&>() = R::kStepWhere),
                             decltype(std::declval<bool&>() = R::kDecayBeforeUpdate)>> : std::true_type {};

template <typename R, typename = void>
struct RuleHasOptions : std::false_type {};
template <typename R>
struct RuleHasOptions<R, VoidT<decltype(std::declval<const typename R::Options&>().validate("")),
                               decltype(std::declval<const typename R::Options&>().save(std::declval<std::ostream&>())),
                               decltype(std::declval<typename R::Options&>().load(std::declval<std::istream&>())),
                               decltype(std::declval<double&>() = std::declval<const typename R::Options&>().learningRate),
                               decltype(std::declval<double&>() = std::declval<const typename R::Options&>().weightDecay),
                               decltype(std::declval<NonFinitePolicy&>() = std::declval<const typename R::Options&>().nonFinite),
                               decltype(std::declval<typename R::Options&>() = R::projectedDefaults())>> : std::true_type {};

template <typename R, typename = void>
struct RuleHasUpdate : std::false_type {};
template <typename R>
struct RuleHasUpdate<
    R, VoidT<decltype(std::declval<RuleStep&>() = std::declval<R&>().update(
                          std::declval<Eigen::Matrix<typename R::Scalar, Eigen::Dynamic, Eigen::Dynamic>&>(), Index(),
                          std::declval<const typename R::Options&>(),
                          std::declval<const Eigen::Matrix<typename R::Scalar, Eigen::Dynamic, Eigen::Dynamic>&>()))>>
    : std::true_type {};

template <typename R, typename = void>
struct RuleHasState : std::false_type {};
template <typename R>
struct RuleHasState<
    R, VoidT<decltype(std::declval<R&>().allocate(Index(), Index(), Index(), std::declval<const typename R::Options&>())),
             decltype(std::declval<R&>().reset()),
             decltype(std::declval<R&>().rotate(
                 bool(), Side::Left, std::declval<const Eigen::Matrix<typename R::Scalar, Eigen::Dynamic, Eigen::Dynamic>&>(),
                 std::declval<const Eigen::Matrix<typename R::Scalar, Eigen::Dynamic, Eigen::Dynamic>&>())),
             decltype(std::declval<std::size_t&>() = std::declval<const R&>().bytes())>> : std::true_type {};

template <typename R, typename = void>
struct RuleHasCheckpoint : std::false_type {};
template <typename R>
struct RuleHasCheckpoint<
    R, VoidT<decltype(std::declval<const R&>().saveBeforeProjector(std::declval<std::ostream&>(), bool())),
             decltype(std::declval<const R&>().saveAfterProjector(std::declval<std::ostream&>(), bool())),
             decltype(std::declval<bool&>() = std::declval<R&>().loadBeforeProjector(std::declval<std::istream&>(),
                                                                                     std::declval<const typename R::Options&>())),
             decltype(std::declval<R&>().loadAfterProjector(std::declval<std::istream&>(), Index(), Index(), Index(),
                                                            std::declval<const typename R::Options&>()))>> : std::true_type {};

}  // namespace detail

/// True when `Rule` provides everything `ProjectedOptimizer` calls (see `ProjectedOptimizer`).
template <typename Rule>
struct IsProjectedRule
    : std::integral_constant<bool, detail::RuleHasTypes<Rule>::value && detail::RuleHasNames<Rule>::value &&
                                       detail::RuleHasOptions<Rule>::value && detail::RuleHasUpdate<Rule>::value &&
                                       detail::RuleHasState<Rule>::value && detail::RuleHasCheckpoint<Rule>::value> {};

/// A GaLore-style optimizer: the gradient G of W is projected into the rank-r space of a
/// `GradientProjector<Basis>` (R = projector(G)), the update rule `Rule` turns R into a low-rank
/// update N with its own state shaped like R, and W += c·α·back(N); the decoupled weight decay
/// acts on the full W (before or after the update, as the rule's reference code does).
///
/// What this class does for every rule: the projector and its refresh schedule; Adam-style step
/// counting t (restarted by `MomentPolicy::Reset` and after a non-finite update); the moment
/// policy on a basis change (`Keep`, `Reset`, `Rotate` through `Rule::rotate`); non-finite
/// gradients (throw or skip, `NonFinitePolicy`) and non-finite updates (never applied: the rule's
/// state is reset and the step counted in `skippedSteps()`); the ratio lr/lr₀ passed to a tracking
/// basis on every step, applied or not; and the checkpoint fields every rule shares.
///
/// A Rule (see `AdamRule`, `AdafactorRule`) provides `Scalar`, `Options` (with `learningRate`,
/// `weightDecay`, `nonFinite`, `validate`, `save`, `load`), `projectedDefaults()`, the names
/// `kProjectedName` (checkpoint tag) and `kStepWhere` (error messages), `kDecayBeforeUpdate`, and
/// `allocate`, `reset`, `update`, `rotate`, `bytes`, `saveBeforeProjector`, `saveAfterProjector`,
/// `loadBeforeProjector`, `loadAfterProjector`; `IsProjectedRule` checks them at compile time.
template <typename Basis, typename Rule>
class ProjectedOptimizer {
  static_assert(IsGradientBasis<Basis>::value, "ProjectedOptimizer<Basis, Rule>: Basis is not a gradient basis policy (see IsGradientBasis)");
  static_assert(detail::RuleHasTypes<Rule>::value, "ProjectedOptimizer<Basis, Rule>: Rule must define the types Scalar and Options");
  static_assert(detail::RuleHasNames<Rule>::value,
                "ProjectedOptimizer<Basis, Rule>: Rule must define kProjectedName, kStepWhere (const char*) and kDecayBeforeUpdate (bool)");
  static_assert(detail::RuleHasOptions<Rule>::value,
                "ProjectedOptimizer<Basis, Rule>: Rule::Options must have learningRate, weightDecay, nonFinite, validate(where), "
                "save(os), load(is), and Rule must provide static Options projectedDefaults()");
  static_assert(detail::RuleHasUpdate<Rule>::value,
                "ProjectedOptimizer<Basis, Rule>: Rule must provide RuleStep update(Matrix& r, Index t, const Options&, const Matrix& w)");
  static_assert(detail::RuleHasState<Rule>::value,
                "ProjectedOptimizer<Basis, Rule>: Rule must provide allocate(p, q, rank, options), reset(), "
                "rotate(twoSided, side, ra, rb) and bytes()");
  static_assert(detail::RuleHasCheckpoint<Rule>::value,
                "ProjectedOptimizer<Basis, Rule>: Rule must provide saveBeforeProjector/saveAfterProjector(os, started), "
                "bool loadBeforeProjector(is, options) and loadAfterProjector(is, p, q, rank, options)");
  static_assert(std::is_same<typename Basis::Scalar, typename Rule::Scalar>::value,
                "ProjectedOptimizer<Basis, Rule>: Basis::Scalar and Rule::Scalar must be the same type");

 public:
  /// The projector type, `GradientProjector<Basis>`.
  using Projector = GradientProjector<Basis>;
  /// The update rule.
  using RuleType = Rule;
  /// The rule's hyperparameters.
  using Options = typename Rule::Options;
  /// Floating-point type of the basis, weights and optimizer state.
  using Scalar = typename Basis::Scalar;
  /// Dense matrix type of the projected gradient.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  ProjectedOptimizer() : m_opt(Rule::projectedDefaults()) {}
  /// An optimizer around a configured (not yet used) projector.
  explicit ProjectedOptimizer(const Projector& projector) : m_proj(projector), m_opt(Rule::projectedDefaults()) {}

  /// The projector; configure it (rank, gap, projection type, basis) before the first step.
  Projector& projector() { return m_proj; }
  /// The projector.
  const Projector& projector() const { return m_proj; }
  /// The update rule and its state.
  const Rule& rule() const { return m_rule; }

  /// Replaces all hyperparameters; throws `InvalidArgument` and keeps the old ones when `o` is invalid.
  ProjectedOptimizer& setOptions(const Options& o) {
    o.validate(Rule::kProjectedName);
    m_opt = o;
    return *this;
  }
  /// Sets what happens to the rule's state when the basis changes (default `Keep`).
  ProjectedOptimizer& setMomentPolicy(MomentPolicy p) {
    m_policy = p;
    return *this;
  }
  /// The current hyperparameters.
  const Options& options() const { return m_opt; }
  /// The moment policy.
  MomentPolicy momentPolicy() const { return m_policy; }
  /// Step count t of the rule's schedules (restarts with `MomentPolicy::Reset` and after a
  /// non-finite update).
  Index stepCount() const { return m_t; }
  /// Number of steps not applied: non-finite gradients and non-finite low-rank updates (which
  /// also reset the rule's state).
  Index skippedSteps() const { return m_skipped; }
  /// Bytes of optimizer state: the rule's state plus the projector's basis state.
  std::size_t stateBytes() const { return m_rule.bytes() + m_proj.stateBytes(); }

  /// One step on W (m×n) with gradient G (m×n): refresh when due (moment policy), project, the
  /// rule's update, back-projection and weight decay, then the projector's end of step.
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DG>& g) {
    checkShape(g, w.rows(), w.cols(), Rule::kStepWhere, "g");
    if (detail::rejectNonFinite(g, m_opt.nonFinite, Rule::kStepWhere, m_skipped)) return StepOutcome::Skipped;
    if (m_r.size() == 0) start(g.rows(), g.cols());
    if (m_proj.beginStep(g)) applyMomentPolicy();
    m_proj.project(g, m_r);
    ++m_t;
    const RuleStep s = m_rule.update(m_r, m_t, m_opt, w);
    if (!m_r.allFinite()) {
      m_rule.reset();
      m_t = 0;
      ++m_skipped;
      m_proj.endStep(g, lrRatio());
      return StepOutcome::Skipped;
    }
    if (Rule::kDecayBeforeUpdate) decay(w, s.decayLearningRate);
    m_proj.addBack(m_r, Scalar(s.coefficient), w);
    if (!Rule::kDecayBeforeUpdate) decay(w, s.decayLearningRate);
    m_proj.endStep(g, lrRatio());
    return StepOutcome::Applied;
  }
  /// Overload for a temporary weight expression, such as an Eigen block or `Map`.
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>&& w, const Eigen::MatrixBase<DG>& g) {
    return step(w, g);
  }

  /// Writes hyperparameters, moment policy, step counts, lr₀, the rule's state and the projector
  /// to a checkpoint (section `Rule::kProjectedName`).
  void save(std::ostream& os) const {
    ckpt::writeHeader(os, Rule::kProjectedName);
    m_opt.save(os);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_policy));
    ckpt::writePod<std::int64_t>(os, m_t);
    ckpt::writePod<std::int64_t>(os, m_skipped);
    ckpt::writePod<double>(os, m_lr0);
    const bool started = m_r.size() > 0;
    m_rule.saveBeforeProjector(os, started);
    m_proj.save(os);
    m_rule.saveAfterProjector(os, started);
  }
  /// Restores a state written by `save`; throws `IoError` on malformed data (this object is
  /// unchanged then).
  void load(std::istream& is) {
    ckpt::readHeader(is, Rule::kProjectedName);
    ProjectedOptimizer o(m_proj);
    o.m_opt.load(is);
    o.m_policy = MomentPolicy(ckpt::readBounded<std::int32_t>(is, "moment policy", 0, 2));
    o.m_t = ckpt::readBounded<std::int64_t>(is, "step count", 0, std::numeric_limits<std::int64_t>::max());
    o.m_skipped = ckpt::readBounded<std::int64_t>(is, "skipped steps", 0, std::numeric_limits<std::int64_t>::max());
    o.m_lr0 = ckpt::readPod<double>(is, "initial learning rate");
    const bool started = o.m_rule.loadBeforeProjector(is, o.m_opt);
    o.m_proj.load(is);
    if (started) {
      if (!o.m_proj.initialized()) throw IoError("checkpoint: optimizer state present but the projector is not initialised");
      o.m_rule.loadAfterProjector(is, o.m_proj.projectedRows(), o.m_proj.projectedCols(), o.m_proj.rank(), o.m_opt);
      o.m_r.resize(o.m_proj.projectedRows(), o.m_proj.projectedCols());
    }
    *this = std::move(o);
  }

 protected:
  /// Hyperparameters for the setters of derived classes (validated by `setOptions`).
  Options& mutableOptions() { return m_opt; }
  /// The rule, for the accessors of derived classes.
  Rule& mutableRule() { return m_rule; }

 private:
  double lrRatio() const { return m_lr0 > 0 ? m_opt.learningRate / m_lr0 : 1.0; }
  void start(Index rows, Index cols) {
    m_proj.init(rows, cols);
    m_rule.allocate(m_proj.projectedRows(), m_proj.projectedCols(), m_proj.rank(), m_opt);
    m_r.resize(m_proj.projectedRows(), m_proj.projectedCols());
    m_lr0 = m_opt.learningRate;
  }
  template <typename DW>
  void decay(Eigen::MatrixBase<DW>& w, double lr) {
    if (m_opt.weightDecay > 0) w.derived() *= Scalar(1.0 - lr * m_opt.weightDecay);
  }
  void applyMomentPolicy() {
    switch (m_policy) {
      case MomentPolicy::Keep: return;
      case MomentPolicy::Reset:
        m_rule.reset();
        m_t = 0;
        return;
      case MomentPolicy::Rotate: m_rule.rotate(m_proj.twoSided(), m_proj.side(), m_proj.transition(), m_proj.transitionRight()); return;
    }
  }

  Projector m_proj;
  Options m_opt;
  MomentPolicy m_policy = MomentPolicy::Keep;
  Index m_t = 0, m_skipped = 0;
  double m_lr0 = 0;
  Rule m_rule;
  Matrix m_r;
};

}  // namespace wproj
