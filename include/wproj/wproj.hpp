// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Umbrella header: every layer of wproj except io/ (include <wproj/io.hpp> for file formats).

#include "version.hpp"
#include "core.hpp"
#include "linalg.hpp"
#include "gradient.hpp"
#include "editing.hpp"
#include "merging.hpp"
#include "lowrank.hpp"
