// The reference rate: plain GEMM of this build (Eigen, or OpenBLAS with WPROJ_USE_BLAS=ON).
// Other benchmarks report their GFLOP/s against this number measured in the same run.
#include <benchmark/benchmark.h>
#include <wproj/core/random.hpp>

#include <Eigen/Core>

template <typename Scalar>
static void BM_Gemm(benchmark::State& state) {
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const Eigen::Index m = state.range(0), n = state.range(1), k = state.range(2);
  const Mat a = wproj::gaussianMatrix<Mat>(m, k, 1), b = wproj::gaussianMatrix<Mat>(k, n, 2);
  Mat c(m, n);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k) * double(state.iterations()) / 1e9,
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK_TEMPLATE(BM_Gemm, float)->Args({4096, 512, 4096})->Args({4096, 138, 4096})->Args({4096, 512, 11008})->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_Gemm, double)->Args({4096, 512, 4096})->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
