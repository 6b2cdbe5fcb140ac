// Tests: ObliqueProjector — P = I − ABᵀ with an optional centre: idempotence, killed span,
// dense oracle, sides on row-major maps, affine maps and layer folding, special cases, bad input.
#include "test_common.hpp"

#include <wproj/linalg/oblique_projector.hpp>
#include <wproj/linalg/subspace.hpp>

#include <Eigen/LU>

using namespace wproj_test;
using wproj::Index;
using wproj::ObliqueProjector;
using wproj::Side;

namespace {

/// Factors of a rank-r oblique projection: A Gaussian, B = B₀(AᵀB₀)⁻¹ so that BᵀA = I
/// (built in double, then cast).
template <typename T>
std::pair<Mat<T>, Mat<T>> obliqueFactors(Index d, Index r, std::uint64_t seed) {
  const Mat<double> a = gaussian<double>(d, r, seed);
  const Mat<double> b0 = gaussian<double>(d, r, seed + 1);
  const Mat<double> b = b0 * (a.transpose() * b0).inverse();
  return {a.cast<T>(), b.cast<T>()};
}

template <typename T>
T tolFor(double scale) {
  return T(200) * std::numeric_limits<T>::epsilon() * T(1 + scale);
}

}  // namespace

TEMPLATE_TEST_CASE("ObliqueProjector: P^2 = P, PA = 0, B^T P = 0, dense formula", "[oblique]", float, double) {
  using T = TestType;
  const Index d = 11, r = 3;
  const auto [a, b] = obliqueFactors<T>(d, r, 1);
  const ObliqueProjector<T> p(a, b);
  REQUIRE(p.dim() == d);
  REQUIRE(p.rank() == r);
  CHECK_FALSE(p.affine());
  CHECK(p.centre().size() == d);
  CHECK(p.centre().norm() == T(0));

  const Mat<T> dense = p.dense();
  const Mat<double> ad = a.template cast<double>(), bd = b.template cast<double>();
  const Mat<double> ref = Mat<double>::Identity(d, d) - ad * bd.transpose();
  const double na = ad.norm(), nb = bd.norm();
  const T tol = tolFor<T>(na * nb * (1 + na + nb + ref.norm()));
  CHECK((dense.template cast<double>() - ref).norm() < double(tol));
  CHECK((dense * dense - dense).norm() < tol);           // P² = P
  CHECK(p.isIdempotent());
  CHECK(p.idempotencyError() < tol);
  CHECK((p.apply(a, Side::Left)).norm() < tol);           // P kills span(A)
  CHECK((p.apply(Mat<T>(b.transpose()), Side::Right)).norm() < tol);  // BᵀP = 0
  CHECK((p.transposed().dense() - dense.transpose()).norm() == T(0));
  // P keeps vectors in the null space of Bᵀ
  const Mat<T> g = gaussian<T>(d, 4, 2);
  const Mat<T> keep = g - b * (b.transpose() * b).inverse() * (b.transpose() * g);  // Bᵀ·keep = 0
  CHECK((p.apply(keep, Side::Left) - keep).norm() < tol * keep.norm());

  // a map at strength α ∉ {0, 1} is not idempotent, and the cheap error agrees with the dense one
  const ObliqueProjector<T> half = p.scaled(0.5);
  const Mat<T> hd = half.dense();
  CHECK((hd - (Mat<T>::Identity(d, d) - T(0.5) * a * b.transpose())).norm() < tol);
  CHECK_FALSE(half.isIdempotent());
  const double denseErr = double((hd * hd - hd).norm());
  CHECK(denseErr > 0.1);
  CHECK(std::abs(double(half.idempotencyError()) - denseErr) < double(tol) * (1 + denseErr));
  CHECK(p.scaled(0).dense().isApprox(Mat<T>::Identity(d, d)));
  // unrelated factors (BᵀA ≠ I): the Gram formula still equals ‖P² − P‖_F
  const ObliqueProjector<T> q(gaussian<T>(d, r, 5), gaussian<T>(d, r, 6));
  const Mat<T> qd = q.dense();
  const double qErr = double((qd * qd - qd).norm());
  CHECK(std::abs(double(q.idempotencyError()) - qErr) < 1e-3 * qErr + double(tol));
  CHECK_FALSE(q.isIdempotent());
}

