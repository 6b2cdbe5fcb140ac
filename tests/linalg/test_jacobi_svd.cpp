#include "test_common.hpp"

#include <wproj/linalg/jacobi_svd.hpp>
#include <wproj/linalg/randomized_svd.hpp>

using namespace wproj_test;
using wproj::RandomizedSVD;

namespace {

/// Largest |σ_i − σ_i'| over the common length, divided by σ_0'.
template <typename VA, typename VB>
double spectrumGap(const VA& a, const VB& b) {
  const Index n = std::min(a.size(), b.size());
  double worst = 0;
  for (Index i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(a(i)) - double(b(i))));
  return worst / double(b(0));
}

}  // namespace

TEMPLATE_TEST_CASE("jacobiSvd of a square matrix matches BDCSVD to rounding, zero singular values included", "[linalg][svd]",
                   float, double) {
  using T = TestType;
  const double spread = std::is_same<T, float>::value ? 1e-7 : 1e-12;
  for (Index n : {1, 7, 40}) {
    Vec<double> sigma = geometricSpectrum(n, 1.0 / spread);
    if (n > 2) sigma.tail(2).setZero();  // rank-deficient: U must still be completed
    const Mat<T> a = withSpectrum<T>(n, n, sigma, 11 + std::uint64_t(n));
    for (bool preconditioned : {false, true}) {
      Eigen::MatrixXd w;
      if (preconditioned) {
        const Eigen::MatrixXd ad = a.template cast<double>();
        Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(ad.transpose() * ad);
        w = eig.eigenvectors();
      }
      const wproj::detail::JacobiSVDResult r = wproj::detail::jacobiSvd(a, preconditioned ? &w : nullptr, eps<T>());
      CHECK(r.info == Eigen::Success);
      Eigen::BDCSVD<Mat<T>> ref(a);
      const Vec<T> refS = ref.singularValues();
      if (refS(0) > 0) CHECK(spectrumGap(r.s, refS) <= 20.0 * eps<T>() * std::sqrt(double(n)));
      for (Index i = 1; i < n; ++i) CHECK(r.s(i) <= r.s(i - 1));
      CHECK(orthoError(r.u) <= (2.0 * eps<T>() + 1e-13) * double(n));
      CHECK(orthoError(r.v) <= 1e-12 * double(n));
      const Eigen::MatrixXd rec = r.u * r.s.asDiagonal() * r.v.transpose();
      CHECK((rec - a.template cast<double>()).norm() <= 1e-12 * std::max(1.0, a.template cast<double>().norm()));
    }
  }
  // The zero matrix: σ = 0 and orthonormal U, V.
  const wproj::detail::JacobiSVDResult z = wproj::detail::jacobiSvd(Mat<T>::Zero(5, 5), nullptr, eps<T>());
  CHECK(z.s.norm() == 0.0);
  CHECK(orthoError(z.u) <= 1e-14);
  CHECK(orthoError(z.v) <= 1e-14);
}

TEMPLATE_TEST_CASE("RandomizedSVD's wide-spectrum route matches BDCSVD of the same matrix to rounding", "[linalg][svd]",
                   float, double) {
  using T = TestType;
  // σ spread far beyond the Gram route's cut (3e-5 in float, 1e-3 in double), so the small SVD
  // runs through Z = PR and the Jacobi SVD of R; the rank is within the sketch so the range is exact.
  const double spread = std::is_same<T, float>::value ? 1e-7 : 1e-12;
  const Index m = 150, n = 90, r = 20;
  for (bool tall : {true, false}) {
    const Mat<T> a = tall ? withSpectrum<T>(m, n, geometricSpectrum(r, 1.0 / spread), 5)
                          : withSpectrum<T>(n, m, geometricSpectrum(r, 1.0 / spread), 6);
    for (bool krylov : {false, true}) {
      RandomizedSVD<Mat<T>> svd;
      svd.setRank(r).setOversampling(6).setPowerIterations(1).setBlockKrylov(krylov).setSeed(3).compute(a);
      REQUIRE_FALSE(svd.usedExact());
      REQUIRE(svd.rank() == r);
      Eigen::BDCSVD<Mat<T>> ref(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
      const Vec<T> refS = ref.singularValues().head(r);
      CHECK(spectrumGap(svd.singularValues(), refS) <= 50.0 * eps<T>());
      // Same matrix to rounding, and orthonormal factors.
      const Mat<double> ad = a.template cast<double>();
      CHECK((svd.reconstruct().template cast<double>() - ad).norm() <= 50.0 * eps<T>() * ad.norm());
      CHECK(orthoError(svd.matrixU()) <= 50.0 * eps<T>() * double(r));
      CHECK(orthoError(svd.matrixV()) <= 50.0 * eps<T>() * double(r));
      // The leading, well separated vectors agree with BDCSVD's (σ ratio 0.43 between neighbours).
      for (Index i = 0; i < 3; ++i) {
        const double cu = std::abs(svd.matrixU().col(i).template cast<double>().dot(ref.matrixU().col(i).template cast<double>()));
        CHECK(cu >= 1.0 - 1e3 * eps<T>());
      }
    }
  }
}

TEMPLATE_TEST_CASE("RandomizedSVD's exact route (sketch as large as A) matches BDCSVD", "[linalg][svd]", float, double) {
  using T = TestType;
  const double spread = std::is_same<T, float>::value ? 1e-7 : 1e-12;
  for (bool tall : {true, false}) {
    const Index m = tall ? 40 : 25, n = tall ? 25 : 40;
    const Mat<T> a = withSpectrum<T>(m, n, geometricSpectrum(25, 1.0 / spread), 9);
    RandomizedSVD<Mat<T>> svd(a, 25);
    REQUIRE(svd.usedExact());
    Eigen::BDCSVD<Mat<T>> ref(a);
    CHECK(spectrumGap(svd.singularValues(), Vec<T>(ref.singularValues())) <= 20.0 * eps<T>());
    const Mat<double> ad = a.template cast<double>();
    CHECK((svd.reconstruct().template cast<double>() - ad).norm() <= 20.0 * eps<T>() * ad.norm());
    CHECK(orthoError(svd.matrixU()) <= 20.0 * eps<T>() * 25.0);
    CHECK(orthoError(svd.matrixV()) <= 20.0 * eps<T>() * 25.0);
  }
}
