// wproj command-line tool: `wproj merge CONFIG.yaml` — a drop-in for mergekit's `mergekit-yaml`
// on local checkpoints: the same configuration (models or slices, gradients, filters, base
// model, dtype, tokenizer source), merged one tensor at a time on all cores through the merging
// layer's per-tensor form, written as mergekit writes its output folder.
#include "common.hpp"
#include "merge_command.hpp"
#include "peft_adapter.hpp"
#include "sharded_job.hpp"

#include <wproj/core/partition.hpp>
#include <wproj/merging.hpp>
#include <wproj/io/spill_file.hpp>
#include <wproj/merging/opcm_streaming.hpp>
#include <wproj/merging/registry.hpp>
#include <wproj/version.hpp>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

namespace wcli {
namespace {

// ------------------------------------------------------------------------------- configuration

struct RuleSpec {
  std::string pattern;
  wproj::TensorAction action;
};

/// A parameter setting as mergekit reads it: a number, a flag, a gradient (a list of numbers
/// interpolated over the layers of a slice) or a list of filters (first case whose filter is a
/// substring of the tensor name, a case without filter matching every tensor); a filter's value
/// is itself a setting.
struct Setting {
  enum class Kind { Number, Flag, Gradient, Filters } kind = Kind::Number;
  double value = 0;
  std::vector<double> points;
  std::vector<std::pair<std::string, Setting>> cases;  // filter ("" or "*": any tensor) -> value
  int line = 0;
};
using Settings = std::map<std::string, Setting>;

/// mergekit's evaluate_setting: the value for tensor `name` at layer position t in [0, 1];
/// nothing when no filter matches (the next level of the configuration is asked then).
std::optional<double> evaluate(const Setting& s, const std::string& name, double t) {
  switch (s.kind) {
    case Setting::Kind::Number:
    case Setting::Kind::Flag: return s.value;
    case Setting::Kind::Gradient: {
      const double scaled = t * double(s.points.size() - 1);
      const std::size_t i0 = std::size_t(scaled);  // t >= 0: truncation is floor
      const std::size_t i1 = std::min(s.points.size() - 1, i0 + 1);
      const double frac = scaled - double(i0);
      return (1 - frac) * s.points[i0] + frac * s.points[i1];
    }
    case Setting::Kind::Filters:
      for (const auto& c : s.cases)
        if (c.first.empty() || c.first == "*" || name.find(c.first) != std::string::npos) return evaluate(c.second, name, t);
      return std::nullopt;
  }
  return std::nullopt;
}

struct ModelRef {
  std::string raw, path, adapter;  // `PATH+ADAPTER_DIR`: a PEFT LoRA adapter applied to PATH on read
  int line = 0;
  std::string shown() const { return raw; }
};

struct SourceSpec {
  int model = -1;  // index into MergeConfig::refs
  bool hasRange = false;
  long first = 0, last = 0;  // layer_range [first, last)
  Settings params;
  int line = 0;
};

struct SliceSpec {
  std::vector<SourceSpec> sources;
  Settings params;
  int line = 0;
};

struct MergeConfig {
  std::string file, dir, text;
  std::string method;
  const wproj::MergeMethod* spec = nullptr;  // the registry entry of `method`
  std::vector<ModelRef> refs;                // every distinct checkpoint the config names
  int base = -1;                             // index into refs, -1: none
  bool fromSlices = false;
  std::vector<SliceSpec> slices;  // `models:` becomes one slice over every layer
  Settings params;                // top-level `parameters`
  std::set<std::string> omitted;  // one of two spellings of one setting (dare: drop/density) left out
  std::string dtype = "float32", outDtype;
  bool dtypeGiven = false;
  int tokenizerModel = -1;  // donor of the tokenizer files (-1: base, else first model)
  bool tokenizerGiven = false;
  std::string chatTemplate;
  std::vector<RuleSpec> rules;
  std::uint64_t maxShard = 0;
  bool maxShardGiven = false;
  std::uint64_t seed = 0;
};

std::string resolvePath(const std::string& p, const std::string& configDir) {
  if (p.empty() || p[0] == '/') return p;
  struct stat st;
  if (::stat(p.c_str(), &st) == 0) return p;
  return configDir + "/" + p;
}

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

/// "FILE:LINE: " for a node of the config.
std::string at(const MergeConfig& c, const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return c.file + (m.line >= 0 ? ":" + std::to_string(m.line + 1) : std::string()) + ": ";
}

[[noreturn]] void bad(const MergeConfig& c, const YAML::Node& n, const std::string& key, const std::string& msg) {
  throw CliError(at(c, n) + "'" + key + "': " + msg);
}

std::string text(const MergeConfig& c, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) bad(c, n, key, "expected a string");
  return n.Scalar();
}

/// A size with mergekit's suffixes: 5000000000, 5GB, 1.5G, 500M, 100K (decimal), 2GiB (binary),
/// 5B (mergekit's billion).
std::uint64_t parseMergekitSize(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  double x = 0;
  try {
    x = std::stod(s, &n);
  } catch (const std::exception&) {
    throw CliError(what + " '" + s + "': expected a size such as 5000000000, 5GB, 1.5G, 500M or 2GiB");
  }
  std::string u = s.substr(n);
  for (auto& ch : u) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  double m = 0;
  if (u.empty()) m = 1;
  else if (u == "K" || u == "KB") m = 1e3;
  else if (u == "M" || u == "MB") m = 1e6;
  else if (u == "G" || u == "GB" || u == "B") m = 1e9;
  else if (u == "T" || u == "TB") m = 1e12;
  else if (u == "KIB") m = 1024.0;
  else if (u == "MIB") m = 1024.0 * 1024;
  else if (u == "GIB") m = 1024.0 * 1024 * 1024;
  else if (u == "TIB") m = 1024.0 * 1024 * 1024 * 1024;
  if (m == 0 || !(x >= 0) || !std::isfinite(x * m) || x * m > 1.8e19)
    throw CliError(what + " '" + s + "': expected a size such as 5000000000, 5GB, 1.5G, 500M or 2GiB");
  return std::uint64_t(std::llround(x * m));
}

/// A model reference: a file, a folder, `PATH+ADAPTER_DIR`; a hub id that is not local is refused.
int modelRef(MergeConfig& c, const YAML::Node& n, const std::string& key) {
  ModelRef r;
  r.raw = text(c, n, key);
  r.line = n.Mark().line + 1;
  r.path = resolvePath(r.raw, c.dir);
  const auto plus = r.raw.rfind('+');
  if (!exists(r.path) && plus != std::string::npos && plus > 0 && plus + 1 < r.raw.size()) {
    r.path = resolvePath(r.raw.substr(0, plus), c.dir);
    r.adapter = resolvePath(r.raw.substr(plus + 1), c.dir);
  }
  if (!exists(r.path)) {
    const std::string m = r.adapter.empty() ? r.raw : r.raw.substr(0, plus);
    const bool hubLike = m.find('/') != std::string::npos && m.find('/') == m.rfind('/') && m[0] != '.' && m[0] != '/' &&
                         m.find(':') == std::string::npos;
    if (hubLike)
      bad(c, n, key, "model '" + m + "' is not a local file or folder; wproj reads local checkpoints only: download it first (e.g. huggingface-cli download " + m + " --local-dir DIR) and name the folder");
    bad(c, n, key, "model '" + m + "' does not exist (looked in the working folder and in " + c.dir + ")");
  }
  if (!r.adapter.empty() && !exists(r.adapter)) bad(c, n, key, "adapter folder '" + r.adapter + "' does not exist");
  for (std::size_t i = 0; i < c.refs.size(); ++i)
    if (canonicalPath(c.refs[i].path) == canonicalPath(r.path) && c.refs[i].adapter == r.adapter) return int(i);
  c.refs.push_back(r);
  return int(c.refs.size() - 1);
}

bool isFlagText(const std::string& t) { return t == "true" || t == "True" || t == "false" || t == "False"; }

Setting parseSetting(const MergeConfig& c, const YAML::Node& v, const std::string& key) {
  Setting s;
  s.line = v.Mark().line + 1;
  auto number = [&](const YAML::Node& x) {
    try {
      return x.as<double>();
    } catch (const YAML::Exception&) {
      bad(c, x, key, "expected a number, got '" + (x.IsScalar() ? x.Scalar() : std::string("a list or mapping")) + "'");
    }
  };
  if (v.IsScalar()) {
    if (isFlagText(v.Scalar())) {
      s.kind = Setting::Kind::Flag;
      s.value = (v.Scalar()[0] == 't' || v.Scalar()[0] == 'T') ? 1 : 0;
    } else {
      s.value = number(v);
    }
    return s;
  }
  auto condition = [&](const YAML::Node& m) {
    for (const auto& kv : m) {
      const std::string k = kv.first.as<std::string>();
      if (k == "pattern")
        bad(c, kv.first, key, "'pattern' in a filter: mergekit ignores this key, so the case would match every tensor; "
                              "write 'filter:' (or drop the key to match every tensor)");
      if (k != "filter" && k != "value") bad(c, kv.first, key, "unknown key '" + k + "' in a filter (expected filter, value)");
    }
    if (!m["value"]) bad(c, m, key, "a filter needs 'value'");
    std::string f = m["filter"] && !m["filter"].IsNull() ? text(c, m["filter"], key + ".filter") : std::string();
    return std::make_pair(f, parseSetting(c, m["value"], key + ".value"));
  };
  if (v.IsMap()) {
    s.kind = Setting::Kind::Filters;
    s.cases.push_back(condition(v));
    return s;
  }
  if (!v.IsSequence() || v.size() == 0) bad(c, v, key, "expected a number, true/false, a gradient list or a list of filters");
  bool maps = false, scalars = false;
  for (const auto& e : v) (e.IsMap() ? maps : scalars) = true;
  if (maps && scalars) bad(c, v, key, "a list is either a gradient (numbers) or filters ({filter, value}), not both");
  if (maps) {
    s.kind = Setting::Kind::Filters;
    for (const auto& e : v) s.cases.push_back(condition(e));
    return s;
  }
  s.kind = Setting::Kind::Gradient;
  for (const auto& e : v) {
    if (!e.IsScalar() || isFlagText(e.Scalar())) bad(c, e, key, "a gradient is a list of numbers");
    s.points.push_back(number(e));
  }
  return s;
}

/// Checks every value a setting can take against the parameter's type and range (the registry's
/// checks and messages); gradients interpolate between checked points of an interval.
void checkSetting(const MergeConfig& c, const Setting& s, const wproj::ParamSpec& p, const std::string& key) {
  const std::string where = c.file + ":" + std::to_string(s.line) + ": '" + key + "': ";
  // the registry's checks and wording (MergeMethod::resolve), one value at a time
  auto leaf = [&](double x, bool flag) {
    const std::string w = c.spec->where();
    try {
      if (p.kind == wproj::ParamKind::Bool) {
        wproj::requireArg(flag, w.c_str(), p.name.c_str(), wproj::detail::describe(x), "true or false");
      } else {
        wproj::requireArg(!flag, w.c_str(), p.name.c_str(), std::string(x != 0 ? "true" : "false"),
                          p.kind == wproj::ParamKind::Integer ? "an integer" : "a number");
        wproj::requireArg(std::isfinite(x) && (!p.valid || p.valid(x)), w.c_str(), p.name.c_str(), x, p.expected);
      }
    } catch (const wproj::InvalidArgument& e) {
      throw CliError(where + e.what());
    }
  };
  switch (s.kind) {
    case Setting::Kind::Number: leaf(s.value, false); break;
    case Setting::Kind::Flag: leaf(s.value, true); break;
    case Setting::Kind::Gradient:
      if (p.kind == wproj::ParamKind::Bool || p.kind == wproj::ParamKind::Integer)
        throw CliError(where + "a gradient list for " + wproj::toString(p.kind) + " parameter '" + p.name +
                       "' (expected a single value)");
      for (double x : s.points) leaf(x, false);
      break;
    case Setting::Kind::Filters:
      for (const auto& cs : s.cases) checkSetting(c, cs.second, p, key);
      break;
  }
}

Settings parseParams(MergeConfig& c, const YAML::Node& n, const std::string& key, bool perModelOnly) {
  Settings out;
  if (!n || n.IsNull()) return out;
  if (!n.IsMap()) bad(c, n, key, "expected a mapping of parameter names to values");
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    const wproj::ParamSpec* p = c.spec->param(k);
    if (!p)
      throw CliError(at(c, kv.first) + "'" + key + "': parameter '" + k + "' does not apply to " + c.method +
                     (c.spec->params.empty() ? std::string(" (it takes none)") : " (expected " + c.spec->paramNames() + ")"));
    if (perModelOnly && p->kind != wproj::ParamKind::PerModel)
      throw CliError(at(c, kv.first) + "'" + key + "': parameter '" + k + "' of " + c.method +
                     " holds for the whole merge; give it under the top-level or slice 'parameters'");
    Setting s = parseSetting(c, kv.second, key + "." + k);
    checkSetting(c, s, *p, key + "." + k);
    out[k] = s;
  }
  return out;
}

