// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// mergekit's interpolation methods, one tensor at a time: `slerp`, `nuslerp`, `multislerp`,
/// `karcher`, `nearswap`, `arcee_fusion` and `passthrough`, with mergekit's parameter names,
/// defaults, required parameters, base-model roles and edge rules (colinear thresholds and their
/// linear interpolation, normalisation epsilons, row-wise or flattened vectors, the Karcher
/// iteration and tolerance, nearswap's similarity weight, arcee_fusion's importance threshold).
///
/// The math is in `wproj::mergekit` as free functions on tensors; the per-tensor forms front ends
/// run (`TensorMergeParams`, `TensorMergeInputs`, method.hpp) and the registry entries are in
/// `detail::interpolationMethods()`.
///
/// Arithmetic. mergekit evaluates these methods with torch (numpy in float32 for slerp) in the
/// tensor's dtype. wproj accumulates norms and inner products, evaluates angles, coefficients
/// and softmaxes in double and rounds each output entry once to the tensor's type, so results
/// agree with mergekit's to the rounding of the dtype, not bit for bit; where the rounding of
/// the dtype changes a branch mergekit takes, the differences are stated at the function.
///
/// Tensor layout. A tensor arrives as its matrix view (rows = first extent, columns = product
/// of the others; a 1-D tensor of n entries is n×1). The methods that work on torch's last
/// dimension (`nuslerp` without flattening, `arcee_fusion`'s softmax) take the rows of the view
/// as those vectors, and an n×1 view as one vector (a 1-D tensor). This is torch's last
/// dimension for 1-D and 2-D tensors; a 2-D tensor of shape [n, 1] is taken as 1-D, and for
/// tensors of three or more dimensions the view's rows are longer than torch's last dimension.

#include "../core/config.hpp"
#include "method.hpp"
#include "task_vectors.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace wproj {

