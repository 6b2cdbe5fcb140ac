// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The core layer: errors and checks, the counter-based generator, sides.

#include "core/config.hpp"
#include "core/random.hpp"
#include "core/side.hpp"
