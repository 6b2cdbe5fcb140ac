// COAP's cheap projection update against its warm-started refresh (range finder + SVD of the
// small sketch) on the same gradient: the cheap update should cost a fraction of the refresh.
#include "common.hpp"

#include <wproj/gradient/coap_basis.hpp>
#include <wproj/gradient/svd_basis.hpp>

using namespace wproj;
using wproj_bench::MatF;

namespace {

// Args: rows, cols, rank. The gradient is Gaussian (the cost does not depend on its spectrum).
MatF gradientOf(const benchmark::State& state) { return gaussianMatrix<MatF>(state.range(0), state.range(1), 17); }

void BM_COAPCheapUpdate(benchmark::State& state) {
  const MatF g = gradientOf(state);
  COAPBasis<float> b;
  b.refresh(g, Side::Right, state.range(2), 0, nullptr);
  for (auto _ : state) {
    b.cheapUpdateNow(g, Side::Right);
    benchmark::DoNotOptimize(b.matrixP().data());
  }
}

void BM_COAPWarmRefresh(benchmark::State& state) {
  const MatF g = gradientOf(state);
  COAPBasis<float> b;
  b.refresh(g, Side::Right, state.range(2), 0, nullptr);
  for (auto _ : state) {
    b.refresh(g, Side::Right, state.range(2), 1, nullptr);
    benchmark::DoNotOptimize(b.matrixP().data());
  }
}

// GaLore's refresh (exact truncated SVD of G) on the same gradient, for scale.
void BM_ExactSVDRefresh(benchmark::State& state) {
  const MatF g = gradientOf(state);
  SVDBasis<float> b;
  for (auto _ : state) {
    b.refresh(g, Side::Right, state.range(2), 0, nullptr);
    benchmark::DoNotOptimize(b.matrixP().data());
  }
}

}  // namespace

BENCHMARK(BM_COAPCheapUpdate)->Args({1024, 2752, 128})->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_COAPWarmRefresh)->Args({1024, 2752, 128})->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_ExactSVDRefresh)->Args({1024, 2752, 128})->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_COAPCheapUpdate)->Args({4096, 4096, 256})->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_COAPWarmRefresh)->Args({4096, 4096, 256})->Unit(benchmark::kMillisecond)->MinTime(1.0);

BENCHMARK_MAIN();
