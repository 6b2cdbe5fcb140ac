// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Distributed statistics for concept erasure and editing when the samples (rows) are split over
/// the ranks of a communicator: each rank streams its own batches into the serial classes
/// (`StreamingCovariance`, `LeaceFitter`), then one call merges the states so that every rank
/// holds the statistics of all samples; DAMA's PLS2 (NIPALS) runs on row-distributed data with
/// every data product summed over the ranks; INLP's logistic-regression probes sum their Newton
/// steps over the ranks (`sampleReduction`, `fitInlp`). Each result equals the serial fit on the
/// concatenated data up to rounding (the sums are taken in another order).

#include "../core/config.hpp"
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
  // LeaceFitter exposes its statistics read-only. The fitter is a non-const object here, so its
  // statistics member is too, and writing to it through this reference is well defined.
  auto& stats = const_cast<StreamingCovariance<Scalar>&>(fitter.statistics());
  allreduce(stats, comm);
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

/// PLS2 regression of Y on X by NIPALS (Wold 1966; Wegelin 2000) when the samples (rows) of X
/// (n×d) and Y (n×t) are split over the ranks: the algorithm of the serial
/// `PartialLeastSquares` (centred, unscaled; scikit-learn's `PLSRegression(scale=False)`), with
/// every product that sums over samples (XₖᵀU, ‖u‖², Yₖᵀt, ‖t‖², the loadings, the column
/// maxima of Yₖ) reduced over the ranks; products that map a d- or t-vector to samples
/// (t = Xₖw, u = Yₖc) and the deflation stay local. Weights and loadings are replicated on every
/// rank and equal the serial fit on the concatenated rows to rounding; `xScores()` holds this
/// rank's rows of the scores.
///
/// Communication per call: one hash allgather (d, t and the settings agree), one allreduce of
/// 1 + d + t values (count and column sums, for the means), one allreduce-max of t values; per
/// NIPALS iteration two allreduces of d + 1 and t + 1 values; per component one allreduce of
/// d + t + 1 values (loadings) and one allreduce-max of t values. O(r·iterations·(d + t)) values,
/// independent of n.
template <typename Scalar_>
class DistributedPls {
 public:
  /// Floating-point type of the data and results.
  using Scalar = Scalar_;
  /// Dense matrix type.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// Number of components (1 ≤ r ≤ min(n − 1, d), n the total number of samples).
  DistributedPls& setComponents(Index r) {
    requireArg(r >= 1, "wproj::mpi::DistributedPls::setComponents", "r", r, ">= 1");
    m_requested = r;
    return *this;
  }
  /// Cap on NIPALS iterations per component (default 500).
  DistributedPls& setMaxIterations(Index it) {
    requireArg(it >= 1, "wproj::mpi::DistributedPls::setMaxIterations", "it", it, ">= 1");
    m_maxIterations = it;
    return *this;
  }
  /// Convergence threshold on ‖w_new − w_old‖² (default 1e-6).
  DistributedPls& setTolerance(double tol) {
    requireArg(std::isfinite(tol) && tol > 0, "wproj::mpi::DistributedPls::setTolerance", "tol", tol, "a finite value > 0");
    m_tolerance = tol;
    return *this;
  }

