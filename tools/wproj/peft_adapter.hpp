// wproj command-line tool: PEFT LoRA adapter folders (adapter_config.json + adapter_model.safetensors).
//
// A PEFT LoRA adapter stores, for every adapted module M of a model, A (r×in) and B (out×r) under
//   base_model.model.M.lora_A.weight, base_model.model.M.lora_B.weight            (nn.Linear)
//   base_model.model.M.lora_embedding_A,  base_model.model.M.lora_embedding_B     (nn.Embedding)
// (optionally with an adapter-name segment ".default"), and whole replacement tensors of the
// modules_to_save and of biases as base_model.model.<tensor name>. The update of M's weight is
// scale·B·A with scale = alpha/r (alpha/√r with use_rslora), r and alpha taken from rank_pattern /
// alpha_pattern when they name M; for embeddings and fan_in_fan_out layers the weight is stored
// transposed and receives (B·A)ᵀ.
#pragma once

#include "common.hpp"

#include <wproj/io.hpp>
#include <wproj/lowrank/lora.hpp>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace wcli {

using wproj::Index;

/// The file names of an adapter folder.
inline const char* kAdapterWeights = "adapter_model.safetensors";
inline const char* kAdapterConfig = "adapter_config.json";
/// The key prefix of every tensor PEFT saves.
inline const char* kPeftPrefix = "base_model.model.";

/// Parses a size: plain bytes or a number with a suffix, decimal (K/KB, M/MB, G/GB, T/TB: powers of
/// 1000, as mergekit and the Hugging Face hub count) or binary (KiB, MiB, GiB, TiB); case-insensitive.
inline std::uint64_t parseSize(const std::string& text, const std::string& option) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  const std::string num = text.substr(0, i);
  std::string suf;
  for (std::size_t j = i; j < text.size(); ++j)
    if (text[j] != ' ') suf += char(std::tolower(static_cast<unsigned char>(text[j])));
  double mult = 0;
  if (suf.empty() || suf == "b") mult = 1;
  else if (suf == "k" || suf == "kb") mult = 1e3;
  else if (suf == "m" || suf == "mb") mult = 1e6;
  else if (suf == "g" || suf == "gb") mult = 1e9;
  else if (suf == "t" || suf == "tb") mult = 1e12;
  else if (suf == "kib") mult = 1024.0;
  else if (suf == "mib") mult = 1024.0 * 1024;
  else if (suf == "gib") mult = 1024.0 * 1024 * 1024;
  else if (suf == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  char* end = nullptr;
  const double v = num.empty() ? -1 : std::strtod(num.c_str(), &end);
  if (mult == 0 || num.empty() || end != num.c_str() + num.size() || !(v >= 0) || v * mult > 1.8e19)
    throw UsageError(option + ": '" + text + "' is not a size (expected bytes or a number with KB, MB, GB, TB, KiB, MiB, GiB or TiB, e.g. 200MB)");
  return std::uint64_t(std::llround(v * mult));
}

/// Refuses a model path that does not exist but looks like a Hugging Face hub id ("org/name").
inline void checkLocalModel(const std::string& path, const std::string& option) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return;
  if (std::count(path.begin(), path.end(), '/') == 1 && path.front() != '/' && path.front() != '.' && path.back() != '/')
    throw CliError(option + " '" + path + "' does not exist; it looks like a Hugging Face hub id: download it first (e.g. huggingface-cli download " +
                   path + " --local-dir DIR) and pass the folder");
  throw CliError(option + " '" + path + "' does not exist");
}

/// adapter_config.json: the fields wproj reads and writes.
struct AdapterConfig {
  Index r = 8;
  double alpha = 8;
  std::map<std::string, Index> rankPattern;
  std::map<std::string, double> alphaPattern;
  std::vector<std::string> targetModules;
  std::vector<std::string> modulesToSave;  // empty: null
  bool useRslora = false, fanInFanOut = false, useDora = false;
  std::string bias = "none";
  std::string baseModel;

  /// PEFT's lookup of a pattern key: the key equals the module name, or the name ends in ".key"
  /// (keys are regular expressions in PEFT: "(.*\.)?key$").
  template <typename T>
  static const T* lookup(const std::map<std::string, T>& m, const std::string& module) {
    auto it = m.find(module);
    if (it != m.end()) return &it->second;
    for (const auto& kv : m) {
      try {
        if (std::regex_match(module, std::regex("(.*\\.)?(" + kv.first + ")"))) return &kv.second;
      } catch (const std::regex_error&) {
      }
    }
    return nullptr;
  }
  Index rankOf(const std::string& module) const {
    const Index* p = lookup(rankPattern, module);
    return p ? *p : r;
  }
  double alphaOf(const std::string& module) const {
    const double* p = lookup(alphaPattern, module);
    return p ? *p : alpha;
  }
  /// PEFT's scaling of a module's update.
  double scaleOf(const std::string& module) const {
    const double rk = double(rankOf(module));
    return useRslora ? alphaOf(module) / std::sqrt(rk) : alphaOf(module) / rk;
  }

