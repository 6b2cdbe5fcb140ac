// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Adafactor (Shazeer & Stern 2018) at full rank, and Adafactor in a GaLore projected space.

#include "adamw.hpp"
#include "checkpoint.hpp"
#include "moments.hpp"
#include "projector.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>

namespace wproj {

/// Adafactor hyperparameters. The defaults are those of Hugging Face transformers'
/// `optimization.Adafactor` (which GaLore's Adafactor copies): lr = None (here 0) with
/// relative_step = True, scale_parameter = True, warmup_init = False, β₁ = None (here 0),
/// decay_rate = −0.8, clip_threshold = 1, eps = (1e-30, 1e-3), weight_decay = 0.
///
/// Learning rate of step t (1-based), with RMS(W) taken before the step:
///   ρ_t = relativeStep ? min(warmupInit ? 1e-6·t : 1e-2, 1/√t) : learningRate
///   lr_t = ρ_t · (scaleParameter ? max(ε₂, RMS(W)) : 1)
/// — `scaleParameter` applies whether or not `relativeStep` is on. For a fixed external learning
/// rate set relativeStep = false and scaleParameter = false (transformers' advice for T5).
struct AdafactorOptions {
  double learningRate = 0.0;    ///< external lr ρ (used when relativeStep is false; must be 0 = "None" when it is on)
  bool relativeStep = true;     ///< ρ_t = min(1e-2, 1/√t) (min(1e-6·t, 1/√t) with warmupInit)
  bool scaleParameter = true;   ///< multiply ρ_t by max(ε₂, RMS(W)), with or without relativeStep
  bool warmupInit = false;      ///< linear warm-up 1e-6·t of the relative step (requires relativeStep)
  double beta1 = 0.0;           ///< first-moment decay of lr_t·update; 0 = no first moment (None)
  double decayRate = -0.8;      ///< β₂ₜ = 1 − t^decayRate
  double clipThreshold = 1.0;   ///< d: the update is divided by max(1, RMS(update)/d)
  double epsilon1 = 1e-30;      ///< added to G² before averaging
  double epsilon2 = 1e-3;       ///< floor of RMS(W) in the parameter scale
  double weightDecay = 0.0;     ///< decoupled: W ← W − lr_t·wd·W
  /// What a NaN/Inf gradient does (default `Throw`).
  NonFinitePolicy nonFinite = NonFinitePolicy::Throw;

