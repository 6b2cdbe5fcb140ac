// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Eigendecomposition of a symmetric double-precision matrix, the kernel of the Gram routes of
/// `TruncatedSVD` and `RandomizedSVD`. With `WPROJ_USE_LAPACK` (set by the CMake target when the
/// OpenBLAS backend provides LAPACK) it calls LAPACK's divide-and-conquer `dsyevd`, which is
/// multi-threaded through BLAS-3 from n ≈ 1500 on and run on one thread below that, where
/// OpenBLAS's threads only add overhead (timings: docs/performance.md); otherwise it uses Eigen's
/// `SelfAdjointEigenSolver`.
/// Eigenvalues are ascending, as in Eigen.

#include "../core/blas_threads.hpp"
#include "../core/config.hpp"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include <optional>
#include <vector>

#if defined(WPROJ_USE_LAPACK)
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                        double* work, const int* lwork, int* iwork, const int* liwork, int* info);
#endif

namespace wproj {
namespace detail {

/// Eigenvalues (ascending) and orthonormal eigenvectors of a symmetric double matrix. One object
/// can be reused with `compute()`: a repeated call of the same size reuses its arrays (and
/// LAPACK's workspace) instead of allocating them again.
class SymmetricEigen {
 public:
  /// An empty decomposition; call `compute()`.
  SymmetricEigen() = default;
  /// Eigenvalues and eigenvectors of the symmetric matrix g (only its lower triangle is read).
  explicit SymmetricEigen(const Eigen::MatrixXd& g) { compute(g); }

  /// (Re)computes the decomposition of g (only its lower triangle is read).
  SymmetricEigen& compute(const Eigen::MatrixXd& g) {
    WPROJ_ASSERT(g.rows() == g.cols());
    if (!g.allFinite()) {
      m_info = Eigen::NumericalIssue;
      return *this;
    }
#if defined(WPROJ_USE_LAPACK)
    if (g.rows() >= 32 && g.rows() < (Index(1) << 30)) {
      const int n = int(g.rows());
      // Below n ≈ 1500 dsyevd (whose tridiagonal reduction is BLAS-2 bound) is faster on one
      // thread: n = 240: 3.3 against 4.8 ms on two cores; n = 1000: 104 against 108 ms; n = 2000:
      // 769 against 632 ms. The hold also makes those results independent of the thread count.
      std::optional<BlasThreadSplit::OneThread> oneThread;
      if (n < kThreadedFrom) oneThread.emplace();
      m_vectors = g;
      m_values.resize(n);
      int info = 0, lwork = -1, liwork = -1, iworkQuery = 0;
      double workQuery = 0;
      dsyevd_("V", "L", &n, m_vectors.data(), &n, m_values.data(), &workQuery, &lwork, &iworkQuery, &liwork, &info);
      if (info == 0) {
        lwork = int(workQuery) + 1;
        liwork = iworkQuery;
        if (m_work.size() < static_cast<std::size_t>(lwork)) m_work.resize(static_cast<std::size_t>(lwork));
        if (m_iwork.size() < static_cast<std::size_t>(liwork)) m_iwork.resize(static_cast<std::size_t>(liwork));
        dsyevd_("V", "L", &n, m_vectors.data(), &n, m_values.data(), m_work.data(), &lwork, m_iwork.data(), &liwork,
                &info);
      }
      m_info = info == 0 ? Eigen::Success : Eigen::NoConvergence;
      return *this;
    }
#endif
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(g);
    m_info = eig.info();
    if (m_info == Eigen::Success) {
      m_values = eig.eigenvalues();
      m_vectors = eig.eigenvectors();
    }
    return *this;
  }
  /// `Success`, `NoConvergence`, or `NumericalIssue` for a non-finite input.
  Eigen::ComputationInfo info() const { return m_info; }
  /// Eigenvalues, ascending.
  const Eigen::VectorXd& eigenvalues() const { return m_values; }
  /// Orthonormal eigenvectors, column j for eigenvalue j.
  const Eigen::MatrixXd& eigenvectors() const { return m_vectors; }

 private:
  Eigen::VectorXd m_values;
  Eigen::MatrixXd m_vectors;
  Eigen::ComputationInfo m_info = Eigen::Success;
  static constexpr Index kThreadedFrom = 1500;  // dsyevd runs on OpenBLAS's threads from this size on
  std::vector<double> m_work;  // LAPACK workspace, kept for the next compute()
  std::vector<int> m_iwork;
};

}  // namespace detail
}  // namespace wproj
