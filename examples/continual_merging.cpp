// Continual model merging on a small multi-task problem.
//
// A base MLP trunk is trained on a mixture of tasks; one copy per task is then fine-tuned (trunk
// only, each task keeping its own fixed classification head, as CLIP fine-tuning keeps the
// zero-shot text head). The task models are merged into one trunk
//   - in sequence with OPCM (models arrive one at a time; constant memory; state saved and resumed
//     half-way through), and
//   - all at once with task arithmetic, TIES, Iso-C and TSV-M,
// and every merged trunk is evaluated on every task with that task's head.
//
// The tasks share one input distribution and one trunk, and their labels depend on different
// directions of shared teacher features, so their fine-tuning updates overlap and conflict in
// weight space: that is where merging methods differ.
//
// Usage: continual_merging [--quick] [--tasks T] [--seed S]
#include <wproj/merging.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Mat = Eigen::MatrixXf;
using Vec = Eigen::VectorXf;
using Model = std::map<std::string, Mat>;  // the trunk: fc1.weight, fc1.bias, fc2.weight, fc2.bias

struct Config {
  bool quick = false;
  int tasks = 8;
  std::uint64_t seed = 7;
  int dim = 32, hidden = 96, classes = 6, teacher = 48;
  int trainPerTask = 1500, testPerTask = 1000;
  int pretrainSteps = 100, finetuneSteps = 1200, batch = 64;
  float lr = 2e-3f;
  float common = 0.5f;  // weight of the part of the label map all tasks share
};

struct Task {
  Mat xTrain, xTest;            // dim × n
  std::vector<int> yTrain, yTest;
  Mat head;                     // classes × hidden (fixed after pre-training)
  Vec headBias;
};

/// Labels from a teacher: shared features tanh(G x) mixed by a task matrix A_t.
std::vector<int> teacherLabels(const Mat& x, const Mat& g, const Mat& a) {
  const Mat f = (g * x).array().tanh().matrix();
  const Mat s = a * f;
  std::vector<int> y(std::size_t(x.cols()));
  for (Eigen::Index j = 0; j < x.cols(); ++j) {
    Eigen::Index c;
    s.col(j).maxCoeff(&c);
    y[std::size_t(j)] = int(c);
  }
  return y;
}

std::vector<Task> makeTasks(const Config& cfg) {
  const Mat g = wproj::gaussianMatrix<Mat>(cfg.teacher, cfg.dim, cfg.seed, 1, 1.0 / std::sqrt(double(cfg.dim)) * 1.5);
  // Task mixing matrices share a common part (tasks agree on some directions) and have their own.
  const Mat common = wproj::gaussianMatrix<Mat>(cfg.classes, cfg.teacher, cfg.seed, 2);
  std::vector<Task> tasks(std::size_t(cfg.tasks));
  for (int t = 0; t < cfg.tasks; ++t) {
    Task& k = tasks[std::size_t(t)];
    const Mat own = wproj::gaussianMatrix<Mat>(cfg.classes, cfg.teacher, cfg.seed, 100 + std::uint64_t(t));
    const Mat a = cfg.common * common + own;
    k.xTrain = wproj::gaussianMatrix<Mat>(cfg.dim, cfg.trainPerTask, cfg.seed, 200 + std::uint64_t(t));
    k.xTest = wproj::gaussianMatrix<Mat>(cfg.dim, cfg.testPerTask, cfg.seed, 300 + std::uint64_t(t));
    k.yTrain = teacherLabels(k.xTrain, g, a);
    k.yTest = teacherLabels(k.xTest, g, a);
    k.head = wproj::gaussianMatrix<Mat>(cfg.classes, cfg.hidden, cfg.seed, 400 + std::uint64_t(t), 1.0 / std::sqrt(double(cfg.hidden)));
    k.headBias = Vec::Zero(cfg.classes);
  }
  return tasks;
}

