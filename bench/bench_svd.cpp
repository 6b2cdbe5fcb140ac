// Randomized, warm-started and exact truncated SVD on the workloads of bench/common.hpp.
//
// Counters:
//   err_ratio   relative Frobenius error / the optimal (best rank-k) relative error
//   overlap     ‖QᵀQ_exact‖²_F / r with the exact top-r left subspace
//   GFLOP/s     flop-counted rate: only the products with A are counted, (2q + 2)·2mnℓ for q power
//               iterations and a sketch of ℓ = k + p columns (warm start: 2·2mnℓ)
//   gemm_eff    GFLOP/s / the plain GEMM rate of this build for the same shapes (A·X and AᵀX with
//               ℓ columns), measured in this process
#include "common.hpp"

#if __has_include(<wproj/linalg/randomized_svd.hpp>) && __has_include(<wproj/linalg/truncated_svd.hpp>)
#define WPROJ_BENCH_HAVE_SVD 1
#include <wproj/linalg/randomized_svd.hpp>
#include <wproj/linalg/truncated_svd.hpp>
#endif

#include <map>
#include <utility>

#ifdef WPROJ_BENCH_HAVE_SVD
using namespace wproj_bench;

namespace {

double cachedGemmRate(Index m, Index n, Index k) {
  static std::map<std::pair<std::pair<Index, Index>, Index>, double> cache;
  const auto key = std::make_pair(std::make_pair(m, n), k);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, gemmRateGflops(m, n, k)).first;
  return it->second;
}

void setRates(benchmark::State& state, double flopsPerIteration, Index m, Index n, Index ell) {
  const double rate = flopsPerIteration * double(state.iterations()) / 1e9;
  state.counters["GFLOP/s"] = benchmark::Counter(rate, benchmark::Counter::kIsRate);
  // gemm_eff is computed from the per-iteration time Google Benchmark reports: set it as a rate
  // divided by the GEMM rate.
  const double gemm = cachedGemmRate(m, ell, n);
  state.counters["gemm_GFLOP/s"] = gemm;
  state.counters["gemm_eff"] = benchmark::Counter(rate / gemm, benchmark::Counter::kIsRate);
}

// Randomized SVD of the 4096×4096 power-law matrix at rank 128: args = {q, blockKrylov, p, b}
// with b the Krylov block size (0: ℓ = k + p).
void BM_RandomizedSVD(benchmark::State& state) {
  const PowerLawMatrix& w = PowerLawMatrix::get();
  const Index q = state.range(0), p = state.range(2), b = state.range(3);
  const bool krylov = state.range(1) != 0;
  wproj::RandomizedSVD<MatF> rsvd;
  rsvd.setRank(kRsvdRank).setOversampling(p).setPowerIterations(q).setBlockKrylov(krylov).setSeed(7);
  if (b > 0) rsvd.setKrylovBlockSize(b);
  rsvd.compute(w.a);  // warm-up (allocations, page faults)
  for (auto _ : state) {
    rsvd.compute(w.a);
    benchmark::DoNotOptimize(rsvd.matrixU().data());
  }
  const double err = w.relativeError(rsvd.matrixU(), rsvd.singularValues(), rsvd.matrixV());
  const double opt = w.optimalError(kRsvdRank);
  state.counters["err_ratio"] = err / opt;
  state.counters["rel_err"] = err;
  state.counters["est_err"] = rsvd.errorEstimate();
  // Products with A: the first sketch, two per iteration, and Z = AᵀQ (block Krylov: the same count).
  const Index ell = (krylov && b > 0) ? b : kRsvdRank + p;
  setRates(state, double(2 * q + 2) * 2.0 * double(kRsvdM) * double(kRsvdN) * double(ell), kRsvdM, kRsvdN, ell);
  state.SetLabel(std::string(krylov ? "block Krylov" : "power iteration") + ", q=" + std::to_string(q) +
                 (krylov && b > 0 ? ", b=" + std::to_string(b) : ", p=" + std::to_string(p)));
}
BENCHMARK(BM_RandomizedSVD)
    ->ArgNames({"q", "krylov", "p", "b"})
    ->Args({0, 0, 10, 0})->Args({1, 0, 10, 0})->Args({2, 0, 10, 0})->Args({3, 0, 10, 0})->Args({4, 0, 10, 0})
    ->Args({2, 0, 20, 0})->Args({2, 0, 30, 0})
    ->Args({1, 1, 10, 0})->Args({1, 1, 30, 0})->Args({1, 1, 40, 0})->Args({2, 1, 0, 0})
    ->Args({3, 1, 10, 48})->Args({4, 1, 10, 48})->Args({3, 1, 10, 64})->Args({2, 1, 10, 96})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// Exact truncated SVD of the same matrix (rank 128).
