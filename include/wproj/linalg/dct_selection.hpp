// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Scoring and top-r selection of DCT frequencies for the SVD-free GaLore variant (IST-DASLab's
/// `dct_adamw`): column/row scores (L1 or L2), the indices of the r best, and the projection of
/// a matrix on the selected frequencies. The transform itself is in dct.hpp.

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "dct.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace wproj {

/// Score of every column of x: Σ_i |x_ij| (L1) or (Σ_i x_ij²)^{1/2} (L2), accumulated in double.
template <typename Derived>
Eigen::VectorXd columnScores(const Eigen::MatrixBase<Derived>& x, ScoreNorm norm = ScoreNorm::L1) {
  Eigen::VectorXd s(x.cols());
  for (Index j = 0; j < x.cols(); ++j)
    s(j) = norm == ScoreNorm::L1 ? x.col(j).template cast<double>().template lpNorm<1>()
                                 : x.col(j).template cast<double>().norm();
  return s;
}

/// Score of every row of x (see `columnScores`), accumulated column by column (contiguous
/// reads in column-major storage).
template <typename Derived>
Eigen::VectorXd rowScores(const Eigen::MatrixBase<Derived>& x, ScoreNorm norm = ScoreNorm::L1) {
  Eigen::VectorXd scores = Eigen::VectorXd::Zero(x.rows());
  for (Index j = 0; j < x.cols(); ++j) {
    if (norm == ScoreNorm::L1)
      scores += x.col(j).template cast<double>().cwiseAbs();
    else
      scores += x.col(j).template cast<double>().cwiseAbs2();
  }
  if (norm == ScoreNorm::L2) scores = scores.cwiseSqrt();
  return scores;
}

/// Indices of the r largest scores, by decreasing score (ties: smaller index first).
/// Requires 1 ≤ r ≤ scores.size() and finite scores.
template <typename Derived>
std::vector<Index> topIndices(const Eigen::MatrixBase<Derived>& scores, Index r) {
  requireArg(r >= 1 && r <= scores.size(), "topIndices", "r", r,
             "a value in [1, " + std::to_string(scores.size()) + "]");
  checkFinite(scores, "topIndices", "scores");
  std::vector<Index> idx(static_cast<std::size_t>(scores.size()));
  std::iota(idx.begin(), idx.end(), Index(0));
  auto better = [&](Index a, Index b) {
    const double sa = double(scores.coeff(a)), sb = double(scores.coeff(b));
    return sa > sb || (sa == sb && a < b);
  };
  std::partial_sort(idx.begin(), idx.begin() + r, idx.end(), better);
  idx.resize(static_cast<std::size_t>(r));
  return idx;
}

/// Result of `dctSelect`: the chosen DCT frequencies and the projected matrix.
template <typename Scalar>
struct DCTSelection {
  std::vector<Index> indices;  ///< r frequencies, by decreasing score
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> projected;  ///< Right: S[:, idx] (m×r); Left: S[idx, :] (r×n)
};

/// The r best DCT frequencies of g (m×n) for the GaLore DCT variant, by decreasing score:
/// Side::Right scores the columns of S = g Cᵀ, Side::Left the rows of S = C g (`columnScores` /
/// `rowScores` of S, ties to the smaller index). The fast path never stores S: it keeps one
/// batch of 2·Lanes vectors at a time, so the extra memory is O(n) instead of m·n.
template <typename Derived>
std::vector<Index> dctTopIndices(const Eigen::MatrixBase<Derived>& g, Index r, Side side, ScoreNorm norm = ScoreNorm::L1,
                                 DCTAlgorithm algorithm = DCTAlgorithm::Auto) {
  using Scalar = typename Derived::Scalar;
  checkNonEmpty(g, "dctTopIndices", "g");
  const Index dim = side == Side::Right ? g.cols() : g.rows();
  requireArg(r >= 1 && r <= dim, "dctTopIndices", "r", r, "a value in [1, " + std::to_string(dim) + "]");
  DCT<Scalar> dct(dim, algorithm);
  return topIndices(side == Side::Right ? dct.scoresOfRows(g, norm) : dct.scoresOfColumns(g, norm), r);
}

/// SVD-free low-rank projection of g (m×n) on the r best DCT frequencies (GaLore DCT variant):
/// Side::Right: S = g Cᵀ (= g·Q with Q = Cᵀ, n×n), score columns, keep the top r → S[:, idx];
/// Side::Left: S = C g, score rows, keep the top r → S[idx, :]. The basis of the selection is
/// Q[:, idx] = rows idx of C, transposed. (dct_adamw uses Right when m ≥ n, scored by L1.)
/// The fast path runs the transform twice (scores, then the selected frequencies) and never
/// stores S; the dense path forms S once.
template <typename Derived>
DCTSelection<typename Derived::Scalar> dctSelect(const Eigen::MatrixBase<Derived>& g, Index r, Side side,
                                                 ScoreNorm norm = ScoreNorm::L1,
                                                 DCTAlgorithm algorithm = DCTAlgorithm::Auto) {
  using Scalar = typename Derived::Scalar;
  checkNonEmpty(g, "dctSelect", "g");
  const Index dim = side == Side::Right ? g.cols() : g.rows();
  requireArg(r >= 1 && r <= dim, "dctSelect", "r", r, "a value in [1, " + std::to_string(dim) + "]");
  DCTSelection<Scalar> out;
  DCT<Scalar> dct(dim, algorithm);
  if (!dct.usesFast()) {
    if (side == Side::Right) {
      const auto s = dct.ofRows(g);
      out.indices = topIndices(columnScores(s, norm), r);
      out.projected.resize(g.rows(), r);
      for (Index j = 0; j < r; ++j) out.projected.col(j) = s.col(out.indices[std::size_t(j)]);
    } else {
      const auto s = dct.ofColumns(g);
      out.indices = topIndices(rowScores(s, norm), r);
      out.projected.resize(r, g.cols());
      for (Index j = 0; j < g.cols(); ++j)
        for (Index i = 0; i < r; ++i) out.projected(i, j) = s(out.indices[std::size_t(i)], j);
    }
    return out;
  }
  if (side == Side::Right) {
    out.indices = topIndices(dct.scoresOfRows(g, norm), r);
    out.projected = dct.selectedOfRows(g, out.indices);
  } else {
    out.indices = topIndices(dct.scoresOfColumns(g, norm), r);
    out.projected = dct.selectedOfColumns(g, out.indices);
  }
  return out;
}

// Names before 0.2.0 (see the naming rule in docs/index.md); they will be removed in 1.0.
template <typename Scalar>
using DctSelection [[deprecated("renamed wproj::DCTSelection")]] = DCTSelection<Scalar>;

}  // namespace wproj
