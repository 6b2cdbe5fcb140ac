// Tests of null spaces, row/column spaces, PSD null spaces (AlphaEdit) and the intersection of
// null spaces (INLP, Ben-Israel), against SVD / eigen / pseudo-inverse oracles.
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

#include <wproj/linalg/nullspace.hpp>

#include <Eigen/Eigenvalues>
#include <Eigen/QR>

#include <vector>

using namespace wproj_test;
using wproj::Side;
using wproj::Subspace;

namespace {

template <typename T>
double tolFor(Index n) {
  return 64.0 * eps<T>() * double(std::max<Index>(n, 8));
}

/// A⁺A (the row-space projector) in double, by a complete orthogonal decomposition whose
/// threshold matches the SciPy rule's scale.
template <typename T>
Mat<double> rowProjectorOracle(const Mat<T>& a) {
  const Mat<double> ad = a.template cast<double>();
  Eigen::CompleteOrthogonalDecomposition<Mat<double>> cod;
  cod.setThreshold(std::numeric_limits<T>::epsilon() * double(std::max(a.rows(), a.cols())) * 4);
  cod.compute(ad);
  return cod.pseudoInverse() * ad;
}

template <typename T>
double maxAbsDiff(const Mat<T>& a, const Mat<double>& b) {
  return (a.template cast<double>() - b).cwiseAbs().maxCoeff();
}

template <typename T>
Mat<T> rankMatrix(Index m, Index n, Index r, std::uint64_t seed) {
  return withSpectrum<T>(m, n, geometricSpectrum(r, 10.0), seed);
}

}  // namespace

