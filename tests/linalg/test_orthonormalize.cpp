// Tests of the block orthonormalisers: orthogonality to a small multiple of the unit roundoff and
// span preservation over condition numbers 1 … 1e15 (double) and 1 … 1e7 (float), validity ranges
// of the explicit methods, row-major Map input, rank-deficient and zero blocks, bad input.
// Every Eigen assertion in this file is routed to a counter that the tests read (Release builds
// compile eigen_assert out otherwise), so misuse such as coefficient access on a product
// expression is caught.
namespace wproj_test {
inline int& eigenAssertFailures() {
  static int count = 0;
  return count;
}
}  // namespace wproj_test
#define eigen_assert(x) \
  do { if (!(x)) ++::wproj_test::eigenAssertFailures(); } while (0)
#include "test_common.hpp"

#include <wproj/linalg/orthonormalize.hpp>
#include <wproj/linalg/symmetric_eigen.hpp>

#include <vector>

using namespace wproj_test;
using wproj::OrthoMethod;

namespace {

/// X = U diag(σ) Vᵀ (m×k) with σ geometric from 1 to 1/κ.
template <typename T>
Mat<T> conditioned(Index m, Index k, double cond, std::uint64_t seed) {
  return withSpectrum<T>(m, k, geometricSpectrum(k, cond), seed);
}

/// ‖(I − QQᵀ)X‖_F / ‖X‖_F in double: how much of X lies outside span(Q).
template <typename T>
double spanResidual(const Mat<T>& q, const Mat<T>& x) {
  const Mat<double> qd = q.template cast<double>(), xd = x.template cast<double>();
  const double nx = xd.norm();
  return nx == 0 ? 0.0 : (xd - qd * (qd.transpose() * xd)).norm() / nx;
}

// Measured maxima (docs/projections.md): ‖QᵀQ − I‖_F ≤ 6·u·√k and span residual ≤ 10·u for
// every method inside its range, m×k up to 300×60; the bounds leave a margin of ~3.
template <typename T>
double orthoBound(Index k) {
  return 20.0 * eps<T>() * std::sqrt(double(k));
}
template <typename T>
double spanBound(Index k) {
  return 30.0 * eps<T>() * std::sqrt(double(k));
}

template <typename T>
std::vector<double> conditionNumbers() {
  if (std::is_same<T, float>::value) return {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7};
  return {1, 1e2, 1e4, 1e6, 1e8, 1e10, 1e12, 1e13, 1e14, 1e15};
}

/// Largest κ at which an explicit method must succeed without falling back (measured ranges
/// with a margin: CholeskyQR2 needs κ ≲ u^{-1/2}, shifted CholeskyQR3 κ ≲ u^{-1}/(mk)).
template <typename T>
double validUpTo(OrthoMethod method) {
  const bool f = std::is_same<T, float>::value;
  switch (method) {
    case OrthoMethod::CholeskyQR2: return f ? 1e2 : 1e6;
    case OrthoMethod::ShiftedCholeskyQR3: return f ? 1e4 : 1e12;
    default: return f ? 1e7 : 1e15;
  }
}

}  // namespace

