// train_real: a character-level language model trained from scratch on real text — the licence
// texts every Debian system ships in /usr/share/common-licenses (package base-files) — with
// AdamW and the memory-efficient optimizers of wproj's gradient layer, compared at equal steps.
//
//   train_real                 full run (a few minutes on 2 cores)
//   train_real --quick         a small run (seconds; the test suite's check)
//   train_real --steps N --hidden H --out DIR --corpus DIR
//   train_real --methods GaLore,Muon --muon-lr 0.05   a subset (AdamW always runs), Muon's lr
//
// Model: the previous k = 8 characters → embeddings (32 each, concatenated: 256) → ReLU layer
// W1 (H×256) → ReLU layer W2 (H×H) → softmax over the vocabulary (W3, V×H); cross-entropy,
// backpropagation written by hand with Eigen. The two hidden matrices are trained by the method
// under test; the embeddings, the output layer and the biases by AdamW in every run (as GaLore,
// APOLLO and Muon do). Held-out data: the last 10% of every licence file.
//
// Output: a table (held-out loss, optimizer-state bytes, wall time per step), DIR/train_real.csv,
// DIR/train_real_curves.csv and, when python3 with matplotlib is available, DIR/train_real.png.
#include <wproj/gradient.hpp>

#if __has_include(<wproj/gradient/fira.hpp>)
#include <wproj/gradient/fira.hpp>
#define TRAIN_REAL_HAS_FIRA 1
#endif

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Mat = Eigen::MatrixXf;
using Vec = Eigen::VectorXf;
using wproj::Index;

namespace {

// ---------------------------------------------------------------- data
struct Corpus {
  std::vector<int> train, heldOut;  // character ids
  int vocab = 0;
  std::vector<std::string> files;
};

Corpus loadCorpus(const std::string& dir) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && !e.is_symlink()) paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> texts;
  int map[256];
  std::fill(map, map + 256, -1);
  Corpus c;
  for (const auto& p : paths) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    texts.push_back(ss.str());
    c.files.push_back(p.filename().string());
    for (unsigned char ch : texts.back())
      if (map[ch] < 0) map[ch] = 0;
  }
  for (int b = 0; b < 256; ++b)
    if (map[b] == 0) map[b] = c.vocab++;
  for (const auto& t : texts) {
    const std::size_t cut = t.size() - t.size() / 10;  // the last 10% of each file is held out
    for (std::size_t i = 0; i < t.size(); ++i) (i < cut ? c.train : c.heldOut).push_back(map[(unsigned char)t[i]]);
  }
  return c;
}

// ---------------------------------------------------------------- model
constexpr int kContext = 8, kEmbed = 32;

struct Model {
  Mat emb;        // kEmbed × V (a column per character)
  Mat w1, w2, w3; // H×(k·d), H×H, V×H
  Mat b1, b2, b3; // column vectors as matrices (so that AdamW steps them)
};

Model initModel(int vocab, int hidden, std::uint64_t seed) {
  Model m;
  auto gauss = [&](Index r, Index c, double sd, std::uint64_t s) { return Mat(wproj::gaussianMatrix<Mat>(r, c, seed * 31 + s, 0, sd)); };
  m.emb = gauss(kEmbed, vocab, 1.0, 1);
  m.w1 = gauss(hidden, kContext * kEmbed, std::sqrt(2.0 / (kContext * kEmbed)), 2);
  m.w2 = gauss(hidden, hidden, std::sqrt(2.0 / hidden), 3);
  m.w3 = gauss(vocab, hidden, std::sqrt(1.0 / hidden), 4);
  m.b1 = Mat::Zero(hidden, 1);
  m.b2 = Mat::Zero(hidden, 1);
  m.b3 = Mat::Zero(vocab, 1);
  return m;
}

struct Grads {
  Mat emb, w1, w2, w3, b1, b2, b3;
};

// Buffers of one forward/backward pass over a batch of B positions.
struct Work {
  Mat x, h1, h2, z, d2, d1, dx;
};

