// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The gradient layer's view of wproj's persistence format (core/serialization.hpp): the `ckpt::`
/// helpers with which projected optimizers, projectors and bases save and restore themselves.
///
/// A top-level object calls `writeHeader(os, tag)`: this starts a "wproj.gradient" file (format
/// version 3) whose single section is named `tag`; every later `ckpt::write*` on that stream
/// appends to the payload and updates the header's payload length and checksum in place, so the
/// stream holds a complete checksummed file after each call (a stream that cannot seek gets an
/// unsealed file, see `serial::kUnsealed`). `readHeader(is, tag)` verifies the header, the length
/// and the checksum before any value is read, and every `ckpt::read*` is then bounded by the
/// payload. Nested objects write their own tag. Matrices are stored as (rows, cols, scalar size)
/// followed by the column-major coefficients, so a reload restores them bit for bit.
///
/// Files of the earlier gradient-only format (magic "WPROJGRD", versions 1 and 2, no checksum)
/// still load; `streamVersion` tells the readers which fields a file has.

#include "../core/config.hpp"
#include "../core/serialization.hpp"

#include <Eigen/Core>

#include <cstdint>
#include <cstring>
#include <istream>
#include <memory>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

namespace wproj {
namespace ckpt {

/// Current version of the checkpoint format (`serial::kFormatVersion`). Version 3 moved the
/// gradient checkpoints into wproj's common container (kind "wproj.gradient": byte-order mark,
/// payload length and checksum); version 2 added the basis settings (seed, oversampling, power
/// iterations, SVD method, INT4 grouping, …), the refresh-schedule rule and Adafactor's
/// `warmupInit`; version-1 and version-2 files still load (see `streamVersion`).
constexpr std::uint32_t kFormatVersion = serial::kFormatVersion;
/// Oldest format version this build reads.
constexpr std::uint32_t kOldestFormatVersion = 1;
/// Upper bound on any stored extent (guards against reading garbage as a huge allocation).
constexpr std::int64_t kMaxExtent = std::int64_t(1) << 31;
/// Kind tag of gradient-layer files in the common container.
constexpr const char* kKind = "wproj.gradient";

/// The `std::ios_base::iword` slot in which `readHeader` records the version of the stream it read.
inline int versionSlot() {
  static const int slot = std::ios_base::xalloc();
  return slot;
}

/// Format version of the checkpoint being read from `is`: the version `readHeader` found, or the
/// current version when no header was read from this stream (a nested object loaded on its own).
inline std::uint32_t streamVersion(std::istream& is) {
  const long v = is.iword(versionSlot());
  return v == 0 ? kFormatVersion : std::uint32_t(v);
}

namespace streamstate {
// Per-stream state: the writer of the file being written to an ostream, the decoder of the file
// being read from an istream (owned through pword, freed when the stream is destroyed).
inline int writerSlot() {
  static const int slot = std::ios_base::xalloc();
  return slot;
}
inline int readerSlot() {
  static const int slot = std::ios_base::xalloc();
  return slot;
}
inline int callbackSlot() {
  static const int slot = std::ios_base::xalloc();
  return slot;
}
template <typename T, int (*Slot)()>
void releaseState(std::ios_base::event ev, std::ios_base& ios, int) {
  if (ev == std::ios_base::erase_event) {
    delete static_cast<T*>(ios.pword(Slot()));
    ios.pword(Slot()) = nullptr;
  } else if (ev == std::ios_base::copyfmt_event) {
    ios.pword(Slot()) = nullptr;  // the state belongs to the stream it was made for
  }
}
template <typename T, int (*Slot)()>
void attachState(std::ios_base& ios, T* state, long flag) {
  delete static_cast<T*>(ios.pword(Slot()));
  ios.pword(Slot()) = state;
  long& registered = ios.iword(callbackSlot());
  if (!(registered & flag)) {
    ios.register_callback(&releaseState<T, Slot>, 0);
    registered |= flag;
  }
}
inline serial::PatchingWriter* writer(std::ostream& os) { return static_cast<serial::PatchingWriter*>(os.pword(writerSlot())); }
inline serial::Decoder* reader(std::istream& is) { return static_cast<serial::Decoder*>(is.pword(readerSlot())); }
inline void detachReader(std::istream& is) {
  delete reader(is);
  is.pword(readerSlot()) = nullptr;
}
}  // namespace streamstate

/// Writes raw bytes (through the file's header-patching writer after `writeHeader`).
inline void writeBytes(std::ostream& os, const void* p, std::size_t n) {
  if (auto* w = streamstate::writer(os)) {
    w->write(p, n);
    return;
  }
  os.write(static_cast<const char*>(p), std::streamsize(n));
  if (!os) throw IoError("checkpoint: write failed");
}

/// Reads raw bytes of `what` (bounded by the payload after `readHeader`); `IoError` on a short read.
inline void readBytes(std::istream& is, void* p, std::size_t n, const char* what) {
  if (auto* d = streamstate::reader(is)) {
    d->bytes(p, n, what);
    if (d->sealed() && d->remaining() == 0) streamstate::detachReader(is);
    return;
  }
  is.read(static_cast<char*>(p), std::streamsize(n));
  if (!is || is.gcount() != std::streamsize(n))
    throw IoError(std::string("checkpoint: unexpected end of stream while reading ") + what);
}

/// Throws `IoError` when a file being read has fewer than `bytes` payload bytes left (checked
/// before a stored extent is allocated).
inline void checkAvailable(std::istream& is, std::uint64_t bytes, const char* what) {
  const auto* d = streamstate::reader(is);
  if (d && d->sealed() && bytes > d->remaining())
    throw IoError(std::string("checkpoint: ") + what + " needs " + std::to_string(bytes) + " bytes but the payload has only " +
                  std::to_string(d->remaining()) + " left (truncated or corrupted file)");
}

/// Writes a trivially copyable value.
template <typename T>
void writePod(std::ostream& os, const T& value) {
  static_assert(std::is_trivially_copyable<T>::value, "writePod: trivially copyable types only");
  writeBytes(os, &value, sizeof(T));
}

/// Reads a trivially copyable value; throws `IoError` on a short read.
template <typename T>
T readPod(std::istream& is, const char* what) {
  static_assert(std::is_trivially_copyable<T>::value, "readPod: trivially copyable types only");
  T value{};
  readBytes(is, &value, sizeof(T), what);
  return value;
}

/// Writes a length-prefixed string.
inline void writeString(std::ostream& os, const std::string& s) {
  writePod<std::uint32_t>(os, static_cast<std::uint32_t>(s.size()));
  writeBytes(os, s.data(), s.size());
}

/// Reads a length-prefixed string of at most `maxLength` characters.
inline std::string readString(std::istream& is, const char* what, std::uint32_t maxLength = 256) {
  const auto n = readPod<std::uint32_t>(is, what);
  if (n > maxLength) throw IoError(std::string("checkpoint: ") + what + " has implausible length " + std::to_string(n));
  std::string s(n, '\0');
  if (n) readBytes(is, &s[0], n, what);
  return s;
}

/// Writes a section tag (the class name of what follows).
inline void writeTag(std::ostream& os, const char* tag) { writeString(os, tag); }

/// True when a stored tag names `current`: the same name, or the name the class had in wproj 0.1.0
/// (files written before the renames of 0.2.0 — SvdBasis, DctBasis, OnlinePcaBasis — still load).
inline bool tagMatches(const std::string& stored, const char* current) {
  if (stored == current) return true;
  static const char* const renamed[][2] = {
      {"SVDBasis", "SvdBasis"}, {"DCTBasis", "DctBasis"}, {"OnlinePCABasis", "OnlinePcaBasis"}};
  for (const auto& r : renamed)
    if (std::strcmp(current, r[0]) == 0 && stored == r[1]) return true;
  return false;
}

/// Reads a section tag and throws `IoError` unless it names `expected` (see tagMatches).
inline void expectTag(std::istream& is, const char* expected) {
  const std::string got = readString(is, "section tag");
  if (!tagMatches(got, expected))
    throw IoError(std::string("checkpoint: expected section '") + expected + "', found '" + got + "'");
}

/// Starts a checkpoint file on `os` whose top-level object is `tag` (see the file comment).
inline void writeHeader(std::ostream& os, const char* tag) {
  auto* w = new serial::PatchingWriter(os, kKind, tag, "checkpoint");
  streamstate::attachState<serial::PatchingWriter, &streamstate::writerSlot>(os, w, 1);
}

/// Reads and validates the header written by `writeHeader` (or by wproj 0.1's version-1/2
/// writer): magic, version, byte order, kind, payload length and checksum, top-level tag.
inline void readHeader(std::istream& is, const char* tag) {
  streamstate::detachReader(is);
  const std::string magic = serial::readMagic(is, "checkpoint");
  if (magic == std::string(serial::kMagic, 8)) {
    const serial::Header h = serial::readHeaderAfterMagic(is, kKind, "checkpoint");
    std::unique_ptr<serial::Decoder> d(new serial::Decoder(is, h, "checkpoint"));
    d->section(tag);
    streamstate::attachState<serial::Decoder, &streamstate::readerSlot>(is, d.release(), 2);
    is.iword(versionSlot()) = long(h.version);
    return;
  }
  if (magic != "WPROJGRD") throw IoError("checkpoint: not a wproj gradient checkpoint (bad magic)");
  const auto version = readPod<std::uint32_t>(is, "format version");
  if (version < kOldestFormatVersion || version > 2)
    throw IoError("checkpoint: unsupported format version " + std::to_string(version) + " in a WPROJGRD file (this build reads " +
                  std::to_string(kOldestFormatVersion) + " and 2 there, " + std::to_string(kFormatVersion) + " in WPROJBIN files)");
  is.iword(versionSlot()) = long(version);
  expectTag(is, tag);
}

/// Reads an integer and checks lo ≤ value ≤ hi.
template <typename T>
T readBounded(std::istream& is, const char* what, T lo, T hi) {
  const T v = readPod<T>(is, what);
  if (v < lo || v > hi)
    throw IoError(std::string("checkpoint: ") + what + " = " + detail::describe(v) + " is out of range [" +
                  detail::describe(lo) + ", " + detail::describe(hi) + "]");
  return v;
}

/// Refuses to resume with a setting that differs from the one stored in the checkpoint: throws
/// `IoError` naming the owner, the setting, the stored and the current value. A run resumed with
/// other basis settings (seed, oversampling, SVD method, …) would silently diverge from the saved
/// run; configure the object as it was saved before loading.
inline void expectSetting(const char* owner, const char* setting, const std::string& stored, const std::string& current) {
  if (stored != current)
    throw IoError(std::string("checkpoint: ") + owner + " setting '" + setting + "' is " + stored +
                  " in the checkpoint but " + current + " in this object; configure it as saved before loading");
}
/// `expectSetting` for numbers and flags.
template <typename T>
void expectSetting(const char* owner, const char* setting, const T& stored, const T& current) {
  expectSetting(owner, setting, detail::describe(stored), detail::describe(current));
}

/// Writes a dense matrix (any storage order; stored column-major).
template <typename Derived>
void writeMatrix(std::ostream& os, const Eigen::MatrixBase<Derived>& m) {
  using Scalar = typename Derived::Scalar;
  using Plain = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  writePod<std::int64_t>(os, m.rows());
  writePod<std::int64_t>(os, m.cols());
  writePod<std::uint32_t>(os, sizeof(Scalar));
  if (m.size() == 0) return;
  const Eigen::Ref<const Plain> r(m.derived());
  if (r.outerStride() == r.rows()) {
    writeBytes(os, r.data(), std::size_t(r.size()) * sizeof(Scalar));
  } else {
    const Plain copy = r;
    writeBytes(os, copy.data(), std::size_t(copy.size()) * sizeof(Scalar));
  }
}

/// Reads a matrix written by `writeMatrix`; checks the scalar size and, when non-negative, the
/// expected shape; `requireFinite` rejects NaN/Inf coefficients.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> readMatrix(std::istream& is, const char* what, Index rows = -1,
                                                                 Index cols = -1, bool requireFinite = true) {
  const auto r = readPod<std::int64_t>(is, what);
  const auto c = readPod<std::int64_t>(is, what);
  const auto s = readPod<std::uint32_t>(is, what);
  if (r < 0 || c < 0 || r > kMaxExtent || c > kMaxExtent || (r > 0 && c > kMaxExtent / r))
    throw IoError(std::string("checkpoint: ") + what + " has implausible shape " + std::to_string(r) + "x" + std::to_string(c));
  if (s != sizeof(Scalar))
    throw IoError(std::string("checkpoint: ") + what + " stores " + std::to_string(s) + "-byte scalars; expected " +
                  std::to_string(sizeof(Scalar)));
  if ((rows >= 0 && r != rows) || (cols >= 0 && c != cols))
    throw IoError(std::string("checkpoint: ") + what + " has shape " + std::to_string(r) + "x" + std::to_string(c) +
                  "; expected " + std::to_string(rows) + "x" + std::to_string(cols));
  checkAvailable(is, std::uint64_t(r * c) * sizeof(Scalar), what);
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m(r, c);
  if (r * c > 0) {
    readBytes(is, m.data(), sizeof(Scalar) * std::size_t(r * c), what);
  }
  if (requireFinite && !m.allFinite()) throw IoError(std::string("checkpoint: ") + what + " contains non-finite values");
  return m;
}

/// Writes a vector of trivially copyable values.
template <typename T>
void writeVector(std::ostream& os, const std::vector<T>& v) {
  writePod<std::int64_t>(os, std::int64_t(v.size()));
  if (!v.empty()) writeBytes(os, v.data(), sizeof(T) * v.size());
}

/// Reads a vector written by `writeVector`; `expectedSize` < 0 accepts any size up to kMaxExtent.
template <typename T>
std::vector<T> readVector(std::istream& is, const char* what, std::int64_t expectedSize = -1) {
  const auto n = readPod<std::int64_t>(is, what);
  if (n < 0 || n > kMaxExtent || (expectedSize >= 0 && n != expectedSize))
    throw IoError(std::string("checkpoint: ") + what + " has length " + std::to_string(n) +
                  (expectedSize >= 0 ? "; expected " + std::to_string(expectedSize) : std::string()));
  checkAvailable(is, std::uint64_t(n) * sizeof(T), what);
  std::vector<T> v(static_cast<std::size_t>(n));
  if (n > 0) {
    readBytes(is, v.data(), sizeof(T) * v.size(), what);
  }
  return v;
}

}  // namespace ckpt
}  // namespace wproj
