// GradientProjector: sides, projection identities, rank checks, refresh schedule, adaptive gap,
// failed refreshes.
#include "test_common.hpp"

#include <wproj/gradient.hpp>

#include <vector>

using namespace wproj;
using namespace wproj_test;

namespace {

/// An SVD basis whose refreshes can be made to fail on demand.
template <typename S>
struct FlakyBasis : SVDBasis<S> {
  static constexpr const char* kName = "FlakyBasis";
  static inline bool fail = false;
  template <typename D>
  RefreshResult refresh(const Eigen::MatrixBase<D>& g, Side side, Index rank, std::uint64_t k, Mat<S>* t) {
    if (fail) return RefreshResult{};
    return SVDBasis<S>::refresh(g, side, rank, k, t);
  }
};

/// The explicit oracle: P Pᵀ G (left), G P Pᵀ (right), A Aᵀ G B Bᵀ (full), from dense bases.
template <typename Proj, typename S>
Mat<double> oracle(const Proj& proj, const Mat<S>& g) {
  const Mat<double> gd = g.template cast<double>();
  const Mat<double> a = proj.denseBasis().template cast<double>();
  if (proj.twoSided()) {
    const Mat<double> b = proj.denseRightBasis().template cast<double>();
    return a * a.transpose() * gd * b * b.transpose();
  }
  return proj.side() == Side::Left ? Mat<double>(a * a.transpose() * gd) : Mat<double>(gd * a * a.transpose());
}

template <typename Basis>
void checkIdentity(Index m, Index n, Index r, ProjectionType type, const Basis& proto = Basis()) {
  using S = typename Basis::Scalar;
  GradientProjector<Basis> proj(proto);
  proj.setRank(r).setUpdateGap(10).setScale(S(1)).setProjectionType(type);
  const Mat<S> g = gaussian<S>(m, n, 7 + std::uint64_t(m * 31 + n));
  proj.beginStep(g);
  const Mat<S> low = proj.project(g);
  CHECK(low.rows() == proj.projectedRows());
  CHECK(low.cols() == proj.projectedCols());
  const Mat<double> back = proj.projectBack(low).template cast<double>();
  const Mat<double> expect = oracle(proj, g);
  INFO("type " << toString(type) << " shape " << m << "x" << n << " rank " << r);
  CHECK((back - expect).norm() <= 1e3 * eps<S>() * (1 + expect.norm()) * double(m + n));
}

}  // namespace

TEMPLATE_TEST_CASE("projector: back(project(G)) equals the explicit projection for every side", "[gradient][projector]", float,
                   double) {
  using S = TestType;
  for (auto type : {ProjectionType::Std, ProjectionType::ReverseStd, ProjectionType::Left, ProjectionType::Right, ProjectionType::Full,
                    ProjectionType::MinState}) {
    for (auto shape : {std::pair<Index, Index>{14, 9}, {9, 14}, {11, 11}}) {
      const Index m = shape.first, n = shape.second, mn = std::min(m, n);
      for (Index r : {Index(1), Index(4), mn}) {
        checkIdentity<SVDBasis<S>>(m, n, r, type);
        checkIdentity<GaussianBasis<S>>(m, n, r, type);
        checkIdentity<RowSelectionBasis<S>>(m, n, r, type);
      }
    }
  }
}

