// Zero heap allocations per optimizer step after the first: this file replaces the global
// operator new/delete with counting versions and runs Eigen with EIGEN_RUNTIME_NO_MALLOC, whose
// "malloc not allowed" assertion is turned into a counter (Eigen allocates with malloc, not new).
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace alloc_count {
std::atomic<long> newCalls{0};
std::atomic<long> eigenMallocs{0};
}  // namespace alloc_count

#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x) \
  do { if (!(x)) ++alloc_count::eigenMallocs; } while (0)

#include "test_common.hpp"

#include <wproj/gradient.hpp>

void* operator new(std::size_t n) {
  ++alloc_count::newCalls;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  ++alloc_count::newCalls;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace wproj;
using namespace wproj_test;

namespace {

/// Runs N steps; returns the allocations counted during steps 2..N.
template <typename Opt, typename W, typename G>
long allocationsAfterFirstStep(Opt& opt, W& w, const G& g, int steps = 6) {
  opt.step(w, g);
  const long before = alloc_count::newCalls.load() + alloc_count::eigenMallocs.load();
  Eigen::internal::set_is_malloc_allowed(false);
  for (int s = 1; s < steps; ++s) opt.step(w, g);
  Eigen::internal::set_is_malloc_allowed(true);
  return alloc_count::newCalls.load() + alloc_count::eigenMallocs.load() - before;
}

template <typename Opt, typename Configure>
long countFor(Configure configure, Index m = 40, Index n = 24, int steps = 6) {
  using S = typename Opt::Scalar;
  Opt opt;
  configure(opt);
  Mat<S> w = gaussian<S>(m, n, 1);
  const Mat<S> g = gaussian<S>(m, n, 2);
  return allocationsAfterFirstStep(opt, w, g, steps);
}

}  // namespace

TEST_CASE("the counters see allocations", "[gradient][alloc]") {
  const long before = alloc_count::newCalls.load() + alloc_count::eigenMallocs.load();
  Eigen::internal::set_is_malloc_allowed(false);
  Mat<float> x(10, 10);
  // The pointer escapes through a volatile, so the optimiser cannot elide the new/delete pair.
  static std::vector<int>* volatile sink = nullptr;
  sink = new std::vector<int>(5);
  Eigen::internal::set_is_malloc_allowed(true);
  delete sink;
  CHECK(x.size() == 100);
  // One Eigen malloc for x; the vector object and its buffer through operator new.
  CHECK(alloc_count::eigenMallocs.load() >= 1);
  CHECK(alloc_count::newCalls.load() + alloc_count::eigenMallocs.load() - before >= 3);
}

TEST_CASE("projected optimizers allocate nothing per step after the first", "[gradient][alloc]") {
  const Index gap = 1000;  // no refresh during the measured steps
  CHECK(countFor<ProjectedAdamW<SVDBasis<float>>>([&](auto& o) { o.projector().setRank(6).setUpdateGap(gap); }) == 0);
  CHECK(countFor<ProjectedAdamW<SVDBasis<double>>>(
            [&](auto& o) { o.projector().setRank(6).setUpdateGap(gap).setProjectionType(ProjectionType::Left); }) == 0);
  CHECK(countFor<ProjectedAdamW<SVDBasis<float>>>(
            [&](auto& o) { o.projector().setRank(6).setUpdateGap(gap).setProjectionType(ProjectionType::Full); o.setWeightDecay(0.1); }) == 0);
  CHECK(countFor<ProjectedAdamW<RandomizedBasis<float>>>([&](auto& o) { o.projector().setRank(6).setUpdateGap(gap); }) == 0);
  CHECK(countFor<ProjectedAdamW<RandomizedBasis<double>>>(
            [&](auto& o) { o.projector().setRank(6).setUpdateGap(gap).setProjectionType(ProjectionType::Left); }) == 0);
  CHECK(countFor<ProjectedAdamW<DCTBasis<float>>>([&](auto& o) { o.projector().setRank(6).setUpdateGap(gap); }) == 0);
  CHECK(countFor<ProjectedAdamW<DCTBasis<float>>>([&](auto& o) {
          o.projector().setRank(6).setUpdateGap(gap).setProjectionType(ProjectionType::Left);
          o.setMomentPolicy(MomentPolicy::Rotate).setWeightDecay(0.01);
        }) == 0);
  CHECK(countFor<ProjectedAdamW<SVDBasis<float>>>(
            [&](auto& o) { o.projector().setRank(6).setUpdateGap(gap).setProjectionType(ProjectionType::MinState); }) == 0);
  CHECK(countFor<ProjectedAdamW<OnlinePCABasis<float>>>([&](auto& o) { o.projector().setRank(6).setUpdateGap(gap); }) == 0);
  CHECK(countFor<ProjectedAdamW<GaussianBasis<float>>>([&](auto& o) { o.projector().setRank(6).setUpdateGap(gap); }) == 0);
  CHECK(countFor<ProjectedAdamW<RowSelectionBasis<float>>>([&](auto& o) { o.projector().setRank(6).setUpdateGap(gap); }) == 0);
  CHECK(countFor<ProjectedAdamW<QuantizedBasis<SVDBasis<float>>>>([&](auto& o) { o.projector().setRank(6).setUpdateGap(gap); }) == 0);
  CHECK(countFor<ProjectedAdafactor<SVDBasis<float>>>([&](auto& o) {
          AdafactorOptions a;
          a.beta1 = 0.9;
          a.relativeStep = true;
          o.setOptions(a);
          o.projector().setRank(6).setUpdateGap(gap);
        }) == 0);
}

TEST_CASE("full-rank baselines and row-major maps allocate nothing per step", "[gradient][alloc]") {
  CHECK(countFor<AdamW<float>>([](auto& o) { o.setWeightDecay(0.01); }) == 0);
  CHECK(countFor<Adafactor<float>>([](auto&) {}) == 0);
  ProjectedAdamW<SVDBasis<float>> opt;
  opt.projector().setRank(5).setUpdateGap(1000);
  RowMajorMat<float> w = gaussian<float>(30, 50, 3), g = gaussian<float>(30, 50, 4);
  Eigen::Map<RowMajorMat<float>> wm(w.data(), 30, 50);
  Eigen::Map<const RowMajorMat<float>> gm(g.data(), 30, 50);
  CHECK(allocationsAfterFirstStep(opt, wm, gm) == 0);
}

// A realistic layer: Eigen's own GEMM packs its operands in blocks larger than its 128 KiB stack
// limit here (a plain `noalias()` product allocates them on every call), so this case checks the
// per-thread packing scratch of gemmInto. With WPROJ_USE_BLAS the products go to the BLAS gemm.
TEST_CASE("projected optimizers allocate nothing per step at 1024x512, r = 128", "[gradient][alloc]") {
  const Index gap = 1000, m = 1024, n = 512, r = 128;
  const int steps = 3;
  CHECK(countFor<ProjectedAdamW<SVDBasis<float>>>([&](auto& o) { o.projector().setRank(r).setUpdateGap(gap); }, m, n, steps) == 0);
  CHECK(countFor<ProjectedAdamW<SVDBasis<float>>>([&](auto& o) { o.projector().setRank(r).setUpdateGap(gap); }, n, m, steps) == 0);
  CHECK(countFor<ProjectedAdamW<SVDBasis<double>>>([&](auto& o) { o.projector().setRank(r).setUpdateGap(gap); }, m, n, steps) == 0);
  CHECK(countFor<ProjectedAdamW<RandomizedBasis<float>>>(
            [&](auto& o) { o.projector().setRank(r).setUpdateGap(gap).setProjectionType(ProjectionType::Full); }, m, n, steps) == 0);
  CHECK(countFor<ProjectedAdamW<OnlinePCABasis<float>>>([&](auto& o) { o.projector().setRank(r).setUpdateGap(gap); }, m, n, steps) == 0);
  CHECK(countFor<ProjectedAdamW<OnlinePCABasis<float>>>([&](auto& o) { o.projector().setRank(r).setUpdateGap(gap); }, n, m, steps) == 0);
  CHECK(countFor<ProjectedAdafactor<RandomizedBasis<float>>>([&](auto& o) { o.projector().setRank(r).setUpdateGap(gap); }, m, n, steps) ==
        0);
  ProjectedAdamW<RandomizedBasis<float>> opt;
  opt.projector().setRank(r).setUpdateGap(gap);
  RowMajorMat<float> w = gaussian<float>(m, n, 3), g = gaussian<float>(m, n, 4);
  Eigen::Map<RowMajorMat<float>> wm(w.data(), m, n);
  Eigen::Map<const RowMajorMat<float>> gm(g.data(), m, n);
  CHECK(allocationsAfterFirstStep(opt, wm, gm, steps) == 0);
}

TEMPLATE_TEST_CASE("gemmInto equals Eigen's product bit for bit, every storage order, assign and accumulate", "[gradient][alloc]",
                   float, double) {
  using S = TestType;
  const Index m = 300, k = 170, n = 90;  // packing blocks beyond Eigen's stack limit for the larger products
  const Mat<S> a = gaussian<S>(m, k, 1), b = gaussian<S>(k, n, 2), c0 = gaussian<S>(m, n, 3);
  const RowMajorMat<S> ar = a, br = b;
  const S alpha = S(-0.75);
  auto check = [&](const auto& lhs, const auto& rhs) {
    // Eigen's product of the same operands (the reference gemmInto must reproduce exactly).
    const Mat<S> assign = alpha * lhs * rhs;
    Mat<S> accumulate = c0;
    accumulate.noalias() += alpha * lhs * rhs;
    CHECK((assign - alpha * a * b).norm() <= 10 * eps<S>() * assign.norm());
    Mat<S> d(m, n);
    detail::gemmInto(lhs, rhs, alpha, false, d);
    CHECK(d == assign);
    Mat<S> e = c0;
    detail::gemmInto(lhs, rhs, alpha, true, e);
    CHECK(e == accumulate);
    RowMajorMat<S> dr(m, n);
    detail::gemmInto(lhs, rhs, alpha, false, dr);
    CHECK((dr - assign).norm() <= 10 * eps<S>() * assign.norm());
    RowMajorMat<S> er = c0;
    Eigen::Map<RowMajorMat<S>> erm(er.data(), m, n);
    detail::gemmInto(lhs, rhs, alpha, true, erm);
    CHECK((er - accumulate).norm() <= 10 * eps<S>() * accumulate.norm());
  };
  check(a, b);
  check(ar, b);
  check(a, br);
  check(ar, br);
  const Mat<S> at = a.transpose(), bt = b.transpose();
  check(at.transpose(), bt.transpose());
  // A block of a larger matrix (outer stride ≠ rows) as the destination.
  Mat<S> big = Mat<S>::Zero(m + 7, n + 3);
  detail::gemmInto(a, b, alpha, false, big.block(2, 1, m, n));
  CHECK(big.block(2, 1, m, n) == Mat<S>(alpha * a * b));
  CHECK(big.col(0).isZero());
  // Small and vector shapes use Eigen's own product.
  Mat<S> small(3, 4);
  detail::gemmInto(a.topLeftCorner(3, 5), b.topLeftCorner(5, 4), S(1), false, small);
  CHECK((small - a.topLeftCorner(3, 5) * b.topLeftCorner(5, 4)).norm() <= 10 * eps<S>() * small.norm());
}
