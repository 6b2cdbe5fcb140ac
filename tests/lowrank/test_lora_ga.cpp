#include "test_common.hpp"

#include <wproj/lowrank/lora_ga.hpp>

#include <vector>

using namespace wproj_test;
using wproj::LoraGaDirection;
using wproj::LoraGaInit;
using wproj::LoraGaScale;
using wproj::LoraSolver;

namespace {

/// The best rank-k approximation of x by Eigen's BDCSVD in double (the independent oracle).
template <typename T>
Mat<double> bestRankKGa(const Mat<T>& x, Index k) {
  Eigen::BDCSVD<Mat<double>> svd(x.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  return svd.matrixU().leftCols(k) * svd.singularValues().head(k).asDiagonal() *
         svd.matrixV().leftCols(k).transpose();
}

/// The first-order change of s·B·A after one plain gradient step of size η on A and B, for a
/// layer y = (W + s·B·A)x whose weight gradient is G: ∂L/∂A = s·BᵀG, ∂L/∂B = s·G·Aᵀ, so
/// Δ(s·B·A) = s·(ΔB·A + B·ΔA) + O(η²) = −η·s²·(G·AᵀA + B·BᵀG) + O(η²).
template <typename T>
Mat<double> firstStepDelta(const Mat<T>& a, const Mat<T>& b, const Mat<T>& g, double s, double eta) {
  const Mat<double> ad = a.template cast<double>(), bd = b.template cast<double>(), gd = g.template cast<double>();
  const Mat<double> dA = -eta * s * (bd.transpose() * gd);
  const Mat<double> dB = -eta * s * (gd * ad.transpose());
  return s * (dB * ad + bd * dA);
}

}  // namespace

TEMPLATE_TEST_CASE("LoRA-GA: W + s·B·A equals W at step 0", "[lora_ga]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-5 : 1e-13;
  const Mat<T> w0 = gaussian<T>(60, 40, 11);
  const Mat<T> g = gaussian<T>(60, 40, 12);
  for (auto mode : {LoraGaScale::Stable, LoraGaScale::GradientDescent, LoraGaScale::Unit}) {
    LoraGaInit<T> ga;
    ga.setRank(6).setAlpha(12).setScaleMode(mode).compute(g);
    Mat<T> w = w0;
    ga.offsetWeight(w);
    REQUIRE((w - w0).norm() > 1e-3 * w0.norm());  // the offset is real
    const Mat<T> adapted = w + ga.offset();
    CHECK((adapted - w0).norm() <= tol * w0.norm());
  }
}

TEMPLATE_TEST_CASE("LoRA-GA: the first step of s·B·A is the best rank-2r step of the gradient", "[lora_ga]", float,
                   double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 2e-4 : 1e-10;
  struct Case { Index m, n, r; };
  const Case cases[] = {{80, 50, 5}, {50, 80, 5}, {64, 64, 8}};
  for (const auto& c : cases) {
    // Distinct singular values so the rank-2r component is unique.
    const Index k = std::min(c.m, c.n);
    const Vec<double> sigma = geometricSpectrum(k, 1e3);
    const Mat<T> g = withSpectrum<T>(c.m, c.n, sigma, 21 + c.m);
    const Mat<double> best = bestRankKGa(g, 2 * c.r);
    const double eta = 1e-3, alpha = 16.0, s = alpha / double(c.r);
    for (auto dir : {LoraGaDirection::ArB2r, LoraGaDirection::A2rBr, LoraGaDirection::ArBr}) {
      for (auto mode : {LoraGaScale::Stable, LoraGaScale::GradientDescent, LoraGaScale::Unit}) {
        CAPTURE(c.m, c.n, c.r, int(dir), int(mode));
        LoraGaInit<T> ga;
        ga.setRank(c.r).setAlpha(alpha).setDirection(dir).setScaleMode(mode).setStableGamma(9).compute(g);
        REQUIRE(ga.matrixA().rows() == c.r);
        REQUIRE(ga.matrixA().cols() == c.n);
        REQUIRE(ga.matrixB().rows() == c.m);
        REQUIRE(ga.matrixB().cols() == c.r);
        double cc = 1.0;
        if (mode == LoraGaScale::Stable) cc = std::pow(double(c.m), 0.25) / 3.0;
        if (mode == LoraGaScale::GradientDescent) cc = 1.0 / s;
        CHECK(ga.factorScale(c.m) == Approx(cc).epsilon(1e-12));
        const Mat<double> expected = -eta * s * s * cc * cc * best;
        const Mat<double> got = firstStepDelta<T>(ga.matrixA(), ga.matrixB(), g, s, eta);
        CHECK((got - expected).norm() <= tol * expected.norm());
      }
    }
  }
}

TEMPLATE_TEST_CASE("LoRA-GA: the randomized solver matches the exact one on a decaying spectrum", "[lora_ga]", float,
                   double) {
  using T = TestType;
  const Index m = 300, n = 280, r = 4;
  // A gradient whose top 2r directions stand out (σ_2r / σ_2r+1 = 10), as in fine-tuning.
  Vec<double> sigma = geometricSpectrum(n, 1e4);
  sigma.head(2 * r) = 100.0 * geometricSpectrum(2 * r, 10.0) * sigma(2 * r);
  const Mat<T> g = withSpectrum<T>(m, n, sigma, 77);
  const Mat<double> best = bestRankKGa(g, 2 * r);
  LoraGaInit<T> ga;
  ga.setRank(r).setScaleMode(LoraGaScale::GradientDescent).setSolver(LoraSolver::Randomized).setSeed(3).compute(g);
  REQUIRE(ga.info() == Eigen::Success);
  const double s = ga.scale();
  const Mat<double> got = firstStepDelta<T>(ga.matrixA(), ga.matrixB(), g, s, 1.0);
  CHECK((got + best).norm() <= 1e-3 * best.norm());
  // Row-major input (a PyTorch buffer) gives the same factors.
  const RowMajorMat<T> gr = g;
  LoraGaInit<T> gb;
  gb.setRank(r).setScaleMode(LoraGaScale::GradientDescent).setSolver(LoraSolver::Randomized).setSeed(3).compute(gr);
  CHECK((gb.offset() - ga.offset()).norm() <= 1e-4 * ga.offset().norm());
}

TEMPLATE_TEST_CASE("LoRA-GA: averaged gradients and factors", "[lora_ga]", float, double) {
  using T = TestType;
  std::vector<Mat<T>> gs = {gaussian<T>(30, 20, 1), gaussian<T>(30, 20, 2), gaussian<T>(30, 20, 3)};
  const Mat<T> mean = wproj::averageGradients(gs);
  const Mat<double> oracle = (gs[0].template cast<double>() + gs[1].template cast<double>() +
                              gs[2].template cast<double>()) / 3.0;
  CHECK((mean.template cast<double>() - oracle).norm() <= 10 * eps<T>() * oracle.norm());
  LoraGaInit<T> ga;
  ga.setRank(3).compute(mean);
  const auto f = ga.factors();
  CHECK(f.rank() == 3);
  CHECK(f.scale == Approx(16.0 / 3.0));
  CHECK((f.delta() - ga.offset()).norm() <= 10 * eps<T>() * ga.offset().norm());
}

TEST_CASE("LoRA-GA: bad knobs and inputs name the argument", "[lora_ga]") {
  using wproj::InvalidArgument;
  LoraGaInit<double> ga;
  CHECK_THROWS_WITH(ga.setRank(0), Catch::Contains("'r' = 0"));
  CHECK_THROWS_WITH(ga.setAlpha(0.0), Catch::Contains("'alpha'"));
  CHECK_THROWS_AS(ga.setAlpha(std::nan("")), InvalidArgument);
  CHECK_THROWS_WITH(ga.setStableGamma(-1.0), Catch::Contains("'gamma' = -1"));
  CHECK_THROWS_WITH(ga.setPowerIterations(-1), Catch::Contains("'q' = -1"));
  ga.setRank(6);
  CHECK_THROWS_WITH(ga.compute(Mat<double>::Ones(20, 11)), Catch::Contains("2r <= min(m, n) = 11"));
  Mat<double> g = gaussian<double>(20, 15, 4);
  g(3, 2) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(ga.compute(g), Catch::Contains("non-finite"));
  ga.compute(gaussian<double>(20, 15, 5));
  Mat<double> w = Mat<double>::Zero(15, 20);
  CHECK_THROWS_WITH(ga.offsetWeight(w), Catch::Contains("20x15"));
  CHECK_THROWS_AS(wproj::averageGradients(std::vector<Mat<double>>{}), InvalidArgument);
  CHECK_THROWS_AS(wproj::averageGradients(std::vector<Mat<double>>{Mat<double>::Zero(2, 3), Mat<double>::Zero(3, 2)}),
                  InvalidArgument);
}
