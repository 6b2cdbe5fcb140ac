// wproj — the MPI tests' main: initialises MPI, runs the Catch2 session on every rank, and exits
// non-zero on every rank when a test failed on any of them. Ranks other than 0 report failures only.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <wproj/mpi.hpp>

int main(int argc, char** argv) {
  wproj::mpi::Environment env(&argc, &argv);
  wproj::mpi::Communicator world;
  Catch::Session session;
  if (int rc = session.applyCommandLine(argc, argv)) return rc;
  if (!world.isRoot()) session.configData().showSuccessfulTests = false;
  const int failed = session.run();
  const int anyFailed = world.max(failed);
  if (world.isRoot() && anyFailed != 0 && failed == 0)
    std::fprintf(stderr, "test_mpi: tests failed on another rank (see its output above)\n");
  return anyFailed != 0 ? 1 : 0;
}
