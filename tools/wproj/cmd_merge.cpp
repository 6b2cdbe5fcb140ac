// wproj command-line tool: `wproj merge CONFIG.yaml` — streaming model merging from a mergekit-style config.
#include "common.hpp"
#include "peft_adapter.hpp"

#include <wproj/merging.hpp>
#include <wproj/merging/registry.hpp>
#include <wproj/version.hpp>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <iomanip>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace wcli {
namespace {

// ------------------------------------------------------------------------------- configuration

struct RuleSpec {
  std::string pattern;
  wproj::TensorAction action;
};

struct ModelSpec {
  std::string path;
  std::string adapter;  // `PATH+ADAPTER_DIR`: a PEFT LoRA adapter applied to PATH on read
  double weight = 1.0;
};

struct MergeConfig {
  std::string method, base, dtype = "float32", outDtype;
  const wproj::MergeMethod* spec = nullptr;  // the registry entry of `method`
  std::vector<ModelSpec> models;
  wproj::MergeParams given;       // the method's parameters as given (per-model weights excluded)
  wproj::ResolvedParams params;   // every parameter, validated, with the defaults filled in
  std::vector<RuleSpec> rules;
  std::uint64_t maxShard = 0;
};

std::string resolvePath(const std::string& p, const std::string& configDir) {
  if (p.empty() || p[0] == '/') return p;
  struct stat st;
  if (::stat(p.c_str(), &st) == 0) return p;
  return configDir + "/" + p;
}

/// A model path, or `PATH+ADAPTER_DIR` (when the whole text is not an existing path): the model
/// at PATH with the PEFT LoRA adapter in ADAPTER_DIR applied as it is read.
void setModelPath(ModelSpec& s, const std::string& raw, const std::string& configDir) {
  s.path = resolvePath(raw, configDir);
  struct stat st;
  const auto plus = raw.rfind('+');
  if (plus == std::string::npos || plus == 0 || plus + 1 == raw.size() || ::stat(s.path.c_str(), &st) == 0) return;
  s.path = resolvePath(raw.substr(0, plus), configDir);
  s.adapter = resolvePath(raw.substr(plus + 1), configDir);
}

double scalarParam(const YAML::Node& v, const std::string& where) {
  try {
    return v.as<double>();
  } catch (const YAML::Exception&) {
    throw CliError(where + " must be a number");
  }
}

/// A parameter value from YAML: true/false, a list of numbers (one per model) or a number.
wproj::ParamValue paramValue(const YAML::Node& v, const std::string& where) {
  if (v.IsSequence()) {
    std::vector<double> xs;
    for (const auto& x : v) xs.push_back(scalarParam(x, where));
    return wproj::ParamValue::perModel(xs);
  }
  if (v.IsScalar()) {
    const std::string t = v.Scalar();
    if (t == "true" || t == "True" || t == "false" || t == "False") return wproj::ParamValue::flag(t[0] == 't' || t[0] == 'T');
  }
  return wproj::ParamValue::number(scalarParam(v, where));
}

MergeConfig parseConfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw CliError(path + ": cannot read the config file");
  } catch (const YAML::Exception& e) {
    throw CliError(path + ": invalid YAML: " + e.what());
  }
  if (!root.IsMap()) throw CliError(path + ": the config must be a YAML mapping");
  const std::string dir = wproj::io::detail::dirName(path);
  static const std::set<std::string> known = {"merge_method", "base_model", "models", "parameters", "dtype",
                                              "out_dtype", "tensors", "max_shard_size"};
  for (const auto& kv : root) {
    const std::string k = kv.first.as<std::string>();
    if (!known.count(k))
      throw CliError(path + ": unknown key '" + k +
                     "' (expected merge_method, base_model, models, parameters, dtype, out_dtype, tensors, max_shard_size)");
  }
  MergeConfig c;
  if (!root["merge_method"]) throw CliError(path + ": missing 'merge_method'");
  c.method = root["merge_method"].as<std::string>();
  c.spec = wproj::findMergeMethod(c.method);
  if (!c.spec)
    throw CliError(path + ": unknown merge_method '" + c.method + "' (expected one of " + wproj::mergeMethodNames() +
                   "; wproj merge --list-methods describes them)");
  c.method = c.spec->name;
  if (!root["base_model"]) throw CliError(path + ": missing 'base_model' (every method merges task vectors theta_i - theta_0)");
  c.base = resolvePath(root["base_model"].as<std::string>(), dir);
  if (!root["models"] || !root["models"].IsSequence() || root["models"].size() == 0)
    throw CliError(path + ": 'models' must be a non-empty list of '- model: PATH'");
  for (const auto& m : root["models"]) {
    ModelSpec s;
    if (m.IsScalar()) {
      setModelPath(s, m.as<std::string>(), dir);
    } else {
      if (!m.IsMap() || !m["model"]) throw CliError(path + ": each entry of 'models' needs 'model: PATH'");
      setModelPath(s, m["model"].as<std::string>(), dir);
      for (const auto& kv : m) {
        const std::string k = kv.first.as<std::string>();
        if (k != "model" && k != "parameters") throw CliError(path + ": model '" + s.path + "': unknown key '" + k + "'");
      }
      if (m["parameters"]) {
        for (const auto& kv : m["parameters"]) {
          const std::string k = kv.first.as<std::string>();
          if (k != "weight")
            throw CliError(path + ": model '" + s.path + "': unknown parameter '" + k +
                           "' (per-model parameters: weight, which scales the model's task vector)");
          s.weight = scalarParam(kv.second, "model '" + s.path + "': weight");
        }
      }
    }
    c.models.push_back(s);
  }
  if (root["parameters"] && !root["parameters"].IsNull()) {
    for (const auto& kv : root["parameters"]) {
      const std::string k = kv.first.as<std::string>();
      if (!c.spec->param(k))
        throw CliError(path + ": parameter '" + k + "' does not apply to " + c.method +
                       (c.spec->params.empty() ? std::string(" (it takes none)") : " (expected " + c.spec->paramNames() + ")"));
      c.given[k] = paramValue(kv.second, "parameter '" + k + "'");
    }
  }
  // The registry checks the parameters (types, ranges, per-model lengths, number of models).
  bool modelWeights = false;
  for (const auto& m : c.models) modelWeights = modelWeights || m.weight != 1.0;
  if (c.given.count("weight") && modelWeights)
    throw CliError(path + ": 'weight' is given both under 'parameters' and per model; give it in one place");
  try {
    c.params = c.spec->resolve(c.given, wproj::Index(c.models.size()));
  } catch (const wproj::InvalidArgument& e) {
    throw CliError(path + ": " + e.what());
  }
  // Per-model weights are applied while reading the models (see MergeRun::model).
  if (c.given.count("weight")) {
    const auto& w = c.params.perModel("weight");
    for (std::size_t i = 0; i < c.models.size(); ++i) c.models[i].weight = w[i];
    c.given.erase("weight");
  }
  if (root["dtype"]) c.dtype = root["dtype"].as<std::string>();
  if (c.dtype != "float32" && c.dtype != "float64")
    throw CliError(path + ": dtype (the compute type) must be float32 or float64, got '" + c.dtype + "'");
  if (root["out_dtype"]) {
    c.outDtype = root["out_dtype"].as<std::string>();
    try {
      if (!wproj::io::isConvertibleFloat(wproj::io::dtypeFromString(c.outDtype))) throw CliError("");
    } catch (const std::exception&) {
      throw CliError(path + ": out_dtype must be float32, float16, bfloat16 or float64, got '" + c.outDtype + "'");
    }
  }
  if (root["max_shard_size"]) c.maxShard = root["max_shard_size"].as<std::uint64_t>();
  if (root["tensors"] && !root["tensors"].IsNull()) {
    if (!root["tensors"].IsSequence()) throw CliError(path + ": 'tensors' must be a list of {pattern, action}");
    for (const auto& r : root["tensors"]) {
      if (!r["pattern"] || !r["action"]) throw CliError(path + ": each tensor rule needs 'pattern' and 'action'");
      RuleSpec s;
      s.pattern = r["pattern"].as<std::string>();
      compileRegex(s.pattern, "tensor rule pattern");
      const std::string a = r["action"].as<std::string>();
      if (a == "skip" || a == "base") s.action = wproj::TensorAction::Skip;
      else if (a == "average") s.action = wproj::TensorAction::Average;
      else if (a == "merge" || a == "project") s.action = wproj::TensorAction::Project;
      else throw CliError(path + ": tensor rule '" + s.pattern + "': action '" + a + "' (expected merge, average or skip)");
      c.rules.push_back(s);
    }
  }
  return c;
}

