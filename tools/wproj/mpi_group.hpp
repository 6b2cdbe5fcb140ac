// wproj command-line tool: the ranks of `mpirun -np N wproj ...` as the merge sees them
// (wcli::RankGroup over the MPI layer's communicator). Compiled only when the tool is built with MPI.
#pragma once

#include "merge_command.hpp"

#include <wproj/mpi.hpp>

#include <cstdlib>
#include <string>
#include <vector>

namespace wcli {

/// wcli::RankGroup over `MPI_COMM_WORLD`.
class MpiRankGroup : public RankGroup {
 public:
  MpiRankGroup() = default;
  int rank() const override { return m_comm.rank(); }
  int size() const override { return m_comm.size(); }
  int localSize() const override {
    // Open MPI, MPICH/Hydra and Slurm name the ranks on this node differently.
    for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"})
      if (const char* s = std::getenv(v)) {
        const int n = std::atoi(s);
        if (n >= 1) return n;
      }
    return 1;
  }
  void agree(const std::string& error, const std::string& stage) const override { m_comm.agree(error, stage); }
  void requireSame(const std::string& text, const std::string& what) const override { m_comm.requireSame(text, what); }
  std::vector<std::string> allgather(const std::string& s) const override { return m_comm.allgather(s); }
  void broadcast(std::string& s, int root) const override { m_comm.broadcast(s, root); }

 private:
  wproj::mpi::Communicator m_comm;
};

}  // namespace wcli
