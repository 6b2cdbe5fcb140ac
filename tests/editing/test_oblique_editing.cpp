// Tests: the LEACE eraser as an ObliqueProjector, WeightEditor applying oblique projectors, and
// the code examples of the editing doc comments (compiled and run as written).
#include "editing_data.hpp"

#include <wproj/editing/detox.hpp>
#include <wproj/editing/leace.hpp>
#include <wproj/editing/weight_editor.hpp>
#include <wproj/linalg/oblique_projector.hpp>

#include <Eigen/LU>

using namespace wproj_test;
using wproj::Index;
using wproj::ObliqueProjector;
using wproj::Side;
using wproj::WeightSide;

namespace {

/// A rank-r oblique projection's factors with BᵀA = I (built in double, then cast).
template <typename T>
std::pair<Mat<T>, Mat<T>> factors(Index d, Index r, std::uint64_t seed) {
  const Mat<double> a = gaussian<double>(d, r, seed);
  const Mat<double> b0 = gaussian<double>(d, r, seed + 1);
  return {a.cast<T>(), Mat<double>(b0 * (a.transpose() * b0).inverse()).cast<T>()};
}

/// Labels 0/1 alternating over n samples.
wproj::Labels alternating(Index n) {
  wproj::Labels z(n);
  for (Index i = 0; i < n; ++i) z(i) = int(i % 2);
  return z;
}

}  // namespace

TEMPLATE_TEST_CASE("LeaceEraser provides its map as an ObliqueProjector", "[leace][oblique]", float, double) {
  using T = TestType;
  const Index d = 10;
  const Planted<T> data(400, d, 3, 1.5, 61);
  // correlated features, so that the whitened (oblique) eraser differs from the orthogonal one
  const Mat<T> mix = Mat<T>::Identity(d, d) + T(0.5) * gaussian<T>(d, d, 62);
  const Mat<T> x = data.x * mix;
  for (bool affine : {true, false}) {
    wproj::LeaceFitter<T> fitter(d, 3);
    fitter.setAffine(affine).setTraceConstraint(false).update(x, data.z);
    const wproj::LeaceEraser<T> e = fitter.eraser();
    const ObliqueProjector<T>& p = e.obliqueProjector();
    REQUIRE(e.rank() == 2);
    CHECK(p.affine() == affine);
    CHECK((p.left() - e.left()).norm() == T(0));
    CHECK((p.right() - e.right()).norm() == T(0));
    CHECK((p.centre() - e.bias()).norm() == T(0));
    CHECK((p.dense() - e.projector()).norm() == T(0));
    CHECK((p.mapRows(x) - e.erase(x)).norm() == T(0));
    // LEACE's P is an oblique projection: idempotent, not symmetric
    CHECK(p.isIdempotent(T(std::is_same<T, float>::value ? 1e-3 : 1e-8)));
    const Mat<T> dense = p.dense();
    CHECK((dense - dense.transpose()).norm() > T(1e-2));
  }
}

