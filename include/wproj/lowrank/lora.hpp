// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Low-rank adapters (LoRA, Hu et al. 2021) from weights: the best rank-r approximation of a task
/// vector τ = W_ft − W_base as PEFT's factors B (out×r) and A (r×in) with ΔW = scale·B·A
/// (scale = lora_alpha / r), the rank chosen by a `RankRule` per tensor or jointly for a whole
/// model under a byte budget, and the way back, W ± scale·B·A.
///
/// The solver is chosen by cost: the exact truncated SVD (`TruncatedSVD`) for small tensors or
/// ranks close to min(m, n), the randomized SVD (`RandomizedSVD`, block Krylov iteration with
/// small blocks by default) otherwise. The
/// kept energy is exact in both cases: with U's columns orthonormal and Σ, V from UᵀA (Rayleigh–Ritz),
/// ‖τ − U_rΣ_rV_rᵀ‖²_F = ‖τ‖²_F − Σ_{i<r} σ_i²; the reported error comes from that identity, or is
/// measured directly when the subtraction would lose its accuracy (a relative error below 10%).

#include "../core/config.hpp"
#include "../linalg/randomized_svd.hpp"
#include "../linalg/rank_rule.hpp"
#include "../linalg/truncated_svd.hpp"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <queue>
#include <string>
#include <vector>

namespace wproj {

/// Where the singular values go when τ_r = U Σ Vᵀ is split into B and A.
enum class LoraSplit {
  Balanced,  ///< B = U√Σ, A = √Σ Vᵀ (mergekit's and PEFT's extraction; equal row/column norms)
  IntoB,     ///< B = UΣ, A = Vᵀ (A has orthonormal rows)
  IntoA      ///< B = U, A = ΣVᵀ (B has orthonormal columns)
};

/// Which decomposition extracts the factors.
enum class LoraSolver {
  Auto,        ///< by cost (see `LoraOptions::randomizedIsCheaper`)
  Exact,       ///< `TruncatedSVD` (Gram or BDCSVD route, whichever it picks)
  Randomized   ///< `RandomizedSVD` with power iterations
};

/// Options of `extractLora` and `loraSpectrum`.
struct LoraOptions {
  /// The rank rule: fixed(r), energy(e) (relative to ‖τ‖²_F), absoluteTolerance(ε) (mergekit's
  /// `--sv-epsilon`: keep σ_i > ε), relativeTolerance; `withMaxRank` caps any of them.
  RankRule rule = RankRule::fixed(16);
  /// PEFT's scaling the factors are stored for: scale·B·A = τ_r (lora_alpha / r; 1 when alpha = r).
  double scale = 1.0;
  /// Where Σ goes.
  LoraSplit split = LoraSplit::Balanced;
  /// The solver (default: by cost).
  LoraSolver solver = LoraSolver::Auto;
  /// The randomized solver's iteration: block Krylov with small blocks (default; the Krylov space
  /// [AΩ, (AAᵀ)AΩ, …] of b-column blocks reaches a given accuracy with fewer products with τ than
  /// power iteration on ℓ = r + p columns), or power iteration.
  bool blockKrylov = true;
  /// Block Krylov: columns per block b, or −1 for ⌈r/2⌉ within [8, 64] (the depth is then the
  /// smallest q ≥ 2 with b(q+1) ≥ 2r, a Krylov space of about 2r columns).
  Index krylovBlockSize = -1;
  /// Power iteration: oversampling p (sketch ℓ = r + p).
  Index oversampling = 10;
  /// Iterations q: block Krylov depth (−1: automatic, see krylovBlockSize) or power iterations
  /// (−1: 2, enough for the Frobenius-norm optimum within 1% on fine-tuning deltas; measured in
  /// docs/performance.md).
  Index powerIterations = -1;
  /// Seed of the randomized solver's test matrices (results are a function of the seed only).
  std::uint64_t seed = 0;

