// Tour chapter: GaLore — training with low-rank optimizer state.
#include "tour.hpp"

#include <wproj/gradient.hpp>

#include <Eigen/Dense>

#include <iomanip>

namespace {

using Mat = Eigen::MatrixXf;

/// Fits W (m×n) to a low-rank-plus-noise target by minimising ½‖W X − Y‖²/N with an optimizer.
template <typename Opt>
std::pair<double, std::size_t> fit(Opt& opt, Eigen::Index m, Eigen::Index n, int steps) {
  const Mat x = wproj::gaussianMatrix<Mat>(n, 256, 1);
  const Mat teacher = wproj::gaussianMatrix<Mat>(m, 6, 2) * wproj::gaussianMatrix<Mat>(6, n, 3) / 3.0f;
  const Mat y = teacher * x + 0.05f * wproj::gaussianMatrix<Mat>(m, 256, 4);
  Mat w = Mat::Zero(m, n), resid(m, 256), g(m, n);
  for (int s = 0; s < steps; ++s) {
    resid.noalias() = w * x - y;
    g.noalias() = resid * x.transpose() / 256.0f;
    opt.step(w, g);
  }
  resid.noalias() = w * x - y;
  return {0.5 * double(resid.squaredNorm()) / 256.0, opt.stateBytes()};
}

void run(std::ostream& os, const tour::Options& opt) {
  const Eigen::Index m = opt.quick ? 64 : 256, n = opt.quick ? 48 : 192, r = n / 4;
  const int steps = opt.quick ? 150 : 600;
  os << "GaLore keeps the optimizer state of an m×n weight in a rank-r subspace of its gradient,\n"
        "refreshed every T steps. Fitting a " << m << "x" << n << " weight to a rank-6 teacher (" << steps
     << " steps, r = " << r << ", T = 50):\n\n";
  os << "  " << std::left << std::setw(34) << "optimizer" << std::right << std::setw(12) << "final loss" << std::setw(14)
     << "state bytes" << std::setw(11) << "refreshes\n";
  auto row = [&](const char* name, std::pair<double, std::size_t> res, long refreshes) {
    os << "  " << std::left << std::setw(34) << name << std::right << std::setw(12) << std::setprecision(4) << res.first
       << std::setw(14) << res.second << std::setw(10) << refreshes << "\n";
  };
  wproj::AdamW<float> adam;
  adam.setLearningRate(0.01);
  row("AdamW (full rank)", fit(adam, m, n, steps), 0);

  wproj::ProjectedAdamW<wproj::SvdBasis<float>> galore;
  galore.projector().setRank(r).setUpdateGap(50).setScale(1.0f);
  galore.setLearningRate(0.01);
  const auto gres = fit(galore, m, n, steps);
  row("GaLore-AdamW (exact SVD)", gres, galore.projector().stats().refreshes);

  wproj::ProjectedAdamW<wproj::RandomizedBasis<float>> rnd;
  rnd.projector().setRank(r).setUpdateGap(50).setScale(1.0f);
  rnd.setLearningRate(0.01);
  const auto rres = fit(rnd, m, n, steps);
  row("GaLore-AdamW (warm randomized)", rres, rnd.projector().stats().refreshes);

  wproj::ProjectedAdamW<wproj::QuantizedBasis<wproj::SvdBasis<float>>> q;
  q.projector().setRank(r).setUpdateGap(10).setScale(1.0f).setAdaptiveGap(true);
  q.setLearningRate(0.01);
  const auto qres = fit(q, m, n, steps);
  row("Q-GaLore (INT4 basis, adaptive T)", qres, q.projector().stats().refreshes);
  os << "\n  Q-GaLore started at T = 10 and ended at T = " << q.projector().updateGap()
     << ": the subspace of this gradient barely moves (mean overlap " << std::setprecision(3)
     << q.projector().stats().meanOverlap() << "), so refreshes become rare.\n";
}

tour::Register chapter{30, "Gradient projection (GaLore)", &run};

}  // namespace