  /// Throws `InvalidArgument`, naming `where`, when a hyperparameter is out of range or the
  /// combination is one transformers refuses (a manual lr with relativeStep; warmupInit without it).
  void validate(const char* where) const {
    requireArg(std::isfinite(learningRate) && learningRate >= 0, where, "learningRate", learningRate, "finite and >= 0");
    requireArg(!relativeStep || learningRate == 0, where, "learningRate", learningRate,
               "0 (none) while relativeStep is on; set relativeStep = false to use an external learning rate");
    requireArg(!warmupInit || relativeStep, where, "warmupInit", warmupInit, "false while relativeStep is off (warm-up scales the relative step)");
    requireArg(beta1 >= 0 && beta1 < 1, where, "beta1", beta1, "in [0, 1)");
    requireArg(decayRate < 0 && decayRate >= -1, where, "decayRate", decayRate, "in [-1, 0)");
    requireArg(clipThreshold > 0, where, "clipThreshold", clipThreshold, "> 0");
    requireArg(epsilon1 > 0 && epsilon2 >= 0, where, "epsilon1", epsilon1, "> 0 (and epsilon2 >= 0)");
    requireArg(weightDecay >= 0 && std::isfinite(weightDecay), where, "weightDecay", weightDecay, ">= 0");
  }
  /// Writes the hyperparameters to a checkpoint.
  void save(std::ostream& os) const {
    for (double v : {learningRate, beta1, decayRate, clipThreshold, epsilon1, epsilon2, weightDecay}) ckpt::writePod<double>(os, v);
    ckpt::writePod<std::uint8_t>(os, relativeStep ? 1 : 0);
    ckpt::writePod<std::uint8_t>(os, scaleParameter ? 1 : 0);
    ckpt::writePod<std::int32_t>(os, std::int32_t(nonFinite));
    ckpt::writePod<std::uint8_t>(os, warmupInit ? 1 : 0);
  }
  /// Reads hyperparameters written by `save`; throws `IoError` when they are malformed or out of
  /// range (this object is unchanged then).
  void load(std::istream& is) {
    AdafactorOptions o;
    double* fields[] = {&o.learningRate, &o.beta1, &o.decayRate, &o.clipThreshold, &o.epsilon1, &o.epsilon2, &o.weightDecay};
    for (double* f : fields) *f = ckpt::readPod<double>(is, "Adafactor hyperparameter");
    o.relativeStep = ckpt::readBounded<std::uint8_t>(is, "relative step flag", 0, 1) != 0;
    o.scaleParameter = ckpt::readBounded<std::uint8_t>(is, "scale parameter flag", 0, 1) != 0;
    o.nonFinite = NonFinitePolicy(ckpt::readBounded<std::int32_t>(is, "non-finite policy", 0, 1));
    if (ckpt::streamVersion(is) >= 2) {
      o.warmupInit = ckpt::readBounded<std::uint8_t>(is, "warmup init flag", 0, 1) != 0;
    } else {
      o.warmupInit = false;
      if (o.relativeStep) o.learningRate = 0;  // version 1 kept an unused lr next to the relative step
    }
    try {
      o.validate("checkpoint");
    } catch (const InvalidArgument& e) {
      throw IoError(std::string("checkpoint: invalid Adafactor hyperparameters: ") + e.what());
    }
    *this = o;
  }
};

namespace detail {

/// Adafactor's factored state for one p×q matrix: row means r (p), column means c (q) of the
/// running E[G² + ε₁], optional first moment; V̂ = r cᵀ / mean(r) (= row sums × col sums / total).
template <typename Scalar>
struct FactoredState {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using RowVector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
  Vector row, rowFactor;
  RowVector col, colFactor;
  Matrix m;

  void allocate(Index p, Index q, bool firstMoment) {
    row.setZero(p);
    rowFactor.resize(p);
    col.setZero(q);
    colFactor.resize(q);
    if (firstMoment) m.setZero(p, q);
    else m.resize(0, 0);
  }
  void reset() {
    row.setZero();
    col.setZero();
    m.setZero();
  }
  std::size_t bytes() const { return std::size_t(row.size() + col.size() + m.size()) * sizeof(Scalar); }

  /// Turns g (p×q, in place) into the step lr·u of step t, transformers' order: u = g/√V̂, u ←
  /// u / max(1, RMS(u)/d), u ← lr·u, and with β₁ > 0 the first moment m ← β₁m + (1−β₁)·u, u ← m.
  template <typename DG>
  void update(Eigen::MatrixBase<DG>& g, Index t, const AdafactorOptions& o, double lr) {
    using S = Scalar;
    const S beta2t = S(1.0 - std::pow(double(t), o.decayRate));
    const S e1 = S(o.epsilon1);
    auto& gd = g.derived();
    const S invQ = S(1) / S(gd.cols()), invP = S(1) / S(gd.rows());
    row = beta2t * row + (S(1) - beta2t) * invQ * (gd.array().square() + e1).matrix().rowwise().sum();
    col = beta2t * col + (S(1) - beta2t) * invP * (gd.array().square() + e1).matrix().colwise().sum();
    const S rowMean = row.mean();
    rowFactor.array() = (row.array() / rowMean).rsqrt();
    colFactor.array() = col.array().rsqrt();
    gd = rowFactor.asDiagonal() * gd * colFactor.asDiagonal();
    const double rms = std::sqrt(double(gd.squaredNorm()) / double(std::max<Index>(1, gd.size())));
    const double denom = std::max(1.0, rms / o.clipThreshold);
    gd *= S(lr / denom);
    if (m.size() > 0) {
      const S b1 = S(o.beta1);
      m = b1 * m + (S(1) - b1) * gd;
      gd = m;
    }
  }

