// Tests of mergekit's task-arithmetic family and averaging methods per tensor
// (task_arithmetic_family.hpp, sparsify.hpp): every method against a reference written here from
// mergekit's math (plain loops in double over row-major positions, as torch flattens a tensor);
// the random masks: same for the same (seed, tensor, model), different across seeds, keep rates
// and DELLA's rank-ordered probabilities within 4 sigma, the L1 rescale; the per-tensor form
// against the whole-model run; fetches per model = passes; bad parameters; zero task vectors;
// weights summing to zero.
#include "test_common.hpp"

#include <wproj/merging/task_arithmetic_family.hpp>

#include <algorithm>
#include <map>
#include <numeric>
#include <string>
#include <vector>

using namespace wproj_test;
using Catch::Matchers::Contains;
using MD = Mat<double>;
using Globals = std::map<std::string, double>;
using PerModel = std::vector<std::map<std::string, double>>;

namespace {

/// One tensor in a base and `count` fine-tuned models (task vectors of the size of the base).
template <typename T>
struct Family {
  std::string name;
  Mat<T> base;
  std::vector<Mat<T>> models;
  Family(std::string n, Index rows, Index cols, Index count, std::uint64_t seed) : name(std::move(n)) {
    base = gaussian<T>(rows, cols, seed);
    for (Index i = 0; i < count; ++i) models.push_back(base + T(0.6) * gaussian<T>(rows, cols, seed + 17 * (i + 1)));
  }
  Index count() const { return Index(models.size()); }
  /// Inputs whose fetches are counted in `fetches` (one per model) and `baseFetches`.
  wproj::TensorMergeInputs<T> inputs(std::uint64_t seed = 0, std::vector<int>* fetches = nullptr, int* baseFetches = nullptr) const {
    wproj::TensorMergeInputs<T> in;
    in.name = name;
    in.numModels = count();
    in.hasBase = true;
    in.seed = seed;
    in.base = [this, baseFetches]() {
      if (baseFetches) ++*baseFetches;
      return base;
    };
    in.model = [this, fetches](Index i) {
      if (fetches) ++(*fetches)[std::size_t(i)];
      return models[std::size_t(i)];
    };
    return in;
  }
  MD base64() const { return base.template cast<double>(); }
  MD tau64(Index i) const { return (models[std::size_t(i)].template cast<double>() - base.template cast<double>()); }
};

wproj::TensorMergeParams params(Globals g, PerModel m) {
  wproj::TensorMergeParams p;
  p.global = std::move(g);
  p.models = std::move(m);
  return p;
}

// ---- reference: mergekit's math in double, row-major positions ----

/// The value at row-major position q.
double& at(MD& x, Index q) { return x(q / x.cols(), q % x.cols()); }
double at(const MD& x, Index q) { return x(q / x.cols(), q % x.cols()); }

/// Positions sorted by |value| ascending (no ties in random data).
std::vector<Index> ascending(const MD& x) {
  std::vector<Index> idx(std::size_t(x.size()));
  std::iota(idx.begin(), idx.end(), Index(0));
  std::stable_sort(idx.begin(), idx.end(), [&](Index a, Index b) { return std::abs(at(x, a)) < std::abs(at(x, b)); });
  return idx;
}

MD masked(const MD& x, const std::vector<char>& keep) {
  MD out = MD::Zero(x.rows(), x.cols());
  for (Index q = 0; q < x.size(); ++q)
    if (keep[std::size_t(q)]) at(out, q) = at(x, q);
  return out;
}

/// mergekit's rescaled_masked_tensor with the L1 norm.
MD rescaleL1(const MD& tau, const MD& m, bool rescale) {
  if (!rescale) return m;
  const double before = tau.cwiseAbs().sum(), after = m.cwiseAbs().sum();
  if (before < 1e-7 || after < 1e-7) return m;
  return m * (before / after);
}

/// mergekit's magnitude(): top int(density·n) by |value|.
MD refMagnitude(const MD& tau, double density, bool rescale) {
  if (density >= 1) return tau;
  const Index n = tau.size(), k = Index(density * double(n));
  const std::vector<Index> idx = ascending(tau);
  std::vector<char> keep(std::size_t(n), 0);
  for (Index r = n - k; r < n; ++r) keep[std::size_t(idx[std::size_t(r)])] = 1;
  return rescaleL1(tau, masked(tau, keep), rescale);
}

/// mergekit's magnitude_outliers(): indices[n_bot:-n_top] of the ascending sort (Python slicing).
MD refOutliers(const MD& tau, double density, double gamma, bool rescale) {
  if (density >= 1) return tau;
  const Index n = tau.size();
  const Index target = Index(density * double(n));
  Index top = Index(gamma * double(n)), bot = n - target - top;
  if (bot < 0) {
    top += bot;
    bot = 0;
  }
  const std::vector<Index> idx = ascending(tau);
  std::vector<char> keep(std::size_t(n), 0);
  const Index stop = top == 0 ? 0 : n - top;  // a[b:-0] is a[b:0], empty
  for (Index r = bot; r < stop; ++r) keep[std::size_t(idx[std::size_t(r)])] = 1;
  return rescaleL1(tau, masked(tau, keep), rescale);
}

/// mergekit's GTATask.execute on already-sparsified deltas d_i.
MD refCombine(const MD& base, const std::vector<MD>& d, const std::vector<double>& w, bool consensus, bool normalize,
              double lambda) {
  const Index n = base.size();
  MD mixed = MD::Zero(base.rows(), base.cols());
  if (!consensus) {
    double div = 0;
    for (std::size_t i = 0; i < d.size(); ++i) {
      mixed += w[i] * d[i];
      div += w[i];
    }
    if (std::abs(div) < 1e-8) div = 1;
    if (normalize) mixed /= div;
  } else {
    for (Index q = 0; q < n; ++q) {
      double s = 0;
      for (std::size_t i = 0; i < d.size(); ++i) s += w[i] * at(d[i], q);
      const double major = s >= 0 ? 1 : -1;
      double num = 0, div = 0;
      for (std::size_t i = 0; i < d.size(); ++i) {
        const double v = w[i] * at(d[i], q);
        const double sg = v > 0 ? 1 : (v < 0 ? -1 : 0);
        if (sg == major) {
          num += v;
          div += w[i];
        }
      }
      if (div == 0) div = 1;
      at(mixed, q) = normalize ? num / div : num;
    }
  }
  if (lambda != 1) mixed *= lambda;
  return base + mixed;
}

/// Normwise relative difference.
template <typename T>
double relDiff(const Mat<T>& got, const MD& ref) {
  const double den = std::max(ref.norm(), 1e-300);
  return (got.template cast<double>() - ref).norm() / den;
}

template <typename T>
double tolerance() {
  return std::is_same<T, float>::value ? 1e-6 : 1e-12;
}

/// The registry entry `name` of the family.
wproj::MergeMethod entry(const std::string& name) {
  for (auto& m : wproj::detail::taskArithmeticFamilyMethods())
    if (m.name == name) return m;
  FAIL("no entry " << name);
  return {};
}

PerModel perModel(const std::vector<double>& w, const std::vector<double>& density, const std::vector<double>& extra = {},
                  const char* extraName = nullptr) {
  PerModel m(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    m[i]["weight"] = w[i];
    if (!density.empty()) m[i]["density"] = density[i];
    if (extraName) m[i][extraName] = extra[i];
  }
  return m;
}

/// The mask the sparsifier draws for model i (nonzero pattern of the unrescaled result).
template <typename T>
std::vector<char> drawnMask(const Family<T>& f, Index i, wproj::SparsificationMethod method, double density, double epsilon,
                            std::uint64_t seed) {
  wproj::TaskVectorSparsifier s;
  s.setMethod(method).setDensity(density).setEpsilon(epsilon).setSeed(seed);
  const Mat<T> tau = f.models[std::size_t(i)] - f.base;
  const Mat<T> d = s.apply(tau, f.name, i);
  MD d64 = d.template cast<double>();
  std::vector<char> keep(std::size_t(tau.size()));
  for (Index q = 0; q < d64.size(); ++q) keep[std::size_t(q)] = at(d64, q) != 0 ? 1 : 0;
  return keep;
}

struct Shape {
  Index rows, cols;
};
const Shape kFamilyShapes[] = {{7, 6}, {1, 11}, {13, 1}, {4, 9}};

}  // namespace

