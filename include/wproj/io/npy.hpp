// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// NumPy `.npy` files (format versions 1.0, 2.0 and 3.0): read into Eigen matrices, write from them.
///
/// Reading accepts little-endian `f2`/`f4`/`f8`, signed/unsigned integers of 1–8 bytes and `b1`,
/// in C or Fortran order, with 0, 1 or 2 dimensions: a 1-D array of length n becomes an n×1
/// matrix, a 0-D array a 1×1 matrix. The header is validated strictly: magic string, version,
/// header length (bounded, inside the file, newline-terminated), a Python dict literal whose keys
/// are exactly `descr`, `fortran_order`, `shape` (no duplicates), a shape product that does not
/// overflow, and a data size equal to what the file holds. Every rejection throws
/// `wproj::IoError` naming the file and the rule. Writing produces version 1.0 (2.0 if the header
/// needs it), C order, atomically (temporary file + rename).

#include "../core/config.hpp"
#include "dtype.hpp"
#include "file.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace wproj {
namespace io {

/// What a `.npy` header declares, after validation.
struct NpyHeader {
  /// Format version of the file (1, 2 or 3).
  int majorVersion = 1;
  /// Element type.
  DType dtype = DType::F32;
  /// True when the data is stored column-major (Fortran order).
  bool fortranOrder = false;
  std::vector<std::uint64_t> shape;  ///< 0, 1 or 2 extents
  std::size_t dataOffset = 0;        ///< byte offset of the first element
  std::uint64_t count = 0;           ///< number of elements (product of the shape)

  /// Rows of the matrix view (n for a 1-D array, 1 for 0-D).
  Index rows() const { return shape.empty() ? 1 : Index(shape[0]); }
  /// Columns of the matrix view (1 for 1-D and 0-D arrays).
  Index cols() const { return shape.size() < 2 ? 1 : Index(shape[1]); }
};

/// Largest accepted header length in bytes (NumPy itself refuses more than 10 000 by default).
constexpr std::size_t kNpyMaxHeaderLength = 1 << 20;

namespace detail {

class NpyDictParser {
 public:
  NpyDictParser(const std::string& s, const std::string& what) : m_s(s), m_what(what) {}

  NpyHeader parse() {
    NpyHeader h;
    bool haveDescr = false, haveOrder = false, haveShape = false;
    skip();
    expect('{');
    for (;;) {
      skip();
      if (peek() == '}') { ++m_pos; break; }
      const std::string key = str();
      skip();
      expect(':');
      skip();
      if (key == "descr") {
        if (haveDescr) fail("duplicate key 'descr'");
        haveDescr = true;
        h.dtype = descr(str());
      } else if (key == "fortran_order") {
        if (haveOrder) fail("duplicate key 'fortran_order'");
        haveOrder = true;
        if (m_s.compare(m_pos, 4, "True") == 0) { h.fortranOrder = true; m_pos += 4; }
        else if (m_s.compare(m_pos, 5, "False") == 0) { h.fortranOrder = false; m_pos += 5; }
        else fail("'fortran_order' must be True or False");
      } else if (key == "shape") {
        if (haveShape) fail("duplicate key 'shape'");
        haveShape = true;
        h.shape = tuple();
      } else {
        fail("unexpected key '" + key + "' (expected exactly 'descr', 'fortran_order', 'shape')");
      }
      skip();
      if (peek() == ',') { ++m_pos; continue; }
      if (peek() == '}') { ++m_pos; break; }
      fail("expected ',' or '}' in the header dict");
    }
    if (!haveDescr || !haveOrder || !haveShape)
      fail(std::string("missing key '") + (!haveDescr ? "descr" : !haveOrder ? "fortran_order" : "shape") + "'");
    skip();
    if (m_pos != m_s.size()) fail("unexpected characters after the header dict");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const { throw IoError(m_what + ": invalid .npy header: " + msg); }
  char peek() const { return m_pos < m_s.size() ? m_s[m_pos] : '\0'; }
  void skip() {
    while (m_pos < m_s.size() && (m_s[m_pos] == ' ' || m_s[m_pos] == '\t' || m_s[m_pos] == '\n')) ++m_pos;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++m_pos;
  }
  std::string str() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    ++m_pos;
    const auto end = m_s.find(q, m_pos);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = m_s.substr(m_pos, end - m_pos);
    if (out.find('\\') != std::string::npos) fail("escapes are not supported in header strings");
    m_pos = end + 1;
    return out;
  }
  std::vector<std::uint64_t> tuple() {
    std::vector<std::uint64_t> dims;
    expect('(');
    for (;;) {
      skip();
      if (peek() == ')') { ++m_pos; break; }
      if (peek() < '0' || peek() > '9') fail("shape entries must be non-negative integers");
      std::uint64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        const std::uint64_t d = std::uint64_t(peek() - '0');
        if (v > (std::uint64_t(Eigen::NumTraits<Index>::highest()) - d) / 10) fail("shape entry too large");
        v = v * 10 + d;
        ++m_pos;
      }
      dims.push_back(v);
      if (dims.size() > 2) fail("arrays with more than 2 dimensions are not supported");
      skip();
      if (peek() == ',') { ++m_pos; continue; }
      if (peek() == ')') { ++m_pos; break; }
      fail("expected ',' or ')' in the shape");
    }
    return dims;
  }
  DType descr(const std::string& d) const {
    if (d.size() < 3) fail("unsupported descr '" + d + "'");
    const char order = d[0];
    const std::string code = d.substr(1);
    if (order == '>') fail("big-endian data ('" + d + "') is not supported");
    if (order != '<' && order != '|') fail("unsupported byte-order character in descr '" + d + "'");
    DType t;
    if (code == "f2") t = DType::F16;
    else if (code == "f4") t = DType::F32;
    else if (code == "f8") t = DType::F64;
    else if (code == "i1") t = DType::I8;
    else if (code == "u1") t = DType::U8;
    else if (code == "b1") t = DType::Bool;
    else if (code == "i2") t = DType::I16;
    else if (code == "u2") t = DType::U16;
    else if (code == "i4") t = DType::I32;
    else if (code == "u4") t = DType::U32;
    else if (code == "i8") t = DType::I64;
    else if (code == "u8") t = DType::U64;
    else fail("unsupported descr '" + d + "' (expected f2, f4, f8, b1 or an integer type)");
    if (order == '|' && dtypeSize(t) != 1) fail("descr '" + d + "' needs an explicit byte order");
    return t;
  }

