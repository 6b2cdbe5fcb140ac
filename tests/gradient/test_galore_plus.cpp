#include "test_common.hpp"

#include <wproj/gradient/galore_plus.hpp>

#include <sstream>
#include <vector>

using namespace wproj_test;
using wproj::CrossHeadProjector;
using wproj::GaLorePlusAdamW;
using wproj::Side;

namespace {

/// Top-k singular vectors of x (right if `right`, else left) by BDCSVD in double.
template <typename T>
Mat<double> exactBasis(const Mat<T>& x, Index k, bool right) {
  Eigen::BDCSVD<Mat<double>> svd(x.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  return right ? Mat<double>(svd.matrixV().leftCols(k)) : Mat<double>(svd.matrixU().leftCols(k));
}

/// A gradient sequence: a rank-4 part (σ ≈ 100, slowly drifting) + `spikes` isolated entries of
/// size 2–4 at fixed positions (what low rank misses) + Gaussian noise (default 1e-3).
template <typename T>
std::vector<Mat<T>> gradientSequence(Index m, Index n, int steps, Index spikes, std::uint64_t seed, double noise = 1e-3) {
  const Mat<double> u = randomOrthonormal<double>(m, 4, seed), v = randomOrthonormal<double>(n, 4, seed + 1);
  std::vector<Mat<T>> out;
  wproj::CounterRng rng(seed + 2);
  std::vector<Index> pos;
  while (Index(pos.size()) < spikes) {
    const Index p = Index(rng.nextBelow(std::uint64_t(m * n)));
    if (std::find(pos.begin(), pos.end(), p) == pos.end()) pos.push_back(p);
  }
  for (int t = 0; t < steps; ++t) {
    Vec<double> s(4);
    s << 100, 80, 60, 40;
    Mat<double> g = u * (s * (1.0 + 0.01 * t)).asDiagonal() * v.transpose();
    g += noise * gaussian<double>(m, n, seed + 10 + std::uint64_t(t));
    for (std::size_t k = 0; k < pos.size(); ++k) g(pos[k] % m, pos[k] / m) += (k % 2 ? -1.0 : 1.0) * (2.0 + 2.0 * double(k) / double(pos.size()));
    out.push_back(g.cast<T>());
  }
  return out;
}

/// Full-rank AdamW with galore_torch's bias correction (the reference update).
struct FullAdam {
  Mat<double> m, v;
  double eps = 1e-6;
  int t = 0;
  void step(Mat<double>& w, const Mat<double>& g, double lr) {
    if (m.size() == 0) m = v = Mat<double>::Zero(g.rows(), g.cols());
    ++t;
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g.cwiseAbs2();
    const double ss = lr * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
    w -= ss * Mat<double>(m.array() / (v.array().sqrt() + eps));
  }
};

}  // namespace

TEMPLATE_TEST_CASE("CrossHeadProjector: the shared basis is the stacked gradient's", "[galore_plus]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-9;
  const Index heads = 4, m = 16, n = 48, r = 6;
  for (Side side : {Side::Right, Side::Left}) {
    CAPTURE(int(side));
    // Stacked gradient with a clear gap after r (σ_r / σ_{r+1} = 100).
    const bool right = side == Side::Right;
    const Index sm = right ? heads * m : m, sn = right ? n : heads * n;
    Vec<double> sigma = geometricSpectrum(std::min(sm, sn), 10.0) * 0.01;
    sigma.head(r) = geometricSpectrum(r, 3.0);
    const Mat<T> stacked = withSpectrum<T>(sm, sn, sigma, 5);
    std::vector<Mat<T>> hs;
    for (Index h = 0; h < heads; ++h) hs.push_back(right ? Mat<T>(stacked.middleRows(h * m, m)) : Mat<T>(stacked.middleCols(h * n, n)));
    CrossHeadProjector<T> chp;
    chp.setRank(r).setSide(side).setSeed(9).compute(hs);
    REQUIRE(chp.info() == Eigen::Success);
    const Mat<double> p = chp.basis().template cast<double>();
    REQUIRE(p.rows() == (right ? n : m));
    REQUIRE(p.cols() == r);
    CHECK(orthoError(p) <= tol);
    const Mat<double> q = exactBasis(stacked, r, right);
    CHECK((p * p.transpose() - q * q.transpose()).norm() <= tol);
    // Per head: projecting head h equals the h-th block of projecting the stack.
    const Mat<T> all = right ? Mat<T>(stacked * chp.basis()) : Mat<T>(chp.basis().transpose() * stacked);
    for (Index h = 0; h < heads; ++h) {
      const Mat<T> ph = chp.project(hs[std::size_t(h)]);
      const Mat<T> block = right ? Mat<T>(all.middleRows(h * m, m)) : Mat<T>(all.middleCols(h * n, n));
      CHECK((ph - block).norm() <= 10 * eps<T>() * block.norm());
      // Back-projection returns the head's best approximation within the shared basis.
      const Mat<double> back = chp.projectBack(ph).template cast<double>();
      const Mat<double> hd = hs[std::size_t(h)].template cast<double>();
      const Mat<double> expect = right ? Mat<double>(hd * q * q.transpose()) : Mat<double>(q * q.transpose() * hd);
      CHECK((back - expect).norm() <= 10 * tol * hd.norm());
    }
  }
}

TEMPLATE_TEST_CASE("GaLore+: the sparse residual brings the update closer to full-rank Adam", "[galore_plus]", float,
                   double) {
  using T = TestType;
  const Index m = 40, n = 30;
  // No noise: Adam normalises every entry, so noise would dominate any comparison of updates.
  const auto gs = gradientSequence<T>(m, n, 12, 30, 31, 0.0);
  const Mat<T> w0 = gaussian<T>(m, n, 3);
  // eps = 1e-6 (Adam proper) and eps = 1e3 (the denominator is ε: the update is the first moment,
  // so the comparison measures how much gradient mass each method's moments miss).
  struct Case { double eps; Index gap; double bound; };
  for (const Case c : {Case{1e3, 100, 0.6}, Case{1e3, 5, 0.6}, Case{1e-6, 5, 1.01}}) {
    const double epsAdam = c.eps;
    CAPTURE(c.eps, c.gap);
    GaLorePlusAdamW<T> plain, plus;
    for (auto* o : {&plain, &plus})
      o->setRank(4).setUpdateGap(c.gap).setScale(1.0).setLearningRate(1e-2).setEpsilon(epsAdam).setSeed(1);
    plain.setResidualDensity(0.0);
    plus.setResidualDensity(30.0 / double(m * n));
    Mat<T> wa = w0, wb = w0;
    Mat<double> wf = w0.template cast<double>();
    FullAdam full;
    full.eps = epsAdam;
    double errPlain = 0, errPlus = 0;
    for (const auto& g : gs) {
      const Mat<double> f0 = wf;
      const Mat<T> a0 = wa, b0 = wb;
      full.step(wf, g.template cast<double>(), 1e-2);
      plain.step(wa, g);
      plus.step(wb, g);
      const Mat<double> df = wf - f0;
      errPlain += (Mat<T>(wa - a0).template cast<double>() - df).norm();
      errPlus += (Mat<T>(wb - b0).template cast<double>() - df).norm();
    }
    CHECK(plain.support().empty());
    CHECK(plus.support().size() == 30);
    // ε = 1e3: the residual moments hold what the rank-4 moments miss on S; what is left is the
    // dense leakage of the spikes into the basis, (S_spikes·P·Pᵀ) off S, about √(r/n) of them
    // (measured ratio 0.46 here, with and without refreshes).
    // ε = 1e-6: Adam's entrywise normalisation of the full-rank update dominates the difference;
    // the residual must not make it worse by more than 1%.
    CHECK(errPlus < c.bound * errPlain);
  }
}

TEMPLATE_TEST_CASE("GaLore+: 12 steps against an independent port", "[galore_plus]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 2e-4 : 1e-8;
  for (Index shape = 0; shape < 2; ++shape) {
    const Index m = shape ? 24 : 36, n = shape ? 36 : 24, r = 4, s = 20;
    CAPTURE(m, n);
    const auto gs = gradientSequence<T>(m, n, 12, s, 77 + std::uint64_t(shape));
    const Mat<T> w0 = gaussian<T>(m, n, 4);
    GaLorePlusAdamW<T> opt;
    opt.setRank(r).setUpdateGap(100).setPowerIterations(6).setScale(0.25).setLearningRate(1e-2).setWeightDecay(0.1).setResidualDensity(
        double(s) / double(m * n));
    Mat<T> w = w0;
    for (const auto& g : gs) opt.step(w, g);
    // The port: BDCSVD basis on the smaller side at step 0, dense residual masked to its top-s entries.
    const bool right = m >= n;
    const Mat<double> p = exactBasis(gs[0], r, right);
    Mat<double> wp = w0.template cast<double>(), mm, vv;
    Mat<double> rm = Mat<double>::Zero(m, n), rv = Mat<double>::Zero(m, n);
    Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> mask;
    for (int t = 0; t < 12; ++t) {
      const Mat<double> g = gs[std::size_t(t)].template cast<double>();
      const Mat<double> rr = right ? Mat<double>(g * p) : Mat<double>(p.transpose() * g);
      if (t == 0) mm = vv = Mat<double>::Zero(rr.rows(), rr.cols());
      mm = 0.9 * mm + 0.1 * rr;
      vv = 0.999 * vv + 0.001 * rr.cwiseAbs2();
      const Mat<double> nn = mm.array() / (vv.array().sqrt() + 1e-6);
      Mat<double> upd = right ? Mat<double>(nn * p.transpose()) : Mat<double>(p * nn);
      const Mat<double> e = g - (right ? Mat<double>(rr * p.transpose()) : Mat<double>(p * rr));
      if (t == 0) {
        std::vector<double> a(e.data(), e.data() + e.size());
        for (double& x : a) x = std::abs(x);
        std::sort(a.begin(), a.end(), std::greater<double>());
        mask = e.cwiseAbs().array() >= a[std::size_t(s - 1)];
        REQUIRE(mask.count() == s);
      }
      for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < m; ++i)
          if (mask(i, j)) {
            rm(i, j) = 0.9 * rm(i, j) + 0.1 * e(i, j);
            rv(i, j) = 0.999 * rv(i, j) + 0.001 * e(i, j) * e(i, j);
            upd(i, j) += rm(i, j) / (std::sqrt(rv(i, j)) + 1e-6);
          }
      const double ss = 1e-2 * std::sqrt(1 - std::pow(0.999, t + 1)) / (1 - std::pow(0.9, t + 1));
      wp *= 1.0 - 1e-2 * 0.1;
      wp -= ss * 0.25 * upd;
    }
    CHECK((w.template cast<double>() - wp).norm() <= tol * (wp - w0.template cast<double>()).norm());
  }
}

