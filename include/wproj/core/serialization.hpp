// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The one binary persistence format of wproj: a versioned, checksummed container in which every
/// stateful object (projected optimizers, bases, the OPCM merger, …) saves and restores itself.
///
/// Layout (all integers in the writer's byte order, which the byte-order mark records):
///
///     "WPROJBIN" | u32 format version | u32 byte-order mark 0x01020304 |
///     u32 kind length | kind (≤ 64 bytes, e.g. "wproj.opcm") |
///     u64 payload length | u64 checksum of the payload (`Checksum`) | payload
///
/// The payload is a sequence of sections `u32 name length | name | u64 length | bytes`; a section
/// length of `kToEnd` means "the rest of the payload" (used by writers that stream into a
/// seekable `std::ostream` and patch the header as they go, `PatchingWriter`). Inside a section,
/// PODs are stored as their bytes, strings as u64 length + bytes, matrices as u64 rows, u64 cols,
/// u32 scalar size and the coefficients column-major, bit for bit. A reader checks the magic, the
/// version (a newer file is refused with a clear `IoError`), the byte order, the kind, the payload
/// length and the checksum before any value is used, and bounds every stored extent by the bytes
/// that remain. Format version 3 is the first of this container; versions 1 and 2 were the
/// gradient layer's "WPROJGRD" stream and OPCM's "WPJOPCM" v1 file, which their owners still read.

