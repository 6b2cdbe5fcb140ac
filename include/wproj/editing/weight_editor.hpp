// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// `WeightEditor`: applies an estimator's subspace (or an oblique projector such as a LEACE
/// eraser) to a weight matrix — the output side (I − αQQᵀ)W or the input side W(I − αQQᵀ), for
/// weights stored as `nn.Linear` (out, in) or transposed (GPT-2 `Conv1D`, (in, out)), on the
/// whole matrix or on a block (e.g. one attention head's slice of o_proj), at partial strength α.

#include "../core/config.hpp"
#include "../core/side.hpp"
#include "../linalg/oblique_projector.hpp"
#include "../linalg/subspace.hpp"
#include "leace.hpp"

#include <Eigen/Core>

#include <cmath>
#include <string>
#include <type_traits>

namespace wproj {

/// Which side of y = Wx + b an edit acts on, in the logical (out, in) layout.
enum class WeightSide {
  Output,  ///< W ← (I − αP)W: removes directions from what the layer writes (DeTox, DAMA "after", ThinkEdit, LEACE)
  Input    ///< W ← W(I − αP): makes the layer blind to directions of its input (DAMA "before", INLP on inputs)
};

/// Name of a weight side ("output" / "input").
inline const char* toString(WeightSide side) { return side == WeightSide::Output ? "output" : "input"; }

/// What an edit did.
struct EditReport {
  double deltaNorm = 0;            ///< ‖W' − W‖_F over the edited block
  double weightNorm = 0;           ///< ‖W‖_F of the block before the edit
  Eigen::VectorXd normBefore;      ///< per removed direction q_i: ‖q_iᵀW‖ (output side) or ‖Wq_i‖ (input side), before
  Eigen::VectorXd normAfter;       ///< the same after the edit (→ 0 at α = 1)
  Side storageSide = Side::Left;   ///< the side the projector was applied on in storage order
};

/// An edited copy of a weight (and of its bias, for LEACE folding) with the report.
template <typename Scalar>
struct EditResult {
  /// The edited weight, in the input's storage layout.
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> weight;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> bias;  ///< empty unless a bias was edited
  /// What the edit did.
  EditReport report;
};

/// Applies a removal subspace to weights: W ← (I − αQQᵀ)W (output side) or W(I − αQQᵀ) (input
/// side), where Q is the orthonormal basis of the subspace and α ∈ [0, 1] the strength.
///
/// - `setTransposed(true)`: the stored matrix is Wᵀ (in, out) — GPT-2 Conv1D — so the sides swap
///   in storage: an output-side edit becomes Wᵀ(I − αQQᵀ).
/// - `setOutputRange` / `setInputRange`: edit only a block, in logical coordinates (rows of W =
///   outputs, columns = inputs). ThinkEdit edits one head's o_proj slice with
///   `setInputRange(h·d_head, d_head)` on the output side. The subspace's ambient dimension must
///   equal the block's extent on the edited side.
/// - `setAccumulateInDouble(true)`: float weights are edited in double and rounded once.
/// - `apply()` returns an edited copy and never modifies its input; `applyInPlace()` edits the
///   caller's storage (Eigen::Map over foreign buffers included).
/// - Oblique projectors (`ObliqueProjector`, P = I − ABᵀ): `apply(W, P)` edits W ← P_αW or
///   W P_α with P_α = I − αABᵀ, on either side, like a subspace.
/// - LEACE: `apply(W, b, eraser)` (or `apply(W, b, eraser.obliqueProjector())`) folds the
///   affine eraser into y = Wx + b on the output side: W' = PW, b' = Pb + (I − P)μ (with
///   strength α: P = I − αLRᵀ); an output range selects the outputs the eraser acts on; the
///   fold is always computed in double and rounded once.
/// All projection arithmetic is delegated to `Subspace` (projectOut / project / coordinates) and
/// `ObliqueProjector` (apply / composeAfter / coordinates); the editor only selects the block,
/// the side and the precision, and reports.
///
/// \code
/// wproj::DetoxEstimator<float> detox;
/// detox.setRank(2).fit(preferred, toxic);                       // N×D each, rows paired
/// wproj::WeightEditor<float> editor;                            // output side, α = 1
/// auto edited = editor.apply(downProj, detox.subspace());       // (I − QQᵀ)W, W: D×4D
/// wproj::WeightEditor<float> gpt2;                              // the same on a Conv1D weight (4D×D)
/// gpt2.setTransposed(true).setStrength(0.5);
/// auto half = gpt2.apply(downProjConv1D, detox.subspace());
/// auto folded = editor.apply(w, bias, eraser);                  // LEACE: W' = PW, b' = Pb + (I − P)μ
/// \endcode
template <typename Scalar_>
class WeightEditor {
 public:
  /// Floating-point type of the weights.
  using Scalar = Scalar_;
  /// Dense matrix type of the weights.
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  /// Dense vector type of biases.
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// An editor of the output side with strength 1 on the whole matrix.
  WeightEditor() = default;
  /// An editor of `side` with strength 1 on the whole matrix.
  explicit WeightEditor(WeightSide side) : m_side(side) {}

