// wproj command-line tool: `wproj svd` and `wproj spectrum`.
#include "common.hpp"
#include "spectrum_stats.hpp"

#include <wproj/linalg/randomized_svd.hpp>
#include <wproj/linalg/truncated_svd.hpp>

#include <nlohmann/json.hpp>

#include <Eigen/SVD>

#include <iomanip>
#include <limits>
#include <sstream>

namespace wcli {
namespace {

struct SvdOptions {
  std::string input, out, method = "auto";
  wproj::Index rank = 0, oversample = 10, powerIters = -1, blockSize = -1;
  double tol = -1;
  std::uint64_t seed = 0;
  bool timings = false;
};

/// The default block size of block Krylov iteration: ⌈k/2⌉ columns per product, between 8 and
/// 64, so that the automatic depth (the smallest q ≥ 2 with b(q+1) ≥ 2k) builds a Krylov space
/// of about 2k columns: on the benchmark spectra the fastest setting reaching ≤ 1.01× the optimal
/// error (k = 128: b = 64, q = 3; k = 32: b = 16, q = 3).
wproj::Index defaultKrylovBlock(wproj::Index k) { return std::min<wproj::Index>(64, std::max<wproj::Index>(8, (k + 1) / 2)); }

/// Smallest dimension up to which `--method auto` runs the exact SVD (cheaper than sketching there).
constexpr wproj::Index kAutoExactMaxDim = 256;

/// Checks the options that do not depend on the input (exit status 2 when wrong).
void checkSvdOptions(const SvdOptions& o) {
  if (o.rank < 1) throw UsageError("--rank " + std::to_string(o.rank) + ": expected an integer >= 1");
  if (o.oversample < 0) throw UsageError("--oversample " + std::to_string(o.oversample) + ": expected an integer >= 0");
  if (o.powerIters < -1) throw UsageError("--power-iters " + std::to_string(o.powerIters) + ": expected an integer >= 0, or -1 for automatic");
  if (o.blockSize != -1 && o.blockSize < 1) throw UsageError("--block-size " + std::to_string(o.blockSize) + ": expected an integer >= 1");
  if (o.tol != -1 && !(o.tol > 0 && o.tol < 1)) throw UsageError("--tol " + std::to_string(o.tol) + ": expected a value in (0, 1)");
  if (o.tol != -1 && o.method == "exact") throw UsageError("--tol needs a randomized method (auto, power or krylov), not exact");
}

/// Checks the output folder and the three files in it before any work.
void checkSvdOutput(const SvdOptions& o) {
  struct stat st;
  if (::stat(o.out.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw CliError("--out '" + o.out + "' exists and is not a folder");
    checkWritableFolder(o.out, "--out", o.out);
    for (const char* f : {"/U.npy", "/S.npy", "/V.npy"}) {
      checkOutputFile(o.out + f, "--out");
      checkNotAnInput(o.out + f, {o.input}, false, "--out");
    }
  } else {
    checkWritableFolder(parentOf(o.out), "--out", o.out);
  }
}

template <typename Scalar>
void svdIn(const SvdOptions& o) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  // The input is used where it lies: a zero-copy map of the file when its dtype is the compute
  // type (else one conversion pass), row-major for C-order data, handed to the decompositions as is.
  const auto t0 = std::chrono::steady_clock::now();
  const wproj::io::NpyMatrixView<Scalar> view(o.input);
  const wproj::Index m = view.rows(), n = view.cols();
  if (view.isZeroCopy()) {
    // Fault the mapped pages in now, in order (counted as reading, not as the SVD).
    const volatile unsigned char* p = reinterpret_cast<const unsigned char*>(view.data());
    const std::size_t bytes = std::size_t(m) * std::size_t(n) * sizeof(Scalar);
    unsigned char sink = 0;
    for (std::size_t i = 0; i < bytes; i += 4096) sink ^= p[i];
    (void)sink;
  }
  const double readSeconds = since(t0);
  const wproj::Index maxRank = std::min(m, n);
  if (o.rank > maxRank)
    throw CliError("--rank " + std::to_string(o.rank) + " is out of range for a " + std::to_string(m) + "x" +
                   std::to_string(n) + " matrix (expected 1.." + std::to_string(maxRank) + ")");
  std::string method = o.method;
  if (method == "randomized") method = "power";
  if (method == "auto") method = maxRank <= kAutoExactMaxDim && o.tol < 0 ? "exact" : "krylov";
  if (o.tol > 0) method = "fixed accuracy";
  Matrix u, v;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> s;
  std::string detail;
  double errEst = -1;
  auto withInput = [&](auto&& fn) {
    if (view.isRowMajor()) fn(view.rowMajorMap());
    else fn(view.colMajorMap());
  };
  if (method == "exact") {
    withInput([&](const auto& a) {
      wproj::checkFinite(a, "wproj svd", o.input.c_str());
      wproj::TruncatedSVD<Matrix> svd;
      svd.setRank(o.rank).compute(a);
      if (svd.info() != Eigen::Success) throw CliError("the exact SVD did not converge");
      u = svd.matrixU();
      s = svd.singularValues();
      v = svd.matrixV();
    });
  } else {
    wproj::RandomizedSVD<Matrix> svd;
    svd.setRank(o.rank).setOversampling(o.oversample).setPowerIterations(o.powerIters).setSeed(o.seed);
    if (method == "krylov") svd.setBlockKrylov(true).setKrylovBlockSize(o.blockSize > 0 ? o.blockSize : defaultKrylovBlock(o.rank));
    if (o.tol > 0) {
      svd.setTolerance(o.tol);
      if (o.blockSize > 0) svd.setBlockSize(o.blockSize);
    }
    withInput([&](const auto& a) {
      try {
        svd.compute(a);
      } catch (const wproj::Error&) {
        wproj::checkFinite(a, "wproj svd", o.input.c_str());  // names the file when A holds NaN/Inf
        throw;
      }
    });
    if (o.tol > 0 && svd.info() != Eigen::Success)
      std::cerr << "wproj: warning: --tol " << o.tol << " was not reached within --rank " << o.rank
                << " (estimated relative error " << svd.errorEstimate() << "); wrote the rank-" << o.rank << " result\n";
    else if (svd.info() != Eigen::Success)
      throw CliError("the randomized SVD did not converge");
    u = svd.matrixU();
    s = svd.singularValues();
    v = svd.matrixV();
    errEst = svd.errorEstimate();
    if (svd.usedExact()) detail = ", exact fallback";
    else if (o.tol > 0) {
      std::ostringstream t;
      t << ", tol " << o.tol << ", basis of " << svd.sketchSize() << " columns, q=" << svd.powerIterationsUsed();
      detail = t.str();
    }
    else if (method == "krylov") detail = ", b=" + std::to_string(svd.sketchSize()) + ", q=" + std::to_string(svd.powerIterationsUsed());
    else detail = ", p=" + std::to_string(o.oversample) + ", q=" + std::to_string(svd.powerIterationsUsed());
  }
  const double svdSeconds = since(t0) - readSeconds;
  // U, S and V are written completely into temporary files first and only then renamed into
  // place, one after the other.
  ensureDirectory(o.out);
  wproj::io::AtomicFile fu(o.out + "/U.npy"), fs(o.out + "/S.npy"), fv(o.out + "/V.npy");
  {
    const auto bu = wproj::io::npyBytes(u, wproj::io::defaultDtype<Scalar>());
    fu.write(bu.data(), bu.size());
  }
  {
    const auto bs = wproj::io::npyBytes(s, wproj::io::defaultDtype<Scalar>(), true);
    fs.write(bs.data(), bs.size());
  }
  {
    const auto bv = wproj::io::npyBytes(v, wproj::io::defaultDtype<Scalar>());
    fv.write(bv.data(), bv.size());
  }
  fu.commit();
  fs.commit();
  fv.commit();
  std::cout << "input: " << o.input << " ("
            << (view.isZeroCopy() ? "read in place: memory-mapped, no copy"
                                  : std::string("converted from ") + wproj::io::dtypeName(view.header().dtype) + " in one pass")
            << ", " << (view.isRowMajor() ? "C order" : "Fortran order or vector") << ")\n";
  std::cout << "svd (" << method << detail << ") of " << o.input << " (" << m << "x" << n << "), rank " << u.cols()
            << ": sigma_1 = " << double(s(0)) << ", sigma_" << s.size() << " = " << double(s(s.size() - 1));
  if (errEst >= 0) std::cout << ", estimated relative error " << errEst;
  std::cout << "\n"
            << "wrote " << o.out << "/U.npy (" << u.rows() << "x" << u.cols() << "), " << o.out << "/S.npy (" << s.size()
            << "), " << o.out << "/V.npy (" << v.rows() << "x" << v.cols() << ")\n";
  if (o.timings)
    std::cout << "timings: read " << readSeconds << " s, svd " << svdSeconds << " s, write "
              << since(t0) - readSeconds - svdSeconds << " s\n";
}

void runSvd(const SvdOptions& o) {
  checkSvdOptions(o);
  checkSvdOutput(o);
  const auto h = wproj::io::readNpyHeader(o.input);
  if (h.shape.size() != 2)
    throw CliError(o.input + ": expected a 2-D array, got " + std::to_string(h.shape.size()) + " dimension(s)");
  if (h.count == 0) throw CliError(o.input + ": the array is empty (" + std::to_string(h.rows()) + "x" + std::to_string(h.cols()) + ")");
  if (h.dtype == wproj::io::DType::F32 || h.dtype == wproj::io::DType::F16)
    svdIn<float>(o);
  else
    svdIn<double>(o);
}

struct SpectrumOptions {
  std::string model, tensors = ".*", format = "csv";
  wproj::Index minTail = 10;
};

void runSpectrum(const SpectrumOptions& o) {
  if (o.minTail < 2)
    throw UsageError("--min-tail " + std::to_string(o.minTail) +
                     ": expected an integer >= 2 (the power-law fit needs at least two eigenvalues)");
  const wproj::io::Checkpoint c(o.model);
  const std::regex re = compileRegex(o.tensors, "--tensors");
  std::vector<std::string> names;
  double total = 0;
  for (const auto& n : c.names()) {
    const auto& t = c.info(n);
    if (t.is2d() && t.count() > 0 && wproj::io::isReadableAsReal(t.dtype) && std::regex_search(n, re)) {
      names.push_back(n);
      total += double(t.count());
    }
  }
  if (names.empty()) throw CliError("no 2-D tensor of " + o.model + " matches --tensors '" + o.tensors + "'");
  Progress progress(total, "spectrum");
  nlohmann::json out = nlohmann::json::array();
  if (o.format == "csv")
    std::cout << "name,rows,cols,sigma_max,sigma_min,frobenius,stable_rank,rank90,rank99,effective_rank,alpha,alpha_xmin,"
                 "alpha_tail,alpha_ks\n";
  for (const auto& n : names) {
    // The row-major data of W is, unchanged, the column-major data of Wᵀ, which has the same
    // singular values: no reordering copy.
    const auto& t = c.info(n);
    Eigen::VectorXd sigma;
    {
      const auto view = c.view<double>(n);
      const Eigen::Map<const Eigen::MatrixXd> wt(view.map().data(), view.cols(), view.rows());
      wproj::checkFinite(wt, "wproj spectrum", n.c_str());
      Eigen::BDCSVD<Eigen::MatrixXd> svd(wt);
      sigma = svd.singularValues();
    }
    c.release(n);
    const double eps = t.dtype == wproj::io::DType::F64 ? std::numeric_limits<double>::epsilon()
                                                        : double(std::numeric_limits<float>::epsilon());
    const SpectrumStats s = spectrumStats(sigma, o.minTail, double(std::max(t.rows(), t.cols())) * eps);
    progress.advance(double(c.info(n).count()), n);
    if (o.format == "csv") {
      std::cout << n << "," << c.info(n).rows() << "," << c.info(n).cols() << std::setprecision(8) << "," << s.sigmaMax << ","
                << s.sigmaMin << "," << s.frobenius << "," << s.stableRank << "," << s.rank90 << "," << s.rank99 << ","
                << s.effectiveRank << "," << s.alpha << "," << s.alphaXmin << "," << s.alphaTail << "," << s.alphaKs << "\n";
    } else {
      out.push_back({{"name", n},
                     {"rows", c.info(n).rows()},
                     {"cols", c.info(n).cols()},
                     {"sigma_max", s.sigmaMax},
                     {"sigma_min", s.sigmaMin},
                     {"frobenius", s.frobenius},
                     {"stable_rank", s.stableRank},
                     {"rank90", s.rank90},
                     {"rank99", s.rank99},
                     {"effective_rank", s.effectiveRank},
                     {"alpha", std::isfinite(s.alpha) ? nlohmann::json(s.alpha) : nlohmann::json(nullptr)},
                     {"alpha_xmin", s.alphaXmin},
                     {"alpha_tail", s.alphaTail},
                     {"alpha_ks", s.alphaKs},
                     {"alpha_zero", s.alphaZero}});
    }
  }
  progress.finish();
  if (o.format == "json") std::cout << out.dump(2) << "\n";
}

}  // namespace

void addLinalgCommands(CLI::App& app) {
  static SvdOptions svd;
  auto* s = app.add_subcommand("svd", "Truncated SVD of a 2-D .npy array: writes U.npy (m x k), S.npy (k), V.npy (n x k)");
  s->add_option("IN", svd.input, "input .npy (2-D; f2/f4 computed in float, others in double)")->required();
  s->add_option("--rank,-k", svd.rank, "number of singular triplets k")->required();
  s->add_option("--method", svd.method,
                 "auto (default: exact up to 256 rows or columns, else krylov), exact (TruncatedSVD), power (randomized\n"
                 "SVD with power iterations; 'randomized' is the same) or krylov (randomized SVD, block Krylov iteration)")
      ->check(CLI::IsMember({"auto", "exact", "power", "krylov", "randomized"}));
  s->add_option("--block-size", svd.blockSize,
                "krylov: columns per block b (default ceil(k/2), within 8..64); with --tol: the block size of the fixed-accuracy mode");
  s->add_option("--oversample", svd.oversample, "power: oversampling p (default 10)");
  s->add_option("--power-iters", svd.powerIters,
                "power/krylov: iterations q (default -1 = automatic: krylov the smallest q >= 2 with b(q+1) >= 2k; power 7, or 4 when k >= min(m,n)/10)");
  s->add_option("--tol", svd.tol,
                "fixed-accuracy mode: the smallest rank <= k with |A - U S V^T|_F <= tol |A|_F (0 < tol < 1; k is the cap)");
  s->add_option("--seed", svd.seed, "randomized: seed of the sketch (default 0)");
  s->add_option("--out,-o", svd.out, "output folder (created if missing)")->required();
  s->add_flag("--timings", svd.timings, "print the seconds spent reading, in the SVD and writing");
  s->footer(
      "Example:\n  wproj svd W.npy --rank 128 --out svd/                     # block Krylov, b = 64, q = 3\n"
      "  wproj svd W.npy --rank 16 --method power --power-iters 2 --seed 7 --out svd/\n"
      "  wproj svd W.npy --rank 512 --tol 0.05 --out svd/         # smallest rank reaching 5% relative error\n");
  s->callback([]() { runSvd(svd); });

  static SpectrumOptions spec;
  auto* p = app.add_subcommand("spectrum", "Singular-value summary of every 2-D tensor of a model");
  p->add_option("MODEL", spec.model, "a .safetensors file, a model.safetensors.index.json, or a folder")->required();
  p->add_option("--tensors", spec.tensors, "only tensors whose name matches this regular expression (search)");
  p->add_option("--format", spec.format, "csv (default) or json")->check(CLI::IsMember({"csv", "json"}));
  p->add_option("--min-tail", spec.minTail, "smallest tail used by the power-law fit, >= 2 (default 10)");
  p->footer(
      "Columns: sigma_max, sigma_min, Frobenius norm, stable rank |W|_F^2/sigma_max^2, rank90/rank99 (smallest k\n"
      "holding 90%/99% of sum sigma^2), effective rank exp(H(sigma/sum sigma)) (Roy & Vetterli 2007), and alpha: the\n"
      "power-law exponent of the tail of the eigenvalue spectrum lambda = sigma^2 (ESD of W^T W, as in HT-SR /\n"
      "WeightWatcher / WeLore), fitted by the continuous maximum-likelihood (Hill) estimator\n"
      "alpha = 1 + n / sum ln(lambda_i / lambda_min) over the n eigenvalues >= lambda_min, with lambda_min chosen\n"
      "to minimise the Kolmogorov-Smirnov distance (Clauset, Shalizi & Newman 2009); alpha_xmin, alpha_tail and\n"
      "alpha_ks report that choice. Numerically zero singular values (sigma_i <= max(m,n) * eps * sigma_max, eps the\n"
      "machine epsilon of the stored type; float32's for 16-bit types) are left out of the fit.\n"
      "Example:\n  wproj spectrum model.safetensors --tensors 'mlp\\.down_proj' --format json\n");
  p->callback([]() { runSpectrum(spec); });
}

}  // namespace wcli
