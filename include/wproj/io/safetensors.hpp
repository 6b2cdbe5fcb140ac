// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// safetensors files: a validating memory-mapped reader and a streaming atomic writer.
///
/// Layout: an 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [B, E]}, "__metadata__": {..}}`
/// (space padding allowed), then the byte buffer; offsets are relative to the buffer, elements
/// are little-endian and row-major.
///
/// The reader validates everything before any tensor is touched and throws `wproj::IoError`
/// naming the file, the tensor and the rule broken: N ≤ 100 MB and 8 + N ≤ file size (checked
/// arithmetic); strict JSON (see json.hpp: duplicate keys rejected) with an object at the root
/// and nothing but whitespace after it; tensor names without NUL characters; each entry exactly
/// {dtype, shape, data_offsets} with a dtype name of upper-case letters, digits and '_',
/// at most 16 integer extents whose product (times the element size) does not overflow,
/// B ≤ E and E − B equal to the size the shape and dtype imply (for a dtype wproj does not know,
/// `DType::Unknown`, the size cannot be checked; the tensor is kept as raw bytes); the tensors,
/// sorted by offset, cover the buffer contiguously from 0 with no gap or overlap, and the last E
/// ends exactly at the end of the file (no trailing bytes); `__metadata__` maps strings to strings.
///
/// The header is read with a pull parser straight into `TensorInfo`s (extents and offsets go
/// directly to integers, no JSON tree is built): parsing a header of N bytes needs less than
/// about 3·N bytes of memory besides the header itself, whatever its content.
///
/// Matrix view of a tensor: shape [r, c] → r×c; [n] → n×1; [] → 1×1; [d0, d1, …] → d0×(d1·…).

#include "../core/config.hpp"
#include "dtype.hpp"
#include "file.hpp"
#include "json.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wproj {
namespace io {

/// Largest accepted JSON header, in bytes (as in the reference implementation).
constexpr std::uint64_t kSafetensorsMaxHeader = 100000000;
/// Largest accepted tensor rank (number of extents of a shape).
constexpr std::size_t kSafetensorsMaxRank = 16;

/// One tensor of a safetensors file.
struct TensorInfo {
  /// Tensor name (key of the JSON header).
  std::string name;
  /// Element type.
  DType dtype = DType::F32;
  /// The dtype name as written in the file when `dtype` is `DType::Unknown` (empty otherwise).
  std::string dtypeText;
  /// Extents (empty for a scalar).
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;  ///< offset of the first byte in the data buffer
  std::uint64_t end = 0;    ///< one past the last byte