  /// The logical side to edit (default Output).
  WeightEditor& setSide(WeightSide side) { m_side = side; return *this; }
  /// The weight is stored transposed, (in, out) (default false).
  WeightEditor& setTransposed(bool on) { m_transposed = on; return *this; }
  /// Strength α ∈ [0, 1] (default 1: remove the directions completely).
  WeightEditor& setStrength(double alpha) {
    requireArg(std::isfinite(alpha) && alpha >= 0 && alpha <= 1, "WeightEditor::setStrength", "alpha", alpha, "in [0, 1]");
    m_alpha = alpha;
    return *this;
  }
  /// Restrict the edit to outputs [start, start + count) (rows of the logical W); count < 0: to the end.
  WeightEditor& setOutputRange(Index start, Index count = -1) {
    requireArg(start >= 0, "WeightEditor::setOutputRange", "start", start, ">= 0");
    m_outStart = start;
    m_outCount = count;
    return *this;
  }
  /// Restrict the edit to inputs [start, start + count) (columns of the logical W); count < 0: to the end.
  WeightEditor& setInputRange(Index start, Index count = -1) {
    requireArg(start >= 0, "WeightEditor::setInputRange", "start", start, ">= 0");
    m_inStart = start;
    m_inCount = count;
    return *this;
  }
  /// Edit the whole matrix (the default).
  WeightEditor& clearRanges() {
    m_outStart = m_inStart = 0;
    m_outCount = m_inCount = -1;
    return *this;
  }
  /// Accumulate float edits in double (default false; no effect for double weights).
  WeightEditor& setAccumulateInDouble(bool on) { m_double = on; return *this; }

  /// The logical side the edit acts on.
  WeightSide side() const { return m_side; }
  /// Whether the weight is stored transposed, (in, out).
  bool transposed() const { return m_transposed; }
  /// The strength α.
  double strength() const { return m_alpha; }

  /// The side the projector acts on in storage order (output side of a (out, in) weight: Left).
  Side storageSide() const {
    const bool left = (m_side == WeightSide::Output) != m_transposed;
    return left ? Side::Left : Side::Right;
  }

  /// An edited copy of `w`; `w` is not modified.
  template <typename Derived>
  EditResult<Scalar> apply(const Eigen::MatrixBase<Derived>& w, const Subspace<Scalar>& subspace) const {
    EditResult<Scalar> out;
    out.weight = w.template cast<Scalar>();
    out.report = applyInPlace(out.weight, subspace);
    return out;
  }

