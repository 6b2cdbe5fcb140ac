// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// AdamW (Loshchilov & Hutter 2019) at full rank, and GaLore's projected AdamW (Zhao et al. 2024).

#include "checkpoint.hpp"
#include "moments.hpp"
#include "projector.hpp"

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <limits>

namespace wproj {

/// What an optimizer does with a NaN/Inf gradient.
enum class NonFinitePolicy {
  Throw,  ///< throw `InvalidArgument` naming the first non-finite entry (default)
  Skip    ///< leave weights and state untouched and count the skipped step
};

/// Outcome of one optimizer step.
enum class StepOutcome { Applied, Skipped };

/// Hyperparameters shared by the AdamW variants.
struct AdamWOptions {
  /// Learning rate lr (finite, ≥ 0; default 1e-3).
  double learningRate = 1e-3;
  /// First-moment decay β₁ in [0, 1) (default 0.9).
  double beta1 = 0.9;
  /// Second-moment decay β₂ in [0, 1) (default 0.999).
  double beta2 = 0.999;
  /// ε added to √v (positive; default 1e-8, 1e-6 in ProjectedAdamW).
  double epsilon = 1e-8;
  /// Decoupled weight decay wd ≥ 0: W ← W − lr·wd·W (default 0).
  double weightDecay = 0.0;
  /// Scale the step size by √(1−β₂ᵗ)/(1−β₁ᵗ) (default true).
  bool biasCorrection = true;
  /// What a NaN/Inf gradient does (default `Throw`).
  NonFinitePolicy nonFinite = NonFinitePolicy::Throw;

  /// Throws `InvalidArgument`, naming `where`, when a hyperparameter is out of range.
  void validate(const char* where) const {
    requireArg(std::isfinite(learningRate) && learningRate >= 0, where, "learningRate", learningRate, "finite and >= 0");
    requireArg(beta1 >= 0 && beta1 < 1, where, "beta1", beta1, "in [0, 1)");
    requireArg(beta2 >= 0 && beta2 < 1, where, "beta2", beta2, "in [0, 1)");
    requireArg(epsilon > 0 && std::isfinite(epsilon), where, "epsilon", epsilon, "> 0");
    requireArg(weightDecay >= 0 && std::isfinite(weightDecay), where, "weightDecay", weightDecay, ">= 0");
  }
  /// Writes the hyperparameters to a checkpoint.
  void save(std::ostream& os) const {
    for (double v : {learningRate, beta1, beta2, epsilon, weightDecay}) ckpt::writePod<double>(os, v);
    ckpt::writePod<std::uint8_t>(os, biasCorrection ? 1 : 0);
    ckpt::writePod<std::int32_t>(os, std::int32_t(nonFinite));
  }
  /// Reads hyperparameters written by `save`; throws `IoError` when they are malformed or out of
  /// range (this object is unchanged then).
  void load(std::istream& is) {
    AdamWOptions o;
    o.learningRate = ckpt::readPod<double>(is, "learning rate");
    o.beta1 = ckpt::readPod<double>(is, "beta1");
    o.beta2 = ckpt::readPod<double>(is, "beta2");
    o.epsilon = ckpt::readPod<double>(is, "epsilon");
    o.weightDecay = ckpt::readPod<double>(is, "weight decay");
    o.biasCorrection = ckpt::readBounded<std::uint8_t>(is, "bias correction flag", 0, 1) != 0;
    o.nonFinite = NonFinitePolicy(ckpt::readBounded<std::int32_t>(is, "non-finite policy", 0, 1));
    try {
      o.validate("checkpoint");
    } catch (const InvalidArgument& e) {
      throw IoError(std::string("checkpoint: invalid AdamW hyperparameters: ") + e.what());
    }
    *this = o;
  }
};

namespace detail {

/// One Adam moment update in place: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², then g ← m/(√v + ε).
/// Returns the step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ) (or lr without bias correction), as in GaLore's AdamW.
template <typename Matrix, typename DG>
double adamMoments(Matrix& m, Matrix& v, Eigen::MatrixBase<DG>& g, Index t, const AdamWOptions& o) {
  using S = typename Matrix::Scalar;
  const S b1 = S(o.beta1), b2 = S(o.beta2), eps = S(o.epsilon);
  m.array() = b1 * m.array() + (S(1) - b1) * g.array();
  v.array() = b2 * v.array() + (S(1) - b2) * g.array().square();
  g.derived().array() = m.array() / (v.array().sqrt() + eps);
  double step = o.learningRate;
  if (o.biasCorrection) step *= std::sqrt(1.0 - std::pow(o.beta2, double(t))) / (1.0 - std::pow(o.beta1, double(t)));
  return step;
}

/// Handles a non-finite gradient according to the policy; returns true when the step must be skipped.
template <typename DG>
bool rejectNonFinite(const Eigen::MatrixBase<DG>& g, NonFinitePolicy policy, const char* where, Index& skipped) {
  if (g.allFinite()) return false;
  ++skipped;
  if (policy == NonFinitePolicy::Throw) checkFinite(g, where, "g");
  return true;
}

}  // namespace detail

/// Full-rank AdamW, the baseline: moments m, v shaped like W (2mn scalars of state).
/// The update follows GaLore's reference AdamW: W ← W − lr·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε), then the
/// decoupled weight decay W ← W − lr·wd·W. Defaults: lr 1e-3, β = (0.9, 0.999), ε = 1e-8, wd = 0.
/// Allocation-free after the first step.
template <typename Scalar_>
class AdamW {
 public:
  /// Floating-point type of weights, gradients and moments.
  using Scalar = Scalar_;
  /// Dense matrix type of the moments.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  AdamW() = default;
  /// An optimizer with hyperparameters `o` (validated).
  explicit AdamW(const AdamWOptions& o) : m_opt(o) { m_opt.validate("AdamW"); }

