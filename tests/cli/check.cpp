// Checker for the end-to-end CLI tests (tests/cli/run.sh): generates inputs and verifies what
// `wproj` wrote against the library called directly on in-memory data, or against explicit
// formulas. Exits 0 when the check holds, 1 with a message otherwise.
#include <wproj/editing.hpp>
#include <wproj/io.hpp>
#include <wproj/merging.hpp>
#include <wproj/merging/registry.hpp>
#include <wproj/linalg/randomized_svd.hpp>

#include <Eigen/SVD>

#include <cstdlib>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <vector>

namespace wio = wproj::io;
using Mat = Eigen::MatrixXd;
using MatF = Eigen::MatrixXf;

namespace {

[[noreturn]] void fail(const std::string& msg) {
  std::cerr << "check: FAILED: " << msg << "\n";
  std::exit(1);
}

void expectClose(const Mat& got, const Mat& want, double tol, const std::string& what) {
  if (got.rows() != want.rows() || got.cols() != want.cols())
    fail(what + ": shape " + std::to_string(got.rows()) + "x" + std::to_string(got.cols()) + " vs " +
         std::to_string(want.rows()) + "x" + std::to_string(want.cols()));
  const double err = (got - want).cwiseAbs().maxCoeff();
  const double scale = std::max(1.0, want.cwiseAbs().maxCoeff());
  if (!(err <= tol * scale)) fail(what + ": max error " + std::to_string(err) + " > " + std::to_string(tol * scale));
}

Mat gaussian(wproj::Index m, wproj::Index n, std::uint64_t seed, double s = 1.0) {
  return wproj::gaussianMatrix<Mat>(m, n, seed) * s;
}

/// Rounds like storing in `dt` and reading back.
Mat stored(const Mat& x, wio::DType dt) {
  Mat y = x;
  for (wproj::Index i = 0; i < y.size(); ++i) {
    const double v = y.data()[i];
    switch (dt) {
      case wio::DType::F32: y.data()[i] = double(float(v)); break;
      case wio::DType::F16: y.data()[i] = wio::halfToDouble(wio::doubleToHalf(v)); break;
      case wio::DType::BF16: y.data()[i] = wio::bf16ToDouble(wio::doubleToBf16(v)); break;
      default: break;
    }
  }
  return y;
}

// A small "transformer-like" model: 2-D weights, biases, an embedding, an integer tensor.
void writeModel(const std::string& path, std::uint64_t seed, double scale, wio::DType dt, wproj::Index vocab = 32) {
  wio::SafetensorsWriter w(path);
  w.addMetadata("format", "pt");
  w.declare("embed_tokens.weight", dt, {std::uint64_t(vocab), 16});
  w.declare("layers.0.mlp.down_proj.weight", dt, {16, 24});
  w.declare("layers.0.mlp.down_proj.bias", dt, {16});
  w.declare("layers.0.attn.o_proj.weight", dt, {16, 16});
  w.declare("layers.0.norm.weight", dt, {16});
  w.declare("position_ids", wio::DType::I64, {4});
  w.begin();
  const std::uint64_t base = 1000;
  auto t = [&](wproj::Index m, wproj::Index n, std::uint64_t k) {
    return Mat(gaussian(m, n, base + k) + scale * gaussian(m, n, seed * 100 + k));
  };
  w.write("embed_tokens.weight", t(vocab, 16, 1));
  w.write("layers.0.mlp.down_proj.weight", t(16, 24, 2));
  w.write("layers.0.mlp.down_proj.bias", t(16, 1, 3));
  w.write("layers.0.attn.o_proj.weight", t(16, 16, 4));
  w.write("layers.0.norm.weight", t(16, 1, 5));
  const std::int64_t ids[4] = {0, 1, 2, 3};
  w.writeRaw("position_ids", ids, sizeof ids);
  w.commit();
}

int gen(const std::string& dir) {
  writeModel(dir + "/base.safetensors", 0, 0.0, wio::DType::F32);
  for (int i = 1; i <= 3; ++i) writeModel(dir + "/m" + std::to_string(i) + ".safetensors", std::uint64_t(i), 0.1, wio::DType::F32);
  writeModel(dir + "/m_bf16.safetensors", 7, 0.1, wio::DType::BF16);
  writeModel(dir + "/m_vocab.safetensors", 8, 0.1, wio::DType::F32, 40);  // different vocabulary size
  // Arrays.
  Eigen::VectorXd sig(12);
  for (int i = 0; i < 12; ++i) sig(i) = std::pow(0.7, i);
  Mat u = wproj::orthonormalized(gaussian(40, 12, 1)), v = wproj::orthonormalized(gaussian(30, 12, 2));
  wio::writeNpy(dir + "/W.npy", Mat(u * sig.asDiagonal() * v.transpose() + 1e-6 * gaussian(40, 30, 3)));
  wio::writeNpy(dir + "/P.npy", gaussian(60, 16, 4), wio::DType::F32);
  wio::writeNpy(dir + "/N.npy", Mat(gaussian(60, 16, 5) + gaussian(1, 16, 6).replicate(60, 1)), wio::DType::F32);
  wio::writeNpy(dir + "/H.npy", gaussian(80, 24, 7));
  wio::writeNpy(dir + "/V.npy", Mat(gaussian(80, 24, 7).leftCols(3) * 2.0 + 0.1 * gaussian(80, 3, 8)));
  Mat x = gaussian(120, 16, 9);
  Eigen::VectorXd z(120);
  for (int i = 0; i < 120; ++i) {
    z(i) = i % 2;
    x(i, 0) += z(i) > 0 ? 2.0 : -2.0;
  }
  wio::writeNpy(dir + "/X.npy", x);
  wio::writeNpyVector(dir + "/z.npy", z, wio::DType::I64);
  wio::writeNpy(dir + "/A.npy", Mat(gaussian(50, 16, 10) + gaussian(1, 16, 11).replicate(50, 1)));
  wio::writeNpy(dir + "/B.npy", gaussian(40, 16, 12));
  return 0;
}

// big0 … big<count>.safetensors, each with `tensors` n×n float32 Gaussian tensors (the seed of
// tensor t of file i is i·1000 + t).
int genLarge(const std::string& dir, int count, int n, int tensors) {
  for (int i = 0; i <= count; ++i) {
    wio::SafetensorsWriter w(dir + "/big" + std::to_string(i) + ".safetensors");
    for (int t = 0; t < tensors; ++t) w.declare("w" + std::to_string(t), wio::DType::F32, {std::uint64_t(n), std::uint64_t(n)});
    w.begin();
    for (int t = 0; t < tensors; ++t)
      w.write("w" + std::to_string(t), MatF(wproj::gaussianMatrix<MatF>(n, n, std::uint64_t(i * 1000 + t))));
    w.commit();
  }
  return 0;
}

// A .npy file written by hand: `fortran` stores the data column-major (Fortran order).
void writeNpyOrdered(const std::string& path, const Mat& a, wio::DType dt, bool fortran) {
  std::vector<unsigned char> bytes = wio::npyBytes(fortran ? Mat(a.transpose()) : a, dt);
  // npyBytes writes C order: C-order data of Aᵀ is Fortran-order data of A; fix the header.
  std::string text(bytes.begin(), bytes.end());
  if (fortran) {
    const std::string from = "'fortran_order': False, 'shape': (" + std::to_string(a.cols()) + ", " + std::to_string(a.rows()) + ")";
    const std::string to = "'fortran_order': True,  'shape': (" + std::to_string(a.rows()) + ", " + std::to_string(a.cols()) + ")";
    const auto at = text.find(from);
    if (at == std::string::npos) fail("writeNpyOrdered: unexpected header");
    text.replace(at, from.size(), to);
    // The header keeps its length when the two extents have the same number of digits.
    if (text.size() != bytes.size()) fail("writeNpyOrdered: header length changed");
  }
  wio::AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

// Inputs for the svd/read-path tests: 300×400 (C order f4, Fortran order f4, C order f2, C
// order f8) with σ_i = 1/i (i ≤ 200) plus small noise, and 130×70 arrays for the tiled reader.
int genArrays(const std::string& dir) {
  const wproj::Index m = 300, n = 400, r = 200;
  Eigen::VectorXd sig(r);
  for (wproj::Index i = 0; i < r; ++i) sig(i) = 1.0 / double(i + 1);
  const Mat u = wproj::orthonormalized(gaussian(m, r, 21)), v = wproj::orthonormalized(gaussian(n, r, 22));
  const Mat a = u * sig.asDiagonal() * v.transpose() + 1e-4 / std::sqrt(double(n)) * gaussian(m, n, 23);
  writeNpyOrdered(dir + "/L_c.npy", a, wio::DType::F32, false);
  writeNpyOrdered(dir + "/L_f.npy", a, wio::DType::F32, true);
  writeNpyOrdered(dir + "/L_h.npy", a, wio::DType::F16, false);
  writeNpyOrdered(dir + "/L_d.npy", a, wio::DType::F64, false);
  const Mat t = gaussian(130, 70, 24);
  for (auto dt : {wio::DType::F32, wio::DType::F64, wio::DType::F16, wio::DType::I32}) {
    const std::string name = dir + "/T_" + wio::dtypeName(dt) + ".npy";
    writeNpyOrdered(name, dt == wio::DType::I32 ? Mat((100 * t).array().round().matrix()) : t, dt, false);
  }
  return 0;
}

// readNpy (tiled reordering) and NpyMatrixView against the values written, for every dtype.
int checkRead(const std::string& dir) {
  const Mat t = gaussian(130, 70, 24);
  for (auto dt : {wio::DType::F32, wio::DType::F64, wio::DType::F16, wio::DType::I32}) {
    const std::string name = dir + "/T_" + wio::dtypeName(dt) + ".npy";
    const Mat want = stored(dt == wio::DType::I32 ? Mat((100 * t).array().round().matrix()) : t, dt);
    expectClose(wio::readNpy<double>(name), want, 0.0, "readNpy<double> " + name);
    expectClose(wio::readNpy<float>(name).cast<double>(), want.cast<float>().cast<double>(), 0.0, "readNpy<float> " + name);
    const wio::NpyMatrixView<double> view(name);
    if (!view.isRowMajor()) fail("NpyMatrixView: C-order data should be row-major: " + name);
    if (view.isZeroCopy() != (dt == wio::DType::F64)) fail("NpyMatrixView: zero-copy exactly for f8 data: " + name);
    expectClose(Mat(view.rowMajorMap()), want, 0.0, "NpyMatrixView " + name);
    expectClose(Mat(view.transposedMap().transpose()), want, 0.0, "NpyMatrixView transposed " + name);
  }
  return 0;
}

// ‖A − USVᵀ‖_F/‖A‖_F ≤ ratio × the optimal rank-k error, with orthonormal U and V.
int checkSvdError(const std::string& in, const std::string& dir, wproj::Index k, double ratio) {
  const Mat a = wio::readNpy<double>(in);
  const Mat u = wio::readNpy<double>(dir + "/U.npy"), s = wio::readNpy<double>(dir + "/S.npy"), v = wio::readNpy<double>(dir + "/V.npy");
  if (u.cols() > k || s.size() != u.cols() || v.cols() != u.cols() || u.rows() != a.rows() || v.rows() != a.cols())
    fail("svd-error: factor shapes");
  const double ortho = std::max((u.transpose() * u - Mat::Identity(u.cols(), u.cols())).norm(),
                                (v.transpose() * v - Mat::Identity(v.cols(), v.cols())).norm());
  if (ortho > 1e-4) fail("svd-error: factors not orthonormal (" + std::to_string(ortho) + ")");
  Eigen::BDCSVD<Mat> ref(a);
  const Eigen::VectorXd sv = ref.singularValues();
  const double total = sv.squaredNorm();
  const double opt = std::sqrt(sv.tail(sv.size() - u.cols()).squaredNorm() / total);
  const double err = (a - u * s.col(0).asDiagonal() * v.transpose()).norm() / std::sqrt(total);
  if (!(err <= ratio * opt)) fail("svd-error: error " + std::to_string(err) + " > " + std::to_string(ratio) + " x optimal " + std::to_string(opt));
  std::cout << "svd-error: rank " << u.cols() << ", error/optimal " << err / opt << "\n";
  return 0;
}

// Checkpoints for the merge shape checks: a 3-D tensor and an empty one.
int genShapes(const std::string& dir) {
  auto model = [&](const std::string& path, std::uint64_t seed, bool flat) {
    wio::SafetensorsWriter w(path);
    w.declare("w", wio::DType::F32, {4, 4});
    w.declare("w3d", wio::DType::F32, flat ? std::vector<std::uint64_t>{2, 12} : std::vector<std::uint64_t>{2, 3, 4});
    w.declare("empty", wio::DType::F32, {0, 16});
    w.begin();
    w.write("w", Mat(gaussian(4, 4, seed)));
    w.write("w3d", Mat(gaussian(2, 12, seed + 1)));
    w.writeRaw("empty", nullptr, 0);
    w.commit();
  };
  model(dir + "/s_base.safetensors", 1, false);
  model(dir + "/s_m1.safetensors", 2, false);
  model(dir + "/s_flat.safetensors", 3, true);
  // A rank-3 float32 matrix: 13 of its 16 singular values are rounding noise.
  wio::SafetensorsWriter w(dir + "/lowrank.safetensors");
  w.declare("lowrank", wio::DType::F32, {16, 24});
  w.begin();
  w.write("lowrank", Mat(gaussian(16, 3, 31) * gaussian(3, 24, 32)));
  w.commit();
  return 0;
}

int checkSvd(const std::string& in, const std::string& dir, wproj::Index k, const std::string& method, std::uint64_t seed) {
  const Mat a = wio::readNpy<double>(in);
  const Mat u = wio::readNpy<double>(dir + "/U.npy"), s = wio::readNpy<double>(dir + "/S.npy"), v = wio::readNpy<double>(dir + "/V.npy");
  if (method == "exact") {
    wproj::TruncatedSVD<Mat> svd(a, k);
    expectClose(u, svd.matrixU(), 1e-12, "U");
    expectClose(s, svd.singularValues(), 1e-12, "S");
    expectClose(v, svd.matrixV(), 1e-12, "V");
  } else {
    wproj::RandomizedSVD<Mat> svd;
    svd.setRank(k).setSeed(seed).setPowerIterations(2).compute(a);
    expectClose(s, svd.singularValues(), 1e-12, "S (randomized)");
    expectClose(u, svd.matrixU(), 1e-10, "U (randomized)");
  }
  // Independent oracle: BDCSVD singular values.
  Eigen::BDCSVD<Mat> ref(a);
  expectClose(s, ref.singularValues().head(k), 1e-8, "S vs BDCSVD");
  return 0;
}

int checkSpectrum(const std::string& model, const std::string& csv) {
  const wio::Checkpoint c(model);
  std::ifstream f(csv);
  std::string line;
  std::getline(f, line);
  if (line.rfind("name,rows,cols,sigma_max", 0) != 0) fail("spectrum: bad CSV header: " + line);
  int rows = 0;
  while (std::getline(f, line)) {
    std::vector<std::string> cols;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) cols.push_back(cell);
    if (cols.size() != 14) fail("spectrum: expected 14 columns: " + line);
    const Mat w = c.read<double>(cols[0]);
    Eigen::JacobiSVD<Mat> svd(w);
    const Eigen::VectorXd s = svd.singularValues();
    double tot = s.squaredNorm(), acc = 0;
    long r90 = -1, r99 = -1;
    for (long i = 0; i < s.size(); ++i) {
      acc += s(i) * s(i);
      if (r90 < 0 && acc >= 0.9 * tot) r90 = i + 1;
      if (r99 < 0 && acc >= 0.99 * tot) r99 = i + 1;
    }
    const Eigen::ArrayXd p = s.array() / s.sum();
    const double erank = std::exp(-(p * p.log()).sum());
    auto num = [&](int i) { return std::stod(cols[std::size_t(i)]); };
    if (std::abs(num(3) - s(0)) > 1e-6 * s(0)) fail("spectrum: sigma_max of " + cols[0]);
    if (std::abs(num(4) - s(s.size() - 1)) > 1e-6 * s(0)) fail("spectrum: sigma_min of " + cols[0]);
    if (std::abs(num(5) - w.norm()) > 1e-6 * w.norm()) fail("spectrum: frobenius of " + cols[0]);
    if (long(num(7)) != r90 || long(num(8)) != r99) fail("spectrum: energy ranks of " + cols[0]);
    if (std::abs(num(9) - erank) > 1e-6 * erank) fail("spectrum: effective rank of " + cols[0]);
    if (!(num(10) > 1.0)) fail("spectrum: alpha of " + cols[0] + " should be > 1");
    ++rows;
  }
  if (rows == 0) fail("spectrum: no rows");
  return 0;
}

int checkSubspace(const std::string& kind, const std::string& out, const std::vector<std::string>& in) {
  wproj::Subspace<double> want;
  if (kind == "detox") {
    wproj::DetoxEstimator<double> e;
    e.setRank(2).fit(wio::readNpy<double>(in[0]), wio::readNpy<double>(in[1]));
    want = e.subspace();
  } else if (kind == "dama") {
    wproj::DamaEstimator<double> e;
    e.setRank(3).fit(wio::readNpy<double>(in[0]), wio::readNpy<double>(in[1]));
    want = e.subspace();
  } else if (kind == "mean-diff") {
    wproj::MeanDifferenceEstimator<double> e;
    e.fit(wio::readNpy<double>(in[0]), wio::readNpy<double>(in[1]));
    want = e.subspace();
  } else if (kind == "inlp") {
    const Mat x = wio::readNpy<double>(in[0]);
    const Mat zz = wio::readNpy<double>(in[1]);
    wproj::Labels z = zz.col(0).cast<int>();
    wproj::InlpEstimator<double> e;
    e.setIterations(5).fit(x, z);
    want = e.subspace();
  }
  const Mat got = wio::readNpy<double>(out);
  if (got.cols() != want.dim() || got.rows() != want.ambientDim()) fail(kind + ": basis shape");
  const double ov = (got.transpose() * want.basis()).squaredNorm() / double(std::max<wproj::Index>(1, want.dim()));
  if (std::abs(ov - 1.0) > 1e-8) fail(kind + ": basis spans a different subspace (overlap " + std::to_string(ov) + ")");
  return 0;
}

// Edited model vs explicit (I − αQQᵀ)W / W(I − αQQᵀ) on matching tensors; byte-identical elsewhere.
int checkEdit(const std::string& in, const std::string& out, const std::string& basis, const std::string& regex,
              const std::string& side, double alpha) {
  const wio::Checkpoint a(in), b(out);
  const Mat q = wio::readNpy<double>(basis);
  const std::regex re(regex);
  if (a.names() != b.names()) fail("edit: tensor names differ");
  int edited = 0;
  for (const auto& n : a.names()) {
    const auto& ta = a.info(n);
    const auto& tb = b.info(n);
    if (ta.dtype != tb.dtype || ta.shape != tb.shape) fail("edit: dtype/shape of " + n);
    if (std::regex_search(n, re) && ta.is2d()) {
      const Mat w = a.read<double>(n);
      const Mat p = Mat::Identity(q.rows(), q.rows()) - alpha * q * q.transpose();
      const Mat want = side == "output" ? Mat(p * w) : Mat(w * p);
      expectClose(b.read<double>(n), stored(want, ta.dtype), 1e-6, "edit of " + n);
      ++edited;
    } else if (std::memcmp(a.readerOf(n).rawData(ta), b.readerOf(n).rawData(tb), std::size_t(ta.bytes())) != 0) {
      fail("edit: tensor " + n + " should be copied unchanged");
    }
  }
  if (edited == 0) fail("edit: nothing edited");
  return 0;
}

int checkLeaceEdit(const std::string& in, const std::string& out, const std::string& eraser, const std::string& weight,
                   const std::string& bias) {
  const wio::Checkpoint a(in), b(out);
  const wio::SafetensorsReader e(eraser);
  const Mat l = e.read<double>("left"), r = e.read<double>("right");
  const Eigen::VectorXd mu = e.read<double>("bias");
  const Mat p = Mat::Identity(l.rows(), l.rows()) - l * r.transpose();
  expectClose(b.read<double>(weight), stored(p * a.read<double>(weight), wio::DType::F32), 1e-5, "leace weight");
  const Eigen::VectorXd bb = a.read<double>(bias);
  const Eigen::VectorXd want = p * bb + (Mat::Identity(l.rows(), l.rows()) - p) * mu;
  expectClose(b.read<double>(bias), stored(want, wio::DType::F32), 1e-5, "leace bias");
  return 0;
}

// Merge: the library on whole in-memory checkpoints vs the streamed file.
template <typename Merger>
std::map<std::string, MatF> mergeInMemory(Merger m, const wio::Checkpoint& base, const std::vector<wio::Checkpoint*>& models,
                                          const std::vector<std::string>& names, const wproj::MergeRules& rules) {
  std::map<std::string, MatF> out;
  wproj::ModelMerger<Merger> mm(m);
  mm.setRules(rules);
  mm.merge(
      names, wproj::Index(models.size()), [&](const std::string& n) { return MatF(base.read<float>(n)); },
      [&](wproj::Index i, const std::string& n) { return MatF(models[std::size_t(i)]->read<float>(n)); },
      [&](const std::string& n, const MatF& t) { out[n] = t; });
  return out;
}

int checkMerge(const std::string& method, double p1, const std::string& outPath, const std::string& outDtype,
               const std::string& basePath, const std::vector<std::string>& modelPaths, const std::string& skipRegex) {
  const wio::Checkpoint base(basePath), merged(outPath);
  std::vector<std::unique_ptr<wio::Checkpoint>> own;
  std::vector<wio::Checkpoint*> models;
  for (const auto& p : modelPaths) {
    own.push_back(std::make_unique<wio::Checkpoint>(p));
    models.push_back(own.back().get());
  }
  wproj::MergeRules rules;
  if (!skipRegex.empty()) rules.add(skipRegex, wproj::TensorAction::Skip);
  std::vector<std::string> names;
  for (const auto& n : base.names())
    if (wio::isConvertibleFloat(base.info(n).dtype)) names.push_back(n);
  std::map<std::string, MatF> want;
  // mergekit's methods: the registry's run on the in-memory checkpoints, with weight 1 for every
  // model, the one parameter given (lambda, density or t) and seed 3 (what the configs of run.sh say).
  static const std::map<std::string, std::string> mergekitParam{
      {"task_arithmetic", "lambda"}, {"ties", "density"}, {"dare_linear", "density"}, {"dare_ties", "density"},
      {"linear", ""}, {"model_stock", ""}, {"slerp", "t"}};
  const auto mk = mergekitParam.find(method);
  if (mk != mergekitParam.end()) {
    const wproj::MergeMethod& m = wproj::mergeMethod(method);
    wproj::MergeParams given;
    if (m.param("weight")) given["weight"] = wproj::ParamValue::number(1.0);
    if (!mk->second.empty()) given[mk->second] = wproj::ParamValue::number(p1);
    wproj::MergeJob<float> job;
    job.names = names;
    job.numModels = wproj::Index(models.size());
    job.rules = rules;
    job.seed = 3;
    job.base = [&](const std::string& n) { return MatF(base.read<float>(n)); };
    job.model = [&](wproj::Index i, const std::string& n) { return MatF(models[std::size_t(i)]->read<float>(n)); };
    job.sink = [&](const std::string& n, const MatF& t) { want[n] = t; };
    m.run(given, job);
  } else if (method == "iso_c") want = mergeInMemory(wproj::IsoCMerging<float>().setScale(p1), base, models, names, rules);
  else if (method == "tsv") want = mergeInMemory(wproj::TsvMerging<float>().setScale(p1), base, models, names, rules);
  else if (method == "iso_cts") want = mergeInMemory(wproj::IsoCtsMerging<float>().setScale(p1), base, models, names, rules);
  else if (method == "task_slerp") want = mergeInMemory(wproj::SlerpMerging<float>().setT(p1), base, models, names, rules);
  else if (method == "opcm") {
    wproj::OpcmMerging<float> cm;
    cm.setAlpha(p1).setRules(rules);
    for (auto* m : models)
      cm.addModel(names, [&](const std::string& n) { return MatF(m->read<float>(n) - base.read<float>(n)); });
    cm.writeMerged([&](const std::string& n) { return MatF(base.read<float>(n)); },
                   [&](const std::string& n, const MatF& t) { want[n] = t; });
  } else {
    fail("merge: unknown method " + method);
  }
  const wio::DType od = outDtype.empty() ? wio::DType::F32 : wio::dtypeFromString(outDtype);
  for (const auto& n : names) {
    if (merged.info(n).dtype != od) fail("merge: dtype of " + n);
    // float32 output of a batch method: the same bits as the library (same reads, same arithmetic).
    const double tol = od != wio::DType::F32 ? 1e-2 : method == "opcm" ? 1e-5 : 0.0;
    expectClose(merged.read<double>(n), stored(want.at(n).cast<double>(), od), tol, "merge " + method + " tensor " + n);
  }
  // Non-float tensors are copied.
  if (base.contains("position_ids") && merged.read<double>("position_ids") != base.read<double>("position_ids"))
    fail("merge: position_ids not copied");
  return 0;
}

int checkSame(const std::string& a, const std::string& b) {
  const wio::Checkpoint x(a), y(b);
  if (x.names() != y.names()) fail("same: names differ");
  for (const auto& n : x.names()) {
    if (x.info(n).dtype != y.info(n).dtype || x.info(n).shape != y.info(n).shape) fail("same: " + n);
    if (std::memcmp(x.readerOf(n).rawData(x.info(n)), y.readerOf(n).rawData(y.info(n)), std::size_t(x.info(n).bytes())) != 0)
      fail("same: bytes of " + n);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  try {
    if (a.empty()) fail("usage: check COMMAND ...");
    if (a[0] == "gen") return gen(a.at(1));
    if (a[0] == "gen-large")  // gen-large DIR COUNT N [TENSORS (4)]
      return genLarge(a.at(1), std::stoi(a.at(2)), std::stoi(a.at(3)), a.size() > 4 ? std::stoi(a.at(4)) : 4);
    if (a[0] == "gen-arrays") return genArrays(a.at(1));
    if (a[0] == "gen-shapes") return genShapes(a.at(1));
    if (a[0] == "read") return checkRead(a.at(1));
    if (a[0] == "svd-error") return checkSvdError(a.at(1), a.at(2), std::stol(a.at(3)), std::stod(a.at(4)));
    if (a[0] == "svd") return checkSvd(a.at(1), a.at(2), std::stol(a.at(3)), a.at(4), std::stoull(a.at(5)));
    if (a[0] == "spectrum") return checkSpectrum(a.at(1), a.at(2));
    if (a[0] == "subspace") return checkSubspace(a.at(1), a.at(2), {a.begin() + 3, a.end()});
    if (a[0] == "edit") return checkEdit(a.at(1), a.at(2), a.at(3), a.at(4), a.at(5), std::stod(a.at(6)));
    if (a[0] == "leace-edit") return checkLeaceEdit(a.at(1), a.at(2), a.at(3), a.at(4), a.at(5));
    if (a[0] == "merge")  // merge METHOD PARAM OUT OUT_DTYPE SKIP_REGEX BASE MODELS...
      return checkMerge(a.at(1), std::stod(a.at(2)), a.at(3), a.at(4) == "-" ? "" : a.at(4), a.at(6),
                        {a.begin() + 7, a.end()}, a.at(5) == "-" ? "" : a.at(5));
    if (a[0] == "same") return checkSame(a.at(1), a.at(2));
    fail("unknown command " + a[0]);
  } catch (const std::exception& e) {
    fail(std::string("exception: ") + e.what());
  }
}
