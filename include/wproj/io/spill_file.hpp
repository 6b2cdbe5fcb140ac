// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// `SpillFile`: a `SpillStore` (merging/opcm_streaming.hpp) in an unnamed temporary file, for
/// two-pass streaming merges whose first-pass results do not fit in memory.

#include "../core/config.hpp"
#include "../merging/opcm_streaming.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace wproj {
namespace io {

/// An unnamed temporary file in a folder (O_TMPFILE, else a file unlinked at once): nothing is
/// left behind when it is closed or when the process dies. Not copyable.
class SpillFile : public SpillStore {
 public:
  /// Creates the file in `dir`. Throws `IoError` naming the folder when that fails.
  explicit SpillFile(const std::string& dir) {
#ifdef O_TMPFILE
    m_fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
    if (m_fd < 0) {
      std::string tmpl = dir + "/.wproj-spill-XXXXXX";
      m_fd = ::mkstemp(&tmpl[0]);
      if (m_fd >= 0) ::unlink(tmpl.c_str());
    }
    if (m_fd < 0) throw IoError("SpillFile: cannot create a temporary file in '" + dir + "': " + std::strerror(errno));
  }
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;
  ~SpillFile() override {
    if (m_fd >= 0) ::close(m_fd);
  }

  /// Appends `bytes` bytes; the handle is their offset. Throws `IoError` (disk full…).
  std::uint64_t put(const void* data, std::size_t bytes) override {
    const std::uint64_t at = m_size;
    const char* c = static_cast<const char*>(data);
    std::uint64_t off = at;
    for (std::size_t left = bytes; left > 0;) {
      const ssize_t w = ::pwrite(m_fd, c, left, off_t(off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw IoError(std::string("SpillFile: writing the temporary file failed: ") + std::strerror(errno ? errno : ENOSPC));
      c += w;
      left -= std::size_t(w);
      off += std::uint64_t(w);
    }
    m_size += bytes;
    return at;
  }

  /// Reads back `bytes` bytes at handle (offset) `handle`. Throws `IoError`.
  void get(std::uint64_t handle, void* out, std::size_t bytes) const override {
    requireArg(handle + bytes <= m_size, "SpillFile::get", "handle", handle, "a range inside the " + std::to_string(m_size) + " bytes written");
    char* c = static_cast<char*>(out);
    for (std::size_t left = bytes; left > 0;) {
      const ssize_t r = ::pread(m_fd, c, left, off_t(handle));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) throw IoError("SpillFile: reading the temporary file failed");
      c += r;
      left -= std::size_t(r);
      handle += std::uint64_t(r);
    }
  }

  /// Bytes written so far.
  std::uint64_t size() const { return m_size; }

 private:
  int m_fd = -1;
  std::uint64_t m_size = 0;
};

}  // namespace io
}  // namespace wproj