// Mean cross-entropy of predicting data[pos] from the k characters before it, for each pos in
// `positions`; with `g` non-null, also the gradients.
double forwardBackward(const Model& m, const std::vector<int>& data, const std::vector<std::size_t>& positions, Work& w, Grads* g) {
  const Index b = Index(positions.size()), v = m.w3.rows();
  w.x.resize(kContext * kEmbed, b);
  for (Index j = 0; j < b; ++j)
    for (int c = 0; c < kContext; ++c) w.x.col(j).segment(c * kEmbed, kEmbed) = m.emb.col(data[positions[std::size_t(j)] - kContext + c]);
  w.h1.noalias() = m.w1 * w.x;
  w.h1 = (w.h1.colwise() + m.b1.col(0)).cwiseMax(0.0f);
  w.h2.noalias() = m.w2 * w.h1;
  w.h2 = (w.h2.colwise() + m.b2.col(0)).cwiseMax(0.0f);
  w.z.noalias() = m.w3 * w.h2;
  w.z.colwise() += m.b3.col(0);
  double loss = 0;
  for (Index j = 0; j < b; ++j) {
    auto col = w.z.col(j);
    const float mx = col.maxCoeff();
    col = (col.array() - mx).exp().matrix();
    const float sum = col.sum();
    col /= sum;
    const int y = data[positions[std::size_t(j)]];
    loss -= std::log(std::max(double(col(y)), 1e-30));
    if (g) col(y) -= 1.0f;  // dZ = P − onehot
  }
  loss /= double(b);
  if (!g) return loss;
  w.z /= float(b);
  g->w3.noalias() = w.z * w.h2.transpose();
  g->b3 = w.z.rowwise().sum();
  w.d2.noalias() = m.w3.transpose() * w.z;
  w.d2 = w.d2.cwiseProduct((w.h2.array() > 0.0f).cast<float>().matrix());
  g->w2.noalias() = w.d2 * w.h1.transpose();
  g->b2 = w.d2.rowwise().sum();
  w.d1.noalias() = m.w2.transpose() * w.d2;
  w.d1 = w.d1.cwiseProduct((w.h1.array() > 0.0f).cast<float>().matrix());
  g->w1.noalias() = w.d1 * w.x.transpose();
  g->b1 = w.d1.rowwise().sum();
  w.dx.noalias() = m.w1.transpose() * w.d1;
  g->emb.setZero(m.emb.rows(), m.emb.cols());
  for (Index j = 0; j < b; ++j)
    for (int c = 0; c < kContext; ++c) g->emb.col(data[positions[std::size_t(j)] - kContext + c]) += w.dx.col(j).segment(c * kEmbed, kEmbed);
  (void)v;
  return loss;
}

// ---------------------------------------------------------------- optimizers
// One optimizer of one matrix, behind a common interface.
struct LayerOpt {
  virtual ~LayerOpt() = default;
  virtual void step(Mat& w, const Mat& g) = 0;
  virtual std::size_t stateBytes() const = 0;
};
template <typename O>
struct Wrapped : LayerOpt {
  explicit Wrapped(O o) : opt(std::move(o)) {}
  void step(Mat& w, const Mat& g) override { opt.step(w, g); }
  std::size_t stateBytes() const override { return opt.stateBytes(); }
  O opt;
};
template <typename O>
std::unique_ptr<LayerOpt> wrap(O o) {
  return std::make_unique<Wrapped<O>>(std::move(o));
}

struct Config {
  int steps = 1500, hidden = 512, batch = 64, evalEvery = 100, evalPositions = 4096;
  Index gap = 200;
  double lr = 2e-3;  // AdamW's learning rate (and that of every non-hidden parameter)
  double muonLr = 0.02;  // Muon's reference learning rate
  std::string only;      // comma-separated substrings of the method names to run ("" = all)
  std::uint64_t seed = 1;
  std::string out = ".", corpus = "/usr/share/common-licenses";
  bool quick = false;
};

std::unique_ptr<LayerOpt> adamw(double lr) {
  wproj::AdamW<float> a;
  a.setLearningRate(lr);
  return wrap(a);
}

