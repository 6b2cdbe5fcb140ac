// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Rank-selection rules: how many singular values of a descending spectrum to keep (fixed k,
/// captured energy, sum fraction, absolute or relative tolerance), shared by the SVD classes,
/// the subspace estimators and the mergers.

#include "../core/config.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <string>

namespace wproj {

/// A reusable rule that picks how many singular values to keep from a spectrum sorted in
/// descending order. Rules are values: build one with a static constructor and apply it with
/// `select(sigma)`. Every rule can additionally be capped with `withMaxRank(k)`.
class RankRule {
 public:
  /// What a rule measures.
  enum class Kind {
    All,                ///< keep every singular value
    Fixed,              ///< keep k values
    Energy,             ///< smallest k with Σ_{i<k} σ_i² ≥ f·Σ σ_i²
    SumFraction,        ///< smallest k with Σ_{i<k} σ_i ≥ f·Σ σ_i (OPCM uses this with f = 0.5)
    AbsoluteTolerance,  ///< number of σ_i > tol
    RelativeTolerance   ///< number of σ_i > tol·σ_0
  };

  /// The default rule keeps every singular value.
  RankRule() = default;

  /// Keeps every singular value.
  static RankRule all() { return RankRule(); }

  /// Keeps exactly k values (fewer when the spectrum is shorter). Requires k ≥ 1.
  static RankRule fixed(Index k) {
    requireArg(k >= 1, "RankRule::fixed", "k", k, ">= 1");
    return RankRule(Kind::Fixed, double(k));
  }

  /// Smallest k with Σ_{i<k} σ_i² ≥ fraction·Σ σ_i² (captured "energy"). Requires 0 < fraction ≤ 1.
  static RankRule energy(double fraction) {
    requireArg(std::isfinite(fraction) && fraction > 0.0 && fraction <= 1.0, "RankRule::energy", "fraction", fraction,
               "a value in (0, 1]");
    return RankRule(Kind::Energy, fraction);
  }

  /// Smallest k with Σ_{i<k} σ_i ≥ fraction·Σ σ_i. Requires 0 < fraction ≤ 1.
  static RankRule sumFraction(double fraction) {
    requireArg(std::isfinite(fraction) && fraction > 0.0 && fraction <= 1.0, "RankRule::sumFraction", "fraction",
               fraction, "a value in (0, 1]");
    return RankRule(Kind::SumFraction, fraction);
  }

  /// Number of σ_i strictly greater than tol. Requires tol ≥ 0.
  static RankRule absoluteTolerance(double tol) {
    requireArg(std::isfinite(tol) && tol >= 0.0, "RankRule::absoluteTolerance", "tol", tol, "a finite value >= 0");
    return RankRule(Kind::AbsoluteTolerance, tol);
  }

  /// Number of σ_i strictly greater than tol·σ_0. Requires 0 ≤ tol ≤ 1.
  static RankRule relativeTolerance(double tol) {
    requireArg(std::isfinite(tol) && tol >= 0.0 && tol <= 1.0, "RankRule::relativeTolerance", "tol", tol,
               "a value in [0, 1]");
    return RankRule(Kind::RelativeTolerance, tol);
  }

  /// The same rule, but never selecting more than k values. Requires k ≥ 1.
  RankRule withMaxRank(Index k) const {
    requireArg(k >= 1, "RankRule::withMaxRank", "k", k, ">= 1");
    RankRule r = *this;
    r.m_maxRank = k;
    return r;
  }

  /// Which family of rule this is.
  Kind kind() const { return m_kind; }
  /// The rule's parameter (k for Fixed, the fraction or tolerance otherwise; 0 for All).
  double parameter() const { return m_param; }
  /// The cap set by `withMaxRank` (−1 when none).
  Index maxRank() const { return m_maxRank; }

