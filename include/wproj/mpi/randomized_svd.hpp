// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Distributed randomized SVD (Halko, Martinsson & Tropp 2011) of a matrix whose rows are
/// distributed over the ranks of a communicator, as a dense row block per rank or as a
/// matrix-free distributed operator. It reproduces the fixed-rank algorithm of the serial
/// `wproj::RandomizedSVD` (same sketch size, power iterations, test matrix, orientation, small
/// SVD and sign convention), so both give the same result up to rounding.

#include "comm.hpp"

#include "../core/config.hpp"
#include "../core/random.hpp"
#include "../linalg/jacobi_svd.hpp"
#include "../linalg/orthonormalize.hpp"
#include "../linalg/randomized_svd.hpp"
#include "../linalg/symmetric_eigen.hpp"
#include "../linalg/truncated_svd.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace wproj {
namespace mpi {

/// A rank's contiguous row block A_r = A[firstRow : firstRow + rows, :] of a row-distributed
/// dense m×n matrix A, seen as a *distributed operator*: the concept
/// `DistributedRandomizedSVD::computeOperator` takes, i.e. any type with
/// ```
///   using Scalar = ...;                                    // float or double
///   Index rows() const;        // this rank's row count m_r (may be 0)
///   Index globalRows() const;  // m (the same on every rank)
///   Index firstRow() const;    // the global index of this rank's first row
///   Index cols() const;        // n (the same on every rank)
///   void multiply(const Matrix& x, Matrix& y) const;          // y = A_r x   (x: n×ℓ, y: m_r×ℓ)
///   void multiplyTranspose(const Matrix& y, Matrix& z) const; // z = A_rᵀ y  (y: m_r×ℓ, z: n×ℓ)
/// ```
/// with `Matrix = Eigen::Matrix<Scalar, Dynamic, Dynamic>`. `multiplyTranspose` returns this
/// rank's partial product; the algorithm sums the partials over the ranks. Neither product
/// communicates. This adaptor holds a reference to the block (any Eigen object with direct
/// storage: a Matrix, a Block, a row-major Map), which must outlive it; expressions without
/// storage are evaluated once.
template <typename Derived>
class DistributedDenseOperator {
  static constexpr bool kDirect = (int(Eigen::internal::traits<Derived>::Flags) & Eigen::DirectAccessBit) != 0;
  using Stored = std::conditional_t<kDirect, const Derived&, const typename Derived::PlainObject>;

 public:
  /// Scalar type of the block.
  using Scalar = typename Derived::Scalar;
  /// Dense column-major block type of the products.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  /// Wraps this rank's block `local` (rows [firstRow, firstRow + local.rows()) of an
  /// globalRows×local.cols() matrix). The layout is checked collectively by the SVD.
  DistributedDenseOperator(const Eigen::MatrixBase<Derived>& local, Index firstRow, Index globalRows)
      : m_a(local.derived()), m_first(firstRow), m_global(globalRows) {}

  /// This rank's row count m_r.
  Index rows() const { return m_a.rows(); }
  /// The global row count m.
  Index globalRows() const { return m_global; }
  /// The global index of this rank's first row.
  Index firstRow() const { return m_first; }
  /// The column count n.
  Index cols() const { return m_a.cols(); }
  /// y = A_r x (local, no communication).
  void multiply(const Matrix& x, Matrix& y) const {
    y.resize(m_a.rows(), x.cols());
    if (m_a.rows() == 0 || x.cols() == 0) return;
    y.noalias() = m_a * x;
  }
  /// z = A_rᵀ y: this rank's partial of Aᵀy (local, no communication).
  void multiplyTranspose(const Matrix& y, Matrix& z) const {
    z.resize(m_a.cols(), y.cols());
    if (m_a.rows() == 0 || y.cols() == 0) {
      z.setZero();
      return;
    }
    z.noalias() = m_a.transpose() * y;
  }
  /// The wrapped block.
  const auto& matrix() const { return m_a; }