// GaLore-style projected AdamW of `Basis` at rank = ⌊min(m,n)/4⌋: lr 4×AdamW's with α = 0.25
// (GaLore's lr/α pairing: the same effective step as AdamW's).
template <typename Basis>
std::function<std::unique_ptr<LayerOpt>(Index, Index)> projected(const Config& cfg, std::function<void(wproj::GradientProjector<Basis>&, Index, Index)> tune = {}) {
  return [cfg, tune](Index m, Index n) {
    wproj::GradientProjector<Basis> p;
    p.setRank(std::min(m, n) / 4).setUpdateGap(cfg.gap).setScale(0.25f);
    if (tune) tune(p, m, n);
    wproj::ProjectedAdamW<Basis> opt(p);
    opt.setLearningRate(4 * cfg.lr);
    return wrap(std::move(opt));
  };
}

struct Method {
  std::string name;
  std::function<std::unique_ptr<LayerOpt>(Index, Index)> hidden;  // optimizer of a hidden m×n matrix
};

std::vector<Method> methods(const Config& cfg) {
  std::vector<Method> ms;
  ms.push_back({"AdamW", [cfg](Index, Index) { return adamw(cfg.lr); }});
  ms.push_back({"GaLore (SVD)", projected<wproj::SVDBasis<float>>(cfg)});
  ms.push_back({"GaLore (randomized)", projected<wproj::RandomizedBasis<float>>(cfg)});
  ms.push_back({"GaLore (DCT)", projected<wproj::DCTBasis<float>>(cfg)});
  ms.push_back({"Q-GaLore (INT4 SVD)", projected<wproj::QuantizedBasis<wproj::SVDBasis<float>>>(cfg)});
  // GWT: 2 Haar levels keep ¼ of the projected dimension (rank = ambient/4 as GaLore's).
  ms.push_back({"GWT (Haar, 2 levels)", projected<wproj::WaveletBasis<float>>(cfg, [](auto& p, Index m, Index n) {
                  p.setRank(wproj::haarApproximationSize(std::min(m, n), 2));
                })});
  // COAP: refresh every 160 steps, cheap update every 32 (update_interval × reproject_factor = 32 × 5).
  ms.push_back({"COAP", projected<wproj::COAPBasis<float>>(cfg, [](auto& p, Index, Index) { p.setUpdateGap(160); })});
  ms.push_back({"APOLLO-Mini", [cfg](Index, Index) {
                  auto a = wproj::Apollo<wproj::GaussianBasis<float>>::mini();
                  a.projector().setUpdateGap(cfg.gap);
                  a.setLearningRate(cfg.lr);
                  return wrap(std::move(a));
                }});
#ifdef TRAIN_REAL_HAS_FIRA
  ms.push_back({"Fira (SVD)", [cfg](Index m, Index n) {
                  wproj::Fira<wproj::SVDBasis<float>> f;
                  f.projector().setRank(std::min(m, n) / 4).setUpdateGap(cfg.gap).setScale(0.25f);
                  f.setLearningRate(4 * cfg.lr);
                  return wrap(std::move(f));
                }});
#endif
  ms.push_back({"Muon", [cfg](Index, Index) {
                  wproj::Muon<float> mu;
                  mu.setLearningRate(cfg.muonLr);
                  return wrap(mu);
                }});
  // Extension point: another optimizer of the hidden matrices is one more entry here.
  if (cfg.only.empty()) return ms;
  std::vector<Method> picked;
  for (auto& m : ms) {
    std::stringstream list(cfg.only);
    std::string item;
    bool keep = m.name == "AdamW";  // the baseline of the table is always run
    while (std::getline(list, item, ','))
      if (!item.empty() && m.name.find(item) != std::string::npos) keep = true;
    if (keep) picked.push_back(std::move(m));
  }
  return picked;
}

struct Result {
  std::string name;
  double heldOut = 0, initial = 0;
  std::size_t stateBytes = 0, hiddenStateBytes = 0;
  double msPerStep = 0, optMsPerStep = 0;
  std::vector<std::pair<int, double>> curve;
};

std::vector<std::size_t> evalPositions(const std::vector<int>& data, int count) {
  std::vector<std::size_t> pos;
  const std::size_t usable = data.size() - kContext;
  const std::size_t stride = std::max<std::size_t>(1, usable / std::size_t(count));
  for (std::size_t p = kContext; p < data.size() && int(pos.size()) < count; p += stride) pos.push_back(p);
  return pos;
}

