// GWT's Haar wavelet basis: the lifting transform against a dense Haar matrix built level by
// level, the basis' products against that matrix, one projected AdamW step by hand, and a
// checkpoint that resumes bit for bit.
#include "test_common.hpp"

#include <wproj/gradient/adamw.hpp>
#include <wproj/gradient/wavelet_basis.hpp>

#include <sstream>

using namespace wproj;
using namespace wproj_test;

namespace {

// The orthonormal Haar analysis matrix H (n×n, coefficients = H x) of `levels` levels, built as a
// product of dense one-level matrices: rows k < ⌊n/2⌋ average the pair (2k, 2k+1), the next rows
// difference it, an odd last sample is copied; later levels act on the leading approximation block.
Mat<double> denseHaar(Index n, int levels) {
  Mat<double> h = Mat<double>::Identity(n, n);
  Index len = n;
  const double s = 1.0 / std::sqrt(2.0);
  for (int l = 0; l < levels && len >= 2; ++l) {
    Mat<double> level = Mat<double>::Identity(n, n);
    level.topLeftCorner(len, len).setZero();
    const Index half = len / 2, approx = (len + 1) / 2;
    for (Index k = 0; k < half; ++k) {
      level(k, 2 * k) = s;
      level(k, 2 * k + 1) = s;
      level(approx + k, 2 * k) = s;
      level(approx + k, 2 * k + 1) = -s;
    }
    if (len % 2 == 1) level(half, len - 1) = 1.0;
    h = level * h;
    len = approx;
  }
  return h;
}

}  // namespace

TEMPLATE_TEST_CASE("haarForward/haarInverse: the orthonormal Haar transform by lifting", "[gradient][wavelet]", float, double) {
  using S = TestType;
  const double tol = 50 * eps<S>();
  for (Index n : {Index(16), Index(13), Index(7), Index(2)}) {
    for (int levels : {1, 2, 3}) {
      const Mat<double> h = denseHaar(n, levels);
      CHECK((h * h.transpose() - Mat<double>::Identity(n, n)).norm() < 1e-12);
      const Mat<S> x = gaussian<S>(n, 5, 100 + std::uint64_t(n));
      // Left: every column is a signal.
      Mat<S> y = x;
      haarForward(y, levels, Side::Left);
      const Mat<double> ref = h * x.template cast<double>();
      CHECK((y.template cast<double>() - ref).norm() <= tol * ref.norm());
      CHECK(double(y.norm()) == Approx(double(x.norm())).epsilon(tol));
      haarInverse(y, levels, Side::Left);
      CHECK((y - x).norm() <= S(tol) * x.norm());
      // Right: every row is a signal, through a row-major matrix.
      RowMajorMat<S> xt = x.transpose();
      haarForward(xt, levels, Side::Right);
      CHECK((xt.transpose().template cast<double>() - ref).norm() <= tol * ref.norm());
      haarInverse(xt, levels, Side::Right);
      CHECK((Mat<S>(xt.transpose()) - x).norm() <= S(tol) * x.norm());
    }
  }
  CHECK(haarApproximationSize(16, 2) == 4);
  CHECK(haarApproximationSize(13, 2) == 4);  // 13 → 7 → 4
  CHECK(haarApproximationSize(1, 3) == 1);
  CHECK_THROWS_AS([] { Mat<S> z(4, 4); haarForward(z, 0, Side::Left); }(), InvalidArgument);
}

TEMPLATE_TEST_CASE("WaveletBasis: P is the approximation block of the Haar matrix", "[gradient][wavelet]", float, double) {
  using S = TestType;
  const double tol = 50 * eps<S>();
  for (Index ambient : {Index(24), Index(21)}) {
    for (int levels : {1, 2}) {
      const Index r = haarApproximationSize(ambient, levels);
      const Mat<double> h = denseHaar(ambient, levels);
      const Mat<double> pRef = h.topRows(r).transpose();
      WaveletBasis<S> b;
      b.setLevels(levels);
      // Left side: G is ambient×9.
      const Mat<S> g = gaussian<S>(ambient, 9, 7);
      REQUIRE(b.refresh(g, Side::Left, r, 0, nullptr).ok);
      Mat<S> p;
      b.denseBasis(p);
      CHECK((p.template cast<double>() - pRef).norm() < tol);
      Mat<S> out(r, 9);
      b.project(g, Side::Left, out);
      CHECK((out.template cast<double>() - pRef.transpose() * g.template cast<double>()).norm() <= tol * g.norm());
      const Mat<S> n = gaussian<S>(r, 9, 8);
      Mat<S> back(ambient, 9);
      b.backProject(n, Side::Left, back);
      const Mat<double> backRef = pRef * n.template cast<double>();
      CHECK((back.template cast<double>() - backRef).norm() <= tol * backRef.norm());
      Mat<S> w = g;
      b.addBack(n, Side::Left, S(-0.5), w);
      CHECK((w.template cast<double>() - (g.template cast<double>() - 0.5 * backRef)).norm() <= tol * w.norm());
      // Right side: G is 6×ambient.
      WaveletBasis<S> c;
      c.setLevels(levels);
      const Mat<S> gr = gaussian<S>(6, ambient, 9);
      Mat<S> trans;
      REQUIRE(c.refresh(gr, Side::Right, r, 0, &trans).ok);
      Mat<S> outR(6, r);
      c.project(gr, Side::Right, outR);
      CHECK((outR.template cast<double>() - gr.template cast<double>() * pRef).norm() <= tol * gr.norm());
      const Mat<S> nr = gaussian<S>(6, r, 10);
      Mat<S> backR(6, ambient);
      c.backProject(nr, Side::Right, backR);
      CHECK((backR.template cast<double>() - nr.template cast<double>() * pRef.transpose()).norm() <= tol * nr.norm());
      // A later refresh keeps the basis: identity transition, overlap 1.
      const RefreshResult again = c.refresh(gr, Side::Right, r, 1, &trans);
      CHECK(again.ok);
      CHECK(again.overlap == 1.0);
      CHECK(trans == Mat<S>::Identity(r, r));
      CHECK(c.stateBytes() == 0);
    }
  }
  WaveletBasis<S> b;
  const Mat<S> g = gaussian<S>(16, 4, 1);
  CHECK_THROWS_AS(b.refresh(g, Side::Left, 5, 0, nullptr), InvalidArgument);  // 16 at 2 levels → 4
  CHECK_THROWS_AS(b.setLevels(0), InvalidArgument);
}