  const std::string& m_s;
  std::string m_what;
  std::size_t m_pos = 0;
};

inline const char* npyDescr(DType t) {
  switch (t) {
    case DType::F16: return "<f2";
    case DType::F32: return "<f4";
    case DType::F64: return "<f8";
    case DType::I8: return "|i1";
    case DType::U8: return "|u1";
    case DType::Bool: return "|b1";
    case DType::I16: return "<i2";
    case DType::U16: return "<u2";
    case DType::I32: return "<i4";
    case DType::U32: return "<u4";
    case DType::I64: return "<i8";
    case DType::U64: return "<u8";
    default: return nullptr;
  }
}

}  // namespace detail

/// Parses and validates the header of an in-memory `.npy` file of `size` bytes (see the file
/// comment for the rules). `what` names the file in error messages.
inline NpyHeader parseNpyHeader(const unsigned char* data, std::size_t size, const std::string& what = ".npy") {
  static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(data, magic, 6) != 0) throw IoError(what + ": not a .npy file (bad magic string)");
  const int major = data[6], minor = data[7];
  if (major < 1 || major > 3 || minor != 0)
    throw IoError(what + ": unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                  " (expected 1.0, 2.0 or 3.0)");
  std::size_t prefix, headerLen;
  if (major == 1) {
    prefix = 10;
    headerLen = std::size_t(data[8]) | (std::size_t(data[9]) << 8);
  } else {
    if (size < 12) throw IoError(what + ": truncated .npy preamble");
    prefix = 12;
    headerLen = std::size_t(data[8]) | (std::size_t(data[9]) << 8) | (std::size_t(data[10]) << 16) |
                (std::size_t(data[11]) << 24);
  }
  if (headerLen == 0 || headerLen > kNpyMaxHeaderLength)
    throw IoError(what + ": .npy header length " + std::to_string(headerLen) + " out of bounds (1.." +
                  std::to_string(kNpyMaxHeaderLength) + ")");
  if (headerLen > size - prefix)
    throw IoError(what + ": .npy header length " + std::to_string(headerLen) + " exceeds the file size " +
                  std::to_string(size));
  const std::string text(reinterpret_cast<const char*>(data + prefix), headerLen);
  if (text.back() != '\n') throw IoError(what + ": invalid .npy header: not terminated by a newline");
  if (major < 3) {
    for (unsigned char c : text)
      if (c >= 0x80 || (c < 0x20 && c != '\n' && c != '\t'))
        throw IoError(what + ": invalid .npy header: non-ASCII byte in a version " + std::to_string(major) + " header");
  }
  NpyHeader h = detail::NpyDictParser(text, what).parse();
  h.majorVersion = major;
  h.dataOffset = prefix + headerLen;
  std::uint64_t count = 1;
  for (std::uint64_t d : h.shape) {
    if (d != 0 && count > std::uint64_t(Eigen::NumTraits<Index>::highest()) / d)
      throw IoError(what + ": .npy shape product overflows");
    count *= d;
  }
  const std::uint64_t item = dtypeSize(h.dtype);
  if (count > std::uint64_t(-1) / item) throw IoError(what + ": .npy data size overflows");
  const std::uint64_t bytes = count * item;
  const std::uint64_t avail = size - h.dataOffset;
  if (bytes != avail)
    throw IoError(what + ": .npy data size mismatch: the shape needs " + std::to_string(bytes) + " bytes but the file holds " +
                  std::to_string(avail));
  h.count = count;
  return h;
}

