// Optimizers against explicit formulas; moment policies; NaN handling; checkpoint round trips.
#include "test_common.hpp"

#include <wproj/gradient.hpp>

#include "checkpoints_v1.hpp"

#include <sstream>
#include <type_traits>
#include <vector>

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
  ProjectedAdamW<SVDBasis<double>> opt;
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

namespace {

/// Transformers' `Adafactor.step` for one matrix, ported from its formulas into a plain double
/// loop (no wproj code): with a fixed projection P (right side R = G P, back-projection α·U Pᵀ;
/// left side R = PᵀG, α·P U) when `p` is non-empty.
struct AdafactorOracle {
  AdafactorOptions o;
  Mat<double> p;  // ambient×r, empty for full rank
  Side side = Side::Right;
  double alpha = 1.0;
  Vec<double> row;
  Eigen::RowVectorXd col;
  Mat<double> m;
  int t = 0;

  void step(Mat<double>& w, const Mat<double>& g) {
    const Mat<double> r = p.size() == 0 ? g : (side == Side::Right ? Mat<double>(g * p) : Mat<double>(p.transpose() * g));
    if (t == 0) {
      row = Vec<double>::Zero(r.rows());
      col = Eigen::RowVectorXd::Zero(r.cols());
      m = Mat<double>::Zero(r.rows(), r.cols());
    }
    ++t;
    const double rmsW = std::sqrt(w.squaredNorm() / double(w.size()));
    double rho = o.learningRate;
    if (o.relativeStep) rho = std::min(o.warmupInit ? 1e-6 * t : 1e-2, 1.0 / std::sqrt(double(t)));
    const double lr = o.scaleParameter ? std::max(o.epsilon2, rmsW) * rho : rho;
    const double beta2t = 1.0 - std::pow(double(t), o.decayRate);
    const Mat<double> sq = (r.array().square() + o.epsilon1).matrix();
    row = beta2t * row + (1 - beta2t) * sq.rowwise().mean();
    col = beta2t * col + (1 - beta2t) * sq.colwise().mean();
    Mat<double> u(r.rows(), r.cols());
    for (Index i = 0; i < r.rows(); ++i)
      for (Index j = 0; j < r.cols(); ++j) u(i, j) = r(i, j) / std::sqrt(row(i) / row.mean()) / std::sqrt(col(j));
    const double rmsU = std::sqrt(u.squaredNorm() / double(u.size()));
    u /= std::max(1.0, rmsU / o.clipThreshold);
    u *= lr;
    if (o.beta1 > 0) {
      m = o.beta1 * m + (1 - o.beta1) * u;
      u = m;
    }
    Mat<double> full = u;
    if (p.size() > 0) full = alpha * (side == Side::Right ? Mat<double>(u * p.transpose()) : Mat<double>(p * u));
    if (o.weightDecay != 0) w += w * (-o.weightDecay * lr);
    w -= full;
  }
};

std::vector<std::pair<const char*, AdafactorOptions>> adafactorCases() {
  std::vector<std::pair<const char*, AdafactorOptions>> cases;
  cases.emplace_back("transformers defaults (relative step, parameter scale)", AdafactorOptions{});
  AdafactorOptions warm;
  warm.warmupInit = true;
  cases.emplace_back("warmup_init", warm);
  AdafactorOptions ext;
  ext.relativeStep = false;
  ext.learningRate = 0.05;  // scale_parameter stays on: lr = 0.05·max(1e-3, RMS(W))
  ext.beta1 = 0.9;
  ext.weightDecay = 0.1;
  cases.emplace_back("external lr with parameter scale, beta1 = 0.9, weight decay", ext);
  AdafactorOptions plain;
  plain.relativeStep = false;
  plain.scaleParameter = false;
  plain.learningRate = 0.01;
  plain.beta1 = 0.5;
  plain.clipThreshold = 0.5;
  cases.emplace_back("fixed lr, no scale, beta1 = 0.5, clip 0.5", plain);
  return cases;
}

}  // namespace

