#include "test_common.hpp"

#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

using namespace wproj_test;

TEST_CASE("requireArg names the argument, the value and the expectation", "[config]") {
  try {
    wproj::requireArg(false, "RandomizedSVD::setRank", "rank", -3, ">= 1");
    FAIL("no exception");
  } catch (const wproj::InvalidArgument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("RandomizedSVD::setRank") != std::string::npos);
    CHECK(msg.find("'rank'") != std::string::npos);
    CHECK(msg.find("-3") != std::string::npos);
    CHECK(msg.find(">= 1") != std::string::npos);
  }
  CHECK_NOTHROW(wproj::requireArg(true, "f", "x", 1, "anything"));
}

TEMPLATE_TEST_CASE("checkFinite, checkShape and checkNonEmpty", "[config]", float, double) {
  Mat<TestType> a = Mat<TestType>::Ones(3, 4);
  CHECK_NOTHROW(wproj::checkFinite(a, "f", "a"));
  a(2, 1) = std::numeric_limits<TestType>::quiet_NaN();
  CHECK_THROWS_AS(wproj::checkFinite(a, "f", "a"), wproj::InvalidArgument);
  CHECK_THROWS_WITH(wproj::checkFinite(a, "f", "a"), Catch::Contains("(2, 1)"));
  a(2, 1) = std::numeric_limits<TestType>::infinity();
  CHECK_THROWS_AS(wproj::checkFinite(a, "f", "a"), wproj::Error);
  CHECK_THROWS_WITH(wproj::checkShape(a, 4, 3, "f", "a"), Catch::Contains("3x4") && Catch::Contains("4x3"));
  CHECK_NOTHROW(wproj::checkShape(a, 3, -1, "f", "a"));
  CHECK_THROWS_AS(wproj::checkNonEmpty(Mat<TestType>(0, 3), "f", "a"), wproj::InvalidArgument);
  // Argument errors are also std::invalid_argument (DESIGN.md, "Errors").
  CHECK_THROWS_AS(wproj::checkNonEmpty(Mat<TestType>(0, 3), "f", "a"), std::invalid_argument);
}

TEST_CASE("checkFinite accepts expressions, products included", "[config]") {
  const Eigen::MatrixXd a = Eigen::MatrixXd::Ones(3, 2), b = Eigen::MatrixXd::Ones(2, 4);
  CHECK_NOTHROW(wproj::checkFinite(a * b, "f", "a*b"));
  Eigen::MatrixXd c = b;
  c(1, 3) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(wproj::checkFinite(a * c, "f", "a*c"), Catch::Contains("(0, 3)"));
}

TEMPLATE_TEST_CASE("allFinite and checkFinite on row-major maps, vectors and expressions", "[config]", float, double) {
  using T = TestType;
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const T bad[2] = {std::numeric_limits<T>::quiet_NaN(), -std::numeric_limits<T>::infinity()};
  std::vector<T> buf(5 * 7, T(1));
  const Eigen::Map<const RowMat> rm(buf.data(), 5, 7);
  CHECK(wproj::allFinite(rm));
  CHECK(wproj::allFinite(rm.transpose()));
  for (const T v : bad)
    for (Eigen::Index i = 0; i < 5; ++i)
      for (Eigen::Index j = 0; j < 7; ++j) {
        buf[std::size_t(i * 7 + j)] = v;
        CHECK_FALSE(wproj::allFinite(rm));
        CHECK_FALSE(wproj::allFinite(rm.transpose()));
        CHECK_FALSE(wproj::allFinite(rm.row(i)));
        CHECK(wproj::allFinite(rm.row((i + 1) % 5)));
        CHECK_FALSE(wproj::allFinite(rm * Mat<T>::Ones(7, 2)));
        CHECK_THROWS_WITH(wproj::checkFinite(rm, "f", "a"),
                          Catch::Contains("(" + std::to_string(i) + ", " + std::to_string(j) + ")"));
        buf[std::size_t(i * 7 + j)] = T(1);
      }
  CHECK(wproj::allFinite(Mat<T>(0, 3)));
  CHECK(wproj::allFinite(RowMat(2, 0)));
}

namespace {
template <typename E>
std::string configTestCatchStd() {
  try {
    throw E("message of the error");
  } catch (const std::exception& e) {  // must match: one unambiguous std::exception base
    return e.what();
  } catch (...) {
    return "not caught as std::exception";
  }
}
template <typename E>
std::string configTestCatchWproj() {
  try {
    throw E("message of the error");
  } catch (const wproj::Error& e) {
    return e.what();
  } catch (...) {
    return "not caught as wproj::Error";
  }
}
}  // namespace

TEST_CASE("error tiers: each wproj error is one standard exception and a wproj::Error", "[config]") {
  static_assert(std::is_base_of<std::invalid_argument, wproj::InvalidArgument>::value, "InvalidArgument tier");
  static_assert(std::is_base_of<std::runtime_error, wproj::IoError>::value, "IoError tier");
  static_assert(std::is_base_of<std::runtime_error, wproj::NumericalError>::value, "NumericalError tier");
  static_assert(std::is_base_of<std::logic_error, wproj::StateError>::value, "StateError tier");
  static_assert(!std::is_base_of<std::runtime_error, wproj::InvalidArgument>::value, "one standard base only");
  static_assert(!std::is_base_of<std::invalid_argument, wproj::StateError>::value, "a state error is no argument error");
  CHECK(configTestCatchStd<wproj::InvalidArgument>() == "message of the error");
  CHECK(configTestCatchStd<wproj::IoError>() == "message of the error");
  CHECK(configTestCatchStd<wproj::NumericalError>() == "message of the error");
  CHECK(configTestCatchStd<wproj::StateError>() == "message of the error");
  CHECK(configTestCatchWproj<wproj::InvalidArgument>() == "message of the error");
  CHECK(configTestCatchWproj<wproj::IoError>() == "message of the error");
  CHECK(configTestCatchWproj<wproj::NumericalError>() == "message of the error");
  CHECK(configTestCatchWproj<wproj::StateError>() == "message of the error");
  // The library's own checks throw the tier they document.
  CHECK_THROWS_AS(wproj::requireArg(false, "f", "x", 1, "2"), std::invalid_argument);
  CHECK_THROWS_AS(wproj::requireArg(false, "f", "x", 1, "2"), wproj::Error);
  try {
    wproj::requireArg(false, "f", "x", 1, "2");
  } catch (const std::logic_error& e) {  // std::invalid_argument is a std::logic_error
    CHECK(std::string(e.what()).find("'x'") != std::string::npos);
  }
}
