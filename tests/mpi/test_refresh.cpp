// Layer-sharded GaLore refreshes: every rank runs the distributed refresh AND a serial copy of the
// same projectors on the same gradients; after every step the distributed projectors must equal
// the serial ones exactly (bases, transitions, schedules), and hold the same bytes on every rank.
#include <catch2/catch.hpp>

#include <wproj/gradient/projector.hpp>
#include <wproj/gradient/randomized_basis.hpp>
#include <wproj/mpi.hpp>

#include <Eigen/Core>

#include <sstream>
#include <string>
#include <vector>

namespace {

template <typename T>
using RefreshMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <typename T>
using RefreshProjector = wproj::GradientProjector<wproj::RandomizedBasis<T>>;

/// Four layers of different shapes and schedules: a right-sided 24×16 with the adaptive gap, a
/// left-sided 12×30, a two-sided 20×20, and a 16×10 on a gap of 3 with offset 2 (not due on the
/// steps the others refresh).
template <typename T>
std::vector<RefreshProjector<T>> refreshLayers() {
  std::vector<RefreshProjector<T>> layers(4);
  for (auto& p : layers) p.basis().setWarmStart(true).setPowerIterations(1).setSeed(17);
  layers[0].setRank(4).setUpdateGap(2).setAdaptiveGap(true, 1, 0.0, 2).setMaxUpdateGap(4);
  layers[1].setRank(3).setUpdateGap(2);
  layers[2].setRank(5).setUpdateGap(2).setProjectionType(wproj::ProjectionType::Full);
  layers[3].setRank(2).setUpdateGap(3).setOffset(2);
  return layers;
}

template <typename T>
std::vector<RefreshMat<T>> refreshGradients(int step) {
  const wproj::Index shapes[4][2] = {{24, 16}, {12, 30}, {20, 20}, {16, 10}};
  std::vector<RefreshMat<T>> g;
  for (int i = 0; i < 4; ++i) {
    const wproj::Index m = shapes[i][0], n = shapes[i][1];
    // A slowly rotating low-rank signal plus noise: the bases change a little between refreshes.
    const RefreshMat<T> a = wproj::gaussianMatrix<RefreshMat<T>>(m, 6, 100 + std::uint64_t(i));
    const RefreshMat<T> b = wproj::gaussianMatrix<RefreshMat<T>>(6, n, 200 + std::uint64_t(i));
    g.push_back(a * b + T(0.3) * wproj::gaussianMatrix<RefreshMat<T>>(m, n, 1000 + std::uint64_t(10 * step + i)));
  }
  return g;
}

template <typename T>
std::string refreshSaved(const RefreshProjector<T>& p) {
  std::ostringstream os(std::ios::binary);
  p.save(os);
  return os.str();
}

}  // namespace

TEMPLATE_TEST_CASE("mpi::DistributedRefresh gives every rank the projectors of a serial run", "[mpi][refresh]", float,
                   double) {
  using T = TestType;
  const wproj::mpi::Communicator comm;
  auto dist = refreshLayers<T>();
  auto serial = refreshLayers<T>();
  wproj::mpi::DistributedRefresh<wproj::RandomizedBasis<T>> refresh(dist, comm);
  int sharedSteps = 0, skippedLayer = 0, replacedSteps = 0;
  for (int step = 0; step < 7; ++step) {
    const auto g = refreshGradients<T>(step);
    const std::vector<bool> got = refresh.beginStep(g);
    std::vector<bool> want(4);
    for (std::size_t i = 0; i < 4; ++i) want[i] = serial[i].beginStep(g[i]);
    CHECK(got == want);
    int refreshed = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      INFO("step " << step << ", layer " << i << ", owner " << refresh.owners()[i]);
      CHECK(dist[i].denseBasis() == serial[i].denseBasis());
      if (dist[i].twoSided()) CHECK(dist[i].denseRightBasis() == serial[i].denseRightBasis());
      if (want[i]) {
        CHECK(dist[i].transition() == serial[i].transition());
        if (dist[i].twoSided()) CHECK(dist[i].transitionRight() == serial[i].transitionRight());
      }
      CHECK(dist[i].step() == serial[i].step());
      CHECK(dist[i].nextRefresh() == serial[i].nextRefresh());
      CHECK(dist[i].updateGap() == serial[i].updateGap());
      CHECK(dist[i].stats().refreshes == serial[i].stats().refreshes);
      CHECK(dist[i].stats().gapIncreases == serial[i].stats().gapIncreases);
      CHECK(dist[i].stats().overlapSum == serial[i].stats().overlapSum);
      // Bit-identical on every rank: the whole checkpoint (statistics included) agrees.
      CHECK_NOTHROW(comm.requireSame(refreshSaved(dist[i]), "projector state"));
      if (refresh.owners()[i] >= 0) ++refreshed;
    }
    CHECK(comm.sum((long long)refresh.refreshedHere()) == refreshed);
    if (refreshed > 0) CHECK(refresh.bytesBroadcast() > 0);
    if (refreshed >= 3) ++sharedSteps;
    if (refreshed >= 2 && refresh.owners()[3] < 0) ++skippedLayer;
    for (std::size_t i = 0; i < 4; ++i)
      if (want[i]) ++replacedSteps;
    for (std::size_t i = 0; i < 4; ++i) {
      dist[i].endStep(g[i]);
      serial[i].endStep(g[i]);
    }
  }
  // The run covered: several layers refreshed at once, a refresh step on which one layer was not
  // due, and refreshes that replaced a previous basis (transitions compared).
  CHECK(sharedSteps >= 2);
  CHECK(skippedLayer >= 1);
  CHECK(replacedSteps >= 4);
  CHECK(dist[0].stats().gapIncreases >= 1);
}

TEST_CASE("mpi::DistributedRefresh: ranks holding different layers fail together", "[mpi][refresh]") {
  const wproj::mpi::Communicator comm;
  const int last = comm.size() - 1;
  {
    // A different number of layers on the last rank (with one rank: a gradient missing).
    auto layers = refreshLayers<float>();
    auto g = refreshGradients<float>(0);
    if (comm.size() > 1 && comm.rank() == last) {
      layers.pop_back();
      g.pop_back();
    } else if (comm.size() == 1) {
      g.pop_back();
    }
    wproj::mpi::DistributedRefresh<wproj::RandomizedBasis<float>> refresh(layers, comm);
    CHECK_THROWS_AS(refresh.beginStep(g), wproj::CollectiveError);
  }
  if (comm.size() > 1) {
    // The same number of layers, one of another shape on the last rank.
    auto layers = refreshLayers<float>();
    auto g = refreshGradients<float>(0);
    if (comm.rank() == last) g[1] = RefreshMat<float>::Ones(12, 31);
    wproj::mpi::DistributedRefresh<wproj::RandomizedBasis<float>> refresh(layers, comm);
    CHECK_THROWS_AS(refresh.beginStep(g), wproj::CollectiveError);
  }
}
