// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// `Subspace<Scalar>`: a k-dimensional subspace of Rⁿ held as an orthonormal basis Q (n×k), with
/// orthogonal projection onto it and off it (never forming the n×n projector unless asked),
/// orthogonal complement, sum, intersection, principal angles and the sign-free overlap.
///
/// Conventions
/// - Side: `Side::Left` applies P = QQᵀ as P·X (X has n rows); `Side::Right` as X·P (X has n
///   columns). The side is always an explicit argument.
/// - Rank rule (`tol < 0`, the default −1): SciPy's `orth` rule, a singular value s of the input
///   counts when s > eps·max(m, n)·s_max. `tol ≥ 0` is a relative tolerance: s > tol·s_max.
///   Any other negative tolerance is an error.
/// - Principal angles (Björck & Golub 1973) use cosines from the SVD of Q₁ᵀQ₂ for large angles
///   and sines from the SVD of (I − Q₁Q₁ᵀ)Q₂ for small ones (Knyazev & Argentati 2002), so
///   small angles are accurate to the unit roundoff rather than to its square root.

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "orthonormalize.hpp"

#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

namespace wproj {

namespace detail {

/// Validates a rank tolerance: −1 (the default rule) or a finite value ≥ 0.
template <typename Real>
void checkTolerance(Real tol, const char* where, const char* name = "tol") {
  requireArg(std::isfinite(static_cast<double>(tol)) && (tol >= Real(0) || tol == Real(-1)), where, name,
             static_cast<double>(tol), "-1 (default rule) or a finite value >= 0");
}

/// Number of singular values (sorted descending) that pass the rank rule of this file:
/// s > eps·max(m, n)·s_max when `tol < 0`, else s > tol·s_max. Zero for a zero matrix.
template <typename Real, typename V>
Index rankFromSingularValues(const Eigen::MatrixBase<V>& s, Index m, Index n, Real tol) {
  if (s.size() == 0) return 0;
  const Real smax = s(0);
  if (!(smax > Real(0))) return 0;
  const Real rel =
      tol < Real(0) ? std::numeric_limits<Real>::epsilon() * Real(std::max<Index>(m, n)) : tol;
  const Real thr = rel * smax;
  Index r = 0;
  while (r < s.size() && s(r) > thr) ++r;
  return r;
}

}  // namespace detail

/// A linear subspace of Rⁿ represented by an orthonormal basis Q (n×k, QᵀQ = I).
///
/// Projection never forms QQᵀ: `project` computes Q(QᵀX) (Left) or (XQ)Qᵀ (Right), i.e.
/// 4nkc flops for an n×c block instead of 2n²c.
///
/// Thread-safety: all `const` members except `projectTo` / `projectOutTo` may be called
/// concurrently. `projectTo` / `projectOutTo` reuse a mutable scratch buffer (so that repeated
/// calls with the same shapes do not allocate), hence one object must not be used by two threads
/// in those two members at once — give each thread its own copy.
/// Example:
/// \code
/// Eigen::MatrixXf a = Eigen::MatrixXf::Random(100, 5), w = Eigen::MatrixXf::Random(100, 40);
/// auto s = wproj::Subspace<float>::fromColumns(a);            // orthonormal basis of span(A)
/// Eigen::MatrixXf kept = s.project(w, wproj::Side::Left);      // Q(QᵀW)
/// Eigen::MatrixXf rest = s.projectOut(w, wproj::Side::Left);   // W − Q(QᵀW)
/// \endcode
template <typename Scalar_>
class Subspace {
  static_assert(!Eigen::NumTraits<Scalar_>::IsComplex && !Eigen::NumTraits<Scalar_>::IsInteger,
                "Subspace: real floating-point scalars only (float, double)");

 public:
  /// Floating-point type of the basis.
  using Scalar = Scalar_;
  /// Real type of principal angles (same as `Scalar`).
  using RealScalar = Scalar_;
  /// Dense matrix type of bases and projected blocks.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type (e.g. of principal angles).
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// The empty subspace of R⁰.
  Subspace() = default;

