// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Fira (Chen et al. 2024, "Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank
/// Constraint?"): GaLore-Adam in the subspace plus the residual of the gradient outside it,
/// scaled by the subspace's Adam-to-gradient norm ratio, with the norm-growth limiter.

#include "adamw.hpp"
#include "apollo.hpp"
#include "persistence.hpp"
#include "projected_optimizer.hpp"
#include "projector.hpp"
#include "svd_basis.hpp"

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <string>

namespace wproj {

/// Hyperparameters of `Fira` (defaults of the reference `FiraAdamW`: lr 1e-3, β = (0.9, 0.999),
/// ε = 1e-6, bias correction, wd 0; limiter γ = 1.01; rank, gap and α live in `GradientProjector`).
struct FiraOptions {
  double learningRate = 1e-3;  ///< lr (finite, ≥ 0)
  double beta1 = 0.9;          ///< first-moment decay, in [0, 1)
  double beta2 = 0.999;        ///< second-moment decay, in [0, 1)
  double epsilon = 1e-6;       ///< ε of Adam's denominator (> 0)
  double weightDecay = 0;      ///< decoupled weight decay wd (finite, ≥ 0), after the update
  bool biasCorrection = true;  ///< step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ)
  double limiterGamma = 1.01;  ///< γ of the norm-growth limiter on the residual (finite, ≥ 1)
  NonFinitePolicy nonFinite = NonFinitePolicy::Throw;  ///< NaN/Inf gradient: throw or skip

  /// The Adam part as `AdamWOptions` (for `AdamRule`).
  AdamWOptions adam() const {
    AdamWOptions o;
    o.learningRate = learningRate;
    o.beta1 = beta1;
    o.beta2 = beta2;
    o.epsilon = epsilon;
    o.weightDecay = weightDecay;
    o.biasCorrection = biasCorrection;
    o.nonFinite = nonFinite;
    return o;
  }
  /// Throws `InvalidArgument` naming the first invalid field (`where` prefixes the message).
  void validate(const char* where) const {
    adam().validate(where);
    requireArg(std::isfinite(limiterGamma) && limiterGamma >= 1, where, "limiterGamma", limiterGamma, "finite and >= 1");
  }
  /// Writes the hyperparameters to a checkpoint.
  void save(std::ostream& os) const {
    for (double v : {learningRate, beta1, beta2, epsilon, weightDecay, limiterGamma}) ckpt::writePod<double>(os, v);
    ckpt::writePod<std::uint8_t>(os, biasCorrection ? 1 : 0);
    ckpt::writePod<std::int32_t>(os, std::int32_t(nonFinite));
  }
  /// Reads hyperparameters written by `save`; throws `IoError` when they are malformed.
  void load(std::istream& is) {
    FiraOptions o;
    o.learningRate = ckpt::readPod<double>(is, "learning rate");
    o.beta1 = ckpt::readPod<double>(is, "beta1");
    o.beta2 = ckpt::readPod<double>(is, "beta2");
    o.epsilon = ckpt::readPod<double>(is, "epsilon");
    o.weightDecay = ckpt::readPod<double>(is, "weight decay");
    o.limiterGamma = ckpt::readPod<double>(is, "limiter gamma");
    o.biasCorrection = ckpt::readBounded<std::uint8_t>(is, "bias correction flag", 0, 1) != 0;
    o.nonFinite = NonFinitePolicy(ckpt::readBounded<std::int32_t>(is, "non-finite policy", 0, 1));
    try {
      o.validate("checkpoint");
    } catch (const InvalidArgument& e) {
      throw IoError(std::string("checkpoint: invalid Fira hyperparameters: ") + e.what());
    }
    *this = o;
  }
};

/// Fira (Chen et al. 2024; reference xichen-fy/Fira `FiraAdamW`) for one weight W (m×n) with a
/// one-sided `GradientProjector<Basis>` (GaLore's SVD basis by default):
///
///     R = project(G);  N = m/(√v + ε)                   (GaLore-Adam, moments shaped like R)
///     φ_j = ‖N_j‖ / (‖R_j‖ + 1e-8)                       (per channel j)
///     S = φ ⊙ (G − α·back(R))                            (the residual outside the subspace)
///     S ← S/ℓ,  ℓ = max(‖S‖/(prev + 1e-8), γ)/γ          (norm-growth limiter, γ = 1.01)
///     W ← W − lr·√(1−β₂ᵗ)/(1−β₁ᵗ)·(α·back(N) + S);  W ← W − lr·wd·W
///
/// back(X) = P X (left, R = PᵀG) or X Pᵀ (right, R = G P), α the projector's scale. A channel is
/// the dimension the projection keeps (a column of G for a left projection, a row for a right
/// one). Two-sided projection is refused. State: the moments (shaped like R), the limiter's norm and
/// the projector's basis.
///
/// Robustness: a NaN/Inf gradient throws or is skipped (`setNonFinitePolicy`); a non-finite N is
/// never applied — the moments and the limiter reset and the step is counted in `skippedSteps()`.
/// After the first step the buffers are reused (the products go through the projector's
/// allocation-free GEMMs); refresh steps run a decomposition.
///
/// \code
///   wproj::Fira<wproj::SVDBasis<float>> opt;
///   opt.projector().setRank(128).setUpdateGap(200).setScale(0.25f);
///   opt.setLearningRate(1e-2);
///   for (const auto& g : gradients) opt.step(w, g);  // w, g: m×n
/// \endcode
template <typename Basis = SVDBasis<float>>
class Fira {
 public:
  /// The projector type.
  using Projector = GradientProjector<Basis>;
  /// Floating-point type of weights, gradients and moments.
  using Scalar = typename Basis::Scalar;
  /// Dense matrix type of the projected gradient, the moments and the residual.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Vector of channel norms.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  Fira() = default;
  /// An optimizer around a configured (not yet used) projector.
  explicit Fira(const Projector& projector) : m_proj(projector) {}

