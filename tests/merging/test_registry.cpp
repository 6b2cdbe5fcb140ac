// Tests of the registry of merge methods: every entry runs with its defaults and gives what the
// default merger gives; with parameters it gives what the hand-built merger gives, bit for bit;
// validation errors name the method and the parameter; the stated passes match the fetches; the
// documentation lists every entry and every parameter.
#include "test_common.hpp"

#include <wproj/merging/registry.hpp>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace wproj_test;
using Catch::Matchers::Contains;

namespace {

/// A small model: a base and `count` fine-tuned models of three tensors (2-D weights and a bias).
template <typename T>
struct Models {
  std::vector<std::string> names{"a.weight", "b.weight", "a.bias"};
  std::map<std::string, Mat<T>> base;
  std::vector<std::map<std::string, Mat<T>>> tuned;
  Models(Index count, std::uint64_t seed) {
    const Index rows[] = {7, 5, 1}, cols[] = {6, 9, 8};
    for (std::size_t k = 0; k < names.size(); ++k) {
      base[names[k]] = gaussian<T>(rows[k], cols[k], seed + 100 * k);
      for (Index i = 0; i < count; ++i) {
        if (tuned.size() <= std::size_t(i)) tuned.emplace_back();
        tuned[std::size_t(i)][names[k]] = base[names[k]] + T(0.3) * gaussian<T>(rows[k], cols[k], seed + 100 * k + 7 * (i + 1));
      }
    }
  }
  Index count() const { return Index(tuned.size()); }
  /// A job whose sink stores the merged tensors in `out`; `fetches` counts the model fetches.
  wproj::MergeJob<T> job(std::map<std::string, Mat<T>>& out, Index* fetches = nullptr) const {
    wproj::MergeJob<T> j;
    j.names = names;
    j.numModels = count();
    j.base = [this](const std::string& n) { return base.at(n); };
    j.model = [this, fetches](Index i, const std::string& n) {
      if (fetches) ++*fetches;
      return tuned[std::size_t(i)].at(n);
    };
    j.sink = [&out](const std::string& n, const Mat<T>& t) { out[n] = t; };
    return j;
  }
};

/// The merged tensors of ModelMerger(merger) over `models`.
template <typename Merger, typename T>
std::map<std::string, Mat<T>> byHand(const Merger& merger, const Models<T>& models) {
  std::map<std::string, Mat<T>> out;
  const auto j = models.job(out);
  wproj::ModelMerger<Merger>(merger).merge(j.names, j.numModels, j.base, j.model, j.sink);
  return out;
}

/// The merged tensors of the registry entry `name` with `params` over `models`.
template <typename T>
std::map<std::string, Mat<T>> byRegistry(const std::string& name, const wproj::MergeParams& params, const Models<T>& models) {
  std::map<std::string, Mat<T>> out;
  const wproj::MergeReport rep = wproj::mergeMethod(name).run(params, models.job(out));
  CHECK(rep.tensors.size() == models.names.size());
  return out;
}

template <typename T>
void checkSame(const std::map<std::string, Mat<T>>& a, const std::map<std::string, Mat<T>>& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& kv : a) {
    INFO(kv.first);
    REQUIRE(b.count(kv.first) == 1);
    CHECK(kv.second.allFinite());
    CHECK(kv.second == b.at(kv.first));
  }
}

wproj::ParamValue num(double x) { return wproj::ParamValue::number(x); }

