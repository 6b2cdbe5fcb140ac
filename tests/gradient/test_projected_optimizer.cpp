// ProjectedOptimizer<Basis, Rule>: the shared step (non-finite updates, lr ratio of a tracking
// basis) against a bare GradientProjector driven by hand; compile-time protocol checks;
// checkpoints written before the optimizers shared one base; precondition errors.
#include "test_common.hpp"

#include <wproj/gradient.hpp>

#include "checkpoints_v2.hpp"

#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

using namespace wproj;
using namespace wproj_test;

namespace {

/// Plain SGD in the projected space (N = R, W += −lr·α·back(R)), whose update can be made
/// non-finite on demand: a minimal rule for testing what the base does around any rule.
struct SgdOptions {
  double learningRate = 0.01;
  double weightDecay = 0.0;
  NonFinitePolicy nonFinite = NonFinitePolicy::Throw;
  void validate(const char* where) const { requireArg(learningRate >= 0, where, "learningRate", learningRate, ">= 0"); }
  void save(std::ostream& os) const { ckpt::writePod<double>(os, learningRate); }
  void load(std::istream& is) { learningRate = ckpt::readPod<double>(is, "learning rate"); }
};

bool& poisonNextUpdate() {
  static bool flag = false;
  return flag;
}

template <typename S>
struct SgdRule {
  using Scalar = S;
  using Options = SgdOptions;
  using Matrix = Mat<S>;
  static constexpr const char* kProjectedName = "ProjectedSgdTest";
  static constexpr const char* kStepWhere = "ProjectedSgdTest::step";
  static constexpr bool kDecayBeforeUpdate = false;
  static Options projectedDefaults() { return Options{}; }

  Index resets = 0;
  void allocate(Index, Index, Index, const Options&) {}
  void reset() { ++resets; }
  template <typename DW>
  RuleStep update(Matrix& r, Index, const Options& o, const Eigen::MatrixBase<DW>&) {
    if (poisonNextUpdate()) r(0, 0) = std::numeric_limits<S>::quiet_NaN();
    return RuleStep{-o.learningRate, o.learningRate};
  }
  void rotate(bool, Side, const Matrix&, const Matrix&) {}
  std::size_t bytes() const { return 0; }
  void saveBeforeProjector(std::ostream& os, bool started) const { ckpt::writePod<std::uint8_t>(os, started ? 1 : 0); }
  void saveAfterProjector(std::ostream&, bool) const {}
  bool loadBeforeProjector(std::istream& is, const Options&) { return ckpt::readBounded<std::uint8_t>(is, "started", 0, 1) != 0; }
  void loadAfterProjector(std::istream&, Index, Index, Index, const Options&) {}
};

// Rules and bases that lack a piece of the protocol.
template <typename S>
struct RuleWithoutUpdate : SgdRule<S> {
  void update() = delete;
};
template <typename S>
struct RuleWithoutNames {
  using Scalar = S;
  using Options = SgdOptions;
};
template <typename S>
struct TrackingBasisWithoutTrack : SVDBasis<S> {
  static constexpr bool kTracksSteps = true;
};
template <typename S>
struct BasisWithoutRefresh : SVDBasis<S> {
  void refresh() = delete;
};

template <typename B>
bool bitEqual(const B& a, const B& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(typename B::Scalar) * std::size_t(a.size())) == 0;
}

}  // namespace

TEST_CASE("Protocol checks: the library's bases and rules pass, incomplete ones are detected", "[gradient][optim]") {
  static_assert(IsGradientBasis<SVDBasis<float>>::value && IsGradientBasis<RandomizedBasis<double>>::value, "");
  static_assert(IsGradientBasis<DCTBasis<float>>::value && IsGradientBasis<OnlinePCABasis<double>>::value, "");
  static_assert(IsGradientBasis<GaussianBasis<float>>::value && IsGradientBasis<RowSelectionBasis<double>>::value, "");
  static_assert(IsGradientBasis<QuantizedBasis<SVDBasis<float>>>::value, "");
  static_assert(IsProjectedRule<AdamRule<float>>::value && IsProjectedRule<AdamRule<double>>::value, "");
  static_assert(IsProjectedRule<AdafactorRule<float>>::value && IsProjectedRule<AdafactorRule<double>>::value, "");
  static_assert(IsProjectedRule<SgdRule<float>>::value, "");
  CHECK_FALSE(IsGradientBasis<int>::value);
  CHECK_FALSE(IsGradientBasis<TrackingBasisWithoutTrack<float>>::value);
  CHECK(detail::BasisHasProducts<TrackingBasisWithoutTrack<float>>::value);  // only `track` is missing
  CHECK_FALSE(IsGradientBasis<BasisWithoutRefresh<float>>::value);
  CHECK_FALSE(detail::BasisHasRefresh<BasisWithoutRefresh<float>>::value);
  CHECK_FALSE(IsProjectedRule<int>::value);
  CHECK_FALSE(IsProjectedRule<RuleWithoutUpdate<float>>::value);
  CHECK_FALSE(detail::RuleHasUpdate<RuleWithoutUpdate<float>>::value);
  CHECK(detail::RuleHasState<RuleWithoutUpdate<float>>::value);
  CHECK(detail::RuleHasTypes<RuleWithoutNames<float>>::value);
  CHECK_FALSE(detail::RuleHasNames<RuleWithoutNames<float>>::value);
}

