// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The one atomic single-file writer of wproj (`AtomicFile`), and `AtomicFileBuf`, a
/// `std::streambuf` over it for code that serialises to a `std::ostream`.
///
/// Outputs are written to an unnamed temporary file in the destination folder (Linux
/// `O_TMPFILE`, falling back to a hidden unique `mkstemp` name), flushed with `fsync`, renamed
/// into place and the folder is `fsync`ed; if anything fails — or the process is killed — before
/// `commit()`, no file appears under the destination name and an existing file there is left
/// untouched. POSIX only. `wproj::io` re-exports `AtomicFile` (io/file.hpp).

#include "config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <streambuf>
#include <string>
#include <utility>
#include <vector>

namespace wproj {

namespace fsdetail {
/// The text of an `errno` value.
inline std::string errnoText(int err) { return std::strerror(err); }
/// The folder part of `path` ("." when it has none).
inline std::string dirName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
/// The file-name part of `path`.
inline std::string baseName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}
}  // namespace fsdetail

/// An output file that appears under its final name only when complete: bytes go to an unnamed
/// temporary file in the destination folder (Linux `O_TMPFILE`, else a hidden `mkstemp` name, so
/// concurrent writers never share a temporary), `commit()` `fsync`s it, renames it into place and
/// `fsync`s the folder.
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
    const std::string dir = fsdetail::dirName(path);
#ifdef O_TMPFILE
    m_fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
#endif
    if (m_fd < 0) {
      std::string tmpl = dir + "/." + fsdetail::baseName(path) + ".tmp-XXXXXX";
      m_fd = ::mkstemp(&tmpl[0]);
      if (m_fd < 0) throw IoError(path + ": cannot create a temporary file in " + dir + ": " + fsdetail::errnoText(errno));
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
        throw IoError(m_path + ": write failed: " + fsdetail::errnoText(errno));
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
      throw IoError(m_path + ": cannot set the file size: " + fsdetail::errnoText(errno));
  }

  /// Flushes the data to disk and moves the file into place under its final name (replacing an
  /// existing file atomically). After this the object is closed.
  void commit() {
    requireOpen();
    if (::fsync(m_fd) != 0) throw IoError(m_path + ": fsync failed: " + fsdetail::errnoText(errno));
    if (m_tempName.empty()) {
      // Unnamed O_TMPFILE inode: give it a hidden name, then rename over the destination.
      const std::string dir = fsdetail::dirName(m_path);
      const std::string proc = "/proc/self/fd/" + std::to_string(m_fd);
      for (int attempt = 0; attempt < 100 && m_tempName.empty(); ++attempt) {
        const std::string name = dir + "/." + fsdetail::baseName(m_path) + ".tmp-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(attempt);
        if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
          m_tempName = name;
        } else if (errno != EEXIST) {
          throw IoError(m_path + ": cannot link the temporary file: " + fsdetail::errnoText(errno));
        }
      }
      if (m_tempName.empty()) throw IoError(m_path + ": cannot find a free temporary name");
    }
    if (::rename(m_tempName.c_str(), m_path.c_str()) != 0)
      throw IoError(m_path + ": cannot rename the temporary file into place: " + fsdetail::errnoText(errno));
    m_tempName.clear();
    ::close(m_fd);
    m_fd = -1;
    const int dfd = ::open(fsdetail::dirName(m_path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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

/// A `std::streambuf` that appends everything written through it to an `AtomicFile` (64 KiB
/// buffer), so that any `save(std::ostream&)` can write a file all-or-nothing:
///
/// \code
/// AtomicFile file(path);
/// AtomicFileBuf buf(file);
/// std::ostream os(&buf);
/// object.save(os);
/// buf.finish();      // flushes, throws IoError if a write failed
/// file.commit();
/// \endcode
class AtomicFileBuf : public std::streambuf {
 public:
  /// Writes into `file` (which must stay alive and open while this buffer is used).
  explicit AtomicFileBuf(AtomicFile& file, std::size_t bufferBytes = std::size_t(1) << 16) : m_file(file), m_buffer(bufferBytes) {
    setp(m_buffer.data(), m_buffer.data() + m_buffer.size());
  }
  AtomicFileBuf(const AtomicFileBuf&) = delete;
  AtomicFileBuf& operator=(const AtomicFileBuf&) = delete;

  /// Writes out the buffered bytes; throws IoError (with the file's message) if any write failed.
  void finish() {
    if (!m_error.empty()) throw IoError(m_error);
    if (!drain()) throw IoError(m_error);
  }

 protected:
  int_type overflow(int_type ch) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  int sync() override { return drain() ? 0 : -1; }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    if (n >= std::streamsize(m_buffer.size())) {  // large blocks bypass the buffer
      if (!drain()) return 0;
      try {
        m_file.write(s, std::size_t(n));
      } catch (const IoError& e) {
        m_error = e.what();
        return 0;
      }
      return n;
    }
    return std::streambuf::xsputn(s, n);
  }

 private:
  bool drain() {
    if (!m_error.empty()) return false;
    const std::size_t n = std::size_t(pptr() - pbase());
    if (n > 0) {
      try {
        m_file.write(pbase(), n);
      } catch (const IoError& e) {
        m_error = e.what();
        return false;
      }
    }
    setp(m_buffer.data(), m_buffer.data() + m_buffer.size());
    return true;
  }

  AtomicFile& m_file;
  std::vector<char> m_buffer;
  std::string m_error;
};

}  // namespace wproj
