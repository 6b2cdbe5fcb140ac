// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Muon — momentum orthogonalised by Newton–Schulz (Jordan et al. 2024), with Moonlight's
/// RMS-matching update scale (Liu et al. 2025) as an option.

#include "../linalg/newton_schulz.hpp"
#include "persistence.hpp"
#include "projected_optimizer.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <string>

namespace wproj {

/// How Muon scales the orthogonalised update of an m×n weight.
enum class MuonScaling {
  Shape,     ///< max(1, m/n)^0.5 — the reference (KellerJordan/Muon `muon_update`)
  MatchAdam  ///< 0.2·√max(m, n) — Moonlight: the update RMS of AdamW, so AdamW's lr and wd carry over
};

/// Hyperparameters of `Muon` (defaults of the reference `Muon` / `SingleDeviceMuon`).
struct MuonOptions {
  double learningRate = 0.02;       ///< lr, in units of spectral norm per update (finite, ≥ 0)
  double momentum = 0.95;           ///< β of the momentum buffer, in [0, 1)
  bool nesterov = true;             ///< orthogonalise (1−β)G + βM instead of M
  int nsSteps = 5;                  ///< Newton–Schulz iterations (≥ 1)
  double nsA = 3.4445;              ///< Newton–Schulz coefficient a (finite)
  double nsB = -4.7750;             ///< Newton–Schulz coefficient b (finite)
  double nsC = 2.0315;              ///< Newton–Schulz coefficient c (finite)
  double nsEpsilon = 1e-7;          ///< ε of the normalisation G/(‖G‖_F + ε) (finite, ≥ 0)
  double weightDecay = 0;           ///< decoupled weight decay wd (finite, ≥ 0): W ← W(1 − lr·wd) before the update
  MuonScaling scaling = MuonScaling::Shape;  ///< update scale rule
  NonFinitePolicy nonFinite = NonFinitePolicy::Throw;  ///< NaN/Inf gradient: throw or skip

  /// Throws `InvalidArgument` naming the first invalid field (`where` prefixes the message).
  void validate(const char* where) const {
    requireArg(std::isfinite(learningRate) && learningRate >= 0, where, "learningRate", learningRate, "finite and >= 0");
    requireArg(momentum >= 0 && momentum < 1, where, "momentum", momentum, "in [0, 1)");
    requireArg(nsSteps >= 1, where, "nsSteps", nsSteps, ">= 1");
    requireArg(std::isfinite(nsA), where, "nsA", nsA, "finite");
    requireArg(std::isfinite(nsB), where, "nsB", nsB, "finite");
    requireArg(std::isfinite(nsC), where, "nsC", nsC, "finite");
    requireArg(std::isfinite(nsEpsilon) && nsEpsilon >= 0, where, "nsEpsilon", nsEpsilon, "finite and >= 0");
    requireArg(std::isfinite(weightDecay) && weightDecay >= 0, where, "weightDecay", weightDecay, "finite and >= 0");
  }
  /// Writes the hyperparameters to a checkpoint.
  void save(std::ostream& os) const {
    for (double v : {learningRate, momentum, nsA, nsB, nsC, nsEpsilon, weightDecay}) ckpt::writePod<double>(os, v);
    ckpt::writePod<std::int32_t>(os, std::int32_t(nsSteps));
    ckpt::writePod<std::uint8_t>(os, nesterov ? 1 : 0);
    ckpt::writePod<std::int32_t>(os, std::int32_t(scaling));
    ckpt::writePod<std::int32_t>(os, std::int32_t(nonFinite));
  }
  /// Reads hyperparameters written by `save`; throws `IoError` when they are malformed (this
  /// object is unchanged then).
  void load(std::istream& is) {
    MuonOptions o;
    o.learningRate = ckpt::readPod<double>(is, "learning rate");
    o.momentum = ckpt::readPod<double>(is, "momentum");
    o.nsA = ckpt::readPod<double>(is, "Newton-Schulz a");
    o.nsB = ckpt::readPod<double>(is, "Newton-Schulz b");
    o.nsC = ckpt::readPod<double>(is, "Newton-Schulz c");
    o.nsEpsilon = ckpt::readPod<double>(is, "Newton-Schulz epsilon");
    o.weightDecay = ckpt::readPod<double>(is, "weight decay");
    o.nsSteps = ckpt::readBounded<std::int32_t>(is, "Newton-Schulz steps", 1, 1 << 20);
    o.nesterov = ckpt::readBounded<std::uint8_t>(is, "Nesterov flag", 0, 1) != 0;
    o.scaling = MuonScaling(ckpt::readBounded<std::int32_t>(is, "Muon scaling", 0, 1));
    o.nonFinite = NonFinitePolicy(ckpt::readBounded<std::int32_t>(is, "non-finite policy", 0, 1));
    try {
      o.validate("checkpoint");
    } catch (const InvalidArgument& e) {
      throw IoError(std::string("checkpoint: invalid Muon hyperparameters: ") + e.what());
    }
    *this = o;
  }
};

/// Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks"; reference
/// KellerJordan/Muon `SingleDeviceMuon`) for one 2-D weight W (m×n):
///
///     M ← M + (1−β)(G − M)                       (momentum, one m×n matrix of state)
///     U = (1−β)G + βM if Nesterov, else M
///     O = NS₅(U)                                 (`NewtonSchulz`, ≈ the polar factor of U)
///     W ← W·(1 − lr·wd);  W ← W − lr·s·O
///
/// with s = max(1, m/n)^0.5 (`MuonScaling::Shape`, the reference) or s = 0.2·√max(m, n)
/// (`MuonScaling::MatchAdam`, Moonlight). Muon is for hidden weight matrices only: embeddings,
/// the output head, biases and gains are the caller's to train with `AdamW`.
///
/// Robustness: a NaN/Inf gradient throws or is skipped (`setNonFinitePolicy`); a non-finite
/// update (an overflowing momentum) is never applied — the momentum is reset and the step counted
/// in `skippedSteps()`. After the first step the buffers (momentum, Nesterov input, update and the
/// Newton–Schulz workspace) are reused; Eigen's symmetric product kernels may allocate packing
/// blocks per call on large shapes.
///
/// \code
///   wproj::Muon<float> opt;
///   opt.setLearningRate(0.02).setWeightDecay(0.01);
///   for (const auto& g : gradients) opt.step(w, g);  // w, g: m×n
/// \endcode
template <typename Scalar_>
class Muon {
 public:
  /// Floating-point type of weights, gradients and the momentum.
  using Scalar = Scalar_;
  /// Dense matrix type of the momentum.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  Muon() = default;
  /// An optimizer with hyperparameters `o` (validated).
  explicit Muon(const MuonOptions& o) { setOptions(o); }

