// Muon against an independent port of the reference update (KellerJordan/Muon, SingleDeviceMuon)
// over 12 steps; Moonlight's scale; checkpoint resume; non-finite gradients; argument checks.
#include "test_common.hpp"

#include <wproj/gradient/muon.hpp>

#include <sstream>

using namespace wproj;
using namespace wproj_test;

namespace muon_test {

// The reference update in double with general products: momentum.lerp_(g, 1−β);
// u = g.lerp_(momentum, β) (Nesterov) or momentum; zeropower_via_newtonschulz5(u, 5);
// u *= scale; p.mul_(1 − lr·wd); p.add_(u, −lr).
struct Reference {
  double lr = 0.02, beta = 0.95, wd = 0;
  bool nesterov = true, moonlight = false;
  Mat<double> m;

  static Mat<double> orthogonalise(const Mat<double>& g) {
    const double a = 3.4445, b = -4.7750, c = 2.0315;
    const bool tall = g.rows() > g.cols();
    Mat<double> x = tall ? Mat<double>(g.transpose()) : g;
    x /= x.norm() + 1e-7;
    for (int k = 0; k < 5; ++k) {
      const Mat<double> A = x * x.transpose();
      const Mat<double> B = b * A + c * (A * A);
      x = (a * x + B * x).eval();
    }
    return tall ? Mat<double>(x.transpose()) : x;
  }
  void step(Mat<double>& w, const Mat<double>& g) {
    if (m.size() == 0) m = Mat<double>::Zero(g.rows(), g.cols());
    m = m + (1 - beta) * (g - m);
    const Mat<double> u = nesterov ? Mat<double>(g + beta * (m - g)) : m;
    Mat<double> o = orthogonalise(u);
    const double m_ = double(g.rows()), n_ = double(g.cols());
    o *= moonlight ? 0.2 * std::sqrt(std::max(m_, n_)) : std::sqrt(std::max(1.0, m_ / n_));
    w *= 1 - lr * wd;
    w -= lr * o;
  }
};

}  // namespace muon_test

TEMPLATE_TEST_CASE("Muon: 12 steps equal a port of the reference update (row-major Map weights)", "[gradient][muon]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 5e-5 : 1e-12;
  struct Case {
    Index m, n;
    bool nesterov, moonlight;
    double wd;
  };
  for (const Case& cs : {Case{18, 40, true, false, 0.0}, Case{45, 17, true, false, 0.1}, Case{30, 22, false, true, 0.05}}) {
    INFO("shape " << cs.m << "x" << cs.n << " nesterov " << cs.nesterov << " moonlight " << cs.moonlight);
    Muon<T> opt;
    opt.setLearningRate(0.02).setWeightDecay(cs.wd).setNesterov(cs.nesterov);
    if (cs.moonlight) opt.setScaling(MuonScaling::MatchAdam);
    muon_test::Reference ref;
    ref.wd = cs.wd;
    ref.nesterov = cs.nesterov;
    ref.moonlight = cs.moonlight;
    RowMajorMat<T> storage = gaussian<T>(cs.m, cs.n, 3);
    Eigen::Map<RowMajorMat<T>> w(storage.data(), cs.m, cs.n);
    Mat<double> wr = storage.template cast<double>();
    for (int t = 0; t < 12; ++t) {
      // Gradients that drift slowly, as in training, so that the momentum matters.
      const Mat<T> g = (gaussian<T>(cs.m, cs.n, 100) + T(0.3) * gaussian<T>(cs.m, cs.n, 200 + std::uint64_t(t)));
      REQUIRE(opt.step(w, g) == StepOutcome::Applied);
      ref.step(wr, g.template cast<double>());
    }
    CHECK(opt.stepCount() == 12);
    CHECK((w.template cast<double>() - wr).cwiseAbs().maxCoeff() <= tol);
    CHECK((opt.momentum().template cast<double>() - ref.m).cwiseAbs().maxCoeff() <= tol);
    CHECK(opt.stateBytes() == std::size_t(cs.m * cs.n) * sizeof(T));
  }
}

