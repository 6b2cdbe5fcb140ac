// wproj command-line tool: shared helpers.
#pragma once

#include <wproj/io.hpp>

#include <CLI/CLI.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

namespace wcli {

/// A user-facing failure: printed as one line, exit status 1.
struct CliError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Registers the subcommands of each group.
void addLinalgCommands(CLI::App& app);
void addEditCommands(CLI::App& app);
void addMergeCommand(CLI::App& app);

inline std::string humanBytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

/// Compiles a user regex (ECMAScript), with the option name in the error.
inline std::regex compileRegex(const std::string& pattern, const std::string& option) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw CliError(option + ": '" + pattern + "' is not a valid regular expression (" + e.what() + ")");
  }
}

/// Refuses to write `out` over one of the inputs (same file).
inline void checkNotAnInput(const std::string& out, const std::vector<std::string>& inputs) {
  struct stat so;
  if (::stat(out.c_str(), &so) != 0) return;
  for (const auto& in : inputs) {
    struct stat si;
    if (::stat(in.c_str(), &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
      throw CliError("output '" + out + "' is the input '" + in + "'; inputs are never modified, choose another output");
  }
}

/// Every file of a checkpoint (for checkNotAnInput).
inline std::vector<std::string> filesOf(const wproj::io::Checkpoint& c) {
  std::vector<std::string> f;
  for (std::size_t i = 0; i < c.shardCount(); ++i) f.push_back(c.shard(i).path());
  f.push_back(c.path());
  return f;
}

/// A progress bar with ETA on stderr, drawn only when stderr is a terminal.
class Progress {
 public:
  Progress(double total, std::string label) : m_total(total), m_label(std::move(label)), m_tty(::isatty(2) == 1) {
    m_start = std::chrono::steady_clock::now();
  }
  ~Progress() { finish(); }
  void advance(double amount, const std::string& item) {
    m_done += amount;
    if (!m_tty) return;
    const double elapsed = seconds();
    const double frac = m_total > 0 ? std::min(1.0, m_done / m_total) : 1.0;
    const double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
    const int width = 30, filled = int(frac * width);
    std::string bar(std::size_t(filled), '#');
    bar += std::string(std::size_t(width - filled), '.');
    std::fprintf(stderr, "\r%s [%s] %5.1f%%  %6.1fs elapsed  ETA %6.1fs  %-40.40s", m_label.c_str(), bar.c_str(), 100 * frac,
                 elapsed, eta, item.c_str());
    std::fflush(stderr);
    m_drawn = true;
  }
  void finish() {
    if (m_drawn) std::fprintf(stderr, "\n");
    m_drawn = false;
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
  }

 private:
  double m_total, m_done = 0;
  std::string m_label;
  bool m_tty, m_drawn = false;
  std::chrono::steady_clock::time_point m_start;
};

/// Creates a folder if missing (one level).
inline void ensureDirectory(const std::string& dir) {
  if (wproj::io::detail::isDirectory(dir)) return;
  if (::mkdir(dir.c_str(), 0777) != 0) throw CliError("cannot create folder '" + dir + "'");
}

/// Seconds since `t0`.
inline double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace wcli
