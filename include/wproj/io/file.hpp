// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Files: a read-only memory map (`MappedFile`), an all-or-nothing output file (`AtomicFile`) and
/// an all-or-nothing output folder (`AtomicFolder`).
///
/// `AtomicFile` is the library-wide atomic writer of core/atomic_file.hpp, re-exported here.
/// Inputs are opened read-only and never modified. Outputs are written to an unnamed temporary
/// file in the destination folder (Linux `O_TMPFILE`, falling back to a hidden `mkstemp` name),
/// flushed with `fsync`, and only then linked/renamed into place; if anything fails — or the
/// process is killed — before `commit()`, no file appears under the destination name and an
/// existing file there is left untouched. POSIX only.

#include "../core/atomic_file.hpp"
#include "../core/config.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace wproj {
namespace io {

namespace detail {
using wproj::fsdetail::baseName;
using wproj::fsdetail::dirName;
using wproj::fsdetail::errnoText;
}  // namespace detail

/// A whole file mapped read-only into memory (`mmap`, `PROT_READ`, `MAP_SHARED`). Pages are read
/// on first touch; `release()` lets the kernel drop pages that are no longer needed so resident
/// memory stays bounded while streaming through a large file.
class MappedFile {
 public:
  /// A closed file (no mapping).
  MappedFile() = default;
  /// Maps `path`; throws IoError if it cannot be opened, is not a regular file (a FIFO, device,
  /// socket or folder is refused without blocking), or cannot be mapped.
  explicit MappedFile(const std::string& path) { open(path); }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  /// Takes over the mapping of `o`, which is left closed.
  MappedFile(MappedFile&& o) noexcept { swap(o); }
  /// Unmaps this file, then takes over the mapping of `o`.
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      close();
      swap(o);
    }
    return *this;
  }
  ~MappedFile() { close(); }

  /// Opens and maps `path` read-only (see the constructor).
  void open(const std::string& path) {
    close();
    m_path = path;
    // O_NONBLOCK: opening a FIFO without a writer (or some devices) would otherwise block
    // forever; for a regular file it changes nothing.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw IoError(path + ": cannot open for reading: " + detail::errnoText(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      throw IoError(path + ": cannot stat: " + detail::errnoText(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      const char* kind = S_ISFIFO(st.st_mode)  ? "a FIFO (named pipe)"
                         : S_ISDIR(st.st_mode) ? "a folder"
                         : S_ISCHR(st.st_mode) ? "a character device"
                         : S_ISBLK(st.st_mode) ? "a block device"
                         : S_ISSOCK(st.st_mode) ? "a socket"
                                                : "a special file";
      throw IoError(path + ": not a regular file (it is " + kind + "); expected a regular file that can be mapped");
    }
    m_size = static_cast<std::size_t>(st.st_size);
    if (m_size > 0) {
      void* p = ::mmap(nullptr, m_size, PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        m_size = 0;
        throw IoError(path + ": cannot map into memory: " + detail::errnoText(err));
      }
      m_data = static_cast<const unsigned char*>(p);
    }
    m_fd = fd;  // kept open for checkUnchanged()
  }

  /// Unmaps the file.
  void close() {
    if (m_data) ::munmap(const_cast<unsigned char*>(m_data), m_size);
    if (m_fd >= 0) ::close(m_fd);
    m_fd = -1;
    m_data = nullptr;
    m_size = 0;
  }

  /// Throws IoError when the file's size differs from the size it was mapped with (another
  /// process truncated, extended or rewrote it in place). Reading a page of the mapping beyond a
  /// truncation kills the process with SIGBUS, so callers that read an input another process may
  /// rewrite call this before (and after) using its data. One `fstat`, on the mapped file itself
  /// (a file renamed over `path()` does not affect the mapping and is not reported).
  void checkUnchanged() const {
    if (m_fd < 0) return;
    struct stat st;
    if (::fstat(m_fd, &st) != 0) throw IoError(m_path + ": cannot stat: " + detail::errnoText(errno));
    if (static_cast<std::uint64_t>(st.st_size) != static_cast<std::uint64_t>(m_size))
      throw IoError(m_path + ": the file changed size while in use (" + std::to_string(m_size) + " bytes when opened, " +
                    std::to_string(static_cast<std::uint64_t>(st.st_size)) +
                    " now); another process is rewriting it - stop it or copy the file first");
  }

  /// First byte of the mapping (nullptr when closed or the file is empty).
  const unsigned char* data() const { return m_data; }
  /// File size in bytes.
  std::size_t size() const { return m_size; }
  /// The path passed to `open()`.
  const std::string& path() const { return m_path; }
  /// True after a successful `open()` (also for an empty file) until `close()`.
  bool isOpen() const { return m_data != nullptr || !m_path.empty(); }

  /// Tells the kernel that bytes [offset, offset+length) are no longer needed (`MADV_DONTNEED`):
  /// their pages leave this process's resident set (they stay in the page cache). Reading them
  /// again later is valid and simply faults them back in.
  void release(std::size_t offset, std::size_t length) const { advise(offset, length, MADV_DONTNEED); }
  /// Hints that [offset, offset+length) will be read soon (`MADV_WILLNEED`).
  void willNeed(std::size_t offset, std::size_t length) const { advise(offset, length, MADV_WILLNEED); }

 private:
  void advise(std::size_t offset, std::size_t length, int how) const {
    if (!m_data || length == 0 || offset >= m_size) return;
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::size_t begin = offset - offset % page;
    std::size_t end = std::min(m_size, offset + length);
    ::madvise(const_cast<unsigned char*>(m_data) + begin, end - begin, how);
  }
  void swap(MappedFile& o) noexcept {
    std::swap(m_data, o.m_data);
    std::swap(m_size, o.m_size);
    std::swap(m_path, o.m_path);
    std::swap(m_fd, o.m_fd);
  }

  const unsigned char* m_data = nullptr;
  std::size_t m_size = 0;
  std::string m_path;
  int m_fd = -1;
};

