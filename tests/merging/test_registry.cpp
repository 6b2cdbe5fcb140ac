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

/// The given values a method cannot run without: 1 for every required per-model parameter
/// (mergekit's `weight`), 0.5 for a required global one (slerp's and nearswap's `t`).
wproj::MergeParams requiredValues(const wproj::MergeMethod& m, Index count) {
  wproj::MergeParams p;
  for (const auto& spec : m.params)
    if (spec.required)
      p[spec.name] = spec.kind == wproj::ParamKind::PerModel
                         ? wproj::ParamValue::perModel(std::vector<double>(std::size_t(count), 1.0))
                         : num(0.5);
  return p;
}

/// The number of fine-tuned models to run `m` with: 3 when it accepts that many, else its bound.
Index modelsFor(const wproj::MergeMethod& m) { return std::min<Index>(std::max<Index>(3, m.minModels), m.maxModels); }

TEMPLATE_TEST_CASE("wproj's whole-model entries equal their mergers; mergekit's entries are all present", "[merging][registry]",
                   float, double) {
  using T = TestType;
  const Models<T> three(3, 11), two(2, 12);
  checkSame(byRegistry<T>("task_slerp", {}, two), byHand(wproj::SlerpMerging<T>(), two));
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
  // mergekit's task arithmetic (weights 1) and wproj's TaskArithmeticMerging: two implementations, one result.
  const wproj::MergeParams ones{{"weight", num(1.0)}, {"lambda", num(0.4)}};
  const auto ta = byRegistry<T>("task_arithmetic", ones, three);
  for (const auto& kv : byHand(wproj::TaskArithmeticMerging<T>(0.4), three))
    CHECK(double((ta.at(kv.first) - kv.second).norm()) <= 100 * eps<T>() * double(kv.second.norm()));
  // Every mergekit method by its mergekit name, wproj's own methods, and the 0.1.0 names as aliases.
  const std::set<std::string> names{"task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties",
                                    "della", "della_linear", "linear", "sce", "ram", "ramplus_tl", "model_stock", "slerp", "nuslerp", "multislerp",
                                    "karcher", "nearswap", "arcee_fusion", "passthrough", "task_slerp", "iso_c", "iso_cts",
                                    "tsv", "opcm"};
  std::set<std::string> all;
  for (const auto& m : wproj::mergeMethods()) {
    INFO(m.name);
    CHECK(all.insert(m.name).second);
    for (const auto& a : m.aliases) CHECK(all.insert(a).second);
    CHECK((m.hasTensorForm() || m.continual));
    CHECK((!m.needsBase || m.acceptsBase));
    for (const auto& p : m.params) {
      if (p.required) continue;
      if (p.kind == wproj::ParamKind::Scalar || p.kind == wproj::ParamKind::PerModel)
        CHECK((!p.valid || p.valid(p.defaultValue)));
    }
  }
  for (const auto& n : names) CHECK(all.count(n) == 1);
  CHECK(wproj::mergeMethods().size() == names.size());
  CHECK(wproj::mergeMethod("dare").name == "dare_linear");
  CHECK(wproj::mergeMethod("tsv_m").name == "tsv");
}

TEMPLATE_TEST_CASE("registry factories equal the hand-built mergers", "[merging][registry]", float, double) {
  using T = TestType;
  const Models<T> three(3, 21), two(2, 22);
  checkSame(byRegistry<T>("task_slerp", {{"t", num(0.3)}}, two), byHand(wproj::SlerpMerging<T>().setT(0.3), two));
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
  const auto got = byRegistry<T>("iso_c", {{"weight", wproj::ParamValue::perModel(w)}}, three);
  const auto want = byHand(wproj::IsoCMerging<T>(), weighted);
  for (const auto& kv : want)
    CHECK(double((got.at(kv.first) - kv.second).norm()) <= 1000 * eps<T>() * double(kv.second.norm()));
}

