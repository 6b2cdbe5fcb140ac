// Distributed randomized SVD: wall time and the time spent in MPI collectives of
// wproj::mpi::DistributedRandomizedSVD<float> on a row-distributed m×n matrix (default 20000×2000,
// rank k = 64, p = 10, automatic q), run as
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 mpirun -np N build-bench/bench/bench_mpi_svd [m n k reps]
// A plain main (not Google Benchmark): every rank generates its own rows of A = B Cᵀ + noise
// (B m×200 Gaussian scaled by a decaying spectrum, C n×200 Gaussian; rows drawn with
// CounterRng::fillGaussianSketchRows, so A does not depend on the rank count), then the median of
// `reps` timed computes is reported by rank 0 with the communication counters (on one rank, also
// the serial RandomizedSVD with the same settings).
#include <wproj/mpi.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  wproj::mpi::Environment env(&argc, &argv);
  wproj::mpi::Communicator comm;
  const wproj::Index m = argc > 1 ? std::atol(argv[1]) : 20000;
  const wproj::Index n = argc > 2 ? std::atol(argv[2]) : 2000;
  const wproj::Index k = argc > 3 ? std::atol(argv[3]) : 64;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 3;
  const wproj::Index r = std::min<wproj::Index>(200, std::min(m, n));

  const auto rows = wproj::mpi::blockRows(m, comm.rank(), comm.size());
  Eigen::MatrixXf b(rows.count, r), c(n, r), noise(rows.count, n);
  wproj::CounterRng(1, 0).fillGaussianSketchRows(b, m, rows.first);
  wproj::CounterRng(1, 1).fillGaussianSketch(c);
  wproj::CounterRng(1, 2).fillGaussianSketchRows(noise, m, rows.first);
  for (wproj::Index j = 0; j < r; ++j) b.col(j) *= float(1.0 / (1.0 + 0.1 * double(j)));
  Eigen::MatrixXf a = b * c.transpose() + 0.01f * noise;
  noise.resize(0, 0);

  wproj::mpi::DistributedRandomizedSVD<float> svd(comm);
  svd.setRank(k).setSeed(7);
  std::vector<double> total, commSec;
  for (int rep = 0; rep <= reps; ++rep) {  // rep 0 warms up
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    svd.compute(a, rows.first);
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double slowest = comm.max(t), commMax = comm.max(svd.communicationSeconds());
    if (rep > 0) {
      total.push_back(slowest);
      commSec.push_back(commMax);
    }
  }
  std::sort(total.begin(), total.end());
  std::sort(commSec.begin(), commSec.end());
  // On one rank, the serial RandomizedSVD with the same settings, for the layer's own overhead.
  double serialSec = -1;
  if (comm.size() == 1) {
    wproj::RandomizedSVD<Eigen::MatrixXf> serial;
    serial.setRank(k).setSeed(7);
    std::vector<double> ts;
    for (int rep = 0; rep <= reps; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      serial.compute(a);
      if (rep > 0) ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ts.begin(), ts.end());
    serialSec = ts[ts.size() / 2];
  }
  if (comm.isRoot()) {
    std::printf("bench_mpi_svd: ranks %d  A %ldx%ld float  k %ld  l %ld  q %ld\n", comm.size(), long(m), long(n),
                long(k), long(svd.sketchSize()), long(svd.powerIterationsUsed()));
    std::printf("  median of %d: total %.3f s, in MPI collectives %.3f s (slowest rank)\n", reps,
                total[total.size() / 2], commSec[commSec.size() / 2]);
    std::printf("  allreduce calls %ld, values %ld (%.1f MB per rank)\n", long(svd.allreduceCalls()),
                long(svd.allreduceValues()), double(svd.allreduceValues()) * 4.0 / 1e6);
    if (serialSec >= 0) std::printf("  serial RandomizedSVD (same settings): %.3f s\n", serialSec);
    std::printf("  sigma_0 %.4g  sigma_k-1 %.4g  error estimate %.4g\n", double(svd.singularValues()(0)),
                double(svd.singularValues()(k - 1)), svd.errorEstimate());
  }
  return 0;
}