TEMPLATE_TEST_CASE("Adafactor: 12 steps match a port of transformers' Adafactor", "[gradient][optim]", float, double) {
  using S = TestType;
  const double tol = std::is_same<S, float>::value ? 2e-5 : 1e-12;
  CHECK(AdafactorOptions{}.relativeStep);
  CHECK(AdafactorOptions{}.scaleParameter);
  CHECK_FALSE(AdafactorOptions{}.warmupInit);
  CHECK(AdafactorOptions{}.learningRate == 0);
  for (const auto& c : adafactorCases()) {
    INFO(c.first);
    Adafactor<S> opt(c.second);
    AdafactorOracle ref;
    ref.o = c.second;
    Mat<S> w = gaussian<S>(9, 6, 4);
    Mat<double> wr = w.template cast<double>();
    for (int t = 0; t < 12; ++t) {
      const Mat<S> g = gaussian<S>(9, 6, 20 + std::uint64_t(t));
      REQUIRE(opt.step(w, g) == StepOutcome::Applied);
      ref.step(wr, g.template cast<double>());
    }
    CHECK(opt.stepCount() == 12);
    // Close relative to the weights and to what the 12 steps changed (warmup_init moves W by
    // only ~1e-5 relative, so the second bound is the discriminating one there).
    const double diff = (w.template cast<double>() - wr).norm();
    const double change = (wr - gaussian<S>(9, 6, 4).template cast<double>()).norm();
    CHECK(change > 0);
    CHECK(diff <= tol * wr.norm());
    CHECK(diff <= (std::is_same<S, float>::value ? 0.05 : 1e-8) * change);
  }
  // Combinations transformers refuses.
  AdafactorOptions bad;
  bad.learningRate = 1e-3;  // with relativeStep on
  CHECK_THROWS_AS(Adafactor<S>(bad), InvalidArgument);
  AdafactorOptions bad2;
  bad2.relativeStep = false;
  bad2.warmupInit = true;
  CHECK_THROWS_AS(Adafactor<S>(bad2), InvalidArgument);
  // setLearningRate selects the external learning rate.
  Adafactor<S> e;
  e.setLearningRate(0.02);
  CHECK_FALSE(e.options().relativeStep);
  CHECK(e.options().learningRate == 0.02);
}