  /// Fits the model to this rank's rows x (n_r×d) and y (n_r×t); collective. A rank may hold 0
  /// rows. Local input errors (shape, non-finite values) throw `CollectiveError` on every rank;
  /// ranks that disagree on d, t or the settings throw `CollectiveError`; too many components for
  /// the global n or d throws `InvalidArgument` on every rank.
  template <typename DX, typename DY>
  DistributedPls& compute(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DY>& y, const Communicator& comm) {
    const char* where = "wproj::mpi::DistributedPls::compute";
    comm.collectively(where, [&] {
      checkShape(y, x.rows(), -1, where, "y");
      checkFinite(x, where, "x");
      checkFinite(y, where, "y");
    });
    const Index d = x.cols(), t = y.cols();
    comm.requireSame("d " + std::to_string(d) + " t " + std::to_string(t) + " r " + std::to_string(m_requested) +
                         " it " + std::to_string(m_maxIterations) + " tol " + std::to_string(m_tolerance),
                     "PLS problem (columns of x and y, components, iterations, tolerance)");
    requireArg(d >= 1, where, "x", detail::shapeString(x.rows(), d), "at least one column");
    requireArg(t >= 1, where, "y", detail::shapeString(y.rows(), t), "at least one column");
    Vector sums(1 + d + t);
    sums(0) = Scalar(x.rows());
    sums.segment(1, d) = x.template cast<Scalar>().colwise().sum().transpose();
    sums.tail(t) = y.template cast<Scalar>().colwise().sum().transpose();
    comm.allreduceSum(sums);
    const Index n = Index(comm.sum((long long)x.rows()));
    requireArg(n >= 1, where, "x", "no rows on any rank", "at least one sample");
    requireArg(m_requested <= d, where, "components", m_requested, "<= x.cols() = " + std::to_string(d));
    requireArg(m_requested <= n - 1, where, "components", m_requested,
               "<= samples - 1 = " + std::to_string(n - 1) + " (centred data has rank at most n - 1)");
    m_samples = n;
    m_xMean = sums.segment(1, d) / Scalar(n);
    m_yMean = sums.tail(t) / Scalar(n);
    Matrix xk = x.template cast<Scalar>().rowwise() - m_xMean.transpose();
    Matrix yk = y.template cast<Scalar>().rowwise() - m_yMean.transpose();
    const Index nl = xk.rows(), r = m_requested;
    m_xWeights = Matrix::Zero(d, r);
    m_yWeights = Matrix::Zero(t, r);
    m_xLoadings = Matrix::Zero(d, r);
    m_yLoadings = Matrix::Zero(t, r);
    m_xScores = Matrix::Zero(nl, r);
    m_iterations.assign(std::size_t(r), 0);
    m_info = Eigen::Success;
    const Scalar eps = std::numeric_limits<Scalar>::epsilon();

    Vector colMax = columnMaxima(yk, comm);
    Vector bufX(d + 1), bufY(t + 1), bufL(d + t + 1);
    Index k = 0;
    for (; k < r; ++k) {
      Index start = -1;
      for (Index j = 0; j < t && start < 0; ++j)
        if (colMax(j) > eps) start = j;
      if (start < 0) {
        m_info = Eigen::NumericalIssue;
        break;
      }
      Vector u = yk.col(start);
      Vector w = Vector::Zero(d), c(t), score(nl);
      Index it = 0;
      bool converged = false;
      while (it < m_maxIterations) {
        ++it;
        bufX.head(d).noalias() = xk.transpose() * u;
        bufX(d) = u.squaredNorm();
        comm.allreduceSum(bufX);
        Vector wNew = bufX.head(d) / bufX(d);
        wNew /= std::sqrt(wNew.squaredNorm()) + eps;
        score.noalias() = xk * wNew;
        bufY.head(t).noalias() = yk.transpose() * score;
        bufY(t) = score.squaredNorm();
        comm.allreduceSum(bufY);
        c = bufY.head(t) / (bufY(t) + eps);
        u.noalias() = yk * c / (c.squaredNorm() + eps);
        const Scalar diff = (wNew - w).squaredNorm();
        w = wNew;
        if (double(diff) < m_tolerance || t == 1) {
          converged = true;
          break;
        }
      }
      if (!converged) m_info = Eigen::NoConvergence;
      m_iterations[std::size_t(k)] = it;
      Index imax = 0;
      w.cwiseAbs().maxCoeff(&imax);
      if (w(imax) < Scalar(0)) {
        w = -w;
        c = -c;
      }
      score.noalias() = xk * w;
      bufL.head(d).noalias() = xk.transpose() * score;
      bufL.segment(d, t).noalias() = yk.transpose() * score;
      bufL(d + t) = score.squaredNorm();
      comm.allreduceSum(bufL);
      const Scalar tt = bufL(d + t);
      if (!(tt > Scalar(0))) {
        m_info = Eigen::NumericalIssue;
        break;
      }
      const Vector p = bufL.head(d) / tt;
      const Vector q = bufL.segment(d, t) / tt;
      xk.noalias() -= score * p.transpose();
      yk.noalias() -= score * q.transpose();
      // Zero the Y columns that are numerically exhausted on every rank (serial: all entries).
      colMax = columnMaxima(yk, comm);
      for (Index j = 0; j < t; ++j)
        if (colMax(j) < Scalar(10) * eps) {
          yk.col(j).setZero();
          colMax(j) = Scalar(0);
        }
      m_xWeights.col(k) = w;
      m_yWeights.col(k) = c;
      m_xLoadings.col(k) = p;
      m_yLoadings.col(k) = q;
      m_xScores.col(k) = score;
    }
    if (k < r) {
      m_xWeights.conservativeResize(d, k);
      m_yWeights.conservativeResize(t, k);
      m_xLoadings.conservativeResize(d, k);
      m_yLoadings.conservativeResize(t, k);
      m_xScores.conservativeResize(nl, k);
      m_iterations.resize(std::size_t(k));
    }
    m_computed = true;
    return *this;
  }

