// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Errors and checks: the three tiers of wproj's error model.
///
/// 1. Invalid arguments a caller can make throw a `wproj::Error` subclass whose message names
///    the argument, the value received and what was expected (`requireArg`, `checkFinite`, …):
///    `InvalidArgument` (a `std::invalid_argument`); malformed files and failed I/O throw `IoError`
///    and failed computations `NumericalError` (both `std::runtime_error`s); a call on an object
///    left unusable by an earlier failure throws `StateError` (a `std::logic_error`).
/// 2. Programmer misuse inside the library is caught by `WPROJ_ASSERT` in debug builds; a test
///    may define `WPROJ_ASSERT` before including wproj to turn it into an exception.
/// 3. Numerical outcomes are reported through `info()` (`Eigen::ComputationInfo`).

#include <Eigen/Core>

#include <cassert>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

#ifndef WPROJ_ASSERT
/// Debug-only check of an internal precondition (tier 2). Redefine before including wproj to
/// change its behaviour (e.g. to throw in tests).
#define WPROJ_ASSERT(cond) assert(cond)
#endif

namespace wproj {

/// Signed index type of rows, columns and counts (Eigen's `Eigen::Index`).
using Index = Eigen::Index;

/// Common base of every exception wproj throws, so `catch (const wproj::Error&)` catches them all.
///
/// It is deliberately not itself a `std::exception`: each concrete error derives from exactly one
/// standard exception class as well (DESIGN.md, "Errors"), so generic callers can catch the
/// standard tier (`std::invalid_argument`, `std::runtime_error`, `std::logic_error`) and
/// `catch (const std::exception&)` stays unambiguous.
class Error {
 public:
  virtual ~Error() = default;
  /// The message (the same text as the standard base's `what()`).
  virtual const char* what() const noexcept = 0;

 protected:
  Error() = default;
  Error(const Error&) = default;
  Error& operator=(const Error&) = default;
};

/// An argument a caller passed is invalid: wrong shape, out of range, non-finite, … (tier 1).
/// Also a `std::invalid_argument`.
class InvalidArgument : public std::invalid_argument, public Error {
 public:
  explicit InvalidArgument(const std::string& message) : std::invalid_argument(message) {}
  explicit InvalidArgument(const char* message) : std::invalid_argument(message) {}
  const char* what() const noexcept override { return std::invalid_argument::what(); }
};

/// A file or stream could not be read or written, or its content is malformed.
/// Also a `std::runtime_error`.
class IoError : public std::runtime_error, public Error {
 public:
  explicit IoError(const std::string& message) : std::runtime_error(message) {}
  explicit IoError(const char* message) : std::runtime_error(message) {}
  const char* what() const noexcept override { return std::runtime_error::what(); }
};

/// A computation cannot produce a meaningful result (e.g. a required factorisation failed and no
/// fallback exists). Recoverable numerical events are reported through `info()` instead.
/// Also a `std::runtime_error`.
class NumericalError : public std::runtime_error, public Error {
 public:
  explicit NumericalError(const std::string& message) : std::runtime_error(message) {}
  explicit NumericalError(const char* message) : std::runtime_error(message) {}
  const char* what() const noexcept override { return std::runtime_error::what(); }
};

/// An object is in a state in which the requested call cannot be served, whatever its arguments —
/// e.g. a stateful policy left unusable by an exception in the middle of an update, until a saved
/// state is loaded. Unlike `WPROJ_ASSERT` (tier 2) it is checked in every build, because the
/// state follows from an earlier runtime failure rather than from a bug. Also a `std::logic_error`.
class StateError : public std::logic_error, public Error {
 public:
  explicit StateError(const std::string& message) : std::logic_error(message) {}
  explicit StateError(const char* message) : std::logic_error(message) {}
  const char* what() const noexcept override { return std::logic_error::what(); }
};

namespace detail {

template <typename T>
std::string describe(const T& value) {
  std::ostringstream os;
  os.precision(std::numeric_limits<double>::max_digits10);
  os << value;
  return os.str();
}

inline std::string shapeString(Index rows, Index cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

}  // namespace detail

/// Throws `InvalidArgument` with the message "<where>: argument '<name>' = <value>; expected <expected>".
template <typename T>
[[noreturn]] void throwInvalid(const char* where, const char* name, const T& value, const std::string& expected) {
  throw InvalidArgument(std::string(where) + ": argument '" + name + "' = " + detail::describe(value) +
                        "; expected " + expected);
}

/// Checks a caller-supplied condition (tier 1); on failure throws `InvalidArgument` naming the
/// argument, its value and the expectation.
template <typename T>
void requireArg(bool condition, const char* where, const char* name, const T& value, const std::string& expected) {
  if (!condition) throwInvalid(where, name, value, expected);
}

/// True when every entry of x is finite. Walks x in its storage order: Eigen 3.4's
/// `allFinite()` visits the entries column by column, which strides through a row-major matrix
/// (a NumPy or PyTorch array seen in place) one cache line per entry.
template <typename Derived>
bool allFinite(const Eigen::DenseBase<Derived>& x) {
  if constexpr (bool(Derived::IsRowMajor)) return x.derived().transpose().allFinite();
  else return x.derived().allFinite();
}

/// Throws `InvalidArgument` unless every coefficient of `x` is finite.
template <typename Derived>
void checkFinite(const Eigen::DenseBase<Derived>& x, const char* where, const char* name) {
  if (allFinite(x)) return;  // the fast path; works on any expression (products included)
  const typename Derived::PlainObject d = x.derived();  // locate the offending entry
  for (Index j = 0; j < d.cols(); ++j) {
    for (Index i = 0; i < d.rows(); ++i) {
      if (!std::isfinite(static_cast<double>(d.coeff(i, j)))) {
        throw InvalidArgument(std::string(where) + ": argument '" + name + "' has a non-finite entry (" +
                              detail::describe(static_cast<double>(d.coeff(i, j))) + ") at (" +
                              std::to_string(i) + ", " + std::to_string(j) + "); expected finite values");
      }
    }
  }
}

/// Throws `InvalidArgument` unless `x` has at least one row and one column.
template <typename Derived>
void checkNonEmpty(const Eigen::EigenBase<Derived>& x, const char* where, const char* name) {
  if (x.rows() == 0 || x.cols() == 0) {
    throw InvalidArgument(std::string(where) + ": argument '" + name + "' has shape " +
                          detail::shapeString(x.rows(), x.cols()) + "; expected a non-empty matrix");
  }
}

/// Throws `InvalidArgument` unless `x` has shape rows×cols (a negative expected extent is not checked).
template <typename Derived>
void checkShape(const Eigen::EigenBase<Derived>& x, Index rows, Index cols, const char* where, const char* name) {
  if ((rows >= 0 && x.rows() != rows) || (cols >= 0 && x.cols() != cols)) {
    throw InvalidArgument(std::string(where) + ": argument '" + name + "' has shape " +
                          detail::shapeString(x.rows(), x.cols()) + "; expected " +
                          (rows >= 0 ? std::to_string(rows) : std::string("any")) + "x" +
                          (cols >= 0 ? std::to_string(cols) : std::string("any")));
  }
}

/// Unit roundoff of a scalar type (half the machine epsilon).
template <typename Scalar>
constexpr Scalar unitRoundoff() {
  return std::numeric_limits<Scalar>::epsilon() / Scalar(2);
}

}  // namespace wproj

#if defined(WPROJ_EXTERN_TEMPLATES) || defined(WPROJ_INSTANTIATE_EIGEN)
#include "eigen_instances.hpp"
#endif
