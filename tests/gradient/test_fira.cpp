// Fira against an independent port of the reference update (xichen-fy/Fira FiraAdamW) over 12
// steps across SVD refreshes; at full rank (no residual) it is GaLore-AdamW; checkpoint resume;
// non-finite gradients; argument checks.
#include "test_common.hpp"

#include <wproj/gradient/fira.hpp>

#include <sstream>

using namespace wproj;
using namespace wproj_test;

namespace fira_test {

// The reference step in double given the step's P (ambient×r) and α: R = PᵀG when m < n, else
// G P; Adam on R; back(X) = α·P X or α·X Pᵀ; φ over `norm_dim = 0 if N.shape[0] < N.shape[1]
// else 1`; S = (G − back(R))·φ; the limiter on S; W −= step·(back(N) + S); decay after.
struct Reference {
  double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-6, wd = 0, alpha = 0.25, gamma = 1.01;
  int t = 0;
  double prev = -1;
  Mat<double> m, v;

  void step(Mat<double>& w, const Mat<double>& g, const Mat<double>& p) {
    const bool left = g.rows() < g.cols();
    const Mat<double> r = left ? Mat<double>(p.transpose() * g) : Mat<double>(g * p);
    auto back = [&](const Mat<double>& x) { return Mat<double>(alpha * (left ? Mat<double>(p * x) : Mat<double>(x * p.transpose()))); };
    if (m.size() == 0) {
      m = Mat<double>::Zero(r.rows(), r.cols());
      v = m;
    }
    ++t;
    m = b1 * m + (1 - b1) * r;
    v = b2 * v + (1 - b2) * r.cwiseAbs2();
    const Mat<double> n = (m.array() / (v.array().sqrt() + eps)).matrix();
    const double stepSize = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    Mat<double> s = g - back(r);
    if (n.rows() < n.cols()) {
      for (Index j = 0; j < s.cols(); ++j) s.col(j) *= n.col(j).norm() / (r.col(j).norm() + 1e-8);
    } else {
      for (Index i = 0; i < s.rows(); ++i) s.row(i) *= n.row(i).norm() / (r.row(i).norm() + 1e-8);
    }
    const double norm = s.norm();
    if (prev >= 0) {
      const double limiter = std::max(norm / (prev + 1e-8), gamma) / gamma;
      s /= limiter;
      prev = norm / limiter;
    } else {
      prev = norm;
    }
    w -= stepSize * (back(n) + s);
    if (wd > 0) w -= lr * wd * w;
  }
};

template <typename T>
Mat<T> gradient(Index m, Index n, int t) {
  // A dominant low-rank part (so the SVD basis is well defined) plus noise that grows over time.
  const Mat<T> lowRank = gaussian<T>(m, 3, 500) * gaussian<T>(3, n, 501);
  return lowRank + T(0.2 + 0.1 * t) * gaussian<T>(m, n, 600 + std::uint64_t(t));
}

}  // namespace fira_test

TEMPLATE_TEST_CASE("Fira: 12 steps equal a port of the reference (both sides, refreshes, row-major Map weights)", "[gradient][fira]",
                   float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 5e-5 : 1e-11;
  struct Case {
    Index m, n, rank;
    double alpha, wd;
  };
  for (const Case& cs : {Case{12, 30, 4, 0.25, 0.0}, Case{36, 14, 5, 1.0, 0.1}}) {
    INFO("shape " << cs.m << "x" << cs.n << " rank " << cs.rank << " alpha " << cs.alpha);
    Fira<SVDBasis<T>> opt;
    opt.projector().setRank(cs.rank).setUpdateGap(4).setScale(T(cs.alpha));
    opt.setLearningRate(0.01).setWeightDecay(cs.wd);
    fira_test::Reference ref;
    ref.lr = 0.01;
    ref.wd = cs.wd;
    ref.alpha = cs.alpha;
    RowMajorMat<T> storage = gaussian<T>(cs.m, cs.n, 5);
    Eigen::Map<RowMajorMat<T>> w(storage.data(), cs.m, cs.n);
    Mat<double> wr = storage.template cast<double>();
    for (int t = 0; t < 12; ++t) {
      const Mat<T> g = fira_test::gradient<T>(cs.m, cs.n, t);
      REQUIRE(opt.step(w, g) == StepOutcome::Applied);
      ref.step(wr, g.template cast<double>(), opt.projector().denseBasis().template cast<double>());
    }
    CHECK(opt.projector().stats().refreshes == 3);
    CHECK((w.template cast<double>() - wr).cwiseAbs().maxCoeff() <= tol);
    CHECK((opt.secondMoment().template cast<double>() - ref.v).cwiseAbs().maxCoeff() <= tol);
  }
}