/// Reads an in-memory `.npy` file into a matrix of `Scalar` (converting the element type).
/// Fortran-order data and vectors are decoded in one linear pass; C-order matrices in one pass of
/// 64×64 tiles (each tile's rows decoded into a small buffer, then stored transposed), so the
/// row-major → column-major reordering costs no extra copy and no cache-missing strided pass.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> readNpyBuffer(const unsigned char* data, std::size_t size,
                                                                    const std::string& what = ".npy") {
  const NpyHeader h = parseNpyHeader(data, size, what);
  using ColMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using RowMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index r = h.rows(), c = h.cols();
  ColMat out(r, c);
  if (h.fortranOrder || c == 1 || r == 1 || h.count == 0) {  // no element: no tiles to walk (r may be huge)
    decodeElements<Scalar>(h.dtype, data + h.dataOffset, std::size_t(h.count), out.data());
    return out;
  }
  constexpr Index tile = 64;
  const std::size_t item = dtypeSize(h.dtype);
  const unsigned char* src = data + h.dataOffset;
  std::vector<Scalar> buf(std::size_t(tile * tile));
  for (Index i0 = 0; i0 < r; i0 += tile) {
    const Index th = std::min(tile, r - i0);
    for (Index j0 = 0; j0 < c; j0 += tile) {
      const Index tw = std::min(tile, c - j0);
      for (Index i = 0; i < th; ++i)
        decodeElements<Scalar>(h.dtype, src + (std::size_t(i0 + i) * std::size_t(c) + std::size_t(j0)) * item, std::size_t(tw),
                               buf.data() + i * tile);
      out.block(i0, j0, th, tw) = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>(buf.data(), th, tw, Eigen::OuterStride<>(tile));
    }
  }
  return out;
}

/// Reads a `.npy` file into a matrix of `Scalar` (1-D arrays become column vectors).
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> readNpy(const std::string& path) {
  MappedFile f(path);
  static const unsigned char empty[1] = {0};
  return readNpyBuffer<Scalar>(f.data() ? f.data() : empty, f.size(), path);
}

/// A `.npy` matrix as `Scalar` values in the order they are stored, without a reordering copy:
/// a zero-copy view of the memory-mapped file when the stored dtype is `Scalar`'s (and the data
/// is aligned for it), otherwise one linear conversion pass into memory the view owns. C-order
/// data with more than one row and column is row-major (`isRowMajor()`, use `rowMajorMap()`);
/// Fortran-order data and vectors are column-major (`colMajorMap()`). Both maps can be passed
/// to the decompositions, which take `Eigen::MatrixBase` arguments and use them in place; and a
/// row-major m×n map is, bit for bit, the column-major n×m map of Aᵀ (`transposedMap()`).
/// The file stays mapped (read-only) for the life of the view.
template <typename Scalar>
class NpyMatrixView {
 public:
  /// Read-only row-major map over the values.
  using RowMajorMap = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  /// Read-only column-major map over the values.
  using ColMajorMap = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>;

  /// Maps and validates `path` (see `parseNpyHeader`); throws IoError when invalid.
  explicit NpyMatrixView(const std::string& path) : m_file(path) {
    static const unsigned char empty[1] = {0};
    const unsigned char* base = m_file.data() ? m_file.data() : empty;
    m_header = parseNpyHeader(base, m_file.size(), path);
    const unsigned char* p = base + m_header.dataOffset;
    const bool native = (sizeof(Scalar) == 4 && m_header.dtype == DType::F32) || (sizeof(Scalar) == 8 && m_header.dtype == DType::F64);
    if (native && reinterpret_cast<std::uintptr_t>(p) % alignof(Scalar) == 0) {
      m_ptr = reinterpret_cast<const Scalar*>(p);
    } else {
      m_owned.resize(std::size_t(m_header.count));
      decodeElements<Scalar>(m_header.dtype, p, m_owned.size(), m_owned.data());
      m_ptr = m_owned.data();
      m_file.close();
    }
  }