TEMPLATE_TEST_CASE("deterministic task-arithmetic members equal mergekit's math", "[merging][mergekit]", float, double) {
  using T = TestType;
  const std::vector<double> w{0.7, -0.4, 1.3}, dens{0.5, 0.8, 0.34}, gam{0.1, 0.2, 0.15};
  int shapeIndex = 0;
  for (const Shape sh : kFamilyShapes) {
    const Family<T> f("layers.0.w" + std::to_string(shapeIndex), sh.rows, sh.cols, 3, 100 + 10 * std::uint64_t(shapeIndex));
    ++shapeIndex;
    INFO("shape " << sh.rows << "x" << sh.cols);
    const MD b = f.base64();
    std::vector<MD> tau;
    for (Index i = 0; i < 3; ++i) tau.push_back(f.tau64(i));
    for (int flags = 0; flags < 4; ++flags) {
      const bool normalize = flags & 1, rescale = (flags & 2) != 0;
      const double lambda = flags == 3 ? 0.8 : 1.0;
      const Globals g{{"normalize", normalize}, {"rescale", rescale}, {"lambda", lambda}, {"int8_mask", 0}};
      INFO("normalize " << normalize << " rescale " << rescale << " lambda " << lambda);
      {
        const MD ref = refCombine(b, tau, w, false, normalize, lambda);
        const Mat<T> got = entry("task_arithmetic").mergeTensor(params(g, perModel(w, dens)), f.inputs());
        CHECK(relDiff(got, ref) <= tolerance<T>());
      }
      std::vector<MD> mag, out;
      for (std::size_t i = 0; i < 3; ++i) {
        mag.push_back(refMagnitude(tau[i], dens[i], rescale));
        out.push_back(refOutliers(tau[i], dens[i], gam[i], rescale));
      }
      CHECK(relDiff(Mat<T>(entry("ties").mergeTensor(params(g, perModel(w, dens)), f.inputs())),
                    refCombine(b, mag, w, true, normalize, lambda)) <= tolerance<T>());
      CHECK(relDiff(Mat<T>(entry("breadcrumbs").mergeTensor(params(g, perModel(w, dens, gam, "gamma")), f.inputs())),
                    refCombine(b, out, w, false, normalize, lambda)) <= tolerance<T>());
      CHECK(relDiff(Mat<T>(entry("breadcrumbs_ties").mergeTensor(params(g, perModel(w, dens, gam, "gamma")), f.inputs())),
                    refCombine(b, out, w, true, normalize, lambda)) <= tolerance<T>());
    }
  }
  // Defaults: ties normalizes, density 1 keeps everything; int8_mask changes nothing.
  const Family<T> f("d", 5, 4, 3, 7);
  std::vector<MD> tau;
  for (Index i = 0; i < 3; ++i) tau.push_back(f.tau64(i));
  const Mat<T> ties = entry("ties").mergeTensor(params({}, perModel(w, {})), f.inputs());
  CHECK(relDiff(ties, refCombine(f.base64(), tau, w, true, true, 1.0)) <= tolerance<T>());
  const Mat<T> int8 = entry("ties").mergeTensor(params({{"int8_mask", 1}}, perModel(w, {})), f.inputs());
  CHECK(int8 == ties);
  // Breadcrumbs with gamma * n < 1: mergekit's slice indices[n_bot:-0] is empty, nothing kept.
  const Mat<T> crumbs = entry("breadcrumbs").mergeTensor(params({}, perModel(w, dens, {0.01, 0.01, 0.01}, "gamma")), f.inputs());
  CHECK(crumbs == f.base);
}

