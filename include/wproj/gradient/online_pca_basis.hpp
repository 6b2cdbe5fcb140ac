// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Online PCA bases: Online Subspace Descent (Liang et al. 2024).

#include "basis.hpp"
#include "../linalg/orthonormalize.hpp"
#include "../linalg/truncated_svd.hpp"

#include <array>
#include <cmath>

namespace wproj {

/// How the online PCA basis takes its gradient step on P.
enum class OnlinePCARule { Adam, Sgd };

/// Online Subspace Descent's basis: P is initialised once by a truncated SVD of the first
/// gradient and then follows the gradient subspace by one optimizer step per training step on
/// the online-PCA loss L(P) = ‖Ĝ P Pᵀ − Ĝ‖²_F (right side; ‖P PᵀĜ − Ĝ‖²_F on the left), with
/// Ĝ = G/‖G‖_F, taken after the training update used the old P. Its gradient is
/// ∇L = 2(P·AᵀA + Xᵀ·A(PᵀP − 2I)) with X = Ĝ (right) or Ĝᵀ (left) and A = X P — only products
/// with r columns, no m×n temporary. The projection learning rate is (1/T)·(lr/lr₀)·multiplier
/// (T = the projector's update gap, lr/lr₀ the optimizer's schedule ratio).
///
/// Knobs: `setRule` (Adam with β = (0.9, 0.999), ε = 1e-8 — the upstream default — or SGD),
/// `setLearningRateMultiplier` (default 1), `setReorthonormalize` (default false, as upstream:
/// when on, every scheduled refresh re-orthonormalises P with `orthonormalizeInPlace`).
/// State: P and, for Adam, its two moments (3·ambient·r scalars).
template <typename Scalar_>
class OnlinePCABasis : public detail::DenseBasisStorage<Scalar_> {
  using Base = detail::DenseBasisStorage<Scalar_>;

 public:
  /// Floating-point type of the basis.
  using Scalar = Scalar_;
  /// Dense matrix type of P, its moments and the transitions.
  using Matrix = typename Base::Matrix;
  /// Tag of this policy in checkpoints.
  static constexpr const char* kName = "OnlinePCABasis";
  /// True: the basis moves on every step (`track`).
  static constexpr bool kTracksSteps = true;

  /// Optimizer of the online-PCA step on P (default Adam).
  OnlinePCABasis& setRule(OnlinePCARule r) {
    m_rule = r;
    return *this;
  }
  /// Multiplier of the projection learning rate (positive, finite; default 1).
  OnlinePCABasis& setLearningRateMultiplier(double c) {
    requireArg(c > 0 && std::isfinite(c), "OnlinePCABasis::setLearningRateMultiplier", "c", c, "> 0");
    m_mult = c;
    return *this;
  }
  /// Re-orthonormalise P at every scheduled refresh (default false).
  OnlinePCABasis& setReorthonormalize(bool on) {
    m_reortho = on;
    return *this;
  }
  /// The optimizer of the online-PCA step.
  OnlinePCARule rule() const { return m_rule; }
  /// Multiplier of the projection learning rate.
  double learningRateMultiplier() const { return m_mult; }
  /// True when scheduled refreshes re-orthonormalise P.
  bool reorthonormalize() const { return m_reortho; }
  /// Number of online updates taken so far.
  Index updates() const { return m_t; }

  /// First call: P from a truncated SVD of G. Later (scheduled) calls: re-orthonormalise P when
  /// enabled, otherwise keep it (the basis moves by `track`).
  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t, Matrix* transition) {
    if (this->hasBasis()) {
      if (!m_reortho) {
        RefreshResult res;
        res.ok = true;
        if (transition) transition->setIdentity(rank, rank);
        res.overlap = 1.0;
        return res;
      }
      Matrix cand = this->m_p;
      orthonormalizeInPlace(cand);
      if (!cand.allFinite()) return RefreshResult{};
      return this->commit(cand, transition);
    }
    if (!allFinite(g)) return RefreshResult{};
    TruncatedSVD<Matrix> svd;
    svd.setRank(rank).compute(g);
    if (svd.info() != Eigen::Success) return RefreshResult{};
    Matrix cand = side == Side::Left ? svd.matrixU() : svd.matrixV();
    if (cand.cols() != rank || !cand.allFinite()) return RefreshResult{};
    const RefreshResult res = this->commit(cand, transition);
    // Size the buffers of `track` now: the first track (next step) then allocates nothing.
    reserve(side == Side::Right ? g.rows() : g.cols());
    return res;
  }

  /// One online-PCA step on P from the gradient G with learning rate (lrRatio/T), see the class comment.
  template <typename DG>
  void track(const Eigen::MatrixBase<DG>& g, Side side, double baseLr) {
    const double norm = double(g.norm());
    if (!(norm > 0) || !std::isfinite(norm)) return;
    const Scalar s = Scalar(1.0 / norm);
    if (side == Side::Right)
      gradient(g.derived(), s);
    else
      gradient(g.derived().transpose(), s);
    const Scalar lr = Scalar(baseLr * m_mult);
    ++m_t;
    if (m_rule == OnlinePCARule::Sgd) {
      this->m_p.noalias() -= lr * m_grad;
    } else {
      const Scalar b1 = Scalar(0.9), b2 = Scalar(0.999), eps = Scalar(1e-8);
      m_m.array() = b1 * m_m.array() + (Scalar(1) - b1) * m_grad.array();
      m_v.array() = b2 * m_v.array() + (Scalar(1) - b2) * m_grad.array().square();
      const Scalar c1 = Scalar(1.0 - std::pow(0.9, double(m_t))), c2 = Scalar(1.0 - std::pow(0.999, double(m_t)));
      this->m_p.array() -= lr * (m_m.array() / c1) / ((m_v.array() / c2).sqrt() + eps);
    }
  }

