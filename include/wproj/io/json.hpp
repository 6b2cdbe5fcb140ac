// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// A small strict JSON (RFC 8259) parser for file headers (safetensors, sharded indexes).
///
/// Strict means: one value at the root, no comments, no trailing commas, no duplicate keys in an
/// object (a general-purpose JSON library typically keeps the last one silently), bounded nesting
/// depth, well-formed UTF-8 escapes. Objects keep their keys in file order. Every error throws
/// `wproj::IoError` with the byte offset of the problem.

#include "../core/config.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wproj {
namespace io {

/// One JSON value. Numbers keep their source text, so integers of any size can be checked exactly.
class JsonValue {
 public:
  /// The kind of a JSON value.
  enum class Type { Null, Bool, Number, String, Array, Object };

  /// The kind of this value.
  Type type() const { return m_type; }
  /// True for `null`.
  bool isNull() const { return m_type == Type::Null; }
  /// True for `true` and `false`.
  bool isBool() const { return m_type == Type::Bool; }
  /// True for a number.
  bool isNumber() const { return m_type == Type::Number; }
  /// True for a string.
  bool isString() const { return m_type == Type::String; }
  /// True for an array.
  bool isArray() const { return m_type == Type::Array; }
  /// True for an object.
  bool isObject() const { return m_type == Type::Object; }

  /// The value of a boolean (false for other kinds).
  bool boolean() const { return m_bool; }
  /// The string value (for strings) or the number's source text (for numbers).
  const std::string& text() const { return m_text; }
  /// The elements of an array (empty for other kinds).
  const std::vector<JsonValue>& items() const { return m_children ? m_children->items : emptyChildren().items; }
  /// The members of an object in source order (empty for other kinds).
  const std::vector<std::pair<std::string, JsonValue>>& members() const {
    return m_children ? m_children->members : emptyChildren().members;
  }

  /// A null value.
  JsonValue() = default;
  /// A deep copy of `o`.
  JsonValue(const JsonValue& o)
      : m_type(o.m_type), m_bool(o.m_bool), m_text(o.m_text),
        m_children(o.m_children ? std::make_unique<Children>(*o.m_children) : nullptr) {}
  /// Takes over `o`.
  JsonValue(JsonValue&&) noexcept = default;
  /// Deep copy assignment.
  JsonValue& operator=(const JsonValue& o) {
    if (this != &o) *this = JsonValue(o);
    return *this;
  }
  /// Move assignment.
  JsonValue& operator=(JsonValue&&) noexcept = default;

  /// The member named `key` of an object, or nullptr (linear search).
  const JsonValue* find(const std::string& key) const {
    for (const auto& m : members())
      if (m.first == key) return &m.second;
    return nullptr;
  }

  /// True when this is a number written as a non-negative integer that fits in 64 bits; stores it.
  bool asUint64(std::uint64_t& out) const {
    if (m_type != Type::Number || m_text.empty()) return false;
    std::uint64_t v = 0;
    for (char c : m_text) {
      if (c < '0' || c > '9') return false;
      const std::uint64_t d = std::uint64_t(c - '0');
      if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
      v = v * 10 + d;
    }
    out = v;
    return true;
  }

  /// A short name of the type, for messages.
  static const char* typeName(Type t) {
    switch (t) {
      case Type::Null: return "null";
      case Type::Bool: return "boolean";
      case Type::Number: return "number";
      case Type::String: return "string";
      case Type::Array: return "array";
      case Type::Object: return "object";
    }
    return "?";
  }

 private:
  friend class JsonParser;
  // Children live behind one pointer so that a scalar value stays small (48 bytes).
  struct Children {
    std::vector<JsonValue> items;
    std::vector<std::pair<std::string, JsonValue>> members;
  };
  static const Children& emptyChildren() {
    static const Children empty;
    return empty;
  }
  Children& children() {
    if (!m_children) m_children = std::make_unique<Children>();
    return *m_children;
  }