  /// Sets lr (finite, ≥ 0).
  AdamW& setLearningRate(double lr) { return set(&AdamWOptions::learningRate, lr); }
  /// Sets β₁ and β₂ (each in [0, 1)).
  AdamW& setBetas(double b1, double b2) {
    set(&AdamWOptions::beta1, b1);
    return set(&AdamWOptions::beta2, b2);
  }
  /// Sets ε (positive).
  AdamW& setEpsilon(double e) { return set(&AdamWOptions::epsilon, e); }
  /// Sets the decoupled weight decay wd (≥ 0).
  AdamW& setWeightDecay(double wd) { return set(&AdamWOptions::weightDecay, wd); }
  /// Turns the bias correction of the step size on or off.
  AdamW& setBiasCorrection(bool on) {
    m_opt.biasCorrection = on;
    return *this;
  }
  /// Sets what a NaN/Inf gradient does: throw, or skip the step.
  AdamW& setNonFinitePolicy(NonFinitePolicy p) {
    m_opt.nonFinite = p;
    return *this;
  }
  /// The current hyperparameters.
  const AdamWOptions& options() const { return m_opt; }
  /// Number of applied steps t (the exponent of the bias correction).
  Index stepCount() const { return m_t; }
  /// Number of steps not applied because the gradient was not finite.
  Index skippedSteps() const { return m_skipped; }
  /// First moment m, shaped like W (empty before the first step).
  const Matrix& firstMoment() const { return m_m; }
  /// Second moment v, shaped like W (empty before the first step).
  const Matrix& secondMoment() const { return m_v; }
  /// Bytes of optimizer state (the two moments).
  std::size_t stateBytes() const { return std::size_t(m_m.size() + m_v.size()) * sizeof(Scalar); }

