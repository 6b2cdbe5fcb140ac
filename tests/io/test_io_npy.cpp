// .npy reading/writing and f16/bf16 conversion, against files and bit patterns made by NumPy/PyTorch.
#include "test_common.hpp"

#include <wproj/io.hpp>

#include <unistd.h>

#include <cstdio>
#include <string>

using namespace wproj_test;
namespace wio = wproj::io;

namespace {

std::string dataDir() {
  std::string f = __FILE__;
  return f.substr(0, f.find_last_of('/')) + "/data/";
}

std::string tempPath(const std::string& name) {
  return "/tmp/wproj_test_io_npy_" + std::to_string(::getpid()) + "_" + name;
}

// The 2x3 matrix the reference files hold: (i*3+j - 2.5)/4.
Mat<double> referenceMatrix() {
  Mat<double> a(2, 3);
  for (Index i = 0; i < 2; ++i)
    for (Index j = 0; j < 3; ++j) a(i, j) = (double(i * 3 + j) - 2.5) / 4;
  return a;
}

}  // namespace

TEST_CASE("npy: files written by NumPy read back exactly (C/Fortran order, versions 1-3, dtypes)", "[io][npy]") {
  const Mat<double> a = referenceMatrix();
  CHECK(wio::readNpy<double>(dataDir() + "c_f4_2x3.npy") == a);
  CHECK(wio::readNpy<double>(dataDir() + "fortran_f8_2x3.npy") == a);
  CHECK(wio::readNpy<double>(dataDir() + "v2_f4_2x3.npy") == a);
  CHECK(wio::readNpy<double>(dataDir() + "v3_f8_2x3.npy") == a);
  CHECK(wio::readNpyHeader(dataDir() + "v3_f8_2x3.npy").majorVersion == 3);
  CHECK(wio::readNpyHeader(dataDir() + "fortran_f8_2x3.npy").fortranOrder);

  const Mat<float> v = wio::readNpy<float>(dataDir() + "vec_f2_6.npy");
  REQUIRE(v.rows() == 6);
  REQUIRE(v.cols() == 1);
  for (Index k = 0; k < 6; ++k) CHECK(v(k) == float(a(k / 3, k % 3)));  // all exactly representable in f16

  const Mat<double> i4 = wio::readNpy<double>(dataDir() + "i4_2x3.npy");
  CHECK(i4(0, 0) == -3.0);
  CHECK(i4(1, 2) == 2.0);
  const Mat<float> u1 = wio::readNpy<float>(dataDir() + "u1_2x3.npy");
  CHECK(u1(1, 2) == 200.0f);
  const Mat<double> s = wio::readNpy<double>(dataDir() + "scalar_f8.npy");
  REQUIRE(s.size() == 1);
  CHECK(s(0, 0) == -0.625);
}

TEMPLATE_TEST_CASE("npy: write/read round trip (tall, wide, empty, row-major Map, vectors)", "[io][npy]", float, double) {
  using T = TestType;
  for (auto shape : {std::pair<Index, Index>{7, 3}, {3, 7}, {1, 1}, {0, 4}, {5, 0}}) {
    const Mat<T> a = gaussian<T>(shape.first, shape.second, 11);
    const std::string p = tempPath("rt" + std::to_string(sizeof(T)) + ".npy");
    wio::writeNpy(p, a);
    const Mat<T> b = wio::readNpy<T>(p);
    CHECK(b.rows() == a.rows());
    CHECK(b.cols() == a.cols());
    CHECK(b == a);
    std::remove(p.c_str());
  }
  // Row-major buffer through a Map, written as f64 and read as T.
  std::vector<T> buf(12);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = T(i) - T(5);
  Eigen::Map<const RowMajorMat<T>> m(buf.data(), 3, 4);
  const std::string p = tempPath("map" + std::to_string(sizeof(T)) + ".npy");
  wio::writeNpy(p, m, wio::DType::F64);
  const Mat<T> r = wio::readNpy<T>(p);
  CHECK(r == Mat<T>(m));
  CHECK(r(1, 0) == T(-1));
  // 1-D.
  const Vec<T> v = gaussian<T>(9, 1, 3);
  wio::writeNpyVector(p, v);
  CHECK(wio::readNpyHeader(p).shape.size() == 1);
  CHECK(wio::readNpy<T>(p) == Mat<T>(v));
  std::remove(p.c_str());
}

