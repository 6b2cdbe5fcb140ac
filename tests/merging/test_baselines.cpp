// Tests of the classic mergers (task arithmetic, TIES, DARE, SLERP, Model Stock) and of the
// model-level driver (rules, report, streaming callbacks, errors).
#include "test_common.hpp"

#include <wproj/merging/baselines.hpp>
#include <wproj/merging/driver.hpp>

#include <map>
#include <string>
#include <vector>

using namespace wproj_test;
using Catch::Matchers::Contains;

namespace {
template <typename T>
Mat<T> col(std::initializer_list<double> v) {
  Mat<T> m(Index(v.size()), 1);
  Index i = 0;
  for (double x : v) m(i++, 0) = T(x);
  return m;
}
}  // namespace

TEMPLATE_TEST_CASE("task arithmetic is lambda times the sum", "[merging][baselines]", float, double) {
  using T = TestType;
  std::vector<Mat<T>> taus{gaussian<T>(7, 5, 1), gaussian<T>(7, 5, 2), gaussian<T>(7, 5, 3)};
  wproj::TaskArithmeticMerging<T> ta(0.3);
  wproj::TensorReport rep;
  const Mat<T> d = ta.mergeDelta(taus, &rep);
  const Mat<T> expect = T(0.3) * (taus[0] + taus[1] + taus[2]);
  CHECK((d - expect).norm() <= 1e-5 * expect.norm());
  CHECK(rep.rows == 7);
  CHECK(rep.cols == 5);
  CHECK_THAT(rep.method, Contains("lambda=0.3"));
}

