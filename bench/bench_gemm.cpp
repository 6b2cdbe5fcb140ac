// The reference rate: plain GEMM of this build (Eigen, or OpenBLAS with WPROJ_USE_BLAS=ON).
// Other benchmarks report their GFLOP/s against this number measured in the same run.
//
// Shapes: the products of a rank-128 randomized SVD of a 4096×4096 matrix (ℓ = 138 columns) and
// the two GEMMs a warm-started GaLore refresh of a 4096×11008 gradient at rank 512 cannot avoid:
// G·Z (4096×11008 · 11008×512) and its transpose counterpart Gᵀ·P (11008×4096 · 4096×512).
#include <benchmark/benchmark.h>
#include <wproj/core/random.hpp>

#include <Eigen/Core>

// C = A·B with A m×k, B k×n (args m, n, k).
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
BENCHMARK_TEMPLATE(BM_Gemm, float)->ArgNames({"m", "n", "k"})->Args({4096, 512, 4096})->Args({4096, 138, 4096})->Args({4096, 64, 4096})->Args({4096, 512, 11008})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Gemm, double)->ArgNames({"m", "n", "k"})->Args({4096, 512, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

// C = Aᵀ·B with A stored k×m (column-major), B k×n (args m, n, k): the "transpose counterpart".
template <typename Scalar>
static void BM_GemmTransposed(benchmark::State& state) {
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const Eigen::Index m = state.range(0), n = state.range(1), k = state.range(2);
  const Mat a = wproj::gaussianMatrix<Mat>(k, m, 1), b = wproj::gaussianMatrix<Mat>(k, n, 2);
  Mat c(m, n);
  for (auto _ : state) {
    c.noalias() = a.transpose() * b;
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k) * double(state.iterations()) / 1e9,
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK_TEMPLATE(BM_GemmTransposed, float)->ArgNames({"m", "n", "k"})->Args({4096, 138, 4096})->Args({4096, 64, 4096})->Args({11008, 512, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
