// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// AdamW (Loshchilov & Hutter 2019) at full rank, and GaLore's projected AdamW (Zhao et al. 2024).

#include "persistence.hpp"
#include "moments.hpp"
#include "projected_optimizer.hpp"
#include "projector.hpp"

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <limits>

namespace wproj {

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

/// Adam's update rule (Kingma & Ba 2015, with the decoupled weight decay of AdamW, Loshchilov &
/// Hutter 2019) as GaLore's reference AdamW computes it: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
/// direction m/(√v + ε), step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ) (lr without bias correction), weight decay
/// lr·wd after the update. The static functions are the rule itself (full-rank `AdamW` calls them
/// on W's moments); an object holds the moments of one projected gradient for
/// `ProjectedOptimizer` (`ProjectedAdamW`).
template <typename Scalar_>
class AdamRule {
 public:
  /// Floating-point type of the moments.
  using Scalar = Scalar_;
  /// Hyperparameters.
  using Options = AdamWOptions;
  /// Dense matrix type of the moments.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Checkpoint section of the projected optimizer.
  static constexpr const char* kProjectedName = "ProjectedAdamW";
  /// Name of the projected step in error messages.
  static constexpr const char* kStepWhere = "ProjectedAdamW::step";
  /// False: the weight decay follows the update.
  static constexpr bool kDecayBeforeUpdate = false;
  /// Defaults of the projected optimizer: ε = 1e-6, as GaLore.
  static Options projectedDefaults() {
    Options o;
    o.epsilon = 1e-6;
    return o;
  }

  /// Moment update in place: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g².
  template <typename DG>
  static void accumulate(Matrix& m, Matrix& v, const Eigen::MatrixBase<DG>& g, const Options& o) {
    const Scalar b1 = Scalar(o.beta1), b2 = Scalar(o.beta2);
    m.array() = b1 * m.array() + (Scalar(1) - b1) * g.derived().array().template cast<Scalar>();
    v.array() = b2 * v.array() + (Scalar(1) - b2) * g.derived().array().template cast<Scalar>().square();
  }
  /// The update direction m/(√v + ε) as an expression (no temporary).
  static auto direction(const Matrix& m, const Matrix& v, const Options& o) {
    return m.array() / (v.array().sqrt() + Scalar(o.epsilon));
  }
  /// Step size of step t ≥ 1: lr·√(1−β₂ᵗ)/(1−β₁ᵗ), or lr without bias correction.
  static double stepSize(Index t, const Options& o) {
    double step = o.learningRate;
    if (o.biasCorrection) step *= std::sqrt(1.0 - std::pow(o.beta2, double(t))) / (1.0 - std::pow(o.beta1, double(t)));
    return step;
  }

  /// First moment m (empty before the first step).
  const Matrix& firstMoment() const { return m_m; }
  /// Second moment v (empty before the first step).
  const Matrix& secondMoment() const { return m_v; }

  /// Zero moments of a p×q projected gradient; scratch for rotations of rank r.
  void allocate(Index p, Index q, Index rank, const Options&) {
    m_m.setZero(p, q);
    m_v.setZero(p, q);
    allocateScratch(rank);
  }
  /// Zeroes the moments (moment policy `Reset`, non-finite update).
  void reset() {
    m_m.setZero();
    m_v.setZero();
  }
  /// Turns the projected gradient r into the direction N (in place) for step t.
  template <typename DW>
  RuleStep update(Matrix& r, Index t, const Options& o, const Eigen::MatrixBase<DW>&) {
    accumulate(m_m, m_v, r, o);
    r.array() = direction(m_m, m_v, o);
    return RuleStep{-stepSize(t, o), o.learningRate};
  }
  /// Carries the moments into a new basis: m with R, v with R∘R (see `MomentPolicy`).
  void rotate(bool twoSided, Side side, const Matrix& ra, const Matrix& rb) {
    detail::carryCoordinates(m_m, twoSided, side, ra, rb, m_tmp);
    detail::squareInto(ra, m_sqA);
    if (twoSided) detail::squareInto(rb, m_sqB);
    detail::carryCoordinates(m_v, twoSided, side, m_sqA, m_sqB, m_tmp);
  }
  /// Bytes of the two moments.
  std::size_t bytes() const { return std::size_t(m_m.size() + m_v.size()) * sizeof(Scalar); }

  /// Writes the moments (empty before the first step).
  void saveBeforeProjector(std::ostream& os, bool) const {
    ckpt::writeMatrix(os, m_m);
    ckpt::writeMatrix(os, m_v);
  }
  /// Nothing follows the projector.
  void saveAfterProjector(std::ostream&, bool) const {}
  /// Reads the moments; returns true when the optimizer had started (non-empty moments).
  bool loadBeforeProjector(std::istream& is, const Options&) {
    m_m = ckpt::readMatrix<Scalar>(is, "first moment");
    m_v = ckpt::readMatrix<Scalar>(is, "second moment", m_m.rows(), m_m.cols());
    if ((m_v.array() < Scalar(0)).any()) throw IoError("checkpoint: second moment has negative entries");
    return m_m.size() > 0;
  }
  /// Checks the moments against the projected shape p×q and sizes the scratch.
  void loadAfterProjector(std::istream&, Index p, Index q, Index rank, const Options&) {
    if (m_m.rows() != p || m_m.cols() != q) throw IoError("checkpoint: moment shape does not match the projector");
    allocateScratch(rank);
  }

