// safetensors reader/writer, zero-copy views, sharded checkpoints, atomic output.
#include "test_common.hpp"

#include <wproj/io.hpp>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

using namespace wproj_test;
namespace wio = wproj::io;

namespace {

void removeTree(const std::string& p) {
  if (wio::detail::isDirectory(p))
    for (const auto& f : wio::detail::listDirectory(p)) removeTree(p + "/" + f);
  std::remove(p.c_str());
}

/// A fresh folder under /tmp, unique to this process and test, removed at the end of the test.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) : path("/tmp/wproj_test_io_st_" + name + "_" + std::to_string(::getpid())) {
    removeTree(path);
    ::mkdir(path.c_str(), 0777);
  }
  ~TempDir() { removeTree(path); }
  operator const std::string&() const { return path; }
};

std::vector<std::string> listing(const std::string& d) { return wio::detail::listDirectory(d); }

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void spit(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[std::size_t(i)] = char((n >> (8 * i)) & 0xFF);
  return s;
}

}  // namespace

TEMPLATE_TEST_CASE("safetensors: round trip in F32/F64/F16/BF16 with metadata, sorted and 8-aligned", "[io][safetensors]",
                   float, double) {
  using T = TestType;
  const TempDir dir("rt" + std::to_string(sizeof(T)));
  const std::string& d = dir.path;
  const Mat<T> w = gaussian<T>(13, 7, 1), b = gaussian<T>(5, 1, 2), e = Mat<T>(0, 3);
  for (wio::DType dt : {wio::DType::F32, wio::DType::F64, wio::DType::F16, wio::DType::BF16}) {
    const std::string p = d + "/m.safetensors";
    std::vector<std::pair<std::string, Mat<T>>> ts = {{"z.weight", w}, {"a.bias", b}, {"empty", e}};
    wio::writeSafetensors(p, ts, dt, {{"format", "pt"}});
    const wio::SafetensorsReader r(p);
    REQUIRE(r.tensors().size() == 3);
    CHECK(r.tensors()[0].name == "a.bias");  // sorted by name
    CHECK(r.tensors()[2].name == "z.weight");
    CHECK(r.header().dataStart() % 8 == 0);
    CHECK(r.info("z.weight").dtype == dt);
    CHECK(r.info("z.weight").shapeString() == "[13, 7]");
    REQUIRE(r.metadata().size() == 1);
    CHECK(r.metadata()[0].second == "pt");
    // Expected values: the same rounding applied element by element.
    Mat<T> expected = w;
    for (Index i = 0; i < w.size(); ++i) {
      const double x = double(w.data()[i]);
      switch (dt) {
        case wio::DType::F32: expected.data()[i] = T(float(x)); break;
        case wio::DType::F16: expected.data()[i] = T(wio::halfToDouble(wio::doubleToHalf(x))); break;
        case wio::DType::BF16: expected.data()[i] = T(wio::bf16ToDouble(wio::doubleToBf16(x))); break;
        default: break;
      }
    }
    CHECK(r.template read<T>("z.weight") == expected);
    CHECK(r.template read<T>("empty").rows() == 0);
    const auto v = r.template view<T>("z.weight");
    CHECK(Mat<T>(v.map()) == expected);
    CHECK(v.isZeroCopy() == (dt == wio::defaultDtype<T>()));
    // Row blocks (with and without releasing their pages) equal the rows of the whole tensor.
    for (Index r0 : {0, 4, 12}) {
      const Index h = std::min<Index>(5, 13 - r0);
      RowMajorMat<T> rows(h, 7);
      r.template readRows<T>("z.weight", r0, h, rows.data(), r0 == 4);
      CHECK(Mat<T>(rows) == expected.middleRows(r0, h));
    }
    RowMajorMat<T> again(13, 7);
    r.template readRows<T>("z.weight", 0, 13, again.data());  // released pages fault back in
    CHECK(Mat<T>(again) == expected);
    CHECK_THROWS_WITH(r.template readRows<T>("z.weight", 10, 4, again.data()), Catch::Contains("rows") && Catch::Contains("13"));
    // Relative error bound of the storage format.
    const double u = dt == wio::DType::F16    ? std::ldexp(1.0, -11)
                     : dt == wio::DType::BF16 ? std::ldexp(1.0, -8)
                     : dt == wio::DType::F32  ? std::ldexp(1.0, -24)
                                              : 0.0;
    CHECK((r.template read<double>("z.weight") - w.template cast<double>()).cwiseAbs().maxCoeff() <=
          u * w.template cast<double>().cwiseAbs().maxCoeff());
  }
  CHECK(listing(d).size() == 1);  // no temporary files left behind
}