  /// Replaces all hyperparameters; throws `InvalidArgument` and keeps the old ones when `o` is invalid.
  Muon& setOptions(const MuonOptions& o) {
    o.validate("Muon");
    m_opt = o;
    return *this;
  }
  /// Sets lr (finite, ≥ 0; default 0.02).
  Muon& setLearningRate(double lr) { return set(&MuonOptions::learningRate, lr); }
  /// Sets the momentum β (in [0, 1); default 0.95).
  Muon& setMomentum(double beta) { return set(&MuonOptions::momentum, beta); }
  /// Turns Nesterov momentum on or off (default on).
  Muon& setNesterov(bool on) {
    m_opt.nesterov = on;
    return *this;
  }
  /// Sets the decoupled weight decay wd (finite, ≥ 0; default 0).
  Muon& setWeightDecay(double wd) { return set(&MuonOptions::weightDecay, wd); }
  /// Sets the number of Newton–Schulz iterations (≥ 1; default 5).
  Muon& setNewtonSchulzSteps(int steps) {
    MuonOptions o = m_opt;
    o.nsSteps = steps;
    return setOptions(o);
  }
  /// Sets the Newton–Schulz coefficients (a, b, c) (finite; default 3.4445, −4.7750, 2.0315).
  Muon& setNewtonSchulzCoefficients(double a, double b, double c) {
    MuonOptions o = m_opt;
    o.nsA = a;
    o.nsB = b;
    o.nsC = c;
    return setOptions(o);
  }
  /// Sets the update scale rule (default `MuonScaling::Shape`).
  Muon& setScaling(MuonScaling s) {
    requireArg(s == MuonScaling::Shape || s == MuonScaling::MatchAdam, "Muon::setScaling", "scaling", int(s), "Shape or MatchAdam");
    m_opt.scaling = s;
    return *this;
  }
  /// Sets what a NaN/Inf gradient does: throw, or skip the step.
  Muon& setNonFinitePolicy(NonFinitePolicy p) {
    m_opt.nonFinite = p;
    return *this;
  }

