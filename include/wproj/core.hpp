// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The core layer: errors and checks, the counter-based generator, sides, the persistence format
/// and the atomic file writer.

#include "core/atomic_file.hpp"
#include "core/config.hpp"
#include "core/partition.hpp"
#include "core/random.hpp"
#include "core/serialization.hpp"
#include "core/side.hpp"