  /// The projector; configure it (rank, gap, scale α, basis) before the first step.
  Projector& projector() { return m_proj; }
  /// The projector.
  const Projector& projector() const { return m_proj; }

  /// Replaces all hyperparameters; throws `InvalidArgument` and keeps the old ones when `o` is invalid.
  Fira& setOptions(const FiraOptions& o) {
    o.validate("Fira");
    m_opt = o;
    return *this;
  }
  /// Sets lr (finite, ≥ 0).
  Fira& setLearningRate(double lr) { return set(&FiraOptions::learningRate, lr); }
  /// Sets β₁ and β₂ (each in [0, 1)).
  Fira& setBetas(double b1, double b2) {
    FiraOptions o = m_opt;
    o.beta1 = b1;
    o.beta2 = b2;
    return setOptions(o);
  }
  /// Sets ε (> 0; default 1e-6).
  Fira& setEpsilon(double e) { return set(&FiraOptions::epsilon, e); }
  /// Sets the decoupled weight decay wd (≥ 0).
  Fira& setWeightDecay(double wd) { return set(&FiraOptions::weightDecay, wd); }
  /// Sets γ of the norm-growth limiter (finite, ≥ 1; default 1.01).
  Fira& setLimiterGamma(double gamma) { return set(&FiraOptions::limiterGamma, gamma); }
  /// Turns the bias correction of the step size on or off.
  Fira& setBiasCorrection(bool on) {
    m_opt.biasCorrection = on;
    return *this;
  }
  /// Sets what a NaN/Inf gradient does: throw, or skip the step.
  Fira& setNonFinitePolicy(NonFinitePolicy p) {
    m_opt.nonFinite = p;
    return *this;
  }
  /// Sets what happens to the moments when the basis changes (default `Keep`, as the reference).
  Fira& setMomentPolicy(MomentPolicy p) {
    m_policy = p;
    return *this;
  }

  /// The current hyperparameters.
  const FiraOptions& options() const { return m_opt; }
  /// The moment policy.
  MomentPolicy momentPolicy() const { return m_policy; }
  /// Adam step count t (restarts with `MomentPolicy::Reset` and after a non-finite update).
  Index stepCount() const { return m_t; }
  /// Number of steps not applied.
  Index skippedSteps() const { return m_skipped; }
  /// First moment, shaped like R (empty before the first step).
  const Matrix& firstMoment() const { return m_rule.firstMoment(); }
  /// Second moment, shaped like R (empty before the first step).
  const Matrix& secondMoment() const { return m_rule.secondMoment(); }
  /// The factors φ of the last applied step (one per channel).
  const Vector& lastScale() const { return m_phi; }
  /// Bytes of optimizer state: the moments, the limiter's norm and the projector's basis state.
  std::size_t stateBytes() const { return m_rule.bytes() + sizeof(double) + m_proj.stateBytes(); }

