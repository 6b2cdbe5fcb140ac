#include "test_common.hpp"

#include <wproj/linalg/truncated_svd.hpp>

using namespace wproj_test;
using wproj::RankRule;
using wproj::SVDMethod;
using wproj::TruncatedSVD;

TEMPLATE_TEST_CASE("TruncatedSVD matches BDCSVD on tall, wide and square inputs", "[truncated_svd]", float, double) {
  using T = TestType;
  const double tolS = std::is_same<T, float>::value ? 2e-5 : 1e-12;
  const Index shapes[][2] = {{150, 60}, {60, 150}, {90, 90}};
  for (const auto& sh : shapes) {
    const Index m = sh[0], n = sh[1], r = std::min(m, n);
    const Vec<double> sigma = geometricSpectrum(r, 1e2);
    const Mat<T> a = withSpectrum<T>(m, n, sigma, 11);
    for (SVDMethod method : {SVDMethod::Auto, SVDMethod::Bdc, SVDMethod::Gram}) {
      CAPTURE(m, n, wproj::toString(method));
      TruncatedSVD<Mat<T>> svd;
      svd.setRank(12).setMethod(method).compute(a);
      REQUIRE(svd.info() == Eigen::Success);
      REQUIRE(svd.rank() == 12);
      CHECK(svd.matrixU().rows() == m);
      CHECK(svd.matrixV().rows() == n);
      // Singular values against the known spectrum (relative to σ_0 = 1).
      CHECK((svd.singularValues().template cast<double>() - sigma.head(12)).cwiseAbs().maxCoeff() < tolS * 10);
      CHECK(orthoError(svd.matrixU()) < 50 * eps<T>() * std::sqrt(double(m)));
      CHECK(orthoError(svd.matrixV()) < 50 * eps<T>() * std::sqrt(double(n)));
      // Reconstruction error equals the optimal truncation error.
      const double err = (a.template cast<double>() - svd.reconstruct().template cast<double>()).norm();
      CHECK(err <= tailNorm(sigma, 12) * (1 + 1e-4) + 100 * eps<T>());
      // Same subspaces as BDCSVD of the same data.
      Eigen::BDCSVD<Mat<T>> ref(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
      CHECK(overlap(svd.matrixU(), ref.matrixU().leftCols(12)) > 1 - 1e-3);
      CHECK(overlap(svd.matrixV(), ref.matrixV().leftCols(12)) > 1 - 1e-3);
    }
  }
}

TEMPLATE_TEST_CASE("TruncatedSVD reads row-major maps without changing the result", "[truncated_svd]", float, double) {
  using T = TestType;
  const Mat<T> a = gaussian<T>(70, 40, 3);
  RowMajorMat<T> rm = a;
  Eigen::Map<const RowMajorMat<T>> map(rm.data(), rm.rows(), rm.cols());
  for (SVDMethod method : {SVDMethod::Bdc, SVDMethod::Gram}) {
    TruncatedSVD<Mat<T>> x, y;
    x.setRank(5).setMethod(method).compute(a);
    y.setRank(5).setMethod(method).compute(map);
    CHECK((x.singularValues() - y.singularValues()).norm() <= 1e3 * eps<T>() * x.singularValues()(0));
    CHECK((x.matrixU() - y.matrixU()).norm() < 1e-2);  // same signs thanks to the convention
  }
  // A transposed expression is also accepted.
  TruncatedSVD<Mat<T>> t(a.transpose(), 5);
  TruncatedSVD<Mat<T>> d(a, 5);
  CHECK((t.singularValues() - d.singularValues()).norm() <= 1e3 * eps<T>() * d.singularValues()(0));
  CHECK(overlap(t.matrixU(), d.matrixV()) > 1 - 1e-4);
}

TEMPLATE_TEST_CASE("TruncatedSVD: rank >= min(m,n), rank deficiency and zero matrices", "[truncated_svd]", float, double) {
  using T = TestType;
  for (SVDMethod method : {SVDMethod::Auto, SVDMethod::Bdc, SVDMethod::Gram}) {
    CAPTURE(wproj::toString(method));
    // rank larger than min(m,n) is clamped.
    const Mat<T> a = gaussian<T>(30, 12, 5);
    TruncatedSVD<Mat<T>> svd;
    svd.setRank(50).setMethod(method).compute(a);
    CHECK(svd.rank() == 12);
    CHECK((a - svd.reconstruct()).norm() < 1e3 * eps<T>() * a.norm());

    // Rank-3 matrix, rank 6 requested: orthonormal factors, three (near) zero singular values.
    Vec<double> s3(3);
    s3 << 3, 2, 1;
    const Mat<T> low = withSpectrum<T>(40, 25, s3, 8);
    svd.setRank(6).compute(low);
    REQUIRE(svd.rank() == 6);
    CHECK(svd.matrixU().allFinite());
    CHECK(svd.matrixV().allFinite());
    CHECK(orthoError(svd.matrixU()) < 1e3 * eps<T>());
    CHECK(orthoError(svd.matrixV()) < 1e3 * eps<T>());
    CHECK(std::abs(double(svd.singularValues()(2)) - 1.0) < 1e-4);
    CHECK(double(svd.singularValues()(3)) < 1e-3);

    // Zero matrix: no NaN, orthonormal factors, zero values; tolerance rules select nothing.
    const Mat<T> zero = Mat<T>::Zero(20, 9);
    svd.setRank(4).compute(zero);
    CHECK(svd.rank() == 4);
    CHECK(svd.singularValues().isZero());
    CHECK(svd.matrixU().allFinite());
    CHECK(orthoError(svd.matrixU()) < 1e3 * eps<T>());
    CHECK(orthoError(svd.matrixV()) < 1e3 * eps<T>());
    svd.setRankRule(RankRule::relativeTolerance(1e-3)).compute(zero);
    CHECK(svd.rank() == 0);
    CHECK(svd.reconstruct().isZero());
  }
}

TEMPLATE_TEST_CASE("TruncatedSVD rank rules pick the rank from the computed spectrum", "[truncated_svd]", float, double) {
  using T = TestType;
  Vec<double> s(6);
  s << 4, 3, 2, 1, 0.5, 0.25;
  const Mat<T> a = withSpectrum<T>(50, 30, s, 21);
  TruncatedSVD<Mat<T>> svd;
  // energies: 16, 25, 29, 30, 30.25, 30.3125 of 30.3125
  svd.setRankRule(RankRule::energy(0.9)).compute(a);  // 27.28 → k = 3
  CHECK(svd.rank() == 3);
  svd.setRankRule(RankRule::relativeTolerance(0.2)).compute(a);  // > 0.8 → 4
  CHECK(svd.rank() == 4);
  svd.setRankRule(RankRule::absoluteTolerance(0.3)).compute(a);  // > 0.3 → 5
  CHECK(svd.rank() == 5);
  svd.setRankRule(RankRule::sumFraction(0.5)).compute(a);  // sums 4, 7 of 10.75 → k = 2
  CHECK(svd.rank() == 2);
  svd.setRankRule(RankRule::energy(1.0).withMaxRank(4)).compute(a);
  CHECK(svd.rank() == 4);
  svd.setRankRule(RankRule::all()).compute(a);
  CHECK(svd.rank() == 30);
}

TEST_CASE("RankRule on hand-computed spectra", "[truncated_svd][rank_rule]") {
  Eigen::VectorXd s(5);
  s << 10, 5, 3, 1, 0;
  // squares 100, 25, 9, 1, 0 (total 135): cumulative 100, 125, 134, 135.
  CHECK(RankRule::energy(0.5).select(s) == 1);
  CHECK(RankRule::energy(100.0 / 135.0).select(s) == 1);
  CHECK(RankRule::energy(0.9).select(s) == 2);
  CHECK(RankRule::energy(0.99).select(s) == 3);
  CHECK(RankRule::energy(1.0).select(s) == 4);
  // sums 10, 15, 18, 19 of 19.
  CHECK(RankRule::sumFraction(0.5).select(s) == 1);
  CHECK(RankRule::sumFraction(0.6).select(s) == 2);
  CHECK(RankRule::sumFraction(0.9).select(s) == 3);
  CHECK(RankRule::sumFraction(0.95).select(s) == 4);
  CHECK(RankRule::sumFraction(1.0).select(s) == 4);
  CHECK(RankRule::absoluteTolerance(3.0).select(s) == 2);  // strictly greater
  CHECK(RankRule::absoluteTolerance(0.0).select(s) == 4);
  CHECK(RankRule::relativeTolerance(0.1).select(s) == 3);  // > 1
  CHECK(RankRule::relativeTolerance(0.35).select(s) == 2);  // > 3.5
  CHECK(RankRule::relativeTolerance(0.05).select(s) == 4);
  CHECK(RankRule::fixed(3).select(s) == 3);
  CHECK(RankRule::fixed(9).select(s) == 5);
  CHECK(RankRule::all().select(s) == 5);
  CHECK(RankRule::relativeTolerance(0.0).withMaxRank(2).select(s) == 2);
  CHECK(RankRule::energy(0.9).describe() == "energy(0.90000000000000002)");
  // Zero and empty spectra.
  const Eigen::VectorXd z = Eigen::VectorXd::Zero(3);
  CHECK(RankRule::energy(0.9).select(z) == 0);
  CHECK(RankRule::sumFraction(0.5).select(z) == 0);
  CHECK(RankRule::relativeTolerance(0.1).select(z) == 0);
  CHECK(RankRule::fixed(2).select(z) == 2);
  CHECK(RankRule::energy(0.9).select(Eigen::VectorXd()) == 0);
  // Float spectra work too.
  Eigen::VectorXf sf = s.cast<float>();
  CHECK(RankRule::energy(0.9).select(sf) == 2);
}

TEST_CASE("RankRule and TruncatedSVD reject invalid arguments", "[truncated_svd][errors]") {
  using wproj::InvalidArgument;
  CHECK_THROWS_AS(RankRule::fixed(0), InvalidArgument);
  CHECK_THROWS_AS(RankRule::energy(0.0), InvalidArgument);
  CHECK_THROWS_AS(RankRule::energy(1.5), InvalidArgument);
  CHECK_THROWS_AS(RankRule::energy(std::nan("")), InvalidArgument);
  CHECK_THROWS_AS(RankRule::sumFraction(-0.1), InvalidArgument);
  CHECK_THROWS_AS(RankRule::absoluteTolerance(-1.0), InvalidArgument);
  CHECK_THROWS_AS(RankRule::relativeTolerance(2.0), InvalidArgument);
  CHECK_THROWS_AS(RankRule::all().withMaxRank(0), InvalidArgument);
  Eigen::VectorXd unsorted(3);
  unsorted << 1, 2, 0;
  CHECK_THROWS_AS(RankRule::all().select(unsorted), InvalidArgument);
  Eigen::VectorXd negative(2);
  negative << 1, -1;
  CHECK_THROWS_AS(RankRule::all().select(negative), InvalidArgument);

  TruncatedSVD<Eigen::MatrixXd> svd;
  CHECK_THROWS_AS(svd.setRank(0), InvalidArgument);
  CHECK_THROWS_AS(svd.compute(Eigen::MatrixXd(0, 3)), InvalidArgument);
  Eigen::MatrixXd a = Eigen::MatrixXd::Ones(4, 3);
  a(2, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(svd.compute(a), InvalidArgument);
  a(2, 1) = std::numeric_limits<double>::infinity();
  try {
    svd.compute(a);
    FAIL("expected an exception");
  } catch (const InvalidArgument& e) {
    CHECK(std::string(e.what()).find("non-finite") != std::string::npos);
  }
}

TEMPLATE_TEST_CASE("TruncatedSVD sign convention is deterministic", "[truncated_svd][signs]", float, double) {
  using T = TestType;
  const Mat<T> a = gaussian<T>(45, 35, 9);
  for (SVDMethod method : {SVDMethod::Bdc, SVDMethod::Gram}) {
    TruncatedSVD<Mat<T>> x, y;
    x.setRank(6).setMethod(method).compute(a);
    y.setRank(6).setMethod(method).compute(-a);  // singular vectors of −A differ by a sign
    for (Index j = 0; j < 6; ++j) {
      Index i = 0;
      x.matrixU().col(j).cwiseAbs().maxCoeff(&i);
      CHECK(x.matrixU()(i, j) > 0);
      y.matrixU().col(j).cwiseAbs().maxCoeff(&i);
      CHECK(y.matrixU()(i, j) > 0);
    }
    // Same U for A and −A (the convention fixes U), V flips.
    CHECK((x.matrixU() - y.matrixU()).norm() < 1e-2);
    CHECK((x.matrixV() + y.matrixV()).norm() < 1e-2);
  }
  // Bdc and Gram agree vector by vector (well separated spectrum).
  Vec<double> s(5);
  s << 5, 4, 3, 2, 1;
  const Mat<T> b = withSpectrum<T>(60, 40, s, 4);
  TruncatedSVD<Mat<T>> p, g;
  p.setRank(5).setMethod(SVDMethod::Bdc).compute(b);
  g.setRank(5).setMethod(SVDMethod::Gram).compute(b);
  CHECK((p.matrixU() - g.matrixU()).norm() < (std::is_same<T, float>::value ? 1e-3 : 1e-9));
  CHECK((p.matrixV() - g.matrixV()).norm() < (std::is_same<T, float>::value ? 1e-3 : 1e-9));
}

TEST_CASE("TruncatedSVD Auto avoids the Gram route when the kept spectrum is too wide", "[truncated_svd]") {
  // σ_k/σ_0 = 1e-8 in double: Gram would lose all accuracy in σ_k; Auto must use BDCSVD.
  const Vec<double> s = geometricSpectrum(20, 1e8);
  const Mat<double> a = withSpectrum<double>(200, 20, s, 2);
  TruncatedSVD<Mat<double>> svd;
  svd.setRank(20).compute(a);
  CHECK(svd.methodUsed() == SVDMethod::Bdc);
  CHECK(std::abs(svd.singularValues()(19) / s(19) - 1.0) < 1e-6);
  svd.setRank(5).compute(a);  // σ_4/σ_0 ≈ 0.02: Gram is fine
  CHECK(svd.methodUsed() == SVDMethod::Gram);
  CHECK(std::abs(svd.singularValues()(4) / s(4) - 1.0) < 1e-10);
}
