// The names before 0.2.0 stay usable (deprecated) and denote exactly the renamed types; code that
// uses one still runs the same method.
#include "test_common.hpp"

#include <wproj/wproj.hpp>

#include <type_traits>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static_assert(std::is_same<wproj::Dct<float>, wproj::DCT<float>>::value, "Dct");
static_assert(std::is_same<wproj::DctAlgorithm, wproj::DCTAlgorithm>::value, "DctAlgorithm");
static_assert(std::is_same<wproj::DctSelection<double>, wproj::DCTSelection<double>>::value, "DctSelection");
static_assert(std::is_same<wproj::SvdMethod, wproj::SVDMethod>::value, "SvdMethod");
static_assert(std::is_same<wproj::SvdBasis<float>, wproj::SVDBasis<float>>::value, "SvdBasis");
static_assert(std::is_same<wproj::DctBasis<float>, wproj::DCTBasis<float>>::value, "DctBasis");
static_assert(std::is_same<wproj::OnlinePcaBasis<double>, wproj::OnlinePCABasis<double>>::value, "OnlinePcaBasis");
static_assert(std::is_same<wproj::OnlinePcaRule, wproj::OnlinePCARule>::value, "OnlinePcaRule");
static_assert(std::is_same<wproj::SvmLoss, wproj::SVMLoss>::value, "SvmLoss");
static_assert(std::is_same<wproj::TaskArithmetic<float>, wproj::TaskArithmeticMerging<float>>::value, "TaskArithmetic");
static_assert(std::is_same<wproj::ModelStock<double>, wproj::ModelStockMerging<double>>::value, "ModelStock");
static_assert(std::is_same<wproj::ContinualMerger<float>, wproj::OpcmMerging<float>>::value, "ContinualMerger");

TEST_CASE("a pre-0.2.0 name runs the renamed method", "[names]") {
  wproj::DctAlgorithm old = wproj::DctAlgorithm::Auto;
  CHECK(old == wproj::DCTAlgorithm::Auto);
  CHECK(wproj::SvdMethod::Bdc == wproj::SVDMethod::Bdc);
}
#pragma GCC diagnostic pop