TEMPLATE_TEST_CASE("nullSpaceBasis: A N = 0, dim = n - rank, complement of the row space", "[nullspace]", float,
                   double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  struct Case {
    const char* name;
    Index m, n, rank;
  };
  const std::vector<Case> cases = {{"wide full rank", 5, 17, 5},   {"tall full rank", 20, 6, 6},
                                   {"square full rank", 9, 9, 9},  {"square rank-deficient", 12, 12, 7},
                                   {"wide rank-deficient", 6, 14, 2}, {"tall rank-deficient", 25, 10, 3}};
  std::uint64_t seed = 100;
  for (const auto& c : cases) {
    SECTION(c.name) {
      const Mat<T> a = rankMatrix<T>(c.m, c.n, c.rank, seed);
      const Mat<T> nb = wproj::nullSpaceBasis(a);
      REQUIRE(nb.rows() == c.n);
      CHECK(nb.cols() == c.n - c.rank);
      CHECK(orthoError(nb) <= tolFor<T>(c.n));
      if (nb.cols() > 0) CHECK((a * nb).norm() <= tolFor<T>(c.n) * a.norm());

      const auto ns = wproj::nullSpace(a);
      const auto rs = wproj::rowSpace(a);
      const auto cs = wproj::columnSpace(a);
      CHECK(ns.dim() == c.n - c.rank);
      CHECK(rs.dim() == c.rank);
      CHECK(cs.dim() == c.rank);
      CHECK(cs.ambientDim() == c.m);
      // Row space ⊕ null space = Rⁿ, orthogonally.
      CHECK(maxAbsDiff(Mat<T>(ns.projector() + rs.projector()), Mat<double>::Identity(c.n, c.n)) <= tolFor<T>(c.n));
      // Row-space projector = A⁺A, column-space projector = AA⁺.
      CHECK(maxAbsDiff(rs.projector(), rowProjectorOracle(a)) <= tolFor<T>(c.n));
      const Mat<T> at = a.transpose();
      CHECK(maxAbsDiff(cs.projector(), rowProjectorOracle(at)) <= tolFor<T>(c.m));
      // Projecting onto the null space annihilates A's action: A (P_N x) = 0.
      const Mat<T> x = gaussian<T>(c.n, 3, seed + 1);
      CHECK((a * ns.project(x, Side::Left)).norm() <= tolFor<T>(c.n) * a.norm() * x.norm());
    }
    ++seed;
  }
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("nullSpace: zero, empty and row-major Map inputs; tolerances", "[nullspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  CHECK(wproj::nullSpaceBasis(Mat<T>::Zero(4, 6)).isApprox(Mat<T>::Identity(6, 6)));
  CHECK(wproj::nullSpace(Mat<T>::Zero(4, 6)).dim() == 6);
  CHECK(wproj::rowSpace(Mat<T>::Zero(4, 6)).dim() == 0);
  CHECK(wproj::rowSpace(Mat<T>::Zero(4, 6)).ambientDim() == 6);
  CHECK(wproj::nullSpace(Mat<T>(0, 5)).dim() == 5);
  CHECK(wproj::nullSpace(Mat<T>(3, 0)).ambientDim() == 0);
  CHECK(wproj::columnSpace(Mat<T>(3, 0)).ambientDim() == 3);

  const Mat<T> a = rankMatrix<T>(7, 16, 4, 120);
  const RowMajorMat<T> storage = a;
  const Eigen::Map<const RowMajorMat<T>> view(storage.data(), storage.rows(), storage.cols());
  const auto fromMap = wproj::nullSpace(view);
  CHECK(fromMap.dim() == 12);
  CHECK(maxAbsDiff(fromMap.projector(), wproj::nullSpace(a).projector().template cast<double>()) <= tolFor<T>(16));
  CHECK(wproj::rowSpace(view).dim() == 4);
  CHECK(wproj::columnSpace(view).dim() == 4);

  // Relative tolerance: singular values 1, 0.1, 0.01 → rank 1 for tol 0.5, rank 2 for tol 0.05.
  Vec<double> s(3);
  s << 1, 0.1, 0.01;
  const Mat<T> b = withSpectrum<T>(5, 8, s, 121);
  CHECK(wproj::nullSpace(b).dim() == 5);
  CHECK(wproj::nullSpace(b, T(0.5)).dim() == 7);
  CHECK(wproj::nullSpace(b, T(0.05)).dim() == 6);
  CHECK(wproj::rowSpace(b, T(0.05)).dim() == 2);
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("psdNullSpace: eigenvectors below the threshold (AlphaEdit)", "[nullspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const Index d = 24, nKeys = 60;
  // Keys whose second moment K Kᵀ / n has a known spectrum: 10 large directions, 14 nearly zero.
  Vec<double> sv(d);
  for (Index i = 0; i < d; ++i) sv(i) = i < 10 ? 3.0 - 0.2 * double(i) : 1e-3 * double(d - i);
  const Mat<double> k0 = withSpectrum<double>(d, nKeys, sv, 130) * std::sqrt(double(nKeys));
  const Mat<T> s = (k0 * k0.transpose() / double(nKeys)).cast<T>();  // eigenvalues sv²
  const T threshold = T(2e-2);
  const auto ns = wproj::psdNullSpace(s, threshold);
  CHECK(ns.ambientDim() == d);
  CHECK(ns.dim() == 14);
  CHECK(orthoError(ns.basis()) <= tolFor<T>(d));

  // Oracle: eigen-decomposition in double.
  Eigen::SelfAdjointEigenSolver<Mat<double>> eig(s.template cast<double>());
  Index below = 0;
  while (below < d && eig.eigenvalues()(below) < double(threshold)) ++below;
  CHECK(below == ns.dim());
  const Mat<double> vb = eig.eigenvectors().leftCols(below);
  CHECK(maxAbsDiff(ns.projector(), Mat<double>(vb * vb.transpose())) <= 1e3 * eps<T>());
  // ‖S N‖ stays below the threshold: keys barely move along null-space directions.
  CHECK((s * ns.basis()).norm() <= double(threshold) * std::sqrt(double(ns.dim())));
  // A key-side update projected into the null space leaves the preserved keys untouched
  // up to the threshold: ‖Δ P K₀‖ small compared to ‖Δ K₀‖.
  const Mat<T> delta = gaussian<T>(5, d, 131);
  const Mat<T> k0t = k0.cast<T>();
  const Mat<T> safe = ns.project(delta, Side::Right);
  CHECK((safe * k0t).norm() <= 0.05 * (delta * k0t).norm());

  // Thresholds at the ends.
  CHECK(wproj::psdNullSpace(s, T(0)).dim() == 0);
  CHECK(wproj::psdNullSpace(s, T(100)).dim() == d);
  CHECK(wproj::psdNullSpace(Mat<T>::Zero(5, 5), T(1e-6)).dim() == 5);
  // Row-major Map input.
  const RowMajorMat<T> rs = s;
  const Eigen::Map<const RowMajorMat<T>> rv(rs.data(), d, d);
  CHECK(wproj::psdNullSpace(rv, threshold).dim() == 14);
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("intersectNullSpaces: w_i P x = 0 and Ben-Israel's formula (INLP)", "[nullspace]", float,
                   double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const Index d = 30;
  // Classifier directions as INLP produces them: 1×d rows, plus a multi-class block and a
  // rank-deficient block whose rows repeat earlier directions.
  std::vector<Mat<T>> ws;
  ws.push_back(gaussian<T>(1, d, 140));
  ws.push_back(gaussian<T>(1, d, 141));
  ws.push_back(gaussian<T>(3, d, 142));
  Mat<T> dependent(2, d);
  dependent.row(0) = ws[0] * T(2) - ws[1];
  dependent.row(1) = ws[2].row(0) + ws[1];
  ws.push_back(dependent);
  const auto ns = wproj::intersectNullSpaces(ws);
  CHECK(ns.ambientDim() == d);
  CHECK(ns.dim() == d - 5);

  const Mat<T> p = ns.projector();
  const double tol = tolFor<T>(d);
  CHECK((p * p - p).cwiseAbs().maxCoeff() <= tol);
  CHECK((p - p.transpose()).cwiseAbs().maxCoeff() <= tol);
  const Mat<T> x = gaussian<T>(d, 8, 143);
  const Mat<T> px = ns.project(x, Side::Left);
  for (const auto& w : ws) CHECK((w * px).cwiseAbs().maxCoeff() <= tol * 4 * w.norm() * x.cwiseAbs().maxCoeff() * std::sqrt(double(d)));

  // Ben-Israel, evaluated with pseudo-inverses in double: I − P_R(Σ_i P_R(w_i)).
  Mat<double> sumP = Mat<double>::Zero(d, d);
  for (const auto& w : ws) sumP += rowProjectorOracle(w);
  const Mat<double> oracle = Mat<double>::Identity(d, d) - rowProjectorOracle(sumP);
  CHECK(maxAbsDiff(p, oracle) <= tol * 4);

  // Also the same as the null space of everything stacked.
  Mat<T> stacked(7, d);
  stacked << ws[0], ws[1], ws[2], ws[3];
  CHECK(maxAbsDiff(p, wproj::nullSpace(stacked).projector().template cast<double>()) <= tol * 4);

  // Single matrix: its null space; the double-typed tolerance argument converts.
  CHECK(wproj::intersectNullSpaces(std::vector<Mat<T>>{ws[2]}).dim() == d - 3);
  CHECK(wproj::intersectNullSpaces(ws, 1e-3).dim() == d - 5);
  // Zero classifiers remove nothing.
  CHECK(wproj::intersectNullSpaces(std::vector<Mat<T>>{Mat<T>::Zero(2, d)}).dim() == d);
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("nullspace functions: expression inputs (products) are evaluated once", "[nullspace]", float,
                   double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const Mat<T> a = gaussian<T>(4, 3, 160), b = gaussian<T>(3, 9, 161);
  CHECK(wproj::nullSpaceBasis(a * b).cols() == 6);
  CHECK(wproj::nullSpace(a * b).dim() == 6);
  CHECK(wproj::rowSpace(a * b).dim() == 3);
  CHECK(wproj::columnSpace(a * b).dim() == 3);
  const Mat<T> k = gaussian<T>(6, 2, 162);
  CHECK(wproj::psdNullSpace(k * k.transpose(), T(1e-3)).dim() == 4);
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}

TEMPLATE_TEST_CASE("nullspace functions: invalid arguments", "[nullspace]", float, double) {
  using T = TestType;
  const int eigenAsserts = eigenAssertFailures();
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  Mat<T> a = gaussian<T>(4, 6, 150);
  CHECK_THROWS_WITH(wproj::nullSpaceBasis(a, T(-2)), Catch::Contains("nullSpaceBasis") && Catch::Contains("'tol'"));
  CHECK_THROWS_AS(wproj::nullSpace(a, nan), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::rowSpace(a, T(-0.1)), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::columnSpace(a, inf), wproj::InvalidArgument);
  a(3, 1) = inf;
  CHECK_THROWS_WITH(wproj::nullSpace(a), Catch::Contains("non-finite") && Catch::Contains("(3, 1)"));
  a(3, 1) = nan;
  CHECK_THROWS_AS(wproj::rowSpace(a), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::columnSpace(a), wproj::InvalidArgument);

  // psdNullSpace: square, symmetric, finite, threshold finite and ≥ 0.
  const Mat<T> g = gaussian<T>(5, 5, 151);
  const Mat<T> spd = g * g.transpose();
  CHECK_THROWS_WITH(wproj::psdNullSpace(Mat<T>(gaussian<T>(4, 5, 152)), T(0.1)), Catch::Contains("square"));
  CHECK_THROWS_WITH(wproj::psdNullSpace(g, T(0.1)), Catch::Contains("symmetric"));
  CHECK_THROWS_WITH(wproj::psdNullSpace(spd, T(-0.1)), Catch::Contains("'threshold'"));
  CHECK_THROWS_AS(wproj::psdNullSpace(spd, nan), wproj::InvalidArgument);
  Mat<T> bad = spd;
  bad(0, 0) = nan;
  CHECK_THROWS_AS(wproj::psdNullSpace(bad, T(0.1)), wproj::InvalidArgument);

  // intersectNullSpaces: non-empty list, equal column counts, finite.
  CHECK_THROWS_WITH(wproj::intersectNullSpaces(std::vector<Mat<T>>{}), Catch::Contains("ws.size()"));
  CHECK_THROWS_WITH(wproj::intersectNullSpaces(std::vector<Mat<T>>{gaussian<T>(1, 6, 153), gaussian<T>(1, 7, 154)}),
                    Catch::Contains("ws[1]") && Catch::Contains("1x7"));
  Mat<T> w = gaussian<T>(2, 6, 155);
  w(1, 1) = nan;
  CHECK_THROWS_WITH(wproj::intersectNullSpaces(std::vector<Mat<T>>{w}), Catch::Contains("ws[0]"));
  CHECK_THROWS_AS(wproj::intersectNullSpaces(std::vector<Mat<T>>{gaussian<T>(2, 6, 156)}, T(-5)),
                  wproj::InvalidArgument);
  CHECK(eigenAssertFailures() == eigenAsserts);  // no Eigen assertion fired
}
