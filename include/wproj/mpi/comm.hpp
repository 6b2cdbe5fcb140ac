// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The MPI layer's foundation: an RAII environment, a communicator with the few collectives
/// wproj's distributed algorithms need (in-place sums of Eigen blocks, broadcasts of matrices
/// and strings, agreement), collective error handling, and the deterministic partitions (row
/// blocks, largest-first work assignment) the distributed methods share.
///
/// Optional: include it (or <wproj/mpi.hpp>) only in a program compiled and linked against MPI
/// (CMake: link `wproj::mpi`, which defines `WPROJ_WITH_MPI`). The rest of wproj stays serial and
/// header-only and never includes <mpi.h>.
///
/// Collective error model. A wproj collective called on a communicator is called by every rank
/// of it, in the same order. A failure on one rank must not leave the others waiting in the next
/// collective: `Communicator::collectively(stage, f)` runs `f` on every rank, then exchanges the
/// outcomes, and throws the same `CollectiveError` on every rank (naming each failing rank and its
/// message) when any rank failed. MPI's own failures (a lost peer) are returned as errors on the
/// communicator, not aborts, and throw `CommunicationError`.

#include "../core/config.hpp"
#include "../core/partition.hpp"

#include <mpi.h>

#include <Eigen/Core>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace wproj {

/// An MPI operation failed (a lost peer, a communicator error): a runtime error of the
/// distributed layer. Also a `std::runtime_error`.
class CommunicationError : public std::runtime_error, public Error {
 public:
  explicit CommunicationError(const std::string& message) : std::runtime_error(message) {}
  const char* what() const noexcept override { return std::runtime_error::what(); }
};

/// A collective stage failed on at least one rank; thrown on every rank with the same message,
/// which names each failing rank and its error. Also a `std::runtime_error`.
class CollectiveError : public std::runtime_error, public Error {
 public:
  CollectiveError(const std::string& message, std::vector<int> failedRanks)
      : std::runtime_error(message), m_failed(std::move(failedRanks)) {}
  const char* what() const noexcept override { return std::runtime_error::what(); }
  /// The ranks whose part of the stage threw, ascending.
  const std::vector<int>& failedRanks() const { return m_failed; }

 private:
  std::vector<int> m_failed;
};

namespace mpi {

/// Throws `CommunicationError` naming `where` and MPI's error string when `rc` is not success.
inline void check(int rc, const char* where) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  throw CommunicationError(std::string(where) + ": MPI error " + std::to_string(rc) + " (" +
                           std::string(text, std::size_t(std::max(len, 0))) + ")");
}

/// The MPI datatype of a C++ arithmetic type.
template <typename T>
MPI_Datatype datatype() {
  if constexpr (std::is_same<T, float>::value) return MPI_FLOAT;
  else if constexpr (std::is_same<T, double>::value) return MPI_DOUBLE;
  else if constexpr (std::is_same<T, char>::value) return MPI_CHAR;
  else if constexpr (std::is_same<T, unsigned char>::value) return MPI_UNSIGNED_CHAR;
  else if constexpr (std::is_same<T, int>::value) return MPI_INT;
  else if constexpr (std::is_same<T, long long>::value) return MPI_LONG_LONG;
  else if constexpr (std::is_same<T, long>::value) return MPI_LONG;
  else if constexpr (std::is_same<T, unsigned long>::value) return MPI_UNSIGNED_LONG;
  else if constexpr (std::is_same<T, unsigned long long>::value) return MPI_UNSIGNED_LONG_LONG;
  else static_assert(sizeof(T) == 0, "wproj::mpi::datatype: unsupported type");
}

/// Whether MPI has been initialised (and not yet finalised) in this process.
inline bool isInitialized() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

/// Whether this process was started by an MPI launcher (mpirun / mpiexec of Open MPI, MPICH or
/// Slurm's srun with PMI): the environment variables those launchers set. A program built without
/// MPI uses the same test to refuse running as N uncoordinated copies.
inline bool launchedByMpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

/// RAII initialisation of MPI for a program: `MPI_Init_thread` (FUNNELED: only the thread that
/// initialised MPI calls it; worker threads compute) unless MPI is already initialised, and
/// `MPI_Finalize` at destruction when this object initialised it.
class Environment {
 public:
  Environment(int* argc, char*** argv) {
    if (isInitialized()) return;
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "wproj::mpi::Environment: MPI_Init_thread");
    m_owned = true;
    // Errors are returned to wproj (and thrown), not fatal: a failing rank can still tell the others.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  Environment() : Environment(nullptr, nullptr) {}
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  ~Environment() {
    if (m_owned && isInitialized()) MPI_Finalize();
  }
  /// Whether this object initialised MPI (and will finalise it).
  bool owned() const { return m_owned; }

 private:
  bool m_owned = false;
};