  /// The Krylov block size used for rank k.
  Index krylovBlockFor(Index k) const {
    return krylovBlockSize > 0 ? krylovBlockSize : std::min<Index>(64, std::max<Index>(8, (k + 1) / 2));
  }
  /// Columns of τ's products the randomized solver forms for rank k (one product with τ and one
  /// with τᵀ each): (q+1)·b for block Krylov, (q+1)·(k+p) for power iteration.
  Index randomizedColumns(Index k) const {
    if (blockKrylov) {
      const Index b = krylovBlockFor(k);
      Index q = powerIterations >= 0 ? powerIterations : 2;
      if (b < k) {
        const Index needed = (k + b - 1) / b - 1;
        q = powerIterations >= 0 ? std::max(q, needed) : std::max<Index>(2, (2 * k + b - 1) / b - 1);
      }
      return (q + 1) * b;
    }
    return ((powerIterations >= 0 ? powerIterations : 2) + 1) * (k + oversampling);
  }
  /// The cost model of `LoraSolver::Auto` for a rank-k factorisation of an m×n matrix with
  /// s = min(m, n), in units of m·n multiply-adds: the exact route (a Gram matrix, then a symmetric
  /// eigensolver with vectors, or BDCSVD) costs about s + 10·s³/(m·n); the randomized one about
  /// 5 per column of `randomizedColumns(k)` (a product with τ and one with τᵀ, plus the
  /// orthonormalisation). Randomized is chosen when it costs at most that, its columns are at
  /// most s/2 and s > 256 (below, the exact route takes milliseconds and is exact).
  bool randomizedIsCheaper(Index m, Index n, Index k) const {
    const double s = double(std::min(m, n)), mn = double(m) * double(n);
    const double cols = double(randomizedColumns(k));
    return s > 256 && 2.0 * cols <= s && 5.0 * cols <= s + 10.0 * s * s * s / mn;
  }
};

/// The LoRA factors of one matrix: scale·B·A ≈ τ, B m×r, A r×n, with what the extraction achieved.
template <typename Scalar_>
struct LoraFactors {
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  Matrix B;               ///< m×r ("lora_B.weight")
  Matrix A;               ///< r×n ("lora_A.weight")
  Vector sigma;           ///< the r kept singular values of τ, descending
  double scale = 1.0;     ///< PEFT's scaling: ΔW = scale·B·A
  double normSq = 0.0;    ///< ‖τ‖²_F (accumulated in double)
  double errorSq = 0.0;   ///< ‖τ − scale·B·A‖²_F, measured
  bool randomized = false;  ///< whether the randomized solver produced them