  /// Number of elements.
  std::uint64_t count() const {
    std::uint64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  /// Bytes of data.
  std::uint64_t bytes() const { return end - begin; }
  /// The dtype's name as in the file ("F32", "F8_E8M0", or an unknown name kept verbatim).
  std::string dtypeString() const { return dtype == DType::Unknown ? dtypeText : std::string(dtypeName(dtype)); }
  /// Rows of the matrix view (see the file comment).
  Index rows() const { return shape.empty() ? 1 : Index(shape[0]); }
  /// Columns of the matrix view.
  Index cols() const {
    if (shape.size() < 2) return 1;
    std::uint64_t c = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) c *= shape[i];
    return Index(c);
  }
  /// True for a tensor with exactly two dimensions.
  bool is2d() const { return shape.size() == 2; }
  /// "[a, b, …]".
  std::string shapeString() const {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

/// The validated header of a safetensors file: tensors sorted by name, metadata, data start.
class SafetensorsHeader {
 public:
  /// Validates a whole in-memory safetensors file of `size` bytes (all rules in the file comment).
  /// `what` names the file in messages.
  static SafetensorsHeader parse(const unsigned char* data, std::size_t size, const std::string& what = "safetensors") {
    if (size < 8) throw IoError(what + ": file too small for a safetensors header length (" + std::to_string(size) + " bytes)");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    if (n > kSafetensorsMaxHeader)
      throw IoError(what + ": header length " + std::to_string(n) + " exceeds the limit of " +
                    std::to_string(kSafetensorsMaxHeader) + " bytes");
    if (n > size - 8)
      throw IoError(what + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                    std::to_string(size) + " bytes)");
    if (n < 2 || data[8] != '{')
      throw IoError(what + ": header is not a JSON object (must start with '{', found " +
                    (n == 0 ? std::string("nothing") : "byte " + std::to_string(int(data[8]))) + ")");
    JsonReader r(reinterpret_cast<const char*>(data + 8), std::size_t(n), what + " header");

    SafetensorsHeader h;
    h.m_dataStart = std::size_t(8 + n);
    const std::uint64_t bufferSize = size - h.m_dataStart;
    r.beginObject();
    // Size the tensor list once (an entry takes at least 48 bytes of JSON): no growth, no copies.
    h.m_tensors.reserve(std::min<std::size_t>(r.remainingElementsBound(), std::size_t(n / 48 + 1)));
    std::string key;
    bool haveMetadata = false;
    while (r.nextKey(key)) {
      if (key == "__metadata__") {
        if (haveMetadata) r.failAt(r.keyPosition(), "duplicate key \"__metadata__\"");
        haveMetadata = true;
        parseMetadata(r, h, what);
        continue;
      }
      h.m_tensors.emplace_back();
      parseEntry(r, std::move(key), h.m_tensors.back(), what);
    }
    r.finish();
    std::sort(h.m_tensors.begin(), h.m_tensors.end(),
              [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
    for (std::size_t i = 1; i < h.m_tensors.size(); ++i)
      if (h.m_tensors[i].name == h.m_tensors[i - 1].name)
        throw IoError(what + " header: duplicate key \"" + printableName(h.m_tensors[i].name) + "\" (tensor listed twice)");

    // Offsets: contiguous, from 0, no gaps/overlaps, ending at the end of the file.
    std::vector<std::uint32_t> byOffset(h.m_tensors.size());
    for (std::size_t i = 0; i < byOffset.size(); ++i) byOffset[i] = std::uint32_t(i);
    const auto& ts = h.m_tensors;
    std::sort(byOffset.begin(), byOffset.end(), [&](std::uint32_t a, std::uint32_t b) {
      if (ts[a].begin != ts[b].begin) return ts[a].begin < ts[b].begin;
      if (ts[a].end != ts[b].end) return ts[a].end < ts[b].end;
      return a < b;
    });
    std::uint64_t expected = 0;
    const TensorInfo* prev = nullptr;
    for (std::uint32_t i : byOffset) {
      const TensorInfo* t = &ts[i];
      if (t->begin > expected)
        throw IoError(what + ": tensor '" + printableName(t->name) + "': gap in the data buffer before offset " +
                      std::to_string(t->begin) + " (previous data ends at " + std::to_string(expected) + ")");
      if (t->begin < expected)
        throw IoError(what + ": tensor '" + printableName(t->name) + "': data_offsets [" + std::to_string(t->begin) + ", " +
                      std::to_string(t->end) + ") overlap tensor '" + (prev ? printableName(prev->name) : std::string("?")) + "'");
      if (t->end > bufferSize)
        throw IoError(what + ": tensor '" + printableName(t->name) + "': data_offsets end " + std::to_string(t->end) +
                      " runs past the end of the file (data buffer holds " + std::to_string(bufferSize) + " bytes)");
      expected = t->end;
      prev = t;
    }
    if (expected != bufferSize)
      throw IoError(what + ": " + std::to_string(bufferSize - expected) + " trailing bytes after the last tensor's data");
    return h;
  }

  /// The tensors, sorted by name.
  const std::vector<TensorInfo>& tensors() const { return m_tensors; }
  /// The `__metadata__` entries (key, value).
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return m_metadata; }
  /// Byte offset of the data buffer in the file (8 + N).
  std::size_t dataStart() const { return m_dataStart; }

  /// The tensor called `name`, or nullptr.
  const TensorInfo* find(const std::string& name) const {
    auto it = std::lower_bound(m_tensors.begin(), m_tensors.end(), name,
                               [](const TensorInfo& t, const std::string& n) { return t.name < n; });
    return it != m_tensors.end() && it->name == name ? &*it : nullptr;
  }

 private:
  // A tensor name for messages: NUL and other control characters shown as \xNN.
  static std::string printableName(const std::string& name) {
    std::string out;
    for (char c : name) out += static_cast<unsigned char>(c) < 0x20 ? JsonReader::printable(c) : std::string(1, c);
    return out;
  }

  // A number token for messages (long ones cut).
  static std::string shortText(std::string_view t) {
    return t.size() <= 40 ? std::string(t) : std::string(t.substr(0, 40)) + "... (" + std::to_string(t.size()) + " characters)";
  }

  static void parseMetadata(JsonReader& r, SafetensorsHeader& h, const std::string& what) {
    if (r.peek() != JsonValue::Type::Object) throw IoError(what + ": __metadata__ is not an object of strings");
    r.beginObject();
    std::string key;
    const std::size_t first = h.m_metadata.size();
    while (r.nextKey(key)) {
      const JsonValue::Type t = r.peek();
      if (t != JsonValue::Type::String)
        throw IoError(what + ": __metadata__ entry '" + printableName(key) + "' is a " + JsonValue::typeName(t) + ", expected a string");
      h.m_metadata.emplace_back(std::move(key), r.readString());
    }
    const std::size_t dup = findDuplicateKey(h.m_metadata.size() - first,
                                             [&](std::size_t i) -> const std::string& { return h.m_metadata[first + i].first; });
    if (dup != h.m_metadata.size() - first)
      throw IoError(what + " header: duplicate key \"" + printableName(h.m_metadata[first + dup].first) + "\" in __metadata__");
  }

  static bool validDtypeText(const std::string& s) {
    if (s.empty() || s.size() > 32) return false;
    for (char c : s)
      if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    return true;
  }

  static void parseEntry(JsonReader& r, std::string&& name, TensorInfo& t, const std::string& what) {
    t.name = std::move(name);
    const std::string where = what + ": tensor '" + printableName(t.name) + "': ";
    if (t.name.find('\0') != std::string::npos)
      throw IoError(where + "the name contains a NUL character (\\u0000), which no file or tensor name may hold");
    {
      const JsonValue::Type type = r.peek();
      if (type != JsonValue::Type::Object) throw IoError(where + "entry is a " + JsonValue::typeName(type) + ", expected an object");
    }
    r.beginObject();
    bool haveDtype = false, haveShape = false, haveOffsets = false;
    std::string key;
    while (r.nextKey(key)) {
      const std::size_t keyPos = r.keyPosition();
      if (key == "dtype") {
        if (haveDtype) r.failAt(keyPos, "duplicate key \"dtype\"");
        haveDtype = true;
        if (r.peek() != JsonValue::Type::String) throw IoError(where + "dtype is not a string");
        std::string text = r.readString();
        if (!parseDtypeName(text, t.dtype)) {
          if (!validDtypeText(text))
            throw IoError(where + "invalid dtype '" + printableName(text) +
                          "' (expected a dtype name of upper-case letters, digits and '_', such as F32 or BF16)");
          t.dtype = DType::Unknown;
          t.dtypeText = std::move(text);
        }
      } else if (key == "shape") {
        if (haveShape) r.failAt(keyPos, "duplicate key \"shape\"");
        haveShape = true;
        if (r.peek() != JsonValue::Type::Array) throw IoError(where + "shape is not an array");
        r.beginArray();
        std::uint64_t dims[kSafetensorsMaxRank];
        std::size_t rank = 0;
        while (r.nextItem()) {
          if (rank == kSafetensorsMaxRank)
            throw IoError(where + "shape has more than " + std::to_string(kSafetensorsMaxRank) + " extents (rank limit)");
          const JsonValue::Type type = r.peek();
          if (type != JsonValue::Type::Number)
            throw IoError(where + "shape entry is a " + JsonValue::typeName(type) + ", expected a non-negative integer");
          const std::string_view text = r.readNumber();
          if (!JsonReader::toUint64(text, dims[rank]))
            throw IoError(where + "shape entry '" + shortText(text) + "' is not a non-negative integer");
          if (dims[rank] > std::uint64_t(Eigen::NumTraits<Index>::highest()))
            throw IoError(where + "shape entry " + std::to_string(dims[rank]) + " is too large");
          ++rank;
        }
        t.shape.assign(dims, dims + rank);
      } else if (key == "data_offsets") {
        if (haveOffsets) r.failAt(keyPos, "duplicate key \"data_offsets\"");
        haveOffsets = true;
        if (r.peek() != JsonValue::Type::Array) throw IoError(where + "data_offsets is not an array of two integers");
        r.beginArray();
        std::uint64_t* targets[2] = {&t.begin, &t.end};
        std::size_t k = 0;
        while (r.nextItem()) {
          if (k == 2) throw IoError(where + "data_offsets is not an array of two integers");
          if (r.peek() != JsonValue::Type::Number || !JsonReader::toUint64(r.readNumber(), *targets[k]))
            throw IoError(where + "data_offsets are not non-negative 64-bit integers");
          ++k;
        }
        if (k != 2) throw IoError(where + "data_offsets is not an array of two integers");
      } else {
        throw IoError(where + "unexpected field '" + printableName(key) + "' (expected dtype, shape, data_offsets)");
      }
    }
    if (!haveDtype) throw IoError(where + "missing field 'dtype'");
    if (!haveShape) throw IoError(where + "missing field 'shape'");
    if (!haveOffsets) throw IoError(where + "missing field 'data_offsets'");

    const std::uint64_t maxIndex = std::uint64_t(Eigen::NumTraits<Index>::highest());
    std::uint64_t count = 1;
    for (std::uint64_t e : t.shape) {
      if (e != 0 && count > maxIndex / e) throw IoError(where + "shape product " + t.shapeString() + " overflows");
      count *= e;
    }
    // The product of the trailing extents used by the matrix view too (a 0 extent can hide it above).
    {
      std::uint64_t c = 1;
      for (std::size_t i = 1; i < t.shape.size(); ++i) {
        const std::uint64_t e = t.shape[i];
        if (e != 0 && c > maxIndex / e) throw IoError(where + "shape product " + t.shapeString() + " overflows");
        c *= e;
      }
    }
    if (t.end < t.begin)
      throw IoError(where + "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + ") end before they begin");
    if (t.dtype == DType::Unknown) return;  // size unknown: kept as raw bytes
    const std::uint64_t bits = dtypeBits(t.dtype);
    if (count > std::uint64_t(-1) / bits) throw IoError(where + "byte size of shape " + t.shapeString() + " overflows");
    if ((count * bits) % 8 != 0)
      throw IoError(where + "shape " + t.shapeString() + " x " + dtypeName(t.dtype) + " is " + std::to_string(count * bits) +
                    " bits, not a whole number of bytes");
    const std::uint64_t need = count * bits / 8;
    if (t.end - t.begin != need)
      throw IoError(where + "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + ") hold " +
                    std::to_string(t.end - t.begin) + " bytes but shape " + t.shapeString() + " x " + dtypeName(t.dtype) +
                    " needs " + std::to_string(need));
  }

  std::vector<TensorInfo> m_tensors;
  std::vector<std::pair<std::string, std::string>> m_metadata;
  std::size_t m_dataStart = 0;
};

/// Row-major read-only view of a tensor as `Scalar`: zero-copy (an unaligned `Eigen::Map` over the
/// mapped file) when the stored dtype is `Scalar`'s and the data is suitably aligned, otherwise a
/// converted copy owned by the view.
template <typename Scalar>
class TensorView {
 public:
  /// Dense row-major matrix type of the tensor.
  using RowMajorMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  /// Unaligned read-only map over the tensor's data.
  using MapType = Eigen::Map<const RowMajorMatrix, Eigen::Unaligned>;

  /// A zero-copy view of rows×cols values at `data` (which must outlive the view).
  TensorView(const Scalar* data, Index rows, Index cols) : m_ptr(data), m_rows(rows), m_cols(cols) {}
  /// A view that owns the converted copy `owned` of rows×cols values.
  TensorView(std::vector<Scalar>&& owned, Index rows, Index cols)
      : m_owned(std::move(owned)), m_ptr(m_owned.data()), m_rows(rows), m_cols(cols), m_copied(true) {}
  /// Takes over `o` (an owned copy moves with it).
  TensorView(TensorView&& o) noexcept
      : m_owned(std::move(o.m_owned)), m_ptr(o.m_copied ? m_owned.data() : o.m_ptr), m_rows(o.m_rows), m_cols(o.m_cols),
        m_copied(o.m_copied) {}
  TensorView(const TensorView&) = delete;
  TensorView& operator=(const TensorView&) = delete;

  /// The matrix (rows×cols, row-major).
  MapType map() const { return MapType(m_ptr, m_rows, m_cols); }
  /// Rows of the matrix view.
  Index rows() const { return m_rows; }
  /// Columns of the matrix view.
  Index cols() const { return m_cols; }
  /// True when the view points into the mapped file (no conversion or copy was needed).
  bool isZeroCopy() const { return !m_copied; }

 private:
  std::vector<Scalar> m_owned;
  const Scalar* m_ptr;
  Index m_rows, m_cols;
  bool m_copied = false;
};

/// A safetensors file opened read-only through a memory map and validated on open (see the file
/// comment). Tensors are listed sorted by name.
class SafetensorsReader {
 public:
  /// A reader with no file open.
  SafetensorsReader() = default;
  /// Opens, maps and validates `path`; throws IoError on any violation.
  explicit SafetensorsReader(const std::string& path) : m_file(path) {
    static const unsigned char empty[1] = {0};
    m_header = SafetensorsHeader::parse(m_file.data() ? m_file.data() : empty, m_file.size(), path);
  }

  /// The path of the file.
  const std::string& path() const { return m_file.path(); }
  /// File size in bytes.
  std::size_t fileSize() const { return m_file.size(); }
  /// The tensors, sorted by name.
  const std::vector<TensorInfo>& tensors() const { return m_header.tensors(); }
  /// The `__metadata__` entries (key, value).
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return m_header.metadata(); }
  /// The validated header.
  const SafetensorsHeader& header() const { return m_header; }

  /// The tensor called `name`, or nullptr.
  const TensorInfo* find(const std::string& name) const { return m_header.find(name); }
  /// The tensor called `name`; throws IoError if there is none.
  const TensorInfo& info(const std::string& name) const {
    const TensorInfo* t = find(name);
    if (!t) throw IoError(path() + ": no tensor named '" + name + "'");
    return *t;
  }

  /// Pointer to the first byte of a tensor's data inside the mapping (`t.bytes()` bytes, any dtype).
  const unsigned char* rawData(const TensorInfo& t) const { return m_file.data() + m_header.dataStart() + t.begin; }

  /// A copy of the tensor's bytes as stored (any dtype, including those with no real-number
  /// reading), e.g. to copy it through with `SafetensorsWriter::declare(info)` + `writeRaw`.
  std::vector<unsigned char> readRaw(const std::string& name) const {
    const TensorInfo& t = info(name);
    checkUnchanged();
    const unsigned char* p = rawData(t);
    return std::vector<unsigned char>(p, p + t.bytes());
  }

  /// Throws IoError if the file's size is no longer the size it was mapped with (another process
  /// truncated or extended it): touching the mapping past a truncation would kill the process
  /// with SIGBUS. The reading methods call it before touching tensor data; one `fstat`.
  void checkUnchanged() const { m_file.checkUnchanged(); }

  /// The tensor converted to `Scalar` as a row-major matrix (a copy).
  template <typename Scalar>
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> readRowMajor(const std::string& name) const {
    const TensorInfo& t = info(name);
    requireReal(t);
    checkUnchanged();
    Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> out(t.rows(), t.cols());
    decodeElements<Scalar>(t.dtype, rawData(t), std::size_t(t.count()), out.data());
    return out;
  }

  /// The tensor converted to `Scalar` (a column-major copy).
  template <typename Scalar>
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> read(const std::string& name) const {
    return readRowMajor<Scalar>(name);
  }

  /// A row-major view as `Scalar`: zero-copy when possible (see TensorView).
  template <typename Scalar>
  TensorView<Scalar> view(const std::string& name) const {
    const TensorInfo& t = info(name);
    requireReal(t);
    checkUnchanged();
    const unsigned char* p = rawData(t);
    if (t.dtype == defaultDtypeOf<Scalar>() && reinterpret_cast<std::uintptr_t>(p) % alignof(Scalar) == 0)
      return TensorView<Scalar>(reinterpret_cast<const Scalar*>(p), t.rows(), t.cols());
    std::vector<Scalar> buf(std::size_t(t.count()));
    decodeElements<Scalar>(t.dtype, p, buf.size(), buf.data());
    return TensorView<Scalar>(std::move(buf), t.rows(), t.cols());
  }

  /// Rows [row0, row0 + count) of a 2-D tensor (1-D: a row vector) converted to `Scalar` into
  /// `dst` (count×cols, row-major, contiguous), then — with `releaseAfter` — those rows' pages
  /// dropped from the resident set: a tensor read block by block keeps only one block mapped.
  template <typename Scalar>
  void readRows(const std::string& name, Index row0, Index count, Scalar* dst, bool releaseAfter = false) const {
    const TensorInfo& t = info(name);
    requireReal(t);
    requireArg(row0 >= 0 && count >= 0 && row0 + count <= t.rows(), "SafetensorsReader::readRows", "rows",
               std::to_string(row0) + "+" + std::to_string(count), "a range within the " + std::to_string(t.rows()) + " rows of '" + name + "'");
    requireArg(dtypeSize(t.dtype) > 0, "SafetensorsReader::readRows", "dtype", t.dtypeString(),
               "a dtype of whole bytes (read sub-byte tensors with read())");
    checkUnchanged();
    const std::size_t rowBytes = std::size_t(t.cols()) * dtypeSize(t.dtype);
    const std::size_t offset = std::size_t(row0) * rowBytes;
    decodeElements<Scalar>(t.dtype, rawData(t) + offset, std::size_t(count) * std::size_t(t.cols()), dst);
    if (releaseAfter) m_file.release(m_header.dataStart() + std::size_t(t.begin) + offset, std::size_t(count) * rowBytes);
  }

  /// Lets the kernel drop this tensor's pages from the resident set (see MappedFile::release).
  void release(const std::string& name) const {
    const TensorInfo& t = info(name);
    m_file.release(m_header.dataStart() + std::size_t(t.begin), std::size_t(t.bytes()));
  }

 private:
  template <typename Scalar>
  static constexpr DType defaultDtypeOf() {
    return sizeof(Scalar) == 4 ? DType::F32 : DType::F64;
  }
  void requireReal(const TensorInfo& t) const {
    if (!isReadableAsReal(t.dtype))
      throw IoError(path() + ": tensor '" + t.name + "' has dtype " + t.dtypeString() + " " + t.shapeString() +
                    ", which cannot be read as real numbers (copy its raw bytes, rawData()/readRaw(), or skip it)");
  }

  MappedFile m_file;
  SafetensorsHeader m_header;
};

/// Writes a safetensors file in two phases, so that only one tensor needs to be in memory at a
/// time: `declare()` every tensor (name, dtype, shape) and `addMetadata()`, then `begin()` writes
/// the header (tensors sorted by name, data aligned to 8 bytes by space-padding the header), then
/// `write()`/`writeRaw()` each declared tensor once in any order, then `commit()` moves the
/// complete file into place. Nothing appears under the destination name before `commit()`.
class SafetensorsWriter {
 public:
  /// A writer whose file appears at `path` on `commit()`.
  explicit SafetensorsWriter(const std::string& path) : m_path(path) {}