  /// The zero subspace {0} of Rⁿ (dimension 0, ambient dimension n).
  explicit Subspace(Index ambientDim) : m_basis(checkedDim(ambientDim), 0) {}

  /// The span of the columns of `q`, which must be orthonormal (n×k, k ≤ n, finite, with
  /// ‖QᵀQ − I‖_F ≤ √eps·max(1, √k)). The columns are stored as given (no re-orthonormalisation).
  static Subspace fromOrthonormal(const Eigen::Ref<const Matrix>& q) {
    const char* where = "Subspace::fromOrthonormal";
    requireArg(q.cols() <= q.rows(), where, "q.cols()", q.cols(),
               "<= q.rows() = " + std::to_string(q.rows()) + " (at most n orthonormal vectors in R^n)");
    checkFinite(q, where, "q");
    const Scalar err = orthogonalityError(q);
    const Scalar allowed =
        std::sqrt(std::numeric_limits<Scalar>::epsilon()) * std::max<Scalar>(Scalar(1), std::sqrt(Scalar(q.cols())));
    requireArg(err <= allowed, where, "||q^T q - I||_F", static_cast<double>(err),
               "<= " + detail::describe(static_cast<double>(allowed)) + " (orthonormal columns)");
    Subspace s;
    s.m_basis = q;
    return s;
  }

  /// The span of the columns of `a` (n×m): an orthonormal basis from the left singular vectors
  /// whose singular values pass the rank rule (SciPy `orth` when `tol < 0`, else s > tol·s_max).
  /// A zero or empty `a` gives the zero subspace of Rⁿ.
  template <typename Derived>
  static Subspace fromColumns(const Eigen::MatrixBase<Derived>& a, Scalar tol = Scalar(-1)) {
    return spanOf(a, tol, "Subspace::fromColumns");
  }

  /// The row space of `a` (m×n): the span of its rows, a subspace of Rⁿ (same rank rule).
  template <typename Derived>
  static Subspace fromRows(const Eigen::MatrixBase<Derived>& a, Scalar tol = Scalar(-1)) {
    return spanOf(a.transpose(), tol, "Subspace::fromRows");
  }

  /// n, the dimension of the space the subspace lives in.
  Index ambientDim() const { return m_basis.rows(); }
  /// k, the dimension of the subspace.
  Index dim() const { return m_basis.cols(); }
  /// True when the subspace is {0} (k = 0).
  bool empty() const { return m_basis.cols() == 0; }
  /// The orthonormal basis Q (n×k).
  const Matrix& basis() const { return m_basis; }

  /// Orthogonal projection onto the subspace: Q(QᵀX) for `Side::Left`, (XQ)Qᵀ for `Side::Right`.
  template <typename Derived>
  Matrix project(const Eigen::MatrixBase<Derived>& x, Side side) const {
    checkSide(x, side, "Subspace::project");
    if (side == Side::Left) {
      const Matrix c = m_basis.transpose() * x;
      return m_basis * c;
    }
    const Matrix c = x * m_basis;
    return c * m_basis.transpose();
  }

  /// Projection off the subspace: X − Q(QᵀX) (Left) or X − (XQ)Qᵀ (Right).
  template <typename Derived>
  Matrix projectOut(const Eigen::MatrixBase<Derived>& x, Side side) const {
    checkSide(x, side, "Subspace::projectOut");
    Matrix out = x;
    if (side == Side::Left) {
      const Matrix c = m_basis.transpose() * out;
      out.noalias() -= m_basis * c;
    } else {
      const Matrix c = out * m_basis;
      out.noalias() -= c * m_basis.transpose();
    }
    return out;
  }