namespace mergekit {

/// Dense double matrix of intermediate results.
using DoubleMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;

/// mergekit's `DOT_THRESHOLD` of slerp: above this |cos Ω| the two tensors count as colinear.
constexpr double kSlerpDotThreshold = 0.9995;
/// mergekit's slerp normalisation epsilon: a tensor of norm ≤ 1e-8 is used unnormalised.
constexpr double kSlerpNormEps = 1e-8;
/// nuslerp: norms are clamped below at 1e-7 when normalising.
constexpr double kNuslerpNormClamp = 1e-7;
/// nuslerp: a pair with |sin Ω| < 1e-8 counts as colinear.
constexpr double kNuslerpColinearEps = 1e-8;
/// nuslerp: |w₀ + w₁| below 1e-6 makes t = 1/2.
constexpr double kNuslerpWeightSumEps = 1e-6;
/// nearswap: |base − other| is clamped below at 1e-6 before dividing t by it.
constexpr double kNearswapDiffClamp = 1e-6;
/// arcee_fusion: the epsilon added to both softmaxes before the KL divergence.
constexpr double kArceeFusionEps = 1e-8;

/// What `slerp` did: the cosine of the angle between the two tensors and whether they counted
/// as colinear (then the result is the linear interpolation).
struct SlerpInfo {
  double cosine = 0;   ///< Σ v̂₀v̂₁ of the normalised tensors (see `slerp`)
  bool lerp = false;   ///< |cosine| > 0.9995: linear interpolation
};

/// Spherical linear interpolation (Shoemake, "Animating rotation with quaternion curves",
/// SIGGRAPH 1985) of two tensors as flat vectors, exactly as mergekit's `slerp`: each tensor is
/// divided by its norm when the norm exceeds 1e-8 (else used as it is, so a zero tensor gives a
/// cosine of 0), c = Σ v̂₀v̂₁; when |c| > 0.9995 the tensors count as colinear and the result is
/// (1 − t)v₀ + t v₁; otherwise with Ω = arccos c it is sin((1 − t)Ω)/sin Ω · v₀ + sin(tΩ)/sin Ω · v₁.
/// t = 0 gives v₀ and t = 1 gives v₁ exactly; t outside [0, 1] extrapolates, as in mergekit.
///
/// mergekit computes in float32 numpy whatever the dtype (float64 inputs are rounded to float32);
/// here the cosine and the coefficients are computed in double and each entry rounded once.
template <typename DA, typename DB>
MergeMatrix<typename DA::Scalar> slerp(double t, const Eigen::MatrixBase<DA>& v0, const Eigen::MatrixBase<DB>& v1,
                                       SlerpInfo* info = nullptr) {
  using Scalar = typename DA::Scalar;
  checkShape(v1, v0.rows(), v0.cols(), "mergekit::slerp", "v1");
  requireArg(std::isfinite(t), "mergekit::slerp", "t", t, "a finite number");
  const double n0 = std::sqrt(v0.template cast<double>().squaredNorm());
  const double n1 = std::sqrt(v1.template cast<double>().squaredNorm());
  const double d0 = n0 > kSlerpNormEps ? n0 : 1.0, d1 = n1 > kSlerpNormEps ? n1 : 1.0;
  const double c = v0.template cast<double>().cwiseProduct(v1.template cast<double>()).sum() / (d0 * d1);
  double c0 = 1 - t, c1 = t;
  const bool lerp = std::abs(c) > kSlerpDotThreshold;
  if (!lerp) {
    const double theta0 = std::acos(c), s = std::sin(theta0), thetaT = theta0 * t;
    c0 = std::sin(theta0 - thetaT) / s;
    c1 = std::sin(thetaT) / s;
  }
  if (info) *info = {c, lerp};
  return (c0 * v0.template cast<double>() + c1 * v1.template cast<double>()).template cast<Scalar>();
}

/// Which vectors `nuslerp` interpolates: the whole tensor, each row or each column of the view.
enum class NuslerpVectors { Whole, Rows, Columns };

/// The vectors mergekit's nuslerp interpolates for a rows×cols view: the whole tensor when
/// `flatten`; else torch's last-dimension vectors (the rows of the view) or, with `rowWise`,
/// the vectors along torch's first dimension (the columns); an n×1 view (a 1-D tensor) is one
/// vector either way.
inline NuslerpVectors nuslerpVectors(Index rows, Index cols, bool rowWise, bool flatten) {
  (void)rows;
  if (flatten || cols == 1) return NuslerpVectors::Whole;
  return rowWise ? NuslerpVectors::Columns : NuslerpVectors::Rows;
}

namespace impl {
/// The angle nuslerp uses for one pair, from the norms n₀, n₁, ⟨v₀, v₁⟩ and, for two vectors of
/// norm ≥ 1e-7 (unit after mergekit's clamped normalisation), ‖û₀ − û₁‖ and ‖û₀ + û₁‖: then
/// Ω = 2 atan2(‖û₀ − û₁‖, ‖û₀ + û₁‖), which is arccos⟨û₀, û₁⟩ evaluated without arccos's loss of
/// half the digits next to ±1 — so an exactly colinear or anti-parallel pair has |sin Ω| at the
/// rounding level and takes the linear interpolation mergekit's 1e-8 threshold intends (through
/// arccos, |sin Ω| of such a pair is ~1e-8 in double and ~1e-4 in float32, the threshold is
/// missed at random and the sine formula divides by it). Otherwise (a clamped, non-unit û)
/// Ω = arccos(clamp(⟨û₀, û₁⟩, −1, 1)) as in mergekit.
inline double nuslerpAngle(double n0, double n1, double dot, double diff, double sum) {
  if (n0 >= kNuslerpNormClamp && n1 >= kNuslerpNormClamp) return 2 * std::atan2(diff, sum);
  const double d0 = std::max(n0, kNuslerpNormClamp), d1 = std::max(n1, kNuslerpNormClamp);
  return std::acos(std::clamp(dot / (d0 * d1), -1.0, 1.0));
}
/// nuslerp's coefficients of one pair from its angle Ω: the linear ones when |sin Ω| < 1e-8.
inline void nuslerpCoefficients(double t, double theta, double& c0, double& c1) {
  const double s = std::sin(theta);
  if (std::abs(s) < kNuslerpColinearEps) {
    c0 = 1 - t;
    c1 = t;
  } else {
    c0 = std::sin((1 - t) * theta) / s;
    c1 = std::sin(t * theta) / s;
  }
}
inline double clampedInverse(double n) { return 1.0 / std::max(n, kNuslerpNormClamp); }
}  // namespace impl

/// mergekit's `nuslerp` of two tensors: for each vector pair (see `NuslerpVectors`), û = v/max(‖v‖,
/// 1e-7), Ω = arccos(clamp(⟨û₀, û₁⟩, −1, 1)); a pair with |sin Ω| < 1e-8 is colinear and gets
/// (1 − t)v₀ + t v₁, every other pair (sin((1 − t)Ω) v₀ + sin(tΩ) v₁)/sin Ω. A zero vector gives
/// Ω = π/2.
///
/// mergekit evaluates Ω by arccos in the tensor's dtype, which next to ±1 keeps only half the
/// digits: for an exactly colinear or anti-parallel pair |sin Ω| comes out ~1e-4 in float32 (and
/// sin(fl(π)) ≈ −8.7e-8), above the 1e-8 threshold, and mergekit divides by it — for an
/// anti-parallel pair a result ~10⁴ times the inputs. Here Ω is evaluated accurately in double
/// (`impl::nuslerpAngle`), so such pairs take the linear interpolation the threshold is for.
template <typename DA, typename DB>
MergeMatrix<typename DA::Scalar> nuslerp(double t, const Eigen::MatrixBase<DA>& v0, const Eigen::MatrixBase<DB>& v1,
                                         NuslerpVectors vectors) {
  using Scalar = typename DA::Scalar;
  checkShape(v1, v0.rows(), v0.cols(), "mergekit::nuslerp", "v1");
  requireArg(std::isfinite(t), "mergekit::nuslerp", "t", t, "a finite number");
  const auto a = v0.template cast<double>();
  const auto b = v1.template cast<double>();
  if (vectors == NuslerpVectors::Whole) {
    const double n0 = std::sqrt(a.squaredNorm()), n1 = std::sqrt(b.squaredNorm());
    const double i0 = impl::clampedInverse(n0), i1 = impl::clampedInverse(n1);
    const double diff = std::sqrt((i0 * a - i1 * b).squaredNorm()), sum = std::sqrt((i0 * a + i1 * b).squaredNorm());
    double c0 = 0, c1 = 0;
    impl::nuslerpCoefficients(t, impl::nuslerpAngle(n0, n1, a.cwiseProduct(b).sum(), diff, sum), c0, c1);
    return (c0 * a + c1 * b).template cast<Scalar>();
  }
  if (vectors == NuslerpVectors::Rows) {
    const Eigen::VectorXd n0 = a.rowwise().squaredNorm().cwiseSqrt(), n1 = b.rowwise().squaredNorm().cwiseSqrt();
    const Eigen::VectorXd dot = a.cwiseProduct(b).rowwise().sum();
    Eigen::VectorXd i0(v0.rows()), i1(v0.rows());
    for (Index i = 0; i < v0.rows(); ++i) {
      i0(i) = impl::clampedInverse(n0(i));
      i1(i) = impl::clampedInverse(n1(i));
    }
    const Eigen::VectorXd diff = (i0.asDiagonal() * a - i1.asDiagonal() * b).rowwise().squaredNorm().cwiseSqrt();
    const Eigen::VectorXd sum = (i0.asDiagonal() * a + i1.asDiagonal() * b).rowwise().squaredNorm().cwiseSqrt();
    Eigen::VectorXd c0(v0.rows()), c1(v0.rows());
    for (Index i = 0; i < v0.rows(); ++i)
      impl::nuslerpCoefficients(t, impl::nuslerpAngle(n0(i), n1(i), dot(i), diff(i), sum(i)), c0(i), c1(i));
    return (c0.asDiagonal() * a + c1.asDiagonal() * b).template cast<Scalar>();
  }
  const Eigen::RowVectorXd n0 = a.colwise().squaredNorm().cwiseSqrt(), n1 = b.colwise().squaredNorm().cwiseSqrt();
  const Eigen::RowVectorXd dot = a.cwiseProduct(b).colwise().sum();
  Eigen::VectorXd i0(v0.cols()), i1(v0.cols());
  for (Index j = 0; j < v0.cols(); ++j) {
    i0(j) = impl::clampedInverse(n0(j));
    i1(j) = impl::clampedInverse(n1(j));
  }
  const Eigen::RowVectorXd diff = (a * i0.asDiagonal() - b * i1.asDiagonal()).colwise().squaredNorm().cwiseSqrt();
  const Eigen::RowVectorXd sum = (a * i0.asDiagonal() + b * i1.asDiagonal()).colwise().squaredNorm().cwiseSqrt();
  Eigen::VectorXd c0(v0.cols()), c1(v0.cols());
  for (Index j = 0; j < v0.cols(); ++j)
    impl::nuslerpCoefficients(t, impl::nuslerpAngle(n0(j), n1(j), dot(j), diff(j), sum(j)), c0(j), c1(j));
  return (a * c0.asDiagonal() + b * c1.asDiagonal()).template cast<Scalar>();
}

/// mergekit's interpolation parameter of nuslerp from the two models' weights: t = w₁/(w₀ + w₁),
/// and t = 1/2 when |w₀ + w₁| < 1e-6.
inline double nuslerpT(double w0, double w1) {
  const double s = w0 + w1;
  return std::abs(s) < kNuslerpWeightSumEps ? 0.5 : w1 / s;
}

/// mergekit's `multislerp` ("barycentric interpolation on a hypersphere", mergekit's docs and
/// https://goddard.blog/posts/multislerp-wow-what-a-cool-idea) of n ≥ 2 tensors x_i (task vectors
/// x_i = θ_i − θ_base when `base` is given, and the base is added back): weights w normalised to
/// sum 1 when `normalizeWeights`; u_i = x_i/(‖x_i‖ + eps); M = Σ w_i u_i; when ‖M‖ < eps the
/// result is w₀x₀ + w₁x₁ for two tensors and an error for more (mergekit raises); else m = M/‖M‖,
/// tangent r = Σ w_i (u_i − ⟨u_i, m⟩ m), ρ = ‖r‖ + eps, result = (m cos ρ + r sin ρ/ρ) · Σ w_i ‖x_i‖.
///
/// Note: r = M − ⟨M, m⟩m vanishes analytically (the tangent vectors are taken at the normalised
/// weighted mean itself), so the result is the normalised weighted mean of the directions scaled
/// by the weighted mean norm — slerp's result for two tensors only at equal weights and equal
/// norms. It is computed as mergekit writes it, in double.
///
/// Errors: fewer than two tensors, a weight count other than the tensor count, weights summing
/// to 0 with `normalizeWeights` (mergekit divides by the sum), eps ≤ 0 (`InvalidArgument`); a
/// vanishing weighted mean of three or more tensors (`NumericalError`, as mergekit's ValueError).
template <typename Scalar>
MergeMatrix<Scalar> multislerp(const std::vector<MergeMatrix<Scalar>>& tensors, std::vector<double> weights,
                               const MergeMatrix<Scalar>* base, bool normalizeWeights, double eps) {
  const char* w = "mergekit::multislerp";
  const Index n = Index(tensors.size());
  requireArg(n >= 2, w, "number of tensors", n, "at least 2");
  requireArg(Index(weights.size()) == n, w, "weight", std::to_string(weights.size()) + " values",
             std::to_string(n) + " (one per tensor)");
  requireArg(std::isfinite(eps) && eps > 0, w, "eps", eps, "a value > 0");
  const Index rows = tensors[0].rows(), cols = tensors[0].cols();
  for (Index i = 1; i < n; ++i)
    ::wproj::detail::checkShapeAgainst(tensors[std::size_t(i)].rows(), tensors[std::size_t(i)].cols(), rows, cols, w,
                                       "tensor " + std::to_string(i), "the shape of tensor 0");
  if (base) ::wproj::detail::checkShapeAgainst(base->rows(), base->cols(), rows, cols, w, "base", "the shape of tensor 0");
  if (normalizeWeights) {
    double sum = 0;
    for (double x : weights) sum += x;
    requireArg(sum != 0, w, "weight", "values summing to 0", "a nonzero sum (normalize_weights divides by it)");
    for (double& x : weights) x /= sum;
  }
  // The (task) vectors x_i as double expressions (nothing is materialised but the mean and the
  // tangent sum), their norms and the weighted mean of the directions.
  auto run = [&](auto x) -> MergeMatrix<Scalar> {
    std::vector<double> norms(static_cast<std::size_t>(n));
    DoubleMatrix mean = DoubleMatrix::Zero(rows, cols);
    for (Index i = 0; i < n; ++i) {
      norms[std::size_t(i)] = std::sqrt(x(i).squaredNorm());
      mean += (weights[std::size_t(i)] / (norms[std::size_t(i)] + eps)) * x(i);
    }
    const double meanNorm = mean.norm();
    if (meanNorm < eps) {
      if (n != 2)
        throw NumericalError(std::string(w) + ": the weighted sum of the unit tensors is zero (norm " +
                             ::wproj::detail::describe(meanNorm) + " < eps " + ::wproj::detail::describe(eps) +
                             "): antipodal tensors or weights that balance out; expected weights that do not cancel");
      mean = weights[0] * x(0) + weights[1] * x(1);
      if (base) mean += base->template cast<double>();
      return mean.template cast<Scalar>();
    }
    mean /= meanNorm;
    DoubleMatrix tangent = DoubleMatrix::Zero(rows, cols);
    double avgNorm = 0;
    for (Index i = 0; i < n; ++i) {
      const double scale = 1.0 / (norms[std::size_t(i)] + eps);
      const double dot = scale * x(i).cwiseProduct(mean).sum();
      tangent += weights[std::size_t(i)] * (scale * x(i) - dot * mean);
      avgNorm += norms[std::size_t(i)] * weights[std::size_t(i)];
    }
    const double rho = tangent.norm() + eps;
    tangent = (std::cos(rho) * mean + (std::sin(rho) / rho) * tangent) * avgNorm;
    if (base) tangent += base->template cast<double>();
    return tangent.template cast<Scalar>();
  };
  if (base)
    return run([&](Index i) { return tensors[std::size_t(i)].template cast<double>() - base->template cast<double>(); });
  return run([&](Index i) { return tensors[std::size_t(i)].template cast<double>(); });
}

/// What `karcherMean` did.
struct KarcherInfo {
  Index validPoints = 0;     ///< points of norm > tol (the others only count in the scale)
  Index iterations = 0;      ///< updates of the mean direction performed
  double tangentNorm = 0;    ///< ‖T‖ of the last iteration (0 when none ran)
  bool converged = false;    ///< the iteration stopped because ‖T‖ < tol (false: max_iter reached or none ran)
};

/// mergekit's weighted Karcher mean on the unit sphere (`karcher_merge_tensors`; the Karcher or
/// Riemannian centre of mass, Karcher 1977; mergekit's docs): with norms ν_i and directions
/// u_i = x_i/ν_i (zero for a zero tensor), the points with ν_i > tol keep weights α_i normalised
/// among themselves; the start is the normalised weighted mean of their directions (the first
/// valid direction when that mean has norm < tol); each of at most `maxIter` iterations forms
/// T = Σ α_i θ_i/sin θ_i (u_i − cos θ_i · u) over the points with θ_i = arccos(clamp(⟨u, u_i⟩)) ≥ tol,
/// stops when ‖T‖ < tol, else moves u ← cos‖T‖ u + sin‖T‖ T/‖T‖ and renormalises it (when its
/// norm exceeds tol). The result is (Σ α_i ν_i) u with the original weights, zero tensors
/// included; zeros when no point has norm > tol.
///
/// mergekit keeps the directions in the tensor's dtype and takes norms in float32; here norms,
/// inner products, the mean direction and T are double, and the output is rounded once.
template <typename Scalar>
MergeMatrix<Scalar> karcherMean(const std::vector<const MergeMatrix<Scalar>*>& points, const std::vector<double>& alphas,
                                Index maxIter, double tol, KarcherInfo* info = nullptr) {
  const char* w = "mergekit::karcherMean";
  const std::size_t n = points.size();
  requireArg(n >= 1, w, "number of points", n, "at least 1");
  requireArg(alphas.size() == n, w, "alphas", std::to_string(alphas.size()) + " values", std::to_string(n) + " (one per point)");
  requireArg(maxIter >= 0, w, "max_iter", maxIter, "an integer >= 0");
  requireArg(std::isfinite(tol) && tol >= 0, w, "tol", tol, "a value >= 0");
  const Index rows = points[0]->rows(), cols = points[0]->cols();
  for (std::size_t i = 1; i < n; ++i)
    ::wproj::detail::checkShapeAgainst(points[i]->rows(), points[i]->cols(), rows, cols, w, "point " + std::to_string(i),
                                       "the shape of point 0");
  KarcherInfo dummy;
  KarcherInfo& inf = info ? *info : dummy;
  inf = KarcherInfo();
  std::vector<double> norms(n);
  for (std::size_t i = 0; i < n; ++i) norms[i] = std::sqrt(points[i]->template cast<double>().squaredNorm());
  std::vector<std::size_t> valid;
  for (std::size_t i = 0; i < n; ++i)
    if (norms[i] > tol) valid.push_back(i);
  inf.validPoints = Index(valid.size());
  if (valid.empty()) return MergeMatrix<Scalar>::Zero(rows, cols);
  double alphaSum = 0;
  for (std::size_t i : valid) alphaSum += alphas[i];
  std::vector<double> a(valid.size());
  for (std::size_t k = 0; k < valid.size(); ++k) a[k] = alphas[valid[k]] / alphaSum;
  // The unit direction of valid point k, as a double expression.
  auto unit = [&](std::size_t k) { return points[valid[k]]->template cast<double>() / norms[valid[k]]; };
  DoubleMatrix u = DoubleMatrix::Zero(rows, cols);
  for (std::size_t k = 0; k < valid.size(); ++k) u += a[k] * unit(k);
  const double un0 = u.norm();
  if (un0 < tol) u = unit(0);
  else u /= un0;
  DoubleMatrix tangent(rows, cols);
  for (Index it = 0; it < maxIter; ++it) {
    tangent.setZero();
    for (std::size_t k = 0; k < valid.size(); ++k) {
      const double dot = std::clamp(u.cwiseProduct(unit(k)).sum(), -1.0, 1.0);
      const double theta = std::acos(dot);
      if (theta < tol) continue;
      tangent += (a[k] * theta / std::sin(theta)) * (unit(k) - dot * u);
    }
    const double tn = tangent.norm();
    inf.tangentNorm = tn;
    if (tn < tol) {
      inf.converged = true;
      break;
    }
    u = std::cos(tn) * u + (std::sin(tn) / tn) * tangent;
    ++inf.iterations;
    const double un = u.norm();
    if (un > tol) u /= un;
  }
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += alphas[i] * norms[i];
  return (s * u).template cast<Scalar>();
}

/// mergekit's `nearswap` (after alchemonaut's QuartetAnemoi-70B-t0.0001): entry by entry,
/// w = clamp(t / max(|base − other|, 1e-6), 0, 1) and the result is w·other + (1 − w)·base —
/// entries where the two models are already within t of each other take the other model's
/// value, farther ones move towards it by t/|difference|. t ≤ 0 gives the base.
/// Computed per entry in double and rounded once (mergekit: in the tensor's dtype).
template <typename DA, typename DB>
MergeMatrix<typename DA::Scalar> nearswap(double t, const Eigen::MatrixBase<DA>& base, const Eigen::MatrixBase<DB>& other) {
  using Scalar = typename DA::Scalar;
  checkShape(other, base.rows(), base.cols(), "mergekit::nearswap", "other");
  requireArg(std::isfinite(t), "mergekit::nearswap", "t", t, "a finite number");
  MergeMatrix<Scalar> out(base.rows(), base.cols());
  for (Index j = 0; j < base.cols(); ++j)
    for (Index i = 0; i < base.rows(); ++i) {
      const double a = static_cast<double>(base(i, j)), b = static_cast<double>(other(i, j));
      const double wgt = std::clamp(t / std::max(std::abs(a - b), kNearswapDiffClamp), 0.0, 1.0);
      out(i, j) = Scalar(wgt * b + (1 - wgt) * a);
    }
  return out;
}

/// What `arceeFusion` did.
struct ArceeFusionInfo {
  double q1 = 0, median = 0, q3 = 0;  ///< the order statistics of the importance scores
  double threshold = 0;               ///< median + 1.5 (q3 − q1)
  Index kept = 0;                     ///< entries taken from the other model
};

/// mergekit's `arcee_fusion` (mergekit's docs; Arcee's MergeKit v0.1 release notes): with
/// p = softmax(other) + 1e-8 and q = softmax(base) + 1e-8 along each row (torch's last dimension,
/// see the file comment), KL_r = Σ p log(p/q) per row, the importance of an entry is
/// |other − base| · KL_r; the threshold is median + 1.5 (q3 − q1) of the importances, the
/// quantile q being the order statistic ⌊q (n − 1)⌋ (0-based) of the n sorted scores; entries with
/// importance ≥ threshold take the other model's value, the others keep the base.
///
/// mergekit estimates the quantiles from 10⁶ entries drawn at random (torch's unseeded generator)
/// when a tensor has more than 10⁶ entries; wproj takes the exact order statistics of all
/// entries (the same for smaller tensors). The importances are computed in double and held in
/// the tensor's type, as mergekit holds them; the comparison uses those held values.
template <typename DA, typename DB>
MergeMatrix<typename DA::Scalar> arceeFusion(const Eigen::MatrixBase<DA>& base, const Eigen::MatrixBase<DB>& other,
                                             ArceeFusionInfo* info = nullptr) {
  using Scalar = typename DA::Scalar;
  checkShape(other, base.rows(), base.cols(), "mergekit::arceeFusion", "other");
  const Index rows = base.rows(), cols = base.cols();
  const Index total = rows * cols;
  ArceeFusionInfo dummy;
  ArceeFusionInfo& inf = info ? *info : dummy;
  inf = ArceeFusionInfo();
  if (total == 0) return base;
  // KL divergence per vector (the rows of the view, or the whole of an n×1 view), accumulated
  // per vector over the entries in storage order: maxima, sums of the shifted exponentials, KL.
  const bool whole = cols == 1;
  const std::size_t vecs = whole ? 1 : std::size_t(rows);
  auto vec = [whole](Index i) { return whole ? std::size_t(0) : std::size_t(i); };
  std::vector<double> mp(vecs, -std::numeric_limits<double>::infinity()), mq(mp), sp(vecs, 0.0), sq(vecs, 0.0), kl(vecs, 0.0);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) {
      mp[vec(i)] = std::max(mp[vec(i)], static_cast<double>(other(i, j)));
      mq[vec(i)] = std::max(mq[vec(i)], static_cast<double>(base(i, j)));
    }
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) {
      sp[vec(i)] += std::exp(static_cast<double>(other(i, j)) - mp[vec(i)]);
      sq[vec(i)] += std::exp(static_cast<double>(base(i, j)) - mq[vec(i)]);
    }
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) {
      const std::size_t v = vec(i);
      const double p = std::exp(static_cast<double>(other(i, j)) - mp[v]) / sp[v] + kArceeFusionEps;
      const double q = std::exp(static_cast<double>(base(i, j)) - mq[v]) / sq[v] + kArceeFusionEps;
      kl[v] += p * std::log(p / q);
    }
  auto importance = [&](Index i, Index j) {
    const double diff = std::abs(static_cast<double>(other(i, j)) - static_cast<double>(base(i, j)));
    return Scalar(diff * kl[vec(i)]);
  };
  double q[3];
  {
    std::vector<Scalar> s;
    s.reserve(std::size_t(total));
    for (Index j = 0; j < cols; ++j)
      for (Index i = 0; i < rows; ++i) s.push_back(importance(i, j));
    // ⌊q (n − 1)⌋ for q = 1/4, 1/2, 3/4, increasing: select each within the part above the previous.
    const double fr[3] = {0.25, 0.5, 0.75};
    std::size_t lo = 0;
    for (int k = 0; k < 3; ++k) {
      const std::size_t idx = std::size_t(std::floor(fr[k] * double(total - 1)));
      if (idx >= lo) {
        std::nth_element(s.begin() + std::ptrdiff_t(lo), s.begin() + std::ptrdiff_t(idx), s.end());
        lo = idx;
      }
      q[k] = static_cast<double>(s[idx]);
    }
  }
  inf.q1 = q[0];
  inf.median = q[1];
  inf.q3 = q[2];
  inf.threshold = q[1] + 1.5 * (q[2] - q[0]);
  MergeMatrix<Scalar> out(rows, cols);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) {
      const bool keep = static_cast<double>(importance(i, j)) >= inf.threshold;
      inf.kept += keep ? 1 : 0;
      out(i, j) = keep ? Scalar(other(i, j)) : Scalar(base(i, j));
    }
  return out;
}

}  // namespace mergekit