  /// Adds a `__metadata__` entry.
  SafetensorsWriter& addMetadata(const std::string& key, const std::string& value) {
    requireNotBegun("addMetadata");
    m_metadata[key] = value;
    return *this;
  }

  /// Declares a tensor that will be written later (any known dtype; its byte size follows from
  /// the shape — sub-byte dtypes need a whole number of bytes).
  SafetensorsWriter& declare(const std::string& name, DType dtype, const std::vector<std::uint64_t>& shape) {
    TensorInfo t;
    t.name = name;
    t.dtype = dtype;
    t.shape = shape;
    t.end = byteSize(t, "SafetensorsWriter::declare");
    return add(std::move(t));
  }

  /// Declares a tensor like `like` (name, dtype — also an unknown one, by its name —, shape and
  /// byte size), e.g. to copy a tensor of any dtype through with `writeRaw`.
  SafetensorsWriter& declare(const TensorInfo& like) {
    TensorInfo t;
    t.name = like.name;
    t.dtype = like.dtype;
    t.dtypeText = like.dtype == DType::Unknown ? like.dtypeText : std::string();
    t.shape = like.shape;
    if (t.dtype == DType::Unknown) {
      requireArg(!t.dtypeText.empty(), "SafetensorsWriter::declare", "dtypeText", "(empty)", "the name of the unknown dtype");
      t.end = like.bytes();
    } else {
      t.end = byteSize(t, "SafetensorsWriter::declare");
      requireArg(t.end == like.bytes(), "SafetensorsWriter::declare", "bytes", std::to_string(like.bytes()),
                 std::to_string(t.end) + " bytes for " + t.shapeString() + " x " + dtypeName(t.dtype));
    }
    return add(std::move(t));
  }

