// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// DeTox / ProFS (Uppaal et al., "DeTox: Toxic Subspace Projection for Model Editing"): the
/// "toxic" subspace of a layer's representations, estimated from paired embeddings of preferred
/// and non-preferred (toxic) texts.

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "../linalg/subspace.hpp"
#include "../linalg/truncated_svd.hpp"

#include <Eigen/Core>

#include <string>

namespace wproj {

/// Estimates the DeTox subspace from paired embeddings X⁺ (preferred) and X⁻ (toxic), each N×D
/// with row i of both describing the same pair.
///
///   T = (X⁺ − X⁻)/2;  with centring (default on): v₀ = top right singular vector of the
///   uncentred X⁺ and T ← T(I − v₀v₀ᵀ);  thin SVD T = USVᵀ;  subspace = span(V_k), P = V_kV_kᵀ.
///
/// The weight edit is then W ← (I − P)W on the MLP output ("value") matrix, e.g. with
/// `WeightEditor` on the output side. Defaults follow the paper: k = 2 (GPT-2 medium;
/// 10 for larger models), centring on. Pairs are matched by index — pass them aligned.
///
/// \code
/// wproj::DetoxEstimator<float> detox;
/// detox.setRank(2).fit(preferred, toxic);                     // N×D each, row i = pair i
/// const wproj::Subspace<float>& toxicDirections = detox.subspace();
/// auto edited = wproj::WeightEditor<float>().apply(downProj, toxicDirections);  // (I − P)W, W: D×4D
/// \endcode
template <typename Scalar_>
class DetoxEstimator {
 public:
  /// Floating-point type of the embeddings and the subspace.
  using Scalar = Scalar_;
  /// Dense matrix type of embeddings and projectors.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type of singular values and directions.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// An unfitted estimator with the paper's defaults.
  DetoxEstimator() = default;

  /// Number of directions k to remove (default 2).
  DetoxEstimator& setRank(Index k) {
    requireArg(k >= 1, "DetoxEstimator::setRank", "k", k, ">= 1");
    m_rank = k;
    return *this;
  }
  /// Remove the top singular direction of the preferred embeddings first (default true).
  DetoxEstimator& setCentering(bool on) {
    m_centering = on;
    return *this;
  }

  /// Fits the subspace from paired embeddings (rows = pairs, N×D each).
  template <typename DP, typename DN>
  DetoxEstimator& fit(const Eigen::MatrixBase<DP>& preferred, const Eigen::MatrixBase<DN>& toxic) {
    const char* where = "DetoxEstimator::fit";
    checkNonEmpty(preferred, where, "preferred");
    checkShape(toxic, preferred.rows(), preferred.cols(), where, "toxic");
    checkFinite(preferred, where, "preferred");
    checkFinite(toxic, where, "toxic");
    const Index n = preferred.rows(), d = preferred.cols();
    requireArg(m_rank <= n, where, "rank", m_rank, "<= number of pairs = " + std::to_string(n));
    requireArg(m_rank <= d - (m_centering ? 1 : 0), where, "rank", m_rank,
               "<= embedding dimension" + std::string(m_centering ? " - 1 (centring removes one direction)" : "") +
                   " = " + std::to_string(d - (m_centering ? 1 : 0)));
    Matrix t = (preferred.template cast<Scalar>() - toxic.template cast<Scalar>()) * Scalar(0.5);
    if (m_centering) {
      TruncatedSVD<Matrix> top(preferred.template cast<Scalar>(), 1);
      m_center = top.matrixV().col(0);
      Subspace<Scalar>::fromOrthonormal(m_center).projectOutTo(t, Side::Right, t);
    } else {
      m_center.resize(0);
    }
    TruncatedSVD<Matrix> svd(t, m_rank);
    m_singularValues = svd.singularValues();
    m_subspace = Subspace<Scalar>::fromOrthonormal(svd.matrixV());
    m_info = svd.info();
    m_fitted = true;
    return *this;
  }

  /// The removed subspace span(V_k) of R^D.
  const Subspace<Scalar>& subspace() const { WPROJ_ASSERT(m_fitted); return m_subspace; }
  /// The k leading singular values of the (centred) difference matrix.
  const Vector& singularValues() const { WPROJ_ASSERT(m_fitted); return m_singularValues; }
  /// v₀, the removed top direction of the preferred embeddings (empty without centring).
  const Vector& centeringDirection() const { WPROJ_ASSERT(m_fitted); return m_center; }
  /// P = V_kV_kᵀ (D×D, formed on request).
  Matrix projector() const { return subspace().projector(); }
  /// Number of removed directions k.
  Index rank() const { return m_rank; }
  /// Whether centring is enabled.
  bool centering() const { return m_centering; }
  /// Outcome of the truncated SVD of the difference matrix (`Success` or `NoConvergence`).
  Eigen::ComputationInfo info() const { WPROJ_ASSERT(m_fitted); return m_info; }

 private:
  Index m_rank = 2;
  bool m_centering = true;
  bool m_fitted = false;
  Eigen::ComputationInfo m_info = Eigen::Success;
  Subspace<Scalar> m_subspace;
  Vector m_singularValues, m_center;
};

}  // namespace wproj
