// wproj command-line tool: `wproj subspace …` (estimators from .npy data) and `wproj edit`.
#include "common.hpp"
#include "sharded_job.hpp"

#include <wproj/core/partition.hpp>

#include <wproj/editing.hpp>

#include <nlohmann/json.hpp>

#include <iomanip>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace wcli {
namespace {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;

Mat loadMatrix(const std::string& path, const char* what) {
  if (path.empty()) throw CliError(std::string("missing ") + what);
  Mat m = wproj::io::readNpy<double>(path);
  wproj::checkFinite(m, "wproj subspace", path.c_str());
  return m;
}

wproj::Labels loadLabels(const std::string& path, wproj::Index n) {
  const Mat z = wproj::io::readNpy<double>(path);
  if (z.cols() != 1 || z.rows() != n)
    throw CliError(path + ": labels must be a 1-D array of " + std::to_string(n) + " integers (one per row of --x), got shape " +
                   std::to_string(z.rows()) + "x" + std::to_string(z.cols()));
  wproj::Labels l(n);
  for (wproj::Index i = 0; i < n; ++i) {
    if (!(z(i) == std::floor(z(i))) || z(i) < 0 || z(i) > 1e6)
      throw CliError(path + ": label " + std::to_string(i) + " = " + std::to_string(z(i)) + " is not a class index >= 0");
    l(i) = int(z(i));
  }
  return l;
}

struct SubspaceOptions {
  std::string out, pos, neg, inputs, targets, x, labels, a, b;
  wproj::Index rank = 2, iterations = 35;
  bool noCentering = false;
};

/// Checks the output file before any work: its location, and that it is none of the inputs.
void checkSubspaceOutput(const SubspaceOptions& o, const std::vector<std::string>& inputs) {
  checkOutputFile(o.out, "-o");
  checkNotAnInput(o.out, inputs, false, "-o");
}

void writeBasis(const SubspaceOptions& o, const wproj::Subspace<double>& s, const std::string& what) {
  if (s.dim() == 0) throw CliError(what + ": the estimated subspace is empty (nothing to remove)");
  wproj::io::writeNpy(o.out, s.basis());
  std::cout << what << ": wrote an orthonormal basis " << s.ambientDim() << "x" << s.dim() << " to " << o.out << "\n";
}

void runDetox(const SubspaceOptions& o) {
  checkSubspaceOutput(o, {o.pos, o.neg});
  const Mat p = loadMatrix(o.pos, "--pos"), n = loadMatrix(o.neg, "--neg");
  wproj::DetoxEstimator<double> est;
  est.setRank(o.rank).setCentering(!o.noCentering).fit(p, n);
  if (est.info() != Eigen::Success) throw CliError("detox: the SVD did not converge");
  writeBasis(o, est.subspace(), "detox");
}

void runDama(const SubspaceOptions& o) {
  checkSubspaceOutput(o, {o.inputs, o.targets});
  const Mat h = loadMatrix(o.inputs, "--inputs"), v = loadMatrix(o.targets, "--targets");
  wproj::DamaEstimator<double> est;
  est.setRank(o.rank).fit(h, v);
  if (est.info() != Eigen::Success) std::cerr << "wproj: warning: PLS did not fully converge\n";
  writeBasis(o, est.subspace(), "dama");
}

void runInlp(const SubspaceOptions& o) {
  checkSubspaceOutput(o, {o.x, o.labels});
  const Mat x = loadMatrix(o.x, "--x");
  const wproj::Labels z = loadLabels(o.labels, x.rows());
  wproj::InlpEstimator<double> est;
  est.setIterations(o.iterations).fit(x, z);
  std::cout << "inlp: kept " << est.classifiersKept() << " classifier(s); majority accuracy "
            << est.majorityAccuracy() << "\n";
  writeBasis(o, est.subspace(), "inlp");
}

void runMeanDiff(const SubspaceOptions& o) {
  checkSubspaceOutput(o, {o.a, o.b});
  const Mat a = loadMatrix(o.a, "--a"), b = loadMatrix(o.b, "--b");
  wproj::MeanDifferenceEstimator<double> est;
  est.fit(a, b);
  std::cout << "mean-diff: |mean(A) - mean(B)| = " << double(est.gap()) << "\n";
  writeBasis(o, est.subspace(), "mean-diff");
}

void runLeace(const SubspaceOptions& o) {
  checkSubspaceOutput(o, {o.x, o.labels});
  const Mat x = loadMatrix(o.x, "--x");
  const wproj::Labels z = loadLabels(o.labels, x.rows());
  const wproj::Index classes = z.size() ? z.maxCoeff() + 1 : 0;
  if (classes < 2) throw CliError("leace: labels must contain at least two classes");
  const wproj::LeaceEraser<double> e = wproj::LeaceFitter<double>::fit(x, z, classes);
  wproj::io::SafetensorsWriter w(o.out);
  w.addMetadata("wproj", "leace-eraser").addMetadata("affine", e.affine() ? "true" : "false");
  const auto d = std::uint64_t(e.dim()), k = std::uint64_t(e.rank());
  w.declare("left", wproj::io::DType::F64, {d, k}).declare("right", wproj::io::DType::F64, {d, k});
  w.declare("bias", wproj::io::DType::F64, {d});
  w.begin();
  w.write("left", e.left());
  w.write("right", e.right());
  w.write("bias", e.affine() ? Vec(e.bias()) : Vec(Vec::Zero(e.dim())));
  w.commit();
  std::cout << "leace: eraser of rank " << e.rank() << " in R^" << e.dim() << " (r(x) = x - L R^T (x - mu)) written to "
            << o.out << " (tensors left, right, bias)\n";
}

// ---------------------------------------------------------------------------------------------

struct EditOptions {
  std::string model, basis, leace, tensors, side = "output", out, report;
  double strength = 1.0;
  bool transposed = false;
  std::uint64_t maxShard = 0;
};

wproj::LeaceEraser<double> loadEraser(const std::string& path) {
  const wproj::io::SafetensorsReader r(path);
  bool ok = false, affine = true;
  for (const auto& kv : r.metadata()) {
    if (kv.first == "wproj" && kv.second == "leace-eraser") ok = true;
    if (kv.first == "affine") affine = kv.second == "true";
  }
  if (!ok || !r.find("left") || !r.find("right") || !r.find("bias"))
    throw CliError(path + ": not a LEACE eraser file (expected tensors left, right, bias written by 'wproj subspace leace')");
  const Mat l = r.read<double>("left"), rt = r.read<double>("right");
  const Vec b = r.read<double>("bias");
  if (l.rows() != rt.rows() || l.cols() != rt.cols() || b.size() != l.rows())
    throw CliError(path + ": eraser factors have inconsistent shapes");
  return wproj::LeaceEraser<double>(l, rt, b, affine);
}

std::string biasNameFor(const std::string& weight) {
  const std::string suffix = "weight";
  if (weight.size() >= suffix.size() && weight.compare(weight.size() - suffix.size(), suffix.size(), suffix) == 0)
    return weight.substr(0, weight.size() - suffix.size()) + "bias";
  return "";
}

/// Appends a matrix's shape and raw bytes to `out` (what the ranks of a sharded edit compare).
void appendBytes(std::string& out, const Mat& m) {
  out += " " + std::to_string(m.rows()) + "x" + std::to_string(m.cols()) + ":";
  out.append(reinterpret_cast<const char*>(m.data()), std::size_t(m.size()) * sizeof(double));
}

/// `wproj edit`. Under `mpirun -np N` (a group of N > 1 ranks) the tensors are assigned to ranks by
/// bytes, largest first (a LEACE weight with the bias folded into it counts both); each rank edits
/// or copies its tensors into its own shards; rank 0 names the shards, writes the index and swaps
/// the folder in. All or nothing: a failure on any rank stops every rank with that rank's message
/// and no output appears. Tensor values equal the one-process run's bits.
void runEdit(const EditOptions& o, const RankGroup* group) {
  if (o.basis.empty() == o.leace.empty()) throw UsageError("give exactly one of --basis B.npy or --leace ERASER.safetensors");
  if (!(o.strength >= 0 && o.strength <= 1))
    throw UsageError("--strength " + std::to_string(o.strength) + ": expected a value in [0, 1]");
  CollectiveStages stages(group);
  const bool dist = stages.distributed();
  const int rank = stages.rank(), ranks = stages.size();
  const bool output = o.side == "output";
  bool fileOut = false;
  std::unique_ptr<wproj::io::Checkpoint> ck;
  // The removal direction(s).
  wproj::Subspace<double> subspace;
  wproj::LeaceEraser<double> eraser;
  wproj::Index ambient = 0;
  std::string directions;  // the basis or eraser, as bytes
  std::vector<std::string> edited;
  std::map<std::string, std::string> biasOf;  // LEACE: weight -> bias tensor that is folded with it
  std::set<std::string> foldedBiases;
  stages.run("reading the model and the edit", [&]() {
    // Every output location is checked before any work.
    fileOut = checkOutputs(o.out, o.report);
    if (dist && fileOut)
      throw CliError("-o '" + o.out + "': an edit on " + std::to_string(ranks) +
                     " ranks writes a sharded folder, one or more shards per rank; give a folder (-o DIR)");
    ck = std::make_unique<wproj::io::Checkpoint>(o.model);
    const wproj::io::Checkpoint& c = *ck;
    std::vector<std::string> inputs = filesOf(c);
    inputs.push_back(o.basis.empty() ? o.leace : o.basis);
    checkNotAnInput(o.out, inputs, !fileOut, "-o");
    if (!o.report.empty()) checkNotAnInput(o.report, inputs, false, "--report");
    const std::regex re = compileRegex(o.tensors, "--tensors");
    if (!o.basis.empty()) {
      const Mat q = loadMatrix(o.basis, "--basis");
      subspace = wproj::Subspace<double>::fromOrthonormal(q);
      ambient = subspace.ambientDim();
      appendBytes(directions, q);
    } else {
      if (!output) throw CliError("a LEACE eraser acts on the output side: use --side output");
      eraser = loadEraser(o.leace);
      ambient = eraser.dim();
      appendBytes(directions, eraser.left());
      appendBytes(directions, eraser.right());
      appendBytes(directions, Mat(eraser.bias()));
    }
    // Plan: which tensors are edited; check every dimension before writing anything.
    for (const auto& n : c.names()) {
      if (!std::regex_search(n, re)) continue;
      const auto& t = c.info(n);
      if (!t.is2d() || !wproj::io::isConvertibleFloat(t.dtype)) continue;
      const wproj::Index outDim = o.transposed ? t.cols() : t.rows(), inDim = o.transposed ? t.rows() : t.cols();
      const wproj::Index need = output ? outDim : inDim;
      if (need != ambient)
        throw CliError("tensor '" + n + "' is " + std::to_string(t.rows()) + "x" + std::to_string(t.cols()) + ": its " +
                       (output ? "output" : "input") + " dimension is " + std::to_string(need) + " but the " +
                       (o.basis.empty() ? "eraser" : "basis") + " has dimension " + std::to_string(ambient) +
                       (o.transposed ? "" : " (use --transposed for weights stored (in, out))"));
      edited.push_back(n);
      if (!o.leace.empty()) {
        const std::string b = biasNameFor(n);
        if (!b.empty() && c.contains(b) && c.info(b).count() == std::uint64_t(need)) {
          biasOf[n] = b;
          foldedBiases.insert(b);
        }
      }
    }
    if (edited.empty()) throw CliError("no 2-D floating-point tensor of " + o.model + " matches --tensors '" + o.tensors + "'");
  });
  const wproj::io::Checkpoint& c = *ck;
  const std::vector<std::string>& names = c.names();
  if (dist) {
    // Every rank must see the same model and the same edit.
    std::ostringstream fp;
    fp << o.side << " " << o.strength << " " << o.transposed << " " << o.tensors << " " << o.maxShard << directions;
    for (const auto& n : names) fp << "\n" << n << " " << c.info(n).shapeString() << " " << c.info(n).dtypeString();
    stages.requireSame(fp.str(), "edit or view of the model (options, basis or eraser, tensor names, shapes, dtypes)");
  }

  // Which rank writes which tensor: by bytes, largest first (a folded bias goes with its weight).
  std::vector<int> owner(names.size(), 0);
  if (dist) {
    std::map<std::string, std::size_t> index;
    for (std::size_t k = 0; k < names.size(); ++k) index[names[k]] = k;
    std::vector<double> cost(names.size(), 0.0);
    for (std::size_t k = 0; k < names.size(); ++k) {
      if (foldedBiases.count(names[k])) continue;
      cost[k] = double(c.info(names[k]).bytes());
      const auto it = biasOf.find(names[k]);
      if (it != biasOf.end()) cost[k] += double(c.info(it->second).bytes());
    }
    owner = wproj::assignLargestFirst(cost, ranks);
    for (const auto& kv : biasOf) owner[index[kv.second]] = owner[index[kv.first]];
  }
  auto owns = [&](std::size_t k) { return owner[k] == rank; };

  // A folder output is written into a staging folder next to it and swapped in as a whole; under
  // mpirun rank 0 creates it and every rank writes its shards into its own subfolder of it.
  std::unique_ptr<wproj::io::AtomicFolder> folder;
  std::string staging;
  stages.run("creating the output folder", [&]() {
    if (!fileOut && rank == 0) {
      folder = std::make_unique<wproj::io::AtomicFolder>(o.out);
      staging = folder->stagingPath();
    }
  });
  stages.broadcast(staging, 0);
  const std::string target = fileOut ? o.out : dist ? rankFolder(staging, rank) : staging;

  wproj::WeightEditor<double> editor(output ? wproj::WeightSide::Output : wproj::WeightSide::Input);
  editor.setTransposed(o.transposed).setStrength(o.strength);
  const std::set<std::string> editSet(edited.begin(), edited.end());
  double total = 0;
  for (std::size_t k = 0; k < names.size(); ++k)
    if (owns(k)) total += double(c.info(names[k]).bytes());
  Progress progress(total, dist ? "edit (rank " + std::to_string(rank) + ")" : "edit");
  nlohmann::json part = nlohmann::json::array();  // [index, report entry] of this rank's edited tensors
  stages.run("editing", [&]() {
    bool any = false;
    for (std::size_t k = 0; k < names.size(); ++k) any = any || owns(k);
    if (!any) return;
    wproj::io::CheckpointWriter w(target, o.maxShard);
    for (const auto& kv : c.metadata()) w.addMetadata(kv.first, kv.second);
    for (std::size_t k = 0; k < names.size(); ++k)
      if (owns(k)) w.declare(c.info(names[k]));  // same dtype (any, also an unknown one) and shape
    w.begin();
    for (std::size_t k = 0; k < names.size(); ++k) {
      const std::string& n = names[k];
      const auto& t = c.info(n);
      if (!owns(k) || foldedBiases.count(n)) continue;  // a folded bias is written with its weight
      if (!editSet.count(n)) {
        w.writeRaw(n, c.readerOf(n).rawData(t), std::size_t(t.bytes()));
        c.release(n);
        progress.advance(double(t.bytes()), n);
        continue;
      }
      Mat wt;
      {
        const auto v = c.view<double>(n);
        copyTiled(wt, v.map());
      }
      wproj::EditReport r;
      nlohmann::json entry = {{"name", n}, {"shape", t.shape}, {"dtype", t.dtypeString()}};
      if (!o.leace.empty()) {
        auto it = biasOf.find(n);
        Vec b = it != biasOf.end() ? Vec(c.read<double>(it->second)) : Vec(Vec::Zero(ambient));
        r = editor.applyInPlace(wt, b, eraser);
        if (it != biasOf.end()) {
          w.write(it->second, b);
          c.release(it->second);
          entry["bias"] = it->second;
        } else if (eraser.affine()) {
          entry["warning"] = "no bias tensor: the mean term (I - P) mu of the affine eraser could not be folded";
          std::cerr << "wproj: warning: tensor '" << n << "' has no bias; only W <- P W was applied\n";
        }
      } else {
        r = editor.applyInPlace(wt, subspace);
      }
      w.write(n, wt);
      c.release(n);
      progress.advance(double(t.bytes()), n);
      entry["weight_norm"] = r.weightNorm;
      entry["delta_norm"] = r.deltaNorm;
      entry["max_direction_norm_before"] = r.normBefore.size() ? r.normBefore.maxCoeff() : 0.0;
      entry["max_direction_norm_after"] = r.normAfter.size() ? r.normAfter.maxCoeff() : 0.0;
      if (dist) entry["rank"] = rank;
      part.push_back({k, entry});
    }
    w.commit();
  });
  // Rank 0 collects every rank's report entries, in the model's tensor order.
  std::map<std::size_t, nlohmann::json> byIndex;
  for (const auto& s : stages.allgather(part.dump()))
    for (const auto& e : nlohmann::json::parse(s)) byIndex[e[0].get<std::size_t>()] = e[1];
  stages.run("writing the index and committing the output", [&]() {
    if (rank != 0) return;
    if (dist) assembleShards(staging, ranks);
    if (folder) folder->commit();
  });
  progress.finish();
  if (rank != 0) return;
  nlohmann::json rep = nlohmann::json::array();
  std::cout << std::left << std::setw(40) << "tensor" << std::setw(14) << "shape" << std::setw(12) << "|W|"
            << std::setw(12) << "|dW|" << "max |q^T W| before -> after\n";
  for (const auto& kv : byIndex) {
    const nlohmann::json& e = kv.second;
    const auto& t = c.info(e["name"].get<std::string>());
    std::cout << std::setw(40) << e["name"].get<std::string>() << std::setw(14)
              << (std::to_string(t.rows()) + "x" + std::to_string(t.cols())) << std::setw(12) << std::setprecision(5)
              << e["weight_norm"].get<double>() << std::setw(12) << e["delta_norm"].get<double>()
              << e["max_direction_norm_before"].get<double>() << " -> " << e["max_direction_norm_after"].get<double>() << "\n";
    rep.push_back(e);
  }
  std::cout << "edited " << edited.size() << " of " << names.size() << " tensors (" << o.side << " side, strength "
            << o.strength << ")" << (dist ? " on " + std::to_string(ranks) + " ranks" : "") << "; wrote " << o.out << "\n";
  if (!o.report.empty()) {
    nlohmann::json j = {{"model", o.model}, {"side", o.side}, {"strength", o.strength}, {"tensors", rep}};
    if (dist) {
      j["ranks"] = ranks;
      j["stages"] = stages.report();
    }
    writeReport(o.report, j.dump(2) + "\n");
  }
}

}  // namespace