TEST_CASE("npy: writer rejects dtypes NumPy cannot hold and leaves no file", "[io][npy]") {
  const std::string p = tempPath("bad.npy");
  std::remove(p.c_str());
  CHECK_THROWS_AS(wio::writeNpy(p, Mat<float>::Ones(2, 2), wio::DType::BF16), wproj::InvalidArgument);
  FILE* f = std::fopen(p.c_str(), "rb");
  CHECK(f == nullptr);
  if (f) std::fclose(f);
  CHECK_THROWS_AS(wio::readNpy<float>("/nonexistent/x.npy"), wproj::IoError);
}

TEST_CASE("dtype: f16 and bf16 rounding equals NumPy/PyTorch bit for bit", "[io][dtype]") {
  const Mat<double> x = wio::readNpy<double>(dataDir() + "round_inputs_f8.npy");
  const Mat<double> h = wio::readNpy<double>(dataDir() + "round_f16_bits.npy");
  const Mat<double> b = wio::readNpy<double>(dataDir() + "round_bf16_bits.npy");
  REQUIRE(x.size() == h.size());
  REQUIRE(x.size() == b.size());
  Index mismatches = 0;
  for (Index i = 0; i < x.size(); ++i) {
    const auto hb = std::uint16_t(h(i)), bb = std::uint16_t(b(i));
    if (std::isnan(x(i))) {
      CHECK(std::isnan(wio::halfToDouble(wio::doubleToHalf(x(i)))));
      CHECK(std::isnan(wio::bf16ToDouble(wio::doubleToBf16(x(i)))));
      continue;
    }
    if (wio::doubleToHalf(x(i)) != hb || wio::doubleToBf16(x(i)) != bb) {
      ++mismatches;
      UNSCOPED_INFO("x = " << x(i) << " f16 " << wio::doubleToHalf(x(i)) << " vs " << hb << ", bf16 "
                           << wio::doubleToBf16(x(i)) << " vs " << bb);
    }
    // Decoding is exact: re-encoding a decoded value is the identity.
    CHECK(wio::doubleToHalf(wio::halfToDouble(hb)) == hb);
    CHECK(wio::doubleToBf16(wio::bf16ToDouble(bb)) == bb);
  }
  CHECK(mismatches == 0);
}

TEST_CASE("dtype: every f16 pattern decodes and re-encodes to itself; ties go to even", "[io][dtype]") {
  for (std::uint32_t bits = 0; bits < 65536; ++bits) {
    const double v = wio::halfToDouble(std::uint16_t(bits));
    if (std::isnan(v)) continue;
    REQUIRE(wio::doubleToHalf(v) == bits);
    REQUIRE(wio::doubleToBf16(wio::bf16ToDouble(std::uint16_t(bits))) == bits);
  }
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
  CHECK(wio::doubleToHalf(1.0 + std::ldexp(1.0, -11)) == 0x3C00);
  CHECK(wio::doubleToHalf(1.0 + 3 * std::ldexp(1.0, -11)) == 0x3C02);
  CHECK(wio::doubleToHalf(65520.0) == 0x7C00);  // rounds to +Inf
  CHECK(wio::doubleToHalf(-std::numeric_limits<double>::infinity()) == 0xFC00);
  CHECK(wio::doubleToBf16(1.0 + std::ldexp(1.0, -8)) == 0x3F80);
  // Double rounding through float would get this one wrong: just above a bf16 tie.
  const double justAbove = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  CHECK(wio::doubleToBf16(justAbove) == 0x3F81);
}

