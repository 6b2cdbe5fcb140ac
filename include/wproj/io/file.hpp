// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Files: a read-only memory map (`MappedFile`) and an all-or-nothing output file (`AtomicFile`).
///
/// Inputs are opened read-only and never modified. Outputs are written to an unnamed temporary
/// file in the destination folder (Linux `O_TMPFILE`, falling back to a hidden `mkstemp` name),
/// flushed with `fsync`, and only then linked/renamed into place; if anything fails — or the
/// process is killed — before `commit()`, no file appears under the destination name and an
/// existing file there is left untouched. POSIX only.

#include "../core/config.hpp"

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

namespace wproj {
namespace io {

namespace detail {
inline std::string errnoText(int err) { return std::strerror(err); }
inline std::string dirName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
inline std::string baseName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}
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

/// An output file that appears under its final name only when complete (see the file comment).
/// Write with `write()` (sequential) or `writeAt()` (positional), then `commit()`. The destructor
/// of an uncommitted file discards everything written.
class AtomicFile {
 public:
  /// No output (call `open()`).
  AtomicFile() = default;
  /// Creates the temporary file for `path` in the same folder; throws IoError on failure.
  explicit AtomicFile(const std::string& path) { open(path); }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  /// Takes over the output of `o`, which is left without one.
  AtomicFile(AtomicFile&& o) noexcept { swap(o); }
  /// Discards this output, then takes over the output of `o`.
  AtomicFile& operator=(AtomicFile&& o) noexcept {
    if (this != &o) {
      discard();
      swap(o);
    }
    return *this;
  }
  ~AtomicFile() { discard(); }

  /// Starts a new output for `path` (discarding any previous uncommitted one).
  void open(const std::string& path) {
    discard();
    m_path = path;
    const std::string dir = detail::dirName(path);
#ifdef O_TMPFILE
    m_fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
#endif
    if (m_fd < 0) {
      std::string tmpl = dir + "/." + detail::baseName(path) + ".tmp-XXXXXX";
      m_fd = ::mkstemp(&tmpl[0]);
      if (m_fd < 0) throw IoError(path + ": cannot create a temporary file in " + dir + ": " + detail::errnoText(errno));
      m_tempName = tmpl;
      const mode_t mask = ::umask(0);
      ::umask(mask);
      ::fchmod(m_fd, 0666 & ~mask);
    }
    m_offset = 0;
  }

  /// True while a temporary file is open (after `open()`, before `commit()` or `discard()`).
  bool isOpen() const { return m_fd >= 0; }
  /// The final path the file appears under at `commit()`.
  const std::string& path() const { return m_path; }

  /// Appends `n` bytes at the current position.
  void write(const void* data, std::size_t n) {
    writeAt(m_offset, data, n);
    m_offset += n;
  }

  /// Writes `n` bytes at byte `offset` (does not move the append position).
  void writeAt(std::uint64_t offset, const void* data, std::size_t n) {
    requireOpen();
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::pwrite(m_fd, p, n, static_cast<off_t>(offset));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw IoError(m_path + ": write failed: " + detail::errnoText(errno));
      }
      p += w;
      n -= static_cast<std::size_t>(w);
      offset += static_cast<std::uint64_t>(w);
    }
  }

  /// Sets the file length (extends with zeros).
  void resize(std::uint64_t size) {
    requireOpen();
    if (::ftruncate(m_fd, static_cast<off_t>(size)) != 0)
      throw IoError(m_path + ": cannot set the file size: " + detail::errnoText(errno));
  }

  /// Flushes the data to disk and moves the file into place under its final name (replacing an
  /// existing file atomically). After this the object is closed.
  void commit() {
    requireOpen();
    if (::fsync(m_fd) != 0) throw IoError(m_path + ": fsync failed: " + detail::errnoText(errno));
    if (m_tempName.empty()) {
      // Unnamed O_TMPFILE inode: give it a hidden name, then rename over the destination.
      const std::string dir = detail::dirName(m_path);
      const std::string proc = "/proc/self/fd/" + std::to_string(m_fd);
      for (int attempt = 0; attempt < 100 && m_tempName.empty(); ++attempt) {
        const std::string name = dir + "/." + detail::baseName(m_path) + ".tmp-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(attempt);
        if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
          m_tempName = name;
        } else if (errno != EEXIST) {
          throw IoError(m_path + ": cannot link the temporary file: " + detail::errnoText(errno));
        }
      }
      if (m_tempName.empty()) throw IoError(m_path + ": cannot find a free temporary name");
    }
    if (::rename(m_tempName.c_str(), m_path.c_str()) != 0)
      throw IoError(m_path + ": cannot rename the temporary file into place: " + detail::errnoText(errno));
    m_tempName.clear();
    ::close(m_fd);
    m_fd = -1;
    const int dfd = ::open(detail::dirName(m_path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }

  /// Drops an uncommitted output (closes and removes the temporary file). Never throws.
  void discard() noexcept {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = -1;
    if (!m_tempName.empty()) ::unlink(m_tempName.c_str());
    m_tempName.clear();
  }

 private:
  void requireOpen() const {
    if (m_fd < 0) throw IoError((m_path.empty() ? std::string("AtomicFile") : m_path) + ": output is not open");
  }
  void swap(AtomicFile& o) noexcept {
    std::swap(m_fd, o.m_fd);
    std::swap(m_path, o.m_path);
    std::swap(m_tempName, o.m_tempName);
    std::swap(m_offset, o.m_offset);
  }

  int m_fd = -1;
  std::string m_path;
  std::string m_tempName;  // empty while the file is an unnamed O_TMPFILE inode
  std::uint64_t m_offset = 0;
};

}  // namespace io
}  // namespace wproj