  /// `out = project(x, side)` without heap allocation once an internal coordinates buffer has
  /// grown to the largest shape used (k×cols for Left, rows×k for Right), for plain, `Map` and
  /// `Ref` operands. `out` must already have x's shape; it may be `x` itself. Not thread-safe
  /// on one object (see the class comment).
  template <typename Derived, typename OutDerived>
  void projectTo(const Eigen::MatrixBase<Derived>& x, Side side, Eigen::MatrixBase<OutDerived>& out) const {
    checkSide(x, side, "Subspace::projectTo");
    checkShape(out, x.rows(), x.cols(), "Subspace::projectTo", "out");
    if (side == Side::Left) {
      auto c = scratch(dim(), x.cols());
      c.noalias() = m_basis.transpose() * x;
      out.noalias() = m_basis * c;
    } else {
      auto c = scratch(x.rows(), dim());
      c.noalias() = x * m_basis;
      out.noalias() = c * m_basis.transpose();
    }
  }

  /// `out = projectOut(x, side)` without heap allocation after warm-up (as `projectTo`). `out`
  /// must already have x's shape; it may be `x` itself (in place: `s.projectOutTo(w, side, w)`)
  /// but must not partially overlap it.
  template <typename Derived, typename OutDerived>
  void projectOutTo(const Eigen::MatrixBase<Derived>& x, Side side, Eigen::MatrixBase<OutDerived>& out) const {
    checkSide(x, side, "Subspace::projectOutTo");
    checkShape(out, x.rows(), x.cols(), "Subspace::projectOutTo", "out");
    if (side == Side::Left) {
      auto c = scratch(dim(), x.cols());
      c.noalias() = m_basis.transpose() * x;  // read x completely before writing out
      if (!sameStorage(x, out)) out = x;
      out.noalias() -= m_basis * c;
    } else {
      auto c = scratch(x.rows(), dim());
      c.noalias() = x * m_basis;
      if (!sameStorage(x, out)) out = x;
      out.noalias() -= c * m_basis.transpose();
    }
  }

  /// Coordinates in the basis: QᵀX (k×c) for `Side::Left`, XQ (r×k) for `Side::Right`.
  template <typename Derived>
  Matrix coordinates(const Eigen::MatrixBase<Derived>& x, Side side) const {
    checkSide(x, side, "Subspace::coordinates");
    if (side == Side::Left) return m_basis.transpose() * x;
    return x * m_basis;
  }

  /// The explicit n×n orthogonal projector QQᵀ (only when a caller really needs the matrix).
  Matrix projector() const { return m_basis * m_basis.transpose(); }

  /// The orthogonal complement in Rⁿ (dimension n − k), from a Householder QR of Q.
  Subspace complement() const {
    const Index n = ambientDim(), k = dim();
    Subspace s;
    if (k == 0) {
      s.m_basis = Matrix::Identity(n, n);
      return s;
    }
    Eigen::HouseholderQR<Matrix> qr(m_basis);
    Matrix c = Matrix::Zero(n, n - k);
    c.bottomRows(n - k).setIdentity();
    c.applyOnTheLeft(qr.householderQ());
    s.m_basis = std::move(c);
    return s;
  }

  /// The sum span(Q₁) + span(Q₂) (span of the union): Q₁ extended by the directions of Q₂ whose
  /// principal angle to span(Q₁) has a sine above `tol` (default √eps, the same rule as
  /// `intersection`, so dim(sum) + dim(intersection) = k₁ + k₂ exactly).
  Subspace sum(const Subspace& other, Scalar tol = Scalar(-1)) const {
    const char* where = "Subspace::sum";
    checkSameAmbient(other, where);
    detail::checkTolerance(tol, where);
    if (other.empty()) return *this;
    if (empty()) return other;
    const Pairing p = pairWith(other);
    const Scalar t = tol < 0 ? defaultAngleTolerance() : tol;
    Index extra = 0;
    for (Index i = 0; i < p.sines.size(); ++i)
      if (p.sines(i) > t) ++extra;
    Subspace s;
    s.m_basis.resize(ambientDim(), dim() + extra);
    s.m_basis.leftCols(dim()) = m_basis;
    if (extra == 0) return s;
    Matrix w(ambientDim(), extra);
    for (Index i = 0, j = 0; i < p.sines.size(); ++i)
      if (p.sines(i) > t) w.col(j++) = p.residual.col(i) / p.sines(i);
    // Second Gram–Schmidt pass against Q₁, then an orthonormal basis of the new block.
    const Matrix c = m_basis.transpose() * w;
    w.noalias() -= m_basis * c;
    orthonormalizeInPlace(w, OrthoMethod::Householder);
    s.m_basis.rightCols(extra) = w;
    return s;
  }