TEMPLATE_TEST_CASE("projector: sides are explicit state, square projected shapes included", "[gradient][projector]", float, double) {
  using S = TestType;
  const Mat<S> tall = gaussian<S>(12, 7, 1), wide = gaussian<S>(7, 12, 2);
  auto sideOf = [](ProjectionType t, const Mat<S>& g) {
    GradientProjector<SVDBasis<S>> p;
    p.setRank(3).setProjectionType(t);
    p.init(g.rows(), g.cols());
    return p.side();
  };
  CHECK(sideOf(ProjectionType::Std, tall) == Side::Right);
  CHECK(sideOf(ProjectionType::Std, wide) == Side::Left);
  CHECK(sideOf(ProjectionType::ReverseStd, tall) == Side::Left);
  CHECK(sideOf(ProjectionType::ReverseStd, wide) == Side::Right);
  CHECK(sideOf(ProjectionType::Left, tall) == Side::Left);
  CHECK(sideOf(ProjectionType::Right, wide) == Side::Right);
  CHECK(sideOf(ProjectionType::MinState, tall) == Side::Left);
  CHECK(sideOf(ProjectionType::MinState, wide) == Side::Right);
  CHECK(sideOf(ProjectionType::MinState, Mat<S>(gaussian<S>(7, 7, 3))) == Side::Right);
  // MinState really is the smaller state: moments (2 x projected size) plus a dense basis.
  for (const Mat<S>* g : {&tall, &wide}) {
    auto stateOf = [&](ProjectionType t) {
      ProjectedAdamW<SVDBasis<S>> opt;
      opt.projector().setRank(3).setProjectionType(t);
      Mat<S> w = Mat<S>::Zero(g->rows(), g->cols());
      opt.step(w, *g);
      return opt.stateBytes();
    };
    CHECK(stateOf(ProjectionType::MinState) < stateOf(ProjectionType::Std));
    CHECK(stateOf(ProjectionType::MinState) == std::size_t(3 * (2 * 7 + 12)) * sizeof(S));
  }

  // reverse_std on a 12x7 gradient at rank 7: the projected matrix is 7x7 (square). The
  // upstream code would guess the side from that shape; ours uses the stored side.
  GradientProjector<SVDBasis<S>> p;
  p.setRank(7).setScale(S(1)).setProjectionType(ProjectionType::ReverseStd);
  p.beginStep(tall);
  const Mat<S> low = p.project(tall);
  REQUIRE(low.rows() == 7);
  REQUIRE(low.cols() == 7);
  const Mat<S> back = p.projectBack(low);
  REQUIRE(back.rows() == 12);
  const Mat<S> pd = p.denseBasis();
  CHECK((back - pd * pd.transpose() * tall).norm() <= S(100) * S(eps<S>()) * tall.norm() * S(20));
}

TEMPLATE_TEST_CASE("projector: rank is checked against min(m, n) up front", "[gradient][projector]", float, double) {
  using S = TestType;
  GradientProjector<SVDBasis<S>> p;
  p.setRank(8);
  const Mat<S> g = gaussian<S>(10, 7, 3);
  CHECK_THROWS_AS(p.beginStep(g), InvalidArgument);
  try {
    p.init(10, 7);
  } catch (const InvalidArgument& e) {
    CHECK(std::string(e.what()).find("rank") != std::string::npos);
    CHECK(std::string(e.what()).find("min(m, n) = 7") != std::string::npos);
  }
  CHECK_THROWS_AS(p.setRank(0), InvalidArgument);
  CHECK_THROWS_AS(p.setUpdateGap(0), InvalidArgument);
  GradientProjector<SVDBasis<S>> q;
  q.setUpdateGap(5);
  CHECK_THROWS_AS(q.setOffset(5), InvalidArgument);
  // Shape changes after the first step are rejected.
  GradientProjector<SVDBasis<S>> u;
  u.setRank(2);
  u.beginStep(g);
  const Mat<S> other = gaussian<S>(9, 7, 4);
  CHECK_THROWS_AS(u.beginStep(other), InvalidArgument);
}

TEMPLATE_TEST_CASE("projector: row-major maps project like column-major matrices", "[gradient][projector]", float, double) {
  using S = TestType;
  const Mat<S> g = gaussian<S>(13, 8, 5);
  RowMajorMat<S> rm = g;
  Eigen::Map<const RowMajorMat<S>> map(rm.data(), rm.rows(), rm.cols());
  GradientProjector<SVDBasis<S>> a, b;
  a.setRank(3).setProjectionType(ProjectionType::Left);
  b.setRank(3).setProjectionType(ProjectionType::Left);
  a.beginStep(g);
  b.beginStep(map);
  CHECK((a.denseBasis() - b.denseBasis()).norm() <= S(1e3) * S(eps<S>()));
  const Mat<S> ra = a.project(g), rb = b.project(map);
  CHECK((ra - rb).norm() <= S(1e3) * S(eps<S>()) * ra.norm());
  // Expressions (a scaled gradient, a sum) project like the evaluated matrix, on both sides.
  const Mat<S> scaled = a.project(S(10) * g);
  CHECK((scaled - S(10) * ra).norm() <= S(1e3) * S(eps<S>()) * scaled.norm());
  const Mat<S> sum = a.project(g + g);
  CHECK((sum - S(2) * ra).norm() <= S(1e3) * S(eps<S>()) * sum.norm());
  GradientProjector<SVDBasis<S>> r;
  r.setRank(3).setProjectionType(ProjectionType::Right);
  r.beginStep(g);
  CHECK((r.project(S(0.5) * g) - S(0.5) * r.project(g)).norm() <= S(1e3) * S(eps<S>()) * r.project(g).norm());
}