namespace detail {
namespace interpolation {

/// Default of a parameter mergekit requires (no default; the entry marks it `required`): the
/// per-tensor form refuses a NaN or missing value with an error naming the method and the parameter.
inline double required() { return std::numeric_limits<double>::quiet_NaN(); }

/// "merge method '<m>', tensor '<name>'".
inline std::string where(const char* method, const std::string& tensor) {
  return std::string("merge method '") + method + "'" + (tensor.empty() ? std::string() : ", tensor '" + tensor + "'");
}

/// A global value: absent or NaN → the default, or an error when the parameter is required.
inline double global(const TensorMergeParams& p, const std::string& w, const char* name, double dflt) {
  const auto it = p.global.find(name);
  const double v = it == p.global.end() ? dflt : it->second;
  if (std::isnan(v))
    throw InvalidArgument(w + ": parameter '" + name + "' is required (mergekit gives it no default); expected a number");
  requireArg(std::isfinite(v), w.c_str(), name, v, "a finite number");
  return v;
}

/// A global flag (0 or 1).
inline bool flag(const TensorMergeParams& p, const std::string& w, const char* name, bool dflt) {
  const double v = global(p, w, name, dflt ? 1.0 : 0.0);
  requireArg(v == 0 || v == 1, w.c_str(), name, v, "true or false (1 or 0)");
  return v != 0;
}

/// The value `name` of model i: absent or NaN → the default, or an error when required.
inline double perModel(const TensorMergeParams& p, const std::string& w, std::size_t i, const char* name, double dflt) {
  double v = dflt;
  if (i < p.models.size()) {
    const auto it = p.models[i].find(name);
    if (it != p.models[i].end()) v = it->second;
  }
  if (std::isnan(v))
    throw InvalidArgument(w + ": parameter '" + name + "' of model " + std::to_string(i) +
                          " is required (mergekit gives it no default); expected a number");
  requireArg(std::isfinite(v), w.c_str(), (std::string(name) + "' of model '" + std::to_string(i)).c_str(), v,
             "a finite number");
  return v;
}

inline void requireModels(const std::string& w, Index got, Index lo, Index hi, const std::string& what) {
  if (got >= lo && got <= hi) return;
  if (got < 0) throw InvalidArgument(w + ": numModels = " + std::to_string(got) + "; expected " + what);
  throw InvalidArgument(w + ": " + std::to_string(got) + " model(s) besides the base; expected " + what);
}

inline void requireBase(const std::string& w, bool hasBase, const std::string& why) {
  if (!hasBase) throw InvalidArgument(w + ": no base model; expected a base model (" + why + ")");
}

/// Throws unless the inputs can fetch the models (and the base when they say they have one).
template <typename Scalar>
void requireFetches(const TensorMergeInputs<Scalar>& in, const std::string& w) {
  if (in.numModels > 0 && !in.model) throw InvalidArgument(w + ": no fetch of the models' tensors; expected TensorMergeInputs::model");
  if (in.hasBase && !in.base) throw InvalidArgument(w + ": hasBase without a fetch of the base tensor; expected TensorMergeInputs::base");
}

template <typename Scalar>
MergeMatrix<Scalar> fetchModel(const TensorMergeInputs<Scalar>& in, const std::string& w, Index i, Index rows, Index cols,
                               const std::string& reference) {
  MergeMatrix<Scalar> m = in.model(i);
  checkShapeAgainst(m.rows(), m.cols(), rows, cols, w, "tensor '" + in.name + "' of model " + std::to_string(i), reference);
  return m;
}

template <typename Scalar>
MergeMatrix<Scalar> finite(MergeMatrix<Scalar> out, const std::string& w) {
  if (!out.allFinite())
    throw NumericalError(w + ": the merged tensor has non-finite entries; expected finite inputs");
  return out;
}

/// slerp per tensor: θ = slerp(t; θ_base, θ_model) — mergekit's SlerpTask (exactly two inputs, one
/// of them the base; t = 0 gives the base). `t` is required.
template <typename Scalar>
MergeMatrix<Scalar> slerpTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  const std::string w = where("slerp", in.name);
  requireFetches(in, w);
  requireBase(w, in.hasBase && static_cast<bool>(in.base), "slerp interpolates from the base, t = 0, to the other model, t = 1");
  requireModels(w, in.numModels, 1, 1, "exactly 1 (slerp interpolates the base and one other model)");
  const double t = global(p, w, "t", required());
  const MergeMatrix<Scalar> b = in.base();
  const MergeMatrix<Scalar> m = fetchModel(in, w, 0, b.rows(), b.cols(), "its shape in the base model");
  return finite(mergekit::slerp(t, b, m), w);
}

/// nuslerp per tensor: exactly two models; with a base θ_base + nuslerp(t; θ₀ − θ_base, θ₁ − θ_base)
/// (mergekit's NuSlerpTask), without one nuslerp(t; θ₀, θ₁); t from the required per-model weights.
template <typename Scalar>
MergeMatrix<Scalar> nuslerpTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  const std::string w = where("nuslerp", in.name);
  requireFetches(in, w);
  requireModels(w, in.numModels, 2, 2, "exactly 2 (nuslerp interpolates two models, plus an optional base)");
  const bool rowWise = flag(p, w, "nuslerp_row_wise", false);
  const bool flatten = flag(p, w, "nuslerp_flatten", true);
  const double t = mergekit::nuslerpT(perModel(p, w, 0, "weight", required()), perModel(p, w, 1, "weight", required()));
  const bool base = in.hasBase && static_cast<bool>(in.base);
  MergeMatrix<Scalar> m0 = in.model(0);
  MergeMatrix<Scalar> m1 = fetchModel(in, w, 1, m0.rows(), m0.cols(), "its shape in model 0");
  const mergekit::NuslerpVectors vec = mergekit::nuslerpVectors(m0.rows(), m0.cols(), rowWise, flatten);
  if (!base) return finite(mergekit::nuslerp(t, m0, m1, vec), w);
  const MergeMatrix<Scalar> b = in.base();
  checkShapeAgainst(m0.rows(), m0.cols(), b.rows(), b.cols(), w, "tensor '" + in.name + "' of model 0",
                    "its shape in the base model");
  // Task vectors in double (exact for float inputs) as expressions, the interpolation, the base added back.
  const auto bd = b.template cast<double>();
  const mergekit::DoubleMatrix r = mergekit::nuslerp(t, m0.template cast<double>() - bd, m1.template cast<double>() - bd, vec);
  return finite(MergeMatrix<Scalar>((bd + r).template cast<Scalar>()), w);
}