MergeConfig parseConfig(const std::string& path) {
  MergeConfig c;
  c.file = path;
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw CliError(path + ": cannot read the config file");
  } catch (const YAML::Exception& e) {
    throw CliError(path + ": invalid YAML: " + e.what());
  }
  {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    c.text = ss.str();
  }
  if (!root.IsMap()) throw CliError(path + ": the config must be a YAML mapping");
  c.dir = wproj::io::detail::dirName(path);
  static const std::set<std::string> known = {"merge_method", "base_model", "models", "slices", "parameters", "dtype",
                                              "out_dtype", "tokenizer_source", "tokenizer", "chat_template", "tensors",
                                              "max_shard_size", "seed"};
  for (const auto& kv : root) {
    const std::string k = kv.first.as<std::string>();
    if (k == "modules") bad(c, kv.first, k, "per-module merges are not supported (use models or slices)");
    if (!known.count(k))
      bad(c, kv.first, k, "unknown key '" + k + "' (expected merge_method, base_model, models, slices, parameters, dtype, "
                          "out_dtype, tokenizer_source, tokenizer, chat_template, tensors, max_shard_size, seed)");
  }
  if (!root["merge_method"]) throw CliError(path + ": missing 'merge_method'");
  c.method = text(c, root["merge_method"], "merge_method");
  c.spec = wproj::findMergeMethod(c.method);
  if (!c.spec)
    throw CliError(at(c, root["merge_method"]) + "unknown merge_method '" + c.method + "' (expected one of " +
                   wproj::mergeMethodNames() + "; wproj merge --list-methods describes them)");
  c.method = c.spec->name;
  if (root["base_model"] && !root["base_model"].IsNull()) {
    if (!c.spec->acceptsBase)
      bad(c, root["base_model"], "base_model", c.method + " never reads a base model; remove 'base_model'");
    c.base = modelRef(c, root["base_model"], "base_model");
  } else if (c.spec->needsBase) {
    throw CliError(path + ": missing 'base_model' (" + c.method + " merges task vectors theta_i - theta_0)");
  }
  const bool hasModels = root["models"] && !root["models"].IsNull(), hasSlices = root["slices"] && !root["slices"].IsNull();
  if (hasModels == hasSlices)
    throw CliError(path + ": give exactly one of 'models' (whole models) and 'slices' (layer ranges)");
  if (hasModels) {
    const YAML::Node ms = root["models"];
    if (!ms.IsSequence() || ms.size() == 0) bad(c, ms, "models", "expected a non-empty list of '- model: PATH'");
    SliceSpec sl;
    sl.line = ms.Mark().line + 1;
    for (const auto& m : ms) {
      SourceSpec s;
      s.line = m.Mark().line + 1;
      if (m.IsScalar()) {
        s.model = modelRef(c, m, "models");
      } else {
        if (!m.IsMap() || !m["model"]) bad(c, m, "models", "each entry needs 'model: PATH'");
        for (const auto& kv : m) {
          const std::string k = kv.first.as<std::string>();
          if (k != "model" && k != "parameters") bad(c, kv.first, "models", "unknown key '" + k + "' (expected model, parameters)");
        }
        s.model = modelRef(c, m["model"], "models.model");
        s.params = parseParams(c, m["parameters"], "models.parameters", true);
      }
      sl.sources.push_back(s);
    }
    c.slices.push_back(sl);
  } else {
    c.fromSlices = true;
    const YAML::Node ss = root["slices"];
    if (!ss.IsSequence() || ss.size() == 0) bad(c, ss, "slices", "expected a non-empty list of '- sources: [...]'");
    for (const auto& sn : ss) {
      SliceSpec sl;
      sl.line = sn.Mark().line + 1;
      if (!sn.IsMap() || !sn["sources"]) bad(c, sn, "slices", "each slice needs 'sources'");
      for (const auto& kv : sn) {
        const std::string k = kv.first.as<std::string>();
        if (k != "sources" && k != "parameters")
          bad(c, kv.first, "slices", "unknown key '" + k + "' (expected sources, parameters)");
      }
      if (!sn["sources"].IsSequence() || sn["sources"].size() == 0) bad(c, sn["sources"], "slices.sources", "expected a non-empty list");
      for (const auto& src : sn["sources"]) {
        SourceSpec s;
        s.line = src.Mark().line + 1;
        if (!src.IsMap() || !src["model"]) bad(c, src, "slices.sources", "each source needs 'model' and 'layer_range'");
        for (const auto& kv : src) {
          const std::string k = kv.first.as<std::string>();
          if (k != "model" && k != "layer_range" && k != "parameters")
            bad(c, kv.first, "slices.sources", "unknown key '" + k + "' (expected model, layer_range, parameters)");
        }
        s.model = modelRef(c, src["model"], "slices.sources.model");
        const YAML::Node lr = src["layer_range"];
        if (!lr) bad(c, src, "slices.sources.layer_range", "missing (expected [first, end), e.g. [0, 16])");
        if (!lr.IsSequence() || lr.size() != 2) bad(c, lr, "slices.sources.layer_range", "expected two integers [first, end)");
        try {
          s.first = lr[0].as<long>();
          s.last = lr[1].as<long>();
        } catch (const YAML::Exception&) {
          bad(c, lr, "slices.sources.layer_range", "expected two integers [first, end)");
        }
        if (s.first < 0 || s.last <= s.first)
          bad(c, lr, "slices.sources.layer_range", "[" + std::to_string(s.first) + ", " + std::to_string(s.last) +
                                                       "] (expected 0 <= first < end)");
        s.hasRange = true;
        s.params = parseParams(c, src["parameters"], "slices.sources.parameters", true);
        sl.sources.push_back(s);
      }
      const long len = sl.sources[0].last - sl.sources[0].first;
      for (const auto& s : sl.sources)
        if (s.last - s.first != len)
          bad(c, sn, "slices", "the sources of a slice span different numbers of layers (" + std::to_string(len) + " and " +
                                  std::to_string(s.last - s.first) + "); every source of a slice needs the same number");
      sl.params = parseParams(c, sn["parameters"], "slices.parameters", false);
      c.slices.push_back(sl);
    }
  }
  c.params = parseParams(c, root["parameters"], "parameters", false);

  // Per slice: the models other than the base (a base listed among the sources is the base, as in mergekit).
  std::set<std::string> given;
  for (const auto& kv : c.params) given.insert(kv.first);
  for (const auto& sl : c.slices) {
    for (const auto& kv : sl.params) given.insert(kv.first);
    wproj::Index n = 0;
    for (const auto& s : sl.sources) {
      for (const auto& kv : s.params) given.insert(kv.first);
      if (s.model != c.base) ++n;
    }
    const wproj::Index lo = c.spec->minModels, hi = c.spec->maxModels;
    const std::string range = hi == lo ? "exactly " + std::to_string(lo)
                              : hi == std::numeric_limits<wproj::Index>::max() ? "at least " + std::to_string(lo)
                                                                              : std::to_string(lo) + " to " + std::to_string(hi);
    try {
      wproj::requireArg(n >= lo && n <= hi, c.spec->where().c_str(), "number of models", n, range + " fine-tuned model(s)");
    } catch (const wproj::InvalidArgument& e) {
      throw CliError(c.file + ":" + std::to_string(sl.line) + ": " + e.what() +
                     (c.base >= 0 ? " (the base model is not counted)" : ""));
    }
    // mergekit's required parameters (no default): given for every model / the whole merge
    for (const auto& ps : c.spec->params) {
      if (!ps.required) continue;
      const bool top = c.params.count(ps.name) || sl.params.count(ps.name);
      if (ps.kind != wproj::ParamKind::PerModel) {
        if (!top)
          throw CliError(c.file + ":" + std::to_string(sl.line) + ": " + c.spec->where() + ": parameter '" + ps.name +
                         "' is not given; expected a value under 'parameters' (it has no default)");
        continue;
      }
      for (const auto& s : sl.sources)
        if (s.model != c.base && !top && !s.params.count(ps.name))
          throw CliError(c.file + ":" + std::to_string(s.line) + ": " + c.spec->where() + ": parameter '" + ps.name +
                         "' is not given for model '" + c.refs[std::size_t(s.model)].raw +
                         "'; expected a value for every model (it has no default)");
    }
  }
  for (const auto& e : c.spec->exclusive) {
    if (given.count(e.first) && given.count(e.second))
      throw CliError(path + ": merge method '" + c.method + "': parameters '" + e.first + "' and '" + e.second +
                     "' are both given; expected one of them (they set the same thing)");
    std::string keep = given.count(e.first) ? e.first : given.count(e.second) ? e.second : std::string();
    if (keep.empty())
      for (const auto& p : c.spec->params)
        if (keep.empty() && (p.name == e.first || p.name == e.second)) keep = p.name;
    c.omitted.insert(keep == e.first ? e.second : e.first);
  }

  if (root["dtype"]) {
    c.dtype = text(c, root["dtype"], "dtype");
    c.dtypeGiven = true;
    if (c.dtype != "float32" && c.dtype != "float64" && c.dtype != "bfloat16" && c.dtype != "float16")
      bad(c, root["dtype"], "dtype", "'" + c.dtype + "' (expected float32, float64, bfloat16 or float16)");
  }
  if (root["out_dtype"]) {
    c.outDtype = text(c, root["out_dtype"], "out_dtype");
    bool ok = false;
    try {
      ok = wproj::io::isConvertibleFloat(wproj::io::dtypeFromString(c.outDtype));
    } catch (const std::exception&) {
    }
    if (!ok) bad(c, root["out_dtype"], "out_dtype", "'" + c.outDtype + "' (expected float32, float16, bfloat16 or float64)");
  } else if (c.dtype == "bfloat16" || c.dtype == "float16") {
    c.outDtype = c.dtype;  // mergekit saves in the compute dtype unless out_dtype is given
  } else if (c.dtypeGiven) {
    c.outDtype = c.dtype;
  }
  if (root["tokenizer_source"] && root["tokenizer"])
    bad(c, root["tokenizer"], "tokenizer", "give either 'tokenizer_source' or 'tokenizer', not both");
  YAML::Node tok = root["tokenizer_source"];
  std::string tokKey = "tokenizer_source";
  if (root["tokenizer"]) {
    const YAML::Node t = root["tokenizer"];
    if (!t.IsMap()) bad(c, t, "tokenizer", "expected a mapping with 'source'");
    for (const auto& kv : t) {
      const std::string k = kv.first.as<std::string>();
      if (k == "tokens" || k == "pad_to_multiple_of")
        bad(c, kv.first, "tokenizer." + k, "changes the vocabulary and the embeddings, which wproj does not do");
      if (k != "source") bad(c, kv.first, "tokenizer", "unknown key '" + k + "' (expected source)");
    }
    tok = t["source"];
    tokKey = "tokenizer.source";
  }
  if (tok && !tok.IsNull()) {
    c.tokenizerGiven = true;
    if (tok.IsMap()) {
      if (!tok["model"]) bad(c, tok, tokKey, "expected base, model: PATH, or a model path");
      c.tokenizerModel = modelRef(c, tok["model"], tokKey + ".model");
    } else {
      std::string s = text(c, tok, tokKey);
      if (s == "union")
        bad(c, tok, tokKey, "'union' builds a new vocabulary and permutes the embeddings, which wproj does not do; "
                            "use base or model: PATH (the models must then share one vocabulary)");
      if (s == "base") {
        if (c.base < 0) bad(c, tok, tokKey, "'base' but the config has no base_model");
        c.tokenizerModel = c.base;
      } else {
        if (s.rfind("model:", 0) == 0) s = s.substr(6);
        while (!s.empty() && s[0] == ' ') s.erase(0, 1);
        c.tokenizerModel = modelRef(c, YAML::Node(s), tokKey);
      }
    }
  } else {
    c.tokenizerModel = c.base >= 0 ? c.base : c.slices[0].sources[0].model;
  }
  if (root["chat_template"] && !root["chat_template"].IsNull()) {
    c.chatTemplate = text(c, root["chat_template"], "chat_template");
    if (c.chatTemplate.find('{') == std::string::npos || c.chatTemplate.size() < 20)
      bad(c, root["chat_template"], "chat_template",
          "'" + c.chatTemplate + "': wproj bundles no named templates (auto, chatml, ...); give the Jinja template text");
  }
  if (root["max_shard_size"]) {
    const YAML::Node n = root["max_shard_size"];
    try {
      c.maxShard = parseMergekitSize(text(c, n, "max_shard_size"), "max_shard_size");
    } catch (const CliError& e) {
      throw CliError(at(c, n) + e.what());
    }
    c.maxShardGiven = true;
  }
  if (root["seed"]) {
    const YAML::Node n = root["seed"];
    double s = -1;
    try {
      s = n.as<double>();
    } catch (const YAML::Exception&) {
    }
    if (!(s >= 0 && s <= 9007199254740992.0 && s == std::floor(s))) bad(c, n, "seed", "expected an integer in [0, 2^53]");
    c.seed = std::uint64_t(s);
  }
  if (root["tensors"] && !root["tensors"].IsNull()) {
    if (!root["tensors"].IsSequence()) bad(c, root["tensors"], "tensors", "expected a list of {pattern, action}");
    for (const auto& r : root["tensors"]) {
      if (!r.IsMap() || !r["pattern"] || !r["action"]) bad(c, r, "tensors", "each tensor rule needs 'pattern' and 'action'");
      RuleSpec s;
      s.pattern = text(c, r["pattern"], "tensors.pattern");
      try {
        compileRegex(s.pattern, "tensor rule pattern");
      } catch (const CliError& e) {
        throw CliError(at(c, r["pattern"]) + e.what());
      }
      const std::string a = text(c, r["action"], "tensors.action");
      if (a == "skip" || a == "base") s.action = wproj::TensorAction::Skip;
      else if (a == "average") s.action = wproj::TensorAction::Average;
      else if (a == "merge" || a == "project") s.action = wproj::TensorAction::Project;
      else bad(c, r["action"], "tensors.action", "'" + a + "' for pattern '" + s.pattern + "' (expected merge, average or skip)");
      c.rules.push_back(s);
    }
  }
  if (c.spec->continual) {
    if (c.fromSlices) throw CliError(path + ": " + c.method + " merges whole models in order; use 'models', not 'slices'");
    auto plain = [&](const Settings& s) {
      for (const auto& kv : s)
        if (kv.second.kind == Setting::Kind::Gradient || kv.second.kind == Setting::Kind::Filters)
          throw CliError(c.file + ":" + std::to_string(kv.second.line) + ": '" + kv.first + "': " + c.method +
                         " takes one value per parameter (no gradients or filters)");
    };
    plain(c.params);
    for (const auto& s : c.slices[0].sources) plain(s.params);
  }
  return c;
}

