// One GaLore-AdamW step (project → Adam in the subspace → project back) against the two
// projection GEMMs it contains, measured in the same run, plus heap allocations per step.
//
// Shape: a 4096×11008 fp32 gradient (a LLaMA-7B MLP projection) at rank 512. The step uses a
// seeded Gaussian basis so that warm-up is cheap; a non-refresh step costs the same for every
// dense basis (exact or randomized SVD, INT4-dequantised, online PCA without its tracking).
// Counters: step_ms and gemm_ms (mean per iteration), step_over_gemm (target ≤ 1.3),
// allocs_per_step (operator new calls + Eigen mallocs during timed steps; target 0). The GEMM
// pair and the step alternate in every iteration, so a load change on the machine hits both.
//
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench/bench_gradient
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace alloc_count {
std::atomic<long> calls{0};
}  // namespace alloc_count

// Count Eigen's heap allocations too: with EIGEN_RUNTIME_NO_MALLOC an allocation while malloc is
// "not allowed" trips eigen_assert, which we turn into a counter.
#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x) \
  do { if (!(x)) ++alloc_count::calls; } while (0)

#include <benchmark/benchmark.h>
#include <wproj/core/random.hpp>
#include <wproj/gradient/adamw.hpp>
#include <wproj/gradient/gaussian_basis.hpp>

#include <chrono>

void* operator new(std::size_t n) {
  ++alloc_count::calls;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

static void BM_GaLoreAdamWStep(benchmark::State& state) {
  using Mat = Eigen::MatrixXf;
  const Eigen::Index m = state.range(0), n = state.range(1), r = state.range(2);
  const Mat g = wproj::gaussianMatrix<Mat>(m, n, 1, 0, 1e-2);
  Mat w = wproj::gaussianMatrix<Mat>(m, n, 2, 0, 2e-2);
  wproj::ProjectedAdamW<wproj::GaussianBasis<float>> opt;
  opt.projector().setRank(r).setUpdateGap(1 << 30).setScale(0.25f);
  opt.setLearningRate(1e-3);
  opt.step(w, g);  // warm-up: first basis, buffers
  const Mat p = opt.projector().denseBasis();  // the same P (ambient m × r: left side for m < n)
  Mat lowRank(r, n);
  double gemmSeconds = 0, stepSeconds = 0;
  long allocs = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    lowRank.noalias() = p.transpose() * g;       // projection GEMM: R = PᵀG
    w.noalias() += (-1e-3f * p) * lowRank;       // back-projection GEMM: W += c·P N
    const auto t1 = std::chrono::steady_clock::now();
    const long before = alloc_count::calls.load();
    Eigen::internal::set_is_malloc_allowed(false);
    opt.step(w, g);
    Eigen::internal::set_is_malloc_allowed(true);
    allocs += alloc_count::calls.load() - before;
    const auto t2 = std::chrono::steady_clock::now();
    const double gs = std::chrono::duration<double>(t1 - t0).count(), ss = std::chrono::duration<double>(t2 - t1).count();
    gemmSeconds += gs;
    stepSeconds += ss;
    state.SetIterationTime(ss);
    benchmark::DoNotOptimize(w.data());
  }
  const double it = double(state.iterations());
  state.counters["step_ms"] = 1e3 * stepSeconds / it;
  state.counters["gemm_ms"] = 1e3 * gemmSeconds / it;
  state.counters["step_over_gemm"] = stepSeconds / gemmSeconds;
  state.counters["allocs_per_step"] = double(allocs) / it;
  state.counters["GFLOP/s_gemm"] = 4.0 * double(m) * double(n) * double(r) * it / gemmSeconds / 1e9;
}
BENCHMARK(BM_GaLoreAdamWStep)->Args({4096, 11008, 512})->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK(BM_GaLoreAdamWStep)->Args({1024, 2752, 128})->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);

BENCHMARK_MAIN();
