// The persistence format (core/serialization.hpp) and the atomic writer (core/atomic_file.hpp).
#include "test_common.hpp"

#include <wproj/core/atomic_file.hpp>
#include <wproj/core/serialization.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <streambuf>
#include <string>

using namespace wproj_test;
using Catch::Contains;

namespace {

/// A file with two sections: "meta" (a u32, a double, a string) and "data" (two matrices).
template <typename T, typename DA, typename DB>
std::string serialTestFile(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b) {
  std::ostringstream os;
  wproj::serial::writeContainer(
      os, "wproj.test",
      [&](auto& enc) {
        enc.section("meta", [](auto& s) {
          s.template pod<std::uint32_t>(7u);
          s.template pod<double>(0.25);
          s.string("name");
        });
        enc.section("data", [&](auto& s) {
          s.matrix(a);
          s.matrix(b);
        });
      },
      "test");
  return os.str();
}

struct SerialTestContent {
  std::uint32_t u = 0;
  double d = 0;
  std::string name;
};

template <typename T>
SerialTestContent serialTestRead(std::istream& is, Mat<T>& a, Mat<T>& b, const char* kind = "wproj.test") {
  wproj::serial::Decoder dec(is, kind, "test");
  SerialTestContent c;
  dec.section("meta");
  c.u = dec.pod<std::uint32_t>("u");
  c.d = dec.pod<double>("d");
  c.name = dec.string("name");
  dec.section("data");
  a = dec.matrix<T>("a");
  b = dec.matrix<T>("b");
  dec.finish();
  return c;
}

/// A stream buffer over a string that cannot seek (as a pipe).
class SerialTestPipe : public std::streambuf {
 public:
  explicit SerialTestPipe(std::string data) : m_data(std::move(data)) {
    setg(&m_data[0], &m_data[0], &m_data[0] + m_data.size());
  }

 private:
  std::string m_data;
};

/// An output buffer that cannot seek.
class SerialTestSink : public std::streambuf {
 public:
  std::string data;