// ------------------------------------------------------------------------------ layer structure

/// The layer index of a tensor name `….layers.<i>.…` (any architecture; also `h.<i>` as GPT-2,
/// `layer.<i>` as BERT, `blocks.<i>`/`block.<i>`: the first such segment of the name), with the
/// position and length of the digits; -1 when the name belongs to no layer.
long layerOf(const std::string& name, std::size_t* pos = nullptr, std::size_t* len = nullptr) {
  static const std::set<std::string> stacks = {"layers", "layer", "h", "blocks", "block"};
  std::size_t start = 0;
  while (start < name.size()) {
    const std::size_t dot = name.find('.', start);
    if (dot == std::string::npos) break;
    const std::string seg = name.substr(start, dot - start);
    std::size_t e = dot + 1;
    while (e < name.size() && std::isdigit(static_cast<unsigned char>(name[e]))) ++e;
    if (stacks.count(seg) && e > dot + 1 && (e == name.size() || name[e] == '.') && e - dot - 1 < 10) {
      if (pos) *pos = dot + 1;
      if (len) *len = e - dot - 1;
      return std::stol(name.substr(dot + 1, e - dot - 1));
    }
    start = dot + 1;
  }
  return -1;
}

std::string withLayer(const std::string& name, long layer) {
  std::size_t pos = 0, len = 0;
  if (layerOf(name, &pos, &len) < 0) return name;
  return name.substr(0, pos) + std::to_string(layer) + name.substr(pos + len);
}

long numLayers(const wproj::io::Checkpoint& c) {
  long n = 0;
  for (const auto& name : c.names()) n = std::max(n, layerOf(name) + 1);
  return n;
}

/// Tensors outside the layers that mergekit puts before them (embeddings: first slice); every
/// other one (final norm, lm_head) comes after them (last slice). Both read gradient lists at
/// t = 0, as mergekit's planner does since its modular architectures (earlier versions used
/// t = 1 for the ones after the layers).
bool isPreLayer(const std::string& name) {
  return name.find("embed") != std::string::npos || name.find("wte") != std::string::npos ||
         name.find("wpe") != std::string::npos;
}

// ----------------------------------------------------------------------------------- the plan

struct Inputs {
  std::vector<std::unique_ptr<wproj::io::Checkpoint>> ckpt;  // one per MergeConfig::refs entry
  std::vector<std::unique_ptr<AdapterReader>> adapters;      // one per entry (null: none)
};

/// One slice as it runs: the fine-tuned sources (the base excluded) and where the base is read.
struct SliceRun {
  std::vector<const SourceSpec*> models;  // the merged models, in config order
  long baseFirst = 0;                     // the base's first layer in this slice
  long first0 = 0;                        // the reference model's first layer
  long length = 0;
  const SliceSpec* spec = nullptr;
};

/// One output tensor: its name, where each input is read, the layer position t for gradients.
struct OutTensor {
  std::string name;
  int slice = 0;
  double t = 0;
  std::vector<std::string> in;  // name in each merged model of the slice
  std::string baseIn;           // name in the base (when the config has one)
  int ref = 0;                  // the model the tensor's shape, dtype and copies come from
  std::string refIn;
  wproj::io::TensorInfo info;   // of the reference tensor
  bool raw = false;             // non-float or empty: copied byte for byte from the reference
  wproj::RuleDecision decision;
};

struct Plan {
  std::vector<SliceRun> slices;
  std::vector<OutTensor> tensors;  // pre-layer, the slices' layers in order, post-layer
  long outLayers = 0;
  bool layersChanged = false;
  std::vector<std::string> warnings;
  std::uint64_t maxElements = 0;
};

wproj::MergeRules buildRules(const MergeConfig& c) {
  wproj::MergeRules r;
  for (const auto& s : c.rules) r.add(s.pattern, s.action);
  return r;
}

std::string modelName(const MergeConfig& c, int i) { return c.refs[std::size_t(i)].shown(); }