TEMPLATE_TEST_CASE("GaLore+: checkpoint resume is bit for bit", "[galore_plus]", float, double) {
  using T = TestType;
  const auto gs = gradientSequence<T>(30, 20, 12, 10, 5);
  GaLorePlusAdamW<T> a;
  a.setRank(3).setUpdateGap(3).setResidualDensity(0.02).setLearningRate(1e-2).setSeed(8);
  Mat<T> wa = gaussian<T>(30, 20, 6);
  for (int t = 0; t < 7; ++t) a.step(wa, gs[std::size_t(t)]);
  std::stringstream ss;
  a.save(ss);
  GaLorePlusAdamW<T> b;
  b.load(ss);
  CHECK(b.stepCount() == 7);
  Mat<T> wb = wa;
  for (int t = 7; t < 12; ++t) {
    a.step(wa, gs[std::size_t(t)]);
    b.step(wb, gs[std::size_t(t)]);
  }
  CHECK(wa == wb);
  CHECK(a.support() == b.support());
  std::stringstream bad("garbage");
  CHECK_THROWS_AS(b.load(bad), wproj::IoError);
  CHECK(b.stepCount() == 12);  // unchanged by the failed load
}

TEST_CASE("GaLore+: bad knobs name the argument", "[galore_plus]") {
  GaLorePlusAdamW<double> o;
  CHECK_THROWS_WITH(o.setRank(0), Catch::Contains("'r' = 0"));
  CHECK_THROWS_WITH(o.setUpdateGap(0), Catch::Contains("'t' = 0"));
  CHECK_THROWS_WITH(o.setScale(-1), Catch::Contains("'alpha' = -1"));
  CHECK_THROWS_WITH(o.setLearningRate(0), Catch::Contains("'lr' = 0"));
  CHECK_THROWS_WITH(o.setBetas(1.0, 0.9), Catch::Contains("'beta1' = 1"));
  CHECK_THROWS_WITH(o.setBetas(0.9, -0.1), Catch::Contains("'beta2' = -0.1"));
  CHECK_THROWS_WITH(o.setEpsilon(0), Catch::Contains("'eps' = 0"));
  CHECK_THROWS_WITH(o.setWeightDecay(-1), Catch::Contains("'wd' = -1"));
  CHECK_THROWS_WITH(o.setResidualDensity(1.5), Catch::Contains("'rho' = 1.5"));
  CHECK_THROWS_WITH(o.setPowerIterations(-1), Catch::Contains("'q' = -1"));
  Mat<double> w = Mat<double>::Zero(5, 4);
  o.setRank(5);
  CHECK_THROWS_WITH(o.step(w, Mat<double>::Ones(5, 4)), Catch::Contains("min(m, n) = 4"));
  CHECK_THROWS_WITH(o.step(w, Mat<double>::Ones(4, 4)), Catch::Contains("gradient shape"));
  CrossHeadProjector<double> c;
  CHECK_THROWS_WITH(c.setRank(0), Catch::Contains("'r' = 0"));
  CHECK_THROWS_WITH(c.compute({}), Catch::Contains("'heads.size()'"));
  CHECK_THROWS_WITH(c.compute({Mat<double>::Ones(3, 4), Mat<double>::Ones(4, 3)}), Catch::Contains("heads[i] shape"));
  CHECK_THROWS_WITH(c.project(Mat<double>::Ones(3, 4)), Catch::Contains("compute() first"));
  c.setRank(5);
  CHECK_THROWS_WITH(c.compute({Mat<double>::Ones(3, 4), Mat<double>::Ones(3, 4)}), Catch::Contains("<= min of the stacked shape = 4"));
}