TEST_CASE("registry: passes and kind match what the methods do", "[merging][registry]") {
  using T = double;
  for (const auto& m : wproj::mergeMethods()) {
    if (m.continual) continue;
    INFO(m.name);
    const Index count = modelsFor(m);
    const Models<T> models(count, 31);
    const wproj::MergeParams given = requiredValues(m, count);
    std::map<std::string, Mat<T>> out;
    Index fetches = 0;
    wproj::MergeJob<T> job = models.job(out, &fetches);
    if (!m.acceptsBase) job.base = nullptr;
    job.names = {"a.weight"};  // a 2-D weight: merged by every method
    m.run<T>(given, job);
    // Without a base, the per-tensor run reads the first model once more to learn the shape.
    CHECK(fetches == m.passes * models.count() + (job.base ? 0 : 1));
    // A 1-row tensor: merged by the elementwise methods, averaged by the spectral ones.
    job.names = {"a.bias"};
    const wproj::MergeReport rep = m.run<T>(given, job);
    CHECK((rep.tensors.at(0).action == wproj::TensorAction::Project) == m.elementwise);
    REQUIRE(m.workingSet != nullptr);
    CHECK(m.workingSet(7, 6, 3, sizeof(T)) > 0);
  }
  CHECK(wproj::mergeMethod("ties").passes == 2);
  CHECK(wproj::mergeMethod("dare_ties").passes == 2);
  CHECK(wproj::mergeMethod("iso_cts").passes == 2);
  CHECK(wproj::mergeMethod("dare_linear").passes == 1);
  CHECK_FALSE(wproj::mergeMethod("tsv").elementwise);
  CHECK(wproj::mergeMethod("ties").randomized == false);
  CHECK(wproj::mergeMethod("dare_ties").randomized);
}

TEST_CASE("registry: parameter errors name the method and the parameter", "[merging][registry]") {
  const Models<float> three(3, 41), two(2, 42);
  std::map<std::string, Mat<float>> out;
  const auto job = three.job(out);
  const auto& ties = wproj::mergeMethod("ties");
  const wproj::ParamValue w1 = num(1.0);
  CHECK_THROWS_WITH(ties.run<float>({{"weight", w1}, {"densty", num(0.2)}}, job),
                    Contains("merge method 'ties'") && Contains("unknown parameter 'densty'") && Contains("density"));
  CHECK_THROWS_WITH(ties.run<float>({{"weight", w1}, {"density", num(1.5)}}, job),
                    Contains("merge method 'ties'") && Contains("'density'") && Contains("1.5") && Contains("(0, 1]"));
  CHECK_THROWS_WITH(ties.run<float>({{"weight", w1}, {"density", wproj::ParamValue::flag(true)}}, job),
                    Contains("'density'"));
  CHECK_THROWS_WITH(ties.run<float>({{"weight", wproj::ParamValue::perModel({1, 2})}}, job),
                    Contains("merge method 'ties'") && Contains("'weight'") && Contains("3 (one per model)"));
  CHECK_THROWS_WITH(ties.run<float>({{"weight", w1}, {"lambda", num(std::nan(""))}}, job), Contains("'lambda'"));
  // mergekit requires the weight of the task-arithmetic family.
  CHECK_THROWS_WITH(ties.run<float>({}, job), Contains("merge method 'ties'") && Contains("'weight'"));
  const auto& dare = wproj::mergeMethod("dare_linear");
  CHECK_THROWS_WITH(dare.run<float>({{"weight", w1}, {"rescale", num(1)}}, job), Contains("'rescale'") && Contains("true or false"));
  CHECK_THROWS_WITH(wproj::mergeMethod("slerp").run<float>({{"t", num(0.5)}}, job),
                    Contains("merge method 'slerp'") && Contains("number of models"));
  CHECK_THROWS_WITH(wproj::mergeMethod("model_stock").run<float>({}, Models<float>(1, 3).job(out)),
                    Contains("merge method 'model_stock'") && Contains("at least 2"));
  CHECK_THROWS_WITH(wproj::mergeMethod("model_stock").run<float>({{"lambda", num(1)}}, job),
                    Contains("merge method 'model_stock'") && Contains("'lambda'"));
  CHECK_THROWS_AS(wproj::mergeMethod("opcm").run<float>({{"alpha", num(2)}}, job), wproj::InvalidArgument);
  CHECK_THROWS_WITH(wproj::mergeMethod("nope"), Contains("'nope'") && Contains("ties") && Contains("opcm"));
  CHECK(wproj::findMergeMethod("nope") == nullptr);
  // A valid run leaves the output complete.
  CHECK_NOTHROW(ties.run<float>({{"weight", w1}, {"density", num(1.0)}}, job));
  CHECK(out.size() == 3);
}

