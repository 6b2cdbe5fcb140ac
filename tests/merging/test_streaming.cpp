// Tests of the streaming form of the per-tensor mergers (begin / add / finish) and of the driver
// built on it: streaming equals batch bit for bit for every method, the number of fetches is
// the number of passes, and the memory held does not grow with the number of models.
#include "test_common.hpp"

#include <wproj/merging/baselines.hpp>
#include <wproj/merging/driver.hpp>
#include <wproj/merging/spectral.hpp>

#include <malloc.h>

#include <algorithm>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <vector>

using namespace wproj_test;
using Catch::Matchers::Contains;

namespace {

/// Calls f(merger) for every per-tensor merger that accepts `count` task vectors.
template <typename T, typename F>
void forEachMerger(Index count, F&& f) {
  f(wproj::TaskArithmeticMerging<T>(0.4));
  f(wproj::TiesMerging<T>().setDensity(0.3).setScale(0.8));
  f(wproj::TiesMerging<T>().setDensity(1.0));
  f(wproj::DareMerging<T>().setDropRate(0.4).setSeed(11).setScale(0.9));
  f(wproj::IsoCMerging<T>().setScale(1.3));
  f(wproj::IsoCtsMerging<T>().setScale(0.7));
  f(wproj::IsoCtsMerging<T>().setCommonFraction(0.5));
  f(wproj::TsvMerging<T>().setScale(1.1));
  if (count >= 2) f(wproj::ModelStockMerging<T>());
  if (count == 2) f(wproj::SlerpMerging<T>().setT(0.3));
}

/// Streams `taus` (a fresh copy per fetch, as a reader would) through `m.begin()` and checks the
/// result and the report against the batch `mergeDelta`, bit for bit.
template <typename Merger, typename T>
void checkStreamEqualsBatch(const Merger& m, const std::vector<Mat<T>>& taus, Index index) {
  INFO(m.describe() << ", " << taus.size() << " task vectors of " << taus[0].rows() << "x" << taus[0].cols());
  wproj::TensorReport rb, rs;
  rb.index = rs.index = index;
  const Mat<T> batch = m.mergeDelta(taus, &rb);
  auto acc = m.begin(taus[0].rows(), taus[0].cols(), Index(taus.size()), &rs);
  Index fetches = 0;
  for (Index pass = 0; pass < acc.passes(); ++pass) {
    for (Index i = 0; i < Index(taus.size()); ++i) {
      const Mat<T> copy = taus[std::size_t(i)];
      acc.add(pass, i, copy);
      ++fetches;
    }
  }
  const Mat<T> streamed = acc.finish();
  CHECK(fetches == m.passes() * Index(taus.size()));
  REQUIRE(streamed.rows() == batch.rows());
  REQUIRE(streamed.cols() == batch.cols());
  CHECK(streamed == batch);
  CHECK(streamed.allFinite());
  CHECK(rs.method == rb.method);
  CHECK(rs.warnings == rb.warnings);
  CHECK(rs.rank == rb.rank);
  CHECK(rs.taskNormMean == rb.taskNormMean);
  CHECK(rs.rows == taus[0].rows());
  CHECK(rs.cols == taus[0].cols());
}

/// Live heap bytes (arena and mmapped chunks), 0 where the allocator does not say.
std::size_t liveHeapBytes() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#else
  return 0;
#endif
}

/// The model-level merge of one tensor by `Merger` with `count` models; returns the largest live
/// heap (above what existed before) seen at every fetch and at the sink, the report and the
/// merged tensor; `fetches` counts the fine-tuned reads.
template <typename Merger, typename T>
std::size_t driverPeak(const Merger& m, const Mat<T>& base, const std::vector<Mat<T>>& thetas, wproj::MergeReport* rep,
                       Mat<T>* out, Index* fetches) {
  const std::size_t before = liveHeapBytes();
  std::size_t peak = 0;
  auto sample = [&] { peak = std::max(peak, liveHeapBytes() - std::min(before, liveHeapBytes())); };
  wproj::ModelMerger<Merger> driver(m);
  *fetches = 0;
  *rep = driver.merge(
      {"w"}, Index(thetas.size()),
      [&](const std::string&) {
        sample();
        return base;
      },
      [&](Index i, const std::string&) {
        sample();
        ++*fetches;
        return thetas[std::size_t(i)];
      },
      [&](const std::string&, const Mat<T>& t) {
        sample();
        *out = t;
      });
  return peak;
}

}  // namespace