  /// The current hyperparameters.
  const MuonOptions& options() const { return m_opt; }
  /// Number of applied steps.
  Index stepCount() const { return m_t; }
  /// Number of steps not applied (non-finite gradients and non-finite updates).
  Index skippedSteps() const { return m_skipped; }
  /// The momentum M, shaped like W (empty before the first step).
  const Matrix& momentum() const { return m_m; }
  /// Bytes of optimizer state (the momentum).
  std::size_t stateBytes() const { return std::size_t(m_m.size()) * sizeof(Scalar); }
  /// The update scale s of an m×n weight under the current scaling rule.
  double updateScale(Index rows, Index cols) const {
    if (m_opt.scaling == MuonScaling::MatchAdam) return 0.2 * std::sqrt(double(std::max(rows, cols)));
    return std::sqrt(std::max(1.0, double(rows) / double(cols)));
  }

  /// One Muon step on W (m×n) with gradient G (m×n).
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DG>& g) {
    checkShape(g, w.rows(), w.cols(), "Muon::step", "g");
    checkNonEmpty(g, "Muon::step", "g");
    if (detail::rejectNonFinite(g, m_opt.nonFinite, "Muon::step", m_skipped)) return StepOutcome::Skipped;
    if (m_m.size() == 0) m_m.setZero(w.rows(), w.cols());
    checkShape(w, m_m.rows(), m_m.cols(), "Muon::step", "w");
    const Scalar beta = Scalar(m_opt.momentum), omb = Scalar(1) - beta;
    m_m += omb * (g.template cast<Scalar>() - m_m);
    if (m_opt.nesterov) {
      m_u = g.template cast<Scalar>();
      m_u += beta * (m_m - m_u);
    }
    const Matrix& u = m_opt.nesterov ? m_u : m_m;
    if (!u.allFinite()) {
      m_m.setZero();
      ++m_skipped;
      return StepOutcome::Skipped;
    }
    m_ns.setSteps(m_opt.nsSteps).setCoefficients(m_opt.nsA, m_opt.nsB, m_opt.nsC).setEpsilon(m_opt.nsEpsilon);
    m_o.resize(w.rows(), w.cols());
    m_ns.compute(u, m_o);
    if (m_opt.weightDecay > 0) w.derived() *= Scalar(1.0 - m_opt.learningRate * m_opt.weightDecay);
    w.derived() -= Scalar(m_opt.learningRate * updateScale(w.rows(), w.cols())) * m_o;
    ++m_t;
    return StepOutcome::Applied;
  }
  /// Overload for a temporary weight expression, such as an Eigen block or `Map`.
  template <typename DW, typename DG>
  StepOutcome step(Eigen::MatrixBase<DW>&& w, const Eigen::MatrixBase<DG>& g) {
    return step(w, g);
  }

  /// Writes hyperparameters, step counts and the momentum to a checkpoint (section "Muon").
  void save(std::ostream& os) const {
    ckpt::writeHeader(os, "Muon");
    m_opt.save(os);
    ckpt::writePod<std::int64_t>(os, m_t);
    ckpt::writePod<std::int64_t>(os, m_skipped);
    ckpt::writeMatrix(os, m_m);
  }
  /// Restores a state written by `save`; throws `IoError` on malformed data (this object is
  /// unchanged then).
  void load(std::istream& is) {
    ckpt::readHeader(is, "Muon");
    MuonOptions o;
    o.load(is);
    const auto t = ckpt::readBounded<std::int64_t>(is, "step count", 0, std::numeric_limits<std::int64_t>::max());
    const auto sk = ckpt::readBounded<std::int64_t>(is, "skipped steps", 0, std::numeric_limits<std::int64_t>::max());
    Matrix m = ckpt::readMatrix<Scalar>(is, "momentum");
    if (!m.allFinite()) throw IoError("checkpoint: Muon momentum has non-finite entries");
    m_opt = o;
    m_t = t;
    m_skipped = sk;
    m_m.swap(m);
  }

 private:
  Muon& set(double MuonOptions::*field, double value) {
    MuonOptions o = m_opt;
    o.*field = value;
    return setOptions(o);
  }
  MuonOptions m_opt{};
  Index m_t = 0, m_skipped = 0;
  Matrix m_m, m_u, m_o;
  NewtonSchulz<Scalar> m_ns;
};

}  // namespace wproj