TEMPLATE_TEST_CASE("random task-arithmetic members equal mergekit's math on the drawn masks", "[merging][mergekit]", float,
                   double) {
  using T = TestType;
  using SM = wproj::SparsificationMethod;
  const std::vector<double> w{0.9, 0.5, -0.3}, dens{0.5, 0.7, 0.4}, eps{0.1, 0.2, 0.3};
  for (const Shape sh : kFamilyShapes) {
    INFO("shape " << sh.rows << "x" << sh.cols);
    const Family<T> f("model.layers.3.mlp.up_proj.weight", sh.rows, sh.cols, 3, 300 + std::uint64_t(sh.rows));
    const MD b = f.base64();
    for (int flags = 0; flags < 4; ++flags) {
      const bool normalize = flags & 1, rescale = (flags & 2) != 0;
      const Globals g{{"normalize", normalize}, {"rescale", rescale}, {"lambda", 1.1}};
      for (const char* name : {"dare_ties", "dare_linear", "della", "della_linear"}) {
        INFO(name << " normalize " << normalize << " rescale " << rescale);
        const bool della = name[1] == 'e';
        const bool consensus = std::string(name).find("linear") == std::string::npos;
        std::vector<MD> d;
        for (Index i = 0; i < 3; ++i) {
          const auto keep = drawnMask(f, i, della ? SM::DellaMagprune : SM::Random, dens[std::size_t(i)], eps[std::size_t(i)], 42);
          d.push_back(rescaleL1(f.tau64(i), masked(f.tau64(i), keep), rescale));
        }
        const PerModel pm = della ? perModel(w, dens, eps, "epsilon") : perModel(w, dens);
        const Mat<T> got = entry(name).mergeTensor(params(g, pm), f.inputs(42));
        CHECK(relDiff(got, refCombine(b, d, w, consensus, normalize, 1.1)) <= tolerance<T>());
      }
    }
  }
}

TEMPLATE_TEST_CASE("random masks: reproducible, seeded, keep rates and DELLA's rank order", "[merging][mergekit]", float,
                   double) {
  using T = TestType;
  using SM = wproj::SparsificationMethod;
  const Family<T> f("model.layers.1.self_attn.q_proj.weight", 100, 80, 2, 5);
  const Mat<T> tau = f.models[0] - f.base;
  const Index n = tau.size();
  for (const SM method : {SM::Random, SM::DellaMagprune}) {
    INFO(wproj::toString(method));
    const double density = 0.3, epsilon = 0.2;
    wproj::TaskVectorSparsifier s;
    s.setMethod(method).setDensity(density).setEpsilon(epsilon).setSeed(9);
    // Same (seed, name, model): the same mask in every call; another seed, name or model: another.
    const Mat<T> a = s.apply(tau, f.name, 0);
    CHECK(a == s.apply(tau, f.name, 0));
    CHECK(a != s.apply(tau, f.name, 1));
    CHECK(a != s.apply(tau, f.name + "x", 0));
    wproj::TaskVectorSparsifier other = s;
    other.setSeed(10);
    CHECK(a != other.apply(tau, f.name, 0));
    // Keep rate within 4 sigma of the density (DELLA's probabilities average to the density too).
    const double kept = double((a.array() != T(0)).count());
    const double sigma = std::sqrt(double(n) * density * (1 - density));
    CHECK(std::abs(kept - density * double(n)) <= 4 * sigma);
    // L1 rescale: the kept entries carry the task vector's L1 norm.
    wproj::TaskVectorSparsifier r = s;
    r.setRescale(true);
    const Mat<T> ar = r.apply(tau, f.name, 0);
    CHECK(std::abs(double(ar.cwiseAbs().sum()) / double(tau.cwiseAbs().sum()) - 1) <= 1e-5);
    CHECK(((ar.array() != T(0)) == (a.array() != T(0))).all());
  }
  // Rescaled DARE is unbiased: the mean over many seeds approaches the task vector.
  {
    const Family<T> g("bias", 1000, 1, 1, 3);
    const MD t = g.tau64(0);
    const double density = 0.4;
    const int draws = 2000;
    MD mean = MD::Zero(t.rows(), t.cols());
    wproj::TaskVectorSparsifier s;
    s.setMethod(SM::Random).setDensity(density).setRescale(true);
    const Mat<T> tauT = g.models[0] - g.base;
    for (int k = 0; k < draws; ++k) mean += s.setSeed(std::uint64_t(k)).apply(tauT, g.name, 0).template cast<double>();
    mean /= double(draws);
    // Var of one entry ≈ τ²(1 − p)/p per draw; the squared error of the mean sums these over entries.
    const double expected = std::sqrt(t.squaredNorm() * (1 - density) / density / double(draws));
    CHECK((mean - t).norm() <= 3 * expected);
  }
  // DELLA's keep probabilities rise with the magnitude rank, from density − ε to density + ε.
  CHECK(wproj::dellaKeepProbability(0, 10, 0.5, 0.2) == Approx(0.3));
  CHECK(wproj::dellaKeepProbability(9, 10, 0.5, 0.2) == Approx(0.7));
  for (Index r = 1; r < 10; ++r)
    CHECK(wproj::dellaKeepProbability(r, 10, 0.5, 0.2) > wproj::dellaKeepProbability(r - 1, 10, 0.5, 0.2));
  // Empirically, per rank quartile of each row, over many rows: keep rates ordered and within 4 sigma.
  {
    const Index rows = 400, cols = 40;
    const Mat<T> x = gaussian<T>(rows, cols, 77);
    wproj::TaskVectorSparsifier s;
    s.setMethod(SM::DellaMagprune).setDensity(0.5).setEpsilon(0.3).setSeed(1);
    const Mat<T> d = s.apply(x, "della_rows", 0);
    double keptQ[4] = {0, 0, 0, 0}, expectQ[4] = {0, 0, 0, 0}, varQ[4] = {0, 0, 0, 0};
    for (Index i = 0; i < rows; ++i) {
      std::vector<Index> idx(static_cast<std::size_t>(cols));
      std::iota(idx.begin(), idx.end(), Index(0));
      std::sort(idx.begin(), idx.end(), [&](Index a, Index b) { return std::abs(x(i, a)) < std::abs(x(i, b)); });
      for (Index r = 0; r < cols; ++r) {
        const int q = int(4 * r / cols);
        const double p = 0.5 - 0.3 + 0.6 * double(r) / double(cols - 1);
        keptQ[q] += d(i, idx[std::size_t(r)]) != T(0) ? 1 : 0;
        expectQ[q] += p;
        varQ[q] += p * (1 - p);
      }
    }
    for (int q = 0; q < 4; ++q) {
      INFO("quartile " << q);
      CHECK(std::abs(keptQ[q] - expectQ[q]) <= 4 * std::sqrt(varQ[q]));
      if (q > 0) CHECK(keptQ[q] > keptQ[q - 1]);
    }
  }
}