TEMPLATE_TEST_CASE("ProjectedAdafactor: 12 steps match a port of transformers' Adafactor in GaLore's subspace", "[gradient][optim]",
                   float, double) {
  using S = TestType;
  const double tol = std::is_same<S, float>::value ? 5e-5 : 1e-10;
  for (auto shape : {std::pair<Index, Index>{12, 7}, {7, 12}}) {
    for (const auto& c : adafactorCases()) {
      INFO(c.first << ", shape " << shape.first << "x" << shape.second);
      const Index m = shape.first, n = shape.second, r = 3;
      ProjectedAdafactor<SVDBasis<S>> opt;
      opt.setOptions(c.second);
      opt.projector().setRank(r).setUpdateGap(1000).setScale(S(0.25));
      const Mat<S> g0 = gaussian<S>(m, n, 30);
      // The basis of the first step, computed here: top-r singular vectors of G₀ on the smaller side.
      const Eigen::BDCSVD<Mat<double>> svd(g0.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
      AdafactorOracle ref;
      ref.o = c.second;
      ref.side = m >= n ? Side::Right : Side::Left;
      ref.p = ref.side == Side::Right ? Mat<double>(svd.matrixV().leftCols(r)) : Mat<double>(svd.matrixU().leftCols(r));
      ref.alpha = 0.25;
      Mat<S> w = gaussian<S>(m, n, 5);
      Mat<double> wr = w.template cast<double>();
      for (int t = 0; t < 12; ++t) {
        // Gradients with a dominant part in the first basis plus noise (the subspace matters).
        const Mat<S> g = t == 0 ? g0 : Mat<S>(g0 + S(0.3) * gaussian<S>(m, n, 40 + std::uint64_t(t)));
        REQUIRE(opt.step(w, g) == StepOutcome::Applied);
        ref.step(wr, g.template cast<double>());
      }
      CHECK(opt.projector().side() == ref.side);
      const double diff = (w.template cast<double>() - wr).norm();
      const double change = (wr - gaussian<S>(m, n, 5).template cast<double>()).norm();
      CHECK(change > 0);
      CHECK(diff <= tol * wr.norm());
      CHECK(diff <= (std::is_same<S, float>::value ? 0.05 : 1e-6) * change);
    }
  }
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
  ProjectedAdamW<SVDBasis<double>> opt;
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
    ProjectedAdamW<SVDBasis<float>> opt;
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
    checkResume<ProjectedAdamW<SVDBasis<float>>>([](auto& o) {
      o.projector().setRank(3).setUpdateGap(3).setOffset(1);
      o.setMomentPolicy(MomentPolicy::Rotate).setLearningRate(0.05).setWeightDecay(0.01);
    });
  }
  SECTION("SVD, two-sided, double") {
    checkResume<ProjectedAdamW<SVDBasis<double>>>([](auto& o) {
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
    checkResume<ProjectedAdamW<OnlinePCABasis<float>>>([](auto& o) {
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
    checkResume<ProjectedAdamW<DCTBasis<float>>>([](auto& o) {
      o.projector().setRank(4).setUpdateGap(3).setOffset(1);
      o.setMomentPolicy(MomentPolicy::Rotate).setLearningRate(0.05).setWeightDecay(0.01);
    });
  }
  SECTION("DCT columns, left side, l2 score, double") {
    checkResume<ProjectedAdamW<DCTBasis<double>>>([](auto& o) {
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
    checkResume<ProjectedAdafactor<SVDBasis<float>>>([](auto& o) {
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
  ProjectedAdamW<SVDBasis<float>> a;
  a.projector().setRank(2).setUpdateGap(3);
  Mat<float> w = gaussian<float>(9, 7, 1);
  a.step(w, gaussian<float>(9, 7, 2));
  std::stringstream ss;
  a.save(ss);
  const std::string good = ss.str();

  auto loadInto = [](const std::string& bytes) {
    ProjectedAdamW<SVDBasis<float>> b;
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

namespace {

/// Saves `a` after two steps and loads the bytes into `b`; returns the message of the error thrown
/// by the load ("" when it loaded).
template <typename Opt, typename ConfigureA, typename ConfigureB>
std::string loadMessage(ConfigureA configureA, ConfigureB configureB) {
  using S = typename Opt::Scalar;
  Opt a;
  configureA(a);
  Mat<S> w = gaussian<S>(12, 9, 1);
  for (int t = 0; t < 2; ++t) a.step(w, gaussian<S>(12, 9, 60 + std::uint64_t(t)));
  std::stringstream ss;
  a.save(ss);
  Opt b;
  configureB(b);
  try {
    b.load(ss);
  } catch (const IoError& e) {
    return e.what();
  }
  return "";
}

bool mentions(const std::string& msg, std::initializer_list<const char*> words) {
  for (const char* w : words)
    if (msg.find(w) == std::string::npos) return false;
  return true;
}

}  // namespace

TEST_CASE("Checkpoint: basis settings are stored and a resume with other settings is refused", "[gradient][optim][checkpoint]") {
  using R = ProjectedAdamW<RandomizedBasis<float>>;
  auto rand = [](std::uint64_t seed, Index p, Index q, bool warm) {
    return [=](R& o) {
      o.projector().setRank(3).setUpdateGap(1);
      o.projector().basis().setSeed(seed).setOversampling(p).setPowerIterations(q).setWarmStart(warm);
    };
  };
  CHECK(loadMessage<R>(rand(5, 4, 1, true), rand(5, 4, 1, true)).empty());
  std::string msg = loadMessage<R>(rand(5, 4, 1, true), rand(6, 4, 1, true));
  INFO(msg);
  CHECK(mentions(msg, {"RandomizedBasis", "'seed'", "is 5 in the checkpoint", "6 in this object"}));
  msg = loadMessage<R>(rand(5, 4, 1, true), rand(5, 8, 1, true));
  CHECK(mentions(msg, {"'oversampling'", "is 4 in the checkpoint", "8 in this object"}));
  msg = loadMessage<R>(rand(5, 4, 1, true), rand(5, 4, 2, true));
  CHECK(mentions(msg, {"'powerIterations'", "is 1 in the checkpoint", "2 in this object"}));
  msg = loadMessage<R>(rand(5, 4, 1, true), rand(5, 4, 1, false));
  CHECK(mentions(msg, {"'warmStart'"}));

  using V = ProjectedAdamW<SVDBasis<double>>;
  auto svd = [](SVDMethod m) { return [=](V& o) { o.projector().setRank(2).basis().setMethod(m); }; };
  CHECK(loadMessage<V>(svd(SVDMethod::Gram), svd(SVDMethod::Gram)).empty());
  msg = loadMessage<V>(svd(SVDMethod::Gram), svd(SVDMethod::Bdc));
  CHECK(mentions(msg, {"SVDBasis", "'method'", "gram", "bdc"}));

  using Q = ProjectedAdamW<QuantizedBasis<RandomizedBasis<float>>>;
  auto quant = [](Index gs, Int4Grouping gr, std::uint64_t seed) {
    return [=](Q& o) {
      o.projector().setRank(3);
      o.projector().basis().setGroupSize(gs).setGrouping(gr);
      o.projector().basis().inner().setSeed(seed);
    };
  };
  CHECK(loadMessage<Q>(quant(8, Int4Grouping::ColumnMajor, 1), quant(8, Int4Grouping::ColumnMajor, 1)).empty());
  CHECK(mentions(loadMessage<Q>(quant(8, Int4Grouping::QGaLore, 1), quant(16, Int4Grouping::QGaLore, 1)), {"'groupSize'", "8", "16"}));
  CHECK(mentions(loadMessage<Q>(quant(8, Int4Grouping::QGaLore, 1), quant(8, Int4Grouping::ColumnMajor, 1)),
                 {"'grouping'", "QGaLore", "ColumnMajor"}));
  CHECK(mentions(loadMessage<Q>(quant(8, Int4Grouping::QGaLore, 1), quant(8, Int4Grouping::QGaLore, 2)), {"RandomizedBasis", "'seed'"}));

  using G = ProjectedAdamW<GaussianBasis<float>>;
  auto gauss = [](std::uint64_t seed) { return [=](G& o) { o.projector().setRank(3).basis().setSeed(seed); }; };
  CHECK(mentions(loadMessage<G>(gauss(3), gauss(4)), {"GaussianBasis", "'seed'"}));
  using O = ProjectedAdamW<OnlinePCABasis<float>>;
  auto pca = [](double mult) { return [=](O& o) { o.projector().setRank(3).basis().setLearningRateMultiplier(mult); }; };
  CHECK(mentions(loadMessage<O>(pca(1.0), pca(2.0)), {"OnlinePCABasis", "'learningRateMultiplier'"}));
}

TEST_CASE("Checkpoint: version-1 files (without basis settings) still load and resume", "[gradient][optim][checkpoint]") {
  const std::string v1a(reinterpret_cast<const char*>(kAdamWRandomizedV1), sizeof(kAdamWRandomizedV1));
  auto configure = [](ProjectedAdamW<RandomizedBasis<float>>& o) {
    o.projector().setRank(2).setUpdateGap(2);
    o.projector().basis().setSeed(7).setOversampling(3);
    o.setLearningRate(0.01);
  };
  // The same run in this build: three steps, then compare the state and the next four steps.
  ProjectedAdamW<RandomizedBasis<float>> fresh, loaded;
  configure(fresh);
  configure(loaded);
  Mat<float> w = gaussian<float>(8, 5, 1);
  for (int t = 0; t < 3; ++t) fresh.step(w, gaussian<float>(8, 5, 10 + std::uint64_t(t)));
  std::stringstream in(v1a);
  REQUIRE_NOTHROW(loaded.load(in));
  CHECK(loaded.stepCount() == 3);
  CHECK(loaded.projector().step() == 3);
  CHECK(loaded.projector().refreshSchedule() == RefreshSchedule::FromLastRefresh);
  CHECK((loaded.firstMoment() - fresh.firstMoment()).norm() <= 1e-4f * fresh.firstMoment().norm());
  CHECK(overlap(loaded.projector().denseBasis(), fresh.projector().denseBasis()) == Approx(1.0).margin(1e-4));
  Mat<float> w2 = w;
  for (int t = 3; t < 7; ++t) {
    const Mat<float> g = gaussian<float>(8, 5, 10 + std::uint64_t(t));
    fresh.step(w, g);
    loaded.step(w2, g);
  }
  CHECK((w2 - w).norm() <= 1e-4f * w.norm());

  // A version-1 Adafactor + INT4 checkpoint: options without warmupInit, INT4 codes without an
  // order field (column-major), no grouping; its stored group size is still checked.
  const std::string v1b(reinterpret_cast<const char*>(kAdafactorQuantizedV1), sizeof(kAdafactorQuantizedV1));
  auto configureQ = [](ProjectedAdafactor<QuantizedBasis<SVDBasis<float>>>& o, Index groupSize) {
    o.projector().setRank(2).setUpdateGap(2).setAdaptiveGap(true, 2, 0.1);
    o.projector().basis().setGroupSize(groupSize);
  };
  ProjectedAdafactor<QuantizedBasis<SVDBasis<float>>> q;
  configureQ(q, 4);
  std::stringstream in2(v1b);
  REQUIRE_NOTHROW(q.load(in2));
  CHECK(q.stepCount() == 3);
  CHECK_FALSE(q.options().relativeStep);
  CHECK_FALSE(q.options().warmupInit);
  CHECK(q.options().learningRate == 0.01);
  CHECK(q.projector().basis().quantized().order == Int4Order::ColumnMajor);
  // The stored codes dequantise column-major to the basis the projector uses.
  CHECK(q.projector().basis().quantized().dequantized() == q.projector().denseBasis());
  CHECK(orthoError(q.projector().denseBasis()) < 0.2);
  Mat<float> wq = gaussian<float>(5, 8, 2);
  CHECK(q.step(wq, gaussian<float>(5, 8, 23)) == StepOutcome::Applied);
  CHECK(wq.allFinite());
  ProjectedAdafactor<QuantizedBasis<SVDBasis<float>>> q8;
  configureQ(q8, 8);
  std::stringstream in3(v1b);
  CHECK_THROWS_AS(q8.load(in3), IoError);
}