TEMPLATE_TEST_CASE("ProjectedOptimizer: a non-finite update is skipped, resets the rule and still tracks with lr/lr0",
                   "[gradient][optim]", float, double) {
  using S = TestType;
  const Index m = 10, n = 6;
  ProjectedOptimizer<OnlinePCABasis<S>, SgdRule<S>> opt;
  opt.projector().setRank(2).setUpdateGap(4);
  GradientProjector<OnlinePCABasis<S>> ref;  // the oracle: the same projector driven by hand
  ref.setRank(2).setUpdateGap(4);
  Mat<S> w = gaussian<S>(m, n, 1), wRef = w;
  const double lrs[] = {0.01, 0.005, 0.005, 0.002, 0.002, 0.004, 0.004};
  const bool poisoned[] = {false, true, false, true, true, false, false};
  Index skipped = 0;
  for (int t = 0; t < 7; ++t) {
    const Mat<S> g = gaussian<S>(m, n, 50 + std::uint64_t(t)) + S(0.5) * (w - gaussian<S>(m, n, 2));
    SgdOptions o;
    o.learningRate = lrs[t];
    opt.setOptions(o);
    poisonNextUpdate() = poisoned[t];
    const Mat<S> before = w;
    const StepOutcome out = opt.step(w, g);
    poisonNextUpdate() = false;

    ref.beginStep(g);
    const Mat<S> r = ref.project(g);
    if (!poisoned[t]) ref.addBack(r, S(-lrs[t]), wRef);
    ref.endStep(g, lrs[t] / lrs[0]);

    if (poisoned[t]) {
      ++skipped;
      CHECK(out == StepOutcome::Skipped);
      CHECK(bitEqual(w, before));
      CHECK(opt.stepCount() == 0);
    } else {
      CHECK(out == StepOutcome::Applied);
    }
    CHECK(opt.skippedSteps() == skipped);
    CHECK(opt.rule().resets == skipped);
    CHECK(opt.projector().step() == t + 1);
    CHECK(bitEqual(w, wRef));
    CHECK(bitEqual(opt.projector().denseBasis(), ref.denseBasis()));
  }
  CHECK(opt.projector().stats().refreshes == ref.stats().refreshes);
}

TEMPLATE_TEST_CASE("ProjectedAdafactor: skipped updates track a moving basis with lr/lr0, as ProjectedAdamW",
                   "[gradient][optim]", float, double) {
  using S = TestType;
  // ε₁ = the smallest subnormal and a gradient whose first row is zero: that row's statistic
  // underflows against the mean, its factor is 1/√0 = ∞ and ∞·0 makes every update non-finite,
  // while the gradient itself is finite and non-zero, so the online-PCA basis keeps tracking.
  const Index m = 8, n = 5;
  AdafactorOptions o;
  o.relativeStep = false;
  o.scaleParameter = false;
  o.learningRate = 0.01;
  o.epsilon1 = double(std::numeric_limits<S>::denorm_min());
  ProjectedAdafactor<OnlinePCABasis<S>> opt;
  opt.projector().setRank(2).setUpdateGap(10);
  opt.setOptions(o);
  GradientProjector<OnlinePCABasis<S>> ref;
  ref.setRank(2).setUpdateGap(10);
  const Mat<S> w0 = gaussian<S>(m, n, 3);
  Mat<S> w = w0;
  const double lrs[] = {0.01, 0.005, 0.0025, 0.02};
  for (int t = 0; t < 4; ++t) {
    Mat<S> g = S(10) * gaussian<S>(m, n, 70 + std::uint64_t(t));
    g.row(0).setZero();
    opt.setLearningRate(lrs[t]);
    CHECK(opt.step(w, g) == StepOutcome::Skipped);
    ref.beginStep(g);
    ref.endStep(g, lrs[t] / lrs[0]);
    CHECK(bitEqual(opt.projector().denseBasis(), ref.denseBasis()));
  }
  CHECK(bitEqual(w, w0));
  CHECK(opt.skippedSteps() == 4);
  CHECK(opt.stepCount() == 0);
  // The basis did move: tracking ran on steps 1–3.
  GradientProjector<OnlinePCABasis<S>> still;
  still.setRank(2).setUpdateGap(10);
  Mat<S> g0 = S(10) * gaussian<S>(m, n, 70);
  g0.row(0).setZero();
  still.beginStep(g0);
  CHECK((still.denseBasis() - ref.denseBasis()).norm() > 1e-4);
}

