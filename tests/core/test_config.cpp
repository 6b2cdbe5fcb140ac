#include "test_common.hpp"

#include <string>

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
  // Every wproj exception is catchable as std::runtime_error.
  CHECK_THROWS_AS(wproj::checkNonEmpty(Mat<TestType>(0, 3), "f", "a"), std::runtime_error);
}

TEST_CASE("checkFinite accepts expressions, products included", "[config]") {
  const Eigen::MatrixXd a = Eigen::MatrixXd::Ones(3, 2), b = Eigen::MatrixXd::Ones(2, 4);
  CHECK_NOTHROW(wproj::checkFinite(a * b, "f", "a*b"));
  Eigen::MatrixXd c = b;
  c(1, 3) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(wproj::checkFinite(a * c, "f", "a*c"), Catch::Contains("(0, 3)"));
}