TEST_CASE("Muon: the update scale rules", "[gradient][muon]") {
  Muon<double> opt;
  CHECK(opt.updateScale(100, 50) == Approx(std::sqrt(2.0)));
  CHECK(opt.updateScale(50, 100) == 1.0);
  opt.setScaling(MuonScaling::MatchAdam);
  CHECK(opt.updateScale(50, 100) == Approx(2.0));
  // Moonlight's scale gives the update the RMS ≈ 0.2 of AdamW's (singular values of NS ≈ 1).
  const Mat<double> g = gaussian<double>(64, 96, 5);
  Mat<double> w = Mat<double>::Zero(64, 96);
  opt.setLearningRate(1.0);
  opt.step(w, g);
  const double rms = w.norm() / std::sqrt(double(w.size()));
  CHECK(rms > 0.15);
  CHECK(rms < 0.25);
}

TEST_CASE("Muon: checkpoint resumes bit for bit", "[gradient][muon]") {
  Muon<float> a;
  a.setLearningRate(0.01).setWeightDecay(0.02).setMomentum(0.9);
  Mat<float> wa = gaussian<float>(20, 33, 1);
  for (int t = 0; t < 5; ++t) a.step(wa, gaussian<float>(20, 33, 50 + std::uint64_t(t)));
  std::stringstream ss;
  a.save(ss);
  Muon<float> b;
  b.load(ss);
  CHECK(b.options().momentum == 0.9);
  CHECK(b.stepCount() == 5);
  Mat<float> wb = wa;
  for (int t = 5; t < 12; ++t) {
    const Mat<float> g = gaussian<float>(20, 33, 50 + std::uint64_t(t));
    a.step(wa, g);
    b.step(wb, g);
  }
  CHECK((wa - wb).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((a.momentum() - b.momentum()).cwiseAbs().maxCoeff() == 0.0f);
  // A corrupted file is refused and leaves the object unchanged.
  std::stringstream full;
  a.save(full);
  std::string bytes = full.str();
  bytes.resize(bytes.size() - 7);
  std::stringstream cut(bytes);
  CHECK_THROWS_AS(b.load(cut), IoError);
  CHECK(b.stepCount() == 12);
}

TEST_CASE("Muon: non-finite gradients and arguments", "[gradient][muon]") {
  Muon<double> opt;
  Mat<double> w = gaussian<double>(6, 9, 1);
  const Mat<double> w0 = w;
  Mat<double> g = gaussian<double>(6, 9, 2);
  g(2, 3) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(opt.step(w, g), Catch::Contains("'g'") && Catch::Contains("non-finite"));
  opt.setNonFinitePolicy(NonFinitePolicy::Skip);
  CHECK(opt.step(w, g) == StepOutcome::Skipped);
  CHECK(opt.skippedSteps() == 2);
  CHECK((w - w0).norm() == 0.0);
  CHECK(opt.momentum().size() == 0);
  CHECK_THROWS_WITH(opt.step(w, Mat<double>::Ones(6, 8)), Catch::Contains("'g'") && Catch::Contains("6x9"));
  CHECK_THROWS_WITH(opt.setLearningRate(-1), Catch::Contains("learningRate") && Catch::Contains(">= 0"));
  CHECK_THROWS_WITH(opt.setMomentum(1.0), Catch::Contains("momentum") && Catch::Contains("[0, 1)"));
  CHECK_THROWS_WITH(opt.setWeightDecay(std::nan("")), Catch::Contains("weightDecay"));
  CHECK_THROWS_WITH(opt.setNewtonSchulzSteps(0), Catch::Contains("nsSteps"));
  CHECK_THROWS_WITH(opt.setNewtonSchulzCoefficients(3, std::numeric_limits<double>::infinity(), 2), Catch::Contains("nsB"));
  CHECK(opt.options().learningRate == 0.02);  // the failed setters left the options alone
}
