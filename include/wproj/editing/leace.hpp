// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// LEACE — LEAst-squares Concept Erasure (Belrose, Schneider-Joseph, Ravfogel, Cotterell, Raff,
/// Biderman, "LEACE: Perfect linear concept erasure in closed form", NeurIPS 2023): the oblique
/// projection that makes every linear predictor of a concept z from x no better than a constant,
/// while moving x as little as possible in the least-squares (Mahalanobis) sense.

#include "../core/blas_threads.hpp"
#include "../core/config.hpp"
#include "../linalg/covariance.hpp"
#include "../linalg/oblique_projector.hpp"
#include "../linalg/symmetric_eigen.hpp"
#include "linear_classifier.hpp"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace wproj {

/// Which eraser a `LeaceFitter` builds.
enum class LeaceMethod {
  Leace,      ///< the oblique least-squares eraser (whitened by Σxx)
  Orthogonal  ///< the orthogonal projection off span(Σxz) (W = I)
};

/// A fitted concept eraser r(x) = x − L Rᵀ(x − μ) (affine) or x − L Rᵀx (linear), i.e.
/// r(x) = Px + (I − P)μ with the (generally oblique) projection P = I − LRᵀ.
/// L (d×k) = W⁺U and R (d×k) = WU are the two factors ("proj_left" and "proj_rightᵀ").
/// The map itself is an `ObliqueProjector` (`obliqueProjector()`), which `WeightEditor` folds
/// into a layer; the eraser adds LEACE's names and the row-wise `erase`.
///
/// \code
/// wproj::LeaceFitter<float> fitter(d, 2);              // x ∈ R^d, two classes
/// fitter.update(x, labels);                            // x: n×d (rows = samples), labels: wproj::Labels
/// const wproj::LeaceEraser<float> eraser = fitter.eraser();
/// Eigen::MatrixXf erased = eraser.erase(x);            // class means now coincide
/// const wproj::ObliqueProjector<float>& p = eraser.obliqueProjector();  // P = I − LRᵀ, centre μ
/// \endcode
template <typename Scalar_>
class LeaceEraser {
 public:
  /// Floating-point type of the eraser.
  using Scalar = Scalar_;
  /// Dense matrix type of the factors and data.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type of the bias.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// An empty eraser (d = 0, k = 0).
  LeaceEraser() = default;
  /// An eraser from its factors (d×k each) and bias μ (d; ignored when affine is false).
  LeaceEraser(Matrix left, Matrix right, Vector bias, bool affine) : m_affine(affine) {
    const char* where = "LeaceEraser";
    checkShape(right, left.rows(), left.cols(), where, "right");
    if (m_affine) {
      checkShape(bias, left.rows(), 1, where, "bias");
      m_proj = ObliqueProjector<Scalar>(std::move(left), std::move(right), std::move(bias));
    } else {
      m_proj = ObliqueProjector<Scalar>(std::move(left), std::move(right));
    }
  }

  /// Erases the concept from the rows of x (n×d): x_i ← x_i − LRᵀ(x_i − μ).
  template <typename Derived>
  Matrix erase(const Eigen::MatrixBase<Derived>& x) const {
    checkShape(x, -1, dim(), "LeaceEraser::erase", "x");
    return m_proj.mapRows(x.template cast<Scalar>());
  }

  /// The projection P = I − LRᵀ as a dense d×d matrix.
  Matrix projector() const { return m_proj.dense(); }

  /// The eraser as an `ObliqueProjector` (left L, right R, centre μ when affine): the form
  /// `WeightEditor` and the rest of the library apply.
  const ObliqueProjector<Scalar>& obliqueProjector() const { return m_proj; }

  /// L = W⁺U (d×k).
  const Matrix& left() const { return m_proj.left(); }
  /// R = WU (d×k); Rᵀx are the coordinates the eraser zeroes.
  const Matrix& right() const { return m_proj.right(); }
  /// μ, the mean restored by the affine eraser (zero when not affine).
  const Vector& bias() const { return m_proj.centre(); }
  /// True when the eraser restores the mean μ (affine), false when it is linear.
  bool affine() const { return m_affine; }
  /// Ambient dimension d.
  Index dim() const { return m_proj.dim(); }
  /// Rank k of I − P (the number of erased directions).
  Index rank() const { return m_proj.rank(); }

 private:
  ObliqueProjector<Scalar> m_proj;
  bool m_affine = true;
};