  /// Bytes that a tensor of `t.dtype` and `t.shape` takes; throws InvalidArgument for `Unknown`,
  /// shapes of more than 16 extents, overflow, or a sub-byte tensor that is not a whole number of bytes.
  static std::uint64_t byteSize(const TensorInfo& t, const char* fn = "byteSize") {
    requireArg(t.dtype != DType::Unknown, fn, "dtype", "UNKNOWN",
               "a known dtype (declare a tensor of an unknown dtype from its TensorInfo)");
    requireArg(t.shape.size() <= kSafetensorsMaxRank, fn, "shape", t.shapeString(),
               "at most " + std::to_string(kSafetensorsMaxRank) + " extents");
    std::uint64_t count = 1;
    for (std::uint64_t e : t.shape) {
      requireArg(e == 0 || count <= std::uint64_t(Eigen::NumTraits<Index>::highest()) / e, fn, "shape", t.shapeString(),
                 "an element count that fits in an Index");
      count *= e;
    }
    const std::uint64_t bits = dtypeBits(t.dtype);
    requireArg(count <= std::uint64_t(-1) / bits && (count * bits) % 8 == 0, fn, "shape", t.shapeString(),
               std::string("a whole number of bytes of ") + dtypeName(t.dtype));
    return count * bits / 8;
  }