  /// r.
  Index rank() const { return B.cols(); }
  /// ‖τ − scale·B·A‖_F / ‖τ‖_F (0 for τ = 0).
  double relativeError() const { return normSq > 0.0 ? std::sqrt(errorSq / normSq) : 0.0; }
  /// Σ_{i<r} σ_i² / ‖τ‖²_F, the captured energy (1 for τ = 0).
  double keptEnergy() const {
    return normSq > 0.0 ? std::min(1.0, sigma.template cast<double>().squaredNorm() / normSq) : 1.0;
  }
  /// scale·B·A, the dense update (m×n).
  Matrix delta() const { return (Scalar(scale) * B) * A; }
};

/// The leading singular values of τ and ‖τ‖²_F: what `allocateLoraBudget` needs of one tensor.
struct LoraSpectrum {
  Index rows = 0;                 ///< m
  Index cols = 0;                 ///< n
  Eigen::VectorXd sigma;          ///< leading singular values, descending (at most the cap asked for)
  double normSq = 0.0;            ///< ‖τ‖²_F
};

namespace detail {

template <typename Derived>
double squaredNormInDouble(const Eigen::MatrixBase<Derived>& x) {
  double s = 0.0;
  for (Index j = 0; j < x.cols(); ++j) s += x.col(j).template cast<double>().squaredNorm();
  return s;
}

/// ‖τ − (UΣ)Vᵀ‖²_F in column blocks (no m×n temporary).
template <typename Derived, typename Matrix>
double residualSquared(const Eigen::MatrixBase<Derived>& tau, const Matrix& us, const Matrix& v) {
  const Index n = tau.cols(), block = 256;
  double s = 0.0;
  Matrix r;
  for (Index j0 = 0; j0 < n; j0 += block) {
    const Index w = std::min(block, n - j0);
    r = tau.middleCols(j0, w);
    if (us.cols() > 0) r.noalias() -= us * v.middleRows(j0, w).transpose();
    s += squaredNormInDouble(r);
  }
  return s;
}

/// The thin SVD triplets (U, σ, V) of τ chosen by the rule, by the exact or the randomized solver.
template <typename Matrix, typename Derived>
bool loraTriplets(const Eigen::MatrixBase<Derived>& tau, const LoraOptions& opt, double normSq, Matrix& u,
                  Eigen::Matrix<typename Matrix::Scalar, Eigen::Dynamic, 1>& sigma, Matrix& v) {
  const Index m = tau.rows(), n = tau.cols(), s = std::min(m, n);
  const RankRule& rule = opt.rule;
  const Index cap = rule.maxRank() >= 0 ? std::min(rule.maxRank(), s) : s;
  // The rank the randomized solver would be asked for first.
  Index k0 = cap;
  if (rule.kind() == RankRule::Kind::Fixed) k0 = std::min<Index>(Index(rule.parameter()), cap);
  else if (rule.kind() != RankRule::Kind::All) k0 = std::min<Index>(cap, 64);
  const bool randomized =
      opt.solver == LoraSolver::Randomized ||
      (opt.solver == LoraSolver::Auto && rule.kind() != RankRule::Kind::All && opt.randomizedIsCheaper(m, n, k0));
  if (!randomized) {
    TruncatedSVD<Matrix> svd;
    svd.compute(tau);
    const Index k = rule.select(svd.singularValues(), normSq);
    u = svd.matrixU().leftCols(k);
    sigma = svd.singularValues().head(k);
    v = svd.matrixV().leftCols(k);
    return false;
  }
  RandomizedSVD<Matrix> rsvd;
  rsvd.setSeed(opt.seed).setErrorProbes(0);
  if (opt.blockKrylov)
    rsvd.setBlockKrylov(true).setKrylovBlockSize(opt.krylovBlockFor(k0)).setPowerIterations(opt.powerIterations);
  else
    rsvd.setOversampling(opt.oversampling).setPowerIterations(opt.powerIterations >= 0 ? opt.powerIterations : 2);
  if (rule.kind() == RankRule::Kind::Energy) {
    // Fixed accuracy: ‖τ − τ_k‖²_F ≤ (1 − f)·‖τ‖²_F.
    const double tol = std::sqrt(std::max(0.0, 1.0 - rule.parameter()));
    if (tol > 0.0 && tol < 1.0) {
      rsvd.setRank(cap).setTolerance(tol).compute(tau);
      const Index k = rule.select(rsvd.singularValues(), normSq);
      u = rsvd.matrixU().leftCols(k);
      sigma = rsvd.singularValues().head(k);
      v = rsvd.matrixV().leftCols(k);
      return true;
    }
    k0 = cap;
  }
  // Fixed rank, or a rule evaluated on the spectrum: grow k until the rule stops short of k.
  Index k = std::max<Index>(1, k0);
  for (;;) {
    if (opt.blockKrylov) rsvd.setKrylovBlockSize(opt.krylovBlockFor(k));
    rsvd.setRank(k).compute(tau);
    const Index pick = rule.select(rsvd.singularValues(), normSq);
    if (rule.kind() == RankRule::Kind::Fixed || pick < rsvd.singularValues().size() || k >= cap) {
      u = rsvd.matrixU().leftCols(pick);
      sigma = rsvd.singularValues().head(pick);
      v = rsvd.matrixV().leftCols(pick);
      return true;
    }
    k = std::min(cap, 2 * k);
  }
}

}  // namespace detail

/// Extracts LoRA factors of a task vector τ (m×n, any dense expression, row-major maps included):
/// B·A·scale is the best approximation of τ of the rank `opt.rule` selects (Eckart–Young; up to the
/// randomized solver's accuracy when it is used), the singular values split as `opt.split` says.
/// τ is never modified. Throws `InvalidArgument` for an empty or non-finite τ or scale ≤ 0.
/// Directions below τ's numerical rank (σ_i ≤ max(m, n)·ε·σ_0) are not kept, so the rank can be
/// below the rule's choice for a rank-deficient τ; a zero τ gives rank 0 (empty factors).
/// \code
/// Eigen::MatrixXf tau = wFt - wBase;                           // out×in, like nn.Linear.weight
/// wproj::LoraOptions opt;
/// opt.rule = wproj::RankRule::fixed(64);
/// auto f = wproj::extractLora(tau, opt);                       // f.B: out×64, f.A: 64×in
/// wproj::applyLora(wBase, f.B, f.A, f.scale);                  // wBase ≈ wFt now
/// \endcode
template <typename Derived>
LoraFactors<typename Derived::Scalar> extractLora(const Eigen::MatrixBase<Derived>& tau, const LoraOptions& opt) {
  using Scalar = typename Derived::Scalar;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  static_assert(!Eigen::NumTraits<Scalar>::IsComplex, "extractLora: real matrices only");
  if constexpr ((int(Eigen::internal::traits<Derived>::Flags) & Eigen::DirectAccessBit) == 0) {
    const typename Derived::PlainObject evaluated = tau;
    return extractLora(evaluated, opt);
  } else {
    checkNonEmpty(tau, "extractLora", "tau");
    checkFinite(tau, "extractLora", "tau");
    requireArg(std::isfinite(opt.scale) && opt.scale > 0.0, "extractLora", "scale", opt.scale, "a finite value > 0");
    LoraFactors<Scalar> f;
    f.scale = opt.scale;
    f.normSq = detail::squaredNormInDouble(tau);
    const Index m = tau.rows(), n = tau.cols();
    if (f.normSq == 0.0) {
      f.B.resize(m, 0);
      f.A.resize(0, n);
      f.sigma.resize(0);
      return f;
    }
    Matrix u, v;
    typename LoraFactors<Scalar>::Vector sigma;
    f.randomized = detail::loraTriplets<Matrix>(tau, opt, f.normSq, u, sigma, v);
    // Drop directions below the numerical rank (σ_i ≤ max(m, n)·ε·σ_0, NumPy's matrix_rank
    // tolerance): for a rank-deficient τ they are rounding noise and carry nothing.
    Index r = sigma.size();
    const double floorSigma =
        r > 0 ? double(std::max(m, n)) * double(Eigen::NumTraits<Scalar>::epsilon()) * double(sigma(0)) : 0.0;
    while (r > 0 && double(sigma(r - 1)) <= floorSigma) --r;
    f.sigma = sigma.head(r);
    const double invScale = 1.0 / opt.scale;
    Eigen::Matrix<Scalar, Eigen::Dynamic, 1> left(r), right(r);
    for (Index i = 0; i < r; ++i) {
      const double sv = double(sigma(i)) * invScale;
      switch (opt.split) {
        case LoraSplit::Balanced: left(i) = right(i) = Scalar(std::sqrt(sv)); break;
        case LoraSplit::IntoB: left(i) = Scalar(sv); right(i) = Scalar(1); break;
        case LoraSplit::IntoA: left(i) = Scalar(1); right(i) = Scalar(sv); break;
      }
    }
    f.B = u.leftCols(r) * left.asDiagonal();
    f.A = right.asDiagonal() * v.leftCols(r).transpose();
    // ‖τ − τ_r‖²_F = ‖τ‖²_F − Σ_{i<r} σ_i² (Rayleigh–Ritz factors); the subtraction loses the
    // relative accuracy of the result when it is small (below 1% of ‖τ‖²_F: a relative error under
    // 10%), and then the residual is measured directly, in column blocks.
    const double kept = f.sigma.template cast<double>().squaredNorm();
    f.errorSq = std::max(0.0, f.normSq - kept);
    if (f.errorSq < 1e-2 * f.normSq) {
      const Matrix us = u.leftCols(r) * f.sigma.asDiagonal();
      f.errorSq = detail::residualSquared(tau, us, Matrix(v.leftCols(r)));
    }
    return f;
  }
}

/// Extracts LoRA factors of τ = fineTuned − base (same shapes; neither is modified).
template <typename D1, typename D2>
LoraFactors<typename D1::Scalar> extractLora(const Eigen::MatrixBase<D1>& fineTuned, const Eigen::MatrixBase<D2>& base,
                                             const LoraOptions& opt) {
  requireArg(fineTuned.rows() == base.rows() && fineTuned.cols() == base.cols(), "extractLora", "base",
             detail::shapeString(base.rows(), base.cols()), "the shape of fineTuned, " + detail::shapeString(fineTuned.rows(), fineTuned.cols()));
  using Matrix = Eigen::Matrix<typename D1::Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const Matrix tau = fineTuned - base.template cast<typename D1::Scalar>();
  return extractLora(tau, opt);
}

/// The leading `cap` singular values of τ and ‖τ‖²_F (the input of `allocateLoraBudget`): by the
/// randomized solver when `opt` chooses it for rank `cap`, else as the square roots of the
/// eigenvalues of the min(m, n)-sized Gram matrix accumulated in double (values only). The rule
/// of `opt` is not used.
template <typename Derived>
LoraSpectrum loraSpectrum(const Eigen::MatrixBase<Derived>& tau, Index cap, const LoraOptions& opt = LoraOptions()) {
  using Scalar = typename Derived::Scalar;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  if constexpr ((int(Eigen::internal::traits<Derived>::Flags) & Eigen::DirectAccessBit) == 0) {
    const typename Derived::PlainObject evaluated = tau;
    return loraSpectrum(evaluated, cap, opt);
  } else {
    checkNonEmpty(tau, "loraSpectrum", "tau");
    checkFinite(tau, "loraSpectrum", "tau");
    requireArg(cap >= 1, "loraSpectrum", "cap", cap, ">= 1");
    LoraSpectrum s;
    s.rows = tau.rows();
    s.cols = tau.cols();
    s.normSq = detail::squaredNormInDouble(tau);
    if (s.normSq == 0.0) return s;
    const Index small = std::min(s.rows, s.cols), k = std::min(cap, small);
    const bool randomized = opt.solver == LoraSolver::Randomized ||
                            (opt.solver == LoraSolver::Auto && opt.randomizedIsCheaper(s.rows, s.cols, k));
    if (!randomized) {
      // Values only: the eigenvalues of the small Gram matrix accumulated in double. σ_i² carries
      // an absolute error ≈ u_d·σ_0², far below what a rank allocation can distinguish, at a
      // fraction of the cost of singular vectors.
      Eigen::MatrixXd gram(small, small);
      const Eigen::MatrixXd t = tau.template cast<double>();
      if (s.rows >= s.cols)
        gram.noalias() = t.transpose() * t;
      else
        gram.noalias() = t * t.transpose();
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram, Eigen::EigenvaluesOnly);
      if (eig.info() != Eigen::Success) throw NumericalError("loraSpectrum: the eigensolver did not converge");
      s.sigma.resize(k);
      for (Index i = 0; i < k; ++i) s.sigma(i) = std::sqrt(std::max(0.0, eig.eigenvalues()(small - 1 - i)));
      return s;
    }
    LoraOptions o = opt;
    o.rule = RankRule::fixed(k);
    Matrix u, v;
    typename LoraFactors<Scalar>::Vector sigma;
    detail::loraTriplets<Matrix>(tau, o, s.normSq, u, sigma, v);
    s.sigma = sigma.template cast<double>();
    return s;
  }
}

