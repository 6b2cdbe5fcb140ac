// wproj command-line tool: `wproj extract-lora` (a PEFT LoRA adapter from a base and a fine-tuned
// checkpoint, by truncated SVD of each task vector) and `wproj apply-lora` (a checkpoint with an
// adapter merged in, or taken out).
#include "common.hpp"
#include "peft_adapter.hpp"
#include "sharded_job.hpp"

#include <wproj/core/partition.hpp>

#include <wproj/lowrank/lora.hpp>
#include <wproj/version.hpp>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <iomanip>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace wcli {
namespace {

namespace wio = wproj::io;

/// An unnamed temporary file in a folder (vanishes when closed or when the process dies): holds
/// the factors of each tensor, already in the adapter dtype, until every shape is known.
class TempFile {
 public:
  explicit TempFile(const std::string& dir) {
#ifdef O_TMPFILE
    m_fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
    if (m_fd < 0) {
      std::string tmpl = dir + "/.wproj-lora-XXXXXX";
      m_fd = ::mkstemp(&tmpl[0]);
      if (m_fd >= 0) ::unlink(tmpl.c_str());
    }
    if (m_fd < 0) throw CliError("cannot create a temporary file in '" + dir + "'");
  }
  /// A named file `path` (created, or opened read-only when `readOnly`): under mpirun each rank
  /// other than 0 keeps its factors in one inside the staging folder, where rank 0 reads them.
  TempFile(const std::string& path, bool readOnly) {
    m_fd = readOnly ? ::open(path.c_str(), O_RDONLY | O_CLOEXEC) : ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (m_fd < 0) throw CliError("cannot " + std::string(readOnly ? "open" : "create") + " the factor file '" + path + "'");
  }
  ~TempFile() {
    if (m_fd >= 0) ::close(m_fd);
  }
  /// Makes what was appended durable and visible to other processes (a shared file system).
  void flush() {
    if (::fsync(m_fd) != 0) throw CliError("writing the factor file failed (fsync)");
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::uint64_t append(const void* p, std::size_t n) {
    const std::uint64_t at = m_size;
    const char* c = static_cast<const char*>(p);
    for (std::uint64_t off = at; n > 0;) {
      const ssize_t w = ::pwrite(m_fd, c, n, off_t(off));
      if (w <= 0) throw CliError("writing the temporary file failed (disk full?)");
      c += w;
      n -= std::size_t(w);
      off += std::uint64_t(w);
      m_size = off;
    }
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

/// True when two tensors hold the same bytes (same dtype and shape).
bool sameBytes(const wio::Checkpoint& a, const wio::Checkpoint& b, const std::string& n) {
  const auto& ta = a.info(n);
  const auto& tb = b.info(n);
  if (ta.dtype != tb.dtype || ta.shape != tb.shape || ta.bytes() != tb.bytes()) return false;
  const bool same = std::memcmp(a.readerOf(n).rawData(ta), b.readerOf(n).rawData(tb), std::size_t(ta.bytes())) == 0;
  a.release(n);
  b.release(n);
  return same;
}

/// True when two float tensors differ (bitwise when the dtypes agree, else by value).
bool differs(const wio::Checkpoint& a, const wio::Checkpoint& b, const std::string& n) {
  if (a.info(n).dtype == b.info(n).dtype) return !sameBytes(a, b, n);
  const Eigen::MatrixXd x = a.read<double>(n), y = b.read<double>(n);
  a.release(n);
  b.release(n);
  return !(x.array() == y.array()).all();
}

/// The module a tensor belongs to: its name up to the last '.'.
std::string moduleOf(const std::string& n) {
  const auto dot = n.find_last_of('.');
  return dot == std::string::npos ? n : n.substr(0, dot);
}

/// PEFT's embedding layers by name: the module's last component is embed_tokens (Llama, Mistral,
/// Qwen…), wte (GPT-2), word_embeddings (BLOOM, BERT) or embed_in (GPT-NeoX, Pythia).
bool isEmbeddingName(const std::string& n) {
  static const std::regex re("(^|\\.)(embed_tokens|wte|word_embeddings|embed_in)\\.weight$");
  return std::regex_search(n, re);
}

// ------------------------------------------------------------------------------- extract-lora

struct ExtractOptions {
  std::string base, model, out, report;
  wproj::Index rank = 16, maxRank = 0;
  double energy = 0, relError = 0, svEpsilon = 0, alpha = 0;
  std::string budget, include, exclude, modulesToSave, split = "balanced", dtype, computeDtype = "float32";
  bool embeddings = false, skipUndecomposable = false;
  std::uint64_t seed = 0;
  // which of the exclusive options were given
  bool hasRank = false, hasEnergy = false, hasRelError = false, hasSvEpsilon = false, hasBudget = false, hasAlpha = false,
       hasMaxRank = false;
};

/// One tensor of the fine-tuned model and what became of it.
struct Entry {
  std::string name, module, action;  // action: lora, unchanged, saved, bias, skipped, excluded, dropped
  std::vector<std::uint64_t> shape;
  bool embedding = false, clamped = false, randomized = false;
  wproj::Index rank = 0, requested = 0, allocated = -1;
  double normSq = 0, errorSq = 0, keptEnergy = 1, scale = 1, alpha = 0;
  wio::DType dtype = wio::DType::F32;  // adapter dtype of what is written
  std::uint64_t bytes = 0;             // bytes written to the adapter
  std::uint64_t offB = 0, offA = 0, bytesB = 0, bytesA = 0;  // the factors in the temporary file
  wproj::Index rowsB = 0, colsA = 0;
  std::string note;
};

wproj::LoraSplit splitOf(const std::string& s) {
  if (s == "balanced") return wproj::LoraSplit::Balanced;
  if (s == "b") return wproj::LoraSplit::IntoB;
  return wproj::LoraSplit::IntoA;
}

template <typename Scalar>
using ColMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

template <typename Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// τ = W_ft − W_base of one tensor in the compute type (τᵀ for an embedding: dim×vocab), read in
/// blocks of 64 rows from both files, each block's mapped pages released once it is used: memory
/// is τ plus two blocks, not τ plus both mapped tensors (and their converted copies for bf16/f16).
template <typename Scalar>
ColMatrix<Scalar> taskVector(const wio::Checkpoint& base, const wio::Checkpoint& ft, const std::string& n, bool transposed) {
  const auto& info = ft.info(n);
  const wproj::Index rows = info.rows(), cols = info.cols();
  ColMatrix<Scalar> tau(transposed ? cols : rows, transposed ? rows : cols);
  constexpr wproj::Index block = 64;
  RowMatrix<Scalar> f(std::min(block, rows), cols), b(std::min(block, rows), cols);
  for (wproj::Index r0 = 0; r0 < rows; r0 += block) {
    const wproj::Index h = std::min(block, rows - r0);
    if (f.rows() != h) {
      f.resize(h, cols);
      b.resize(h, cols);
    }
    ft.readRows<Scalar>(n, r0, h, f.data(), true);
    base.readRows<Scalar>(n, r0, h, b.data(), true);
    f -= b;
    if (transposed)
      tau.middleCols(r0, h) = f.transpose();  // contiguous columns of τᵀ
    else
      tau.middleRows(r0, h) = f;  // 64 rows: the strided reads stay in cache
  }
  return tau;
}

class Extractor {
 public:
  Extractor(const ExtractOptions& o, const wio::Checkpoint& base, const wio::Checkpoint& ft, TempFile& spill, Progress& progress)
      : m_o(o), m_base(base), m_ft(ft), m_spill(spill), m_progress(progress) {}

  /// The rank rule of the options for an m×n tensor (a fixed rank is clamped to min(m, n)).
  wproj::RankRule ruleFor(Entry& e, wproj::Index m, wproj::Index n) const {
    const wproj::Index s = std::min(m, n);
    wproj::RankRule rule;
    if (m_o.hasEnergy) rule = wproj::RankRule::energy(m_o.energy);
    else if (m_o.hasRelError) rule = m_o.relError == 0 ? wproj::RankRule::all() : wproj::RankRule::energy(1 - m_o.relError * m_o.relError);
    else if (m_o.hasSvEpsilon) rule = wproj::RankRule::absoluteTolerance(m_o.svEpsilon);
    else {
      e.requested = m_o.rank;
      e.clamped = m_o.rank > s;
      rule = wproj::RankRule::fixed(std::min(m_o.rank, s));
    }
    if (m_o.hasMaxRank) rule = rule.withMaxRank(std::min(m_o.maxRank, s));
    return rule;
  }

  wproj::LoraOptions optionsFor(const wproj::RankRule& rule) const {
    wproj::LoraOptions opt;
    opt.rule = rule;
    opt.split = splitOf(m_o.split);
    opt.seed = m_o.seed;
    return opt;
  }

  /// Pass 1 of --budget: the leading singular values of τ.
  template <typename Scalar>
  wproj::LoraSpectrum spectrum(Entry& e) {
    const ColMatrix<Scalar> tau = taskVector<Scalar>(m_base, m_ft, e.name, e.embedding);
    const wproj::Index cap = std::min<wproj::Index>(m_o.hasMaxRank ? m_o.maxRank : 256, std::min(tau.rows(), tau.cols()));
    wproj::LoraSpectrum s = wproj::loraSpectrum(tau, std::max<wproj::Index>(cap, 1), optionsFor(wproj::RankRule::fixed(1)));
    m_progress.advance(0.5 * double(m_ft.info(e.name).bytes()), e.name);
    return s;
  }

  /// Extracts one tensor's factors (at `fixedRank` when ≥ 0, else by the options' rule), scales
  /// them for PEFT's alpha/r and appends them, in the adapter dtype, to the temporary file.
  template <typename Scalar>
  void extract(Entry& e, wproj::Index fixedRank) {
    const ColMatrix<Scalar> tau = taskVector<Scalar>(m_base, m_ft, e.name, e.embedding);
    const wproj::RankRule rule = fixedRank >= 0 ? wproj::RankRule::fixed(std::max<wproj::Index>(1, fixedRank))
                                                : ruleFor(e, tau.rows(), tau.cols());
    wproj::LoraFactors<Scalar> f = wproj::extractLora(tau, optionsFor(rule));
    e.normSq = f.normSq;
    e.errorSq = f.errorSq;
    e.keptEnergy = f.keptEnergy();
    e.randomized = f.randomized;
    e.rank = f.rank();
    if (f.normSq == 0) {
      e.action = "unchanged";
    } else if (e.rank == 0) {
      e.action = "dropped";
      e.note = "no singular value kept by the rank rule";
    } else {
      e.action = "lora";
      // PEFT multiplies B·A by alpha/r: factors extracted for scale 1 are divided by it.
      e.alpha = m_o.hasAlpha ? m_o.alpha : double(e.rank);
      e.scale = e.alpha / double(e.rank);
      if (e.scale != 1.0) {
        const double s = e.scale;
        switch (splitOf(m_o.split)) {
          case wproj::LoraSplit::Balanced:
            f.B *= Scalar(1 / std::sqrt(s));
            f.A *= Scalar(1 / std::sqrt(s));
            break;
          case wproj::LoraSplit::IntoB: f.B *= Scalar(1 / s); break;
          case wproj::LoraSplit::IntoA: f.A *= Scalar(1 / s); break;
        }
      }
      e.rowsB = f.B.rows();
      e.colsA = f.A.cols();
      e.bytesB = spillMatrix(f.B, e.dtype, e.offB);
      e.bytesA = spillMatrix(f.A, e.dtype, e.offA);
      e.bytes = e.bytesA + e.bytesB;
    }
    m_progress.advance((fixedRank >= 0 ? 0.5 : 1.0) * double(m_ft.info(e.name).bytes()), e.name);
  }

 private:
  template <typename Scalar>
  std::uint64_t spillMatrix(const ColMatrix<Scalar>& m, wio::DType dt, std::uint64_t& offset) {
    const RowMatrix<Scalar> r = m;
    std::vector<unsigned char> buf(std::size_t(r.size()) * wio::dtypeSize(dt));
    wio::encodeElements<Scalar>(dt, r.data(), std::size_t(r.size()), buf.data());
    offset = m_spill.append(buf.data(), buf.size());
    return buf.size();
  }

  const ExtractOptions& m_o;
  const wio::Checkpoint& m_base;
  const wio::Checkpoint& m_ft;
  TempFile& m_spill;
  Progress& m_progress;
};

std::string listSome(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < 3; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > 3) s += " and " + std::to_string(names.size() - 3) + " more";
  return s;
}

std::string fmt(double v, int prec = 4) {
  std::ostringstream os;
  os << std::setprecision(prec) << v;
  return os.str();
}

void validateExtract(const ExtractOptions& o) {
  const int rules = int(o.hasRank) + int(o.hasEnergy) + int(o.hasRelError) + int(o.hasSvEpsilon) + int(o.hasBudget);
  if (rules > 1) throw UsageError("extract-lora: give one of --rank, --energy, --rel-error, --sv-epsilon, --budget (got " + std::to_string(rules) + ")");
  if (o.hasRank && o.rank < 1) throw UsageError("--rank " + std::to_string(o.rank) + ": expected an integer >= 1");
  if (o.hasEnergy && !(o.energy > 0 && o.energy <= 1)) throw UsageError("--energy " + fmt(o.energy) + ": expected a value in (0, 1]");
  if (o.hasRelError && !(o.relError >= 0 && o.relError < 1)) throw UsageError("--rel-error " + fmt(o.relError) + ": expected a value in [0, 1)");
  if (o.hasSvEpsilon && !(o.svEpsilon >= 0 && std::isfinite(o.svEpsilon))) throw UsageError("--sv-epsilon " + fmt(o.svEpsilon) + ": expected a finite value >= 0");
  if (o.hasMaxRank && o.maxRank < 1) throw UsageError("--max-rank " + std::to_string(o.maxRank) + ": expected an integer >= 1");
  if (o.hasAlpha && !(o.alpha > 0 && std::isfinite(o.alpha))) throw UsageError("--alpha " + fmt(o.alpha) + ": expected a finite value > 0");
  if (o.split != "balanced" && o.split != "b" && o.split != "a") throw UsageError("--split '" + o.split + "': expected balanced, b or a");
  if (!o.dtype.empty() && o.dtype != "float32" && o.dtype != "bfloat16" && o.dtype != "float16")
    throw UsageError("--dtype '" + o.dtype + "': expected float32, bfloat16 or float16");
  if (o.computeDtype != "float32" && o.computeDtype != "float64")
    throw UsageError("--compute-dtype '" + o.computeDtype + "': expected float32 or float64");
  if (o.hasBudget) parseSize(o.budget, "--budget");
}

/// The fields of an Entry a rank sends to the others once it has extracted it (JSON keeps the
/// doubles' bits: nlohmann::json writes the shortest text that reads back to the same double).
nlohmann::json entryState(std::size_t k, const Entry& e) {
  return {k, e.action, e.note, e.rank, e.requested, e.allocated, e.normSq, e.errorSq, e.keptEnergy, e.scale, e.alpha,
          e.randomized, e.clamped, e.rowsB, e.colsA, e.bytes, e.offB, e.offA, e.bytesB, e.bytesA};
}

void setEntryState(Entry& e, const nlohmann::json& j) {
  e.action = j[1].get<std::string>();
  e.note = j[2].get<std::string>();
  e.rank = j[3].get<wproj::Index>();
  e.requested = j[4].get<wproj::Index>();
  e.allocated = j[5].get<wproj::Index>();
  e.normSq = j[6].get<double>();
  e.errorSq = j[7].get<double>();
  e.keptEnergy = j[8].get<double>();
  e.scale = j[9].get<double>();
  e.alpha = j[10].get<double>();
  e.randomized = j[11].get<bool>();
  e.clamped = j[12].get<bool>();
  e.rowsB = j[13].get<wproj::Index>();
  e.colsA = j[14].get<wproj::Index>();
  e.bytes = j[15].get<std::uint64_t>();
  e.offB = j[16].get<std::uint64_t>();
  e.offA = j[17].get<std::uint64_t>();
  e.bytesB = j[18].get<std::uint64_t>();
  e.bytesA = j[19].get<std::uint64_t>();
}

/// Where rank `r` (> 0) of a sharded extraction keeps its factors.
std::string factorFile(const std::string& staging, int r) { return staging + "/.rank-" + std::to_string(r) + ".factors"; }

/// `wproj extract-lora`. Under `mpirun -np N` (a group of N > 1 ranks) the decomposed tensors are
/// assigned to ranks by bytes, largest first; each rank extracts its tensors into a factor file in
/// the staging folder; with --budget the ranks first compute their spectra, rank 0 shares out the
/// budget and sends each rank its tensors' ranks. Rank 0 then writes the one adapter file (PEFT
/// loads a single adapter_model.safetensors) from every rank's factors, and the config. All or
/// nothing across ranks; the adapter equals the one-process run's bytes.
void runExtract(const ExtractOptions& o, const RankGroup* group) {
  validateExtract(o);
  CollectiveStages stages(group);
  const bool dist = stages.distributed();
  const int rank = stages.rank(), ranks = stages.size();
  std::unique_ptr<wio::Checkpoint> basePtr, ftPtr;
  std::vector<Entry> entries;
  std::regex toSave;
  stages.run("reading the models", [&]() {
  checkLocalModel(o.base, "--base");
  checkLocalModel(o.model, "--model");
  checkOutputs(o.out, o.report, FolderKind::Adapter);
  basePtr = std::make_unique<wio::Checkpoint>(o.base);
  ftPtr = std::make_unique<wio::Checkpoint>(o.model);
  const wio::Checkpoint &base = *basePtr, &ft = *ftPtr;
  std::vector<std::string> inputs = filesOf(base), more = filesOf(ft);
  inputs.insert(inputs.end(), more.begin(), more.end());
  checkNotAnInput(o.out, inputs, true, "-o");
  if (!o.report.empty()) checkNotAnInput(o.report, inputs, false, "--report");
  const std::regex include = compileRegex(o.include.empty() ? "." : o.include, "--include");
  const std::regex exclude = compileRegex(o.exclude.empty() ? "$^" : o.exclude, "--exclude");
  toSave = compileRegex(o.modulesToSave.empty() ? "$^" : o.modulesToSave, "--modules-to-save");

  // Both models hold the same tensors with the same shapes; non-float tensors are equal.
  std::vector<std::string> onlyBase, onlyFt;
  for (const auto& n : base.names())
    if (!ft.contains(n)) onlyBase.push_back(n);
  for (const auto& n : ft.names())
    if (!base.contains(n)) onlyFt.push_back(n);
  if (!onlyBase.empty())
    throw CliError("tensor " + listSome(onlyBase) + " of --base " + o.base + " is not in --model " + o.model + " (the models must have the same tensors)");
  if (!onlyFt.empty())
    throw CliError("tensor " + listSome(onlyFt) + " of --model " + o.model + " is not in --base " + o.base + " (the models must have the same tensors)");

  // Plan: which tensors are decomposed, which are biases or whole-tensor candidates.
  for (const auto& n : ft.names()) {
    const auto& tb = base.info(n);
    const auto& tf = ft.info(n);
    if (tb.shape != tf.shape)
      throw CliError("shape mismatch for tensor '" + n + "': " + tb.shapeString() + " in --base but " + tf.shapeString() + " in --model");
    Entry e;
    e.name = n;
    e.module = moduleOf(n);
    e.shape = tf.shape;
    const bool floats = wio::isConvertibleFloat(tb.dtype) && wio::isConvertibleFloat(tf.dtype);
    if (!floats) {
      if (!sameBytes(base, ft, n))
        throw CliError("tensor '" + n + "' (" + tf.dtypeString() + ") differs between --base and --model; only float tensors can be adapted");
      e.action = "unchanged";
    } else if (!std::regex_search(n, include) || std::regex_search(n, exclude)) {
      e.action = "excluded";
    } else if (tf.count() == 0) {
      e.action = "unchanged";
    } else if (std::regex_search(n, toSave)) {
      e.action = "whole";
    } else if (tf.is2d() && wio::detail::endsWith(n, ".weight") && (!isEmbeddingName(n) || o.embeddings)) {
      e.action = "decompose";
      e.embedding = isEmbeddingName(n);
    } else if (wio::detail::endsWith(n, ".bias")) {
      e.action = "bias?";
    } else {
      e.action = "whole";
    }
    e.dtype = o.dtype.empty() ? (wio::isConvertibleFloat(tf.dtype) ? tf.dtype : wio::DType::F32) : wio::dtypeFromString(o.dtype);
    entries.push_back(std::move(e));
  }
  });
  const wio::Checkpoint &base = *basePtr, &ft = *ftPtr;
  const bool dbl = o.computeDtype == "float64";
  const std::uint64_t budget = o.hasBudget ? parseSize(o.budget, "--budget") : 0;
  if (dist) {
    // Every rank must run the same extraction on the same view of the models.
    std::ostringstream fp;
    fp << o.rank << " " << o.maxRank << " " << o.energy << " " << o.relError << " " << o.svEpsilon << " " << o.alpha << " "
       << o.budget << " " << o.include << " " << o.exclude << " " << o.modulesToSave << " " << o.split << " " << o.dtype
       << " " << o.computeDtype << " " << o.embeddings << o.skipUndecomposable << " " << o.seed << " " << o.hasRank
       << o.hasEnergy << o.hasRelError << o.hasSvEpsilon << o.hasBudget << o.hasAlpha << o.hasMaxRank;
    for (const auto& e : entries)
      fp << "\n" << e.name << " " << base.info(e.name).dtypeString() << " " << ft.info(e.name).dtypeString() << " "
         << ft.info(e.name).shapeString() << " " << e.action;
    stages.requireSame(fp.str(), "extraction options or view of the models (tensor names, shapes, dtypes)");
  }

  // Which rank decomposes which tensor: by bytes, largest first. Rank 0 also does everything else.
  std::vector<int> owner(entries.size(), 0);
  if (dist) {
    std::vector<double> cost;
    std::vector<std::size_t> at;
    for (std::size_t k = 0; k < entries.size(); ++k)
      if (entries[k].action == "decompose") {
        cost.push_back(double(ft.info(entries[k].name).bytes()));
        at.push_back(k);
      }
    const std::vector<int> who = wproj::assignLargestFirst(cost, ranks);
    for (std::size_t i = 0; i < at.size(); ++i) owner[at[i]] = who[i];
  }
  // The tensors this rank decomposes (fixed before their actions change).
  std::vector<char> mine(entries.size(), 0);
  for (std::size_t k = 0; k < entries.size(); ++k) mine[k] = entries[k].action == "decompose" && owner[k] == rank;

  std::unique_ptr<wio::AtomicFolder> folder;
  std::string staging;
  stages.run("creating the output folder", [&]() {
    if (rank == 0) {
      folder = std::make_unique<wio::AtomicFolder>(o.out);
      staging = folder->stagingPath();
    }
  });
  stages.broadcast(staging, 0);
  std::unique_ptr<TempFile> spill;
  std::uint64_t work = 0;
  for (std::size_t k = 0; k < entries.size(); ++k)
    if (mine[k]) work += ft.info(entries[k].name).bytes();
  Progress progress(double(work), dist ? "extract-lora (rank " + std::to_string(rank) + ")" : "extract-lora");
  stages.run("opening the factor file", [&]() {
    spill = rank == 0 ? std::make_unique<TempFile>(staging) : std::make_unique<TempFile>(factorFile(staging, rank), false);
  });
  Extractor ex(o, base, ft, *spill, progress);

  // After the extraction: every rank's decomposed entries, on every rank.
  auto exchange = [&]() {
    if (!dist) return;
    nlohmann::json part = nlohmann::json::array();
    for (std::size_t k = 0; k < entries.size(); ++k)
      if (mine[k]) part.push_back(entryState(k, entries[k]));
    for (const auto& s : stages.allgather(part.dump()))
      for (const auto& j : nlohmann::json::parse(s)) setEntryState(entries[j[0].get<std::size_t>()], j);
  };

  // Resolves biases and whole tensors once the adapted modules are known (rank 0).
  bool loraOnly = false;
  auto resolveWhole = [&]() {
    std::set<std::string> targeted;
    for (const auto& e : entries)
      if (e.action == "lora" || e.action == "budgeted") targeted.insert(e.module);
    for (auto& e : entries) {
      if (e.action == "bias?") {
        const bool changed = differs(base, ft, e.name);
        if (targeted.count(e.module)) {
          e.action = "bias";
          loraOnly = loraOnly || changed;
        } else {
          e.action = changed ? "whole" : "unchanged";
        }
      }
      if (e.action == "whole") {
        if (!differs(base, ft, e.name)) e.action = "unchanged";
        else if (o.skipUndecomposable) {
          e.action = "skipped";
          e.note = "changed but not decomposable (--skip-undecomposable)";
        } else e.action = "saved";
      }
    }
    for (auto& e : entries) {
      if (e.action == "bias" && !loraOnly) e.action = "unchanged";
      if (e.action == "saved" || e.action == "bias") e.bytes = ft.info(e.name).count() * wio::dtypeSize(e.dtype);
    }
  };

  nlohmann::json budgetJson;
  std::vector<std::size_t> budgeted;  // --budget: the entries with a non-zero spectrum, in order
  if (o.hasBudget) {
    // Pass 1: the spectra of this rank's tensors.
    std::vector<wproj::LoraSpectrum> spectra(entries.size());
    stages.run("computing the spectra", [&]() {
      for (std::size_t k = 0; k < entries.size(); ++k) {
        if (!mine[k]) continue;
        Entry& e = entries[k];
        if (sameBytes(base, ft, e.name)) {
          e.action = "unchanged";
          progress.advance(double(ft.info(e.name).bytes()), e.name);
          continue;
        }
        spectra[k] = dbl ? ex.spectrum<double>(e) : ex.spectrum<float>(e);
        if (spectra[k].normSq == 0) {
          e.action = "unchanged";
          progress.advance(0.5 * double(ft.info(e.name).bytes()), e.name);
          continue;
        }
        e.action = "budgeted";
      }
    });
    if (dist) {
      // Every spectrum to every rank, as raw bytes (the allocation must see the same doubles).
      std::string part;
      auto put = [&part](const void* p, std::size_t n) { part.append(static_cast<const char*>(p), n); };
      for (std::size_t k = 0; k < entries.size(); ++k) {
        if (!mine[k]) continue;
        const wproj::LoraSpectrum& sp = spectra[k];
        const std::uint64_t head[4] = {k, entries[k].action == "budgeted" ? 1u : 0u, std::uint64_t(sp.rows), std::uint64_t(sp.cols)};
        const std::uint64_t count = std::uint64_t(sp.sigma.size());
        put(head, sizeof head);
        put(&sp.normSq, sizeof sp.normSq);
        put(&count, sizeof count);
        put(sp.sigma.data(), std::size_t(count) * sizeof(double));
      }
      for (const std::string& s : stages.allgather(part)) {
        for (std::size_t at = 0; at < s.size();) {
          std::uint64_t head[4], count = 0;
          std::memcpy(head, s.data() + at, sizeof head);
          at += sizeof head;
          wproj::LoraSpectrum& sp = spectra[std::size_t(head[0])];
          entries[std::size_t(head[0])].action = head[1] ? "budgeted" : "unchanged";
          sp.rows = wproj::Index(head[2]);
          sp.cols = wproj::Index(head[3]);
          std::memcpy(&sp.normSq, s.data() + at, sizeof sp.normSq);
          at += sizeof sp.normSq;
          std::memcpy(&count, s.data() + at, sizeof count);
          at += sizeof count;
          sp.sigma.resize(Eigen::Index(count));
          std::memcpy(sp.sigma.data(), s.data() + at, std::size_t(count) * sizeof(double));
          at += std::size_t(count) * sizeof(double);
        }
      }
    }
    for (std::size_t k = 0; k < entries.size(); ++k)
      if (entries[k].action == "budgeted") budgeted.push_back(k);
    // Rank 0 shares out the budget less the whole tensors (allocateLoraBudget) and sends the ranks.
    std::string ranksText;
    stages.run("sharing out the budget", [&]() {
      if (rank != 0) return;
      std::vector<wproj::LoraBudgetItem> items;
      for (std::size_t k : budgeted) {
        wproj::LoraBudgetItem it;
        it.spectrum = spectra[k];
        it.bytesPerRank = std::uint64_t(it.spectrum.rows + it.spectrum.cols) * wio::dtypeSize(entries[k].dtype);
        items.push_back(it);
      }
      resolveWhole();
      std::uint64_t whole = 0, floor = 0;
      for (const auto& e : entries) whole += e.bytes;
      for (const auto& it : items) floor += it.bytesPerRank * (it.spectrum.sigma.size() > 0 ? 1 : 0);
      if (whole + floor > budget)
        throw CliError("--budget " + o.budget + " (" + std::to_string(budget) + " bytes) is too small: rank 1 for each of the " +
                       std::to_string(items.size()) + " adapted tensors needs " + std::to_string(floor) + " bytes, plus " +
                       std::to_string(whole) + " bytes of whole tensors (modules_to_save, biases): at least " +
                       std::to_string(whole + floor) + " bytes (" + humanBytes(double(whole + floor)) + ")");
      const wproj::LoraAllocation alloc = wproj::allocateLoraBudget(items, budget - whole);
      nlohmann::json r = nlohmann::json::array();
      for (std::size_t i = 0; i < budgeted.size(); ++i) {
        entries[budgeted[i]].allocated = alloc.ranks[i];
        r.push_back(alloc.ranks[i]);
      }
      ranksText = r.dump();
      budgetJson = {{"budget_bytes", budget},
                    {"whole_tensor_bytes", whole},
                    {"factor_bytes_allocated", alloc.bytes},
                    {"allocation", alloc.exact ? "exact" : "greedy"},
                    {"predicted_error_sq", alloc.errorSq}};
    });
    stages.broadcast(ranksText, 0);
    if (rank != 0) {
      const nlohmann::json r = nlohmann::json::parse(ranksText);
      for (std::size_t i = 0; i < budgeted.size(); ++i) entries[budgeted[i]].allocated = r[i].get<wproj::Index>();
    }
  }
  // Pass 2 (or the only pass): this rank's factors, at the allocated ranks with --budget.
  stages.run("extracting", [&]() {
    for (std::size_t k = 0; k < entries.size(); ++k) {
      if (!mine[k]) continue;
      Entry& e = entries[k];
      if (o.hasBudget) {
        if (e.action == "budgeted") dbl ? ex.extract<double>(e, e.allocated) : ex.extract<float>(e, e.allocated);
        continue;
      }
      if (sameBytes(base, ft, e.name)) {
        e.action = "unchanged";
        progress.advance(double(ft.info(e.name).bytes()), e.name);
        continue;
      }
      dbl ? ex.extract<double>(e, -1) : ex.extract<float>(e, -1);
    }
    if (rank > 0) spill->flush();
  });
  exchange();
  progress.finish();
  if (o.hasBudget && rank == 0) {
    double achieved = 0, total = 0;
    for (std::size_t k : budgeted) {
      achieved += entries[k].errorSq;
      total += entries[k].normSq;
    }
    const double predicted = budgetJson["predicted_error_sq"].get<double>();
    budgetJson["achieved_error_sq"] = achieved;
    budgetJson["predicted_relative_error"] = total > 0 ? std::sqrt(predicted / total) : 0.0;
    budgetJson["achieved_relative_error"] = total > 0 ? std::sqrt(achieved / total) : 0.0;
  }

  // Rank 0 writes the adapter (one file: factors from every rank's factor file, whole tensors from
  // the fine-tuned model) and the config, and swaps the folder in.
  AdapterConfig cfg;
  stages.run("writing the adapter", [&]() {
  if (rank != 0) return;
  if (!o.hasBudget) resolveWhole();
  // The config: r = the most common rank, rank_pattern/alpha_pattern for the others.
  cfg.baseModel = o.base;
  std::map<wproj::Index, int> count;
  std::set<std::string> saveModules;
  for (const auto& e : entries) {
    if (e.action == "lora") {
      ++count[e.rank];
      cfg.targetModules.push_back(e.module);
    }
    if (e.action == "saved") saveModules.insert(e.module);
  }
  if (cfg.targetModules.empty() && saveModules.empty())
    throw CliError("--model " + o.model + " does not differ from --base " + o.base +
                   " in any tensor selected for the adapter; nothing to extract");
  int best = 0;
  for (const auto& kv : count)
    if (kv.second > best) {
      best = kv.second;
      cfg.r = kv.first;
    }
  if (count.empty()) cfg.r = o.hasRank ? o.rank : 16;
  cfg.alpha = o.hasAlpha ? o.alpha : double(cfg.r);
  for (const auto& e : entries)
    if (e.action == "lora" && e.rank != cfg.r) {
      cfg.rankPattern[e.module] = e.rank;
      if (!o.hasAlpha) cfg.alphaPattern[e.module] = double(e.rank);
    }
  cfg.modulesToSave.assign(saveModules.begin(), saveModules.end());
  cfg.bias = loraOnly ? "lora_only" : "none";

  // The adapter file: factors from the factor files, whole tensors from the fine-tuned model.
  {
    std::map<int, std::unique_ptr<TempFile>> others;  // the factor files of ranks > 0
    auto factorsOf = [&](std::size_t k) -> const TempFile& {
      if (owner[k] == 0) return *spill;
      auto& f = others[owner[k]];
      if (!f) f = std::make_unique<TempFile>(factorFile(staging, owner[k]), true);
      return *f;
    };
    wio::SafetensorsWriter w(staging + "/" + kAdapterWeights);
    w.addMetadata("format", "pt").addMetadata("created_by", "wproj " WPROJ_VERSION_STRING);
    auto key = [](const std::string& s) { return std::string(kPeftPrefix) + s; };
    for (const auto& e : entries) {
      const std::uint64_t r = std::uint64_t(e.rank);
      if (e.action == "lora") {
        const std::string a = e.embedding ? ".lora_embedding_A" : ".lora_A.weight";
        const std::string b = e.embedding ? ".lora_embedding_B" : ".lora_B.weight";
        w.declare(key(e.module + a), e.dtype, {r, std::uint64_t(e.colsA)});
        w.declare(key(e.module + b), e.dtype, {std::uint64_t(e.rowsB), r});
      } else if (e.action == "saved" || e.action == "bias") {
        w.declare(key(e.name), e.dtype, e.shape);
      }
    }
    w.begin();
    std::vector<unsigned char> buf;
    for (std::size_t k = 0; k < entries.size(); ++k) {
      const Entry& e = entries[k];
      if (e.action == "lora") {
        const TempFile& spill = factorsOf(k);
        const std::string a = e.embedding ? ".lora_embedding_A" : ".lora_A.weight";
        const std::string b = e.embedding ? ".lora_embedding_B" : ".lora_B.weight";
        buf.resize(std::size_t(e.bytesA));
        spill.read(e.offA, buf.data(), buf.size());
        w.writeRaw(key(e.module + a), buf.data(), buf.size());
        buf.resize(std::size_t(e.bytesB));
        spill.read(e.offB, buf.data(), buf.size());
        w.writeRaw(key(e.module + b), buf.data(), buf.size());
      } else if (e.action == "saved" || e.action == "bias") {
        const auto& t = ft.info(e.name);
        if (t.dtype == e.dtype) w.writeRaw(key(e.name), ft.readerOf(e.name).rawData(t), std::size_t(t.bytes()));
        else w.write(key(e.name), ft.read<double>(e.name));
        ft.release(e.name);
      }
    }
    w.commit();
  }
  {
    const std::string text = cfg.toJson().dump(2) + "\n";
    wio::AtomicFile f(staging + "/" + kAdapterConfig);
    f.write(text.data(), text.size());
    f.commit();
  }
  for (int r = 1; r < ranks; ++r) ::unlink(factorFile(staging, r).c_str());
  folder->commit();
  });
  if (rank != 0) return;

  // Report and summary.
  nlohmann::json j;
  j["base_model"] = o.base;
  j["model"] = o.model;
  j["output"] = o.out;
  j["rule"] = o.hasBudget ? "budget " + o.budget
              : o.hasEnergy ? "energy " + fmt(o.energy, 8)
              : o.hasRelError ? "rel-error " + fmt(o.relError, 8)
              : o.hasSvEpsilon ? "sv-epsilon " + fmt(o.svEpsilon, 8)
              : "rank " + std::to_string(o.rank);
  if (o.hasMaxRank) j["max_rank"] = o.maxRank;
  j["split"] = o.split;
  j["compute_dtype"] = o.computeDtype;
  j["r"] = cfg.r;
  j["lora_alpha"] = cfg.alpha;
  j["bias"] = cfg.bias;
  j["tensors"] = nlohmann::json::array();
  std::uint64_t bytes = 0;
  double errSq = 0, normSq = 0;
  std::map<std::string, int> actions;
  for (const auto& e : entries) {
    nlohmann::json t = {{"name", e.name}, {"shape", e.shape}, {"action", e.action}, {"bytes", e.bytes}};
    ++actions[e.action];
    bytes += e.bytes;
    if (e.action == "lora" || e.action == "dropped") {
      t["rank"] = e.rank;
      t["relative_error"] = e.normSq > 0 ? std::sqrt(e.errorSq / e.normSq) : 0.0;
      t["kept_energy"] = e.keptEnergy;
      t["norm"] = std::sqrt(e.normSq);
      t["solver"] = e.randomized ? "randomized" : "exact";
      t["dtype"] = wio::dtypeName(e.dtype);
      t["embedding"] = e.embedding;
      t["alpha"] = e.alpha;
      t["scale"] = e.scale;
      if (e.clamped) t["clamped_from"] = e.requested;
      if (e.allocated >= 0) t["allocated_rank"] = e.allocated;
      errSq += e.errorSq;
      normSq += e.normSq;
    }
    if (!e.note.empty()) t["note"] = e.note;
    if (dist && (e.action == "lora" || e.action == "dropped")) t["mpi_rank"] = owner[std::size_t(&e - entries.data())];
    j["tensors"].push_back(t);
  }
  j["adapter_bytes"] = bytes;
  j["relative_error"] = normSq > 0 ? std::sqrt(errSq / normSq) : 0.0;
  if (o.hasBudget) j["budget"] = budgetJson;
  j["seconds"] = progress.seconds();
  if (dist) {
    j["mpi_ranks"] = ranks;
    j["stages"] = stages.report();
  }
  if (!o.report.empty()) writeReport(o.report, j.dump(2) + "\n");

  std::size_t width = 6;
  for (const auto& e : entries)
    if (e.action != "unchanged" && e.action != "excluded") width = std::max(width, e.name.size());
  std::cout << std::left << std::setw(int(width) + 2) << "tensor" << std::setw(14) << "shape" << std::setw(10) << "action"
            << std::setw(6) << "rank" << std::setw(11) << "rel.error" << std::setw(9) << "energy" << std::setw(12) << "bytes"
            << "solver\n";
  for (const auto& e : entries) {
    if (e.action == "unchanged" || e.action == "excluded") continue;
    std::ostringstream shape;
    shape << "[" << e.shape[0];
    for (std::size_t d = 1; d < e.shape.size(); ++d) shape << "," << e.shape[d];
    shape << "]";
    const bool lora = e.action == "lora" || e.action == "dropped";
    std::cout << std::setw(int(width) + 2) << e.name << std::setw(14) << shape.str() << std::setw(10) << e.action
              << std::setw(6) << (lora ? std::to_string(e.rank) + (e.clamped ? "*" : "") : "-") << std::setw(11)
              << (lora ? fmt(e.normSq > 0 ? std::sqrt(e.errorSq / e.normSq) : 0.0, 3) : "-") << std::setw(9)
              << (lora ? fmt(e.keptEnergy, 4) : "-") << std::setw(12) << e.bytes
              << (lora ? (e.randomized ? "randomized" : "exact") : "") << "\n";
  }
  std::cout << "adapter: " << actions["lora"] << " LoRA modules (r=" << cfg.r << ", alpha=" << fmt(cfg.alpha) << ", "
            << cfg.rankPattern.size() << " in rank_pattern), " << actions["saved"] << " whole tensors (modules_to_save), "
            << (loraOnly ? std::to_string(actions["bias"]) + " biases, " : "") << actions["unchanged"] << " unchanged, "
            << actions["excluded"] << " excluded, " << actions["skipped"] << " skipped; " << humanBytes(double(bytes))
            << "; relative error " << fmt(normSq > 0 ? std::sqrt(errSq / normSq) : 0.0, 4) << "\n";
  bool anyClamped = false;
  for (const auto& e : entries) anyClamped = anyClamped || e.clamped;
  if (anyClamped) std::cout << "* rank clamped to min(rows, cols) of the tensor\n";
  if (o.hasBudget)
    std::cout << "budget " << o.budget << ": " << humanBytes(double(bytes)) << " used; relative error predicted "
              << fmt(double(budgetJson["predicted_relative_error"]), 4) << ", achieved "
              << fmt(double(budgetJson["achieved_relative_error"]), 4) << "\n";
  std::cerr << "wrote " << o.out << "/" << kAdapterWeights << " and " << kAdapterConfig << " in " << std::fixed
            << std::setprecision(1) << progress.seconds() << " s\n";
}

// --------------------------------------------------------------------------------- apply-lora

struct ApplyOptions {
  std::string base, adapter, out, dtype, maxShard;
  bool subtract = false;
};

template <typename Scalar>
void applyOne(const wio::Checkpoint& base, const AdapterReader& ad, const std::string& module, const std::string& n,
              double sign, wio::CheckpointWriter& w) {
  ColMatrix<Scalar> m = base.read<Scalar>(n);
  base.release(n);
  ad.apply(module, m, sign);
  if (!m.allFinite()) throw CliError("tensor '" + n + "': the result of applying the adapter is not finite");
  w.write(n, m);
}

void runApply(const ApplyOptions& o) {
  checkLocalModel(o.base, "--base");
  wio::DType outDtype = wio::DType::Unknown;
  if (!o.dtype.empty()) {
    try {
      outDtype = wio::dtypeFromString(o.dtype);
    } catch (const std::exception&) {
    }
    if (!wio::isConvertibleFloat(outDtype))
      throw UsageError("--dtype '" + o.dtype + "': expected float32, bfloat16, float16 or float64");
  }
  const std::uint64_t maxShard = o.maxShard.empty() ? 0 : parseSize(o.maxShard, "--max-shard-size");
  const bool fileOut = checkOutputs(o.out, "");
  const AdapterReader ad(o.adapter);
  const wio::Checkpoint base(o.base);
  std::vector<std::string> inputs = filesOf(base);
  inputs.push_back(o.adapter);
  checkNotAnInput(o.out, inputs, !fileOut, "-o");

  // Everything is validated before anything is written.
  ad.checkAgainst(base, "--adapter " + o.adapter);
  const double sign = o.subtract ? -1.0 : 1.0;

  std::unique_ptr<wio::AtomicFolder> folder;
  if (!fileOut) folder = std::make_unique<wio::AtomicFolder>(o.out);
  const std::string target = fileOut ? o.out : folder->stagingPath();
  wio::CheckpointWriter w(target, maxShard);
  w.addMetadata("format", "pt").addMetadata("merged_by", "wproj " WPROJ_VERSION_STRING);
  auto dtypeOut = [&](const wio::TensorInfo& t) { return wio::isConvertibleFloat(t.dtype) && outDtype != wio::DType::Unknown ? outDtype : t.dtype; };
  for (const auto& n : base.names()) {
    const auto& t = base.info(n);
    if (wio::isConvertibleFloat(t.dtype)) w.declare(n, dtypeOut(t), t.shape);
    else w.declare(t);
  }
  w.begin();
  Progress progress(double(base.totalBytes()), o.subtract ? "apply-lora --subtract" : "apply-lora");
  std::size_t adapted = 0, replaced = 0, kept = 0;
  for (const auto& n : base.names()) {
    const auto& t = base.info(n);
    const wio::DType dt = dtypeOut(t);
    const std::string* mod = ad.moduleFor(n);
    auto rep = ad.replacements.find(n);
    if (mod) {
      if (t.dtype == wio::DType::F64 || dt == wio::DType::F64) applyOne<double>(base, ad, *mod, n, sign, w);
      else applyOne<float>(base, ad, *mod, n, sign, w);
      ++adapted;
    } else if (rep != ad.replacements.end() && !o.subtract) {
      const auto& ta = ad.file().info(rep->second);
      if (ta.dtype == dt) w.writeRaw(n, ad.file().rawData(ta), std::size_t(ta.bytes()));
      else w.write(n, ad.file().read<double>(rep->second));
      ad.file().release(rep->second);
      ++replaced;
    } else {
      if (dt == t.dtype) w.writeRaw(n, base.readerOf(n).rawData(t), std::size_t(t.bytes()));
      else w.write(n, base.read<double>(n));
      base.release(n);
      kept += rep != ad.replacements.end();
    }
    progress.advance(double(t.bytes()), n);
  }
  w.commit();
  if (folder) folder->commit();
  progress.finish();
  std::cout << (o.subtract ? "subtracted " : "applied ") << adapted << " LoRA modules ("
            << (ad.config.useRslora ? "alpha/sqrt(r)" : "alpha/r") << " scaling), " << (o.subtract ? 0 : replaced)
            << " whole tensors replaced, " << base.names().size() - adapted - (o.subtract ? 0 : replaced) << " copied -> "
            << o.out << "\n";
  if (kept > 0)
    std::cout << "note: " << kept << " whole tensors of the adapter (modules_to_save, biases) cannot be subtracted; "
              << "they were copied from --base unchanged\n";
}

}  // namespace

void addLoraCommands(CLI::App& app, const RankGroup* group) {
  static const RankGroup* ranks = nullptr;
  ranks = group;
  static ExtractOptions eo;
  auto* e = app.add_subcommand("extract-lora",
                               "Extract a PEFT LoRA adapter (truncated SVD of each task vector) from a base and a fine-tuned checkpoint");
  e->add_option("--base", eo.base, "the base checkpoint (.safetensors, index .json or folder)")->required();
  e->add_option("--model", eo.model, "the fine-tuned checkpoint, with the same tensors as --base")->required();
  e->add_option("-o,--out", eo.out, "the adapter folder: adapter_model.safetensors + adapter_config.json")->required();
  auto* oRank = e->add_option("--rank", eo.rank, "rank of every adapted tensor (default 16; clamped to min(rows, cols))");
  auto* oEnergy = e->add_option("--energy", eo.energy, "smallest rank keeping this fraction of ||tau||_F^2, in (0, 1]");
  auto* oRel = e->add_option("--rel-error", eo.relError, "smallest rank with ||tau - BA||_F <= eps ||tau||_F, eps in [0, 1)");
  auto* oSv = e->add_option("--sv-epsilon", eo.svEpsilon, "keep singular values > eps (mergekit's --sv-epsilon)");
  auto* oBudget = e->add_option("--budget", eo.budget, "total adapter size (200MB, 1.5GB, 512MiB or bytes): ranks chosen jointly");
  auto* oMax = e->add_option("--max-rank", eo.maxRank, "cap on any tensor's rank (with --budget: the spectrum computed, default 256)");
  e->add_option("--include", eo.include, "adapt only tensors whose name matches this regex (regex_search)");
  e->add_option("--exclude", eo.exclude, "leave out tensors whose name matches this regex");
  e->add_flag("--embeddings", eo.embeddings, "decompose embeddings (lora_embedding_A/B) instead of saving them whole");
  e->add_option("--modules-to-save", eo.modulesToSave, "save tensors matching this regex whole (when changed)");
  e->add_flag("--skip-undecomposable", eo.skipUndecomposable, "leave changed tensors that are not decomposed out instead of saving them whole");
  auto* oAlpha = e->add_option("--alpha", eo.alpha, "lora_alpha (default: alpha = rank per module, so scale = 1)");
  e->add_option("--split", eo.split, "where the singular values go: balanced (sqrt on both, default), b or a");
  e->add_option("--dtype", eo.dtype, "adapter dtype: float32, bfloat16 or float16 (default: the fine-tuned model's)");
  e->add_option("--compute-dtype", eo.computeDtype, "float32 (default) or float64");
  e->add_option("--seed", eo.seed, "seed of the randomized SVD (results depend on it only)");
  e->add_option("--report", eo.report, "write a JSON report (per tensor: shape, rank, relative error, kept energy, bytes, solver)");
  e->footer(
      "Every changed 2-D '<module>.weight' becomes lora_A (r x in) and lora_B (out x r) with (alpha/r) B A = the truncated SVD of\n"
      "tau = W_ft - W_base. Embeddings (names ending embed_tokens|wte|word_embeddings|embed_in .weight) and changed\n"
      "non-2-D tensors (norms, biases) are saved whole (modules_to_save); a changed bias of an adapted module sets bias: lora_only.\n"
      "Examples:\n"
      "  wproj extract-lora --base llama --model llama-chat -o adapter --rank 32\n"
      "  wproj extract-lora --base base.safetensors --model ft.safetensors -o adapter --energy 0.9 --max-rank 128\n"
      "  wproj extract-lora --base base --model ft -o adapter --budget 200MB --report lora.json\n"
      "Under MPI (a wproj built with Open MPI): mpirun -np N wproj extract-lora ... shares the decomposed tensors\n"
      "out over the ranks (by bytes, largest first; --budget from every rank's spectra); rank 0 writes the adapter\n"
      "from every rank's factors; all or nothing; the same adapter bytes as one process. The output folder must\n"
      "be on a file system every rank shares.\n");
  e->callback([oRank, oEnergy, oRel, oSv, oBudget, oMax, oAlpha]() {
    eo.hasRank = oRank->count() > 0;
    eo.hasEnergy = oEnergy->count() > 0;
    eo.hasRelError = oRel->count() > 0;
    eo.hasSvEpsilon = oSv->count() > 0;
    eo.hasBudget = oBudget->count() > 0;
    eo.hasMaxRank = oMax->count() > 0;
    eo.hasAlpha = oAlpha->count() > 0;
    runExtract(eo, ranks);
  });

  static ApplyOptions ao;
  auto* a = app.add_subcommand("apply-lora", "Merge a PEFT LoRA adapter into a checkpoint (W + scale B A), or take it out");
  a->add_option("--base", ao.base, "the checkpoint the adapter was trained on")->required();
  a->add_option("--adapter", ao.adapter, "the adapter folder (adapter_config.json + adapter_model.safetensors)")->required();
  a->add_option("-o,--out", ao.out, "output .safetensors file, or a folder (sharded by --max-shard-size)")->required();
  a->add_option("--dtype", ao.dtype, "output dtype of float tensors (default: as in --base)");
  a->add_option("--max-shard-size", ao.maxShard, "largest shard of a folder output (e.g. 5GB; default: one file)");
  a->add_flag("--subtract", ao.subtract, "compute W - scale B A (take an applied adapter out)");
  a->footer(
      "scale = lora_alpha / r (alpha / sqrt(r) with use_rslora), per module from rank_pattern / alpha_pattern;\n"
      "modules_to_save and bias tensors of the adapter replace the base's. Every module is checked before writing.\n"
      "Example:\n"
      "  wproj apply-lora --base llama --adapter adapter -o merged --max-shard-size 5GB\n");
  a->callback([]() { runApply(ao); });
}

}  // namespace wcli
