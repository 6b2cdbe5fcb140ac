// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// APOLLO and APOLLO-Mini (Zhu et al. 2024, "APOLLO: SGD-like Memory, AdamW-level Performance"):
/// Adam moments on a seeded random projection of G give a channel-wise (or tensor-wise) scale
/// that is applied to the raw gradient, with Fira's norm-growth limiter. Also the pieces Fira
/// shares: channel norms of a projected gradient and the limiter.

#include "adamw.hpp"
#include "gaussian_basis.hpp"
#include "persistence.hpp"
#include "projected_optimizer.hpp"
#include "projector.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <string>

namespace wproj {

/// Granularity of APOLLO's gradient scale.
enum class ApolloScaling {
  Channel,  ///< one factor per channel (column of G for a left projection, row for a right one)
  Tensor    ///< one factor for the whole matrix (APOLLO-Mini)
};

namespace detail {

/// Norms of the channels of a projected gradient R: per column (R = PᵀG, left side, n values) or
/// per row (R = G P, right side, m values) — the dimension the projection keeps.
template <typename Matrix, typename Vector>
void channelNorms(const Matrix& r, Side side, Vector& out) {
  if (side == Side::Left)
    out = r.colwise().norm().transpose();
  else
    out = r.rowwise().norm();
}

/// Fira's norm-growth limiter (Chen et al. 2024, γ = 1.01): the first norm is remembered; later an
/// update whose norm grew by more than γ relative to the remembered one is divided by
/// ℓ = max(‖U‖/(prev + 1e-8), γ)/γ, and prev ← ‖U‖/ℓ. A negative prev means "no norm yet".
struct NormGrowthLimiter {
  double previous = -1;  ///< the remembered norm (−1 before the first update)
  /// Returns the divisor ℓ ≥ 1 for an update of norm `norm` and advances the state.
  double apply(double norm, double gamma) {
    if (previous < 0) {
      previous = norm;
      return 1.0;
    }
    const double limit = std::max(norm / (previous + 1e-8), gamma) / gamma;
    previous = norm / limit;
    return limit;
  }
  /// Forgets the remembered norm.
  void reset() { previous = -1; }
};

}  // namespace detail

/// Hyperparameters of `Apollo` (defaults of the reference `apollo_torch.AdamW` with an APOLLO
/// parameter group: lr 1e-3, β = (0.9, 0.999), ε = 1e-6, bias correction, scale 1, channel-wise,
/// limiter on; the projector's rank and `update_proj_gap` = 200 live in `GradientProjector`).
struct ApolloOptions {
  double learningRate = 1e-3;  ///< lr (finite, ≥ 0)
  double beta1 = 0.9;          ///< first-moment decay, in [0, 1)
  double beta2 = 0.999;        ///< second-moment decay, in [0, 1)
  double epsilon = 1e-6;       ///< ε of Adam's denominator (> 0)
  double weightDecay = 0;      ///< decoupled weight decay wd (finite, ≥ 0), after the update
  bool biasCorrection = true;  ///< step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ)
  double scale = 1.0;          ///< the reference's `scale` (finite, > 0); the update is multiplied by √scale
  ApolloScaling scaling = ApolloScaling::Channel;  ///< channel-wise (APOLLO) or tensor-wise (APOLLO-Mini)
  bool normGrowthLimiter = true;                   ///< Fira's limiter on the scaled gradient (reference: on)
  double limiterGamma = 1.01;                      ///< γ of the limiter (finite, ≥ 1)
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
    requireArg(std::isfinite(scale) && scale > 0, where, "scale", scale, "finite and > 0");
    requireArg(scaling == ApolloScaling::Channel || scaling == ApolloScaling::Tensor, where, "scaling", int(scaling),
               "Channel or Tensor");
    requireArg(std::isfinite(limiterGamma) && limiterGamma >= 1, where, "limiterGamma", limiterGamma, "finite and >= 1");
  }
  /// Writes the hyperparameters to a checkpoint.
  void save(std::ostream& os) const {
    for (double v : {learningRate, beta1, beta2, epsilon, weightDecay, scale, limiterGamma}) ckpt::writePod<double>(os, v);
    ckpt::writePod<std::uint8_t>(os, biasCorrection ? 1 : 0);
    ckpt::writePod<std::uint8_t>(os, normGrowthLimiter ? 1 : 0);
    ckpt::writePod<std::int32_t>(os, std::int32_t(scaling));
    ckpt::writePod<std::int32_t>(os, std::int32_t(nonFinite));
  }
  /// Reads hyperparameters written by `save`; throws `IoError` when they are malformed.
  void load(std::istream& is) {
    ApolloOptions o;
    o.learningRate = ckpt::readPod<double>(is, "learning rate");
    o.beta1 = ckpt::readPod<double>(is, "beta1");
    o.beta2 = ckpt::readPod<double>(is, "beta2");
    o.epsilon = ckpt::readPod<double>(is, "epsilon");
    o.weightDecay = ckpt::readPod<double>(is, "weight decay");
    o.scale = ckpt::readPod<double>(is, "APOLLO scale");
    o.limiterGamma = ckpt::readPod<double>(is, "limiter gamma");
    o.biasCorrection = ckpt::readBounded<std::uint8_t>(is, "bias correction flag", 0, 1) != 0;
    o.normGrowthLimiter = ckpt::readBounded<std::uint8_t>(is, "limiter flag", 0, 1) != 0;
    o.scaling = ApolloScaling(ckpt::readBounded<std::int32_t>(is, "APOLLO scaling", 0, 1));
    o.nonFinite = NonFinitePolicy(ckpt::readBounded<std::int32_t>(is, "non-finite policy", 0, 1));
    try {
      o.validate("checkpoint");
    } catch (const InvalidArgument& e) {
      throw IoError(std::string("checkpoint: invalid APOLLO hyperparameters: ") + e.what());
    }
    *this = o;
  }
};

