// COAP's basis: the cheap update against finite differences of its loss and against a dense port
// over many steps, orthonormality, tracking of a rotating gradient subspace, the warm refresh,
// and checkpoint resume.
#include "test_common.hpp"

#include <wproj/gradient/adamw.hpp>
#include <wproj/gradient/coap_basis.hpp>

#include <sstream>

using namespace wproj;
using namespace wproj_test;

namespace {

// COAP's loss for the right side written out densely (P = Q n×r, constant moment M (m×r)):
// MSE(G Q Qᵀ, G) · (1 − mean_i cos((M Qᵀ)_i, G_i)).
double denseLoss(const Mat<double>& g, const Mat<double>& q, const Mat<double>& mt) {
  const Mat<double> e = g * q * q.transpose() - g;
  const double mse = e.squaredNorm() / double(g.size());
  const Mat<double> x = mt * q.transpose();
  double c = 0;
  for (Index i = 0; i < g.rows(); ++i) c += x.row(i).dot(g.row(i)) / std::max(x.row(i).norm() * g.row(i).norm(), 1e-8);
  return mse * (1.0 - c / double(g.rows()));
}

// Its gradient in Q, derived term by term on dense matrices (E formed explicitly).
Mat<double> denseGradient(const Mat<double>& g, const Mat<double>& q, const Mat<double>& mt) {
  const double mn = double(g.size());
  const Mat<double> e = g * q * q.transpose() - g;
  const double mse = e.squaredNorm() / mn;
  const Mat<double> dmse = (2.0 / mn) * (g.transpose() * e * q + e.transpose() * g * q);
  const Mat<double> x = mt * q.transpose();
  double cbar = 0;
  Mat<double> dc = Mat<double>::Zero(q.rows(), q.cols());
  for (Index i = 0; i < g.rows(); ++i) {
    const double xn = x.row(i).norm(), gn = g.row(i).norm();
    const double c = x.row(i).dot(g.row(i)) / (xn * gn);
    cbar += c;
    // ∂/∂Q of ⟨M_i Qᵀ, G_i⟩/(‖M_i Qᵀ‖‖G_i‖)
    dc += g.row(i).transpose() * mt.row(i) / (xn * gn) - c * (q * mt.row(i).transpose() * mt.row(i)) / (xn * xn);
  }
  cbar /= double(g.rows());
  dc /= double(g.rows());
  return (1.0 - cbar) * dmse - mse * dc;
}

// The cheap update as upstream takes it: one clipped gradient step, moment = G Q.
Mat<double> portStep(const Mat<double>& g, const Mat<double>& q, double eta) {
  const Mat<double> mt = g * q;
  Mat<double> grad = denseGradient(g, q, mt);
  const double coef = 1.0 / (grad.norm() + 1e-6);
  if (coef < 1.0) grad *= coef;
  return q - eta * grad;
}

template <typename S>
Mat<S> basisOf(const COAPBasis<S>& b) {
  Mat<S> p;
  b.denseBasis(p);
  return p;
}

// A rank-4 gradient whose right singular subspace rotates by `angle` per step (a fixed rotation
// mixing the leading 4 directions with the next 4).
Mat<double> rotatingGradient(Index m, Index n, int t, double angle) {
  const Mat<double> u = randomOrthonormal<double>(m, 4, 71);
  const Mat<double> v0 = randomOrthonormal<double>(n, 8, 72);
  Mat<double> v(n, 4);
  for (Index j = 0; j < 4; ++j) v.col(j) = std::cos(angle * t) * v0.col(j) + std::sin(angle * t) * v0.col(4 + j);
  Vec<double> s(4);
  s << 8, 6, 5, 4;
  return u * s.asDiagonal() * v.transpose();
}

}  // namespace

