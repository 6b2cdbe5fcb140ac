// Tests of the spectral mergers (Iso-C, Iso-CTS, TSV-M) and of the polar factor they use.
#include "test_common.hpp"

#include <wproj/linalg/polar.hpp>
#include <wproj/merging/spectral.hpp>

#include <vector>

using namespace wproj_test;
using Catch::Matchers::Contains;

namespace {
template <typename T>
Vec<double> singularValues(const Mat<T>& a) {
  Eigen::BDCSVD<Mat<double>> svd(a.template cast<double>());
  return svd.singularValues();
}
}  // namespace

TEMPLATE_TEST_CASE("polar factor: nearest orthonormal matrix, U Vᵀ of the SVD", "[merging][polar]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-11;
  // Tall and wide.
  const Mat<T> tall = gaussian<T>(30, 7, 1);
  const Mat<T> p = wproj::polarFactor(tall);
  CHECK(orthoError(p) <= tol);
  Eigen::BDCSVD<Mat<double>> svd(tall.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Mat<double> ref = svd.matrixU() * svd.matrixV().transpose();
  CHECK((p.template cast<double>() - ref).norm() <= tol * 10);
  const Mat<T> wide = gaussian<T>(5, 12, 2);
  const Mat<T> pw = wproj::polarFactor(wide);
  CHECK(orthoError(Mat<T>(pw.transpose())) <= tol);
  // A perturbed orthonormal matrix goes back close to it; the symmetric factor PᵀX is PSD.
  const Mat<T> q = randomOrthonormal<T>(20, 6, 3);
  const Mat<T> noisy = q + T(1e-3) * gaussian<T>(20, 6, 4);
  const Mat<T> back = wproj::polarFactor(noisy);
  CHECK((back - q).norm() <= 2e-3 * std::sqrt(120.0));
  const Mat<double> h = back.template cast<double>().transpose() * noisy.template cast<double>();
  CHECK((h - h.transpose()).norm() <= tol * 10);
  Eigen::SelfAdjointEigenSolver<Mat<double>> eig(0.5 * (h + h.transpose()));
  CHECK(eig.eigenvalues().minCoeff() > 0);
  // Row-major map input.
  RowMajorMat<T> rm = tall;
  Eigen::Map<const RowMajorMat<T>> map(rm.data(), rm.rows(), rm.cols());
  CHECK((wproj::polarFactor(map) - p).norm() <= tol);
  CHECK_THROWS_AS(wproj::polarFactor(Mat<T>(0, 3)), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("Iso-C flattens the spectrum of the summed task vectors", "[merging][iso]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  for (auto [m, n] : {std::pair<Index, Index>{18, 10}, {8, 15}}) {
    std::vector<Mat<T>> taus{gaussian<T>(m, n, 1), gaussian<T>(m, n, 2), gaussian<T>(m, n, 3)};
    const Mat<T> sum = taus[0] + taus[1] + taus[2];
    const double mean = singularValues(sum).mean();
    wproj::IsoCMerging<T> iso;
    iso.setScale(1.5);
    wproj::TensorReport rep;
    const Mat<T> d = iso.mergeDelta(taus, &rep);
    const Vec<double> s = singularValues(d);
    CHECK((s.array() - 1.5 * mean).abs().maxCoeff() <= tol * mean * 10);  // flat, at alpha * mean(sigma)
    // Same singular subspaces as the sum: Δ = c·polar(sum).
    const Mat<T> polar = wproj::polarFactor(sum);
    CHECK((d - T(1.5 * mean) * polar).norm() <= tol * 10 * d.norm());
    CHECK(rep.rank == std::min(m, n));
  }
  wproj::TensorReport zrep;
  CHECK(wproj::IsoCMerging<T>().mergeDelta({Mat<T>(Mat<T>::Zero(4, 3)), Mat<T>(Mat<T>::Zero(4, 3))}, &zrep).isZero(0));
  CHECK(zrep.warnings.size() == 1);
}

namespace {

/// Iso-CTS computed independently in double from the published rule: k₀ = ⌊f·s⌋,
/// d = round((s − k₀)/T) with Python's round (half to even), k = s − d·T; the top k of svd(Σ τ),
/// the top d of each svd(τ_i − U_cU_cᵀτ_i); stacked, replaced by polar factors; level = mean of
/// the s kept σ. Returns Δ/α, and the stacked U* (before its polar factor), k, d and the level.
struct IsoCtsOracle {
  Mat<double> delta, stackedU;
  Index k = 0, d = 0;
  double level = 0;
};

template <typename T>
IsoCtsOracle isoCtsOracle(const std::vector<Mat<T>>& taus, double f) {
  const Index m = taus[0].rows(), n = taus[0].cols(), s = std::min(m, n), t = Index(taus.size());
  IsoCtsOracle o;
  const Index k0 = Index(double(s) * f);
  o.d = Index(std::nearbyint(double(s - k0) / double(t)));  // FE_TONEAREST: ties to even
  o.k = s - o.d * t;
  Mat<double> sum = Mat<double>::Zero(m, n);
  for (const auto& tau : taus) sum += tau.template cast<double>();
  Eigen::BDCSVD<Mat<double>> sumSvd(sum, Eigen::ComputeThinU | Eigen::ComputeThinV);
  Mat<double> us(m, s), vs(n, s);
  Vec<double> sig(s);
  const Mat<double> uc = sumSvd.matrixU().leftCols(o.k);
  for (Index i = 0; i < t; ++i) {
    const Mat<double> tau = taus[std::size_t(i)].template cast<double>();
    const Mat<double> res = tau - uc * (uc.transpose() * tau);
    Eigen::BDCSVD<Mat<double>> r(res, Eigen::ComputeThinU | Eigen::ComputeThinV);
    us.middleCols(i * o.d, o.d) = r.matrixU().leftCols(o.d);
    vs.middleCols(i * o.d, o.d) = r.matrixV().leftCols(o.d);
    sig.segment(i * o.d, o.d) = r.singularValues().head(o.d);
  }
  us.rightCols(o.k) = uc;
  vs.rightCols(o.k) = sumSvd.matrixV().leftCols(o.k);
  sig.tail(o.k) = sumSvd.singularValues().head(o.k);
  Eigen::BDCSVD<Mat<double>> pu(us, Eigen::ComputeThinU | Eigen::ComputeThinV), pv(vs, Eigen::ComputeThinU | Eigen::ComputeThinV);
  o.level = sig.mean();
  o.delta = o.level * (pu.matrixU() * pu.matrixV().transpose()) * (pv.matrixU() * pv.matrixV().transpose()).transpose();
  o.stackedU = us;
  return o;
}

}  // namespace

TEMPLATE_TEST_CASE("Iso-CTS: the reference split of directions, checked against an independent computation",
                   "[merging][iso]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  struct Case {
    Index m, n, tasks;
    double f;
    Index k, d;  // expected split of s = min(m, n)
  };
  // s = 20: (20 − 16)/4 = 1; 4/3 → 1, k = 17; 4/6 → 1, k = 14; 4/8 = 1/2 → 0 (ties to even),
  // k = 20; f = 0.5: 10/3 → 3, k = 11; 10/4 = 2.5 → 2, k = 12; 12×9 (s = 9): 2/3 → 1, k = 6.
  const std::vector<Case> cases = {{24, 20, 4, 0.8, 16, 1}, {24, 20, 3, 0.8, 17, 1}, {24, 20, 6, 0.8, 14, 1},
                                   {24, 20, 8, 0.8, 20, 0}, {24, 20, 3, 0.5, 11, 3}, {20, 24, 4, 0.5, 12, 2},
                                   {12, 9, 3, 0.8, 6, 1}};
  for (const auto& c : cases) {
    CAPTURE(c.m, c.n, c.tasks, c.f);
    const Index s = std::min(c.m, c.n);
    std::vector<Mat<T>> taus;
    for (Index i = 0; i < c.tasks; ++i) taus.push_back(gaussian<T>(c.m, c.n, 10 + std::uint64_t(i)));
    const IsoCtsOracle o = isoCtsOracle(taus, c.f);
    REQUIRE(o.k == c.k);
    REQUIRE(o.d == c.d);
    CHECK(wproj::IsoCtsMerging<T>::split(c.m, c.n, c.tasks, c.f) == std::make_pair(c.k, c.d));
    wproj::IsoCtsMerging<T> cts;
    cts.setCommonFraction(c.f).setScale(1.5);
    wproj::TensorReport rep;
    const Mat<T> delta = cts.mergeDelta(taus, &rep);
    // Every direction is used: s orthonormal columns spanning exactly the chosen directions.
    REQUIRE(cts.lastU().cols() == s);
    REQUIRE(cts.lastV().cols() == s);
    CHECK(orthoError(cts.lastU()) <= tol);
    CHECK(orthoError(cts.lastV()) <= tol);
    const Mat<double> q = cts.lastU().template cast<double>();
    CHECK((o.stackedU - q * (q.transpose() * o.stackedU)).norm() <= tol * 10 * o.stackedU.norm());
    CHECK(rep.rank == c.k);
    // The output: level = mean of the s kept σ, flat spectrum, same factors.
    const Vec<double> sv = singularValues(delta);
    CHECK((sv.array() - 1.5 * o.level).abs().maxCoeff() <= tol * 10 * o.level);
    const double rel = (delta.template cast<double>() - 1.5 * o.delta).norm() / (1.5 * o.delta.norm());
    CAPTURE(rel);
    CHECK(rel <= tol * 10);
    CHECK(rep.warnings.size() == (c.d == 0 ? 1u : 0u));
    if (c.d == 0) CHECK_THAT(rep.warnings[0], Contains("common subspace only"));
  }
  // A task vector whose residual has rank < d (here zero): zero columns, no uninitialised data.
  std::vector<Mat<T>> withZero{gaussian<T>(24, 20, 1), Mat<T>::Zero(24, 20)};
  wproj::IsoCtsMerging<T> cts;
  const Mat<T> dz = cts.mergeDelta(withZero);
  CHECK(dz.allFinite());
  CHECK(cts.lastU().allFinite());
}

TEMPLATE_TEST_CASE("Iso-CTS: orthonormal stacked factors, flat spectrum on common + task directions", "[merging][iso]",
                   float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  const Index m = 24, n = 20;  // s = 20, k = 16 common, d = (20 - 16)/4 = 1 per task
  std::vector<Mat<T>> taus;
  for (int i = 0; i < 4; ++i) taus.push_back(gaussian<T>(m, n, 10 + i));
  wproj::IsoCtsMerging<T> cts;
  wproj::TensorReport rep;
  const Mat<T> d = cts.mergeDelta(taus, &rep);
  CHECK(rep.rank == 16);
  CHECK(cts.lastU().cols() == 20);
  CHECK(orthoError(cts.lastU()) <= tol);
  CHECK(orthoError(cts.lastV()) <= tol);
  const Vec<double> s = singularValues(d);
  CHECK((s.array() - s(0)).abs().maxCoeff() <= tol * 10 * s(0));  // all 20 equal
  CHECK(rep.warnings.empty());
  // Common fraction 0.5, 2 tasks: 10 common + 2 x 5 task directions.
  wproj::IsoCtsMerging<T> half;
  half.setCommonFraction(0.5);
  const Mat<T> d2 = half.mergeDelta({taus[0], taus[1]});
  CHECK(half.lastU().cols() == 20);
  CHECK(orthoError(half.lastV()) <= tol);
  CHECK(d2.allFinite());
  // Many more tasks than the 4 task-specific directions: d = round(4/12) = 0, every direction
  // common, with a warning.
  std::vector<Mat<T>> many;
  for (int i = 0; i < 12; ++i) many.push_back(gaussian<T>(m, n, 40 + i));
  wproj::TensorReport mrep;
  const Mat<T> d3 = cts.mergeDelta(many, &mrep);
  CHECK(d3.allFinite());
  REQUIRE(mrep.warnings.size() == 1);
  CHECK_THAT(mrep.warnings[0], Contains("common subspace only"));
  CHECK(cts.lastU().cols() == 20);
  CHECK(mrep.rank == 20);
}

TEMPLATE_TEST_CASE("TSV-M: exact on tasks with disjoint singular subspaces, orthonormal factors", "[merging][tsv]", float,
                   double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  const Index m = 16, n = 12, tasksN = 3, k = 4;  // k = min(m,n)/T = 4
  const Mat<double> u = randomOrthonormal<double>(m, tasksN * k, 1), v = randomOrthonormal<double>(n, tasksN * k, 2);
  std::vector<Mat<T>> taus;
  Mat<double> sum = Mat<double>::Zero(m, n);
  for (Index i = 0; i < tasksN; ++i) {
    Vec<double> s(k);
    for (Index j = 0; j < k; ++j) s(j) = 5.0 - double(j) + double(i);
    const Mat<double> t = u.middleCols(i * k, k) * s.asDiagonal() * v.middleCols(i * k, k).transpose();
    sum += t;
    taus.push_back(t.cast<T>());
  }
  wproj::TsvMerging<T> tsv;
  wproj::TensorReport rep;
  const Mat<T> d = tsv.mergeDelta(taus, &rep);
  CHECK(rep.rank == k);
  CHECK((d.template cast<double>() - sum).norm() <= tol * 10 * sum.norm());
  CHECK(orthoError(tsv.lastU()) <= tol);
  CHECK(orthoError(tsv.lastV()) <= tol);
  // Generic (interfering) tasks: still orthonormal factors, singular values = the stacked sigmas.
  std::vector<Mat<T>> g{gaussian<T>(m, n, 7), gaussian<T>(m, n, 8), gaussian<T>(m, n, 9)};
  const Mat<T> dg = tsv.setScale(0.5).mergeDelta(g);
  CHECK(orthoError(tsv.lastU()) <= tol);
  CHECK(orthoError(tsv.lastV()) <= tol);
  Vec<double> stacked(tasksN * k);
  for (Index i = 0; i < tasksN; ++i) stacked.segment(i * k, k) = singularValues(g[std::size_t(i)]).head(k);
  std::sort(stacked.data(), stacked.data() + stacked.size(), std::greater<double>());
  CHECK((singularValues(dg).head(tasksN * k) - 0.5 * stacked).norm() <= tol * 10 * stacked.norm());
}

TEMPLATE_TEST_CASE("TSV-M with more tasks than the rank falls back to task arithmetic, with a warning", "[merging][tsv]",
                   float, double) {
  using T = TestType;
  std::vector<Mat<T>> taus;
  for (int i = 0; i < 5; ++i) taus.push_back(gaussian<T>(3, 4, 20 + i));  // min(m,n) = 3 < 5 tasks: k = 0
  wproj::TsvMerging<T> tsv;
  tsv.setScale(0.7);
  wproj::TensorReport rep;
  const Mat<T> d = tsv.mergeDelta(taus, &rep);
  Mat<T> expect = Mat<T>::Zero(3, 4);
  for (const auto& t : taus) expect += T(0.7) * t;
  CHECK((d - expect).norm() <= 1e-5 * expect.norm());
  REQUIRE(rep.warnings.size() == 1);
  CHECK_THAT(rep.warnings[0], Contains("fell back to task arithmetic"));
  CHECK_THAT(rep.method, Contains("-> task arithmetic"));
  // Zero task vectors: zero delta, no NaN; a zero task among others is reported.
  wproj::TensorReport zrep;
  const Mat<T> z = tsv.mergeDelta({Mat<T>(Mat<T>::Zero(6, 4)), Mat<T>(Mat<T>::Zero(6, 4))}, &zrep);
  CHECK(z.isZero(0));
  CHECK_FALSE(zrep.warnings.empty());
  wproj::TensorReport orep;
  CHECK(tsv.mergeDelta({Mat<T>(Mat<T>::Zero(6, 4)), gaussian<T>(6, 4, 1)}, &orep).allFinite());
  CHECK(orep.warnings.size() == 1);
  CHECK_THROWS_WITH(tsv.mergeDelta({gaussian<T>(6, 4, 1), gaussian<T>(6, 5, 2)}), Contains("expected 6x4"));
  CHECK_THROWS_AS(wproj::IsoCtsMerging<T>().mergeDelta({gaussian<T>(6, 4, 1), gaussian<T>(5, 4, 2)}), wproj::InvalidArgument);
}