TEMPLATE_TEST_CASE("ObliqueProjector: both sides on plain and row-major maps, in place", "[oblique]", float, double) {
  using T = TestType;
  const Index d = 10, r = 4, c = 7;
  const auto [a, b] = obliqueFactors<T>(d, r, 11);
  const ObliqueProjector<T> p(a, b);
  const Mat<T> dense = p.dense();
  const Mat<T> x = gaussian<T>(d, c, 12), y = gaussian<T>(c, d, 13);
  const T tol = tolFor<T>(double(dense.norm() * (x.norm() + y.norm())));

  const Mat<T> left = p.apply(x, Side::Left), right = p.apply(y, Side::Right);
  CHECK((left - dense * x).norm() < tol);
  CHECK((right - y * dense).norm() < tol);
  CHECK((p.coordinates(x, Side::Left) - b.transpose() * x).norm() < tol);
  CHECK((p.coordinates(y, Side::Right) - y * a).norm() < tol);

  // row-major maps over foreign buffers, read-only and in place
  RowMajorMat<T> xs = x, ys = y;
  const Eigen::Map<const RowMajorMat<T>> xm(xs.data(), d, c);
  CHECK((p.apply(xm, Side::Left) - left).norm() < tol);
  Eigen::Map<RowMajorMat<T>> ym(ys.data(), c, d);
  p.applyInPlace(ym, Side::Right);
  CHECK((Mat<T>(ys) - right).norm() < tol);
  Eigen::Map<RowMajorMat<T>> xw(xs.data(), d, c);
  p.applyInPlace(xw, Side::Left);
  CHECK((Mat<T>(xs) - left).norm() < tol);
  // applyTo into separate storage leaves the input alone
  Mat<T> out(c, d);
  const Mat<T> yCopy = y;
  p.applyTo(y, Side::Right, out);
  CHECK((out - right).norm() < tol);
  CHECK((y - yCopy).norm() == T(0));
  // on a block of a larger matrix: only the block changes
  Mat<T> big = gaussian<T>(d + 3, c + 2, 14);
  const Mat<T> bigCopy = big;
  auto blk = big.block(2, 1, d, c);
  p.applyInPlace(blk, Side::Left);
  CHECK((big.block(2, 1, d, c) - dense * bigCopy.block(2, 1, d, c)).norm() < tol * T(2));
  CHECK((big.topRows(2) - bigCopy.topRows(2)).norm() == T(0));
  CHECK((big.leftCols(1) - bigCopy.leftCols(1)).norm() == T(0));
}