TEST_CASE("COAPBasis: the cheap step is −η∇L of COAP's loss (finite differences)", "[gradient][coap]") {
  const Index m = 12, n = 9, r = 3;
  const Mat<double> g = 0.3 * gaussian<double>(m, n, 5);
  COAPBasis<double> b;
  b.setReorthonormalize(false).setProjectionLearningRate(0.1);
  REQUIRE(b.refresh(g, Side::Right, r, 0, nullptr).ok);
  // Move away from the optimum so that the gradient is not tiny.
  const Mat<double> q0 = randomOrthonormal<double>(n, r, 9);
  const Mat<double> gq = g * q0;
  const Mat<double> num = [&] {
    Mat<double> d(n, r);
    const double h = 1e-6;
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < r; ++j) {
        Mat<double> qp = q0, qm = q0;
        qp(i, j) += h;
        qm(i, j) -= h;
        d(i, j) = (denseLoss(g, qp, gq) - denseLoss(g, qm, gq)) / (2 * h);
      }
    return d;
  }();
  const Mat<double> ana = denseGradient(g, q0, gq);
  CHECK((ana - num).norm() <= 1e-6 * std::max(1.0, num.norm()));
  // The class' step from its own P against the port from the same P.
  const Mat<double> p0 = basisOf(b);
  b.cheapUpdateNow(g, Side::Right);
  const Mat<double> p1 = basisOf(b);
  const Mat<double> expect = portStep(g, p0, 0.1);
  CHECK((p1 - expect).norm() <= 1e-12 * std::max(1.0, expect.norm()));
  CHECK(b.lastLoss() == Approx(denseLoss(g, p0, g * p0)).epsilon(1e-10));
}

TEMPLATE_TEST_CASE("COAPBasis: the cheap update matches a dense port over 12 steps", "[gradient][coap]", float, double) {
  using S = TestType;
  const Index m = 16, n = 10, r = 3;
  for (bool reortho : {false, true}) {
    for (Side side : {Side::Right, Side::Left}) {
      COAPBasis<S> b;
      b.setReorthonormalize(reortho).setProjectionLearningRate(0.2);
      const Mat<S> g0 = gaussian<S>(m, n, 30);
      REQUIRE(b.refresh(g0, side, r, 0, nullptr).ok);
      Mat<double> q = basisOf(b).template cast<double>();
      for (int t = 0; t < 12; ++t) {
        const Mat<S> g = gaussian<S>(m, n, 31 + std::uint64_t(t));
        b.cheapUpdateNow(g, side);
        const Mat<double> gd = side == Side::Right ? Mat<double>(g.template cast<double>()) : Mat<double>(g.template cast<double>().transpose());
        q = portStep(gd, q, 0.2);
        if (reortho) {
          Eigen::HouseholderQR<Mat<double>> qr(q);
          Mat<double> qq = qr.householderQ() * Mat<double>::Identity(q.rows(), q.cols());
          for (Index j = 0; j < q.cols(); ++j)
            if (qr.matrixQR()(j, j) < 0) qq.col(j) = -qq.col(j);
          q = qq;
        }
      }
      const Mat<double> p = basisOf(b).template cast<double>();
      CHECK((p - q).norm() <= 1e4 * eps<S>() * q.norm());
      CHECK(b.cheapUpdates() == 12);
    }
  }
}

TEMPLATE_TEST_CASE("COAPBasis: P stays orthonormal through refreshes and cheap updates", "[gradient][coap]", float, double) {
  using S = TestType;
  for (Index rows : {Index(40), Index(24)}) {  // right side (40×24) and left side (24×40)
    const Index cols = 64 - rows;
    GradientProjector<COAPBasis<S>> proj;
    proj.setRank(5).setUpdateGap(10).setScale(S(1));
    proj.basis().setUpdateInterval(3);
    ProjectedAdamW<COAPBasis<S>> opt(proj);
    opt.setLearningRate(1e-3);
    Mat<S> w = gaussian<S>(rows, cols, 1);
    for (int t = 0; t < 40; ++t) {
      opt.step(w, gaussian<S>(rows, cols, 100 + std::uint64_t(t)));
      CHECK(orthoError(opt.projector().basis().matrixP()) < 1e3 * eps<S>());
    }
    // 40 steps, refreshes at 0, 10, 20, 30: cheap updates at 3, 6, 9 after each refresh.
    CHECK(opt.projector().basis().cheapUpdates() == 12);
  }
}

