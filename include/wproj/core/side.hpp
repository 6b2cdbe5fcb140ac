#pragma once

namespace wproj {

/// The side on which a projector P acts on a matrix X.
///
/// `Side::Left` computes `P X` (X has the subspace's ambient dimension as its number of rows:
/// the "output side" of a weight stored as (out, in)); `Side::Right` computes `X P` (X has the
/// ambient dimension as its number of columns: the "input side"). A side is always explicit
/// state — never inferred from the shape of a result.
enum class Side { Left, Right };

/// Human-readable name of a side ("left" / "right").
inline const char* toString(Side side) { return side == Side::Left ? "left" : "right"; }

}  // namespace wproj