  /// ∇L at the current P (ambient×r), computed by the last `track` call.
  const Matrix& lastGradient() const { return m_grad; }

  /// Persistent state: P and the two moment matrices of its optimizer (allocated by the first
  /// `track`).
  std::size_t stateBytes() const { return Base::stateBytes() + std::size_t(m_m.size() + m_v.size()) * sizeof(Scalar); }
  /// Bytes of the buffers of the online-PCA gradient (A = X P, C, ∇L and two r×r products).
  std::size_t workspaceBytes() const { return std::size_t(m_a.size() + m_c.size() + m_grad.size() + 2 * m_k.size()) * sizeof(Scalar); }

  /// Writes the tag, the knobs, the update count, P and its moments.
  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::int32_t>(os, std::int32_t(m_rule));
    ckpt::writePod<double>(os, m_mult);
    ckpt::writePod<std::uint8_t>(os, m_reortho ? 1 : 0);
    ckpt::writePod<std::int64_t>(os, m_t);
    this->saveDenseWithFlag(os);
    ckpt::writeMatrix(os, m_m);
    ckpt::writeMatrix(os, m_v);
  }
  /// Restores a basis written by `save` (P ambient×rank); throws `IoError` on malformed data or when
  /// a knob (rule, multiplier, re-orthonormalisation) differs from this object's.
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    const auto rule = ckpt::readBounded<std::int32_t>(is, "online PCA rule", 0, 1);
    const double mult = ckpt::readPod<double>(is, "online PCA lr multiplier");
    if (!(mult > 0 && std::isfinite(mult))) throw IoError("checkpoint: online PCA lr multiplier must be > 0");
    const bool reortho = ckpt::readBounded<std::uint8_t>(is, "reorthonormalize flag", 0, 1) != 0;
    ckpt::expectSetting(kName, "rule", std::string(rule == 0 ? "Adam" : "Sgd"), std::string(m_rule == OnlinePCARule::Adam ? "Adam" : "Sgd"));
    ckpt::expectSetting(kName, "learningRateMultiplier", mult, m_mult);
    ckpt::expectSetting(kName, "reorthonormalize", reortho, m_reortho);
    m_t = ckpt::readBounded<std::int64_t>(is, "online PCA step", 0, std::numeric_limits<std::int64_t>::max());
    this->loadDense(is, ambient, rank);
    Matrix m = ckpt::readMatrix<Scalar>(is, "online PCA first moment");
    Matrix v = ckpt::readMatrix<Scalar>(is, "online PCA second moment", m.rows(), m.cols());
    if (m.size() > 0 && (m.rows() != ambient || m.cols() != rank)) throw IoError("checkpoint: online PCA moments have the wrong shape");
    m_m.swap(m);
    m_v.swap(v);
    m_a.resize(0, 0);  // workspaces are re-sized on the next step
  }

 private:
  // ∇L for the right-side form with data X (rows×ambient): A = sXP, C = A(PᵀP − 2I), ∇ = 2(P AᵀA + sXᵀC).
  template <typename X>
  void gradient(const X& x, Scalar s) {
    const Matrix& p = this->m_p;
    reserve(x.rows());
    // Products into the preallocated buffers through gemmInto: no allocation once warmed up.
    detail::gemmInto(x, p, s, false, m_a);
    detail::gemmInto(p.transpose(), p, Scalar(1), false, m_k);
    m_k.diagonal().array() -= Scalar(2);
    detail::gemmInto(m_a.transpose(), m_a, Scalar(1), false, m_ata);
    detail::gemmInto(m_a, m_k, Scalar(1), false, m_c);
    detail::gemmInto(p, m_ata, Scalar(2), false, m_grad);
    detail::gemmInto(x.transpose(), m_c, Scalar(2) * s, true, m_grad);
  }

  // Sizes the workspaces of `gradient` for data X with `rows` rows (and the Adam moments of P).
  void reserve(Index rows) {
    const Matrix& p = this->m_p;
    const Index r = p.cols();
    if (m_a.rows() != rows || m_a.cols() != r) {
      m_a.resize(rows, r);
      m_c.resize(rows, r);
      m_grad.resize(p.rows(), r);
      m_k.resize(r, r);
      m_ata.resize(r, r);
    }
    if (m_m.rows() != p.rows() || m_m.cols() != r) {
      m_m.setZero(p.rows(), r);
      m_v.setZero(p.rows(), r);
    }
    // The packing scratch of the six products of `gradient` (X rows×a, P a×r).
    const Index a = p.rows();
    for (const auto& d : {std::array<Index, 3>{rows, r, a}, {r, r, a}, {r, r, rows}, {rows, r, r}, {a, r, r}, {a, r, rows}})
      detail::reserveGemm<Scalar>(d[0], d[1], d[2]);
  }

  OnlinePCARule m_rule = OnlinePCARule::Adam;
  double m_mult = 1.0;
  bool m_reortho = false;
  Index m_t = 0;
  Matrix m_m, m_v;
  Matrix m_a, m_c, m_grad, m_k, m_ata;
};

// Names before 0.2.0 (see the naming rule in docs/index.md); they will be removed in 1.0.
template <typename Scalar_>
using OnlinePcaBasis [[deprecated("renamed wproj::OnlinePCABasis")]] = OnlinePCABasis<Scalar_>;
using OnlinePcaRule [[deprecated("renamed wproj::OnlinePCARule")]] = OnlinePCARule;

}  // namespace wproj