TEST_CASE("Fira: at full rank with alpha 1 the residual vanishes and Fira is GaLore-AdamW", "[gradient][fira]") {
  Fira<SVDBasis<double>> fira;
  fira.projector().setRank(8).setUpdateGap(5).setScale(1.0);
  fira.setLearningRate(0.01).setWeightDecay(0.05);
  ProjectedAdamW<SVDBasis<double>> galore;
  galore.projector().setRank(8).setUpdateGap(5).setScale(1.0);
  galore.setLearningRate(0.01).setWeightDecay(0.05);
  Mat<double> wf = gaussian<double>(8, 20, 1), wg = wf;
  for (int t = 0; t < 10; ++t) {
    const Mat<double> g = fira_test::gradient<double>(8, 20, t);
    fira.step(wf, g);
    galore.step(wg, g);
  }
  CHECK((wf - wg).cwiseAbs().maxCoeff() <= 1e-12);
  // Below full rank the residual moves W outside the subspace (GaLore's update cannot).
  Fira<SVDBasis<double>> low;
  low.projector().setRank(2).setUpdateGap(100);
  Mat<double> w = Mat<double>::Zero(8, 20);
  low.step(w, fira_test::gradient<double>(8, 20, 0));
  const Mat<double> p = low.projector().denseBasis();  // 8x2, left side
  CHECK((w - p * (p.transpose() * w)).norm() > 1e-3 * w.norm());
}

TEST_CASE("Fira: checkpoint resumes bit for bit across refreshes", "[gradient][fira]") {
  Fira<SVDBasis<float>> a;
  a.projector().setRank(4).setUpdateGap(3);
  a.setLearningRate(0.02).setWeightDecay(0.01);
  Mat<float> wa = gaussian<float>(40, 24, 1);
  for (int t = 0; t < 5; ++t) a.step(wa, fira_test::gradient<float>(40, 24, t));
  std::stringstream ss;
  a.save(ss);
  Fira<SVDBasis<float>> b;
  b.load(ss);
  CHECK(b.stepCount() == 5);
  Mat<float> wb = wa;
  for (int t = 5; t < 12; ++t) {
    const Mat<float> g = fira_test::gradient<float>(40, 24, t);
    a.step(wa, g);
    b.step(wb, g);
  }
  CHECK((wa - wb).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((a.firstMoment() - b.firstMoment()).cwiseAbs().maxCoeff() == 0.0f);
  CHECK(a.lastScale().size() == 40);  // right side: one factor per row
}

TEST_CASE("Fira: non-finite gradients and arguments", "[gradient][fira]") {
  Fira<SVDBasis<double>> opt;
  opt.projector().setRank(2);
  Mat<double> w = gaussian<double>(6, 9, 1);
  const Mat<double> w0 = w;
  Mat<double> g = gaussian<double>(6, 9, 2);
  g(0, 4) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(opt.step(w, g), Catch::Contains("'g'") && Catch::Contains("non-finite"));
  opt.setNonFinitePolicy(NonFinitePolicy::Skip);
  CHECK(opt.step(w, g) == StepOutcome::Skipped);
  CHECK(opt.skippedSteps() == 2);
  CHECK((w - w0).norm() == 0.0);
  CHECK_THROWS_WITH(opt.setLimiterGamma(0.99), Catch::Contains("limiterGamma") && Catch::Contains(">= 1"));
  CHECK_THROWS_WITH(opt.setLearningRate(std::nan("")), Catch::Contains("learningRate"));
  CHECK_THROWS_WITH(opt.setBetas(-0.1, 0.9), Catch::Contains("beta1"));
  CHECK(opt.options().limiterGamma == 1.01);
  Fira<SVDBasis<double>> full;
  full.projector().setRank(2).setProjectionType(ProjectionType::Full);
  CHECK_THROWS_WITH(full.step(w, gaussian<double>(6, 9, 3)), Catch::Contains("projectionType"));
}
