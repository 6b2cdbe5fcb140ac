// One OPCM step on a 1024×4096 fp32 layer: the thin-SVD projection of wproj (opcmProject)
// against the merged delta of two earlier task models.
//
// The workload (also used by bench/peers/opcm_reference.py, the NumPy port of the reference
// algorithm with full SVDs): task vectors τ_i = A_i B_i / 8 + 0.05·E_i, with A_i (1024×64),
// B_i (64×4096) and E_i (1024×4096) standard Gaussian from wproj's counter generator (seed 2025,
// streams 3i, 3i+1, 3i+2); the merged delta is S = τ_1 + τ_2 and the incoming task is τ_3; α = 0.5.
//
// `--write-npy=DIR` writes S.npy, tau.npy and projected.npy (fp32, C order) to DIR before the
// benchmarks run, so the peer can check that both compute the same tensor:
//   bench_merging --write-npy=/tmp/opcm --benchmark_out=/tmp/opcm/bench.json --benchmark_out_format=json
//   /usr/bin/python3 bench/peers/opcm_reference.py /tmp/opcm
#include <benchmark/benchmark.h>
#include <wproj/core/random.hpp>
#include <wproj/merging/opcm.hpp>

#include <Eigen/Core>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

using MatF = Eigen::MatrixXf;
constexpr Eigen::Index kM = 1024, kN = 4096, kTaskRank = 64;
constexpr double kAlpha = 0.5;

MatF taskVector(int i) {
  const MatF a = wproj::gaussianMatrix<MatF>(kM, kTaskRank, 2025, 3 * std::uint64_t(i));
  const MatF b = wproj::gaussianMatrix<MatF>(kTaskRank, kN, 2025, 3 * std::uint64_t(i) + 1);
  MatF t = wproj::gaussianMatrix<MatF>(kM, kN, 2025, 3 * std::uint64_t(i) + 2, 0.05);
  t.noalias() += (a * b) * 0.125f;
  return t;
}

struct Workload {
  MatF s, tau;
  Workload() : s(taskVector(1) + taskVector(2)), tau(taskVector(3)) {}
};

const Workload& workload() {
  static const Workload w;
  return w;
}

/// A minimal .npy (v1.0) writer for a column-major float matrix, stored in C order.
void writeNpy(const std::string& path, const MatF& m) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(m.rows()) + ", " +
                       std::to_string(m.cols()) + "), }";
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  const char magic[] = "\x93NUMPY\x01\x00";
  f.write(magic, 8);
  const std::uint16_t len = std::uint16_t(header.size());
  f.write(reinterpret_cast<const char*>(&len), 2);
  f.write(header.data(), std::streamsize(header.size()));
  const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm = m;
  f.write(reinterpret_cast<const char*>(rm.data()), std::streamsize(sizeof(float) * std::size_t(rm.size())));
  if (!f) throw std::runtime_error("cannot write " + path);
}

void BM_OpcmStep(benchmark::State& state) {
  const Workload& w = workload();
  MatF out;
  wproj::Index r = -1;
  for (auto _ : state) {
    out = wproj::opcmProject(w.s, w.tau, kAlpha, &r);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["split_r"] = double(r);
  state.SetLabel("1024x4096 fp32, alpha 0.5, thin SVD");
}
BENCHMARK(BM_OpcmStep)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

/// The thin SVD alone (the part of a step that is not GEMM).
void BM_OpcmStepSvdOnly(benchmark::State& state) {
  const Workload& w = workload();
  for (auto _ : state) {
    wproj::TruncatedSVD<MatF> svd;
    svd.setRankRule(wproj::RankRule::all()).compute(w.s);
    benchmark::DoNotOptimize(svd.matrixU().data());
  }
}
BENCHMARK(BM_OpcmStepSvdOnly)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const char* flag = "--write-npy=";
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0) {
      const std::string dir = argv[i] + std::strlen(flag);
      const Workload& w = workload();
      wproj::Index r = -1;
      const MatF projected = wproj::opcmProject(w.s, w.tau, kAlpha, &r);
      writeNpy(dir + "/S.npy", w.s);
      writeNpy(dir + "/tau.npy", w.tau);
      writeNpy(dir + "/projected.npy", projected);
      std::ofstream(dir + "/split_rank.txt") << r << "\n";
      std::cerr << "wrote S.npy, tau.npy, projected.npy (split r = " << r << ") to " << dir << "\n";
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = int(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