TEMPLATE_TEST_CASE("WeightEditor applies an ObliqueProjector on either side, storage and strength", "[editor][oblique]", float, double) {
  using T = TestType;
  const Index out = 9, in = 7, r = 2;
  const Mat<T> w = gaussian<T>(out, in, 71);
  const auto fo = factors<T>(out, r, 72);
  const auto fi = factors<T>(in, r, 74);
  const ObliqueProjector<T> po(fo.first, fo.second), pi(fi.first, fi.second);
  const T tol = T(500) * std::numeric_limits<T>::epsilon() *
                (T(1) + w.norm() * (po.dense().norm() + pi.dense().norm()));

  for (double alpha : {1.0, 0.4, 0.0}) {
    const T a = T(alpha);
    const Mat<T> wOut = (Mat<T>::Identity(out, out) - a * fo.first * fo.second.transpose()) * w;
    const Mat<T> wIn = w * (Mat<T>::Identity(in, in) - a * fi.first * fi.second.transpose());
    wproj::WeightEditor<T> ed;
    ed.setStrength(alpha);
    const auto r1 = ed.setSide(WeightSide::Output).apply(w, po);
    CHECK((r1.weight - wOut).norm() < tol);
    CHECK(r1.report.storageSide == Side::Left);
    CHECK(std::abs(r1.report.deltaNorm - double((wOut - w).norm())) < double(tol));
    for (Index j = 0; j < r; ++j) {  // ‖b̂_jᵀW‖ scales by (1 − α) since BᵀA = I
      const Vec<T> bj = fo.second.col(j).normalized();
      CHECK(std::abs(r1.report.normBefore(j) - double((bj.transpose() * w).norm())) < double(tol));
      CHECK(std::abs(r1.report.normAfter(j) - (1 - alpha) * r1.report.normBefore(j)) < double(tol));
    }
    const auto r2 = ed.setSide(WeightSide::Input).apply(w, pi);
    CHECK((r2.weight - wIn).norm() < tol);
    CHECK(r2.report.storageSide == Side::Right);
    for (Index j = 0; j < r; ++j) {  // ‖Wâ_j‖
      const Vec<T> aj = fi.first.col(j).normalized();
      CHECK(std::abs(r2.report.normBefore(j) - double((w * aj).norm())) < double(tol));
      CHECK(std::abs(r2.report.normAfter(j) - (1 - alpha) * r2.report.normBefore(j)) < double(tol));
    }
    // transposed storage in a row-major map, edited in place: the transposes of the same results
    RowMajorMat<T> st = w.transpose();
    Eigen::Map<RowMajorMat<T>> map(st.data(), in, out);
    ed.setTransposed(true).setSide(WeightSide::Output);
    const auto r3 = ed.applyInPlace(map, po);
    CHECK((Mat<T>(st) - wOut.transpose()).norm() < tol);
    CHECK(r3.storageSide == Side::Right);
    CHECK((r3.normBefore - r1.report.normBefore).norm() < double(tol));
    CHECK((r3.normAfter - r1.report.normAfter).norm() < double(tol));
    const Mat<T> wt = w.transpose();
    const auto r4 = ed.setSide(WeightSide::Input).apply(wt, pi);
    CHECK((r4.weight - wIn.transpose()).norm() < tol);
    CHECK((r4.report.normAfter - r2.report.normAfter).norm() < double(tol));
  }

  // the orthogonal special case edits exactly like the Subspace overload
  const auto s = wproj::Subspace<T>::fromOrthonormal(randomOrthonormal<T>(out, 3, 76));
  wproj::WeightEditor<T> ed;
  ed.setStrength(0.6).setInputRange(2, 4);
  const auto viaSubspace = ed.apply(w, s), viaOblique = ed.apply(w, ObliqueProjector<T>::fromSubspace(s));
  CHECK((viaSubspace.weight - viaOblique.weight).norm() < tol);
  CHECK((viaSubspace.report.normBefore - viaOblique.report.normBefore).norm() < double(tol));
  CHECK((viaSubspace.report.normAfter - viaOblique.report.normAfter).norm() < double(tol));
  CHECK((viaOblique.weight.leftCols(2) - w.leftCols(2)).norm() == T(0));

  // float weights edited in double are the double result rounded once
  wproj::WeightEditor<T> dbl;
  dbl.setAccumulateInDouble(true).setStrength(0.7);
  const auto rd = dbl.apply(w, po);
  const Mat<double> ad = fo.first.template cast<double>(), bd = fo.second.template cast<double>();
  const Mat<double> wd = w.template cast<double>();
  const Mat<double> refD = wd - 0.7 * ad * (bd.transpose() * wd);
  CHECK((rd.weight.template cast<double>() - refD).cwiseAbs().maxCoeff() <=
        2 * eps<T>() * refD.cwiseAbs().maxCoeff() + 1e-13);
}

