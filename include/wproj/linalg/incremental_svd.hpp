// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Incremental (updating) truncated SVD: Brand, "Fast low-rank modifications of the thin
/// singular value decomposition", Linear Algebra Appl. 415 (2006); appending columns is the
/// special case of Zha & Simon (1999).

#include "../core/config.hpp"
#include "orthonormalize.hpp"
#include "svd_base.hpp"
#include "truncated_svd.hpp"

#include <Eigen/Cholesky>
#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>

namespace wproj {

template <typename MatrixType_>
class IncrementalSVD;

/// `SVDBase` traits of `IncrementalSVD` (its accessors answer at any time: rank 0 before `initialize()`).
template <typename MatrixType_>
struct SVDTraits<IncrementalSVD<MatrixType_>> {
  using MatrixType = MatrixType_;
  static constexpr bool ChecksComputed = false;
};

/// Keeps a thin SVD X = U Σ Vᵀ (U: m×r, V: n×r) up to date under low-rank modifications:
/// `update(A, B)` for X ← X + ABᵀ, `appendColumns(C)` for X ← [X C], `appendRows(R)` for
/// X ← [X; R].
///
/// One update with c new columns: M = UᵀA, P_A = orth((I − UUᵀ)A) with P_A R_A = (I − UUᵀ)A
/// (column-pivoted Householder QR of the m×c residual, which deflates zero, in-span and
/// mutually dependent columns: P_A has as many columns ρ_A ≤ c as the residual has numerical
/// rank, and R_A (ρ_A×c) keeps every column's entries), likewise N, P_B, R_B for B; the small
/// (r+ρ_A)×(r+ρ_B) matrix K = [Σ 0; 0 0] + [M; R_A][N; R_B]ᵀ is diagonalised,
/// K = U_K Σ' V_Kᵀ, and U ← [U P_A]U_K, V ← [V P_B]V_K (GEMMs), then truncated to the maximal
/// rank and the tolerance. No inverse is ever formed.
///
/// The rotations accumulate rounding: every `reorthonormalizationPeriod()` updates (default 10)
/// U and V are re-orthonormalised without changing X: U = Q_U R_U, V = Q_V R_V (Cholesky QR),
/// then the SVD of the r×r core R_U Σ R_Vᵀ. `orthogonalityError()` reports the current loss.
/// Signs follow wproj's convention (largest-magnitude entry of each u_i positive). `info()` is
/// `Success`, or `NoConvergence` if a small SVD failed.
/// Example:
/// \code
/// Eigen::MatrixXd x = Eigen::MatrixXd::Random(500, 20);
/// wproj::IncrementalSVD<Eigen::MatrixXd> inc;
/// inc.setMaxRank(10).initialize(x);
/// inc.appendColumns(Eigen::MatrixXd::Random(500, 5));  // X ← [X C], rank ≤ 10
/// Eigen::MatrixXd u = inc.matrixU();
/// \endcode
template <typename MatrixType_>
class IncrementalSVD : public SVDBase<IncrementalSVD<MatrixType_>> {
  using Base = SVDBase<IncrementalSVD<MatrixType_>>;
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

  /// An uninitialised tracker: call `initialize()` first.
  IncrementalSVD() = default;

  /// Keeps at most k triplets after every update (k ≥ 1), or −1 (default) for no limit.
  IncrementalSVD& setMaxRank(Index k) {
    requireArg(k >= 1 || k == -1, "IncrementalSVD::setMaxRank", "k", k, ">= 1, or -1 for no limit");
    m_maxRank = k;
    return *this;
  }
  /// Drops singular values ≤ relTol·σ_0 after every update (0 ≤ relTol < 1). The default −1
  /// drops only numerically zero values (≤ 8·u·max(m, n)·σ_0).
  IncrementalSVD& setTolerance(double relTol) {
    requireArg((std::isfinite(relTol) && relTol >= 0.0 && relTol < 1.0) || relTol == -1.0, "IncrementalSVD::setTolerance",
               "relTol", relTol, "a value in [0, 1), or -1 for the default");
    m_tolerance = relTol;
    return *this;
  }
  /// Re-orthonormalises U and V every p updates (p ≥ 1), or never (p = 0). Default 10.
  IncrementalSVD& setReorthonormalizationPeriod(Index p) {
    requireArg(p >= 0, "IncrementalSVD::setReorthonormalizationPeriod", "p", p, ">= 0");
    m_period = p;
    return *this;
  }

  /// The rank cap (−1 = no limit).
  Index maxRank() const { return m_maxRank; }
  /// The relative truncation tolerance (−1 = the default).
  double tolerance() const { return m_tolerance; }
  /// Updates between re-orthonormalisations (0 = never).
  Index reorthonormalizationPeriod() const { return m_period; }

