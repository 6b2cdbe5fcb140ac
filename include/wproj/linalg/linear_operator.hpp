// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Matrix-free linear operators for the randomized decompositions.
///
/// A *linear operator* is any type `Op` with
/// ```
///   using Scalar = ...;                                   // float or double
///   Index rows() const;  Index cols() const;              // A is rows()×cols()
///   void multiply(const Matrix& x, Matrix& y) const;           // y = A x   (x: cols×b, y resized to rows×b)
///   void multiplyTranspose(const Matrix& x, Matrix& y) const;  // y = Aᵀ x  (x: rows×b, y resized to cols×b)
/// ```
/// where `Matrix = Eigen::Matrix<Scalar, Dynamic, Dynamic>` (column-major). `RandomizedSVD::computeOperator`
/// only ever touches A through these two products, always on blocks of many columns, so an
/// operator should implement them as GEMMs.
///
/// Adapters: `DenseOperator` (references a dense matrix or map, no copy), `SumOperator`
/// (A = Σ c_i M_i without forming the sum, e.g. a sum of task vectors) and `TransposedOperator`.

#include "../core/config.hpp"

#include <type_traits>
#include <utility>
#include <vector>

namespace wproj {

/// A dense matrix (any Eigen object with direct storage access: a Matrix, a row-major Map, a
/// Block…) seen as a linear operator. It stores a reference: the matrix must outlive the
/// operator. Expressions without storage are evaluated once into a plain matrix.
template <typename Derived>
class DenseOperator {
  static constexpr bool kDirect = (int(Eigen::internal::traits<Derived>::Flags) & Eigen::DirectAccessBit) != 0;
  using Stored = std::conditional_t<kDirect, const Derived&, const typename Derived::PlainObject>;

 public:
  /// Scalar type of the wrapped matrix.
  using Scalar = typename Derived::Scalar;
  /// Dense column-major block type of the products.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  /// Wraps `a` (by reference when it has direct storage, else evaluated once).
  explicit DenseOperator(const Eigen::MatrixBase<Derived>& a) : m_a(a.derived()) {}

  /// Rows m of A.
  Index rows() const { return m_a.rows(); }
  /// Columns n of A.
  Index cols() const { return m_a.cols(); }
  /// y = A x.
  void multiply(const Matrix& x, Matrix& y) const {
    y.resize(m_a.rows(), x.cols());
    y.noalias() = m_a * x;
  }
  /// y = Aᵀ x.
  void multiplyTranspose(const Matrix& x, Matrix& y) const {
    y.resize(m_a.cols(), x.cols());
    y.noalias() = m_a.transpose() * x;
  }
  /// The wrapped matrix.
  const auto& matrix() const { return m_a; }

 private:
  Stored m_a;
};

/// Wraps a dense matrix as a `DenseOperator` (by reference).
template <typename Derived>
DenseOperator<Derived> makeOperator(const Eigen::MatrixBase<Derived>& a) {
  return DenseOperator<Derived>(a);
}

/// A = Σ_i c_i M_i for dense matrices M_i of equal shape, applied term by term (the sum is never
/// formed): a sum of task vectors, a weight plus a low-rank update, … Terms are held by
/// reference: they must outlive the operator.
template <typename MatrixType>
class SumOperator {
 public:
  /// Scalar type of the terms and coefficients.
  using Scalar = typename MatrixType::Scalar;
  /// Dense column-major block type of the products.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  /// An operator with no terms (0×0).
  SumOperator() = default;

  /// Adds the term coeff·m (same shape as earlier terms). Returns *this.
  SumOperator& add(const MatrixType& m, Scalar coeff = Scalar(1)) {
    checkNonEmpty(m, "SumOperator::add", "m");
    if (!m_terms.empty()) checkShape(m, rows(), cols(), "SumOperator::add", "m");
    requireArg(std::isfinite(double(coeff)), "SumOperator::add", "coeff", double(coeff), "a finite value");
    m_terms.emplace_back(coeff, &m);
    return *this;
  }

  /// Number of terms.
  Index size() const { return Index(m_terms.size()); }
  /// Rows of A (0 before the first term).
  Index rows() const { return m_terms.empty() ? 0 : m_terms.front().second->rows(); }
  /// Columns of A (0 before the first term).
  Index cols() const { return m_terms.empty() ? 0 : m_terms.front().second->cols(); }

  /// y = Σ c_i M_i x.
  void multiply(const Matrix& x, Matrix& y) const {
    y.setZero(rows(), x.cols());
    for (const auto& t : m_terms) y.noalias() += t.first * (*t.second * x);
  }
  /// y = Σ c_i M_iᵀ x.
  void multiplyTranspose(const Matrix& x, Matrix& y) const {
    y.setZero(cols(), x.cols());
    for (const auto& t : m_terms) y.noalias() += t.first * (t.second->transpose() * x);
  }
  /// The formed sum (for checks; defeats the purpose in production).
  Matrix toDense() const {
    Matrix s = Matrix::Zero(rows(), cols());
    for (const auto& t : m_terms) s += t.first * *t.second;
    return s;
  }

 private:
  std::vector<std::pair<Scalar, const MatrixType*>> m_terms;
};

/// Aᵀ of an operator (held by reference).
template <typename Op>
class TransposedOperator {
 public:
  /// Scalar type of the wrapped operator.
  using Scalar = typename Op::Scalar;
  /// Dense column-major block type of the products.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Wraps `op` by reference; it must outlive this operator.
  explicit TransposedOperator(const Op& op) : m_op(op) {}
  /// Rows of Aᵀ (the columns of A).
  Index rows() const { return m_op.cols(); }
  /// Columns of Aᵀ (the rows of A).
  Index cols() const { return m_op.rows(); }
  /// y = Aᵀ x.
  void multiply(const Matrix& x, Matrix& y) const { m_op.multiplyTranspose(x, y); }
  /// y = A x.
  void multiplyTranspose(const Matrix& x, Matrix& y) const { m_op.multiply(x, y); }

 private:
  const Op& m_op;
};

namespace detail {
/// The dense matrix of an operator (A applied to the identity), for small exact fallbacks.
template <typename Op>
Eigen::Matrix<typename Op::Scalar, Eigen::Dynamic, Eigen::Dynamic> operatorToDense(const Op& op) {
  using Matrix = Eigen::Matrix<typename Op::Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Matrix y;
  if (op.cols() <= op.rows()) {
    op.multiply(Matrix::Identity(op.cols(), op.cols()), y);
    return y;
  }
  op.multiplyTranspose(Matrix::Identity(op.rows(), op.rows()), y);
  return y.transpose();
}
}  // namespace detail

}  // namespace wproj