TEST_CASE("safetensors: misaligned data is read through a converted copy, not a misaligned pointer", "[io][safetensors]") {
  const TempDir dir("align");
  const std::string& d = dir.path;
  // Header of odd length, then one U8 tensor of 1 byte, then an F32 2x2 tensor at an odd address.
  std::string json = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2,2],"data_offsets":[1,17]}})";
  if ((8 + json.size()) % 2 == 0) json += ' ';
  std::string data(1, char(7));
  const float vals[4] = {1.5f, -2.0f, 3.25f, 1e-3f};
  data.append(reinterpret_cast<const char*>(vals), 16);
  spit(d + "/odd.safetensors", le64(json.size()) + json + data);
  const wio::SafetensorsReader r(d + "/odd.safetensors");
  const auto v = r.view<float>("b");
  CHECK_FALSE(v.isZeroCopy());
  CHECK(v.map()(0, 0) == 1.5f);
  CHECK(v.map()(0, 1) == -2.0f);  // row-major
  CHECK(v.map()(1, 0) == 3.25f);
  CHECK(r.read<double>("a")(0, 0) == 7.0);
  CHECK_THROWS_WITH(r.info("nope"), Catch::Contains("no tensor named 'nope'"));
}

TEST_CASE("safetensors: streaming writer accepts any order, rejects misuse, leaves nothing on failure", "[io][safetensors]") {
  const TempDir dir("stream");
  const std::string& d = dir.path;
  const Mat<float> a = gaussian<float>(4, 3, 5), b = gaussian<float>(2, 2, 6);
  {
    wio::SafetensorsWriter w(d + "/s.safetensors");
    w.declare("b", wio::DType::F32, {2, 2}).declare("a", wio::DType::BF16, {4, 3});
    CHECK_THROWS_AS(w.declare("a", wio::DType::F32, {1}), wproj::InvalidArgument);
    w.begin();
    w.write("b", b);  // any order
    CHECK_THROWS_WITH(w.write("a", Mat<float>(3, 4)), Catch::Contains("declared as [4, 3]"));
    CHECK_THROWS_WITH(w.commit(), Catch::Contains("'a' was declared but never written"));
    w.write("a", a);
    CHECK_THROWS_WITH(w.write("a", a), Catch::Contains("already written"));
    w.commit();
  }
  const wio::SafetensorsReader r(d + "/s.safetensors");
  CHECK(r.read<float>("b") == b);
  CHECK(listing(d).size() == 1);
  {
    // Destroyed before commit: no file, no temporary left; an existing file is left as it was.
    const std::string before = slurp(d + "/s.safetensors");
    wio::SafetensorsWriter w(d + "/s.safetensors");
    w.declare("x", wio::DType::F32, {1});
    w.begin();
    w.write("x", Mat<float>::Ones(1, 1));
    CHECK(slurp(d + "/s.safetensors") == before);
  }
  CHECK(listing(d).size() == 1);
  {
    wio::SafetensorsWriter w(d + "/new.safetensors");
    w.declare("x", wio::DType::F32, {1});
    w.begin();
  }
  CHECK(listing(d).size() == 1);
}