TEST_CASE("npy: NaN, infinities and out-of-range values are refused for integer dtypes, naming value and position", "[io][npy]") {
  const std::string p = tempPath("int_range.npy");
  Mat<double> m(2, 2);
  m << 1.9, -2.9, 255.5, 0.0;
  // In range: truncation toward zero, exactly as documented.
  wio::writeNpy(p, m, wio::DType::I16);
  const Mat<double> back = wio::readNpy<double>(p);
  CHECK(back(0, 0) == 1.0);
  CHECK(back(0, 1) == -2.0);
  CHECK(back(1, 0) == 255.0);
  CHECK_THROWS_WITH(wio::npyBytes(m, wio::DType::U8), Catch::Contains("(0, 1) = -2.8999") && Catch::Contains("U8"));
  m(0, 1) = -0.5;  // truncates to 0: allowed for unsigned types
  CHECK_NOTHROW(wio::npyBytes(m, wio::DType::U8));
  struct Case {
    double value;
    wio::DType dtype;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (const Case& c : {Case{nan, wio::DType::I32}, Case{inf, wio::DType::I64}, Case{-inf, wio::DType::I8},
                        Case{128.0, wio::DType::I8}, Case{-129.0, wio::DType::I8}, Case{256.0, wio::DType::U8},
                        Case{65536.0, wio::DType::U16}, Case{2147483648.0, wio::DType::I32},
                        Case{-2147483649.0, wio::DType::I32}, Case{4294967296.0, wio::DType::U32},
                        Case{9223372036854775808.0, wio::DType::I64}, Case{18446744073709551616.0, wio::DType::U64},
                        Case{-1.0, wio::DType::U64}, Case{nan, wio::DType::Bool}}) {
    Mat<double> x = Mat<double>::Zero(3, 2);
    x(2, 1) = c.value;
    INFO(c.value << " as " << wio::dtypeName(c.dtype));
    CHECK_THROWS_AS(wio::npyBytes(x, c.dtype), wproj::InvalidArgument);
    CHECK_THROWS_WITH(wio::writeNpy(p, x, c.dtype), Catch::Contains("(2, 1)") && Catch::Contains(wio::dtypeName(c.dtype)));
  }
  // The extremes of each range are stored exactly.
  Mat<double> edges(1, 2);
  edges << -9223372036854775808.0, 9223372036854774784.0;  // -2^63 and the largest double below 2^63
  wio::writeNpy(p, edges, wio::DType::I64);
  CHECK(wio::readNpy<double>(p) == edges);
  edges << 0.0, 18446744073709549568.0;  // the largest double below 2^64
  wio::writeNpy(p, edges, wio::DType::U64);
  CHECK(wio::readNpy<double>(p) == edges);
  edges << -128.0, 127.99;
  wio::writeNpy(p, edges, wio::DType::I8);
  CHECK(wio::readNpy<double>(p)(0, 1) == 127.0);
  std::remove(p.c_str());
}

// Found by fuzz_npy: a C-order array with no element but 10^13 rows walked 1.6·10^11 empty tiles
// (a hang). Without the fix this test runs into the ctest timeout.
TEST_CASE("npy: an empty array with a huge extent is read at once", "[io][npy]") {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (10000000100000, 0), }";
  std::string header = dict + std::string((64 - (10 + dict.size() + 1) % 64) % 64, ' ') + "\n";
  std::string file = std::string("\x93NUMPY\x01\x00", 8);
  file += char(header.size() & 0xFF);
  file += char(header.size() >> 8);
  file += header;
  const auto* p = reinterpret_cast<const unsigned char*>(file.data());
  const Mat<float> m = wio::readNpyBuffer<float>(p, file.size(), "empty");
  CHECK(m.rows() == 10000000100000);
  CHECK(m.cols() == 0);
  const Mat<double> w = wio::readNpyBuffer<double>(p, file.size(), "empty");
  CHECK(w.size() == 0);
}
