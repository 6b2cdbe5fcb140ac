// GaLore-style training of a small MLP on a teacher-network task, with full-rank AdamW and
// Adafactor as baselines and every gradient-projection basis wproj ships.
//
//   galore_training            full run (a minute or two)
//   galore_training --quick    a small run (a few seconds; used by the test suite)
//   galore_training --out DIR  where to write galore_loss.csv (and galore_loss.png when
//                              matplotlib is available through /usr/bin/python3)
//
// The task: inputs x ~ N(0, I_d) (or, with --input-decay α, N(0, Σ) with Σ's eigenvalues ∝ i^(−α)
// in a random basis, trace d); a fixed random teacher MLP (d → t → c, tanh) defines class
// probabilities softmax(teacher(x)/τ), and each label is drawn from them, so the best possible
// cross-entropy is the teacher's mean entropy (printed as the floor). The student is a 3-layer
// MLP (d → h → h → c, ReLU) trained by mini-batch cross-entropy on a stream of fresh samples
// (every sample is seen once, so the training loss is the population loss; it is measured on a
// fixed evaluation set drawn from the same stream). GaLore projects the gradients of
// the two hidden weight matrices (rank = ¼ of their smaller dimension); biases and the small
// output layer use full-rank AdamW, as GaLore does for non-projected parameters.
#include <wproj/gradient.hpp>

#include <Eigen/Dense>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using Mat = Eigen::MatrixXf;
using Vec = Eigen::VectorXf;
using wproj::Index;

namespace {

struct Config {
  Index d = 32, h = 256, c = 10, teacherHidden = 24, samples = 4096, batch = 256, steps = 1500;
  Index gap = 50;           // update gap T for the projected layers
  double lr = 2e-3;         // learning rate of every AdamW
  double temperature = 0.5; // teacher temperature τ (label noise)
  double inputDecay = 0;    // input covariance eigenvalues ∝ i^(−decay), scaled to trace d (0: isotropic)
};

/// The optimizer of one weight matrix, behind a small type-erased interface.
struct MatrixOptimizer {
  virtual ~MatrixOptimizer() = default;
  virtual void step(Mat& w, const Mat& g) = 0;
  virtual std::size_t stateBytes() const = 0;
  virtual Index refreshes() const { return 0; }
  virtual double meanOverlap() const { return 0; }
  virtual Index gap() const { return 0; }
};

template <typename Opt>
struct Wrapped : MatrixOptimizer {
  Opt opt;
  explicit Wrapped(Opt o) : opt(std::move(o)) {}
  void step(Mat& w, const Mat& g) override { opt.step(w, g); }
  std::size_t stateBytes() const override { return opt.stateBytes(); }
};
template <typename Basis>
struct WrappedProjected : Wrapped<wproj::ProjectedAdamW<Basis>> {
  using Wrapped<wproj::ProjectedAdamW<Basis>>::Wrapped;
  Index refreshes() const override { return this->opt.projector().stats().refreshes; }
  double meanOverlap() const override { return this->opt.projector().stats().meanOverlap(); }
  Index gap() const override { return this->opt.projector().updateGap(); }
};
template <typename Basis>
struct WrappedProjectedAdafactor : Wrapped<wproj::ProjectedAdafactor<Basis>> {
  using Wrapped<wproj::ProjectedAdafactor<Basis>>::Wrapped;
  Index refreshes() const override { return this->opt.projector().stats().refreshes; }
};

using Factory = std::function<std::unique_ptr<MatrixOptimizer>(Index layer, Index rows, Index cols)>;

struct Method {
  std::string name;
  Factory hidden;  // optimizer of the projected (hidden) weight matrices
  bool adafactor = false;  // the non-projected parameters use Adafactor instead of AdamW
};

struct Result {
  std::string name;
  double loss = 0, accuracy = 0, msPerStep = 0;
  std::size_t bytes = 0;
  Index refreshes = 0, gap = 0;
  double overlap = 0;
  std::size_t projectedBytes = 0;                 // state of the two projected layers (W1, W2) alone
  std::vector<Index> layerRefreshes, layerGaps;  // per projected layer (W1, W2)
  std::vector<double> layerOverlaps;
  std::vector<double> curve;
};

/// The MLP: z1 = W1 x + b1, a1 = relu(z1), z2 = W2 a1 + b2, a2 = relu(z2), logits = W3 a2 + b3.
struct Mlp {
  Mat w1, w2, w3, b1, b2, b3;  // biases as column vectors (Mat for a uniform optimizer interface)
  Mat z1, a1, z2, a2, logits, d3, d2, d1, g1, g2, g3, gb1, gb2, gb3;

