// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// OwLore (Li et al. 2024, "Outlier-weighed Layerwise Sampled Low-Rank Projection"): which
/// layers train in a step. Each layer's outlier ratio (the share of weights whose score
/// |W_ij|·‖X_j‖₂ exceeds M times the layer's mean score, OWL's layer-wise outlier distribution)
/// becomes its sampling probability p_l = ratio_l / Σ ratio; every K steps γ layers are drawn
/// without replacement with those probabilities, and only they are updated (with any projected
/// optimizer) until the next draw.

#include "../core/config.hpp"
#include "../core/random.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace wproj {

/// The outlier ratio of one layer made of the weight matrices `weights[i]` (out×in) with input
/// feature norms `inputNorms[i]` (length in: ‖X_j‖₂ over the calibration tokens): the fraction
/// of entries whose score |W_ij|·‖X_j‖ is greater than `threshold` (M) times the mean score over
/// all entries of the layer. Computed in double. Returns a value in [0, 1].
template <typename Matrix, typename Vector>
double outlierRatio(const std::vector<Matrix>& weights, const std::vector<Vector>& inputNorms, double threshold) {
  const char* where = "outlierRatio";
  requireArg(!weights.empty(), where, "weights.size()", weights.size(), ">= 1");
  requireArg(inputNorms.size() == weights.size(), where, "inputNorms.size()", inputNorms.size(),
             "weights.size() = " + std::to_string(weights.size()));
  requireArg(std::isfinite(threshold) && threshold > 0.0, where, "threshold", threshold, "a finite value > 0");
  double sum = 0.0, count = 0.0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    requireArg(inputNorms[i].size() == weights[i].cols(), where, "inputNorms[i].size()", inputNorms[i].size(),
               "weights[i].cols() = " + std::to_string(weights[i].cols()));
    checkFinite(weights[i], where, "weights[i]");
    checkFinite(inputNorms[i], where, "inputNorms[i]");
    requireArg(inputNorms[i].minCoeff() >= 0, where, "min(inputNorms[i])", double(inputNorms[i].minCoeff()), ">= 0");
    const Eigen::ArrayXXd score =
        weights[i].template cast<double>().array().abs().rowwise() * inputNorms[i].template cast<double>().transpose().array();
    sum += score.sum();
    count += double(score.size());
  }
  requireArg(count > 0, where, "total entries", count, ">= 1");
  const double cut = threshold * sum / count;
  double outliers = 0.0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const Eigen::ArrayXXd score =
        weights[i].template cast<double>().array().abs().rowwise() * inputNorms[i].template cast<double>().transpose().array();
    outliers += double((score > cut).count());
  }
  return outliers / count;
}

/// The outlier ratio of a single weight matrix (see the list overload).
template <typename DW, typename DX>
double outlierRatio(const Eigen::MatrixBase<DW>& weight, const Eigen::MatrixBase<DX>& inputNorms, double threshold) {
  std::vector<Eigen::MatrixXd> w{weight.template cast<double>()};
  std::vector<Eigen::VectorXd> x{inputNorms.template cast<double>()};
  requireArg(inputNorms.rows() == 1 || inputNorms.cols() == 1, "outlierRatio", "inputNorms shape",
             detail::shapeString(inputNorms.rows(), inputNorms.cols()), "a vector");
  return outlierRatio(w, x, threshold);
}

