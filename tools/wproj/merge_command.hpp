// wproj — the `merge` command as a function: runs a mergekit YAML configuration on checkpoint files.
// Used by the command-line tool and by the Python package (`wproj.merge`). MIT licence.
#pragma once

#include <string>
#include <vector>

namespace wcli {

/// Options of `wproj merge CONFIG -o OUT`.
struct MergeOptions {
  std::string config;        ///< the YAML configuration file
  std::string out;           ///< output .safetensors file or folder
  std::string report;        ///< JSON report file; empty: standard output
  std::string memoryBudget;  ///< e.g. "8GB"; empty: half the RAM
  bool dryRun = false;       ///< validate and print the plan; write nothing
  bool listMethods = false;  ///< print the method table instead of merging
  unsigned threads = 0;      ///< tensors merged at once; 0: the hardware threads
};

/// The processes of a sharded merge (`mpirun -np N wproj merge`), as the merge needs them; the tool
/// implements it over MPI (tools/wproj/mpi_group.hpp), so this interface and the merge itself do
/// not depend on MPI. Every member is collective: all ranks call it, in the same order.
class RankGroup {
 public:
  virtual ~RankGroup() = default;
  /// This process's rank in [0, size()).
  virtual int rank() const = 0;
  /// The number of ranks.
  virtual int size() const = 0;
  /// The number of ranks on this machine (they share its cores and memory).
  virtual int localSize() const = 0;
  /// Every rank passes its error ("" on success); when any rank failed, every rank throws the same
  /// std::runtime_error naming the failing ranks and their messages.
  virtual void agree(const std::string& error, const std::string& stage) const = 0;
  /// Throws on every rank when `text` differs between ranks (names the ranks and `what`).
  virtual void requireSame(const std::string& text, const std::string& what) const = 0;
  /// Every rank's string, in rank order.
  virtual std::vector<std::string> allgather(const std::string& s) const = 0;
  /// Broadcasts a string from `root`.
  virtual void broadcast(std::string& s, int root) const = 0;
};

/// Runs the merge described by `o.config` (everything `wproj merge` does). Throws `CliError`
/// (a std::runtime_error) with a one-line message on bad input; writes nothing then.
///
/// With a `group` of N > 1 ranks (every rank calls runMerge with the same options): the tensors are
/// assigned to ranks by bytes, largest first; each rank merges its tensors and writes its own
/// shards into the staging folder; rank 0 names the shards, writes the index, the config and the
/// card, and swaps the folder in. All or nothing: a failure on any rank makes every rank throw
/// that rank's message, and no output appears. Tensor values equal the one-process run's bits.
void runMerge(const MergeOptions& o, const RankGroup* group = nullptr);

}  // namespace wcli
