// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Task vectors τ_i = θ_i − θ₀ (Ilharco et al. 2023) and the checks every merger runs on them.
/// A tensor of any rank is handled as a matrix: 2-D weights as (out, in), anything else
/// flattened by the caller (a bias as n×1, a convolution kernel as out×(in·kh·kw), …).

#include "../core/config.hpp"
#include "report.hpp"

#include <Eigen/Core>

#include <cmath>
#include <string>
#include <vector>

namespace wproj {

/// The dense matrix type the mergers of Scalar work with.
template <typename Scalar>
using MergeMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

namespace detail {

/// Checks a list of task vectors for one tensor: at least `minCount`, all the shape of the first,
/// all finite. Messages name the offending task vector and both shapes.
template <typename Matrix>
void checkTaskVectors(const std::vector<Matrix>& taus, const char* where, std::size_t minCount = 1) {
  requireArg(taus.size() >= minCount, where, "taskVectors.size()", taus.size(),
             "at least " + std::to_string(minCount) + " task vector(s)");
  const Index rows = taus.front().rows(), cols = taus.front().cols();
  for (std::size_t i = 0; i < taus.size(); ++i) {
    if (taus[i].rows() != rows || taus[i].cols() != cols) {
      throw InvalidArgument(std::string(where) + ": task vector " + std::to_string(i) + " has shape " +
                            shapeString(taus[i].rows(), taus[i].cols()) + "; expected " + shapeString(rows, cols) +
                            " (the shape of task vector 0)");
    }
    const std::string name = "taskVectors[" + std::to_string(i) + "]";
    checkFinite(taus[i], where, name.c_str());
  }
}

/// Mean Frobenius norm of a list of matrices (double accumulation).
template <typename Matrix>
double meanNorm(const std::vector<Matrix>& taus) {
  if (taus.empty()) return 0;
  double s = 0;
  for (const auto& t : taus) s += static_cast<double>(t.norm());
  return s / double(taus.size());
}

/// Σ_i τ_i.
template <typename Matrix>
Matrix sumOf(const std::vector<Matrix>& taus) {
  Matrix s = taus.front();
  for (std::size_t i = 1; i < taus.size(); ++i) s += taus[i];
  return s;
}

/// Fills the shape and norm fields of a report entry.
template <typename Matrix>
void describeInputs(const std::vector<Matrix>& taus, TensorReport& rep) {
  rep.rows = taus.front().rows();
  rep.cols = taus.front().cols();
  rep.taskNormMean = meanNorm(taus);
}

}  // namespace detail

/// τ = θ − θ₀ with a shape check that names both shapes (and `name`, when given).
template <typename DA, typename DB>
MergeMatrix<typename DA::Scalar> taskVector(const Eigen::MatrixBase<DA>& finetuned, const Eigen::MatrixBase<DB>& base,
                                            const std::string& name = "") {
  if (finetuned.rows() != base.rows() || finetuned.cols() != base.cols()) {
    throw InvalidArgument("taskVector: tensor '" + name + "' has shape " +
                          detail::shapeString(finetuned.rows(), finetuned.cols()) + " in the fine-tuned model but " +
                          detail::shapeString(base.rows(), base.cols()) + " in the base model; expected equal shapes");
  }
  return finetuned - base;
}

}  // namespace wproj