TEST_CASE("checkpoint: sharded write by size, index read, folder read, index validation", "[io][checkpoint]") {
  const TempDir dir("shard");
  const std::string& d = dir.path;
  const std::string out = d + "/model";
  std::vector<std::pair<std::string, Mat<float>>> ts;
  for (int i = 0; i < 5; ++i) ts.emplace_back("layer." + std::to_string(i) + ".weight", gaussian<float>(8, 4, 100 + i));
  {
    wio::CheckpointWriter w(out, 300);  // each tensor is 128 bytes in F32: two per shard
    w.addMetadata("format", "pt");
    for (const auto& t : ts) w.declare(t.first, wio::DType::F32, {8, 4});
    w.begin();
    for (auto it = ts.rbegin(); it != ts.rend(); ++it) w.write(it->first, it->second);
    CHECK(w.files().size() == 4);
    w.commit();
  }
  const auto files = listing(out);
  REQUIRE(files.size() == 4);
  CHECK(files[0] == "model-00001-of-00003.safetensors");
  CHECK(files[3] == "model.safetensors.index.json");
  for (const std::string& src : {out, out + "/model.safetensors.index.json"}) {
    const wio::Checkpoint c(src);
    CHECK(c.shardCount() == 3);
    REQUIRE(c.names().size() == 5);
    for (const auto& t : ts) CHECK(c.read<float>(t.first) == t.second);
    CHECK(c.totalBytes() == 5 * 128);
  }
  // An index that lists a tensor its shard lacks is rejected with the tensor's name.
  std::string idx = slurp(out + "/model.safetensors.index.json");
  const auto pos = idx.find("\"layer.4.weight\"");
  REQUIRE(pos != std::string::npos);
  idx.insert(pos, "\"ghost\": \"model-00001-of-00003.safetensors\",\n    ");
  spit(out + "/broken.json", idx);
  CHECK_THROWS_WITH(wio::Checkpoint(out + "/broken.json"), Catch::Contains("'ghost'"));
  spit(out + "/escape.json", R"({"weight_map": {"w": "../x.safetensors"}})");
  CHECK_THROWS_WITH(wio::Checkpoint(out + "/escape.json"), Catch::Contains("expected a file name"));
  // Unlimited shard size: a single model.safetensors in the folder.
  {
    wio::CheckpointWriter w(d + "/single");
    w.declare("w", wio::DType::F16, {2, 2});
    w.begin();
    w.write("w", Mat<double>::Identity(2, 2));
    w.commit();
  }
  CHECK(listing(d + "/single") == std::vector<std::string>{"model.safetensors"});
  CHECK(wio::Checkpoint(d + "/single").read<double>("w") == Mat<double>::Identity(2, 2));
}

TEST_CASE("json: strict parser accepts valid documents and rejects duplicates and junk", "[io][json]") {
  const std::string ok = R"( {"a": [1, -2.5e3, true, false, null], "s": "\u00e9\ud83d\ude00\n\"", "o": {}} )";
  const wio::JsonValue v = wio::JsonParser::parse(ok.data(), ok.size());
  REQUIRE(v.isObject());
  CHECK(v.find("a")->items().size() == 5);
  CHECK(v.find("a")->items()[1].text() == "-2.5e3");
  CHECK(v.find("s")->text() == "\xc3\xa9\xf0\x9f\x98\x80\n\"");
  std::uint64_t n = 0;
  CHECK(v.find("a")->items()[0].asUint64(n));
  CHECK(n == 1);
  const std::string big = "18446744073709551616";
  CHECK_FALSE(wio::JsonParser::parse(big.data(), big.size()).asUint64(n));  // 2^64 does not fit
  for (const char* bad : {R"({"a":1,"a":2})", "[1,]", "{\"a\":1,}", "01", "\"\\x\"", "\"\\ud800\"", "[1] 2", "", "{",
                          "tru", "\"a\tb\"", "1.", "-", "1e"}) {
    CHECK_THROWS_AS(wio::JsonParser::parse(bad, std::strlen(bad)), wproj::IoError);
  }
  CHECK_THROWS_WITH(wio::JsonParser::parse(R"({"k":1,"k":2})", 13), Catch::Contains("duplicate key \"k\""));
}

