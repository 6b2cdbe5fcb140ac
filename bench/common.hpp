// Shared workloads of the wproj benchmarks (bench_svd, bench_dct, bench_gemm).
//
// The test matrices are built cheaply, without any SVD in setup, and with a known spectrum:
//   A = U diag(σ) Vᵀ + (I − UUᵀ) E (I − VVᵀ),
// U (m×R), V (n×R) orthonormal (CholeskyQR2 of Gaussian blocks), E Gaussian with entries of
// standard deviation noise/√max(m, n) (singular values of order `noise`). The noise is projected
// off span(U) and span(V), so the singular values of A are exactly σ together with those of the
// projected noise: the optimal rank-k error and the exact top-r subspaces are known in closed form.
// bench/peers/workloads.py builds the same matrices (same construction, NumPy's generator).
#pragma once

#include <benchmark/benchmark.h>
#include <wproj/core/random.hpp>
#include <wproj/linalg/orthonormalize.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>

namespace wproj_bench {

using wproj::Index;
using MatF = Eigen::MatrixXf;
using VecF = Eigen::VectorXf;

// Workload parameters (keep in step with bench/peers/workloads.py).
constexpr Index kRsvdM = 4096, kRsvdN = 4096, kRsvdSignalRank = 1024, kRsvdRank = 128, kRsvdOversampling = 10;
constexpr Index kGradM = 4096, kGradN = 11008, kGradSignalRank = 1024, kGradRank = 512;
constexpr double kGradDrift = 0.3;  // U1 = orth(U0 + drift·Z/√rows): each basis column moves by ≈ drift
constexpr double kNoise = 1e-4;
constexpr Index kDctN = 4096, kDctCols = 11008, kDctRank = 512;

/// σ_i = 1/i, i = 1..r.
inline Eigen::VectorXd powerLaw(Index r) {
  Eigen::VectorXd s(r);
  for (Index i = 0; i < r; ++i) s(i) = 1.0 / double(i + 1);
  return s;
}

/// An m×r matrix with orthonormal columns (Gaussian block, CholeskyQR2).
inline MatF orthonormal(Index m, Index r, std::uint64_t seed) {
  MatF q = wproj::gaussianMatrix<MatF>(m, r, seed);
  wproj::orthonormalizeInPlace(q);
  return q;
}

/// ‖x‖²_F accumulated in double.
template <typename Derived>
double squaredNormD(const Eigen::MatrixBase<Derived>& x) {
  double s = 0;
  for (Index j = 0; j < x.cols(); ++j) s += x.col(j).template cast<double>().squaredNorm();
  return s;
}

/// U diag(σ) Vᵀ + (I − UUᵀ)E(I − VVᵀ); returns the matrix and stores ‖projected noise‖²_F.
inline MatF withSpectrum(const MatF& u, const MatF& v, const Eigen::VectorXd& sigma, double noise, std::uint64_t seed,
                         double* noiseSquaredNorm) {
  const Index m = u.rows(), n = v.rows();
  MatF a = wproj::gaussianMatrix<MatF>(m, n, seed, 0, noise / std::sqrt(double(std::max(m, n))));
  {
    const MatF ute = u.transpose() * a;
    a.noalias() -= u * ute;
    const MatF ev = a * v;
    a.noalias() -= ev * v.transpose();
  }
  if (noiseSquaredNorm) *noiseSquaredNorm = squaredNormD(a);
  const MatF us = u * sigma.cast<float>().asDiagonal();
  a.noalias() += us * v.transpose();
  return a;
}

/// Overlap ‖Q1ᵀQ2‖²_F / min(k1, k2) of two orthonormal bases (sign-free, in [0, 1]), in double.
template <typename DA, typename DB>
double overlap(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b) {
  const Eigen::MatrixXd c = a.template cast<double>().transpose() * b.template cast<double>();
  return c.squaredNorm() / double(std::max<Index>(1, std::min(a.cols(), b.cols())));
}

/// The 4096×4096 rSVD test matrix: σ_i = 1/i (i ≤ 1024) plus noise at level 1e-4.
struct PowerLawMatrix {
  MatF a;
  Eigen::VectorXd sigma;
  double noiseSquaredNorm = 0;
  double squaredNorm = 0;

