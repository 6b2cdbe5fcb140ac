// File-header parsing: the strict JSON parser on a sharded checkpoint's index, and the safetensors
// header validator on a header of many small tensors. Inputs are built in memory (no disk I/O).
#include <benchmark/benchmark.h>
#include <wproj/io/json.hpp>
#include <wproj/io/safetensors.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace {

// A model.safetensors.index.json with n weight_map entries (names like a Llama checkpoint's).
std::string indexJson(std::int64_t n) {
  std::string s = "{\"metadata\": {\"total_size\": 1000}, \"weight_map\": {";
  s.reserve(std::size_t(n) * 80 + 64);
  for (std::int64_t i = 0; i < n; ++i) {
    if (i) s += ",\n";
    s += "\"model.layers." + std::to_string(i) + ".mlp.down_proj.weight\": \"model-0000" + std::to_string(1 + i % 4) +
         "-of-00004.safetensors\"";
  }
  return s + "}}";
}

// A whole safetensors file of n F32 tensors of shape [1, 1] (4 bytes each).
std::vector<unsigned char> manyTensors(std::int64_t n) {
  std::string json = "{\"__metadata__\":{\"format\":\"pt\"}";
  for (std::int64_t i = 0; i < n; ++i)
    json += ",\"t." + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[" + std::to_string(4 * i) +
            "," + std::to_string(4 * i + 4) + "]}";
  json += "}";
  std::vector<unsigned char> file(8 + json.size() + std::size_t(4 * n), 0);
  const std::uint64_t len = json.size();
  for (int b = 0; b < 8; ++b) file[std::size_t(b)] = static_cast<unsigned char>(len >> (8 * b));
  std::copy(json.begin(), json.end(), file.begin() + 8);
  return file;
}

void BM_JsonIndex(benchmark::State& state) {
  const std::string doc = indexJson(state.range(0));
  for (auto _ : state) {
    const wproj::io::JsonValue v = wproj::io::JsonParser::parse(doc.data(), doc.size());
    benchmark::DoNotOptimize(v.members().size());
  }
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(doc.size()));
  state.counters["entries"] = double(state.range(0));
}
BENCHMARK(BM_JsonIndex)->ArgName("entries")->Arg(80000)->Arg(1000000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SafetensorsHeader(benchmark::State& state) {
  const std::vector<unsigned char> file = manyTensors(state.range(0));
  for (auto _ : state) {
    const auto h = wproj::io::SafetensorsHeader::parse(file.data(), file.size(), "bench");
    benchmark::DoNotOptimize(h.tensors().size());
  }
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(file.size()));
}
BENCHMARK(BM_SafetensorsHeader)->ArgName("tensors")->Arg(10000)->Arg(200000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
