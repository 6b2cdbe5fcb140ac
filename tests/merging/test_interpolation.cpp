// Tests of mergekit's interpolation methods per tensor (slerp, nuslerp, multislerp, karcher,
// nearswap, arcee_fusion, passthrough): every method against an independent reference written
// here from mergekit's math (plain loops in double) on tall, wide, n×1 and 1×n tensors, zero
// tensors, colinear and anti-parallel pairs and t = 0, 1 and per-layer values; properties of the
// interpolations; errors naming the method and the parameter; the registry entries; and the
// per-tensor form against the whole-model run over a small model.
#include "test_common.hpp"

#include <wproj/merging/interpolation.hpp>
#include <wproj/merging/method.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace wproj_test;
using Catch::Matchers::Contains;

namespace {

using DMat = Mat<double>;
using wproj::TensorMergeParams;

// ---------------------------------------------------------------------------------------------
// References: mergekit's math in double, entry by entry, independent of the header under test.
// ---------------------------------------------------------------------------------------------

double refNorm(const DMat& a) {
  double s = 0;
  for (Index j = 0; j < a.cols(); ++j)
    for (Index i = 0; i < a.rows(); ++i) s += a(i, j) * a(i, j);
  return std::sqrt(s);
}

DMat refCombine(double c0, const DMat& a, double c1, const DMat& b) {
  DMat r(a.rows(), a.cols());
  for (Index j = 0; j < a.cols(); ++j)
    for (Index i = 0; i < a.rows(); ++i) r(i, j) = c0 * a(i, j) + c1 * b(i, j);
  return r;
}

// mergekit slerp.py: normalise when the norm exceeds 1e-8, dot of the normalised tensors,
// lerp above |dot| 0.9995, else the sine formula.
DMat refSlerp(double t, const DMat& v0, const DMat& v1) {
  const double n0 = refNorm(v0), n1 = refNorm(v1);
  double dot = 0;
  for (Index j = 0; j < v0.cols(); ++j)
    for (Index i = 0; i < v0.rows(); ++i)
      dot += (n0 > 1e-8 ? v0(i, j) / n0 : v0(i, j)) * (n1 > 1e-8 ? v1(i, j) / n1 : v1(i, j));
  if (std::abs(dot) > 0.9995) return refCombine(1 - t, v0, t, v1);
  const double theta0 = std::acos(dot), sin0 = std::sin(theta0), thetaT = theta0 * t;
  return refCombine(std::sin(theta0 - thetaT) / sin0, v0, std::sin(thetaT) / sin0, v1);
}

// mergekit nuslerp.py on one pair of vectors. The angle arccos⟨û₀, û₁⟩ of two unit vectors is
// evaluated as 2 atan2(‖û₀ − û₁‖, ‖û₀ + û₁‖): the same angle, without arccos's loss of half the
// digits next to ±1, where the colinear test |sin Ω| < 1e-8 is decided (an exactly anti-parallel
// pair must take the linear interpolation, not divide by a rounding error).
std::vector<double> refNuslerpPair(double t, const std::vector<double>& v0, const std::vector<double>& v1) {
  double n0 = 0, n1 = 0;
  for (std::size_t k = 0; k < v0.size(); ++k) {
    n0 += v0[k] * v0[k];
    n1 += v1[k] * v1[k];
  }
  n0 = std::sqrt(n0);
  n1 = std::sqrt(n1);
  const double d0 = std::max(n0, 1e-7), d1 = std::max(n1, 1e-7);
  double c = 0, diff = 0, sum = 0;
  for (std::size_t k = 0; k < v0.size(); ++k) {
    const double x = v0[k] / d0, y = v1[k] / d1;
    c += x * y;
    diff += (x - y) * (x - y);
    sum += (x + y) * (x + y);
  }
  const double theta = n0 >= 1e-7 && n1 >= 1e-7 ? 2 * std::atan2(std::sqrt(diff), std::sqrt(sum))
                                                  : std::acos(std::min(1.0, std::max(-1.0, c)));
  const double s = std::sin(theta);
  std::vector<double> r(v0.size());
  for (std::size_t k = 0; k < v0.size(); ++k)
    r[k] = std::abs(s) < 1e-8 ? (1 - t) * v0[k] + t * v1[k]
                              : (std::sin((1 - t) * theta) * v0[k] + std::sin(t * theta) * v1[k]) / s;
  return r;
}

// nuslerp over the vectors torch's code takes: the whole tensor (flatten, or a 1-D tensor = n×1
// view), rows (dim -1 of a 2-D tensor) or columns (row_wise: dim 0).
DMat refNuslerp(double t, const DMat& a, const DMat& b, bool rowWise, bool flatten) {
  DMat r(a.rows(), a.cols());
  if (flatten || a.cols() == 1) {
    std::vector<double> x(std::size_t(a.size())), y(std::size_t(a.size()));
    std::size_t k = 0;
    for (Index i = 0; i < a.rows(); ++i)  // torch's flattening order (row-major)
      for (Index j = 0; j < a.cols(); ++j, ++k) {
        x[k] = a(i, j);
        y[k] = b(i, j);
      }
    const auto z = refNuslerpPair(t, x, y);
    k = 0;
    for (Index i = 0; i < a.rows(); ++i)
      for (Index j = 0; j < a.cols(); ++j) r(i, j) = z[k++];
    return r;
  }
  if (!rowWise) {
    for (Index i = 0; i < a.rows(); ++i) {
      std::vector<double> x, y;
      for (Index j = 0; j < a.cols(); ++j) {
        x.push_back(a(i, j));
        y.push_back(b(i, j));
      }
      const auto z = refNuslerpPair(t, x, y);
      for (Index j = 0; j < a.cols(); ++j) r(i, j) = z[std::size_t(j)];
    }
    return r;
  }
  for (Index j = 0; j < a.cols(); ++j) {
    std::vector<double> x, y;
    for (Index i = 0; i < a.rows(); ++i) {
      x.push_back(a(i, j));
      y.push_back(b(i, j));
    }
    const auto z = refNuslerpPair(t, x, y);
    for (Index i = 0; i < a.rows(); ++i) r(i, j) = z[std::size_t(i)];
  }
  return r;
}

// NuSlerpTask.execute: t from the weights, task vectors when a base is given.
DMat refNuslerpMerge(double w0, double w1, const DMat& m0, const DMat& m1, const DMat* base, bool rowWise, bool flatten) {
  const double t = std::abs(w0 + w1) < 1e-6 ? 0.5 : w1 / (w0 + w1);
  if (!base) return refNuslerp(t, m0, m1, rowWise, flatten);
  const DMat r = refNuslerp(t, refCombine(1, m0, -1, *base), refCombine(1, m1, -1, *base), rowWise, flatten);
  return refCombine(1, *base, 1, r);
}

// multislerp.py, literally.
DMat refMultislerp(const std::vector<DMat>& in, std::vector<double> w, const DMat* base, bool normalize, double eps) {
  std::vector<DMat> x = in;
  if (base)
    for (auto& xi : x) xi = refCombine(1, xi, -1, *base);
  if (normalize) {
    double s = 0;
    for (double v : w) s += v;
    for (double& v : w) v /= s;
  }
  const Index r = x[0].rows(), c = x[0].cols();
  std::vector<double> norms;
  std::vector<DMat> units;
  for (const auto& xi : x) {
    norms.push_back(refNorm(xi));
    units.push_back(refCombine(1.0 / (norms.back() + eps), xi, 0, xi));
  }
  DMat mean = DMat::Zero(r, c);
  for (std::size_t i = 0; i < x.size(); ++i) mean = refCombine(1, mean, w[i], units[i]);
  const double mn = refNorm(mean);
  if (mn < eps) {
    REQUIRE(x.size() == 2);
    DMat res = refCombine(w[0], x[0], w[1], x[1]);
    return base ? refCombine(1, res, 1, *base) : res;
  }
  mean = refCombine(1.0 / mn, mean, 0, mean);
  DMat tangent = DMat::Zero(r, c);
  for (std::size_t i = 0; i < x.size(); ++i) {
    double dot = 0;
    for (Index j = 0; j < c; ++j)
      for (Index k = 0; k < r; ++k) dot += units[i](k, j) * mean(k, j);
    tangent = refCombine(1, tangent, w[i], refCombine(1, units[i], -dot, mean));
  }
  const double tn = refNorm(tangent) + eps;
  DMat res = refCombine(std::cos(tn), mean, std::sin(tn) / tn, tangent);
  double avg = 0;
  for (std::size_t i = 0; i < x.size(); ++i) avg += norms[i] * w[i];
  res = refCombine(avg, res, 0, res);
  return base ? refCombine(1, res, 1, *base) : res;
}

// karcher.py's karcher_merge_tensors, literally; `iterations` counts the updates of u.
DMat refKarcher(const std::vector<DMat>& x, const std::vector<double>& alphas, int maxIter, double tol, int* iterations = nullptr,
                bool* converged = nullptr) {
  const Index r = x[0].rows(), c = x[0].cols();
  std::vector<double> norms;
  std::vector<DMat> units;
  for (const auto& xi : x) {
    const double n = refNorm(xi);
    norms.push_back(n);
    units.push_back(n == 0 ? DMat(DMat::Zero(r, c)) : refCombine(1.0 / n, xi, 0, xi));
  }
  std::vector<std::size_t> valid;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (norms[i] > tol) valid.push_back(i);
  if (iterations) *iterations = 0;
  if (converged) *converged = false;
  if (valid.empty()) return DMat::Zero(r, c);
  double as = 0;
  for (auto i : valid) as += alphas[i];
  DMat u = DMat::Zero(r, c);
  for (auto i : valid) u = refCombine(1, u, alphas[i] / as, units[i]);
  const double nu = refNorm(u);
  u = nu < tol ? units[valid[0]] : refCombine(1.0 / nu, u, 0, u);
  for (int it = 0; it < maxIter; ++it) {
    DMat tg = DMat::Zero(r, c);
    for (auto i : valid) {
      double dot = 0;
      for (Index j = 0; j < c; ++j)
        for (Index k = 0; k < r; ++k) dot += u(k, j) * units[i](k, j);
      dot = std::min(1.0, std::max(-1.0, dot));
      const double theta = std::acos(dot);
      if (theta < tol) continue;
      tg = refCombine(1, tg, alphas[i] / as * theta / std::sin(theta), refCombine(1, units[i], -dot, u));
    }
    const double tn = refNorm(tg);
    if (tn < tol) {
      if (converged) *converged = true;
      break;
    }
    u = refCombine(std::cos(tn), u, std::sin(tn) / tn, tg);
    if (iterations) ++*iterations;
    const double un = refNorm(u);
    if (un > tol) u = refCombine(1.0 / un, u, 0, u);
  }
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += alphas[i] * norms[i];
  return refCombine(s, u, 0, u);
}

// nearswap.py (mergekit's current form: |a − b| clamped at 1e-6).
DMat refNearswap(double t, const DMat& a, const DMat& b) {
  DMat r(a.rows(), a.cols());
  for (Index j = 0; j < a.cols(); ++j)
    for (Index i = 0; i < a.rows(); ++i) {
      const double w = std::min(1.0, std::max(0.0, t / std::max(std::abs(a(i, j) - b(i, j)), 1e-6)));
      r(i, j) = w * b(i, j) + (1 - w) * a(i, j);
    }
  return r;
}

// arcee_fusion.py: softmax along torch's last dimension (rows; a 1-D tensor = n×1 view is one
// vector), KL per vector, importance, quantiles by sorted index ⌊q (n − 1)⌋, mask ≥ threshold.
DMat refArceeFusion(const DMat& base, const DMat& other, Index* kept = nullptr) {
  const bool whole = base.cols() == 1;
  const Index vecs = whole ? 1 : base.rows(), len = whole ? base.rows() : base.cols();
  auto get = [&](const DMat& m, Index v, Index k) { return whole ? m(k, 0) : m(v, k); };
  std::vector<double> kl(static_cast<std::size_t>(vecs));
  for (Index v = 0; v < vecs; ++v) {
    double mp = -1e300, mq = -1e300;
    for (Index k = 0; k < len; ++k) {
      mp = std::max(mp, get(other, v, k));
      mq = std::max(mq, get(base, v, k));
    }
    double sp = 0, sq = 0;
    for (Index k = 0; k < len; ++k) {
      sp += std::exp(get(other, v, k) - mp);
      sq += std::exp(get(base, v, k) - mq);
    }
    double d = 0;
    for (Index k = 0; k < len; ++k) {
      const double p = std::exp(get(other, v, k) - mp) / sp + 1e-8, q = std::exp(get(base, v, k) - mq) / sq + 1e-8;
      d += p * std::log(p / q);
    }
    kl[std::size_t(v)] = d;
  }
  DMat imp(base.rows(), base.cols());
  std::vector<double> sorted;
  for (Index j = 0; j < base.cols(); ++j)
    for (Index i = 0; i < base.rows(); ++i) {
      imp(i, j) = std::abs(other(i, j) - base(i, j)) * kl[std::size_t(whole ? 0 : i)];
      sorted.push_back(imp(i, j));
    }
  std::sort(sorted.begin(), sorted.end());
  const double n1 = double(sorted.size() - 1);
  const double q1 = sorted[std::size_t(std::floor(0.25 * n1))], med = sorted[std::size_t(std::floor(0.5 * n1))],
               q3 = sorted[std::size_t(std::floor(0.75 * n1))];
  const double thr = med + 1.5 * (q3 - q1);
  DMat r(base.rows(), base.cols());
  if (kept) *kept = 0;
  for (Index j = 0; j < base.cols(); ++j)
    for (Index i = 0; i < base.rows(); ++i) {
      const bool keep = imp(i, j) >= thr;
      if (kept && keep) ++*kept;
      r(i, j) = keep ? other(i, j) : base(i, j);
    }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const wproj::MergeMethod& method(const std::string& name) {
  static const std::vector<wproj::MergeMethod> table = wproj::detail::interpolationMethods();
  for (const auto& m : table)
    if (m.name == name) return m;
  FAIL("no interpolation method " << name);
  return table.front();
}

template <typename T>
wproj::TensorMergeInputs<T> inputs(const std::string& name, const Mat<T>* base, const std::vector<Mat<T>>& models) {
  wproj::TensorMergeInputs<T> in;
  in.name = name;
  in.numModels = Index(models.size());
  in.hasBase = base != nullptr;
  if (base) {
    const Mat<T> b = *base;
    in.base = [b]() { return b; };
  }
  const auto ms = std::make_shared<std::vector<Mat<T>>>(models);
  in.model = [ms](Index i) { return ms->at(std::size_t(i)); };
  return in;
}

template <typename T>
Mat<T> merge(const std::string& m, const TensorMergeParams& p, const Mat<T>* base, const std::vector<Mat<T>>& models,
             const std::string& tensor = "x.weight") {
  return method(m).mergeTensor<T>(p, inputs<T>(tensor, base, models));
}

TensorMergeParams globals(std::map<std::string, double> g, std::size_t models = 0) {
  TensorMergeParams p;
  p.global = std::move(g);
  p.models.resize(models);
  return p;
}

TensorMergeParams weights(std::vector<double> w, std::map<std::string, double> g = {}) {
  TensorMergeParams p;
  p.global = std::move(g);
  for (double x : w) p.models.push_back({{"weight", x}});
  return p;
}

template <typename T>
constexpr double agreement() {
  return std::is_same<T, float>::value ? 1e-6 : 1e-12;
}

/// ‖got − ref‖ ≤ tol · max(‖ref‖, scale): relative agreement, with `scale` (the size of the
/// inputs) guarding results that cancel to nothing (anti-parallel pairs at the midpoint).
template <typename T>
void checkAgrees(const Mat<T>& got, const DMat& ref, double scale) {
  REQUIRE(got.rows() == ref.rows());
  REQUIRE(got.cols() == ref.cols());
  const double err = (got.template cast<double>() - ref).norm();
  const double denom = std::max(ref.norm(), scale);
  INFO("error " << err << " relative to " << denom);
  CHECK(err <= agreement<T>() * denom);
}

template <typename T>
double sizeOf(const std::vector<Mat<T>>& xs) {
  double s = 0;
  for (const auto& x : xs) s = std::max(s, double(x.template cast<double>().norm()));
  return std::max(s, 1e-300);
}

/// Pairs (a, b) covering the geometric cases, for a rows×cols shape.
template <typename T>
std::vector<std::pair<std::string, std::pair<Mat<T>, Mat<T>>>> pairs(Index rows, Index cols, std::uint64_t seed) {
  const Mat<T> a = gaussian<T>(rows, cols, seed), b = gaussian<T>(rows, cols, seed + 1);
  const Mat<T> z = Mat<T>::Zero(rows, cols);
  Mat<T> near = a + T(0.01) * b;     // |cos| > 0.9995 for slerp
  Mat<T> close = a + T(0.05) * b;    // |cos| ≈ 0.9988: the sine formula at a small angle
  return {{"random", {a, b}},
          {"first zero", {z, b}},
          {"second zero", {a, z}},
          {"both zero", {z, z}},
          {"colinear", {a, T(2.5) * a}},
          {"anti-parallel", {a, T(-0.7) * a}},
          {"nearly colinear", {a, near}},
          {"small angle", {a, close}}};
}

const std::vector<std::pair<Index, Index>> kShapes{{9, 4}, {3, 8}, {7, 1}, {1, 6}, {1, 1}};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Agreement with the references
// ---------------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("slerp agrees with mergekit's formula: shapes, zeros, colinear, anti-parallel, t", "[merging][interpolation]",
                   float, double) {
  using T = TestType;
  std::uint64_t seed = 100;
  for (const auto& shape : kShapes)
    for (const auto& c : pairs<T>(shape.first, shape.second, seed += 7))
      for (double t : {0.0, 1.0, 0.3, 0.75, -0.25, 1.4}) {
        INFO(c.first << " " << shape.first << "x" << shape.second << " t=" << t);
        const Mat<T>& a = c.second.first;
        const Mat<T>& b = c.second.second;
        const Mat<T> got = merge<T>("slerp", globals({{"t", t}}, 1), &a, {b});
        checkAgrees(got, refSlerp(t, a.template cast<double>(), b.template cast<double>()), sizeOf<T>({a, b}));
        if (t == 0) CHECK(got == a);  // t = 0 gives the base exactly
        if (t == 1) CHECK(got == b);  // t = 1 gives the other model exactly
      }
}

TEMPLATE_TEST_CASE("slerp: per-layer t values, the norm of unit inputs, row-major inputs", "[merging][interpolation]", float,
                   double) {
  using T = TestType;
  // The front end evaluates mergekit's gradient per layer: every tensor has its own t.
  const std::vector<double> ts{0.0, 0.2, 0.5, 0.8, 1.0};
  for (std::size_t l = 0; l < ts.size(); ++l) {
    const Mat<T> a = gaussian<T>(12, 5, 300 + l), b = gaussian<T>(12, 5, 400 + l);
    const std::string name = "model.layers." + std::to_string(l) + ".mlp.down_proj.weight";
    const Mat<T> got = merge<T>("slerp", globals({{"t", ts[l]}}, 1), &a, {b}, name);
    checkAgrees(got, refSlerp(ts[l], a.template cast<double>(), b.template cast<double>()), sizeOf<T>({a, b}));
  }
  // Unit-norm, non-colinear inputs stay on the unit sphere for every t in [0, 1].
  Mat<T> a = gaussian<T>(20, 3, 11), b = gaussian<T>(20, 3, 12);
  a /= a.norm();
  b /= b.norm();
  for (double t : {0.0, 0.1, 0.37, 0.5, 0.9, 1.0}) {
    wproj::mergekit::SlerpInfo info;
    const Mat<T> r = wproj::mergekit::slerp(t, a, b, &info);
    CHECK_FALSE(info.lerp);
    CHECK(std::abs(double(r.norm()) - 1.0) <= 10 * eps<T>() * 20);
  }
  // The angle to the first tensor is t times the angle between them.
  const double omega = std::acos(double(a.template cast<double>().cwiseProduct(b.template cast<double>()).sum()));
  const Mat<T> r = wproj::mergekit::slerp(0.3, a, b);
  CHECK(std::acos(double(r.template cast<double>().cwiseProduct(a.template cast<double>()).sum() / r.template cast<double>().norm())) ==
        Approx(0.3 * omega).epsilon(1e-5));
  // Row-major storage gives the same entries.
  const RowMajorMat<T> ar = a, br = b;
  checkAgrees(Mat<T>(wproj::mergekit::slerp(0.3, ar, br)), refSlerp(0.3, a.template cast<double>(), b.template cast<double>()), 1.0);
}

TEMPLATE_TEST_CASE("nuslerp agrees with mergekit's formula: flattened, per row, per column, with and without a base",
                   "[merging][interpolation]", float, double) {
  using T = TestType;
  std::uint64_t seed = 500;
  for (const auto& shape : kShapes)
    for (const auto& c : pairs<T>(shape.first, shape.second, seed += 7))
      for (const auto& w : std::vector<std::pair<double, double>>{{1, 1}, {0.3, 0.7}, {1, 0}, {0, 1}, {0.5, -0.5}, {2, 1}})
        for (int mode = 0; mode < 3; ++mode) {
          const bool flatten = mode == 0, rowWise = mode == 2;
          INFO(c.first << " " << shape.first << "x" << shape.second << " w=" << w.first << "," << w.second << " mode " << mode);
          const Mat<T>& a = c.second.first;
          const Mat<T>& b = c.second.second;
          TensorMergeParams p = weights({w.first, w.second}, {{"nuslerp_flatten", flatten ? 1 : 0}, {"nuslerp_row_wise", rowWise ? 1 : 0}});
          // Without a base: the models themselves.
          checkAgrees(merge<T>("nuslerp", p, nullptr, {a, b}),
                      refNuslerpMerge(w.first, w.second, a.template cast<double>(), b.template cast<double>(), nullptr, rowWise, flatten),
                      sizeOf<T>({a, b}));
          // With a base: the task vectors, the base added back.
          const Mat<T> base = gaussian<T>(a.rows(), a.cols(), seed + 3);
          const Mat<T> m0 = base + a, m1 = base + b;
          const DMat bd = base.template cast<double>();
          checkAgrees(merge<T>("nuslerp", p, &base, {m0, m1}),
                      refNuslerpMerge(w.first, w.second, m0.template cast<double>(), m1.template cast<double>(), &bd, rowWise, flatten),
                      sizeOf<T>({base, m0, m1}));
        }
  // Exactly colinear and anti-parallel pairs: sin Ω = 0, mergekit's linear interpolation.
  {
    const Mat<T> a = gaussian<T>(6, 5, 31);
    for (double f : {2.0, -0.5, -1.0})  // exact in float and double: exactly (anti-)parallel
      for (int mode = 0; mode < 3; ++mode) {
        INFO("factor " << f << " mode " << mode);
        const Mat<T> b = T(f) * a;
        const Mat<T> got = merge<T>("nuslerp", weights({0.3, 0.7}, {{"nuslerp_flatten", mode == 0 ? 1 : 0}, {"nuslerp_row_wise", mode == 2 ? 1 : 0}}),
                                    nullptr, {a, b});
        checkAgrees(got, DMat(0.3 * a.template cast<double>() + 0.7 * b.template cast<double>()), sizeOf<T>({a, b}));
      }
  }
  // Weights (1 − t, t) without a base: mergekit's slerp between the two models (away from colinear pairs).
  const Mat<T> a = gaussian<T>(8, 5, 1), b = gaussian<T>(8, 5, 2);
  checkAgrees(merge<T>("nuslerp", weights({0.6, 0.4}), nullptr, {a, b}), refSlerp(0.4, a.template cast<double>(), b.template cast<double>()),
              sizeOf<T>({a, b}));
  // Per row: each row of a tall tensor is interpolated on its own (a row scaled by 3 in one model only
  // gives that row's lerp-free slerp of its own vectors, unaffected by the others).
  Mat<T> b2 = b;
  b2.row(2) *= T(3);
  const Mat<T> rows = merge<T>("nuslerp", weights({1, 1}, {{"nuslerp_flatten", 0}}), nullptr, {a, b2});
  const Mat<T> rowsRef = merge<T>("nuslerp", weights({1, 1}, {{"nuslerp_flatten", 0}}), nullptr, {a, b});
  CHECK((rows.row(0) - rowsRef.row(0)).norm() == 0);
  CHECK((rows.row(2) - rowsRef.row(2)).norm() > 0);
}

TEMPLATE_TEST_CASE("multislerp agrees with mergekit's formula; two models at equal weights are slerp at 1/2",
                   "[merging][interpolation]", float, double) {
  using T = TestType;
  std::uint64_t seed = 700;
  for (const auto& shape : kShapes)
    for (std::size_t n : {2u, 3u, 5u}) {
      std::vector<Mat<T>> xs;
      for (std::size_t i = 0; i < n; ++i) xs.push_back(gaussian<T>(shape.first, shape.second, seed++));
      std::vector<DMat> xd;
      for (const auto& x : xs) xd.push_back(x.template cast<double>());
      const Mat<T> base = gaussian<T>(shape.first, shape.second, seed++);
      const DMat bd = base.template cast<double>();
      std::vector<double> w;
      for (std::size_t i = 0; i < n; ++i) w.push_back(0.5 + double(i));
      for (bool normalize : {true, false})
        for (bool withBase : {false, true}) {
          INFO(shape.first << "x" << shape.second << " n=" << n << " normalize=" << normalize << " base=" << withBase);
          TensorMergeParams p = weights(w, {{"normalize_weights", normalize ? 1 : 0}, {"eps", 1e-8}});
          checkAgrees(merge<T>("multislerp", p, withBase ? &base : nullptr, xs),
                      refMultislerp(xd, w, withBase ? &bd : nullptr, normalize, 1e-8), sizeOf<T>(xs));
        }
    }
  // Two anti-parallel task vectors at equal weights: the weighted mean vanishes, mergekit's linear interpolation.
  const Mat<T> a = gaussian<T>(6, 4, 1);
  const Mat<T> neg = -a;
  checkAgrees(merge<T>("multislerp", weights({1, 1}), nullptr, {a, neg}),
              refMultislerp({a.template cast<double>(), neg.template cast<double>()}, {1, 1}, nullptr, true, 1e-8), double(a.norm()));
  // Zero tensors among three: they count with weight and norm 0.
  const Mat<T> z = Mat<T>::Zero(6, 4), b = gaussian<T>(6, 4, 2);
  checkAgrees(merge<T>("multislerp", weights({1, 2, 3}), nullptr, {a, z, b}),
              refMultislerp({a.template cast<double>(), z.template cast<double>(), b.template cast<double>()}, {1, 2, 3}, nullptr,
                            true, 1e-8),
              sizeOf<T>({a, b}));

  // Equal norms, equal weights: the slerp midpoint.
  Mat<T> u = gaussian<T>(10, 3, 21), v = gaussian<T>(10, 3, 22);
  v *= u.norm() / v.norm();
  checkAgrees(merge<T>("multislerp", weights({0.7, 0.7}), nullptr, {u, v}), refSlerp(0.5, u.template cast<double>(), v.template cast<double>()),
              sizeOf<T>({u, v}));
  // Unequal weights: the tangent step vanishes (Σ w_i (u_i − ⟨u_i, m⟩m) = 0 at the normalised mean m),
  // so the result is the normalised weighted mean of the directions times the weighted mean norm —
  // not the slerp point at t = w₁: its angle to u is atan2(t sin Ω, 1 − t + t cos Ω), not tΩ.
  const double t = 0.25;
  const DMat ud = u.template cast<double>() / double(u.norm()), vd = v.template cast<double>() / double(v.norm());
  const DMat nl = ((1 - t) * ud + t * vd).normalized() * double(u.norm());
  const Mat<T> got = merge<T>("multislerp", weights({1 - t, t}), nullptr, {u, v});
  checkAgrees(got, nl, double(u.norm()));
  const DMat sl = refSlerp(t, u.template cast<double>(), v.template cast<double>());
  CHECK((got.template cast<double>() - sl).norm() > 1e-3 * sl.norm());
}

TEMPLATE_TEST_CASE("karcher agrees with mergekit's iteration; identical models; convergence", "[merging][interpolation]", float,
                   double) {
  using T = TestType;
  std::uint64_t seed = 900;
  for (const auto& shape : kShapes)
    for (std::size_t n : {2u, 3u, 4u})
      for (bool withBase : {false, true}) {
        std::vector<Mat<T>> xs;
        const Mat<T> centre = gaussian<T>(shape.first, shape.second, seed++);
        for (std::size_t i = 0; i < n; ++i) xs.push_back(centre + T(0.5) * gaussian<T>(shape.first, shape.second, seed++));
        const Mat<T> base = gaussian<T>(shape.first, shape.second, seed++);
        std::vector<DMat> pts;
        for (const auto& x : xs) pts.push_back(x.template cast<double>());
        if (withBase) pts.push_back(base.template cast<double>());  // mergekit averages the base with the models
        const std::vector<double> alphas(pts.size(), 1.0 / double(pts.size()));
        for (const auto& it : std::vector<std::pair<double, double>>{{10, 1e-5}, {3, 1e-5}, {50, 1e-9}, {0, 1e-5}}) {
          INFO(shape.first << "x" << shape.second << " n=" << n << " base=" << withBase << " max_iter=" << it.first);
          checkAgrees(merge<T>("karcher", globals({{"max_iter", it.first}, {"tol", it.second}}, n), withBase ? &base : nullptr, xs),
                      refKarcher(pts, alphas, int(it.first), it.second), sizeOf<T>(xs));
        }
      }
  // Zero tensors are left out of the direction but count (with norm 0) in the scale.
  const Mat<T> a = gaussian<T>(5, 4, 1), b = gaussian<T>(5, 4, 2), z = Mat<T>::Zero(5, 4);
  checkAgrees(merge<T>("karcher", globals({}, 3), nullptr, {a, z, b}),
              refKarcher({a.template cast<double>(), z.template cast<double>(), b.template cast<double>()}, {1. / 3, 1. / 3, 1. / 3}, 10, 1e-5),
              sizeOf<T>({a, b}));
  CHECK(merge<T>("karcher", globals({}, 2), nullptr, {z, z}) == z);

  // Identical models: that model, with no update of the direction.
  const Mat<T> m = gaussian<T>(9, 4, 5);
  const Mat<T> same = merge<T>("karcher", globals({}, 3), nullptr, {m, m, m});
  CHECK((same - m).norm() <= 10 * eps<T>() * m.norm());
  wproj::mergekit::KarcherInfo info;
  const std::vector<const Mat<T>*> three{&m, &m, &m};
  wproj::mergekit::karcherMean<T>(three, {1. / 3, 1. / 3, 1. / 3}, 10, 1e-5, &info);
  CHECK(info.converged);
  CHECK(info.iterations == 0);
  CHECK(info.validPoints == 3);

  // Points spread around a centre: the iteration stops on its tolerance within max_iter, and the
  // result is a critical point of the weighted sum of squared geodesic distances.
  std::vector<Mat<T>> pts;
  const Mat<T> centre = gaussian<T>(16, 4, 77);
  for (int i = 0; i < 4; ++i) pts.push_back(centre + T(0.4) * gaussian<T>(16, 4, 80 + std::uint64_t(i)));
  std::vector<const Mat<T>*> ptr;
  for (const auto& p : pts) ptr.push_back(&p);
  const Mat<T> km = wproj::mergekit::karcherMean<T>(ptr, {0.25, 0.25, 0.25, 0.25}, 10, 1e-5, &info);
  CHECK(info.converged);
  CHECK(info.iterations >= 1);
  CHECK(info.iterations < 10);
  int refIters = 0;
  bool refConverged = false;
  std::vector<DMat> pd;
  for (const auto& p : pts) pd.push_back(p.template cast<double>());
  refKarcher(pd, {0.25, 0.25, 0.25, 0.25}, 10, 1e-5, &refIters, &refConverged);
  CHECK(refConverged);
  CHECK(info.iterations == refIters);
  const DMat u = km.template cast<double>() / double(km.norm());
  DMat grad = DMat::Zero(u.rows(), u.cols());
  for (const auto& p : pd) {
    const DMat ui = p / p.norm();
    const double c = std::min(1.0, std::max(-1.0, ui.cwiseProduct(u).sum()));
    const double th = std::acos(c);
    grad += 0.25 * (th / std::sin(th)) * (ui - c * u);
  }
  CHECK(grad.norm() <= 1e-5);
  // Nearly orthogonal directions (independent Gaussian tensors): still within the default 10 iterations.
  std::vector<Mat<T>> far;
  for (int i = 0; i < 5; ++i) far.push_back(gaussian<T>(64, 32, 200 + std::uint64_t(i)));
  std::vector<const Mat<T>*> fp;
  for (const auto& p : far) fp.push_back(&p);
  wproj::mergekit::karcherMean<T>(fp, std::vector<double>(5, 0.2), 10, 1e-5, &info);
  CHECK(info.converged);
  CHECK(info.iterations >= 2);
  CHECK(info.iterations < 10);
  CHECK(info.tangentNorm < 1e-5);
}

TEMPLATE_TEST_CASE("nearswap agrees with mergekit's formula", "[merging][interpolation]", float, double) {
  using T = TestType;
  std::uint64_t seed = 1100;
  for (const auto& shape : kShapes)
    for (const auto& c : pairs<T>(shape.first, shape.second, seed += 5))
      for (double t : {0.0, 1e-4, 0.1, 0.5, 3.0, -0.2}) {
        INFO(c.first << " " << shape.first << "x" << shape.second << " t=" << t);
        const Mat<T>& a = c.second.first;
        const Mat<T>& b = c.second.second;
        const Mat<T> got = merge<T>("nearswap", globals({{"t", t}}, 1), &a, {b});
        checkAgrees(got, refNearswap(t, a.template cast<double>(), b.template cast<double>()), sizeOf<T>({a, b}));
        if (t <= 0) CHECK(got == a);
      }
  // Entries within t of each other are swapped in; farther ones move by t/|difference|.
  Mat<T> a(3, 1), b(3, 1);
  a << T(1), T(2), T(3);
  b << T(1.05), T(2.5), T(3);
  const Mat<T> r = merge<T>("nearswap", globals({{"t", 0.1}}, 1), &a, {b});
  CHECK(r(0, 0) == b(0, 0));
  CHECK(double(r(1, 0)) == Approx(0.2 * 2.5 + 0.8 * 2.0).epsilon(1e-6));
  CHECK(r(2, 0) == a(2, 0));
}

TEMPLATE_TEST_CASE("arcee_fusion agrees with mergekit's importance and threshold", "[merging][interpolation]", float, double) {
  using T = TestType;
  std::uint64_t seed = 1300;
  for (const auto& shape : std::vector<std::pair<Index, Index>>{{9, 4}, {3, 8}, {7, 1}, {1, 6}, {1, 1}, {40, 25}, {200, 1}})
    for (int k = 0; k < 3; ++k) {
      INFO(shape.first << "x" << shape.second << " case " << k);
      const Mat<T> base = gaussian<T>(shape.first, shape.second, seed++);
      // A sparse large change on top of small noise: the outliers are what fusion keeps.
      Mat<T> other = base + T(0.05) * gaussian<T>(shape.first, shape.second, seed++);
      for (Index i = 0; i < other.size(); i += 7 + k) other.data()[i] += T(1.5);
      Index kept = 0;
      const DMat ref = refArceeFusion(base.template cast<double>(), other.template cast<double>(), &kept);
      const Mat<T> got = merge<T>("arcee_fusion", TensorMergeParams(), &base, {other});
      checkAgrees(got, ref, sizeOf<T>({base, other}));
      wproj::mergekit::ArceeFusionInfo info;
      wproj::mergekit::arceeFusion(base, other, &info);
      CHECK(info.kept == kept);
      // Every entry is the base's or the other model's.
      for (Index i = 0; i < got.size(); ++i) CHECK((got.data()[i] == base.data()[i] || got.data()[i] == other.data()[i]));
    }
  // Identical models: no importance anywhere, the threshold 0 keeps everything (both are the same).
  const Mat<T> m = gaussian<T>(5, 5, 1);
  CHECK(merge<T>("arcee_fusion", TensorMergeParams(), &m, {m}) == m);
}

TEMPLATE_TEST_CASE("passthrough copies the one model's tensor, times its scale", "[merging][interpolation]", float, double) {
  using T = TestType;
  const Mat<T> m = gaussian<T>(7, 3, 1);
  CHECK(merge<T>("passthrough", TensorMergeParams(), nullptr, {m}) == m);
  TensorMergeParams p;
  p.models = {{{"scale", 0.5}}};
  CHECK(merge<T>("passthrough", p, nullptr, {m}) == Mat<T>(T(0.5) * m));
  p.models = {{{"scale", 1.0}}};
  CHECK(merge<T>("passthrough", p, nullptr, {m}) == m);
  p.models = {{{"scale", -3.0}}};
  checkAgrees(merge<T>("passthrough", p, nullptr, {m}), DMat(-3.0 * m.template cast<double>()), double(m.norm()));
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

TEST_CASE("interpolation methods: bad input names the method and what it expects", "[merging][interpolation]") {
  using T = float;
  const Mat<T> a = gaussian<T>(4, 3, 1), b = gaussian<T>(4, 3, 2), c = gaussian<T>(4, 3, 3), wrong = gaussian<T>(3, 4, 4);
  using wproj::InvalidArgument;
  const auto t5 = globals({{"t", 0.5}}, 1);
  // slerp: the base and one other model; t required.
  CHECK_THROWS_WITH(merge<T>("slerp", t5, nullptr, {b}), Contains("merge method 'slerp'") && Contains("base model"));
  CHECK_THROWS_WITH(merge<T>("slerp", globals({{"t", 0.5}}, 2), &a, {b, c}),
                    Contains("merge method 'slerp'") && Contains("2 model(s)") && Contains("exactly 1"));
  CHECK_THROWS_AS(merge<T>("slerp", globals({}, 1), &a, {b}), InvalidArgument);
  CHECK_THROWS_WITH(merge<T>("slerp", globals({}, 1), &a, {b}), Contains("merge method 'slerp'") && Contains("'t'") && Contains("required"));
  CHECK_THROWS_WITH(merge<T>("slerp", globals({{"t", std::nan("")}}, 1), &a, {b}), Contains("'t'") && Contains("required"));
  CHECK_THROWS_WITH(merge<T>("slerp", globals({{"t", INFINITY}}, 1), &a, {b}), Contains("'t'") && Contains("finite"));
  CHECK_THROWS_WITH(merge<T>("slerp", t5, &a, {wrong}), Contains("merge method 'slerp'") && Contains("3x4") && Contains("4x3"));
  // nuslerp: exactly two models; weight required per model; flags 0/1.
  CHECK_THROWS_WITH(merge<T>("nuslerp", weights({1, 1, 1}), &a, {a, b, c}), Contains("merge method 'nuslerp'") && Contains("exactly 2"));
  CHECK_THROWS_WITH(merge<T>("nuslerp", globals({}, 2), nullptr, {a, b}),
                    Contains("merge method 'nuslerp'") && Contains("'weight'") && Contains("required"));
  CHECK_THROWS_WITH(merge<T>("nuslerp", weights({1, 1}, {{"nuslerp_flatten", 2}}), nullptr, {a, b}),
                    Contains("'nuslerp_flatten'") && Contains("true or false"));
  CHECK_THROWS_AS(merge<T>("nuslerp", weights({1, 1}), nullptr, {a, wrong}), InvalidArgument);
  // multislerp: at least two models; weights required; a zero sum cannot be normalised; eps > 0.
  CHECK_THROWS_WITH(merge<T>("multislerp", weights({1}), nullptr, {a}), Contains("merge method 'multislerp'") && Contains("at least 2"));
  CHECK_THROWS_WITH(merge<T>("multislerp", globals({}, 2), nullptr, {a, b}), Contains("'weight'") && Contains("required"));
  CHECK_THROWS_WITH(merge<T>("multislerp", weights({1, -1}), nullptr, {a, b}),
                    Contains("merge method 'multislerp'") && Contains("'weight'") && Contains("nonzero sum"));
  CHECK_THROWS_WITH(merge<T>("multislerp", weights({1, 1}, {{"eps", 0}}), nullptr, {a, b}), Contains("'eps'") && Contains("> 0"));
  // Three tensors whose weighted directions cancel: mergekit's ValueError, here a NumericalError.
  const Mat<T> na = -a;
  CHECK_THROWS_AS(merge<T>("multislerp", weights({1, 1, 0}), nullptr, {a, na, b}), wproj::NumericalError);
  CHECK_THROWS_WITH(merge<T>("multislerp", weights({1, 1, 0}), nullptr, {a, na, b}), Contains("merge method 'multislerp'"));
  // karcher: at least two tensors (the base counts); max_iter an integer >= 0; tol >= 0.
  CHECK_THROWS_WITH(merge<T>("karcher", globals({}, 1), nullptr, {a}), Contains("merge method 'karcher'") && Contains("at least 2"));
  CHECK_NOTHROW(merge<T>("karcher", globals({}, 1), &b, {a}));
  CHECK_THROWS_WITH(merge<T>("karcher", globals({{"max_iter", 2.5}}, 2), nullptr, {a, b}), Contains("'max_iter'") && Contains("integer"));
  CHECK_THROWS_WITH(merge<T>("karcher", globals({{"tol", -1}}, 2), nullptr, {a, b}), Contains("'tol'") && Contains(">= 0"));
  // nearswap, arcee_fusion: the base and one other model.
  CHECK_THROWS_WITH(merge<T>("nearswap", t5, nullptr, {b}), Contains("merge method 'nearswap'") && Contains("base model"));
  CHECK_THROWS_WITH(merge<T>("nearswap", globals({}, 1), &a, {b}), Contains("merge method 'nearswap'") && Contains("'t'"));
  CHECK_THROWS_WITH(merge<T>("nearswap", globals({{"t", 0.1}}, 2), &a, {b, c}), Contains("exactly 1"));
  CHECK_THROWS_WITH(merge<T>("arcee_fusion", TensorMergeParams(), nullptr, {b}), Contains("merge method 'arcee_fusion'") && Contains("base model"));
  CHECK_THROWS_WITH(merge<T>("arcee_fusion", TensorMergeParams(), &a, {b, c}), Contains("merge method 'arcee_fusion'") && Contains("exactly 1"));
  // passthrough: exactly one model, no base.
  CHECK_THROWS_WITH(merge<T>("passthrough", TensorMergeParams(), &a, {b}), Contains("merge method 'passthrough'") && Contains("base"));
  CHECK_THROWS_WITH(merge<T>("passthrough", TensorMergeParams(), nullptr, {a, b}), Contains("merge method 'passthrough'") && Contains("exactly 1"));
  // Non-finite inputs are not turned into a merged tensor silently.
  Mat<T> bad = b;
  bad(1, 1) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_AS(merge<T>("nearswap", globals({{"t", 0.1}}, 1), &a, {bad}), wproj::NumericalError);
  CHECK_THROWS_AS(merge<T>("slerp", t5, &a, {bad}), wproj::NumericalError);
  // Each error message names the tensor.
  CHECK_THROWS_WITH(merge<T>("slerp", globals({}, 1), &a, {b}, "model.layers.3.self_attn.q_proj.weight"),
                    Contains("model.layers.3.self_attn.q_proj.weight"));
}

// ---------------------------------------------------------------------------------------------
// Registry entries
// ---------------------------------------------------------------------------------------------

TEST_CASE("interpolation methods: registry entries have mergekit's names, parameters and roles", "[merging][interpolation]") {
  const auto methods = wproj::detail::interpolationMethods();
  std::set<std::string> names;
  for (const auto& m : methods) {
    INFO(m.name);
    names.insert(m.name);
    CHECK(m.hasTensorForm());
    CHECK(m.runFloat == nullptr);  // the whole-model run is runTensorwise
    CHECK(m.workingSet != nullptr);
    CHECK(m.workingSet(7, 6, 3, 4) > 0);
    CHECK(m.elementwise);
    CHECK(m.passes == 1);
    CHECK_FALSE(m.continual);
    CHECK_FALSE(m.randomized);
    CHECK_FALSE(m.title.empty());
    CHECK_FALSE(m.reference.empty());
    CHECK((!m.needsBase || m.acceptsBase));
  }
  CHECK(names == std::set<std::string>{"slerp", "nuslerp", "multislerp", "karcher", "nearswap", "arcee_fusion", "passthrough"});
  auto kind = [](const std::string& m, const std::string& p) { return method(m).param(p)->kind; };
  auto dflt = [](const std::string& m, const std::string& p) { return method(m).param(p)->defaultValue; };
  // Required parameters (no default in mergekit) have a NaN default.
  CHECK(std::isnan(dflt("slerp", "t")));
  CHECK(kind("slerp", "t") == wproj::ParamKind::Scalar);
  CHECK(std::isnan(dflt("nearswap", "t")));
  CHECK(std::isnan(dflt("nuslerp", "weight")));
  CHECK(kind("nuslerp", "weight") == wproj::ParamKind::PerModel);
  CHECK(std::isnan(dflt("multislerp", "weight")));
  CHECK(dflt("nuslerp", "nuslerp_flatten") == 1.0);
  CHECK(dflt("nuslerp", "nuslerp_row_wise") == 0.0);
  CHECK(kind("nuslerp", "nuslerp_flatten") == wproj::ParamKind::Bool);
  CHECK(dflt("multislerp", "normalize_weights") == 1.0);
  CHECK(dflt("multislerp", "eps") == 1e-8);
  CHECK(dflt("karcher", "max_iter") == 10.0);
  CHECK(kind("karcher", "max_iter") == wproj::ParamKind::Integer);
  CHECK(dflt("karcher", "tol") == 1e-5);
  CHECK(dflt("passthrough", "scale") == 1.0);
  CHECK(kind("passthrough", "scale") == wproj::ParamKind::PerModel);
  CHECK(method("arcee_fusion").params.empty());
  CHECK(method("slerp").param("weight") == nullptr);  // mergekit's slerp has no weights
  // Base roles and model counts.
  CHECK(method("slerp").needsBase);
  CHECK(method("slerp").maxModels == 1);
  CHECK(method("nearswap").needsBase);
  CHECK(method("arcee_fusion").needsBase);
  CHECK_FALSE(method("nuslerp").needsBase);
  CHECK(method("nuslerp").minModels == 2);
  CHECK(method("nuslerp").maxModels == 2);
  CHECK_FALSE(method("multislerp").needsBase);
  CHECK(method("multislerp").minModels == 2);
  CHECK_FALSE(method("karcher").needsBase);
  CHECK(method("karcher").acceptsBase);
  CHECK_FALSE(method("passthrough").acceptsBase);
  CHECK(method("passthrough").maxModels == 1);
  // Exactly mergekit's required parameters are marked required.
  for (const auto& m : methods)
    for (const auto& p : m.params) {
      INFO(m.name << " " << p.name);
      const bool mergekitRequired = ((m.name == "slerp" || m.name == "nearswap") && p.name == "t") ||
                                    ((m.name == "nuslerp" || m.name == "multislerp") && p.name == "weight");
      CHECK(p.required == mergekitRequired);
      CHECK(std::isnan(p.defaultValue) == mergekitRequired);
    }
  // resolve: ranges from the entries; a required parameter left out is refused, by resolve and by
  // the per-tensor form (given the NaN default by a front end that fills in defaults itself).
  CHECK_THROWS_WITH(method("multislerp").resolve({{"eps", wproj::ParamValue::number(-1)}}, 2),
                    Contains("merge method 'multislerp'") && Contains("'eps'"));
  CHECK_THROWS_WITH(method("karcher").resolve({{"max_iter", wproj::ParamValue::number(1.5)}}, 2), Contains("'max_iter'"));
  CHECK_THROWS_WITH(method("slerp").resolve({}, 1), Contains("merge method 'slerp'") && Contains("'t'"));
  CHECK_THROWS_WITH(method("nuslerp").resolve({}, 2), Contains("merge method 'nuslerp'") && Contains("'weight'"));
  CHECK_NOTHROW(method("karcher").resolve({}, 3));
  const Mat<double> a = gaussian<double>(3, 3, 1), b = gaussian<double>(3, 3, 2);
  TensorMergeParams filled = globals({{"t", method("slerp").param("t")->defaultValue}}, 1);
  CHECK_THROWS_WITH(method("slerp").mergeTensor<double>(filled, inputs<double>("w", &a, {b})), Contains("'t'") && Contains("required"));
}

// ---------------------------------------------------------------------------------------------
// The per-tensor form against the whole-model run
// ---------------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("interpolation methods: the per-tensor form equals the whole-model run and the reference", "[merging][interpolation]",
                   float, double) {
  using T = TestType;
  const std::vector<std::string> names{"model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight",
                                       "model.norm.weight", "lm_head.weight"};
  const std::vector<std::pair<Index, Index>> shapes{{9, 4}, {4, 9}, {7, 1}, {1, 6}};
  struct Model {
    std::map<std::string, Mat<T>> t;
  };
  std::vector<Model> models(4);
  Model base;
  for (std::size_t k = 0; k < names.size(); ++k) {
    base.t[names[k]] = gaussian<T>(shapes[k].first, shapes[k].second, 10 + k);
    for (std::size_t i = 0; i < models.size(); ++i)
      models[i].t[names[k]] = base.t[names[k]] + T(0.3) * gaussian<T>(shapes[k].first, shapes[k].second, 100 + 10 * i + k);
  }
  using wproj::ParamValue;
  struct Case {
    std::string method;
    Index count;
    bool withBase;
    wproj::MergeParams params;
  };
  const std::vector<Case> cases{
      {"slerp", 1, true, {{"t", ParamValue::number(0.35)}}},
      {"nuslerp", 2, true, {{"weight", ParamValue::perModel({0.4, 0.6})}, {"nuslerp_flatten", ParamValue::flag(false)}}},
      {"nuslerp", 2, false, {{"weight", ParamValue::perModel({1, 3})}, {"nuslerp_flatten", ParamValue::flag(false)},
                              {"nuslerp_row_wise", ParamValue::flag(true)}}},
      {"multislerp", 3, true, {{"weight", ParamValue::perModel({1, 2, 3})}}},
      {"multislerp", 4, false, {{"weight", ParamValue::perModel({1, 1, 1, 1})}, {"normalize_weights", ParamValue::flag(false)}}},
      {"karcher", 3, false, {}},
      {"karcher", 2, true, {{"max_iter", ParamValue::number(20)}, {"tol", ParamValue::number(1e-8)}}},
      {"nearswap", 1, true, {{"t", ParamValue::number(0.2)}}},
      {"arcee_fusion", 1, true, {}},
      {"passthrough", 1, false, {{"scale", ParamValue::perModel({0.5})}}},
  };
  for (const auto& c : cases) {
    INFO(c.method << " with " << c.count << " models" << (c.withBase ? " and a base" : ""));
    const wproj::MergeMethod& m = method(c.method);
    std::map<std::string, Mat<T>> whole;
    wproj::MergeJob<T> job;
    job.names = names;
    job.numModels = c.count;
    if (c.withBase) job.base = [&base](const std::string& n) { return base.t.at(n); };
    job.model = [&models](Index i, const std::string& n) { return models[std::size_t(i)].t.at(n); };
    job.sink = [&whole](const std::string& n, const Mat<T>& x) { whole[n] = x; };
    const wproj::MergeReport rep = m.run<T>(c.params, job);
    REQUIRE(rep.tensors.size() == names.size());
    const wproj::TensorMergeParams tp = wproj::MergeMethod::tensorParams(m.resolve(c.params, c.count), c.count);
    for (std::size_t k = 0; k < names.size(); ++k) {
      const std::string& n = names[k];
      INFO(n);
      CHECK(rep.tensors[k].action == wproj::TensorAction::Project);
      std::vector<Mat<T>> ms;
      std::vector<DMat> md;
      for (Index i = 0; i < c.count; ++i) {
        ms.push_back(models[std::size_t(i)].t.at(n));
        md.push_back(ms.back().template cast<double>());
      }
      const Mat<T>& b = base.t.at(n);
      const DMat bd = b.template cast<double>();
      const Mat<T> per = m.mergeTensor<T>(tp, inputs<T>(n, c.withBase ? &b : nullptr, ms));
      CHECK(per == whole.at(n));
      DMat ref;
      if (c.method == "slerp") ref = refSlerp(0.35, bd, md[0]);
      else if (c.method == "nuslerp" && c.withBase) ref = refNuslerpMerge(0.4, 0.6, md[0], md[1], &bd, false, false);
      else if (c.method == "nuslerp") ref = refNuslerpMerge(1, 3, md[0], md[1], nullptr, true, false);
      else if (c.method == "multislerp" && c.withBase) ref = refMultislerp(md, {1, 2, 3}, &bd, true, 1e-8);
      else if (c.method == "multislerp") ref = refMultislerp(md, {1, 1, 1, 1}, nullptr, false, 1e-8);
      else if (c.method == "karcher" && !c.withBase) ref = refKarcher(md, {1. / 3, 1. / 3, 1. / 3}, 10, 1e-5);
      else if (c.method == "karcher") ref = refKarcher({md[0], md[1], bd}, {1. / 3, 1. / 3, 1. / 3}, 20, 1e-8);
      else if (c.method == "nearswap") ref = refNearswap(0.2, bd, md[0]);
      else if (c.method == "arcee_fusion") ref = refArceeFusion(bd, md[0]);
      else ref = 0.5 * md[0];
      std::vector<Mat<T>> all = ms;
      all.push_back(b);
      checkAgrees(per, ref, sizeOf<T>(all));
    }
  }
}

TEMPLATE_TEST_CASE("interpolation functions accept row-major storage (torch's layout)", "[merging][interpolation]", float, double) {
  using T = TestType;
  const Mat<T> a = gaussian<T>(7, 5, 61), b = gaussian<T>(7, 5, 62);
  const RowMajorMat<T> ar = a, br = b;
  const DMat ad = a.template cast<double>(), bd = b.template cast<double>();
  using V = wproj::mergekit::NuslerpVectors;
  checkAgrees(Mat<T>(wproj::mergekit::nuslerp(0.3, ar, br, V::Rows)), refNuslerp(0.3, ad, bd, false, false), sizeOf<T>({a, b}));
  checkAgrees(Mat<T>(wproj::mergekit::nuslerp(0.3, ar, br, V::Columns)), refNuslerp(0.3, ad, bd, true, false), sizeOf<T>({a, b}));
  checkAgrees(Mat<T>(wproj::mergekit::nuslerp(0.3, ar, br, V::Whole)), refNuslerp(0.3, ad, bd, false, true), sizeOf<T>({a, b}));
  checkAgrees(Mat<T>(wproj::mergekit::nearswap(0.5, ar, br)), refNearswap(0.5, ad, bd), sizeOf<T>({a, b}));
  checkAgrees(Mat<T>(wproj::mergekit::arceeFusion(ar, br)), refArceeFusion(ad, bd), sizeOf<T>({a, b}));
}
