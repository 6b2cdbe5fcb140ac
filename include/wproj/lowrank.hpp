// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The low-rank layer: LoRA factors from weights (extraction with a rank rule or a global byte
/// budget, and application), shared by the adapter tools, merge configs that name `model+adapter`
/// and gradient methods that initialise LoRA factors.

#include "linalg.hpp"
#include "lowrank/lora.hpp"
#include "lowrank/lora_ga.hpp"
