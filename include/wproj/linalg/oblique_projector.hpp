// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// `ObliqueProjector<Scalar>`: the rank-r correction of the identity P = I − ABᵀ (A, B: d×r),
/// optionally with a centre μ, i.e. the affine map r(x) = Px + (I − P)μ = x − ABᵀ(x − μ).
/// When BᵀA = I_r, P is an oblique projection: P² = P, it kills span(A) (PA = 0) and keeps the
/// null space of Bᵀ. With A = B = Q orthonormal it is the orthogonal projector I − QQᵀ.
///
/// This is the form of the LEACE concept eraser (Belrose, Schneider-Joseph, Ravfogel, Cotterell,
/// Raff, Biderman, "LEACE: Perfect linear concept erasure in closed form", NeurIPS 2023):
/// A = W⁺U ("proj_left"), B = WU ("proj_rightᵀ"), μ the mean of x ("bias").
///
/// Conventions (as `Subspace`)
/// - Side: `Side::Left` computes P·X (X has d rows); `Side::Right` computes X·P (X has d
///   columns). Note X·P ≠ X·Pᵀ for an oblique P: points stored as rows are mapped by `mapRows`
///   (x_i ← P x_i, i.e. X·Pᵀ), and a weight stored transposed is edited with `transposed()`.
/// - P is never formed as a d×d matrix unless `dense()` is asked for: P·X = X − A(BᵀX) costs
///   4drc flops for a d×c block.

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "subspace.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

namespace wproj {

/// The map x ↦ x − ABᵀ(x − μ) on Rᵈ (A, B: d×r; μ = 0 unless affine): an oblique projection
/// when BᵀA = I (`isIdempotent()`), the orthogonal one I − QQᵀ for A = B = Q (`fromSubspace`).
/// It holds the two factors and never forms the d×d matrix unless asked (`dense()`). The affine
/// form is the LEACE eraser of Belrose et al. (NeurIPS 2023); `composeAfter` / `composeBefore`
/// fold it into a linear layer y = Wx + b.
///
/// \code
/// // erase the span of A along the functionals Bᵀ (BᵀA = I), then fold into a layer's output
/// wproj::ObliqueProjector<double> p(a, b, mu);        // a, b: d×r; mu: d
/// Eigen::MatrixXd px = p.apply(x, wproj::Side::Left); // P·X, X: d×n
/// Eigen::MatrixXd w2 = w;                             // W: d×m (nn.Linear layout, d outputs)
/// Eigen::VectorXd b2 = bias;                          // d
/// p.composeAfter(w2, b2);                             // W ← PW, b ← Pb + (I − P)μ
/// \endcode
///
/// Thread-safety: as `Subspace` — `applyTo` / `applyInPlace` reuse a mutable scratch buffer, so
/// one object must not run them from two threads at once; all other `const` members may.
template <typename Scalar_>
class ObliqueProjector {
  static_assert(!Eigen::NumTraits<Scalar_>::IsComplex && !Eigen::NumTraits<Scalar_>::IsInteger,
                "ObliqueProjector: real floating-point scalars only (float, double)");

 public:
  /// Floating-point type of the factors.
  using Scalar = Scalar_;
  /// Dense matrix type of the factors and results.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type of the centre.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// The identity on R⁰ (d = 0, r = 0).
  ObliqueProjector() = default;

  /// The identity on Rᵈ (rank 0, linear).
  explicit ObliqueProjector(Index dim)
      : m_left(checkedDim(dim), 0), m_right(dim, 0), m_centre(Vector::Zero(dim)) {}

  /// The linear map P = I − left·rightᵀ; `left` and `right` are d×r and finite.
  ObliqueProjector(Matrix left, Matrix right) : m_left(std::move(left)), m_right(std::move(right)) {
    checkFactors("ObliqueProjector");
    m_centre = Vector::Zero(m_left.rows());
  }