/// multislerp per tensor: two or more models, the base optional (task vectors when given);
/// per-model weights required.
template <typename Scalar>
MergeMatrix<Scalar> multislerpTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  const std::string w = where("multislerp", in.name);
  requireFetches(in, w);
  requireModels(w, in.numModels, 2, std::numeric_limits<Index>::max(), "at least 2 (multislerp)");
  const bool normalize = flag(p, w, "normalize_weights", true);
  const double eps = global(p, w, "eps", 1e-8);
  requireArg(eps > 0, w.c_str(), "eps", eps, "a value > 0");
  std::vector<double> weights(std::size_t(in.numModels));
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = perModel(p, w, i, "weight", required());
  const bool hasBase = in.hasBase && static_cast<bool>(in.base);
  MergeMatrix<Scalar> b;
  if (hasBase) b = in.base();
  std::vector<MergeMatrix<Scalar>> xs;
  xs.push_back(in.model(0));
  if (hasBase)
    checkShapeAgainst(xs[0].rows(), xs[0].cols(), b.rows(), b.cols(), w, "tensor '" + in.name + "' of model 0",
                      "its shape in the base model");
  for (Index i = 1; i < in.numModels; ++i) xs.push_back(fetchModel(in, w, i, xs[0].rows(), xs[0].cols(), "its shape in model 0"));
  try {
    return finite(mergekit::multislerp(xs, weights, hasBase ? &b : nullptr, normalize, eps), w);
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(w + ": " + e.what());
  } catch (const NumericalError& e) {
    throw NumericalError(w + ": " + e.what());
  }
}

