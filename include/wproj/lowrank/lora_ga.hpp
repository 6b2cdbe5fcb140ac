// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// LoRA-GA initialisation (Wang et al. 2024, "LoRA-GA: Low-Rank Adaptation with Gradient
/// Approximation"): LoRA factors taken from the SVD of the first full-weight gradient, so that
/// the first optimizer step of s·B·A points along the best rank-2r approximation of that
/// gradient; the frozen weight is offset by s·B·A so the adapted layer is unchanged at step 0.
///
/// With G = U Σ Vᵀ (m×n, m = out_features), the default direction "ArB2r" takes
/// A = c·V[:, 0:r]ᵀ (r×n) and B = c·U[:, r:2r] (m×r). With PEFT's scaling s = alpha / r and
/// plain gradient steps on A and B (learning rate η), the first step changes the adapter by
/// s·(ΔB·A + B·ΔA) = −η·s²·(G·AᵀA + B·BᵀG) = −η·s²·c²·G_{2r} (to first order in η), where
/// G_{2r} is the best rank-2r approximation of G. The scale c is, by `LoraGaScale`:
/// Stable c = m^{1/4}/√γ (γ = 16), GradientDescent c = 1/s, Unit c = 1.

#include "../core/config.hpp"
#include "../linalg/randomized_svd.hpp"
#include "../linalg/truncated_svd.hpp"
#include "lora.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace wproj {

/// Which singular vectors go to A (right) and to B (left); names as the official code's.
enum class LoraGaDirection {
  ArB2r,  ///< A = V[:, 0:r]ᵀ, B = U[:, r:2r] (default)
  A2rBr,  ///< A = V[:, r:2r]ᵀ, B = U[:, 0:r]
  ArBr    ///< A = V[:, 1,3,…,2r−1]ᵀ, B = U[:, 0,2,…,2r−2] (interleaved)
};

/// How A and B are scaled after the singular vectors are picked.
enum class LoraGaScale {
  Stable,           ///< both × m^{1/4}/√γ (m = rows of G; the paper's "stable" scale, default)
  GradientDescent,  ///< both ÷ s (first step of s·B·A equals −η·G_{2r}; official "gd")
  Unit              ///< orthonormal singular vectors unscaled (official "unit")
};