 protected:
  int_type overflow(int_type ch) override {
    if (!traits_type::eq_int_type(ch, traits_type::eof())) data.push_back(traits_type::to_char_type(ch));
    return traits_type::not_eof(ch);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    data.append(s, std::size_t(n));
    return n;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("serial: sections, PODs, strings and matrices round trip bit for bit", "[core][serialization]", float,
                   double) {
  using T = TestType;
  Mat<T> a = gaussian<T>(7, 3, 1);
  a(2, 1) = std::numeric_limits<T>::denorm_min();  // stored as bits, not as text
  a(0, 0) = -T(0);
  const RowMajorMat<T> b = gaussian<T>(4, 6, 2);  // row-major in, column-major on disk
  const std::string file = serialTestFile<T>(a, b);
  // Header: magic, version, byte-order mark, kind.
  REQUIRE(file.size() > 40);
  CHECK(file.substr(0, 8) == "WPROJBIN");
  std::uint32_t version = 0, bom = 0;
  std::memcpy(&version, &file[8], 4);
  std::memcpy(&bom, &file[12], 4);
  CHECK(version == wproj::serial::kFormatVersion);
  CHECK(bom == 0x01020304u);
  // The coefficients of `a` appear column-major, bit for bit.
  const std::string aBytes(reinterpret_cast<const char*>(a.data()), sizeof(T) * std::size_t(a.size()));
  CHECK(file.find(aBytes) != std::string::npos);

  std::istringstream in(file);
  Mat<T> ra, rb;
  const auto c = serialTestRead<T>(in, ra, rb);
  CHECK(c.u == 7u);
  CHECK(c.d == 0.25);
  CHECK(c.name == "name");
  REQUIRE(ra.rows() == 7);
  CHECK(std::memcmp(ra.data(), a.data(), sizeof(T) * std::size_t(a.size())) == 0);
  CHECK(rb == Mat<T>(b));

  // The same bytes through a stream that cannot seek (read into memory, then checked).
  SerialTestPipe pipe(file);
  std::istream pin(&pipe);
  Mat<T> pa, pb;
  serialTestRead<T>(pin, pa, pb);
  CHECK(pa == ra);
  CHECK(pb == rb);
}

TEMPLATE_TEST_CASE("serial: corrupted, truncated, newer and foreign files throw IoError", "[core][serialization]", float,
                   double) {
  using T = TestType;
  const Mat<T> a = gaussian<T>(5, 4, 3), b = gaussian<T>(2, 2, 4);
  const std::string good = serialTestFile<T>(a, b);
  auto load = [](const std::string& bytes, const char* kind = "wproj.test") {
    std::istringstream in(bytes);
    Mat<T> x, y;
    serialTestRead<T>(in, x, y, kind);
  };
  CHECK_NOTHROW(load(good));
  // Every single flipped byte of the payload is caught by the checksum.
  const std::size_t payloadStart = wproj::serial::lengthFieldOffset("wproj.test") + 16;
  for (std::size_t i = payloadStart; i < good.size(); i += 7) {
    std::string bad = good;
    bad[i] = char(bad[i] ^ 0x10);
    CHECK_THROWS_WITH(load(bad), Contains("checksum mismatch"));
  }
  // Flipped checksum field.
  std::string badSum = good;
  badSum[payloadStart - 1] = char(badSum[payloadStart - 1] ^ 1);
  CHECK_THROWS_WITH(load(badSum), Contains("checksum mismatch"));
  // Truncations anywhere.
  for (std::size_t n : {std::size_t(0), std::size_t(5), std::size_t(10), std::size_t(22), payloadStart - 3, payloadStart + 3,
                        good.size() - 1}) {
    CHECK_THROWS_AS(load(good.substr(0, n)), wproj::IoError);
  }
  CHECK_THROWS_WITH(load(good.substr(0, good.size() - 1)), Contains("truncated"));
  // A newer format version.
  std::string newer = good;
  const std::uint32_t v = wproj::serial::kFormatVersion + 1;
  std::memcpy(&newer[8], &v, 4);
  CHECK_THROWS_WITH(load(newer), Contains("newer wproj") && Contains(std::to_string(v)));
  // The other byte order.
  std::string swapped = good;
  const std::uint32_t other = 0x04030201u;
  std::memcpy(&swapped[12], &other, 4);
  CHECK_THROWS_WITH(load(swapped), Contains("byte order"));
  // Wrong kind, bad magic.
  CHECK_THROWS_WITH(load(good, "wproj.other"), Contains("holds a 'wproj.test'; expected a 'wproj.other'"));
  std::string magic = good;
  magic[3] = 'X';
  CHECK_THROWS_WITH(load(magic), Contains("bad magic"));
  // A section read under the wrong name.
  std::istringstream in(good);
  wproj::serial::Decoder dec(in, "wproj.test", "test");
  CHECK_THROWS_WITH(dec.section("data"), Contains("expected section 'data', found 'meta'"));
  // Unread bytes are reported by finish().
  std::istringstream in2(good);
  wproj::serial::Decoder dec2(in2, "wproj.test", "test");
  dec2.section("meta");
  CHECK_THROWS_WITH(dec2.finish(), Contains("unread bytes"));
  // A wrong scalar type.
  using Other = typename std::conditional<std::is_same<T, float>::value, double, float>::type;
  std::istringstream in3(good);
  Mat<Other> x, y;
  CHECK_THROWS_WITH(serialTestRead<Other>(in3, x, y), Contains("-byte scalars"));
}

TEST_CASE("serial: an implausible extent is refused before anything is allocated", "[core][serialization]") {
  std::ostringstream os;
  wproj::serial::writeContainer(
      os, "wproj.test",
      [](auto& enc) {
        enc.section("data", [](auto& s) {
          s.template pod<std::uint64_t>(std::uint64_t(1) << 30);  // rows
          s.template pod<std::uint64_t>(std::uint64_t(1) << 30);  // cols
          s.template pod<std::uint32_t>(8u);
          s.template pod<std::uint64_t>(1000);  // string length beyond the payload
        });
      },
      "test");
  std::istringstream in(os.str());
  wproj::serial::Decoder dec(in, "wproj.test", "test");
  dec.section("data");
  CHECK_THROWS_WITH(dec.matrix<double>("m"), Contains("implausible shape 1073741824x1073741824"));
  std::istringstream in2(os.str());
  wproj::serial::Decoder dec2(in2, "wproj.test", "test");
  dec2.section("data");
  dec2.pod<std::uint64_t>("r");
  dec2.pod<std::uint64_t>("c");
  dec2.pod<std::uint32_t>("s");
  CHECK_THROWS_WITH(dec2.string("s"), Contains("implausible length 1000"));
}

TEST_CASE("serial: PatchingWriter keeps a complete, checksummed file after every write", "[core][serialization]") {
  std::stringstream ss;
  wproj::serial::PatchingWriter w(ss, "wproj.test", "body", "test");
  auto readAll = [](const std::string& bytes, std::uint64_t expected) {
    std::istringstream in(bytes);
    wproj::serial::Decoder dec(in, "wproj.test", "test");
    CHECK(dec.section("body") == expected * 8);
    for (std::uint64_t i = 0; i < expected; ++i) CHECK(dec.pod<std::uint64_t>("v") == i * i);
    dec.finish();
  };
  readAll(ss.str(), 0);
  for (std::uint64_t i = 0; i < 5; ++i) {
    const std::uint64_t v = i * i;
    w.write(&v, 8);
    readAll(ss.str(), i + 1);
  }
  std::string bad = ss.str();
  bad[bad.size() - 2] ^= 1;
  CHECK_THROWS_WITH(readAll(bad, 5), Contains("checksum mismatch"));

  // A stream that cannot seek gets an unsealed file: it reads back, without a checksum.
  SerialTestSink sink;
  std::ostream os(&sink);
  wproj::serial::PatchingWriter u(os, "wproj.test", "body", "test");
  for (std::uint64_t i = 0; i < 3; ++i) {
    const std::uint64_t v = i * i;
    u.write(&v, 8);
  }
  std::istringstream in(sink.data);
  wproj::serial::Decoder dec(in, "wproj.test", "test");
  CHECK_FALSE(dec.sealed());
  dec.section("body");
  for (std::uint64_t i = 0; i < 3; ++i) CHECK(dec.pod<std::uint64_t>("v") == i * i);
}

TEST_CASE("AtomicFile: unique temporary, nothing under the final name before commit", "[core][atomic]") {
  const std::string path = "serial_atomic_test.bin";
  std::remove(path.c_str());
  {
    wproj::AtomicFile f(path);
    wproj::AtomicFileBuf buf(f);
    std::ostream os(&buf);
    os << "partial";
    buf.finish();
    std::ifstream probe(path);
    CHECK_FALSE(probe.good());  // not there before commit
  }  // discarded
  {
    std::ifstream probe(path);
    CHECK_FALSE(probe.good());
  }
  // Two writers of the same path at once do not share a temporary; the last commit wins.
  wproj::AtomicFile f1(path), f2(path);
  f1.write("first", 5);
  f2.write("second", 6);
  f1.commit();
  f2.commit();
  std::ifstream in(path, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(content == "second");
  std::remove(path.c_str());
  CHECK_THROWS_AS(wproj::AtomicFile("/nonexistent-folder/x.bin"), wproj::IoError);
}

TEST_CASE("serial: the checksum does not depend on how the payload is split, and sees every byte", "[core][serialization]") {
  std::string data(1000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = char((i * 131 + 7) % 251);
  const std::uint64_t whole = wproj::serial::checksum(data.data(), data.size());
  for (std::size_t step : {std::size_t(1), std::size_t(3), std::size_t(7), std::size_t(8), std::size_t(13), std::size_t(64)}) {
    wproj::serial::Checksum c;
    for (std::size_t i = 0; i < data.size(); i += step) c.update(data.data() + i, std::min(step, data.size() - i));
    CHECK(c.value() == whole);
    CHECK(c.length() == data.size());
  }
  // Any single flipped bit, and any length change (trailing zeros included), changes the value.
  for (std::size_t i = 0; i < data.size(); i += 37) {
    for (int bit : {0, 7}) {
      std::string d = data;
      d[i] = char(d[i] ^ (1 << bit));
      CHECK(wproj::serial::checksum(d.data(), d.size()) != whole);
    }
  }
  const std::string padded = data + std::string(3, '\0');
  CHECK(wproj::serial::checksum(padded.data(), padded.size()) != whole);
  CHECK(wproj::serial::checksum(data.data(), 0) != wproj::serial::checksum("\0", 1));
}