  void save(std::ostream& os) const {
    ckpt::writeMatrix(os, row);
    ckpt::writeMatrix(os, col);
    ckpt::writeMatrix(os, m);
  }
  void load(std::istream& is, Index p, Index q, bool firstMoment) {
    Vector r = ckpt::readMatrix<Scalar>(is, "Adafactor row statistics", p, 1);
    RowVector c = ckpt::readMatrix<Scalar>(is, "Adafactor column statistics", 1, q);
    Matrix mm = ckpt::readMatrix<Scalar>(is, "Adafactor first moment", firstMoment ? p : 0, firstMoment ? q : 0);
    if ((r.array() < Scalar(0)).any() || (c.array() < Scalar(0)).any())
      throw IoError("checkpoint: Adafactor second-moment statistics have negative entries");
    allocate(p, q, firstMoment);
    row = r;
    col = c;
    if (firstMoment) m = mm;
  }
};

/// lr_t of step t ≥ 1 (see `AdafactorOptions`): ρ_t · (scaleParameter ? max(ε₂, RMS(W)) : 1).
inline double adafactorLearningRate(const AdafactorOptions& o, Index t, double rmsW) {
  double rho = o.learningRate;
  if (o.relativeStep) {
    const double minStep = o.warmupInit ? 1e-6 * double(t) : 1e-2;
    rho = std::min(minStep, 1.0 / std::sqrt(double(t)));
  }
  return o.scaleParameter ? rho * std::max(o.epsilon2, rmsW) : rho;
}

template <typename D>
double rmsOf(const Eigen::MatrixBase<D>& w) {
  return std::sqrt(double(w.squaredNorm()) / double(std::max<Index>(1, w.size())));
}

}  // namespace detail

/// Full-rank Adafactor, the baseline, step for step transformers' `Adafactor`: factored second
/// moment (row and column statistics, m + n scalars), update clipping by RMS (d = 1),
/// β₂ₜ = 1 − t^{−0.8}, learning rate lr_t of `AdafactorOptions` (relative step and parameter
/// scale on by default), optional first moment of lr_t·update, decoupled weight decay lr_t·wd.
/// Allocation-free after the first step.
template <typename Scalar_>
class Adafactor {
 public:
  /// Floating-point type of weights, gradients and the factored state.
  using Scalar = Scalar_;
  /// Dense matrix type of the update.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  Adafactor() = default;
  /// An optimizer with hyperparameters `o` (validated).
  explicit Adafactor(const AdafactorOptions& o) : m_opt(o) { m_opt.validate("Adafactor"); }
  /// Replaces all hyperparameters; throws `InvalidArgument` and keeps the old ones when `o` is invalid.
  Adafactor& setOptions(const AdafactorOptions& o) {
    o.validate("Adafactor");
    m_opt = o;
    return *this;
  }
  /// Sets an external lr ρ (finite, ≥ 0) and turns relativeStep and warmupInit off (transformers
  /// refuses a manual lr together with relative_step). scaleParameter is kept: with it on (the
  /// default) the step is ρ·max(ε₂, RMS(W)).
  Adafactor& setLearningRate(double lr) {
    AdafactorOptions o = m_opt;
    o.learningRate = lr;
    o.relativeStep = false;
    o.warmupInit = false;
    return setOptions(o);
  }
  /// The current hyperparameters.
  const AdafactorOptions& options() const { return m_opt; }
  /// Step count t of the β₂ₜ and relative-step schedules (restarts after a non-finite update).
  Index stepCount() const { return m_t; }
  /// Number of steps not applied: non-finite gradients and non-finite updates (which also reset
  /// the state).
  Index skippedSteps() const { return m_skipped; }
  /// Bytes of optimizer state: row and column statistics and the optional first moment.
  std::size_t stateBytes() const { return m_state.bytes(); }