// A flat object of n members "k<i>": i, optionally with member `dupAt` repeating the key of member 0.
static std::string bigObject(std::size_t n, std::size_t dupAt = std::size_t(-1)) {
  std::string s = "{";
  s.reserve(n * 16);
  for (std::size_t i = 0; i < n; ++i) {
    if (i) s += ',';
    s += "\"k" + std::to_string(i == dupAt ? 0 : i) + "\":" + std::to_string(i);
  }
  return s + "}";
}

// Not timed: with the former pairwise duplicate check a 10^6-member object needed ~5·10^11 key
// comparisons (hours), so on that code this test runs into the ctest timeout.
TEST_CASE("json: an object with 10^6 members parses, duplicate keys anywhere are still rejected", "[io][json]") {
  const std::size_t n = 1000000;
  {
    const std::string doc = bigObject(n);
    const wio::JsonValue v = wio::JsonParser::parse(doc.data(), doc.size());
    REQUIRE(v.members().size() == n);
    CHECK(v.members()[123456].first == "k123456");
    std::uint64_t x = 0;
    CHECK(v.members()[n - 1].second.asUint64(x));
    CHECK(x == n - 1);
  }
  for (std::size_t at : {std::size_t(1), std::size_t(7), n / 2, n - 1}) {
    const std::string doc = bigObject(n, at);
    // The error names the repeated key and the byte offset of its second occurrence.
    const std::string key = "\"k0\":" + std::to_string(at);
    const std::size_t offset = doc.find(key);
    REQUIRE(offset != std::string::npos);
    CHECK_THROWS_WITH(wio::JsonParser::parse(doc.data(), doc.size()),
                      Catch::Contains("at byte " + std::to_string(offset) + ": duplicate key \"k0\""));
  }
  // Small objects (pairwise path) and nested objects: the first repeated key in source order is named.
  const std::string nested = R"({"a":{"x":1,"y":2,"x":3},"b":1})";
  CHECK_THROWS_WITH(wio::JsonParser::parse(nested.data(), nested.size()), Catch::Contains("at byte 18: duplicate key \"x\""));
  std::string mid = "{";
  for (int i = 0; i < 40; ++i) mid += "\"m" + std::to_string(i % 30 == 29 ? 3 : i) + "\":0,";
  mid.back() = '}';
  CHECK_THROWS_WITH(wio::JsonParser::parse(mid.data(), mid.size()), Catch::Contains("duplicate key \"m3\""));
  // Same keys in different objects are fine; a copy of a parsed value is deep and equal.
  const std::string ok = R"({"a":{"x":1},"b":{"x":[1,{"x":2}]}})";
  const wio::JsonValue v = wio::JsonParser::parse(ok.data(), ok.size());
  const wio::JsonValue copy = v;
  CHECK(copy.find("b")->find("x")->items()[1].find("x")->text() == "2");
}