  nlohmann::json toJson() const {
    nlohmann::json j;
    j["peft_type"] = "LORA";
    j["task_type"] = "CAUSAL_LM";
    j["base_model_name_or_path"] = baseModel;
    j["r"] = r;
    j["lora_alpha"] = alpha;
    j["rank_pattern"] = nlohmann::json::object();
    for (const auto& kv : rankPattern) j["rank_pattern"][kv.first] = kv.second;
    j["alpha_pattern"] = nlohmann::json::object();
    for (const auto& kv : alphaPattern) j["alpha_pattern"][kv.first] = kv.second;
    j["target_modules"] = targetModules;
    j["modules_to_save"] = modulesToSave.empty() ? nlohmann::json(nullptr) : nlohmann::json(modulesToSave);
    j["lora_dropout"] = 0.0;
    j["fan_in_fan_out"] = fanInFanOut;
    j["use_rslora"] = useRslora;
    j["use_dora"] = useDora;
    j["bias"] = bias;
    j["inference_mode"] = true;
    j["init_lora_weights"] = true;
    return j;
  }

  static AdapterConfig read(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw CliError("adapter config '" + path + "' cannot be read (an adapter folder holds adapter_config.json)");
    std::string text;
    char buf[65536];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
    std::fclose(f);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      throw CliError(path + ": invalid JSON (" + std::string(e.what()) + ")");
    }
    if (!j.is_object()) throw CliError(path + ": expected a JSON object");
    AdapterConfig c;
    auto get = [&](const char* key, auto& out) {
      if (!j.contains(key) || j[key].is_null()) return false;
      try {
        out = j[key].get<std::decay_t<decltype(out)>>();
      } catch (const std::exception&) {
        throw CliError(path + ": field '" + key + "' has the wrong type (" + j[key].dump() + ")");
      }
      return true;
    };
    std::string peftType = "LORA";
    get("peft_type", peftType);
    if (peftType != "LORA") throw CliError(path + ": peft_type is '" + peftType + "'; only LORA adapters are supported");
    if (!get("r", c.r)) throw CliError(path + ": missing 'r'");
    if (c.r < 1) throw CliError(path + ": r = " + std::to_string(c.r) + ", expected >= 1");
    c.alpha = double(c.r);
    get("lora_alpha", c.alpha);
    get("rank_pattern", c.rankPattern);
    get("alpha_pattern", c.alphaPattern);
    get("use_rslora", c.useRslora);
    get("fan_in_fan_out", c.fanInFanOut);
    get("use_dora", c.useDora);
    get("bias", c.bias);
    get("base_model_name_or_path", c.baseModel);
    if (j.contains("modules_to_save") && j["modules_to_save"].is_array()) get("modules_to_save", c.modulesToSave);
    if (j.contains("target_modules") && j["target_modules"].is_array()) get("target_modules", c.targetModules);
    if (c.useDora) throw CliError(path + ": use_dora is true: DoRA adapters are not supported");
    for (const auto& kv : c.rankPattern)
      if (kv.second < 1) throw CliError(path + ": rank_pattern '" + kv.first + "' = " + std::to_string(kv.second) + ", expected >= 1");
    return c;
  }
};

/// One adapted module: the keys of its factors in the adapter file.
struct AdapterModule {
  std::string keyA, keyB;
  bool embedding = false;
};

