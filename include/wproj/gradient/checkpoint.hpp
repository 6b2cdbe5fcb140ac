// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The binary checkpoint format of the gradient layer: a small versioned stream of
/// little-endian PODs, strings and matrices, validated on load (`wproj::IoError` on bad data).
///
/// Layout: every top-level object starts with the magic "WPROJGRD", the format version and a
/// section tag naming the class; nested objects write their own tag. Matrices are stored as
/// (rows, cols, scalar size) followed by the column-major coefficients, so a reload restores
/// them bit for bit.

#include "../core/config.hpp"

#include <Eigen/Core>

#include <cstdint>
#include <cstring>
#include <istream>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

namespace wproj {
namespace ckpt {

/// Current version of the gradient-layer checkpoint format. Version 2 added the basis settings
/// (seed, oversampling, power iterations, SVD method, INT4 grouping, …), the refresh-schedule
/// rule and Adafactor's `warmupInit`; version-1 files still load (see `streamVersion`).
constexpr std::uint32_t kFormatVersion = 2;
/// Oldest format version this build reads.
constexpr std::uint32_t kOldestFormatVersion = 1;
/// Upper bound on any stored extent (guards against reading garbage as a huge allocation).
constexpr std::int64_t kMaxExtent = std::int64_t(1) << 31;

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

/// Writes a trivially copyable value.
template <typename T>
void writePod(std::ostream& os, const T& value) {
  static_assert(std::is_trivially_copyable<T>::value, "writePod: trivially copyable types only");
  os.write(reinterpret_cast<const char*>(&value), sizeof(T));
  if (!os) throw IoError("checkpoint: write failed");
}

/// Reads a trivially copyable value; throws `IoError` on a short read.
template <typename T>
T readPod(std::istream& is, const char* what) {
  static_assert(std::is_trivially_copyable<T>::value, "readPod: trivially copyable types only");
  T value{};
  is.read(reinterpret_cast<char*>(&value), sizeof(T));
  if (!is || is.gcount() != std::streamsize(sizeof(T)))
    throw IoError(std::string("checkpoint: unexpected end of stream while reading ") + what);
  return value;
}

/// Writes a length-prefixed string.
inline void writeString(std::ostream& os, const std::string& s) {
  writePod<std::uint32_t>(os, static_cast<std::uint32_t>(s.size()));
  os.write(s.data(), std::streamsize(s.size()));
  if (!os) throw IoError("checkpoint: write failed");
}

/// Reads a length-prefixed string of at most `maxLength` characters.
inline std::string readString(std::istream& is, const char* what, std::uint32_t maxLength = 256) {
  const auto n = readPod<std::uint32_t>(is, what);
  if (n > maxLength) throw IoError(std::string("checkpoint: ") + what + " has implausible length " + std::to_string(n));
  std::string s(n, '\0');
  is.read(&s[0], std::streamsize(n));
  if (!is) throw IoError(std::string("checkpoint: unexpected end of stream while reading ") + what);
  return s;
}

/// Writes a section tag (the class name of what follows).
inline void writeTag(std::ostream& os, const char* tag) { writeString(os, tag); }

/// Reads a section tag and throws `IoError` unless it equals `expected`.
inline void expectTag(std::istream& is, const char* expected) {
  const std::string got = readString(is, "section tag");
  if (got != expected)
    throw IoError(std::string("checkpoint: expected section '") + expected + "', found '" + got + "'");
}

/// Writes the file header: magic, format version and the top-level tag.
inline void writeHeader(std::ostream& os, const char* tag) {
  os.write("WPROJGRD", 8);
  writePod<std::uint32_t>(os, kFormatVersion);
  writeTag(os, tag);
}

/// Reads and validates the header written by `writeHeader`.
inline void readHeader(std::istream& is, const char* tag) {
  char magic[8];
  is.read(magic, 8);
  if (!is || std::memcmp(magic, "WPROJGRD", 8) != 0) throw IoError("checkpoint: not a wproj gradient checkpoint (bad magic)");
  const auto version = readPod<std::uint32_t>(is, "format version");
  if (version < kOldestFormatVersion || version > kFormatVersion)
    throw IoError("checkpoint: unsupported format version " + std::to_string(version) + " (this build reads " +
                  std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion) + ")");
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
  writePod<std::int64_t>(os, m.rows());
  writePod<std::int64_t>(os, m.cols());
  writePod<std::uint32_t>(os, sizeof(Scalar));
  for (Index j = 0; j < m.cols(); ++j)
    for (Index i = 0; i < m.rows(); ++i) writePod<Scalar>(os, m.coeff(i, j));
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
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m(r, c);
  if (r * c > 0) {
    is.read(reinterpret_cast<char*>(m.data()), std::streamsize(sizeof(Scalar) * std::size_t(r * c)));
    if (!is) throw IoError(std::string("checkpoint: unexpected end of stream while reading ") + what);
  }
  if (requireFinite && !m.allFinite()) throw IoError(std::string("checkpoint: ") + what + " contains non-finite values");
  return m;
}

/// Writes a vector of trivially copyable values.
template <typename T>
void writeVector(std::ostream& os, const std::vector<T>& v) {
  writePod<std::int64_t>(os, std::int64_t(v.size()));
  if (!v.empty()) os.write(reinterpret_cast<const char*>(v.data()), std::streamsize(sizeof(T) * v.size()));
  if (!os) throw IoError("checkpoint: write failed");
}

/// Reads a vector written by `writeVector`; `expectedSize` < 0 accepts any size up to kMaxExtent.
template <typename T>
std::vector<T> readVector(std::istream& is, const char* what, std::int64_t expectedSize = -1) {
  const auto n = readPod<std::int64_t>(is, what);
  if (n < 0 || n > kMaxExtent || (expectedSize >= 0 && n != expectedSize))
    throw IoError(std::string("checkpoint: ") + what + " has length " + std::to_string(n) +
                  (expectedSize >= 0 ? "; expected " + std::to_string(expectedSize) : std::string()));
  std::vector<T> v(static_cast<std::size_t>(n));
  if (n > 0) {
    is.read(reinterpret_cast<char*>(v.data()), std::streamsize(sizeof(T) * v.size()));
    if (!is) throw IoError(std::string("checkpoint: unexpected end of stream while reading ") + what);
  }
  return v;
}

}  // namespace ckpt
}  // namespace wproj