  /// The intersection span(Q₁) ∩ span(Q₂): the principal vectors of `other` whose principal
  /// angle to this subspace has sin θ ≤ `tol` (default √eps; any other negative value is an
  /// error).
  Subspace intersection(const Subspace& other, Scalar tol = Scalar(-1)) const {
    const char* where = "Subspace::intersection";
    checkSameAmbient(other, where);
    detail::checkTolerance(tol, where);
    if (empty() || other.empty()) return Subspace(ambientDim());
    const Pairing p = pairWith(other);
    const Scalar t = tol < 0 ? defaultAngleTolerance() : tol;
    Index count = 0;
    for (Index i = 0; i < p.sines.size(); ++i)
      if (p.sines(i) <= t) ++count;
    Subspace s;
    s.m_basis.resize(ambientDim(), count);
    for (Index i = 0, j = 0; i < p.sines.size(); ++i)
      if (p.sines(i) <= t) s.m_basis.col(j++) = p.vectors.col(i);
    if (count > 0) orthonormalizeInPlace(s.m_basis, OrthoMethod::Householder);
    return s;
  }

  /// The min(k₁, k₂) principal angles between the two subspaces, in radians, ascending.
  /// Cosines are the singular values of Q₁ᵀQ₂; angles with cos² ≥ ½ are taken from the sines
  /// (singular values of (I − Q₁Q₁ᵀ)Q₂) instead, which keeps small angles accurate.
  Vector principalAngles(const Subspace& other) const {
    checkSameAmbient(other, "Subspace::principalAngles");
    const bool swap = other.dim() > dim();
    const Matrix& q1 = swap ? other.m_basis : m_basis;  // the larger one
    const Matrix& q2 = swap ? m_basis : other.m_basis;
    const Index k = q2.cols();
    Vector angles(k);
    if (k == 0) return angles;
    const Matrix c = q1.transpose() * q2;
    Matrix r = q2;
    r.noalias() -= q1 * c;
    const Vector cosines = Eigen::BDCSVD<Matrix>(c).singularValues();  // descending
    const Vector sines = Eigen::BDCSVD<Matrix>(r).singularValues();    // descending
    for (Index i = 0; i < k; ++i) {
      const Scalar cs = std::min<Scalar>(Scalar(1), cosines(i));
      const Scalar sn = std::min<Scalar>(Scalar(1), sines(k - 1 - i));
      angles(i) = cs * cs >= Scalar(0.5) ? std::asin(sn) : std::acos(cs);
    }
    // Rounding may break monotonicity at the switch between the two formulas.
    std::sort(angles.data(), angles.data() + k);
    return angles;
  }

  /// The sign-free overlap ‖Q₁ᵀQ₂‖²_F / max(1, min(k₁, k₂)), in [0, 1]: 1 when one subspace
  /// contains the other, 0 when they are orthogonal. Compare bases with it, never by one vector.
  Scalar overlap(const Subspace& other) const {
    checkSameAmbient(other, "Subspace::overlap");
    const Scalar v = (m_basis.transpose() * other.m_basis).squaredNorm() /
                     Scalar(std::max<Index>(1, std::min(dim(), other.dim())));
    return std::min<Scalar>(Scalar(1), v);
  }