TEMPLATE_TEST_CASE("ObliqueProjector: affine map, folding into a layer before and after", "[oblique]", float, double) {
  using T = TestType;
  const Index d = 9, r = 2, n = 6, in = 5, out = 4;
  const auto [a, b] = obliqueFactors<T>(d, r, 21);
  const Vec<T> mu = gaussian<T>(d, 1, 22).col(0);
  const ObliqueProjector<T> p(a, b, mu);
  REQUIRE(p.affine());
  const Mat<T> dense = p.dense();
  const Mat<T> id = Mat<T>::Identity(d, d);
  const Mat<T> pts = gaussian<T>(d, n, 23);
  const T tol = tolFor<T>(double(dense.norm() * (pts.norm() + mu.norm())));

  // r(x) = Px + (I − P)μ on columns and on rows
  const Mat<T> cols = p.mapColumns(pts);
  CHECK((cols - ((dense * pts).colwise() + (id - dense) * mu)).norm() < tol);
  const Mat<T> rowsIn = pts.transpose();
  const Mat<T> rows = p.mapRows(rowsIn);
  CHECK((rows - cols.transpose()).norm() < tol);
  CHECK((p.mapColumns(cols) - cols).norm() < tol);  // r∘r = r
  CHECK((p.mapColumns(mu) - mu).norm() < tol);      // the centre is fixed
  // the linear part is unaffected by the centre
  CHECK((p.apply(pts, Side::Left) - dense * pts).norm() < tol);

  // after a layer y = Wx + b (W: d×in): y' = r(Wx + b) for every x
  const Mat<T> w = gaussian<T>(d, in, 24);
  const Vec<T> bias = gaussian<T>(d, 1, 25).col(0);
  const Mat<T> xs = gaussian<T>(in, n, 26);
  Mat<T> w2 = w;
  Vec<T> b2 = bias;
  p.composeAfter(w2, b2);
  const Mat<T> yRef = p.mapColumns(Mat<T>((w * xs).colwise() + bias));
  const T tolY = tolFor<T>(double(yRef.norm() + w.norm() * xs.norm()));
  CHECK(((w2 * xs).colwise() + b2 - yRef).norm() < tolY);
  // the same on a transposed (Conv1D) weight held in a row-major map
  RowMajorMat<T> wt = w.transpose();
  Eigen::Map<RowMajorMat<T>> wtm(wt.data(), in, d);
  Vec<T> b3 = bias;
  p.composeAfter(wtm, b3, Side::Right);
  CHECK((Mat<T>(wt.transpose()) - w2).norm() < tolY);
  CHECK((b3 - b2).norm() < tolY);

  // before a layer y = Vx + c (V: out×d): V r(x) + c = V'x + c'
  const Mat<T> v = gaussian<T>(out, d, 27);
  const Vec<T> cb = gaussian<T>(out, 1, 28).col(0);
  Mat<T> v2 = v;
  Vec<T> c2 = cb;
  p.composeBefore(v2, c2);
  const Mat<T> zRef = (v * p.mapColumns(pts)).colwise() + cb;
  const T tolZ = tolFor<T>(double(zRef.norm() + v.norm() * pts.norm()));
  CHECK(((v2 * pts).colwise() + c2 - zRef).norm() < tolZ);
  CHECK((v2 - v * dense).norm() < tolZ);
  // a linear map leaves the following layer's bias alone
  const ObliqueProjector<T> lin(a, b);
  Mat<T> v3 = v;
  Vec<T> c3 = cb;
  lin.composeBefore(v3, c3);
  CHECK((c3 - cb).norm() == T(0));
  CHECK((v3 - v2).norm() < tolZ);
}

TEMPLATE_TEST_CASE("ObliqueProjector: orthogonal case, rank 0, r = d, cast", "[oblique]", float, double) {
  using T = TestType;
  const Index d = 8, k = 3;
  const Mat<T> qb = randomOrthonormal<T>(d, k, 31);
  const auto s = wproj::Subspace<T>::fromOrthonormal(qb);
  const ObliqueProjector<T> p = ObliqueProjector<T>::fromSubspace(s);
  const Mat<T> x = gaussian<T>(d, 5, 32), y = gaussian<T>(4, d, 33);
  const T tol = tolFor<T>(double(x.norm() + y.norm()));
  CHECK((p.apply(x, Side::Left) - s.projectOut(x, Side::Left)).norm() < tol);
  CHECK((p.apply(y, Side::Right) - s.projectOut(y, Side::Right)).norm() < tol);
  CHECK((p.dense() - p.dense().transpose()).norm() < tol);  // symmetric
  CHECK((p.dense() - (Mat<T>::Identity(d, d) - s.projector())).norm() < tol);
  CHECK(p.isIdempotent());

  // rank 0: the identity, from the dimension or from empty factors
  for (const ObliqueProjector<T>& z : {ObliqueProjector<T>(d), ObliqueProjector<T>(Mat<T>(d, 0), Mat<T>(d, 0)),
                                       ObliqueProjector<T>::fromSubspace(wproj::Subspace<T>(d))}) {
    CHECK(z.rank() == 0);
    CHECK(z.empty());
    CHECK((z.apply(x, Side::Left) - x).norm() == T(0));
    CHECK((z.apply(y, Side::Right) - y).norm() == T(0));
    CHECK((z.dense() - Mat<T>::Identity(d, d)).norm() == T(0));
    CHECK(z.isIdempotent());
    CHECK(z.idempotencyError() == T(0));
    Mat<T> xc = x;
    z.applyInPlace(xc, Side::Left);
    CHECK((xc - x).norm() == T(0));
  }
  const ObliqueProjector<T> z0(Mat<T>(d, 0), Mat<T>(d, 0), Vec<T>::Ones(d));
  CHECK((z0.mapRows(y) - y).norm() == T(0));

  // r = d with BᵀA = I: P = 0 (everything erased), an affine one maps every point to μ
  const auto [a, b] = obliqueFactors<T>(d, d, 34);
  const Vec<T> mu = gaussian<T>(d, 1, 35).col(0);
  const ObliqueProjector<T> full(a, b, mu);
  const T tolFull = tolFor<T>(double(a.norm() * b.norm() * (x.norm() + mu.norm())));
  CHECK(full.dense().norm() < tolFull);
  CHECK(full.apply(x, Side::Left).norm() < tolFull);
  CHECK((full.mapColumns(x).colwise() - mu).norm() < tolFull);
  CHECK(full.isIdempotent());

  // cast keeps the factors and the centre
  const ObliqueProjector<double> fd = full.template cast<double>();
  CHECK(fd.affine());
  CHECK((fd.left() - a.template cast<double>()).norm() == 0.0);
  CHECK((fd.right() - b.template cast<double>()).norm() == 0.0);
  CHECK((fd.centre() - mu.template cast<double>()).norm() == 0.0);
}

