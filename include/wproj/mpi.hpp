// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// The optional MPI layer (link `wproj::mpi`; docs/scale.md): the communicator and collective
/// error model, distributed randomized SVD of row-distributed matrices and operators, distributed
/// statistics (covariances, LEACE, DAMA's and INLP's inputs) and layer-sharded GaLore refreshes.

#include "mpi/comm.hpp"
#include "mpi/randomized_svd.hpp"
#include "mpi/statistics.hpp"
#include "mpi/refresh.hpp"
