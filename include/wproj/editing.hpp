// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The editing layer.

#include "linalg.hpp"