/// karcher per tensor: the Karcher mean of the models' tensors with equal weights 1/N. mergekit
/// gathers a configured base model with the models, so a base, when given, is one more point of
/// the mean (placed last; where mergekit places it only matters for rounding and for the start
/// when the mean of the directions vanishes). At least two tensors in all.
template <typename Scalar>
MergeMatrix<Scalar> karcherTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  const std::string w = where("karcher", in.name);
  requireFetches(in, w);
  const bool hasBase = in.hasBase && static_cast<bool>(in.base);
  const Index points = in.numModels + (hasBase ? 1 : 0);
  if (points < 2 || in.numModels < 1)
    throw InvalidArgument(w + ": " + std::to_string(in.numModels) + " model(s)" + (hasBase ? " and a base" : "") +
                          "; expected at least 2 tensors to average (the base, when given, counts as one)");
  const double maxIter = global(p, w, "max_iter", 10);
  requireArg(maxIter >= 0 && maxIter == std::floor(maxIter) && maxIter <= 1e9, w.c_str(), "max_iter", maxIter,
             "an integer >= 0");
  const double tol = global(p, w, "tol", 1e-5);
  requireArg(tol >= 0, w.c_str(), "tol", tol, "a value >= 0");
  std::vector<MergeMatrix<Scalar>> xs;
  xs.push_back(in.model(0));
  for (Index i = 1; i < in.numModels; ++i) xs.push_back(fetchModel(in, w, i, xs[0].rows(), xs[0].cols(), "its shape in model 0"));
  if (hasBase) {
    xs.push_back(in.base());
    checkShapeAgainst(xs[0].rows(), xs[0].cols(), xs.back().rows(), xs.back().cols(), w,
                      "tensor '" + in.name + "' of model 0", "its shape in the base model");
  }
  std::vector<const MergeMatrix<Scalar>*> ptrs;
  for (const auto& x : xs) ptrs.push_back(&x);
  const std::vector<double> alphas(xs.size(), 1.0 / double(xs.size()));
  return finite(mergekit::karcherMean(ptrs, alphas, Index(maxIter), tol), w);
}

