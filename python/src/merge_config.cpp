// wproj — Python bindings: `wproj.merge(config, out)`, the YAML merge of the command-line tool. MIT licence.
#include "common.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>

#ifdef WPROJ_PY_MERGE_COMMAND
#include "merge_command.hpp"
#endif

namespace wproj_py {

#ifdef WPROJ_PY_MERGE_COMMAND
namespace {

/// Runs `wcli::runMerge`; returns the JSON report's text, or the plan's text for a dry run.
/// The CLI's errors (CliError, a std::runtime_error) become ValueError with their message.
py::tuple runMergeConfig(const std::string& config, const std::string& out, unsigned threads,
                         const std::string& memoryBudget, bool dryRun, const std::string& reportPath) {
  wcli::MergeOptions o;
  o.config = config;
  o.out = out;
  o.threads = threads;
  o.memoryBudget = memoryBudget;
  o.dryRun = dryRun;
  o.report = reportPath;
  std::string text, error;
  {
    py::gil_scoped_release release;
    std::ostringstream plan;
    std::streambuf* old = dryRun ? std::cout.rdbuf(plan.rdbuf()) : nullptr;
    try {
      wcli::runMerge(o);
    } catch (const wproj::Error&) {
      if (old) std::cout.rdbuf(old);
      throw;
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    if (old) std::cout.rdbuf(old);
    if (dryRun) text = plan.str();
  }
  if (!error.empty()) throw py::value_error(error);
  if (!dryRun) {
    std::ifstream f(reportPath, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  }
  return py::make_tuple(true, text);
}

}  // namespace
#endif

void initMergeConfig(py::module_& m) {
#ifdef WPROJ_PY_MERGE_COMMAND
  m.attr("merge_available") = true;
  m.def("merge_config", &runMergeConfig, py::arg("config"), py::arg("out"), py::arg("threads"), py::arg("memory_budget"),
        py::arg("dry_run"), py::arg("report"), "Runs `wproj merge CONFIG -o OUT`; returns (True, report or plan text).");
#else
  m.attr("merge_available") = false;
  m.def(
      "merge_config",
      [](py::args, py::kwargs) -> py::tuple {
        throw std::runtime_error(
            "wproj.merge is not available: this build of wproj's Python package was configured without the "
            "command-line tool's dependencies (CLI11, yaml-cpp, nlohmann-json; Debian: libcli11-dev libyaml-cpp-dev "
            "nlohmann-json3-dev), which the YAML reader needs");
      },
      "Unavailable in this build (raises RuntimeError).");
#endif
}

}  // namespace wproj_py