TEMPLATE_TEST_CASE("streaming equals batch for every merger (tall, wide, square; T = 1, 2, 3, 8)", "[merging][streaming]",
                   float, double) {
  using T = TestType;
  const std::vector<std::pair<Index, Index>> shapes{{40, 12}, {12, 40}, {20, 20}, {30, 1}};
  for (const auto& [m, n] : shapes) {
    for (Index count : {1, 2, 3, 8}) {
      std::vector<Mat<T>> taus;
      const Mat<T> shared = gaussian<T>(m, n, 500);
      for (Index i = 0; i < count; ++i) taus.push_back(Mat<T>(gaussian<T>(m, n, 600 + std::uint64_t(i)) + shared));
      forEachMerger<T>(count, [&](const auto& merger) { checkStreamEqualsBatch(merger, taus, 5); });
    }
  }
}

TEMPLATE_TEST_CASE("streaming equals batch on zero task vectors (all zero, one zero)", "[merging][streaming]", float,
                   double) {
  using T = TestType;
  for (Index count : {1, 2, 4}) {
    const std::vector<Mat<T>> zeros(std::size_t(count), Mat<T>::Zero(9, 7));
    forEachMerger<T>(count, [&](const auto& merger) {
      checkStreamEqualsBatch(merger, zeros, 0);
      CHECK(merger.mergeDelta(zeros).isZero(0));
    });
    std::vector<Mat<T>> oneZero;
    for (Index i = 0; i < count; ++i) oneZero.push_back(i == 1 ? Mat<T>(Mat<T>::Zero(9, 7)) : gaussian<T>(9, 7, 70 + std::uint64_t(i)));
    forEachMerger<T>(count, [&](const auto& merger) { checkStreamEqualsBatch(merger, oneZero, 2); });
  }
}

TEMPLATE_TEST_CASE("TIES trimming by threshold equals the ordering by (|x| desc, index asc)", "[merging][ties][streaming]",
                   float, double) {
  using T = TestType;
  // Many equal magnitudes, so the tie-break decides.
  Mat<T> tau(13, 11);
  for (Index k = 0; k < tau.size(); ++k) tau.data()[k] = T(int((k * 7919) % 5) - 2);
  for (double density : {0.05, 0.2, 0.37, 0.5, 0.81, 1.0}) {
    wproj::TiesMerging<T> ties;
    ties.setDensity(density);
    const Index n = tau.size();
    const Index keep = std::min<Index>(n, Index(std::ceil(density * double(n) - 1e-9)));
    std::vector<Index> idx(static_cast<std::size_t>(n));
    std::iota(idx.begin(), idx.end(), Index(0));
    std::sort(idx.begin(), idx.end(), [&](Index a, Index b) {
      const T fa = std::abs(tau.data()[a]), fb = std::abs(tau.data()[b]);
      return fa > fb || (fa == fb && a < b);
    });
    Mat<T> want = Mat<T>::Zero(tau.rows(), tau.cols());
    for (Index k = 0; k < keep; ++k) want.data()[idx[std::size_t(k)]] = tau.data()[idx[std::size_t(k)]];
    INFO("density " << density);
    CHECK(ties.trim(tau) == want);
  }
}

TEMPLATE_TEST_CASE("Model Stock's one-pass cosine equals the pairwise mean", "[merging][modelstock][streaming]", float,
                   double) {
  using T = TestType;
  std::vector<Mat<T>> taus;
  for (int i = 0; i < 6; ++i) taus.push_back(Mat<T>(gaussian<T>(8, 5, 40 + std::uint64_t(i)) + gaussian<T>(8, 5, 39)));
  taus.push_back(Mat<T>::Zero(8, 5));
  double sum = 0;
  int pairs = 0;
  for (std::size_t i = 0; i < taus.size(); ++i)
    for (std::size_t j = i + 1; j < taus.size(); ++j, ++pairs) {
      const double ni = double(taus[i].norm()), nj = double(taus[j].norm());
      if (ni > 0 && nj > 0)
        sum += double(taus[i].template cast<double>().cwiseProduct(taus[j].template cast<double>()).sum()) / (ni * nj);
    }
  Index zeros = 0;
  const double c = wproj::ModelStockMerging<T>::meanCosine(taus, &zeros);
  CHECK(std::abs(c - sum / pairs) <= 1e-12);
  CHECK(zeros == 1);
}

