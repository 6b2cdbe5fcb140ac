// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Exact truncated SVD (the rank-selection rules `RankRule` live in rank_rule.hpp, included here).
///
/// `TruncatedSVD` computes the leading singular triplets of a dense matrix either through Eigen's
/// divide-and-conquer `BDCSVD` or through the eigendecomposition of the smaller Gram matrix
/// (AᵀA or AAᵀ, always accumulated in double precision), whichever the method choice and the
/// spectrum allow (see `SVDMethod`).
///
/// **Sign convention** (used by every SVD class of wproj: `TruncatedSVD`, `RandomizedSVD`,
/// `IncrementalSVD`): for every i, the entry of largest magnitude of the left singular vector u_i
/// is positive (the first such entry when several have the same magnitude), and v_i is flipped
/// together with u_i. Results are therefore reproducible across methods and runs up to rounding
/// (and up to the inherent non-uniqueness of vectors for repeated singular values).

#include "../core/config.hpp"
#include "orthonormalize.hpp"
#include "rank_rule.hpp"
#include "svd_base.hpp"
#include "symmetric_eigen.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

namespace wproj {

/// How `TruncatedSVD` computes the decomposition.
enum class SVDMethod {
  Auto,  ///< Gram when it is faster and its accuracy condition holds for the selected rank, else Bdc
  Bdc,   ///< Eigen's BDCSVD (divide and conquer on a bidiagonal form): backward stable for any spectrum
  Gram   ///< eigendecomposition of the smaller Gram matrix in double precision (accuracy caveat below)
};

/// Name of a method ("auto", "bdc", "gram").
inline const char* toString(SVDMethod m) {
  switch (m) {
    case SVDMethod::Auto: return "auto";
    case SVDMethod::Bdc: return "bdc";
    case SVDMethod::Gram: return "gram";
  }
  return "?";
}

namespace detail {

/// Applies wproj's sign convention to the first k columns of U (and V): the entry of largest
/// magnitude of each u_i becomes positive (first index on ties); v_i is flipped with u_i.
template <typename MU, typename MV>
void applySignConvention(Eigen::MatrixBase<MU>& u, Eigen::MatrixBase<MV>& v) {
  using Real = typename MU::RealScalar;
  for (Index j = 0; j < u.cols(); ++j) {
    Index best = 0;
    Real bestAbs = Real(-1);
    for (Index i = 0; i < u.rows(); ++i) {
      const Real a = std::abs(u.coeff(i, j));
      if (a > bestAbs) {
        bestAbs = a;
        best = i;
      }
    }
    if (u.rows() > 0 && u.coeff(best, j) < Real(0)) {
      u.col(j) = -u.col(j);
      if (j < v.cols()) v.col(j) = -v.col(j);
    }
  }
}

/// Completes the leading `good` orthonormal columns of x (m×k) with orthonormal directions
/// orthogonal to them, deterministically (Householder QR of [x_good, fixed pseudo-random block]).
template <typename MatrixT>
void completeOrthonormal(MatrixT& x, Index good) {
  using Scalar = typename MatrixT::Scalar;
  const Index m = x.rows(), k = x.cols();
  if (good >= k) return;
  MatrixT fill(m, k - good);
  for (Index j = 0; j < k - good; ++j)
    for (Index i = 0; i < m; ++i)
      fill(i, j) = Scalar(std::sin(1.0 + double(i) * 12.9898 + double(j) * 78.233 + double((i * 31 + j * 17) % 7)));
  if (good > 0) {
    // Remove the kept directions twice so the Householder step only has to complete.
    for (int pass = 0; pass < 2; ++pass) fill -= x.leftCols(good) * (x.leftCols(good).transpose() * fill);
  }
  MatrixT all(m, k);
  all.leftCols(good) = x.leftCols(good);
  all.rightCols(k - good) = fill;
  orthonormalizeInPlace(all, OrthoMethod::Householder);
  // Householder keeps the span (and, with diag(R) ≥ 0, the signs) of the leading columns;
  // keep the caller's good columns bit for bit.
  x.rightCols(k - good) = all.rightCols(k - good);
}

}  // namespace detail

template <typename MatrixType_>
class TruncatedSVD;

/// `SVDBase` traits of `TruncatedSVD` (its accessors assert that `compute()` ran).
template <typename MatrixType_>
struct SVDTraits<TruncatedSVD<MatrixType_>> {
  using MatrixType = MatrixType_;
  static constexpr bool ChecksComputed = true;
};

/// Exact truncated SVD A ≈ U_k Σ_k V_kᵀ of a dense matrix, with the rank chosen by a `RankRule`.
///
/// Methods (`setMethod`):
/// - `SVDMethod::Bdc`: Eigen's `BDCSVD` (thin U and V), backward stable.
/// - `SVDMethod::Gram`: with s = min(m, n), the s×s Gram matrix (AᵀA when m ≥ n, else AAᵀ) is
///   accumulated in double precision, diagonalised, and the other factor recovered as
///   U_k = A V_k Σ_k⁻¹ (then re-orthonormalised by one Cholesky-QR pass when needed).
///   Accuracy caveat: σ_i carries an absolute error ≈ u_d·σ_0²/σ_i (u_d = 1.1e-16) instead of
///   ≈ u·σ_0, so it is accurate when σ_k/σ_0 ≫ √u_d ≈ 1e-8; directions with σ_i below about
///   √u_d·σ_0 are noise (they are completed to an orthonormal set, their σ_i kept as computed).
/// - `SVDMethod::Auto` (default): Gram when it is faster (see docs/decompositions.md for the
///   measured crossover) and σ_k/σ_0 is large enough that its error stays within a small factor
///   of BDCSVD's (float: σ_k/σ_0 ≥ 1e-6; double: σ_k/σ_0 ≥ 1e-3); otherwise Bdc.
///
/// Signs follow wproj's convention (largest-magnitude entry of each u_i positive). Non-finite
/// inputs throw `InvalidArgument`. `info()` is `Success`, or `NoConvergence` when BDCSVD (or the
/// Gram route's eigensolver, when forced) reported a failure.
/// Example:
/// \code
/// Eigen::MatrixXd a = Eigen::MatrixXd::Random(300, 200);
/// wproj::TruncatedSVD<Eigen::MatrixXd> svd;
/// svd.setRankRule(wproj::RankRule::energy(0.9)).compute(a);
/// Eigen::MatrixXd approx = svd.reconstruct();  // U_k Σ_k V_kᵀ, k = svd.rank()
/// \endcode
template <typename MatrixType_>
class TruncatedSVD : public SVDBase<TruncatedSVD<MatrixType_>> {
  using Base = SVDBase<TruncatedSVD<MatrixType_>>;
  friend Base;