/// Streaming LEACE fitter: accumulates the mean of x, Σxx and Σxz over batches (Welford,
/// `StreamingCovariance`), then builds the eraser in closed form:
///
///   Σxx ← shrink(S/n, n) (Ledoit–Wolf-style, default) or S/(n − 1);  Σxz = S_xz/(n − 1);
///   eigh(Σxx) = VΛVᵀ, mask λ > λ_max·d·eps;  W = V Λ^{-1/2} Vᵀ, W⁺ = V Λ^{1/2} Vᵀ (masked);
///   U = left singular vectors of WΣxz with singular value > svdTolerance (0.01, absolute);
///   L = W⁺U, R = WU, P = I − LRᵀ.
///
/// Trace constraint (default on): when tr(PΣPᵀ) > tr(Σ), P is blended with the orthogonal
/// Q = I − UUᵀ as αP + (1 − α)Q, α ∈ [0, 1] solving tr(·Σ·ᵀ) = tr(Σ) (the positive root), and
/// the factors are re-derived from the SVD of I − P. The orthogonal variant uses W = W⁺ = I.
/// Labels become one-hot z (zDim = number of classes, labels in [0, zDim)); or pass z directly.
template <typename Scalar_>
class LeaceFitter {
 public:
  /// Floating-point type of the statistics and the eraser.
  using Scalar = Scalar_;
  /// Dense matrix type of batches and covariances.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// A fitter for x ∈ R^xDim and a concept z ∈ R^zDim (zDim = number of classes for labels).
  LeaceFitter(Index xDim, Index zDim) : m_stats(xDim, zDim) {
    requireArg(zDim >= 1, "LeaceFitter", "zDim", zDim, ">= 1");
  }

  /// Which eraser to build (default `LeaceMethod::Leace`).
  LeaceFitter& setMethod(LeaceMethod method) { m_method = method; return *this; }
  /// Keep the mean (r(x) = x − LRᵀ(x − μ), default) or erase linearly (r(x) = Px).
  LeaceFitter& setAffine(bool on) { m_affine = on; return *this; }
  /// Shrink Σxx towards a scaled identity (default true).
  LeaceFitter& setShrinkage(bool on) { m_shrinkage = on; return *this; }
  /// Never let the eraser increase the covariance trace (default true).
  LeaceFitter& setTraceConstraint(bool on) { m_constrainTrace = on; return *this; }
  /// Absolute threshold on the singular values of WΣxz (default 0.01).
  LeaceFitter& setSvdTolerance(double tol) {
    requireArg(std::isfinite(tol) && tol >= 0, "LeaceFitter::setSvdTolerance", "tol", tol, "a finite value >= 0");
    m_svdTol = tol;
    return *this;
  }

  /// Adds a batch: x (n×d) with concept values z (n×zDim) — or, when z has an integer scalar
  /// type (e.g. `wproj::Labels`), with class labels in [0, zDim) encoded one-hot.
  template <typename DX, typename DZ>
  LeaceFitter& update(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DZ>& z) {
    const char* where = "LeaceFitter::update";
    checkShape(x, -1, m_stats.xDim(), where, "x");
    if constexpr (Eigen::NumTraits<typename DZ::Scalar>::IsInteger) {
      requireArg(z.cols() == 1, where, "labels", detail::shapeString(z.rows(), z.cols()), "a column of class labels");
      checkShape(z, x.rows(), 1, where, "labels");
      Matrix onehot = Matrix::Zero(x.rows(), m_stats.zDim());
      for (Index i = 0; i < z.rows(); ++i) {
        const auto c = z(i, 0);
        requireArg(c >= 0 && Index(c) < m_stats.zDim(), where, "labels", c,
                   "a class index in [0, " + std::to_string(m_stats.zDim()) + ") (zDim = number of classes)");
        onehot(i, Index(c)) = Scalar(1);
      }
      m_stats.update(x, onehot);
    } else {
      m_stats.update(x, z);
    }
    return *this;
  }

  /// The running statistics.
  const StreamingCovariance<Scalar>& statistics() const { return m_stats; }
  /// Replaces the running statistics (e.g. by those merged from several processes,
  /// `wproj::mpi::allreduce`); their xDim and zDim must be this fitter's.
  LeaceFitter& setStatistics(StreamingCovariance<Scalar> stats) {
    const char* where = "LeaceFitter::setStatistics";
    requireArg(stats.xDim() == m_stats.xDim(), where, "stats.xDim()", stats.xDim(), "== xDim = " + std::to_string(m_stats.xDim()));
    requireArg(stats.zDim() == m_stats.zDim(), where, "stats.zDim()", stats.zDim(), "== zDim = " + std::to_string(m_stats.zDim()));
    m_stats = std::move(stats);
    return *this;
  }

  /// Σxx as the eraser uses it (shrunk or Bessel-corrected).
  Matrix sigmaXX() const {
    return m_shrinkage ? shrinkCovariance(m_stats.covarianceMle(), m_stats.count()) : m_stats.covariance();
  }