  /// One Fira step on W (m×n) with gradient G (m×n).
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DG>& g) {
    checkShape(g, w.rows(), w.cols(), "Fira::step", "g");
    if (detail::rejectNonFinite(g, m_opt.nonFinite, "Fira::step", m_skipped)) return StepOutcome::Skipped;
    if (m_r.size() == 0) start(g.rows(), g.cols());
    if (m_proj.beginStep(g)) applyMomentPolicy();
    m_proj.project(g, m_r);
    ++m_t;
    const Side side = m_proj.side();
    m_rSaved = m_r;
    detail::channelNorms(m_r, side, m_rNorm);
    const RuleStep rs = m_rule.update(m_r, m_t, m_opt.adam(), w);
    if (!m_r.allFinite()) {
      m_rule.reset();
      m_limiter.reset();
      m_t = 0;
      ++m_skipped;
      m_proj.endStep(g, lrRatio());
      return StepOutcome::Skipped;
    }
    detail::channelNorms(m_r, side, m_phi);
    m_phi.array() /= m_rNorm.array() + Scalar(1e-8);
    // S = φ ⊙ (G − α·back(R)), limited.
    m_res = g.template cast<Scalar>();
    m_proj.addBack(m_rSaved, Scalar(-1), m_res);
    if (side == Side::Left)
      m_res.array().rowwise() *= m_phi.transpose().array();
    else
      m_res.array().colwise() *= m_phi.array();
    const double limit = m_limiter.apply(double(m_res.norm()), m_opt.limiterGamma);
    const Scalar step = Scalar(rs.coefficient);
    m_proj.addBack(m_r, step, w);
    w.derived() += Scalar(rs.coefficient / limit) * m_res;
    if (m_opt.weightDecay > 0) w.derived() *= Scalar(1.0 - rs.decayLearningRate * m_opt.weightDecay);
    m_proj.endStep(g, lrRatio());
    return StepOutcome::Applied;
  }
  /// Overload for a temporary weight expression, such as an Eigen block or `Map`.
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>&& w, const Eigen::MatrixBase<DG>& g) {
    return step(w, g);
  }

  /// Writes hyperparameters, moment policy, step counts, lr₀, the limiter's norm, the moments and
  /// the projector — section "Fira".
  void save(std::ostream& os) const {
    ckpt::writeHeader(os, "Fira");
    m_opt.save(os);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_policy));
    ckpt::writePod<std::int64_t>(os, m_t);
    ckpt::writePod<std::int64_t>(os, m_skipped);
    ckpt::writePod<double>(os, m_lr0);
    ckpt::writePod<double>(os, m_limiter.previous);
    m_rule.saveBeforeProjector(os, m_r.size() > 0);
    m_proj.save(os);
  }
  /// Restores a state written by `save`; throws `IoError` on malformed data (this object is
  /// unchanged then).
  void load(std::istream& is) {
    ckpt::readHeader(is, "Fira");
    Fira o(m_proj);
    o.m_opt.load(is);
    o.m_policy = MomentPolicy(ckpt::readBounded<std::int32_t>(is, "moment policy", 0, 2));
    o.m_t = ckpt::readBounded<std::int64_t>(is, "step count", 0, std::numeric_limits<std::int64_t>::max());
    o.m_skipped = ckpt::readBounded<std::int64_t>(is, "skipped steps", 0, std::numeric_limits<std::int64_t>::max());
    o.m_lr0 = ckpt::readPod<double>(is, "initial learning rate");
    o.m_limiter.previous = ckpt::readPod<double>(is, "limiter norm");
    if (!std::isfinite(o.m_limiter.previous)) throw IoError("checkpoint: Fira limiter norm is not finite");
    const bool started = o.m_rule.loadBeforeProjector(is, o.m_opt.adam());
    o.m_proj.load(is);
    if (started) {
      if (!o.m_proj.initialized()) throw IoError("checkpoint: optimizer state present but the projector is not initialised");
      if (o.m_proj.twoSided()) throw IoError("checkpoint: Fira needs a one-sided projector");
      o.m_rule.loadAfterProjector(is, o.m_proj.projectedRows(), o.m_proj.projectedCols(), o.m_proj.rank(), o.m_opt.adam());
      o.m_r.resize(o.m_proj.projectedRows(), o.m_proj.projectedCols());
    }
    *this = std::move(o);
  }

 private:
  Fira& set(double FiraOptions::*field, double value) {
    FiraOptions o = m_opt;
    o.*field = value;
    return setOptions(o);
  }
  double lrRatio() const { return m_lr0 > 0 ? m_opt.learningRate / m_lr0 : 1.0; }
  void start(Index rows, Index cols) {
    m_proj.init(rows, cols);
    requireArg(!m_proj.twoSided(), "Fira::step", "projectionType", "Full", "a one-sided projection (Fira scales channels of G)");
    m_rule.allocate(m_proj.projectedRows(), m_proj.projectedCols(), m_proj.rank(), m_opt.adam());
    m_r.resize(m_proj.projectedRows(), m_proj.projectedCols());
    m_lr0 = m_opt.learningRate;
  }
  void applyMomentPolicy() {
    switch (m_policy) {
      case MomentPolicy::Keep: return;
      case MomentPolicy::Reset:
        m_rule.reset();
        m_t = 0;
        return;
      case MomentPolicy::Rotate: m_rule.rotate(false, m_proj.side(), m_proj.transition(), m_proj.transitionRight()); return;
    }
  }

  Projector m_proj;
  FiraOptions m_opt{};
  MomentPolicy m_policy = MomentPolicy::Keep;
  Index m_t = 0, m_skipped = 0;
  double m_lr0 = 0;
  AdamRule<Scalar> m_rule;
  detail::NormGrowthLimiter m_limiter;
  Matrix m_r, m_rSaved, m_res;
  Vector m_rNorm, m_phi;
};

}  // namespace wproj