/// nearswap per tensor: the base and exactly one other model; `t` is required.
template <typename Scalar>
MergeMatrix<Scalar> nearswapTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  const std::string w = where("nearswap", in.name);
  requireFetches(in, w);
  requireBase(w, in.hasBase && static_cast<bool>(in.base), "nearswap moves the base towards the other model");
  requireModels(w, in.numModels, 1, 1, "exactly 1 (nearswap takes the base and one other model)");
  const double t = global(p, w, "t", required());
  const MergeMatrix<Scalar> b = in.base();
  const MergeMatrix<Scalar> m = fetchModel(in, w, 0, b.rows(), b.cols(), "its shape in the base model");
  return finite(mergekit::nearswap(t, b, m), w);
}

/// arcee_fusion per tensor: the base and exactly one other model; no parameters.
template <typename Scalar>
MergeMatrix<Scalar> arceeFusionTensor(const TensorMergeParams&, const TensorMergeInputs<Scalar>& in) {
  const std::string w = where("arcee_fusion", in.name);
  requireFetches(in, w);
  requireBase(w, in.hasBase && static_cast<bool>(in.base), "arcee_fusion keeps the base where the other model's change is unimportant");
  requireModels(w, in.numModels, 1, 1, "exactly 1 (arcee_fusion takes the base and one other model)");
  const MergeMatrix<Scalar> b = in.base();
  const MergeMatrix<Scalar> m = fetchModel(in, w, 0, b.rows(), b.cols(), "its shape in the base model");
  return finite(mergekit::arceeFusion(b, m), w);
}