  /// x_weights (d×r, unit columns), replicated.
  const Matrix& xWeights() const { WPROJ_ASSERT(m_computed); return m_xWeights; }
  /// y_weights (t×r), replicated.
  const Matrix& yWeights() const { WPROJ_ASSERT(m_computed); return m_yWeights; }
  /// x_loadings (d×r), replicated.
  const Matrix& xLoadings() const { WPROJ_ASSERT(m_computed); return m_xLoadings; }
  /// y_loadings (t×r), replicated.
  const Matrix& yLoadings() const { WPROJ_ASSERT(m_computed); return m_yLoadings; }
  /// This rank's rows of the x_scores (n_r×r).
  const Matrix& xScores() const { WPROJ_ASSERT(m_computed); return m_xScores; }
  /// Column means of X over all ranks.
  const Vector& xMean() const { WPROJ_ASSERT(m_computed); return m_xMean; }
  /// Column means of Y over all ranks.
  const Vector& yMean() const { WPROJ_ASSERT(m_computed); return m_yMean; }
  /// Total number of samples n over the ranks.
  Index samples() const { WPROJ_ASSERT(m_computed); return m_samples; }
  /// Number of components extracted (≤ requested).
  Index components() const { WPROJ_ASSERT(m_computed); return m_xWeights.cols(); }
  /// NIPALS iterations of each component.
  const std::vector<Index>& iterations() const { WPROJ_ASSERT(m_computed); return m_iterations; }
  /// Success, NoConvergence or NumericalIssue, as the serial `PartialLeastSquares::info()`.
  Eigen::ComputationInfo info() const { WPROJ_ASSERT(m_computed); return m_info; }

 private:
  static Vector columnMaxima(const Matrix& yk, const Communicator& comm) {
    Vector m = Vector::Zero(yk.cols());
    if (yk.rows() > 0) m = yk.cwiseAbs().colwise().maxCoeff().transpose();
    comm.allreduceMax(m.data(), std::size_t(m.size()));
    return m;
  }

  Index m_requested = 2;
  Index m_maxIterations = 500;
  double m_tolerance = 1e-6;
  bool m_computed = false;
  Index m_samples = 0;
  Eigen::ComputationInfo m_info = Eigen::Success;
  Matrix m_xWeights, m_yWeights, m_xLoadings, m_yLoadings, m_xScores;
  Vector m_xMean, m_yMean;
  std::vector<Index> m_iterations;
};

/// DAMA's subspace (Limisiewicz et al., ICLR 2024; the serial `DamaEstimator`) from inputs X
/// (n×d) and targets Y (n×t) whose rows are split over the ranks:
///   optional whitening X ← X(λC + XᵀX)⁻¹ with XᵀX = Σ_r X_rᵀX_r (one allreduce of d² values;
///   the LDLᵀ factorisation of the d×d matrix runs on every rank, the solve on local rows);
///   distributed PLS2 (`DistributedPls`) with r components → x_weights B (d×r);
///   subspace = orth(B) (`Subspace::fromColumns`, on every rank).
/// Equals the serial `DamaEstimator` on the concatenated rows to rounding.
///
/// Communication: that of `DistributedPls::compute`, plus, with whitening, one hash allgather (C
/// and λ agree in shape and value) and one allreduce of d² values, and one agreement (an
/// allreduce of one int) on the solve's success.
template <typename Scalar_>
class DistributedDama {
 public:
  /// Floating-point type of the data and the subspace.
  using Scalar = Scalar_;
  /// Dense matrix type.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  /// Number of PLS components r (default 128).
  DistributedDama& setRank(Index r) {
    requireArg(r >= 1, "wproj::mpi::DistributedDama::setRank", "r", r, ">= 1");
    m_rank = r;
    return *this;
  }
  /// Enables whitening with the d×d symmetric PSD matrix C (the same on every rank) and λ ≥ 0.
  template <typename DC>
  DistributedDama& setWhitening(const Eigen::MatrixBase<DC>& c, double lambda = 2e4) {
    const char* where = "wproj::mpi::DistributedDama::setWhitening";
    requireArg(c.rows() == c.cols(), where, "c", detail::shapeString(c.rows(), c.cols()), "a square matrix");
    checkFinite(c, where, "c");
    requireArg(std::isfinite(lambda) && lambda >= 0, where, "lambda", lambda, "a finite value >= 0");
    m_whitenC = c.template cast<Scalar>();
    m_lambda = lambda;
    m_whiten = true;
    return *this;
  }
  /// NIPALS settings (defaults 500 and 1e-6).
  DistributedDama& setPlsIterations(Index it, double tol = 1e-6) {
    m_pls.setMaxIterations(it).setTolerance(tol);
    return *this;
  }