  /// The affine map x ↦ x − left·rightᵀ(x − centre); `centre` has d entries.
  ObliqueProjector(Matrix left, Matrix right, Vector centre)
      : m_left(std::move(left)), m_right(std::move(right)), m_centre(std::move(centre)), m_affine(true) {
    const char* where = "ObliqueProjector";
    checkFactors(where);
    checkShape(m_centre, m_left.rows(), 1, where, "centre");
    checkFinite(m_centre, where, "centre");
  }

  /// The orthogonal projector I − QQᵀ off a subspace (A = B = Q; linear).
  static ObliqueProjector fromSubspace(const Subspace<Scalar>& subspace) {
    return ObliqueProjector(subspace.basis(), subspace.basis());
  }

  /// Ambient dimension d.
  Index dim() const { return m_left.rows(); }
  /// Number r of columns of each factor (the rank of I − P when both factors have full rank).
  Index rank() const { return m_left.cols(); }
  /// True when the map is the identity by construction (r = 0).
  bool empty() const { return m_left.cols() == 0; }
  /// The factor A (d×r): P kills its span when BᵀA = I.
  const Matrix& left() const { return m_left; }
  /// The factor B (d×r): Bᵀx are the coordinates the map removes (BᵀP = 0 when BᵀA = I).
  const Matrix& right() const { return m_right; }
  /// The centre μ (d; zero for a linear map).
  const Vector& centre() const { return m_centre; }
  /// True for the affine map x − ABᵀ(x − μ), false for the linear x − ABᵀx.
  bool affine() const { return m_affine; }

  /// The map at strength α: I − αABᵀ (same centre). α = 1 is this map, α = 0 the identity.
  ObliqueProjector scaled(double alpha) const {
    requireArg(std::isfinite(alpha), "ObliqueProjector::scaled", "alpha", alpha, "a finite value");
    ObliqueProjector p = *this;
    p.m_left *= Scalar(alpha);
    return p;
  }

  /// The transpose Pᵀ = I − BAᵀ (factors swapped; the centre is kept).
  ObliqueProjector transposed() const {
    ObliqueProjector p = *this;
    std::swap(p.m_left, p.m_right);
    return p;
  }

  /// The same map in another scalar type.
  template <typename NewScalar>
  ObliqueProjector<NewScalar> cast() const {
    using M = Eigen::Matrix<NewScalar, Eigen::Dynamic, Eigen::Dynamic>;
    using V = Eigen::Matrix<NewScalar, Eigen::Dynamic, 1>;
    if (m_affine) return ObliqueProjector<NewScalar>(M(m_left.template cast<NewScalar>()),
                                                     M(m_right.template cast<NewScalar>()),
                                                     V(m_centre.template cast<NewScalar>()));
    ObliqueProjector<NewScalar> p(M(m_left.template cast<NewScalar>()), M(m_right.template cast<NewScalar>()));
    return p;
  }

  /// The linear part applied to a matrix: P·X = X − A(BᵀX) (`Side::Left`) or X·P = X − (XA)Bᵀ
  /// (`Side::Right`).
  template <typename Derived>
  Matrix apply(const Eigen::MatrixBase<Derived>& x, Side side) const {
    checkSide(x, side, "ObliqueProjector::apply");
    Matrix out = x;
    if (empty()) return out;
    if (side == Side::Left) {
      const Matrix c = m_right.transpose() * out;
      out.noalias() -= m_left * c;
    } else {
      const Matrix c = out * m_left;
      out.noalias() -= c * m_right.transpose();
    }
    return out;
  }