  /// Starts from X = 0 of shape rows×cols (rank 0).
  IncrementalSVD& initialize(Index rows, Index cols) {
    requireArg(rows >= 1, "IncrementalSVD::initialize", "rows", rows, ">= 1");
    requireArg(cols >= 0, "IncrementalSVD::initialize", "cols", cols, ">= 0");
    m_u.resize(rows, 0);
    m_v.resize(cols, 0);
    m_s.resize(0);
    m_updates = 0;
    m_sinceReortho = 0;
    m_initialized = true;
    return *this;
  }

  /// Starts from the (truncated) exact SVD of a.
  template <typename Derived>
  IncrementalSVD& initialize(const Eigen::MatrixBase<Derived>& a) {
    checkNonEmpty(a, "IncrementalSVD::initialize", "a");
    TruncatedSVD<Matrix> svd;
    svd.setMethod(SVDMethod::Bdc).compute(a);  // checks finiteness
    m_u = svd.matrixU();
    m_v = svd.matrixV();
    m_s = svd.singularValues();
    m_updates = 0;
    m_sinceReortho = 0;
    m_initialized = true;
    truncate();
    return *this;
  }

  /// X ← X + A Bᵀ with A (m×c) and B (n×c).
  template <typename DA, typename DB>
  IncrementalSVD& update(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b) {
    requireArg(m_initialized, "IncrementalSVD::update", "state", "uninitialised", "a call to initialize() first");
    checkShape(a, rows(), -1, "IncrementalSVD::update", "a");
    checkShape(b, cols(), a.cols(), "IncrementalSVD::update", "b");
    checkFinite(a, "IncrementalSVD::update", "a");
    checkFinite(b, "IncrementalSVD::update", "b");
    if (a.cols() == 0) return *this;
    const Index r = m_s.size(), c = a.cols();
    Matrix ra, rb, pa, pb;
    Matrix ma = residualBasis(m_u, Matrix(a), pa, ra);  // r×c, pa m×ρa, ra ρa×c
    Matrix nb = residualBasis(m_v, Matrix(b), pb, rb);  // r×c, pb n×ρb, rb ρb×c
    const Index rhoA = pa.cols(), rhoB = pb.cols();
    Matrix k = Matrix::Zero(r + rhoA, r + rhoB);
    k.topLeftCorner(r, r).diagonal() = m_s.template cast<Scalar>();
    Matrix left(r + rhoA, c), right(r + rhoB, c);
    left << ma, ra;
    right << nb, rb;
    k.noalias() += left * right.transpose();
    rotate(k, pa, pb);
    return *this;
  }

  /// X ← [X C] (c new columns, C m×c).
  template <typename Derived>
  IncrementalSVD& appendColumns(const Eigen::MatrixBase<Derived>& cols) {
    requireArg(m_initialized, "IncrementalSVD::appendColumns", "state", "uninitialised", "a call to initialize() first");
    checkShape(cols, rows(), -1, "IncrementalSVD::appendColumns", "cols");
    checkFinite(cols, "IncrementalSVD::appendColumns", "cols");
    const Index c = cols.cols();
    if (c == 0) return *this;
    appendImpl(m_u, m_v, Matrix(cols), false);
    return *this;
  }

  /// X ← [X; R] (c new rows, R c×n).
  template <typename Derived>
  IncrementalSVD& appendRows(const Eigen::MatrixBase<Derived>& newRows) {
    requireArg(m_initialized, "IncrementalSVD::appendRows", "state", "uninitialised", "a call to initialize() first");
    checkShape(newRows, -1, cols(), "IncrementalSVD::appendRows", "rows");
    checkFinite(newRows, "IncrementalSVD::appendRows", "rows");
    if (newRows.rows() == 0) return *this;
    appendImpl(m_v, m_u, Matrix(newRows.transpose()), true);
    return *this;
  }

  /// Re-orthonormalises U and V now, keeping X = UΣVᵀ (Cholesky QR of both, SVD of the core).
  IncrementalSVD& reorthonormalize() {
    requireArg(m_initialized, "IncrementalSVD::reorthonormalize", "state", "uninitialised", "a call to initialize() first");
    m_sinceReortho = 0;
    const Index r = m_s.size();
    if (r == 0) return *this;
    Matrix ru, rv;
    if (!choleskyFactor(m_u, ru) || !choleskyFactor(m_v, rv)) {
      // Severe loss of orthogonality: fall back to Householder.
      householderFactor(m_u, ru);
      householderFactor(m_v, rv);
    }
    const Matrix core = ru * m_s.template cast<Scalar>().asDiagonal() * rv.transpose();
    Eigen::BDCSVD<Matrix> svd(core, Eigen::ComputeFullU | Eigen::ComputeFullV);
    m_u = m_u * svd.matrixU();
    m_v = m_v * svd.matrixV();
    m_s = svd.singularValues();
    detail::applySignConvention(m_u, m_v);
    return *this;
  }