/// APOLLO (Zhu et al. 2024; reference `apollo_torch.AdamW`, `proj="random"`) for one weight W
/// (m×n), with a one-sided `GradientProjector<Basis>` (seeded `GaussianBasis` by default, P with
/// N(0, 1/r) entries regenerated from the seed at every refresh):
///
///     R = project(G)                              (PᵀG, r×n, or G P, m×r; P never stored)
///     Adam on R: m, v ← …;  Ñ = m/(√v + ε)        (`AdamRule`, moments shaped like R)
///     s_j = ‖Ñ_j‖ / (‖R_j‖ + 1e-8)                (per channel j; tensor-wise: ‖Ñ‖_F/(‖R‖_F + 1e-8))
///     U = G ⊙ s                                   (the raw gradient, no back-projection)
///     U ← U/ℓ,  ℓ = max(‖U‖/(prev + 1e-8), γ)/γ   (norm-growth limiter, γ = 1.01)
///     W ← W − lr·√(1−β₂ᵗ)/(1−β₁ᵗ)·√scale·U;  W ← W − lr·wd·W
///
/// A channel is the dimension the projection keeps: a column of G for a left projection (R = PᵀG),
/// a row for a right one. APOLLO-Mini (`Apollo::mini()`) is rank 1, tensor-wise, scale 128.
/// The projector's own scale α is not used (nothing is projected back). Two-sided projection is
/// refused. State: the two moments (shaped like R), the limiter's norm, the seed and refresh index.
///
/// Robustness: a NaN/Inf gradient throws or is skipped (`setNonFinitePolicy`); a non-finite Ñ is
/// never applied — the moments and the limiter reset and the step is counted in `skippedSteps()`.
/// After the first step the buffers are reused (the products go through the projector's
/// allocation-free GEMMs); refresh steps run a decomposition.
///
/// \code
///   wproj::Apollo<wproj::GaussianBasis<float>> opt;
///   opt.projector().setRank(256).setUpdateGap(200);
///   opt.projector().basis().setSeed(7);
///   opt.setLearningRate(1e-2);
///   for (const auto& g : gradients) opt.step(w, g);  // w, g: m×n
/// \endcode
template <typename Basis = GaussianBasis<float>>
class Apollo {
 public:
  /// The projector type.
  using Projector = GradientProjector<Basis>;
  /// Floating-point type of weights, gradients and moments.
  using Scalar = typename Basis::Scalar;
  /// Dense matrix type of the projected gradient and the moments.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Vector of channel norms.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  Apollo() = default;
  /// An optimizer around a configured (not yet used) projector.
  explicit Apollo(const Projector& projector) : m_proj(projector) {}