  Type m_type = Type::Null;
  bool m_bool = false;
  std::string m_text;
  std::unique_ptr<Children> m_children;
};

/// Index of a repeated key among `n` keys (`key(i)` gives the i-th, in source order): the position of
/// the first key, in source order, that equals an earlier one; `n` when all keys differ.
/// Worst case O(n log n) comparisons: the keys are sorted by a 64-bit hash (integer comparisons,
/// no key bytes touched), and only runs of equal hashes — rare, unless made on purpose — are
/// sorted by their text. Pairwise for small n.
template <typename KeyOf>
std::size_t findDuplicateKey(std::size_t n, KeyOf key) {
  if (n < 2) return n;
  if (n <= 8) {
    for (std::size_t j = 1; j < n; ++j)
      for (std::size_t i = 0; i < j; ++i)
        if (key(i) == key(j)) return j;
    return n;
  }
  std::vector<std::pair<std::uint64_t, std::size_t>> order(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string_view k(key(i));
    std::uint64_t h = 0xcbf29ce484222325ull ^ k.size();  // FNV-1a, then a final mix
    for (char c : k) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    order[i] = {h, i};
  }
  std::sort(order.begin(), order.end());
  std::size_t best = n;
  std::vector<std::pair<std::string_view, std::size_t>> run;
  for (std::size_t b = 0; b < n;) {
    std::size_t e = b + 1;
    while (e < n && order[e].first == order[b].first) ++e;
    if (e - b > 1) {
      run.clear();
      for (std::size_t k = b; k < e; ++k) run.emplace_back(std::string_view(key(order[k].second)), order[k].second);
      std::sort(run.begin(), run.end());
      for (std::size_t k = 1; k < run.size(); ++k)
        if (run[k].first == run[k - 1].first && run[k].second < best) best = run[k].second;
    }
    b = e;
  }
  return best;
}

/// Strict pull reader over a JSON byte range: the caller walks the document value by value
/// (`peek`, `beginObject`/`nextKey`, `beginArray`/`nextItem`, `readString`, `readNumber`, …) and
/// keeps only what it needs, so a header can be validated without building a tree. The reader
/// checks the syntax (see the file comment) and the nesting depth; duplicate keys are the
/// caller's to check (`JsonParser` and the safetensors reader do). Errors throw `IoError` with the
/// byte offset.
class JsonReader {
 public:
  /// Maximum nesting depth of arrays/objects.
  static constexpr int kMaxDepth = 64;

  /// A reader over [data, data+size); `what` names the document in messages.
  JsonReader(const char* data, std::size_t size, std::string what) : m_data(data), m_size(size), m_what(std::move(what)) {}