  /// Fits the subspace from this rank's rows x (n_r×d) and y (n_r×t); collective.
  template <typename DX, typename DY>
  DistributedDama& fit(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DY>& y, const Communicator& comm) {
    const char* where = "wproj::mpi::DistributedDama::fit";
    comm.collectively(where, [&] {
      checkShape(y, x.rows(), -1, where, "y");
      checkFinite(x, where, "x");
    });
    Matrix u = x.template cast<Scalar>();
    if (m_whiten) {
      std::string text = "d " + std::to_string(x.cols()) + " C " + detail::shapeString(m_whitenC.rows(), m_whitenC.cols()) +
                         " lambda " + std::to_string(m_lambda) + " C ";
      text.append(reinterpret_cast<const char*>(m_whitenC.data()), std::size_t(m_whitenC.size()) * sizeof(Scalar));
      comm.requireSame(text, "DAMA whitening (x columns, C, lambda)");
      checkShape(m_whitenC, x.cols(), x.cols(), where, "whitening matrix c");
      Matrix gram = Matrix::Zero(x.cols(), x.cols());
      gram.noalias() += u.transpose() * u;
      comm.allreduceSum(gram);
      Matrix m = Scalar(m_lambda) * m_whitenC;
      m += gram;
      std::string error;
      Eigen::LDLT<Matrix> ldlt(m);
      Matrix solved = ldlt.solve(u.transpose());  // (λC + XᵀX)⁻¹X_rᵀ
      if (ldlt.info() != Eigen::Success || !solved.allFinite())
        error = std::string(where) + ": lambda*C + X^T X is singular; whitening failed";
      comm.agree(error, where);
      u = solved.transpose();
    }
    m_pls.setComponents(m_rank).compute(u, y, comm);
    m_subspace = Subspace<Scalar>::fromColumns(m_pls.xWeights());
    m_fitted = true;
    return *this;
  }

  /// The removed subspace orth(x_weights) of R^d, replicated.
  const Subspace<Scalar>& subspace() const { WPROJ_ASSERT(m_fitted); return m_subspace; }
  /// PLS x_weights B (d×r), replicated.
  const Matrix& xWeights() const { WPROJ_ASSERT(m_fitted); return m_pls.xWeights(); }
  /// The underlying distributed PLS fit.
  const DistributedPls<Scalar>& pls() const { WPROJ_ASSERT(m_fitted); return m_pls; }
  /// Success, or the PLS outcome.
  Eigen::ComputationInfo info() const { WPROJ_ASSERT(m_fitted); return m_pls.info(); }

 private:
  Index m_rank = 128;
  bool m_whiten = false;
  double m_lambda = 2e4;
  bool m_fitted = false;
  Matrix m_whitenC;
  DistributedPls<Scalar> m_pls;
  Subspace<Scalar> m_subspace;
};

/// The `SampleReduction` of the samples split over the ranks of `comm`: `sum` is an in-place
/// allreduce of doubles, `unite` the sorted union of every rank's class list (an allgather). With
/// it, `LogisticRegression` and `InlpEstimator` fit the rows of every rank; the communicator must
/// outlive the fits. Collective: every rank makes the same calls.
inline SampleReduction sampleReduction(const Communicator& comm) {
  SampleReduction r;
  const Communicator* c = &comm;
  r.sum = [c](double* p, Index n) { c->allreduceSum(p, std::size_t(n)); };
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
  est.setSampleReduction(sampleReduction(comm));
  try {
    est.fit(x, labels);
  } catch (...) {
    est.setSampleReduction(SampleReduction());
    throw;
  }
  est.setSampleReduction(SampleReduction());
  return est;
}

}  // namespace mpi
}  // namespace wproj