TEST_CASE("ObliqueProjector: bad input names the argument", "[oblique]") {
  const Mat<double> a = gaussian<double>(6, 2, 41), b = gaussian<double>(6, 2, 42);
  CHECK_THROWS_AS(ObliqueProjector<double>(a, Mat<double>(5, 2)), wproj::InvalidArgument);
  CHECK_THROWS_WITH(ObliqueProjector<double>(a, Mat<double>(6, 3)), Catch::Contains("'right'"));
  CHECK_THROWS_WITH(ObliqueProjector<double>(a, b, Vec<double>(5)), Catch::Contains("'centre'"));
  Mat<double> bad = a;
  bad(0, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(ObliqueProjector<double>(bad, b), Catch::Contains("'left'") && Catch::Contains("non-finite"));
  CHECK_THROWS_WITH(ObliqueProjector<double>(-1), Catch::Contains("dim"));
  const ObliqueProjector<double> p(a, b, Vec<double>::Zero(6));
  CHECK_THROWS_WITH(p.apply(Mat<double>(5, 3), Side::Left), Catch::Contains("x.rows()"));
  CHECK_THROWS_WITH(p.apply(Mat<double>(3, 5), Side::Right), Catch::Contains("x.cols()"));
  Mat<double> out(3, 3);
  CHECK_THROWS_WITH(p.applyTo(Mat<double>(6, 4), Side::Left, out), Catch::Contains("'out'"));
  CHECK_THROWS_WITH(p.mapColumns(Mat<double>(5, 2)), Catch::Contains("'x'"));
  CHECK_THROWS_WITH(p.mapRows(Mat<double>(2, 5)), Catch::Contains("'x'"));
  Mat<double> w(6, 4);
  Eigen::VectorXd shortBias(5);
  CHECK_THROWS_WITH(p.composeAfter(w, shortBias), Catch::Contains("'b'"));
  Mat<double> wWrong(5, 4);
  Eigen::VectorXd b6(6);
  CHECK_THROWS_WITH(p.composeAfter(wWrong, b6), Catch::Contains("'w'"));
  Mat<double> v(3, 6);
  CHECK_THROWS_WITH(p.composeBefore(v, b6), Catch::Contains("'b'"));
  CHECK_THROWS_WITH(p.scaled(std::numeric_limits<double>::infinity()), Catch::Contains("alpha"));
  CHECK_THROWS_WITH(p.isIdempotent(-2.0), Catch::Contains("tol"));
}