  /// One Adafactor step on W with gradient G (same shape).
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DG>& g) {
    checkShape(g, w.rows(), w.cols(), "Adafactor::step", "g");
    if (detail::rejectNonFinite(g, m_opt.nonFinite, "Adafactor::step", m_skipped)) return StepOutcome::Skipped;
    if (m_u.size() == 0) {
      m_state.allocate(w.rows(), w.cols(), m_opt.beta1 > 0);
      m_u.resize(w.rows(), w.cols());
    }
    checkShape(w, m_u.rows(), m_u.cols(), "Adafactor::step", "w");
    ++m_t;
    const double lr = detail::adafactorLearningRate(m_opt, m_t, detail::rmsOf(w));
    m_u = g.derived().template cast<Scalar>();
    m_state.update(m_u, m_t, m_opt, lr);
    if (!m_u.allFinite()) {
      m_state.reset();
      m_t = 0;
      ++m_skipped;
      return StepOutcome::Skipped;
    }
    if (m_opt.weightDecay > 0) w.derived() *= Scalar(1.0 - lr * m_opt.weightDecay);
    w.derived() -= m_u;
    return StepOutcome::Applied;
  }
  /// Overload for a temporary weight expression, such as an Eigen block or `Map`.
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>&& w, const Eigen::MatrixBase<DG>& g) {
    return step(w, g);
  }

  /// Writes hyperparameters, step counts, the shape and the factored state to a checkpoint.
  void save(std::ostream& os) const {
    ckpt::writeHeader(os, "Adafactor");
    m_opt.save(os);
    ckpt::writePod<std::int64_t>(os, m_t);
    ckpt::writePod<std::int64_t>(os, m_skipped);
    ckpt::writePod<std::int64_t>(os, m_u.rows());
    ckpt::writePod<std::int64_t>(os, m_u.cols());
    if (m_u.size() > 0) m_state.save(os);
  }
  /// Restores a state written by `save`; throws `IoError` on malformed data (this object is
  /// unchanged then).
  void load(std::istream& is) {
    ckpt::readHeader(is, "Adafactor");
    Adafactor o;
    o.m_opt.load(is);
    o.m_t = ckpt::readBounded<std::int64_t>(is, "step count", 0, std::numeric_limits<std::int64_t>::max());
    o.m_skipped = ckpt::readBounded<std::int64_t>(is, "skipped steps", 0, std::numeric_limits<std::int64_t>::max());
    const auto p = ckpt::readBounded<std::int64_t>(is, "rows", 0, ckpt::kMaxExtent);
    const auto q = ckpt::readBounded<std::int64_t>(is, "cols", 0, ckpt::kMaxExtent);
    if (p * q > 0) {
      o.m_state.load(is, p, q, o.m_opt.beta1 > 0);
      o.m_u.resize(p, q);
      // Version 1 averaged the update before the learning rate: its first moment is in other
      // units and restarts from zero.
      if (ckpt::streamVersion(is) < 2) o.m_state.m.setZero();
    }
    *this = std::move(o);
  }

 private:
  AdafactorOptions m_opt{};
  Index m_t = 0, m_skipped = 0;
  detail::FactoredState<Scalar> m_state;
  Matrix m_u;
};

