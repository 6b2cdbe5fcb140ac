// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The gradient layer: GaLore-style low-rank gradient projection. `GradientProjector<Basis>`
/// with the basis policies (exact SVD, warm-started randomized SVD, DCT column selection,
/// online PCA, seeded Gaussian, GRASS row selection, INT4-quantised wrapper), the moment
/// policies, and the optimizers (AdamW, Adafactor; full rank and projected; Muon, APOLLO, Fira).
/// See docs/gradient.md.

#include "linalg.hpp"

#include "gradient/adafactor.hpp"
#include "gradient/adamw.hpp"
#include "gradient/apollo.hpp"
#include "gradient/basis.hpp"
#include "gradient/persistence.hpp"
#include "gradient/dct_basis.hpp"
#include "gradient/fira.hpp"
#include "gradient/gaussian_basis.hpp"
#include "gradient/int4.hpp"
#include "gradient/moments.hpp"
#include "gradient/muon.hpp"
#include "gradient/online_pca_basis.hpp"
#include "gradient/projected_optimizer.hpp"
#include "gradient/projector.hpp"
#include "gradient/quantized_basis.hpp"
#include "gradient/randomized_basis.hpp"
#include "gradient/row_selection_basis.hpp"
#include "gradient/coap_basis.hpp"
#include "gradient/svd_basis.hpp"
#include "gradient/wavelet_basis.hpp"
#include "gradient/owlore.hpp"
#include "gradient/galore_plus.hpp"
