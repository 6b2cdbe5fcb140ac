// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The linear-algebra layer: orthonormalisation, subspaces and projectors, null spaces,
/// decompositions (truncated, randomized and incremental SVD, DCT bases), statistics.

#include "core.hpp"
#include "linalg/orthonormalize.hpp"
#include "linalg/subspace.hpp"
#include "linalg/nullspace.hpp"
#include "linalg/rank_rule.hpp"
#include "linalg/svd_base.hpp"
#include "linalg/truncated_svd.hpp"
#include "linalg/linear_operator.hpp"
#include "linalg/subspace_iteration.hpp"
#include "linalg/randomized_svd.hpp"
#include "linalg/polar.hpp"
#include "linalg/newton_schulz.hpp"
#include "linalg/incremental_svd.hpp"
#include "linalg/dct.hpp"
#include "linalg/dct_selection.hpp"
#include "linalg/covariance.hpp"
#include "linalg/pls.hpp"
#include "linalg/oblique_projector.hpp"