TEST_CASE("projector: refresh schedule is 0, T, 2T, ... and offset o gives 0, o, o+T, ...", "[gradient][projector]") {
  auto refreshSteps = [](Index gap, Index offset, Index steps) {
    GradientProjector<GaussianBasis<double>> p;
    p.setRank(2).setUpdateGap(gap).setOffset(offset);
    std::vector<Index> at;
    for (Index s = 0; s < steps; ++s) {
      const Mat<double> g = gaussian<double>(6, 5, 100 + std::uint64_t(s));
      const Index before = p.stats().refreshes;
      p.beginStep(g);
      if (p.stats().refreshes > before) at.push_back(s);
      p.endStep(g);
    }
    return at;
  };
  CHECK(refreshSteps(3, 0, 10) == std::vector<Index>{0, 3, 6, 9});
  CHECK(refreshSteps(3, 2, 10) == std::vector<Index>{0, 2, 5, 8});
  CHECK(refreshSteps(4, 1, 10) == std::vector<Index>{0, 1, 5, 9});
  CHECK(refreshSteps(1, 0, 4) == std::vector<Index>{0, 1, 2, 3});
  // Staggered layers: with offsets 0..T-1 no two layers refresh together after step 0.
  const auto a = refreshSteps(4, 1, 20), b = refreshSteps(4, 2, 20);
  for (Index s : a)
    if (s > 0) CHECK(std::find(b.begin(), b.end(), s) == b.end());
}

TEST_CASE("projector: adaptive gap doubles after 5 similar bases and not for unrelated ones", "[gradient][projector]") {
  const Mat<double> fixed = withSpectrum<double>(20, 12, geometricSpectrum(12, 100), 9);
  GradientProjector<SVDBasis<double>> p;
  p.setRank(3).setUpdateGap(1).setAdaptiveGap(true);
  for (Index s = 0; s < 6; ++s) {
    p.beginStep(fixed);
    p.endStep(fixed);
  }
  // Refreshes at steps 0..5: overlaps at 1..5 are all 1 → queue full with mean 1 ≥ 0.4 → gap 2.
  CHECK(p.stats().refreshes == 6);
  CHECK(p.stats().gapIncreases == 1);
  CHECK(p.updateGap() == 2);
  CHECK(p.stats().lastOverlap == Approx(1.0).margin(1e-9));
  for (Index s = 6; s < 40; ++s) {
    p.beginStep(fixed);
    p.endStep(fixed);
  }
  CHECK(p.updateGap() >= 4);

  GradientProjector<SVDBasis<double>> q;
  q.setRank(2).setUpdateGap(1).setAdaptiveGap(true);
  for (Index s = 0; s < 30; ++s) {
    const Mat<double> g = gaussian<double>(40, 30, 500 + std::uint64_t(s));
    q.beginStep(g);
    q.endStep(g);
  }
  CHECK(q.stats().gapIncreases == 0);
  CHECK(q.stats().refreshes == 30);
  CHECK(q.stats().meanOverlap() < 0.4);
}

TEST_CASE("projector: adaptive gap uses Q-GaLore's sliding window (not cleared after an increase) and a cap",
          "[gradient][projector]") {
  const Mat<double> fixed = withSpectrum<double>(20, 12, geometricSpectrum(12, 100), 9);
  GradientProjector<SVDBasis<double>> p;
  p.setRank(3).setUpdateGap(1).setAdaptiveGap(true).setMaxUpdateGap(8).setRefreshSchedule(RefreshSchedule::FromLastRefresh);
  std::vector<Index> at, gaps;
  for (Index s = 0; s < 40; ++s) {
    const Index before = p.stats().refreshes;
    p.beginStep(fixed);
    if (p.stats().refreshes > before) {
      at.push_back(s);
      gaps.push_back(p.updateGap());
    }
    p.endStep(fixed);
  }
  // Refreshes 0..5 fill the window (overlap 1); from then on every refresh sees a full window
  // with mean 1 and doubles the gap again, until the cap: 2 after step 5, 4 after 7, 8 after 11
  // (FromLastRefresh: the next refresh is the refresh step + the new gap).
  CHECK(at == std::vector<Index>{0, 1, 2, 3, 4, 5, 7, 11, 19, 27, 35});
  CHECK(gaps == std::vector<Index>{1, 1, 1, 1, 1, 2, 4, 8, 8, 8, 8});
  CHECK(p.stats().gapIncreases == 3);
}

