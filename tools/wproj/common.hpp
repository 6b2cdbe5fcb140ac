// wproj command-line tool: shared helpers.
#pragma once

#include <wproj/io.hpp>

#include <CLI/CLI.hpp>

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

/// A malformed command line (an option value outside its documented range, two options that
/// exclude each other): printed as one line, exit status 2, like CLI11's own parse errors.
struct UsageError : CliError {
  using CliError::CliError;
};

/// Registers the subcommands of each group.
void addLinalgCommands(CLI::App& app);
class RankGroup;
void addEditCommands(CLI::App& app, const RankGroup* group = nullptr);
/// `wproj merge`; with a `group` (the ranks of `mpirun -np N wproj merge`), the sharded merge.
void addMergeCommand(CLI::App& app, const RankGroup* group = nullptr);
void addLoraCommands(CLI::App& app, const RankGroup* group = nullptr);

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

/// `p` made absolute and free of symbolic links, `.` and `..`: the longest existing prefix is
/// resolved with realpath() and the rest appended (for outputs that do not exist yet).
inline std::string canonicalPath(const std::string& p) {
  std::string head = p.empty() ? std::string(".") : p, tail;
  for (;;) {
    char buf[PATH_MAX];
    if (::realpath(head.c_str(), buf)) {
      std::string out = buf;
      if (!tail.empty()) out += (out == "/" ? "" : "/") + tail;
      return out;
    }
    const auto slash = head.find_last_of('/');
    std::string last = slash == std::string::npos ? head : head.substr(slash + 1);
    head = slash == std::string::npos ? "." : slash == 0 ? "/" : head.substr(0, slash);
    if (!last.empty() && last != ".") tail = tail.empty() ? last : last + "/" + tail;
  }
}

/// True when canonical path `inner` lies strictly inside canonical folder `outer`.
inline bool isInside(const std::string& inner, const std::string& outer) {
  if (outer == "/") return inner.size() > 1;
  return inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 && inner[outer.size()] == '/';
}

/// Refuses an output that is, contains (a folder output) or lies inside one of the inputs
/// (files, or folders a checkpoint was opened from): compares canonical paths, and device and
/// inode for an output that already exists (hard links).
inline void checkNotAnInput(const std::string& out, const std::vector<std::string>& inputs, bool folderOutput = false,
                            const std::string& option = "output") {
  const std::string co = canonicalPath(out);
  struct stat so;
  const bool outExists = ::stat(out.c_str(), &so) == 0;
  for (const auto& in : inputs) {
    const std::string ci = canonicalPath(in);
    struct stat si;
    const bool inExists = ::stat(in.c_str(), &si) == 0;
    if (co == ci || (outExists && inExists && si.st_dev == so.st_dev && si.st_ino == so.st_ino))
      throw CliError(option + " '" + out + "' is the input '" + in + "'; inputs are never modified, choose another output");
    if (folderOutput && isInside(ci, co))
      throw CliError(option + " '" + out + "' contains the input '" + in +
                     "' (a folder output replaces the whole folder); inputs are never modified, choose another output");
    if (inExists && S_ISDIR(si.st_mode) && isInside(co, ci))
      throw CliError(option + " '" + out + "' lies inside the input folder '" + in +
                     "'; inputs are never modified, choose another output");
  }
}

/// Every file of a checkpoint, and the path it was opened from (for checkNotAnInput).
inline std::vector<std::string> filesOf(const wproj::io::Checkpoint& c) {
  std::vector<std::string> f;
  for (std::size_t i = 0; i < c.shardCount(); ++i) f.push_back(c.shard(i).path());
  f.push_back(c.path());
  return f;
}

/// True for an output path naming one safetensors file (else: a folder).
inline bool isFileOutput(const std::string& out) { return wproj::io::detail::endsWith(out, ".safetensors"); }

/// The folder an output file is created in ("." for a bare name).
inline std::string parentOf(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return wproj::io::detail::dirName(p);
}

/// Checks that `dir` exists, is a folder and can be written into.
inline void checkWritableFolder(const std::string& dir, const std::string& option, const std::string& path) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    throw CliError(option + " '" + path + "': folder '" + dir + "' does not exist (create it first)");
  if (!S_ISDIR(st.st_mode)) throw CliError(option + " '" + path + "': '" + dir + "' is not a folder");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw CliError(option + " '" + path + "': cannot write into folder '" + dir + "'");
}