namespace {

// One safetensors file from (name, dtype string, shape, bytes) entries laid out in order.
struct RawTensor {
  std::string name, dtype, shape;
  std::string bytes;
};
std::string rawFile(const std::vector<RawTensor>& ts) {
  std::string json = "{\"__metadata__\":{\"format\":\"pt\"}", data;
  for (const auto& t : ts) {
    json += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + t.shape + ",\"data_offsets\":[" +
            std::to_string(data.size()) + "," + std::to_string(data.size() + t.bytes.size()) + "]}";
    data += t.bytes;
  }
  json += "}";
  return le64(json.size()) + json + data;
}

std::string bytesOf(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s += char(b);
  return s;
}

// Independent decodings of the OCP 8-bit float formats, from the definitions (not the library's).
double e4m3Reference(int b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();  // E4M3FN: only S.1111.111 is NaN, no Inf
  const double mag = e == 0 ? (m / 8.0) * std::pow(2.0, -6) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}
double e5m2Reference(int b) {
  const int s = b >> 7, e = (b >> 2) & 31, m = b & 3;
  double mag;
  if (e == 31) mag = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  else mag = e == 0 ? (m / 4.0) * std::pow(2.0, -14) : (1.0 + m / 4.0) * std::pow(2.0, e - 15);
  return s ? -mag : mag;
}

long peakRssKb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}
long currentRssKb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}
// Resets the peak-RSS mark (Linux ≥ 4.0); false if not possible.
bool resetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return bool(f);
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

}  // namespace

TEST_CASE("F8_E4M3 and F8_E5M2: all 256 codes decode exactly (NaN/Inf rules of E4M3FN and E5M2)", "[io][dtype]") {
  for (int b = 0; b < 256; ++b) {
    INFO("code " << b);
    const double r4 = e4m3Reference(b), r5 = e5m2Reference(b);
    const float d4 = wio::f8e4m3ToFloat(std::uint8_t(b)), d5 = wio::f8e5m2ToFloat(std::uint8_t(b));
    if (std::isnan(r4)) CHECK(std::isnan(d4));
    else CHECK(double(d4) == r4);
    if (std::isnan(r5)) CHECK(std::isnan(d5));
    else CHECK(double(d5) == r5);
    CHECK(std::signbit(d4) == bool(b & 0x80));
    // E5M2 is the top byte of an IEEE half.
    const double h = wio::halfToDouble(std::uint16_t(b << 8));
    CHECK((std::isnan(h) ? std::isnan(d5) : double(d5) == h));
  }
  // Landmarks from the OCP FP8 specification.
  CHECK(wio::f8e4m3ToFloat(0x7E) == 448.0f);
  CHECK(wio::f8e4m3ToFloat(0x78) == 256.0f);  // exponent 15 is a normal binade in E4M3FN
  CHECK(wio::f8e4m3ToFloat(0x01) == std::ldexp(1.0f, -9));
  CHECK(std::isnan(wio::f8e4m3ToFloat(0xFF)));
  CHECK(wio::f8e5m2ToFloat(0x7B) == 57344.0f);
  CHECK(std::isinf(wio::f8e5m2ToFloat(0xFC)));
  CHECK(wio::f8e5m2ToFloat(0xFC) < 0);
  CHECK(std::isnan(wio::f8e5m2ToFloat(0x7D)));
  CHECK(wio::f8e5m2ToFloat(0x01) == std::ldexp(1.0f, -16));
}