  /// One AdamW step on W with gradient G (same shape).
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DG>& g) {
    checkShape(g, w.rows(), w.cols(), "AdamW::step", "g");
    if (detail::rejectNonFinite(g, m_opt.nonFinite, "AdamW::step", m_skipped)) return StepOutcome::Skipped;
    if (m_m.size() == 0) {
      m_m.setZero(w.rows(), w.cols());
      m_v.setZero(w.rows(), w.cols());
    }
    checkShape(w, m_m.rows(), m_m.cols(), "AdamW::step", "w");
    ++m_t;
    using S = Scalar;
    const S b1 = S(m_opt.beta1), b2 = S(m_opt.beta2), eps = S(m_opt.epsilon);
    m_m.array() = b1 * m_m.array() + (S(1) - b1) * g.derived().array().template cast<S>();
    m_v.array() = b2 * m_v.array() + (S(1) - b2) * g.derived().array().template cast<S>().square();
    double stepSize = m_opt.learningRate;
    if (m_opt.biasCorrection)
      stepSize *= std::sqrt(1.0 - std::pow(m_opt.beta2, double(m_t))) / (1.0 - std::pow(m_opt.beta1, double(m_t)));
    w.derived().array() -= S(stepSize) * (m_m.array() / (m_v.array().sqrt() + eps));
    if (m_opt.weightDecay > 0) w.derived() *= S(1.0 - m_opt.learningRate * m_opt.weightDecay);
    return StepOutcome::Applied;
  }
  /// Overload for a temporary weight expression, such as an Eigen block or `Map`.
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>&& w, const Eigen::MatrixBase<DG>& g) {
    return step(w, g);
  }

  /// Writes hyperparameters, step counts and moments to a checkpoint.
  void save(std::ostream& os) const {
    ckpt::writeHeader(os, "AdamW");
    m_opt.save(os);
    ckpt::writePod<std::int64_t>(os, m_t);
    ckpt::writePod<std::int64_t>(os, m_skipped);
    ckpt::writeMatrix(os, m_m);
    ckpt::writeMatrix(os, m_v);
  }
  /// Restores a state written by `save`; throws `IoError` on malformed data (this object is
  /// unchanged then).
  void load(std::istream& is) {
    ckpt::readHeader(is, "AdamW");
    AdamWOptions o;
    o.load(is);
    const auto t = ckpt::readBounded<std::int64_t>(is, "step count", 0, std::numeric_limits<std::int64_t>::max());
    const auto sk = ckpt::readBounded<std::int64_t>(is, "skipped steps", 0, std::numeric_limits<std::int64_t>::max());
    Matrix m = ckpt::readMatrix<Scalar>(is, "first moment");
    Matrix v = ckpt::readMatrix<Scalar>(is, "second moment", m.rows(), m.cols());
    if ((v.array() < Scalar(0)).any()) throw IoError("checkpoint: AdamW second moment has negative entries");
    m_opt = o;
    m_t = t;
    m_skipped = sk;
    m_m.swap(m);
    m_v.swap(v);
  }

 private:
  AdamW& set(double AdamWOptions::*field, double value) {
    AdamWOptions o = m_opt;
    o.*field = value;
    o.validate("AdamW");
    m_opt = o;
    return *this;
  }
  AdamWOptions m_opt{};
  Index m_t = 0, m_skipped = 0;
  Matrix m_m, m_v;
};

/// GaLore-AdamW: AdamW whose moments live in the rank-r space of a `GradientProjector<Basis>`.
/// A step is project (R = projector(G)) → Adam on R (fp32/fp64 moments shaped like R, bias
/// correction, ε = 1e-6 by default as in GaLore) → project back and apply
/// (W ← W − step·α·back(N)) → decoupled weight decay on the full weight (W ← W − lr·wd·W).
/// The moment policy (`Keep` by default, as GaLore) decides what happens on a basis change.
///
/// Robustness: a NaN/Inf gradient throws or is skipped (`setNonFinitePolicy`); a non-finite
/// low-rank update (overflowing moments) is never applied — the moments are reset and the step
/// is counted in `skippedSteps()`. After the first step no call allocates except refreshes.
template <typename Basis>
class ProjectedAdamW {
 public:
  /// The projector type, `GradientProjector<Basis>`.
  using Projector = GradientProjector<Basis>;
  /// Floating-point type of the basis, weights and moments.
  using Scalar = typename Basis::Scalar;
  /// Dense matrix type of the low-rank moments.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  ProjectedAdamW() { m_opt.epsilon = 1e-6; }
  /// An optimizer around a configured (not yet used) projector.
  explicit ProjectedAdamW(const Projector& projector) : m_proj(projector) { m_opt.epsilon = 1e-6; }