Model initModel(const Config& cfg) {
  Model m;
  m["fc1.weight"] = wproj::gaussianMatrix<Mat>(cfg.hidden, cfg.dim, cfg.seed, 500, std::sqrt(2.0 / cfg.dim));
  m["fc1.bias"] = Mat::Zero(cfg.hidden, 1);
  m["fc2.weight"] = wproj::gaussianMatrix<Mat>(cfg.hidden, cfg.hidden, cfg.seed, 501, std::sqrt(2.0 / cfg.hidden));
  m["fc2.bias"] = Mat::Zero(cfg.hidden, 1);
  return m;
}

/// Logits of a batch (columns of x) through trunk + head; the activations are kept for backprop.
struct Forward {
  Mat z1, h1, z2, h2, logits;
};
Forward forward(const Model& m, const Mat& head, const Vec& headBias, const Mat& x) {
  Forward f;
  f.z1 = (m.at("fc1.weight") * x).colwise() + Vec(m.at("fc1.bias").col(0));
  f.h1 = f.z1.cwiseMax(0.0f);
  f.z2 = (m.at("fc2.weight") * f.h1).colwise() + Vec(m.at("fc2.bias").col(0));
  f.h2 = f.z2.cwiseMax(0.0f);
  f.logits = (head * f.h2).colwise() + headBias;
  return f;
}

double accuracy(const Model& m, const Task& t) {
  const Forward f = forward(m, t.head, t.headBias, t.xTest);
  int ok = 0;
  for (Eigen::Index j = 0; j < f.logits.cols(); ++j) {
    Eigen::Index c;
    f.logits.col(j).maxCoeff(&c);
    ok += int(c) == t.yTest[std::size_t(j)];
  }
  return 100.0 * ok / double(f.logits.cols());
}

/// Adam on the trunk (and, when `trainHeads`, the heads) for `steps` mini-batches drawn from `taskIds`.
void train(Model& m, std::vector<Task>& tasks, const std::vector<int>& taskIds, bool trainHeads, int steps, const Config& cfg,
           std::uint64_t stream) {
  std::map<std::string, Mat> mom, var;
  for (auto& [n, w] : m) {
    mom[n] = Mat::Zero(w.rows(), w.cols());
    var[n] = Mat::Zero(w.rows(), w.cols());
  }
  std::vector<Mat> hm(tasks.size()), hv(tasks.size());
  std::vector<Vec> bm(tasks.size()), bv(tasks.size());
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    hm[t] = hv[t] = Mat::Zero(cfg.classes, cfg.hidden);
    bm[t] = bv[t] = Vec::Zero(cfg.classes);
  }
  wproj::CounterRng rng(cfg.seed, stream);
  const float b1 = 0.9f, b2 = 0.999f, epsA = 1e-8f;
  auto adam = [&](Mat& w, Mat& mo, Mat& va, const Mat& g, int step) {
    mo = b1 * mo + (1 - b1) * g;
    va = b2 * va + (1 - b2) * g.cwiseAbs2();
    const float c1 = 1 - std::pow(b1, float(step)), c2 = 1 - std::pow(b2, float(step));
    w.array() -= cfg.lr * (mo.array() / c1) / ((va.array() / c2).sqrt() + epsA);
  };
  for (int step = 1; step <= steps; ++step) {
    const int tid = taskIds[std::size_t(rng.nextBelow(taskIds.size()))];
    Task& t = tasks[std::size_t(tid)];
    Mat x(cfg.dim, cfg.batch);
    std::vector<int> y(std::size_t(cfg.batch));
    for (int j = 0; j < cfg.batch; ++j) {
      const auto i = Eigen::Index(rng.nextBelow(std::uint64_t(t.xTrain.cols())));
      x.col(j) = t.xTrain.col(i);
      y[std::size_t(j)] = t.yTrain[std::size_t(i)];
    }
    const Forward f = forward(m, t.head, t.headBias, x);
    Mat p = (f.logits.rowwise() - f.logits.colwise().maxCoeff()).array().exp().matrix();
    p = p.array().rowwise() / p.colwise().sum().array();
    for (int j = 0; j < cfg.batch; ++j) p(y[std::size_t(j)], j) -= 1.0f;
    p /= float(cfg.batch);
    const Mat dH2 = t.head.transpose() * p;
    const Mat dZ2 = dH2.cwiseProduct((f.z2.array() > 0).cast<float>().matrix());
    const Mat dH1 = m["fc2.weight"].transpose() * dZ2;
    const Mat dZ1 = dH1.cwiseProduct((f.z1.array() > 0).cast<float>().matrix());
    std::map<std::string, Mat> g;
    g["fc2.weight"] = dZ2 * f.h1.transpose();
    g["fc2.bias"] = dZ2.rowwise().sum();
    g["fc1.weight"] = dZ1 * x.transpose();
    g["fc1.bias"] = dZ1.rowwise().sum();
    if (trainHeads) {
      const std::size_t k = std::size_t(tid);
      Mat gh = p * f.h2.transpose();
      Mat hb = t.headBias;
      Mat gb = p.rowwise().sum();
      adam(t.head, hm[k], hv[k], gh, step);
      Mat bmk = bm[k], bvk = bv[k];
      adam(hb, bmk, bvk, gb, step);
      bm[k] = bmk;
      bv[k] = bvk;
      t.headBias = hb;
    }
    for (auto& [n, w] : m) adam(w, mom[n], var[n], g[n], step);
  }
}