  /// Builds the eraser from the samples seen so far.
  LeaceEraser<Scalar> eraser() const {
    const char* where = "LeaceFitter::eraser";
    requireArg(m_stats.count() >= 2, where, "samples seen", m_stats.count(), ">= 2");
    // On one OpenBLAS thread: LAPACK's level-2 steps and OpenBLAS's small products round
    // differently with the thread count, and the singular vectors' signs follow the rounding. So
    // the eraser is the same to the bit for any thread count (its d³ work is small next to the
    // statistics).
    detail::BlasThreadSplit::OneThread oneThread;
    const Matrix sxz = m_stats.crossCovariance();
    requireArg(sxz.cwiseAbs().maxCoeff() > Scalar(0), where, "cross-covariance of x and z", "zero",
               "a concept that varies across samples (e.g. at least two classes)");
    const Index d = m_stats.xDim();
    Matrix w, wInv, sigma;
    if (m_method == LeaceMethod::Leace) {
      sigma = sigmaXX();
      // In double (LAPACK's dsyevd with WPROJ_USE_LAPACK: 4× Eigen's solver at d = 512).
      const detail::SymmetricEigen eig(sigma.template cast<double>());
      if (eig.info() != Eigen::Success) throw NumericalError(std::string(where) + ": eigendecomposition of Sigma_xx failed");
      const Vector l = eig.eigenvalues().template cast<Scalar>();
      const Scalar lmax = l(d - 1);
      const Scalar cut = lmax * Scalar(d) * std::numeric_limits<Scalar>::epsilon();
      Vector inv(d), sq(d);
      for (Index i = 0; i < d; ++i) {
        const bool keep = l(i) > cut;
        const Scalar li = std::max(l(i), Scalar(0));
        inv(i) = keep ? Scalar(1) / std::sqrt(li) : Scalar(0);
        sq(i) = keep ? std::sqrt(li) : Scalar(0);
      }
      const Matrix v = eig.eigenvectors().template cast<Scalar>();
      w = v * inv.asDiagonal() * v.transpose();
      wInv = v * sq.asDiagonal() * v.transpose();
    }
    const Matrix wsxz = m_method == LeaceMethod::Leace ? Matrix(w * sxz) : sxz;
    Eigen::JacobiSVD<Matrix> svd(wsxz, Eigen::ComputeThinU);
    Index k = 0;
    while (k < svd.singularValues().size() && double(svd.singularValues()(k)) > m_svdTol) ++k;
    const Matrix u = svd.matrixU().leftCols(k);
    Matrix left = m_method == LeaceMethod::Leace ? Matrix(wInv * u) : u;
    Matrix right = m_method == LeaceMethod::Leace ? Matrix(w * u) : u;

    if (m_constrainTrace && m_method == LeaceMethod::Leace && k > 0) {
      Matrix p = -left * right.transpose();
      p.diagonal().array() += Scalar(1);
      const double oldTrace = double(sigma.trace());
      const double newTrace = double((p * sigma * p.transpose()).trace());
      if (newTrace > oldTrace) {
        Matrix q = -u * u.transpose();
        q.diagonal().array() += Scalar(1);
        const double x = newTrace;
        const double y = 2.0 * double((p * sigma * q.transpose()).trace());
        const double z = double((q * sigma * q.transpose()).trace());
        const double wt = oldTrace;
        // tr((αP + (1−α)Q) Σ (·)ᵀ) = α²x + α(1−α)y + (1−α)²z = wt
        const double a = x - y + z;
        const double disc = std::sqrt(std::max(0.0, 4 * wt * x - 4 * wt * y + 4 * wt * z + y * y - 4 * x * z));
        double alpha = 1.0;
        if (std::abs(a) > 0) {
          const double a1 = (-y / 2 + z - disc / 2) / a, a2 = (-y / 2 + z + disc / 2) / a;
          alpha = std::clamp(a1 > 0 ? a1 : a2, 0.0, 1.0);
        }
        Matrix mix = Scalar(alpha) * p + Scalar(1 - alpha) * q;
        Matrix iMinus = -mix;
        iMinus.diagonal().array() += Scalar(1);
        Eigen::JacobiSVD<Matrix> s2(iMinus, Eigen::ComputeFullU | Eigen::ComputeFullV);
        const Scalar smax = s2.singularValues()(0);
        Index r = 0;
        while (r < d && s2.singularValues()(r) > smax * Scalar(d) * std::numeric_limits<Scalar>::epsilon()) ++r;
        const Vector root = s2.singularValues().head(r).cwiseSqrt();
        left = s2.matrixU().leftCols(r) * root.asDiagonal();
        right = s2.matrixV().leftCols(r) * root.asDiagonal();
        m_blend = alpha;
      } else {
        m_blend = 1.0;
      }
    } else {
      m_blend = 1.0;
    }
    return LeaceEraser<Scalar>(std::move(left), std::move(right), m_stats.meanX(), m_affine);
  }

  /// The blend weight α of the last eraser() (1 when the trace constraint did not act).
  double traceBlend() const { return m_blend; }

  /// One-shot fit from rows x (n×d) and labels in [0, numClasses).
  template <typename DX>
  static LeaceEraser<Scalar> fit(const Eigen::MatrixBase<DX>& x, const Eigen::Ref<const Labels>& labels,
                                 Index numClasses) {
    LeaceFitter f(x.cols(), numClasses);
    f.update(x, labels);
    return f.eraser();
  }

 private:
  StreamingCovariance<Scalar> m_stats;
  LeaceMethod m_method = LeaceMethod::Leace;
  bool m_affine = true;
  bool m_shrinkage = true;
  bool m_constrainTrace = true;
  double m_svdTol = 0.01;
  mutable double m_blend = 1.0;
};

}  // namespace wproj