/// passthrough per tensor: exactly one model and no base (mergekit gathers a configured base with
/// the model and then refuses the two tensors); the tensor times its `scale` (default 1: unchanged),
/// computed as the double product rounded once (mergekit multiplies in the dtype).
template <typename Scalar>
MergeMatrix<Scalar> passthroughTensor(const TensorMergeParams& p, const TensorMergeInputs<Scalar>& in) {
  const std::string w = where("passthrough", in.name);
  requireFetches(in, w);
  if (in.hasBase)
    throw InvalidArgument(w + ": a base model was given; expected none (passthrough copies exactly one model's tensor)");
  requireModels(w, in.numModels, 1, 1, "exactly 1 (passthrough copies one model's tensor)");
  const double scale = perModel(p, w, 0, "scale", 1.0);
  const MergeMatrix<Scalar> m = in.model(0);
  if (scale == 1.0) return finite(MergeMatrix<Scalar>(m), w);
  return finite(MergeMatrix<Scalar>((scale * m.template cast<double>()).template cast<Scalar>()), w);
}

/// Working sets: `tensors` tensors of the input type plus `doubles` double tensors.
template <int tensors, int perModel, int doubles>
std::size_t workingSet(Index rows, Index cols, Index count, std::size_t bytesPerScalar) {
  const std::size_t e = std::size_t(rows) * std::size_t(cols);
  return e * (bytesPerScalar * std::size_t(tensors + perModel * count) + sizeof(double) * std::size_t(doubles));
}

inline bool positive(double x) { return x > 0; }
inline bool nonNegative(double x) { return x >= 0; }
inline bool count(double x) { return x >= 0 && x <= 1e9 && x == std::floor(x); }

inline MergeMethod entry(std::string name, std::string title, std::string reference, std::vector<ParamSpec> params,
                         Index minModels, Index maxModels, bool needsBase, bool acceptsBase) {
  MergeMethod m;
  m.name = std::move(name);
  m.title = std::move(title);
  m.reference = std::move(reference);
  m.params = std::move(params);
  m.minModels = minModels;
  m.maxModels = maxModels;
  m.needsBase = needsBase;
  m.acceptsBase = acceptsBase;
  m.elementwise = true;  // defined on any tensor (entry by entry or as flat vectors / rows)
  m.passes = 1;          // every tensor of every model is fetched once
  return m;
}

}  // namespace interpolation