 public:
  using typename Base::Matrix;
  using typename Base::MatrixType;
  using typename Base::RealScalar;
  using typename Base::Scalar;
  using typename Base::Vector;
  using Base::info;
  using Base::matrixU;
  using Base::matrixV;
  using Base::rank;
  using Base::reconstruct;
  using Base::singularValues;

  /// An empty decomposition; set a rank or rule, then call `compute()`.
  TruncatedSVD() = default;

  /// Computes the leading `rank` singular triplets of `a`.
  template <typename Derived>
  TruncatedSVD(const Eigen::MatrixBase<Derived>& a, Index rank) {
    setRank(rank);
    compute(a);
  }

  /// Keeps k singular triplets (k ≥ 1; clamped to min(m, n)). Same as setRankRule(RankRule::fixed(k)).
  TruncatedSVD& setRank(Index k) {
    requireArg(k >= 1, "TruncatedSVD::setRank", "k", k, ">= 1");
    m_rule = RankRule::fixed(k);
    return *this;
  }
  /// Chooses the rank from the computed spectrum with `rule` (default: keep all min(m, n)).
  TruncatedSVD& setRankRule(const RankRule& rule) {
    m_rule = rule;
    return *this;
  }
  /// Selects the algorithm (default `SVDMethod::Auto`).
  TruncatedSVD& setMethod(SVDMethod method) {
    m_method = method;
    return *this;
  }

  /// The rank rule (default: keep all min(m, n)).
  const RankRule& rankRule() const { return m_rule; }
  /// The requested algorithm (`SVDMethod::Auto` unless set).
  SVDMethod method() const { return m_method; }
  /// The algorithm the last `compute()` used (Bdc or Gram).
  SVDMethod methodUsed() const { return m_used; }

  /// Computes the truncated SVD of `a` (any dense expression, row-major maps included).
  template <typename Derived>
  TruncatedSVD& compute(const Eigen::MatrixBase<Derived>& a) {
    if constexpr ((int(Eigen::internal::traits<Derived>::Flags) & Eigen::DirectAccessBit) == 0) {
      // An expression (−A, A + B, …): evaluate it once.
      const typename Derived::PlainObject evaluated = a;
      return compute(evaluated);
    }
    checkNonEmpty(a, "TruncatedSVD::compute", "a");
    checkFinite(a, "TruncatedSVD::compute", "a");
    m_rows = a.rows();
    m_cols = a.cols();
    m_info = Eigen::Success;
    const Index m = a.rows(), n = a.cols(), s = std::min(m, n), big = std::max(m, n);

    bool done = false;
    if (m_method == SVDMethod::Gram || (m_method == SVDMethod::Auto && gramIsFaster(big, s))) {
      done = computeGram(a, m_method == SVDMethod::Gram);
      if (done) m_used = SVDMethod::Gram;
    }
    if (!done) {
      computeBdc(a);
      m_used = SVDMethod::Bdc;
    }
    detail::applySignConvention(m_u, m_v);
    m_computed = true;
    return *this;
  }

  /// Rows m of the last decomposed matrix.
  Index rows() const { return m_rows; }
  /// Columns n of the last decomposed matrix.
  Index cols() const { return m_cols; }

