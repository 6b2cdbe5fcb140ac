// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// COAP's correlation-aware projection (Xiao et al. 2025, "COAP: Memory-Efficient Training with
/// Correlation-Aware Gradient Projection").

#include "basis.hpp"
#include "../core/random.hpp"
#include "../linalg/orthonormalize.hpp"
#include "../linalg/truncated_svd.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace wproj {

/// COAP's basis. Written for the right side (P n×r, R = G P; the left side runs the same code on
/// Gᵀ):
///
/// - **Refresh** (the projector's gap; COAP uses update_interval × reproject_factor = 32 × 5 =
///   160): a range finder warm-started at the old basis, Y = G·P_old (the first refresh: a seeded
///   Gaussian n×r), Q = orth(Y), B = QᵀG (r×n), P = the right singular vectors of B.
/// - **Cheap update** every `updateInterval` steps between refreshes (default 32): one gradient
///   step P ← P − η·clip₁(∇L) on COAP's loss
///   L(P) = MSE(G P Pᵀ, G) · (1 − mean_i cos(X_i, G_i)),  X = M̃ Pᵀ,
///   the reconstruction error times one minus the mean row cosine between the back-projected
///   moment and the gradient; clip₁ rescales ∇L to Frobenius norm ≤ 1, η = 0.1 (upstream
///   defaults). The basis protocol does not see the optimizer's moment, so M̃ is the current
///   projected gradient G P (held constant in ∇L, as upstream holds the moment).
///   ∇L is formed from products with r columns only (G P and Gᵀ Z): no m×n temporary.
///   By default P is re-orthonormalised after the step (`setReorthonormalize`; upstream does not).
///
/// Knobs: `setUpdateInterval` (32), `setProjectionLearningRate` (0.1), `setReorthonormalize`
/// (true), `setSeed` (3407, upstream's seed of the first sketch). State: P and the step count
/// since the last refresh.
template <typename Scalar_>
class COAPBasis : public detail::DenseBasisStorage<Scalar_> {
  using Base = detail::DenseBasisStorage<Scalar_>;

 public:
  /// Floating-point type of the basis.
  using Scalar = Scalar_;
  /// Dense matrix type of P and the transitions.
  using Matrix = typename Base::Matrix;
  /// Tag of this policy in checkpoints.
  static constexpr const char* kName = "COAPBasis";
  /// True: the basis takes its cheap update from `track`.
  static constexpr bool kTracksSteps = true;