void addEditCommands(CLI::App& app, const RankGroup* group) {
  static const RankGroup* ranks = nullptr;
  ranks = group;
  static SubspaceOptions so;
  auto* sub = app.add_subcommand("subspace", "Estimate a subspace to remove from .npy data (editing estimators)");
  sub->require_subcommand(1);
  sub->footer(
      "Each estimator writes an orthonormal basis Q (d x k) as .npy for 'wproj edit --basis'; leace writes its\n"
      "eraser (left, right, bias) as .safetensors for 'wproj edit --leace'. Rows of the inputs are samples.\n"
      "Example:\n  wproj subspace detox --pos pos.npy --neg neg.npy --rank 2 -o toxic_basis.npy\n");
  auto common = [](CLI::App* c) { c->add_option("--out,-o", so.out, "output file")->required(); };

  auto* detox = sub->add_subcommand("detox", "DeTox/ProFS: top-k directions of paired embedding differences");
  detox->add_option("--pos", so.pos, "preferred embeddings P.npy (N x D)")->required();
  detox->add_option("--neg", so.neg, "toxic embeddings N.npy (N x D, paired by row)")->required();
  detox->add_option("--rank,-k", so.rank, "number of directions k (default 2)");
  detox->add_flag("--no-centering", so.noCentering, "keep the top direction of the preferred embeddings");
  common(detox);
  detox->footer("Example:\n  wproj subspace detox --pos pos.npy --neg neg.npy --rank 2 -o toxic_basis.npy\n");
  detox->callback([]() { runDetox(so); });

  auto* dama = sub->add_subcommand("dama", "DAMA: PLS directions of inputs predictive of targets");
  dama->add_option("--inputs", so.inputs, "inputs H.npy (n x d)")->required();
  dama->add_option("--targets", so.targets, "targets V.npy (n x t)")->required();
  dama->add_option("--rank,-r", so.rank, "number of PLS components r")->required();
  common(dama);
  dama->footer("Example:\n  wproj subspace dama --inputs H.npy --targets V.npy --rank 8 -o bias_basis.npy\n");
  dama->callback([]() { runDama(so); });

  auto* inlp = sub->add_subcommand("inlp", "INLP: iterative nullspace projection of linear classifiers");
  inlp->add_option("--x", so.x, "representations X.npy (n x d)")->required();
  inlp->add_option("--labels", so.labels, "integer labels z.npy (n)")->required();
  inlp->add_option("--iterations", so.iterations, "maximum number of classifiers (default 35)");
  common(inlp);
  inlp->footer("Example:\n  wproj subspace inlp --x X.npy --labels z.npy --iterations 10 -o inlp_basis.npy\n");
  inlp->callback([]() { runInlp(so); });

  auto* leace = sub->add_subcommand("leace", "LEACE: closed-form concept eraser (writes left, right, bias as safetensors)");
  leace->add_option("--x", so.x, "representations X.npy (n x d)")->required();
  leace->add_option("--labels", so.labels, "integer labels z.npy (n)")->required();
  common(leace);
  leace->footer("Example:\n  wproj subspace leace --x X.npy --labels z.npy -o eraser.safetensors\n");
  leace->callback([]() { runLeace(so); });

  auto* md = sub->add_subcommand("mean-diff", "Mean difference direction (ThinkEdit-style)");
  md->add_option("--a", so.a, "samples A.npy (n x d)")->required();
  md->add_option("--b", so.b, "samples B.npy (m x d)")->required();
  common(md);
  md->footer("Example:\n  wproj subspace mean-diff --a long.npy --b short.npy -o direction.npy\n");
  md->callback([]() { runMeanDiff(so); });

  static EditOptions eo;
  auto* e = app.add_subcommand("edit", "Remove a subspace from matching 2-D weights of a model; copy the rest");
  e->add_option("MODEL", eo.model, "a .safetensors file, a model.safetensors.index.json, or a folder")->required();
  e->add_option("--basis", eo.basis, "orthonormal basis Q.npy (d x k) from 'wproj subspace'");
  e->add_option("--leace", eo.leace, "LEACE eraser .safetensors from 'wproj subspace leace' (folds W' = PW, b' = Pb + (I-P)mu)");
  e->add_option("--tensors", eo.tensors, "edit the 2-D tensors whose name matches this regular expression")->required();
  e->add_option("--side", eo.side, "output: W <- (I - a QQ^T) W; input: W <- W (I - a QQ^T)")
      ->check(CLI::IsMember({"output", "input"}));
  e->add_option("--strength", eo.strength, "a in [0, 1] (default 1)");
  e->add_flag("--transposed", eo.transposed, "weights are stored (in, out), e.g. GPT-2 Conv1D");
  e->add_option("--max-shard-size", eo.maxShard, "split the output folder into shards of at most this many bytes");
  e->add_option("--report", eo.report, "also write a JSON report of the edit to this file");
  e->add_option("-o,--out", eo.out, "output .safetensors file, or a folder")->required();
  e->footer(
      "Example:\n  wproj edit model.safetensors --basis toxic_basis.npy --tensors 'mlp\\.down_proj\\.weight' "
      "--side output -o detoxed.safetensors\n"
      "Under MPI (a wproj built with Open MPI): mpirun -np N wproj edit MODEL ... -o DIR shards the tensors over\n"
      "the ranks (by bytes, largest first); each rank writes its shards, rank 0 the index; all or nothing;\n"
      "the same tensor bytes as one process. -o must be a folder on a file system every rank shares.\n");
  e->callback([]() { runEdit(eo, ranks); });
}

}  // namespace wcli