// ------------------------------------------------------------------------- spill file (OPCM)

/// An unnamed temporary file in a folder: vanishes when closed or when the process dies.
class SpillFile {
 public:
  explicit SpillFile(const std::string& dir) {
#ifdef O_TMPFILE
    m_fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
    if (m_fd < 0) {
      std::string tmpl = dir + "/.wproj-spill-XXXXXX";
      m_fd = ::mkstemp(&tmpl[0]);
      if (m_fd >= 0) ::unlink(tmpl.c_str());
    }
    if (m_fd < 0) throw CliError("cannot create a temporary file in '" + dir + "'");
  }
  ~SpillFile() {
    if (m_fd >= 0) ::close(m_fd);
  }
  std::uint64_t append(const void* p, std::size_t n) {
    const std::uint64_t at = m_size;
    const char* c = static_cast<const char*>(p);
    std::size_t left = n;
    std::uint64_t off = at;
    while (left > 0) {
      const ssize_t w = ::pwrite(m_fd, c, left, off_t(off));
      if (w <= 0) throw CliError("writing the temporary file failed (disk full?)");
      c += w;
      left -= std::size_t(w);
      off += std::uint64_t(w);
    }
    m_size += n;
    return at;
  }
  void read(std::uint64_t at, void* p, std::size_t n) const {
    char* c = static_cast<char*>(p);
    while (n > 0) {
      const ssize_t r = ::pread(m_fd, c, n, off_t(at));
      if (r <= 0) throw CliError("reading the temporary file failed");
      c += r;
      n -= std::size_t(r);
      at += std::uint64_t(r);
    }
  }