/// The registry entries of mergekit's interpolation methods (slerp, nuslerp, multislerp, karcher,
/// nearswap, arcee_fusion, passthrough) with mergekit's names, parameters and defaults. A
/// parameter mergekit requires is `required` (`resolve` refuses it when not given) and has a NaN
/// default, which the per-tensor form refuses as well (a front end that fills in defaults itself
/// cannot slip a value in), naming the method and the parameter. They have per-tensor forms only
/// (the whole-model run is `MergeMethod::runTensorwise`).
inline std::vector<MergeMethod> interpolationMethods() {
  namespace ip = interpolation;
  const double req = ip::required();
  std::vector<MergeMethod> v;

  MergeMethod slerp = ip::entry(
      "slerp", "spherical interpolation of the tensors of the base (t = 0) and one other model (t = 1); linear when colinear",
      "Shoemake, SIGGRAPH 1985; mergekit's slerp",
      {{"t", ParamKind::Scalar, req, "interpolation factor: 0 gives the base model, 1 the other model (required)", nullptr,
        "a finite number", true}},
      1, 1, true, true);
  slerp.tensorFloat = &ip::slerpTensor<float>;
  slerp.tensorDouble = &ip::slerpTensor<double>;
  slerp.workingSet = &ip::workingSet<3, 0, 0>;
  v.push_back(std::move(slerp));

  MergeMethod nu = ip::entry(
      "nuslerp",
      "slerp of two models (of their task vectors when a base is given) with t = w2 / (w1 + w2), flattened or per row/column",
      "mergekit's nuslerp (docs/merge_methods.md)",
      {{"weight", ParamKind::PerModel, req, "relative weight of the model; t = weight_2 / (weight_1 + weight_2) (required)",
        nullptr, "a finite number", true},
       {"nuslerp_row_wise", ParamKind::Bool, 0.0,
        "without flattening: interpolate the vectors along the first dimension (columns of a weight) instead of its rows",
        nullptr, "true or false"},
       {"nuslerp_flatten", ParamKind::Bool, 1.0, "interpolate each tensor as one flat vector", nullptr, "true or false"}},
      2, 2, false, true);
  nu.tensorFloat = &ip::nuslerpTensor<float>;
  nu.tensorDouble = &ip::nuslerpTensor<double>;
  nu.workingSet = &ip::workingSet<2, 0, 3>;
  v.push_back(std::move(nu));

  MergeMethod multi = ip::entry(
      "multislerp",
      "spherical barycentre of two or more models (of their task vectors when a base is given): normalised weighted mean "
      "of the directions times the weighted mean norm",
      "mergekit's multislerp (docs/merge_methods.md; goddard.blog, Multi-SLERP)",
      {{"weight", ParamKind::PerModel, req, "relative weight of the model (required)", nullptr, "a finite number", true},
       {"normalize_weights", ParamKind::Bool, 1.0, "divide the weights by their sum", nullptr, "true or false"},
       {"eps", ParamKind::Scalar, 1e-8, "numerical-stability constant (norms, the vanishing-mean test, the tangent norm)",
        &ip::positive, "a value > 0"}},
      2, std::numeric_limits<Index>::max(), false, true);
  multi.tensorFloat = &ip::multislerpTensor<float>;
  multi.tensorDouble = &ip::multislerpTensor<double>;
  multi.workingSet = &ip::workingSet<2, 1, 3>;
  v.push_back(std::move(multi));

  MergeMethod karcher = ip::entry(
      "karcher",
      "Karcher (Riemannian) mean of the models' directions on the unit sphere, scaled by their mean norm; a base, when "
      "given, is one more point",
      "Karcher 1977; mergekit's karcher (docs/merge_methods.md)",
      {{"max_iter", ParamKind::Integer, 10.0, "most iterations of the Karcher mean", &ip::count, "an integer >= 0"},
       {"tol", ParamKind::Scalar, 1e-5, "convergence tolerance (also the norm below which a tensor is left out)",
        &ip::nonNegative, "a value >= 0"}},
      1, std::numeric_limits<Index>::max(), false, true);
  karcher.tensorFloat = &ip::karcherTensor<float>;
  karcher.tensorDouble = &ip::karcherTensor<double>;
  karcher.workingSet = &ip::workingSet<2, 1, 2>;
  v.push_back(std::move(karcher));

  MergeMethod near = ip::entry(
      "nearswap",
      "entry by entry, the base moved towards the other model by clamp(t / |difference|, 0, 1): similar entries are swapped in",
      "mergekit's nearswap (alchemonaut, QuartetAnemoi-70B-t0.0001)",
      {{"t", ParamKind::Scalar, req, "similarity threshold: entries closer than t take the other model's value (required)",
        nullptr, "a finite number", true}},
      1, 1, true, true);
  near.rowSeparable = true;
  near.tensorFloat = &ip::nearswapTensor<float>;
  near.tensorDouble = &ip::nearswapTensor<double>;
  near.workingSet = &ip::workingSet<3, 0, 0>;
  v.push_back(std::move(near));

  MergeMethod fusion = ip::entry(
      "arcee_fusion",
      "the other model's entries whose importance |difference| x KL(softmax rows) reaches median + 1.5 IQR, the base elsewhere",
      "mergekit's arcee_fusion (Arcee, MergeKit v0.1 release)", {}, 1, 1, true, true);
  fusion.tensorFloat = &ip::arceeFusionTensor<float>;
  fusion.tensorDouble = &ip::arceeFusionTensor<double>;
  fusion.workingSet = &ip::workingSet<4, 0, 0>;
  v.push_back(std::move(fusion));

  MergeMethod pass = ip::entry(
      "passthrough", "one model's tensor unchanged, times its optional scale", "mergekit's passthrough",
      {{"scale", ParamKind::PerModel, 1.0, "factor the tensor is multiplied by", nullptr, "a finite number"}}, 1, 1, false,
      false);
  pass.rowSeparable = true;
  pass.tensorFloat = &ip::passthroughTensor<float>;
  pass.tensorDouble = &ip::passthroughTensor<double>;
  pass.workingSet = &ip::workingSet<2, 0, 0>;
  v.push_back(std::move(pass));
  return v;
}

}  // namespace detail

}  // namespace wproj