/// W += sign·scale·B·A in place (sign +1 applies an adapter, −1 removes it); W is m×n, B m×r,
/// A r×n. With `transposed`, W is n×m and gets (B·A)ᵀ — PEFT's embedding layout, where
/// lora_embedding_A is r×vocab and lora_embedding_B dim×r for a vocab×dim weight.
template <typename DW, typename DB, typename DA>
void applyLora(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DB>& b, const Eigen::MatrixBase<DA>& a, double scale,
               double sign = 1.0, bool transposed = false) {
  using Scalar = typename DW::Scalar;
  requireArg(b.cols() == a.rows(), "applyLora", "A", detail::shapeString(a.rows(), a.cols()),
             std::to_string(b.cols()) + " rows (the columns of B)");
  const Index m = transposed ? w.cols() : w.rows(), n = transposed ? w.rows() : w.cols();
  requireArg(b.rows() == m && a.cols() == n, "applyLora", "W", detail::shapeString(w.rows(), w.cols()),
             transposed ? "the shape of (B·A)ᵀ, " + detail::shapeString(a.cols(), b.rows())
                        : "the shape of B·A, " + detail::shapeString(b.rows(), a.cols()));
  requireArg(std::isfinite(scale), "applyLora", "scale", scale, "a finite value");
  requireArg(sign == 1.0 || sign == -1.0, "applyLora", "sign", sign, "+1 or -1");
  checkFinite(b, "applyLora", "B");
  checkFinite(a, "applyLora", "A");
  if (b.cols() == 0) return;
  const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> sb = (Scalar(sign * scale) * b).template cast<Scalar>();
  if (transposed)
    w.derived().noalias() += a.template cast<Scalar>().transpose() * sb.transpose();
  else
    w.derived().noalias() += sb * a.template cast<Scalar>();
}