  /// APOLLO-Mini: rank 1, tensor-wise scale, scale 128 (the reference's configuration).
  static Apollo mini() {
    Apollo a;
    a.m_proj.setRank(1);
    a.m_opt.scaling = ApolloScaling::Tensor;
    a.m_opt.scale = 128;
    return a;
  }

  /// The projector; configure it (rank, gap, seed through `basis()`) before the first step.
  Projector& projector() { return m_proj; }
  /// The projector.
  const Projector& projector() const { return m_proj; }

  /// Replaces all hyperparameters; throws `InvalidArgument` and keeps the old ones when `o` is invalid.
  Apollo& setOptions(const ApolloOptions& o) {
    o.validate("Apollo");
    m_opt = o;
    return *this;
  }
  /// Sets lr (finite, ≥ 0).
  Apollo& setLearningRate(double lr) { return set(&ApolloOptions::learningRate, lr); }
  /// Sets β₁ and β₂ (each in [0, 1)).
  Apollo& setBetas(double b1, double b2) {
    ApolloOptions o = m_opt;
    o.beta1 = b1;
    o.beta2 = b2;
    return setOptions(o);
  }
  /// Sets ε (> 0; default 1e-6).
  Apollo& setEpsilon(double e) { return set(&ApolloOptions::epsilon, e); }
  /// Sets the decoupled weight decay wd (≥ 0).
  Apollo& setWeightDecay(double wd) { return set(&ApolloOptions::weightDecay, wd); }
  /// Sets the reference's `scale` (> 0; the update is multiplied by √scale; default 1, Mini 128).
  Apollo& setScale(double s) { return set(&ApolloOptions::scale, s); }
  /// Sets channel-wise or tensor-wise scaling.
  Apollo& setScaling(ApolloScaling s) {
    ApolloOptions o = m_opt;
    o.scaling = s;
    return setOptions(o);
  }
  /// Turns the norm-growth limiter on or off and sets its γ (finite, ≥ 1; default 1.01).
  Apollo& setNormGrowthLimiter(bool on, double gamma = 1.01) {
    ApolloOptions o = m_opt;
    o.normGrowthLimiter = on;
    o.limiterGamma = gamma;
    return setOptions(o);
  }
  /// Turns the bias correction of the step size on or off.
  Apollo& setBiasCorrection(bool on) {
    m_opt.biasCorrection = on;
    return *this;
  }
  /// Sets what a NaN/Inf gradient does: throw, or skip the step.
  Apollo& setNonFinitePolicy(NonFinitePolicy p) {
    m_opt.nonFinite = p;
    return *this;
  }
  /// Sets what happens to the moments when the basis changes (default `Keep`, as the reference).
  Apollo& setMomentPolicy(MomentPolicy p) {
    m_policy = p;
    return *this;
  }

  /// The current hyperparameters.
  const ApolloOptions& options() const { return m_opt; }
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
  /// The scale factors s of the last applied step (one per channel, or one for tensor-wise).
  const Vector& lastScale() const { return m_s; }
  /// Bytes of optimizer state: the moments, the limiter's norm and the projector's basis state.
  std::size_t stateBytes() const { return m_rule.bytes() + sizeof(double) + m_proj.stateBytes(); }

