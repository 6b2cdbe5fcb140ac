// Tests of the MPI layer's foundation: partitions, collectives on Eigen blocks, and the collective
// error model (a failure on one rank is reported on every rank, no rank left waiting).
#include <catch2/catch.hpp>

#include <wproj/mpi.hpp>

#include <Eigen/Dense>

#include <numeric>
#include <string>

namespace {

wproj::mpi::Communicator world() { return wproj::mpi::Communicator(); }

}  // namespace

TEST_CASE("blockRows partitions every row exactly once, in rank order", "[mpi]") {
  for (wproj::Index total : {0, 1, 2, 7, 100}) {
    for (int size : {1, 2, 3, 5}) {
      wproj::Index next = 0;
      for (int r = 0; r < size; ++r) {
        const auto range = wproj::mpi::blockRows(total, r, size);
        CHECK(range.first == next);
        CHECK(range.count >= total / size);
        CHECK(range.count <= total / size + 1);
        next += range.count;
      }
      CHECK(next == total);
    }
  }
  CHECK_THROWS_AS(wproj::mpi::blockRows(10, 3, 3), wproj::InvalidArgument);
}

TEST_CASE("assignLargestFirst balances by cost and is deterministic", "[mpi]") {
  const std::vector<double> costs = {5, 1, 4, 3, 3, 2, 8};
  const auto owner = wproj::mpi::assignLargestFirst(costs, 3);
  std::vector<double> load(3, 0);
  for (std::size_t i = 0; i < costs.size(); ++i) load[std::size_t(owner[i])] += costs[i];
  // Total 26 over 3 ranks: LPT gives 9/9/8 here; the largest item goes to rank 0.
  CHECK(owner[6] == 0);
  CHECK(*std::max_element(load.begin(), load.end()) <= 9.0);
  CHECK(owner == wproj::mpi::assignLargestFirst(costs, 3));
  const auto one = wproj::mpi::assignLargestFirst(costs, 1);
  CHECK(std::all_of(one.begin(), one.end(), [](int r) { return r == 0; }));
}

TEMPLATE_TEST_CASE("allreduceSum sums matrices, blocks and row-major maps over the ranks", "[mpi]", float, double) {
  const auto comm = world();
  const int p = comm.size(), r = comm.rank();
  using Mat = Eigen::Matrix<TestType, Eigen::Dynamic, Eigen::Dynamic>;
  Mat a = Mat::Constant(5, 3, TestType(r + 1));
  comm.allreduceSum(a);
  CHECK((a.array() == TestType(p * (p + 1) / 2)).all());
  // A non-contiguous block goes through a temporary; the rest of the matrix is untouched.
  Mat b = Mat::Constant(6, 4, TestType(1));
  comm.allreduceSum(b.block(1, 1, 3, 2));
  CHECK(b(0, 0) == TestType(1));
  CHECK(b(1, 1) == TestType(p));
  CHECK(b(5, 3) == TestType(1));
  std::vector<TestType> storage(12, TestType(r));
  Eigen::Map<Eigen::Matrix<TestType, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> m(storage.data(), 3, 4);
  comm.allreduceSum(m);
  CHECK(storage[11] == TestType(p * (p - 1) / 2));
}

TEST_CASE("broadcast sends matrices with their shape, and strings", "[mpi]") {
  const auto comm = world();
  const int root = comm.size() - 1;
  Eigen::MatrixXd x;
  if (comm.rank() == root) x = Eigen::MatrixXd::Identity(4, 2) * 3.0;
  comm.broadcast(x, root);
  REQUIRE(x.rows() == 4);
  REQUIRE(x.cols() == 2);
  CHECK(x(1, 1) == 3.0);
  std::string s = comm.rank() == 0 ? "rank zero speaks" : "";
  comm.broadcast(s, 0);
  CHECK(s == "rank zero speaks");
  const auto names = comm.allgather(std::string(std::size_t(comm.rank()), 'x'));
  REQUIRE(int(names.size()) == comm.size());
  for (int i = 0; i < comm.size(); ++i) CHECK(names[std::size_t(i)].size() == std::size_t(i));
  CHECK_THROWS_AS(comm.broadcast(x, comm.size()), wproj::InvalidArgument);
}

TEST_CASE("a failure on one rank throws the same CollectiveError on every rank", "[mpi]") {
  const auto comm = world();
  const int bad = comm.size() - 1;
  std::string message;
  std::vector<int> failed;
  try {
    comm.collectively("stage 'load'", [&]() {
      if (comm.rank() == bad) throw wproj::IoError("cannot open shard.safetensors");
    });
  } catch (const wproj::CollectiveError& e) {
    message = e.what();
    failed = e.failedRanks();
  }
  CHECK(message == "stage 'load' failed on rank " + std::to_string(bad) + ": cannot open shard.safetensors");
  CHECK(failed == std::vector<int>{bad});
  // Success everywhere: no throw, and the ranks can go on with collectives.
  CHECK_NOTHROW(comm.collectively("stage 'ok'", []() {}));
  CHECK(comm.sum(1) == comm.size());
}

TEST_CASE("requireSame names the ranks whose view differs from rank 0", "[mpi]") {
  const auto comm = world();
  CHECK_NOTHROW(comm.requireSame("config: ties, density 0.5", "configuration"));
  if (comm.size() == 1) return;
  std::string message;
  try {
    comm.requireSame(comm.rank() == 1 ? "config B" : "config A", "configuration");
  } catch (const wproj::CollectiveError& e) {
    message = e.what();
  }
  CHECK(message.find("rank 1 holds a different configuration") != std::string::npos);
}
