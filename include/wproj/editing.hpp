// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The editing layer: estimators that turn data into a subspace to remove (DeTox/ProFS, DAMA,
/// INLP, LEACE, mean-difference/ThinkEdit, AlphaEdit's null-space constrained update), the
/// linear probes they use, and `WeightEditor`, which applies a result to a weight matrix.

#include "linalg.hpp"
#include "linalg/covariance.hpp"
#include "linalg/oblique_projector.hpp"
#include "linalg/nullspace.hpp"
#include "linalg/pls.hpp"
#include "linalg/subspace.hpp"
#include "linalg/truncated_svd.hpp"

#include "editing/alpha_edit.hpp"
#include "editing/dama.hpp"
#include "editing/detox.hpp"
#include "editing/inlp.hpp"
#include "editing/leace.hpp"
#include "editing/linear_classifier.hpp"
#include "editing/mean_difference.hpp"
#include "editing/weight_editor.hpp"
