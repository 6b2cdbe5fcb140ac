// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Shared vocabulary of the gradient-projection bases.
///
/// A *basis policy* owns one projection matrix P (ambient×r) for one side of a gradient G (m×n):
/// `Side::Left` projects R = PᵀG (r×n) with P of size m×r, `Side::Right` projects R = G P (m×r)
/// with P of size n×r. Back-projection is P N (left) or N Pᵀ (right). Every policy implements:
///
/// \code
///   using Scalar; using Matrix;
///   static constexpr const char* kName;          // tag used in checkpoints
///   static constexpr bool kTracksSteps;          // true when the basis changes on every step (online PCA)
///   RefreshResult refresh(G, side, rank, refreshIndex, Matrix* transition);   // new basis from G
///   void project(G, side, out) const;            // out = PᵀG or G P (no allocation)
///   void backProject(N, side, out) const;        // out = P N or N Pᵀ
///   void addBack(N, side, c, W) const;           // W += c·(P N) or c·(N Pᵀ)
///   void denseBasis(Matrix& p) const;            // P as a dense ambient×r matrix
///   bool hasBasis() const; std::size_t stateBytes() const;
///   void save(std::ostream&) const; void load(std::istream&, Index ambient, Index rank);
///   void track(G, side, lr);                     // only when kTracksSteps: move P by one step
/// \endcode
///
/// `IsGradientBasis<B>` (below) checks this protocol at compile time.
///
/// `refresh` is transactional: on failure (`ok == false`) the previous basis is kept unchanged.
/// When `transition` is non-null and a previous basis exists it receives R = P_oldᵀ P_new (r×r),
/// the matrix the moment policies use to carry optimizer moments into the new coordinates.

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "persistence.hpp"
#include "gemm.hpp"

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <type_traits>
#include <utility>

namespace wproj {

/// Which side(s) of a gradient G (m×n) GaLore projects (the `proj_type` of galore_torch).
enum class ProjectionType {
  Std,         ///< right (R = G P, P n×r) when m ≥ n, else left: always the smaller dimension
  ReverseStd,  ///< the opposite of Std: the larger dimension
  Left,        ///< always left: R = PᵀG (r×n)
  Right,       ///< always right: R = G P (m×r)
  Full,        ///< two-sided: R = AᵀG B (r×r), back-projection A N Bᵀ
  MinState     ///< the side with the smaller optimizer state: left when m > n, else right. The
               ///< moments are shaped like R and counted twice, the basis once, so a dense basis
               ///< costs r·(2·min(m,n) + max(m,n)) here against r·(2·max + min) for `Std`; square
               ///< matrices project on the right, as `Std`
};

/// Name of a projection type ("std", "reverse_std", "left", "right", "full").
inline const char* toString(ProjectionType t) {
  switch (t) {
    case ProjectionType::Std: return "std";
    case ProjectionType::ReverseStd: return "reverse_std";
    case ProjectionType::Left: return "left";
    case ProjectionType::Right: return "right";
    case ProjectionType::Full: return "full";
    case ProjectionType::MinState: return "min_state";
  }
  return "?";
}

/// Outcome of a basis refresh.
struct RefreshResult {
  bool ok = false;                                          ///< false: the previous basis was kept
  double overlap = std::numeric_limits<double>::quiet_NaN();  ///< ‖P_oldᵀP_new‖²_F / r (NaN without a previous basis)
};

namespace detail {

/// The ambient dimension of a side of an m×n gradient.
inline Index ambientOf(Index rows, Index cols, Side side) { return side == Side::Left ? rows : cols; }

/// Storage and products shared by every basis that keeps P as a dense ambient×r matrix
/// (exact SVD, randomized SVD, online PCA, seeded Gaussian, INT4-dequantised, and the gathered
/// DCT columns). `stateBytes()` counts P; a basis whose persistent state is smaller (indices,
/// seeds, INT4 codes) hides it with its own and reports P as a workspace.
template <typename Scalar_>
class DenseBasisStorage {
 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  bool hasBasis() const { return m_p.size() > 0; }
  /// The current projection matrix P (ambient×r).
  const Matrix& matrixP() const { return m_p; }
  void denseBasis(Matrix& p) const { p = m_p; }
  std::size_t stateBytes() const { return std::size_t(m_p.size()) * sizeof(Scalar); }

  /// out = PᵀG (left) or G P (right). No allocation once warmed up (`gemmInto`).
  template <typename DG, typename DO>
  void project(const Eigen::MatrixBase<DG>& g, Side side, Eigen::MatrixBase<DO>& out) const {
    if (side == Side::Left)
      gemmInto(m_p.transpose(), g.derived(), Scalar(1), false, out);
    else
      gemmInto(g.derived(), m_p, Scalar(1), false, out);
  }
  /// out = P N (left) or N Pᵀ (right).
  template <typename DN, typename DO>
  void backProject(const Eigen::MatrixBase<DN>& n, Side side, Eigen::MatrixBase<DO>& out) const {
    if (side == Side::Left)
      gemmInto(m_p, n.derived(), Scalar(1), false, out);
    else
      gemmInto(n.derived(), m_p.transpose(), Scalar(1), false, out);
  }
  /// W += c·P N (left) or c·N Pᵀ (right), as one GEMM with β = 1.
  template <typename DN, typename DW>
  void addBack(const Eigen::MatrixBase<DN>& n, Side side, Scalar c, Eigen::MatrixBase<DW>& w) const {
    if (side == Side::Left)
      gemmInto(m_p, n.derived(), c, true, w);
    else
      gemmInto(n.derived(), m_p.transpose(), c, true, w);
  }