/// An adapter folder opened for reading: its config, its safetensors file, and the keys sorted
/// into LoRA modules (by module name) and whole replacement tensors (by base tensor name).
class AdapterReader {
 public:
  explicit AdapterReader(const std::string& dir) : m_dir(dir) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw CliError("--adapter '" + dir + "' is not a folder (expected a PEFT adapter folder with adapter_config.json and adapter_model.safetensors)");
    config = AdapterConfig::read(dir + "/" + kAdapterConfig);
    const std::string weights = dir + "/" + kAdapterWeights;
    if (!wproj::io::detail::isRegularFile(weights))
      throw CliError("--adapter '" + dir + "': no " + std::string(kAdapterWeights) + " (adapter_model.bin is not supported; convert it to safetensors)");
    m_file = std::make_unique<wproj::io::SafetensorsReader>(weights);
    for (const auto& t : m_file->tensors()) classify(t.name);
    for (const auto& kv : modules) {
      if (kv.second.keyA.empty() || kv.second.keyB.empty())
        throw CliError(weights + ": module '" + kv.first + "' has lora_" + (kv.second.keyA.empty() ? "B" : "A") +
                       " but no lora_" + (kv.second.keyA.empty() ? "A" : "B"));
      m_weightModule[weightOf(kv.first)] = kv.first;
    }
  }

  const wproj::io::SafetensorsReader& file() const { return *m_file; }
  const std::string& dir() const { return m_dir; }

  /// The base tensor a module's update applies to.
  static std::string weightOf(const std::string& module) { return module + ".weight"; }

  /// Checks one module against the config and the base tensor's shape (rows×cols as stored).
  /// Returns an empty string when it is consistent, else the problem.
  std::string validate(const std::string& module, const wproj::io::TensorInfo* baseTensor) const {
    const AdapterModule& mod = modules.at(module);
    const auto& a = m_file->info(mod.keyA);
    const auto& b = m_file->info(mod.keyB);
    if (!a.is2d() || !b.is2d()) return "module '" + module + "': lora_A " + a.shapeString() + " and lora_B " + b.shapeString() + " must be 2-D";
    if (!wproj::io::isConvertibleFloat(a.dtype) || !wproj::io::isConvertibleFloat(b.dtype))
      return "module '" + module + "': factors of dtype " + a.dtypeString() + "/" + b.dtypeString() + ", expected a float dtype";
    const std::uint64_t r = a.shape[0], in = a.shape[1], out = b.shape[0];
    if (b.shape[1] != r)
      return "module '" + module + "': lora_A " + a.shapeString() + " and lora_B " + b.shapeString() + " disagree on the rank";
    const Index want = config.rankOf(module);
    if (Index(r) != want)
      return "module '" + module + "': rank " + std::to_string(r) + " in the file but " + std::to_string(want) +
             " in adapter_config.json (r / rank_pattern)";
    if (!baseTensor) return "module '" + module + "': the base model has no tensor '" + weightOf(module) + "'";
    if (!baseTensor->is2d() || !wproj::io::isConvertibleFloat(baseTensor->dtype))
      return "module '" + module + "': base tensor '" + weightOf(module) + "' is " + baseTensor->shapeString() + " " +
             baseTensor->dtypeString() + ", expected a 2-D float tensor";
    const bool transposed = mod.embedding || config.fanInFanOut;
    const std::uint64_t rows = transposed ? in : out, cols = transposed ? out : in;
    if (baseTensor->shape[0] != rows || baseTensor->shape[1] != cols)
      return "module '" + module + "': base tensor '" + weightOf(module) + "' is " + baseTensor->shapeString() +
             " but the adapter's update is [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
    return "";
  }

  /// Checks every module and every replacement tensor against the checkpoint the adapter is
  /// applied to, before anything is written; throws CliError naming `what` (the adapter's role).
  void checkAgainst(const wproj::io::Checkpoint& base, const std::string& what) const {
    for (const auto& kv : modules) {
      const std::string wname = weightOf(kv.first);
      const std::string problem = validate(kv.first, base.contains(wname) ? &base.info(wname) : nullptr);
      if (!problem.empty()) throw CliError(what + ": " + problem);
    }
    for (const auto& kv : replacements) {
      if (!base.contains(kv.first))
        throw CliError(what + ": tensor '" + kv.second + "' replaces '" + kv.first + "', which " + base.path() + " does not have");
      const auto& tb = base.info(kv.first);
      const auto& ta = m_file->info(kv.second);
      if (ta.shape != tb.shape)
        throw CliError(what + ": tensor '" + kv.second + "' is " + ta.shapeString() + " but '" + kv.first + "' of " +
                       base.path() + " is " + tb.shapeString());
      if (m_weightModule.count(kv.first)) throw CliError(what + ": tensor '" + kv.first + "' is both adapted and replaced");
      if (wproj::io::isConvertibleFloat(tb.dtype) != wproj::io::isConvertibleFloat(ta.dtype) ||
          (!wproj::io::isConvertibleFloat(tb.dtype) && ta.dtype != tb.dtype))
        throw CliError(what + ": tensor '" + kv.second + "' is " + ta.dtypeString() + " but '" + kv.first + "' of " +
                       base.path() + " is " + tb.dtypeString());
    }
  }

  /// The module whose update applies to base tensor `name`, or nullptr.
  const std::string* moduleFor(const std::string& name) const {
    auto it = m_weightModule.find(name);
    return it == m_weightModule.end() ? nullptr : &it->second;
  }

  /// Tensor `name` (already read into `theta`) as the checkpoint with the adapter applied:
  /// W + scale·B·A for an adapted weight, the adapter's tensor for a replaced one, else unchanged.
  template <typename Matrix>
  void adjust(const std::string& name, Matrix& theta) const {
    if (const std::string* m = moduleFor(name)) {
      apply(*m, theta, 1.0);
      return;
    }
    auto rep = replacements.find(name);
    if (rep != replacements.end()) {
      theta = m_file->template read<typename Matrix::Scalar>(rep->second);
      m_file->release(rep->second);
    }
  }

  /// W ± scale·B·A for module `module` (W as stored: out×in, or in×out / vocab×dim when transposed).
  template <typename Matrix>
  void apply(const std::string& module, Matrix& w, double sign) const {
    using Scalar = typename Matrix::Scalar;
    const AdapterModule& mod = modules.at(module);
    const Matrix a = m_file->template read<Scalar>(mod.keyA);
    const Matrix b = m_file->template read<Scalar>(mod.keyB);
    m_file->release(mod.keyA);
    m_file->release(mod.keyB);
    wproj::applyLora(w, b, a, config.scaleOf(module), sign, mod.embedding || config.fanInFanOut);
  }

  AdapterConfig config;
  std::map<std::string, AdapterModule> modules;            // module name → factor keys
  std::map<std::string, std::string> replacements;          // base tensor name → adapter key

 private:
  static bool stripSuffix(std::string& s, const std::string& suffix) {
    if (!wproj::io::detail::endsWith(s, suffix)) return false;
    s.resize(s.size() - suffix.size());
    return true;
  }
  void classify(const std::string& key) {
    std::string k = key;
    if (k.compare(0, std::strlen(kPeftPrefix), kPeftPrefix) == 0) k = k.substr(std::strlen(kPeftPrefix));
    // The adapter-name segment PEFT adds in memory (".default") is tolerated.
    for (const std::string seg : {".lora_A", ".lora_B"}) {
      const auto at = k.find(seg + ".default.weight");
      if (at != std::string::npos && at + seg.size() + 15 == k.size()) k = k.substr(0, at) + seg + ".weight";
    }
    for (const std::string seg : {".lora_embedding_A", ".lora_embedding_B"})
      if (wproj::io::detail::endsWith(k, seg + ".default")) stripSuffix(k, ".default");
    const auto mts = k.find(".modules_to_save.default.");
    if (mts != std::string::npos) k = k.substr(0, mts) + k.substr(mts + 24);
    // PEFT's wrapped layers name the original parameters "<module>.base_layer.<name>".
    const auto bl = k.find(".base_layer.");
    if (bl != std::string::npos) k = k.substr(0, bl) + k.substr(bl + 11);
    std::string m = k;
    auto put = [&](bool isA, bool emb) {
      AdapterModule& mod = modules[m];
      if (!(isA ? mod.keyA : mod.keyB).empty())
        throw CliError(m_dir + "/" + kAdapterWeights + ": module '" + m + "' has two lora_" + (isA ? "A" : "B") + " tensors");
      (isA ? mod.keyA : mod.keyB) = key;
      mod.embedding = emb;
    };
    if (stripSuffix(m, ".lora_A.weight")) return put(true, false);
    if (stripSuffix(m, ".lora_B.weight")) return put(false, false);
    if (stripSuffix(m, ".lora_embedding_A")) return put(true, true);
    if (stripSuffix(m, ".lora_embedding_B")) return put(false, true);
    if (k.find("lora_magnitude_vector") != std::string::npos)
      throw CliError(m_dir + "/" + kAdapterWeights + ": '" + key + "' is a DoRA magnitude: DoRA adapters are not supported");
    if (k.find(".lora_") != std::string::npos)
      throw CliError(m_dir + "/" + kAdapterWeights + ": tensor '" + key + "' is not a LoRA factor wproj knows (lora_A/B.weight, lora_embedding_A/B)");
    if (!replacements.emplace(k, key).second)
      throw CliError(m_dir + "/" + kAdapterWeights + ": two tensors replace '" + k + "'");
  }

  std::string m_dir;
  std::unique_ptr<wproj::io::SafetensorsReader> m_file;
  std::map<std::string, std::string> m_weightModule;  // base tensor → module
};

}  // namespace wcli