/// Adafactor in the projected space of a `GradientProjector<Basis>` (GaLore's Adafactor): the
/// factored statistics live on the projected shape, RMS clipping happens in the subspace, the
/// update (lr_t·u, or the first moment of it) is projected back (× α) and applied to the full
/// weight; the parameter scale RMS(W) and the weight decay use the full W, as GaLore's Adafactor. With `MomentPolicy::Rotate` the projected factor of the second
/// moment and the optional first moment are carried to the new basis (see MomentPolicy).
template <typename Basis>
class ProjectedAdafactor {
 public:
  /// The projector type, `GradientProjector<Basis>`.
  using Projector = GradientProjector<Basis>;
  /// Floating-point type of the basis, weights and the factored state.
  using Scalar = typename Basis::Scalar;
  /// Dense matrix type of the projected gradient.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  ProjectedAdafactor() = default;
  /// An optimizer around a configured (not yet used) projector.
  explicit ProjectedAdafactor(const Projector& p) : m_proj(p) {}
  /// The projector; configure it (rank, gap, projection type, basis) before the first step.
  Projector& projector() { return m_proj; }
  /// The projector.
  const Projector& projector() const { return m_proj; }
  /// Replaces all hyperparameters; throws `InvalidArgument` and keeps the old ones when `o` is invalid.
  ProjectedAdafactor& setOptions(const AdafactorOptions& o) {
    o.validate("ProjectedAdafactor");
    m_opt = o;
    return *this;
  }
  /// Sets an external lr ρ (finite, ≥ 0) and turns relativeStep and warmupInit off (as
  /// `Adafactor::setLearningRate`); ρ/ρ₀ (ρ₀: the external lr of the first step) also scales the
  /// learning rate of a tracking basis (online PCA).
  ProjectedAdafactor& setLearningRate(double lr) {
    AdafactorOptions o = m_opt;
    o.learningRate = lr;
    o.relativeStep = false;
    o.warmupInit = false;
    return setOptions(o);
  }
  /// Sets what happens to the factored state when the basis changes (default `Keep`).
  ProjectedAdafactor& setMomentPolicy(MomentPolicy p) {
    m_policy = p;
    return *this;
  }
  /// The current hyperparameters.
  const AdafactorOptions& options() const { return m_opt; }
  /// Step count t of the β₂ₜ and relative-step schedules (restarts with `MomentPolicy::Reset` and
  /// after a non-finite update).
  Index stepCount() const { return m_t; }
  /// Number of steps not applied: non-finite gradients and non-finite low-rank updates (which
  /// also reset the state).
  Index skippedSteps() const { return m_skipped; }
  /// Bytes of optimizer state: the factored statistics of the projected shape, the optional first
  /// moment and the projector's basis state.
  std::size_t stateBytes() const { return m_state.bytes() + m_proj.stateBytes(); }