TEMPLATE_TEST_CASE("WeightEditor: folding an ObliqueProjector equals folding the LEACE eraser", "[editor][leace][oblique]", float, double) {
  using T = TestType;
  const Index out = 8, in = 5, n = 200;
  Mat<T> y = gaussian<T>(n, out, 81);
  const wproj::Labels z = alternating(n);
  for (Index i = 0; i < n; ++i) y(i, 2) += T(z(i) ? 1 : -1);
  const auto e = wproj::LeaceFitter<T>::fit(y, z, 2);
  const Mat<T> w = gaussian<T>(out, in, 82);
  const Vec<T> b = gaussian<T>(out, 1, 83).col(0);
  for (double alpha : {1.0, 0.5}) {
    wproj::WeightEditor<T> ed;
    ed.setStrength(alpha);
    const auto viaEraser = ed.apply(w, b, e), viaProjector = ed.apply(w, b, e.obliqueProjector());
    CHECK((viaEraser.weight - viaProjector.weight).norm() == T(0));
    CHECK((viaEraser.bias - viaProjector.bias).norm() == T(0));
    CHECK((viaEraser.report.normAfter - viaProjector.report.normAfter).norm() == 0.0);
    // against the formula: W' = P_αW, b' = P_αb + (I − P_α)μ
    const Mat<double> pa = Mat<double>::Identity(out, out) -
                           alpha * e.left().template cast<double>() * e.right().template cast<double>().transpose();
    const Mat<double> wd = w.template cast<double>();
    const Vec<double> bd = b.template cast<double>(), mu = e.bias().template cast<double>();
    const double tol = 100 * eps<T>() * (1 + pa.norm() * (wd.norm() + bd.norm() + mu.norm()));
    CHECK((viaProjector.weight.template cast<double>() - pa * wd).norm() < tol);
    CHECK((viaProjector.bias.template cast<double>() - (pa * bd + mu - pa * mu)).norm() < tol);
  }
}

TEST_CASE("WeightEditor with an ObliqueProjector: bad input", "[editor][oblique]") {
  const Mat<double> w = gaussian<double>(6, 4, 91);
  const auto f = factors<double>(6, 2, 92);
  wproj::WeightEditor<double> ed;
  CHECK_THROWS_WITH(ed.setSide(WeightSide::Input).apply(w, ObliqueProjector<double>(f.first, f.second)),
                    Catch::Contains("projector.dim()"));
  ed.setSide(WeightSide::Output);
  const ObliqueProjector<double> affine(f.first, f.second, Vec<double>::Ones(6));
  CHECK_THROWS_WITH(ed.apply(w, affine), Catch::Contains("projector.affine()"));
  CHECK_NOTHROW(ed.apply(w, Eigen::VectorXd::Zero(6), affine));
  CHECK_THROWS_WITH(ed.apply(w, Eigen::VectorXd::Zero(5), affine), Catch::Contains("b.size()"));
  CHECK_THROWS_WITH(ed.setSide(WeightSide::Input).apply(w, Eigen::VectorXd::Zero(6), affine), Catch::Contains("output"));
}