  /// Total bytes of tensor data declared so far.
  std::uint64_t dataBytes() const {
    std::uint64_t n = 0;
    for (const auto& s : m_slots) n += s.info.end - s.info.begin;
    return n;
  }

  /// Computes the layout and writes the header to the temporary output file.
  void begin() {
    requireNotBegun("begin");
    std::vector<std::size_t> order(m_slots.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return m_slots[a].info.name < m_slots[b].info.name; });
    std::uint64_t off = 0;
    std::string json = "{";
    bool first = true;
    if (!m_metadata.empty()) {
      json += "\"__metadata__\":{";
      bool f2 = true;
      for (const auto& kv : m_metadata) {
        if (!f2) json += ',';
        f2 = false;
        appendJsonString(json, kv.first);
        json += ':';
        appendJsonString(json, kv.second);
      }
      json += '}';
      first = false;
    }
    for (std::size_t i : order) {
      TensorInfo& t = m_slots[i].info;
      const std::uint64_t bytes = t.end - t.begin;
      t.begin = off;
      t.end = off + bytes;
      off = t.end;
      if (!first) json += ',';
      first = false;
      appendJsonString(json, t.name);
      json += ":{\"dtype\":\"";
      json += t.dtypeString();
      json += "\",\"shape\":[";
      for (std::size_t d = 0; d < t.shape.size(); ++d) json += (d ? "," : "") + std::to_string(t.shape[d]);
      json += "],\"data_offsets\":[" + std::to_string(t.begin) + "," + std::to_string(t.end) + "]}";
    }
    json += '}';
    while ((8 + json.size()) % 8 != 0) json += ' ';
    m_dataStart = 8 + json.size();
    m_file.open(m_path);
    unsigned char len[8];
    std::uint64_t n = json.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xFF);
    m_file.write(len, 8);
    m_file.write(json.data(), json.size());
    m_file.resize(m_dataStart + off);
    m_begun = true;
  }

