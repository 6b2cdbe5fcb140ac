// Newton–Schulz orthogonalisation: against the polar factor through the SVD (the scalar map of
// each singular value), against a plain-GEMM iteration, and its argument checks.
#include "test_common.hpp"

#include <wproj/linalg/newton_schulz.hpp>
#include <wproj/linalg/polar.hpp>

using namespace wproj;
using namespace wproj_test;

namespace ns_test {

// The iteration written with general products only (Muon's reference shape of the loop), in double.
inline Mat<double> plainNewtonSchulz(const Mat<double>& g, int steps, double a, double b, double c, double eps) {
  const bool tall = g.rows() > g.cols();
  Mat<double> x = tall ? Mat<double>(g.transpose()) : g;
  x /= g.norm() + eps;
  for (int k = 0; k < steps; ++k) {
    const Mat<double> A = x * x.transpose();
    const Mat<double> B = b * A + c * A * A;
    x = (a * x + B * x).eval();
  }
  return tall ? Mat<double>(x.transpose()) : x;
}

// The scalar map σ ↦ p(p(…p(σ))) that the iteration applies to each singular value.
inline double scalarMap(double s, int steps, double a, double b, double c) {
  for (int k = 0; k < steps; ++k) s = a * s + b * s * s * s + c * s * s * s * s * s;
  return s;
}

}  // namespace ns_test

TEMPLATE_TEST_CASE("newtonSchulz: equals the plain-GEMM iteration to rounding (wide, tall, row-major Map)", "[linalg][newton_schulz]",
                   float, double) {
  using T = TestType;
  const double a = 3.4445, b = -4.7750, c = 2.0315, e = 1e-7;
  for (auto shape : {std::pair<Index, Index>{24, 61}, std::pair<Index, Index>{57, 19}, std::pair<Index, Index>{16, 16}}) {
    const Mat<T> g = gaussian<T>(shape.first, shape.second, 7 + std::uint64_t(shape.first));
    const Mat<double> ref = ns_test::plainNewtonSchulz(g.template cast<double>(), 5, a, b, c, e);
    // Row-major storage mapped from a foreign buffer.
    RowMajorMat<T> rm = g;
    Eigen::Map<const RowMajorMat<T>> map(rm.data(), rm.rows(), rm.cols());
    NewtonSchulz<T> ns;
    Mat<T> out(g.rows(), g.cols());
    ns.compute(map, out);
    const double tol = std::is_same<T, float>::value ? 2e-4 : 1e-12;
    INFO("shape " << shape.first << "x" << shape.second);
    CHECK((out.template cast<double>() - ref).norm() <= tol * ref.norm());
    // On the same input the free function and a row-major destination agree with the class bit for bit.
    const Mat<T> outc = ns.compute(g);
    CHECK((outc.template cast<double>() - ref).norm() <= tol * ref.norm());
    const Mat<T> viaFn = newtonSchulz(g);
    CHECK((viaFn - outc).cwiseAbs().maxCoeff() == T(0));
    RowMajorMat<T> rout(g.rows(), g.cols());
    ns.compute(g, rout);
    CHECK((Mat<T>(rout) - outc).cwiseAbs().maxCoeff() == T(0));
  }
}

TEST_CASE("newtonSchulz: the polar factor's singular vectors with singular values in Muon's band", "[linalg][newton_schulz]") {
  const double a = 3.4445, b = -4.7750, c = 2.0315;
  // Singular values spread over two decades: each lands in the band [0.7, 1.2] after 5 steps.
  const Vec<double> sigma = geometricSpectrum(20, 100.0);
  const Mat<double> g = withSpectrum<double>(20, 45, sigma, 11);
  const Mat<double> o = newtonSchulz(g);
  // Oracle through the SVD: U diag(p⁵(σ/(‖G‖_F + ε))) Vᵀ.
  Eigen::JacobiSVD<Mat<double>> svd(g, Eigen::ComputeThinU | Eigen::ComputeThinV);
  Vec<double> mapped(svd.singularValues().size());
  for (Index i = 0; i < mapped.size(); ++i) mapped(i) = ns_test::scalarMap(svd.singularValues()(i) / (g.norm() + 1e-7), 5, a, b, c);
  const Mat<double> oracle = svd.matrixU() * mapped.asDiagonal() * svd.matrixV().transpose();
  CHECK((o - oracle).norm() <= 1e-10 * oracle.norm());
  // The singular values of the result are in the band; its distance to the polar factor is bounded by it.
  Eigen::JacobiSVD<Mat<double>> so(o);
  CHECK(so.singularValues().minCoeff() >= 0.65);
  CHECK(so.singularValues().maxCoeff() <= 1.2);
  const Mat<double> polar = polarFactor(g);
  const double worst = std::max(1.0 - so.singularValues().minCoeff(), so.singularValues().maxCoeff() - 1.0);
  CHECK(Eigen::JacobiSVD<Mat<double>>(o - polar).singularValues()(0) <= worst + 1e-10);
  // The classical convergent coefficients reach the polar factor itself.
  NewtonSchulz<double> classical;
  classical.setCoefficients(1.875, -1.25, 0.375).setSteps(60);
  const Mat<double> gw = withSpectrum<double>(20, 45, geometricSpectrum(20, 5.0), 12);
  CHECK((classical.compute(gw) - polarFactor(gw)).norm() <= 1e-9);
}

TEST_CASE("newtonSchulz: zero input, bad arguments", "[linalg][newton_schulz]") {
  NewtonSchulz<float> ns;
  const Mat<float> z = Mat<float>::Zero(4, 6);
  CHECK(ns.compute(z).cwiseAbs().maxCoeff() == 0.0f);
  CHECK_THROWS_AS(ns.setSteps(0), InvalidArgument);
  CHECK_THROWS_WITH(ns.setSteps(0), Catch::Contains("steps") && Catch::Contains(">= 1"));
  CHECK_THROWS_WITH(ns.setEpsilon(-1.0), Catch::Contains("eps"));
  CHECK_THROWS_WITH(ns.setCoefficients(1.0, std::nan(""), 0.0), Catch::Contains("'b'"));
  Mat<float> bad = Mat<float>::Ones(3, 5);
  bad(1, 2) = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(ns.compute(bad), Catch::Contains("'g'") && Catch::Contains("non-finite"));
  CHECK_THROWS_AS(ns.compute(Mat<float>(0, 3)), InvalidArgument);
  CHECK(ns.steps() == 5);  // the failed setters left the settings alone
}
