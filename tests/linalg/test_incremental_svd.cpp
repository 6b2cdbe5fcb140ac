#include "test_common.hpp"

#include <wproj/linalg/incremental_svd.hpp>

#include <vector>

using namespace wproj_test;
using wproj::IncrementalSVD;

namespace {

template <typename T>
Vec<double> exactValues(const Mat<T>& x) {
  Eigen::BDCSVD<Mat<double>> svd(x.template cast<double>());
  return svd.singularValues();
}

}  // namespace

TEMPLATE_TEST_CASE("IncrementalSVD tracks a recomputed SVD over 100 appended columns", "[incremental_svd]", float, double) {
  using T = TestType;
  const Index m = 50, rank = 6;
  // Columns drawn from a fixed rank-6 column space: the tracked rank stays 6 and nothing is lost.
  const Mat<T> basis = randomOrthonormal<T>(m, rank, 3);
  const Mat<T> coeff = gaussian<T>(rank, 100, 4);
  Mat<T> stream = basis * coeff;
  for (Index i = 0; i < rank; ++i) stream.row(i) *= T(1) + T(i);  // unequal directions
  IncrementalSVD<Mat<T>> inc;
  inc.setMaxRank(10).setReorthonormalizationPeriod(25).initialize(m, 0);
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  for (Index j = 0; j < 100; ++j) {
    inc.appendColumns(stream.col(j));
    if ((j + 1) % 20 == 0) {
      const Mat<T> seen = stream.leftCols(j + 1);
      const Vec<double> s = exactValues(seen);
      const Index r = std::min<Index>(rank, j + 1);
      REQUIRE(inc.rank() == r);
      CHECK((inc.singularValues().template cast<double>() - s.head(r)).norm() <= tol * s(0));
      CHECK((inc.reconstruct() - seen).template cast<double>().norm() <= tol * s(0));
      CHECK(inc.cols() == j + 1);
      CHECK(inc.orthogonalityError() < 1e3 * eps<T>());
    }
  }
  CHECK(inc.updates() == 100);
  Eigen::BDCSVD<Mat<T>> ref(stream, Eigen::ComputeThinU | Eigen::ComputeThinV);
  CHECK(overlap(inc.matrixU(), ref.matrixU().leftCols(rank)) > 1 - 1e-4);
  CHECK(overlap(inc.matrixV(), ref.matrixV().leftCols(rank)) > 1 - 1e-4);
}

TEMPLATE_TEST_CASE("IncrementalSVD rank-c updates X + ABᵀ match the recomputed SVD", "[incremental_svd]", float, double) {
  using T = TestType;
  const Index m = 40, n = 30;
  Mat<T> x = gaussian<T>(m, n, 1);
  IncrementalSVD<Mat<T>> inc;
  inc.setReorthonormalizationPeriod(10).initialize(x);
  REQUIRE(inc.rank() == n);
  // Rounding accumulates linearly over the updates (≈ updates·u·‖X‖).
  const double tol = std::is_same<T, float>::value ? 1e-3 : 1e-11;
  for (int step = 0; step < 100; ++step) {
    const Index c = 1 + step % 3;
    const Mat<T> a = gaussian<T>(m, c, 100 + step), b = T(0.1) * gaussian<T>(n, c, 500 + step);
    inc.update(a, b);
    x += a * b.transpose();
  }
  const Vec<double> s = exactValues(x);
  REQUIRE(inc.rank() == n);
  CHECK((inc.singularValues().template cast<double>() - s).norm() <= tol * s(0));
  CHECK((inc.reconstruct() - x).template cast<double>().norm() <= tol * s(0));
  CHECK(inc.orthogonalityError() < 1e3 * eps<T>());

  // Without re-orthonormalisation orthogonality drifts but stays reported honestly.
  IncrementalSVD<Mat<T>> drift;
  drift.setReorthonormalizationPeriod(0).initialize(x);
  for (int step = 0; step < 30; ++step) drift.update(gaussian<T>(m, 1, 900 + step), gaussian<T>(n, 1, 950 + step));
  CHECK(drift.orthogonalityError() >= 0);
  const double before = drift.orthogonalityError();
  drift.reorthonormalize();
  CHECK(drift.orthogonalityError() <= std::max(before, 1e3 * eps<T>()));
  CHECK(drift.orthogonalityError() < 1e3 * eps<T>());
}

