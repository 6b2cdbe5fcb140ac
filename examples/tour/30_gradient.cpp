// Tour chapter: GaLore — training with low-rank optimizer state.
#include "tour.hpp"

#include <wproj/gradient.hpp>

#include <Eigen/Dense>

#include <chrono>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

namespace chapter30 {  // a named namespace per chapter: the chapters compile as one unit

using Mat = Eigen::MatrixXf;
using wproj::Index;

/// A streaming multi-output regression y = T x + noise with a rank-k teacher T (m×n) and inputs
/// whose standard deviation decays as 1/(1 + i/8) over the coordinates (layer inputs in a network are
/// anisotropic like this). Every step draws a fresh batch, so the loss ½·E‖W x − y‖²/m has the
/// floor ½σ² (the noise).
struct Task {
  Index m, n, batch = 64;
  float noise = 0.1f;
  Mat teacher, xEval, yEval;
  Eigen::VectorXf inputScale;
  Task(Index m_, Index n_, Index k) : m(m_), n(n_), inputScale(n_) {
    for (Index i = 0; i < n; ++i) inputScale(i) = 1.0f / (1.0f + float(i) / 8.0f);
    teacher = wproj::gaussianMatrix<Mat>(m, k, 2) * wproj::gaussianMatrix<Mat>(k, n, 3) * (0.3f / std::sqrt(float(k)));
    sample(1024, 0, xEval, yEval);
  }
  void sample(Index count, std::uint64_t stream, Mat& x, Mat& y) const {
    x = inputScale.asDiagonal() * wproj::gaussianMatrix<Mat>(n, count, 10, stream);
    y = teacher * x + noise * wproj::gaussianMatrix<Mat>(m, count, 11, stream);
  }
  double floor() const { return 0.5 * double(noise) * double(noise); }
  double loss(const Mat& w) const { return 0.5 * double((w * xEval - yEval).squaredNorm()) / double(m * xEval.cols()); }
};

struct Outcome {
  double loss = 0, seconds = 0;
  std::size_t bytes = 0;
  std::vector<double> curve;  // loss at a few checkpoints
};

template <typename Opt>
Outcome train(Opt& opt, const Task& task, int steps, double lr) {
  Mat w = Mat::Zero(task.m, task.n), x, y, resid(task.m, task.batch), g(task.m, task.n);
  Outcome out;
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) {
    task.sample(task.batch, std::uint64_t(s + 1), x, y);
    resid.noalias() = w * x - y;
    g.noalias() = resid * x.transpose() / float(task.batch * task.m);
    opt.setLearningRate(lr * (1.0 - double(s) / double(steps)));  // linear decay to 0
    opt.step(w, g);
    if ((s + 1) % (steps / 4) == 0) out.curve.push_back(task.loss(w));
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.loss = task.loss(w);
  out.bytes = opt.stateBytes();
  return out;
}

void run(std::ostream& os, const tour::Options& opt) {
  const Index m = opt.quick ? 96 : 256, n = opt.quick ? 64 : 192, k = 4, r = n / 4;
  const int steps = opt.quick ? 400 : 1500;
  const Index gap = 20;
  const double lr = 0.05;
  const Task task(m, n, k);
  os << "GaLore keeps Adam's two moments of an m×n weight in a rank-r subspace of its gradient (refreshed\n"
        "every T steps), so the optimizer state shrinks from 2mn to 2·r·max(m,n) + a basis. Here a "
     << m << "x" << n << " weight\nlearns a rank-" << k << " linear map from " << steps << " streaming batches of "
     << task.batch << " (loss floor ½σ² = " << task.floor() << "); r = " << r << ", T = " << gap << ", lr = " << lr
     << "\nwith linear decay, for all.\n\n";
  os << "  " << std::left << std::setw(35) << "optimizer" << std::right << std::setw(30) << "loss after 25/50/75/100% of steps"
     << std::setw(13) << "state bytes" << std::setw(8) << "of Adam" << std::setw(11) << "refreshes" << "\n";
  std::size_t adamBytes = 0;
  auto row = [&](const std::string& name, const Outcome& o, long refreshes) {
    if (adamBytes == 0) adamBytes = o.bytes;
    std::ostringstream curve;
    curve << std::fixed << std::setprecision(4);
    for (std::size_t i = 0; i < o.curve.size(); ++i) curve << (i ? " " : "") << o.curve[i];
    os << "  " << std::left << std::setw(35) << name << std::right << std::setw(30) << curve.str() << std::setw(13) << o.bytes
       << std::setw(7) << std::fixed << std::setprecision(1) << 100.0 * double(o.bytes) / double(adamBytes) << "%"
       << std::setw(11) << refreshes << "\n";
  };

  wproj::AdamW<float> adam;
  adam.setLearningRate(lr);
  const Outcome a = train(adam, task, steps, lr);
  row("AdamW (full rank)", a, 0);

  using wproj::MomentPolicy;
  wproj::ProjectedAdamW<wproj::SVDBasis<float>> galore;
  galore.projector().setRank(r).setUpdateGap(gap).setScale(1.0f);
  galore.setLearningRate(lr);
  const Outcome g = train(galore, task, steps, lr);
  row("GaLore-AdamW (SVD, keep moments)", g, galore.projector().stats().refreshes);

  wproj::ProjectedAdamW<wproj::SVDBasis<float>> rot;
  rot.projector().setRank(r).setUpdateGap(gap).setScale(1.0f);
  rot.setLearningRate(lr).setMomentPolicy(MomentPolicy::Rotate);
  const Outcome gr = train(rot, task, steps, lr);
  row("GaLore-AdamW (SVD, rotate)", gr, rot.projector().stats().refreshes);

  wproj::ProjectedAdamW<wproj::RandomizedBasis<float>> rnd;
  rnd.projector().setRank(r).setUpdateGap(gap).setScale(1.0f);
  rnd.setLearningRate(lr).setMomentPolicy(MomentPolicy::Rotate);
  const Outcome rr = train(rnd, task, steps, lr);
  row("GaLore-AdamW (randomized, rotate)", rr, rnd.projector().stats().refreshes);

  wproj::ProjectedAdamW<wproj::DCTBasis<float>> dct;
  dct.projector().setRank(r).setUpdateGap(gap).setScale(1.0f);
  dct.setLearningRate(lr).setMomentPolicy(MomentPolicy::Rotate);
  const Outcome d = train(dct, task, steps, lr);
  row("GaLore-AdamW (DCT, rotate)", d, dct.projector().stats().refreshes);

  wproj::ProjectedAdamW<wproj::QuantizedBasis<wproj::SVDBasis<float>>> q;
  q.projector().setRank(r).setUpdateGap(gap).setScale(1.0f).setAdaptiveGap(true);
  q.setLearningRate(lr).setMomentPolicy(MomentPolicy::Rotate);
  const Outcome qo = train(q, task, steps, lr);
  row("Q-GaLore (INT4, adaptive T, rot.)", qo, q.projector().stats().refreshes);

  os << std::setprecision(2) << "\n  With ~" << std::setprecision(0) << 100.0 * double(gr.bytes) / double(a.bytes)
     << "% of AdamW's state, GaLore ends at " << std::setprecision(2) << gr.loss / a.loss
     << "x its loss when the moments are rotated into each new basis\n  (R = P_old^T P_new), and at " << g.loss / a.loss
     << "x when they are kept as they are (GaLore's default). Q-GaLore stores the basis in\n  4 bits and, as successive bases "
     << "agree (mean overlap " << q.projector().stats().meanOverlap() << "), lets its gap grow from " << gap << " to "
     << q.projector().updateGap() << ": " << q.projector().stats().refreshes << " refreshes instead of "
     << rot.projector().stats().refreshes << ",\n  at a final loss of " << std::setprecision(4) << qo.loss << " against "
     << gr.loss << (qo.loss > 1.01 * gr.loss ? " (here the lazy refreshes cost accuracy).\n" : ".\n");
}

tour::Register chapter{30, "Gradient projection (GaLore)", &run};

}  // namespace chapter30
