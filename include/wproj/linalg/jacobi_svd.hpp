// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// SVD of a small square matrix by preconditioned one-sided Jacobi, the small-SVD kernel of the
/// randomized solvers (whose sketches have ℓ ≲ a few hundred columns).
///
/// One-sided Jacobi (Hestenes 1958; Demmel & Veselić 1992) rotates pairs of columns of X until
/// they are mutually orthogonal to working precision; the column norms are then the singular
/// values, each with a small *relative* error, so it is at least as accurate as a bidiagonal
/// SVD (BDCSVD). Its cost per sweep is O(n³), and from an arbitrary start it needs 6–10 sweeps.
/// Here the columns are first rotated by the eigenvectors W of XᵀX computed in double precision
/// (which the Gram route of the solvers has already computed, or computes here): X·W has columns
/// that are orthogonal to ≈ u_d·σ₀²/(σᵢσⱼ), so only the directions the Gram matrix cannot resolve
/// still need rotations, and the sweeps converge quadratically in one to three passes (the
/// preconditioning of Drmač & Veselić 2008, with the eigenvectors of the Gram matrix in place
/// of a QR factor). Everything runs in double precision, whatever the scalar type of X, so a
/// program that uses the solvers for float and double instantiates the kernel once.

#include "../core/config.hpp"
#include "symmetric_eigen.hpp"

#include <Eigen/Core>
#include <Eigen/Jacobi>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace wproj {
namespace detail {

/// Result of `jacobiSvd`: X = U·diag(s)·Vᵀ with s descending, U and V orthogonal (n×n).
struct JacobiSVDResult {
  Eigen::MatrixXd u, v;
  Eigen::VectorXd s;
  Eigen::ComputationInfo info = Eigen::Success;
};

/// One-sided Jacobi on the columns of y (n×n, in place), accumulating the rotations into v.
/// Pairs whose cosine |y_pᵀy_q|/(‖y_p‖‖y_q‖) exceeds `tol` are rotated. Each sweep first screens
/// all pairs at once with the Gram matrix YᵀY (one BLAS-3 product) and then sweeps only over
/// the columns of the pairs that fail, so a well-preconditioned Y costs a few products. Returns
/// false when 40 sweeps did not converge.
inline bool jacobiSweeps(Eigen::MatrixXd& y, Eigen::MatrixXd& v, double tol) {
  const Index n = y.cols();
  Eigen::MatrixXd g(n, n);
  Eigen::VectorXd norms(n);
  std::vector<Index> active;
  std::vector<char> flag(static_cast<std::size_t>(n));
  // The screen's own rounding is ≈ n·u_d relative; pairs below that are left to the sweep's exact test.
  const double screenTol = std::max(tol, 2.0 * double(n) * std::numeric_limits<double>::epsilon());
  for (int sweep = 0; sweep < 40; ++sweep) {
    g.setZero();
    g.selfadjointView<Eigen::Lower>().rankUpdate(y.transpose());
    std::fill(flag.begin(), flag.end(), char(0));
    for (Index q = 0; q < n; ++q)
      for (Index p = q + 1; p < n; ++p)
        if (std::abs(g(p, q)) > screenTol * std::sqrt(g(p, p)) * std::sqrt(g(q, q)))
          flag[std::size_t(p)] = flag[std::size_t(q)] = 1;
    active.clear();
    for (Index j = 0; j < n; ++j)
      if (flag[std::size_t(j)]) active.push_back(j);
    if (active.empty()) return true;
    for (Index j : active) norms(j) = y.col(j).squaredNorm();
    for (std::size_t ip = 0; ip + 1 < active.size(); ++ip) {
      const Index p = active[ip];
      for (std::size_t iq = ip + 1; iq < active.size(); ++iq) {
        const Index q = active[iq];
        const double a = norms(p), b = norms(q);
        if (a == 0.0 || b == 0.0) continue;
        const double c = y.col(p).dot(y.col(q));
        if (!(std::abs(c) > tol * std::sqrt(a) * std::sqrt(b))) continue;
        // The rotation [cs sn; −sn cs] that makes the pair orthogonal, with |t| = |sn/cs| ≤ 1.
        const double zeta = (b - a) / (2.0 * c);
        const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::abs(zeta) + std::sqrt(1.0 + zeta * zeta));
        const double cs = 1.0 / std::sqrt(1.0 + t * t), sn = cs * t;
        const Eigen::JacobiRotation<double> rot(cs, sn);  // columns (p, q) ← (cs·p − sn·q, sn·p + cs·q)
        y.applyOnTheRight(p, q, rot);
        v.applyOnTheRight(p, q, rot);
        norms(p) = std::max(0.0, a - t * c);
        norms(q) = std::max(0.0, b + t * c);
      }
    }
  }
  return false;
}