double heldOutLoss(const Model& m, const std::vector<int>& data, const std::vector<std::size_t>& pos, Work& w) {
  double total = 0;
  const std::size_t chunk = 512;
  for (std::size_t s = 0; s < pos.size(); s += chunk) {
    std::vector<std::size_t> part(pos.begin() + long(s), pos.begin() + long(std::min(pos.size(), s + chunk)));
    total += forwardBackward(m, data, part, w, nullptr) * double(part.size());
  }
  return total / double(pos.size());
}

Result train(const Method& method, const Corpus& c, const Config& cfg) {
  using Clock = std::chrono::steady_clock;
  Model m = initModel(c.vocab, cfg.hidden, cfg.seed);
  Result r;
  r.name = method.name;
  auto o1 = method.hidden(m.w1.rows(), m.w1.cols());
  auto o2 = method.hidden(m.w2.rows(), m.w2.cols());
  auto oe = adamw(cfg.lr), o3 = adamw(cfg.lr), ob1 = adamw(cfg.lr), ob2 = adamw(cfg.lr), ob3 = adamw(cfg.lr);
  Work w;
  Grads g;
  const auto evalPos = evalPositions(c.heldOut, cfg.evalPositions);
  r.initial = heldOutLoss(m, c.heldOut, evalPos, w);
  r.curve.push_back({0, r.initial});
  std::mt19937_64 rng(cfg.seed);  // the same batches for every method
  std::vector<std::size_t> batch(std::size_t(cfg.batch));
  double total = 0, optTotal = 0;
  for (int step = 1; step <= cfg.steps; ++step) {
    for (auto& p : batch) p = kContext + std::size_t(rng() % (c.train.size() - kContext));
    const auto t0 = Clock::now();
    forwardBackward(m, c.train, batch, w, &g);
    const auto t1 = Clock::now();
    o1->step(m.w1, g.w1);
    o2->step(m.w2, g.w2);
    oe->step(m.emb, g.emb);
    o3->step(m.w3, g.w3);
    ob1->step(m.b1, g.b1);
    ob2->step(m.b2, g.b2);
    ob3->step(m.b3, g.b3);
    const auto t2 = Clock::now();
    total += std::chrono::duration<double, std::milli>(t2 - t0).count();
    optTotal += std::chrono::duration<double, std::milli>(t2 - t1).count();
    if (step % cfg.evalEvery == 0 || step == cfg.steps) r.curve.push_back({step, heldOutLoss(m, c.heldOut, evalPos, w)});
  }
  r.heldOut = r.curve.back().second;
  r.msPerStep = total / cfg.steps;
  r.optMsPerStep = optTotal / cfg.steps;
  r.hiddenStateBytes = o1->stateBytes() + o2->stateBytes();
  r.stateBytes = r.hiddenStateBytes + oe->stateBytes() + o3->stateBytes() + ob1->stateBytes() + ob2->stateBytes() + ob3->stateBytes();
  return r;
}

