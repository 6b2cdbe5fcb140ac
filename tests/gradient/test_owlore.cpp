#include "test_common.hpp"

#include <wproj/gradient/owlore.hpp>

#include <map>
#include <vector>

using namespace wproj_test;
using wproj::OwLoreSampler;

namespace {

/// Exact probability of drawing the unordered set `s` by successive sampling without
/// replacement (sum over its orderings of Π p_i / (1 − Σ earlier)).
double setProbability(std::vector<Index> s, const std::vector<double>& p) {
  std::sort(s.begin(), s.end());
  double total = 0.0;
  do {
    double pr = 1.0, used = 0.0;
    for (Index i : s) {
      pr *= p[std::size_t(i)] / (1.0 - used);
      used += p[std::size_t(i)];
    }
    total += pr;
  } while (std::next_permutation(s.begin(), s.end()));
  return total;
}

}  // namespace

TEMPLATE_TEST_CASE("outlierRatio matches a hand computation", "[owlore]", float, double) {
  using T = TestType;
  // W (2×3), ‖X‖ = (1, 2, 0.5): scores |W_ij|·‖X_j‖ =
  //   [1·1, 3·2, 2·0.5]   = [1, 6, 1]
  //   [0.5·1, 1·2, 8·0.5] = [0.5, 2, 4]    mean = 14.5 / 6 = 2.41667
  // M = 1.5: cut 3.625 → {6, 4} exceed: ratio 2/6. M = 2: cut 4.8333 → {6}: ratio 1/6.
  Mat<T> w(2, 3);
  w << 1, -3, 2, -0.5, 1, 8;
  Vec<T> x(3);
  x << 1, 2, 0.5;
  CHECK(wproj::outlierRatio(w, x, 1.5) == Approx(2.0 / 6.0));
  CHECK(wproj::outlierRatio(w, x, 2.0) == Approx(1.0 / 6.0));
  CHECK(wproj::outlierRatio(w, x, 10.0) == 0.0);
  // Row-major input, same answer.
  const RowMajorMat<T> wr = w;
  CHECK(wproj::outlierRatio(wr, x, 1.5) == Approx(2.0 / 6.0));
  // A layer of two matrices shares one mean: add a 1×2 matrix [12, 0] with ‖X‖ = (1, 1):
  // scores 1,6,1,0.5,2,4,12,0 (sum 26.5, mean 3.3125); M = 1.5 → cut 4.96875 → {6, 12}: 2/8.
  Mat<T> w2(1, 2);
  w2 << 12, 0;
  Vec<T> x2 = Vec<T>::Ones(2);
  CHECK(wproj::outlierRatio(std::vector<Mat<T>>{w, w2}, std::vector<Vec<T>>{x, x2}, 1.5) == Approx(2.0 / 8.0));
}

TEST_CASE("OwLoreSampler: one layer per period follows the probabilities (chi-square)", "[owlore]") {
  const std::vector<double> ratios = {0.27, 0.30, 0.13, 0.11, 0.05, 0.02};
  OwLoreSampler owl;
  owl.setOutlierRatios(ratios).setActiveLayers(1).setInterval(3).setSeed(2024);
  double sum = 0.0;
  for (double r : ratios) sum += r;
  const int periods = 20000;
  std::vector<int> counts(ratios.size(), 0);
  for (int t = 0; t < periods; ++t) {
    const auto a = owl.activeLayers(std::int64_t(t) * 3 + 1);
    REQUIRE(a.size() == 1);
    ++counts[std::size_t(a[0])];
  }
  double chi2 = 0.0;
  for (std::size_t l = 0; l < ratios.size(); ++l) {
    const double e = periods * ratios[l] / sum;
    chi2 += (counts[l] - e) * (counts[l] - e) / e;
  }
  CHECK(chi2 < 20.52);  // χ²(5) at p = 0.001
}