  /// One projected Adafactor step on W (m×n) with gradient G (m×n).
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DG>& g) {
    checkShape(g, w.rows(), w.cols(), "ProjectedAdafactor::step", "g");
    if (detail::rejectNonFinite(g, m_opt.nonFinite, "ProjectedAdafactor::step", m_skipped)) return StepOutcome::Skipped;
    if (m_r.size() == 0) {
      m_proj.init(g.rows(), g.cols());
      m_state.allocate(m_proj.projectedRows(), m_proj.projectedCols(), m_opt.beta1 > 0);
      allocateBuffers();
      m_lr0 = m_opt.learningRate;
    }
    if (m_proj.beginStep(g)) applyMomentPolicy();
    m_proj.project(g, m_r);
    ++m_t;
    const double lr = detail::adafactorLearningRate(m_opt, m_t, detail::rmsOf(w));
    m_state.update(m_r, m_t, m_opt, lr);
    if (!m_r.allFinite()) {
      m_state.reset();
      m_t = 0;
      ++m_skipped;
      m_proj.endStep(g, 1.0);
      return StepOutcome::Skipped;
    }
    if (m_opt.weightDecay > 0) w.derived() *= Scalar(1.0 - lr * m_opt.weightDecay);
    m_proj.addBack(m_r, Scalar(-1), w);
    m_proj.endStep(g, m_lr0 > 0 ? m_opt.learningRate / m_lr0 : 1.0);
    return StepOutcome::Applied;
  }
  /// Overload for a temporary weight expression, such as an Eigen block or `Map`.
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>&& w, const Eigen::MatrixBase<DG>& g) {
    return step(w, g);
  }

  /// Writes hyperparameters, moment policy, step counts, the projector and the factored state to a
  /// checkpoint.
  void save(std::ostream& os) const {
    ckpt::writeHeader(os, "ProjectedAdafactor");
    m_opt.save(os);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_policy));
    ckpt::writePod<std::int64_t>(os, m_t);
    ckpt::writePod<std::int64_t>(os, m_skipped);
    ckpt::writePod<double>(os, m_lr0);
    ckpt::writePod<std::uint8_t>(os, m_r.size() > 0 ? 1 : 0);
    m_proj.save(os);
    if (m_r.size() > 0) m_state.save(os);
  }
  /// Restores a state written by `save`; throws `IoError` on malformed data (this object is
  /// unchanged then).
  void load(std::istream& is) {
    ckpt::readHeader(is, "ProjectedAdafactor");
    ProjectedAdafactor o(m_proj);
    o.m_opt.load(is);
    o.m_policy = MomentPolicy(ckpt::readBounded<std::int32_t>(is, "moment policy", 0, 2));
    o.m_t = ckpt::readBounded<std::int64_t>(is, "step count", 0, std::numeric_limits<std::int64_t>::max());
    o.m_skipped = ckpt::readBounded<std::int64_t>(is, "skipped steps", 0, std::numeric_limits<std::int64_t>::max());
    o.m_lr0 = ckpt::readPod<double>(is, "initial learning rate");
    const bool started = ckpt::readBounded<std::uint8_t>(is, "started flag", 0, 1) != 0;
    o.m_proj.load(is);
    if (started) {
      if (!o.m_proj.initialized()) throw IoError("checkpoint: optimizer started but projector is not initialised");
      o.m_state.load(is, o.m_proj.projectedRows(), o.m_proj.projectedCols(), o.m_opt.beta1 > 0);
      if (ckpt::streamVersion(is) < 2) o.m_state.m.setZero();  // version 1: first moment without lr, restarts
      o.allocateBuffers();
    }
    *this = std::move(o);
  }

 private:
  void allocateBuffers() {
    m_r.resize(m_proj.projectedRows(), m_proj.projectedCols());
    m_tmp.resize(m_r.rows(), m_r.cols());
    m_sq.resize(m_proj.rank(), m_proj.rank());
    m_vecTmp.resize(m_proj.rank());
  }
  void applyMomentPolicy() {
    if (m_policy == MomentPolicy::Keep) return;
    if (m_policy == MomentPolicy::Reset) {
      m_state.reset();
      m_t = 0;
      return;
    }
    const bool two = m_proj.twoSided();
    const Side side = m_proj.side();
    if (m_state.m.size() > 0) detail::carryCoordinates(m_state.m, two, side, m_proj.transition(), m_proj.transitionRight(), m_tmp);
    // Projected factors: rows of a left/two-sided projection, columns of a right/two-sided one.
    if (two || side == Side::Left) {
      detail::squareInto(m_proj.transition(), m_sq);
      m_vecTmp.noalias() = m_sq.transpose() * m_state.row;
      m_state.row = m_vecTmp;
    }
    if (two || side == Side::Right) {
      detail::squareInto(two ? m_proj.transitionRight() : m_proj.transition(), m_sq);
      m_vecTmp.noalias() = m_sq.transpose() * m_state.col.transpose();
      m_state.col = m_vecTmp.transpose();
    }
  }

  Projector m_proj;
  AdafactorOptions m_opt{};
  MomentPolicy m_policy = MomentPolicy::Keep;
  Index m_t = 0, m_skipped = 0;
  double m_lr0 = 0;
  detail::FactoredState<Scalar> m_state;
  Matrix m_r, m_tmp, m_sq;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> m_vecTmp;
};

}  // namespace wproj