Plan makePlan(const MergeConfig& c, const Inputs& in) {
  Plan p;
  const wproj::MergeRules rules = buildRules(c);
  std::vector<long> layers(c.refs.size());
  for (std::size_t i = 0; i < c.refs.size(); ++i) layers[i] = numLayers(*in.ckpt[i]);
  for (const auto& sl : c.slices) {
    SliceRun r;
    r.spec = &sl;
    const SourceSpec* baseSrc = nullptr;
    for (const auto& s : sl.sources) {
      if (s.model == c.base) baseSrc = &s;
      else r.models.push_back(&s);
    }
    if (c.fromSlices) {
      for (const auto& s : sl.sources)
        if (s.last > layers[std::size_t(s.model)])
          throw CliError(c.file + ":" + std::to_string(s.line) + ": 'slices.sources.layer_range': [" + std::to_string(s.first) +
                         ", " + std::to_string(s.last) + "] lies outside model '" + modelName(c, s.model) + "', which has " +
                         std::to_string(layers[std::size_t(s.model)]) + " layers");
      r.length = sl.sources[0].last - sl.sources[0].first;
      r.first0 = (baseSrc ? baseSrc : r.models.empty() ? &sl.sources[0] : r.models[0])->first;
      r.baseFirst = baseSrc ? baseSrc->first : r.first0;
      if (c.base >= 0 && r.baseFirst + r.length > layers[std::size_t(c.base)])
        throw CliError(c.file + ":" + std::to_string(sl.line) + ": the base model '" + modelName(c, c.base) + "' has " +
                       std::to_string(layers[std::size_t(c.base)]) + " layers; this slice reads its layers " +
                       std::to_string(r.baseFirst) + " to " + std::to_string(r.baseFirst + r.length - 1) +
                       " (list the base among the sources with its layer_range)");
    } else {
      const int refModel = c.base >= 0 ? c.base : sl.sources[0].model;
      r.length = layers[std::size_t(refModel)];
      for (const auto& s : sl.sources)
        if (layers[std::size_t(s.model)] != r.length)
          throw CliError(c.file + ":" + std::to_string(s.line) + ": model '" + modelName(c, s.model) + "' has " +
                         std::to_string(layers[std::size_t(s.model)]) + " layers but '" + modelName(c, refModel) + "' has " +
                         std::to_string(r.length) + "; merge models of one architecture, or choose layer ranges with 'slices'");
    }
    p.slices.push_back(r);
  }
  auto refOf = [&](const SliceRun& r) { return c.base >= 0 ? c.base : r.models.empty() ? r.spec->sources[0].model : r.models[0]->model; };
  // An output tensor of slice si read as `inName(model's first layer)` from every input.
  auto add = [&](std::size_t si, const std::string& outName, const std::string& refIn, double t, bool layered, long k) {
    const SliceRun& r = p.slices[si];
    OutTensor o;
    o.name = outName;
    o.slice = int(si);
    o.t = t;
    o.ref = refOf(r);
    o.refIn = refIn;
    for (const SourceSpec* s : r.models) o.in.push_back(layered ? withLayer(refIn, (c.fromSlices ? s->first : 0) + k) : refIn);
    if (c.base >= 0) o.baseIn = layered ? withLayer(refIn, (c.fromSlices ? r.baseFirst : 0) + k) : refIn;
    p.tensors.push_back(std::move(o));
  };
  // Outside the layers: from the first slice (embeddings) or the last (the rest), as mergekit.
  const int ref0 = refOf(p.slices.front()), refN = refOf(p.slices.back());
  for (const auto& n : in.ckpt[std::size_t(ref0)]->names())
    if (layerOf(n) < 0 && isPreLayer(n)) add(0, n, n, 0.0, false, 0);
  long outLayer = 0;
  for (std::size_t si = 0; si < p.slices.size(); ++si) {
    const SliceRun& r = p.slices[si];
    const auto& ref = *in.ckpt[std::size_t(refOf(r))];
    const long refFirst = c.fromSlices ? (c.base >= 0 ? r.baseFirst : r.first0) : 0;
    std::map<long, std::vector<std::string>> byLayer;
    for (const auto& n : ref.names()) {
      const long l = layerOf(n);
      if (l >= refFirst && l < refFirst + r.length) byLayer[l].push_back(n);
    }
    for (long k = 0; k < r.length; ++k) {
      const double t = r.length > 1 ? double(k) / double(r.length - 1) : 1.0;
      // the reference's layer refFirst + k becomes output layer outLayer; each source reads its own layer
      for (const auto& n : byLayer[refFirst + k]) add(si, withLayer(n, outLayer), n, t, true, k);
      ++outLayer;
    }
  }
  for (const auto& n : in.ckpt[std::size_t(refN)]->names())
    if (layerOf(n) < 0 && !isPreLayer(n)) add(p.slices.size() - 1, n, n, 0.0, false, 0);
  p.outLayers = outLayer;
  p.layersChanged = outLayer != numLayers(*in.ckpt[std::size_t(ref0)]);

  // Every input exists with the reference's shape (unless a rule keeps the reference tensor).
  std::set<std::string> outNames;
  for (auto& o : p.tensors) {
    if (!outNames.insert(o.name).second) throw CliError("two inputs map to the output tensor '" + o.name + "'");
    const auto& refCk = *in.ckpt[std::size_t(o.ref)];
    o.info = refCk.info(o.refIn);
    const auto& t = o.info;
    o.raw = !wproj::io::isConvertibleFloat(t.dtype) || t.count() == 0;
    o.decision = rules.decide(o.name, t.rows(), t.cols(), c.spec->elementwise);
    if (o.raw || o.decision.action == wproj::TensorAction::Skip) continue;
    p.maxElements = std::max<std::uint64_t>(p.maxElements, t.count());
    auto check = [&](int model, const std::string& name, const std::string& what) {
      const auto& m = *in.ckpt[std::size_t(model)];
      if (!m.contains(name))
        throw CliError("tensor '" + name + "' is missing from " + what + " (" + m.path() + "); add a rule {pattern: '" + o.name +
                       "', action: skip} to keep the " + (c.base >= 0 ? "base" : "first model's") + " tensor");
      const auto& mt = m.info(name);
      if (mt.shape != t.shape)
        throw CliError("shape mismatch for tensor '" + name + "': " + t.shapeString() + " in the " +
                       (c.base >= 0 ? "base model" : "first model") + " but " + mt.shapeString() + " in " + what + " (" +
                       m.path() + ") - a different vocabulary? add a rule {pattern: '" + o.name +
                       "', action: skip} to keep the " + (c.base >= 0 ? "base" : "first model's") + " tensor");
      if (!wproj::io::isReadableAsReal(mt.dtype))
        throw CliError("tensor '" + name + "' of model " + m.path() + " has dtype " + wproj::io::dtypeName(mt.dtype));
    };
    const SliceRun& r = p.slices[std::size_t(o.slice)];
    for (std::size_t i = 0; i < r.models.size(); ++i) check(r.models[i]->model, o.in[i], "model " + std::to_string(i + 1));
  }
  // Tensors a model has that the output does not (whole-model merges only; slices pick layers).
  if (!c.fromSlices)
    for (const auto& s : c.slices[0].sources) {
      const auto& m = *in.ckpt[std::size_t(s.model)];
      for (const auto& n : m.names())
        if (!outNames.count(n)) {
          const auto d = rules.decide(n, 0, 0, true);
          if (d.action != wproj::TensorAction::Skip)
            throw CliError("tensor '" + n + "' of model '" + modelName(c, s.model) + "' (" + m.path() + ") is not in the " +
                           (c.base >= 0 ? "base" : "first") + " model; add a rule {pattern: '" + n + "', action: skip} to drop it");
          p.warnings.push_back("tensor '" + n + "' of model " + m.path() + " is not in the reference model: dropped");
        }
    }
  return p;
}

/// The values that hold for one output tensor (mergekit's ConfigReader): per model, the
/// source's own parameters, then the slice's, then the top level, then the registry's default;
/// global ones from the slice, then the top level. Filters see the model's input name (per
/// model) or the output name (global), as in mergekit.
wproj::TensorMergeParams tensorParams(const MergeConfig& c, const Plan& p, const OutTensor& o) {
  const SliceRun& r = p.slices[std::size_t(o.slice)];
  wproj::TensorMergeParams tp;
  tp.models.resize(r.models.size());
  auto find = [&](const Settings& s, const std::string& k, const std::string& name) -> std::optional<double> {
    const auto it = s.find(k);
    if (it == s.end()) return std::nullopt;
    return evaluate(it->second, name, o.t);
  };
  for (const auto& ps : c.spec->params) {
    if (c.omitted.count(ps.name)) continue;
    if (ps.kind == wproj::ParamKind::PerModel) {
      for (std::size_t i = 0; i < r.models.size(); ++i) {
        std::optional<double> v = find(r.models[i]->params, ps.name, o.in[i]);
        if (!v) v = find(r.spec->params, ps.name, o.in[i]);
        if (!v) v = find(c.params, ps.name, o.in[i]);
        if (!v && ps.required)
          throw CliError(c.file + ": tensor '" + o.name + "': no value of parameter '" + ps.name + "' for model '" +
                         c.refs[std::size_t(r.models[i]->model)].raw + "' (no filter matches and it has no default)");
        tp.models[i][ps.name] = v ? *v : ps.defaultValue;
      }
    } else {
      std::optional<double> v = find(r.spec->params, ps.name, o.name);
      if (!v) v = find(c.params, ps.name, o.name);
      if (!v && ps.required)
        throw CliError(c.file + ": tensor '" + o.name + "': no value of parameter '" + ps.name +
                       "' (no filter matches and it has no default)");
      tp.global[ps.name] = v ? *v : ps.defaultValue;
    }
  }
  return tp;
}

/// Peak memory of one tensor's merge: θ₀, the method's working set (the incoming tensor, its
/// state and the result; averaged tensors: a running sum) and the mapped pages of the tensor
/// being read.
std::uint64_t tensorBytes(const MergeConfig& c, const Plan& p, const OutTensor& o) {
  if (o.raw) return o.info.bytes();
  const std::uint64_t s = c.dtype == "float64" ? 8 : 4;
  const wproj::Index rows = o.info.rows(), cols = o.info.cols();
  const std::uint64_t tensor = std::uint64_t(rows) * std::uint64_t(cols) * s;
  const wproj::Index T = wproj::Index(p.slices[std::size_t(o.slice)].models.size());
  std::uint64_t work = tensor;
  const wproj::TensorAction a = o.decision.action;
  if (a == wproj::TensorAction::Project || c.spec->continual)
    work += c.spec->workingSet ? c.spec->workingSet(rows, cols, T, std::size_t(s)) : 4 * tensor;
  else if (a == wproj::TensorAction::Average)
    work += 2 * tensor;
  if (a != wproj::TensorAction::Skip) work += o.info.bytes() + (c.base >= 0 ? tensor : 0);  // + θ₀ again for ‖θ − θ₀‖
  return work;
}

wproj::io::DType outDtypeOf(const MergeConfig& c, const wproj::io::TensorInfo& t) {
  if (!wproj::io::isConvertibleFloat(t.dtype)) return t.dtype;
  return c.outDtype.empty() ? t.dtype : wproj::io::dtypeFromString(c.outDtype);
}

// ------------------------------------------------------------------------------- the merge run

/// mergekit's bfloat16/float16 compute dtype: every input rounded to it, and the result.
template <typename Matrix>
void roundTo(Matrix& m, const std::string& dtype) {
  if (dtype == "bfloat16") {
    for (wproj::Index k = 0; k < m.size(); ++k)
      m.data()[k] = typename Matrix::Scalar(wproj::io::bf16ToDouble(wproj::io::doubleToBf16(double(m.data()[k]))));
  } else if (dtype == "float16") {
    for (wproj::Index k = 0; k < m.size(); ++k)
      m.data()[k] = typename Matrix::Scalar(wproj::io::halfToDouble(wproj::io::doubleToHalf(double(m.data()[k]))));
  }
}