TEST_CASE("safetensors: newer and unknown dtypes are listed and kept as raw bytes; F8 tensors read as float", "[io][dtype]") {
  const TempDir dir("dtypes");
  const std::string& d = dir.path;
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  const std::string file = rawFile({
      {"a.f8e4m3", "F8_E4M3", "[16,16]", all},
      {"b.f8e5m2", "F8_E5M2", "[256]", all},
      {"c.scale", "F8_E8M0", "[2]", bytesOf({127, 130})},
      {"d.fp4", "F4", "[2,3]", bytesOf({0x12, 0x34, 0x56})},  // 6 x 4 bits = 3 bytes
      {"e.fp6", "F6_E2M3", "[4]", bytesOf({1, 2, 3})},        // 4 x 6 bits = 3 bytes
      {"f.complex", "C64", "[1]", std::string(8, '\x01')},
      {"g.future", "F33", "[5]", bytesOf({9, 8, 7})},          // unknown name: size cannot be checked
      {"h.weight", "F32", "[1]", std::string("\0\0\x80\x3f", 4)},
  });
  spit(d + "/m.safetensors", file);
  const wio::SafetensorsReader r(d + "/m.safetensors");
  REQUIRE(r.tensors().size() == 8);
  CHECK(r.info("c.scale").dtype == wio::DType::F8E8M0);
  CHECK(r.info("d.fp4").dtypeString() == "F4");
  CHECK(r.info("d.fp4").bytes() == 3);
  CHECK(r.info("e.fp6").dtype == wio::DType::F6E2M3);
  CHECK(r.info("f.complex").dtypeString() == "C64");
  CHECK(r.info("g.future").dtype == wio::DType::Unknown);
  CHECK(r.info("g.future").dtypeString() == "F33");
  CHECK(r.info("g.future").shapeString() == "[5]");
  CHECK(r.info("g.future").bytes() == 3);
  CHECK(r.read<float>("h.weight")(0, 0) == 1.0f);  // the rest of the file stays readable
  // F8 read as numbers, element by element against the independent decoding.
  const auto e4 = r.readRowMajor<double>("a.f8e4m3");
  const auto e5 = r.read<double>("b.f8e5m2");
  for (int b = 0; b < 256; ++b) {
    const double x4 = e4.data()[b], x5 = e5(b, 0);
    CHECK((std::isnan(e4m3Reference(b)) ? std::isnan(x4) : x4 == e4m3Reference(b)));
    CHECK((std::isnan(e5m2Reference(b)) ? std::isnan(x5) : x5 == e5m2Reference(b)));
  }
  // No real-number reading: a clear error naming the tensor and dtype; raw bytes available.
  for (const char* n : {"c.scale", "d.fp4", "e.fp6", "f.complex", "g.future"}) {
    CHECK_THROWS_WITH(r.read<float>(n), Catch::Contains(std::string("'") + n + "'") && Catch::Contains("raw bytes"));
    CHECK_FALSE(wio::isReadableAsReal(r.info(n).dtype));
  }
  CHECK(r.readRaw("g.future") == std::vector<unsigned char>{9, 8, 7});
  // Copy everything through with the writer: same dtype names, shapes and bytes.
  {
    wio::SafetensorsWriter w(d + "/copy.safetensors");
    for (const auto& t : r.tensors()) w.declare(t);
    w.begin();
    for (const auto& t : r.tensors()) w.writeRaw(t.name, r.rawData(t), std::size_t(t.bytes()));
    w.commit();
  }
  const wio::SafetensorsReader c(d + "/copy.safetensors");
  for (const auto& t : r.tensors()) {
    const auto& u = c.info(t.name);
    CHECK(u.dtypeString() == t.dtypeString());
    CHECK(u.shape == t.shape);
    CHECK(c.readRaw(t.name) == r.readRaw(t.name));
  }
  // The writer computes sub-byte sizes and refuses what it cannot lay out.
  wio::SafetensorsWriter w(d + "/bad.safetensors");
  CHECK_THROWS_WITH(w.declare("x", wio::DType::F4, {3}), Catch::Contains("whole number of bytes"));
  CHECK_THROWS_WITH(w.declare("x", wio::DType::Unknown, {3}), Catch::Contains("UNKNOWN"));
  CHECK_THROWS_WITH(w.declare(std::string("a\0b", 3), wio::DType::F32, {1}), Catch::Contains("NUL"));
  CHECK_THROWS_WITH(w.declare("x", wio::DType::F32, std::vector<std::uint64_t>(17, 1)), Catch::Contains("at most 16"));
  w.declare("x", wio::DType::F4, {4});
  CHECK(w.dataBytes() == 2);
}