TEMPLATE_TEST_CASE("linear, sce and model_stock equal mergekit's math", "[merging][mergekit]", float, double) {
  using T = TestType;
  const std::vector<double> w{0.5, 1.5, -0.25};
  int k = 0;
  for (const Shape sh : kFamilyShapes) {
    INFO("shape " << sh.rows << "x" << sh.cols);
    const Family<T> f("t" + std::to_string(k), sh.rows, sh.cols, 3, 500 + std::uint64_t(k));
    ++k;
    const MD b = f.base64();
    std::vector<MD> th, tau;
    for (Index i = 0; i < 3; ++i) {
      th.push_back(f.models[std::size_t(i)].template cast<double>());
      tau.push_back(f.tau64(i));
    }
    // linear: Σ w θ (/ Σ w); the base joins the mean only with its own values (one more model map).
    for (int normalize = 0; normalize < 2; ++normalize) {
      MD ref = w[0] * th[0] + w[1] * th[1] + w[2] * th[2];
      if (normalize) ref /= (w[0] + w[1] + w[2]);
      CHECK(relDiff(Mat<T>(entry("linear").mergeTensor(params({{"normalize", normalize}}, perModel(w, {})), f.inputs())), ref) <=
            tolerance<T>());
      PerModel withBase = perModel(w, {});
      withBase.push_back({{"weight", 0.75}});
      MD refB = ref;
      if (normalize) refB = (w[0] * th[0] + w[1] * th[1] + w[2] * th[2] + 0.75 * b) / (w[0] + w[1] + w[2] + 0.75);
      else refB = ref + 0.75 * b;
      CHECK(relDiff(Mat<T>(entry("linear").mergeTensor(params({{"normalize", normalize}}, withBase), f.inputs())), refB) <=
            tolerance<T>());
    }
    // sce: select by variance, weights by mean square, erase by sign, divide by the agreeing weights.
    for (const double topk : {1.0, 0.5, 0.0}) {
      INFO("select_topk " << topk);
      const Index n = b.size();
      std::vector<MD> t = tau;
      if (topk < 1) {
        std::vector<double> var(static_cast<std::size_t>(n));
        Index nonzero = 0;
        for (Index q = 0; q < n; ++q) {
          double m = 0, v = 0;
          for (const auto& x : t) m += at(x, q) / 3.0;
          for (const auto& x : t) v += (at(x, q) - m) * (at(x, q) - m) / 3.0;
          var[std::size_t(q)] = v;
          nonzero += v != 0;
        }
        const Index kk = Index(double(nonzero) * topk);
        std::vector<Index> idx(static_cast<std::size_t>(n));
        std::iota(idx.begin(), idx.end(), Index(0));
        std::sort(idx.begin(), idx.end(), [&](Index a, Index c) { return var[std::size_t(a)] > var[std::size_t(c)]; });
        std::vector<char> keep(std::size_t(n), 0);
        for (Index r = 0; r < kk; ++r) keep[std::size_t(idx[std::size_t(r)])] = 1;
        for (auto& x : t) x = masked(x, keep);
      }
      std::vector<double> sw(3);
      double sum = 0;
      for (int i = 0; i < 3; ++i) sum += (sw[std::size_t(i)] = t[std::size_t(i)].squaredNorm() / double(n));
      for (auto& x : sw) x = std::abs(sum) < 1e-6 ? 1.0 / 3 : x / sum;
      MD ref = b;
      for (Index q = 0; q < n; ++q) {
        const double s = at(t[0], q) + at(t[1], q) + at(t[2], q);
        const double major = s >= 0 ? 1 : -1;
        double num = 0, den = 0;
        for (int i = 0; i < 3; ++i) {
          const double v = at(t[std::size_t(i)], q);
          if ((v > 0 ? 1 : (v < 0 ? -1 : 0)) == major) {
            num += sw[std::size_t(i)] * v;
            den += sw[std::size_t(i)];
          }
        }
        at(ref, q) += num / std::max(den, 1e-6);
      }
      CHECK(relDiff(Mat<T>(entry("sce").mergeTensor(params({{"select_topk", topk}}, PerModel(3)), f.inputs())), ref) <=
            tolerance<T>());
    }
    // model_stock: t from the mean pairwise cosine, per tensor or per row (a one-column matrix is one row).
    for (int filterWise = 0; filterWise < 2; ++filterWise) {
      const bool perRow = filterWise && sh.cols > 1;
      MD ref(b.rows(), b.cols());
      const MD avg = (th[0] + th[1] + th[2]) / 3.0;
      for (Index r = 0; r < (perRow ? b.rows() : 1); ++r) {
        auto seg = [&](const MD& x) -> MD { return perRow ? MD(x.row(r)) : x; };
        double c = 0;
        for (int i = 0; i < 3; ++i)
          for (int j = i + 1; j < 3; ++j) {
            const MD a = seg(tau[std::size_t(i)]), bb = seg(tau[std::size_t(j)]);
            c += std::clamp(a.cwiseProduct(bb).sum() / std::max(a.norm() * bb.norm(), 1e-6), -1.0, 1.0) / 3.0;
          }
        const double t = 3 * c / (1 + 2 * c);
        if (perRow) ref.row(r) = t * avg.row(r) + (1 - t) * b.row(r);
        else ref = t * avg + (1 - t) * b;
      }
      CHECK(relDiff(Mat<T>(entry("model_stock").mergeTensor(params({{"filter_wise", filterWise}}, PerModel(3)), f.inputs())),
                    ref) <= tolerance<T>());
    }
  }
}

