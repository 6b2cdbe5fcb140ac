// APOLLO / APOLLO-Mini against an independent port of the reference update (apollo_torch.AdamW
// with a random projection) over 12 steps across refreshes; checkpoint resume; non-finite
// gradients; argument checks.
#include "test_common.hpp"

#include <wproj/gradient/apollo.hpp>

#include <sstream>

using namespace wproj;
using namespace wproj_test;

namespace apollo_test {

// The reference step in double, given the projection P of the step (ambient×r): R = PᵀG when
// m < n (GaLore's 'std' side), G P otherwise; Adam on R; the factor over the dimension
// `norm_dim = 0 if N.shape[0] < N.shape[1] else 1`; the limiter; √scale; decay after the update.
struct Reference {
  double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-6, wd = 0, scale = 1, gamma = 1.01;
  bool tensor = false;
  int t = 0;
  double prev = -1;
  Mat<double> m, v;

  void step(Mat<double>& w, const Mat<double>& g, const Mat<double>& p) {
    const bool left = g.rows() < g.cols();
    const Mat<double> r = left ? Mat<double>(p.transpose() * g) : Mat<double>(g * p);
    if (m.size() == 0) {
      m = Mat<double>::Zero(r.rows(), r.cols());
      v = m;
    }
    ++t;
    m = b1 * m + (1 - b1) * r;
    v = b2 * v + (1 - b2) * r.cwiseAbs2();
    const Mat<double> n = (m.array() / (v.array().sqrt() + eps)).matrix();
    const double stepSize = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    Mat<double> scaled = g;
    if (tensor) {
      scaled *= n.norm() / (r.norm() + 1e-8);
    } else if (n.rows() < n.cols()) {  // norm over dim 0: one factor per column
      for (Index j = 0; j < g.cols(); ++j) scaled.col(j) *= n.col(j).norm() / (r.col(j).norm() + 1e-8);
    } else {  // norm over dim 1: one factor per row
      for (Index i = 0; i < g.rows(); ++i) scaled.row(i) *= n.row(i).norm() / (r.row(i).norm() + 1e-8);
    }
    const double norm = scaled.norm();
    if (prev >= 0) {
      const double limiter = std::max(norm / (prev + 1e-8), gamma) / gamma;
      scaled /= limiter;
      prev = norm / limiter;
    } else {
      prev = norm;
    }
    scaled *= std::sqrt(scale);
    w -= stepSize * scaled;
    if (wd > 0) w -= lr * wd * w;
  }
};

// Gradients with a growing component, so that the limiter acts on some steps.
template <typename T>
Mat<T> gradient(Index m, Index n, int t) {
  return gaussian<T>(m, n, 300) * T(1 + 0.2 * t) + T(0.5) * gaussian<T>(m, n, 400 + std::uint64_t(t));
}

}  // namespace apollo_test

TEMPLATE_TEST_CASE("Apollo: 12 steps equal a port of the reference (channel and Mini, both sides, refreshes)", "[gradient][apollo]",
                   float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 2e-5 : 1e-12;
  struct Case {
    Index m, n, rank;
    bool mini;
    double wd;
  };
  for (const Case& cs : {Case{12, 30, 4, false, 0.0}, Case{36, 14, 5, false, 0.1}, Case{20, 26, 1, true, 0.0}}) {
    INFO("shape " << cs.m << "x" << cs.n << " rank " << cs.rank << " mini " << cs.mini);
    Apollo<GaussianBasis<T>> opt = cs.mini ? Apollo<GaussianBasis<T>>::mini() : Apollo<GaussianBasis<T>>();
    opt.projector().setRank(cs.rank).setUpdateGap(4);
    opt.projector().basis().setSeed(21);
    opt.setLearningRate(0.01).setWeightDecay(cs.wd);
    apollo_test::Reference ref;
    ref.lr = 0.01;
    ref.wd = cs.wd;
    ref.tensor = cs.mini;
    ref.scale = cs.mini ? 128 : 1;
    RowMajorMat<T> storage = gaussian<T>(cs.m, cs.n, 5);
    Eigen::Map<RowMajorMat<T>> w(storage.data(), cs.m, cs.n);
    Mat<double> wr = storage.template cast<double>();
    Mat<double> firstP;
    for (int t = 0; t < 12; ++t) {
      const Mat<T> g = apollo_test::gradient<T>(cs.m, cs.n, t);
      REQUIRE(opt.step(w, g) == StepOutcome::Applied);
      const Mat<double> p = opt.projector().denseBasis().template cast<double>();  // the P this step used
      if (t == 0) firstP = p;
      ref.step(wr, g.template cast<double>(), p);
    }
    CHECK(opt.projector().stats().refreshes == 3);
    CHECK((opt.projector().denseBasis().template cast<double>() - firstP).norm() > 0.1);  // P was redrawn
    CHECK((w.template cast<double>() - wr).cwiseAbs().maxCoeff() <= tol);
    CHECK((opt.firstMoment().template cast<double>() - ref.m).cwiseAbs().maxCoeff() <= tol);
    CHECK(opt.lastScale().size() == (cs.mini ? 1 : (cs.m < cs.n ? cs.n : cs.m)));
  }
}