 private:
  int m_fd = -1;
  std::uint64_t m_size = 0;
};

// ----------------------------------------------------------------------------------- the merge

struct MergeOptions {
  std::string config, out, report;
  bool dryRun = false;
  bool listMethods = false;
};

struct Inputs {
  std::unique_ptr<wproj::io::Checkpoint> base;
  std::vector<std::unique_ptr<wproj::io::Checkpoint>> models;
  std::vector<std::unique_ptr<AdapterReader>> adapters;  // one per model (null: none)
};

struct Plan {
  std::vector<std::string> merged;   // float tensors that go through the merger (rules may still skip them)
  std::vector<std::string> copied;   // non-float tensors: copied from the base
  std::vector<std::string> empty;    // float tensors with no elements: copied from the base
  std::map<std::string, wproj::RuleDecision> decision;
  std::uint64_t maxElements = 0;
  std::vector<std::string> warnings;
};

wproj::MergeRules buildRules(const MergeConfig& c) {
  wproj::MergeRules r;
  for (const auto& s : c.rules) r.add(s.pattern, s.action);
  return r;
}

Plan makePlan(const MergeConfig& c, const Inputs& in) {
  Plan p;
  const wproj::MergeRules rules = buildRules(c);
  const bool elementwise = c.spec->elementwise;
  for (const auto& n : in.base->names()) {
    const auto& t = in.base->info(n);
    if (!wproj::io::isConvertibleFloat(t.dtype)) {
      p.copied.push_back(n);
      continue;
    }
    const wproj::RuleDecision d = rules.decide(n, t.rows(), t.cols(), elementwise);
    if (t.count() == 0) {
      // No values to merge: copied from the base (its shape is still checked against the models).
      p.empty.push_back(n);
    } else {
      p.decision[n] = d;
      p.merged.push_back(n);
    }
    if (d.action == wproj::TensorAction::Skip) continue;
    p.maxElements = std::max<std::uint64_t>(p.maxElements, t.count());
    for (std::size_t i = 0; i < in.models.size(); ++i) {
      const auto& m = *in.models[i];
      if (!m.contains(n))
        throw CliError("tensor '" + n + "' is missing from model " + std::to_string(i + 1) + " (" + m.path() +
                       "); add a rule {pattern: '" + n + "', action: skip} to keep the base tensor");
      const auto& mt = m.info(n);
      if (mt.shape != t.shape)
        throw CliError("shape mismatch for tensor '" + n + "': " + t.shapeString() + " in the base model but " +
                       mt.shapeString() + " in model " + std::to_string(i + 1) + " (" + m.path() +
                       ") - a different vocabulary? add a rule {pattern: '" + n + "', action: skip} to keep the base tensor");
      if (t.count() > 0 && !wproj::io::isReadableAsReal(mt.dtype))
        throw CliError("tensor '" + n + "' of model " + m.path() + " has dtype " + wproj::io::dtypeName(mt.dtype));
    }
  }
  for (std::size_t i = 0; i < in.models.size(); ++i)
    for (const auto& n : in.models[i]->names())
      if (!in.base->contains(n)) {
        const auto d = rules.decide(n, 0, 0, true);
        if (d.action != wproj::TensorAction::Skip)
          throw CliError("tensor '" + n + "' of model " + std::to_string(i + 1) + " (" + in.models[i]->path() +
                         ") is not in the base model; add a rule {pattern: '" + n + "', action: skip} to drop it");
        p.warnings.push_back("tensor '" + n + "' of model " + in.models[i]->path() + " is not in the base model: dropped");
      }
  return p;
}