TEMPLATE_TEST_CASE("family: per-tensor form equals the whole-model run; fetches per model = passes", "[merging][mergekit]",
                   float, double) {
  using T = TestType;
  const std::vector<std::string> names{"a.weight", "b.weight", "c.bias"};
  const Shape shapes[] = {{6, 5}, {3, 8}, {9, 1}};
  std::vector<Family<T>> fams;
  for (std::size_t k = 0; k < names.size(); ++k) fams.emplace_back(names[k], shapes[k].rows, shapes[k].cols, 3, 900 + 31 * k);
  for (const auto& m : wproj::detail::taskArithmeticFamilyMethods()) {
    INFO("method " << m.name);
    CHECK(m.hasTensorForm());
    CHECK(m.runFloat == nullptr);
    wproj::MergeParams given;
    if (m.param("weight")) given["weight"] = wproj::ParamValue::perModel({0.8, 0.6, 1.1});
    if (m.param("density")) given["density"] = wproj::ParamValue::perModel({0.6, 0.5, 0.8});  // della: density + 0.15 < 1
    const wproj::ResolvedParams r = m.resolve(given, 3);
    const wproj::TensorMergeParams tp = wproj::MergeMethod::tensorParams(r, 3);
    std::map<std::string, Mat<T>> whole;
    wproj::MergeJob<T> j;
    j.names = names;
    j.numModels = 3;
    j.rules = wproj::MergeRules().add("bias", wproj::TensorAction::Project);
    j.base = [&](const std::string& n) { return fams[std::size_t(std::find(names.begin(), names.end(), n) - names.begin())].base; };
    j.model = [&](Index i, const std::string& n) {
      return fams[std::size_t(std::find(names.begin(), names.end(), n) - names.begin())].models[std::size_t(i)];
    };
    j.sink = [&](const std::string& n, const Mat<T>& t) { whole[n] = t; };
    m.run(given, j);
    for (const auto& fam : fams) {
      INFO("tensor " << fam.name);
      std::vector<int> fetches(3, 0);
      int baseFetches = 0;
      const Mat<T> t = m.mergeTensor(tp, fam.inputs(0, &fetches, &baseFetches));
      REQUIRE(whole.count(fam.name) == 1);
      CHECK(t == whole.at(fam.name));
      CHECK(t.allFinite());
      for (int c : fetches) CHECK(c == m.passes);
      CHECK(baseFetches <= 1);
    }
  }
}

TEMPLATE_TEST_CASE("family: zero task vectors give the base; weights summing to zero give no NaN", "[merging][mergekit]", float,
                   double) {
  using T = TestType;
  Family<T> f("z", 6, 4, 2, 61);
  for (auto& m : f.models) m = f.base;
  const PerModel pm = perModel({1.0, 0.5}, {0.5, 0.5});
  for (const auto& m : wproj::detail::taskArithmeticFamilyMethods()) {
    INFO("method " << m.name);
    const Mat<T> t = m.mergeTensor(params({{"normalize", 1}, {"rescale", 1}}, pm), f.inputs(3));
    if (m.name == "linear") CHECK(relDiff(t, f.base64()) <= tolerance<T>());
    else CHECK(t == f.base);
  }
  // An all-zero tensor stays zero.
  Family<T> z("zeros", 5, 1, 2, 1);
  z.base.setZero();
  for (auto& m : z.models) m.setZero();
  for (const char* name : {"ties", "dare_ties", "della", "breadcrumbs_ties", "sce", "model_stock"}) {
    INFO(name);
    CHECK(entry(name).mergeTensor(params({}, perModel({1.0, 1.0}, {0.6, 0.6})), z.inputs()).isZero(0));
  }
  // Opposite task vectors sum to exactly 0: mergekit's elected sign is then + (sum >= 0), so the
  // positive entry of each pair wins: |tau|.
  {
    Family<T> opp("opp", 4, 3, 2, 91);
    opp.base.setZero();
    opp.models[0] = gaussian<T>(4, 3, 92);
    opp.models[1] = -opp.models[0];
    const Mat<T> expect = opp.models[0].cwiseAbs();
    for (const char* name : {"ties", "dare_ties", "della", "breadcrumbs_ties", "sce"}) {
      INFO(name);
      CHECK(entry(name).mergeTensor(params({}, perModel({1.0, 1.0}, {1.0, 1.0})), opp.inputs()) == expect);
    }
  }
  // Weights 1 and −1 with normalize: mergekit's divisor guard (|Σw| < 1e-8 → 1) gives the plain sum.
  const Family<T> g("g", 5, 3, 2, 71);
  const Mat<T> norm = entry("task_arithmetic").mergeTensor(params({{"normalize", 1}}, perModel({1.0, -1.0}, {})), g.inputs());
  const Mat<T> plain = entry("task_arithmetic").mergeTensor(params({{"normalize", 0}}, perModel({1.0, -1.0}, {})), g.inputs());
  CHECK(norm.allFinite());
  CHECK(norm == plain);
  for (const char* name : {"ties", "dare_ties", "della", "breadcrumbs_ties", "dare_linear", "della_linear"}) {
    INFO(name);
    CHECK(entry(name).mergeTensor(params({{"normalize", 1}}, perModel({1.0, -1.0}, {0.6, 0.6})), g.inputs()).allFinite());
  }
}