TEST_CASE("Apollo: the limiter bounds the norm growth of the scaled gradient to gamma", "[gradient][apollo]") {
  // With lr fixed and bias correction off, each step moves W by lr·√scale·U; a gradient ten
  // times larger than the last may grow ‖U‖ by at most γ.
  Apollo<GaussianBasis<double>> opt;
  opt.projector().setRank(3);
  opt.setLearningRate(1.0).setBiasCorrection(false);
  Mat<double> w = Mat<double>::Zero(10, 16);
  const Mat<double> g = gaussian<double>(10, 16, 9);
  opt.step(w, g);
  const double first = w.norm();
  Mat<double> before = w;
  opt.step(w, Mat<double>(10.0 * g));
  CHECK((w - before).norm() <= 1.01 * first * (1 + 1e-9));
  CHECK((w - before).norm() >= 0.5 * first);
}

TEST_CASE("Apollo: checkpoint resumes bit for bit across refreshes; P is never stored", "[gradient][apollo]") {
  Apollo<GaussianBasis<float>> a;
  a.projector().setRank(4).setUpdateGap(3);
  a.projector().basis().setSeed(77);
  a.setLearningRate(0.02).setWeightDecay(0.01);
  Mat<float> wa = gaussian<float>(40, 24, 1);
  for (int t = 0; t < 5; ++t) a.step(wa, apollo_test::gradient<float>(40, 24, t));
  std::stringstream ss;
  a.save(ss);
  CHECK(a.projector().stateBytes() == 16);  // seed and refresh index, not the 24x4 P
  CHECK(a.stateBytes() == 2 * 40 * 4 * sizeof(float) + sizeof(double) + 16);
  Apollo<GaussianBasis<float>> b;
  b.projector().basis().setSeed(77);
  b.load(ss);
  CHECK(b.stepCount() == 5);
  Mat<float> wb = wa;
  for (int t = 5; t < 12; ++t) {
    const Mat<float> g = apollo_test::gradient<float>(40, 24, t);
    a.step(wa, g);
    b.step(wb, g);
  }
  CHECK((wa - wb).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((a.secondMoment() - b.secondMoment()).cwiseAbs().maxCoeff() == 0.0f);
  // Another seed is refused.
  std::stringstream again;
  a.save(again);
  Apollo<GaussianBasis<float>> c;
  c.projector().basis().setSeed(78);
  CHECK_THROWS_AS(c.load(again), IoError);
}

TEST_CASE("Apollo: non-finite gradients and arguments", "[gradient][apollo]") {
  Apollo<GaussianBasis<double>> opt;
  opt.projector().setRank(2);
  Mat<double> w = gaussian<double>(6, 9, 1);
  const Mat<double> w0 = w;
  Mat<double> g = gaussian<double>(6, 9, 2);
  g(1, 1) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(opt.step(w, g), Catch::Contains("'g'") && Catch::Contains("non-finite"));
  opt.setNonFinitePolicy(NonFinitePolicy::Skip);
  CHECK(opt.step(w, g) == StepOutcome::Skipped);
  CHECK(opt.skippedSteps() == 2);
  CHECK((w - w0).norm() == 0.0);
  CHECK_THROWS_WITH(opt.setScale(0), Catch::Contains("scale") && Catch::Contains("> 0"));
  CHECK_THROWS_WITH(opt.setNormGrowthLimiter(true, 0.5), Catch::Contains("limiterGamma") && Catch::Contains(">= 1"));
  CHECK_THROWS_WITH(opt.setBetas(0.9, 1.0), Catch::Contains("beta2"));
  CHECK_THROWS_WITH(opt.setEpsilon(0), Catch::Contains("epsilon"));
  CHECK(opt.options().scale == 1.0);
  Apollo<GaussianBasis<double>> full;
  full.projector().setRank(2).setProjectionType(ProjectionType::Full);
  CHECK_THROWS_WITH(full.step(w, gaussian<double>(6, 9, 3)), Catch::Contains("projectionType"));
  Apollo<GaussianBasis<double>> big;
  big.projector().setRank(7);
  CHECK_THROWS_WITH(big.step(w, gaussian<double>(6, 9, 3)), Catch::Contains("rank"));
}
