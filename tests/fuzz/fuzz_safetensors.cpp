// libFuzzer target: the safetensors header validator and tensor decoding on arbitrary bytes.
#include <wproj/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto h = wproj::io::SafetensorsHeader::parse(data, size, "fuzz");
    // A file that passed validation must be fully readable within its bounds.
    unsigned sum = 0;
    for (const auto& t : h.tensors()) {
      const unsigned char* p = data + h.dataStart() + t.begin;
      if (h.dataStart() + t.end > size) __builtin_trap();  // validated offsets must lie inside the file
      for (std::uint64_t i = 0; i < t.bytes(); ++i) sum += p[i];  // raw bytes, any dtype
      (void)t.dtypeString();
      if (!wproj::io::isReadableAsReal(t.dtype) || t.count() > (1u << 16)) continue;
      if (t.count() * wproj::io::dtypeSize(t.dtype) != t.bytes()) __builtin_trap();
      std::vector<double> out(static_cast<std::size_t>(t.count()));
      wproj::io::decodeElements<double>(t.dtype, p, out.size(), out.data());
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const wproj::Error&) {
  }
  return 0;
}
