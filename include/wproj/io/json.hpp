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

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
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
  const std::vector<JsonValue>& items() const { return m_items; }
  /// The members of an object in source order (empty for other kinds).
  const std::vector<std::pair<std::string, JsonValue>>& members() const { return m_members; }

  /// The member named `key` of an object, or nullptr.
  const JsonValue* find(const std::string& key) const {
    for (const auto& m : m_members)
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
  Type m_type = Type::Null;
  bool m_bool = false;
  std::string m_text;
  std::vector<JsonValue> m_items;
  std::vector<std::pair<std::string, JsonValue>> m_members;
};

/// Strict recursive-descent JSON parser over a byte range (see file comment for the rules).
class JsonParser {
 public:
  /// Maximum nesting depth of arrays/objects.
  static constexpr int kMaxDepth = 64;

  /// Parses exactly one JSON value from [data, data+size). Whitespace may surround it;
  /// anything else after it is an error. `what` names the document in messages.
  static JsonValue parse(const char* data, std::size_t size, const std::string& what = "JSON") {
    JsonParser p(data, size, what);
    p.skipWs();
    JsonValue v = p.value(0);
    p.skipWs();
    if (p.m_pos != p.m_size) p.fail("unexpected trailing characters after the root value");
    return v;
  }

 private:
  JsonParser(const char* d, std::size_t n, const std::string& what) : m_data(d), m_size(n), m_what(what) {}

  [[noreturn]] void fail(const std::string& msg) const {
    throw IoError(m_what + ": invalid JSON at byte " + std::to_string(m_pos) + ": " + msg);
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

  JsonValue value(int depth) {
    if (m_pos >= m_size) fail("unexpected end of input");
    JsonValue v;
    const char c = m_data[m_pos];
    if (c == '{') {
      if (depth >= kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
      v.m_type = JsonValue::Type::Object;
      ++m_pos;
      skipWs();
      if (m_pos < m_size && m_data[m_pos] == '}') { ++m_pos; return v; }
      for (;;) {
        skipWs();
        if (m_pos >= m_size || m_data[m_pos] != '"') fail("expected a string key");
        const std::size_t keyPos = m_pos;
        std::string key = string();
        for (const auto& m : v.m_members)
          if (m.first == key) {
            m_pos = keyPos;
            fail("duplicate key \"" + key + "\"");
          }
        skipWs();
        if (m_pos >= m_size || m_data[m_pos] != ':') fail("expected ':' after a key");
        ++m_pos;
        skipWs();
        v.m_members.emplace_back(std::move(key), value(depth + 1));
        skipWs();
        if (m_pos >= m_size) fail("unterminated object");
        if (m_data[m_pos] == ',') { ++m_pos; continue; }
        if (m_data[m_pos] == '}') { ++m_pos; return v; }
        fail("expected ',' or '}' in an object");
      }
    }
    if (c == '[') {
      if (depth >= kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
      v.m_type = JsonValue::Type::Array;
      ++m_pos;
      skipWs();
      if (m_pos < m_size && m_data[m_pos] == ']') { ++m_pos; return v; }
      for (;;) {
        skipWs();
        v.m_items.push_back(value(depth + 1));
        skipWs();
        if (m_pos >= m_size) fail("unterminated array");
        if (m_data[m_pos] == ',') { ++m_pos; continue; }
        if (m_data[m_pos] == ']') { ++m_pos; return v; }
        fail("expected ',' or ']' in an array");
      }
    }
    if (c == '"') {
      v.m_type = JsonValue::Type::String;
      v.m_text = string();
      return v;
    }
    if (consume("true")) { v.m_type = JsonValue::Type::Bool; v.m_bool = true; return v; }
    if (consume("false")) { v.m_type = JsonValue::Type::Bool; v.m_bool = false; return v; }
    if (consume("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.m_type = JsonValue::Type::Number;
      v.m_text = number();
      return v;
    }
    fail(std::string("unexpected character '") + printable(c) + "'");
  }

  static std::string printable(char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    static const char* hex = "0123456789abcdef";
    return std::string("\\x") + hex[u >> 4] + hex[u & 15];
  }

  std::string number() {
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
    return std::string(m_data + start, m_pos - start);
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
      if (m_pos >= m_size) fail("unterminated string");
      const char c = m_data[m_pos];
      if (c == '"') { ++m_pos; return out; }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (static_cast<unsigned char>(c) >= 0x80) { utf8Sequence(out); continue; }
      if (c != '\\') { out += c; ++m_pos; continue; }
      ++m_pos;
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