  /// `out = apply(x, side)` into caller storage (`out` already shaped like x; it may be x itself
  /// but must not partially overlap it). No heap allocation once the coefficient buffer has grown
  /// to the largest shape used (r×cols for Left, rows×r for Right).
  template <typename Derived, typename OutDerived>
  void applyTo(const Eigen::MatrixBase<Derived>& x, Side side, Eigen::MatrixBase<OutDerived>& out) const {
    const char* where = "ObliqueProjector::applyTo";
    checkSide(x, side, where);
    checkShape(out, x.rows(), x.cols(), where, "out");
    const bool same = sameStorage(x, out);
    if (empty()) {
      if (!same) out = x;
      return;
    }
    if (side == Side::Left) {
      auto c = scratch(rank(), x.cols());
      c.noalias() = m_right.transpose() * x;  // read x completely before writing out
      if (!same) out = x;
      out.noalias() -= m_left * c;
    } else {
      auto c = scratch(x.rows(), rank());
      c.noalias() = x * m_left;
      if (!same) out = x;
      out.noalias() -= c * m_right.transpose();
    }
  }

  /// `x ← apply(x, side)` on any writable dense expression (Matrix, Map, Block).
  template <typename Derived>
  void applyInPlace(Eigen::MatrixBase<Derived>& x, Side side) const {
    applyTo(x, side, x);
  }

  /// The coefficients `apply` subtracts: BᵀX (r×c) for `Side::Left` (P·X = X − A·BᵀX), XA (n×r)
  /// for `Side::Right` (X·P = X − XA·Bᵀ).
  template <typename Derived>
  Matrix coordinates(const Eigen::MatrixBase<Derived>& x, Side side) const {
    checkSide(x, side, "ObliqueProjector::coordinates");
    if (side == Side::Left) return m_right.transpose() * x;
    return x * m_left;
  }

  /// The (affine) map applied to every column of x (d×n): x_j ← x_j − ABᵀ(x_j − μ).
  template <typename Derived>
  Matrix mapColumns(const Eigen::MatrixBase<Derived>& x) const {
    checkShape(x, dim(), -1, "ObliqueProjector::mapColumns", "x");
    Matrix out = x;
    if (empty()) return out;
    Matrix c;
    if (m_affine) c.noalias() = m_right.transpose() * (out.colwise() - m_centre);
    else c.noalias() = m_right.transpose() * out;
    out.noalias() -= m_left * c;
    return out;
  }

  /// The (affine) map applied to every row of x (n×d), i.e. to points stored as rows:
  /// x_i ← x_i − ABᵀ(x_i − μ), which is X·Pᵀ + 1μᵀ(I − P)ᵀ.
  template <typename Derived>
  Matrix mapRows(const Eigen::MatrixBase<Derived>& x) const {
    checkShape(x, -1, dim(), "ObliqueProjector::mapRows", "x");
    Matrix out = x;
    if (empty()) return out;
    Matrix centred = out;
    if (m_affine) centred.rowwise() -= m_centre.transpose();
    const Matrix c = centred * m_right;  // n×r
    out.noalias() -= c * m_left.transpose();
    return out;
  }

  /// Folds the map into the layer before it, y = Wx + b ↦ r(y): W ← PW and b ← Pb + (I − P)μ,
  /// both in place. `storage` = `Side::Left`: w is W (d×in, `nn.Linear` layout); `Side::Right`:
  /// w holds Wᵀ (in×d, GPT-2 `Conv1D` layout) and becomes WᵀPᵀ. b has d entries.
  template <typename DW, typename DB>
  void composeAfter(Eigen::MatrixBase<DW>& w, Eigen::MatrixBase<DB>& b, Side storage = Side::Left) const {
    const char* where = "ObliqueProjector::composeAfter";
    checkShape(w, storage == Side::Left ? dim() : -1, storage == Side::Left ? -1 : dim(), where, "w");
    checkShape(b, dim(), 1, where, "b");
    if (storage == Side::Left) applyInPlace(w, Side::Left);
    else transposed().applyInPlace(w, Side::Right);
    b.derived() = mapColumns(b);
  }