 private:
  Stored m_a;
  Index m_first, m_global;
};

/// Wraps this rank's row block as a `DistributedDenseOperator` (by reference; no communication).
template <typename Derived>
DistributedDenseOperator<Derived> makeDistributedOperator(const Eigen::MatrixBase<Derived>& local, Index firstRow,
                                                          Index globalRows) {
  return DistributedDenseOperator<Derived>(local, firstRow, globalRows);
}

/// Rank-k randomized SVD A ≈ U Σ Vᵀ of an m×n matrix whose rows are distributed over the ranks
/// of a communicator: rank r holds the contiguous rows [f_r, f_r + m_r), the blocks tiling
/// [0, m) in rank order (the default layout is `blockRows(m, rank, size)`; any contiguous
/// partition works, ranks holding no rows included). Every rank gets the same Σ (k) and V (n×k);
/// U is returned distributed like A (this rank's m_r×k rows).
///
/// Algorithm (Halko, Martinsson & Tropp 2011, Alg. 4.4, with the normalised power iterations
/// and the small-SVD route of the serial `RandomizedSVD`, whose fixed-rank mode it reproduces
/// step for step): ℓ = min(k + p, min(m, n)); q power iterations (−1: `RandomizedSVD::
/// autoPowerIterations`); the sketched side is Aᵀ when m > n (as the serial class without warm
/// start); the Gaussian test matrix is `CounterRng(seed, 0).fillGaussianSketch` of the full n×ℓ
/// (or m×ℓ) matrix and the error probes come from stream 1 — when that side is distributed each
/// rank generates exactly its rows of the same fill (`CounterRng::fillGaussianSketchRows`), so
/// the test matrix is the serial one bit for bit. Products with the distributed (row) side are
/// local; a product landing on the replicated n side is this rank's partial, summed with one
/// allreduce. A distributed block X (m×c) is orthonormalised by Cholesky QR with its c×c Gram
/// matrix accumulated in double and summed over the ranks (one pass between power iterations,
/// two — CholeskyQR2, Yamamoto et al. 2015 — for the final basis); a numerically rank-deficient
/// block (Cholesky fails or its Gram's rcond < 10³·c·u_double; e.g. A of rank < ℓ, or A = 0) is
/// repaired from the eigendecomposition of its Gram matrix: the resolvable directions are kept
/// (X W Λ^{-1/2}), the null ones replaced by fresh Gaussian columns generated from (seed,
/// stream 16, global row index), so every rank agrees, and the block is orthonormalised again.
/// Blocks on the replicated side (n×ℓ) are orthonormalised by the serial code on every rank
/// (deterministic, identical on every rank). The SVD of the small B = QᵀA comes from the ℓ×ℓ
/// Gram matrix BBᵀ in double (`detail::gramInDouble`), with the serial class' wide-spectrum
/// fallback (Z = PR with a distributed or replicated orthonormalisation, then one-sided Jacobi of
/// R: `detail::jacobiSvd`). Signs: the largest-magnitude entry of each u_i is positive, the
/// first global row on ties (local maxima exchanged in one allreduce).
///
/// When k ≥ min(m, n) or ℓ ≥ min(m, n) the SVD is exact, as in the serial class: for m ≥ n,
/// A = P R with P distributed (the same distributed CholeskyQR2 with its repair) and R (n×n)
/// replicated, then one-sided Jacobi of R; for m < n the m×n matrix is assembled on every rank
/// with one allreduce of m·n values (m = min(m, n) ≤ k + p here, so this is O(ℓn) as one pass of
/// the randomized path) and decomposed there by the serial method.
///
/// Communication of one fixed-rank `compute` (P ranks; each "allreduce" is one
/// `MPI_Allreduce`, values in the working precision unless said; Gram matrices in double):
/// - validation: one allgather of the settings' 64-bit hash (`requireSame`) and one allreduce
///   of 5P 64-bit integers (every rank's layout and finiteness flag); `compute(local)` without a
///   first row adds one allgather of the row counts;
/// - m ≤ n (Ω replicated, Y = AΩ local): per power iteration one allreduce of ℓ² (the Gram of the
///   normalised AZ; two when that block is ill-conditioned) and one of nℓ (AᵀY); the final basis
///   two of ℓ² (CholeskyQR2); Z = AᵀQ one of nℓ; with s > 0 error probes one of 1 value;
/// - m > n (Ω distributed): AᵀΩ one allreduce of n(ℓ + s); per power iteration one of ℓ²
///   (normalising AZ) and one of nℓ (AᵀY); the Gram of Z = AQ one of ℓ²; the probes one of k·s;
/// - signs: one allreduce of 3kP doubles.
/// In total, with s > 0: for m ≤ n, 2q + 6 allreduces of 5P + q(ℓ² + nℓ) + 2ℓ² + nℓ + 1 + 3kP
/// values; for m > n, 2q + 5 allreduces of 5P + n(ℓ + s) + q(ℓ² + nℓ) + ℓ² + ks + 3kP values —
/// O(q(ℓ² + nℓ)) words in O(q) messages, independent of m. Extra passes are counted too: a
/// repaired block (one allreduce of c² per extra pass), the wide-spectrum fallback (two of ℓ² and
/// one of ℓ² when Z is distributed), a re-orthonormalised distributed U (two of k²); the exact
/// path: for m ≥ n two or more of n² plus one of n², for m < n one of m·n. `allreduceCalls()`,
/// `allreduceValues()` and `communicationSeconds()` report the last `compute`'s totals (the
/// seconds include the validation's allgathers).
///
/// Not provided (serial-only features): warm starts, block Krylov, the fixed-accuracy mode and
/// the power normalisations other than the default. Determinism assumes that `MPI_Allreduce`
/// returns the same bits on every rank (true of Open MPI's and MPICH's algorithms, which reduce
/// each element once or pairwise-commutatively): the decisions taken on reduced data (Cholesky
/// success, repairs, fallbacks) are then the same on every rank.
///
/// Example:
/// \code
/// wproj::mpi::Communicator comm;
/// const auto rows = wproj::mpi::blockRows(m, comm.rank(), comm.size());
/// Eigen::MatrixXf local = /* rows [rows.first, rows.first + rows.count) of A */;
/// wproj::mpi::DistributedRandomizedSVD<float> svd(comm);
/// svd.setRank(32).setSeed(7).compute(local, rows.first);
/// // svd.singularValues(), svd.matrixV() on every rank; svd.matrixU(): this rank's rows of U.
/// \endcode
template <typename Scalar_>
class DistributedRandomizedSVD {
 public:
  /// Scalar type (float or double).
  using Scalar = Scalar_;
  /// Real type of the singular values.
  using RealScalar = Scalar_;
  /// Dense matrix type of U and V.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Vector type of the singular values.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  static_assert(std::is_same<Scalar, float>::value || std::is_same<Scalar, double>::value,
                "DistributedRandomizedSVD: float or double");