TEMPLATE_TEST_CASE("TIES trims, elects signs and takes the disjoint mean (hand-checked)", "[merging][ties]", float, double) {
  using T = TestType;
  wproj::TiesMerging<T> ties;
  ties.setDensity(0.5);
  // Trimming keeps the 2 largest |entries|; ties broken by position.
  CHECK(ties.trim(col<T>({3, -1, 2, 0.5})) == col<T>({3, 0, 2, 0}));
  CHECK(ties.trim(col<T>({1, -1, 1, 0.5})) == col<T>({1, -1, 0, 0}));
  CHECK(ties.trim(col<T>({-2, 4, 1, 0.1})) == col<T>({-2, 4, 0, 0}));
  // Trimmed: [3,0,2,0], [-2,4,0,0], [-4,-3,0,0]; sums [-3,1,2,0] -> signs [-,+,+,majority(+)].
  std::vector<Mat<T>> taus{col<T>({3, -1, 2, 0.5}), col<T>({-2, 4, 1, 0.1}), col<T>({-4, -3, 0.5, 0.2})};
  const Mat<T> d = ties.mergeDelta(taus);
  CHECK(d == col<T>({-3, 4, 2, 0}));
  std::vector<Mat<T>> trimmed;
  for (const auto& t : taus) trimmed.push_back(ties.trim(t));
  CHECK(wproj::TiesMerging<T>::electSigns(trimmed) == col<T>({-1, 1, 1, 1}));
  // Majority sign negative: a zero-sum entry takes '-'.
  std::vector<Mat<T>> neg{col<T>({-1, -1, 1}), col<T>({-1, -1, -1})};
  CHECK(wproj::TiesMerging<T>::electSigns(neg) == col<T>({-1, -1, -1}));
  // Density 1 and one task: the task vector itself; lambda scales.
  wproj::TiesMerging<T> full;
  full.setDensity(1.0).setScale(2.0);
  const Mat<T> g = gaussian<T>(6, 4, 9);
  CHECK((full.mergeDelta({g}) - T(2) * g).norm() <= 1e-6 * g.norm());
  CHECK_THROWS_AS(ties.setDensity(0.0), wproj::InvalidArgument);
  CHECK_THROWS_AS(ties.setDensity(1.5), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("DARE masks are seeded, Bernoulli(1-p) and rescaled (unbiased)", "[merging][dare]", float, double) {
  using T = TestType;
  const Mat<T> tau = gaussian<T>(30, 40, 5);
  wproj::DareMerging<T> dare;
  dare.setDropRate(0.7).setSeed(123);
  // Same seed, same mask; entries are 0 or tau/(1-p).
  const Mat<T> a = dare.dropAndRescale(tau, 3, 1), b = dare.dropAndRescale(tau, 3, 1);
  CHECK(a == b);
  Index kept = 0;
  for (Index k = 0; k < tau.size(); ++k) {
    if (a.data()[k] != T(0)) {
      ++kept;
      CHECK(std::abs(double(a.data()[k]) - double(tau.data()[k]) / 0.3) <= 1e-5 * (1 + std::abs(double(tau.data()[k]))));
    }
  }
  // 1200 entries, keep probability 0.3: mean 360, sd ~ 16.
  CHECK(kept > 290);
  CHECK(kept < 430);
  // A different tensor index, task or seed gives a different mask.
  CHECK(dare.dropAndRescale(tau, 4, 1) != a);
  CHECK(dare.dropAndRescale(tau, 3, 2) != a);
  wproj::DareMerging<T> other;
  other.setDropRate(0.7).setSeed(124);
  CHECK(other.dropAndRescale(tau, 3, 1) != a);
  // Unbiased: the mean over 400 masks approaches tau (relative sd per entry sqrt(p/(1-p)/400) ~ 0.076).
  Mat<double> mean = Mat<double>::Zero(tau.rows(), tau.cols());
  for (Index i = 0; i < 400; ++i) mean += dare.dropAndRescale(tau, i, 0).template cast<double>();
  mean /= 400.0;
  const double rel = (mean - tau.template cast<double>()).norm() / tau.template cast<double>().norm();
  CHECK(rel < 0.12);
  CHECK(rel > 0.02);  // it is a random mask, not the identity
  // mergeDelta: lambda * sum of masked task vectors, tensor index from the report.
  wproj::TensorReport rep;
  rep.index = 7;
  const Mat<T> d = dare.setScale(0.5).mergeDelta({tau, tau}, &rep);
  const Mat<T> expect = T(0.5) * (dare.dropAndRescale(tau, 7, 0) + dare.dropAndRescale(tau, 7, 1));
  CHECK((d - expect).norm() <= 1e-6 * expect.norm());
  CHECK_THROWS_AS(dare.setDropRate(1.0), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("SLERP interpolates on the sphere and falls back to lerp", "[merging][slerp]", float, double) {
  using T = TestType;
  Mat<T> a = Mat<T>::Zero(2, 2), b = Mat<T>::Zero(2, 2);
  a(0, 0) = 1;
  b(1, 1) = 1;
  bool lerp = true;
  const Mat<T> mid = wproj::slerp(a, b, 0.5, 0.9995, &lerp);
  CHECK_FALSE(lerp);
  CHECK(std::abs(double(mid(0, 0)) - std::sqrt(0.5)) < 1e-6);
  CHECK(std::abs(double(mid(1, 1)) - std::sqrt(0.5)) < 1e-6);
  CHECK(std::abs(double(mid.norm()) - 1.0) < 1e-6);  // stays on the unit sphere
  // t = 0.25 between orthogonal unit vectors: (cos(pi/8), sin(pi/8)).
  const Mat<T> q = wproj::slerp(a, b, 0.25);
  CHECK(std::abs(double(q(0, 0)) - std::cos(M_PI / 8)) < 1e-6);
  CHECK(std::abs(double(q(1, 1)) - std::sin(M_PI / 8)) < 1e-6);
  // Collinear: lerp fallback.
  const Mat<T> twice = T(2) * a;
  const Mat<T> l = wproj::slerp(a, twice, 0.5, 0.9995, &lerp);
  CHECK(lerp);
  CHECK((l - T(1.5) * a).norm() < 1e-6);
  // Nearly collinear (cos ~ 0.99995 > 0.9995) also lerps, and a zero input lerps without NaN.
  Mat<T> near = a;
  near(0, 1) = T(0.01);
  CHECK(((wproj::slerp(a, near, 0.3, 0.9995, &lerp) - (T(0.7) * a + T(0.3) * near)).norm() < 1e-6));
  CHECK(lerp);
  const Mat<T> z = wproj::slerp(Mat<T>(Mat<T>::Zero(2, 2)), b, 0.5, 0.9995, &lerp);
  CHECK(lerp);
  CHECK(z.allFinite());
  // The merger: exactly two task vectors, warning on fallback.
  wproj::SlerpMerging<T> s;
  wproj::TensorReport rep;
  s.mergeDelta({a, twice}, &rep);
  CHECK(rep.warnings.size() == 1);
  CHECK_THROWS_AS(s.mergeDelta({a, b, a}), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::slerp(a, Mat<T>(Mat<T>::Zero(3, 2)), 0.5), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("Model Stock ratio t = N cos / (1 + (N-1) cos)", "[merging][modelstock]", float, double) {
  using T = TestType;
  // Two unit vectors at 60 degrees: cos = 0.5, t = 2*0.5/1.5 = 2/3.
  const Mat<T> a = col<T>({1, 0}), b = col<T>({0.5, std::sqrt(3.0) / 2});
  wproj::ModelStockMerging<T> ms;
  wproj::TensorReport rep;
  const Mat<T> d = ms.mergeDelta({a, b}, &rep);
  CHECK((d - T(2.0 / 3.0) * (a + b) / T(2)).norm() < 1e-6);
  // Three random task vectors against the explicit formula.
  std::vector<Mat<T>> taus{gaussian<T>(5, 4, 1), gaussian<T>(5, 4, 2), gaussian<T>(5, 4, 3)};
  for (auto& t : taus) t += gaussian<T>(5, 4, 99);  // shared component: positive cosines
  double c = 0;
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j)
      c += double(taus[i].template cast<double>().cwiseProduct(taus[j].template cast<double>()).sum()) /
           (double(taus[i].norm()) * double(taus[j].norm()));
  c /= 3;
  REQUIRE(c > 0);
  const double t = 3 * c / (1 + 2 * c);
  CHECK(std::abs(wproj::ModelStockMerging<T>::ratio(3, c) - t) < 1e-12);
  const Mat<T> expect = T(t / 3) * (taus[0] + taus[1] + taus[2]);
  CHECK((ms.mergeDelta(taus) - expect).norm() <= 1e-5 * expect.norm());
  // Negative cosine clamps to t = 0 with a warning; zero vectors count as cos 0 with a warning.
  wproj::TensorReport neg;
  CHECK(ms.mergeDelta({a, Mat<T>(-a)}, &neg).norm() == 0);
  CHECK(neg.warnings.size() == 1);
  CHECK_THROWS_AS(ms.mergeDelta({a}), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("zero task vectors give finite (zero) deltas; mismatched shapes are named", "[merging][errors]", float,
                   double) {
  using T = TestType;
  const std::vector<Mat<T>> zeros{Mat<T>::Zero(4, 3), Mat<T>::Zero(4, 3)};
  CHECK(wproj::TaskArithmeticMerging<T>().mergeDelta(zeros).isZero(0));
  CHECK(wproj::TiesMerging<T>().mergeDelta(zeros).isZero(0));
  CHECK(wproj::DareMerging<T>().mergeDelta(zeros).isZero(0));
  wproj::TensorReport rep;
  CHECK(wproj::ModelStockMerging<T>().mergeDelta(zeros, &rep).isZero(0));
  CHECK_FALSE(rep.warnings.empty());
  CHECK(wproj::SlerpMerging<T>().mergeDelta(zeros).isZero(0));
  const std::vector<Mat<T>> bad{gaussian<T>(3, 4, 1), gaussian<T>(4, 3, 2)};
  CHECK_THROWS_WITH(wproj::TiesMerging<T>().mergeDelta(bad), Contains("task vector 1 has shape 4x3; expected 3x4"));
  CHECK_THROWS_AS(wproj::TaskArithmeticMerging<T>().mergeDelta(bad), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::TaskArithmeticMerging<T>().mergeDelta({}), wproj::InvalidArgument);
  Mat<T> nan = gaussian<T>(3, 4, 1);
  nan(1, 1) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_AS(wproj::TaskArithmeticMerging<T>().mergeDelta({nan}), wproj::InvalidArgument);
  // Row-major maps over foreign buffers work as inputs of taskVector.
  std::vector<T> buf0(12), buf1(12);
  for (int i = 0; i < 12; ++i) {
    buf0[i] = T(i);
    buf1[i] = T(2 * i + 1);
  }
  Eigen::Map<const RowMajorMat<T>> m0(buf0.data(), 3, 4), m1(buf1.data(), 3, 4);
  const Mat<T> tv = wproj::taskVector(m1, m0, "x");
  CHECK(tv(1, 2) == T(7));  // entry 6: 13 - 6
  Eigen::Map<const RowMajorMat<T>> wrong(buf0.data(), 4, 3);
  CHECK_THROWS_WITH(wproj::taskVector(wrong, m0, "layer.weight"), Contains("layer.weight"));
}

TEMPLATE_TEST_CASE("the driver streams tensors, applies rules and reports every tensor", "[merging][driver]", float, double) {
  using T = TestType;
  // A three-model "checkpoint" held in maps; the callbacks count how often each tensor is read.
  const std::vector<std::string> names{"layer0.weight", "layer0.bias", "embed.weight", "layer1.weight"};
  std::map<std::string, Mat<T>> base{{"layer0.weight", gaussian<T>(6, 5, 1)},
                                     {"layer0.bias", gaussian<T>(6, 1, 2)},
                                     {"embed.weight", gaussian<T>(10, 5, 3)},
                                     {"layer1.weight", gaussian<T>(4, 6, 4)}};
  std::vector<std::map<std::string, Mat<T>>> models(3);
  for (int i = 0; i < 3; ++i)
    for (const auto& [n, w] : base) models[i][n] = w + gaussian<T>(w.rows(), w.cols(), 100 + 10 * i + n.size());
  std::map<std::string, int> reads;
  std::map<std::string, Mat<T>> out;
  auto fetchBase = [&](const std::string& n) { return base.at(n); };
  auto fetchModel = [&](Index i, const std::string& n) {
    ++reads[n];
    return models[std::size_t(i)].at(n);
  };
  auto sink = [&](const std::string& n, const Mat<T>& w) { out[n] = w; };

  wproj::MergeRules rules;
  rules.add("^embed\\.", wproj::TensorAction::Skip).add("bias$", wproj::TensorAction::Average);
  wproj::ModelMerger<wproj::TaskArithmeticMerging<T>> driver(wproj::TaskArithmeticMerging<T>(0.5));
  driver.setRules(rules);
  const wproj::MergeReport rep = driver.merge(names, 3, fetchBase, fetchModel, sink);

  REQUIRE(rep.tensors.size() == names.size());
  CHECK(rep.find("embed.weight")->action == wproj::TensorAction::Skip);
  CHECK_THAT(rep.find("embed.weight")->rule, Contains("^embed"));
  CHECK(reads.count("embed.weight") == 0);  // skipped tensors are never fetched
  CHECK(out.at("embed.weight") == base.at("embed.weight"));
  CHECK(rep.find("layer0.bias")->action == wproj::TensorAction::Average);
  const Mat<T> meanBias = (models[0].at("layer0.bias") + models[1].at("layer0.bias") + models[2].at("layer0.bias")) / T(3);
  CHECK((out.at("layer0.bias") - meanBias).norm() <= 1e-5 * meanBias.norm());
  for (const char* n : {"layer0.weight", "layer1.weight"}) {
    CHECK(rep.find(n)->action == wproj::TensorAction::Project);
    CHECK(rep.find(n)->rule == "default: 2-D weight");
    Mat<T> expect = base.at(n);
    for (int i = 0; i < 3; ++i) expect += T(0.5) * (models[i].at(n) - base.at(n));
    CHECK((out.at(n) - expect).norm() <= 1e-5 * expect.norm());
    CHECK(reads.at(n) == 3);
  }
  CHECK(rep.peakResidentBytes == 3 * 6 * 5 * sizeof(T));  // theta0, the incoming task vector and the running sum
  // A predicate rule and the default for a non-elementwise-free method on vectors.
  wproj::MergeRules pred;
  pred.add("small tensors", [](const std::string&, Index r, Index c) { return r * c < 8; }, wproj::TensorAction::Skip);
  CHECK(pred.decide("x", 2, 3, true).action == wproj::TensorAction::Skip);
  CHECK(pred.decide("x", 8, 1, false).action == wproj::TensorAction::Average);
  CHECK(pred.decide("x", 8, 1, true).action == wproj::TensorAction::Project);
  CHECK_THROWS_AS(wproj::MergeRules().add("([", wproj::TensorAction::Skip), wproj::InvalidArgument);

  // A model whose tensor has another shape: a clear error naming tensor and model.
  models[1]["layer1.weight"] = gaussian<T>(4, 7, 5);
  CHECK_THROWS_WITH(driver.merge(names, 3, fetchBase, fetchModel, sink),
                    Contains("tensor 'layer1.weight' of model 1 has shape 4x7; expected 4x6"));
  CHECK_THROWS_AS(driver.merge({"layer0.weight", "layer0.weight"}, 3, fetchBase, fetchModel, sink), wproj::InvalidArgument);
}