  /// Folds the map into the layer after it, y = W·r(x) + b: W ← WP and b ← b + W(I − P)μ
  /// (= b + (WA)(Bᵀμ), with the W before the edit), both in place. w is W (out×d, `nn.Linear`
  /// layout); b has one entry per output. A linear map leaves b unchanged.
  template <typename DW, typename DB>
  void composeBefore(Eigen::MatrixBase<DW>& w, Eigen::MatrixBase<DB>& b) const {
    const char* where = "ObliqueProjector::composeBefore";
    checkShape(w, -1, dim(), where, "w");
    checkShape(b, w.rows(), 1, where, "b");
    if (empty()) return;
    if (m_affine) {
      const Vector shift = m_right.transpose() * m_centre;  // r
      const Vector wa = (w * m_left) * shift;
      b.derived() += wa;
    }
    applyInPlace(w, Side::Right);
  }

  /// ‖P² − P‖_F = ‖A(BᵀA − I)Bᵀ‖_F, computed from r×r Gram matrices (O(dr²), no d×d matrix).
  Scalar idempotencyError() const {
    if (empty()) return Scalar(0);
    Matrix c = m_right.transpose() * m_left;  // BᵀA
    c.diagonal().array() -= Scalar(1);
    const Matrix ga = m_left.transpose() * m_left, gb = m_right.transpose() * m_right;
    const Matrix t = c.transpose() * ga * c;  // ‖ACBᵀ‖² = tr(Cᵀ AᵀA C BᵀB)
    const Scalar sq = t.cwiseProduct(gb).sum();
    return std::sqrt(std::max(sq, Scalar(0)));
  }

  /// True when P² = P within `tol`·max(1, ‖ABᵀ‖_F) (tol < 0: the default √eps; any other
  /// negative value is an error). False e.g. for a map at strength α ∉ {0, 1}.
  bool isIdempotent(Scalar tol = Scalar(-1)) const {
    detail::checkTolerance(tol, "ObliqueProjector::isIdempotent");
    const Scalar t = tol < 0 ? std::sqrt(std::numeric_limits<Scalar>::epsilon()) : tol;
    if (empty()) return true;
    const Matrix ga = m_left.transpose() * m_left, gb = m_right.transpose() * m_right;
    const Scalar scale = std::sqrt(std::max(ga.cwiseProduct(gb).sum(), Scalar(0)));  // ‖ABᵀ‖_F
    return idempotencyError() <= t * std::max(Scalar(1), scale);
  }

  /// The explicit d×d matrix P = I − ABᵀ (only when a caller really needs it).
  Matrix dense() const {
    Matrix p = -m_left * m_right.transpose();
    p.diagonal().array() += Scalar(1);
    return p;
  }

 private:
  Matrix m_left, m_right;   // d×r each
  Vector m_centre;          // d; zero unless affine
  bool m_affine = false;
  mutable Vector m_scratch;  // coefficients of applyTo; only grows

  static Index checkedDim(Index d) {
    requireArg(d >= 0, "ObliqueProjector", "dim", d, ">= 0");
    return d;
  }

  void checkFactors(const char* where) const {
    checkShape(m_right, m_left.rows(), m_left.cols(), where, "right");
    checkFinite(m_left, where, "left");
    checkFinite(m_right, where, "right");
  }

  Eigen::Map<Matrix> scratch(Index rows, Index cols) const {
    if (m_scratch.size() < rows * cols) m_scratch.resize(rows * cols);
    return Eigen::Map<Matrix>(m_scratch.data(), rows, cols);
  }

  template <typename Derived>
  void checkSide(const Eigen::MatrixBase<Derived>& x, Side side, const char* where) const {
    if (side == Side::Left)
      requireArg(x.rows() == dim(), where, "x.rows()", x.rows(),
                 "== dim() = " + std::to_string(dim()) + " for Side::Left (P X)");
    else
      requireArg(x.cols() == dim(), where, "x.cols()", x.cols(),
                 "== dim() = " + std::to_string(dim()) + " for Side::Right (X P)");
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