/// Reads one tensor into owned memory (straight from the mapped bytes, then the mapped pages are
/// released), with the model's adapter applied and rounded to the compute dtype.
template <typename Scalar>
wproj::MergeMatrix<Scalar> fetch(const MergeConfig& c, const Inputs& in, int model, const std::string& name,
                                 wproj::Index first = 0, wproj::Index count = -1) {
  const auto& ck = *in.ckpt[std::size_t(model)];
  wproj::MergeMatrix<Scalar> t;
  const wproj::io::TensorInfo& ti = ck.info(name);
  const wproj::Index rows = ti.rows(), cols = ti.cols();
  if (count < 0) count = rows - first;  // rows [first, first + count) of the tensor
  if (wproj::io::dtypeSize(ti.dtype) > 0) {
    // Row blocks of about 1 M entries, each block's mapped pages dropped once it is copied: the
    // resident set grows by the tensor, not by the tensor and its file pages (or a decoded copy).
    const wproj::Index step = std::max<wproj::Index>(1, (wproj::Index(1) << 20) / std::max<wproj::Index>(1, cols));
    std::vector<Scalar> buf(std::size_t(std::min(step, count) * cols));
    t.resize(count, cols);
    for (wproj::Index r0 = 0; r0 < count; r0 += step) {
      const wproj::Index h = std::min(step, count - r0);
      ck.readRows<Scalar>(name, first + r0, h, buf.data(), true);
      t.middleRows(r0, h) = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(buf.data(), h, cols);
    }
  } else {
    {
      const auto v = ck.view<Scalar>(name);
      copyTiled(t, v.map().middleRows(first, count));
    }
    ck.release(name);
  }
  if (in.adapters[std::size_t(model)]) {
    if (first != 0 || count != rows) throw std::logic_error("fetch: a row range of a model with a LoRA adapter");
    in.adapters[std::size_t(model)]->adjust(name, t);
  }
  roundTo(t, c.dtype);
  return t;
}

struct TensorRow {
  std::string method;
  double norm = 0, deltaNorm = std::numeric_limits<double>::quiet_NaN(), seconds = 0;
  unsigned blocks = 1;  // row blocks merged in parallel
};

/// The report's norms of a merged tensor: ‖θ‖ and, with a base, ‖θ − θ₀‖.
template <typename Scalar>
void setNorms(const MergeConfig& c, const Inputs& in, const OutTensor& o, const wproj::MergeMatrix<Scalar>& out, TensorRow& row) {
  row.norm = double(out.norm());
  if (c.base >= 0) row.deltaNorm = double((out - fetch<Scalar>(c, in, c.base, o.baseIn)).norm());
}

/// Merges one output tensor by its rule: the method's per-tensor form with the values that hold
/// for this tensor, the mean of the models, or the reference tensor kept.
template <typename Scalar>
wproj::MergeMatrix<Scalar> mergeOne(const MergeConfig& c, const Plan& p, const Inputs& in, const OutTensor& o, TensorRow& row,
                                    wproj::Index first = 0, wproj::Index count = -1) {
  const SliceRun& r = p.slices[std::size_t(o.slice)];
  const wproj::Index T = wproj::Index(r.models.size());
  auto model = [&](wproj::Index i) { return fetch<Scalar>(c, in, r.models[std::size_t(i)]->model, o.in[std::size_t(i)], first, count); };
  auto base = [&]() { return fetch<Scalar>(c, in, c.base, o.baseIn, first, count); };
  wproj::MergeMatrix<Scalar> out;
  switch (o.decision.action) {
    case wproj::TensorAction::Skip:
      row.method = c.base >= 0 ? "kept from the base" : "kept from the first model";
      out = fetch<Scalar>(c, in, o.ref, o.refIn, first, count);
      break;
    case wproj::TensorAction::Average:
      if (c.base >= 0) {
        // θ₀ + the mean of the (weighted) task vectors, summed as the library's ModelMerger does
        row.method = "mean of the task vectors";
        const wproj::TensorMergeParams tp = tensorParams(c, p, o);
        out = base();
        auto tau = [&](wproj::Index i) {
          wproj::MergeMatrix<Scalar> theta = model(i);
          if (theta.rows() != out.rows() || theta.cols() != out.cols())
            throw CliError("tensor '" + o.in[std::size_t(i)] + "' of model " + std::to_string(i + 1) + " has another shape than the base's");
          theta -= out;
          const auto it = tp.models[std::size_t(i)].find("weight");
          if (it != tp.models[std::size_t(i)].end() && it->second != 1.0) theta *= Scalar(it->second);
          return theta;
        };
        wproj::detail::SumAccumulator<Scalar> acc("wproj merge", "mean of task vectors", out.rows(), out.cols(), T, nullptr,
                                                  1.0, true);
        out += wproj::detail::drain(acc, tau);
      } else {
        row.method = "mean of the models";
        out = model(0);
        for (wproj::Index i = 1; i < T; ++i) out += model(i);
        out /= Scalar(T);
      }
      break;
    case wproj::TensorAction::Project: {
      row.method = c.method;
      wproj::TensorMergeInputs<Scalar> ti;
      ti.name = o.name;
      ti.numModels = T;
      ti.hasBase = c.base >= 0;
      if (ti.hasBase) ti.base = base;
      ti.model = model;
      ti.seed = c.seed;
      try {
        out = c.spec->mergeTensor(tensorParams(c, p, o), ti);
      } catch (const wproj::InvalidArgument& e) {
        throw CliError(std::string("tensor '") + o.name + "': " + e.what());
      }
      break;
    }
  }
  roundTo(out, c.dtype);
  if (!out.allFinite()) throw CliError("the merged tensor '" + o.name + "' has non-finite entries");
  if (count < 0) setNorms(c, in, o, out, row);  // a row block: set once the whole tensor is assembled
  return out;
}


