// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The gradient layer.

#include "linalg.hpp"