  /// Edits `w` in place (any writable dense expression: Matrix, Map, Block) and reports.
  template <typename Derived>
  EditReport applyInPlace(Eigen::MatrixBase<Derived>& w, const Subspace<Scalar>& subspace) const {
    static_assert(std::is_same<typename Derived::Scalar, Scalar>::value,
                  "WeightEditor::applyInPlace: the weight's scalar type must match the editor's");
    const char* where = "WeightEditor::apply";
    checkNonEmpty(w, where, "w");
    checkFinite(w, where, "w");
    auto blk = block(w, where);
    const Side side = storageSide();
    const Index extent = side == Side::Left ? blk.rows() : blk.cols();
    requireArg(subspace.ambientDim() == extent, where, "subspace.ambientDim()", subspace.ambientDim(),
               std::to_string(extent) + " (the " + toString(m_side) + " extent of the edited block" +
                   (m_transposed ? ", weight stored transposed" : "") + ")");
    if (m_double && !std::is_same<Scalar, double>::value) {
      Eigen::MatrixXd b = blk.template cast<double>();
      const Subspace<double> sd = Subspace<double>::fromColumns(subspace.basis().template cast<double>());
      EditReport r = editBlock(b, sd, side);
      blk = b.template cast<Scalar>();
      return r;
    }
    Matrix b = blk;
    EditReport r = editBlock(b, subspace, side);
    blk = b;
    return r;
  }

  /// Applies the linear map P of an oblique projector (I − αABᵀ) to `w`'s `side()`: W ← PW
  /// (output) or W ← WP (input), through the transposed storage and block like a `Subspace`.
  /// The report's directions are the functionals the map removes, normalised: the columns of B
  /// (output side, ‖b̂_iᵀW‖) or of A (input side, ‖Wâ_i‖). An affine projector moves the layer's
  /// bias too: use `apply(w, b, projector)` for it.
  template <typename Derived>
  EditResult<Scalar> apply(const Eigen::MatrixBase<Derived>& w, const ObliqueProjector<Scalar>& projector) const {
    EditResult<Scalar> out;
    out.weight = w.template cast<Scalar>();
    out.report = applyInPlace(out.weight, projector);
    return out;
  }

  /// In-place version of `apply(w, projector)`.
  template <typename Derived>
  EditReport applyInPlace(Eigen::MatrixBase<Derived>& w, const ObliqueProjector<Scalar>& projector) const {
    static_assert(std::is_same<typename Derived::Scalar, Scalar>::value,
                  "WeightEditor::applyInPlace: the weight's scalar type must match the editor's");
    const char* where = "WeightEditor::apply(oblique)";
    requireArg(!projector.affine(), where, "projector.affine()", "true",
               "a linear projector (an affine one also moves the bias: apply(w, b, projector))");
    checkNonEmpty(w, where, "w");
    checkFinite(w, where, "w");
    auto blk = block(w, where);
    const Side side = storageSide();
    const Index extent = side == Side::Left ? blk.rows() : blk.cols();
    requireArg(projector.dim() == extent, where, "projector.dim()", projector.dim(),
               std::to_string(extent) + " (the " + toString(m_side) + " extent of the edited block" +
                   (m_transposed ? ", weight stored transposed" : "") + ")");
    if (m_double && !std::is_same<Scalar, double>::value) {
      Eigen::MatrixXd b = blk.template cast<double>();
      EditReport r = editBlock(b, projector.template cast<double>(), side);
      blk = b.template cast<Scalar>();
      return r;
    }
    Matrix b = blk;
    EditReport r = editBlock(b, projector, side);
    blk = b;
    return r;
  }

  /// Folds an affine LEACE eraser into y = Wx + b (output side): returns W' = PW, b' = Pb + (I − P)μ.
  template <typename DW, typename DB>
  EditResult<Scalar> apply(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DB>& b,
                           const LeaceEraser<Scalar>& eraser) const {
    EditResult<Scalar> out;
    out.weight = w.template cast<Scalar>();
    out.bias = b.template cast<Scalar>();
    out.report = applyInPlace(out.weight, out.bias, eraser);
    return out;
  }

  /// In-place version of the LEACE fold (weight and bias are both overwritten).
  template <typename DW, typename DB>
  EditReport applyInPlace(Eigen::MatrixBase<DW>& w, Eigen::MatrixBase<DB>& b, const LeaceEraser<Scalar>& eraser) const {
    return foldOutput(w, b, eraser.obliqueProjector(), "WeightEditor::apply(LEACE)", "eraser.dim()");
  }