/// Merges every tensor on `threads` threads: each takes the next tensor (or row block of a large
/// tensor) in plan order once the estimates of the work in flight leave room in `budget` (one
/// runs whatever its size). Each tensor's result depends on its inputs only, and the writer places
/// it by name, so the output is the same bytes for any thread count.
template <typename Scalar>
std::vector<TensorRow> mergeAll(const MergeConfig& c, const Plan& p, const Inputs& in, wproj::io::CheckpointWriter& w,
                                Progress& progress, unsigned threads, std::uint64_t budget, const std::vector<char>& mine) {
  std::vector<TensorRow> rows(p.tensors.size());
  // Work items: whole tensors, or row blocks of a large tensor whose rows merge independently
  // (a row-separable method, the mean, or a kept tensor; no LoRA applied on read), so that one
  // large tensor also uses every core. Blocks go to the tensor's matrix; the last block to
  // finish writes it. Each row of the result has the same bits either way.
  struct Item {
    std::size_t k;
    wproj::Index first, count;  // count < 0: the whole tensor
    std::uint64_t need;
  };
  struct Assembly {
    wproj::MergeMatrix<Scalar> out;
    unsigned left = 0;
  };
  std::map<std::size_t, Assembly> assembly;
  std::vector<Item> todo;
  const bool adapters = std::any_of(in.adapters.begin(), in.adapters.end(), [](const auto& a) { return a != nullptr; });
  const std::uint64_t s = c.dtype == "float64" ? 8 : 4;
  for (std::size_t k = 0; k < p.tensors.size(); ++k) {
    const OutTensor& o = p.tensors[k];
    if (o.raw || (!mine.empty() && !mine[k])) continue;
    const std::uint64_t need = tensorBytes(c, p, o);
    const wproj::Index nrows = o.info.rows();
    const bool separable = o.decision.action != wproj::TensorAction::Project || c.spec->rowSeparable;
    const unsigned blocks = threads > 1 && separable && !adapters && std::uint64_t(o.info.count()) * s >= (std::uint64_t(1) << 20) &&
                                    nrows >= wproj::Index(2 * threads)
                                ? threads
                                : 1u;
    if (blocks == 1) {
      todo.push_back({k, 0, -1, need});
      continue;
    }
    assembly[k].left = blocks;
    rows[k].blocks = blocks;
    const std::uint64_t share = (need + std::uint64_t(o.info.count()) * s) / blocks;  // + the assembled tensor
    for (unsigned b = 0; b < blocks; ++b) {
      const wproj::Index r0 = nrows * wproj::Index(b) / wproj::Index(blocks), r1 = nrows * wproj::Index(b + 1) / wproj::Index(blocks);
      todo.push_back({k, r0, r1 - r0, share});
    }
  }
  std::mutex mu, writeMu;
  std::condition_variable cv;
  std::size_t next = 0;
  std::uint64_t inUse = 0;
  unsigned running = 0;
  std::exception_ptr error;
  auto worker = [&]() {
    for (;;) {
      Item item{};
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return error || next == todo.size() || running == 0 || inUse + todo[next].need <= budget; });
        if (error || next == todo.size()) return;
        item = todo[next++];
        inUse += item.need;
        ++running;
      }
      try {
        const OutTensor& o = p.tensors[item.k];
        const auto t0 = std::chrono::steady_clock::now();
        if (item.count < 0) {
          const wproj::MergeMatrix<Scalar> theta = mergeOne<Scalar>(c, p, in, o, rows[item.k]);
          rows[item.k].seconds = since(t0);
          std::lock_guard<std::mutex> lock(writeMu);
          w.write(o.name, theta);
          progress.advance(double(o.info.bytes()), o.name);
        } else {
          TensorRow part;
          const wproj::MergeMatrix<Scalar> block = mergeOne<Scalar>(c, p, in, o, part, item.first, item.count);
          Assembly* a = nullptr;
          {
            std::lock_guard<std::mutex> lock(mu);
            a = &assembly.at(item.k);
            if (a->out.size() == 0) a->out.resize(o.info.rows(), o.info.cols());
            rows[item.k].method = part.method;
          }
          a->out.middleRows(item.first, item.count) = block;  // disjoint rows: no lock needed
          bool last = false;
          {
            std::lock_guard<std::mutex> lock(mu);
            rows[item.k].seconds += since(t0);
            last = --a->left == 0;
          }
          if (last) {
            setNorms(c, in, o, a->out, rows[item.k]);
            {
              std::lock_guard<std::mutex> lock(writeMu);
              w.write(o.name, a->out);
            }
            std::lock_guard<std::mutex> lock(mu);
            a->out = wproj::MergeMatrix<Scalar>();
          }
          std::lock_guard<std::mutex> lock(writeMu);
          progress.advance(double(o.info.bytes()) * double(item.count) / double(o.info.rows()), o.name);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        inUse -= item.need;
        --running;
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return rows;
}

/// OPCM, tensor by tensor: pass 1 builds each tensor's accumulator S over the models in order
/// (spilled to an unnamed temporary file) and the global norms; pass 2 writes θ₀ + λS.
template <typename Scalar>
std::vector<TensorRow> mergeOpcm(const MergeConfig& c, const Plan& p, const Inputs& in, wproj::io::CheckpointWriter& w,
                                 Progress& progress, const std::string& spillDir, double& scale) {
  using Matrix = wproj::MergeMatrix<Scalar>;
  const SliceRun& r = p.slices[0];
  const std::size_t T = r.models.size();
  std::vector<TensorRow> rows(p.tensors.size());
  std::vector<std::size_t> todo;
  for (std::size_t k = 0; k < p.tensors.size(); ++k)
    if (!p.tensors[k].raw) todo.push_back(k);
  if (todo.empty()) return rows;
  const wproj::TensorMergeParams tp = tensorParams(c, p, p.tensors[todo[0]]);  // no gradients or filters: the same for all
  const double alpha = tp.at("alpha");
  auto base = [&](const std::string& n) { return fetch<Scalar>(c, in, c.base, n); };
  auto model = [&](std::size_t i, const std::string& n) {
    Matrix theta = fetch<Scalar>(c, in, r.models[i]->model, n);
    const double wgt = tp.at(i, "weight");
    if (wgt != 1.0) {
      const Matrix b = base(n);
      theta = b + Scalar(wgt) * (theta - b);
    }
    return theta;
  };
  std::vector<std::string> names;
  for (std::size_t k : todo) names.push_back(p.tensors[k].name);
  std::map<std::string, std::size_t> slot;
  for (std::size_t k : todo) slot[p.tensors[k].name] = k;
  wproj::io::SpillFile spill(spillDir);
  const wproj::OpcmStreamingResult res = wproj::opcmMergeStreaming<Scalar>(
      names, wproj::Index(T), alpha, buildRules(c), base,
      [&](wproj::Index i, const std::string& n) { return model(std::size_t(i), n); },
      [&](const std::string& n, const Matrix& theta) {
        TensorRow& row = rows[slot.at(n)];
        row.norm = double(theta.norm());
        w.write(n, theta);
      },
      spill, [&](const std::string& n, int) { progress.advance(0.5 * double(p.tensors[slot.at(n)].info.bytes()), n); });
  for (std::size_t j = 0; j < todo.size(); ++j) {
    rows[todo[j]].method = res.report.tensors[j].method;
    rows[todo[j]].deltaNorm = res.report.tensors[j].deltaNorm;
  }
  scale = res.scale;
  return rows;
}

// ---------------------------------------------------------------------------- the output folder

/// Files mergekit copies from the tokenizer's donor model.
const std::vector<std::string>& tokenizerFiles() {
  static const std::vector<std::string> f = {"tokenizer_config.json", "special_tokens_map.json", "tokenizer.json",
                                             "tokenizer.model", "added_tokens.json", "merges.txt", "vocab.json",
                                             "chat_template.jinja", "generation_config.json", "chat_template.json"};
  return f;
}

/// Files a mergekit-style output folder of wproj holds besides the shards and the index.
bool isMergeFolderFile(const std::string& n) {
  if (n == "config.json" || n == "README.md" || n == "mergekit_config.yml") return true;
  for (const auto& f : tokenizerFiles())
    if (n == f) return true;
  return false;
}

/// The folder of a model reference (the model itself when it is a folder, else the file's folder
/// for an index.json; "" for a single file).
std::string folderOf(const ModelRef& r) {
  if (wproj::io::detail::isDirectory(r.path)) return r.path;
  if (wproj::io::detail::endsWith(r.path, ".index.json")) return wproj::io::detail::dirName(r.path);
  return std::string();
}

std::string readText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw CliError("cannot read '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void writeText(const std::string& path, const std::string& text) {
  wproj::io::AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

void copyFile(const std::string& from, const std::string& to) { writeText(to, readText(from)); }

const char* torchDtype(const std::string& d) {
  if (d == "float32" || d == "F32") return "float32";
  if (d == "float64" || d == "F64") return "float64";
  if (d == "bfloat16" || d == "BF16") return "bfloat16";
  if (d == "float16" || d == "F16") return "float16";
  return nullptr;
}

/// mergekit's model card: the method, the models and the configuration.
std::string modelCard(const MergeConfig& c, const Plan& p, const std::string& name) {
  std::set<std::string> seen;
  std::vector<std::string> merged;
  for (const auto& sl : p.slices)
    for (const SourceSpec* s : sl.models)
      if (seen.insert(c.refs[std::size_t(s->model)].raw).second) merged.push_back(c.refs[std::size_t(s->model)].raw);
  std::ostringstream os;
  os << "---\nbase_model:\n";
  if (c.base >= 0) os << "- " << c.refs[std::size_t(c.base)].raw << "\n";
  for (const auto& m : merged) os << "- " << m << "\n";
  os << "library_name: transformers\ntags:\n- mergekit\n- merge\n- wproj\n---\n";
  os << "# " << name << "\n\n";
  os << "This is a merge of pre-trained language models made with wproj " WPROJ_VERSION_STRING
        " (`wproj merge`, which reads mergekit configurations).\n\n";
  os << "## Merge Details\n\n### Merge Method\n\nThis model was merged using the " << c.method << " merge method ("
     << c.spec->title << "; " << c.spec->reference << ")";
  if (c.base >= 0) os << " using " << c.refs[std::size_t(c.base)].raw << " as a base";
  os << ".\n\n### Models Merged\n\nThe following models were included in the merge:\n";
  for (const auto& m : merged) os << "* " << m << "\n";
  os << "\n### Configuration\n\nThe following YAML configuration was used to produce this model:\n\n```yaml\n" << c.text;
  if (!c.text.empty() && c.text.back() != '\n') os << "\n";
  os << "```\n";
  return os.str();
}

/// mergekit's output files besides the tensors, written into the staging folder `dir`.
void writeModelFiles(const MergeConfig& c, const Plan& p, const std::string& dir, const std::string& outName,
                     const std::string& floatDtype) {
  const int donor = c.base >= 0 ? c.base : c.slices[0].sources[0].model;
  const std::string donorDir = folderOf(c.refs[std::size_t(donor)]);
  nlohmann::json cfg = nlohmann::json::parse(readText(donorDir + "/config.json"), nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) throw CliError(donorDir + "/config.json: not a JSON object");
  if (const char* td = torchDtype(floatDtype)) cfg["torch_dtype"] = td;
  if (c.fromSlices || p.layersChanged) {
    if (cfg.contains("num_hidden_layers") || !cfg.contains("text_config")) cfg["num_hidden_layers"] = p.outLayers;
    else cfg["text_config"]["num_hidden_layers"] = p.outLayers;
  }
  writeText(dir + "/config.json", cfg.dump(2) + "\n");
  const std::string tokDir = folderOf(c.refs[std::size_t(c.tokenizerModel)]);
  bool any = false;
  for (const auto& f : tokenizerFiles()) {
    if (tokDir.empty() || !wproj::io::detail::isRegularFile(tokDir + "/" + f)) continue;
    if (!c.chatTemplate.empty() && (f == "chat_template.jinja" || f == "chat_template.json")) continue;  // replaced below
    copyFile(tokDir + "/" + f, dir + "/" + f);
    any = any || f == "tokenizer_config.json";
  }
  if (c.tokenizerGiven && !any)
    throw CliError(c.file + ": tokenizer source '" + c.refs[std::size_t(c.tokenizerModel)].raw +
                   "' has no tokenizer_config.json to copy");
  if (!c.chatTemplate.empty()) {
    if (!any) throw CliError(c.file + ": 'chat_template' needs a tokenizer_config.json in the tokenizer's model folder");
    nlohmann::json tc = nlohmann::json::parse(readText(dir + "/tokenizer_config.json"), nullptr, false);
    if (tc.is_discarded() || !tc.is_object()) throw CliError(tokDir + "/tokenizer_config.json: not a JSON object");
    tc["chat_template"] = c.chatTemplate;
    writeText(dir + "/tokenizer_config.json", tc.dump(2) + "\n");
  }
  writeText(dir + "/README.md", modelCard(c, p, outName));
  writeText(dir + "/mergekit_config.yml", c.text);
}

/// mergekit's shard names: model-0000i-of-0000N.safetensors and an index, also for one shard.
void hfShardNames(const std::string& dir) {
  const std::string index = dir + "/model.safetensors.index.json";
  nlohmann::json j;
  if (wproj::io::detail::isRegularFile(index)) {
    j = nlohmann::json::parse(readText(index));
  } else {
    const std::string one = dir + "/model.safetensors", named = dir + "/model-00001-of-00001.safetensors";
    if (::rename(one.c_str(), named.c_str()) != 0) throw CliError("cannot rename '" + one + "'");
    wproj::io::SafetensorsReader rd(named);
    std::uint64_t total = 0;
    j["metadata"] = nlohmann::json::object();
    j["weight_map"] = nlohmann::json::object();
    for (const auto& t : rd.tensors()) {
      j["weight_map"][t.name] = "model-00001-of-00001.safetensors";
      total += t.bytes();
    }
    j["metadata"]["total_size"] = total;
  }
  j["metadata"]["merged_by"] = "wproj " WPROJ_VERSION_STRING;
  writeText(index, j.dump(2) + "\n");
}

/// True when `dir` is an output folder of an earlier mergekit-style `wproj merge`.
bool isOurMergeFolder(const std::string& dir) {
  const std::string index = dir + "/model.safetensors.index.json";
  if (!wproj::io::detail::isRegularFile(index)) return false;
  const nlohmann::json j = nlohmann::json::parse(readText(index), nullptr, false);
  return !j.is_discarded() && j.is_object() && j.contains("metadata") && j["metadata"].is_object() &&
         j["metadata"].contains("merged_by") && j["metadata"]["merged_by"].is_string() &&
         j["metadata"]["merged_by"].get<std::string>().rfind("wproj", 0) == 0;
}

// ----------------------------------------------------------------------------------- the command


std::uint64_t physicalMemory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? std::uint64_t(pages) * std::uint64_t(page) : (std::uint64_t(8) << 30);
}

/// Output locations checked before any work. A folder may be replaced when it holds only files
/// wproj writes (an earlier mergekit-style merge output also its config, card and tokenizer).
bool checkMergeOutputs(const MergeOptions& o) {
  if (isFileOutput(o.out) || !wproj::io::detail::isDirectory(o.out) || !isOurMergeFolder(o.out))
    return checkOutputs(o.out, o.report);
  for (const auto& n : wproj::io::detail::listDirectory(o.out)) {
    struct stat e;
    const bool named = wproj::io::detail::endsWith(n, ".safetensors") || n == "model.safetensors.index.json" || isMergeFolderFile(n);
    if (!named || ::lstat((o.out + "/" + n).c_str(), &e) != 0 || !S_ISREG(e.st_mode))
      throw CliError("-o '" + o.out + "' holds '" + n +
                     "', which wproj does not write; a folder output replaces the whole folder: use a new or empty folder");
  }
  checkWritableFolder(parentOf(o.out), "-o", o.out);
  if (!o.report.empty()) {
    checkOutputFile(o.report, "--report", true);
    if (isInside(canonicalPath(o.report), canonicalPath(o.out)))
      throw CliError("--report '" + o.report + "' lies inside the output folder '" + o.out +
                     "', which is replaced as a whole; write the report elsewhere");
  }
  return false;
}

std::string valueText(const Setting& s) {
  std::ostringstream os;
  switch (s.kind) {
    case Setting::Kind::Number: os << s.value; break;
    case Setting::Kind::Flag: os << (s.value != 0 ? "true" : "false"); break;
    case Setting::Kind::Gradient:
      os << "[";
      for (std::size_t i = 0; i < s.points.size(); ++i) os << (i ? ", " : "") << s.points[i];
      os << "]";
      break;
    case Setting::Kind::Filters:
      os << "{";
      for (std::size_t i = 0; i < s.cases.size(); ++i)
        os << (i ? ", " : "") << (s.cases[i].first.empty() ? "*" : s.cases[i].first) << ": " << valueText(s.cases[i].second);
      os << "}";
      break;
  }
  return os.str();
}

}  // namespace

