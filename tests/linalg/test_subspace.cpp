// Tests of wproj::Subspace: projector identities against explicit pseudo-inverse formulas,
// allocation-free application, complement/sum/intersection dimensions, principal angles.

// Lets the test forbid Eigen heap allocations around projectTo / projectOutTo. Eigen reports a
// forbidden allocation through eigen_assert, which Release builds compile out, so every Eigen
// assertion in this file is routed to a counter that the tests read (this also catches misuse
// such as coefficient access on a product expression).
#define EIGEN_RUNTIME_NO_MALLOC
namespace wproj_test {
inline int& eigenAssertFailures() {
  static int count = 0;
  return count;
}
}  // namespace wproj_test
#define eigen_assert(x) \
  do { if (!(x)) ++::wproj_test::eigenAssertFailures(); } while (0)
#include "test_common.hpp"

#include <wproj/linalg/subspace.hpp>

#include <Eigen/QR>

#include <string>
#include <vector>

using namespace wproj_test;
using wproj::Side;
using wproj::Subspace;

namespace {

/// A relative tolerance for T: a multiple of the unit roundoff scaled by the problem size.
template <typename T>
double tolFor(Index n) {
  return 64.0 * eps<T>() * double(std::max<Index>(n, 8));
}

/// A (m×n) of exact rank r (built in double, then cast), r ≤ min(m, n).
template <typename T>
Mat<T> rankMatrix(Index m, Index n, Index r, std::uint64_t seed) {
  Vec<double> s = geometricSpectrum(r, 10.0);
  return withSpectrum<T>(m, n, s, seed);
}

/// The column-space projector A A⁺ computed in double by a complete orthogonal decomposition
/// with the same relative threshold as the SciPy rule.
template <typename T>
Mat<double> columnProjectorOracle(const Mat<T>& a) {
  const Mat<double> ad = a.template cast<double>();
  Eigen::CompleteOrthogonalDecomposition<Mat<double>> cod;
  cod.setThreshold(std::numeric_limits<T>::epsilon() * double(std::max(a.rows(), a.cols())) * 4);
  cod.compute(ad);
  return ad * cod.pseudoInverse();
}

template <typename T>
double maxAbsDiff(const Mat<T>& a, const Mat<double>& b) {
  return (a.template cast<double>() - b).cwiseAbs().maxCoeff();
}

}  // namespace