 private:
  Matrix m_basis;            // n×k, orthonormal columns
  mutable Vector m_scratch;  // coordinates buffer of projectTo / projectOutTo; only grows

  /// A rows×cols view of the scratch buffer, grown (the only allocation) when too small, so
  /// that any mix of shapes up to the largest seen so far runs without allocating.
  Eigen::Map<Matrix> scratch(Index rows, Index cols) const {
    if (m_scratch.size() < rows * cols) m_scratch.resize(rows * cols);
    return Eigen::Map<Matrix>(m_scratch.data(), rows, cols);
  }

  /// Principal pairing with `other`: for each right singular vector v_i of Q₁ᵀQ₂ (Q₁ = this),
  /// the vector Q₂v_i, its residual (I − Q₁Q₁ᵀ)Q₂v_i and that residual's norm sin θ_i.
  struct Pairing {
    Matrix vectors;
    Matrix residual;
    Vector sines;
  };

  Pairing pairWith(const Subspace& other) const {
    const Matrix c = m_basis.transpose() * other.m_basis;  // k1×k2
    Eigen::BDCSVD<Matrix> svd(c, Eigen::ComputeFullV);
    Pairing p;
    p.vectors.noalias() = other.m_basis * svd.matrixV();
    p.residual = p.vectors;
    const Matrix cv = m_basis.transpose() * p.vectors;
    p.residual.noalias() -= m_basis * cv;
    p.sines = p.residual.colwise().norm().transpose();
    return p;
  }

  static Index checkedDim(Index n) {
    requireArg(n >= 0, "Subspace::Subspace", "ambientDim", n, ">= 0");
    return n;
  }

  static Scalar defaultAngleTolerance() { return std::sqrt(std::numeric_limits<Scalar>::epsilon()); }

  template <typename Derived>
  static Subspace spanOf(const Eigen::MatrixBase<Derived>& a, Scalar tol, const char* where) {
    detail::checkTolerance(tol, where);
    const Matrix am = a;  // evaluate expressions (e.g. products) once, before any coefficient access
    checkFinite(am, where, "a");
    const Index n = am.rows(), m = am.cols();
    Subspace s(n);
    if (n == 0 || m == 0) return s;
    Eigen::BDCSVD<Matrix> svd(am, Eigen::ComputeThinU);
    const Index r = detail::rankFromSingularValues(svd.singularValues(), n, m, tol);
    s.m_basis = svd.matrixU().leftCols(r);
    return s;
  }

  template <typename Derived>
  void checkSide(const Eigen::MatrixBase<Derived>& x, Side side, const char* where) const {
    if (side == Side::Left)
      requireArg(x.rows() == ambientDim(), where, "x.rows()", x.rows(),
                 "== ambientDim() = " + std::to_string(ambientDim()) + " for Side::Left (P X)");
    else
      requireArg(x.cols() == ambientDim(), where, "x.cols()", x.cols(),
                 "== ambientDim() = " + std::to_string(ambientDim()) + " for Side::Right (X P)");
  }

  void checkSameAmbient(const Subspace& other, const char* where) const {
    requireArg(other.ambientDim() == ambientDim(), where, "other.ambientDim()", other.ambientDim(),
               "== ambientDim() = " + std::to_string(ambientDim()));
  }

  template <typename A, typename B>
  static bool sameStorage(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
    if constexpr (bool(Eigen::internal::traits<A>::Flags & Eigen::DirectAccessBit) &&
                  bool(Eigen::internal::traits<B>::Flags & Eigen::DirectAccessBit)) {
      return static_cast<const void*>(a.derived().data()) == static_cast<const void*>(b.derived().data()) &&
             a.derived().outerStride() == b.derived().outerStride() &&
             a.derived().innerStride() == b.derived().innerStride() &&
             bool(A::IsRowMajor) == bool(B::IsRowMajor);
    } else {
      return false;
    }
  }
};

}  // namespace wproj