TEMPLATE_TEST_CASE("family: bad parameters are InvalidArgument naming the parameter", "[merging][mergekit]", float, double) {
  using T = TestType;
  const Family<T> f("x", 3, 3, 2, 81);
  auto fails = [&](const char* method, const Globals& g, const PerModel& pm, const char* param) {
    INFO(method << " / " << param);
    CHECK_THROWS_AS(entry(method).mergeTensor(params(g, pm), f.inputs()), wproj::InvalidArgument);
    CHECK_THROWS_WITH(entry(method).mergeTensor(params(g, pm), f.inputs()), Contains(std::string("'") + param + "'"));
  };
  fails("ties", {}, perModel({1, 1}, {0.0, 0.5}), "density");
  fails("dare_ties", {}, perModel({1, 1}, {0.5, 1.5}), "density");
  fails("ties", {}, perModel({1, 1}, {0.05, 0.5}), "density");  // int(0.05 * 9) = 0 entries kept
  fails("breadcrumbs", {}, perModel({1, 1}, {0.5, 0.5}, {-0.1, 0.01}, "gamma"), "gamma");
  fails("della", {}, perModel({1, 1}, {0.6, 0.6}, {0.5, 0.1}, "epsilon"), "epsilon");
  fails("della_linear", {}, perModel({1, 1}, {0.6, 0.6}, {-0.1, 0.1}, "epsilon"), "epsilon");
  fails("task_arithmetic", {{"lambda", std::numeric_limits<double>::infinity()}}, perModel({1, 1}, {}), "lambda");
  fails("task_arithmetic", {}, PerModel(2), "weight");
  fails("ties", {}, perModel({1, std::numeric_limits<double>::quiet_NaN()}, {}), "weight");
  fails("linear", {{"normalize", 1}}, perModel({1, -1}, {}), "weight");
  fails("sce", {{"select_topk", 1.5}}, PerModel(2), "select_topk");
  {
    Family<T> one("x", 3, 3, 1, 82);
    CHECK_THROWS_AS(entry("model_stock").mergeTensor(params({}, PerModel(1)), one.inputs()), wproj::InvalidArgument);
  }
  {
    wproj::TensorMergeInputs<T> noBase = f.inputs();
    noBase.hasBase = false;
    noBase.base = nullptr;
    CHECK_THROWS_WITH(entry("ties").mergeTensor(params({}, perModel({1, 1}, {})), noBase), Contains("base model"));
  }
  // A model whose tensor has another shape: an error naming the tensor and the model (mergekit skips it with a warning).
  {
    Family<T> odd("odd.weight", 3, 3, 2, 83);
    odd.models[1] = gaussian<T>(3, 4, 84);
    for (const char* name : {"ties", "dare_linear", "linear", "sce", "model_stock"}) {
      INFO(name);
      CHECK_THROWS_AS(entry(name).mergeTensor(params({}, perModel({1, 1}, {})), odd.inputs()), wproj::InvalidArgument);
      CHECK_THROWS_WITH(entry(name).mergeTensor(params({}, perModel({1, 1}, {})), odd.inputs()),
                        Contains("'odd.weight'") && Contains("model 1"));
    }
  }
  // The registry entries validate the same ranges and require the weight.
  CHECK_THROWS_WITH(entry("ties").resolve({}, 2), Contains("'weight'"));
  CHECK_THROWS_WITH(entry("ties").resolve({{"weight", wproj::ParamValue::number(1)}, {"density", wproj::ParamValue::number(0)}}, 2),
                    Contains("'density'"));
  CHECK_THROWS_WITH(entry("breadcrumbs").resolve({{"weight", wproj::ParamValue::number(1)}, {"gamma", wproj::ParamValue::number(-0.5)}}, 2),
                    Contains("'gamma'"));
  CHECK_NOTHROW(entry("sce").resolve({}, 2));
  CHECK_NOTHROW(entry("model_stock").resolve({{"filter_wise", wproj::ParamValue::flag(true)}}, 2));
}

