// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Splitting one BLAS-level computation over threads that wproj starts itself.
///
/// Some level-3 routines parallelise poorly inside OpenBLAS — its threaded SSYRK of a
/// 512×512 Gram over 8192 rows runs at two thirds of its SGEMM rate on two cores — while the same
/// work cut into independent blocks, each computed by single-threaded BLAS on its own thread,
/// runs at the GEMM rate. `BlasThreadSplit` gives the number of threads to use (OpenBLAS's own
/// thread count, so `OPENBLAS_NUM_THREADS` and `openblas_set_num_threads` keep their meaning) and
/// holds OpenBLAS at one thread while the blocks run. Builds without OpenBLAS's thread control
/// (no BLAS, or `EIGEN_USE_BLAS` without `WPROJ_OPENBLAS`) report one thread: the callers then make
/// their single plain call.

#include "config.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
extern "C" {
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);
}
#endif

namespace wproj {
namespace detail {

/// Threads for a split BLAS computation, and a process-wide hold of OpenBLAS at one thread while
/// the split runs. Nested and concurrent holds (e.g. two Python threads without the GIL) share one
/// saved value: the first hold saves OpenBLAS's thread count, the last one restores it. BLAS calls
/// other threads make meanwhile run on one thread — correct, only slower.
class BlasThreadSplit {
 public:
  /// Threads the split may use: OpenBLAS's thread count (1 without OpenBLAS thread control).
  static int available() {
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
    std::lock_guard<std::mutex> lock(state().mutex);
    return state().depth > 0 ? state().saved : std::max(1, openblas_get_num_threads());
#else
    return 1;
#endif
  }

  /// Runs task(0), …, task(parts − 1) on min(parts, threads) threads (the calling thread is one),
  /// each thread taking the next task not yet started, with OpenBLAS held at one thread — also
  /// when there is one thread, so that the tasks' BLAS calls round the same way for any thread
  /// count. Tasks must write disjoint outputs. An exception in a task is rethrown here after every
  /// thread has finished.
  template <typename Task>
  static void run(int parts, int threads, Task&& task) {
    threads = std::max(1, std::min(parts, threads));
    OneThread hold;
    if (threads == 1) {
      for (int p = 0; p < parts; ++p) task(p);
      return;
    }
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
    std::atomic<int> next{0};
    auto worker = [&](int t) {
      try {
        for (int p = next++; p < parts; p = next++) task(p);
      } catch (...) {
        errors[std::size_t(t)] = std::current_exception();
      }
    };
    std::vector<std::thread> pool;
    pool.reserve(std::size_t(threads - 1));
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
    worker(0);
    for (auto& th : pool) th.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

  /// Holds OpenBLAS at one thread for its lifetime (a no-op without OpenBLAS thread control), e.g.
  /// around a LAPACK call whose result must not depend on the thread count.
  class OneThread {
   public:
    OneThread() {
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
      std::lock_guard<std::mutex> lock(state().mutex);
      if (state().depth++ == 0) {
        state().saved = std::max(1, openblas_get_num_threads());
        openblas_set_num_threads(1);
      }
#endif
    }
    ~OneThread() {
#if defined(EIGEN_USE_BLAS) && defined(WPROJ_OPENBLAS)
      std::lock_guard<std::mutex> lock(state().mutex);
      if (--state().depth == 0) openblas_set_num_threads(state().saved);
#endif
    }
    OneThread(const OneThread&) = delete;
    OneThread& operator=(const OneThread&) = delete;
  };

 private:
  struct State {
    std::mutex mutex;
    int depth = 0;
    int saved = 1;
  };
  static State& state() {
    static State s;
    return s;
  }
};

}  // namespace detail
}  // namespace wproj
