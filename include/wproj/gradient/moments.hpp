// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// What happens to optimizer moments when a projector's basis changes.

#include "../core/side.hpp"

#include <Eigen/Core>

namespace wproj {

/// Moment handling on a basis change (the subject of galore_torch issue #54).
///
/// - `Keep` (GaLore): the moments stay as they are, although their coordinates now refer to a
///   different basis.
/// - `Reset`: moments are zeroed and the bias-correction step count restarts.
/// - `Rotate`: moments are carried into the new coordinates with R = P_oldᵀ P_new (r×r).
///   First moment: m ← m·R (right side; coordinates G P), m ← Rᵀm (left; coordinates PᵀG),
///   m ← R_Aᵀ m R_B (two-sided). Second moment: the same maps with R replaced by its
///   elementwise square R∘R, i.e. v ← v·(R∘R). This is the variance of a rotated coordinate
///   x'_j = Σ_i R_ij x_i when the old coordinates are uncorrelated (Var x'_j = Σ_i R_ij² Var x_i):
///   it keeps v ≥ 0 by construction, it is exact for signed (partial) permutations — the index
///   bases DCT and GRASS, whose R is exact — and directions that enter the subspace start
///   from v = 0 like fresh coordinates. (dct_adamw's v ← |v·R| agrees on permutations but mixes
///   signed second moments for general R.) Adafactor's factored second moment is rotated on its
///   projected factor: c ← (R∘R)ᵀc, which is the same rule applied to V̂ = r cᵀ / Σr.
enum class MomentPolicy { Keep, Reset, Rotate };

/// Name of a moment policy ("keep", "reset", "rotate").
inline const char* toString(MomentPolicy p) {
  switch (p) {
    case MomentPolicy::Keep: return "keep";
    case MomentPolicy::Reset: return "reset";
    case MomentPolicy::Rotate: return "rotate";
  }
  return "?";
}

namespace detail {

/// Carries projected coordinates X (shaped like the projected gradient) into the new basis:
/// X ← X·Rb (right), Raᵀ·X (left), Raᵀ·X·Rb (two-sided). `tmp` is a same-shaped buffer.
/// Used with R for first moments and with R∘R for second moments.
template <typename Matrix>
void carryCoordinates(Matrix& x, bool twoSided, Side side, const Matrix& ra, const Matrix& rb, Matrix& tmp) {
  if (twoSided) {
    tmp.noalias() = x * rb;
    x.noalias() = ra.transpose() * tmp;
  } else if (side == Side::Right) {
    tmp.noalias() = x * ra;
    x.swap(tmp);
  } else {
    tmp.noalias() = ra.transpose() * x;
    x.swap(tmp);
  }
}

/// Elementwise square of a transition matrix into `out` (no allocation once sized).
template <typename Matrix>
void squareInto(const Matrix& r, Matrix& out) {
  out.array() = r.array().square();
}

}  // namespace detail
}  // namespace wproj
