// wproj command-line tool: summary statistics of a singular-value spectrum (`wproj spectrum`).
#pragma once

#include <wproj/linalg/truncated_svd.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace wcli {

/// What `wproj spectrum` reports for one matrix.
struct SpectrumStats {
  double sigmaMax = 0, sigmaMin = 0, frobenius = 0, stableRank = 0, effectiveRank = 0;
  wproj::Index rank90 = 0, rank99 = 0;
  double alpha = std::numeric_limits<double>::quiet_NaN();  ///< power-law exponent of the ESD tail
  double alphaXmin = 0;                                      ///< λ_min of the fitted tail
  wproj::Index alphaTail = 0;                                ///< eigenvalues in the tail
  double alphaKs = 0;                                        ///< KS distance of the fit
  wproj::Index alphaZero = 0;                                ///< eigenvalues left out as numerically zero
};

/// Statistics of singular values `sigma` (descending). The power law is fitted to the eigenvalues
/// λ_i = σ_i² by the continuous MLE α = 1 + n / Σ ln(λ_i/λ_min) (Hill estimator) over every
/// candidate λ_min leaving at least `minTail` eigenvalues, keeping the one with the smallest
/// Kolmogorov–Smirnov distance between the tail's empirical CDF and 1 − (λ/λ_min)^{1−α}
/// (Clauset, Shalizi & Newman 2009; HT-SR / WeightWatcher's default fit). `minTail` ≥ 2.
///
/// Singular values σ_i ≤ zeroTol·σ_max are numerically zero (rounding noise of a rank-deficient
/// matrix, whose logarithms would dominate the fit) and are left out of the fit; `runSpectrum`
/// passes zeroTol = max(m, n)·ε with ε the machine epsilon of the stored type (the usual
/// numerical-rank threshold, as NumPy's matrix_rank).
inline SpectrumStats spectrumStats(const Eigen::VectorXd& sigma, wproj::Index minTail = 10, double zeroTol = 0.0) {
  wproj::requireArg(minTail >= 2, "spectrumStats", "minTail", minTail, ">= 2");
  SpectrumStats s;
  const wproj::Index n = sigma.size();
  if (n == 0) return s;
  s.sigmaMax = sigma(0);
  s.sigmaMin = sigma(n - 1);
  const double energy = sigma.squaredNorm();
  s.frobenius = std::sqrt(energy);
  s.stableRank = s.sigmaMax > 0 ? energy / (s.sigmaMax * s.sigmaMax) : 0;
  s.rank90 = wproj::RankRule::energy(0.9).select(sigma);
  s.rank99 = wproj::RankRule::energy(0.99).select(sigma);
  const double l1 = sigma.sum();
  if (l1 > 0) {
    double h = 0;
    for (wproj::Index i = 0; i < n; ++i) {
      const double p = sigma(i) / l1;
      if (p > 0) h -= p * std::log(p);
    }
    s.effectiveRank = std::exp(h);
  }
  // Eigenvalues above the numerical-zero threshold, in ascending order.
  const double cut = std::max(0.0, zeroTol) * s.sigmaMax;
  std::vector<double> lam;
  for (wproj::Index i = n - 1; i >= 0; --i)
    if (sigma(i) > cut && sigma(i) > 0) lam.push_back(sigma(i) * sigma(i));
  const wproj::Index m = wproj::Index(lam.size());
  s.alphaZero = n - m;
  double bestKs = std::numeric_limits<double>::infinity();
  // Suffix sums of log λ for O(1) MLE per candidate.
  std::vector<double> logSuffix(std::size_t(m) + 1, 0.0);
  for (wproj::Index i = m - 1; i >= 0; --i) logSuffix[std::size_t(i)] = logSuffix[std::size_t(i) + 1] + std::log(lam[std::size_t(i)]);
  for (wproj::Index j = 0; j + minTail <= m; ++j) {
    if (j > 0 && lam[std::size_t(j)] == lam[std::size_t(j - 1)]) continue;
    const double xmin = lam[std::size_t(j)];
    const wproj::Index nt = m - j;
    const double sumLog = logSuffix[std::size_t(j)] - double(nt) * std::log(xmin);
    if (!(sumLog > 0)) continue;
    const double alpha = 1.0 + double(nt) / sumLog;
    double ks = 0;
    for (wproj::Index i = j; i < m; ++i) {
      const double model = 1.0 - std::pow(lam[std::size_t(i)] / xmin, 1.0 - alpha);
      const double lo = double(i - j) / double(nt), hi = double(i - j + 1) / double(nt);
      ks = std::max(ks, std::max(std::abs(model - lo), std::abs(hi - model)));
    }
    if (ks < bestKs) {
      bestKs = ks;
      s.alpha = alpha;
      s.alphaXmin = xmin;
      s.alphaTail = nt;
      s.alphaKs = ks;
    }
  }
  return s;
}

}  // namespace wcli