/// Peak memory of the merge: the largest, over the merged tensors, of θ₀, the method's working
/// set (the incoming task vector, the merger's state and the result; averaged tensors: a running
/// sum) and the mapped pages of the one input tensor being read (released after each read),
/// plus a fixed allowance for the program. It does not depend on the number of models.
std::uint64_t peakEstimate(const MergeConfig& c, const Plan& p, const Inputs& in) {
  const bool dbl = c.dtype == "float64";
  const std::uint64_t s = dbl ? 8 : 4;
  const wproj::Index T = wproj::Index(in.models.size());
  std::uint64_t peak = 0;
  for (const auto& n : p.merged) {
    const auto& t = in.base->info(n);
    const wproj::Index rows = t.rows(), cols = t.cols();
    const std::uint64_t tensor = std::uint64_t(rows) * std::uint64_t(cols) * s;
    std::uint64_t work = tensor;  // θ₀
    const wproj::TensorAction a = p.decision.at(n).action;
    if (a == wproj::TensorAction::Project || c.spec->continual)
      work += c.spec->workingSet(rows, cols, T, dbl ? 8 : 4);  // the merger's own figure
    else if (a == wproj::TensorAction::Average)
      work += 2 * tensor;
    if (a != wproj::TensorAction::Skip) work += t.bytes();  // mapped pages of the tensor being read
    peak = std::max(peak, work);
  }
  return peak + (8u << 20);
}

wproj::io::DType outDtypeOf(const MergeConfig& c, const wproj::io::TensorInfo& t) {
  if (!wproj::io::isConvertibleFloat(t.dtype)) return t.dtype;
  return c.outDtype.empty() ? t.dtype : wproj::io::dtypeFromString(c.outDtype);
}

template <typename Scalar>
class MergeRun {
 public:
  using Matrix = wproj::MergeMatrix<Scalar>;

  MergeRun(const MergeConfig& c, const Inputs& in, const Plan& p, wproj::io::CheckpointWriter& w, Progress& progress)
      : m_c(c), m_in(in), m_p(p), m_w(w), m_progress(progress) {}

  // Every read converts into owned memory (one copy, straight from the mapped bytes) and then
  // lets the kernel drop the mapped pages, so at most one tensor's pages are resident on top of
  // the matrices the merger holds. Fine-tuned tensors are read once per pass of the merger.
  Matrix base(const std::string& n) const { return readAndRelease(*m_in.base, n); }

  Matrix model(wproj::Index i, const std::string& n) const {
    Matrix theta = readAndRelease(*m_in.models[std::size_t(i)], n);
    if (m_in.adapters[std::size_t(i)]) m_in.adapters[std::size_t(i)]->adjust(n, theta);
    const double wgt = m_c.models[std::size_t(i)].weight;
    if (wgt != 1.0) {  // θ₀ + w (θ − θ₀), with θ₀ read in place from the mapped file
      {
        const auto b = m_in.base->view<Scalar>(n);
        const auto bm = b.map();
        constexpr wproj::Index tile = 64;
        for (wproj::Index j = 0; j < theta.cols(); j += tile)
          for (wproj::Index i = 0; i < theta.rows(); i += tile) {
            const wproj::Index h = std::min(tile, theta.rows() - i), w = std::min(tile, theta.cols() - j);
            auto blk = theta.block(i, j, h, w);
            blk = bm.block(i, j, h, w) + Scalar(wgt) * (blk - bm.block(i, j, h, w));
          }
      }
      m_in.base->release(n);
    }
    return theta;
  }