  Mlp(const Config& cfg, std::uint64_t seed) {
    w1 = wproj::gaussianMatrix<Mat>(cfg.h, cfg.d, seed, 1, std::sqrt(2.0 / double(cfg.d)));
    w2 = wproj::gaussianMatrix<Mat>(cfg.h, cfg.h, seed, 2, std::sqrt(2.0 / double(cfg.h)));
    w3 = wproj::gaussianMatrix<Mat>(cfg.c, cfg.h, seed, 3, std::sqrt(1.0 / double(cfg.h)));
    b1 = Mat::Zero(cfg.h, 1);
    b2 = Mat::Zero(cfg.h, 1);
    b3 = Mat::Zero(cfg.c, 1);
  }

  void forward(const Mat& x) {
    z1.noalias() = w1 * x;
    z1.colwise() += b1.col(0);
    a1 = z1.cwiseMax(0.0f);
    z2.noalias() = w2 * a1;
    z2.colwise() += b2.col(0);
    a2 = z2.cwiseMax(0.0f);
    logits.noalias() = w3 * a2;
    logits.colwise() += b3.col(0);
  }

  /// Mean cross-entropy and accuracy of the current logits against labels; fills d3 = ∂loss/∂logits.
  std::pair<double, double> lossAndGrad(const std::vector<int>& labels, Index offset) {
    const Index n = logits.cols();
    d3.resize(logits.rows(), n);
    double loss = 0, correct = 0;
    for (Index j = 0; j < n; ++j) {
      const float mx = logits.col(j).maxCoeff();
      Vec e = (logits.col(j).array() - mx).exp().matrix();
      const float s = e.sum();
      const int y = labels[std::size_t(offset + j)];
      loss -= std::log(double(e(y)) / double(s));
      Index arg;
      logits.col(j).maxCoeff(&arg);
      correct += arg == y ? 1 : 0;
      d3.col(j) = e / s;
      d3(y, j) -= 1.0f;
    }
    d3 /= float(n);
    return {loss / double(n), correct / double(n)};
  }