  /// The projector; configure it (rank, gap, projection type, basis) before the first step.
  Projector& projector() { return m_proj; }
  /// The projector.
  const Projector& projector() const { return m_proj; }

  /// Sets lr (finite, ≥ 0); lr/lr₀ (lr₀: the lr of the first step) also scales the learning rate
  /// of a tracking basis (online PCA).
  ProjectedAdamW& setLearningRate(double lr) { return set(&AdamWOptions::learningRate, lr); }
  /// Sets β₁ and β₂ (each in [0, 1)).
  ProjectedAdamW& setBetas(double b1, double b2) {
    set(&AdamWOptions::beta1, b1);
    return set(&AdamWOptions::beta2, b2);
  }
  /// Sets ε (positive; default 1e-6).
  ProjectedAdamW& setEpsilon(double e) { return set(&AdamWOptions::epsilon, e); }
  /// Sets the decoupled weight decay wd (≥ 0), applied to the full weight.
  ProjectedAdamW& setWeightDecay(double wd) { return set(&AdamWOptions::weightDecay, wd); }
  /// Turns the bias correction of the step size on or off.
  ProjectedAdamW& setBiasCorrection(bool on) {
    m_opt.biasCorrection = on;
    return *this;
  }
  /// Sets what a NaN/Inf gradient does: throw, or skip the step.
  ProjectedAdamW& setNonFinitePolicy(NonFinitePolicy p) {
    m_opt.nonFinite = p;
    return *this;
  }
  /// Sets what happens to the moments when the basis changes (default `Keep`).
  ProjectedAdamW& setMomentPolicy(MomentPolicy p) {
    m_policy = p;
    return *this;
  }
  /// The current hyperparameters.
  const AdamWOptions& options() const { return m_opt; }
  /// The moment policy.
  MomentPolicy momentPolicy() const { return m_policy; }
  /// Adam's step count t (restarts with `MomentPolicy::Reset`).
  Index stepCount() const { return m_t; }
  /// Number of steps not applied: non-finite gradients and non-finite low-rank updates (which
  /// also reset the moments).
  Index skippedSteps() const { return m_skipped; }
  /// First moment m, shaped like the projected gradient R (empty before the first step).
  const Matrix& firstMoment() const { return m_m; }
  /// Second moment v, shaped like the projected gradient R (empty before the first step).
  const Matrix& secondMoment() const { return m_v; }
  /// Bytes of optimizer state: the two low-rank moments plus the projector's basis state.
  std::size_t stateBytes() const { return std::size_t(m_m.size() + m_v.size()) * sizeof(Scalar) + m_proj.stateBytes(); }