  /// One APOLLO step on W (m×n) with gradient G (m×n).
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DG>& g) {
    checkShape(g, w.rows(), w.cols(), "Apollo::step", "g");
    if (detail::rejectNonFinite(g, m_opt.nonFinite, "Apollo::step", m_skipped)) return StepOutcome::Skipped;
    if (m_r.size() == 0) start(g.rows(), g.cols());
    const AdamWOptions adam = m_opt.adam();
    if (m_proj.beginStep(g)) applyMomentPolicy();
    m_proj.project(g, m_r);
    ++m_t;
    const Side side = m_proj.side();
    const bool tensor = m_opt.scaling == ApolloScaling::Tensor;
    double rTotal = 0;
    if (tensor)
      rTotal = double(m_r.norm());
    else
      detail::channelNorms(m_r, side, m_rNorm);
    const RuleStep rs = m_rule.update(m_r, m_t, adam, w);
    if (!m_r.allFinite()) {
      m_rule.reset();
      m_limiter.reset();
      m_t = 0;
      ++m_skipped;
      m_proj.endStep(g, lrRatio());
      return StepOutcome::Skipped;
    }
    // s and ‖G ⊙ s‖ from the channel norms of G (U = G ⊙ s is never formed).
    double uNorm2 = 0;
    if (tensor) {
      m_s.resize(1);
      m_s(0) = Scalar(double(m_r.norm()) / (rTotal + 1e-8));
      uNorm2 = double(m_s(0)) * double(m_s(0)) * double(g.template cast<Scalar>().squaredNorm());
    } else {
      detail::channelNorms(m_r, side, m_s);
      m_s.array() /= m_rNorm.array() + Scalar(1e-8);
      if (side == Side::Left)
        m_gNorm2 = g.template cast<Scalar>().colwise().squaredNorm().transpose();
      else
        m_gNorm2 = g.template cast<Scalar>().rowwise().squaredNorm();
      uNorm2 = double((m_s.array().square() * m_gNorm2.array()).sum());
    }
    const double limit = m_opt.normGrowthLimiter ? m_limiter.apply(std::sqrt(uNorm2), m_opt.limiterGamma) : 1.0;
    const Scalar coef = Scalar(rs.coefficient * std::sqrt(m_opt.scale) / limit);
    if (tensor)
      w.derived() += (coef * m_s(0)) * g.template cast<Scalar>();
    else if (side == Side::Left)
      w.derived() += coef * (g.template cast<Scalar>() * m_s.asDiagonal());
    else
      w.derived() += coef * (m_s.asDiagonal() * g.template cast<Scalar>());
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
  /// the projector (for a Gaussian basis: its seed and refresh index, never P) — section "Apollo".
  void save(std::ostream& os) const {
    ckpt::writeHeader(os, "Apollo");
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
    ckpt::readHeader(is, "Apollo");
    Apollo o(m_proj);
    o.m_opt.load(is);
    o.m_policy = MomentPolicy(ckpt::readBounded<std::int32_t>(is, "moment policy", 0, 2));
    o.m_t = ckpt::readBounded<std::int64_t>(is, "step count", 0, std::numeric_limits<std::int64_t>::max());
    o.m_skipped = ckpt::readBounded<std::int64_t>(is, "skipped steps", 0, std::numeric_limits<std::int64_t>::max());
    o.m_lr0 = ckpt::readPod<double>(is, "initial learning rate");
    o.m_limiter.previous = ckpt::readPod<double>(is, "limiter norm");
    if (!std::isfinite(o.m_limiter.previous)) throw IoError("checkpoint: APOLLO limiter norm is not finite");
    const bool started = o.m_rule.loadBeforeProjector(is, o.m_opt.adam());
    o.m_proj.load(is);
    if (started) {
      if (!o.m_proj.initialized()) throw IoError("checkpoint: optimizer state present but the projector is not initialised");
      if (o.m_proj.twoSided()) throw IoError("checkpoint: APOLLO needs a one-sided projector");
      o.m_rule.loadAfterProjector(is, o.m_proj.projectedRows(), o.m_proj.projectedCols(), o.m_proj.rank(), o.m_opt.adam());
      o.m_r.resize(o.m_proj.projectedRows(), o.m_proj.projectedCols());
    }
    *this = std::move(o);
  }

 private:
  Apollo& set(double ApolloOptions::*field, double value) {
    ApolloOptions o = m_opt;
    o.*field = value;
    return setOptions(o);
  }
  double lrRatio() const { return m_lr0 > 0 ? m_opt.learningRate / m_lr0 : 1.0; }
  void start(Index rows, Index cols) {
    m_proj.init(rows, cols);
    requireArg(!m_proj.twoSided(), "Apollo::step", "projectionType", "Full", "a one-sided projection (APOLLO scales channels of G)");
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
  ApolloOptions m_opt{};
  MomentPolicy m_policy = MomentPolicy::Keep;
  Index m_t = 0, m_skipped = 0;
  double m_lr0 = 0;
  AdamRule<Scalar> m_rule;
  detail::NormGrowthLimiter m_limiter;
  Matrix m_r;
  Vector m_rNorm, m_s, m_gNorm2;
};

}  // namespace wproj