  /// Number of values to keep from `sigma` (non-negative, finite, sorted in descending order).
  /// Returns a value in [0, sigma.size()]; tolerance and fraction rules return 0 for a zero spectrum.
  template <typename V>
  Index select(const Eigen::MatrixBase<V>& sigma) const {
    return selectImpl(sigma, -1.0);
  }
  /// Like `select(sigma)` for the leading part of a longer spectrum whose total energy
  /// Σ_all σ_i² = ‖A‖²_F is known (a truncated or randomized SVD): an `energy(f)` rule then keeps
  /// the smallest k with Σ_{i<k} σ_i² ≥ f·totalEnergy, or every given value when they do not reach
  /// it. Other rules ignore `totalEnergy`. Requires a finite totalEnergy ≥ 0.
  template <typename V>
  Index select(const Eigen::MatrixBase<V>& sigma, double totalEnergy) const {
    requireArg(std::isfinite(totalEnergy) && totalEnergy >= 0.0, "RankRule::select", "totalEnergy", totalEnergy,
               "a finite value >= 0");
    return selectImpl(sigma, totalEnergy);
  }

 private:
  template <typename V>
  Index selectImpl(const Eigen::MatrixBase<V>& sigma, double givenTotal) const {
    const Index n = sigma.size();
    for (Index i = 0; i < n; ++i) {
      const double s = double(sigma.coeff(i));
      requireArg(std::isfinite(s) && s >= 0.0, "RankRule::select", "sigma", s,
                 "finite, non-negative singular values (entry " + std::to_string(i) + ")");
      if (i > 0)
        requireArg(s <= double(sigma.coeff(i - 1)), "RankRule::select", "sigma", s,
                   "values sorted in descending order (entry " + std::to_string(i) + ")");
    }
    Index k = n;
    switch (m_kind) {
      case Kind::All: k = n; break;
      case Kind::Fixed: k = std::min<Index>(n, Index(m_param)); break;
      case Kind::Energy:
      case Kind::SumFraction: {
        const bool squares = m_kind == Kind::Energy;
        double total = 0;
        for (Index i = 0; i < n; ++i) {
          const double s = double(sigma.coeff(i));
          total += squares ? s * s : s;
        }
        if (squares && givenTotal >= 0.0) total = givenTotal;
        const double target = m_param * total;
        double partial = 0;
        k = n;
        if (total <= 0.0) {
          k = 0;
          break;
        }
        for (Index i = 0; i < n; ++i) {
          const double s = double(sigma.coeff(i));
          partial += squares ? s * s : s;
          if (partial >= target) {
            k = i + 1;
            break;
          }
        }
        break;
      }
      case Kind::AbsoluteTolerance:
      case Kind::RelativeTolerance: {
        const double cut = m_kind == Kind::AbsoluteTolerance ? m_param : (n > 0 ? m_param * double(sigma.coeff(0)) : 0.0);
        k = 0;
        while (k < n && double(sigma.coeff(k)) > cut) ++k;
        break;
      }
    }
    if (m_maxRank >= 0) k = std::min(k, m_maxRank);
    return k;
  }

 public:

  /// A short human-readable description, e.g. "energy(0.9)".
  std::string describe() const {
    std::string s;
    switch (m_kind) {
      case Kind::All: s = "all"; break;
      case Kind::Fixed: s = "fixed(" + std::to_string(Index(m_param)) + ")"; break;
      case Kind::Energy: s = "energy(" + detail::describe(m_param) + ")"; break;
      case Kind::SumFraction: s = "sumFraction(" + detail::describe(m_param) + ")"; break;
      case Kind::AbsoluteTolerance: s = "absoluteTolerance(" + detail::describe(m_param) + ")"; break;
      case Kind::RelativeTolerance: s = "relativeTolerance(" + detail::describe(m_param) + ")"; break;
    }
    if (m_maxRank >= 0) s += ".withMaxRank(" + std::to_string(m_maxRank) + ")";
    return s;
  }

 private:
  RankRule(Kind kind, double param) : m_kind(kind), m_param(param) {}
  Kind m_kind = Kind::All;
  double m_param = 0.0;
  Index m_maxRank = -1;
};

}  // namespace wproj
