// Muon and APOLLO steps on a 4096×11008 fp32 weight (a LLaMA-7B MLP projection).
//
//   BM_MuonStep              one Muon step (momentum, 5 Newton–Schulz iterations with symmetric
//                            Gram products, update); peer: bench/peers/peer_muon.py (the reference
//                            iteration in PyTorch, same shape and thread count; target ≤ 0.75×)
//   BM_NewtonSchulz          the library's 5 iterations alone (`NewtonSchulz<float>`: SYRK for X Xᵀ and
//                            A², SYMM for B·X)
//   BM_NewtonSchulzGeneral   the same 5 iterations written with general products in Eigen (what the
//                            reference does), to show what the symmetric products save in this build
//   BM_ApolloVsGaLore        an APOLLO step and a GaLore-AdamW step at the same rank (512) and the same
//                            seeded Gaussian basis, alternating in every iteration (target ≤ 1.2×)
//
// Counters: step_ms, gflops (the general-product flop count 5·(4p²q + 2p³) of the iteration per
// second, p×q the wide orientation, so the two Newton–Schulz variants are comparable), and for
// APOLLO apollo_ms, galore_ms, apollo_over_galore.
//
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build-bench/bench/bench_muon
#include <benchmark/benchmark.h>
#include <wproj/core/random.hpp>
#include <wproj/gradient/adamw.hpp>
#include <wproj/gradient/apollo.hpp>
#include <wproj/gradient/gaussian_basis.hpp>
#include <wproj/gradient/muon.hpp>

#include <chrono>

namespace {

using Mat = Eigen::MatrixXf;

double nsFlops(double m, double n, int steps) {
  const double p = std::min(m, n), q = std::max(m, n);
  return steps * (4.0 * p * p * q + 2.0 * p * p * p);
}

void BM_MuonStep(benchmark::State& state) {
  const Eigen::Index m = state.range(0), n = state.range(1);
  const Mat g = wproj::gaussianMatrix<Mat>(m, n, 1, 0, 1e-2);
  Mat w = wproj::gaussianMatrix<Mat>(m, n, 2, 0, 2e-2);
  wproj::Muon<float> opt;
  opt.setLearningRate(0.02);
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    opt.step(w, g);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    seconds += s;
    state.SetIterationTime(s);
    benchmark::DoNotOptimize(w.data());
  }
  const double it = double(state.iterations());
  state.counters["step_ms"] = 1e3 * seconds / it;
  state.counters["gflops"] = nsFlops(double(m), double(n), 5) * it / seconds / 1e9;
}
BENCHMARK(BM_MuonStep)->Args({4096, 11008})->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(2);

void BM_NewtonSchulz(benchmark::State& state) {
  const Eigen::Index m = state.range(0), n = state.range(1);
  const Mat g = wproj::gaussianMatrix<Mat>(m, n, 1, 0, 1e-2);
  Mat out(m, n);
  wproj::NewtonSchulz<float> ns;
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    ns.compute(g, out);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    seconds += s;
    state.SetIterationTime(s);
    benchmark::DoNotOptimize(out.data());
  }
  const double it = double(state.iterations());
  state.counters["step_ms"] = 1e3 * seconds / it;
  state.counters["gflops"] = nsFlops(double(m), double(n), 5) * it / seconds / 1e9;
}
BENCHMARK(BM_NewtonSchulz)->Args({2048, 5504})->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_NewtonSchulzGeneral(benchmark::State& state) {
  const Eigen::Index m = state.range(0), n = state.range(1);
  const Mat g = wproj::gaussianMatrix<Mat>(m, n, 1, 0, 1e-2);
  const float a = 3.4445f, b = -4.7750f, c = 2.0315f;
  const bool tall = m > n;
  const Eigen::Index p = tall ? n : m, q = tall ? m : n;
  Mat x(p, q), y(p, q), A(p, p), B(p, p);
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    if (tall)
      x = g.transpose() / (g.norm() + 1e-7f);
    else
      x = g / (g.norm() + 1e-7f);
    for (int k = 0; k < 5; ++k) {
      A.noalias() = x * x.transpose();
      B.noalias() = c * A * A;
      B += b * A;
      y.noalias() = B * x;
      y += a * x;
      x.swap(y);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    seconds += s;
    state.SetIterationTime(s);
    benchmark::DoNotOptimize(x.data());
  }
  const double it = double(state.iterations());
  state.counters["step_ms"] = 1e3 * seconds / it;
  state.counters["gflops"] = nsFlops(double(m), double(n), 5) * it / seconds / 1e9;
}
BENCHMARK(BM_NewtonSchulzGeneral)->Args({2048, 5504})->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_NewtonSchulzGeneral)->Args({4096, 11008})->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

void BM_ApolloVsGaLore(benchmark::State& state) {
  const Eigen::Index m = state.range(0), n = state.range(1), r = state.range(2);
  const Mat g = wproj::gaussianMatrix<Mat>(m, n, 1, 0, 1e-2);
  Mat wa = wproj::gaussianMatrix<Mat>(m, n, 2, 0, 2e-2), wg = wa;
  wproj::Apollo<wproj::GaussianBasis<float>> apollo;
  apollo.projector().setRank(r).setUpdateGap(1 << 30);
  apollo.setLearningRate(1e-3);
  wproj::ProjectedAdamW<wproj::GaussianBasis<float>> galore;
  galore.projector().setRank(r).setUpdateGap(1 << 30).setScale(0.25f);
  galore.setLearningRate(1e-3);
  apollo.step(wa, g);  // warm-up: first basis, buffers
  galore.step(wg, g);
  double apolloSeconds = 0, galoreSeconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    galore.step(wg, g);
    const auto t1 = std::chrono::steady_clock::now();
    apollo.step(wa, g);
    const auto t2 = std::chrono::steady_clock::now();
    const double gs = std::chrono::duration<double>(t1 - t0).count(), as = std::chrono::duration<double>(t2 - t1).count();
    galoreSeconds += gs;
    apolloSeconds += as;
    state.SetIterationTime(as);
    benchmark::DoNotOptimize(wa.data());
    benchmark::DoNotOptimize(wg.data());
  }
  const double it = double(state.iterations());
  state.counters["apollo_ms"] = 1e3 * apolloSeconds / it;
  state.counters["galore_ms"] = 1e3 * galoreSeconds / it;
  state.counters["apollo_over_galore"] = apolloSeconds / galoreSeconds;
}
BENCHMARK(BM_ApolloVsGaLore)->Args({4096, 11008, 512})->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);

}  // namespace

BENCHMARK_MAIN();