  /// The validated header.
  const NpyHeader& header() const { return m_header; }
  /// Rows of the matrix view (n for a 1-D array).
  Index rows() const { return m_header.rows(); }
  /// Columns of the matrix view.
  Index cols() const { return m_header.cols(); }
  /// True for C-order data with more than one row and column.
  bool isRowMajor() const { return !m_header.fortranOrder && rows() > 1 && cols() > 1; }
  /// True when the values are read straight from the mapped file.
  bool isZeroCopy() const { return m_owned.empty() && m_header.count > 0; }
  /// The first value.
  const Scalar* data() const { return m_ptr; }
  /// The matrix, when `isRowMajor()`.
  RowMajorMap rowMajorMap() const {
    requireArg(isRowMajor(), "NpyMatrixView::rowMajorMap", "order", "column-major", "C-order data (use colMajorMap)");
    return RowMajorMap(m_ptr, rows(), cols());
  }
  /// The matrix, when not `isRowMajor()`.
  ColMajorMap colMajorMap() const {
    requireArg(!isRowMajor(), "NpyMatrixView::colMajorMap", "order", "row-major", "Fortran-order data or a vector (use rowMajorMap)");
    return ColMajorMap(m_ptr, rows(), cols());
  }
  /// Aᵀ (cols × rows) as a column-major map: the same memory as `rowMajorMap()` for C-order
  /// data; for column-major data, call `colMajorMap()` instead.
  ColMajorMap transposedMap() const {
    requireArg(isRowMajor(), "NpyMatrixView::transposedMap", "order", "column-major", "C-order data");
    return ColMajorMap(m_ptr, cols(), rows());
  }

 private:
  MappedFile m_file;
  NpyHeader m_header;
  std::vector<Scalar> m_owned;
  const Scalar* m_ptr = nullptr;
};

/// Reads only the header of a `.npy` file.
inline NpyHeader readNpyHeader(const std::string& path) {
  MappedFile f(path);
  static const unsigned char empty[1] = {0};
  return parseNpyHeader(f.data() ? f.data() : empty, f.size(), path);
}

