// Tour chapter: merging task models (OPCM continual merging and the batch mergers).
#include "tour.hpp"

#include <wproj/merging.hpp>

#include <Eigen/Dense>

#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

namespace chapter50 {  // a named namespace per chapter: the chapters compile as one unit

using Mat = Eigen::MatrixXf;

/// How much of task t survives in a merged delta Δ: the least-squares coefficient of τ_t in Δ,
/// ⟨Δ, τ_t⟩ / ‖τ_t‖² (1 = the task's update is fully present, 0 = erased).
double retained(const Mat& delta, const Mat& tau) {
  return double(delta.cwiseProduct(tau).sum()) / double(tau.squaredNorm());
}

void run(std::ostream& os, const tour::Options& opt) {
  const Eigen::Index m = opt.quick ? 64 : 256, n = opt.quick ? 48 : 192;
  const int tasks = 8;
  os << "Task vectors τ_t = θ_t − θ₀ of " << tasks << " fine-tuned models, one " << m << "x" << n
     << " layer each: a shared low-rank\n"
        "update (the tasks agree on it) plus a task-specific low-rank update (they compete for the\n"
        "same weights). Each merger returns Δ, the merged model is θ₀ + Δ.\n\n";
  const Mat shared = wproj::gaussianMatrix<Mat>(m, 4, 1) * wproj::gaussianMatrix<Mat>(4, n, 2) * 0.25f;
  std::vector<Mat> taus;
  for (int t = 0; t < tasks; ++t) {
    const Mat own = wproj::gaussianMatrix<Mat>(m, 6, 10 + t) * wproj::gaussianMatrix<Mat>(6, n, 30 + t) * 0.25f;
    taus.push_back(shared + own);
  }

  // OPCM: models arrive one at a time; the state is one accumulator, saved and resumed half-way.
  wproj::OpcmMerging<float> opcm;
  opcm.setAlpha(0.5);
  std::stringstream checkpoint;
  for (int t = 0; t < tasks; ++t) {
    if (t == tasks / 2) {
      opcm.save(checkpoint);
      wproj::OpcmMerging<float> resumed;
      resumed.load(checkpoint);
      opcm = resumed;
    }
    opcm.add(taus[std::size_t(t)]);
  }

  struct Row {
    std::string name;
    Mat delta;
  };
  std::vector<Row> rows;
  rows.push_back({"task arithmetic (l=0.3)", wproj::TaskArithmeticMerging<float>(0.3).mergeDelta(taus)});
  rows.push_back({"TIES (density 0.2)", wproj::TiesMerging<float>().mergeDelta(taus)});
  rows.push_back({"Iso-C", wproj::IsoCMerging<float>().mergeDelta(taus)});
  rows.push_back({"Iso-CTS (common 0.8)", wproj::IsoCtsMerging<float>().mergeDelta(taus)});
  rows.push_back({"TSV-M", wproj::TsvMerging<float>().mergeDelta(taus)});
  rows.push_back({"OPCM (alpha=0.5, sequential)", opcm.mergedDelta()});

  os << "retained = <Δ, τ_t>/‖τ_t‖², how much of task t's update the merge keeps (min and mean over tasks);\n"
        "size = ‖Δ‖ / mean_t ‖τ_t‖.\n\n";
  os << "  " << std::left << std::setw(28) << "method" << std::right << std::setw(12) << "size" << std::setw(16)
     << "retained (min)" << std::setw(16) << "retained (mean)" << "\n";
  double meanNorm = 0;
  for (const auto& t : taus) meanNorm += double(t.norm()) / tasks;
  for (const auto& r : rows) {
    double lo = 1e9, avg = 0;
    for (const auto& t : taus) {
      const double k = retained(r.delta, t);
      lo = std::min(lo, k);
      avg += k / tasks;
    }
    os << "  " << std::left << std::setw(28) << r.name << std::right << std::fixed << std::setprecision(2) << std::setw(12)
       << double(r.delta.norm()) / meanNorm << std::setw(16) << lo << std::setw(16) << avg << "\n";
  }
  os << std::defaultfloat << "\nOPCM kept " << opcm.stateBytes() << " bytes of state for " << tasks
     << " models (the same for any number), a batch merger holds all " << tasks << " task vectors ("
     << tasks * m * n * sizeof(float) << " bytes).\nIts scale λ = mean‖τ‖/‖S‖ = " << std::setprecision(3) << opcm.scale()
     << " keeps ‖Δ‖ at the size of one task vector; the state was saved after " << tasks / 2
     << " models and resumed.\nexamples/continual_merging trains and merges real (small) networks.\n";
}

tour::Register chapter{50, "Merging task models", &run};

}  // namespace chapter50
