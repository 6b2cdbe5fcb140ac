// libFuzzer target: the strict JSON parser (tree and pull reader) and the index duplicate check.
#include <wproj/io/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace {
// Walks a parsed tree; a copy must equal the original in shape.
std::size_t nodes(const wproj::io::JsonValue& v) {
  std::size_t n = 1;
  for (const auto& x : v.items()) n += nodes(x);
  for (const auto& m : v.members()) n += nodes(m.second);
  return n;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  bool treeOk = false;
  try {
    const wproj::io::JsonValue v = wproj::io::JsonParser::parse(p, size, "fuzz");
    const wproj::io::JsonValue copy = v;
    if (nodes(copy) != nodes(v)) __builtin_trap();
    treeOk = true;
  } catch (const wproj::Error&) {
  }
  // The pull reader alone (skipValue) accepts a superset: everything but duplicate keys.
  try {
    wproj::io::JsonReader r(p, size, "fuzz");
    r.skipValue();
    r.finish();
  } catch (const wproj::Error&) {
    if (treeOk) __builtin_trap();
  }
  return 0;
}