TEST_CASE("OwLoreSampler: γ layers without replacement follow successive sampling (chi-square)", "[owlore]") {
  const std::vector<double> ratios = {0.27, 0.30, 0.13, 0.11, 0.05, 0.14};
  OwLoreSampler owl;
  owl.setOutlierRatios(ratios).setActiveLayers(3).setInterval(1).setSeed(7);
  const auto& p = owl.probabilities();
  const int periods = 30000;
  std::map<std::vector<Index>, int> counts;
  for (int t = 0; t < periods; ++t) {
    auto a = owl.activeLayers(t);
    REQUIRE(a.size() == 3);
    std::sort(a.begin(), a.end());
    REQUIRE(std::adjacent_find(a.begin(), a.end()) == a.end());  // distinct
    ++counts[a];
  }
  double chi2 = 0.0, totalP = 0.0;
  int cells = 0;
  for (Index i = 0; i < 6; ++i)
    for (Index j = i + 1; j < 6; ++j)
      for (Index k = j + 1; k < 6; ++k) {
        const std::vector<Index> s = {i, j, k};
        const double e = periods * setProbability(s, p);
        totalP += e / periods;
        const double o = counts.count(s) ? counts[s] : 0;
        chi2 += (o - e) * (o - e) / e;
        ++cells;
      }
  CHECK(totalP == Approx(1.0).epsilon(1e-12));
  CHECK(cells == 20);
  CHECK(chi2 < 43.82);  // χ²(19) at p = 0.001
}

TEST_CASE("OwLoreSampler: draws are a function of the seed and the period", "[owlore]") {
  const std::vector<double> ratios = {1, 2, 3, 4, 5, 6, 7, 8};
  OwLoreSampler a, b, c;
  a.setOutlierRatios(ratios).setActiveLayers(3).setInterval(50).setSeed(11);
  b.setOutlierRatios(ratios).setActiveLayers(3).setInterval(50).setSeed(11);
  c.setOutlierRatios(ratios).setActiveLayers(3).setInterval(50).setSeed(12);
  int differs = 0;
  for (std::int64_t t = 0; t < 5000; t += 7) {
    CHECK(a.activeLayers(t) == b.activeLayers(t));
    CHECK(a.activeLayers(t) == a.activeLayers((t / 50) * 50));  // constant within a period
    differs += a.activeLayers(t) != c.activeLayers(t);
  }
  CHECK(differs > 300);
  CHECK(a.isResample(100));
  CHECK_FALSE(a.isResample(101));
  const auto act = a.activeLayers(120);
  for (Index l = 0; l < 8; ++l)
    CHECK(a.isActive(l, 120) == (std::find(act.begin(), act.end(), l) != act.end()));
  // A layer with ratio 0 is never drawn.
  OwLoreSampler z;
  z.setOutlierRatios({0.5, 0.0, 0.5}).setActiveLayers(2).setInterval(1).setSeed(3);
  for (int t = 0; t < 200; ++t) CHECK_FALSE(z.isActive(1, t));
}

TEST_CASE("OwLore: bad knobs name the argument", "[owlore]") {
  OwLoreSampler owl;
  CHECK_THROWS_WITH(owl.setActiveLayers(0), Catch::Contains("'gamma' = 0"));
  CHECK_THROWS_WITH(owl.setInterval(0), Catch::Contains("'k' = 0"));
  CHECK_THROWS_WITH(owl.setOutlierRatios({}), Catch::Contains("'ratios.size()'"));
  CHECK_THROWS_WITH(owl.setOutlierRatios({0.1, -0.2}), Catch::Contains("index 1"));
  CHECK_THROWS_WITH(owl.setOutlierRatios({0.0, 0.0}), Catch::Contains("'sum(ratios)'"));
  CHECK_THROWS_AS(owl.activeLayers(0), wproj::InvalidArgument);  // no ratios yet
  owl.setOutlierRatios({0.1, 0.0, 0.3}).setActiveLayers(3);
  CHECK_THROWS_WITH(owl.activeLayers(0), Catch::Contains("non-zero probability (2)"));
  owl.setActiveLayers(2);
  CHECK_THROWS_WITH(owl.activeLayers(-1), Catch::Contains("'step' = -1"));
  CHECK_THROWS_WITH(owl.isActive(3, 0), Catch::Contains("'layer' = 3"));
  Mat<double> w = Mat<double>::Ones(2, 3);
  Vec<double> x = Vec<double>::Ones(2);
  CHECK_THROWS_WITH(wproj::outlierRatio(w, x, 5.0), Catch::Contains("weights[i].cols() = 3"));
  x = Vec<double>::Ones(3);
  CHECK_THROWS_WITH(wproj::outlierRatio(w, x, 0.0), Catch::Contains("'threshold' = 0"));
  x(1) = -1;
  CHECK_THROWS_WITH(wproj::outlierRatio(w, x, 5.0), Catch::Contains("min(inputNorms[i])"));
}