void runMerge(const MergeOptions& o, const RankGroup* group) {
  // Under mpirun every stage is collective: a failure on one rank fails the stage on every rank,
  // with that rank's message, before any rank goes on (nothing is left half-written or waiting).
  CollectiveStages stages(group);
  const bool dist = stages.distributed();
  const int rank = stages.rank(), ranks = stages.size();
  auto stage = [&](const std::string& name, const std::function<void()>& f) { stages.run(name, f); };

  bool fileOut = false;
  MergeConfig c;
  Inputs in;
  Plan p;
  unsigned threads = 1;
  std::uint64_t budget = 0, largest = 0, peak = 0, maxShard = 0;
  bool hfFolder = false;
  std::ostringstream os;  // the plan: printed by --dry-run only
  stage("reading the configuration and the models", [&]() {
  // Every output location is checked before any work.
  fileOut = o.dryRun ? isFileOutput(o.out) : checkMergeOutputs(o);
  if (dist && fileOut && !o.dryRun)
    throw CliError("-o '" + o.out + "': a merge on " + std::to_string(ranks) +
                   " ranks writes a sharded folder, one or more shards per rank; give a folder (-o DIR)");
  c = parseConfig(o.config);
  if (!c.spec->continual && !c.spec->hasTensorForm())
    throw CliError(o.config + ": merge method '" + c.method + "' has no per-tensor form in this version");
  for (const auto& r : c.refs) {
    in.ckpt.push_back(std::make_unique<wproj::io::Checkpoint>(r.path));
    in.adapters.emplace_back();
    if (!r.adapter.empty()) {
      in.adapters.back() = std::make_unique<AdapterReader>(r.adapter);
      in.adapters.back()->checkAgainst(*in.ckpt.back(), "model '" + r.raw + "'");
    }
  }
  p = makePlan(c, in);
  });
  if (dist) {
    // Every rank must see the same configuration and the same input tensors.
    std::ostringstream fp;
    fp << c.text << "\n";
    for (const auto& ck : in.ckpt) fp << ck->totalBytes() << ";";
    for (const auto& t : p.tensors)
      fp << "\n" << t.name << " " << t.info.shapeString() << " " << t.info.dtypeString() << " " << t.raw << " "
         << int(t.decision.action);
    group->requireSame(fp.str(), "configuration or view of the input models (config text, tensor names, shapes, dtypes)");
  }
  stage("planning", [&]() {
  // Ranks on one machine share its cores and memory.
  const unsigned local = dist ? unsigned(std::max(1, group->localSize())) : 1u;
  threads = c.spec->continual ? 1u
            : o.threads > 0   ? o.threads
                              : std::max(1u, std::thread::hardware_concurrency() / local);
  budget = o.memoryBudget.empty() ? physicalMemory() / 2 / local : parseMergekitSize(o.memoryBudget, "--memory-budget");
  std::vector<std::uint64_t> sizes;
  for (const auto& t : p.tensors)
    if (!t.raw) sizes.push_back(tensorBytes(c, p, t));
  std::sort(sizes.rbegin(), sizes.rend());
  if (!sizes.empty()) largest = sizes[0];
  for (std::size_t i = 0; i < sizes.size() && i < threads; ++i)
    if (i == 0 || peak + sizes[i] <= budget) peak += sizes[i];
  peak += 8u << 20;

  std::vector<std::string> inputs;
  for (const auto& ck : in.ckpt) {
    auto f = filesOf(*ck);
    inputs.insert(inputs.end(), f.begin(), f.end());
  }
  for (const auto& r : c.refs)
    if (!r.adapter.empty()) inputs.push_back(r.adapter);
  inputs.push_back(o.config);
  if (!o.dryRun) {
    checkNotAnInput(o.out, inputs, !fileOut, "-o");
    if (!o.report.empty()) checkNotAnInput(o.report, inputs, false, "--report");
  }
  const int donor = c.base >= 0 ? c.base : c.slices[0].sources[0].model;
  hfFolder = !fileOut && !folderOf(c.refs[std::size_t(donor)]).empty() &&
             wproj::io::detail::isRegularFile(folderOf(c.refs[std::size_t(donor)]) + "/config.json");
  maxShard = c.maxShardGiven ? c.maxShard : hfFolder ? 5000000000ull : 0;
  if (!hfFolder && (c.tokenizerGiven || !c.chatTemplate.empty()))
    throw CliError(o.config + ": '" + (c.tokenizerGiven ? "tokenizer_source" : "chat_template") +
                   "' needs a folder output (-o DIR) and a " + (c.base >= 0 ? "base" : "first") +
                   " model that is a model folder with config.json (where the tokenizer files are copied from)");

  os << "merge plan: " << c.method << " (";
  bool first = true;
  for (const auto& ps : c.spec->params) {
    if (c.omitted.count(ps.name)) continue;
    const auto it = c.params.find(ps.name);
    if (ps.kind == wproj::ParamKind::PerModel && it == c.params.end()) continue;  // listed with the models
    os << (first ? "" : ", ") << ps.name << "=";
    if (it != c.params.end()) os << valueText(it->second);
    else if (ps.kind == wproj::ParamKind::Bool) os << (ps.defaultValue != 0 ? "true" : "false");
    else os << ps.defaultValue;
    first = false;
  }
  os << "), compute " << c.dtype << ", out_dtype " << (c.outDtype.empty() ? "as base" : c.outDtype) << "\n";
  if (c.base >= 0)
    os << "  base:     " << c.refs[std::size_t(c.base)].path << " (" << in.ckpt[std::size_t(c.base)]->names().size()
       << " tensors, " << humanBytes(double(in.ckpt[std::size_t(c.base)]->totalBytes())) << ")\n";
  for (std::size_t si = 0; si < p.slices.size(); ++si) {
    const SliceRun& r = p.slices[si];
    if (c.fromSlices) os << "  slice " << (si + 1) << ": " << r.length << " layers\n";
    for (std::size_t i = 0; i < r.models.size(); ++i) {
      const SourceSpec& s = *r.models[i];
      const ModelRef& m = c.refs[std::size_t(s.model)];
      os << "  model " << (i + 1) << ":  " << m.path << (m.adapter.empty() ? "" : " + adapter " + m.adapter);
      if (c.fromSlices) os << " layers [" << s.first << ", " << s.last << ")";
      for (const auto& kv : s.params) os << ", " << kv.first << " " << valueText(kv.second);
      os << " (" << humanBytes(double(in.ckpt[std::size_t(s.model)]->totalBytes())) << ")\n";
    }
  }
  std::size_t counts[3] = {0, 0, 0}, raw = 0;
  for (const auto& t : p.tensors) t.raw ? ++raw : ++counts[int(t.decision.action)];
  os << "  tensors:  " << counts[0] << " merged, " << counts[1] << " averaged, " << counts[2] << " kept from "
     << (c.base >= 0 ? "base" : "the first model") << ", " << raw << " copied (non-float or empty); " << p.outLayers
     << " layers out\n";
  for (const auto& wmsg : p.warnings) os << "  warning: " << wmsg << "\n";
  os << "  estimated peak memory: " << humanBytes(double(peak)) << " on " << threads << " thread(s)"
     << (dist ? " per rank, " + std::to_string(ranks) + " ranks" : std::string()) << ", budget "
     << humanBytes(double(budget)) << " (largest tensor: " << humanBytes(double(largest)) << ", " << p.maxElements
     << " elements)\n";
  });
  if (o.dryRun) {
    if (rank != 0) return;
    std::cout << os.str();
    for (const auto& t : p.tensors) {
      std::cout << "    " << std::left << std::setw(48) << t.name << std::setw(16) << t.info.shapeString();
      if (t.raw) std::cout << "copied (" << (t.info.count() == 0 ? "no elements" : "non-float") << ")\n";
      else {
        std::ostringstream tt;
        tt << "t=" << std::setprecision(3) << t.t;
        std::cout << std::setw(9) << wproj::toString(t.decision.action) << std::setw(8) << tt.str() << t.decision.rule << "\n";
      }
    }
    return;
  }

  // Which rank merges which tensor: by bytes, largest first (OPCM's scale couples every tensor of
  // the merge: rank 0 runs it whole). One process: everything.
  std::vector<char> mine;
  std::vector<int> ownerOf;
  if (dist) {
    std::vector<double> cost;
    for (const auto& t : p.tensors) cost.push_back(t.raw ? double(t.info.bytes()) : double(tensorBytes(c, p, t)));
    const std::vector<int> owner =
        c.spec->continual ? std::vector<int>(cost.size(), 0) : wproj::assignLargestFirst(cost, ranks);
    for (int r : owner) mine.push_back(r == rank ? 1 : 0);
    ownerOf = owner;
  }
  auto owns = [&](std::size_t k) { return mine.empty() || mine[k] != 0; };

  // A folder output is written into a staging folder next to it and swapped in as a whole; under
  // mpirun rank 0 creates it and every rank writes its shards into its own subfolder of it.
  std::unique_ptr<wproj::io::AtomicFolder> folder;
  std::string staging;
  stage("creating the output folder", [&]() {
    if (!fileOut && rank == 0) {
      folder = std::make_unique<wproj::io::AtomicFolder>(o.out);
      staging = folder->stagingPath();
    }
  });
  if (dist) group->broadcast(staging, 0);
  const std::string target = fileOut ? o.out : dist ? staging + "/.rank-" + std::to_string(rank) : staging;
  std::string floatDtype;
  std::vector<std::string> outputs;
  std::vector<TensorRow> rows(p.tensors.size());
  double scale = std::numeric_limits<double>::quiet_NaN();
  double total = 0;
  for (std::size_t k = 0; k < p.tensors.size(); ++k)
    if (owns(k)) total += double(p.tensors[k].info.bytes());
  Progress progress(total * (c.spec->continual ? 1.5 : 1.0), dist ? "merge (rank " + std::to_string(rank) + ")" : "merge");
  stage("merging", [&]() {
    bool any = false;
    for (std::size_t k = 0; k < p.tensors.size(); ++k) any = any || owns(k);
    if (!any) return;
    wproj::io::CheckpointWriter w(target, maxShard);
    w.addMetadata("format", "pt").addMetadata("merged_by", "wproj " WPROJ_VERSION_STRING).addMetadata("merge_method", c.method);
    for (std::size_t k = 0; k < p.tensors.size(); ++k) {
      const OutTensor& t = p.tensors[k];
      if (!owns(k)) continue;
      // Tensors that are not converted (integers, bool, FP8/FP4, unknown dtypes) keep their dtype and bytes.
      if (wproj::io::isConvertibleFloat(t.info.dtype)) {
        w.declare(t.name, outDtypeOf(c, t.info), t.info.shape);
      } else {
        wproj::io::TensorInfo like = t.info;
        like.name = t.name;
        w.declare(like);
      }
    }
    w.begin();
    for (std::size_t k = 0; k < p.tensors.size(); ++k) {
      const OutTensor& t = p.tensors[k];
      if (t.raw && owns(k)) {
        const auto& ck = *in.ckpt[std::size_t(t.ref)];
        w.writeRaw(t.name, ck.readerOf(t.refIn).rawData(ck.info(t.refIn)), std::size_t(t.info.bytes()));
        ck.release(t.refIn);
      }
    }
    const std::string spillDir = fileOut ? parentOf(o.out) : target;
    const bool dbl = c.dtype == "float64";
    if (c.spec->continual)
      rows = dbl ? mergeOpcm<double>(c, p, in, w, progress, spillDir, scale) : mergeOpcm<float>(c, p, in, w, progress, spillDir, scale);
    else
      rows = dbl ? mergeAll<double>(c, p, in, w, progress, threads, budget, mine)
                 : mergeAll<float>(c, p, in, w, progress, threads, budget, mine);
    w.commit();
    outputs = w.files();
  });
  for (const auto& t : p.tensors)
    if (floatDtype.empty() && !t.raw && wproj::io::isConvertibleFloat(t.info.dtype))
      floatDtype = wproj::io::dtypeName(outDtypeOf(c, t.info));
  if (dist) {
    // Rank 0 collects every rank's report rows.
    nlohmann::json part = nlohmann::json::array();
    for (std::size_t k = 0; k < p.tensors.size(); ++k) {
      if (!owns(k) || p.tensors[k].raw) continue;
      const TensorRow& r = rows[k];
      part.push_back({k, r.method, r.norm, std::isnan(r.deltaNorm) ? nlohmann::json() : nlohmann::json(r.deltaNorm),
                      r.seconds, r.blocks});
    }
    part.push_back(std::isnan(scale) ? nlohmann::json() : nlohmann::json(scale));
    const std::vector<std::string> parts = group->allgather(part.dump());
    for (int r = 0; r < ranks; ++r) {
      const nlohmann::json q = nlohmann::json::parse(parts[std::size_t(r)]);
      for (std::size_t i = 0; i + 1 < q.size(); ++i) {
        TensorRow& row = rows[q[i][0].get<std::size_t>()];
        row.method = q[i][1].get<std::string>();
        row.norm = q[i][2].get<double>();
        row.deltaNorm = q[i][3].is_null() ? std::numeric_limits<double>::quiet_NaN() : q[i][3].get<double>();
        row.seconds = q[i][4].get<double>();
        row.blocks = q[i][5].get<unsigned>();
      }
      if (r == 0 && !q.back().is_null()) scale = q.back().get<double>();
    }
  }
  stage("writing the index and committing the output", [&]() {
    if (rank != 0) return;
    if (dist) assembleShards(staging, ranks);
    if (folder) {
      if (hfFolder) {
        hfShardNames(staging);
        writeModelFiles(c, p, staging, wproj::io::detail::baseName(o.out), floatDtype);
      }
      outputs.clear();
      for (const auto& f : wproj::io::detail::listDirectory(staging)) outputs.push_back(o.out + "/" + f);
      folder->commit();
    }
  });
  progress.finish();
  if (rank != 0) return;
  nlohmann::json j;
  std::string method = c.method + ", " + std::to_string(p.slices[0].models.size()) + " models";
  if (c.spec->continual) {
    method += ", scale " + wproj::detail::describe(scale);
    j["opcm_scale"] = scale;
  }
  j["method"] = method;
  j["warnings"] = p.warnings;
  j["tensors"] = nlohmann::json::array();
  for (std::size_t k = 0; k < p.tensors.size(); ++k) {
    const OutTensor& t = p.tensors[k];
    if (t.raw) continue;
    nlohmann::json e = {{"name", t.name},
                        {"shape", {t.info.rows(), t.info.cols()}},
                        {"action", wproj::toString(t.decision.action)},
                        {"rule", t.decision.rule},
                        {"method", rows[k].method},
                        {"t", t.t},
                        {"norm", rows[k].norm},
                        {"seconds", rows[k].seconds},
                        {"row_blocks", rows[k].blocks}};
    e["delta_norm"] = std::isnan(rows[k].deltaNorm) ? nlohmann::json() : nlohmann::json(rows[k].deltaNorm);
    if (t.name != t.refIn) e["source"] = t.refIn;
    if (dist) e["rank"] = ownerOf[k];
    j["tensors"].push_back(e);
  }
  j["config"] = o.config;
  j["output"] = outputs;
  j["base_model"] = c.base >= 0 ? nlohmann::json(c.refs[std::size_t(c.base)].path) : nlohmann::json();
  j["models"] = nlohmann::json::array();
  for (const auto& r : p.slices[0].models) {
    const ModelRef& m = c.refs[std::size_t(r->model)];
    j["models"].push_back({{"model", m.path}});
    if (!m.adapter.empty()) j["models"].back()["adapter"] = m.adapter;
  }
  std::vector<std::string> copied;
  for (const auto& t : p.tensors)
    if (t.raw) copied.push_back(t.name);
  j["copied"] = copied;
  j["layers"] = p.outLayers;
  j["threads"] = threads;
  j["ranks"] = ranks;
  j["stages"] = stages.report();
  j["estimated_peak_bytes"] = peak;
  j["seconds"] = progress.seconds();
  const std::string text = j.dump(2) + "\n";
  if (o.report.empty()) std::cout << text;
  else writeReport(o.report, text);
  std::cerr << "merged " << (p.tensors.size() - copied.size()) << " tensors into " << o.out << " in " << std::fixed
            << std::setprecision(1) << progress.seconds() << " s" << (dist ? " on " + std::to_string(ranks) + " ranks" : "")
            << "\n";
}