  /// Steps between cheap updates (≥ 1; default 32).
  COAPBasis& setUpdateInterval(Index k) {
    requireArg(k >= 1, "COAPBasis::setUpdateInterval", "k", k, ">= 1");
    m_interval = k;
    return *this;
  }
  /// Step size η of the cheap update (finite, > 0; default 0.1).
  COAPBasis& setProjectionLearningRate(double eta) {
    requireArg(eta > 0 && std::isfinite(eta), "COAPBasis::setProjectionLearningRate", "eta", eta, "finite and > 0");
    m_eta = eta;
    return *this;
  }
  /// Re-orthonormalise P after every cheap update (default true).
  COAPBasis& setReorthonormalize(bool on) {
    m_reortho = on;
    return *this;
  }
  /// Seed of the first refresh's Gaussian sketch (default 3407).
  COAPBasis& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }
  /// Steps between cheap updates.
  Index updateInterval() const { return m_interval; }
  /// Step size of the cheap update.
  double projectionLearningRate() const { return m_eta; }
  /// True when P is re-orthonormalised after a cheap update.
  bool reorthonormalize() const { return m_reortho; }
  /// Seed of the first sketch.
  std::uint64_t seed() const { return m_seed; }
  /// Steps tracked since the last refresh.
  Index stepsSinceRefresh() const { return m_since; }
  /// Cheap updates taken so far.
  Index cheapUpdates() const { return m_updates; }

  /// Warm-started range finder (Gaussian sketch the first time); a non-finite G or result keeps
  /// the previous basis.
  template <typename DG>
  RefreshResult refresh(const Eigen::MatrixBase<DG>& g, Side side, Index rank, std::uint64_t, Matrix* transition) {
    if (!allFinite(g)) return RefreshResult{};
    Matrix cand;
    if (side == Side::Right)
      rangeFinder(g.derived(), rank, cand);
    else
      rangeFinder(g.derived().transpose(), rank, cand);
    const RefreshResult res = this->commitIfValid(cand, rank, transition);
    if (res.ok) m_since = 0;
    return res;
  }

  /// Counts the step; every `updateInterval` steps since the last refresh takes the cheap update
  /// from G (the learning-rate ratio is not used: COAP's η is constant).
  template <typename DG>
  void track(const Eigen::MatrixBase<DG>& g, Side side, double) {
    ++m_since;
    if (m_since % m_interval != 0 || !this->hasBasis() || !g.allFinite()) return;
    if (side == Side::Right)
      cheapUpdate(g.derived());
    else
      cheapUpdate(g.derived().transpose());
    ++m_updates;
  }

  /// One cheap update from G now (ignores the interval); for tests and manual schedules.
  template <typename DG>
  void cheapUpdateNow(const Eigen::MatrixBase<DG>& g, Side side) {
    if (side == Side::Right)
      cheapUpdate(g.derived());
    else
      cheapUpdate(g.derived().transpose());
    ++m_updates;
  }

  /// COAP's loss L(P) at the last cheap update (NaN before the first).
  double lastLoss() const { return m_loss; }

  /// Persistent state: P (the counters are a few bytes).
  std::size_t stateBytes() const { return Base::stateBytes(); }
  /// Bytes of the cheap update's buffers (G P, Gᵀ Z, ∇L and an r×r Gram).
  std::size_t workspaceBytes() const { return std::size_t(m_a.size() + m_z.size() + m_grad.size() + m_s.size()) * sizeof(Scalar); }

  /// Writes the tag, the knobs, the counters and P.
  void save(std::ostream& os) const {
    ckpt::writeTag(os, kName);
    ckpt::writePod<std::int64_t>(os, m_interval);
    ckpt::writePod<double>(os, m_eta);
    ckpt::writePod<std::uint8_t>(os, m_reortho ? 1 : 0);
    ckpt::writePod<std::uint64_t>(os, m_seed);
    ckpt::writePod<std::int64_t>(os, m_since);
    ckpt::writePod<std::int64_t>(os, m_updates);
    this->saveDenseWithFlag(os);
  }
  /// Restores a basis written by `save` (P ambient×rank); throws `IoError` on malformed data or
  /// when a knob differs from this object's.
  void load(std::istream& is, Index ambient, Index rank) {
    ckpt::expectTag(is, kName);
    const auto interval = ckpt::readBounded<std::int64_t>(is, "COAP update interval", 1, std::numeric_limits<std::int64_t>::max());
    const double eta = ckpt::readPod<double>(is, "COAP projection learning rate");
    const bool reortho = ckpt::readBounded<std::uint8_t>(is, "COAP reorthonormalize flag", 0, 1) != 0;
    const auto seed = ckpt::readPod<std::uint64_t>(is, "COAP seed");
    ckpt::expectSetting(kName, "updateInterval", std::int64_t(interval), std::int64_t(m_interval));
    ckpt::expectSetting(kName, "projectionLearningRate", eta, m_eta);
    ckpt::expectSetting(kName, "reorthonormalize", reortho, m_reortho);
    ckpt::expectSetting(kName, "seed", seed, m_seed);
    const auto since = ckpt::readBounded<std::int64_t>(is, "COAP steps since refresh", 0, std::numeric_limits<std::int64_t>::max());
    const auto updates = ckpt::readBounded<std::int64_t>(is, "COAP cheap updates", 0, std::numeric_limits<std::int64_t>::max());
    this->loadDense(is, ambient, rank);
    m_since = since;
    m_updates = updates;
  }

 private:
  // Right-side range finder on X (rows×ambient): Y = X·Ω (Ω = P_old or a seeded Gaussian),
  // Q = orth(Y), B = QᵀX, P = V of B's SVD.
  template <typename X>
  void rangeFinder(const X& x, Index rank, Matrix& out) const {
    const Index ambient = x.cols();
    Matrix y;
    if (this->hasBasis() && this->m_p.rows() == ambient && this->m_p.cols() == rank)
      y.noalias() = x * this->m_p;
    else
      y.noalias() = x * gaussianMatrix<Matrix>(ambient, rank, m_seed);
    if (y.rows() < rank) {  // fewer samples than the rank: the sketch is X itself
      TruncatedSVD<Matrix> svd;
      svd.setRank(rank).compute(x);
      if (svd.info() != Eigen::Success) return;
      out = svd.matrixV();
      return;
    }
    if (!y.allFinite()) return;
    orthonormalizeInPlace(y);
    const Matrix b = y.transpose() * x;  // r×ambient
    TruncatedSVD<Matrix> svd;
    svd.setRank(rank).compute(b);
    if (svd.info() != Eigen::Success) return;
    out = svd.matrixV();
  }

  // One step on COAP's loss for the right-side form with data X (rows×ambient), P = Q (ambient×r):
  //   A = X Q, S = QᵀQ, M̃ = A (constant), mse = ‖A Qᵀ − X‖²/(mn)
  //   ∇mse = (2/(mn))·(Xᵀ A (S − 2I) + Q AᵀA)
  //   c_i = ⟨M̃_i, A_i⟩/(x_i g_i), x_i = √(M̃_i S M̃_iᵀ), g_i = ‖X_i‖
  //   ∇c̄ = (1/m)·(Xᵀ diag(1/(x g)) M̃ − Q M̃ᵀ diag(c/x²) M̃)
  //   ∇L = (1 − c̄)∇mse − mse·∇c̄ = Xᵀ Z + Q K with Z, K as below.
  template <typename X>
  void cheapUpdate(const X& x) {
    Matrix& q = this->m_p;
    const Index m = x.rows(), n = x.cols(), r = q.cols();
    m_a.noalias() = x * q;
    m_s.noalias() = q.transpose() * q;
    const Matrix ata = m_a.transpose() * m_a;
    const double total = double(m) * double(n);
    // ‖A Qᵀ − X‖² = ‖X‖² − 2 tr(AᵀA) + tr(AᵀA S), in double.
    const double err = gsTotal(x) - 2.0 * double(ata.trace()) + double((ata.cwiseProduct(m_s)).sum());
    const double mse = std::max(0.0, err) / total;
    // Row cosines with M̃ = A: d_i = ‖A_i‖², x_i² = A_i S A_iᵀ, g_i² = ‖X_i‖² (column sweeps).
    const Matrix as = m_a * m_s;
    Eigen::Matrix<double, Eigen::Dynamic, 1> dd = Eigen::Matrix<double, Eigen::Dynamic, 1>::Zero(m), xs = dd, gs = dd;
    for (Index j = 0; j < r; ++j) {
      dd += m_a.col(j).template cast<double>().cwiseAbs2();
      xs += as.col(j).template cast<double>().cwiseProduct(m_a.col(j).template cast<double>());
    }
    for (Index j = 0; j < n; ++j) gs += x.col(j).template cast<double>().cwiseAbs2();
    Eigen::Matrix<double, Eigen::Dynamic, 1> wx(m), wq(m);
    double cbar = 0;
    for (Index i = 0; i < m; ++i) {
      const double xn = std::sqrt(std::max(0.0, xs(i)));
      const double den = std::max(xn * std::sqrt(gs(i)), 1e-8);
      const double c = dd(i) / den;
      cbar += c;
      wx(i) = 1.0 / den;                     // weight of M̃_i in Xᵀ diag(·) M̃
      wq(i) = xn > 0 ? c / (xn * xn) : 0.0;  // weight of M̃_i in M̃ᵀ diag(·) M̃
    }
    cbar /= double(m);
    const double f1 = (1.0 - cbar) * 2.0 / total, f2 = -mse / double(m);
    // Z = f1·A(S − 2I) + f2·diag(wx)·A ; K = f1·AᵀA − f2·Aᵀ diag(wq) A.
    m_z = Scalar(f1) * (as - Scalar(2) * m_a);
    m_z.noalias() += (Scalar(f2) * wx.template cast<Scalar>()).asDiagonal() * m_a;
    Matrix k = Scalar(f1) * ata;
    const Matrix aw = wq.template cast<Scalar>().asDiagonal() * m_a;
    k.noalias() -= Scalar(f2) * (m_a.transpose() * aw);
    m_grad.noalias() = x.transpose() * m_z;
    m_grad.noalias() += q * k;
    m_loss = mse * (1.0 - cbar);
    // clip_grad_norm_(max_norm = 1): scale by 1/(‖∇‖ + 1e-6) when that is below 1.
    const double gnorm = double(m_grad.norm());
    const double coef = 1.0 / (gnorm + 1e-6);
    if (coef < 1.0) m_grad *= Scalar(coef);
    Matrix cand = q - Scalar(m_eta) * m_grad;
    if (!cand.allFinite()) return;
    if (m_reortho) orthonormalizeInPlace(cand);
    if (cand.allFinite()) q.swap(cand);
    (void)r;
  }

  // ‖X‖²_F in double, column by column.
  template <typename X>
  static double gsTotal(const X& x) {
    double s = 0;
    for (Index j = 0; j < x.cols(); ++j) s += x.col(j).template cast<double>().squaredNorm();
    return s;
  }

  Index m_interval = 32;
  double m_eta = 0.1;
  bool m_reortho = true;
  std::uint64_t m_seed = 3407;
  Index m_since = 0, m_updates = 0;
  double m_loss = std::numeric_limits<double>::quiet_NaN();
  Matrix m_a, m_z, m_grad, m_s;
};

}  // namespace wproj