  void backward(const Mat& x) {
    g3.noalias() = d3 * a2.transpose();
    gb3 = d3.rowwise().sum();
    d2.noalias() = w3.transpose() * d3;
    d2 = d2.cwiseProduct((z2.array() > 0.0f).cast<float>().matrix());
    g2.noalias() = d2 * a1.transpose();
    gb2 = d2.rowwise().sum();
    d1.noalias() = w2.transpose() * d2;
    d1 = d1.cwiseProduct((z1.array() > 0.0f).cast<float>().matrix());
    g1.noalias() = d1 * x.transpose();
    gb1 = d1.rowwise().sum();
  }
};

/// The teacher: labels y ~ softmax(t2·tanh(t1·x)/τ).
struct Teacher {
  Mat t1, t2;
  bool anisotropic;  // --input-decay > 0: x = inputBasis·diag(inputScale)·z
  Vec inputScale;    // standard deviation along each input direction
  Mat inputBasis;    // a fixed random rotation
  double temperature;
  Teacher(const Config& cfg, std::uint64_t seed) : anisotropic(cfg.inputDecay > 0), temperature(cfg.temperature) {
    t1 = wproj::gaussianMatrix<Mat>(cfg.teacherHidden, cfg.d, seed, 11, 1.5 / std::sqrt(double(cfg.d)));
    t2 = wproj::gaussianMatrix<Mat>(cfg.c, cfg.teacherHidden, seed, 12, 1.0 / std::sqrt(double(cfg.teacherHidden)));
    // Anisotropic inputs (--input-decay α > 0): x = B·diag(s)·z with s_i² ∝ i^(−α), Σ s_i² = d and
    // B a fixed random rotation — the decaying covariance spectrum of real features.
    if (!anisotropic) return;
    inputScale.resize(cfg.d);
    double total = 0;
    for (Index i = 0; i < cfg.d; ++i) total += std::pow(double(i + 1), -cfg.inputDecay);
    for (Index i = 0; i < cfg.d; ++i)
      inputScale(i) = float(std::sqrt(double(cfg.d) * std::pow(double(i + 1), -cfg.inputDecay) / total));
    inputBasis = Eigen::HouseholderQR<Mat>(wproj::gaussianMatrix<Mat>(cfg.d, cfg.d, seed, 13)).householderQ();
  }
  /// Draws n samples from stream `stream`: inputs into x, labels into y; returns the mean entropy of the labels' distribution.
  double sample(Index n, std::uint64_t stream, Mat& x, std::vector<int>& y) const {
    x = wproj::gaussianMatrix<Mat>(t1.cols(), n, 77, stream);
    if (anisotropic) x = inputBasis * (inputScale.asDiagonal() * x);
    const Mat logits = (t2 * (t1 * x).array().tanh().matrix()) / float(temperature);
    wproj::CounterRng rng(78, stream);
    y.resize(std::size_t(n));
    double entropy = 0;
    for (Index j = 0; j < n; ++j) {
      const Vec e = (logits.col(j).array() - logits.col(j).maxCoeff()).exp().matrix();
      const Vec p = e / e.sum();
      for (Index k = 0; k < p.size(); ++k)
        if (p(k) > 0) entropy -= double(p(k)) * std::log(double(p(k)));
      double u = rng.nextUniform(), acc = 0;
      int label = int(p.size()) - 1;
      for (Index k = 0; k < p.size(); ++k) {
        acc += double(p(k));
        if (u <= acc) {
          label = int(k);
          break;
        }
      }
      y[std::size_t(j)] = label;
    }
    return entropy / double(n);
  }
};

Result train(const Config& cfg, const Teacher& teacher, const Method& method) {
  Mlp net(cfg, 7);
  std::vector<std::unique_ptr<MatrixOptimizer>> opts;
  auto plain = [&]() -> std::unique_ptr<MatrixOptimizer> {
    if (method.adafactor) {
      wproj::AdafactorOptions o;
      o.relativeStep = true;
      return std::make_unique<Wrapped<wproj::Adafactor<float>>>(wproj::Adafactor<float>(o));
    }
    wproj::AdamW<float> a;
    a.setLearningRate(cfg.lr);
    return std::make_unique<Wrapped<wproj::AdamW<float>>>(a);
  };
  opts.push_back(method.hidden(0, cfg.h, cfg.d));
  opts.push_back(method.hidden(1, cfg.h, cfg.h));
  for (int k = 0; k < 4; ++k) opts.push_back(plain());  // w3, b1, b2, b3

  Result res;
  res.name = method.name;
  const Index evalEvery = std::max<Index>(1, cfg.steps / 50);
  double optSeconds = 0;
  Mat xEval, xb;
  std::vector<int> yEval, yb;
  teacher.sample(cfg.samples, 0, xEval, yEval);  // stream 0: the evaluation set
  auto evalLoss = [&]() {
    net.forward(xEval);
    return net.lossAndGrad(yEval, 0);
  };
  for (Index step = 0; step < cfg.steps; ++step) {
    teacher.sample(cfg.batch, std::uint64_t(step + 1), xb, yb);
    net.forward(xb);
    net.lossAndGrad(yb, 0);
    net.backward(xb);
    const auto t0 = std::chrono::steady_clock::now();
    opts[0]->step(net.w1, net.g1);
    opts[1]->step(net.w2, net.g2);
    opts[2]->step(net.w3, net.g3);
    opts[3]->step(net.b1, net.gb1);
    opts[4]->step(net.b2, net.gb2);
    opts[5]->step(net.b3, net.gb3);
    optSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (step % evalEvery == 0 || step + 1 == cfg.steps) res.curve.push_back(evalLoss().first);
  }
  const auto final = evalLoss();
  res.loss = final.first;
  res.accuracy = final.second;
  res.msPerStep = 1e3 * optSeconds / double(cfg.steps);
  for (auto& o : opts) {
    res.bytes += o->stateBytes();
    res.refreshes += o->refreshes();
    res.gap = std::max(res.gap, o->gap());
  }
  for (int k = 0; k < 2; ++k) {
    res.projectedBytes += opts[std::size_t(k)]->stateBytes();
    res.layerRefreshes.push_back(opts[std::size_t(k)]->refreshes());
    res.layerGaps.push_back(opts[std::size_t(k)]->gap());
    res.layerOverlaps.push_back(opts[std::size_t(k)]->meanOverlap());
  }
  res.overlap = opts[1]->meanOverlap();  // the h×h layer
  return res;
}

template <typename Basis, typename Setup>
Factory projected(const Config& cfg, double lr, float scale, Setup setup, wproj::MomentPolicy policy = wproj::MomentPolicy::Keep) {
  return [=](Index layer, Index rows, Index cols) -> std::unique_ptr<MatrixOptimizer> {
    wproj::ProjectedAdamW<Basis> opt;
    const Index rank = std::max<Index>(1, std::min(rows, cols) / 4);
    opt.projector().setRank(rank).setUpdateGap(cfg.gap).setScale(scale).setOffset(layer * cfg.gap / 2);
    opt.setLearningRate(lr).setMomentPolicy(policy);
    setup(opt.projector());
    return std::make_unique<WrappedProjected<Basis>>(std::move(opt));
  };
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string outDir = ".";
  Config cfg;
  double galoreLr = -1;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + a);
      return argv[++i];
    };
    if (a == "--quick") {
      quick = true;
      cfg.h = 96;
      cfg.samples = 1024;
      cfg.steps = 200;
      cfg.gap = 25;
    } else if (a == "--out") outDir = next();
    else if (a == "--steps") cfg.steps = std::stol(next());
    else if (a == "--hidden") cfg.h = std::stol(next());
    else if (a == "--batch") cfg.batch = std::stol(next());
    else if (a == "--gap") cfg.gap = std::stol(next());
    else if (a == "--lr") cfg.lr = std::stod(next());
    else if (a == "--galore-lr") galoreLr = std::stod(next());
    else if (a == "--temperature") cfg.temperature = std::stod(next());
    else if (a == "--input-decay") cfg.inputDecay = std::stod(next());
    else if (a == "--only") only = next();
    else {
      std::cerr << "usage: galore_training [--quick] [--out DIR] [--steps N] [--hidden H] [--batch B] [--gap T] [--lr LR]\n"
                   "                       [--galore-lr LR] [--temperature TAU] [--input-decay ALPHA] [--only SUBSTRING]\n";
      return 2;
    }
  }
  const Teacher teacher(cfg, 2024);
  const double lr = cfg.lr, glr = galoreLr > 0 ? galoreLr : cfg.lr;
  auto none = [](auto&) {};
  std::vector<Method> methods;
  methods.push_back({"AdamW (full rank)", [&](Index, Index, Index) -> std::unique_ptr<MatrixOptimizer> {
                       wproj::AdamW<float> a;
                       a.setLearningRate(lr);
                       return std::make_unique<Wrapped<wproj::AdamW<float>>>(a);
                     }});
  methods.push_back({"GaLore-AdamW, exact SVD", projected<wproj::SVDBasis<float>>(cfg, glr, 1.0f, none)});
  methods.push_back({"GaLore-AdamW, SVD, min_state side", projected<wproj::SVDBasis<float>>(cfg, glr, 1.0f, [](auto& p) {
                       p.setProjectionType(wproj::ProjectionType::MinState);
                     })});
  methods.push_back({"GaLore-AdamW, randomized warm start",
                     projected<wproj::RandomizedBasis<float>>(cfg, glr, 1.0f, [](auto& p) { p.basis().setSeed(1); })});
  methods.push_back({"GaLore-AdamW, DCT columns (SVD-free)", projected<wproj::DCTBasis<float>>(cfg, glr, 1.0f, none, wproj::MomentPolicy::Rotate)});
  methods.push_back({"GaLore-AdamW, online PCA (OSD)", projected<wproj::OnlinePCABasis<float>>(cfg, glr, 1.0f, none)});
  methods.push_back({"GaLore-AdamW, seeded Gaussian (Flora)",
                     projected<wproj::GaussianBasis<float>>(cfg, glr, 1.0f, [](auto& p) { p.basis().setSeed(3); },
                                                            wproj::MomentPolicy::Rotate)});
  methods.push_back({"GaLore-AdamW, GRASS top-r rows",
                     projected<wproj::RowSelectionBasis<float>>(cfg, glr, 1.0f, none, wproj::MomentPolicy::Rotate)});
  methods.push_back({"Q-GaLore INT4, fixed gap", projected<wproj::QuantizedBasis<wproj::SVDBasis<float>>>(cfg, glr, 1.0f, none)});
  methods.push_back({"Q-GaLore INT4, adaptive gap",
                     projected<wproj::QuantizedBasis<wproj::SVDBasis<float>>>(cfg, glr, 1.0f, [](auto& p) { p.setAdaptiveGap(true); })});
  methods.push_back({"Adafactor (full rank)",
                     [&](Index, Index, Index) -> std::unique_ptr<MatrixOptimizer> {
                       wproj::AdafactorOptions o;
                       o.relativeStep = true;
                       return std::make_unique<Wrapped<wproj::Adafactor<float>>>(wproj::Adafactor<float>(o));
                     },
                     true});
  methods.push_back({"GaLore-Adafactor, exact SVD",
                     [&](Index layer, Index rows, Index cols) -> std::unique_ptr<MatrixOptimizer> {
                       wproj::AdafactorOptions o;
                       o.relativeStep = true;
                       wproj::ProjectedAdafactor<wproj::SVDBasis<float>> opt;
                       opt.setOptions(o);
                       opt.projector().setRank(std::max<Index>(1, std::min(rows, cols) / 4)).setUpdateGap(cfg.gap).setScale(1.0f)
                           .setOffset(layer * cfg.gap / 2);
                       return std::make_unique<WrappedProjectedAdafactor<wproj::SVDBasis<float>>>(std::move(opt));
                     },
                     true});

  Mat xs;
  std::vector<int> ys;
  const double floor = teacher.sample(cfg.samples, 0, xs, ys);
  std::cout << "Teacher task: d=" << cfg.d << ", " << cfg.c << " classes, labels ~ softmax(teacher/" << cfg.temperature
            << "); student MLP " << cfg.d << "-" << cfg.h << "-" << cfg.h << "-" << cfg.c << "; " << cfg.steps
            << " steps of " << cfg.batch << " fresh samples; GaLore rank = min(m,n)/4, gap T = " << cfg.gap
            << ", lr " << lr << " (projected " << glr << ")"
            << (cfg.inputDecay > 0 ? "; input covariance spectrum i^-" + std::to_string(cfg.inputDecay) : std::string()) << "\n"
            << "Loss = cross-entropy on " << cfg.samples << " samples of the stream; floor (teacher entropy) = "
            << std::fixed << std::setprecision(4) << floor << "\n\n";
  std::cout << std::left << std::setw(40) << "method" << std::right << std::setw(9) << "loss" << std::setw(8) << "acc"
            << std::setw(12) << "state B" << std::setw(9) << "vs AdamW" << std::setw(10) << "ms/step" << std::setw(10)
            << "refreshes" << std::setw(9) << "overlap" << std::setw(6) << "T" << "\n";
  std::vector<Result> results;
  std::size_t adamBytes = 0;
  for (const auto& m : methods) {
    if (!only.empty() && m.name.find(only) == std::string::npos && m.name != methods[0].name) continue;
    results.push_back(train(cfg, teacher, m));
    const Result& r = results.back();
    if (results.size() == 1) adamBytes = r.bytes;
    std::cout << std::left << std::setw(40) << r.name << std::right << std::fixed << std::setprecision(4) << std::setw(9) << r.loss
              << std::setw(8) << std::setprecision(3) << r.accuracy << std::setw(12) << r.bytes << std::setw(8)
              << std::setprecision(1) << 100.0 * double(r.bytes) / double(adamBytes) << "%" << std::setw(10)
              << std::setprecision(3) << r.msPerStep << std::setw(10) << r.refreshes << std::setw(9) << std::setprecision(3)
              << r.overlap << std::setw(6) << r.gap << "\n"
              << std::flush;
  }
  auto find = [&](const std::string& name) -> const Result* {
    for (const auto& r : results)
      if (r.name == name) return &r;
    return nullptr;
  };
  const Result *adam = find("AdamW (full rank)"), *galore = find("GaLore-AdamW, exact SVD");
  const Result* galoreMin = find("GaLore-AdamW, SVD, min_state side");
  const Result *qFixed = find("Q-GaLore INT4, fixed gap"), *qAdaptive = find("Q-GaLore INT4, adaptive gap");
  std::cout << "\nTargets:\n" << std::setprecision(4);
  if (adam && galore)
    std::cout << "  GaLore-AdamW (SVD) loss / AdamW loss      = " << galore->loss / adam->loss << "  (target <= 1.05)\n"
              << "  GaLore-AdamW state bytes / AdamW          = " << double(galore->bytes) / double(adam->bytes)
              << "  (target <= 0.40; whole model: W3 and the biases keep full AdamW state)\n"
              << "    the projected layers W1, W2 alone       = " << double(galore->projectedBytes) / double(adam->projectedBytes)
              << "\n";
  if (adam && galoreMin)
    std::cout << "  min_state side: state / AdamW             = " << double(galoreMin->bytes) / double(adam->bytes)
              << " (projected layers alone " << double(galoreMin->projectedBytes) / double(adam->projectedBytes)
              << "), loss / AdamW = " << galoreMin->loss / adam->loss << "\n";
  if (qFixed && qAdaptive)
    std::cout << "  Q-GaLore refreshes fixed / adaptive       = " << qFixed->refreshes << " / " << qAdaptive->refreshes << " = "
              << double(qFixed->refreshes) / double(std::max<Index>(1, qAdaptive->refreshes)) << "  (target >= 2)\n"
              << "  Q-GaLore loss adaptive / fixed            = " << qAdaptive->loss / qFixed->loss << "  (target <= 1.01)\n";
  for (const Result* r : {qFixed, qAdaptive})
    if (r)
      std::cout << "    " << std::left << std::setw(28) << r->name << std::right << " per layer (W1 " << cfg.h << "x" << cfg.d
                << ", W2 " << cfg.h << "x" << cfg.h << "): refreshes " << r->layerRefreshes[0] << " + " << r->layerRefreshes[1]
                << ", final T " << r->layerGaps[0] << " / " << r->layerGaps[1] << ", mean overlap " << std::setprecision(3)
                << r->layerOverlaps[0] << " / " << r->layerOverlaps[1] << std::setprecision(4) << "\n";

  const std::string csv = outDir + "/galore_loss.csv";
  {
    std::ofstream f(csv);
    f << "point";
    for (const auto& r : results) f << ",\"" << r.name << "\"";
    f << "\n";
    for (std::size_t i = 0; i < results[0].curve.size(); ++i) {
      f << i;
      for (const auto& r : results) f << "," << (i < r.curve.size() ? r.curve[i] : r.curve.back());
      f << "\n";
    }
  }
  std::cout << "\nLoss curves: " << csv << "\n";
  if (!quick && std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") == 0) {
    const std::string png = outDir + "/galore_loss.png";
    const std::string script = "import csv, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
                               "rows = list(csv.reader(open('" + csv + "')))\n"
                               "head, data = rows[0], rows[1:]\n"
                               "for k in range(1, len(head)): plt.plot([float(r[k]) for r in data], label=head[k])\n"
                               "plt.yscale('log'); plt.xlabel('evaluation point'); plt.ylabel('training loss'); plt.legend(fontsize=7)\n"
                               "plt.savefig('" + png + "', dpi=120)\n";
    const std::string pyFile = outDir + "/galore_plot.py";
    std::ofstream(pyFile) << script;
    if (std::system(("/usr/bin/python3 " + pyFile + " >/dev/null 2>&1").c_str()) == 0) std::cout << "Plot: " << png << "\n";
  }
  return 0;
}
