// Shared helpers for wproj's tests.
#pragma once

#include <stdexcept>

// Internal asserts become exceptions in tests, so misuse is observable.
#define WPROJ_ASSERT(cond) \
  do { if (!(cond)) throw std::logic_error("WPROJ_ASSERT failed: " #cond); } while (0)

#include <catch2/catch.hpp>
#include <wproj/core/config.hpp>
#include <wproj/core/random.hpp>

#include <Eigen/Dense>
#include <Eigen/SVD>

#include <cmath>
#include <cstdint>
#include <limits>

namespace wproj_test {

using wproj::Index;

template <typename T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <typename T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
using RowMajorMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Unit roundoff of T.
template <typename T>
constexpr double eps() {
  return std::numeric_limits<T>::epsilon() / 2.0;
}

/// A seeded m×n Gaussian matrix.
template <typename T>
Mat<T> gaussian(Index m, Index n, std::uint64_t seed) {
  return wproj::gaussianMatrix<Mat<T>>(m, n, seed);
}

/// An m×k matrix with orthonormal columns (computed in double, then cast).
template <typename T>
Mat<T> randomOrthonormal(Index m, Index k, std::uint64_t seed) {
  Mat<double> g = wproj::gaussianMatrix<Mat<double>>(m, k, seed);
  Eigen::HouseholderQR<Mat<double>> qr(g);
  Mat<double> q = qr.householderQ() * Mat<double>::Identity(m, k);
  return q.cast<T>();
}

/// U diag(sigma) Vᵀ with random orthonormal U (m×r) and V (n×r), r = sigma.size(); built in
/// double so that its singular values are exactly known up to double rounding.
template <typename T>
Mat<T> withSpectrum(Index m, Index n, const Vec<double>& sigma, std::uint64_t seed) {
  const Index r = sigma.size();
  const Mat<double> u = randomOrthonormal<double>(m, r, seed);
  const Mat<double> v = randomOrthonormal<double>(n, r, seed + 1000003);
  return (u * sigma.asDiagonal() * v.transpose()).cast<T>();
}

/// Geometric spectrum from 1 down to 1/cond over r values.
inline Vec<double> geometricSpectrum(Index r, double cond) {
  Vec<double> s(r);
  for (Index i = 0; i < r; ++i) s(i) = r == 1 ? 1.0 : std::pow(cond, -double(i) / double(r - 1));
  return s;
}

/// Optimal rank-k Frobenius error (Eckart–Young) of a matrix with singular values s.
inline double tailNorm(const Vec<double>& s, Index k) {
  return k >= s.size() ? 0.0 : std::sqrt(s.tail(s.size() - k).squaredNorm());
}

/// ‖QᵀQ − I‖_F computed in double.
template <typename Derived>
double orthoError(const Eigen::MatrixBase<Derived>& q) {
  const Mat<double> qd = q.template cast<double>();
  return (qd.transpose() * qd - Mat<double>::Identity(qd.cols(), qd.cols())).norm();
}

/// Sign-free overlap ‖AᵀB‖²_F / k of two k-column orthonormal bases, computed in double.
template <typename DA, typename DB>
double overlap(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b) {
  const Mat<double> ad = a.template cast<double>(), bd = b.template cast<double>();
  return (ad.transpose() * bd).squaredNorm() / double(std::max<Index>(1, std::min(ad.cols(), bd.cols())));
}

}  // namespace wproj_test