TEST_CASE("family: registry entries carry mergekit's names, defaults and flags", "[merging][mergekit]") {
  const auto methods = wproj::detail::taskArithmeticFamilyMethods();
  std::vector<std::string> got;
  for (const auto& m : methods) got.push_back(m.name);
  CHECK(got == std::vector<std::string>{"task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties",
                                        "della", "della_linear", "linear", "sce", "ram", "ramplus_tl", "model_stock"});
  auto def = [&](const std::string& method, const std::string& p) {
    const wproj::ParamSpec* s = entry(method).param(p);
    REQUIRE(s != nullptr);
    return s->defaultValue;
  };
  CHECK(def("ties", "normalize") == 1);
  CHECK(def("ties", "rescale") == 0);
  CHECK(def("dare_ties", "normalize") == 0);
  CHECK(def("dare_ties", "rescale") == 1);
  CHECK(def("della", "normalize") == 1);
  CHECK(def("della_linear", "normalize") == 0);
  CHECK(def("della", "epsilon") == 0.15);
  CHECK(def("breadcrumbs", "gamma") == 0.01);
  CHECK(def("task_arithmetic", "density") == 1.0);
  CHECK(def("linear", "normalize") == 1);
  CHECK(def("sce", "select_topk") == 1.0);
  CHECK(entry("ties").param("weight")->required);
  CHECK(entry("ties").passes == 2);
  CHECK(entry("dare_linear").passes == 1);
  CHECK(entry("dare_ties").randomized);
  CHECK(!entry("ties").randomized);
  CHECK(!entry("linear").needsBase);
  CHECK(entry("model_stock").minModels == 2);
  CHECK(entry("sce").param("weight") == nullptr);
  for (const auto& m : methods) {
    INFO(m.name);
    CHECK(!m.title.empty());
    CHECK(!m.reference.empty());
    CHECK(m.workingSet != nullptr);
    CHECK(m.workingSet(64, 32, 3, 4) > 0);
  }
}

TEMPLATE_TEST_CASE("sparsification: equal magnitudes keep exactly the stated counts; row-major inputs", "[merging][mergekit]",
                   float, double) {
  using T = TestType;
  using SM = wproj::SparsificationMethod;
  // 6x5 entries whose magnitudes take three values only (ties at every threshold), mixed signs.
  Mat<T> tau(6, 5);
  for (Index i = 0; i < 6; ++i)
    for (Index j = 0; j < 5; ++j) {
      const Index q = i * 5 + j;
      tau(i, j) = T((q % 3 == 0 ? 0.5 : (q % 3 == 1 ? 1.0 : 2.0)) * (q % 2 ? -1.0 : 1.0));
    }
  std::vector<double> sortedMag;
  for (Index q = 0; q < 30; ++q) sortedMag.push_back(std::abs(double(tau(q / 5, q % 5))));
  std::sort(sortedMag.begin(), sortedMag.end());
  auto keptMagnitudes = [&](const Mat<T>& d) {
    std::vector<double> kept;
    for (Index i = 0; i < 6; ++i)
      for (Index j = 0; j < 5; ++j)
        if (d(i, j) != T(0)) {
          CHECK(d(i, j) == tau(i, j));  // kept values are unchanged without rescale
          kept.push_back(std::abs(double(d(i, j))));
        }
    std::sort(kept.begin(), kept.end());
    return kept;
  };
  for (const double density : {0.1, 0.3, 0.5, 0.7}) {
    INFO("magnitude, density " << density);
    wproj::TaskVectorSparsifier s;
    s.setMethod(SM::Magnitude).setDensity(density);
    const Index k = Index(density * 30.0);
    const std::vector<double> kept = keptMagnitudes(s.apply(tau, "ties", 0));
    CHECK(kept == std::vector<double>(sortedMag.end() - k, sortedMag.end()));
  }
  const double bands[][2] = {{0.5, 0.1}, {0.3, 0.2}, {0.9, 0.3}, {0.4, 0.5}};
  for (const auto& b : bands) {
    INFO("magnitude_outliers, density " << b[0] << " gamma " << b[1]);
    wproj::TaskVectorSparsifier s;
    s.setMethod(SM::MagnitudeOutliers).setDensity(b[0]).setGamma(b[1]);
    Index top = Index(b[1] * 30.0), bot = 30 - Index(b[0] * 30.0) - top;
    if (bot < 0) {
      top += bot;
      bot = 0;
    }
    const std::vector<double> kept = keptMagnitudes(s.apply(tau, "crumbs", 0));
    CHECK(kept == std::vector<double>(sortedMag.begin() + bot, sortedMag.end() - top));
    CHECK(Index(kept.size()) == Index(b[0] * 30.0));  // the density is always met
  }
  // A row-major matrix (as a safetensors buffer maps) gives the same masks, rescale and ranks.
  const Mat<T> g = gaussian<T>(9, 7, 123);
  const RowMajorMat<T> rm = g;
  for (const SM method : {SM::Magnitude, SM::Random, SM::MagnitudeOutliers, SM::DellaMagprune}) {
    INFO(wproj::toString(method));
    wproj::TaskVectorSparsifier s;
    s.setMethod(method).setDensity(0.45).setGamma(0.1).setEpsilon(0.2).setRescale(true).setSeed(3);
    RowMajorMat<T> r = rm;
    s.applyInPlace(r, "w", 2);
    CHECK(Mat<T>(r) == s.apply(g, "w", 2));
  }
}