  /// The kind of the next value (skips whitespace; fails at the end of input or on a character
  /// that cannot start a value).
  JsonValue::Type peek() {
    skipWs();
    if (m_pos >= m_size) fail("unexpected end of input");
    const char c = m_data[m_pos];
    switch (c) {
      case '{': return JsonValue::Type::Object;
      case '[': return JsonValue::Type::Array;
      case '"': return JsonValue::Type::String;
      case 't': case 'f': return JsonValue::Type::Bool;
      case 'n': return JsonValue::Type::Null;
      default: break;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return JsonValue::Type::Number;
    fail(std::string("unexpected character '") + printable(c) + "'");
  }

  /// Consumes the '{' of an object.
  void beginObject() { open('{', true); }
  /// Moves to the next member of the innermost object: reads its key and the ':' and returns
  /// true (the caller then consumes exactly one value), or consumes the closing '}' and returns false.
  bool nextKey(std::string& key) {
    if (!nextElement('}', "object")) return false;
    if (m_pos >= m_size || m_data[m_pos] != '"') fail("expected a string key");
    m_keyPos = m_pos;
    key = string();
    skipWs();
    if (m_pos >= m_size || m_data[m_pos] != ':') fail("expected ':' after a key");
    ++m_pos;
    return true;
  }
  /// Byte offset of the key last read by `nextKey`.
  std::size_t keyPosition() const { return m_keyPos; }

  /// Consumes the '[' of an array.
  void beginArray() { open('[', false); }
  /// True when the innermost array has another element (the caller then consumes exactly one
  /// value); false after consuming the closing ']'.
  bool nextItem() { return nextElement(']', "array"); }

  /// Reads a string value (escapes decoded, UTF-8 checked).
  std::string readString() {
    if (peek() != JsonValue::Type::String) fail("expected a string");
    return string();
  }
  /// Reads a number and returns its source text (a view into the input).
  std::string_view readNumber() {
    if (peek() != JsonValue::Type::Number) fail("expected a number");
    return number();
  }
  /// Reads `true` or `false`.
  bool readBool() {
    skipWs();
    if (consume("true")) return true;
    if (consume("false")) return false;
    fail(m_pos < m_size ? std::string("unexpected character '") + printable(m_data[m_pos]) + "'" : "unexpected end of input");
  }
  /// Reads `null`.
  void readNull() {
    skipWs();
    if (!consume("null")) fail(m_pos < m_size ? std::string("unexpected character '") + printable(m_data[m_pos]) + "'" : "unexpected end of input");
  }
  /// Reads and discards one value of any kind (syntax and depth still checked).
  void skipValue() {
    switch (peek()) {
      case JsonValue::Type::Object: {
        beginObject();
        std::string k;
        while (nextKey(k)) skipValue();
        return;
      }
      case JsonValue::Type::Array:
        beginArray();
        while (nextItem()) skipValue();
        return;
      case JsonValue::Type::String: (void)string(); return;
      case JsonValue::Type::Number: (void)number(); return;
      case JsonValue::Type::Bool: (void)readBool(); return;
      case JsonValue::Type::Null: readNull(); return;
    }
  }
  /// Checks that only whitespace follows the root value.
  void finish() {
    skipWs();
    if (m_pos != m_size) fail("unexpected trailing characters after the root value");
  }

  /// Current byte offset.
  std::size_t position() const { return m_pos; }
  /// Nesting depth at the current position (open objects and arrays).
  int depth() const { return m_depth; }

  /// An upper bound on the number of further elements of the innermost container (valid JSON:
  /// exactly that number), found by one scan to its closing bracket without decoding anything.
  /// Lets a caller size its storage once instead of growing it.
  std::size_t remainingElementsBound() const {
    std::size_t count = 0, depth = 0, i = m_pos;
    bool any = false;
    while (i < m_size) {
      const char c = m_data[i++];
      if (c == '"') {
        while (i < m_size && m_data[i] != '"') i += m_data[i] == '\\' ? 2 : 1;
        ++i;
        any = true;
      } else if (c == '{' || c == '[') {
        ++depth;
        any = true;
      } else if (c == '}' || c == ']') {
        if (depth == 0) break;
        --depth;
      } else if (c == ',' && depth == 0) {
        ++count;
      } else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
        any = true;
      }
    }
    // Before the first element: n separators mean n + 1 elements.
    return m_depth > 0 && m_first[m_depth - 1] && any ? count + 1 : count;
  }
  /// Throws IoError naming the document and the current byte offset.
  [[noreturn]] void fail(const std::string& msg) const { failAt(m_pos, msg); }
  /// Throws IoError naming the document and byte offset `pos`.
  [[noreturn]] void failAt(std::size_t pos, const std::string& msg) const {
    throw IoError(m_what + ": invalid JSON at byte " + std::to_string(pos) + ": " + msg);
  }

  /// True when `text` is a non-negative integer (digits only) that fits in 64 bits; stores it.
  static bool toUint64(std::string_view text, std::uint64_t& out) {
    if (text.empty()) return false;
    std::uint64_t v = 0;
    for (char c : text) {
      if (c < '0' || c > '9') return false;
      const std::uint64_t d = std::uint64_t(c - '0');
      if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
      v = v * 10 + d;
    }
    out = v;
    return true;
  }

  /// `c` as itself when printable ASCII, else as a \xNN escape (for messages).
  static std::string printable(char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    static const char* hex = "0123456789abcdef";
    return std::string("\\x") + hex[u >> 4] + hex[u & 15];
  }