const std::vector<std::string> kNames{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

std::size_t modelBytes(const Model& m) {
  std::size_t b = 0;
  for (const auto& [n, w] : m) b += std::size_t(w.size()) * sizeof(float);
  return b;
}

/// Merges all task models at once with a per-tensor merger through the streaming driver.
template <typename Merger>
Model mergeAll(const Merger& merger, const Model& base, const std::vector<Model>& models, wproj::MergeReport* report) {
  wproj::ModelMerger<Merger> driver(merger);
  Model out;
  *report = driver.merge(
      kNames, wproj::Index(models.size()), [&](const std::string& n) { return base.at(n); },
      [&](wproj::Index i, const std::string& n) { return models[std::size_t(i)].at(n); },
      [&](const std::string& n, const Mat& w) { out[n] = w; });
  return out;
}

/// OPCM over the models in `order`; saves the state after half of them, resumes from the file.
Model mergeOpcm(const Model& base, const std::vector<Model>& models, const std::vector<int>& order, double alpha,
                std::size_t* stateBytes, bool* resumeIdentical, std::vector<wproj::MergeReport>* steps) {
  const std::string path = "continual_merging_state.bin";
  auto fetchTask = [&](int i) {
    return [&, i](const std::string& n) { return Mat(models[std::size_t(i)].at(n) - base.at(n)); };
  };
  wproj::OpcmMerging<float> opcm;
  opcm.setAlpha(alpha);
  const std::size_t half = order.size() / 2;
  for (std::size_t k = 0; k < half; ++k) steps->push_back(opcm.addModel(kNames, fetchTask(order[k])));
  opcm.save(path);  // e.g. the process stops here and restarts when the next model arrives
  wproj::OpcmMerging<float> resumed;
  resumed.load(path);
  std::remove(path.c_str());
  for (std::size_t k = half; k < order.size(); ++k) {
    steps->push_back(resumed.addModel(kNames, fetchTask(order[k])));
    opcm.addModel(kNames, fetchTask(order[k]));
  }
  *resumeIdentical = true;
  for (const auto& n : kNames) *resumeIdentical = *resumeIdentical && (resumed.accumulator(n) == opcm.accumulator(n));
  *stateBytes = resumed.stateBytes();
  Model out;
  resumed.writeMerged([&](const std::string& n) { return base.at(n); }, [&](const std::string& n, const Mat& w) { out[n] = w; });
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--quick") {
      cfg.quick = true;
      cfg.trainPerTask = 800;
      cfg.testPerTask = 500;
      cfg.pretrainSteps = 100;
      cfg.finetuneSteps = 300;
    }
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      cfg.quick = true;
    } else if (a == "--tasks" && i + 1 < argc) {
      cfg.tasks = std::max(2, std::atoi(argv[++i]));
    } else if (a == "--seed" && i + 1 < argc) {
      cfg.seed = std::uint64_t(std::atoll(argv[++i]));
    } else if (a == "--pretrain" && i + 1 < argc) {
      cfg.pretrainSteps = std::atoi(argv[++i]);
    } else if (a == "--finetune" && i + 1 < argc) {
      cfg.finetuneSteps = std::atoi(argv[++i]);
    } else if (a == "--lr" && i + 1 < argc) {
      cfg.lr = float(std::atof(argv[++i]));
    } else if (a == "--common" && i + 1 < argc) {
      cfg.common = float(std::atof(argv[++i]));
    } else if (a == "--hidden" && i + 1 < argc) {
      cfg.hidden = std::atoi(argv[++i]);
    } else if (a == "--train" && i + 1 < argc) {
      cfg.trainPerTask = std::atoi(argv[++i]);
    } else {
      std::cerr << "usage: continual_merging [--quick] [--tasks T] [--seed S] [--pretrain N] [--finetune N] [--lr X] [--common X] [--hidden N] [--train N]\n";
      return 2;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<Task> tasks = makeTasks(cfg);
  const int T = cfg.tasks;
  std::vector<int> all(static_cast<std::size_t>(T));
  std::iota(all.begin(), all.end(), 0);

  // 1. Pre-train the base trunk (and the task heads) on the task mixture, briefly.
  Model base = initModel(cfg);
  train(base, tasks, all, /*trainHeads=*/true, cfg.pretrainSteps, cfg, 1);
  // 2. Fine-tune one copy of the trunk per task; heads stay fixed.
  std::vector<Model> models;
  for (int t = 0; t < T; ++t) {
    Model m = base;
    train(m, tasks, {t}, false, cfg.finetuneSteps, cfg, 1000 + std::uint64_t(t));
    models.push_back(std::move(m));
  }

  struct Row {
    std::string name;
    std::vector<double> acc;
    std::string memory;
  };
  std::vector<Row> rows;
  auto evalRow = [&](const std::string& name, const Model& m, const std::string& memory) {
    Row r{name, {}, memory};
    for (int t = 0; t < T; ++t) r.acc.push_back(accuracy(m, tasks[std::size_t(t)]));
    rows.push_back(std::move(r));
  };
  const std::size_t P = modelBytes(base);
  auto kb = [](std::size_t b) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(0) << double(b) / 1024.0 << " KiB";
    return os.str();
  };
  evalRow("base (pre-trained)", base, "-");
  {
    Row r{"fine-tuned (own model)", {}, "-"};
    for (int t = 0; t < T; ++t) r.acc.push_back(accuracy(models[std::size_t(t)], tasks[std::size_t(t)]));
    rows.push_back(std::move(r));
  }
  const std::string batchMem = kb(std::size_t(T) * P);
  wproj::MergeReport rep, tsvReport;
  evalRow("task arithmetic (l=0.3)", mergeAll(wproj::TaskArithmeticMerging<float>(0.3), base, models, &rep), batchMem);
  evalRow("task arithmetic (l=1/T)", mergeAll(wproj::TaskArithmeticMerging<float>(1.0 / T), base, models, &rep), batchMem);
  {
    // Task arithmetic with the best lambda chosen on the test sets themselves: an optimistic
    // (oracle) bound for task arithmetic, which in practice tunes lambda on validation data.
    double bestAvg = -1, bestLambda = 0;
    Model best;
    for (int k = 1; k <= 10; ++k) {
      const Model m = mergeAll(wproj::TaskArithmeticMerging<float>(0.1 * k), base, models, &rep);
      double avg = 0;
      for (int t = 0; t < T; ++t) avg += accuracy(m, tasks[std::size_t(t)]) / T;
      if (avg > bestAvg) {
        bestAvg = avg;
        bestLambda = 0.1 * k;
        best = m;
      }
    }
    std::ostringstream name;
    name << "task arithmetic (oracle l=" << std::setprecision(1) << std::fixed << bestLambda << ")";
    evalRow(name.str(), best, batchMem);
  }
  evalRow("ties (d=0.2, l=1)", mergeAll(wproj::TiesMerging<float>(), base, models, &rep), batchMem);
  evalRow("iso-c (a=1)", mergeAll(wproj::IsoCMerging<float>(), base, models, &rep), batchMem);
  evalRow("tsv-m (a=1)", mergeAll(wproj::TsvMerging<float>(), base, models, &tsvReport), batchMem);

  std::size_t stateBytes = 0;
  bool identical = false;
  std::vector<wproj::MergeReport> steps;
  const Model opcm = mergeOpcm(base, models, all, 0.5, &stateBytes, &identical, &steps);
  evalRow("opcm (a=0.5, sequential)", opcm, kb(stateBytes + P));
  // OPCM is order dependent: average over a few shuffled arrival orders too.
  if (!cfg.quick) {
    Row avg{"opcm, mean of 3 shuffled orders", std::vector<double>(std::size_t(T), 0.0), kb(stateBytes + P)};
    wproj::CounterRng rng(cfg.seed, 77);
    for (int rep3 = 0; rep3 < 3; ++rep3) {
      std::vector<int> order = all;
      for (int i = T - 1; i > 0; --i) std::swap(order[std::size_t(i)], order[std::size_t(rng.nextBelow(std::uint64_t(i + 1)))]);
      std::size_t sb = 0;
      bool same = false;
      std::vector<wproj::MergeReport> st;
      const Model m = mergeOpcm(base, models, order, 0.5, &sb, &same, &st);
      for (int t = 0; t < T; ++t) avg.acc[std::size_t(t)] += accuracy(m, tasks[std::size_t(t)]) / 3.0;
    }
    rows.push_back(std::move(avg));
  }

  // The table.
  std::cout << "Continual merging of " << T << " task models (MLP trunk " << cfg.dim << "-" << cfg.hidden << "-" << cfg.hidden
            << ", " << cfg.classes << " classes per task, fixed per-task heads)" << (cfg.quick ? " [quick]" : "") << "\n\n";
  std::cout << std::left << std::setw(34) << "method";
  for (int t = 0; t < T; ++t) std::cout << std::right << std::setw(6) << ("T" + std::to_string(t + 1));
  std::cout << std::setw(8) << "avg" << "   memory held\n";
  double taAvg = 0, opcmAvg = 0;
  for (const auto& r : rows) {
    const double mean = std::accumulate(r.acc.begin(), r.acc.end(), 0.0) / double(r.acc.size());
    if (r.name.rfind("task arithmetic (l=0.3)", 0) == 0) taAvg = mean;
    if (r.name.rfind("opcm (a=0.5", 0) == 0) opcmAvg = mean;
    std::cout << std::left << std::setw(34) << r.name << std::right << std::fixed << std::setprecision(1);
    for (double a : r.acc) std::cout << std::setw(6) << a;
    std::cout << std::setw(8) << mean << "   " << r.memory << "\n";
  }
  std::cout << std::defaultfloat << "\nmemory held: batch methods must keep all " << T << " fine-tuned models until the merge ("
            << T << " x " << kb(P) << "); OPCM keeps its accumulator (" << kb(stateBytes)
            << ", the same for any number of models) plus the model in flight.\n";
  std::cout << "OPCM state saved after " << T / 2 << " models and resumed: " << (identical ? "bit-identical" : "DIFFERENT")
            << " to the uninterrupted run.\n";
  std::cout << "OPCM - task arithmetic (l=0.3): " << std::showpos << std::fixed << std::setprecision(1) << (opcmAvg - taAvg)
            << std::noshowpos << " points average accuracy.\n";
  std::cout << "\nOPCM step " << T << " (per-tensor report):\n";
  steps.back().print(std::cout);
  std::cout << "\n";
  tsvReport.print(std::cout);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "\n(" << std::fixed << std::setprecision(1) << secs << " s)\n";
  return identical ? 0 : 1;
}
