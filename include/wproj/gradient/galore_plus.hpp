// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// GaLore+ (Liao et al. 2024, "GaLore+: Boosting Low-Rank Adaptation for LLMs with Cross-Head
/// Projection"): (a) one low-rank projection shared by the attention heads of a layer, from the
/// randomized range finder on the heads' stacked gradients (`CrossHeadProjector`); (b) a sparsely
/// coded residual: the s largest entries of G − P·PᵀG carry Adam moments of their own and their
/// step is added to the projected update (`GaLorePlusAdamW`).

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "../linalg/randomized_svd.hpp"
#include "persistence.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace wproj {

/// One rank-r basis shared by H same-shaped gradient blocks G_1 … G_H (the per-head blocks of a
/// layer's Q, K or V). `Side::Right`: the blocks are stacked by rows, [G_1; …; G_H] (H·m × n), and
/// its top-r right singular vectors V (n×r) project every head, G_h·V (m×r). `Side::Left`: the
/// blocks are stacked by columns, [G_1, …, G_H] (m × H·n), and its left singular vectors U (m×r)
/// project every head, UᵀG_h (r×n). The basis comes from `RandomizedSVD` (randomized subspace
/// iteration, GaLore+'s fast SVD); state is one basis instead of one per head.
template <typename Scalar_>
class CrossHeadProjector {
 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  /// Rank r (≥ 1; at most the shared dimension). Default 32.
  CrossHeadProjector& setRank(Index r) {
    requireArg(r >= 1, "CrossHeadProjector::setRank", "r", r, ">= 1");
    m_rank = r;
    return *this;
  }
  /// Which side the heads share (default Right: heads are row blocks of one weight).
  CrossHeadProjector& setSide(Side s) {
    m_side = s;
    return *this;
  }
  /// Power iterations of the range finder (≥ 0). Default 2.
  CrossHeadProjector& setPowerIterations(Index q) {
    requireArg(q >= 0, "CrossHeadProjector::setPowerIterations", "q", q, ">= 0");
    m_power = q;
    return *this;
  }
  /// Oversampling of the range finder (≥ 0). Default 8.
  CrossHeadProjector& setOversampling(Index p) {
    requireArg(p >= 0, "CrossHeadProjector::setOversampling", "p", p, ">= 0");
    m_oversampling = p;
    return *this;
  }
  /// Seed of the range finder.
  CrossHeadProjector& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }

  /// Computes the shared basis from the heads' gradients (≥ 1 block, all one shape, finite).
  CrossHeadProjector& compute(const std::vector<Matrix>& heads) {
    const char* where = "CrossHeadProjector::compute";
    requireArg(!heads.empty(), where, "heads.size()", heads.size(), ">= 1");
    const Index m = heads[0].rows(), n = heads[0].cols(), h = Index(heads.size());
    for (std::size_t i = 0; i < heads.size(); ++i) {
      requireArg(heads[i].rows() == m && heads[i].cols() == n, where, "heads[i] shape",
                 detail::shapeString(heads[i].rows(), heads[i].cols()), detail::shapeString(m, n) + " (heads[0])");
      checkFinite(heads[i], where, "heads[i]");
    }
    const Index shared = m_side == Side::Right ? n : m;
    const Index other = m_side == Side::Right ? h * m : h * n;
    requireArg(m_rank <= std::min(shared, other), where, "rank", m_rank,
               "<= min of the stacked shape = " + std::to_string(std::min(shared, other)));
    Matrix stacked(m_side == Side::Right ? h * m : m, m_side == Side::Right ? n : h * n);
    for (Index i = 0; i < h; ++i) {
      if (m_side == Side::Right) stacked.middleRows(i * m, m) = heads[std::size_t(i)];
      else stacked.middleCols(i * n, n) = heads[std::size_t(i)];
    }
    RandomizedSVD<Matrix> svd;
    svd.setRank(m_rank)
        .setOversampling(std::min<Index>(m_oversampling, std::min(shared, other) - m_rank))
        .setPowerIterations(m_power)
        .setSeed(m_seed)
        .setErrorProbes(0);
    svd.compute(stacked);
    m_info = svd.info();
    m_basis = m_side == Side::Right ? Matrix(svd.matrixV().leftCols(m_rank)) : Matrix(svd.matrixU().leftCols(m_rank));
    m_rows = m;
    m_cols = n;
    return *this;
  }

  /// The shared basis (n×r for Right, m×r for Left; orthonormal columns).
  const Matrix& basis() const { return m_basis; }
  Side side() const { return m_side; }
  Eigen::ComputationInfo info() const { return m_info; }
  /// Projects one head: G·V (m×r) or UᵀG (r×n).
  Matrix project(const Matrix& g) const {
    checkHead(g, "CrossHeadProjector::project");
    return m_side == Side::Right ? Matrix(g * m_basis) : Matrix(m_basis.transpose() * g);
  }
  /// Maps a low-rank head update back: N·Vᵀ or U·N (m×n).
  Matrix projectBack(const Matrix& n) const {
    requireArg(m_basis.size() > 0, "CrossHeadProjector::projectBack", "basis", "none", "compute() first");
    return m_side == Side::Right ? Matrix(n * m_basis.transpose()) : Matrix(m_basis * n);
  }

 private:
  void checkHead(const Matrix& g, const char* where) const {
    requireArg(m_basis.size() > 0, where, "basis", "none", "compute() first");
    requireArg(g.rows() == m_rows && g.cols() == m_cols, where, "head shape", detail::shapeString(g.rows(), g.cols()),
               detail::shapeString(m_rows, m_cols));
  }
  Index m_rank = 32, m_power = 2, m_oversampling = 8, m_rows = 0, m_cols = 0;
  Side m_side = Side::Right;
  std::uint64_t m_seed = 0;
  Matrix m_basis;
  Eigen::ComputationInfo m_info = Eigen::Success;
};

