// libFuzzer target: the .npy header parser and element decoding on arbitrary bytes.
#include <wproj/io/npy.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto h = wproj::io::parseNpyHeader(data, size, "fuzz");
    if (h.count <= (1u << 16)) {
      const auto m = wproj::io::readNpyBuffer<float>(data, size, "fuzz");
      (void)m;
    }
  } catch (const wproj::Error&) {
  }
  return 0;
}
