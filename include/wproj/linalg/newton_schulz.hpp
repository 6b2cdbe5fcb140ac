// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Quintic Newton–Schulz orthogonalisation (the kernel of Muon, Jordan et al. 2024): an
/// approximation of the orthogonal polar factor (linalg/polar.hpp) by matrix products only.

#include "../core/config.hpp"

#include <Eigen/Core>

#include <cmath>
#include <string>

namespace wproj {

/// Quintic Newton–Schulz iteration towards the orthogonal polar factor U Vᵀ of G = U Σ Vᵀ.
///
/// X₀ = G / (‖G‖_F + ε), taken in its wide orientation (Gᵀ when m > n, so that the Gram matrix is
/// the smaller one), then `steps` times
///
///     A = X Xᵀ,   B = b·A + c·A²,   X ← a·X + B·X,
///
/// which maps every singular value σ of X to p(σ) = aσ + bσ³ + cσ⁵ and keeps the singular vectors.
/// With Muon's coefficients (a, b, c) = (3.4445, −4.7750, 2.0315) — chosen for a steep slope at 0,
/// not for convergence — five steps send σ ∈ (0, 1] into a band around 1 (≈ [0.7, 1.2]); the result
/// is U S' Vᵀ with S' in that band, not exactly U Vᵀ. Coefficients (1.875, −1.25, 0.375) give the
/// classical convergent iteration.
///
/// Symmetry is used throughout: A = X Xᵀ is a symmetric rank-k update (SYRK, lower triangle),
/// A² = A Aᵀ another one, and B·X a symmetric-times-general product, so the Gram steps cost half
/// of the general products. Computed in `Scalar_` (Muon's reference runs in bfloat16).
///
/// Knobs: `setSteps` (≥ 1, default 5), `setCoefficients` (finite, default Muon's), `setEpsilon`
/// (finite, ≥ 0, default 1e-7). The workspace (X, the next X, A, B) is kept between calls and
/// reused for the same shape; Eigen's symmetric kernels may still allocate their packing blocks
/// per call on large shapes.
template <typename Scalar_>
class NewtonSchulz {
 public:
  /// Floating-point type of the iteration.
  using Scalar = Scalar_;
  /// Dense matrix type of the workspace and the result.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  /// Number of iterations (≥ 1; default 5).
  NewtonSchulz& setSteps(int steps) {
    requireArg(steps >= 1, "NewtonSchulz::setSteps", "steps", steps, ">= 1");
    m_steps = steps;
    return *this;
  }
  /// Coefficients (a, b, c) of p(σ) = aσ + bσ³ + cσ⁵ (finite; default Muon's 3.4445, −4.7750, 2.0315).
  NewtonSchulz& setCoefficients(double a, double b, double c) {
    requireArg(std::isfinite(a), "NewtonSchulz::setCoefficients", "a", a, "finite");
    requireArg(std::isfinite(b), "NewtonSchulz::setCoefficients", "b", b, "finite");
    requireArg(std::isfinite(c), "NewtonSchulz::setCoefficients", "c", c, "finite");
    m_a = a;
    m_b = b;
    m_c = c;
    return *this;
  }
  /// ε of the normalisation X₀ = G / (‖G‖_F + ε) (finite, ≥ 0; default 1e-7).
  NewtonSchulz& setEpsilon(double eps) {
    requireArg(std::isfinite(eps) && eps >= 0, "NewtonSchulz::setEpsilon", "eps", eps, "finite and >= 0");
    m_eps = eps;
    return *this;
  }
  /// Number of iterations.
  int steps() const { return m_steps; }
  /// Coefficient a.
  double a() const { return m_a; }
  /// Coefficient b.
  double b() const { return m_b; }
  /// Coefficient c.
  double c() const { return m_c; }
  /// ε of the normalisation.
  double epsilon() const { return m_eps; }

  /// Writes the orthogonalised G (same shape as G) into `out`. Throws `InvalidArgument` for an
  /// empty or non-finite G. A zero G gives a zero result.
  template <typename DG, typename DO>
  void compute(const Eigen::MatrixBase<DG>& g, Eigen::MatrixBase<DO>& out) {
    checkNonEmpty(g, "NewtonSchulz::compute", "g");
    checkFinite(g, "NewtonSchulz::compute", "g");
    const bool tall = g.rows() > g.cols();
    const Index p = tall ? g.cols() : g.rows();
    const Index q = tall ? g.rows() : g.cols();
    m_x.resize(p, q);
    m_y.resize(p, q);
    m_gram.resize(p, p);
    m_poly.resize(p, p);
    const Scalar inv = Scalar(1.0 / (double(g.template cast<Scalar>().norm()) + m_eps));
    if (tall)
      m_x.noalias() = inv * g.transpose().template cast<Scalar>();
    else
      m_x.noalias() = inv * g.template cast<Scalar>();
    const Scalar a = Scalar(m_a), b = Scalar(m_b), c = Scalar(m_c);
    for (int k = 0; k < m_steps; ++k) {
      // A = X Xᵀ (lower triangle), mirrored so that A² = A Aᵀ can read all of A.
      m_gram.setZero();
      m_gram.template selfadjointView<Eigen::Lower>().rankUpdate(m_x);
      m_gram.template triangularView<Eigen::StrictlyUpper>() = m_gram.transpose();
      // B = c·A Aᵀ + b·A (lower triangle).
      m_poly.setZero();
      m_poly.template selfadjointView<Eigen::Lower>().rankUpdate(m_gram, c);
      m_poly.template triangularView<Eigen::Lower>() += b * m_gram;
      // X ← a·X + B·X.
      m_y.noalias() = m_poly.template selfadjointView<Eigen::Lower>() * m_x;
      m_y += a * m_x;
      m_x.swap(m_y);
    }
    if (tall)
      out.derived() = m_x.transpose().template cast<typename DO::Scalar>();
    else
      out.derived() = m_x.template cast<typename DO::Scalar>();
  }
  /// Overload for a temporary destination, such as an Eigen block or `Map`.
  template <typename DG, typename DO>
  void compute(const Eigen::MatrixBase<DG>& g, Eigen::MatrixBase<DO>&& out) {
    compute(g, out);
  }
  /// Returns the orthogonalised G (allocates).
  template <typename DG>
  Matrix compute(const Eigen::MatrixBase<DG>& g) {
    Matrix out(g.rows(), g.cols());
    compute(g, out);
    return out;
  }

  /// Bytes of the workspace (X, the next X, A and B).
  std::size_t workspaceBytes() const {
    return std::size_t(m_x.size() + m_y.size() + m_gram.size() + m_poly.size()) * sizeof(Scalar);
  }

 private:
  int m_steps = 5;
  double m_a = 3.4445, m_b = -4.7750, m_c = 2.0315, m_eps = 1e-7;
  Matrix m_x, m_y, m_gram, m_poly;
};

/// Newton–Schulz orthogonalisation of g (see `NewtonSchulz`): `steps` quintic iterations with
/// coefficients (a, b, c) after normalising by ‖g‖_F + eps. Defaults are Muon's reference.
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> newtonSchulz(const Eigen::MatrixBase<Derived>& g, int steps = 5,
                                                                                      double a = 3.4445, double b = -4.7750,
                                                                                      double c = 2.0315, double eps = 1e-7) {
  NewtonSchulz<typename Derived::Scalar> ns;
  ns.setSteps(steps).setCoefficients(a, b, c).setEpsilon(eps);
  return ns.compute(g);
}

}  // namespace wproj