/// The atomic single-file writer (defined in core/atomic_file.hpp, shared with the layers below io).
using wproj::AtomicFile;
/// `std::streambuf` over an `AtomicFile` (core/atomic_file.hpp).
using wproj::AtomicFileBuf;

/// An output folder that appears — or replaces an existing folder — only when complete, so a
/// set of files (e.g. checkpoint shards and their index) is committed all-or-nothing and no
/// file of an earlier set survives next to the new one.
///
/// `open(path)` creates a hidden staging folder `.NAME.tmp-XXXXXX` next to `path` (same parent,
/// so the same file system); write every file into `stagingPath()` (each file durable, e.g.
/// through `AtomicFile`), then `commit()`: the staging folder is `fsync`ed and swapped with the
/// existing folder in one step (Linux `renameat2(RENAME_EXCHANGE)`; elsewhere: rename the old
/// folder aside, rename the new one in), the parent is `fsync`ed and the previous folder and
/// everything in it is deleted. Without `commit()` (an error, or the destructor) the staging
/// folder is removed and `path` is untouched. A `kill -9` before `commit()` can leave the hidden
/// staging folder behind, never a partial `path`. POSIX only.
class AtomicFolder {
 public:
  /// No output (call `open()`).
  AtomicFolder() = default;
  /// Creates the staging folder for `path`; throws IoError on failure.
  explicit AtomicFolder(const std::string& path) { open(path); }
  AtomicFolder(const AtomicFolder&) = delete;
  AtomicFolder& operator=(const AtomicFolder&) = delete;
  ~AtomicFolder() { discard(); }