/// Validates an output file location before any work: not empty, not an existing folder, not a
/// special file (unless `allowSpecial`, for reports written to /dev/stdout or /dev/null), and its
/// folder exists and is writable.
inline void checkOutputFile(const std::string& path, const std::string& option, bool allowSpecial = false) {
  if (path.empty()) throw UsageError(option + ": expected a file path, got an empty string");
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw CliError(option + " '" + path + "' is an existing folder; expected a file path");
    if (!S_ISREG(st.st_mode)) {
      if (allowSpecial && ::access(path.c_str(), W_OK) == 0) return;
      throw CliError(option + " '" + path + "' exists and is not a regular file");
    }
  }
  checkWritableFolder(parentOf(path), option, path);
}

/// What an output folder holds: a checkpoint (`*.safetensors`, `model.safetensors.index.json`) or
/// a PEFT adapter (`adapter_model.safetensors`, `adapter_config.json`, `README.md`).
enum class FolderKind { Checkpoint, Adapter };

/// Validates an output folder location that is replaced as a whole (checkpoint or adapter
/// folders): its parent exists and is writable; if it exists it is a folder holding only files
/// wproj writes into that kind of folder, so replacing it loses nothing else.
inline void checkOutputFolder(const std::string& path, const std::string& option, FolderKind kind = FolderKind::Checkpoint) {
  if (path.empty()) throw UsageError(option + ": expected a folder path, got an empty string");
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      throw CliError(option + " '" + path + "' exists and is not a folder (name a .safetensors file, or a folder)");
    for (const auto& n : wproj::io::detail::listDirectory(path)) {
      struct stat e;
      const std::string full = path + "/" + n;
      const bool named = kind == FolderKind::Checkpoint
                             ? wproj::io::detail::endsWith(n, ".safetensors") || n == "model.safetensors.index.json"
                             : n == "adapter_model.safetensors" || n == "adapter_config.json" || n == "README.md";
      const bool ours = named && ::lstat(full.c_str(), &e) == 0 && S_ISREG(e.st_mode);
      if (!ours)
        throw CliError(option + " '" + path + "' holds '" + n +
                       "', which wproj does not write; a folder output replaces the whole folder: use a new or empty folder");
    }
  }
  checkWritableFolder(parentOf(path), option, path);
}

/// Checks every output location of a command before any work: `out` (-o: a .safetensors file or
/// a folder replaced as a whole) and, when not empty, `report` (--report: a file, or a special
/// file such as /dev/stdout), which may neither be the -o file nor lie inside the -o folder.
/// Returns true when `out` names a file. An adapter output (`kind` Adapter) is always a folder.
inline bool checkOutputs(const std::string& out, const std::string& report, FolderKind kind = FolderKind::Checkpoint) {
  const bool fileOut = kind == FolderKind::Checkpoint && isFileOutput(out);
  if (fileOut) checkOutputFile(out, "-o");
  else checkOutputFolder(out, "-o", kind);
  if (!report.empty()) {
    checkOutputFile(report, "--report", true);
    if (canonicalPath(report) == canonicalPath(out))
      throw UsageError("--report '" + report + "' and -o '" + out + "' name the same file");
    if (!fileOut && isInside(canonicalPath(report), canonicalPath(out)))
      throw CliError("--report '" + report + "' lies inside the output folder '" + out +
                     "', which is replaced as a whole; write the report elsewhere");
  }
  return fileOut;
}

/// Writes a text report: atomically into a regular file, or straight into a special file such
/// as /dev/stdout or /dev/null.
inline void writeReport(const std::string& path, const std::string& text) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f) throw CliError("--report '" + path + "': cannot open for writing");
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) != 0 || !ok) throw CliError("--report '" + path + "': write failed");
    return;
  }
  wproj::io::AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

/// dst = src for a row-major source (e.g. a mapped safetensors tensor) and a column-major
/// destination, in cache-sized tiles: the same values as `dst = src`, without the cache misses
/// of a strided element-by-element transposition.
template <typename Dst, typename Src>
void copyTiled(Dst& dst, const Src& src) {
  constexpr wproj::Index tile = 64;
  dst.resize(src.rows(), src.cols());
  for (wproj::Index j = 0; j < src.cols(); j += tile)
    for (wproj::Index i = 0; i < src.rows(); i += tile) {
      const wproj::Index h = std::min(tile, src.rows() - i), w = std::min(tile, src.cols() - j);
      dst.block(i, j, h, w) = src.block(i, j, h, w);
    }
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