 protected:
  /// Installs `candidate` as the new P after computing the transition/overlap against the old P.
  RefreshResult commit(Matrix& candidate, Matrix* transition) {
    RefreshResult res;
    res.ok = true;
    if (hasBasis() && m_p.rows() == candidate.rows() && m_p.cols() == candidate.cols()) {
      Matrix r = m_p.transpose() * candidate;
      res.overlap = double(r.squaredNorm()) / double(std::max<Index>(1, r.cols()));
      if (transition) transition->swap(r);
    }
    m_p.swap(candidate);
    return res;
  }
  /// `commit` for the output of a decomposition: rejects (keeps the previous basis) a candidate
  /// that is not ambient×rank or not finite.
  RefreshResult commitIfValid(Matrix& candidate, Index rank, Matrix* transition) {
    if (candidate.cols() != rank || !candidate.allFinite()) return RefreshResult{};
    return commit(candidate, transition);
  }
  void saveDense(std::ostream& os) const { ckpt::writeMatrix(os, m_p); }
  void loadDense(std::istream& is, Index ambient, Index rank) {
    const bool has = ckpt::readBounded<std::uint8_t>(is, "basis present flag", 0, 1) != 0;
    m_p = has ? ckpt::readMatrix<Scalar>(is, "projection matrix P", ambient, rank) : Matrix();
  }
  void saveDenseWithFlag(std::ostream& os) const {
    ckpt::writePod<std::uint8_t>(os, hasBasis() ? 1 : 0);
    if (hasBasis()) saveDense(os);
  }

  Matrix m_p;
};

}  // namespace detail

namespace detail {

template <typename...>
using BasisVoidT = void;
template <typename B>
using BasisMatrix = Eigen::Matrix<typename B::Scalar, Eigen::Dynamic, Eigen::Dynamic>;

// Detection traits of the basis-policy protocol (one per requirement, so that a failing
// static_assert names the missing piece).
template <typename B, typename = void>
struct BasisHasNames : std::false_type {};
template <typename B>
struct BasisHasNames<B, BasisVoidT<typename B::Scalar, decltype(std::declval<const char*&>() = B::kName),
                                   decltype(std::declval<bool&>() = B::kTracksSteps)>> : std::true_type {};

template <typename B, typename = void>
struct BasisHasRefresh : std::false_type {};
template <typename B>
struct BasisHasRefresh<B, BasisVoidT<decltype(std::declval<RefreshResult&>() = std::declval<B&>().refresh(
                                                  std::declval<const BasisMatrix<B>&>(), Side::Left, Index(), std::uint64_t(),
                                                  static_cast<BasisMatrix<B>*>(nullptr)))>> : std::true_type {};

template <typename B, typename = void>
struct BasisHasProducts : std::false_type {};
template <typename B>
struct BasisHasProducts<
    B, BasisVoidT<decltype(std::declval<const B&>().project(std::declval<const BasisMatrix<B>&>(), Side::Left,
                                                            std::declval<BasisMatrix<B>&>())),
                  decltype(std::declval<const B&>().backProject(std::declval<const BasisMatrix<B>&>(), Side::Left,
                                                                std::declval<BasisMatrix<B>&>())),
                  decltype(std::declval<const B&>().addBack(std::declval<const BasisMatrix<B>&>(), Side::Left,
                                                            std::declval<typename B::Scalar>(), std::declval<BasisMatrix<B>&>())),
                  decltype(std::declval<const B&>().denseBasis(std::declval<BasisMatrix<B>&>()))>> : std::true_type {};

template <typename B, typename = void>
struct BasisHasState : std::false_type {};
template <typename B>
struct BasisHasState<B, BasisVoidT<decltype(std::declval<bool&>() = std::declval<const B&>().hasBasis()),
                                   decltype(std::declval<std::size_t&>() = std::declval<const B&>().stateBytes()),
                                   decltype(std::declval<const B&>().save(std::declval<std::ostream&>())),
                                   decltype(std::declval<B&>().load(std::declval<std::istream&>(), Index(), Index()))>>
    : std::true_type {};

template <typename B, typename = void>
struct BasisHasTrack : std::false_type {};
template <typename B>
struct BasisHasTrack<B, BasisVoidT<decltype(std::declval<B&>().track(std::declval<const BasisMatrix<B>&>(), Side::Left, double()))>>
    : std::true_type {};

template <typename B, bool HasNames = BasisHasNames<B>::value>
struct BasisTracksWhenDeclared : std::true_type {};
template <typename B>
struct BasisTracksWhenDeclared<B, true> : std::integral_constant<bool, !B::kTracksSteps || BasisHasTrack<B>::value> {};

}  // namespace detail

/// True when `B` implements the basis-policy protocol described at the top of this file (and
/// `track` when it declares `kTracksSteps`); `GradientProjector` checks it at compile time.
template <typename B>
struct IsGradientBasis
    : std::integral_constant<bool, detail::BasisHasNames<B>::value && detail::BasisHasRefresh<B>::value &&
                                       detail::BasisHasProducts<B>::value && detail::BasisHasState<B>::value &&
                                       detail::BasisTracksWhenDeclared<B>::value> {};

}  // namespace wproj
