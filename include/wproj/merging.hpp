// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The merging layer.

#include "linalg.hpp"