std::string readDoc(const std::string& rel) {
  std::string here = __FILE__;
  const std::string root = here.substr(0, here.rfind("/tests/"));
  std::ifstream f(root + "/" + rel);
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEMPLATE_TEST_CASE("every registry entry runs with its defaults and equals the default merger", "[merging][registry]", float,
                   double) {
  using T = TestType;
  const Models<T> three(3, 11), two(2, 12);
  checkSame(byRegistry<T>("task_arithmetic", {}, three), byHand(wproj::TaskArithmeticMerging<T>(), three));
  checkSame(byRegistry<T>("ties", {}, three), byHand(wproj::TiesMerging<T>(), three));
  checkSame(byRegistry<T>("dare", {}, three), byHand(wproj::DareMerging<T>(), three));
  checkSame(byRegistry<T>("slerp", {}, two), byHand(wproj::SlerpMerging<T>(), two));
  checkSame(byRegistry<T>("model_stock", {}, three), byHand(wproj::ModelStockMerging<T>(), three));
  checkSame(byRegistry<T>("iso_c", {}, three), byHand(wproj::IsoCMerging<T>(), three));
  checkSame(byRegistry<T>("iso_cts", {}, three), byHand(wproj::IsoCtsMerging<T>(), three));
  checkSame(byRegistry<T>("tsv", {}, three), byHand(wproj::TsvMerging<T>(), three));
  // OPCM: the models added one at a time to a OpcmMerging, then θ₀ + λS written.
  std::map<std::string, Mat<T>> opcm;
  {
    wproj::OpcmMerging<T> cm;
    for (Index i = 0; i < three.count(); ++i)
      cm.addModel(three.names, [&](const std::string& n) { return Mat<T>(three.tuned[std::size_t(i)].at(n) - three.base.at(n)); });
    cm.writeMerged([&](const std::string& n) { return three.base.at(n); },
                   [&](const std::string& n, const Mat<T>& t) { opcm[n] = t; });
  }
  checkSame(byRegistry<T>("opcm", {}, three), opcm);
  // Every entry was covered above.
  CHECK(wproj::mergeMethods().size() == 9);
  for (const auto& m : wproj::mergeMethods()) {
    INFO(m.name);
    CHECK(m.needsBase);
    for (const auto& p : m.params) {
      if (p.kind == wproj::ParamKind::Scalar || p.kind == wproj::ParamKind::PerModel)
        CHECK((!p.valid || p.valid(p.defaultValue)));
    }
  }
}

TEMPLATE_TEST_CASE("registry factories equal the hand-built mergers", "[merging][registry]", float, double) {
  using T = TestType;
  const Models<T> three(3, 21), two(2, 22);
  checkSame(byRegistry<T>("task_arithmetic", {{"lambda", num(0.4)}}, three), byHand(wproj::TaskArithmeticMerging<T>(0.4), three));
  checkSame(byRegistry<T>("ties", {{"density", num(0.5)}, {"lambda", num(0.8)}}, three),
            byHand(wproj::TiesMerging<T>().setDensity(0.5).setScale(0.8), three));
  checkSame(byRegistry<T>("dare", {{"drop", num(0.3)}, {"seed", num(5)}, {"lambda", num(1.2)}}, three),
            byHand(wproj::DareMerging<T>().setDropRate(0.3).setSeed(5).setScale(1.2), three));
  // mergekit's density is the kept fraction: density 0.7 is drop 0.3; rescale: false keeps survivors as they are.
  checkSame(byRegistry<T>("dare_linear", {{"density", num(0.7)}, {"seed", num(5)}}, three),
            byHand(wproj::DareMerging<T>().setDropRate(1.0 - 0.7).setSeed(5), three));
  checkSame(byRegistry<T>("dare", {{"rescale", wproj::ParamValue::flag(false)}, {"seed", num(2)}}, three),
            byHand(wproj::DareMerging<T>().setRescale(false).setSeed(2), three));
  checkSame(byRegistry<T>("slerp", {{"t", num(0.3)}}, two), byHand(wproj::SlerpMerging<T>().setT(0.3), two));
  checkSame(byRegistry<T>("iso_c", {{"alpha", num(1.5)}}, three), byHand(wproj::IsoCMerging<T>().setScale(1.5), three));
  checkSame(byRegistry<T>("iso_cts", {{"alpha", num(0.9)}, {"common_fraction", num(0.5)}}, three),
            byHand(wproj::IsoCtsMerging<T>().setScale(0.9).setCommonFraction(0.5), three));
  checkSame(byRegistry<T>("tsv", {{"alpha", num(0.6)}}, three), byHand(wproj::TsvMerging<T>().setScale(0.6), three));

  // Per-model weights: θ₀ + w_i (θ_i − θ₀) fed to the merger.
  Models<T> weighted = three;
  const std::vector<double> w{0.5, 1.0, 2.0};
  for (std::size_t i = 0; i < w.size(); ++i)
    for (const auto& n : weighted.names)
      weighted.tuned[i][n] = three.base.at(n) + T(w[i]) * (three.tuned[i].at(n) - three.base.at(n));
  const auto got = byRegistry<T>("ties", {{"weight", wproj::ParamValue::perModel(w)}}, three);
  const auto want = byHand(wproj::TiesMerging<T>(), weighted);
  for (const auto& kv : want)
    CHECK(double((got.at(kv.first) - kv.second).norm()) <= 100 * eps<T>() * double(kv.second.norm()));
  // The rescaled survivors differ from the unrescaled ones (rescale is not ignored).
  CHECK_FALSE(byRegistry<T>("dare", {{"rescale", wproj::ParamValue::flag(false)}}, three).at("a.weight") ==
              byRegistry<T>("dare", {}, three).at("a.weight"));
}

TEST_CASE("registry: passes and kind match what the methods do", "[merging][registry]") {
  using T = double;
  for (const auto& m : wproj::mergeMethods()) {
    if (m.continual) continue;
    INFO(m.name);
    const Models<T> models(m.maxModels == 2 ? 2 : 3, 31);
    std::map<std::string, Mat<T>> out;
    Index fetches = 0;
    wproj::MergeJob<T> job = models.job(out, &fetches);
    job.names = {"a.weight"};  // a 2-D weight: projected by every method
    m.run<T>({}, job);
    CHECK(fetches == m.passes * models.count());
    // A 1-row tensor: merged by the elementwise methods, averaged by the spectral ones (one pass).
    fetches = 0;
    job.names = {"a.bias"};
    const wproj::MergeReport rep = m.run<T>({}, job);
    CHECK((rep.tensors.at(0).action == wproj::TensorAction::Project) == m.elementwise);
    CHECK(m.workingSet(7, 6, 3, sizeof(T)) > 0);
  }
  CHECK(wproj::mergeMethod("ties").passes == 2);
  CHECK(wproj::mergeMethod("iso_cts").passes == 2);
  CHECK(wproj::mergeMethod("dare").passes == 1);
  CHECK_FALSE(wproj::mergeMethod("tsv").elementwise);
  CHECK(wproj::mergeMethod("tsv_m").name == "tsv");
}

TEST_CASE("registry: parameter errors name the method and the parameter", "[merging][registry]") {
  const Models<float> three(3, 41), two(2, 42);
  std::map<std::string, Mat<float>> out;
  const auto job = three.job(out);
  const auto& ties = wproj::mergeMethod("ties");
  CHECK_THROWS_WITH(ties.run<float>({{"densty", num(0.2)}}, job),
                    Contains("merge method 'ties'") && Contains("unknown parameter 'densty'") && Contains("density, lambda"));
  CHECK_THROWS_WITH(ties.run<float>({{"density", num(1.5)}}, job),
                    Contains("merge method 'ties'") && Contains("'density' = 1.5") && Contains("(0, 1]"));
  CHECK_THROWS_WITH(ties.run<float>({{"density", wproj::ParamValue::flag(true)}}, job),
                    Contains("'density'") && Contains("a number"));
  CHECK_THROWS_WITH(ties.run<float>({{"weight", wproj::ParamValue::perModel({1, 2})}}, job),
                    Contains("merge method 'ties'") && Contains("'weight'") && Contains("3 (one per model)"));
  CHECK_THROWS_WITH(ties.run<float>({{"lambda", num(std::nan(""))}}, job), Contains("'lambda'"));
  const auto& dare = wproj::mergeMethod("dare");
  CHECK_THROWS_WITH(dare.run<float>({{"seed", num(1.5)}}, job), Contains("merge method 'dare'") && Contains("'seed'"));
  CHECK_THROWS_WITH(dare.run<float>({{"rescale", num(1)}}, job), Contains("'rescale'") && Contains("true or false"));
  CHECK_THROWS_WITH(dare.run<float>({{"drop", num(0.3)}, {"density", num(0.7)}}, job),
                    Contains("merge method 'dare'") && Contains("'density' and 'drop'"));
  CHECK_THROWS_AS(dare.resolve({{"drop", num(0.3)}, {"density", num(0.7)}}, 3), wproj::InvalidArgument);
  CHECK_THROWS_WITH(wproj::mergeMethod("slerp").run<float>({}, job),
                    Contains("merge method 'slerp'") && Contains("number of models") && Contains("exactly 2"));
  CHECK_THROWS_WITH(wproj::mergeMethod("model_stock").run<float>({}, Models<float>(1, 3).job(out)),
                    Contains("merge method 'model_stock'") && Contains("at least 2"));
  CHECK_THROWS_WITH(wproj::mergeMethod("model_stock").run<float>({{"lambda", num(1)}}, job),
                    Contains("merge method 'model_stock'") && Contains("'lambda'") && Contains("weight"));
  CHECK_THROWS_AS(wproj::mergeMethod("opcm").run<float>({{"alpha", num(2)}}, job), wproj::InvalidArgument);
  CHECK_THROWS_WITH(wproj::mergeMethod("nope"), Contains("'nope'") && Contains("ties") && Contains("opcm"));
  CHECK(wproj::findMergeMethod("nope") == nullptr);
  // A valid run leaves the output complete.
  CHECK_NOTHROW(ties.run<float>({{"density", num(1.0)}}, job));
  CHECK(out.size() == 3);
}

TEST_CASE("docs/merging.md lists every registry method with its parameters", "[merging][registry]") {
  const std::string doc = readDoc("docs/merging.md");
  std::set<std::string> inDoc;  // the names in the first column of the method table
  std::istringstream in(doc);
  std::string line;
  std::map<std::string, std::string> rows;
  while (std::getline(in, line)) {
    if (line.rfind("| `", 0) != 0) continue;
    const auto end = line.find('`', 3);
    const std::string name = line.substr(3, end - 3);
    if (wproj::findMergeMethod(name) || line.find("| elementwise") != std::string::npos ||
        line.find("| spectral") != std::string::npos || line.find("| continual") != std::string::npos) {
      inDoc.insert(name);
      rows[name] = line;
    }
  }
  std::set<std::string> inRegistry;
  for (const auto& m : wproj::mergeMethods()) {
    INFO(m.name);
    inRegistry.insert(m.name);
    REQUIRE(rows.count(m.name) == 1);
    for (const auto& p : m.params) {
      INFO(p.name);
      CHECK(rows[m.name].find("`" + p.name + "`") != std::string::npos);
    }
    CHECK(rows[m.name].find(m.elementwise ? "elementwise" : (m.continual ? "continual" : "spectral")) != std::string::npos);
  }
  CHECK(inDoc == inRegistry);
}

TEMPLATE_TEST_CASE("registry: the per-tensor form equals the whole-model run tensor by tensor", "[merging][registry]", float,
                   double) {
  using T = TestType;
  const Models<T> models(3, 41);
  for (const auto& m : wproj::mergeMethods()) {
    // Random masks are drawn per tensor by position in the whole-model run, per name in the per-tensor form.
    if (!m.hasTensorForm() || m.continual || m.randomized) continue;
    INFO("method " << m.name);
    const Index count = std::min<Index>(std::max<Index>(models.count(), m.minModels), m.maxModels);
    const Models<T> mm(count, 41);
    wproj::MergeParams given;
    if (m.param("weight")) given["weight"] = wproj::ParamValue::perModel(std::vector<double>(std::size_t(count), 0.75));
    const wproj::ResolvedParams r = m.resolve(given, count);
    std::map<std::string, Mat<T>> whole;
    wproj::MergeJob<T> j = mm.job(whole);
    j.rules = wproj::MergeRules().add("bias", wproj::TensorAction::Project);
    m.run(given, j);
    const wproj::TensorMergeParams tp = wproj::MergeMethod::tensorParams(r, count);
    for (const auto& name : mm.names) {
      wproj::TensorMergeInputs<T> in;
      in.name = name;
      in.numModels = count;
      in.hasBase = true;
      in.base = [&mm, name]() { return mm.base.at(name); };
      in.model = [&mm, name](Index i) { return mm.tuned[std::size_t(i)].at(name); };
      const Mat<T> t = m.mergeTensor(tp, in);
      const Mat<T>& ref = whole.at(name);
      REQUIRE(t.rows() == ref.rows());
      REQUIRE(t.cols() == ref.cols());
      // The whole-model run weights θ_i before subtracting θ₀, the per-tensor form after: rounding apart.
      CHECK(double((t - ref).norm()) <= 1e2 * double(Eigen::NumTraits<T>::epsilon()) * double(ref.norm()));
    }
  }
}
