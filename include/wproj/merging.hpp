// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The merging layer: task vectors and per-tensor mergers (task arithmetic, TIES, DARE, SLERP,
/// Model Stock, Iso-C, Iso-CTS, TSV-M), the continual merger OPCM with a resumable state, and a
/// model-level driver that streams tensors through callbacks and reports every tensor.
///
/// The registry of the methods by name with their typed parameters is included separately,
/// `<wproj/merging/registry.hpp>`: its factories instantiate every merger for float and double,
/// a compile-time cost only programs that choose a method at run time (the CLI) should pay.

#include "linalg.hpp"
#include "linalg/polar.hpp"
#include "linalg/truncated_svd.hpp"
#include "merging/report.hpp"
#include "merging/task_vectors.hpp"
#include "merging/baselines.hpp"
#include "merging/spectral.hpp"
#include "merging/opcm.hpp"
#include "merging/driver.hpp"
#include "merging/opcm_streaming.hpp"