  /// Folds an oblique (affine or linear) projector into y = Wx + b on the output side:
  /// W' = P_αW, b' = P_αb + (I − P_α)μ with P_α = I − αABᵀ (`ObliqueProjector::composeAfter`).
  template <typename DW, typename DB>
  EditResult<Scalar> apply(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DB>& b,
                           const ObliqueProjector<Scalar>& projector) const {
    EditResult<Scalar> out;
    out.weight = w.template cast<Scalar>();
    out.bias = b.template cast<Scalar>();
    out.report = applyInPlace(out.weight, out.bias, projector);
    return out;
  }

  /// In-place version of `apply(w, b, projector)` (weight and bias are both overwritten).
  template <typename DW, typename DB>
  EditReport applyInPlace(Eigen::MatrixBase<DW>& w, Eigen::MatrixBase<DB>& b,
                          const ObliqueProjector<Scalar>& projector) const {
    return foldOutput(w, b, projector, "WeightEditor::apply(w, b, projector)", "projector.dim()");
  }

 private:
  /// The edited block of w in storage coordinates (logical ranges mapped through the transpose).
  template <typename Derived>
  Eigen::Block<Derived> block(Eigen::MatrixBase<Derived>& w, const char* where) const {
    const Index outDim = m_transposed ? w.cols() : w.rows();
    const Index inDim = m_transposed ? w.rows() : w.cols();
    const Index oc = m_outCount < 0 ? outDim - m_outStart : m_outCount;
    const Index ic = m_inCount < 0 ? inDim - m_inStart : m_inCount;
    requireArg(m_outStart + oc <= outDim && oc >= 1, where, "output range",
               "[" + std::to_string(m_outStart) + ", " + std::to_string(m_outStart + oc) + ")",
               "a non-empty range within the " + std::to_string(outDim) + " outputs");
    requireArg(m_inStart + ic <= inDim && ic >= 1, where, "input range",
               "[" + std::to_string(m_inStart) + ", " + std::to_string(m_inStart + ic) + ")",
               "a non-empty range within the " + std::to_string(inDim) + " inputs");
    if (m_transposed) return w.derived().block(m_inStart, m_outStart, ic, oc);
    return w.derived().block(m_outStart, m_inStart, oc, ic);
  }

  /// The output-side fold of an oblique projector into weight and bias, in double, rounded once.
  template <typename DW, typename DB>
  EditReport foldOutput(Eigen::MatrixBase<DW>& w, Eigen::MatrixBase<DB>& b, const ObliqueProjector<Scalar>& projector,
                        const char* where, const char* dimName) const {
    static_assert(std::is_same<typename DW::Scalar, Scalar>::value && std::is_same<typename DB::Scalar, Scalar>::value,
                  "WeightEditor::applyInPlace: the weight's and bias' scalar types must match the editor's");
    requireArg(m_side == WeightSide::Output, where, "side", toString(m_side),
               "output (a concept eraser acts on the layer's output y = Wx + b)");
    checkNonEmpty(w, where, "w");
    checkFinite(w, where, "w");
    checkFinite(b, where, "b");
    auto blk = block(w, where);
    const Side side = storageSide();
    const Index extent = side == Side::Left ? blk.rows() : blk.cols();
    requireArg(projector.dim() == extent, where, dimName, projector.dim(),
               std::to_string(extent) + " (the output extent of the edited block)");
    const Index outStart = m_outStart;
    const Index inDim = m_transposed ? w.rows() : w.cols();
    requireArg(m_inStart == 0 && (m_inCount < 0 || m_inCount == inDim), where, "input range",
               "[" + std::to_string(m_inStart) + ", +" + std::to_string(m_inCount) + ")",
               "all inputs (the folded bias describes the whole layer)");
    requireArg(b.size() == (m_transposed ? w.cols() : w.rows()), where, "b.size()", b.size(),
               std::to_string(m_transposed ? w.cols() : w.rows()) + " (one bias per output)");
    Eigen::MatrixXd bw = blk.template cast<double>();
    Eigen::VectorXd bb = b.derived().segment(outStart, extent).template cast<double>();
    const ObliqueProjector<double> p = projector.template cast<double>();
    EditReport rep;
    rep.storageSide = side;
    rep.weightNorm = bw.norm();
    const ObliqueProjector<double> unit = side == Side::Left ? p : p.transposed();
    rep.normBefore = directionNorms(bw, unit, side);
    p.scaled(m_alpha).composeAfter(bw, bb, side);  // W ← P_αW (or Wᵀ ← WᵀP_αᵀ), b ← P_αb + (I − P_α)μ
    rep.normAfter = directionNorms(bw, unit, side);
    rep.deltaNorm = (bw - blk.template cast<double>()).norm();
    blk = bw.template cast<Scalar>();
    b.derived().segment(outStart, extent) = bb.template cast<Scalar>();
    return rep;
  }