  /// The Auto cost model: Gram is chosen when max(m, n) ≥ 2·min(m, n) or min(m, n) ≤ 160
  /// (measured, see docs/decompositions.md: BDCSVD's bidiagonalisation is BLAS-2 bound and grows
  /// with m·s², while the Gram route is a SYRK, an s×s symmetric eigensolver — which dominates
  /// for large square inputs — and a GEMM).
  static bool gramIsFaster(Index big, Index small) { return big >= 2 * small || small <= 160; }

 private:
  template <typename Derived>
  void computeBdc(const Eigen::MatrixBase<Derived>& a) {
    Eigen::BDCSVD<Matrix> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
    if (svd.info() != Eigen::Success) m_info = Eigen::NoConvergence;
    const Index k = m_rule.select(svd.singularValues());
    m_s = svd.singularValues().head(k);
    m_u = svd.matrixU().leftCols(k);
    m_v = svd.matrixV().leftCols(k);
  }

  /// The Gram route. Returns false (nothing computed) when `force` is false and the accuracy
  /// condition fails for the selected rank.
  template <typename Derived>
  bool computeGram(const Eigen::MatrixBase<Derived>& a, bool force) {
    const bool tall = a.rows() >= a.cols();  // Gram of the columns (n×n) when tall
    // Scale huge/tiny double inputs so the squares neither overflow nor underflow (float inputs
    // cannot: their squares always fit a double).
    double scale = 1.0;
    Eigen::MatrixXd g;
    if constexpr (std::is_same<RealScalar, double>::value) {
      const double maxAbs = double(a.cwiseAbs().maxCoeff());
      if (maxAbs > 0 && (maxAbs > 1e100 || maxAbs < 1e-100)) scale = 1.0 / maxAbs;
    }
    if (scale != 1.0)
      g = detail::gramInDouble(a.derived() * Scalar(scale), tall);
    else
      g = detail::gramInDouble(a, tall);
    const detail::SymmetricEigen eig(g);
    if (eig.info() != Eigen::Success) {
      if (force) m_info = Eigen::NoConvergence;
      return false;
    }
    const Index s = g.rows();
    Eigen::VectorXd sigma(s);
    for (Index i = 0; i < s; ++i) sigma(i) = std::sqrt(std::max(0.0, eig.eigenvalues()(s - 1 - i))) / scale;
    const Index k = m_rule.select(sigma);
    const double s0 = sigma(0);
    const double uD = unitRoundoff<double>(), uS = double(unitRoundoff<RealScalar>());
    if (!force && k > 0 && s0 > 0) {
      const double cut = std::is_same<RealScalar, float>::value ? 1e-6 : 1e-3;
      if (!(sigma(k - 1) >= cut * s0)) return false;
    }
    // Eigenvectors of the kept values, descending order.
    Matrix w(s, k);
    for (Index j = 0; j < k; ++j) w.col(j) = eig.eigenvectors().col(s - 1 - j).template cast<Scalar>();
    // Directions with σ_i below √(s·u_d)·σ_0 are not resolved by the Gram matrix.
    const double noise = std::sqrt(double(s) * uD) * s0 * 4.0;
    Index good = 0;
    while (good < k && sigma(good) > noise) ++good;
    Matrix other(tall ? a.rows() : a.cols(), k);
    if (good > 0) {
      if (tall)
        other.leftCols(good).noalias() = a.derived() * w.leftCols(good);
      else
        other.leftCols(good).noalias() = a.derived().transpose() * w.leftCols(good);
      for (Index j = 0; j < good; ++j) other.col(j) *= Scalar(1.0 / sigma(j));
      // Predicted loss of orthogonality of A W Σ⁻¹: rounding of the product plus the Gram error.
      const double ratio = s0 / sigma(good - 1);
      const double predicted = uS * ratio * std::sqrt(double(s)) + uD * ratio * ratio * double(s);
      if (predicted > 64.0 * uS) {
        Matrix block = other.leftCols(good);
        orthonormalizeInPlace(block, OrthoMethod::Auto);
        other.leftCols(good) = block;
      }
    }
    detail::completeOrthonormal(other, good);
    m_s = sigma.head(k).template cast<RealScalar>();
    if (tall) {
      m_v = std::move(w);
      m_u = std::move(other);
    } else {
      m_u = std::move(w);
      m_v = std::move(other);
    }
    return true;
  }

  RankRule m_rule;
  SVDMethod m_method = SVDMethod::Auto;
  SVDMethod m_used = SVDMethod::Bdc;
  using Base::m_computed;
  using Base::m_info;
  using Base::m_s;
  using Base::m_u;
  using Base::m_v;
  Index m_rows = 0, m_cols = 0;
};

// Names before 0.2.0 (see the naming rule in docs/index.md); they will be removed in 1.0.
using SvdMethod [[deprecated("renamed wproj::SVDMethod")]] = SVDMethod;

}  // namespace wproj