  /// Starts a new output folder for `path` (discarding any previous uncommitted one).
  void open(const std::string& path) {
    discard();
    m_path = path;
    while (m_path.size() > 1 && m_path.back() == '/') m_path.pop_back();
    const std::string dir = detail::dirName(m_path);
    std::string tmpl = dir + "/." + detail::baseName(m_path) + ".tmp-XXXXXX";
    if (!::mkdtemp(&tmpl[0]))
      throw IoError(m_path + ": cannot create a temporary folder in " + dir + ": " + detail::errnoText(errno));
    m_staging = tmpl;
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::chmod(m_staging.c_str(), 0777 & ~mask);
  }

  /// The folder to write into until `commit()`.
  const std::string& stagingPath() const { return m_staging; }
  /// The final path of the folder.
  const std::string& path() const { return m_path; }

  /// Makes the staging folder durable and swaps it in under `path()` (see the class comment).
  void commit() {
    if (m_staging.empty()) throw IoError((m_path.empty() ? std::string("AtomicFolder") : m_path) + ": output is not open");
    syncPath(m_staging);
    struct stat st;
    std::string old;
    if (::lstat(m_path.c_str(), &st) != 0) {
      if (errno != ENOENT) throw IoError(m_path + ": cannot inspect the output folder: " + detail::errnoText(errno));
      if (::rename(m_staging.c_str(), m_path.c_str()) != 0)
        throw IoError(m_path + ": cannot move the new folder into place: " + detail::errnoText(errno));
    } else {
      if (!S_ISDIR(st.st_mode)) throw IoError(m_path + ": exists and is not a folder");
      bool exchanged = false;
#ifdef RENAME_EXCHANGE
      exchanged = ::renameat2(AT_FDCWD, m_staging.c_str(), AT_FDCWD, m_path.c_str(), RENAME_EXCHANGE) == 0;
      if (exchanged) old = m_staging;  // now holds the previous folder
#endif
      if (!exchanged) {
        // Reserve a free name (an empty folder, which rename() may replace), move the old folder
        // there, then move the new one in (moving the old one back if that fails).
        std::string aside = detail::dirName(m_path) + "/." + detail::baseName(m_path) + ".old-XXXXXX";
        if (!::mkdtemp(&aside[0]))
          throw IoError(m_path + ": cannot create a temporary folder: " + detail::errnoText(errno));
        if (::rename(m_path.c_str(), aside.c_str()) != 0) {
          const int err = errno;
          ::rmdir(aside.c_str());
          throw IoError(m_path + ": cannot move the previous folder aside: " + detail::errnoText(err));
        }
        if (::rename(m_staging.c_str(), m_path.c_str()) != 0) {
          const int err = errno;
          ::rename(aside.c_str(), m_path.c_str());
          throw IoError(m_path + ": cannot move the new folder into place: " + detail::errnoText(err));
        }
        old = aside;
      }
    }
    m_staging.clear();
    syncPath(detail::dirName(m_path));
    if (!old.empty()) removeTree(old);
  }

  /// Drops an uncommitted output (removes the staging folder and its files). Never throws.
  void discard() noexcept {
    if (!m_staging.empty()) removeTree(m_staging);
    m_staging.clear();
  }

 private:
  static void syncPath(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }
  // Deletes `dir` and everything below it, without following symbolic links.
  static void removeTree(const std::string& dir) noexcept {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      removeContents(fd);
      ::close(fd);
    }
    ::rmdir(dir.c_str());
  }
  static void removeContents(int dfd) noexcept {
    DIR* d = ::fdopendir(::dup(dfd));
    if (!d) return;
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    for (const auto& n : names) {
      if (::unlinkat(dfd, n.c_str(), 0) == 0) continue;
      const int sub = ::openat(dfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) {
        removeContents(sub);
        ::close(sub);
        ::unlinkat(dfd, n.c_str(), AT_REMOVEDIR);
      }
    }
  }

  std::string m_path;
  std::string m_staging;  // empty when not open
};

}  // namespace io
}  // namespace wproj