/// GaLore's projected AdamW for one weight matrix with GaLore+'s sparsely coded residual.
///
/// Per step t (from 0), with gradient G (m×n), basis P (orthonormal, r columns, on the smaller
/// dimension as GaLore's `std`: right if m ≥ n) refreshed by `RandomizedSVD` at t % T == 0:
///   R = G·P (or PᵀG);  M ← β₁M + (1−β₁)R;  V ← β₂V + (1−β₂)R²;  N = M / (√V + ε)
///   E = G − back(R) (the low-rank residual); at refresh steps the support S = the s entries of
///   largest |E| is chosen (entries that stay in S keep their residual moments, new ones start
///   at 0); every step on S:
///   m_S ← β₁m_S + (1−β₁)E_S;  v_S ← β₂v_S + (1−β₂)E_S²;  e_S = m_S / (√v_S + ε)
///   W ← W − η_t·α·(back(N) + scatter_S(e_S)) − η·λ·W,   η_t = η·√(1−β₂ᵗ⁺¹)/(1−β₁ᵗ⁺¹).
/// With s = 0 this is GaLore's AdamW (the moments are kept across refreshes, as galore_torch).
template <typename Scalar_>
class GaLorePlusAdamW {
 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  GaLorePlusAdamW& setRank(Index r) {
    requireArg(r >= 1, "GaLorePlusAdamW::setRank", "r", r, ">= 1");
    m_rank = r;
    return *this;
  }
  /// Refresh gap T (≥ 1). Default 200.
  GaLorePlusAdamW& setUpdateGap(Index t) {
    requireArg(t >= 1, "GaLorePlusAdamW::setUpdateGap", "t", t, ">= 1");
    m_gap = t;
    return *this;
  }
  /// GaLore's scale α (finite, > 0). Default 0.25.
  GaLorePlusAdamW& setScale(double a) {
    requireArg(std::isfinite(a) && a > 0, "GaLorePlusAdamW::setScale", "alpha", a, "a finite value > 0");
    m_alpha = a;
    return *this;
  }
  /// Learning rate η (finite, > 0). Default 1e-3.
  GaLorePlusAdamW& setLearningRate(double lr) {
    requireArg(std::isfinite(lr) && lr > 0, "GaLorePlusAdamW::setLearningRate", "lr", lr, "a finite value > 0");
    m_lr = lr;
    return *this;
  }
  /// β₁, β₂ in [0, 1). Defaults 0.9, 0.999.
  GaLorePlusAdamW& setBetas(double b1, double b2) {
    requireArg(b1 >= 0 && b1 < 1, "GaLorePlusAdamW::setBetas", "beta1", b1, "in [0, 1)");
    requireArg(b2 >= 0 && b2 < 1, "GaLorePlusAdamW::setBetas", "beta2", b2, "in [0, 1)");
    m_b1 = b1;
    m_b2 = b2;
    return *this;
  }
  /// ε (finite, > 0). Default 1e-6 (galore_torch).
  GaLorePlusAdamW& setEpsilon(double e) {
    requireArg(std::isfinite(e) && e > 0, "GaLorePlusAdamW::setEpsilon", "eps", e, "a finite value > 0");
    m_eps = e;
    return *this;
  }
  /// Decoupled weight decay λ (finite, ≥ 0). Default 0.
  GaLorePlusAdamW& setWeightDecay(double wd) {
    requireArg(std::isfinite(wd) && wd >= 0, "GaLorePlusAdamW::setWeightDecay", "wd", wd, "a finite value >= 0");
    m_wd = wd;
    return *this;
  }
  /// Share of entries in the residual support, s = ⌈ρ·m·n⌉ (ρ in [0, 1]). Default 0.01; 0 is GaLore.
  GaLorePlusAdamW& setResidualDensity(double rho) {
    requireArg(rho >= 0 && rho <= 1, "GaLorePlusAdamW::setResidualDensity", "rho", rho, "in [0, 1]");
    m_density = rho;
    return *this;
  }
  /// Power iterations of the randomized SVD (≥ 0). Default 2.
  GaLorePlusAdamW& setPowerIterations(Index q) {
    requireArg(q >= 0, "GaLorePlusAdamW::setPowerIterations", "q", q, ">= 0");
    m_power = q;
    return *this;
  }
  GaLorePlusAdamW& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }

  /// One step on W (m×n) with gradient G (same shape, finite).
  template <typename DW, typename DG>
  void step(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DG>& gIn) {
    const char* where = "GaLorePlusAdamW::step";
    requireArg(w.rows() == gIn.rows() && w.cols() == gIn.cols(), where, "gradient shape",
               detail::shapeString(gIn.rows(), gIn.cols()), detail::shapeString(w.rows(), w.cols()) + " (the weight's)");
    checkFinite(gIn, where, "gradient");
    const Matrix g = gIn;
    const Index m = g.rows(), n = g.cols();
    if (m_step == 0) {
      requireArg(m_rank <= std::min(m, n), where, "rank", m_rank, "<= min(m, n) = " + std::to_string(std::min(m, n)));
      m_right = m >= n;
      m_rows = m;
      m_cols = n;
    } else {
      requireArg(m == m_rows && n == m_cols, where, "gradient shape", detail::shapeString(m, n),
                 detail::shapeString(m_rows, m_cols) + " (the first step's)");
    }
    const bool refresh = m_step % m_gap == 0;
    if (refresh) refreshBasis(g);
    const Matrix r = m_right ? Matrix(g * m_p) : Matrix(m_p.transpose() * g);
    if (m_m.size() == 0) {
      m_m = Matrix::Zero(r.rows(), r.cols());
      m_v = Matrix::Zero(r.rows(), r.cols());
    }
    const Scalar b1 = Scalar(m_b1), b2 = Scalar(m_b2);
    m_m = b1 * m_m + (Scalar(1) - b1) * r;
    m_v = b2 * m_v + (Scalar(1) - b2) * r.cwiseAbs2();
    const Matrix nrm = m_m.array() / (m_v.array().sqrt() + Scalar(m_eps));
    const double t1 = double(m_step + 1);
    const double stepSize = m_lr * std::sqrt(1.0 - std::pow(m_b2, t1)) / (1.0 - std::pow(m_b1, t1));
    Matrix update = m_right ? Matrix(nrm * m_p.transpose()) : Matrix(m_p * nrm);
    const Index s = supportSize(m, n);
    if (s > 0) {
      const Matrix e = g - (m_right ? Matrix(r * m_p.transpose()) : Matrix(m_p * r));
      if (refresh) selectSupport(e, s);
      for (Index k = 0; k < Index(m_support.size()); ++k) {
        const Index idx = m_support[std::size_t(k)];
        const Scalar ek = e(idx % m, idx / m);
        m_rm(k) = b1 * m_rm(k) + (Scalar(1) - b1) * ek;
        m_rv(k) = b2 * m_rv(k) + (Scalar(1) - b2) * ek * ek;
        update(idx % m, idx / m) += m_rm(k) / (std::sqrt(m_rv(k)) + Scalar(m_eps));
      }
    }
    if (m_wd > 0) w.derived() *= Scalar(1.0 - m_lr * m_wd);
    w.derived() -= Scalar(stepSize * m_alpha) * update;
    ++m_step;
  }

  /// The number of residual entries s for an m×n weight.
  Index supportSize(Index m, Index n) const {
    return m_density <= 0 ? 0 : std::min<Index>(m * n, Index(std::ceil(m_density * double(m) * double(n))));
  }
  /// The current basis P (orthonormal columns).
  const Matrix& basis() const { return m_p; }
  /// Column-major linear indices of the residual support (sorted).
  const std::vector<Index>& support() const { return m_support; }
  std::int64_t stepCount() const { return m_step; }

  /// Writes the whole state (settings, step, basis, moments, support, residual moments).
  void save(std::ostream& os) const {
    ckpt::writeTag(os, "GaLorePlusAdamW");
    for (Index v : {m_rank, m_gap, m_power, m_rows, m_cols, Index(m_step)}) ckpt::writePod<std::int64_t>(os, v);
    for (double v : {m_alpha, m_lr, m_b1, m_b2, m_eps, m_wd, m_density}) ckpt::writePod<double>(os, v);
    ckpt::writePod<std::uint64_t>(os, m_seed);
    ckpt::writePod<std::uint8_t>(os, m_right ? 1 : 0);
    ckpt::writeMatrix(os, m_p);
    ckpt::writeMatrix(os, m_m);
    ckpt::writeMatrix(os, m_v);
    std::vector<std::int64_t> sup(m_support.begin(), m_support.end());
    ckpt::writeVector(os, sup);
    ckpt::writeMatrix(os, m_rm);
    ckpt::writeMatrix(os, m_rv);
  }
  /// Restores a state written by `save` (throws `IoError` on malformed data; unchanged then).
  void load(std::istream& is) {
    ckpt::expectTag(is, "GaLorePlusAdamW");
    GaLorePlusAdamW o;
    const std::int64_t big = ckpt::kMaxExtent, huge = std::numeric_limits<std::int64_t>::max();
    o.m_rank = ckpt::readBounded<std::int64_t>(is, "rank", 1, big);
    o.m_gap = ckpt::readBounded<std::int64_t>(is, "update gap", 1, huge);
    o.m_power = ckpt::readBounded<std::int64_t>(is, "power iterations", 0, big);
    o.m_rows = ckpt::readBounded<std::int64_t>(is, "rows", 0, big);
    o.m_cols = ckpt::readBounded<std::int64_t>(is, "cols", 0, big);
    o.m_step = ckpt::readBounded<std::int64_t>(is, "step", 0, huge);
    double* d[] = {&o.m_alpha, &o.m_lr, &o.m_b1, &o.m_b2, &o.m_eps, &o.m_wd, &o.m_density};
    for (double* p : d) *p = ckpt::readPod<double>(is, "setting");
    o.m_seed = ckpt::readPod<std::uint64_t>(is, "seed");
    o.m_right = ckpt::readBounded<std::uint8_t>(is, "side", 0, 1) != 0;
    o.m_p = ckpt::readMatrix<Scalar>(is, "basis");
    o.m_m = ckpt::readMatrix<Scalar>(is, "first moment");
    o.m_v = ckpt::readMatrix<Scalar>(is, "second moment");
    const auto sup = ckpt::readVector<std::int64_t>(is, "support");
    o.m_support.assign(sup.begin(), sup.end());
    for (Index idx : o.m_support)
      if (idx < 0 || idx >= o.m_rows * o.m_cols) throw IoError("checkpoint: GaLorePlusAdamW support index out of range");
    o.m_rm = ckpt::readMatrix<Scalar>(is, "residual first moment", Index(sup.size()), 1);
    o.m_rv = ckpt::readMatrix<Scalar>(is, "residual second moment", Index(sup.size()), 1);
    *this = std::move(o);
  }

 private:
  void refreshBasis(const Matrix& g) {
    RandomizedSVD<Matrix> svd;
    const Index mn = std::min(g.rows(), g.cols());
    svd.setRank(m_rank)
        .setOversampling(std::min<Index>(8, mn - m_rank))
        .setPowerIterations(m_power)
        .setSeed(m_seed + std::uint64_t(m_step))
        .setErrorProbes(0);
    svd.compute(g);
    if (svd.info() != Eigen::Success && m_p.size() > 0) return;  // keep the previous basis
    m_p = m_right ? Matrix(svd.matrixV().leftCols(m_rank)) : Matrix(svd.matrixU().leftCols(m_rank));
  }
  void selectSupport(const Matrix& e, Index s) {
    std::vector<Index> idx(std::size_t(e.size()));
    std::iota(idx.begin(), idx.end(), Index(0));
    const Scalar* p = e.data();
    std::nth_element(idx.begin(), idx.begin() + (s - 1), idx.end(), [p](Index a, Index b) {
      const Scalar x = std::abs(p[a]), y = std::abs(p[b]);
      return x > y || (x == y && a < b);
    });
    idx.resize(std::size_t(s));
    std::sort(idx.begin(), idx.end());
    // Entries that stay in the support keep their moments; new ones start from 0.
    Vector rm = Vector::Zero(s), rv = Vector::Zero(s);
    std::size_t j = 0;
    for (std::size_t k = 0; k < idx.size(); ++k) {
      while (j < m_support.size() && m_support[j] < idx[k]) ++j;
      if (j < m_support.size() && m_support[j] == idx[k]) {
        rm(Index(k)) = m_rm(Index(j));
        rv(Index(k)) = m_rv(Index(j));
      }
    }
    m_support = idx;
    m_rm = rm;
    m_rv = rv;
  }

  Index m_rank = 128, m_gap = 200, m_power = 2, m_rows = 0, m_cols = 0;
  std::int64_t m_step = 0;
  double m_alpha = 0.25, m_lr = 1e-3, m_b1 = 0.9, m_b2 = 0.999, m_eps = 1e-6, m_wd = 0.0, m_density = 0.01;
  std::uint64_t m_seed = 0;
  bool m_right = true;
  Matrix m_p, m_m, m_v;
  std::vector<Index> m_support;
  Vector m_rm, m_rv;
};

}  // namespace wproj
