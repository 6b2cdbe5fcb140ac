// DCT selection at n = 4096 (the SVD-free GaLore variant): the orthonormal DCT-II of every
// column of a 4096×11008 gradient (left side: S = C·G, 11008 transforms of length 4096), alone
// and with L1 scoring + top-512 selection, through the FFT (Makhoul) and the dense GEMM paths.
// The peer is scipy.fft.dct(x, norm='ortho') on the same layout (bench/peers/peer_scipy.py).
#include "common.hpp"

#if __has_include(<wproj/linalg/dct.hpp>)
#include <wproj/linalg/dct.hpp>

#include <string>
#include <vector>

using namespace wproj_bench;

namespace {

const MatF& dctInput() {
  static const MatF g = wproj::gaussianMatrix<MatF>(kDctN, kDctCols, 301);
  return g;
}

wproj::DCTAlgorithm algorithmOf(benchmark::State& state) {
  return state.range(0) == 0 ? wproj::DCTAlgorithm::Fast : wproj::DCTAlgorithm::Dense;
}

void setDenseRate(benchmark::State& state) {
  if (state.range(0) != 0)
    state.counters["GFLOP/s"] = benchmark::Counter(
        2.0 * double(kDctN) * double(kDctN) * double(kDctCols) * double(state.iterations()) / 1e9,
        benchmark::Counter::kIsRate);
}

// S = C·G (every column transformed); arg 0 = FFT path, 1 = dense GEMM path (matrix cached).
void BM_DctTransform(benchmark::State& state) {
  const MatF& g = dctInput();
  wproj::DCT<float> dct(kDctN, algorithmOf(state));
  MatF s = dct.ofColumns(g);  // warm-up: FFT plan, twiddles, the explicit matrix when dense
  for (auto _ : state) {
    s = dct.ofColumns(g);
    benchmark::DoNotOptimize(s.data());
  }
  setDenseRate(state);
  state.SetLabel(state.range(0) == 0 ? "fft, n=4096, cols=11008" : "dense, n=4096, cols=11008");
}
BENCHMARK(BM_DctTransform)->ArgName("dense")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// dctSelect: transform + L1 score of every frequency + top-512 indices + the selected rows
// (a fresh call each time, as an optimizer step would make it).
void BM_DctSelect(benchmark::State& state) {
  const MatF& g = dctInput();
  wproj::DCTSelection<float> sel;
  for (auto _ : state) {
    sel = wproj::dctSelect(g, kDctRank, wproj::Side::Left, wproj::ScoreNorm::L1, algorithmOf(state));
    benchmark::DoNotOptimize(sel.projected.data());
  }
  setDenseRate(state);
  state.SetLabel(std::string(state.range(0) == 0 ? "fft" : "dense") + ", r=" + std::to_string(kDctRank));
}
BENCHMARK(BM_DctSelect)->ArgName("dense")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// S = C·G into a preallocated matrix (no page faults on a fresh 180 MB result each time);
// arg = threads (1, or 0 = automatic: all hardware threads).
void BM_DctTransformInto(benchmark::State& state) {
  const MatF& g = dctInput();
  wproj::DCT<float> dct(kDctN, wproj::DCTAlgorithm::Fast);
  dct.setThreads(int(state.range(0)));
  MatF s;
  dct.ofColumnsInto(g, s);
  for (auto _ : state) {
    dct.ofColumnsInto(g, s);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetLabel("fft into, threads=" + std::string(state.range(0) == 0 ? "auto" : "1"));
}
BENCHMARK(BM_DctTransformInto)->ArgName("threads")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();

// dctTopIndices: the L1 score of every frequency and the top-512 indices, without storing S
// (what the GaLore DCT basis needs); arg = threads as above.
void BM_DctSelectIndices(benchmark::State& state) {
  const MatF& g = dctInput();
  std::vector<wproj::Index> idx;
  for (auto _ : state) {
    wproj::DCT<float> dct(kDctN, wproj::DCTAlgorithm::Fast);
    dct.setThreads(int(state.range(0)));
    idx = wproj::topIndices(dct.scoresOfColumns(g, wproj::ScoreNorm::L1), kDctRank);
    benchmark::DoNotOptimize(idx.data());
  }
  state.SetLabel("fft, indices only, r=" + std::to_string(kDctRank) +
                 ", threads=" + std::string(state.range(0) == 0 ? "auto" : "1"));
}
BENCHMARK(BM_DctSelectIndices)->ArgName("threads")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
#endif

BENCHMARK_MAIN();