#include "config.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ios>
#include <istream>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace wproj {
namespace serial {

/// The 8-byte magic at offset 0 of every file in this format.
constexpr char kMagic[9] = "WPROJBIN";
/// Format version written by this build (and the newest it reads).
constexpr std::uint32_t kFormatVersion = 3;
/// Written as a u32; reads back as 0x04030201 on a machine of the other byte order.
constexpr std::uint32_t kByteOrderMark = 0x01020304u;
/// Longest kind tag and section name.
constexpr std::uint32_t kMaxNameLength = 64;
/// Upper bound on a stored matrix extent (rows or columns).
constexpr std::uint64_t kMaxExtent = std::uint64_t(1) << 40;
/// Section length meaning "up to the end of the payload" (last section only).
constexpr std::uint64_t kToEnd = ~std::uint64_t(0);
/// Payload length of a file streamed into an `std::ostream` that cannot seek: no length and no
/// checksum could be recorded, so nothing but the structure is verified on load.
constexpr std::uint64_t kUnsealed = ~std::uint64_t(0);
/// FNV-1a 64-bit offset basis: the initial state of `Checksum`.
constexpr std::uint64_t kChecksumSeed = 1469598103934665603ull;

/// The payload checksum: FNV-1a-64 applied to the payload read as consecutive 8-byte words
/// (h ← (h xor w)·p, p = 2⁴⁰ + 2⁸ + 0xb3), a final partial word padded with zeros, then the
/// payload length folded in the same way. Eight times fewer multiplications than byte-wise
/// FNV-1a; every step is a bijection of h, so any change confined to one word is always detected.
/// Incremental: the value does not depend on how the payload is split into `update` calls.
class Checksum {
 public:
  /// Adds `n` bytes.
  void update(const void* data, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(data);
    m_length += n;
    while (n > 0 && m_pending != 0) {  // complete a partial word
      m_word[m_pending++] = *b++;
      --n;
      if (m_pending == 8) {
        mix(load(m_word));
        m_pending = 0;
      }
    }
    for (; n >= 8; n -= 8, b += 8) mix(load(b));
    for (; n > 0; --n) m_word[m_pending++] = *b++;
  }
  /// The checksum of everything added so far (does not change the state).
  std::uint64_t value() const {
    std::uint64_t h = m_h;
    if (m_pending) {
      unsigned char w[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      std::memcpy(w, m_word, m_pending);
      h = (h ^ load(w)) * kPrime;
    }
    return (h ^ m_length) * kPrime;
  }
  /// Bytes added so far.
  std::uint64_t length() const { return m_length; }

 private:
  static constexpr std::uint64_t kPrime = 1099511628211ull;
  static std::uint64_t load(const unsigned char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  }
  void mix(std::uint64_t w) { m_h = (m_h ^ w) * kPrime; }

  std::uint64_t m_h = kChecksumSeed;
  std::uint64_t m_length = 0;
  unsigned char m_word[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  unsigned m_pending = 0;
};

/// The checksum of `n` bytes at `p` (see `Checksum`).
inline std::uint64_t checksum(const void* p, std::size_t n) {
  Checksum c;
  c.update(p, n);
  return c.value();
}

/// The fixed part of a header as read from a file.
struct Header {
  std::uint32_t version = 0;     ///< format version
  std::string kind;              ///< what the file holds, e.g. "wproj.opcm"
  std::uint64_t payloadLength = 0;
  std::uint64_t payloadChecksum = 0;
};

/// Bytes from the start of a header to its payload-length field.
inline std::size_t lengthFieldOffset(const std::string& kind) { return 8 + 4 + 4 + 4 + kind.size(); }

/// Writes a header; throws `IoError` naming `where` if the stream fails.
inline void writeHeader(std::ostream& os, const std::string& kind, std::uint64_t payloadLength, std::uint64_t payloadChecksum,
                        const char* where) {
  if (kind.size() > kMaxNameLength) throw InvalidArgument(std::string(where) + ": kind '" + kind + "' is longer than 64 bytes");
  const std::uint32_t k = std::uint32_t(kind.size());
  os.write(kMagic, 8);
  os.write(reinterpret_cast<const char*>(&kFormatVersion), 4);
  os.write(reinterpret_cast<const char*>(&kByteOrderMark), 4);
  os.write(reinterpret_cast<const char*>(&k), 4);
  os.write(kind.data(), std::streamsize(k));
  os.write(reinterpret_cast<const char*>(&payloadLength), 8);
  os.write(reinterpret_cast<const char*>(&payloadChecksum), 8);
  if (!os) throw IoError(std::string(where) + ": write failed");
}

/// Reads the 8-byte magic (throws `IoError` on an empty or short stream).
inline std::string readMagic(std::istream& is, const char* where) {
  char m[8];
  is.read(m, 8);
  if (is.gcount() != 8) throw IoError(std::string(where) + ": not a wproj file (bad magic: the stream holds fewer than 8 bytes)");
  return std::string(m, 8);
}

namespace detail {
template <typename T>
T readRaw(std::istream& is, const char* where, const char* what) {
  T v{};
  is.read(reinterpret_cast<char*>(&v), sizeof(T));
  if (std::size_t(is.gcount()) != sizeof(T))
    throw IoError(std::string(where) + ": truncated file (unexpected end while reading the " + what + ")");
  return v;
}
}  // namespace detail

/// Reads the rest of a header after its magic (see `readMagic`) and checks version, byte order
/// and that the file holds `expectedKind`; throws `IoError` with a clear message otherwise.
inline Header readHeaderAfterMagic(std::istream& is, const std::string& expectedKind, const char* where) {
  Header h;
  h.version = detail::readRaw<std::uint32_t>(is, where, "format version");
  if (h.version > kFormatVersion)
    throw IoError(std::string(where) + ": format version " + std::to_string(h.version) +
                  " was written by a newer wproj; this build reads format versions up to " + std::to_string(kFormatVersion));
  if (h.version < kFormatVersion)
    throw IoError(std::string(where) + ": format version " + std::to_string(h.version) + " is not valid in a WPROJBIN file");
  const auto bom = detail::readRaw<std::uint32_t>(is, where, "byte-order mark");
  if (bom != kByteOrderMark)
    throw IoError(std::string(where) + (bom == 0x04030201u ? ": written on a machine of the other byte order; convert it there"
                                                            : ": invalid byte-order mark (corrupted header)"));
  const auto k = detail::readRaw<std::uint32_t>(is, where, "kind length");
  if (k > kMaxNameLength) throw IoError(std::string(where) + ": kind length " + std::to_string(k) + " exceeds 64 (corrupted header)");
  h.kind.assign(k, '\0');
  if (k) is.read(&h.kind[0], std::streamsize(k));
  if (std::size_t(is.gcount()) != k && k) throw IoError(std::string(where) + ": truncated file (inside the header)");
  if (h.kind != expectedKind)
    throw IoError(std::string(where) + ": the file holds a '" + h.kind + "'; expected a '" + expectedKind + "'");
  h.payloadLength = detail::readRaw<std::uint64_t>(is, where, "payload length");
  h.payloadChecksum = detail::readRaw<std::uint64_t>(is, where, "payload checksum");
  return h;
}

/// A sink that only counts bytes.
struct CountSink {
  std::uint64_t length = 0;
  void write(const void*, std::size_t n) { length += n; }
};
/// A sink that counts bytes and checksums them.
struct ChecksumSink {
  Checksum sum;
  void write(const void* p, std::size_t n) { sum.update(p, n); }
};
/// A sink that writes to a stream.
struct StreamSink {
  std::ostream& os;
  const char* where;
  void write(const void* p, std::size_t n) {
    os.write(static_cast<const char*>(p), std::streamsize(n));
    if (!os) throw IoError(std::string(where) + ": write failed");
  }
};

/// Encodes values into a sink (`CountSink`, `ChecksumSink`, `StreamSink`); see the file comment
/// for the encoding of each.
template <typename Sink>
class Encoder {
 public:
  explicit Encoder(Sink& sink) : m_sink(sink) {}
  /// Raw bytes.
  void bytes(const void* p, std::size_t n) { m_sink.write(p, n); }
  /// A trivially copyable value.
  template <typename T>
  void pod(const T& v) {
    static_assert(std::is_trivially_copyable<T>::value, "Encoder::pod: trivially copyable types only");
    bytes(&v, sizeof(T));
  }
  /// A u64 length and the characters.
  void string(const std::string& s) {
    pod<std::uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  /// rows, cols, scalar size and the coefficients column-major (any storage order in).
  template <typename Derived>
  void matrix(const Eigen::MatrixBase<Derived>& m) {
    using Scalar = typename Derived::Scalar;
    pod<std::uint64_t>(std::uint64_t(m.rows()));
    pod<std::uint64_t>(std::uint64_t(m.cols()));
    pod<std::uint32_t>(std::uint32_t(sizeof(Scalar)));
    if (std::is_same<Sink, CountSink>::value) {
      bytes(nullptr, std::size_t(m.rows() * m.cols()) * sizeof(Scalar));
      return;
    }
    const Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> r(m.derived());
    for (Index j = 0; j < r.cols(); ++j) bytes(r.col(j).data(), std::size_t(r.rows()) * sizeof(Scalar));
  }
  /// A section: `body(encoder)` is run once on a counting encoder for the length, then for real.
  /// `body` must be callable with any `Encoder<…>&` (a generic lambda).
  template <typename Body>
  void section(const std::string& name, Body&& body) {
    CountSink counter;
    Encoder<CountSink> count(counter);
    body(count);
    pod<std::uint32_t>(std::uint32_t(name.size()));
    bytes(name.data(), name.size());
    pod<std::uint64_t>(counter.length);
    body(*this);
  }

 private:
  Sink& m_sink;
};

/// Writes a whole file of kind `kind` to `os`: `body(encoder)` (a generic lambda writing
/// sections) runs once to checksum the payload, then once to write it after the header. Works on
/// any `std::ostream`, seekable or not.
template <typename Body>
void writeContainer(std::ostream& os, const std::string& kind, Body&& body, const char* where) {
  ChecksumSink sum;
  {
    Encoder<ChecksumSink> e(sum);
    body(e);
  }
  writeHeader(os, kind, sum.sum.length(), sum.sum.value(), where);
  StreamSink out{os, where};
  Encoder<StreamSink> e(out);
  body(e);
}

/// Reads the payload of a file in this format. Opening verifies the header, and — before any
/// value is handed out — the payload length and checksum: a seekable stream is read through once
/// and rewound, other streams are read into memory. Every read is bounded by the bytes left in
/// the payload (so a corrupted extent cannot trigger a huge allocation).
class Decoder {
 public:
  /// Opens a file of kind `kind` at the current position of `is` (magic included).
  Decoder(std::istream& is, const std::string& kind, const char* where) : m_is(is), m_where(where) {
    const std::string magic = readMagic(is, where);
    if (magic != std::string(kMagic, 8)) throw IoError(m_where + ": not a wproj file of kind '" + kind + "' (bad magic)");
    open(readHeaderAfterMagic(is, kind, where));
  }
  /// Continues after a header the caller already read (e.g. after dispatching on the magic).
  Decoder(std::istream& is, const Header& header, const char* where) : m_is(is), m_where(where) { open(header); }

  /// The header of the file.
  const Header& header() const { return m_header; }
  /// Payload bytes not read yet.
  std::uint64_t remaining() const { return m_remaining; }
  /// False for a file written to a stream that could not seek (see `kUnsealed`).
  bool sealed() const { return m_header.payloadLength != kUnsealed; }

  /// Reads `n` raw bytes of `what`.
  void bytes(void* p, std::size_t n, const char* what) {
    if (n > m_remaining)
      throw IoError(m_where + ": " + what + " needs " + std::to_string(n) + " bytes but the payload has only " +
                    std::to_string(m_remaining) + " left (truncated or corrupted file)");
    if (m_buffered) {
      if (n) std::memcpy(p, m_buffer.data() + m_pos, n);
      m_pos += n;
    } else {
      m_is.read(static_cast<char*>(p), std::streamsize(n));
      if (std::size_t(m_is.gcount()) != n) throw IoError(m_where + ": truncated file (unexpected end while reading " + what + ")");
    }
    if (sealed()) m_remaining -= n;
  }
  /// Reads a trivially copyable value.
  template <typename T>
  T pod(const char* what) {
    static_assert(std::is_trivially_copyable<T>::value, "Decoder::pod: trivially copyable types only");
    T v{};
    bytes(&v, sizeof(T), what);
    return v;
  }
  /// Reads a string of at most `maxLength` characters.
  std::string string(const char* what, std::uint64_t maxLength = std::uint64_t(1) << 20) {
    const auto n = pod<std::uint64_t>(what);
    if (n > maxLength || n > m_remaining)
      throw IoError(m_where + ": " + what + " has implausible length " + std::to_string(n) + " (corrupted file)");
    std::string s(std::size_t(n), '\0');
    if (n) bytes(&s[0], std::size_t(n), what);
    return s;
  }
  /// Reads a matrix written by `Encoder::matrix`; checks the scalar size, and the shape when
  /// `rows`/`cols` ≥ 0; `requireFinite` rejects NaN/Inf coefficients.
  template <typename Scalar>
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> matrix(const char* what, Index rows = -1, Index cols = -1,
                                                               bool requireFinite = true) {
    const auto r = pod<std::uint64_t>(what), c = pod<std::uint64_t>(what);
    const auto s = pod<std::uint32_t>(what);
    if (s != sizeof(Scalar))
      throw IoError(m_where + ": " + what + " stores " + std::to_string(s) + "-byte scalars; expected " +
                    std::to_string(sizeof(Scalar)) + "-byte scalars");
    if (r > kMaxExtent || c > kMaxExtent || (r > 0 && c > m_remaining / sizeof(Scalar) / r))
      throw IoError(m_where + ": " + what + " has implausible shape " + std::to_string(r) + "x" + std::to_string(c) +
                    " for the " + std::to_string(m_remaining) + " bytes left (truncated or corrupted file)");
    if ((rows >= 0 && Index(r) != rows) || (cols >= 0 && Index(c) != cols))
      throw IoError(m_where + ": " + what + " has shape " + std::to_string(r) + "x" + std::to_string(c) + "; expected " +
                    std::to_string(rows) + "x" + std::to_string(cols));
    Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m;
    m.resize(Index(r), Index(c));
    if (m.size()) bytes(m.data(), std::size_t(m.size()) * sizeof(Scalar), what);
    if (requireFinite && !m.allFinite()) throw IoError(m_where + ": " + what + " contains non-finite values");
    return m;
  }
  /// Reads a section header, checks its name and returns its length (`kToEnd` resolved).
  std::uint64_t section(const std::string& name) {
    const auto k = pod<std::uint32_t>("section name length");
    if (k > kMaxNameLength) throw IoError(m_where + ": section name length " + std::to_string(k) + " exceeds 64 (corrupted file)");
    std::string got(k, '\0');
    if (k) bytes(&got[0], k, "section name");
    if (got != name) throw IoError(m_where + ": expected section '" + name + "', found '" + got + "'");
    std::uint64_t len = pod<std::uint64_t>("section length");
    if (len == kToEnd) len = m_remaining;
    if (sealed() && len > m_remaining)
      throw IoError(m_where + ": section '" + name + "' claims " + std::to_string(len) + " bytes; the payload has " +
                    std::to_string(m_remaining) + " left (truncated or corrupted file)");
    return len;
  }
  /// Checks that the whole payload was read (no unread bytes in a sealed file).
  void finish() {
    if (sealed() && m_remaining != 0)
      throw IoError(m_where + ": " + std::to_string(m_remaining) + " unread bytes at the end of the payload (corrupted file)");
  }

 private:
  void open(const Header& h) {
    m_header = h;
    m_remaining = h.payloadLength;
    if (!sealed()) {
      m_remaining = std::numeric_limits<std::uint64_t>::max();
      return;
    }
    Checksum sum;
    char chunk[1 << 14];
    const auto start = m_is.tellg();
    if (start >= 0) {
      // Seekable: checksum the payload in place, then rewind to its start.
      std::uint64_t left = h.payloadLength;
      while (left > 0) {
        const std::size_t n = std::size_t(std::min<std::uint64_t>(left, sizeof chunk));
        m_is.read(chunk, std::streamsize(n));
        const auto got = std::size_t(m_is.gcount());
        sum.update(chunk, got);
        if (got != n) throw IoError(m_where + ": truncated file (payload of " + std::to_string(h.payloadLength) + " bytes is cut short)");
        left -= n;
      }
      if (sum.value() != h.payloadChecksum) throw IoError(m_where + ": checksum mismatch (the file is corrupted)");
      m_is.seekg(start);
      if (!m_is) throw IoError(m_where + ": cannot rewind the stream after verifying the checksum");
    } else {
      // Not seekable: read the payload into memory (bounded by what actually arrives).
      std::uint64_t left = h.payloadLength;
      while (left > 0) {
        const std::size_t n = std::size_t(std::min<std::uint64_t>(left, sizeof chunk));
        m_is.read(chunk, std::streamsize(n));
        const auto got = std::size_t(m_is.gcount());
        m_buffer.insert(m_buffer.end(), chunk, chunk + got);
        if (got != n) throw IoError(m_where + ": truncated file (payload of " + std::to_string(h.payloadLength) + " bytes is cut short)");
        left -= n;
      }
      if (checksum(m_buffer.data(), m_buffer.size()) != h.payloadChecksum)
        throw IoError(m_where + ": checksum mismatch (the file is corrupted)");
      m_buffered = true;
    }
  }

  std::istream& m_is;
  std::string m_where;
  Header m_header;
  std::uint64_t m_remaining = 0;
  bool m_buffered = false;
  std::vector<char> m_buffer;
  std::size_t m_pos = 0;
};

/// Writes a file whose payload is produced piecewise by code that has no "end of object" call
/// (the gradient layer's `save(std::ostream&)`): the header and a single `kToEnd` section are
/// written first, and after every `write` the header's payload length and checksum are patched
/// in place, so the stream holds a complete, verifiable file after each call. Needs a seekable
/// stream; on one that cannot seek, the file is marked `kUnsealed` (no length, no checksum).
class PatchingWriter {
 public:
  /// Starts a file of kind `kind` with one section `section` at the current position of `os`.
  PatchingWriter(std::ostream& os, const std::string& kind, const std::string& section, const char* where)
      : m_os(&os), m_where(where) {
    const auto start = os.tellp();
    m_sealed = start >= 0;
    writeHeader(os, kind, m_sealed ? 0 : kUnsealed, Checksum().value(), where);
    if (m_sealed) m_fieldPos = start + std::streamoff(lengthFieldOffset(kind));
    const std::uint32_t k = std::uint32_t(section.size());
    write(&k, 4);
    write(section.data(), section.size());
    const std::uint64_t toEnd = kToEnd;
    write(&toEnd, 8);
  }
  /// Appends `n` bytes to the payload and updates the header.
  void write(const void* p, std::size_t n) {
    m_os->write(static_cast<const char*>(p), std::streamsize(n));
    if (!*m_os) throw IoError(m_where + ": write failed");
    if (!m_sealed) return;
    m_sum.update(p, n);
    const std::uint64_t length = m_sum.length(), sum = m_sum.value();
    const auto here = m_os->tellp();
    m_os->seekp(m_fieldPos);
    m_os->write(reinterpret_cast<const char*>(&length), 8);
    m_os->write(reinterpret_cast<const char*>(&sum), 8);
    m_os->seekp(here);
    if (!*m_os) throw IoError(m_where + ": cannot update the header (write failed)");
  }
  /// The stream written to.
  const std::ostream* stream() const { return m_os; }

 private:
  std::ostream* m_os;
  std::string m_where;
  bool m_sealed = false;
  std::streampos m_fieldPos = 0;
  Checksum m_sum;
};

}  // namespace serial
}  // namespace wproj