 private:
  void allocateScratch(Index rank) {
    m_tmp.resize(m_m.rows(), m_m.cols());
    m_sqA.resize(rank, rank);
    m_sqB.resize(rank, rank);
  }
  Matrix m_m, m_v, m_tmp, m_sqA, m_sqB;
};


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
  /// The update rule (shared with `ProjectedAdamW`).
  using Rule = AdamRule<Scalar>;

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
    Rule::accumulate(m_m, m_v, g, m_opt);
    w.derived().array() -= Scalar(Rule::stepSize(m_t, m_opt)) * Rule::direction(m_m, m_v, m_opt);
    if (m_opt.weightDecay > 0) w.derived() *= Scalar(1.0 - m_opt.learningRate * m_opt.weightDecay);
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

/// GaLore-AdamW (Zhao et al. 2024): AdamW whose moments live in the rank-r space of a
/// `GradientProjector<Basis>` — `ProjectedOptimizer` with `AdamRule`. A step is project
/// (R = projector(G)) → Adam on R (moments shaped like R, bias correction, ε = 1e-6 by default as
/// in GaLore) → project back and apply (W ← W − step·α·back(N)) → decoupled weight decay on the
/// full weight (W ← W − lr·wd·W). The moment policy (`Keep` by default, as GaLore) decides what
/// happens on a basis change.
///
/// Robustness: a NaN/Inf gradient throws or is skipped (`setNonFinitePolicy`); a non-finite
/// low-rank update (overflowing moments) is never applied — the moments are reset and the step
/// is counted in `skippedSteps()`. After the first step no call allocates except refreshes.
///
/// \code
///   wproj::GradientProjector<wproj::SVDBasis<float>> galore;
///   galore.setRank(128).setUpdateGap(200).setScale(0.25f);
///   wproj::ProjectedAdamW<wproj::SVDBasis<float>> opt(galore);
///   opt.setLearningRate(1e-3).setWeightDecay(0.01);
///   for (const auto& g : gradients) opt.step(w, g);  // w, g: m×n
/// \endcode
template <typename Basis>
class ProjectedAdamW : public ProjectedOptimizer<Basis, AdamRule<typename Basis::Scalar>> {
  using Base = ProjectedOptimizer<Basis, AdamRule<typename Basis::Scalar>>;

 public:
  using typename Base::Matrix;
  using typename Base::Projector;
  using typename Base::Scalar;

  ProjectedAdamW() = default;
  /// An optimizer around a configured (not yet used) projector.
  explicit ProjectedAdamW(const Projector& projector) : Base(projector) {}

  /// Sets lr (finite, ≥ 0); lr/lr₀ (lr₀: the lr of the first step) also scales the learning rate
  /// of a tracking basis (online PCA).
  ProjectedAdamW& setLearningRate(double lr) { return set(&AdamWOptions::learningRate, lr); }
  /// Sets β₁ and β₂ (each in [0, 1)).
  ProjectedAdamW& setBetas(double b1, double b2) {
    AdamWOptions o = this->options();
    o.beta1 = b1;
    o.beta2 = b2;
    Base::setOptions(o);
    return *this;
  }
  /// Sets ε (positive; default 1e-6).
  ProjectedAdamW& setEpsilon(double e) { return set(&AdamWOptions::epsilon, e); }
  /// Sets the decoupled weight decay wd (≥ 0), applied to the full weight.
  ProjectedAdamW& setWeightDecay(double wd) { return set(&AdamWOptions::weightDecay, wd); }
  /// Turns the bias correction of the step size on or off.
  ProjectedAdamW& setBiasCorrection(bool on) {
    this->mutableOptions().biasCorrection = on;
    return *this;
  }
  /// Sets what a NaN/Inf gradient does: throw, or skip the step.
  ProjectedAdamW& setNonFinitePolicy(NonFinitePolicy p) {
    this->mutableOptions().nonFinite = p;
    return *this;
  }
  /// Replaces all hyperparameters; throws `InvalidArgument` and keeps the old ones when `o` is invalid.
  ProjectedAdamW& setOptions(const AdamWOptions& o) {
    Base::setOptions(o);
    return *this;
  }
  /// Sets what happens to the moments when the basis changes (default `Keep`).
  ProjectedAdamW& setMomentPolicy(MomentPolicy p) {
    Base::setMomentPolicy(p);
    return *this;
  }
  /// First moment m, shaped like the projected gradient R (empty before the first step).
  const Matrix& firstMoment() const { return this->rule().firstMoment(); }
  /// Second moment v, shaped like the projected gradient R (empty before the first step).
  const Matrix& secondMoment() const { return this->rule().secondMoment(); }

 private:
  ProjectedAdamW& set(double AdamWOptions::*field, double value) {
    AdamWOptions o = this->options();
    o.*field = value;
    Base::setOptions(o);
    return *this;
  }
};

}  // namespace wproj