// The \code examples of the doc comments, verbatim inside the set-up they assume.
TEST_CASE("Doc examples: ObliqueProjector, LeaceEraser, WeightEditor, DetoxEstimator", "[doc]") {
  const Index d = 6, r = 2, n = 5, m = 4;
  {  // ObliqueProjector (linalg/oblique_projector.hpp)
    const auto f = factors<double>(d, r, 101);
    const Eigen::MatrixXd a = f.first, b = f.second, x = gaussian<double>(d, n, 102), w = gaussian<double>(d, m, 103);
    const Eigen::VectorXd mu = gaussian<double>(d, 1, 104).col(0), bias = gaussian<double>(d, 1, 105).col(0);
    // erase the span of A along the functionals Bᵀ (BᵀA = I), then fold into a layer's output
    wproj::ObliqueProjector<double> p(a, b, mu);        // a, b: d×r; mu: d
    Eigen::MatrixXd px = p.apply(x, wproj::Side::Left); // P·X, X: d×n
    Eigen::MatrixXd w2 = w;                             // W: d×m (nn.Linear layout, d outputs)
    Eigen::VectorXd b2 = bias;                          // d
    p.composeAfter(w2, b2);                             // W ← PW, b ← Pb + (I − P)μ
    CHECK((px - p.dense() * x).norm() < 1e-10 * (1 + px.norm()));
    CHECK((w2 - p.dense() * w).norm() < 1e-10 * (1 + w2.norm()));
  }
  {  // LeaceEraser (editing/leace.hpp)
    const Planted<float> data(200, d, 2, 2.0, 106);
    const Eigen::MatrixXf x = data.x;
    const wproj::Labels labels = data.z;
    wproj::LeaceFitter<float> fitter(d, 2);              // x ∈ R^d, two classes
    fitter.update(x, labels);                            // x: n×d (rows = samples), labels: wproj::Labels
    const wproj::LeaceEraser<float> eraser = fitter.eraser();
    Eigen::MatrixXf erased = eraser.erase(x);            // class means now coincide
    const wproj::ObliqueProjector<float>& p = eraser.obliqueProjector();  // P = I − LRᵀ, centre μ
    CHECK(p.rank() == 1);
    CHECK((erased - p.mapRows(x)).norm() == 0.0f);
  }
  {  // WeightEditor (editing/weight_editor.hpp) and DetoxEstimator (editing/detox.hpp)
    const Index pairs = 20, dm = 8;
    const Eigen::MatrixXf preferred = gaussian<float>(pairs, dm, 107), toxic = gaussian<float>(pairs, dm, 108);
    const Eigen::MatrixXf downProj = gaussian<float>(dm, 4 * dm, 109);
    const Eigen::MatrixXf downProjConv1D = downProj.transpose();
    const Eigen::MatrixXf w = gaussian<float>(d, m, 110);
    const Eigen::VectorXf bias = gaussian<float>(d, 1, 111).col(0);
    Eigen::MatrixXf y = gaussian<float>(40, d, 112);
    const wproj::Labels z = alternating(40);
    for (Index i = 0; i < 40; ++i) y(i, 0) += z(i) ? 2.0f : -2.0f;
    const wproj::LeaceEraser<float> eraser = wproj::LeaceFitter<float>::fit(y, z, 2);
    {
      wproj::DetoxEstimator<float> detox;
      detox.setRank(2).fit(preferred, toxic);                     // N×D each, row i = pair i
      const wproj::Subspace<float>& toxicDirections = detox.subspace();
      auto edited = wproj::WeightEditor<float>().apply(downProj, toxicDirections);  // (I − P)W, W: D×4D
      CHECK(edited.report.normAfter.maxCoeff() < 1e-4);
    }
    wproj::DetoxEstimator<float> detox;
    detox.setRank(2).fit(preferred, toxic);                       // N×D each, rows paired
    wproj::WeightEditor<float> editor;                            // output side, α = 1
    auto edited = editor.apply(downProj, detox.subspace());       // (I − QQᵀ)W, W: D×4D
    wproj::WeightEditor<float> gpt2;                              // the same on a Conv1D weight (4D×D)
    gpt2.setTransposed(true).setStrength(0.5);
    auto half = gpt2.apply(downProjConv1D, detox.subspace());
    auto folded = editor.apply(w, bias, eraser);                  // LEACE: W' = PW, b' = Pb + (I − P)μ
    CHECK(edited.report.normAfter.maxCoeff() < 1e-4);
    CHECK((half.report.normAfter - 0.5 * half.report.normBefore).norm() < 1e-4);
    CHECK((folded.weight - eraser.obliqueProjector().apply(w, Side::Left)).norm() < 1e-4);
  }
}