TEMPLATE_TEST_CASE("Subspace::fromColumns: projector identities and the pseudo-inverse oracle", "[subspace]",
                   float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  struct Case {
    const char* name;
    Index n, m, rank;
  };
  const std::vector<Case> cases = {{"tall full rank", 40, 7, 7},     {"wide", 8, 20, 8},
                                   {"square", 12, 12, 12},           {"tall rank-deficient", 30, 9, 4},
                                   {"wide rank-deficient", 10, 25, 3}, {"square rank 1", 15, 15, 1}};
  std::uint64_t seed = 11;
  for (const auto& c : cases) {
    SECTION(c.name) {
      const Mat<T> a = rankMatrix<T>(c.n, c.m, c.rank, seed);
      const auto s = Subspace<T>::fromColumns(a);
      CHECK(s.ambientDim() == c.n);
      REQUIRE(s.dim() == c.rank);
      CHECK_FALSE(s.empty());
      CHECK(orthoError(s.basis()) <= tolFor<T>(c.n));

      const Mat<T> p = s.projector();
      const double tol = tolFor<T>(c.n);
      CHECK((p * p - p).cwiseAbs().maxCoeff() <= tol);           // P² = P
      CHECK((p - p.transpose()).cwiseAbs().maxCoeff() <= tol);   // Pᵀ = P
      CHECK(maxAbsDiff(p, columnProjectorOracle(a)) <= tol);     // P = A A⁺
      CHECK(std::abs(p.trace() - T(c.rank)) <= tol * c.n);

      const Mat<T> x = gaussian<T>(c.n, 5, seed + 7);
      const Mat<T> px = s.project(x, Side::Left);
      CHECK(maxAbsDiff(px, (p * x).template cast<double>()) <= tol * 4);
      const Mat<T> res = s.projectOut(x, Side::Left);
      // The residual is orthogonal to the span (and to every column of a).
      CHECK((a.transpose() * res).cwiseAbs().maxCoeff() <= tol * 4 * a.cwiseAbs().maxCoeff());
      CHECK(maxAbsDiff(Mat<T>(px + res), x.template cast<double>()) <= tol);
      CHECK(maxAbsDiff(s.coordinates(x, Side::Left), (s.basis().transpose() * x).template cast<double>()) <= tol);

      const Mat<T> y = gaussian<T>(6, c.n, seed + 8);
      CHECK(maxAbsDiff(s.project(y, Side::Right), (y * p).template cast<double>()) <= tol * 4);
      const Mat<T> yres = s.projectOut(y, Side::Right);
      CHECK((yres * a).cwiseAbs().maxCoeff() <= tol * 4 * a.cwiseAbs().maxCoeff());
      CHECK(maxAbsDiff(s.coordinates(y, Side::Right), (y * s.basis()).template cast<double>()) <= tol);
      // Projecting twice changes nothing.
      CHECK(maxAbsDiff(s.project(px, Side::Left), px.template cast<double>()) <= tol * 4);
    }
    ++seed;
  }
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("Subspace::fromRows is the row space; row-major Map inputs", "[subspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const Mat<T> a = rankMatrix<T>(9, 30, 5, 21);
  const RowMajorMat<T> storage = a;
  const Eigen::Map<const RowMajorMat<T>> view(storage.data(), storage.rows(), storage.cols());

  const auto rows = Subspace<T>::fromRows(view);
  CHECK(rows.ambientDim() == 30);
  CHECK(rows.dim() == 5);
  const Mat<T> at = a.transpose();
  CHECK(maxAbsDiff(rows.projector(), columnProjectorOracle(at)) <= tolFor<T>(30));

  const auto cols = Subspace<T>::fromColumns(view);
  const auto plain = Subspace<T>::fromColumns(a);
  CHECK(cols.dim() == plain.dim());
  CHECK(maxAbsDiff(cols.projector(), plain.projector().template cast<double>()) <= tolFor<T>(9));

  // Row-major Map as the projected operand, both sides.
  const RowMajorMat<T> xs = gaussian<T>(30, 4, 22);
  const Eigen::Map<const RowMajorMat<T>> xv(xs.data(), xs.rows(), xs.cols());
  const Mat<T> xplain = xs;
  CHECK(maxAbsDiff(rows.projectOut(xv, Side::Left), rows.projectOut(xplain, Side::Left).template cast<double>()) <=
        tolFor<T>(30));
  const RowMajorMat<T> ys = gaussian<T>(4, 30, 23);
  const Eigen::Map<const RowMajorMat<T>> yv(ys.data(), ys.rows(), ys.cols());
  const Mat<T> yplain = ys;
  CHECK(maxAbsDiff(rows.project(yv, Side::Right), rows.project(yplain, Side::Right).template cast<double>()) <=
        tolFor<T>(30));
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("Subspace: zero, empty and full subspaces", "[subspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const Subspace<T> none;
  CHECK(none.ambientDim() == 0);
  CHECK(none.dim() == 0);
  CHECK(none.empty());

  const auto zero = Subspace<T>::fromColumns(Mat<T>::Zero(7, 3));
  CHECK(zero.ambientDim() == 7);
  CHECK(zero.dim() == 0);
  const Mat<T> x = gaussian<T>(7, 4, 31);
  CHECK(zero.project(x, Side::Left).isZero(0));
  CHECK(zero.projectOut(x, Side::Left) == x);
  CHECK(zero.projector().isZero(0));
  CHECK(zero.coordinates(x, Side::Left).rows() == 0);
  const auto all = zero.complement();
  CHECK(all.dim() == 7);
  CHECK(maxAbsDiff(all.projector(), Mat<double>::Identity(7, 7)) <= tolFor<T>(7));
  CHECK(all.complement().dim() == 0);

  CHECK(Subspace<T>::fromColumns(Mat<T>(5, 0)).dim() == 0);
  CHECK(Subspace<T>::fromColumns(Mat<T>(5, 0)).ambientDim() == 5);
  CHECK(Subspace<T>(4).ambientDim() == 4);
  CHECK(Subspace<T>(4).complement().dim() == 4);
  CHECK(Subspace<T>::fromOrthonormal(Mat<T>(6, 0)).dim() == 0);

  // Full rank square input: the whole space.
  const auto full = Subspace<T>::fromColumns(gaussian<T>(6, 6, 32));
  CHECK(full.dim() == 6);
  CHECK(full.complement().dim() == 0);
  CHECK(full.projectOut(gaussian<T>(6, 2, 33), Side::Left).cwiseAbs().maxCoeff() <= tolFor<T>(6) * 8);

  // Empty operands: the principal angles are an empty vector, the overlap 0.
  CHECK(zero.principalAngles(all).size() == 0);
  CHECK(zero.overlap(all) == T(0));
  CHECK(zero.intersection(all).dim() == 0);
  CHECK(zero.sum(all).dim() == 7);
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("Subspace::fromColumns: tolerance rule", "[subspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  // Singular values 1, 1e-1, 1e-2, 1e-3 (well above the default threshold).
  Vec<double> s(4);
  s << 1, 1e-1, 1e-2, 1e-3;
  const Mat<T> a = withSpectrum<T>(20, 6, s, 41);
  CHECK(Subspace<T>::fromColumns(a).dim() == 4);
  CHECK(Subspace<T>::fromColumns(a, T(0.05)).dim() == 2);    // s > 0.05·s_max
  CHECK(Subspace<T>::fromColumns(a, T(0.005)).dim() == 3);
  CHECK(Subspace<T>::fromColumns(a, T(0)).dim() >= 4);       // every nonzero value
  CHECK(Subspace<T>::fromColumns(a, T(2)).dim() == 0);
  // The relative rule is scale-invariant.
  CHECK(Subspace<T>::fromColumns(Mat<T>(a * T(1e-20)), T(0.05)).dim() == 2);
  CHECK(Subspace<T>::fromColumns(Mat<T>(a * T(1e-20))).dim() == 4);
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("Subspace::projectTo / projectOutTo: same results, in place, no allocation", "[subspace]",
                   float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const auto s = Subspace<T>::fromColumns(gaussian<T>(24, 5, 51));
  const Mat<T> x = gaussian<T>(24, 6, 52), y = gaussian<T>(3, 24, 53);
  Mat<T> outL(24, 6), outR(3, 24);
  const double tol = tolFor<T>(24);

  s.projectTo(x, Side::Left, outL);
  CHECK(maxAbsDiff(outL, s.project(x, Side::Left).template cast<double>()) <= tol);
  s.projectOutTo(x, Side::Left, outL);
  CHECK(maxAbsDiff(outL, s.projectOut(x, Side::Left).template cast<double>()) <= tol);
  s.projectTo(y, Side::Right, outR);
  CHECK(maxAbsDiff(outR, s.project(y, Side::Right).template cast<double>()) <= tol);
  s.projectOutTo(y, Side::Right, outR);
  CHECK(maxAbsDiff(outR, s.projectOut(y, Side::Right).template cast<double>()) <= tol);

  // In place (out aliases x), including a row-major Map over foreign storage.
  Mat<T> w = x;
  s.projectOutTo(w, Side::Left, w);
  CHECK(maxAbsDiff(w, s.projectOut(x, Side::Left).template cast<double>()) <= tol);
  RowMajorMat<T> wr = y;
  Eigen::Map<RowMajorMat<T>> wv(wr.data(), wr.rows(), wr.cols());
  s.projectOutTo(wv, Side::Right, wv);
  CHECK(maxAbsDiff(Mat<T>(wr), s.projectOut(y, Side::Right).template cast<double>()) <= tol);
  Mat<T> v = x;
  s.projectTo(v, Side::Left, v);
  CHECK(maxAbsDiff(v, s.project(x, Side::Left).template cast<double>()) <= tol);

  // Warm-up done for both shapes above; repeated calls must not touch the heap.
  Mat<T> ref = s.projectOut(x, Side::Left);
  // The counter is live: an allocation while forbidden is counted.
  const int before = eigenAssertFailures();
  Eigen::internal::set_is_malloc_allowed(false);
  { Mat<T> probe(3, 3); (void)probe; }
  Eigen::internal::set_is_malloc_allowed(true);
  REQUIRE(eigenAssertFailures() == before + 1);
  --eigenAssertFailures();  // the deliberate probe

  Eigen::internal::set_is_malloc_allowed(false);
  bool threw = false;
  try {
    for (int rep = 0; rep < 3; ++rep) {
      s.projectOutTo(x, Side::Left, outL);
      s.projectTo(x, Side::Left, outL);
      s.projectOutTo(x, Side::Left, outL);
      s.projectTo(y, Side::Right, outR);
      s.projectOutTo(y, Side::Right, outR);
      s.projectOutTo(wv, Side::Right, wv);
    }
  } catch (...) {
    threw = true;
  }
  Eigen::internal::set_is_malloc_allowed(true);
  CHECK_FALSE(threw);
  CHECK(eigenAssertFailures() == before);
  CHECK(maxAbsDiff(outL, ref.template cast<double>()) <= tol);

  // Shape errors.
  Mat<T> wrong(24, 5);
  CHECK_THROWS_AS(s.projectTo(x, Side::Left, wrong), wproj::InvalidArgument);
  CHECK_THROWS_WITH(s.projectOutTo(x, Side::Left, wrong), Catch::Contains("'out'") && Catch::Contains("24x6"));
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("Subspace::complement: direct sum is everything", "[subspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  for (Index k : {Index(1), Index(4), Index(9)}) {
    const auto s = Subspace<T>::fromColumns(gaussian<T>(10, k, 60 + k));
    const auto c = s.complement();
    CHECK(c.ambientDim() == 10);
    CHECK(c.dim() == 10 - k);
    CHECK(orthoError(c.basis()) <= tolFor<T>(10));
    if (c.dim() > 0) CHECK((s.basis().transpose() * c.basis()).cwiseAbs().maxCoeff() <= tolFor<T>(10));
    CHECK(maxAbsDiff(Mat<T>(s.projector() + c.projector()), Mat<double>::Identity(10, 10)) <= tolFor<T>(10));
    CHECK(s.sum(c).dim() == 10);
    CHECK(s.intersection(c).dim() == 0);
  }
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("Subspace::sum and intersection: dimension formulas", "[subspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const double tol = tolFor<T>(40) * 10;
  SECTION("span[A B] and span[B C] in a large space") {
    const Index n = 40;
    const Mat<T> a = gaussian<T>(n, 3, 70), b = gaussian<T>(n, 4, 71), c = gaussian<T>(n, 2, 72);
    Mat<T> ab(n, 7), bc(n, 6);
    ab << a, b;
    bc << b, c;
    const auto u = Subspace<T>::fromColumns(ab), v = Subspace<T>::fromColumns(bc);
    const auto cap = u.intersection(v), cup = u.sum(v);
    CHECK(cap.dim() == 4);
    CHECK(cup.dim() == 9);
    CHECK(cap.dim() + cup.dim() == u.dim() + v.dim());
    CHECK(orthoError(cap.basis()) <= tolFor<T>(n));
    CHECK(orthoError(cup.basis()) <= tolFor<T>(n));
    // The intersection is span(B): both contain it, and it contains B.
    CHECK(u.projectOut(cap.basis(), Side::Left).cwiseAbs().maxCoeff() <= tol);
    CHECK(v.projectOut(cap.basis(), Side::Left).cwiseAbs().maxCoeff() <= tol);
    CHECK(cap.projectOut(b, Side::Left).cwiseAbs().maxCoeff() <= tol * b.cwiseAbs().maxCoeff());
    // The sum contains both and equals span[A B C].
    Mat<T> abc(n, 9);
    abc << a, b, c;
    CHECK(maxAbsDiff(cup.projector(), columnProjectorOracle(abc)) <= tol);
    // Symmetry.
    CHECK(v.intersection(u).dim() == 4);
    CHECK(v.sum(u).dim() == 9);
  }
  SECTION("generic subspaces in a small space: dim(U ∩ V) = k1 + k2 − n") {
    const auto u = Subspace<T>::fromColumns(gaussian<T>(10, 6, 73));
    const auto v = Subspace<T>::fromColumns(gaussian<T>(10, 7, 74));
    CHECK(u.intersection(v).dim() == 3);
    CHECK(u.sum(v).dim() == 10);
    CHECK(u.principalAngles(v).head(3).maxCoeff() <= T(tol));
  }
  SECTION("nested subspaces") {
    const Mat<T> a = gaussian<T>(20, 5, 75);
    const auto big = Subspace<T>::fromColumns(a);
    const auto small = Subspace<T>::fromColumns(Mat<T>(a.leftCols(2)));
    CHECK(big.intersection(small).dim() == 2);
    CHECK(big.sum(small).dim() == 5);
    CHECK(std::abs(double(big.overlap(small)) - 1.0) <= tol);
  }
  SECTION("an explicit tolerance on the sine of the angle") {
    // Two lines at angle 1e-2: distinct by default, one line with tol 0.1.
    Mat<T> q = randomOrthonormal<T>(8, 2, 76);
    const T th = T(1e-2);
    const Mat<T> l1 = q.col(0), l2 = std::cos(th) * q.col(0) + std::sin(th) * q.col(1);
    const auto u = Subspace<T>::fromColumns(l1), v = Subspace<T>::fromColumns(l2);
    CHECK(u.intersection(v).dim() == 0);
    CHECK(u.sum(v).dim() == 2);
    CHECK(u.intersection(v, T(0.1)).dim() == 1);
    CHECK(u.sum(v, T(0.1)).dim() == 1);
  }
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("Subspace::principalAngles against a known rotation", "[subspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const Index n = 30, k = 5;
  // Tiny angles are recovered to a relative accuracy only through the sine formula.
  const double tiny = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  Vec<double> theta(k);
  theta << tiny, 0.1, 0.7, 1.2, 1.5707963267948966;
  const Mat<double> q = randomOrthonormal<double>(n, 2 * k, 81);
  Mat<double> v(n, k);
  for (Index i = 0; i < k; ++i) v.col(i) = std::cos(theta(i)) * q.col(i) + std::sin(theta(i)) * q.col(k + i);
  // Mix the second basis by a random orthogonal k×k matrix: angles are basis-independent.
  const Mat<double> mix = randomOrthonormal<double>(k, k, 82);
  const Mat<T> u1 = q.leftCols(k).cast<T>();
  const Mat<T> v1 = (v * mix).cast<T>();
  const auto su = Subspace<T>::fromOrthonormal(u1), sv = Subspace<T>::fromOrthonormal(v1);
  const Vec<T> ang = su.principalAngles(sv);
  REQUIRE(ang.size() == k);
  const double u = eps<T>();
  CHECK(std::abs(double(ang(0)) - tiny) <= 0.05 * tiny);  // relative accuracy on a tiny angle
  for (Index i = 0; i < k; ++i) CHECK(std::abs(double(ang(i)) - theta(i)) <= 200 * u);
  for (Index i = 1; i < k; ++i) CHECK(ang(i) >= ang(i - 1));
  // Symmetric in its arguments.
  CHECK((sv.principalAngles(su) - ang).cwiseAbs().maxCoeff() <= T(200 * u));
  // Overlap = mean of squared cosines.
  const double expected = theta.array().cos().square().sum() / double(k);
  CHECK(std::abs(double(su.overlap(sv)) - expected) <= 200 * u);
  CHECK(std::abs(double(su.overlap(sv)) - overlap(u1, v1)) <= 200 * u);

  // Different dimensions: min(k1, k2) angles; a subspace containing the other gives zeros.
  const auto big = Subspace<T>::fromOrthonormal(Mat<T>(q.leftCols(2 * k).cast<T>()));
  const Vec<T> inside = big.principalAngles(sv);
  CHECK(inside.size() == k);
  CHECK(inside.cwiseAbs().maxCoeff() <= T(200 * u));
  CHECK(sv.principalAngles(big).size() == k);
  CHECK(std::abs(double(big.overlap(sv)) - 1.0) <= 200 * u);
  // Orthogonal subspaces: all angles π/2, overlap 0.
  const auto other = Subspace<T>::fromOrthonormal(Mat<T>(q.middleCols(k, k).cast<T>()));
  CHECK((su.principalAngles(other).array() - T(1.5707963267948966)).abs().maxCoeff() <= T(200 * u));
  CHECK(su.overlap(other) <= T(200 * u));
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("Subspace: invalid arguments name the argument", "[subspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  Mat<T> a = gaussian<T>(6, 3, 91);

  // Non-orthonormal columns, too many columns for the space, non-finite entries.
  CHECK_THROWS_WITH(Subspace<T>::fromOrthonormal(a), Catch::Contains("fromOrthonormal") && Catch::Contains("orthonormal"));
  CHECK_THROWS_WITH(Subspace<T>::fromOrthonormal(Mat<T>::Identity(3, 5)), Catch::Contains("q.cols()") && Catch::Contains("5"));
  Mat<T> q = randomOrthonormal<T>(6, 2, 92);
  q(1, 1) = nan;
  CHECK_THROWS_AS(Subspace<T>::fromOrthonormal(q), wproj::InvalidArgument);

  a(2, 2) = nan;
  CHECK_THROWS_WITH(Subspace<T>::fromColumns(a), Catch::Contains("fromColumns") && Catch::Contains("non-finite"));
  CHECK_THROWS_AS(Subspace<T>::fromRows(a), wproj::InvalidArgument);
  a(2, 2) = inf;
  CHECK_THROWS_AS(Subspace<T>::fromColumns(a), wproj::InvalidArgument);
  a(2, 2) = 1;

  // Tolerances: −1 or ≥ 0, finite.
  CHECK_THROWS_WITH(Subspace<T>::fromColumns(a, T(-0.5)), Catch::Contains("'tol'") && Catch::Contains("-0.5"));
  CHECK_THROWS_AS(Subspace<T>::fromColumns(a, nan), wproj::InvalidArgument);
  CHECK_THROWS_AS(Subspace<T>::fromColumns(a, inf), wproj::InvalidArgument);
  CHECK_NOTHROW(Subspace<T>::fromColumns(a, T(-1)));

  // Shape mismatches.
  const auto s = Subspace<T>::fromColumns(a);
  CHECK_THROWS_WITH(s.project(Mat<T>(5, 2), Side::Left), Catch::Contains("x.rows()") && Catch::Contains("Side::Left"));
  CHECK_THROWS_WITH(s.projectOut(Mat<T>(2, 5), Side::Right), Catch::Contains("x.cols()") && Catch::Contains("Side::Right"));
  CHECK_THROWS_AS(s.coordinates(Mat<T>(6, 2), Side::Right), wproj::InvalidArgument);
  const auto t = Subspace<T>::fromColumns(gaussian<T>(7, 2, 93));
  CHECK_THROWS_WITH(s.sum(t), Catch::Contains("ambientDim"));
  CHECK_THROWS_AS(s.intersection(t), wproj::InvalidArgument);
  CHECK_THROWS_AS(s.principalAngles(t), wproj::InvalidArgument);
  CHECK_THROWS_AS(s.overlap(t), wproj::InvalidArgument);
  CHECK_THROWS_AS(s.intersection(s, T(-3)), wproj::InvalidArgument);
  CHECK_THROWS_AS(Subspace<T>(-1), wproj::InvalidArgument);
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("Subspace: expression inputs (products, sums) are evaluated once", "[subspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const Mat<T> a = gaussian<T>(20, 3, 95), b = gaussian<T>(3, 6, 96);
  const Mat<T> ab = a * b;  // rank 3
  const auto fromProduct = Subspace<T>::fromColumns(a * b);
  CHECK(fromProduct.dim() == 3);
  CHECK(maxAbsDiff(fromProduct.projector(), Subspace<T>::fromColumns(ab).projector().template cast<double>()) <=
        tolFor<T>(20));
  CHECK(Subspace<T>::fromRows(b.transpose() * a.transpose()).dim() == 3);
  const Mat<T> x = gaussian<T>(20, 4, 97);
  const Mat<T> twoX = T(2) * x;
  CHECK(maxAbsDiff(fromProduct.projectOut(T(2) * x, Side::Left),
                   fromProduct.projectOut(twoX, Side::Left).template cast<double>()) <= tolFor<T>(20));
  Mat<T> out(20, 4);
  fromProduct.projectTo(x + x, Side::Left, out);
  CHECK(maxAbsDiff(out, fromProduct.project(twoX, Side::Left).template cast<double>()) <= tolFor<T>(20));
  CHECK(fromProduct.coordinates(x.transpose() * Mat<T>::Identity(20, 20), Side::Right).cols() == 3);
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}
