// Optimizers against explicit formulas; moment policies; NaN handling; checkpoint round trips.
#include "test_common.hpp"

#include <wproj/gradient.hpp>

#include <sstream>

using namespace wproj;
using namespace wproj_test;

TEST_CASE("AdamW: matches the explicit update with bias correction and decoupled decay", "[gradient][optim]") {
  const double lr = 0.01, wd = 0.1, b1 = 0.9, b2 = 0.999, e = 1e-8;
  AdamW<double> opt;
  opt.setLearningRate(lr).setWeightDecay(wd);
  Mat<double> w = gaussian<double>(7, 5, 1), ref = w;
  Mat<double> m = Mat<double>::Zero(7, 5), v = m;
  for (int t = 1; t <= 3; ++t) {
    const Mat<double> g = gaussian<double>(7, 5, 10 + std::uint64_t(t));
    opt.step(w, g);
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g.cwiseAbs2();
    const double step = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    ref.array() -= step * m.array() / (v.array().sqrt() + e);
    ref *= 1 - lr * wd;
  }
  CHECK((w - ref).norm() < 1e-13);
  CHECK(opt.stateBytes() == 2 * 35 * sizeof(double));
}

TEST_CASE("ProjectedAdamW: one GaLore step equals project → Adam → α·back-project → decay", "[gradient][optim]") {
  const double lr = 0.02, wd = 0.05, alpha = 0.25;
  ProjectedAdamW<SvdBasis<double>> opt;
  opt.projector().setRank(3).setScale(alpha);
  opt.setLearningRate(lr).setWeightDecay(wd);
  CHECK(opt.options().epsilon == 1e-6);
  const Mat<double> g = gaussian<double>(12, 8, 2);
  Mat<double> w = gaussian<double>(12, 8, 3);
  const Mat<double> w0 = w;
  opt.step(w, g);
  const Eigen::BDCSVD<Mat<double>> svd(g, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Mat<double> p = svd.matrixV().leftCols(3);  // 12x8: right side, P = V[:, :r]
  const Mat<double> r = g * p;
  const Mat<double> m = 0.1 * r, v = 0.001 * r.cwiseAbs2();
  const double step = lr * std::sqrt(1 - 0.999) / (1 - 0.9);
  const Mat<double> n = (m.array() / (v.array().sqrt() + 1e-6)).matrix();
  const Mat<double> expect = (w0 - step * alpha * n * p.transpose()) * (1 - lr * wd);
  CHECK((w - expect).norm() < 1e-10);
  CHECK(opt.projector().side() == Side::Right);
  CHECK(opt.stateBytes() == (2 * 12 * 3 + 8 * 3) * sizeof(double));
}

TEST_CASE("Adafactor: factored second moment, RMS clipping, decay 1 - t^-0.8", "[gradient][optim]") {
  AdafactorOptions o;
  o.learningRate = 0.01;
  Adafactor<double> opt(o);
  Mat<double> w = gaussian<double>(6, 4, 4), ref = w;
  Vec<double> row = Vec<double>::Zero(6);
  Eigen::RowVectorXd col = Eigen::RowVectorXd::Zero(4);
  for (int t = 1; t <= 3; ++t) {
    const Mat<double> g = gaussian<double>(6, 4, 20 + std::uint64_t(t));
    opt.step(w, g);
    const double b2 = 1 - std::pow(double(t), -0.8);
    const Mat<double> g2 = (g.array().square() + 1e-30).matrix();
    row = b2 * row + (1 - b2) * g2.rowwise().mean();
    col = b2 * col + (1 - b2) * g2.colwise().mean();
    // V̂ = r cᵀ / sum(r) with row/column sums r_i = 4·row_i, c_j = 6·col_j.
    const Mat<double> vhat = (4 * row) * (6 * col) / (4 * row).sum();
    Mat<double> u = (g.array() / vhat.array().sqrt()).matrix();
    const double rms = std::sqrt(u.squaredNorm() / double(u.size()));
    u /= std::max(1.0, rms);
    ref -= 0.01 * u;
  }
  CHECK((w - ref).norm() < 1e-12);
  CHECK(opt.stateBytes() == (6 + 4) * sizeof(double));
}

TEST_CASE("Moment policies: rotation is exact for a permutation of selected rows", "[gradient][optim]") {
  // GRASS top-r selects rows {0,1,2} then {1,2,3}: R = P_oldᵀP_new is a partial permutation.
  Mat<double> g1 = gaussian<double>(6, 5, 5), g2 = gaussian<double>(6, 5, 6);
  g1.topRows(3) *= 10;
  g2.middleRows(1, 3) *= 10;
  for (auto policy : {MomentPolicy::Keep, MomentPolicy::Reset, MomentPolicy::Rotate}) {
    ProjectedAdamW<RowSelectionBasis<double>> opt;
    opt.projector().setRank(3).setUpdateGap(2).setProjectionType(ProjectionType::Left);
    opt.setMomentPolicy(policy);
    Mat<double> w = Mat<double>::Zero(6, 5);
    opt.step(w, g1);
    opt.step(w, g1);
    const Mat<double> m = opt.firstMoment(), v = opt.secondMoment();
    opt.step(w, g2);  // refresh
    REQUIRE(opt.projector().basis().indices() == std::vector<Index>{1, 2, 3});
    Mat<double> mr = Mat<double>::Zero(3, 5), vr = Mat<double>::Zero(3, 5);
    if (policy == MomentPolicy::Keep) {
      mr = m;
      vr = v;
    } else if (policy == MomentPolicy::Rotate) {
      mr.topRows(2) = m.bottomRows(2);
      vr.topRows(2) = v.bottomRows(2);
    }
    const Mat<double> r2 = g2.middleRows(1, 3);
    const Mat<double> mExpect = 0.9 * mr + 0.1 * r2, vExpect = 0.999 * vr + 0.001 * r2.cwiseAbs2();
    INFO("policy " << toString(policy));
    CHECK((opt.firstMoment() - mExpect).norm() == Approx(0).margin(1e-14));
    CHECK((opt.secondMoment() - vExpect).norm() == Approx(0).margin(1e-14));
    CHECK(opt.stepCount() == (policy == MomentPolicy::Reset ? 1 : 3));
  }
}

TEST_CASE("Moment policies: rotation for dense bases uses R = P_oldᵀP_new and R∘R", "[gradient][optim]") {
  const Mat<double> g1 = gaussian<double>(9, 14, 7), g2 = gaussian<double>(9, 14, 8);
  ProjectedAdamW<SvdBasis<double>> opt;
  opt.projector().setRank(4).setUpdateGap(1);
  opt.setMomentPolicy(MomentPolicy::Rotate);
  Mat<double> w = Mat<double>::Zero(9, 14);
  opt.step(w, g1);
  const Mat<double> p1 = opt.projector().denseBasis(), m = opt.firstMoment(), v = opt.secondMoment();
  opt.step(w, g2);
  const Mat<double> p2 = opt.projector().denseBasis();
  const Mat<double> rot = p1.transpose() * p2;  // left side (9 < 14): coordinates PᵀG
  const Mat<double> r2 = p2.transpose() * g2;
  CHECK((opt.firstMoment() - (0.9 * rot.transpose() * m + 0.1 * r2)).norm() < 1e-12);
  CHECK((opt.secondMoment() - (0.999 * rot.cwiseAbs2().transpose() * v + 0.001 * r2.cwiseAbs2())).norm() < 1e-12);
  CHECK((opt.secondMoment().array() >= 0).all());
}

TEST_CASE("Non-finite gradients: reported by exception or skipped, weights never NaN", "[gradient][optim]") {
  Mat<float> g = gaussian<float>(8, 6, 9), w = gaussian<float>(8, 6, 10);
  Mat<float> bad = g;
  bad(3, 2) = std::numeric_limits<float>::infinity();
  {
    ProjectedAdamW<SvdBasis<float>> opt;
    opt.projector().setRank(2);
    CHECK_THROWS_AS(opt.step(w, bad), InvalidArgument);
    opt.setNonFinitePolicy(NonFinitePolicy::Skip);
    const Mat<float> w0 = w;
    CHECK(opt.step(w, bad) == StepOutcome::Skipped);
    CHECK(w == w0);
    CHECK(opt.skippedSteps() == 2);
    CHECK(opt.stepCount() == 0);
    CHECK(opt.step(w, g) == StepOutcome::Applied);
    bad(0, 0) = std::numeric_limits<float>::quiet_NaN();
    CHECK(opt.step(w, bad) == StepOutcome::Skipped);
    CHECK(opt.stepCount() == 1);
    CHECK(w.allFinite());
  }
  {
    AdamW<float> a;
    CHECK_THROWS_AS(a.step(w, bad), InvalidArgument);
    Adafactor<float> f;
    f.setOptions([] { AdafactorOptions o; o.nonFinite = NonFinitePolicy::Skip; return o; }());
    const Mat<float> w0 = w;
    CHECK(f.step(w, bad) == StepOutcome::Skipped);
    CHECK(w == w0);
  }
}

namespace {

template <typename Opt, typename Configure>
void checkResume(Configure configure, Index m = 16, Index n = 10) {
  using S = typename Opt::Scalar;
  Opt a;
  configure(a);
  Mat<S> wa = gaussian<S>(m, n, 1);
  auto grad = [&](const Mat<S>& w, Index t) {  // a loss with structure: ½‖W − T‖² plus noise
    return Mat<S>(w - gaussian<S>(m, n, 2) + S(0.1) * gaussian<S>(m, n, 100 + std::uint64_t(t)));
  };
  for (Index t = 0; t < 5; ++t) a.step(wa, grad(wa, t));
  std::stringstream ss;
  a.save(ss);
  Mat<S> wb = wa;
  for (Index t = 5; t < 15; ++t) a.step(wa, grad(wa, t));
  Opt b;
  configure(b);
  b.load(ss);
  for (Index t = 5; t < 15; ++t) b.step(wb, grad(wb, t));
  CHECK(wa.allFinite());
  CHECK(std::memcmp(wa.data(), wb.data(), sizeof(S) * std::size_t(wa.size())) == 0);
}

}  // namespace

TEST_CASE("Checkpoint: a resumed run reproduces the next 10 steps bit for bit", "[gradient][optim][checkpoint]") {
  SECTION("SVD, right side, rotate") {
    checkResume<ProjectedAdamW<SvdBasis<float>>>([](auto& o) {
      o.projector().setRank(3).setUpdateGap(3).setOffset(1);
      o.setMomentPolicy(MomentPolicy::Rotate).setLearningRate(0.05).setWeightDecay(0.01);
    });
  }
  SECTION("SVD, two-sided, double") {
    checkResume<ProjectedAdamW<SvdBasis<double>>>([](auto& o) {
      o.projector().setRank(3).setUpdateGap(4).setProjectionType(ProjectionType::Full);
      o.setLearningRate(0.05);
    });
  }
  SECTION("randomized, warm-started") {
    checkResume<ProjectedAdamW<RandomizedBasis<float>>>([](auto& o) {
      o.projector().setRank(3).setUpdateGap(2).setProjectionType(ProjectionType::Left);
      o.projector().basis().setSeed(5);
    });
  }
  SECTION("online PCA") {
    checkResume<ProjectedAdamW<OnlinePcaBasis<float>>>([](auto& o) {
      o.projector().setRank(4).setUpdateGap(4);
      o.projector().basis().setReorthonormalize(true);
    });
  }
  SECTION("Gaussian") {
    checkResume<ProjectedAdamW<GaussianBasis<float>>>([](auto& o) {
      o.projector().setRank(3).setUpdateGap(3);
      o.projector().basis().setSeed(9);
    });
  }
  SECTION("GRASS sampling") {
    checkResume<ProjectedAdamW<RowSelectionBasis<float>>>([](auto& o) {
      o.projector().setRank(4).setUpdateGap(3).setProjectionType(ProjectionType::Left);
      o.projector().basis().setSelection(RowSelection::NormSampling).setSeed(3);
      o.setMomentPolicy(MomentPolicy::Rotate);
    });
  }
  SECTION("DCT columns, right side, rotate") {
    checkResume<ProjectedAdamW<DctBasis<float>>>([](auto& o) {
      o.projector().setRank(4).setUpdateGap(3).setOffset(1);
      o.setMomentPolicy(MomentPolicy::Rotate).setLearningRate(0.05).setWeightDecay(0.01);
    });
  }
  SECTION("DCT columns, left side, l2 score, double") {
    checkResume<ProjectedAdamW<DctBasis<double>>>([](auto& o) {
      o.projector().setRank(3).setUpdateGap(2).setProjectionType(ProjectionType::Left);
      o.projector().basis().setScore(ScoreNorm::L2);
    });
  }
  SECTION("Q-GaLore: INT4 randomized basis with adaptive gap") {
    checkResume<ProjectedAdamW<QuantizedBasis<RandomizedBasis<float>>>>([](auto& o) {
      o.projector().setRank(4).setUpdateGap(1).setAdaptiveGap(true, 2, 0.1);
      o.projector().basis().setGroupSize(16);
    });
  }
  SECTION("projected Adafactor with first moment") {
    checkResume<ProjectedAdafactor<SvdBasis<float>>>([](auto& o) {
      AdafactorOptions opt;
      opt.beta1 = 0.9;
      opt.relativeStep = true;
      o.setOptions(opt).setMomentPolicy(MomentPolicy::Rotate);
      o.projector().setRank(3).setUpdateGap(3);
    });
  }
  SECTION("full-rank baselines") {
    checkResume<AdamW<float>>([](auto& o) { o.setLearningRate(0.01); });
    checkResume<Adafactor<float>>([](auto& o) { o.setLearningRate(0.01); });
  }
}

TEST_CASE("Checkpoint: malformed data is rejected with IoError and leaves the optimizer intact", "[gradient][optim][checkpoint]") {
  ProjectedAdamW<SvdBasis<float>> a;
  a.projector().setRank(2).setUpdateGap(3);
  Mat<float> w = gaussian<float>(9, 7, 1);
  a.step(w, gaussian<float>(9, 7, 2));
  std::stringstream ss;
  a.save(ss);
  const std::string good = ss.str();

  auto loadInto = [](const std::string& bytes) {
    ProjectedAdamW<SvdBasis<float>> b;
    b.projector().setRank(2);
    std::stringstream in(bytes);
    b.load(in);
    return b;
  };
  CHECK_NOTHROW(loadInto(good));
  CHECK(loadInto(good).stepCount() == 1);
  CHECK_THROWS_AS(loadInto(good.substr(0, good.size() - 3)), IoError);
  CHECK_THROWS_AS(loadInto(good.substr(0, 20)), IoError);
  CHECK_THROWS_AS(loadInto(std::string("WPROJGRX") + good.substr(8)), IoError);
  std::string badVersion = good;
  badVersion[8] = char(99);
  CHECK_THROWS_AS(loadInto(badVersion), IoError);
  // A NaN inside the first moment.
  std::string nanMoment = good;
  const auto pos = good.find(std::string("\x04\0\0\0", 4), 40);  // the scalar size field before the moment data
  REQUIRE(pos != std::string::npos);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&nanMoment[pos + 4], &nan, sizeof(float));
  CHECK_THROWS_AS(loadInto(nanMoment), IoError);
  // A checkpoint of a different basis type.
  ProjectedAdamW<GaussianBasis<float>> c;
  std::stringstream in(good);
  CHECK_THROWS_AS(c.load(in), IoError);
  // A different optimizer.
  AdamW<float> d;
  std::stringstream in2(good);
  CHECK_THROWS_AS(d.load(in2), IoError);
}