 private:
  void open(char c, bool object) {
    skipWs();
    if (m_pos >= m_size || m_data[m_pos] != c) fail(std::string("expected '") + c + "'");
    if (m_depth >= kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    m_first[m_depth] = true;
    m_isObject[m_depth] = object;
    ++m_depth;
    ++m_pos;
  }

  // Handles the separator before an element of the innermost container; false at its end.
  bool nextElement(char close, const char* kind) {
    if (m_depth == 0 || m_isObject[m_depth - 1] != (close == '}'))
      throw IoError(m_what + ": JsonReader misuse: not inside an " + kind);
    skipWs();
    bool& first = m_first[m_depth - 1];
    if (m_pos >= m_size) fail(std::string("unterminated ") + kind);
    if (first) {
      if (m_data[m_pos] == close) {
        ++m_pos;
        --m_depth;
        return false;
      }
      first = false;
    } else if (m_data[m_pos] == ',') {
      ++m_pos;
    } else if (m_data[m_pos] == close) {
      ++m_pos;
      --m_depth;
      return false;
    } else {
      fail(std::string("expected ',' or '") + close + "' in an " + kind);
    }
    skipWs();
    if (m_pos >= m_size) fail(std::string("unterminated ") + kind);
    if (close == ']' && m_data[m_pos] == ']') fail("expected a value after ','");
    return true;
  }

  void skipWs() {
    while (m_pos < m_size) {
      const char c = m_data[m_pos];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') ++m_pos;
      else break;
    }
  }

  bool consume(const char* lit) {
    const std::size_t n = std::strlen(lit);
    if (m_size - m_pos >= n && std::memcmp(m_data + m_pos, lit, n) == 0) {
      m_pos += n;
      return true;
    }
    return false;
  }

  std::string_view number() {
    const std::size_t start = m_pos;
    auto digits = [&]() {
      const std::size_t s = m_pos;
      while (m_pos < m_size && m_data[m_pos] >= '0' && m_data[m_pos] <= '9') ++m_pos;
      return m_pos - s;
    };
    if (m_data[m_pos] == '-') ++m_pos;
    if (m_pos >= m_size) fail("truncated number");
    if (m_data[m_pos] == '0') {
      ++m_pos;
    } else if (digits() == 0) {
      fail("expected a digit");
    }
    if (m_pos < m_size && m_data[m_pos] == '.') {
      ++m_pos;
      if (digits() == 0) fail("expected a digit after '.'");
    }
    if (m_pos < m_size && (m_data[m_pos] == 'e' || m_data[m_pos] == 'E')) {
      ++m_pos;
      if (m_pos < m_size && (m_data[m_pos] == '+' || m_data[m_pos] == '-')) ++m_pos;
      if (digits() == 0) fail("expected a digit in the exponent");
    }
    return std::string_view(m_data + start, m_pos - start);
  }

  unsigned hex4() {
    if (m_size - m_pos < 4) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = m_data[m_pos++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else fail("bad hex digit in a \\u escape");
    }
    return v;
  }

  static void appendUtf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  // Validates one UTF-8 sequence starting at m_pos (first byte >= 0x80) and appends it.
  void utf8Sequence(std::string& out) {
    const unsigned char b0 = static_cast<unsigned char>(m_data[m_pos]);
    int len = 0;
    unsigned cp = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) { len = 2; cp = b0 & 0x1F; }
    else if (b0 >= 0xE0 && b0 <= 0xEF) { len = 3; cp = b0 & 0x0F; }
    else if (b0 >= 0xF0 && b0 <= 0xF4) { len = 4; cp = b0 & 0x07; }
    else fail("invalid UTF-8 byte in a string");
    if (m_size - m_pos < std::size_t(len)) fail("truncated UTF-8 sequence");
    for (int i = 1; i < len; ++i) {
      const unsigned char b = static_cast<unsigned char>(m_data[m_pos + std::size_t(i)]);
      if ((b & 0xC0) != 0x80) fail("invalid UTF-8 continuation byte");
      cp = (cp << 6) | (b & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      fail("overlong or invalid UTF-8 sequence");
    out.append(m_data + m_pos, std::size_t(len));
    m_pos += std::size_t(len);
  }

  std::string string() {
    ++m_pos;  // opening quote
    std::string out;
    for (;;) {
      // Copy the run of plain characters in one go.
      std::size_t run = m_pos;
      while (run < m_size) {
        const unsigned char u = static_cast<unsigned char>(m_data[run]);
        if (u == '"' || u == '\\' || u < 0x20 || u >= 0x80) break;
        ++run;
      }
      out.append(m_data + m_pos, run - m_pos);
      m_pos = run;
      if (m_pos >= m_size) fail("unterminated string");
      const char c = m_data[m_pos];
      if (c == '"') { ++m_pos; return out; }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (static_cast<unsigned char>(c) >= 0x80) { utf8Sequence(out); continue; }
      ++m_pos;  // backslash
      if (m_pos >= m_size) fail("unterminated escape");
      const char e = m_data[m_pos++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!consume("\\u")) fail("unpaired high surrogate");
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired low surrogate");
          }
          appendUtf8(out, cp);
          break;
        }
        default: fail(std::string("invalid escape '\\") + printable(e) + "'");
      }
    }
  }