  /// One GaLore-AdamW step on W (m×n) with gradient G (m×n).
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DG>& g) {
    checkShape(g, w.rows(), w.cols(), "ProjectedAdamW::step", "g");
    if (detail::rejectNonFinite(g, m_opt.nonFinite, "ProjectedAdamW::step", m_skipped)) return StepOutcome::Skipped;
    if (m_m.size() == 0) allocate(g.rows(), g.cols());
    if (m_proj.beginStep(g)) applyMomentPolicy();
    m_proj.project(g, m_r);
    ++m_t;
    const double stepSize = detail::adamMoments(m_m, m_v, m_r, m_t, m_opt);
    if (!m_r.allFinite()) {
      m_m.setZero();
      m_v.setZero();
      m_t = 0;
      ++m_skipped;
      m_proj.endStep(g, lrRatio());
      return StepOutcome::Skipped;
    }
    m_proj.addBack(m_r, Scalar(-stepSize), w);
    if (m_opt.weightDecay > 0) w.derived() *= Scalar(1.0 - m_opt.learningRate * m_opt.weightDecay);
    m_proj.endStep(g, lrRatio());
    return StepOutcome::Applied;
  }
  /// Overload for a temporary weight expression, such as an Eigen block or `Map`.
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>&& w, const Eigen::MatrixBase<DG>& g) {
    return step(w, g);
  }

  /// Writes hyperparameters, moment policy, step counts, moments and the projector to a checkpoint.
  void save(std::ostream& os) const {
    ckpt::writeHeader(os, "ProjectedAdamW");
    m_opt.save(os);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_policy));
    ckpt::writePod<std::int64_t>(os, m_t);
    ckpt::writePod<std::int64_t>(os, m_skipped);
    ckpt::writePod<double>(os, m_lr0);
    ckpt::writeMatrix(os, m_m);
    ckpt::writeMatrix(os, m_v);
    m_proj.save(os);
  }
  /// Restores a state written by `save`; throws `IoError` on malformed data (this object is
  /// unchanged then).
  void load(std::istream& is) {
    ckpt::readHeader(is, "ProjectedAdamW");
    ProjectedAdamW o(m_proj);
    o.m_opt.load(is);
    o.m_policy = MomentPolicy(ckpt::readBounded<std::int32_t>(is, "moment policy", 0, 2));
    o.m_t = ckpt::readBounded<std::int64_t>(is, "step count", 0, std::numeric_limits<std::int64_t>::max());
    o.m_skipped = ckpt::readBounded<std::int64_t>(is, "skipped steps", 0, std::numeric_limits<std::int64_t>::max());
    o.m_lr0 = ckpt::readPod<double>(is, "initial learning rate");
    o.m_m = ckpt::readMatrix<Scalar>(is, "first moment");
    o.m_v = ckpt::readMatrix<Scalar>(is, "second moment", o.m_m.rows(), o.m_m.cols());
    if ((o.m_v.array() < Scalar(0)).any()) throw IoError("checkpoint: second moment has negative entries");
    o.m_proj.load(is);
    if (o.m_m.size() > 0) {
      if (!o.m_proj.initialized() || o.m_m.rows() != o.m_proj.projectedRows() || o.m_m.cols() != o.m_proj.projectedCols())
        throw IoError("checkpoint: moment shape does not match the projector");
      o.allocateBuffers();
    }
    *this = std::move(o);
  }

 private:
  ProjectedAdamW& set(double AdamWOptions::*field, double value) {
    AdamWOptions o = m_opt;
    o.*field = value;
    o.validate("ProjectedAdamW");
    m_opt = o;
    return *this;
  }
  double lrRatio() const { return m_lr0 > 0 ? m_opt.learningRate / m_lr0 : 1.0; }
  void allocate(Index rows, Index cols) {
    m_proj.init(rows, cols);
    m_m.setZero(m_proj.projectedRows(), m_proj.projectedCols());
    m_v.setZero(m_proj.projectedRows(), m_proj.projectedCols());
    m_lr0 = m_opt.learningRate;
    allocateBuffers();
  }
  void allocateBuffers() {
    m_r.resize(m_m.rows(), m_m.cols());
    m_tmp.resize(m_m.rows(), m_m.cols());
    m_sqA.resize(m_proj.rank(), m_proj.rank());
    m_sqB.resize(m_proj.rank(), m_proj.rank());
  }
  void applyMomentPolicy() {
    switch (m_policy) {
      case MomentPolicy::Keep: return;
      case MomentPolicy::Reset:
        m_m.setZero();
        m_v.setZero();
        m_t = 0;
        return;
      case MomentPolicy::Rotate: {
        const bool two = m_proj.twoSided();
        const Side side = m_proj.side();
        detail::carryCoordinates(m_m, two, side, m_proj.transition(), m_proj.transitionRight(), m_tmp);
        detail::squareInto(m_proj.transition(), m_sqA);
        if (two) detail::squareInto(m_proj.transitionRight(), m_sqB);
        detail::carryCoordinates(m_v, two, side, m_sqA, m_sqB, m_tmp);
        return;
      }
    }
  }

  Projector m_proj;
  AdamWOptions m_opt{};
  MomentPolicy m_policy = MomentPolicy::Keep;
  Index m_t = 0, m_skipped = 0;
  double m_lr0 = 0;
  Matrix m_m, m_v, m_r, m_tmp, m_sqA, m_sqB;
};

}  // namespace wproj