  /// The declared tensor called `name` (after begin(): with its offsets).
  const TensorInfo& declared(const std::string& name) const { return m_slots[slotIndex(name, "declared")].info; }

  /// Writes declared tensor `name` from a matrix whose size equals the declared element count
  /// (elements taken in row-major order of an r×c matrix, r×c matching the tensor's matrix view
  /// or its transpose-free flattening), converting to the declared float dtype.
  template <typename Derived>
  void write(const std::string& name, const Eigen::MatrixBase<Derived>& m) {
    using Scalar = typename Derived::Scalar;
    Slot& s = beginSlot(name, "write");
    const TensorInfo& t = s.info;
    if (m.rows() != t.rows() || m.cols() != t.cols())
      throw InvalidArgument("SafetensorsWriter::write: tensor '" + name + "' declared as " + t.shapeString() +
                            " (matrix " + wproj::detail::shapeString(t.rows(), t.cols()) + ") but got a " +
                            wproj::detail::shapeString(m.rows(), m.cols()) + " matrix");
    requireArg(isConvertibleFloat(t.dtype), "SafetensorsWriter::write", "dtype", dtypeName(t.dtype),
               "F16, BF16, F32 or F64 (use writeRaw for other dtypes)");
    const std::size_t item = dtypeSize(t.dtype);
    const Index cols = m.cols();
    std::vector<Scalar> row(static_cast<std::size_t>(cols));
    std::vector<unsigned char> buf;
    const std::size_t rowBytes = std::size_t(cols) * item;
    const Index rowsPerChunk = rowBytes == 0 ? 1 : std::max<Index>(1, Index((std::size_t(1) << 20) / rowBytes));
    std::uint64_t pos = m_dataStart + t.begin;
    for (Index r0 = 0; r0 < m.rows(); r0 += rowsPerChunk) {
      const Index nr = std::min(rowsPerChunk, m.rows() - r0);
      buf.resize(std::size_t(nr) * rowBytes);
      for (Index r = 0; r < nr; ++r) {
        for (Index c = 0; c < cols; ++c) row[std::size_t(c)] = m.derived().coeff(r0 + r, c);
        encodeElements<Scalar>(t.dtype, row.data(), row.size(), buf.data() + std::size_t(r) * rowBytes);
      }
      m_file.writeAt(pos, buf.data(), buf.size());
      pos += buf.size();
    }
    s.written = true;
  }