TEMPLATE_TEST_CASE("IncrementalSVD appending rows, truncation and tolerance", "[incremental_svd]", float, double) {
  using T = TestType;
  const Index n = 35;
  const Mat<T> full = withSpectrum<T>(80, n, geometricSpectrum(n, 1e3), 12);
  IncrementalSVD<Mat<T>> inc;
  inc.initialize(full.topRows(10));
  for (Index i = 10; i < 80; i += 7) inc.appendRows(full.middleRows(i, std::min<Index>(7, 80 - i)));
  REQUIRE(inc.rows() == 80);
  const Vec<double> s = exactValues(full);
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  CHECK((inc.singularValues().template cast<double>() - s.head(inc.rank())).norm() <= tol * s(0));

  // Rank cap: the tracked factorisation keeps the leading directions of a fast-decaying stream.
  IncrementalSVD<Mat<T>> capped;
  capped.setMaxRank(5).initialize(full.topRows(10));
  for (Index i = 10; i < 80; ++i) capped.appendRows(full.row(i));
  CHECK(capped.rank() == 5);
  CHECK(std::abs(double(capped.singularValues()(0)) - s(0)) < 0.05 * s(0));
  CHECK(orthoError(capped.matrixU()) < 1e3 * eps<T>());

  // Relative tolerance drops small directions.
  IncrementalSVD<Mat<T>> tolInc;
  tolInc.setTolerance(0.1).initialize(full);
  CHECK(tolInc.rank() == (s.array() > 0.1 * s(0)).count());

  // Zero updates keep zero rank and no NaN.
  IncrementalSVD<Mat<T>> zero;
  zero.initialize(6, 4).update(Mat<T>::Zero(6, 2), Mat<T>::Zero(4, 2));
  CHECK(zero.rank() == 0);
  CHECK(zero.reconstruct().isZero());
  zero.appendColumns(Mat<T>::Zero(6, 1));
  CHECK(zero.cols() == 5);
  CHECK(zero.rank() == 0);
}

namespace {

/// Compares the tracker with the exact SVD (BDCSVD in double) of the matrix it should hold.
template <typename T>
void checkAgainstExact(const IncrementalSVD<Mat<T>>& inc, const Mat<double>& x) {
  const double tol = std::is_same<T, float>::value ? 2e-5 : 1e-12;
  const Vec<double> s = exactValues(x);
  REQUIRE(inc.rows() == x.rows());
  REQUIRE(inc.cols() == x.cols());
  const double s0 = s(0);
  // Reconstruction: nothing of the appended data may be lost.
  CHECK((inc.reconstruct().template cast<double>() - x).norm() <= tol * s0);
  // Singular values: the kept ones match, the dropped ones are negligible.
  Vec<double> tracked = Vec<double>::Zero(s.size());
  tracked.head(inc.rank()) = inc.singularValues().template cast<double>();
  CHECK((tracked - s).norm() <= tol * s0);
  // Numerical rank (double only: in float the in-span and 1e-8 columns are rounding).
  if (std::is_same<T, double>::value) CHECK(inc.rank() == (s.array() > 1e-12 * s0).count());
  CHECK(inc.orthogonalityError() < 1e3 * eps<T>());
}

/// Columns of the given kinds (0 zero, 1 inside span(basis), 2 inside span(basis) plus a 1e-8
/// relative component outside it, 3 generic, 4 a copy of the previous column), built in double.
Mat<double> mixedColumns(const Mat<double>& basis, const std::vector<int>& kinds, std::uint64_t seed) {
  const Index m = basis.rows();
  Mat<double> c(m, Index(kinds.size()));
  for (Index j = 0; j < c.cols(); ++j) {
    const std::uint64_t sj = seed + 7 * std::uint64_t(j);
    const Mat<double> inSpan = basis * gaussian<double>(basis.cols(), 1, sj);
    switch (kinds[std::size_t(j)]) {
      case 0: c.col(j).setZero(); break;
      case 1: c.col(j) = inSpan; break;
      case 2: {
        Mat<double> out = gaussian<double>(m, 1, sj + 1);
        out -= basis * (basis.transpose() * out);
        c.col(j) = inSpan + 1e-8 * inSpan.norm() / out.norm() * out;
        break;
      }
      case 3: c.col(j) = 2.0 * gaussian<double>(m, 1, sj + 2); break;
      default: c.col(j) = c.col(j - 1); break;
    }
  }
  return c;
}

}  // namespace