TEMPLATE_TEST_CASE("COAPBasis: cheap updates follow a rotating gradient subspace better than a frozen P", "[gradient][coap]", float, double) {
  using S = TestType;
  const Index m = 30, n = 20, r = 4;
  const double angle = 0.02;
  COAPBasis<S> coap, frozen;
  // COAP's loss is not scale-free (an MSE): at this gradient scale (‖G‖ ≈ 12 over 600 entries)
  // upstream's η = 0.1 barely moves P (residual 0.68 vs 0.72 frozen); η = 10 tracks.
  coap.setProjectionLearningRate(10).setUpdateInterval(1);
  const Mat<S> g0 = rotatingGradient(m, n, 0, angle).template cast<S>();
  REQUIRE(coap.refresh(g0, Side::Right, r, 0, nullptr).ok);
  REQUIRE(frozen.refresh(g0, Side::Right, r, 0, nullptr).ok);
  auto residual = [](const Mat<S>& g, const Mat<S>& p) { return double((g - g * p * p.transpose()).norm() / g.norm()); };
  CHECK(residual(g0, coap.matrixP()) < 1e-3);
  double lastCoap = 0, lastFrozen = 0;
  for (int t = 1; t <= 40; ++t) {
    const Mat<S> g = rotatingGradient(m, n, t, angle).template cast<S>();
    lastCoap = residual(g, coap.matrixP());
    lastFrozen = residual(g, frozen.matrixP());
    coap.track(g, Side::Right, 1.0);  // a cheap update on every step (interval 1)
  }
  INFO("residual with cheap updates " << lastCoap << ", frozen " << lastFrozen);
  CHECK(lastFrozen > 0.5);
  CHECK(lastCoap < 0.5 * lastFrozen);
}

TEMPLATE_TEST_CASE("COAPBasis: the warm refresh recovers the dominant subspace", "[gradient][coap]", float, double) {
  using S = TestType;
  Vec<double> sigma = Vec<double>::Constant(30, 1e-3);
  sigma.head(5) << 10, 8, 6, 5, 4;
  const Mat<S> g = withSpectrum<S>(50, 30, sigma, 12);
  const Eigen::BDCSVD<Mat<double>> ref(g.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  for (Side side : {Side::Right, Side::Left}) {
    COAPBasis<S> b;
    REQUIRE(b.refresh(g, side, 5, 0, nullptr).ok);  // seeded Gaussian sketch
    Mat<S> trans;
    REQUIRE(b.refresh(g, side, 5, 1, &trans).ok);  // warm-started at the first basis
    const Mat<double> truth = side == Side::Right ? Mat<double>(ref.matrixV().leftCols(5)) : Mat<double>(ref.matrixU().leftCols(5));
    CHECK(overlap(b.matrixP(), truth) == Approx(1.0).margin(1e-4));
    CHECK(orthoError(b.matrixP()) < 1e3 * eps<S>());
    CHECK(trans.rows() == 5);
  }
  COAPBasis<S> b;
  CHECK_THROWS_AS(b.setUpdateInterval(0), InvalidArgument);
  CHECK_THROWS_AS(b.setProjectionLearningRate(-1), InvalidArgument);
}

TEMPLATE_TEST_CASE("COAPBasis + ProjectedAdamW: a checkpoint resumes bit for bit", "[gradient][coap]", float, double) {
  using S = TestType;
  const Index m = 18, n = 12;
  GradientProjector<COAPBasis<S>> proj;
  proj.setRank(3).setUpdateGap(10);
  proj.basis().setUpdateInterval(3);
  ProjectedAdamW<COAPBasis<S>> a(proj);
  a.setLearningRate(0.01);
  Mat<S> wa = gaussian<S>(m, n, 5);
  for (int t = 0; t < 14; ++t) a.step(wa, gaussian<S>(m, n, 300 + std::uint64_t(t)));
  std::stringstream ss;
  a.save(ss);
  ProjectedAdamW<COAPBasis<S>> b(proj);
  b.load(ss);
  Mat<S> wb = wa;
  for (int t = 14; t < 30; ++t) {
    const Mat<S> g = gaussian<S>(m, n, 300 + std::uint64_t(t));
    a.step(wa, g);
    b.step(wb, g);
  }
  CHECK(wa == wb);
  CHECK(a.projector().basis().matrixP() == b.projector().basis().matrixP());
  CHECK(a.projector().basis().cheapUpdates() == b.projector().basis().cheapUpdates());
  // Other knobs refuse the checkpoint.
  std::stringstream again;
  a.save(again);
  GradientProjector<COAPBasis<S>> other;
  other.setRank(3).setUpdateGap(10);
  other.basis().setUpdateInterval(4);
  ProjectedAdamW<COAPBasis<S>> c(other);
  CHECK_THROWS_AS(c.load(again), IoError);
}