// The partitions (row blocks, largest-first assignment) live in core/partition.hpp, which does not
// need MPI; they are also reachable as wproj::mpi::blockRows and wproj::mpi::assignLargestFirst.
using wproj::RowRange;
using wproj::blockRows;
using wproj::assignLargestFirst;

/// A non-owning handle on an MPI communicator (default: `MPI_COMM_WORLD`) with the collectives
/// wproj's distributed algorithms use. Every collective member must be called by all ranks of the
/// communicator in the same order. Buffers of any size are sent in pieces of at most 2³⁰ elements
/// (MPI counts are `int`).
class Communicator {
 public:
  /// `MPI_COMM_WORLD` (MPI must be initialised: see `Environment`).
  Communicator() : Communicator(MPI_COMM_WORLD) {}
  /// Wraps `comm` (not owned; it must outlive this handle). Sets `MPI_ERRORS_RETURN` on it.
  explicit Communicator(MPI_Comm comm) : m_comm(comm) {
    if (!isInitialized())
      throw StateError("wproj::mpi::Communicator: MPI is not initialised; create a wproj::mpi::Environment first");
    check(MPI_Comm_set_errhandler(m_comm, MPI_ERRORS_RETURN), "wproj::mpi::Communicator: MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(m_comm, &m_rank), "wproj::mpi::Communicator: MPI_Comm_rank");
    check(MPI_Comm_size(m_comm, &m_size), "wproj::mpi::Communicator: MPI_Comm_size");
  }

  /// This process's rank in [0, size()).
  int rank() const { return m_rank; }
  /// The number of ranks.
  int size() const { return m_size; }
  /// Whether this is rank 0.
  bool isRoot() const { return m_rank == 0; }
  /// The underlying MPI communicator.
  MPI_Comm native() const { return m_comm; }

  /// Waits for every rank.
  void barrier() const { check(MPI_Barrier(m_comm), "wproj::mpi::Communicator::barrier"); }

  /// In-place element-wise sum over the ranks of `count` values at `data` (every rank gets it).
  template <typename T>
  void allreduceSum(T* data, std::size_t count) const {
    allreduceOp(data, count, MPI_SUM, "wproj::mpi::Communicator::allreduceSum");
  }
  /// In-place element-wise maximum over the ranks.
  template <typename T>
  void allreduceMax(T* data, std::size_t count) const {
    allreduceOp(data, count, MPI_MAX, "wproj::mpi::Communicator::allreduceMax");
  }
  /// In-place element-wise sum of a matrix or vector over the ranks (every rank passes the same
  /// shape). A block without contiguous storage is summed through a temporary.
  template <typename Derived>
  void allreduceSum(Eigen::DenseBase<Derived>& x) const {
    using Scalar = typename Derived::Scalar;
    if constexpr (hasContiguousStorage<Derived>()) {
      if (isContiguous(x.derived())) {
        allreduceSum(x.derived().data(), std::size_t(x.size()));
        return;
      }
    }
    Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> tmp = x;
    allreduceSum(tmp.data(), std::size_t(tmp.size()));
    x = tmp;
  }
  template <typename Derived>
  void allreduceSum(Eigen::DenseBase<Derived>&& x) const {
    allreduceSum(x);
  }
  /// The sum of one value over the ranks.
  template <typename T>
  T sum(T value) const {
    allreduceSum(&value, 1);
    return value;
  }
  /// The maximum of one value over the ranks.
  template <typename T>
  T max(T value) const {
    allreduceMax(&value, 1);
    return value;
  }
  /// Whether `value` is true on every rank.
  bool allTrue(bool value) const {
    int v = value ? 1 : 0, out = 0;
    check(MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_LAND, m_comm), "wproj::mpi::Communicator::allTrue");
    return out != 0;
  }

  /// Broadcasts `count` values at `data` from `root`.
  template <typename T>
  void broadcast(T* data, std::size_t count, int root) const {
    checkRoot(root, "broadcast");
    forEachPiece(count, [&](std::size_t offset, int n) {
      check(MPI_Bcast(data + offset, n, datatype<T>(), root, m_comm), "wproj::mpi::Communicator::broadcast");
    });
  }
  /// Broadcasts a dense matrix or vector (shape included: other ranks' `x` is resized) from `root`.
  template <typename Derived>
  void broadcast(Eigen::PlainObjectBase<Derived>& x, int root) const {
    long long shape[2] = {(long long)x.rows(), (long long)x.cols()};
    broadcast(shape, 2, root);
    if (m_rank != root) x.resize(Index(shape[0]), Index(shape[1]));
    broadcast(x.data(), std::size_t(x.size()), root);
  }
  /// Broadcasts a string from `root`.
  void broadcast(std::string& s, int root) const {
    unsigned long long len = s.size();
    broadcast(&len, 1, root);
    if (m_rank != root) s.assign(std::size_t(len), '\0');
    if (len > 0) broadcast(&s[0], std::size_t(len), root);
  }

