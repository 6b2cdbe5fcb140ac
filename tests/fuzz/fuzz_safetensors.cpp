// libFuzzer target: the safetensors header validator and tensor decoding on arbitrary bytes.
#include <wproj/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto h = wproj::io::SafetensorsHeader::parse(data, size, "fuzz");
    // A file that passed validation must be fully readable within its bounds.
    for (const auto& t : h.tensors()) {
      const unsigned char* p = data + h.dataStart() + t.begin;
      if (!wproj::io::isReadableAsReal(t.dtype) || t.count() > (1u << 16)) continue;
      std::vector<double> out(static_cast<std::size_t>(t.count()));
      wproj::io::decodeElements<double>(t.dtype, p, out.size(), out.data());
    }
  } catch (const wproj::Error&) {
  }
  return 0;
}
