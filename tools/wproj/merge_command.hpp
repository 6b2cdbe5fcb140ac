// wproj — the `merge` command as a function: runs a mergekit YAML configuration on checkpoint files.
// Used by the command-line tool and by the Python package (`wproj.merge`). MIT licence.
#pragma once

#include <string>

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

/// Runs the merge described by `o.config` (everything `wproj merge` does). Throws `CliError`
/// (a std::runtime_error) with a one-line message on bad input; writes nothing then.
void runMerge(const MergeOptions& o);

}  // namespace wcli
