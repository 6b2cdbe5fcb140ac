// wproj command-line tool: what the sharded jobs of `mpirun -np N wproj merge | edit | extract-lora`
// share: collective stages (all or nothing across ranks) and the assembly of every rank's shards
// into one sharded checkpoint. Also used, with no group, by the one-process runs. MIT licence.
#pragma once

#include "common.hpp"
#include "merge_command.hpp"

#include <wproj/io/file.hpp>
#include <wproj/io/safetensors.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace wcli {

/// The stages of a job on the ranks of a `RankGroup` (or on one process when the group is null or
/// has one rank). `run(name, f)` runs `f` on this rank and then, under MPI, agrees: when `f` threw
/// on any rank, every rank throws the same error naming the failing ranks and their messages, so
/// no rank goes on alone or waits in a later collective. `report()` lists each stage's time on
/// this rank and the time spent in its closing agreement (waiting for the slowest rank).
class CollectiveStages {
 public:
  explicit CollectiveStages(const RankGroup* group) : m_group(group && group->size() > 1 ? group : nullptr) {}
  /// True when the job runs on more than one rank.
  bool distributed() const { return m_group != nullptr; }
  /// This process's rank (0 on one process).
  int rank() const { return m_group ? m_group->rank() : 0; }
  /// The number of ranks (1 on one process).
  int size() const { return m_group ? m_group->size() : 1; }
  /// The group (null on one process).
  const RankGroup* group() const { return m_group; }

  /// Runs one stage (see the class comment).
  void run(const std::string& name, const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!m_group) {
      f();
      m_report.push_back({{"stage", name}, {"seconds", since(t0)}});
      return;
    }
    std::string error;
    try {
      f();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "failure";
    } catch (...) {
      error = "unexpected failure";
    }
    const double work = since(t0);
    const auto t1 = std::chrono::steady_clock::now();
    m_group->agree(error, name);
    m_report.push_back({{"stage", name}, {"seconds", work}, {"agree_seconds", since(t1)}});
  }

  /// Throws on every rank when `text` differs between ranks (a no-op on one process).
  void requireSame(const std::string& text, const std::string& what) const {
    if (m_group) m_group->requireSame(text, what);
  }
  /// Every rank's string in rank order (just `s` on one process).
  std::vector<std::string> allgather(const std::string& s) const {
    return m_group ? m_group->allgather(s) : std::vector<std::string>{s};
  }
  /// Broadcasts `s` from rank `root` (a no-op on one process).
  void broadcast(std::string& s, int root) const {
    if (m_group) m_group->broadcast(s, root);
  }

  /// Each stage's seconds on this rank (and its agreement's), for the JSON report.
  const nlohmann::json& report() const { return m_report; }

 private:
  const RankGroup* m_group;
  nlohmann::json m_report = nlohmann::json::array();
};

/// The staging subfolder where rank `r` of a sharded job writes its shards.
inline std::string rankFolder(const std::string& staging, int r) { return staging + "/.rank-" + std::to_string(r); }

/// Rank 0 of a sharded job: moves every rank's shards (the `.safetensors` files of each rank's
/// folder, ranks in order, each rank's files in name order) into the staging folder as
/// model-0000i-of-0000N.safetensors (model.safetensors when there is one), writes the index from
/// their headers when there are several, and removes the rank folders.
inline void assembleShards(const std::string& staging, int ranks) {
  namespace d = wproj::io::detail;
  std::vector<std::string> shards;
  for (int r = 0; r < ranks; ++r) {
    const std::string dir = rankFolder(staging, r);
    if (!d::isDirectory(dir)) continue;
    std::vector<std::string> names = d::listDirectory(dir);
    std::sort(names.begin(), names.end());
    for (const auto& n : names)
      if (d::endsWith(n, ".safetensors")) shards.push_back(dir + "/" + n);
  }
  nlohmann::json weights = nlohmann::json::object();
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    char buf[64];
    if (shards.size() == 1) std::snprintf(buf, sizeof buf, "model.safetensors");
    else std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    const std::string to = staging + "/" + buf;
    if (::rename(shards[i].c_str(), to.c_str()) != 0) throw CliError("cannot move shard '" + shards[i] + "' to '" + to + "'");
    wproj::io::SafetensorsReader rd(to);
    for (const auto& t : rd.tensors()) {
      weights[t.name] = buf;
      total += t.bytes();
    }
  }
  for (int r = 0; r < ranks; ++r) {
    const std::string dir = rankFolder(staging, r);
    if (!d::isDirectory(dir)) continue;
    for (const auto& n : d::listDirectory(dir)) ::unlink((dir + "/" + n).c_str());
    if (::rmdir(dir.c_str()) != 0) throw CliError("cannot remove the staging folder '" + dir + "'");
  }
  if (shards.size() > 1) {
    nlohmann::json j;
    j["metadata"] = {{"total_size", total}};
    j["weight_map"] = weights;
    const std::string text = j.dump(2) + "\n";
    wproj::io::AtomicFile f(staging + "/model.safetensors.index.json");
    f.write(text.data(), text.size());
    f.commit();
  }
}

}  // namespace wcli
