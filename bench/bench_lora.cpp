// LoRA extraction (wproj::extractLora) on synthetic fine-tuning deltas, the workloads of
// bench/peers/peer_lora.py (which times torch.linalg.svd truncation and torch.svd_lowrank on them).
//
// The task vectors are read from .npy files that bench/peers/workloads.py writes (lora_data):
// lora_tau_MxN.npy (float32, τ = Σ_{i≤256} i^-0.7 u_i v_iᵀ plus dense noise holding ~30% of ‖τ‖_F)
// and lora_sigma_MxN.npy (every singular value of that τ, from the float64 Gram matrix), in
// $WPROJ_LORA_DATA or <temp folder>/wproj-lora-bench. Both sides factor the same bits. Make them with
//   /usr/bin/python3 bench/peers/peer_lora.py --prepare
//
// Counters:
//   rel_err     ‖τ − scale·B·A‖_F / ‖τ‖_F of the extracted factors (measured by extractLora)
//   opt_err     the Eckart–Young optimum for the rank, from the exact spectrum
//   err_ratio   rel_err / opt_err
//   randomized  1 when the randomized solver ran, 0 for the exact one
// CPU time is the process's (all threads: OpenBLAS's too), as peer_lora.py records for torch.
#include "common.hpp"

#if __has_include(<wproj/lowrank/lora.hpp>) && __has_include(<wproj/io/npy.hpp>)
#define WPROJ_BENCH_HAVE_LORA 1
#include <wproj/io/npy.hpp>
#include <wproj/lowrank/lora.hpp>
#endif

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#ifdef WPROJ_BENCH_HAVE_LORA
using namespace wproj_bench;

namespace {

// Keep in step with LORA_SHAPES of bench/peers/workloads.py.
constexpr Index kLoraShapes[][2] = {{4096, 11008}, {4096, 4096}, {1024, 2752}};

std::string dataFolder() {
  if (const char* d = std::getenv("WPROJ_LORA_DATA"); d && *d) return d;
  return (std::filesystem::temp_directory_path() / "wproj-lora-bench").string();
}

/// One workload: τ (column-major float) and the squared singular values of τ (double).
struct LoraWorkload {
  MatF tau;
  Eigen::VectorXd sigma;
  double normSq = 0;
  std::string error;  // non-empty when the files are missing

  LoraWorkload(Index m, Index n) {
    const std::string shape = std::to_string(m) + "x" + std::to_string(n);
    const std::string tauPath = dataFolder() + "/lora_tau_" + shape + ".npy";
    const std::string sigmaPath = dataFolder() + "/lora_sigma_" + shape + ".npy";
    if (!std::filesystem::exists(tauPath) || !std::filesystem::exists(sigmaPath)) {
      error = "missing " + tauPath + " (make it with /usr/bin/python3 bench/peers/peer_lora.py --prepare)";
      return;
    }
    tau = wproj::io::readNpy<float>(tauPath);
    sigma = wproj::io::readNpy<double>(sigmaPath);
    normSq = squaredNormD(tau);
    if (tau.rows() != m || tau.cols() != n) error = tauPath + " is not " + shape;
  }
  /// ‖τ − τ_r‖_F / ‖τ‖_F for the best rank-r approximation.
  double optimalError(Index r) const {
    const double kept = sigma.head(std::min<Index>(r, sigma.size())).squaredNorm();
    return std::sqrt(std::max(0.0, normSq - kept) / normSq);
  }
  static const LoraWorkload& get(Index shape) {
    static std::map<Index, std::unique_ptr<LoraWorkload>> cache;
    auto& slot = cache[shape];
    if (!slot) {
      cache.clear();  // one τ in memory at a time (the 4096×11008 one is 180 MB)
      auto& fresh = cache[shape];
      fresh = std::make_unique<LoraWorkload>(kLoraShapes[shape][0], kLoraShapes[shape][1]);
      return *fresh;
    }
    return *slot;
  }
};

void report(benchmark::State& state, const LoraWorkload& w, const wproj::LoraFactors<float>& f, Index rank,
            const std::string& solver) {
  const double opt = w.optimalError(rank);
  state.counters["rel_err"] = f.relativeError();
  state.counters["opt_err"] = opt;
  state.counters["err_ratio"] = f.relativeError() / opt;
  state.counters["randomized"] = f.randomized ? 1 : 0;
  state.SetLabel(std::to_string(w.tau.rows()) + "x" + std::to_string(w.tau.cols()) + ", r=" + std::to_string(rank) + ", " +
                 solver);
}

// extractLora with the solver chosen by cost (LoraSolver::Auto): args = {shape, rank, q, krylov},
// krylov = 1 for block Krylov iteration with the default blocks (q its depth, −1 automatic: the
// library's default), 0 for power iteration (q power iterations, −1 meaning 2).
void BM_LoraExtract(benchmark::State& state) {
  const LoraWorkload& w = LoraWorkload::get(state.range(0));
  if (!w.error.empty()) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  const Index rank = state.range(1), q = state.range(2);
  const bool krylov = state.range(3) != 0;
  wproj::LoraOptions opt;
  opt.rule = wproj::RankRule::fixed(rank);
  opt.powerIterations = q;
  opt.blockKrylov = krylov;
  opt.seed = 7;
  wproj::LoraFactors<float> f;
  for (auto _ : state) {
    f = wproj::extractLora(w.tau, opt);
    benchmark::DoNotOptimize(f.B.data());
  }
  const std::string qs = q >= 0 ? std::to_string(q) : std::string("auto");
  report(state, w, f, rank,
         f.randomized ? (krylov ? "krylov b=" + std::to_string(opt.krylovBlockFor(rank)) + ", q=" + qs : "power, q=" + qs)
                      : "exact");
}
BENCHMARK(BM_LoraExtract)
    ->ArgNames({"shape", "r", "q", "krylov"})
    ->Apply([](benchmark::internal::Benchmark* b) {  // shape-major: each τ is read once
      for (Index shape : {0, 1, 2})
        for (Index r : {16, 64, 256}) {
          for (Index q : {-1, 2, 3}) b->Args({shape, r, q, 1});
          for (Index q : {1, 2, 3}) b->Args({shape, r, q, 0});
        }
    })
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

// extractLora with the exact solver (TruncatedSVD): wproj's own counterpart of torch.linalg.svd.
void BM_LoraExact(benchmark::State& state) {
  const LoraWorkload& w = LoraWorkload::get(state.range(0));
  if (!w.error.empty()) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  const Index rank = state.range(1);
  wproj::LoraOptions opt;
  opt.rule = wproj::RankRule::fixed(rank);
  opt.solver = wproj::LoraSolver::Exact;
  wproj::LoraFactors<float> f;
  for (auto _ : state) {
    f = wproj::extractLora(w.tau, opt);
    benchmark::DoNotOptimize(f.B.data());
  }
  report(state, w, f, rank, "exact");
}
BENCHMARK(BM_LoraExact)
    ->ArgNames({"shape", "r"})
    ->Args({0, 64})->Args({1, 64})->Args({2, 64})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

}  // namespace
#endif  // WPROJ_BENCH_HAVE_LORA

BENCHMARK_MAIN();