TEMPLATE_TEST_CASE("rank selection without a copy equals a stable sort by (|x|, row-major position)", "[merging][mergekit]",
                   float, double) {
  using T = TestType;
  // Magnitudes with many exact ties (values on a coarse grid, as bf16 task vectors have), both
  // zeros, tiny and huge values: every radix digit matters.
  const Index rows = 37, cols = 29, n = rows * cols;
  wproj::CounterRng rng(77, 5);
  Mat<T> x(rows, cols);
  for (Index k = 0; k < n; ++k) {
    const double u = rng.uniform(std::uint64_t(k));
    double v = std::round(u * 40.0) / 8.0;                // 41 distinct magnitudes
    if (k % 11 == 0) v = std::ldexp(u, -100 + int(k % 7));  // tiny (subnormal for float)
    if (k % 13 == 0) v = std::ldexp(1.0 + u, 60);           // huge
    if (k % 17 == 0) v = 0.0;
    x.data()[k] = T((k % 2 ? -1.0 : 1.0) * v);
  }
  x(3, 4) = T(-0.0);
  // The oracle: row-major positions sorted by (|x|, position).
  std::vector<Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Index(0));
  auto at = [&](Index q) { return std::abs(x(q / cols, q % cols)); };
  std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) { return at(a) < at(b); });
  for (const Index r : {Index(0), Index(1), n / 3, n / 2, n - 2, n - 1}) {
    INFO("rank " << r);
    decltype(wproj::detail::magnitudeKey(T())) key = 0;
    Index tiesBefore = -1;
    wproj::detail::magnitudeAtRank(x.data(), n, r, key, tiesBefore);
    const T expected = at(order[std::size_t(r)]);
    CHECK(key == wproj::detail::magnitudeKey(expected));
    Index equalBelow = 0;
    for (Index q = 0; q < r; ++q) equalBelow += at(order[std::size_t(q)]) == expected ? 1 : 0;
    CHECK(tiesBefore == equalBelow);
  }
  const Index ranges[][2] = {{0, n}, {0, 1}, {n - 1, n}, {n / 4, n / 2}, {5, n - 5}, {n / 2, n / 2}, {n / 3, n}};
  for (const auto& lh : ranges) {
    INFO("ranks [" << lh[0] << ", " << lh[1] << ")");
    std::vector<unsigned char> keep(static_cast<std::size_t>(n), 0);
    wproj::detail::markRankRange(x.data(), rows, cols, lh[0], lh[1], keep);
    Mat<T> zeroed = x;
    wproj::detail::zeroOutsideRankRange(zeroed.data(), rows, cols, lh[0], lh[1]);
    std::vector<unsigned char> expected(static_cast<std::size_t>(n), 0);
    for (Index q = lh[0]; q < lh[1]; ++q) {
      const Index p = order[std::size_t(q)];
      expected[std::size_t((p % cols) * rows + p / cols)] = 1;  // row-major position -> storage
    }
    CHECK(keep == expected);
    Index mismatches = 0;
    for (Index k = 0; k < n; ++k) mismatches += zeroed.data()[k] != (expected[std::size_t(k)] ? x.data()[k] : T(0)) ? 1 : 0;
    CHECK(mismatches == 0);
  }
}

TEMPLATE_TEST_CASE("ram and ramplus_tl equal mergekit's math on sparse task vectors", "[merging][mergekit]", float, double) {
  using T = TestType;
  // Task vectors that change ~45% of the entries each (others changed below epsilon or not at
  // all), so that entries are changed by none, one or several models.
  const Index rows = 17, cols = 13, count = 3;
  Family<T> f("ram.w", rows, cols, count, 900);
  wproj::CounterRng rng(9, 1);
  for (Index i = 0; i < count; ++i)
    for (Index k = 0; k < rows * cols; ++k) {
      const double u = rng.uniform(std::uint64_t(i * 1000 + k));
      T& x = f.models[std::size_t(i)].data()[k];
      if (u > 0.45) x = f.base.data()[k] + (u > 0.8 ? T(2e-6) : T(0));
    }
  for (const bool plus : {false, true})
    for (const double eps : {1e-5, 0.3}) {
      INFO((plus ? "ramplus_tl" : "ram") << ", epsilon " << eps);
      // The reference, in double, as mergekit's torch code: counts, masks, per-model λ, sum over models.
      std::vector<MD> tau;
      for (Index i = 0; i < count; ++i) tau.push_back(f.tau64(i));
      MD c = MD::Zero(rows, cols);
      for (const auto& t : tau) c += (t.array().abs() > eps).template cast<double>().matrix();
      const double r = 0.25, alpha = 0.5;
      MD merged = MD::Zero(rows, cols);
      bool sawUnique = false, sawShared = false;
      for (Index i = 0; i < count; ++i) {
        double shared = 0, unique = 0;
        for (Index k = 0; k < rows * cols; ++k)
          if (std::abs(tau[std::size_t(i)].data()[k]) > eps) (c.data()[k] > 1 ? shared : unique) += 1;
        const double lambda = plus ? 1 + r * std::clamp(shared / std::max(unique, eps), 0.0, alpha) : 1.0;
        for (Index k = 0; k < rows * cols; ++k) {
          const double v = tau[std::size_t(i)].data()[k];
          if (!(std::abs(v) > eps)) continue;
          merged.data()[k] += c.data()[k] == 1 ? v * lambda : v / c.data()[k];
          sawUnique |= c.data()[k] == 1;
          sawShared |= c.data()[k] > 1;
        }
      }
      CHECK(sawUnique);
      CHECK(sawShared);
      const MD ref = f.base64() + merged;
      Globals g{{"epsilon", eps}};
      if (plus) {
        g["r"] = r;
        g["alpha"] = alpha;
      }
      std::vector<int> fetches(std::size_t(count), 0);
      const Mat<T> got = entry(plus ? "ramplus_tl" : "ram").mergeTensor(params(g, PerModel(std::size_t(count))),
                                                                                     f.inputs(0, &fetches));
      CHECK(relDiff(got, ref) <= tolerance<T>());
      CHECK(fetches == std::vector<int>(std::size_t(count), 2));  // two passes
    }
  // No contributing model anywhere: the base.
  const Family<T> same("ram.same", 4, 5, 2, 3);
  wproj::TensorMergeInputs<T> in = same.inputs();
  in.model = [&same](Index) { return same.base; };
  CHECK(entry("ram").mergeTensor(params({}, PerModel(2)), in) == same.base);
  CHECK_THROWS_WITH(entry("ram").mergeTensor(params({{"epsilon", -1.0}}, PerModel(2)), same.inputs()),
                    Contains("epsilon"));
}
