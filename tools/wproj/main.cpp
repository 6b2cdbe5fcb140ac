// wproj command-line tool: entry point and `wproj info`.
#include "common.hpp"

#include <wproj/core/config.hpp>
#include <wproj/version.hpp>
#ifdef WPROJ_WITH_MPI
#include "mpi_group.hpp"
#endif

#include <nlohmann/json.hpp>

#include <iomanip>
#include <map>
#include <memory>
#include <new>

namespace wcli {
namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
};

void runInfo(const InfoOptions& o) {
  const wproj::io::Checkpoint c(o.model);
  std::map<std::string, std::uint64_t> byDtype;
  std::uint64_t elements = 0, bytes = 0, twoD = 0;
  for (const auto& n : c.names()) {
    const auto& t = c.info(n);
    byDtype[t.dtypeString()] += t.count();
    elements += t.count();
    bytes += t.bytes();
    twoD += t.is2d();
  }
  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model;
    j["files"] = c.shardCount();
    j["tensors"] = nlohmann::json::array();
    for (const auto& n : c.names()) {
      const auto& t = c.info(n);
      j["tensors"].push_back({{"name", n}, {"dtype", t.dtypeString()}, {"shape", t.shape}, {"bytes", t.bytes()}});
    }
    j["total"] = {{"tensors", c.names().size()}, {"elements", elements}, {"bytes", bytes}, {"two_d", twoD}};
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::size_t width = 6;
  for (const auto& n : c.names()) width = std::max(width, n.size());
  std::cout << o.model << ": " << c.shardCount() << " file(s)\n";
  std::cout << std::left << std::setw(int(width) + 2) << "tensor" << std::setw(9) << "dtype" << std::setw(22) << "shape"
            << "bytes\n";
  for (const auto& n : c.names()) {
    const auto& t = c.info(n);
    std::cout << std::setw(int(width) + 2) << n << std::setw(9) << t.dtypeString() << std::setw(22)
              << t.shapeString() << t.bytes() << "\n";
  }
  std::cout << "total: " << c.names().size() << " tensors (" << twoD << " 2-D), " << elements << " elements, "
            << humanBytes(double(bytes)) << " (";
  bool first = true;
  for (const auto& kv : byDtype) {
    std::cout << (first ? "" : ", ") << kv.first << ": " << kv.second;
    first = false;
  }
  std::cout << ")\n";
}

}  // namespace
}  // namespace wcli

namespace {

// The number of processes an MPI launcher started, or 0 when this process was not started by one.
int launcherWorldSize() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"})
    if (const char* s = std::getenv(v)) return std::max(1, std::atoi(s));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun the ranks cooperate through MPI (`wproj merge` shards its tensors over them). A
  // wproj built without MPI refuses to run as N uncoordinated copies writing the same output.
  const int launched = launcherWorldSize();
#ifdef WPROJ_WITH_MPI
  std::unique_ptr<wproj::mpi::Environment> mpiEnv;
  std::unique_ptr<wcli::MpiRankGroup> ranks;
  if (launched > 0) {
    try {
      mpiEnv = std::make_unique<wproj::mpi::Environment>(&argc, &argv);
      ranks = std::make_unique<wcli::MpiRankGroup>();
    } catch (const std::exception& e) {
      std::cerr << "wproj: error: MPI start-up failed: " << e.what() << "\n";
      return 1;
    }
  }
  const wcli::RankGroup* group = ranks.get();
#else
  if (launched > 1) {
    std::cerr << "wproj: error: started by an MPI launcher with " << launched
              << " processes, but this wproj was built without MPI; rebuild it with Open MPI installed "
                 "(libopenmpi-dev; CMake -DWPROJ_WITH_MPI=ON) or run it without mpirun\n";
    return 1;
  }
  const wcli::RankGroup* group = nullptr;
#endif
  CLI::App app{"wproj " WPROJ_VERSION_STRING
               " - weight-matrix projection methods on safetensors checkpoints and .npy arrays.\n"
               "Inputs are opened read-only; outputs appear only when complete."};
  app.require_subcommand(1);
  app.set_version_flag("--version", WPROJ_VERSION_STRING);

  wcli::InfoOptions info;
  auto* sub = app.add_subcommand("info", "List the tensors of a model (.safetensors, sharded index.json or folder)");
  sub->add_option("MODEL", info.model, "a .safetensors file, a model.safetensors.index.json, or a folder")->required();
  sub->add_flag("--json", info.json, "print JSON instead of a table");
  sub->footer("Example:\n  wproj info model.safetensors\n  wproj info checkpoints/llama/   # sharded: reads model.safetensors.index.json\n");
  sub->callback([&]() { wcli::runInfo(info); });

  // Exit status: 0 on success (and for --help / --version), 2 for a malformed command line
  // (CLI11's parse errors and wcli::UsageError), 1 for every other failure; always one line.
  // Each message is one string written at once: the ranks of an MPI run share stderr, and a
  // line written in pieces could interleave with another rank's.
  auto oneLine = [](std::string msg) {
    for (auto& ch : msg)
      if (ch == '\n' || ch == '\r') ch = ' ';
    while (!msg.empty() && msg.back() == ' ') msg.pop_back();
    return msg;
  };
  try {
    wcli::addLinalgCommands(app);
    wcli::addEditCommands(app, group);
    wcli::addMergeCommand(app, group);
    wcli::addLoraCommands(app, group);
    if (argc > 1 && argv[1][0] != '-') {
      bool known = false;
      std::string names;
      for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
        known = known || sub->get_name() == argv[1];
        names += (names.empty() ? "" : ", ") + sub->get_name();
      }
      if (!known) throw wcli::UsageError(std::string("unknown command '") + argv[1] + "' (expected one of " + names + ")");
    }
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --help-all, --version
    std::cerr << ("wproj: usage error: " + oneLine(e.what()) + " (see 'wproj --help' or 'wproj COMMAND --help')\n");
    return 2;
  } catch (const wcli::UsageError& e) {
    std::cerr << ("wproj: usage error: " + oneLine(e.what()) + "\n");
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "wproj: error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << ("wproj: error: " + oneLine(e.what()) + "\n");
    return 1;
  } catch (...) {
    std::cerr << "wproj: error: unexpected failure\n";
    return 1;
  }
  return 0;
}