TEST_CASE("safetensors: rank is capped at 16 and header parsing needs less than 4x the header's size", "[io][safetensors]") {
  // A 10 MB header whose one shape has 5 million extents: refused at the 17th, without building anything.
  std::string shape = "[";
  for (int i = 0; i < 5000000; ++i) shape += i ? ",1" : "1";
  shape += "]";
  const std::string huge = rawFile({{"w", "F32", shape, std::string(4, '\0')}});
  REQUIRE(huge.size() > 10000000);
  const auto* hp = reinterpret_cast<const unsigned char*>(huge.data());
  CHECK_THROWS_WITH(wio::SafetensorsHeader::parse(hp, huge.size(), "huge"), Catch::Contains("more than 16 extents"));
  // 16 extents are fine.
  const std::string r16 = rawFile({{"w", "F32", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2]", std::string(8, '\0')}});
  CHECK(wio::SafetensorsHeader::parse(reinterpret_cast<const unsigned char*>(r16.data()), r16.size()).tensors()[0].count() == 2);

  // Many small tensors: the densest valid header, ~12 MB.
  std::vector<RawTensor> many;
  for (int i = 0; i < 200000; ++i) many.push_back({"t" + std::to_string(i), "F32", "[1]", std::string(4, '\0')});
  const std::string big = rawFile(many);
  many.clear();
  many.shrink_to_fit();
  const std::size_t headerBytes = big.size() - 4 * 200000 - 8;
  if (kSanitized || !resetPeakRss()) {
    const auto h = wio::SafetensorsHeader::parse(reinterpret_cast<const unsigned char*>(big.data()), big.size());
    CHECK(h.tensors().size() == 200000);
    return;  // allocator overheads of a sanitizer (or no peak reset) make the measurement meaningless
  }
  long extraKb = 0;
  {
    const long before = currentRssKb();
    const auto h = wio::SafetensorsHeader::parse(reinterpret_cast<const unsigned char*>(big.data()), big.size());
    extraKb = peakRssKb() - before;
    CHECK(h.tensors().size() == 200000);
    CHECK(h.tensors()[0].name == "t0");
  }
  INFO("header " << headerBytes / 1024 << " KiB, peak extra RSS " << extraKb << " KiB");
  CHECK(double(extraKb) * 1024 < 4.0 * double(headerBytes));
  // The 5M-extent header costs next to nothing to refuse.
  REQUIRE(resetPeakRss());
  const long before = currentRssKb();
  CHECK_THROWS(wio::SafetensorsHeader::parse(hp, huge.size(), "huge"));
  CHECK(double(peakRssKb() - before) * 1024 < 4.0 * double(huge.size()));
}

TEST_CASE("files: a FIFO or other special file is refused at once, never waited on", "[io][file]") {
  const TempDir dir("fifo");
  const std::string fifo = dir.path + "/pipe.safetensors";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Opened in a child so that a blocking open (no writer will ever come) fails this test instead of hanging it.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 3;
    try {
      wio::SafetensorsReader r(fifo);
      code = 2;
    } catch (const wproj::IoError& e) {
      code = std::string(e.what()).find("not a regular file (it is a FIFO") != std::string::npos ? 0 : 1;
    } catch (...) {
    }
    ::_exit(code);
  }
  int status = 0;
  bool done = false;
  for (int i = 0; i < 200 && !done; ++i) {  // up to 10 s
    done = ::waitpid(pid, &status, WNOHANG) == pid;
    if (!done) ::usleep(50000);
  }
  if (!done) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  CHECK(done);
  CHECK((done && WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK_THROWS_WITH(wio::MappedFile(dir.path), Catch::Contains("not a regular file (it is a folder)"));
  CHECK_THROWS_WITH(wio::readNpy<float>("/dev/null"), Catch::Contains("not a regular file (it is a character device)"));
}

TEST_CASE("files: a mapped input that changes size is detected before its data is touched", "[io][file]") {
  const TempDir dir("resize");
  const std::string p = dir.path + "/m.safetensors";
  wio::writeSafetensors(p, std::vector<std::pair<std::string, Mat<float>>>{{"w", gaussian<float>(64, 64, 3)}});
  const wio::Checkpoint c(p);
  const wio::SafetensorsReader& r = c.shard(0);
  const std::size_t size = r.fileSize();
  CHECK_NOTHROW(c.checkUnchanged());
  const Mat<float> before = c.read<float>("w");
  REQUIRE(::truncate(p.c_str(), off_t(size / 2)) == 0);  // another process truncates the input
  CHECK_THROWS_WITH(r.checkUnchanged(), Catch::Contains(std::to_string(size) + " bytes when opened, " + std::to_string(size / 2) + " now"));
  CHECK_THROWS_WITH(c.checkUnchanged(), Catch::Contains("changed size"));
  CHECK_THROWS_WITH(c.read<float>("w"), Catch::Contains("changed size"));  // instead of SIGBUS
  CHECK_THROWS_WITH(c.view<float>("w"), Catch::Contains("changed size"));
  CHECK_THROWS_WITH(r.readRaw("w"), Catch::Contains("changed size"));
  REQUIRE(::truncate(p.c_str(), off_t(size + 100)) == 0);  // grown: also reported
  CHECK_THROWS_WITH(r.checkUnchanged(), Catch::Contains(std::to_string(size + 100) + " now"));
  REQUIRE(::truncate(p.c_str(), off_t(size)) == 0);
  CHECK_NOTHROW(r.checkUnchanged());
  CHECK(before.rows() == 64);
}

TEST_CASE("checkpoint: NUL characters in index names are refused, not used to shorten paths", "[io][checkpoint]") {
  const TempDir dir("nul");
  const std::string& d = dir.path;
  wio::writeSafetensors(d + "/a.safetensors", std::vector<std::pair<std::string, Mat<float>>>{{"w", Mat<float>::Ones(2, 2)}});
  spit(d + "/ok.json", R"({"weight_map": {"w": "a.safetensors"}})");
  CHECK(wio::Checkpoint(d + "/ok.json").read<float>("w")(1, 1) == 1.0f);
  // "a.safetensors\u0000.evil" would open a.safetensors if the name were passed to open() as is.
  spit(d + "/shard.json", R"({"weight_map": {"w": "a.safetensors\u0000.evil"}})");
  CHECK_THROWS_WITH(wio::Checkpoint(d + "/shard.json"), Catch::Contains("NUL character") && Catch::Contains("'w'"));
  spit(d + "/name.json", R"({"weight_map": {"w\u0000x": "a.safetensors"}})");
  CHECK_THROWS_WITH(wio::Checkpoint(d + "/name.json"), Catch::Contains("NUL character"));
}

TEST_CASE("SpillFile: blocks read back exactly, leaves no file, refuses bad handles and folders", "[io][spill]") {
  const TempDir tmp("spill");
  const std::string dir = tmp.path;
  {
    wproj::io::SpillFile spill(dir);
    std::vector<float> a(1000), b(3);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f - 7.f;
    b = {1.f, -2.f, 3.5f};
    const auto ha = spill.put(a.data(), a.size() * sizeof(float));
    const auto hb = spill.put(b.data(), b.size() * sizeof(float));
    const auto hz = spill.put(nullptr, 0);
    CHECK(spill.size() == (a.size() + b.size()) * sizeof(float));
    std::vector<float> rb(3), ra(1000);
    spill.get(hb, rb.data(), rb.size() * sizeof(float));
    spill.get(ha, ra.data(), ra.size() * sizeof(float));
    spill.get(hz, nullptr, 0);
    CHECK(ra == a);
    CHECK(rb == b);
    CHECK_THROWS_AS(spill.get(hb, rb.data(), 100), wproj::InvalidArgument);
    // Unnamed: the folder holds no file while the spill file is open.
    CHECK(listing(dir).empty());
  }
  CHECK_THROWS_AS(wproj::io::SpillFile(dir + "/no/such/folder"), wproj::IoError);
}