  /// Rows m of X.
  Index rows() const { return m_u.rows(); }
  /// Columns n of X.
  Index cols() const { return m_v.rows(); }
  /// Number of updates (appends included) since `initialize()`.
  Index updates() const { return m_updates; }
  /// max(‖UᵀU − I‖_F, ‖VᵀV − I‖_F) of the current factors (computed on demand, O((m+n)r²)).
  double orthogonalityError() const {
    return std::max(double(wproj::orthogonalityError(m_u)), double(wproj::orthogonalityError(m_v)));
  }

 private:
  /// Splits a (m×c) against the orthonormal basis u: returns M = uᵀa and sets p (m×ρ, orthonormal,
  /// orthogonal to u) and ra (ρ×c) with a = u·M + p·ra up to rounding; ρ ≤ c is the numerical
  /// rank of the residual (I − uuᵀ)a.
  ///
  /// Dependent columns (zero, inside span(u), or combinations of other new columns) are deflated
  /// by a column-pivoted Householder QR of the residual, (I − uuᵀ)a·Π = Q R: its diagonal is
  /// non-increasing and |R(j, j)| bounds the norm of what is left of every column after step j,
  /// so dropping the trailing rows whose diagonal is at rounding level (≤ 16·u·√m·max‖a_j‖)
  /// discards at most rounding. The kept rows keep every column's entries (a later column's
  /// component along an earlier direction included). A last block Gram–Schmidt pass against u
  /// (folded into M and ra, so the factorisation stays exact) removes the components along u that
  /// a nearly dependent column's direction picks up from rounding amplified by 1/R(j, j).
  static Matrix residualBasis(const Matrix& u, Matrix a, Matrix& p, Matrix& ra) {
    const Index m = a.rows(), c = a.cols();
    const double scale = c > 0 ? double(a.colwise().norm().maxCoeff()) : 0.0;
    Matrix mc = Matrix::Zero(u.cols(), c);
    if (u.cols() > 0) {
      for (int pass = 0; pass < 2; ++pass) {
        const Matrix coeff = u.transpose() * a;
        a.noalias() -= u * coeff;
        mc += coeff;
      }
    }
    const double negligible = 16.0 * double(unitRoundoff<RealScalar>()) * std::sqrt(double(m)) * scale;
    Eigen::ColPivHouseholderQR<Matrix> qr(a);
    const Index kc = std::min(m, c);
    Index rho = 0;
    while (rho < kc && double(std::abs(qr.matrixQR()(rho, rho))) > negligible) ++rho;
    p.resize(m, rho);
    ra.resize(rho, c);
    if (rho == 0) return mc;
    // ra = R(0:ρ, :)·Πᵀ, i.e. column Π(j) of a gets column j of R.
    const Matrix r = qr.matrixQR().topRows(rho).template triangularView<Eigen::Upper>();
    const auto& perm = qr.colsPermutation().indices();
    for (Index j = 0; j < c; ++j) ra.col(perm(j)) = r.col(j);
    p.setIdentity();
    p.applyOnTheLeft(qr.householderQ());
    if (u.cols() > 0) {
      // p ← p − u(uᵀp) = p₂ R₂: a = u(M + (uᵀp)ra) + p₂(R₂ ra).
      const Matrix coeff = u.transpose() * p;
      p.noalias() -= u * coeff;
      mc.noalias() += coeff * ra;
      Matrix r2;
      householderFactor(p, r2);
      ra = (r2 * ra).eval();
    }
    return mc;
  }

  /// In place: x ← Q (thin, diag(R) ≥ 0) and r ← R with x_in = Q R (Householder).
  static void householderFactor(Matrix& x, Matrix& r) {
    const Index m = x.rows(), c = x.cols();
    const Index kc = std::min(m, c);
    Eigen::HouseholderQR<Matrix> qr(x);
    r = Matrix::Zero(c, c);
    r.topRows(kc) = qr.matrixQR().topRows(kc).template triangularView<Eigen::Upper>();
    Matrix q = Matrix::Identity(m, c);
    q.applyOnTheLeft(qr.householderQ());
    for (Index j = 0; j < kc; ++j)
      if (r(j, j) < Scalar(0)) {
        r.row(j) = -r.row(j);
        q.col(j) = -q.col(j);
      }
    x.swap(q);
  }

  /// In place: x ← x R⁻¹ with RᵀR = xᵀx (Cholesky QR, one pass); returns false on failure.
  static bool choleskyFactor(Matrix& x, Matrix& r) {
    const Matrix g = x.transpose() * x;
    Eigen::LLT<Matrix> llt(g);
    if (llt.info() != Eigen::Success) return false;
    r = llt.matrixU();
    if (!r.allFinite()) return false;
    Matrix y = x;
    r.template triangularView<Eigen::Upper>().template solveInPlace<Eigen::OnTheRight>(y);
    if (!y.allFinite()) return false;
    x.swap(y);
    return true;
  }