namespace {

// One normal step, then a finite gradient so large that its projection overflows: both
// optimizers skip the update, reset their state and restart the step count.
template <typename Opt>
void checkOverflowSkipped(Opt& opt) {
  using S = typename Opt::Scalar;
  const Index m = 9, n = 5;
  opt.projector().setRank(1);
  Mat<S> w = gaussian<S>(m, n, 4);
  const Mat<S> g1 = Mat<S>::Ones(m, n) + S(0.1) * gaussian<S>(m, n, 5);  // top right singular vector ≈ 1/√n
  CHECK(opt.step(w, g1) == StepOutcome::Applied);
  CHECK(opt.stepCount() == 1);
  const std::size_t bytes = opt.stateBytes();
  const Mat<S> huge = Mat<S>::Constant(m, n, std::numeric_limits<S>::max() / S(2));
  const Mat<S> before = w;
  CHECK(opt.step(w, huge) == StepOutcome::Skipped);
  CHECK(bitEqual(w, before));
  CHECK(opt.stepCount() == 0);
  CHECK(opt.skippedSteps() == 1);
  CHECK(opt.projector().step() == 2);
  CHECK(opt.stateBytes() == bytes);
  CHECK(opt.step(w, g1) == StepOutcome::Applied);
  CHECK(opt.stepCount() == 1);
  CHECK(w.allFinite());
}

}  // namespace

TEMPLATE_TEST_CASE("Non-finite low-rank updates: ProjectedAdamW and ProjectedAdafactor take the same path", "[gradient][optim]",
                   float, double) {
  using S = TestType;
  ProjectedAdamW<SVDBasis<S>> a;
  checkOverflowSkipped(a);
  CHECK(a.firstMoment().isZero(0) == false);  // the step after the reset started new moments
  ProjectedAdafactor<SVDBasis<S>> f;
  f.setLearningRate(0.01);
  checkOverflowSkipped(f);
}

namespace {

Mat<float> pinnedGrad(const Mat<float>& w, Index t) {
  return Mat<float>(w - gaussian<float>(8, 5, 2) + 0.1f * gaussian<float>(8, 5, 100 + std::uint64_t(t)));
}

template <typename Opt, std::size_t NW, std::size_t NC, std::size_t NN>
void checkPinned(const unsigned char (&weights)[NW], const unsigned char (&ckptBytes)[NC], const unsigned char (&next)[NN]) {
  REQUIRE(NW == 40 * sizeof(float));
  REQUIRE(NN == 40 * sizeof(float));
  Mat<float> w(8, 5), expect(8, 5);
  std::memcpy(w.data(), weights, NW);
  std::memcpy(expect.data(), next, NN);
  Opt opt;
  opt.projector().setRank(2).setUpdateGap(3);
  std::stringstream ss(std::string(reinterpret_cast<const char*>(ckptBytes), NC));
  opt.load(ss);
  CHECK(opt.options().learningRate == 0.005);
  // A save of the loaded state loads again into the same state.
  std::stringstream again;
  opt.save(again);
  Opt copy;
  copy.projector().setRank(2).setUpdateGap(3);
  copy.load(again);
  Mat<float> w2 = w;
  for (Index t = 4; t < 9; ++t) {
    opt.step(w, pinnedGrad(w, t));
    copy.step(w2, pinnedGrad(w2, t));
  }
  CHECK(bitEqual(w, expect));
  CHECK(bitEqual(w2, expect));
}

}  // namespace

TEST_CASE("Checkpoint: version-2 files of the optimizers before the shared base resume bit for bit", "[gradient][optim][checkpoint]") {
  SECTION("ProjectedAdamW, online PCA, rotate, lr changed after the first steps") {
    checkPinned<ProjectedAdamW<OnlinePCABasis<float>>>(kAdamWOnlinePcaV2Weights, kAdamWOnlinePcaV2Checkpoint, kAdamWOnlinePcaV2Next);
  }
  SECTION("ProjectedAdafactor, online PCA, first moment, rotate, lr changed after the first steps") {
    checkPinned<ProjectedAdafactor<OnlinePCABasis<float>>>(kAdafactorOnlinePcaV2Weights, kAdafactorOnlinePcaV2Checkpoint,
                                                           kAdafactorOnlinePcaV2Next);
  }
}

TEMPLATE_TEST_CASE("GradientProjector: project and addBack before the first basis throw InvalidArgument", "[gradient][projector]",
                   float, double) {
  using S = TestType;
  GradientProjector<SVDBasis<S>> p;
  p.setRank(2);
  const Mat<S> g = gaussian<S>(6, 4, 1);
  Mat<S> w = gaussian<S>(6, 4, 2), r(6, 2);
  const Mat<S> n = Mat<S>::Ones(6, 2);
  CHECK_THROWS_AS(p.project(g, r), InvalidArgument);
  CHECK_THROWS_AS(p.addBack(n, S(1), w), InvalidArgument);
  p.init(6, 4);  // shape fixed, still no basis
  CHECK_THROWS_AS(p.project(g, r), InvalidArgument);
  CHECK_THROWS_AS(p.addBack(n, S(1), w), InvalidArgument);
  p.beginStep(g);
  CHECK_NOTHROW(p.addBack(n, S(1), w));
  const Mat<S> wrongShape = Mat<S>::Ones(6, 3);
  CHECK_THROWS_AS(p.addBack(wrongShape, S(1), w), InvalidArgument);
}