TEST_CASE("projector: a failed refresh keeps the previous basis and is counted", "[gradient][projector]") {
  using B = FlakyBasis<double>;
  const Mat<double> g0 = gaussian<double>(10, 6, 1), g1 = gaussian<double>(10, 6, 2);
  {
    B::fail = true;
    GradientProjector<B> p;
    p.setRank(2);
    CHECK_THROWS_AS(p.beginStep(g0), NumericalError);
    B::fail = false;
  }
  ProjectedAdamW<B> opt;
  opt.projector().setRank(2).setUpdateGap(2);
  Mat<double> w = gaussian<double>(10, 6, 3);
  opt.step(w, g0);
  const Mat<double> p0 = opt.projector().denseBasis();
  opt.step(w, g1);
  B::fail = true;
  opt.step(w, g1);  // step 2: scheduled refresh fails
  B::fail = false;
  CHECK(opt.projector().stats().failedRefreshes == 1);
  CHECK(opt.projector().stats().refreshes == 1);
  CHECK(opt.projector().denseBasis() == p0);
  CHECK(w.allFinite());
  opt.step(w, g1);
  opt.step(w, g1);  // step 4: refresh succeeds
  CHECK(opt.projector().stats().refreshes == 2);
  CHECK(opt.projector().denseBasis() != p0);
}

namespace {

/// Steps on which a projector with an SVD basis refreshes over `steps` steps of one fixed
/// gradient (every overlap is 1, so a full window always raises the gap), and the gap after each.
std::pair<std::vector<Index>, std::vector<Index>> adaptiveSchedule(RefreshSchedule rule, Index gap, Index queue, Index maxGap,
                                                                   Index steps) {
  const Mat<double> fixed = withSpectrum<double>(20, 12, geometricSpectrum(12, 100), 9);
  GradientProjector<SVDBasis<double>> p;
  p.setRank(3).setUpdateGap(gap).setAdaptiveGap(true, queue).setMaxUpdateGap(maxGap);
  p.setRefreshSchedule(rule);
  std::vector<Index> at, gaps;
  for (Index s = 0; s < steps; ++s) {
    const Index before = p.stats().refreshes;
    p.beginStep(fixed);
    if (p.stats().refreshes > before) {
      at.push_back(s);
      gaps.push_back(p.updateGap());
    }
    p.endStep(fixed);
  }
  return {at, gaps};
}

}  // namespace

TEST_CASE("projector: after an adaptive gap increase the next refresh is the next multiple of the new gap (Q-GaLore)",
          "[gradient][projector]") {
  CHECK(GradientProjector<SVDBasis<double>>().refreshSchedule() == RefreshSchedule::Multiples);
  // Q-GaLore refreshes when step % T == 0 for the current T. T = 3, window of 3:
  //   0 (first basis, no overlap), 3, 6 (window 2/3), 9 (window full, mean 1 → T = 6; next
  //   multiple of 6 after 9: 12), 12 (→ T = 12; next multiple of 12 after 12: 24), 24 (→ 24; 48),
  //   48 (→ 48; 96).
  const auto up = adaptiveSchedule(RefreshSchedule::Multiples, 3, 3, 1 << 20, 60);
  CHECK(up.first == std::vector<Index>{0, 3, 6, 9, 12, 24, 48});
  CHECK(up.second == std::vector<Index>{3, 3, 3, 6, 12, 24, 48});
  // wproj 0.1's rule: refresh step + new T: 9 → 15 → 27 → 51.
  const auto last = adaptiveSchedule(RefreshSchedule::FromLastRefresh, 3, 3, 1 << 20, 60);
  CHECK(last.first == std::vector<Index>{0, 3, 6, 9, 15, 27, 51});
  CHECK(last.second == std::vector<Index>{3, 3, 3, 6, 12, 24, 48});
  // T = 1, window 5, cap 8: 0..5 (→ 2 at 5; next even step 6), 6 (→ 4; 8), 8 (→ 8; 16), 16, 24, 32.
  const auto capped = adaptiveSchedule(RefreshSchedule::Multiples, 1, 5, 8, 40);
  CHECK(capped.first == std::vector<Index>{0, 1, 2, 3, 4, 5, 6, 8, 16, 24, 32});
  CHECK(capped.second == std::vector<Index>{1, 1, 1, 1, 1, 2, 4, 8, 8, 8, 8});
}

TEST_CASE("projector: with an offset the schedule keeps its phase o + kT after a gap increase", "[gradient][projector]") {
  const Mat<double> fixed = withSpectrum<double>(20, 12, geometricSpectrum(12, 100), 9);
  GradientProjector<SVDBasis<double>> p;
  p.setRank(3).setUpdateGap(4).setOffset(1).setAdaptiveGap(true, 1);
  std::vector<Index> at;
  for (Index s = 0; s < 40; ++s) {
    const Index before = p.stats().refreshes;
    p.beginStep(fixed);
    if (p.stats().refreshes > before) at.push_back(s);
    p.endStep(fixed);
  }
  // 0 (first basis), 1 (window of 1 full → T = 8; next 1 + 8k after 1: 9), 9 (→ 16; 17), 17 (→ 32; 33), 33.
  CHECK(at == std::vector<Index>{0, 1, 9, 17, 33});
}