TEMPLATE_TEST_CASE("WaveletBasis + ProjectedAdamW: one step by hand", "[gradient][wavelet]", float, double) {
  using S = TestType;
  // 8×12 gradient; Std projects the smaller dimension (left, 8 rows) at 2 levels: r = 2.
  const Index m = 8, n = 12;
  const Mat<S> w0 = gaussian<S>(m, n, 3);
  const Mat<S> g = gaussian<S>(m, n, 4);
  GradientProjector<WaveletBasis<S>> proj;
  proj.setRank(2).setUpdateGap(200).setScale(S(0.25));
  ProjectedAdamW<WaveletBasis<S>> opt(proj);
  opt.setLearningRate(0.01).setWeightDecay(0.1);
  Mat<S> w = w0;
  opt.step(w, g);
  REQUIRE(opt.projector().side() == Side::Left);

  // By hand in double: A = block averages of 4 rows times 1/2 (two levels of 1/√2); Adam's first
  // step: m = (1−β₁)A, v = (1−β₂)A², step size lr·√(1−β₂)/(1−β₁); N = m/(√v + ε);
  // W ← W + (−step)·α·P N, then W ← W(1 − lr·wd).
  const Mat<double> gd = g.template cast<double>();
  Mat<double> a(2, n), p = Mat<double>::Zero(m, 2);
  for (Index k = 0; k < 2; ++k) {
    a.row(k) = 0.5 * gd.middleRows(4 * k, 4).colwise().sum();
    p.block(4 * k, k, 4, 1).setConstant(0.5);
  }
  const double b1 = 0.9, b2 = 0.999, epsilon = 1e-6, lr = 0.01;
  const Mat<double> mm = (1 - b1) * a;
  const Mat<double> vv = (1 - b2) * a.array().square().matrix();
  const Mat<double> nn = (mm.array() / (vv.array().sqrt() + epsilon)).matrix();
  const double step = lr * std::sqrt(1 - b2) / (1 - b1);
  const Mat<double> expect = (w0.template cast<double>() - step * 0.25 * p * nn) * (1 - lr * 0.1);
  CHECK((w.template cast<double>() - expect).norm() <= 100 * eps<S>() * expect.norm());
  // The state is the two moments on the approximation coefficients only.
  CHECK(opt.stateBytes() == 2 * 2 * n * sizeof(S));
}

TEMPLATE_TEST_CASE("WaveletBasis + ProjectedAdamW: a checkpoint resumes bit for bit", "[gradient][wavelet]", float, double) {
  using S = TestType;
  const Index m = 20, n = 11;  // right side (m ≥ n) of odd length 11 at 2 levels: r = 3
  GradientProjector<WaveletBasis<S>> proj;
  proj.setRank(haarApproximationSize(n, 2)).setUpdateGap(3);
  ProjectedAdamW<WaveletBasis<S>> a(proj);
  a.setLearningRate(0.02);
  Mat<S> wa = gaussian<S>(m, n, 5);
  for (int t = 0; t < 4; ++t) a.step(wa, gaussian<S>(m, n, 50 + std::uint64_t(t)));
  std::stringstream ss;
  a.save(ss);
  ProjectedAdamW<WaveletBasis<S>> b(proj);
  b.load(ss);
  Mat<S> wb = wa;
  for (int t = 4; t < 9; ++t) {
    const Mat<S> g = gaussian<S>(m, n, 50 + std::uint64_t(t));
    a.step(wa, g);
    b.step(wb, g);
  }
  CHECK(wa == wb);
  CHECK(a.stepCount() == b.stepCount());
  // Another level count refuses the checkpoint.
  std::stringstream again;
  a.save(again);
  GradientProjector<WaveletBasis<S>> other;
  other.basis().setLevels(3);
  ProjectedAdamW<WaveletBasis<S>> c(other);
  CHECK_THROWS_AS(c.load(again), IoError);
}