TEMPLATE_TEST_CASE("streaming: misuse and bad task vectors are reported", "[merging][streaming][errors]", float, double) {
  using T = TestType;
  const wproj::TiesMerging<T> ties;
  CHECK_THROWS_AS(ties.begin(4, 3, 0), wproj::InvalidArgument);
  CHECK_THROWS_AS(ties.begin(0, 3, 2), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::SlerpMerging<T>().begin(4, 3, 3), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::ModelStockMerging<T>().begin(4, 3, 1), wproj::InvalidArgument);
  auto acc = ties.begin(4, 3, 2);
  CHECK_THROWS_WITH(acc.add(0, 0, gaussian<T>(3, 4, 1)), Contains("task vector 0 has shape 3x4; expected 4x3"));
  Mat<T> nan = gaussian<T>(4, 3, 1);
  nan(2, 1) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_WITH(ties.begin(4, 3, 2).add(0, 0, nan), Contains("non-finite"));
  // Out of order, or finished early: programmer misuse (WPROJ_ASSERT, a logic_error in tests).
  CHECK_THROWS_AS(ties.begin(4, 3, 2).add(0, 1, gaussian<T>(4, 3, 1)), std::logic_error);
  CHECK_THROWS_AS(ties.begin(4, 3, 2).add(1, 0, gaussian<T>(4, 3, 1)), std::logic_error);
  auto early = ties.begin(4, 3, 2);
  early.add(0, 0, gaussian<T>(4, 3, 1));
  CHECK_THROWS_AS(early.finish(), std::logic_error);
}

TEMPLATE_TEST_CASE("the driver streams: equals mergeDelta, fetches once per pass, memory independent of T",
                   "[merging][streaming][driver]", float, double) {
  using T = TestType;
  const Index m = 96, n = 64;
  const std::size_t tensor = std::size_t(m * n) * sizeof(T);
  const Mat<T> base = gaussian<T>(m, n, 1);
  auto models = [&](Index count) {
    std::vector<Mat<T>> thetas;
    for (Index i = 0; i < count; ++i) thetas.push_back(Mat<T>(base + T(0.1) * gaussian<T>(m, n, 200 + std::uint64_t(i))));
    return thetas;
  };
  const auto few = models(2), many = models(8);
  auto check = [&](const auto& merger) {
    INFO(merger.describe());
    wproj::MergeReport repFew, repMany;
    Mat<T> outFew, outMany;
    Index fetchFew = 0, fetchMany = 0;
    const std::size_t peakFew = driverPeak(merger, base, few, &repFew, &outFew, &fetchFew);
    const std::size_t peakMany = driverPeak(merger, base, many, &repMany, &outMany, &fetchMany);
    CHECK(fetchFew == 2 * merger.passes());
    CHECK(fetchMany == 8 * merger.passes());
    // The same tensor as the batch merger on the task vectors (bit for bit).
    std::vector<Mat<T>> taus;
    for (const auto& t : many) taus.push_back(Mat<T>(t - base));
    CHECK(outMany == Mat<T>(base + merger.mergeDelta(taus)));
    // Reported and measured memory do not grow with T.
    CHECK(repMany.peakResidentBytes == repFew.peakResidentBytes);
    CHECK(repMany.peakResidentBytes >= 3 * tensor);
    if (liveHeapBytes() > 0) CHECK(peakMany >= tensor);  // θ₀ at least: the measurement sees the buffers
    CHECK(peakMany <= peakFew + tensor / 2);
    CHECK(peakMany <= repMany.peakResidentBytes + tensor);
  };
  forEachMerger<T>(8, check);
  check(wproj::ModelStockMerging<T>());
  // The average action is a running mean.
  wproj::MergeRules avg;
  avg.add("w", wproj::TensorAction::Average);
  wproj::ModelMerger<wproj::IsoCMerging<T>> driver;
  driver.setRules(avg);
  Mat<T> out;
  const wproj::MergeReport rep = driver.merge(
      {"w"}, 8, [&](const std::string&) { return base; }, [&](Index i, const std::string&) { return many[std::size_t(i)]; },
      [&](const std::string&, const Mat<T>& t) { out = t; });
  Mat<T> sum = many[0] - base;
  for (std::size_t i = 1; i < many.size(); ++i) sum += many[i] - base;
  CHECK(out == Mat<T>(base + sum / T(8)));
  CHECK(rep.peakResidentBytes == 3 * tensor);
  CHECK(rep.tensors[0].method == "mean of task vectors");
}
