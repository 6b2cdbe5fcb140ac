// Synthetic representations shared by the editing tests: Gaussian noise plus class-dependent
// offsets along planted directions.
#pragma once

#include "test_common.hpp"

#include <wproj/editing/linear_classifier.hpp>

namespace wproj_test {

/// n samples in R^d with labels cycling through `classes`; class c adds `signal`·u_c where
/// u_c is a fixed random unit direction; a second, independent binary label (returned in
/// `other`) is encoded along another direction.
template <typename T>
struct Planted {
  Mat<T> x;
  wproj::Labels z, other;
  Planted(Index n, Index d, int classes, double signal, std::uint64_t seed, double otherSignal = 0.0) {
    Mat<double> xd = wproj::gaussianMatrix<Mat<double>>(n, d, seed);
    const Mat<double> dirs = randomOrthonormal<double>(d, classes + 1, 4242);  // shared by every sample set
    wproj::CounterRng rng(seed, 99);
    z.resize(n);
    other.resize(n);
    for (Index i = 0; i < n; ++i) {
      z(i) = int(rng.nextBelow(std::uint64_t(classes)));
      other(i) = int(rng.nextBelow(2));
      xd.row(i) += signal * dirs.col(z(i)).transpose();
      xd.row(i) += otherSignal * (other(i) ? 1.0 : -1.0) * dirs.col(classes).transpose();
    }
    x = xd.cast<T>();
  }
};

}  // namespace wproj_test