  /// Every rank's `value`, in rank order, on every rank.
  template <typename T>
  std::vector<T> allgather(T value) const {
    static_assert(std::is_arithmetic<T>::value, "wproj::mpi::Communicator::allgather: arithmetic values only");
    std::vector<T> out(static_cast<std::size_t>(m_size));
    check(MPI_Allgather(&value, 1, datatype<T>(), out.data(), 1, datatype<T>(), m_comm),
          "wproj::mpi::Communicator::allgather");
    return out;
  }
  /// Every rank's string, in rank order, on every rank.
  std::vector<std::string> allgather(const std::string& s) const {
    const std::vector<long long> lens = allgather((long long)s.size());
    std::vector<std::string> out(static_cast<std::size_t>(m_size));
    for (int r = 0; r < m_size; ++r) {
      out[std::size_t(r)] = (r == m_rank) ? s : std::string(std::size_t(lens[std::size_t(r)]), '\0');
      if (lens[std::size_t(r)] > 0) broadcast(&out[std::size_t(r)][0], std::size_t(lens[std::size_t(r)]), r);
    }
    return out;
  }

  /// The all-or-nothing step of a collective stage: every rank passes its error message (empty
  /// on success). Returns when all succeeded; otherwise throws on every rank the same
  /// `CollectiveError`, "<stage> failed on rank r: message; rank s: message".
  void agree(const std::string& error, const std::string& stage) const {
    if (allTrue(error.empty())) return;
    const std::vector<std::string> errors = allgather(error);
    std::string msg = stage + " failed on ";
    std::vector<int> failed;
    for (int r = 0; r < m_size; ++r) {
      if (errors[std::size_t(r)].empty()) continue;
      msg += (failed.empty() ? "rank " : "; rank ") + std::to_string(r) + ": " + errors[std::size_t(r)];
      failed.push_back(r);
    }
    throw CollectiveError(msg, failed);
  }

  /// Runs `f()` on this rank, then `agree`s: when `f` throws on any rank, every rank throws the
  /// `CollectiveError` naming the failing ranks and their messages (so no rank is left waiting
  /// in a later collective). `f` must not itself call collectives that other ranks might skip.
  template <typename F>
  void collectively(const std::string& stage, F&& f) const {
    std::string error;
    try {
      f();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "unknown error";
    } catch (const Error& e) {
      error = e.what();
      if (error.empty()) error = "unknown error";
    } catch (...) {
      error = "unknown exception";
    }
    agree(error, stage);
  }

  /// The 64-bit FNV-1a hash of `text`, checked equal on every rank: throws `CollectiveError` on
  /// every rank, naming the ranks that differ from rank 0, when the ranks hold different views
  /// (configurations, tensor lists, shapes) of what must be one computation.
  void requireSame(const std::string& text, const std::string& what) const {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    const std::vector<unsigned long long> all = allgather((unsigned long long)h);
    std::string msg;
    std::vector<int> differ;
    for (int r = 1; r < m_size; ++r) {
      if (all[std::size_t(r)] == all[0]) continue;
      differ.push_back(r);
      msg += (msg.empty() ? "" : ", ") + std::to_string(r);
    }
    if (!differ.empty())
      throw CollectiveError(std::string(differ.size() == 1 ? "rank " : "ranks ") + msg +
                                (differ.size() == 1 ? " holds" : " hold") + " a different " + what +
                                " from rank 0; every rank must be started with the same inputs",
                            differ);
  }

 private:
  template <typename Derived>
  static constexpr bool hasContiguousStorage() {
    return bool(Eigen::internal::traits<Derived>::Flags & Eigen::DirectAccessBit);
  }
  template <typename Derived>
  static bool isContiguous(const Derived& x) {
    if constexpr (hasContiguousStorage<Derived>()) {
      if (x.innerStride() != 1) return false;
      const Index inner = Derived::IsRowMajor ? x.cols() : x.rows();
      return x.outerStride() == inner || (Derived::IsRowMajor ? x.rows() : x.cols()) <= 1;
    }
    return false;
  }
  template <typename F>
  static void forEachPiece(std::size_t count, F&& f) {
    constexpr std::size_t kPiece = std::size_t(1) << 30;
    for (std::size_t offset = 0; offset < count; offset += kPiece) f(offset, int(std::min(kPiece, count - offset)));
  }
  template <typename T>
  void allreduceOp(T* data, std::size_t count, MPI_Op op, const char* where) const {
    forEachPiece(count, [&](std::size_t offset, int n) {
      check(MPI_Allreduce(MPI_IN_PLACE, data + offset, n, datatype<T>(), op, m_comm), where);
    });
  }
  void checkRoot(int root, const char* what) const {
    requireArg(root >= 0 && root < m_size, (std::string("wproj::mpi::Communicator::") + what).c_str(), "root", root,
               "a rank in [0, size)");
  }

  MPI_Comm m_comm;
  int m_rank = 0;
  int m_size = 1;
};

}  // namespace mpi
}  // namespace wproj