TEMPLATE_TEST_CASE("orthonormalize: orthogonal to O(u) and span preserved over condition numbers", "[ortho]",
                   float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const std::vector<std::pair<Index, Index>> shapes = {{120, 16}, {24, 24}};
  const std::vector<OrthoMethod> methods = {OrthoMethod::Auto, OrthoMethod::Householder, OrthoMethod::CholeskyQR2,
                                            OrthoMethod::ShiftedCholeskyQR3};
  std::uint64_t seed = 1;
  for (const auto& shape : shapes) {
    const Index m = shape.first, k = shape.second;
    for (double cond : conditionNumbers<T>()) {
      const Mat<T> x = conditioned<T>(m, k, cond, seed++);
      for (OrthoMethod method : methods) {
        INFO("m = " << m << ", k = " << k << ", kappa = " << cond << ", method = " << wproj::toString(method));
        Mat<T> q = x;
        const OrthoMethod used = wproj::orthonormalizeInPlace(q, method);
        INFO("used = " << wproj::toString(used));
        REQUIRE(q.allFinite());
        CHECK(orthoError(q) <= orthoBound<T>(k));
        CHECK(spanResidual(q, x) <= spanBound<T>(k));
        CHECK(double(wproj::orthogonalityError(q)) == Approx(orthoError(q)).margin(4 * eps<T>() * k));
        if (method != OrthoMethod::Auto && cond <= validUpTo<T>(method)) CHECK(used == method);
        if (method == OrthoMethod::Householder) CHECK(used == OrthoMethod::Householder);
        // Outside the Cholesky ranges the request falls back, never to a worse result.
        if (method == OrthoMethod::CholeskyQR2 && used != method) CHECK(used == OrthoMethod::Householder);
      }
    }
  }
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("orthonormalize: Auto picks the cheap method when it is safe", "[ortho]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  Mat<T> q = conditioned<T>(80, 10, 1.0, 20);
  CHECK(wproj::orthonormalizeInPlace(q) == OrthoMethod::CholeskyQR2);
  // At the top of the range the result still comes back orthonormal (whatever the method).
  const double worst = conditionNumbers<T>().back();
  Mat<T> hard = conditioned<T>(80, 10, worst, 21);
  const OrthoMethod used = wproj::orthonormalizeInPlace(hard);
  CHECK(used != OrthoMethod::CholeskyQR2);
  CHECK(orthoError(hard) <= orthoBound<T>(10));
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("orthonormalize: every method gives the same Q (diag R >= 0)", "[ortho]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const double cond = 10;
  const Mat<T> x = conditioned<T>(60, 8, cond, 30);
  const Mat<T> ref = wproj::orthonormalized(x, OrthoMethod::Householder);
  for (OrthoMethod method : {OrthoMethod::Auto, OrthoMethod::CholeskyQR2, OrthoMethod::ShiftedCholeskyQR3}) {
    INFO(wproj::toString(method));
    const Mat<T> q = wproj::orthonormalized(x, method);
    CHECK((q - ref).cwiseAbs().maxCoeff() <= 50 * eps<T>() * cond * 8);
    // Q R = X with R upper triangular: QᵀX is upper triangular with a positive diagonal.
    const Mat<T> r = q.transpose() * x;
    CHECK(r.template triangularView<Eigen::StrictlyLower>().toDenseMatrix().cwiseAbs().maxCoeff() <=
          50 * eps<T>() * x.norm());
    CHECK(r.diagonal().minCoeff() > T(0));
  }
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("orthonormalize: row-major Map input, in place", "[ortho]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const Mat<T> x = conditioned<T>(50, 7, 100.0, 40);
  for (OrthoMethod method : {OrthoMethod::Auto, OrthoMethod::Householder, OrthoMethod::CholeskyQR2,
                             OrthoMethod::ShiftedCholeskyQR3}) {
    INFO(wproj::toString(method));
    RowMajorMat<T> storage = x;
    Eigen::Map<RowMajorMat<T>> view(storage.data(), storage.rows(), storage.cols());
    wproj::orthonormalizeInPlace(view, method);
    const Mat<T> q = storage;
    CHECK(orthoError(q) <= orthoBound<T>(7));
    CHECK(spanResidual(q, x) <= spanBound<T>(7));
    CHECK((q - wproj::orthonormalized(x, method)).cwiseAbs().maxCoeff() <= 1e4 * eps<T>());
    // A const row-major Map as the source of orthonormalized().
    const Eigen::Map<const RowMajorMat<T>> cview(storage.data(), storage.rows(), storage.cols());
    CHECK(orthoError(wproj::orthonormalized(cview, method)) <= orthoBound<T>(7));
  }
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("orthonormalize: rank-deficient and zero blocks stay orthonormal", "[ortho]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const Index m = 40, k = 8;
  Mat<T> repeated = gaussian<T>(m, k, 50);
  repeated.col(3) = repeated.col(1);
  repeated.col(6) = T(2) * repeated.col(0) - repeated.col(5);
  Mat<T> zeroCol = gaussian<T>(m, k, 51);
  zeroCol.col(2).setZero();
  const Mat<T> rank2 = gaussian<T>(m, 2, 52) * gaussian<T>(2, k, 53);
  const std::vector<std::pair<const char*, Mat<T>>> blocks = {
      {"repeated columns", repeated}, {"zero column", zeroCol}, {"rank 2", rank2}, {"zero block", Mat<T>::Zero(m, k)}};
  for (const auto& b : blocks) {
    for (OrthoMethod method : {OrthoMethod::Auto, OrthoMethod::Householder, OrthoMethod::CholeskyQR2,
                               OrthoMethod::ShiftedCholeskyQR3}) {
      INFO(b.first << ", " << wproj::toString(method));
      Mat<T> q = b.second;
      wproj::orthonormalizeInPlace(q, method);
      REQUIRE(q.allFinite());
      CHECK(orthoError(q) <= orthoBound<T>(k));
      CHECK(spanResidual(q, b.second) <= spanBound<T>(k) * 10);
    }
  }
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("reorthonormalize: one pass near orthonormality, the full chain otherwise", "[ortho]", float, double) {
  using T = TestType;
  Mat<T> scratch;  // shared by every call below, over changing shapes
  for (Index k : {1, 17, 60}) {
    const Mat<T> q = randomOrthonormal<T>(300, k, 40 + std::uint64_t(k));
    // Almost orthonormal (‖XᵀX − I‖ ≈ 1e-3): one Cholesky-QR pass restores O(u).
    const Mat<T> near = q + T(1e-3 / std::sqrt(double(k))) * gaussian<T>(300, k, 50 + std::uint64_t(k)) / T(std::sqrt(300.0));
    CHECK(orthoError(near) > 1e3 * eps<T>());
    Mat<T> x = near;
    wproj::detail::reorthonormalize(x, &scratch);
    CHECK(orthoError(x) < orthoBound<T>(k));
    CHECK(spanResidual<T>(x, near) < spanBound<T>(k));
    // Far from orthonormal (κ = 1e2): the full chain, same guarantees.
    const Mat<T> far = conditioned<T>(300, k, 1e2, 60 + std::uint64_t(k));
    x = far;
    wproj::detail::reorthonormalize(x, &scratch);
    CHECK(orthoError(x) < orthoBound<T>(k));
    CHECK(spanResidual<T>(x, far) < 1e2 * spanBound<T>(k));
    // Without a caller's buffer: the same bits.
    Mat<T> y = near;
    x = near;
    wproj::detail::reorthonormalize(x, &scratch);
    wproj::detail::reorthonormalize(y);
    CHECK((x.array() == y.array()).all());
  }
}

TEMPLATE_TEST_CASE("gramInDouble: block-converted Gram matrices equal the double products, with a reused buffer",
                   "[ortho][gram]", float, double) {
  using T = TestType;
  Eigen::MatrixXd buffer, g;
  // Column Grams of tall blocks (1000 rows, several conversion blocks for s = 300) and row Grams of
  // wide ones, alternating shapes so the buffer is resized and reused.
  for (auto shape : std::vector<std::pair<Index, Index>>{{1000, 300}, {70, 5}, {1000, 300}, {2600, 40}}) {
    const Mat<T> x = gaussian<T>(shape.first, shape.second, 70 + std::uint64_t(shape.first + shape.second));
    const Mat<double> xd = x.template cast<double>();
    const Mat<double> cols = xd.transpose() * xd, rows = xd * xd.transpose();
    wproj::detail::gramInDouble(x, true, g, &buffer);
    CHECK((g - cols).norm() <= 1e-13 * cols.norm());
    CHECK((g - g.transpose()).norm() == 0);
    CHECK((wproj::detail::gramInDouble(x, true) - g).norm() == 0);
    const Mat<T> xt = x.transpose();
    wproj::detail::gramInDouble(xt, false, g, &buffer);
    CHECK((g - cols).norm() <= 1e-13 * cols.norm());
    wproj::detail::gramInDouble(x, false, g, &buffer);
    CHECK((g - rows).norm() <= 1e-13 * rows.norm());
  }
}

TEST_CASE("SymmetricEigen: a reused object matches a fresh one and diagonalises its input", "[ortho][eigen]") {
  wproj::detail::SymmetricEigen reused;
  for (Index n : {300, 12, 300, 64}) {
    const Mat<double> x = gaussian<double>(2 * n, n, 90 + std::uint64_t(n));
    const Mat<double> g = x.transpose() * x;
    reused.compute(g);
    const wproj::detail::SymmetricEigen fresh(g);
    REQUIRE(reused.info() == Eigen::Success);
    CHECK((reused.eigenvalues().array() == fresh.eigenvalues().array()).all());
    CHECK((reused.eigenvectors().array() == fresh.eigenvectors().array()).all());
    const Mat<double>& v = reused.eigenvectors();
    CHECK(orthoError(v) < 1e-12);
    CHECK((v * reused.eigenvalues().asDiagonal() * v.transpose() - g).norm() < 1e-12 * g.norm());
    for (Index i = 1; i < n; ++i) CHECK(reused.eigenvalues()(i) >= reused.eigenvalues()(i - 1));
  }
  Mat<double> bad = Mat<double>::Identity(40, 40);
  bad(3, 3) = std::numeric_limits<double>::quiet_NaN();
  CHECK(reused.compute(bad).info() == Eigen::NumericalIssue);
}

TEMPLATE_TEST_CASE("orthonormalize: bad input", "[ortho]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  Mat<T> wide = gaussian<T>(3, 5, 60);
  CHECK_THROWS_AS(wproj::orthonormalizeInPlace(wide), wproj::InvalidArgument);
  CHECK_THROWS_WITH(wproj::orthonormalized(wide, OrthoMethod::Householder),
                    Catch::Contains("x.rows()") && Catch::Contains(">= x.cols() = 5"));
  Mat<T> x = gaussian<T>(10, 3, 61);
  const Mat<T> before = x;
  x(4, 2) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_WITH(wproj::orthonormalizeInPlace(x), Catch::Contains("non-finite") && Catch::Contains("(4, 2)"));
  x(4, 2) = std::numeric_limits<T>::infinity();
  CHECK_THROWS_AS(wproj::orthonormalizeInPlace(x, OrthoMethod::CholeskyQR2), wproj::InvalidArgument);
  // An empty block is left alone.
  Mat<T> none(10, 0);
  CHECK_NOTHROW(wproj::orthonormalizeInPlace(none));
  CHECK(wproj::orthogonalityError(none) == T(0));
  // A square orthogonal matrix is a fixed point (up to rounding).
  Mat<T> q = randomOrthonormal<T>(12, 12, 62);
  const Mat<T> q0 = q;
  wproj::orthonormalizeInPlace(q);
  CHECK((q - q0).cwiseAbs().maxCoeff() <= 100 * eps<T>());
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}