  /// Norms of the coefficients an oblique map removes from m, per direction, with the factor
  /// that defines them normalised (B for `Side::Left`: rows of B̂ᵀm; A for `Side::Right`: columns of mÂ).
  template <typename S>
  static Eigen::VectorXd directionNorms(const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>& m,
                                        const ObliqueProjector<S>& p, Side side) {
    const auto c = p.coordinates(m, side);
    const Eigen::VectorXd n = side == Side::Left ? Eigen::VectorXd(c.rowwise().norm().template cast<double>())
                                                 : Eigen::VectorXd(c.colwise().norm().transpose().template cast<double>());
    const Eigen::VectorXd f = side == Side::Left ? Eigen::VectorXd(p.right().colwise().norm().transpose().template cast<double>())
                                                 : Eigen::VectorXd(p.left().colwise().norm().transpose().template cast<double>());
    return n.cwiseQuotient(f.cwiseMax(1e-300));
  }

  /// An oblique map's linear part at strength α applied on `side` of b (storage order), with the report.
  template <typename S>
  EditReport editBlock(Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>& b, const ObliqueProjector<S>& projector,
                       Side side) const {
    // logical output side: PW, stored transposed WᵀPᵀ; input side: WP, stored transposed PᵀWᵀ
    const ObliqueProjector<S> op = m_transposed ? projector.transposed() : projector;
    EditReport rep;
    rep.storageSide = side;
    rep.weightNorm = double(b.norm());
    rep.normBefore = directionNorms(b, op, side);
    if (op.empty() || m_alpha == 0) {
      rep.normAfter = rep.normBefore;
      return rep;
    }
    const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic> before = b;
    op.scaled(m_alpha).applyInPlace(b, side);
    rep.deltaNorm = double((b - before).norm());
    rep.normAfter = directionNorms(b, op, side);
    return rep;
  }

  /// (I − αQQᵀ) applied on `side` of b, with the report.
  template <typename S>
  EditReport editBlock(Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>& b, const Subspace<S>& q, Side side) const {
    using M = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
    EditReport rep;
    rep.storageSide = side;
    rep.weightNorm = double(b.norm());
    auto dirNorms = [&](const M& m) -> Eigen::VectorXd {
      const M c = q.coordinates(m, side);  // Left: QᵀW (k×cols); Right: WQ (rows×k)
      return side == Side::Left ? Eigen::VectorXd(c.rowwise().norm().template cast<double>())
                                : Eigen::VectorXd(c.colwise().norm().transpose().template cast<double>());
    };
    rep.normBefore = dirNorms(b);
    if (q.empty() || m_alpha == 0) {
      rep.normAfter = rep.normBefore;
      return rep;
    }
    M delta;
    if (m_alpha == 1) {
      M out = q.projectOut(b, side);
      delta = b - out;
      b = std::move(out);
    } else {
      delta = q.project(b, side) * S(m_alpha);
      b -= delta;
    }
    rep.deltaNorm = double(delta.norm());
    rep.normAfter = dirNorms(b);
    return rep;
  }

  WeightSide m_side = WeightSide::Output;
  bool m_transposed = false;
  double m_alpha = 1.0;
  Index m_outStart = 0, m_outCount = -1, m_inStart = 0, m_inCount = -1;
  bool m_double = false;
};

}  // namespace wproj