/// LoRA-GA factors for one weight: B (m×r), A (r×n) from the SVD of the (averaged) gradient,
/// the PEFT scale s, and the offset s·B·A that is subtracted from the frozen weight.
///
/// ```cpp
/// LoraGaInit<float> ga;
/// ga.setRank(8).setAlpha(16).compute(G);   // G: averaged gradient of W (out×in)
/// ga.offsetWeight(W);                      // W ← W − s·B·A, so W + s·B·A is the old W
/// ```
template <typename Scalar_>
class LoraGaInit {
 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  /// Adapter rank r (≥ 1; 2r ≤ min(m, n) is required at compute time). Default 8.
  LoraGaInit& setRank(Index r) {
    requireArg(r >= 1, "LoraGaInit::setRank", "r", r, ">= 1");
    m_rank = r;
    return *this;
  }
  /// PEFT's lora_alpha (> 0, finite); s = alpha / r. Default 16 (s = 2 at r = 8).
  LoraGaInit& setAlpha(double alpha) {
    requireArg(std::isfinite(alpha) && alpha > 0.0, "LoraGaInit::setAlpha", "alpha", alpha, "a finite value > 0");
    m_alpha = alpha;
    return *this;
  }
  /// The stable-scale γ (> 0, finite). Default 16 (the official default).
  LoraGaInit& setStableGamma(double gamma) {
    requireArg(std::isfinite(gamma) && gamma > 0.0, "LoraGaInit::setStableGamma", "gamma", gamma,
               "a finite value > 0");
    m_gamma = gamma;
    return *this;
  }
  /// Which singular vectors go where (default ArB2r).
  LoraGaInit& setDirection(LoraGaDirection d) {
    m_direction = d;
    return *this;
  }
  /// The scale mode (default Stable).
  LoraGaInit& setScaleMode(LoraGaScale s) {
    m_scaleMode = s;
    return *this;
  }
  /// The decomposition: Auto (exact below min(m, n) = 256 or when 4r ≥ min(m, n), randomized
  /// otherwise), Exact (`TruncatedSVD`) or Randomized (`RandomizedSVD`, 2r + 2r columns, q power
  /// iterations — the official torch.svd_lowrank(q = 4r, niter = 4)).
  LoraGaInit& setSolver(LoraSolver s) {
    m_solver = s;
    return *this;
  }
  /// Power iterations of the randomized solver (≥ 0). Default 4.
  LoraGaInit& setPowerIterations(Index q) {
    requireArg(q >= 0, "LoraGaInit::setPowerIterations", "q", q, ">= 0");
    m_power = q;
    return *this;
  }
  /// Seed of the randomized solver.
  LoraGaInit& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }

  /// Computes A and B from the gradient G (m×n, finite, 2r ≤ min(m, n)).
  template <typename Derived>
  LoraGaInit& compute(const Eigen::MatrixBase<Derived>& gIn) {
    computeDense(Matrix(gIn));
    return *this;
  }

 private:
  void computeDense(const Matrix& g) {
    const Index m = g.rows(), n = g.cols(), r = m_rank;
    requireArg(m >= 1 && n >= 1, "LoraGaInit::compute", "gradient shape", detail::shapeString(m, n), "non-empty");
    requireArg(2 * r <= std::min(m, n), "LoraGaInit::compute", "rank", r,
               "2r <= min(m, n) = " + std::to_string(std::min(m, n)) + " (the init uses 2r singular pairs)");
    checkFinite(g, "LoraGaInit::compute", "gradient");
    const Index k = 2 * r, s = std::min(m, n);
    Matrix u, v;
    const bool randomized = m_solver == LoraSolver::Randomized ||
                            (m_solver == LoraSolver::Auto && s > 256 && 4 * r < s);
    if (randomized) {
      RandomizedSVD<Matrix> svd;
      svd.setRank(k).setOversampling(std::min<Index>(k, s - k)).setPowerIterations(m_power).setSeed(m_seed);
      svd.setErrorProbes(0);
      svd.compute(g);
      u = svd.matrixU().leftCols(k);
      v = svd.matrixV().leftCols(k);
      m_info = svd.info();
    } else {
      TruncatedSVD<Matrix> svd;
      svd.setRank(k).compute(g);
      u = svd.matrixU().leftCols(k);
      v = svd.matrixV().leftCols(k);
      m_info = svd.info();
    }
    m_a.resize(r, n);
    m_b.resize(m, r);
    for (Index i = 0; i < r; ++i) {
      Index ia = i, ib = r + i;
      if (m_direction == LoraGaDirection::A2rBr) {
        ia = r + i;
        ib = i;
      } else if (m_direction == LoraGaDirection::ArBr) {
        ia = 2 * i + 1;
        ib = 2 * i;
      }
      m_a.row(i) = v.col(ia).transpose();
      m_b.col(i) = u.col(ib);
    }
    const double c = factorScale(m);
    m_a *= Scalar(c);
    m_b *= Scalar(c);
    m_computed = true;
  }

 public:

  /// The factor scale c applied to both A and B for a gradient with m rows.
  double factorScale(Index m) const {
    switch (m_scaleMode) {
      case LoraGaScale::Stable: return std::pow(double(m), 0.25) / std::sqrt(m_gamma);
      case LoraGaScale::GradientDescent: return 1.0 / scale();
      case LoraGaScale::Unit: break;
    }
    return 1.0;
  }

  /// PEFT's scale s = alpha / r.
  double scale() const { return m_alpha / double(m_rank); }
  /// A (r×n, "lora_A.weight").
  const Matrix& matrixA() const {
    WPROJ_ASSERT(m_computed);
    return m_a;
  }
  /// B (m×r, "lora_B.weight").
  const Matrix& matrixB() const {
    WPROJ_ASSERT(m_computed);
    return m_b;
  }
  /// s·B·A, the amount the frozen weight is offset by.
  Matrix offset() const {
    WPROJ_ASSERT(m_computed);
    return (Scalar(scale()) * m_b) * m_a;
  }
  /// W ← W − s·B·A (W m×n, the shape of the gradient), so that W + s·B·A equals the old W.
  template <typename Derived>
  void offsetWeight(Eigen::MatrixBase<Derived>& w) const {
    WPROJ_ASSERT(m_computed);
    requireArg(w.rows() == m_b.rows() && w.cols() == m_a.cols(), "LoraGaInit::offsetWeight", "weight shape",
               detail::shapeString(w.rows(), w.cols()),
               detail::shapeString(m_b.rows(), m_a.cols()) + " (the gradient's shape)");
    w.derived().noalias() -= (Scalar(scale()) * m_b) * m_a;
  }
  /// The factors as `LoraFactors` (scale s; sigma, errors left empty).
  LoraFactors<Scalar> factors() const {
    WPROJ_ASSERT(m_computed);
    LoraFactors<Scalar> f;
    f.B = m_b;
    f.A = m_a;
    f.scale = scale();
    return f;
  }
  /// `Success`, or the decomposition's failure.
  Eigen::ComputationInfo info() const { return m_info; }
  /// r.
  Index rank() const { return m_rank; }

 private:
  Index m_rank = 8;
  double m_alpha = 16.0;
  double m_gamma = 16.0;
  LoraGaDirection m_direction = LoraGaDirection::ArB2r;
  LoraGaScale m_scaleMode = LoraGaScale::Stable;
  LoraSolver m_solver = LoraSolver::Auto;
  Index m_power = 4;
  std::uint64_t m_seed = 0;
  Matrix m_a, m_b;
  bool m_computed = false;
  Eigen::ComputationInfo m_info = Eigen::Success;
};

/// The mean of gradient estimates G_1 … G_k (LoRA-GA averages the gradients of its first k
/// batches before the SVD); all of one shape, accumulated in double.
template <typename Matrix>
Matrix averageGradients(const std::vector<Matrix>& grads) {
  requireArg(!grads.empty(), "averageGradients", "grads.size()", grads.size(), ">= 1");
  Eigen::MatrixXd sum = grads[0].template cast<double>();
  for (std::size_t i = 1; i < grads.size(); ++i) {
    requireArg(grads[i].rows() == sum.rows() && grads[i].cols() == sum.cols(), "averageGradients", "grads[i] shape",
               detail::shapeString(grads[i].rows(), grads[i].cols()), detail::shapeString(sum.rows(), sum.cols()));
    sum += grads[i].template cast<double>();
  }
  return (sum / double(grads.size())).template cast<typename Matrix::Scalar>();
}

}  // namespace wproj