  /// The stream of `CounterRng(seed, ·)` that fills the null directions of rank-deficient blocks.
  static constexpr std::uint64_t kRepairStream = 16;

  /// A decomposition on `comm` (MPI_COMM_WORLD by default); set a rank, then call `compute()`.
  explicit DistributedRandomizedSVD(const Communicator& comm = Communicator()) : m_comm(comm) {}

  /// Target rank k ≥ 1.
  DistributedRandomizedSVD& setRank(Index k) {
    requireArg(k >= 1, "DistributedRandomizedSVD::setRank", "k", k, ">= 1");
    m_rank = k;
    return *this;
  }
  /// Oversampling p ≥ 0 (default 10): the sketch has ℓ = k + p columns.
  DistributedRandomizedSVD& setOversampling(Index p) {
    requireArg(p >= 0, "DistributedRandomizedSVD::setOversampling", "p", p, ">= 0");
    m_oversampling = p;
    return *this;
  }
  /// Number of power iterations q ≥ 0, or −1 for the serial class' automatic choice (default).
  DistributedRandomizedSVD& setPowerIterations(Index q) {
    requireArg(q >= -1, "DistributedRandomizedSVD::setPowerIterations", "q", q, ">= 0, or -1 for automatic");
    m_powerIterations = q;
    return *this;
  }
  /// Seed of the Gaussian test matrices (default 0).
  DistributedRandomizedSVD& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }
  /// Number s ≥ 0 of Gaussian probes for `errorEstimate()` (default 8; 0 turns it off).
  DistributedRandomizedSVD& setErrorProbes(Index s) {
    requireArg(s >= 0, "DistributedRandomizedSVD::setErrorProbes", "s", s, ">= 0");
    m_probes = s;
    return *this;
  }

  /// The target rank k (−1 until `setRank`).
  Index targetRank() const { return m_rank; }
  /// The oversampling p.
  Index oversampling() const { return m_oversampling; }
  /// The power-iteration count q (−1 = automatic).
  Index powerIterations() const { return m_powerIterations; }
  /// The seed of the Gaussian test matrices.
  std::uint64_t seed() const { return m_seed; }
  /// The number of error probes s.
  Index errorProbes() const { return m_probes; }
  /// The communicator.
  const Communicator& communicator() const { return m_comm; }

  /// Computes the decomposition from this rank's row block `local`; the first global row of
  /// each rank is the sum of the row counts of the ranks before it (one allgather). Collective;
  /// otherwise as `compute(local, firstRow)`.
  template <typename Derived>
  DistributedRandomizedSVD& compute(const Eigen::MatrixBase<Derived>& local) {
    resetCounters();
    const std::vector<long long> counts = timedAllgather((long long)local.rows());
    long long first = 0;
    for (int r = 0; r < m_comm.rank(); ++r) first += counts[std::size_t(r)];
    return computeImpl(local, Index(first));
  }

  /// Computes the decomposition from this rank's row block `local`, rows [firstRow, firstRow +
  /// local.rows()) of A (used in place, never modified). Collective: every rank of the
  /// communicator calls it with the same settings; the blocks must tile [0, m) in rank order and
  /// have the same column count, and be finite — otherwise every rank throws `InvalidArgument`
  /// naming the offending ranks (different settings: `CollectiveError` on every rank).
  /// Communication: 2q + 6 allreduces (m ≤ n) or 2q + 5 (m > n) of O(q(ℓ² + nℓ) + kP) values
  /// in total, plus one allgather; exact counts in the class comment.
  template <typename Derived>
  DistributedRandomizedSVD& compute(const Eigen::MatrixBase<Derived>& local, Index firstRow) {
    resetCounters();
    return computeImpl(local, firstRow);
  }

  /// Computes the decomposition of a distributed operator (see `DistributedDenseOperator` for
  /// the concept). Collective; layout errors as for `compute`. Non-finite products throw
  /// `InvalidArgument` on every rank. Communication as `compute` (class comment); the operator's
  /// own products must not communicate, or must do so identically on every rank.
  template <typename Op>
  DistributedRandomizedSVD& computeOperator(const Op& op) {
    static_assert(std::is_same<typename Op::Scalar, Scalar>::value,
                  "DistributedRandomizedSVD::computeOperator: scalar type mismatch");
    resetCounters();
    validate("DistributedRandomizedSVD::computeOperator", "op", op.rows(), op.firstRow(), op.cols(), true,
             op.globalRows());
    m_operatorInput = true;
    run(opRef(op));
    return *this;
  }

  /// This rank's rows of U (m_r×k; orthonormal columns over all ranks).
  const Matrix& matrixU() const {
    WPROJ_ASSERT(m_computed);
    return m_u;
  }
  /// The k singular values, descending (the same on every rank).
  const Vector& singularValues() const {
    WPROJ_ASSERT(m_computed);
    return m_s;
  }
  /// The n×k right singular vectors (the same on every rank).
  const Matrix& matrixV() const {
    WPROJ_ASSERT(m_computed);
    return m_v;
  }
  /// The number of triplets k.
  Index rank() const {
    WPROJ_ASSERT(m_computed);
    return m_s.size();
  }
  /// `Success`, or `NoConvergence` when the exact path's Jacobi sweeps did not converge.
  Eigen::ComputationInfo info() const {
    WPROJ_ASSERT(m_computed);
    return m_info;
  }
  /// The global row count m of the last computation.
  Index globalRows() const { return m_globalRows; }
  /// This rank's first global row in the last computation.
  Index firstRow() const { return m_firstRow; }
  /// A-posteriori estimate of ‖A − UΣVᵀ‖_F / ‖A‖_F from s Gaussian probes, as the serial class
  /// (exact on the exact path; −1 with no probes).
  double errorEstimate() const {
    WPROJ_ASSERT(m_computed);
    return m_errorEstimate;
  }
  /// The sketch size ℓ of the last computation.
  Index sketchSize() const { return m_sketchSize; }
  /// The power iterations of the last computation.
  Index powerIterationsUsed() const { return m_powerUsed; }
  /// Whether the last computation took the exact path.
  bool usedExact() const { return m_usedExact; }
  /// How many rank-deficient distributed blocks the last computation repaired.
  Index repairs() const { return m_repairs; }
  /// The number of allreduce calls of the last computation (see the class comment).
  Index allreduceCalls() const { return m_reduceCalls; }
  /// The number of values those allreduces summed (each counted once, whatever P).
  Index allreduceValues() const { return m_reduceValues; }
  /// Wall-clock seconds this rank spent in the last computation's collectives (allreduces and
  /// the validation's allgathers).
  double communicationSeconds() const { return m_commSeconds; }

 private:
  enum class Ortho { Power, Final, Full };

  // A distributed operator seen through two function pointers, so that the algorithm below is
  // compiled once per scalar type, not once per operator type (the products are GEMM-sized).
  struct OpRef {
    const void* self;
    void (*multiply)(const void*, const Matrix&, Matrix&);
    void (*multiplyTranspose)(const void*, const Matrix&, Matrix&);
  };
  template <typename Op>
  static OpRef opRef(const Op& op) {
    OpRef r;
    r.self = &op;
    r.multiply = [](const void* o, const Matrix& x, Matrix& y) { static_cast<const Op*>(o)->multiply(x, y); };
    r.multiplyTranspose = [](const void* o, const Matrix& x, Matrix& y) {
      static_cast<const Op*>(o)->multiplyTranspose(x, y);
    };
    return r;
  }

  // ---- collectives (counted and timed) ----
  void resetCounters() {
    m_reduceCalls = 0;
    m_reduceValues = 0;
    m_commSeconds = 0;
  }
  template <typename T>
  void reduceRaw(T* data, std::size_t count) {
    const auto t0 = std::chrono::steady_clock::now();
    m_comm.allreduceSum(data, count);
    m_commSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++m_reduceCalls;
    m_reduceValues += Index(count);
  }
  /// Sums a plain matrix over the ranks; non-finite sums (identical on every rank) throw.
  template <typename M>
  void reduce(M& x) {
    if (x.size() == 0) return;
    reduceRaw(x.data(), std::size_t(x.size()));
    if (!x.allFinite()) onNonFinite();
  }
  template <typename T>
  std::vector<T> timedAllgather(T value) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<T> out = m_comm.allgather(value);
    m_commSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }
  [[noreturn]] void onNonFinite() const {
    if (m_operatorInput)
      throw InvalidArgument(
          "DistributedRandomizedSVD::computeOperator: argument 'op' produced non-finite values; expected a finite "
          "operator");
    throw NumericalError(
        "DistributedRandomizedSVD::compute: the sketch of A overflowed (|A| too large for the scalar type)");
  }

  // ---- validation ----
  template <typename Derived>
  DistributedRandomizedSVD& computeImpl(const Eigen::MatrixBase<Derived>& local, Index firstRow) {
    const bool finite = local.allFinite();
    validate("DistributedRandomizedSVD::compute", "a", local.rows(), firstRow, local.cols(), finite, -1);
    m_operatorInput = false;
    DistributedDenseOperator<Derived> op(local, firstRow, m_globalRows);
    run(opRef(op));
    return *this;
  }

  /// Checks the settings (same on every rank), the layout (blocks tiling [0, m) in rank order,
  /// one n) and finiteness, with one allgather and one allreduce; throws on every rank.
  void validate(const char* where, const char* name, Index rows, Index first, Index cols, bool finite,
                Index globalRows) {
    m_computed = false;
    const std::string settings = std::to_string(m_rank) + "/" + std::to_string(m_oversampling) + "/" +
                                 std::to_string(m_powerIterations) + "/" + std::to_string(m_seed) + "/" +
                                 std::to_string(m_probes);
    {
      const auto t0 = std::chrono::steady_clock::now();
      m_comm.requireSame(settings, std::string(where) + " setting (rank/oversampling/power iterations/seed/probes)");
      m_commSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    requireArg(m_rank >= 1, where, "rank", m_rank, ">= 1 (call setRank)");
    const int p = m_comm.size(), me = m_comm.rank();
    std::vector<long long> info(std::size_t(5) * std::size_t(p), 0);
    long long* mine = &info[std::size_t(5) * std::size_t(me)];
    mine[0] = rows;
    mine[1] = first;
    mine[2] = cols;
    mine[3] = finite ? 0 : 1;
    mine[4] = globalRows;
    reduceRaw(info.data(), info.size());
    auto at = [&](int r, int f) { return info[std::size_t(5) * std::size_t(r) + std::size_t(f)]; };
    std::string bad;
    long long next = 0;
    for (int r = 0; r < p; ++r) {
      if (at(r, 0) < 0 || at(r, 1) != next) {
        bad += (bad.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " holds " +
               std::to_string(at(r, 0)) + " rows from row " + std::to_string(at(r, 1)) + " (expected from row " +
               std::to_string(next) + ")";
      }
      next = (at(r, 1) == next ? next : at(r, 1)) + std::max(0LL, at(r, 0));
    }
    if (!bad.empty())
      throw InvalidArgument(std::string(where) + ": argument '" + name +
                            "' has a row layout that does not tile [0, m) in rank order: " + bad +
                            "; expected contiguous row blocks in rank order");
    const long long m = next;
    for (int r = 0; r < p; ++r) {
      if (at(r, 2) != at(0, 2))
        throw InvalidArgument(std::string(where) + ": argument '" + name + "' has " + std::to_string(at(r, 2)) +
                              " columns on rank " + std::to_string(r) + " but " + std::to_string(at(0, 2)) +
                              " on rank 0; expected the same column count n on every rank");
      if (globalRows >= 0 && at(r, 4) != m)
        throw InvalidArgument(std::string(where) + ": argument '" + name + "' reports globalRows() = " +
                              std::to_string(at(r, 4)) + " on rank " + std::to_string(r) +
                              "; expected the sum of the ranks' rows(), " + std::to_string(m));
    }
    std::string nonFinite;
    for (int r = 0; r < p; ++r)
      if (at(r, 3) != 0) nonFinite += (nonFinite.empty() ? "" : ", ") + std::to_string(r);
    if (!nonFinite.empty())
      throw InvalidArgument(std::string(where) + ": argument '" + name + "' has non-finite entries on rank(s) " +
                            nonFinite + "; expected finite values");
    if (m == 0 || at(0, 2) == 0)
      throw InvalidArgument(std::string(where) + ": argument '" + name + "' has global shape " +
                            detail::shapeString(Index(m), Index(at(0, 2))) + "; expected a non-empty matrix");
    m_globalRows = Index(m);
    m_firstRow = first;
    m_localRows = rows;
    m_cols = cols;
  }

  // ---- the algorithm ----
  void run(const OpRef& op) {
    const Index m = m_globalRows, n = m_cols;
    m_info = Eigen::Success;
    m_usedExact = false;
    m_errorEstimate = -1;
    m_powerUsed = 0;
    m_repairs = 0;
    m_repairRng = CounterRng(m_seed, kRepairStream);
    const Index smin = std::min(m, n);
    const Index k = std::min(m_rank, smin);
    const Index ell = std::min(k + m_oversampling, smin);
    if (k >= smin || ell >= smin) {
      exact(op, k);
    } else {
      const bool transposed = m > n;  // sketch Aᵀ (Ω on the distributed side)
      Matrix uOp, vOp;
      runFixed(op, k, ell, transposed, uOp, vOp);
      if (transposed) {
        m_u.swap(vOp);
        m_v.swap(uOp);
      } else {
        m_u.swap(uOp);
        m_v.swap(vOp);
      }
    }
    if (!m_s.allFinite() || !m_v.allFinite()) onNonFinite();  // replicated: the same verdict everywhere
    applySignConvention();
    m_computed = true;
  }

  /// y = op' x, op' = A (x replicated n×c → y local m_r×c) or Aᵀ (x local → y replicated, summed).
  void applyOp(const OpRef& op, const Matrix& x, Matrix& y, bool transposed) {
    if (!transposed) {
      op.multiply(op.self, x, y);
    } else {
      op.multiplyTranspose(op.self, x, y);
      reduce(y);
    }
  }
  /// z = op'ᵀ y.
  void applyOpT(const OpRef& op, const Matrix& y, Matrix& z, bool transposed) {
    if (!transposed) {
      op.multiplyTranspose(op.self, y, z);
      reduce(z);
    } else {
      op.multiply(op.self, y, z);
    }
  }

  /// Gaussian sketch columns: the full fill on the replicated side, this rank's rows of it on
  /// the distributed side.
  template <typename Block>
  void fillSide(CounterRng& rng, Block&& x, bool distributed) {
    if (distributed) rng.fillGaussianSketchRows(x, m_globalRows, m_firstRow);
    else rng.fillGaussianSketch(x);
  }
  Eigen::MatrixXd gram(const Matrix& x, bool distributed) {
    Eigen::MatrixXd g = x.rows() > 0 ? detail::gramInDouble(x, true) : Eigen::MatrixXd::Zero(x.cols(), x.cols());
    if (distributed) reduce(g);
    return g;
  }
  Matrix inner(const Matrix& a, const Matrix& b, bool distributed) {
    Matrix c(a.cols(), b.cols());
    if (a.rows() > 0) c.noalias() = a.transpose() * b;
    else c.setZero();
    if (distributed) reduce(c);
    return c;
  }
  void orthoSketch(Matrix& x, bool full, bool distributed) {
    if (distributed) distOrtho(x, full ? Ortho::Final : Ortho::Power);
    else detail::orthonormalizeSketch(x, full);
  }
  void orthoFull(Matrix& x, bool distributed) {
    if (distributed) distOrtho(x, Ortho::Full);
    else orthonormalizeInPlace(x, OrthoMethod::Auto);
  }

  /// Orthonormalises the distributed m×c block x (m ≥ c) in place by Cholesky QR on the summed
  /// double Gram matrix (one allreduce of c² per pass): `Power` one pass when the Gram's rcond is
  /// ≥ 10³u (else as `Final`), `Final`/`Full` two passes, a third when the second pass' input
  /// deviated from orthonormality by ≥ 1/2. A Gram whose Cholesky fails or whose rcond is below
  /// 10³·c·u_double is repaired (class comment); the column order (span of the leading columns)
  /// is kept on the Cholesky path only.
  void distOrtho(Matrix& x, Ortho mode) {
    const Index c = x.cols();
    if (c == 0) return;
    const double u = double(unitRoundoff<Scalar>());
    const double tau = 1e3 * double(c) * unitRoundoff<double>();
    const Eigen::MatrixXd eye = Eigen::MatrixXd::Identity(c, c);
    int clean = 0;
    for (int pass = 0; pass < 10; ++pass) {
      const Eigen::MatrixXd g = gram(x, true);
      const double dev = (g - eye).norm();
      Eigen::LLT<Eigen::MatrixXd> llt(g);
      double rcond = 0;
      bool ok = llt.info() == Eigen::Success && llt.matrixLLT().diagonal().allFinite();
      if (ok) {
        rcond = llt.rcond();
        ok = rcond >= tau;
      }
      if (ok) {
        if (x.rows() > 0) {
          const Matrix r = llt.matrixU().toDenseMatrix().template cast<Scalar>();
          r.template triangularView<Eigen::Upper>().template solveInPlace<Eigen::OnTheRight>(x);
        }
        ++clean;
        if (mode == Ortho::Power && clean == 1 && rcond >= 1e3 * u) return;
        if (clean >= 2 && dev < 0.5) return;
        continue;
      }
      // Repair: keep the resolvable directions, replace the null ones by fresh Gaussian columns.
      const detail::SymmetricEigen eig(g);
      if (eig.info() != Eigen::Success)
        throw NumericalError("DistributedRandomizedSVD: the eigendecomposition of a Gram matrix failed");
      const Eigen::VectorXd& lambda = eig.eigenvalues();
      const double lmax = std::max(0.0, lambda.maxCoeff());
      std::vector<Index> good;
      for (Index i = c - 1; i >= 0; --i)
        if (lmax > 0 && lambda(i) > tau * lmax) good.push_back(i);
      const Index ng = Index(good.size());
      Eigen::MatrixXd scale(c, ng);
      for (Index j = 0; j < ng; ++j) scale.col(j) = eig.eigenvectors().col(good[std::size_t(j)]) / std::sqrt(lambda(good[std::size_t(j)]));
      Matrix repaired(x.rows(), c);
      if (ng > 0) {
        if (x.rows() > 0) repaired.leftCols(ng).noalias() = x * scale.template cast<Scalar>();
      }
      if (c > ng) fillSide(m_repairRng, repaired.rightCols(c - ng), true);
      x.swap(repaired);
      ++m_repairs;
      clean = 0;
    }
    throw NumericalError("DistributedRandomizedSVD: a distributed block could not be orthonormalised");
  }

  /// The serial `RandomizedSVD::runFixed` with op' = A (transposed = false: Q and U distributed,
  /// Ω and V replicated) or op' = Aᵀ (transposed = true: Ω and Z = AQ distributed). Writes op'’s
  /// left (uOp) and right (vOp) factors.
  void runFixed(const OpRef& op, Index k, Index ell, bool transposed, Matrix& uOp, Matrix& vOp) {
    const bool mDist = !transposed, nDist = transposed;  // which side of op' is distributed
    const Index npLocal = transposed ? m_localRows : m_cols;
    const Index s = m_probes;
    const Index q = m_powerIterations >= 0
                        ? m_powerIterations
                        : RandomizedSVD<Matrix>::autoPowerIterations(k, m_globalRows, m_cols, false);
    m_powerUsed = q;
    m_sketchSize = ell;

    Matrix omega(npLocal, ell + s);
    {
      CounterRng rng(m_seed, 0);
      fillSide(rng, omega.leftCols(ell), nDist);
      CounterRng probeRng(m_seed, 1);
      if (s > 0) fillSide(probeRng, omega.rightCols(s), nDist);
    }
    Matrix y;
    applyOp(op, omega, y, transposed);
    Matrix probeImage;
    if (s > 0) {
      probeImage = y.rightCols(s);
      y.conservativeResize(Eigen::NoChange, ell);
    }
    omega.resize(0, 0);

    Matrix z;
    for (Index it = 0; it < q; ++it) {
      orthoSketch(y, false, mDist);
      applyOpT(op, y, z, transposed);
      orthoSketch(z, false, nDist);
      applyOp(op, z, y, transposed);
    }
    orthoSketch(y, true, mDist);
    Matrix zb;
    applyOpT(op, y, zb, transposed);
    finish(y, zb, k, mDist, nDist, uOp, vOp);

    if (s > 0) {
      Matrix omegaP(npLocal, s);
      CounterRng probeRng(m_seed, 1);
      fillSide(probeRng, omegaP, nDist);
      Matrix coeff = inner(vOp, omegaP, nDist);
      coeff = m_s.asDiagonal() * coeff;
      if (probeImage.rows() > 0) probeImage.noalias() -= uOp * coeff;
      Eigen::Matrix<double, 1, 1> res;
      res(0) = probeImage.rows() > 0 ? detail::squaredNormDouble(probeImage) : 0.0;
      if (mDist) reduce(res);
      const double residual = res(0) / double(s);
      const double kept = m_s.template cast<double>().squaredNorm();
      m_errorEstimate = residual + kept > 0 ? std::sqrt(residual / (residual + kept)) : 0.0;
    }
  }

  /// The serial `RandomizedSVD::finish` (fixed rank k) with Q = qb on op'’s left side and
  /// Z = op'ᵀQ = zb on its right side.
  void finish(const Matrix& qb, const Matrix& zb, Index k, bool mDist, bool nDist, Matrix& uOp, Matrix& vOp) {
    const Index L = qb.cols();
    const Eigen::MatrixXd g = gram(zb, nDist);  // ZᵀZ = BBᵀ
    const detail::SymmetricEigen eig(g);
    Eigen::VectorXd sigma(L);
    for (Index i = 0; i < L; ++i) sigma(i) = std::sqrt(std::max(0.0, eig.eigenvalues()(L - 1 - i)));
    k = std::min(L, k);
    const double cut = std::is_same<Scalar, float>::value ? 3e-5 : 1e-3;
    const bool gramOk = eig.info() == Eigen::Success && sigma(0) > 0 && (k == 0 || sigma(k - 1) >= cut * sigma(0));
    if (gramOk) {
      Matrix w(L, k);
      for (Index j = 0; j < k; ++j) w.col(j) = eig.eigenvectors().col(L - 1 - j).template cast<Scalar>();
      uOp.resize(qb.rows(), k);
      if (qb.rows() > 0) uOp.noalias() = qb * w;
      vOp.resize(zb.rows(), k);
      if (zb.rows() > 0) vOp.noalias() = zb * w;
      for (Index j = 0; j < k; ++j) vOp.col(j) *= Scalar(1.0 / sigma(j));
      m_s = sigma.head(k).template cast<Scalar>();
      if (k > 0) {
        const double uS = double(unitRoundoff<Scalar>()), uD = unitRoundoff<double>();
        const double ratio = sigma(0) / sigma(k - 1);
        const double predicted = uS * ratio * std::sqrt(double(L)) + uD * ratio * ratio * double(L);
        if (predicted > 64.0 * uS) orthoFull(vOp, nDist);
      }
      return;
    }
    // Wide spectrum (or zero B): Z = P R, R = U_R Σ W_Rᵀ by one-sided Jacobi; B = W_R Σ (P U_R)ᵀ.
    Matrix p = zb;
    orthoFull(p, nDist);
    const Matrix r = inner(p, zb, nDist);  // L×L
    const detail::JacobiSVDResult svd =
        detail::jacobiSvd(r, eig.info() == Eigen::Success ? &eig.eigenvectors() : nullptr,
                          double(unitRoundoff<Scalar>()));
    const Index k2 = std::min<Index>(L, k);
    uOp.resize(qb.rows(), k2);
    if (qb.rows() > 0) uOp.noalias() = qb * svd.v.leftCols(k2).template cast<Scalar>();
    vOp.resize(p.rows(), k2);
    if (p.rows() > 0) vOp.noalias() = p * svd.u.leftCols(k2).template cast<Scalar>();
    m_s = svd.s.head(k2).template cast<Scalar>();
    (void)mDist;
  }

  /// The exact SVD (k ≥ min(m, n) or ℓ ≥ min(m, n)), as the serial `RandomizedSVD::exact`.
  void exact(const OpRef& op, Index k) {
    const Index m = m_globalRows, n = m_cols;
    Eigen::MatrixXd su, sv;
    Eigen::VectorXd sing;
    if (m >= n) {
      // A = P R: P distributed (m×n), R = PᵀA replicated (n×n).
      Matrix a;
      op.multiply(op.self, Matrix::Identity(n, n), a);  // this rank's rows of A
      Matrix p = a;
      distOrtho(p, Ortho::Full);
      const Matrix r = inner(p, a, true);
      const detail::JacobiSVDResult svd = detail::jacobiSvd(r, nullptr, double(unitRoundoff<Scalar>()));
      const Index kk = std::min(k, svd.s.size());
      m_u.resize(p.rows(), kk);
      if (p.rows() > 0) m_u.noalias() = p * svd.u.leftCols(kk).template cast<Scalar>();
      m_v = svd.v.leftCols(kk).template cast<Scalar>();
      sing = svd.s;
      m_info = svd.info;
      m_s = sing.head(kk).template cast<Scalar>();
    } else {
      // m < n (so m ≤ k + p): assemble Aᵀ (n×m) on every rank, then the serial exact method.
      Matrix sel = Matrix::Zero(m_localRows, m);
      sel.middleCols(m_firstRow, m_localRows).setIdentity();
      Matrix at;
      op.multiplyTranspose(op.self, sel, at);
      reduce(at);
      Matrix p = at;
      orthonormalizeInPlace(p, OrthoMethod::Auto);
      const Matrix r = p.transpose() * at;  // m×m
      const detail::JacobiSVDResult svd = detail::jacobiSvd(r, nullptr, double(unitRoundoff<Scalar>()));
      const Index kk = std::min(k, svd.s.size());
      m_v = p * svd.u.leftCols(kk).template cast<Scalar>();
      m_u = svd.v.block(m_firstRow, 0, m_localRows, kk).template cast<Scalar>();
      sing = svd.s;
      m_info = svd.info;
      m_s = sing.head(kk).template cast<Scalar>();
    }
    const Index kk = m_s.size();
    double total = 0, tail = 0;
    for (Index i = 0; i < sing.size(); ++i) {
      total += sing(i) * sing(i);
      if (i >= kk) tail += sing(i) * sing(i);
    }
    m_errorEstimate = total > 0 ? std::sqrt(tail / total) : 0.0;
    m_usedExact = true;
    m_sketchSize = kk;
  }

  /// wproj's sign convention on the distributed U: the largest-|.| entry of each column (first
  /// global row on ties) is made positive, flipping the matching column of V. One allreduce of
  /// 3kP doubles (every rank's local maximum, its global row and its sign).
  void applySignConvention() {
    const Index k = m_u.cols();
    const int p = m_comm.size(), me = m_comm.rank();
    Eigen::MatrixXd buf = Eigen::MatrixXd::Zero(3 * k, p);
    for (Index j = 0; j < k; ++j) {
      Index best = -1;
      double bestAbs = -1;
      for (Index i = 0; i < m_u.rows(); ++i) {
        const double a = std::abs(double(m_u(i, j)));
        if (a > bestAbs) {
          bestAbs = a;
          best = i;
        }
      }
      buf(3 * j, me) = bestAbs;
      buf(3 * j + 1, me) = best >= 0 ? double(m_firstRow + best) : -1.0;
      buf(3 * j + 2, me) = (best >= 0 && m_u(best, j) < Scalar(0)) ? -1.0 : 1.0;
    }
    if (buf.size() > 0) reduceRaw(buf.data(), std::size_t(buf.size()));
    for (Index j = 0; j < k; ++j) {
      double bestAbs = -1, sign = 1;
      for (int r = 0; r < p; ++r) {
        if (buf(3 * j, r) > bestAbs) {  // ranks in row order: the first global row wins ties
          bestAbs = buf(3 * j, r);
          sign = buf(3 * j + 2, r);
        }
      }
      if (sign < 0) {
        m_u.col(j) = -m_u.col(j);
        if (j < m_v.cols()) m_v.col(j) = -m_v.col(j);
      }
    }
  }

  Communicator m_comm;
  // Settings.
  Index m_rank = -1;
  Index m_oversampling = 10;
  Index m_powerIterations = -1;
  std::uint64_t m_seed = 0;
  Index m_probes = 8;
  // Layout of the last computation.
  Index m_globalRows = 0, m_firstRow = 0, m_localRows = 0, m_cols = 0;
  bool m_operatorInput = false;
  CounterRng m_repairRng;
  // Results.
  Matrix m_u, m_v;
  Vector m_s;
  Eigen::ComputationInfo m_info = Eigen::Success;
  bool m_computed = false;
  double m_errorEstimate = -1;
  Index m_sketchSize = 0;
  Index m_powerUsed = 0;
  Index m_repairs = 0;
  bool m_usedExact = false;
  Index m_reduceCalls = 0;
  Index m_reduceValues = 0;
  double m_commSeconds = 0;
};

}  // namespace mpi
}  // namespace wproj