  static Matrix readAndRelease(const wproj::io::Checkpoint& c, const std::string& n) {
    Matrix t;
    {
      const auto v = c.view<Scalar>(n);
      copyTiled(t, v.map());
    }
    c.release(n);
    return t;
  }

  void release(const std::string& n) const {
    m_in.base->release(n);
    for (const auto& m : m_in.models)
      if (m->contains(n)) m->release(n);
  }

  void sink(const std::string& n, const Matrix& theta) {
    if (!theta.allFinite()) throw CliError("the merged tensor '" + n + "' has non-finite entries");
    m_w.write(n, theta);
    release(n);
    m_outNorm[n] = double(theta.norm());
    const double now = m_progress.seconds();
    m_seconds[n] = now - m_last;
    m_last = now;
    m_progress.advance(double(m_in.base->info(n).bytes()), n);
  }

  /// The batch methods: the registry's factory builds the merger and runs the merging layer's
  /// ModelMerger, which streams the task vectors of each tensor through the merger's accumulator
  /// (memory independent of the number of models).
  wproj::MergeReport stream() {
    wproj::MergeJob<Scalar> job;
    job.names = m_p.merged;
    job.numModels = wproj::Index(m_in.models.size());
    job.rules = buildRules(m_c);
    job.base = [this](const std::string& n) { return base(n); };
    job.model = [this](wproj::Index i, const std::string& n) { return model(i, n); };
    job.sink = [this](const std::string& n, const Matrix& t) { sink(n, t); };
    m_last = m_progress.seconds();
    return m_c.spec->run(m_c.given, job);
  }

  /// OPCM, tensor by tensor: pass 1 builds each tensor's accumulator S over the models in order
  /// (spilled to an unnamed temporary file) and the global norms; pass 2 writes θ₀ + λS.
  wproj::MergeReport opcm(const std::string& spillDir) {
    const std::size_t T = m_in.models.size();
    SpillFile spill(spillDir);
    std::map<std::string, std::uint64_t> where;
    std::vector<double> normSq(T, 0.0);
    double sumSq = 0;
    wproj::MergeReport rep;
    const double alpha = m_c.params.number("alpha");
    rep.method = "opcm (alpha=" + wproj::detail::describe(alpha) + "), " + std::to_string(T) + " models";
    std::map<std::string, wproj::TensorReport> trs;
    m_last = m_progress.seconds();
    for (const auto& n : m_p.merged) {
      wproj::OpcmMerging<Scalar> cm;
      cm.setAlpha(alpha).setRules(buildRules(m_c));
      wproj::TensorReport tr;
      const bool counted = m_p.decision.at(n).action != wproj::TensorAction::Skip;
      for (std::size_t i = 0; i < T; ++i) {
        const wproj::MergeReport step = cm.addModel({n}, [&](const std::string& name) {
          Matrix tau = model(wproj::Index(i), name) - base(name);
          if (counted) normSq[i] += double(tau.squaredNorm());  // global norms over merged tensors only
          return tau;
        });
        const auto& st = step.tensors.front();
        rep.peakResidentBytes = std::max(rep.peakResidentBytes, step.peakResidentBytes);
        if (i == 0) tr = st;
        if (i + 1 == T) {
          tr.method = st.method;
          tr.rank = st.rank;
        }
        for (const auto& wmsg : st.warnings) tr.warnings.push_back("model " + std::to_string(i + 1) + ": " + wmsg);
      }
      if (tr.action != wproj::TensorAction::Skip) {
        const Matrix& s = cm.accumulator(n);
        sumSq += double(s.squaredNorm());
        where[n] = spill.append(s.data(), std::size_t(s.size()) * sizeof(Scalar));
      }
      release(n);
      m_progress.advance(0.5 * double(m_in.base->info(n).bytes()), n);
      trs[n] = tr;
    }
    double meanNorm = 0;
    for (double v : normSq) meanNorm += std::sqrt(v);
    meanNorm /= double(T);
    const double lambda = sumSq > 0 ? meanNorm / std::sqrt(sumSq) : 0.0;
    rep.method += ", scale " + wproj::detail::describe(lambda);
    if (lambda == 0) rep.warnings.push_back("the merged delta is zero: merged model = base");
    for (const auto& n : m_p.merged) {
      wproj::TensorReport tr = trs[n];
      Matrix theta = base(n);
      if (tr.action != wproj::TensorAction::Skip) {
        Matrix s(theta.rows(), theta.cols());
        spill.read(where[n], s.data(), std::size_t(s.size()) * sizeof(Scalar));
        theta += Scalar(lambda) * s;
        tr.deltaNorm = lambda * double(s.norm());
      }
      sink(n, theta);
      rep.tensors.push_back(tr);
    }
    m_scale = lambda;
    return rep;
  }