  /// [X C] with (u, v) = (U, V) (or, for rows, the transposed problem with (u, v) = (V, U)).
  void appendImpl(Matrix& u, Matrix& v, const Matrix& c, bool transposedProblem) {
    const Index r = m_s.size(), cc = c.cols();
    Matrix pa, ra;
    const Matrix ma = residualBasis(u, c, pa, ra);
    const Index rho = pa.cols();
    Matrix k = Matrix::Zero(r + rho, r + cc);  // [X C] = [U pa] K [V 0; 0 I]ᵀ
    k.topLeftCorner(r, r).diagonal() = m_s.template cast<Scalar>();
    k.topRightCorner(r, cc) = ma;
    k.bottomRightCorner(rho, cc) = ra;
    // v grows by cc rows: V' = [V 0; 0 I] V_K.
    const Index n = v.rows();
    Matrix vx = Matrix::Zero(n + cc, r + cc);
    vx.topLeftCorner(n, r) = v;
    vx.bottomRightCorner(cc, cc).setIdentity();
    if (!transposedProblem) {
      rotate(k, pa, Matrix(), &vx);
    } else {
      // Rows appended: X'ᵀ = [Xᵀ Rᵀ], so the roles of U and V swap: K describes Xᵀ.
      const Matrix kt = k.transpose();
      rotate(kt, Matrix(), pa, nullptr, &vx);
    }
  }

  /// Given the core K (in the basis [U pa] × [V pb], or the explicit extended bases), replaces
  /// U, Σ, V by the truncated SVD of the modified matrix.
  void rotate(const Matrix& k, const Matrix& pa, const Matrix& pb, const Matrix* vExt = nullptr,
              const Matrix* uExt = nullptr) {
    Matrix newU, newV;
    if (k.rows() == 0 || k.cols() == 0) {  // nothing in either basis (e.g. zero columns into rank 0)
      newU.resize(uExt ? uExt->rows() : m_u.rows(), 0);
      newV.resize(vExt ? vExt->rows() : m_v.rows(), 0);
      m_u.swap(newU);
      m_v.swap(newV);
      m_s.resize(0);
      ++m_updates;
      ++m_sinceReortho;
      return;
    }
    Eigen::BDCSVD<Matrix> svd(k, Eigen::ComputeFullU | Eigen::ComputeFullV);
    if (svd.info() != Eigen::Success) m_info = Eigen::NoConvergence;
    const Vector& s = svd.singularValues();
    const Index keep = keptRank(s);
    if (uExt) {
      newU.noalias() = *uExt * svd.matrixU().leftCols(keep);
    } else {
      Matrix ub(m_u.rows(), m_u.cols() + pa.cols());
      ub << m_u, pa;
      newU.noalias() = ub * svd.matrixU().leftCols(keep);
    }
    if (vExt) {
      newV.noalias() = *vExt * svd.matrixV().leftCols(keep);
    } else {
      Matrix vb(m_v.rows(), m_v.cols() + pb.cols());
      vb << m_v, pb;
      newV.noalias() = vb * svd.matrixV().leftCols(keep);
    }
    m_u.swap(newU);
    m_v.swap(newV);
    m_s = s.head(keep);
    ++m_updates;
    ++m_sinceReortho;
    if (m_period > 0 && m_sinceReortho >= m_period) reorthonormalize();
    else detail::applySignConvention(m_u, m_v);
  }

  Index keptRank(const Vector& s) const {
    if (s.size() == 0 || !(s(0) > RealScalar(0))) return 0;
    const double dims = double(std::max(m_u.rows(), m_v.rows()));
    const double rel = m_tolerance >= 0 ? m_tolerance : 8.0 * double(unitRoundoff<RealScalar>()) * dims;
    Index k = 0;
    while (k < s.size() && double(s(k)) > rel * double(s(0))) ++k;
    if (m_maxRank > 0) k = std::min(k, m_maxRank);
    return k;
  }

  void truncate() {
    const Index k = keptRank(m_s);
    m_u.conservativeResize(Eigen::NoChange, k);
    m_v.conservativeResize(Eigen::NoChange, k);
    m_s.conservativeResize(k);
  }

  Index m_maxRank = -1;
  double m_tolerance = -1;
  Index m_period = 10;
  using Base::m_info;
  using Base::m_s;
  using Base::m_u;
  using Base::m_v;
  Index m_updates = 0, m_sinceReortho = 0;
  bool m_initialized = false;
};

}  // namespace wproj