/// W −= scale·B·A: removes an applied adapter (the inverse of `applyLora`).
template <typename DW, typename DB, typename DA>
void removeLora(Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DB>& b, const Eigen::MatrixBase<DA>& a, double scale,
                bool transposed = false) {
  applyLora(w, b, a, scale, -1.0, transposed);
}

/// One tensor of a budget allocation: its spectrum and what one unit of rank costs.
struct LoraBudgetItem {
  LoraSpectrum spectrum;        ///< leading singular values and ‖τ‖²_F
  std::uint64_t bytesPerRank = 0;  ///< (m + n)·(bytes of the stored dtype)
  Index minRank = 1;            ///< the smallest rank this tensor may get (0 allows dropping it)
};

/// The ranks chosen by `allocateLoraBudget`.
struct LoraAllocation {
  std::vector<Index> ranks;     ///< one per item
  std::uint64_t bytes = 0;      ///< Σ rank·bytesPerRank ≤ the budget
  double errorSq = 0.0;         ///< Σ ‖τ_t − τ_t,r_t‖²_F predicted from the spectra
  double gapBound = 0.0;        ///< errorSq − optimum ≤ gapBound (0 when solved exactly)
  bool exact = false;           ///< whether the exact (dynamic-programming) solver ran
};

/// Chooses every tensor's rank jointly so that Σ_t r_t·bytesPerRank_t ≤ budgetBytes and the summed
/// squared error Σ_t (‖τ_t‖² − Σ_{i<r_t} σ_{t,i}²) is minimal, with r_t ≥ minRank_t and r_t at most
/// the number of singular values given.
///
/// The gains σ_{t,i}² of one tensor decrease with i, so the problem is a knapsack over concave
/// per-tensor gains. Small instances (Σ_t r_t,max · budget/g ≤ 2·10⁷ states, g the gcd of the
/// costs) are solved exactly by dynamic programming; larger ones greedily: rank increments are
/// taken in decreasing order of gain per byte while they fit, and a tensor whose next increment
/// no longer fits stops growing. The greedy choice is optimal when all costs are equal, and is
/// otherwise within `gapBound` (the gain of the first increment that did not fit) of the optimum.
/// Throws `InvalidArgument` when the budget is below Σ_t minRank_t·bytesPerRank_t (named in the
/// message) or an item is malformed. `forceGreedy` skips the exact solver (for tests).
inline LoraAllocation allocateLoraBudget(const std::vector<LoraBudgetItem>& items, std::uint64_t budgetBytes,
                                         bool forceGreedy = false) {
  const std::size_t T = items.size();
  LoraAllocation out;
  out.ranks.assign(T, 0);
  std::uint64_t floorBytes = 0;
  std::vector<Index> maxRank(T);
  for (std::size_t t = 0; t < T; ++t) {
    const LoraBudgetItem& it = items[t];
    const std::string where = "item " + std::to_string(t);
    requireArg(it.bytesPerRank > 0, "allocateLoraBudget", "bytesPerRank", it.bytesPerRank, "> 0 (" + where + ")");
    requireArg(it.minRank >= 0, "allocateLoraBudget", "minRank", it.minRank, ">= 0 (" + where + ")");
    const auto& sg = it.spectrum.sigma;
    for (Index i = 0; i < sg.size(); ++i)
      requireArg(std::isfinite(sg(i)) && sg(i) >= 0.0 && (i == 0 || sg(i) <= sg(i - 1)), "allocateLoraBudget", "sigma",
                 sg(i), "finite, non-negative values sorted in descending order (" + where + ")");
    maxRank[t] = sg.size();
    // A tensor with fewer singular values than its minimum rank (τ = 0) takes what it has.
    out.ranks[t] = std::min(it.minRank, maxRank[t]);
    floorBytes += std::uint64_t(out.ranks[t]) * it.bytesPerRank;
  }
  requireArg(floorBytes <= budgetBytes, "allocateLoraBudget", "budgetBytes", budgetBytes,
             ">= " + std::to_string(floorBytes) + " bytes, the size of every tensor at its minimum rank");
  auto gain = [&](std::size_t t, Index i) { return items[t].spectrum.sigma(i) * items[t].spectrum.sigma(i); };
  const std::uint64_t room = budgetBytes - floorBytes;

  // Exact solver: dynamic programming over the budget in units of g = gcd of the costs.
  std::uint64_t g = 0;
  std::uint64_t increments = 0;
  for (std::size_t t = 0; t < T; ++t) {
    if (maxRank[t] > out.ranks[t]) {
      g = std::gcd(g, items[t].bytesPerRank);
      increments += std::uint64_t(maxRank[t] - out.ranks[t]);
    }
  }
  const std::uint64_t units = g > 0 ? room / g : 0;
  if (!forceGreedy && g > 0 && double(increments) * double(units + 1) <= 2e7) {
    const std::size_t U = std::size_t(units) + 1;
    std::vector<double> best(U, 0.0), next(U);
    std::vector<std::vector<std::uint32_t>> choice(T);
    for (std::size_t t = 0; t < T; ++t) {
      const Index extra = maxRank[t] - out.ranks[t];
      if (extra <= 0) continue;
      const std::uint64_t c = items[t].bytesPerRank / g;
      choice[t].assign(U, 0);
      for (std::size_t u = 0; u < U; ++u) {
        double b = best[u];
        std::uint32_t arg = 0;
        double acc = 0.0;
        for (Index j = 1; j <= extra && std::uint64_t(j) * c <= u; ++j) {
          acc += gain(t, out.ranks[t] + j - 1);
          const double v = best[u - std::size_t(std::uint64_t(j) * c)] + acc;
          if (v > b) {
            b = v;
            arg = std::uint32_t(j);
          }
        }
        next[u] = b;
        choice[t][u] = arg;
      }
      best.swap(next);
    }
    std::size_t u = U - 1;
    for (std::size_t t = T; t-- > 0;) {
      if (choice[t].empty()) continue;
      const std::uint32_t j = choice[t][u];
      out.ranks[t] += Index(j);
      u -= std::size_t(std::uint64_t(j) * (items[t].bytesPerRank / g));
    }
    out.exact = true;
  } else {
    // Greedy by gain per byte; a tensor whose next increment does not fit stops (its cost is fixed).
    using Entry = std::pair<double, std::size_t>;  // (gain per byte, item)
    std::priority_queue<Entry> heap;
    for (std::size_t t = 0; t < T; ++t)
      if (out.ranks[t] < maxRank[t]) heap.push({gain(t, out.ranks[t]) / double(items[t].bytesPerRank), t});
    std::uint64_t left = room;
    bool stopped = false;
    while (!heap.empty()) {
      const std::size_t t = heap.top().second;
      heap.pop();
      const std::uint64_t c = items[t].bytesPerRank;
      if (c > left) {
        if (!stopped) out.gapBound = gain(t, out.ranks[t]);
        stopped = true;
        continue;
      }
      left -= c;
      ++out.ranks[t];
      if (out.ranks[t] < maxRank[t]) heap.push({gain(t, out.ranks[t]) / double(c), t});
    }
  }
  for (std::size_t t = 0; t < T; ++t) {
    out.bytes += std::uint64_t(out.ranks[t]) * items[t].bytesPerRank;
    double kept = 0.0;
    for (Index i = 0; i < out.ranks[t]; ++i) kept += gain(t, i);
    out.errorSq += std::max(0.0, items[t].spectrum.normSq - kept);
  }
  return out;
}

}  // namespace wproj
