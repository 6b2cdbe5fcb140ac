// Tests: WeightEditor — sides, transposed storage, blocks, strength, precision, LEACE folding.
#include "test_common.hpp"

#include <wproj/editing/leace.hpp>
#include <wproj/editing/weight_editor.hpp>
#include <wproj/linalg/subspace.hpp>

using namespace wproj_test;
using wproj::Index;
using wproj::Side;
using wproj::WeightSide;

TEMPLATE_TEST_CASE("WeightEditor: sides, transposed storage, strength against explicit formulas", "[editor]", float, double) {
  using T = TestType;
  const Index out = 14, in = 9, k = 3;
  const Mat<T> w = gaussian<T>(out, in, 1);
  const Mat<T> qo = randomOrthonormal<T>(out, k, 2), qi = randomOrthonormal<T>(in, k, 3);
  const auto so = wproj::Subspace<T>::fromOrthonormal(qo), si = wproj::Subspace<T>::fromOrthonormal(qi);
  const T tol = T(50) * std::numeric_limits<T>::epsilon() * w.norm();

  for (double alpha : {1.0, 0.3, 0.0}) {
    const T a = T(alpha);
    const Mat<T> wOut = w - a * qo * (qo.transpose() * w);   // (I − αQQᵀ)W
    const Mat<T> wIn = w - a * (w * qi) * qi.transpose();    // W(I − αQQᵀ)
    wproj::WeightEditor<T> ed;
    ed.setStrength(alpha);
    const Mat<T> copy = w;
    const auto r1 = ed.setSide(WeightSide::Output).apply(w, so);
    CHECK((r1.weight - wOut).norm() < tol);
    CHECK(r1.report.storageSide == Side::Left);
    CHECK(std::abs(r1.report.deltaNorm - double((wOut - w).norm())) < double(tol));
    for (Index j = 0; j < k; ++j) {  // ‖q_jᵀW‖ scales by (1 − α)
      CHECK(std::abs(r1.report.normBefore(j) - double((qo.col(j).transpose() * w).norm())) < double(tol));
      CHECK(std::abs(r1.report.normAfter(j) - (1 - alpha) * r1.report.normBefore(j)) < double(tol));
    }
    const auto r2 = ed.setSide(WeightSide::Input).apply(w, si);
    CHECK((r2.weight - wIn).norm() < tol);
    CHECK(r2.report.storageSide == Side::Right);
    CHECK((w - copy).norm() == T(0));  // apply() never touches its input
    // transposed storage (GPT-2 Conv1D): the stored matrix is Wᵀ and the sides swap
    const Mat<T> wt = w.transpose();
    ed.setTransposed(true);
    CHECK((ed.setSide(WeightSide::Output).apply(wt, so).weight - wOut.transpose()).norm() < tol);
    CHECK(ed.storageSide() == Side::Right);
    CHECK((ed.setSide(WeightSide::Input).apply(wt, si).weight - wIn.transpose()).norm() < tol);
  }
}

TEMPLATE_TEST_CASE("WeightEditor: blocks, in-place on row-major maps, double accumulation", "[editor]", float, double) {
  using T = TestType;
  const Index out = 12, in = 16;
  const Mat<T> w = gaussian<T>(out, in, 11);
  const Mat<T> q = randomOrthonormal<T>(out, 2, 12);
  const auto s = wproj::Subspace<T>::fromOrthonormal(q);
  const T tol = T(50) * std::numeric_limits<T>::epsilon() * w.norm();

  // output side on input columns [4, 8): only that block changes
  wproj::WeightEditor<T> ed;
  ed.setInputRange(4, 4);
  const Mat<T> blockRef = w.middleCols(4, 4) - q * (q.transpose() * w.middleCols(4, 4));
  const auto r = ed.apply(w, s);
  CHECK((r.weight.middleCols(4, 4) - blockRef).norm() < tol);
  CHECK((r.weight.leftCols(4) - w.leftCols(4)).norm() == T(0));
  CHECK((r.weight.rightCols(8) - w.rightCols(8)).norm() == T(0));

  // in place on a row-major map of the transposed storage, block in logical coordinates
  RowMajorMat<T> storage = w.transpose();
  Eigen::Map<RowMajorMat<T>> map(storage.data(), in, out);
  const auto s5 = wproj::Subspace<T>::fromOrthonormal(randomOrthonormal<T>(5, 2, 13));
  wproj::WeightEditor<T> blockEd;
  blockEd.setTransposed(true).setOutputRange(3, 5).setInputRange(2, 10);
  const auto rep = blockEd.applyInPlace(map, s5);
  Mat<T> expected = w;
  expected.block(3, 2, 5, 10) = s5.projectOut(w.block(3, 2, 5, 10), Side::Left);
  CHECK((Mat<T>(storage.transpose()) - expected).norm() < tol);
  CHECK(rep.normAfter.maxCoeff() < double(tol));

  // accumulation in double: the result is the double computation rounded once
  wproj::WeightEditor<T> dbl;
  dbl.setAccumulateInDouble(true).setStrength(0.7);
  const auto rd = dbl.apply(w, s);
  const Mat<double> wd = w.template cast<double>(), qd = q.template cast<double>();
  const Mat<double> refD = wd - 0.7 * qd * (qd.transpose() * wd);
  CHECK((rd.weight.template cast<double>() - refD).cwiseAbs().maxCoeff() <=
        2 * eps<T>() * refD.cwiseAbs().maxCoeff() + 1e-3 * eps<T>() * 0 + (std::is_same<T, float>::value ? 1e-6 : 1e-14));
}