// The first Python interpreter that imports matplotlib ("" when none does): the one on PATH, then
// the system's (Debian's python3-matplotlib installs into /usr/bin/python3's packages).
std::string pythonWithMatplotlib() {
  for (const char* py : {"python3", "/usr/bin/python3"})
    if (std::system((std::string(py) + " -c 'import matplotlib' > /dev/null 2>&1").c_str()) == 0) return py;
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "train_real: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--quick") {
      cfg.quick = true;
      cfg.steps = 200;
      cfg.hidden = 128;
      cfg.evalEvery = 50;
      cfg.evalPositions = 1024;
      cfg.gap = 50;
    } else if (a == "--steps") {
      cfg.steps = std::stoi(next());
    } else if (a == "--hidden") {
      cfg.hidden = std::stoi(next());
    } else if (a == "--out") {
      cfg.out = next();
    } else if (a == "--corpus") {
      cfg.corpus = next();
    } else if (a == "--methods") {
      cfg.only = next();
    } else if (a == "--muon-lr") {
      cfg.muonLr = std::stod(next());
    } else {
      std::cerr << "usage: train_real [--quick] [--steps N] [--hidden H] [--out DIR] [--corpus DIR] [--methods A,B] [--muon-lr LR]\n";
      return 2;
    }
  }
  if (cfg.steps < 1 || cfg.hidden < 8) {
    std::cerr << "train_real: --steps must be >= 1 and --hidden >= 8\n";
    return 2;
  }
  if (!fs::is_directory(cfg.corpus)) {
    std::cerr << "train_real: corpus folder " << cfg.corpus << " not found (Debian's base-files installs /usr/share/common-licenses)\n";
    return 1;
  }
  const Corpus corpus = loadCorpus(cfg.corpus);
  std::cout << "corpus: " << corpus.files.size() << " licence files, " << corpus.train.size() << " training / " << corpus.heldOut.size()
            << " held-out characters, vocabulary " << corpus.vocab << "\n"
            << "model: " << kContext << " chars x " << kEmbed << " embed -> " << cfg.hidden << " -> " << cfg.hidden << " -> softmax; "
            << cfg.steps << " steps of batch " << cfg.batch << "\n\n";

  std::vector<Result> results;
  for (const Method& m : methods(cfg)) {
    results.push_back(train(m, corpus, cfg));
    const Result& r = results.back();
    std::printf("  %-22s held-out %.4f\n", r.name.c_str(), r.heldOut);
    std::fflush(stdout);
  }
  const Result& base = results.front();
  std::printf("\n%-22s %9s %9s %12s %8s %9s %9s %9s\n", "method", "held-out", "vs AdamW", "state bytes", "state %", "hidden %", "ms/step", "opt ms");
  for (const Result& r : results)
    std::printf("%-22s %9.4f %8.3fx %12zu %7.1f%% %8.1f%% %9.2f %9.2f\n", r.name.c_str(), r.heldOut, r.heldOut / base.heldOut, r.stateBytes,
                100.0 * double(r.stateBytes) / double(base.stateBytes), 100.0 * double(r.hiddenStateBytes) / double(base.hiddenStateBytes),
                r.msPerStep, r.optMsPerStep);
  std::printf("(untrained model: held-out %.4f; state %% = whole model, hidden %% = the two hidden matrices)\n", base.initial);

  fs::create_directories(cfg.out);
  {
    std::ofstream csv(fs::path(cfg.out) / "train_real.csv");
    csv << "method,heldout_loss,untrained_loss,state_bytes,hidden_state_bytes,ms_per_step,optimizer_ms_per_step\n";
    for (const Result& r : results)
      csv << '"' << r.name << "\"," << r.heldOut << ',' << r.initial << ',' << r.stateBytes << ',' << r.hiddenStateBytes << ',' << r.msPerStep
          << ',' << r.optMsPerStep << '\n';
    std::ofstream curves(fs::path(cfg.out) / "train_real_curves.csv");
    curves << "method,step,heldout_loss\n";
    for (const Result& r : results)
      for (const auto& p : r.curve) curves << '"' << r.name << "\"," << p.first << ',' << p.second << '\n';
  }
  const fs::path png = fs::path(cfg.out) / "train_real.png";
  const std::string python = pythonWithMatplotlib();
  if (!python.empty()) {
    const std::string script = std::string(TRAIN_REAL_SOURCE_DIR) + "/plot.py";
    const std::string cmd = python + " '" + script + "' '" + (fs::path(cfg.out) / "train_real_curves.csv").string() + "' '" + png.string() + "'";
    if (std::system(cmd.c_str()) == 0)
      std::cout << "wrote " << png.string() << "\n";
    else
      std::cout << "plot failed (" << cmd << ")\n";
  } else {
    std::cout << "python3 with matplotlib not found (Debian: python3-matplotlib): no PNG, the CSVs are written\n";
  }

  // The check of the test suite: training works (not a timing).
  int failures = 0;
  if (!(base.heldOut < base.initial - 0.5)) {
    std::cerr << "FAILED: AdamW's held-out loss " << base.heldOut << " is not 0.5 nats below the untrained " << base.initial << "\n";
    ++failures;
  }
  for (const Result& r : results)
    if (!(r.heldOut < r.initial - 0.2)) {
      std::cerr << "FAILED: " << r.name << " held-out loss " << r.heldOut << " is not 0.2 nats below the untrained " << r.initial << "\n";
      ++failures;
    }
  return failures == 0 ? 0 : 1;
}
