// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Adafactor (Shazeer & Stern 2018) at full rank, and Adafactor in a GaLore projected space.

#include "adamw.hpp"
#include "persistence.hpp"
#include "moments.hpp"
#include "projected_optimizer.hpp"
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

/// Adafactor's update rule (Shazeer & Stern 2018) in the projected space, as GaLore's Adafactor:
/// the factored statistics (`detail::FactoredState`, the code full-rank `Adafactor` runs) live on
/// the projected shape, lr_t uses RMS of the full W, the weight decay lr_t·wd comes before the
/// update, and the update is applied with coefficient −1 (it already holds lr_t). An object holds
/// the state of one projected gradient for `ProjectedOptimizer` (`ProjectedAdafactor`). With
/// `MomentPolicy::Rotate` the projected factor of the second moment and the optional first moment
/// are carried to the new basis (see `MomentPolicy`).
template <typename Scalar_>
class AdafactorRule {
 public:
  /// Floating-point type of the factored state.
  using Scalar = Scalar_;
  /// Hyperparameters.
  using Options = AdafactorOptions;
  /// Dense matrix type of the projected gradient.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Checkpoint section of the projected optimizer.
  static constexpr const char* kProjectedName = "ProjectedAdafactor";
  /// Name of the projected step in error messages.
  static constexpr const char* kStepWhere = "ProjectedAdafactor::step";
  /// True: the weight decay comes before the update (transformers' order).
  static constexpr bool kDecayBeforeUpdate = true;
  /// Defaults of the projected optimizer: those of `AdafactorOptions`.
  static Options projectedDefaults() { return Options{}; }

  /// The factored state.
  const detail::FactoredState<Scalar>& state() const { return m_state; }

  /// Zero statistics of a p×q projected gradient (and a first moment when β₁ > 0); rotation
  /// scratch of rank r.
  void allocate(Index p, Index q, Index rank, const Options& o) {
    m_state.allocate(p, q, o.beta1 > 0);
    allocateScratch(p, q, rank);
  }
  /// Zeroes the state (moment policy `Reset`, non-finite update).
  void reset() { m_state.reset(); }
  /// Turns the projected gradient r into lr_t·u (or its first moment) in place for step t.
  template <typename DW>
  RuleStep update(Matrix& r, Index t, const Options& o, const Eigen::MatrixBase<DW>& w) {
    const double lr = detail::adafactorLearningRate(o, t, detail::rmsOf(w));
    m_state.update(r, t, o, lr);
    return RuleStep{-1.0, lr};
  }
  /// Carries the state into a new basis: the first moment with R, the projected factor with R∘R.
  void rotate(bool two, Side side, const Matrix& ra, const Matrix& rb) {
    if (m_state.m.size() > 0) detail::carryCoordinates(m_state.m, two, side, ra, rb, m_tmp);
    // Projected factors: rows of a left/two-sided projection, columns of a right/two-sided one.
    if (two || side == Side::Left) {
      detail::squareInto(ra, m_sq);
      m_vecTmp.noalias() = m_sq.transpose() * m_state.row;
      m_state.row = m_vecTmp;
    }
    if (two || side == Side::Right) {
      detail::squareInto(two ? rb : ra, m_sq);
      m_vecTmp.noalias() = m_sq.transpose() * m_state.col.transpose();
      m_state.col = m_vecTmp.transpose();
    }
  }
  /// Bytes of the factored statistics and the optional first moment.
  std::size_t bytes() const { return m_state.bytes(); }

  /// Writes the started flag.
  void saveBeforeProjector(std::ostream& os, bool started) const { ckpt::writePod<std::uint8_t>(os, started ? 1 : 0); }
  /// Writes the factored state (after the projector, which fixes its shape).
  void saveAfterProjector(std::ostream& os, bool started) const {
    if (started) m_state.save(os);
  }
  /// Reads the started flag.
  bool loadBeforeProjector(std::istream& is, const Options&) {
    return ckpt::readBounded<std::uint8_t>(is, "started flag", 0, 1) != 0;
  }
  /// Reads the factored state of the projected shape p×q.
  void loadAfterProjector(std::istream& is, Index p, Index q, Index rank, const Options& o) {
    m_state.load(is, p, q, o.beta1 > 0);
    if (ckpt::streamVersion(is) < 2) m_state.m.setZero();  // version 1: first moment without lr, restarts
    allocateScratch(p, q, rank);
  }

 private:
  void allocateScratch(Index p, Index q, Index rank) {
    m_tmp.resize(p, q);
    m_sq.resize(rank, rank);
    m_vecTmp.resize(rank);
  }
  detail::FactoredState<Scalar> m_state;
  Matrix m_tmp, m_sq;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> m_vecTmp;
};

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

/// Adafactor in the projected space of a `GradientProjector<Basis>` (GaLore's Adafactor) —
/// `ProjectedOptimizer` with `AdafactorRule`: the factored statistics live on the projected shape,
/// RMS clipping happens in the subspace, the update (lr_t·u, or the first moment of it) is
/// projected back (× α) and applied to the full weight; the parameter scale RMS(W) and the weight
/// decay use the full W, as GaLore's Adafactor. With `MomentPolicy::Rotate` the projected factor
/// of the second moment and the optional first moment are carried to the new basis.
template <typename Basis>
class ProjectedAdafactor : public ProjectedOptimizer<Basis, AdafactorRule<typename Basis::Scalar>> {
  using Base = ProjectedOptimizer<Basis, AdafactorRule<typename Basis::Scalar>>;

 public:
  using typename Base::Matrix;
  using typename Base::Projector;
  using typename Base::Scalar;

  ProjectedAdafactor() = default;
  /// An optimizer around a configured (not yet used) projector.
  explicit ProjectedAdafactor(const Projector& p) : Base(p) {}
  /// Replaces all hyperparameters; throws `InvalidArgument` and keeps the old ones when `o` is invalid.
  ProjectedAdafactor& setOptions(const AdafactorOptions& o) {
    Base::setOptions(o);
    return *this;
  }
  /// Sets an external lr ρ (finite, ≥ 0) and turns relativeStep and warmupInit off (as
  /// `Adafactor::setLearningRate`); ρ/ρ₀ (ρ₀: the external lr of the first step) also scales the
  /// learning rate of a tracking basis (online PCA).
  ProjectedAdafactor& setLearningRate(double lr) {
    AdafactorOptions o = this->options();
    o.learningRate = lr;
    o.relativeStep = false;
    o.warmupInit = false;
    return setOptions(o);
  }
  /// Sets what happens to the factored state when the basis changes (default `Keep`).
  ProjectedAdafactor& setMomentPolicy(MomentPolicy p) {
    Base::setMomentPolicy(p);
    return *this;
  }
};

}  // namespace wproj