TEMPLATE_TEST_CASE("WeightEditor: LEACE bias folding reproduces r(Wx + b)", "[editor][leace]", float, double) {
  using T = TestType;
  const Index out = 8, in = 6, n = 300;
  const Mat<T> w = gaussian<T>(out, in, 21);
  const Vec<T> b = gaussian<T>(out, 1, 22).col(0);
  // outputs of the layer on random inputs carry a concept along one direction
  Mat<T> xin = gaussian<T>(n, in, 23);
  wproj::Labels z(n);
  for (Index i = 0; i < n; ++i) z(i) = i % 2;
  Mat<T> y = (xin * w.transpose()).rowwise() + b.transpose();
  const Vec<T> dir = randomOrthonormal<T>(out, 1, 24).col(0);
  for (Index i = 0; i < n; ++i) y.row(i) += T(z(i) ? 1.5 : -1.5) * dir.transpose();
  const wproj::LeaceEraser<T> e = wproj::LeaceFitter<T>::fit(y, z, 2);
  REQUIRE(e.rank() == 1);

  wproj::WeightEditor<T> ed;
  const Mat<T> xs = gaussian<T>(5, in, 25);
  const Mat<T> yRef = e.erase(Mat<T>((xs * w.transpose()).rowwise() + b.transpose()));
  const auto res = ed.apply(w, b, e);
  const Mat<T> yNew = (xs * res.weight.transpose()).rowwise() + res.bias.transpose();
  const T tol = T(1e3) * std::numeric_limits<T>::epsilon() * (T(1) + yRef.cwiseAbs().maxCoeff());
  CHECK((yNew - yRef).cwiseAbs().maxCoeff() < tol);
  CHECK(res.report.normAfter(0) < double(tol));
  CHECK(res.report.normAfter(0) < 1e-3 * res.report.normBefore(0) + double(tol));
  // W' = PW and b' = Pb + (I − P)μ
  const Mat<T> p = e.projector();
  CHECK((res.weight - p * w).norm() < tol);
  CHECK((res.bias - (p * b + (Mat<T>::Identity(out, out) - p) * e.bias())).norm() < tol);
  // transposed storage, in place
  Mat<T> wt = w.transpose();
  Vec<T> bb = b;
  ed.setTransposed(true).applyInPlace(wt, bb, e);
  CHECK((wt - (p * w).transpose()).norm() < tol);
  CHECK((bb - res.bias).norm() < tol);
}

TEST_CASE("WeightEditor: bad input", "[editor]") {
  const Mat<double> w = gaussian<double>(6, 4, 31);
  const auto s6 = wproj::Subspace<double>::fromOrthonormal(randomOrthonormal<double>(6, 1, 32));
  wproj::WeightEditor<double> ed;
  CHECK_THROWS_WITH(ed.setSide(WeightSide::Input).apply(w, s6), Catch::Contains("ambientDim"));
  ed.setSide(WeightSide::Output);
  CHECK_NOTHROW(ed.apply(w, s6));
  CHECK_THROWS_WITH(ed.setOutputRange(4, 3).apply(w, s6), Catch::Contains("output range"));
  ed.clearRanges();
  CHECK_THROWS_WITH(ed.setInputRange(5).apply(w, s6), Catch::Contains("input range"));
  ed.clearRanges();
  CHECK_THROWS_AS(ed.setStrength(1.5), wproj::InvalidArgument);
  Mat<double> bad = w;
  bad(1, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(ed.apply(bad, s6), Catch::Contains("non-finite"));
  CHECK_THROWS_AS(ed.apply(Mat<double>(0, 4), s6), wproj::InvalidArgument);
  // LEACE folding needs the output side and a bias per output
  Mat<double> y = gaussian<double>(40, 6, 33);
  wproj::Labels z(40);
  for (Index i = 0; i < 40; ++i) z(i) = i % 2, y(i, 0) += z(i) ? 2 : -2;
  const auto e = wproj::LeaceFitter<double>::fit(y, z, 2);
  CHECK_THROWS_WITH(ed.apply(w, Eigen::VectorXd::Zero(5), e), Catch::Contains("b.size()"));
  CHECK_THROWS_WITH(ed.setSide(WeightSide::Input).apply(w, Eigen::VectorXd::Zero(6), e), Catch::Contains("output"));
}