  std::map<std::string, double> m_outNorm, m_seconds;
  double m_scale = std::numeric_limits<double>::quiet_NaN();

 private:
  const MergeConfig& m_c;
  const Inputs& m_in;
  const Plan& m_p;
  wproj::io::CheckpointWriter& m_w;
  Progress& m_progress;
  double m_last = 0;
};

template <typename Scalar>
nlohmann::json mergeWith(const MergeConfig& c, const Inputs& in, const Plan& p, wproj::io::CheckpointWriter& w,
                         Progress& progress, const std::string& spillDir) {
  MergeRun<Scalar> run(c, in, p, w, progress);
  // OPCM runs here tensor by tensor with its accumulators spilled to a file; every other method
  // goes through the registry's factory.
  const wproj::MergeReport rep = c.spec->continual ? run.opcm(spillDir) : run.stream();
  nlohmann::json j;
  j["method"] = rep.method;
  if (c.method == "opcm") j["opcm_scale"] = run.m_scale;
  j["warnings"] = rep.warnings;
  j["peak_tensor_bytes"] = rep.peakResidentBytes;
  j["tensors"] = nlohmann::json::array();
  for (const auto& t : rep.tensors) {
    j["tensors"].push_back({{"name", t.name},
                            {"shape", {t.rows, t.cols}},
                            {"action", wproj::toString(t.action)},
                            {"rule", t.rule},
                            {"method", t.method},
                            {"rank", t.rank},
                            {"task_norm_mean", t.taskNormMean},
                            {"delta_norm", t.deltaNorm},
                            {"norm", run.m_outNorm[t.name]},
                            {"seconds", run.m_seconds[t.name]},
                            {"warnings", t.warnings}});
  }
  return j;
}

