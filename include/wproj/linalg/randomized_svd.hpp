// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Randomized SVD (Halko, Martinsson & Tropp 2011) with power iterations, block Krylov
/// iteration (Musco & Musco 2015), warm starts from a previous basis, a fixed-accuracy mode
/// with adaptive rank (blocked randQB_EI-style growth, Yu, Gu & Li 2018) and a randomized
/// a-posteriori error estimate.
///
/// Everything heavy is a product of A (or Aᵀ) with a block of many columns (GEMM), so
/// `EIGEN_USE_BLAS` sends it to the BLAS. Blocks are orthonormalised with CholeskyQR2
/// (`orthonormalizeInPlace`, Auto), never with Householder QR in the common case, and the small
/// SVD of B = QᵀA is obtained from the ℓ×ℓ Gram matrix BBᵀ accumulated in double precision
/// (falling back, when the kept spectrum is too wide for that, to Z = PR and a one-sided Jacobi
/// SVD of the small R: jacobi_svd.hpp; the randomized solvers never instantiate BDCSVD).

#include "../core/config.hpp"
#include "../core/random.hpp"
#include "../core/side.hpp"
#include "linear_operator.hpp"
#include "jacobi_svd.hpp"
#include "orthonormalize.hpp"
#include "subspace_iteration.hpp"
#include "svd_base.hpp"
#include "truncated_svd.hpp"

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace wproj {

namespace detail {

/// Sum of squares of a block, accumulated in double.
template <typename Derived>
double squaredNormDouble(const Eigen::MatrixBase<Derived>& x) {
  double s = 0;
  for (Index j = 0; j < x.cols(); ++j) s += x.col(j).template cast<double>().squaredNorm();
  return s;
}

}  // namespace detail

template <typename MatrixType_>
class RandomizedSVD;

/// `SVDBase` traits of `RandomizedSVD` (its accessors assert that `compute()` ran).
template <typename MatrixType_>
struct SVDTraits<RandomizedSVD<MatrixType_>> {
  using MatrixType = MatrixType_;
  static constexpr bool ChecksComputed = true;
};

/// Randomized truncated SVD A ≈ U Σ Vᵀ of a dense matrix or a matrix-free operator.
///
/// Fixed-rank mode (default): sketch size ℓ = min(k + p, min(m, n)) with oversampling p
/// (default 10), q power iterations (default `-1` = automatic: 7 if k < 0.1·min(m, n) else 4,
/// as scikit-learn; 2 for block Krylov; 0 after a warm start) with a normalisation between the
/// products, then Q = orth(Y), B = QᵀA and the SVD of the small B. When k ≥ min(m, n) or
/// ℓ ≥ min(m, n) the exact `TruncatedSVD` is used instead.
///
/// Block Krylov (`setBlockKrylov(true)`, Musco & Musco 2015): Q is an orthonormal basis of
/// [AΩ, (AAᵀ)AΩ, …, (AAᵀ)^q AΩ] (block Lanczos with full re-orthogonalisation); it costs the
/// same number of products with A as q power iterations but reaches (1+ε)-optimal error in
/// O(1/√ε) rather than O(1/ε) iterations on slowly decaying spectra. Its block size defaults to
/// ℓ; `setKrylovBlockSize(b)` with b < k trades width for depth (fewer products for the same
/// accuracy on slowly decaying spectra).
///
/// Warm start (`setStartingRightBasis(V0)`): the sketch is Y = A·V0, padded with Gaussian
/// columns up to ℓ. With the default q = 0 this is one subspace iteration and costs exactly two
/// products with A (Y = A·V0 and Z = AᵀQ) plus an m×ℓ CholeskyQR2 and ℓ×ℓ work: the GaLore
/// refresh when the subspace drifts slowly. `setStartingLeftBasis(U0)` works on Aᵀ instead.
///
/// Fixed-accuracy mode (`setTolerance(tol)`): Q grows in blocks of b columns (randQB_EI) until
/// the relative Frobenius error ‖A − QQᵀA‖_F/‖A‖_F is ≤ tol, then the SVD is truncated to the
/// smallest rank meeting tol; the rank set with `setRank` is a cap. Convergence is tested with
/// ‖A‖²_F − ‖QᵀA‖²_F when tol is large enough for that difference to be resolved in the working
/// precision (tol² ≥ 1000·u; deterministic, with a rounding allowance of 32·u·‖A‖²_F), otherwise
/// with a probabilistic upper bound from r ≥ `certificateProbes()` Gaussian probes of the
/// residual (the next block's (I − QQᵀ)AΩ, padded with extra Gaussian columns when the block is
/// narrower than r): for E = (I − QQᵀ)A and independent Gaussian ω_i,
///   P( Σ_i ‖Eω_i‖² ≤ τ·r·‖E‖²_F ) ≤ (τ·e^{1−τ})^{r/2}   for 0 < τ < 1
/// (Chernoff's bound on Σ_j σ_j(E)² χ²_r,j, whose lower tail is widest when E has rank one), so
/// ‖E‖²_F ≤ Σ_i‖Eω_i‖²/(τr) except with probability δ when τ solves (τe^{1−τ})^{r/2} = δ.
/// The bound, not the estimate Σ_i‖Eω_i‖²/r, is what the stopping test and the truncation use:
/// `Success` means ‖A − UΣVᵀ‖_F ≤ tol·‖A‖_F except with probability ≤ δ =
/// `failureProbability()` (default 10⁻¹⁰; with r = 10 probes the bound is 16× the estimate in
/// norm, with 64 probes 2.1×). A larger δ trades that guarantee for fewer columns (why the
/// plain estimate is not enough: docs/decompositions.md).
///
/// `errorEstimate()` is an a-posteriori estimate of ‖A − UΣVᵀ‖_F / ‖A‖_F: in fixed-rank mode
/// from s Gaussian probes (default 8; their products with A ride along with the first sketch, so
/// they cost no extra pass over A): with ε² = Σ‖(A − UΣVᵀ)ω_j‖²/s (an unbiased estimate of
/// ‖A − UΣVᵀ‖²_F), the estimate is sqrt(ε² / (ε² + Σσᵢ²)), since ‖A‖²_F = Σσᵢ² + ‖A − UΣVᵀ‖²_F.
///
/// `info()` is `Success`, or `NoConvergence` in fixed-accuracy mode when the tolerance was not
/// reached within the rank cap (the rank-cap result is returned).
///
/// Random numbers come from `CounterRng(seed)`: the same seed gives the same bits. Signs follow
/// wproj's convention (largest-magnitude entry of each u_i positive).
/// Example:
/// \code
/// Eigen::MatrixXf a = Eigen::MatrixXf::Random(2000, 1000);
/// wproj::RandomizedSVD<Eigen::MatrixXf> svd;
/// svd.setRank(32).setBlockKrylov(true).setSeed(7).compute(a);
/// const Eigen::VectorXf& s = svd.singularValues();  // 32 values, descending
/// double err = svd.errorEstimate();                   // ≈ ‖A − UΣVᵀ‖_F / ‖A‖_F
/// \endcode
template <typename MatrixType_>
class RandomizedSVD : public SVDBase<RandomizedSVD<MatrixType_>> {
  using Base = SVDBase<RandomizedSVD<MatrixType_>>;
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

  /// An empty decomposition; set a rank, then call `compute()`.
  RandomizedSVD() = default;

  /// Computes a rank-`rank` randomized SVD of `a` with the default settings.
  template <typename Derived>
  RandomizedSVD(const Eigen::MatrixBase<Derived>& a, Index rank) {
    setRank(rank);
    compute(a);
  }

  /// Target rank k ≥ 1 (in fixed-accuracy mode: the maximal rank).
  RandomizedSVD& setRank(Index k) {
    requireArg(k >= 1, "RandomizedSVD::setRank", "k", k, ">= 1");
    m_rank = k;
    return *this;
  }
  /// Oversampling p ≥ 0 (default 10): the sketch has ℓ = k + p columns.
  RandomizedSVD& setOversampling(Index p) {
    requireArg(p >= 0, "RandomizedSVD::setOversampling", "p", p, ">= 0");
    m_oversampling = p;
    return *this;
  }
  /// Number of power (or Krylov) iterations q ≥ 0, or −1 for the automatic choice (default).
  RandomizedSVD& setPowerIterations(Index q) {
    requireArg(q >= -1, "RandomizedSVD::setPowerIterations", "q", q, ">= 0, or -1 for automatic");
    m_powerIterations = q;
    return *this;
  }
  /// Normalisation between power-iteration products (default Auto: one Cholesky-QR pass).
  RandomizedSVD& setNormalization(PowerNormalization n) {
    m_normalization = n;
    return *this;
  }
  /// Seed of the Gaussian test matrices (default 0).
  RandomizedSVD& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }
  /// Uses block Krylov iteration instead of plain power iteration (default false).
  RandomizedSVD& setBlockKrylov(bool on) {
    m_blockKrylov = on;
    return *this;
  }
  /// Block size b ≥ 1 of block Krylov iteration, or −1 (default) for ℓ = k + p. With b < k the
  /// Krylov space [AΩ, (AAᵀ)AΩ, …] is built from fewer columns per product and more iterations:
  /// the automatic q becomes the smallest q ≥ 2 with b·(q + 1) ≥ 2k, and an explicit q is raised
  /// to ⌈k/b⌉ − 1 so that the space holds k directions. Small blocks reach a given accuracy with
  /// fewer products with A on slowly decaying spectra (Tropp & Webber 2023, §11; Meyer, Musco &
  /// Musco 2024; measured figures in docs/decompositions.md). Ignored without `setBlockKrylov(true)`.
  RandomizedSVD& setKrylovBlockSize(Index b) {
    requireArg(b >= 1 || b == -1, "RandomizedSVD::setKrylovBlockSize", "b", b, ">= 1, or -1 for k + p");
    m_krylovBlock = b;
    return *this;
  }
  /// Warm start from an n×l0 basis (e.g. the previous V): the first sketch is Y = A·V0, padded
  /// with Gaussian columns up to ℓ (only the first ℓ columns of V0 are used when l0 > ℓ).
  /// Clears a left starting basis.
  RandomizedSVD& setStartingRightBasis(const Matrix& v0) {
    checkNonEmpty(v0, "RandomizedSVD::setStartingRightBasis", "v0");
    checkFinite(v0, "RandomizedSVD::setStartingRightBasis", "v0");
    m_start = v0;
    m_startSide = StartSide::Right;
    return *this;
  }
  /// Warm start from an m×l0 basis (e.g. the previous U): works on Aᵀ with Y = Aᵀ·U0.
  /// Clears a right starting basis.
  RandomizedSVD& setStartingLeftBasis(const Matrix& u0) {
    checkNonEmpty(u0, "RandomizedSVD::setStartingLeftBasis", "u0");
    checkFinite(u0, "RandomizedSVD::setStartingLeftBasis", "u0");
    m_start = u0;
    m_startSide = StartSide::Left;
    return *this;
  }
  /// Forgets a starting basis (cold start with a Gaussian sketch).
  RandomizedSVD& clearStartingBasis() {
    m_start.resize(0, 0);
    m_startSide = StartSide::None;
    return *this;
  }
  /// Fixed-accuracy mode: adaptive rank so that ‖A − UΣVᵀ‖_F ≤ relTol·‖A‖_F, with 0 < relTol < 1.
  RandomizedSVD& setTolerance(double relTol) {
    requireArg(std::isfinite(relTol) && relTol > 0.0 && relTol < 1.0, "RandomizedSVD::setTolerance", "relTol", relTol,
               "a value in (0, 1)");
    m_tolerance = relTol;
    return *this;
  }
  /// Back to fixed-rank mode.
  RandomizedSVD& clearTolerance() {
    m_tolerance = -1;
    return *this;
  }
  /// Block size b ≥ 1 of the fixed-accuracy mode, or −1 (default) for min(64, max(8, min(m,n)/16)).
  RandomizedSVD& setBlockSize(Index b) {
    requireArg(b >= 1 || b == -1, "RandomizedSVD::setBlockSize", "b", b, ">= 1, or -1 for automatic");
    m_blockSize = b;
    return *this;
  }
  /// Fixed-accuracy mode: the probability δ ∈ (0, 1) allowed for a `Success` result to miss the
  /// tolerance when the residual is bounded with random probes (tol² < 1000·u, or an operator);
  /// default 10⁻¹⁰. Larger δ: a tighter bound, fewer columns, a weaker guarantee.
  RandomizedSVD& setFailureProbability(double delta) {
    requireArg(std::isfinite(delta) && delta > 0.0 && delta < 1.0, "RandomizedSVD::setFailureProbability", "delta",
               delta, "a probability in (0, 1)");
    m_failureProbability = delta;
    return *this;
  }
  /// Fixed-accuracy mode: the minimal number r ≥ 1 of Gaussian probes behind the residual bound
  /// (default 10); the block's own b columns are used when b ≥ r.
  RandomizedSVD& setCertificateProbes(Index r) {
    requireArg(r >= 1, "RandomizedSVD::setCertificateProbes", "r", r, ">= 1");
    m_certificateProbes = r;
    return *this;
  }
  /// Number s ≥ 0 of Gaussian probes for `errorEstimate()` in fixed-rank mode (default 8; 0 turns
  /// the estimate off).
  RandomizedSVD& setErrorProbes(Index s) {
    requireArg(s >= 0, "RandomizedSVD::setErrorProbes", "s", s, ">= 0");
    m_probes = s;
    return *this;
  }

  /// The target rank k (−1 until `setRank`; the maximal rank in fixed-accuracy mode).
  Index targetRank() const { return m_rank; }
  /// The oversampling p.
  Index oversampling() const { return m_oversampling; }
  /// The power-iteration count q (−1 = automatic).
  Index powerIterations() const { return m_powerIterations; }
  /// The normalisation between power-iteration products.
  PowerNormalization normalization() const { return m_normalization; }
  /// The seed of the Gaussian test matrices.
  std::uint64_t seed() const { return m_seed; }
  /// Whether block Krylov iteration is used.
  bool blockKrylov() const { return m_blockKrylov; }
  /// The block size of block Krylov iteration (−1 = k + p).
  Index krylovBlockSize() const { return m_krylovBlock; }
  /// The relative tolerance of the fixed-accuracy mode (−1 in fixed-rank mode).
  double tolerance() const { return m_tolerance; }
  /// The failure probability δ of the fixed-accuracy mode's probabilistic residual bound.
  double failureProbability() const { return m_failureProbability; }
  /// The minimal number of probes r behind that bound.
  Index certificateProbes() const { return m_certificateProbes; }

  /// The factor τ ∈ (0, 1) with (τ·e^{1−τ})^{r/2} = δ: with r Gaussian probes of E,
  /// ‖E‖²_F ≤ Σ_i‖Eω_i‖²/(τ·r) except with probability ≤ δ. Returned slightly below the root.
  static double probeBoundFactor(Index r, double delta) {
    requireArg(r >= 1, "RandomizedSVD::probeBoundFactor", "r", r, ">= 1");
    requireArg(delta > 0.0 && delta < 1.0, "RandomizedSVD::probeBoundFactor", "delta", delta, "a probability in (0, 1)");
    // ln τ + 1 − τ = c with c = 2·ln(δ)/r < 0; ln τ lies in [c − 1, c] and the left side
    // increases with τ on (0, 1): bisect on ln τ and keep the lower end.
    const double c = 2.0 * std::log(delta) / double(r);
    double lo = c - 1.0, hi = std::min(c, 0.0);
    for (int it = 0; it < 200; ++it) {
      const double mid = 0.5 * (lo + hi);
      if (mid + 1.0 - std::exp(mid) <= c) lo = mid;
      else hi = mid;
    }
    return std::exp(lo);
  }

  /// Computes the decomposition of a dense matrix (used in place: no copy of A is made).
  template <typename Derived>
  RandomizedSVD& compute(const Eigen::MatrixBase<Derived>& a) {
    checkNonEmpty(a, "RandomizedSVD::compute", "a");
    DenseOperator<Derived> op(a);
    run(op, [&]() {
      checkFinite(a, "RandomizedSVD::compute", "a");
      throw NumericalError("RandomizedSVD::compute: the sketch of A overflowed (|A| too large for the scalar type)");
    }, [&]() { return detail::squaredNormDouble(a); }, [&]() -> Matrix { return a; });
    return *this;
  }

  /// Computes the decomposition of a matrix-free operator (see linear_operator.hpp).
  template <typename Op>
  RandomizedSVD& computeOperator(const Op& op) {
    static_assert(std::is_same<typename Op::Scalar, Scalar>::value, "RandomizedSVD::computeOperator: scalar type mismatch");
    requireArg(op.rows() > 0 && op.cols() > 0, "RandomizedSVD::computeOperator", "op",
               detail::shapeString(op.rows(), op.cols()), "a non-empty operator");
    run(op, []() {
      throw InvalidArgument("RandomizedSVD::computeOperator: argument 'op' produced non-finite values; expected a finite operator");
    }, nullptr, [&]() -> Matrix { return detail::operatorToDense(op); });
    return *this;
  }

  /// A-posteriori estimate of ‖A − UΣVᵀ‖_F / ‖A‖_F (exact when the exact fallback ran; −1 when
  /// no probes were requested). In fixed-accuracy mode: the bound the stopping test used
  /// (deterministic up to rounding for tol² ≥ 1000·u, else holding with probability ≥ 1 − δ).
  double errorEstimate() const {
    WPROJ_ASSERT(m_computed);
    return m_errorEstimate;
  }
  /// Sketch size ℓ used by the last computation (the Krylov basis has ℓ·(q+1) columns).
  Index sketchSize() const { return m_sketchSize; }
  /// Power (or Krylov) iterations used by the last computation.
  Index powerIterationsUsed() const { return m_powerUsed; }
  /// Whether the last computation fell back to the exact SVD.
  bool usedExact() const { return m_usedExact; }

  /// Bytes held by the work matrices that `compute()` keeps for the next call of the same shape
  /// (the sketch, Q, Z = AᵀQ and the Gram matrix: about (m + n)·ℓ·(q + 2) scalars for block
  /// Krylov).
  std::size_t workspaceBytes() const {
    const std::size_t scalars = std::size_t(m_ws.omega.size() + m_ws.y.size() + m_ws.z.size() + m_ws.qb.size() +
                                            m_ws.zb.size() + m_ws.probeImage.size() + m_ws.saved.size());
    return scalars * sizeof(Scalar) + std::size_t(m_ws.gram.size() + m_ws.gramBuffer.size()) * sizeof(double);
  }
  /// Frees those work matrices (the results are kept).
  RandomizedSVD& releaseWorkspace() {
    m_ws = Workspace();
    return *this;
  }

  /// The automatic number of power iterations for rank k of an m×n problem (cold start).
  static Index autoPowerIterations(Index k, Index m, Index n, bool krylov) {
    if (krylov) return 2;
    return 10 * k < std::min(m, n) ? 7 : 4;
  }

 private:
  enum class StartSide { None, Right, Left };
  using Selector = std::function<Index(const Eigen::VectorXd&)>;

  template <typename Op, typename OnNonFinite, typename NormFn, typename DenseFn>
  void run(const Op& op, OnNonFinite onNonFinite, NormFn normFn, DenseFn denseFn) {
    const Index m = op.rows(), n = op.cols();
    const bool tolMode = m_tolerance > 0;
    requireArg(tolMode || m_rank >= 1, "RandomizedSVD::compute", "rank", m_rank, ">= 1 (call setRank)");
    if (m_startSide == StartSide::Right)
      checkShape(m_start, n, -1, "RandomizedSVD::compute", "starting right basis");
    if (m_startSide == StartSide::Left)
      checkShape(m_start, m, -1, "RandomizedSVD::compute", "starting left basis");
    m_info = Eigen::Success;
    m_usedExact = false;
    m_errorEstimate = -1;
    m_powerUsed = 0;
    m_computed = false;

    const Index smin = std::min(m, n);
    const Index k = std::min(m_rank >= 1 ? m_rank : smin, smin);
    const Index ell = (m_blockKrylov && m_krylovBlock > 0) ? std::min(m_krylovBlock, smin)
                                                          : std::min(k + m_oversampling, smin);
    // A Krylov space of small blocks must hold k directions within min(m, n).
    const bool krylovTooBig = m_blockKrylov && ell < k && ((k + ell - 1) / ell) * ell > smin;
    if (!tolMode && (k >= smin || ell >= smin || krylovTooBig)) {
      exact(denseFn(), k);
      m_computed = true;
      return;
    }

    // Orientation: the sketched (exactly orthonormalised) side is the side of the starting basis'
    // image, or the smaller dimension for a cold start.
    bool transposed;
    if (m_startSide == StartSide::Right) transposed = false;
    else if (m_startSide == StartSide::Left) transposed = true;
    else transposed = m > n;

    double normSq = -1;
    if constexpr (!std::is_same<NormFn, std::nullptr_t>::value) {
      if (tolMode) normSq = normFn();
    }
    if (transposed) {
      TransposedOperator<Op> t(op);
      if (tolMode) runAdaptive(t, k, normSq, onNonFinite);
      else runFixed(t, k, ell, onNonFinite);
      m_u.swap(m_v);
    } else {
      if (tolMode) runAdaptive(op, k, normSq, onNonFinite);
      else runFixed(op, k, ell, onNonFinite);
    }
    if (!m_s.allFinite() || !m_u.allFinite() || !m_v.allFinite()) onNonFinite();
    detail::applySignConvention(m_u, m_v);
    m_computed = true;
  }

  /// The exact SVD, for sketches as large as A: X = A (or Aᵀ, whichever is tall) = P R with P
  /// orthonormal (`orthonormalizeInPlace`), then the square R by one-sided Jacobi, as accurate as
  /// a bidiagonal SVD.
  void exact(const Matrix& a, Index k) {
    checkFinite(a, "RandomizedSVD::compute", "a");
    const bool tall = a.rows() >= a.cols();
    Matrix p = tall ? a : Matrix(a.transpose());
    orthonormalizeInPlace(p, OrthoMethod::Auto);
    const Matrix r = tall ? Matrix(p.transpose() * a) : Matrix(p.transpose() * a.transpose());  // s×s
    const detail::JacobiSVDResult svd = detail::jacobiSvd(r, nullptr, double(unitRoundoff<RealScalar>()));
    const Eigen::VectorXd& s = svd.s;
    const Index kk = std::min(k, s.size());
    Matrix left = p * svd.u.leftCols(kk).template cast<Scalar>();
    Matrix right = svd.v.leftCols(kk).template cast<Scalar>();
    m_u.swap(tall ? left : right);
    m_v.swap(tall ? right : left);
    m_s = s.head(kk).template cast<RealScalar>();
    detail::applySignConvention(m_u, m_v);
    double total = 0, tail = 0;
    for (Index i = 0; i < s.size(); ++i) {
      total += double(s(i)) * double(s(i));
      if (i >= kk) tail += double(s(i)) * double(s(i));
    }
    m_errorEstimate = total > 0 ? std::sqrt(tail / total) : 0.0;
    m_usedExact = true;
    m_sketchSize = kk;
    m_info = svd.info;
  }

  /// Normalises a block between power-iteration products.
  void normalize(Matrix& x) {
    switch (m_normalization) {
      case PowerNormalization::None: break;
      case PowerNormalization::LU: detail::luNormalizeInPlace(x); break;
      case PowerNormalization::Orthonormalize: orthonormalizeInPlace(x, OrthoMethod::Auto); break;
      case PowerNormalization::Auto: detail::orthonormalizeSketch(x, false, &m_ws.saved); break;
    }
  }

  template <typename Op, typename OnNonFinite>
  void runFixed(const Op& op, Index k, Index ell, OnNonFinite& onNonFinite) {
    const Index m = op.rows(), n = op.cols();
    const Index s = m_probes;
    Index q = m_powerIterations >= 0 ? m_powerIterations
                                     : (m_startSide != StartSide::None ? 0 : autoPowerIterations(k, m, n, m_blockKrylov));
    if (m_blockKrylov && ell < k) {
      // Small blocks: at least ⌈k/b⌉ blocks; automatically the smallest q ≥ 2 with b(q+1) ≥ 2k.
      const Index needed = (k + ell - 1) / ell - 1;
      q = m_powerIterations >= 0 ? std::max(q, needed) : std::max<Index>(2, (2 * k + ell - 1) / ell - 1);
    }
    if (m_blockKrylov) q = std::min(q, std::max<Index>(0, std::min(m, n) / ell - 1));
    m_powerUsed = q;
    m_sketchSize = ell;

    // Test matrix [Ω | probes]: the starting basis first, then Gaussian columns. The work
    // matrices live in m_ws, so that a repeated call of the same shape allocates nothing.
    Matrix& omega = m_ws.omega;
    omega.resize(n, ell + s);
    Index fromStart = 0;
    if (m_startSide != StartSide::None) {
      fromStart = std::min(ell, m_start.cols());
      omega.leftCols(fromStart) = m_start.leftCols(fromStart);
    }
    {
      CounterRng rng(m_seed, 0);
      if (ell > fromStart) rng.fillGaussianSketch(omega.middleCols(fromStart, ell - fromStart));
      CounterRng probeRng(m_seed, 1);
      if (s > 0) probeRng.fillGaussianSketch(omega.rightCols(s));
    }
    Matrix& y = m_ws.y;
    Matrix& probeImage = m_ws.probeImage;
    if (s > 0) {
      op.multiply(omega, m_ws.z);
      if (!m_ws.z.allFinite()) onNonFinite();
      y = m_ws.z.leftCols(ell);
      probeImage = m_ws.z.rightCols(s);
    } else {
      op.multiply(omega, y);
      if (!y.allFinite()) onNonFinite();
    }

    Matrix& qb = m_ws.qb;  // Q (m×L)
    Matrix& zb = m_ws.zb;  // Z = AᵀQ (n×L)
    Matrix& z = m_ws.z;
    Matrix* saved = &m_ws.saved;
    if (!m_blockKrylov) {
      for (Index it = 0; it < q; ++it) {
        normalize(y);
        op.multiplyTranspose(y, z);
        normalize(z);
        op.multiply(z, y);
      }
      detail::orthonormalizeSketch(y, true, saved);
      qb.swap(y);
      op.multiplyTranspose(qb, zb);
    } else {
      const Index total = ell * (q + 1);
      qb.resize(m, total);
      zb.resize(n, total);
      detail::orthonormalizeSketch(y, true, saved);
      qb.leftCols(ell) = y;
      for (Index j = 0; j <= q; ++j) {
        op.multiplyTranspose(y, z);  // z = Aᵀ Q_j
        zb.middleCols(j * ell, ell) = z;
        if (j == q) break;
        op.multiply(z, y);  // next block: A Aᵀ Q_j, orthogonalised against the basis so far
        // Block classical Gram–Schmidt run twice (BCGS2, Barlow & Smoktunowicz 2013): project,
        // orthonormalise the block (one Cholesky-QR pass when its Gram matrix is well enough
        // conditioned, else CholeskyQR2 or its fallbacks), project the now well conditioned block
        // again and re-orthonormalise it with one Cholesky-QR pass.
        const auto prev = qb.leftCols((j + 1) * ell);
        detail::projectOutBlock(prev, y, 1);
        detail::orthonormalizeSketch(y, false, saved);
        detail::projectOutBlock(prev, y, 1);
        detail::orthonormalizeSketch(y, false, saved);
        qb.middleCols((j + 1) * ell, ell) = y;
      }
    }
    if (!zb.allFinite()) onNonFinite();
    finish(qb, zb, [k](const Eigen::VectorXd&) { return k; });

    if (s > 0) {
      // Residual probes: (A − UΣVᵀ)ω = Aω − U(Σ(Vᵀω)), with ω still in Ω's last s columns.
      Matrix coeff = m_v.transpose() * omega.rightCols(s);
      coeff = m_s.template cast<Scalar>().asDiagonal() * coeff;
      probeImage.noalias() -= m_u * coeff;
      // E[‖Eω‖²] = ‖E‖²_F for E = A − UΣVᵀ = (I − UUᵀ)A, and ‖A‖²_F = Σσᵢ² + ‖E‖²_F exactly
      // (Pythagoras): only the residual is estimated, not ‖A‖ (whose probe estimate is
      // dominated by the leading directions and noisy with a few probes).
      const double residual = detail::squaredNormDouble(probeImage) / double(s);
      const double kept = m_s.template cast<double>().squaredNorm();
      m_errorEstimate = residual + kept > 0 ? std::sqrt(residual / (residual + kept)) : 0.0;
    }
  }

  template <typename Op, typename OnNonFinite>
  void runAdaptive(const Op& op, Index cap, double normSq, OnNonFinite& onNonFinite) {
    const Index m = op.rows(), n = op.cols(), smin = std::min(m, n);
    const Index b = m_blockSize > 0 ? m_blockSize : std::min<Index>(64, std::max<Index>(8, smin / 16));
    const Index q = m_powerIterations >= 0 ? m_powerIterations : 2;
    m_powerUsed = q;
    const double tol2 = m_tolerance * m_tolerance;
    const double u = double(unitRoundoff<RealScalar>());
    const bool useGram = normSq >= 0 && tol2 >= 1000.0 * u;  // ‖A‖² − ‖B‖² resolvable
    const double roundingAllowance = useGram ? 32.0 * u * normSq : 0.0;

    Matrix qb(m, 0), zb(n, 0), y, z;
    CounterRng rng(m_seed, 2);
    // ‖A‖²_F, or for an operator its lower bound ‖QᵀA‖²_F (so the relative test stays a bound).
    double residSq = 0, normLow = normSq;
    bool converged = false;
    for (;;) {
      const Index have = qb.cols();
      const Index bb = std::min(b, std::max<Index>(1, smin - have));
      // The next block, padded with Gaussian columns so that at least r probes bound the residual.
      const Index probes = std::max(bb, m_certificateProbes);
      Matrix omega(n, probes);
      Index fromStart = 0;
      if (have == 0 && m_startSide != StartSide::None) {
        fromStart = std::min(bb, m_start.cols());
        omega.leftCols(fromStart) = m_start.leftCols(fromStart);
      }
      if (probes > fromStart) rng.fillGaussianSketch(omega.rightCols(probes - fromStart));
      op.multiply(omega, y);
      if (!y.allFinite()) onNonFinite();
      detail::projectOutBlock(qb, y);
      const double capturedSq = detail::squaredNormDouble(zb);  // ‖QᵀA‖²_F, exact
      normLow = normSq >= 0 ? normSq : capturedSq;
      // Columns taken from a starting basis are not random: only the Gaussian ones are probes.
      const auto gaussianPart = y.rightCols(probes - fromStart);
      const double probeSum = detail::squaredNormDouble(gaussianPart);
      if (have >= smin || (normSq >= 0 ? normSq <= 0 : capturedSq + probeSum <= 0)) {
        residSq = 0;  // everything captured, or the zero matrix (for an operator: almost surely)
        converged = true;
        break;
      }
      if (useGram) {
        residSq = std::max(0.0, normSq - capturedSq) + roundingAllowance;
      } else if (probes > fromStart) {
        const Index r = probes - fromStart;
        residSq = probeSum / (double(r) * probeBoundFactor(r, m_failureProbability));
      } else {
        residSq = std::numeric_limits<double>::infinity();  // no random probe this round
      }
      if (residSq <= tol2 * normLow) {
        converged = true;
        break;
      }
      if (have >= cap) break;
      const Index add = std::min(bb, cap - have);
      y.conservativeResize(Eigen::NoChange, add);  // drop the padding probes
      for (Index it = 0; it < q; ++it) {
        orthonormalizeInPlace(y, OrthoMethod::Auto);
        op.multiplyTranspose(y, z);
        orthonormalizeInPlace(z, OrthoMethod::Auto);
        op.multiply(z, y);
        detail::projectOutBlock(qb, y);
      }
      orthonormalizeInPlace(y, OrthoMethod::Auto);
      detail::projectOutBlock(qb, y);
      orthonormalizeInPlace(y, OrthoMethod::Auto);
      op.multiplyTranspose(y, z);
      if (!z.allFinite()) onNonFinite();
      qb.conservativeResize(Eigen::NoChange, have + add);
      qb.rightCols(add) = y;
      zb.conservativeResize(Eigen::NoChange, have + add);
      zb.rightCols(add) = z;
    }
    if (!converged) m_info = Eigen::NoConvergence;
    m_sketchSize = qb.cols();
    m_powerUsed = q;
    const double target = tol2 * normLow;
    double tailOut = 0;
    const double resid = residSq;
    finish(qb, zb, [&](const Eigen::VectorXd& sigma) {
      // Smallest rank whose dropped tail keeps the total error (residual bound + tail) within the tolerance.
      const Index L = sigma.size();
      Index kk = L;
      double tail = 0;
      while (converged && kk > 0 && resid + tail + sigma(kk - 1) * sigma(kk - 1) <= target) {
        tail += sigma(kk - 1) * sigma(kk - 1);
        --kk;
      }
      tailOut = tail;
      return kk;
    });
    const double total = std::max(0.0, resid + tailOut);
    m_errorEstimate = normLow > 0 ? std::min(1.0, std::sqrt(total / normLow)) : 0.0;
  }

  /// SVD of B = QᵀA = Zᵀ from Q (m×L, orthonormal) and Z = AᵀQ (n×L); keeps select(σ) triplets.
  template <typename Select>
  void finish(const Matrix& qb, const Matrix& zb, Select select) {
    const Index L = qb.cols();
    if (L == 0) {
      m_u.resize(qb.rows(), 0);
      m_v.resize(zb.rows(), 0);
      m_s.resize(0);
      return;
    }
    Eigen::MatrixXd& g = m_ws.gram;
    detail::gramInDouble(zb, true, g, &m_ws.gramBuffer);  // ZᵀZ = BBᵀ (L×L)
    const detail::SymmetricEigen& eig = m_ws.eigen.compute(g);
    Eigen::VectorXd sigma(L);
    for (Index i = 0; i < L; ++i) sigma(i) = std::sqrt(std::max(0.0, eig.eigenvalues()(L - 1 - i)));
    const Index k = std::min<Index>(L, select(sigma));
    const double cut = std::is_same<RealScalar, float>::value ? 3e-5 : 1e-3;
    const bool gramOk = eig.info() == Eigen::Success && sigma(0) > 0 && (k == 0 || sigma(k - 1) >= cut * sigma(0));
    if (gramOk) {
      Matrix w(L, k);
      for (Index j = 0; j < k; ++j) w.col(j) = eig.eigenvectors().col(L - 1 - j).template cast<Scalar>();
      m_u.noalias() = qb * w;
      m_v.noalias() = zb * w;
      for (Index j = 0; j < k; ++j) m_v.col(j) *= Scalar(1.0 / sigma(j));
      m_s = sigma.head(k).template cast<RealScalar>();
      if (k > 0) {
        const double uS = double(unitRoundoff<RealScalar>()), uD = unitRoundoff<double>();
        const double ratio = sigma(0) / sigma(k - 1);
        const double predicted = uS * ratio * std::sqrt(double(L)) + uD * ratio * ratio * double(L);
        if (predicted > 64.0 * uS) detail::reorthonormalize(m_v, &m_ws.saved);
      }
      return;
    }
    // Wide spectrum (or zero B): Z = P R and R = U_R Σ W_Rᵀ by one-sided Jacobi (preconditioned by
    // the Gram eigenvectors above, as ZᵀZ = RᵀR); then B = Zᵀ = W_R Σ (P U_R)ᵀ.
    Matrix p = zb;
    orthonormalizeInPlace(p, OrthoMethod::Auto);
    const Matrix r = p.transpose() * zb;  // L×L
    const detail::JacobiSVDResult svd =
        detail::jacobiSvd(r, eig.info() == Eigen::Success ? &eig.eigenvectors() : nullptr,
                          double(unitRoundoff<RealScalar>()));
    const Index k2 = std::min<Index>(L, select(svd.s));
    m_u.noalias() = qb * svd.v.leftCols(k2).template cast<Scalar>();
    m_v.noalias() = p * svd.u.leftCols(k2).template cast<Scalar>();
    m_s = svd.s.head(k2).template cast<RealScalar>();
  }

  // Settings.
  Index m_rank = -1;
  Index m_oversampling = 10;
  Index m_powerIterations = -1;
  PowerNormalization m_normalization = PowerNormalization::Auto;
  std::uint64_t m_seed = 0;
  bool m_blockKrylov = false;
  Index m_krylovBlock = -1;
  Matrix m_start;
  StartSide m_startSide = StartSide::None;
  double m_tolerance = -1;
  double m_failureProbability = 1e-10;
  Index m_certificateProbes = 10;
  Index m_blockSize = -1;
  Index m_probes = 8;
  // Results (U, Σ, V, info and the computed flag live in SVDBase).
  using Base::m_computed;
  using Base::m_info;
  using Base::m_s;
  using Base::m_u;
  using Base::m_v;
  double m_errorEstimate = -1;
  // Work matrices of the fixed-rank path, kept between compute() calls: a repeated call of the
  // same shape touches no fresh memory (first touches of fresh pages can cost as much as the
  // arithmetic at moderate sizes). `releaseWorkspace()` frees them.
  struct Workspace {
    Matrix omega, y, z, qb, zb, probeImage, saved;
    Eigen::MatrixXd gram, gramBuffer;
    detail::SymmetricEigen eigen;
  } m_ws;
  Index m_sketchSize = 0;
  Index m_powerUsed = 0;
  bool m_usedExact = false;
};

}  // namespace wproj