void BM_TruncatedSVD(benchmark::State& state) {
  const PowerLawMatrix& w = PowerLawMatrix::get();
  wproj::TruncatedSVD<MatF> svd;
  svd.setRank(kRsvdRank);
  for (auto _ : state) {
    svd.compute(w.a);
    benchmark::DoNotOptimize(svd.matrixU().data());
  }
  const double err = w.relativeError(svd.matrixU(), svd.singularValues(), svd.matrixV());
  state.counters["err_ratio"] = err / w.optimalError(kRsvdRank);
  state.SetLabel(std::string("method=") + wproj::toString(svd.methodUsed()));
}
BENCHMARK(BM_TruncatedSVD)->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// GaLore-style refresh of the drifting 4096×11008 gradient at rank 512 (left basis, m < n).
// Warm: one subspace iteration from the previous basis (Y = GᵀP0, Q = orth(Y), Z = GQ, small SVD).
void BM_RefreshWarm(benchmark::State& state) {
  const DriftingGradient& w = DriftingGradient::get();
  const Index p = state.range(0);
  wproj::RandomizedSVD<MatF> rsvd;
  rsvd.setRank(kGradRank).setOversampling(p).setSeed(7).setStartingLeftBasis(w.previousBasis);
  rsvd.compute(w.g);
  for (auto _ : state) {
    rsvd.compute(w.g);
    benchmark::DoNotOptimize(rsvd.matrixU().data());
  }
  state.counters["overlap"] = overlap(rsvd.matrixU(), w.exactBasis);
  state.counters["overlap_prev"] = overlap(w.previousBasis, w.exactBasis);
  const Index ell = kGradRank + p;
  setRates(state, 2.0 * 2.0 * double(kGradM) * double(kGradN) * double(ell), kGradM, kGradN, ell);
  state.SetLabel("warm start, p=" + std::to_string(p) + ", q=" + std::to_string(rsvd.powerIterationsUsed()));
}
BENCHMARK(BM_RefreshWarm)->ArgName("p")->Arg(0)->Arg(10)->Unit(benchmark::kMillisecond)->UseRealTime();

// Warm subspace iteration without the SVD (warmSubspaceIteration: GᵀP0, G·Y, CholeskyQR of the
// 4096×512 block): the same subspace as the p = 0 warm start above.
void BM_RefreshWarmSubspace(benchmark::State& state) {
  const DriftingGradient& w = DriftingGradient::get();
  MatF p = wproj::warmSubspaceIteration(w.g, w.previousBasis, wproj::Side::Left);
  for (auto _ : state) {
    p = wproj::warmSubspaceIteration(w.g, w.previousBasis, wproj::Side::Left);
    benchmark::DoNotOptimize(p.data());
  }
  state.counters["overlap"] = overlap(p, w.exactBasis);
  state.counters["overlap_prev"] = overlap(w.previousBasis, w.exactBasis);
  setRates(state, 2.0 * 2.0 * double(kGradM) * double(kGradN) * double(kGradRank), kGradM, kGradN, kGradRank);
  state.SetLabel("warm subspace iteration, p=0");
}
BENCHMARK(BM_RefreshWarmSubspace)->Unit(benchmark::kMillisecond)->UseRealTime();

// Cold randomized refresh (Gaussian sketch, q power iterations; -1 = the automatic choice).
void BM_RefreshCold(benchmark::State& state) {
  const DriftingGradient& w = DriftingGradient::get();
  wproj::RandomizedSVD<MatF> rsvd;
  rsvd.setRank(kGradRank).setOversampling(10).setPowerIterations(state.range(0)).setSeed(7);
  for (auto _ : state) {
    rsvd.compute(w.g);
    benchmark::DoNotOptimize(rsvd.matrixU().data());
  }
  state.counters["overlap"] = overlap(rsvd.matrixU(), w.exactBasis);
  const Index ell = kGradRank + 10;
  const double q = double(rsvd.powerIterationsUsed());
  setRates(state, (2 * q + 2) * 2.0 * double(kGradM) * double(kGradN) * double(ell), kGradM, kGradN, ell);
  state.SetLabel("cold, q=" + std::to_string(rsvd.powerIterationsUsed()));
}
BENCHMARK(BM_RefreshCold)->ArgName("q")->Arg(2)->Arg(-1)->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// Exact thin SVD (what GaLore runs at every refresh), keeping the top 512.
void BM_RefreshExact(benchmark::State& state) {
  const DriftingGradient& w = DriftingGradient::get();
  wproj::TruncatedSVD<MatF> svd;
  svd.setRank(kGradRank);
  if (state.range(0) == 1) svd.setMethod(wproj::SVDMethod::Bdc);
  for (auto _ : state) {
    svd.compute(w.g);
    benchmark::DoNotOptimize(svd.matrixU().data());
  }
  state.counters["overlap"] = overlap(svd.matrixU(), w.exactBasis);
  state.SetLabel(std::string("exact, method=") + wproj::toString(svd.methodUsed()));
}
BENCHMARK(BM_RefreshExact)->ArgName("bdc")->Arg(0)->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// The two GEMMs a warm refresh cannot avoid: Y = GᵀP0 (11008×4096 · 4096×512) and G·Z
// (4096×11008 · 11008×512).
void BM_RefreshTwoGemms(benchmark::State& state) {
  const DriftingGradient& w = DriftingGradient::get();
  MatF y(kGradN, kGradRank), z(kGradM, kGradRank);
  for (auto _ : state) {
    y.noalias() = w.g.transpose() * w.previousBasis;
    z.noalias() = w.g * y;
    benchmark::DoNotOptimize(z.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * 2.0 * double(kGradM) * double(kGradN) * double(kGradRank) * double(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RefreshTwoGemms)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
#endif  // WPROJ_BENCH_HAVE_SVD

BENCHMARK_MAIN();
