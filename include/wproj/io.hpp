// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The I/O layer (opt-in, not part of wproj.hpp): NumPy .npy arrays, safetensors files and
/// sharded checkpoints, bf16/f16 conversion, a strict JSON parser, read-only memory maps and
/// atomic output files. POSIX only; Eigen is the only dependency.

#include "io/dtype.hpp"
#include "io/json.hpp"
#include "io/file.hpp"
#include "io/npy.hpp"
#include "io/safetensors.hpp"
#include "io/checkpoint.hpp"
#include "io/spill_file.hpp"