TEST_CASE("docs/merging.md lists every registry method with its parameters", "[merging][registry]") {
  const std::string doc = readDoc("docs/merging.md");
  std::set<std::string> inDoc;  // the names in the first column of the method table
  std::istringstream in(doc);
  std::string line;
  std::map<std::string, std::string> rows;
  // The table of the section "Methods by name" (other tables of the page name methods too).
  bool inSection = false;
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) inSection = line == "### Methods by name";
    if (!inSection || line.rfind("| `", 0) != 0) continue;
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
    const Index count = modelsFor(m);
    const Models<T> mm(count, 41);
    wproj::MergeParams given = requiredValues(m, count);
    if (m.param("weight")) given["weight"] = wproj::ParamValue::perModel(std::vector<double>(std::size_t(count), 0.75));
    const wproj::ResolvedParams r = m.resolve(given, count);
    std::map<std::string, Mat<T>> whole;
    wproj::MergeJob<T> j = mm.job(whole);
    if (!m.acceptsBase) j.base = nullptr;
    j.rules = wproj::MergeRules().add("bias", wproj::TensorAction::Project);
    m.run(given, j);
    const wproj::TensorMergeParams tp = wproj::MergeMethod::tensorParams(r, count);
    for (const auto& name : mm.names) {
      wproj::TensorMergeInputs<T> in;
      in.name = name;
      in.numModels = count;
      in.hasBase = m.acceptsBase;
      if (in.hasBase) in.base = [&mm, name]() { return mm.base.at(name); };
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

TEMPLATE_TEST_CASE("registry: row-separable methods merge row blocks to the same bits as the whole tensor", "[merging][registry]",
                   float, double) {
  using T = TestType;
  std::set<std::string> separable;
  for (const auto& m : wproj::mergeMethods()) {
    if (!m.rowSeparable) continue;
    separable.insert(m.name);
    REQUIRE(m.hasTensorForm());
    INFO("method " << m.name);
    const Index count = modelsFor(m);
    wproj::MergeParams given = requiredValues(m, count);
    if (m.param("weight")) given["weight"] = wproj::ParamValue::perModel({0.75, -0.25, 1.5});
    if (m.param("weight") && count != 3) given["weight"] = wproj::ParamValue::perModel(std::vector<double>(std::size_t(count), 0.75));
    if (m.param("t")) given["t"] = num(0.3);
    const wproj::TensorMergeParams tp = wproj::MergeMethod::tensorParams(m.resolve(given, count), count);
    const Index rows = 23, cols = 7;
    const Mat<T> base = gaussian<T>(rows, cols, 5);
    std::vector<Mat<T>> tuned;
    for (Index i = 0; i < count; ++i) tuned.push_back(base + T(0.4) * gaussian<T>(rows, cols, 50 + std::uint64_t(i)));
    auto merge = [&](Index r0, Index h) {
      wproj::TensorMergeInputs<T> in;
      in.name = "w";
      in.numModels = count;
      in.hasBase = m.acceptsBase && m.name != "passthrough";
      if (in.hasBase) in.base = [&, r0, h]() { return Mat<T>(base.middleRows(r0, h)); };
      in.model = [&, r0, h](Index i) { return Mat<T>(tuned[std::size_t(i)].middleRows(r0, h)); };
      return m.mergeTensor(tp, in);
    };
    const Mat<T> whole = merge(0, rows);
    Mat<T> blocks(rows, cols);
    for (const Index r0 : {Index(0), Index(9), Index(10), Index(22)}) {
      const Index h = r0 == 0 ? 9 : r0 == 9 ? 1 : r0 == 10 ? 12 : 1;
      blocks.middleRows(r0, h) = merge(r0, h);
    }
    CHECK(blocks == whole);
    CHECK(!(whole == base));  // the method did something
  }
  // The flag is set exactly where it holds: mergekit's elementwise methods without a global selection.
  CHECK(separable == std::set<std::string>{"linear", "task_arithmetic", "nearswap", "passthrough"});
}