/// OwLore's layer scheduler: every `interval` steps it draws `activeLayers` distinct layers with
/// probabilities proportional to their outlier ratios (successive sampling without replacement,
/// the distribution of NumPy's `choice(L, γ, replace=False, p)`). The draw of period ⌊t/K⌋ is a
/// pure function of (seed, period): no state to checkpoint, and any step can be asked for.
///
/// ```cpp
/// OwLoreSampler owl;
/// owl.setOutlierRatios(ratios).setActiveLayers(5).setInterval(50).setSeed(1);
/// for (t ...) for (l : owl.activeLayers(t)) optimizers[l].step(W[l], G[l]);
/// ```
class OwLoreSampler {
 public:
  /// Sampling weights from outlier ratios (finite, ≥ 0, not all 0); normalised to sum 1.
  OwLoreSampler& setOutlierRatios(const std::vector<double>& ratios) {
    const char* where = "OwLoreSampler::setOutlierRatios";
    requireArg(!ratios.empty(), where, "ratios.size()", ratios.size(), ">= 1");
    double total = 0.0;
    for (std::size_t i = 0; i < ratios.size(); ++i) {
      requireArg(std::isfinite(ratios[i]) && ratios[i] >= 0.0, where, "ratios[i]", ratios[i],
                 "a finite value >= 0 (at index " + std::to_string(i) + ")");
      total += ratios[i];
    }
    requireArg(total > 0.0, where, "sum(ratios)", total, "> 0");
    m_prob.resize(ratios.size());
    for (std::size_t i = 0; i < ratios.size(); ++i) m_prob[i] = ratios[i] / total;
    return *this;
  }
  /// Same as `setOutlierRatios` (probabilities are normalised the same way).
  OwLoreSampler& setProbabilities(const std::vector<double>& p) { return setOutlierRatios(p); }
  /// γ, the layers trained per period (≥ 1). Default 5 (official script).
  OwLoreSampler& setActiveLayers(Index gamma) {
    requireArg(gamma >= 1, "OwLoreSampler::setActiveLayers", "gamma", gamma, ">= 1");
    m_gamma = gamma;
    return *this;
  }
  /// K, the steps between draws (≥ 1). Default 50 (official `lisa_interval_steps`).
  OwLoreSampler& setInterval(std::int64_t k) {
    requireArg(k >= 1, "OwLoreSampler::setInterval", "k", k, ">= 1");
    m_interval = k;
    return *this;
  }
  /// The seed of the draws.
  OwLoreSampler& setSeed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }

  /// The number of layers L.
  Index layers() const { return Index(m_prob.size()); }
  /// p_l.
  const std::vector<double>& probabilities() const { return m_prob; }
  Index activeLayerCount() const { return m_gamma; }
  std::int64_t interval() const { return m_interval; }
  std::uint64_t seed() const { return m_seed; }

  /// The layers active in step t (t ≥ 0), in the order drawn.
  std::vector<Index> activeLayers(std::int64_t step) const {
    requireArg(step >= 0, "OwLoreSampler::activeLayers", "step", step, ">= 0");
    const Index nonzero = Index(std::count_if(m_prob.begin(), m_prob.end(), [](double p) { return p > 0.0; }));
    requireArg(!m_prob.empty(), "OwLoreSampler::activeLayers", "layers", 0, ">= 1 (set the outlier ratios first)");
    requireArg(m_gamma <= nonzero, "OwLoreSampler::activeLayers", "gamma", m_gamma,
               "<= the number of layers with a non-zero probability (" + std::to_string(nonzero) + ")");
    const CounterRng rng(m_seed, std::uint64_t(step / m_interval));
    std::vector<double> p = m_prob;
    std::vector<Index> out;
    out.reserve(std::size_t(m_gamma));
    for (Index d = 0; d < m_gamma; ++d) {
      double total = 0.0;
      for (double x : p) total += x;
      const double u = (1.0 - rng.uniform(std::uint64_t(d))) * total;  // in [0, total)
      Index pick = -1;
      double acc = 0.0;
      for (Index l = 0; l < Index(p.size()); ++l) {
        if (p[std::size_t(l)] <= 0.0) continue;
        acc += p[std::size_t(l)];
        pick = l;  // the last layer with weight catches rounding at the top
        if (u < acc) break;
      }
      out.push_back(pick);
      p[std::size_t(pick)] = 0.0;
    }
    return out;
  }
  /// Whether layer l trains in step t.
  bool isActive(Index layer, std::int64_t step) const {
    requireArg(layer >= 0 && layer < layers(), "OwLoreSampler::isActive", "layer", layer,
               "in [0, " + std::to_string(layers()) + ")");
    const auto a = activeLayers(step);
    return std::find(a.begin(), a.end(), layer) != a.end();
  }
  /// Whether step t starts a new period (a new draw; optimizers of newly active layers may reset).
  bool isResample(std::int64_t step) const { return step % m_interval == 0; }

 private:
  std::vector<double> m_prob;
  Index m_gamma = 5;
  std::int64_t m_interval = 50;
  std::uint64_t m_seed = 0;
};

}  // namespace wproj