  /// Writes declared tensor `name` from bytes already in its dtype (little-endian, row-major).
  void writeRaw(const std::string& name, const void* data, std::size_t bytes) {
    Slot& s = beginSlot(name, "writeRaw");
    if (bytes != s.info.end - s.info.begin)
      throw InvalidArgument("SafetensorsWriter::writeRaw: tensor '" + name + "' needs " +
                            std::to_string(s.info.end - s.info.begin) + " bytes, got " + std::to_string(bytes));
    m_file.writeAt(m_dataStart + s.info.begin, data, bytes);
    s.written = true;
  }

  /// Checks that every declared tensor was written, flushes, and moves the file into place.
  void commit() {
    if (!m_begun) begin();
    for (const auto& s : m_slots)
      if (!s.written) throw InvalidArgument("SafetensorsWriter::commit: tensor '" + s.info.name + "' was declared but never written");
    m_file.commit();
    m_committed = true;
  }

  /// Drops the uncommitted output.
  void discard() noexcept { m_file.discard(); }

  /// The destination path.
  const std::string& path() const { return m_path; }

 private:
  struct Slot {
    TensorInfo info;
    bool written = false;
  };
  void requireNotBegun(const char* what) const {
    if (m_begun) throw InvalidArgument(std::string("SafetensorsWriter::") + what + ": the header was already written (begin() called)");
  }
  std::size_t slotIndex(const std::string& name, const char* what) const {
    auto it = m_index.find(name);
    if (it == m_index.end())
      throw InvalidArgument(std::string("SafetensorsWriter::") + what + ": tensor '" + name + "' was not declared");
    return it->second;
  }
  SafetensorsWriter& add(TensorInfo&& t) {
    requireNotBegun("declare");
    requireArg(!t.name.empty() && t.name != "__metadata__", "SafetensorsWriter::declare", "name", t.name,
               "a non-empty tensor name other than __metadata__");
    requireArg(t.name.find('\0') == std::string::npos, "SafetensorsWriter::declare", "name",
               t.name.substr(0, t.name.find('\0')) + "\\u0000...", "a name without NUL characters");
    requireArg(m_index.find(t.name) == m_index.end(), "SafetensorsWriter::declare", "name", t.name, "a name not declared before");
    Slot s;
    s.info = std::move(t);
    s.info.begin = 0;  // [0, bytes) until begin() lays the file out
    m_index[s.info.name] = m_slots.size();
    m_slots.push_back(std::move(s));
    return *this;
  }
  Slot& beginSlot(const std::string& name, const char* what) {
    if (!m_begun) begin();
    Slot& s = m_slots[slotIndex(name, what)];
    if (s.written) throw InvalidArgument(std::string("SafetensorsWriter::") + what + ": tensor '" + name + "' was already written");
    return s;
  }

  std::string m_path;
  std::map<std::string, std::string> m_metadata;
  std::vector<Slot> m_slots;
  std::map<std::string, std::size_t> m_index;
  AtomicFile m_file;
  std::uint64_t m_dataStart = 0;
  bool m_begun = false;
  bool m_committed = false;
};

/// Writes named matrices to a safetensors file in `dtype` (one call; atomic).
template <typename MatrixType>
void writeSafetensors(const std::string& path, const std::vector<std::pair<std::string, MatrixType>>& tensors,
                      DType dtype = DType::F32, const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
  SafetensorsWriter w(path);
  for (const auto& kv : metadata) w.addMetadata(kv.first, kv.second);
  for (const auto& t : tensors)
    w.declare(t.first, dtype, {std::uint64_t(t.second.rows()), std::uint64_t(t.second.cols())});
  w.begin();
  for (const auto& t : tensors) w.write(t.first, t.second);
  w.commit();
}

}  // namespace io
}  // namespace wproj