/// SVD of the square matrix x (n×n) by one-sided Jacobi, preconditioned by `gramVectors`: the
/// eigenvectors of xᵀx (any order; computed here from the double Gram matrix when null). `unit`
/// is the unit roundoff of x's scalar type: pairs are rotated until their cosine is below
/// max(unit, √n·u_d). Singular vectors of zero singular values are completed to orthonormal
/// bases. `info` is `NoConvergence` when the sweeps did not converge (the result is still the
/// best available).
template <typename Derived>
JacobiSVDResult jacobiSvd(const Eigen::MatrixBase<Derived>& x, const Eigen::MatrixXd* gramVectors, double unit) {
  const Index n = x.cols();
  WPROJ_ASSERT(x.rows() == n);
  JacobiSVDResult out;
  const Eigen::MatrixXd xd = x.template cast<double>();
  Eigen::MatrixXd v;
  if (gramVectors) {
    v = *gramVectors;
  } else {
    Eigen::MatrixXd g = Eigen::MatrixXd::Zero(n, n);
    g.selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
    g.triangularView<Eigen::StrictlyUpper>() = g.transpose();
    const SymmetricEigen eig(g);
    if (eig.info() == Eigen::Success) v = eig.eigenvectors();
    else v = Eigen::MatrixXd::Identity(n, n);
  }
  Eigen::MatrixXd y = xd * v;
  const double tol = std::max(unit, std::sqrt(double(n)) * std::numeric_limits<double>::epsilon());
  if (!jacobiSweeps(y, v, tol)) out.info = Eigen::NoConvergence;

  Eigen::VectorXd norms(n);
  for (Index j = 0; j < n; ++j) norms(j) = y.col(j).norm();
  std::vector<Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Index(0));
  std::stable_sort(order.begin(), order.end(), [&](Index i, Index j) { return norms(i) > norms(j); });
  out.u.resize(n, n);
  out.v.resize(n, n);
  out.s.resize(n);
  Index good = 0;
  for (Index j = 0; j < n; ++j) {
    const Index c = order[std::size_t(j)];
    out.s(j) = norms(c);
    out.v.col(j) = v.col(c);
    if (norms(c) > 0) {
      out.u.col(j) = y.col(c) / norms(c);
      good = j + 1;
    }
  }
  // Zero singular values (sorted last): complete U with directions orthogonal to the others.
  for (Index j = good; j < n; ++j) {
    // The unit vector e_i farthest from span(u_0..u_{j−1}) (its residual is ≥ √((n−j)/n)).
    Eigen::MatrixXd cand = Eigen::MatrixXd::Identity(n, n);
    for (int pass = 0; pass < 2; ++pass) cand -= out.u.leftCols(j) * (out.u.leftCols(j).transpose() * cand);
    Index best = 0;
    cand.colwise().squaredNorm().maxCoeff(&best);
    out.u.col(j) = cand.col(best).normalized();
  }
  return out;
}

}  // namespace detail
}  // namespace wproj