/// Serialises `m` as an in-memory `.npy` file (C order). With `asVector` the array is 1-D
/// (`m` must then have one column or one row). `dtype` is F16, F32, F64 (or an integer type,
/// which truncates toward zero; a NaN, an infinity or a value whose truncation is outside the
/// integer type's range throws InvalidArgument naming the value and its row and column — as does
/// a NaN for `b1`).
template <typename Derived>
std::vector<unsigned char> npyBytes(const Eigen::MatrixBase<Derived>& m, DType dtype, bool asVector = false) {
  using Scalar = typename Derived::Scalar;
  const char* descr = detail::npyDescr(dtype);
  requireArg(descr != nullptr, "npyBytes", "dtype", dtypeName(dtype), "a dtype NumPy can store (not BF16/F8)");
  if (asVector) requireArg(m.rows() == 1 || m.cols() == 1, "npyBytes", "m", wproj::detail::shapeString(m.rows(), m.cols()), "a vector");
  std::string shape = asVector ? "(" + std::to_string(m.size()) + ",)"
                               : "(" + std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + ")";
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  int major = 1;
  std::size_t prefix = 10;
  if (dict.size() + 65 > 65535) { major = 2; prefix = 12; }
  std::size_t total = prefix + dict.size() + 1;
  const std::size_t pad = (64 - total % 64) % 64;
  dict.append(pad, ' ');
  dict += '\n';
  const std::size_t item = dtypeSize(dtype);
  std::vector<unsigned char> out(prefix + dict.size() + std::size_t(m.size()) * item);
  const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  std::memcpy(out.data(), magic, 6);
  out[6] = static_cast<unsigned char>(major);
  out[7] = 0;
  const std::size_t hl = dict.size();
  out[8] = static_cast<unsigned char>(hl & 0xFF);
  out[9] = static_cast<unsigned char>((hl >> 8) & 0xFF);
  if (major == 2) {
    out[10] = static_cast<unsigned char>((hl >> 16) & 0xFF);
    out[11] = static_cast<unsigned char>((hl >> 24) & 0xFF);
  }
  std::memcpy(out.data() + prefix, dict.data(), dict.size());
  unsigned char* dst = out.data() + prefix + dict.size();
  const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm = m;
  if (isConvertibleFloat(dtype)) {
    encodeElements<Scalar>(dtype, rm.data(), std::size_t(rm.size()), dst);
  } else {
    // Range of the integer dtype, as doubles (exact: powers of two), for the truncated value.
    double lo = 0, hiExclusive = 0;
    switch (dtype) {
      case DType::I8: lo = -128.0; hiExclusive = 128.0; break;
      case DType::U8: hiExclusive = 256.0; break;
      case DType::I16: lo = -32768.0; hiExclusive = 32768.0; break;
      case DType::U16: hiExclusive = 65536.0; break;
      case DType::I32: lo = -2147483648.0; hiExclusive = 2147483648.0; break;
      case DType::U32: hiExclusive = 4294967296.0; break;
      case DType::I64: lo = -9223372036854775808.0; hiExclusive = 9223372036854775808.0; break;
      case DType::U64: hiExclusive = 18446744073709551616.0; break;
      default: break;
    }
    for (Index i = 0; i < rm.size(); ++i) {
      const double v = double(rm.data()[i]);
      const double t = std::trunc(v);
      if (std::isnan(v) || (dtype != DType::Bool && !(t >= lo && t < hiExclusive))) {
        const Index r = m.cols() == 0 ? 0 : i / m.cols(), c = m.cols() == 0 ? 0 : i % m.cols();
        throw InvalidArgument("npyBytes: argument 'm' has entry (" + std::to_string(r) + ", " + std::to_string(c) + ") = " + wproj::detail::describe(v) +
                              " cannot be stored as " + dtypeName(dtype) + "; expected " +
                              (dtype == DType::Bool ? std::string("a number that is not NaN")
                                                    : "a finite value whose integer part lies in [" +
                                                          wproj::detail::describe(lo) + ", " +
                                                          wproj::detail::describe(hiExclusive - 1) + "]"));
      }
      const std::int64_t iv = dtype == DType::U64 || dtype == DType::Bool ? 0 : static_cast<std::int64_t>(t);
      switch (dtype) {
        case DType::I8: { const std::int8_t x = std::int8_t(iv); std::memcpy(dst + i, &x, 1); break; }
        case DType::U8: { const std::uint8_t x = std::uint8_t(iv); std::memcpy(dst + i, &x, 1); break; }
        case DType::Bool: { const std::uint8_t x = v != 0; std::memcpy(dst + i, &x, 1); break; }
        case DType::I16: { const std::int16_t x = std::int16_t(iv); std::memcpy(dst + 2 * i, &x, 2); break; }
        case DType::U16: { const std::uint16_t x = std::uint16_t(iv); std::memcpy(dst + 2 * i, &x, 2); break; }
        case DType::I32: { const std::int32_t x = std::int32_t(iv); std::memcpy(dst + 4 * i, &x, 4); break; }
        case DType::U32: { const std::uint32_t x = std::uint32_t(iv); std::memcpy(dst + 4 * i, &x, 4); break; }
        case DType::I64: { std::memcpy(dst + 8 * i, &iv, 8); break; }
        case DType::U64: { const std::uint64_t x = static_cast<std::uint64_t>(t); std::memcpy(dst + 8 * i, &x, 8); break; }
        default: break;
      }
    }
  }
  return out;
}

/// Default on-disk dtype for a scalar type (F32 for float, F64 for double).
template <typename Scalar>
constexpr DType defaultDtype() {
  return sizeof(Scalar) == 4 ? DType::F32 : DType::F64;
}

/// Writes `m` to `path` as a 2-D `.npy` array (C order), atomically.
template <typename Derived>
void writeNpy(const std::string& path, const Eigen::MatrixBase<Derived>& m,
              DType dtype = defaultDtype<typename Derived::Scalar>()) {
  const std::vector<unsigned char> bytes = npyBytes(m, dtype, false);
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

/// Writes a vector `v` to `path` as a 1-D `.npy` array, atomically.
template <typename Derived>
void writeNpyVector(const std::string& path, const Eigen::MatrixBase<Derived>& v,
                    DType dtype = defaultDtype<typename Derived::Scalar>()) {
  const std::vector<unsigned char> bytes = npyBytes(v, dtype, true);
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace io
}  // namespace wproj