void runMerge(const MergeOptions& o) {
  // Every output location is checked before any work.
  const bool fileOut = o.dryRun ? isFileOutput(o.out) : checkOutputs(o.out, o.report);
  const MergeConfig c = parseConfig(o.config);
  Inputs in;
  in.base = std::make_unique<wproj::io::Checkpoint>(c.base);
  for (const auto& m : c.models) {
    in.models.push_back(std::make_unique<wproj::io::Checkpoint>(m.path));
    in.adapters.emplace_back();
    if (!m.adapter.empty()) {
      in.adapters.back() = std::make_unique<AdapterReader>(m.adapter);
      in.adapters.back()->checkAgainst(*in.models.back(), "model '" + m.path + "+" + m.adapter + "'");
    }
  }
  const Plan p = makePlan(c, in);
  const std::uint64_t peak = peakEstimate(c, p, in);

  std::vector<std::string> inputs = filesOf(*in.base);
  for (const auto& m : in.models) {
    auto f = filesOf(*m);
    inputs.insert(inputs.end(), f.begin(), f.end());
  }
  for (const auto& m : c.models)
    if (!m.adapter.empty()) inputs.push_back(m.adapter);
  inputs.push_back(o.config);
  if (!o.dryRun) {
    checkNotAnInput(o.out, inputs, !fileOut, "-o");
    if (!o.report.empty()) checkNotAnInput(o.report, inputs, false, "--report");
  }
  std::ostringstream os;  // the plan: printed by --dry-run only
  os << "merge plan: " << c.method << " (";
  bool first = true;
  // Of two spellings of one setting (dare: drop, density) only the one given is shown (else the first).
  auto hidden = [&c](const std::string& n) {
    for (const auto& e : c.spec->exclusive) {
      const std::string other = e.first == n ? e.second : e.second == n ? e.first : std::string();
      if (other.empty() || c.params.given(n)) continue;
      if (c.params.given(other)) return true;
      for (const auto& p : c.spec->params) {
        if (p.name == n) return false;
        if (p.name == other) return true;
      }
    }
    return false;
  };
  for (const auto& kv : c.params.all()) {
    if (kv.second.kind == wproj::ParamKind::PerModel || hidden(kv.first)) continue;  // weights: listed with the models
    os << (first ? "" : ", ") << kv.first << "=";
    if (kv.second.kind == wproj::ParamKind::Bool) os << (kv.second.value != 0 ? "true" : "false");
    else os << kv.second.value;
    first = false;
  }
  os << "), compute " << c.dtype << ", out_dtype " << (c.outDtype.empty() ? "as base" : c.outDtype) << "\n";
  os << "  base:     " << c.base << " (" << in.base->names().size() << " tensors, " << humanBytes(double(in.base->totalBytes()))
     << ")\n";
  for (std::size_t i = 0; i < c.models.size(); ++i)
    os << "  model " << (i + 1) << ":  " << c.models[i].path
       << (c.models[i].adapter.empty() ? "" : " + adapter " + c.models[i].adapter) << " (weight " << c.models[i].weight << ", "
       << humanBytes(double(in.models[i]->totalBytes())) << ")\n";
  std::size_t counts[3] = {0, 0, 0};
  for (const auto& n : p.merged) ++counts[int(p.decision.at(n).action)];
  os << "  tensors:  " << counts[0] << " merged, " << counts[1] << " averaged, " << counts[2] << " kept from base, "
     << p.copied.size() << " non-float copied" << (p.empty.empty() ? "" : ", " + std::to_string(p.empty.size()) + " empty copied")
     << "\n";
  for (const auto& wmsg : p.warnings) os << "  warning: " << wmsg << "\n";
  os << "  estimated peak memory: " << humanBytes(double(peak)) << " (largest merged tensor: " << p.maxElements
     << " elements)\n";
  if (o.dryRun) {
    std::cout << os.str();
    for (const auto& n : p.merged) {
      const auto& t = in.base->info(n);
      std::cout << "    " << std::left << std::setw(48) << n << std::setw(16) << t.shapeString() << std::setw(9)
                << wproj::toString(p.decision.at(n).action) << p.decision.at(n).rule << "\n";
    }
    for (const auto& n : p.copied) std::cout << "    " << std::left << std::setw(48) << n << "copied (non-float)\n";
    for (const auto& n : p.empty) std::cout << "    " << std::left << std::setw(48) << n << "copied (no elements)\n";
    return;
  }

  // A folder output is written into a staging folder next to it and swapped in as a whole.
  std::unique_ptr<wproj::io::AtomicFolder> folder;
  if (!fileOut) folder = std::make_unique<wproj::io::AtomicFolder>(o.out);
  const std::string target = fileOut ? o.out : folder->stagingPath();
  wproj::io::CheckpointWriter w(target, c.maxShard);
  w.addMetadata("format", "pt").addMetadata("merged_by", "wproj " WPROJ_VERSION_STRING).addMetadata("merge_method", c.method);
  for (const auto& n : in.base->names()) {
    const auto& t = in.base->info(n);
    // Tensors that are not converted (integers, bool, FP8/FP4, dtypes this version does not
    // know) keep their dtype and bytes exactly.
    if (wproj::io::isConvertibleFloat(t.dtype)) w.declare(n, outDtypeOf(c, t), t.shape);
    else w.declare(t);
  }
  w.begin();
  std::vector<std::string> raw = p.copied;
  raw.insert(raw.end(), p.empty.begin(), p.empty.end());
  for (const auto& n : raw) {
    const auto& t = in.base->info(n);
    w.writeRaw(n, in.base->readerOf(n).rawData(t), std::size_t(t.bytes()));
    in.base->release(n);
  }
  Progress progress(double(in.base->totalBytes()) * (c.method == "opcm" ? 1.5 : 1.0), "merge");
  const std::string spillDir = fileOut ? parentOf(o.out) : target;
  nlohmann::json j = c.dtype == "float64" ? mergeWith<double>(c, in, p, w, progress, spillDir)
                                          : mergeWith<float>(c, in, p, w, progress, spillDir);
  w.commit();
  std::vector<std::string> outputs = w.files();
  if (folder) {
    for (auto& f : outputs) f = o.out + "/" + wproj::io::detail::baseName(f);
    folder->commit();
  }
  progress.finish();
  j["config"] = o.config;
  j["output"] = outputs;
  j["base_model"] = c.base;
  j["models"] = nlohmann::json::array();
  for (const auto& m : c.models) {
    j["models"].push_back({{"model", m.path}, {"weight", m.weight}});
    if (!m.adapter.empty()) j["models"].back()["adapter"] = m.adapter;
  }
  j["copied_non_float"] = p.copied;
  j["copied_empty"] = p.empty;
  j["estimated_peak_bytes"] = peak;
  j["seconds"] = progress.seconds();
  const std::string text = j.dump(2) + "\n";
  if (o.report.empty()) std::cout << text;
  else writeReport(o.report, text);
  std::cerr << "merged " << p.merged.size() << " tensors into " << o.out << " in " << std::fixed << std::setprecision(1)
            << progress.seconds() << " s\n";
}