  const char* m_data;
  std::size_t m_size;
  std::string m_what;
  std::size_t m_pos = 0;
  std::size_t m_keyPos = 0;
  int m_depth = 0;
  bool m_first[kMaxDepth] = {};
  bool m_isObject[kMaxDepth] = {};
};

/// Strict JSON parser building a `JsonValue` tree (see the file comment for the rules).
/// Duplicate keys are found by sorting each object's keys: O(n log n) for n members.
class JsonParser {
 public:
  /// Maximum nesting depth of arrays/objects.
  static constexpr int kMaxDepth = JsonReader::kMaxDepth;

  /// Parses exactly one JSON value from [data, data+size). Whitespace may surround it;
  /// anything else after it is an error. `what` names the document in messages.
  static JsonValue parse(const char* data, std::size_t size, const std::string& what = "JSON") {
    JsonReader r(data, size, what);
    JsonValue v = value(r);
    r.finish();
    return v;
  }

 private:
  static JsonValue value(JsonReader& r) {
    JsonValue v;
    v.m_type = r.peek();
    switch (v.m_type) {
      case JsonValue::Type::Object: {
        r.beginObject();
        auto& members = v.children().members;
        std::vector<std::size_t> keyPos;
        std::string key;
        while (r.nextKey(key)) {
          if (members.size() == 32 && r.depth() <= 2) {
            // A large object near the root (a sharded index's weight_map): size storage once.
            const std::size_t more = r.remainingElementsBound();
            members.reserve(members.size() + 1 + more);
            keyPos.reserve(members.size() + 1 + more);
          }
          keyPos.push_back(r.keyPosition());
          JsonValue child = value(r);
          members.emplace_back(std::move(key), std::move(child));
        }
        const std::size_t dup =
            findDuplicateKey(members.size(), [&](std::size_t i) -> const std::string& { return members[i].first; });
        if (dup != members.size()) r.failAt(keyPos[dup], "duplicate key \"" + members[dup].first + "\"");
        return v;
      }
      case JsonValue::Type::Array:
        r.beginArray();
        while (r.nextItem()) v.children().items.push_back(value(r));
        return v;
      case JsonValue::Type::String: v.m_text = r.readString(); return v;
      case JsonValue::Type::Number: v.m_text = std::string(r.readNumber()); return v;
      case JsonValue::Type::Bool: v.m_bool = r.readBool(); return v;
      case JsonValue::Type::Null: r.readNull(); return v;
    }
    return v;
  }
};

/// Appends `s` to `out` as a quoted JSON string (escapes quotes, backslashes, control characters).
inline void appendJsonString(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (u < 0x20) { out += "\\u00"; out += hex[u >> 4]; out += hex[u & 15]; }
    else out += c;
  }
  out += '"';
}

/// `s` as a quoted JSON string.
inline std::string jsonString(const std::string& s) {
  std::string out;
  appendJsonString(out, s);
  return out;
}

}  // namespace io
}  // namespace wproj
