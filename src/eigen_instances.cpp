// The Eigen decompositions wproj uses, instantiated once for the project's own tests, examples,
// tools and benchmarks (target wproj_instances; see include/wproj/core/eigen_instances.hpp).
#define WPROJ_INSTANTIATE_EIGEN
#include <wproj/core/eigen_instances.hpp>