  PowerLawMatrix() : sigma(powerLaw(kRsvdSignalRank)) {
    const MatF u = orthonormal(kRsvdM, kRsvdSignalRank, 101), v = orthonormal(kRsvdN, kRsvdSignalRank, 102);
    a = withSpectrum(u, v, sigma, kNoise, 103, &noiseSquaredNorm);
    squaredNorm = sigma.squaredNorm() + noiseSquaredNorm;
  }
  /// Relative Frobenius error of the best rank-k approximation (exact: σ and the noise are known).
  double optimalError(Index k) const {
    return std::sqrt((sigma.tail(sigma.size() - k).squaredNorm() + noiseSquaredNorm) / squaredNorm);
  }
  /// ‖A − U diag(s) Vᵀ‖_F / ‖A‖_F.
  template <typename DU, typename DS, typename DV>
  double relativeError(const Eigen::MatrixBase<DU>& u, const Eigen::MatrixBase<DS>& s, const Eigen::MatrixBase<DV>& v) const {
    MatF r = a;
    const MatF us = u * s.asDiagonal();
    r.noalias() -= us * v.transpose();
    return std::sqrt(squaredNormD(r) / squaredNormD(a));
  }
  static const PowerLawMatrix& get() {
    static const PowerLawMatrix instance;
    return instance;
  }
};

/// A slowly drifting 4096×11008 gradient: G = U1 diag(σ) V1ᵀ + noise with σ_i = 1/i (i ≤ 1024),
/// U1 = orth(U0 + drift·Z/√m), V1 = orth(V0 + drift·Z'/√n). The previous refresh's basis is
/// U0[:, :r] (exact for the previous gradient), the exact top-r left subspace of G is U1[:, :r].
struct DriftingGradient {
  MatF g;
  MatF previousBasis;  // m×r
  MatF exactBasis;     // m×r

  DriftingGradient() {
    const Eigen::VectorXd sigma = powerLaw(kGradSignalRank);
    MatF u = orthonormal(kGradM, kGradSignalRank, 201), v = orthonormal(kGradN, kGradSignalRank, 202);
    previousBasis = u.leftCols(kGradRank);
    u += wproj::gaussianMatrix<MatF>(kGradM, kGradSignalRank, 203, 0, kGradDrift / std::sqrt(double(kGradM)));
    v += wproj::gaussianMatrix<MatF>(kGradN, kGradSignalRank, 204, 0, kGradDrift / std::sqrt(double(kGradN)));
    wproj::orthonormalizeInPlace(u);
    wproj::orthonormalizeInPlace(v);
    exactBasis = u.leftCols(kGradRank);
    g = withSpectrum(u, v, sigma, kNoise, 205, nullptr);
  }
  static const DriftingGradient& get() {
    static const DriftingGradient instance;
    return instance;
  }
};

/// Best-of-`reps` wall time (seconds) of f().
template <typename F>
double bestSeconds(F&& f, int reps) {
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

/// The plain GEMM rate (GFLOP/s) of this build for C = A·B (m×k times k×n) and C = Aᵀ·B'
/// (the transposed product a sketch also needs), averaged; measured once per shape and process.
inline double gemmRateGflops(Index m, Index n, Index k) {
  const MatF a = wproj::gaussianMatrix<MatF>(m, k, 901), b = wproj::gaussianMatrix<MatF>(k, n, 902),
             bt = wproj::gaussianMatrix<MatF>(m, n, 903);
  MatF c(m, n), ct(k, n);
  const double t1 = bestSeconds([&] { c.noalias() = a * b; benchmark::DoNotOptimize(c.data()); }, 5);
  const double t2 = bestSeconds([&] { ct.noalias() = a.transpose() * bt; benchmark::DoNotOptimize(ct.data()); }, 5);
  return 2.0 * 2.0 * double(m) * double(n) * double(k) / (t1 + t2) / 1e9;
}

}  // namespace wproj_bench
