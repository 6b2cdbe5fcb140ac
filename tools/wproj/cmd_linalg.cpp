// wproj command-line tool: `wproj svd` and `wproj spectrum`.
#include "common.hpp"
#include "spectrum_stats.hpp"

#include <wproj/linalg/randomized_svd.hpp>
#include <wproj/linalg/truncated_svd.hpp>

#include <nlohmann/json.hpp>

#include <Eigen/SVD>

#include <iomanip>

namespace wcli {
namespace {

struct SvdOptions {
  std::string input, out, method = "exact";
  wproj::Index rank = 0, oversample = 10, powerIters = -1;
  std::uint64_t seed = 0;
};

template <typename Scalar>
void svdIn(const SvdOptions& o) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const Matrix a = wproj::io::readNpy<Scalar>(o.input);
  const wproj::Index maxRank = std::min(a.rows(), a.cols());
  if (o.rank < 1 || o.rank > maxRank)
    throw CliError("--rank " + std::to_string(o.rank) + " is out of range for a " + std::to_string(a.rows()) + "x" +
                   std::to_string(a.cols()) + " matrix (expected 1.." + std::to_string(maxRank) + ")");
  wproj::checkFinite(a, "wproj svd", o.input.c_str());
  Matrix u, v;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> s;
  if (o.method == "exact") {
    wproj::TruncatedSVD<Matrix> svd;
    svd.setRank(o.rank).compute(a);
    if (svd.info() != Eigen::Success) throw CliError("the exact SVD did not converge");
    u = svd.matrixU();
    s = svd.singularValues();
    v = svd.matrixV();
  } else {
    wproj::RandomizedSVD<Matrix> svd;
    svd.setRank(o.rank).setOversampling(o.oversample).setPowerIterations(o.powerIters).setSeed(o.seed).compute(a);
    if (svd.info() != Eigen::Success) throw CliError("the randomized SVD did not converge");
    u = svd.matrixU();
    s = svd.singularValues();
    v = svd.matrixV();
  }
  ensureDirectory(o.out);
  checkNotAnInput(o.out + "/U.npy", {o.input});
  checkNotAnInput(o.out + "/S.npy", {o.input});
  checkNotAnInput(o.out + "/V.npy", {o.input});
  wproj::io::writeNpy(o.out + "/U.npy", u);
  wproj::io::writeNpyVector(o.out + "/S.npy", s);
  wproj::io::writeNpy(o.out + "/V.npy", v);
  std::cout << "svd (" << o.method << ") of " << o.input << " (" << a.rows() << "x" << a.cols() << "), rank " << u.cols()
            << ": sigma_1 = " << double(s(0)) << ", sigma_" << s.size() << " = " << double(s(s.size() - 1)) << "\n"
            << "wrote " << o.out << "/U.npy (" << u.rows() << "x" << u.cols() << "), " << o.out << "/S.npy (" << s.size()
            << "), " << o.out << "/V.npy (" << v.rows() << "x" << v.cols() << ")\n";
}

void runSvd(const SvdOptions& o) {
  const auto h = wproj::io::readNpyHeader(o.input);
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
    Eigen::MatrixXd w = c.read<double>(n);
    c.release(n);
    wproj::checkFinite(w, "wproj spectrum", n.c_str());
    Eigen::BDCSVD<Eigen::MatrixXd> svd(w);
    const Eigen::VectorXd sigma = svd.singularValues();
    w.resize(0, 0);
    const SpectrumStats s = spectrumStats(sigma, o.minTail);
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
                     {"alpha_ks", s.alphaKs}});
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
  s->add_option("--method", svd.method, "exact (TruncatedSVD) or randomized (RandomizedSVD)")
      ->check(CLI::IsMember({"exact", "randomized"}));
  s->add_option("--oversample", svd.oversample, "randomized: oversampling p (default 10)");
  s->add_option("--power-iters", svd.powerIters, "randomized: power iterations q (default -1 = automatic)");
  s->add_option("--seed", svd.seed, "randomized: seed of the sketch (default 0)");
  s->add_option("--out,-o", svd.out, "output folder (created if missing)")->required();
  s->footer("Example:\n  wproj svd W.npy --rank 16 --method randomized --power-iters 2 --seed 7 --out svd/\n");
  s->callback([]() { runSvd(svd); });

  static SpectrumOptions spec;
  auto* p = app.add_subcommand("spectrum", "Singular-value summary of every 2-D tensor of a model");
  p->add_option("MODEL", spec.model, "a .safetensors file, a model.safetensors.index.json, or a folder")->required();
  p->add_option("--tensors", spec.tensors, "only tensors whose name matches this regular expression (search)");
  p->add_option("--format", spec.format, "csv (default) or json")->check(CLI::IsMember({"csv", "json"}));
  p->add_option("--min-tail", spec.minTail, "smallest tail used by the power-law fit (default 10)");
  p->footer(
      "Columns: sigma_max, sigma_min, Frobenius norm, stable rank |W|_F^2/sigma_max^2, rank90/rank99 (smallest k\n"
      "holding 90%/99% of sum sigma^2), effective rank exp(H(sigma/sum sigma)) (Roy & Vetterli 2007), and alpha: the\n"
      "power-law exponent of the tail of the eigenvalue spectrum lambda = sigma^2 (ESD of W^T W, as in HT-SR /\n"
      "WeightWatcher / WeLore), fitted by the continuous maximum-likelihood (Hill) estimator\n"
      "alpha = 1 + n / sum ln(lambda_i / lambda_min) over the n eigenvalues >= lambda_min, with lambda_min chosen\n"
      "to minimise the Kolmogorov-Smirnov distance (Clauset, Shalizi & Newman 2009); alpha_xmin, alpha_tail and\n"
      "alpha_ks report that choice.\n"
      "Example:\n  wproj spectrum model.safetensors --tensors 'mlp\\.down_proj' --format json\n");
  p->callback([]() { runSpectrum(spec); });
}

}  // namespace wcli