namespace {

std::string defaultText(const wproj::ParamSpec& p) {
  if (p.required) return "required";
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
    os << " models, " << (m.needsBase ? "needs base_model" : m.acceptsBase ? "base_model optional" : "no base model") << "\n";
    for (const auto& p : m.params)
      os << "    " << std::left << std::setw(18) << p.name << ' ' << std::setw(10) << wproj::toString(p.kind) << std::setw(9)
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
  return s + "Per-model parameters go under each model (or source); wproj merge --list-methods describes them.\n";
}

}  // namespace

void addMergeCommand(CLI::App& app, const RankGroup* group) {
  static MergeOptions mo;
  static const RankGroup* ranks = nullptr;
  ranks = group;
  auto* m = app.add_subcommand("merge", "Merge checkpoints from a mergekit YAML config, tensors in parallel");
  m->add_option("CONFIG", mo.config,
                "mergekit YAML config (merge_method, base_model, models or slices, parameters, dtype, out_dtype, "
                "tokenizer_source, chat_template; wproj's tensors, max_shard_size, seed)");
  m->add_flag("--list-methods", mo.listMethods, "list the merge methods with their parameters, defaults and meaning; merge nothing");
  m->add_option("-o,--out", mo.out, "output .safetensors file, or a folder (mergekit's layout when the inputs are model folders)");
  m->add_flag("--dry-run", mo.dryRun, "validate the inputs, print the plan and the peak-memory estimate; write nothing");
  m->add_option("--report", mo.report, "write the JSON report to this file instead of standard output");
  m->add_option("--threads", mo.threads, "tensors merged at once (default: the hardware threads; the output is the same bytes for any count)")
      ->check(CLI::Range(1u, 4096u));
  m->add_option("--memory-budget", mo.memoryBudget,
                "memory for the tensors in flight, e.g. 8GB, 1.5G, 500M (default: half the RAM); one tensor always runs");
  m->footer(
      methodsFooter() +
      "Parameters: a number, true/false, a gradient [a, b, ...] over the layers of a slice, or filters\n"
      "[{filter: self_attn, value: ...}, {value: ...}] (first substring match), as mergekit.\n"
      "Rules: tensors: [{pattern: REGEX, action: merge|average|skip}], first match wins.\n"
      "Relative paths are taken from the working folder, else from the config's folder.\n"
      "A model 'PATH+ADAPTER_DIR' is PATH with a PEFT LoRA adapter applied as it is read.\n"
      "Example config:\n"
      "  merge_method: ties\n"
      "  base_model: base\n"
      "  models:\n"
      "    - model: math\n"
      "      parameters: {weight: [0.2, 0.8]}\n"
      "    - model: code\n"
      "      parameters:\n"
      "        weight: [{filter: self_attn, value: 0.7}, {value: 0.3}]\n"
      "  parameters: {density: 0.2}\n"
      "  dtype: bfloat16\n"
      "  tokenizer_source: base\n"
      "Example:\n  wproj merge ties.yaml -o merged   # a folder as mergekit writes it\n"
      "Under MPI (a wproj built with Open MPI): mpirun -np N wproj merge ties.yaml -o merged\n"
      "  assigns the tensors to the N ranks by bytes (largest first); each rank merges and writes its own\n"
      "  shards, rank 0 the index, config and card; the same tensor values as one process; all or nothing\n"
      "  (a failure on one rank stops every rank with its message; no output appears). Give each rank\n"
      "  --threads (default: the cores divided by the ranks on the machine). See docs/scale.md.\n");
  m->callback([]() {
    if (mo.listMethods) {
      if (!mo.config.empty() || !mo.out.empty() || mo.dryRun)
        throw UsageError("merge --list-methods takes no CONFIG, -o or --dry-run");
      listMethods(std::cout);
      return;
    }
    if (mo.config.empty()) throw UsageError("merge: CONFIG is required (or use --list-methods)");
    if (!mo.dryRun && mo.out.empty()) throw UsageError("merge: -o OUT is required (or use --dry-run)");
    runMerge(mo, ranks);
  });
}

}  // namespace wcli
