// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Distributed statistics for concept erasure and editing when the samples (rows) are split over
/// the ranks of a communicator: each rank streams its own batches into the serial classes
/// (`StreamingCovariance`, `LeaceFitter`), then one call merges the states so that every rank
/// holds the statistics of all samples; PLS2, DAMA and INLP (with logistic-regression probes) run
/// their serial algorithms on each rank's rows with every sum over samples reduced over the ranks
/// (`sampleReduction`; `fitPls`, `fitDama`, `fitInlp`). Each result equals the serial fit on the
/// concatenated data up to rounding (the sums are taken in another order).

#include "../core/config.hpp"
#include "../core/reduction.hpp"
#include "../editing/dama.hpp"
#include "../editing/inlp.hpp"
#include "../editing/leace.hpp"
#include "../editing/linear_classifier.hpp"
#include "../linalg/covariance.hpp"
#include "../linalg/subspace.hpp"
#include "comm.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace wproj {
namespace mpi {

/// Merges every rank's `StreamingCovariance` into the statistics of all ranks' samples, on every
/// rank (collective; every rank passes an accumulator with the same xDim and zDim — construct it
/// with its dimensions even on a rank that sees no samples).
///
/// The parallel form of the Chan–Golub–LeVeque (1979) combination: with N = Σ n_r and the global
/// means μ = Σ n_r μ_r / N,
///   M = Σ_r [ M_r + n_r (μ_r − μ)(μ_r − μ)ᵀ ],   M_xz = Σ_r [ M_xz,r + n_r (μ_x,r − μ_x)(μ_z,r − μ_z)ᵀ ],
/// which equals the two-pass scatter of the concatenated data; each rank's term is centred on its
/// own mean, so large means do not cancel catastrophically.
///
/// Communication: one 64-bit hash allgather (`requireSame` on the dimensions), then two
/// allreduces: 1 + d + c doubles (counts and count-weighted means), then d² + d·c scalars (the
/// corrected scatters). O(d² + d·c) values in total, independent of the number of samples.
/// Throws `CollectiveError` on every rank when the dimensions differ between ranks.
template <typename Scalar>
void allreduce(StreamingCovariance<Scalar>& stats, const Communicator& comm) {
  using Matrix = typename StreamingCovariance<Scalar>::Matrix;
  using Vector = typename StreamingCovariance<Scalar>::Vector;
  const Index d = stats.xDim(), c = stats.zDim();
  comm.requireSame("xDim " + std::to_string(d) + " zDim " + std::to_string(c),
                   "StreamingCovariance dimensions (wproj::mpi::allreduce)");
  requireArg(d >= 1, "wproj::mpi::allreduce(StreamingCovariance)", "stats.xDim()", d,
             ">= 1 (construct the accumulator with its dimensions on every rank)");
  const Index n = stats.count();
  // 1. N and Σ n_r μ_r (in double: exact counts, sums of means without float overflow of n).
  Eigen::VectorXd first(1 + d + c);
  first(0) = double(n);
  first.segment(1, d) = stats.meanX().template cast<double>() * double(n);
  first.tail(c) = stats.meanZ().template cast<double>() * double(n);
  comm.allreduceSum(first);
  const double total = first(0);
  if (total == 0) return;  // no samples anywhere: every rank keeps its empty state
  const Vector mx = (first.segment(1, d) / total).template cast<Scalar>();
  const Vector mz = (first.tail(c) / total).template cast<Scalar>();
  // 2. Σ_r [M_r + n_r δ_r δ_rᵀ] for x and the x–z cross term, in one message.
  Matrix second(d, d + c);
  if (n > 0) {
    const Vector dx = stats.meanX() - mx, dz = stats.meanZ() - mz;
    const Scalar w = Scalar(n);
    second.leftCols(d) = stats.scatterX();
    second.leftCols(d).noalias() += (w * dx) * dx.transpose();
    second.rightCols(c) = stats.scatterXZ();
    second.rightCols(c).noalias() += (w * dx) * dz.transpose();
  } else {
    second.setZero();
  }
  comm.allreduceSum(second);
  stats = StreamingCovariance<Scalar>::fromState(Index(total), mx, mz, second.leftCols(d), second.rightCols(c));
}

/// Merges every rank's `LeaceFitter` statistics (mean of x, Σxx and Σxz scatters) into those of
/// all ranks' samples, on every rank; afterwards `fitter.eraser()` on any rank is the eraser the
/// serial `LeaceFitter` builds from all samples (to rounding) — LEACE (Belrose et al. 2023) needs
/// only these sufficient statistics. Every rank's fitter must have the same xDim and zDim (number
/// of classes) and the same settings. Communication: that of `allreduce(StreamingCovariance&)`:
/// one hash allgather and two allreduces of 1 + d + c doubles and d² + d·c scalars.
template <typename Scalar>
void allreduce(LeaceFitter<Scalar>& fitter, const Communicator& comm) {
  StreamingCovariance<Scalar> stats = fitter.statistics();
  allreduce(stats, comm);
  fitter.setStatistics(std::move(stats));
}

/// The LEACE eraser of all ranks' samples on every rank: `allreduce(fitter, comm)` then
/// `fitter.eraser()` (the eigendecomposition and SVD of the d×d and d×c statistics run on every
/// rank, no further communication). Throws on every rank what the serial `eraser()` throws for
/// the merged statistics (e.g. fewer than 2 samples in total). Communication: two allreduces,
/// 1 + d + c doubles and d² + d·c scalars, plus one hash allgather.
template <typename Scalar>
LeaceEraser<Scalar> fitLeace(LeaceFitter<Scalar>& fitter, const Communicator& comm) {
  allreduce(fitter, comm);
  return fitter.eraser();
}

/// The `SampleReduction` of the samples split over the ranks of `comm`: `sum` and `max` are
/// in-place allreduces of doubles, `unite` the sorted union of every rank's class list (an
/// allgather). With it the serial estimators (`PartialLeastSquares`, `DamaEstimator`,
/// `LogisticRegression`, `InlpEstimator`) fit the rows of every rank; the communicator must
/// outlive the fits. Collective: every rank makes the same calls. `fitPls`, `fitDama` and
/// `fitInlp` add the checks that keep a bad rank from leaving the others waiting.
inline SampleReduction sampleReduction(const Communicator& comm) {
  SampleReduction r;
  const Communicator* c = &comm;
  r.sum = [c](double* p, Index n) { c->allreduceSum(p, std::size_t(n)); };
  r.max = [c](double* p, Index n) { c->allreduceMax(p, std::size_t(n)); };
  r.unite = [c](std::vector<int>& classes) {
    const std::string mine(reinterpret_cast<const char*>(classes.data()), classes.size() * sizeof(int));
    std::vector<int> all;
    for (const std::string& s : c->allgather(mine)) {
      const std::size_t k = s.size() / sizeof(int), at = all.size();
      all.resize(at + k);
      if (k > 0) std::memcpy(all.data() + at, s.data(), k * sizeof(int));
    }
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    classes = std::move(all);
  };
  return r;
}

/// Checks this rank's paired rows collectively: y has x's rows, both finite; a failure on one
/// rank throws `CollectiveError` on every rank.
template <typename DX, typename DY>
void checkPairedRows(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DY>& y, const Communicator& comm,
                     const char* where) {
  comm.collectively(where, [&] {
    checkShape(y, x.rows(), -1, where, "y");
    checkFinite(x, where, "x");
    checkFinite(y, where, "y");
  });
}

/// Runs `fit()` with `est` reducing over the ranks of `comm` (`sampleReduction`), then makes
/// `est` serial again, also when `fit()` throws. Collective.
template <typename Estimator, typename Fit>
void withSampleReduction(Estimator& est, const Communicator& comm, Fit&& fit) {
  est.setSampleReduction(sampleReduction(comm));
  try {
    fit();
  } catch (...) {
    est.setSampleReduction(SampleReduction());
    throw;
  }
  est.setSampleReduction(SampleReduction());
}

/// PLS2 by NIPALS (the serial `PartialLeastSquares`: centred, unscaled; scikit-learn's
/// `PLSRegression(scale=False)`) when the rows of X (n×d) and Y (n×t) are split over the ranks:
/// every rank passes its own rows (possibly none), and every sum over samples (the means, XₖᵀU
/// and ‖u‖², Yₖᵀt and ‖t‖², the loadings) and the column maxima of Yₖ are reduced over the ranks;
/// t = Xₖw, u = Yₖc and the deflation stay local. Weights and loadings are the serial fit of the
/// concatenated rows on every rank, to rounding; `xScores()` holds this rank's rows; `samples()`
/// is the total n.
///
/// Communication: one hash allgather (d, t and the settings agree), one agreement on the local
/// checks, one allreduce of 1 + d + t values (the means); per NIPALS iteration two allreduces of
/// d + 1 and t + 1 values; per component one of d + t + 1 (loadings) and one allreduce-max of t.
/// O(r·iterations·(d + t)) values, independent of n. Bad data on one rank (shape, non-finite
/// values) throws `CollectiveError` on every rank; too many components for the total n or d
/// throws `InvalidArgument` on every rank.
template <typename Scalar, typename DX, typename DY>
PartialLeastSquares<Scalar>& fitPls(PartialLeastSquares<Scalar>& pls, const Eigen::MatrixBase<DX>& x,
                                    const Eigen::MatrixBase<DY>& y, const Communicator& comm) {
  const char* where = "wproj::mpi::fitPls";
  comm.requireSame("d " + std::to_string(x.cols()) + " t " + std::to_string(y.cols()) + " r " +
                       std::to_string(pls.requestedComponents()) + " it " + std::to_string(pls.maxIterations()) +
                       " tol " + std::to_string(pls.tolerance()),
                   "PLS problem (columns of x and y, components, iterations, tolerance)");
  checkPairedRows(x, y, comm, where);
  withSampleReduction(pls, comm, [&] { pls.compute(x, y); });
  return pls;
}

/// DAMA's subspace (Limisiewicz et al., ICLR 2024; the serial `DamaEstimator`) from inputs X
/// (n×d) and targets Y (n×t) whose rows are split over the ranks: the optional whitening
/// X ← X(λC + XᵀX)⁻¹ sums XᵀX over the ranks (one allreduce of d² values; the LDLᵀ
/// factorisation runs on every rank, the solve on local rows), then the PLS2 fit of `fitPls`,
/// and orth(x_weights) on every rank. Equals the serial `DamaEstimator` on the concatenated rows
/// to rounding. Communication: that of `fitPls`, plus with whitening one hash allgather (C, λ),
/// one allreduce of d² values and one of the solve's verdict. Errors as `fitPls`; a singular
/// whitening system throws `NumericalError` on every rank.
template <typename Scalar, typename DX, typename DY>
DamaEstimator<Scalar>& fitDama(DamaEstimator<Scalar>& est, const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DY>& y,
                               const Communicator& comm) {
  const char* where = "wproj::mpi::fitDama";
  std::string text = "d " + std::to_string(x.cols()) + " t " + std::to_string(y.cols()) + " r " + std::to_string(est.rank()) +
                     " it " + std::to_string(est.plsIterations()) + " tol " + std::to_string(est.plsTolerance()) +
                     " whiten " + std::to_string(est.whitening()) + " lambda " + std::to_string(est.lambda()) + " C " +
                     wproj::detail::shapeString(est.whiteningMatrix().rows(), est.whiteningMatrix().cols());
  text.append(reinterpret_cast<const char*>(est.whiteningMatrix().data()),
              std::size_t(est.whiteningMatrix().size()) * sizeof(Scalar));
  comm.requireSame(text, "DAMA problem (columns of x and y, rank, PLS settings, whitening C and lambda)");
  checkPairedRows(x, y, comm, where);
  withSampleReduction(est, comm, [&] { est.fit(x, y); });
  return est;
}

/// INLP (Ravfogel et al., ACL 2020) on representations whose rows (samples) are split over the
/// ranks of `comm`: every rank passes its own rows x (n_r×d, n_r may be 0) and labels, and every
/// rank obtains the same removed subspace, classifiers, accuracies and majority rate as the
/// serial `InlpEstimator<Scalar, LogisticRegression<Scalar>>` on all rows, to rounding. Each
/// Newton step of each logistic regression sums its objective (1 value), gradient (d + 1) and
/// Hessian ((d + 1)²) over the ranks, and each accuracy 2 values: per classifier O(t·(d + 1)²)
/// values for t Newton steps. `est` keeps its settings (iterations, minimum accuracy, the
/// classifier prototype's C, intercept, class weights, tolerance); the data are checked on every
/// rank first (same d, finite values, one label per row), so bad data on one rank throws
/// `CollectiveError` on every rank instead of leaving the others waiting.
template <typename Scalar, typename D>
InlpEstimator<Scalar, LogisticRegression<Scalar>>& fitInlp(InlpEstimator<Scalar, LogisticRegression<Scalar>>& est,
                                                           const Eigen::MatrixBase<D>& x, const Eigen::Ref<const Labels>& labels,
                                                           const Communicator& comm) {
  const char* where = "wproj::mpi::fitInlp";
  comm.requireSame("d " + std::to_string(x.cols()), "number of columns of x (wproj::mpi::fitInlp)");
  comm.collectively("wproj::mpi::fitInlp (checking the data)", [&]() {
    requireArg(x.cols() >= 1, where, "x.cols()", x.cols(), ">= 1");
    checkShape(labels, x.rows(), 1, where, "labels");
    checkFinite(x, where, "x");
  });
  withSampleReduction(est, comm, [&] { est.fit(x, labels); });
  return est;
}

}  // namespace mpi
}  // namespace wproj