std::string defaultText(const wproj::ParamSpec& p) {
  if (p.kind == wproj::ParamKind::Bool) return p.defaultValue != 0 ? "true" : "false";
  std::ostringstream os;
  os << p.defaultValue;
  return os.str();
}

/// `wproj merge --list-methods`: the registry, one block per method.
void listMethods(std::ostream& os) {
  for (const auto& m : wproj::mergeMethods()) {
    os << m.name;
    for (const auto& a : m.aliases) os << " (also " << a << ")";
    os << ": " << m.title << " [" << m.reference << "]\n";
    os << "    " << (m.continual ? "continual" : m.elementwise ? "elementwise" : "spectral") << ", " << m.passes
       << (m.passes == 1 ? " pass" : " passes") << ", ";
    if (m.maxModels == m.minModels) os << "exactly " << m.minModels;
    else os << m.minModels << " or more";
    os << " models, " << (m.needsBase ? "needs base_model" : "no base model") << "\n";
    for (const auto& p : m.params)
      os << "    " << std::left << std::setw(16) << p.name << std::setw(10) << wproj::toString(p.kind) << std::setw(8)
         << defaultText(p) << p.meaning << " (" << p.expected << ")\n";
  }
}

/// The method summary of `wproj merge --help`.
std::string methodsFooter() {
  std::string s = "Methods and parameters (defaults):\n";
  for (const auto& m : wproj::mergeMethods()) {
    s += "  " + m.name;
    for (const auto& p : m.params)
      if (p.kind != wproj::ParamKind::PerModel) s += " " + p.name + "=" + defaultText(p);
    s += "\n";
  }
  return s + "Per model: weight (scales its task vector). wproj merge --list-methods describes them.\n";
}

}  // namespace

void addMergeCommand(CLI::App& app) {
  static MergeOptions mo;
  auto* m = app.add_subcommand("merge", "Merge checkpoints from a mergekit-style YAML config, one tensor at a time");
  m->add_option("CONFIG", mo.config, "YAML config (merge_method, base_model, models, parameters, dtype, out_dtype, tensors)");
  m->add_flag("--list-methods", mo.listMethods, "list the merge methods with their parameters, defaults and meaning; merge nothing");
  m->add_option("-o,--out", mo.out, "output .safetensors file, or a folder (sharded by max_shard_size)");
  m->add_flag("--dry-run", mo.dryRun, "validate the inputs, print the plan and the peak-memory estimate; write nothing");
  m->add_option("--report", mo.report, "write the JSON report to this file instead of standard output");
  m->footer(
      methodsFooter() +
      "Rules: tensors: [{pattern: REGEX, action: merge|average|skip}], first match wins.\n"
      "Relative paths are taken from the working folder, else from the config's folder.\n"
      "A model 'PATH+ADAPTER_DIR' is PATH with a PEFT LoRA adapter applied as it is read.\n"
      "Example config:\n"
      "  merge_method: ties\n"
      "  base_model: base.safetensors\n"
      "  models:\n"
      "    - model: math.safetensors\n"
      "    - model: code.safetensors\n"
      "      parameters: {weight: 0.5}\n"
      "  parameters: {density: 0.2, lambda: 1.0}\n"
      "  dtype: float32\n"
      "  out_dtype: bfloat16\n"
      "  tensors:\n"
      "    - {pattern: 'embed_tokens|lm_head', action: skip}\n"
      "Example:\n  wproj merge ties.yaml -o merged.safetensors\n");
  m->callback([]() {
    if (mo.listMethods) {
      if (!mo.config.empty() || !mo.out.empty() || mo.dryRun)
        throw UsageError("merge --list-methods takes no CONFIG, -o or --dry-run");
      listMethods(std::cout);
      return;
    }
    if (mo.config.empty()) throw UsageError("merge: CONFIG is required (or use --list-methods)");
    if (!mo.dryRun && mo.out.empty()) throw UsageError("merge: -o OUT is required (or use --dry-run)");
    runMerge(mo);
  });
}

}  // namespace wcli