TEMPLATE_TEST_CASE("IncrementalSVD keeps every column of batches mixing zero, in-span and new columns",
                   "[incremental_svd]", float, double) {
  using T = TestType;
  const Index m = 30, n0 = 12, r0 = 5;
  const Mat<double> basis = randomOrthonormal<double>(m, r0, 21);
  const Mat<double> x0 = withSpectrum<double>(m, n0, Vec<double>::LinSpaced(r0, 4.0, 1.0), 22);
  // span(X0) is a different 5-dimensional space; in-span columns use the tracked one.
  Eigen::BDCSVD<Mat<double>> x0svd(x0, Eigen::ComputeThinU);
  const Mat<double> span0 = x0svd.matrixU().leftCols(r0);
  const std::vector<std::vector<int>> batches = {
      {0, 3}, {1, 3}, {2, 3, 0, 1}, {3, 0, 3}, {3, 4}, {0, 0}, {2, 2, 3}, {1, 2, 0, 3, 4}};

  SECTION("appendColumns after initialize(X0)") {
    IncrementalSVD<Mat<T>> inc;
    inc.setReorthonormalizationPeriod(3).initialize(x0.cast<T>());
    Mat<double> x = x0.cast<T>().template cast<double>();
    std::uint64_t seed = 100;
    for (const auto& kinds : batches) {
      // In-span relative to the current column space of X (changes as new columns arrive).
      Eigen::BDCSVD<Mat<double>> cur(x, Eigen::ComputeThinU);
      const Index r = (cur.singularValues().array() > 1e-6 * cur.singularValues()(0)).count();
      const Mat<T> c = mixedColumns(cur.matrixU().leftCols(r), kinds, seed += 50).template cast<T>();
      CAPTURE(kinds);
      inc.appendColumns(c);
      x.conservativeResize(Eigen::NoChange, x.cols() + c.cols());
      x.rightCols(c.cols()) = c.template cast<double>();
      checkAgainstExact(inc, x);
    }
  }
  SECTION("appendColumns from an empty start, and appendRows") {
    IncrementalSVD<Mat<T>> inc;
    inc.initialize(m, 0);
    const Mat<T> first = mixedColumns(span0, {0, 3}, 7).cast<T>();  // [0, x] into rank 0
    inc.appendColumns(first);
    checkAgainstExact(inc, first.template cast<double>());
    // Rows: the transposed problem goes through the same deflation.
    IncrementalSVD<Mat<T>> rows;
    rows.initialize(x0.transpose().cast<T>());
    Mat<double> xt = x0.transpose().cast<T>().template cast<double>();
    const Mat<T> r = mixedColumns(span0, {1, 3, 0, 2}, 9).transpose().cast<T>();  // 4×m; rows in row space
    rows.appendRows(r);
    xt.conservativeResize(xt.rows() + 4, Eigen::NoChange);
    xt.bottomRows(4) = r.template cast<double>();
    checkAgainstExact(rows, xt);
  }
  SECTION("update(A, B) with dependent columns in A and in B") {
    IncrementalSVD<Mat<T>> inc;
    inc.setReorthonormalizationPeriod(0).initialize(x0.cast<T>());
    Mat<double> x = x0.cast<T>().template cast<double>();
    const std::vector<std::pair<std::vector<int>, std::vector<int>>> ups = {
        {{1, 3}, {3, 3}}, {{3, 3}, {1, 3}}, {{0, 3, 2}, {3, 0, 3}}, {{3, 4, 1}, {2, 3, 3}}};
    std::uint64_t seed = 300;
    for (const auto& [ka, kb] : ups) {
      Eigen::BDCSVD<Mat<double>> cur(x, Eigen::ComputeThinU | Eigen::ComputeThinV);
      const Index r = (cur.singularValues().array() > 1e-6 * cur.singularValues()(0)).count();
      const Mat<T> a = mixedColumns(cur.matrixU().leftCols(r), ka, seed += 50).template cast<T>();
      const Mat<T> b = (0.5 * mixedColumns(cur.matrixV().leftCols(r), kb, seed += 50)).template cast<T>();
      CAPTURE(ka, kb);
      inc.update(a, b);
      x += a.template cast<double>() * b.template cast<double>().transpose();
      checkAgainstExact(inc, x);
    }
  }
}

TEST_CASE("IncrementalSVD rejects invalid arguments", "[incremental_svd][errors]") {
  using wproj::InvalidArgument;
  IncrementalSVD<Eigen::MatrixXd> inc;
  CHECK_THROWS_AS(inc.setMaxRank(0), InvalidArgument);
  CHECK_THROWS_AS(inc.setTolerance(1.5), InvalidArgument);
  CHECK_THROWS_AS(inc.setReorthonormalizationPeriod(-1), InvalidArgument);
  CHECK_THROWS_AS(inc.appendColumns(Eigen::MatrixXd::Ones(3, 1)), InvalidArgument);  // not initialised
  inc.initialize(Eigen::MatrixXd::Identity(4, 3));
  CHECK_THROWS_AS(inc.appendColumns(Eigen::MatrixXd::Ones(5, 1)), InvalidArgument);
  CHECK_THROWS_AS(inc.appendRows(Eigen::MatrixXd::Ones(1, 4)), InvalidArgument);
  CHECK_THROWS_AS(inc.update(Eigen::MatrixXd::Ones(4, 2), Eigen::MatrixXd::Ones(3, 1)), InvalidArgument);
  Eigen::MatrixXd bad = Eigen::MatrixXd::Ones(4, 1);
  bad(2, 0) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(inc.appendColumns(bad), InvalidArgument);
  CHECK_THROWS_AS(inc.initialize(Eigen::MatrixXd(0, 0)), InvalidArgument);
}
