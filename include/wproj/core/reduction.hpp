// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// `SampleReduction`: how an estimator sees samples (rows) that several processes hold. The
/// estimators that accept one (`PartialLeastSquares`, `DamaEstimator`, `LogisticRegression`,
/// `InlpEstimator`) run their serial algorithm on their own rows and pass every sum over samples
/// (and the few maxima and class lists they need) through it, so that each process computes the
/// fit of all rows. One algorithm, serial or distributed: the default reduction does nothing,
/// and the MPI layer makes one over a communicator (`wproj::mpi::sampleReduction`).

#include "config.hpp"

#include <Eigen/Core>

#include <functional>
#include <vector>

namespace wproj {

/// The reductions over processes of a fit whose samples are split over them: `sum` and `max`
/// reduce a buffer of doubles in place, with the same result on every process; `unite`
/// replaces a sorted list of classes by the sorted union over the processes. All empty (the
/// default): one process holds every sample and nothing is reduced. Under an active reduction
/// every process must make the same calls in the same order (fit together, with the same
/// settings); a process may hold no rows.
struct SampleReduction {
  std::function<void(double*, Index)> sum;       ///< in-place sum over the processes
  std::function<void(double*, Index)> max;       ///< in-place maximum over the processes
  std::function<void(std::vector<int>&)> unite;  ///< sorted union of class lists over the processes

  /// True when the samples are split over processes.
  bool active() const { return bool(sum); }
  /// Sums `n` doubles at `p` over the processes (nothing on one process).
  void sumInPlace(double* p, Index n) const {
    if (sum) sum(p, n);
  }
  /// One value summed over the processes.
  double total(double v) const {
    sumInPlace(&v, 1);
    return v;
  }
  /// Sums a dense Eigen object over the processes, in place (float data are summed in double).
  template <typename Derived>
  void sumInPlace(Eigen::PlainObjectBase<Derived>& x) const {
    reduce(x, sum);
  }
  /// The element-wise maximum of a dense Eigen object over the processes, in place.
  template <typename Derived>
  void maxInPlace(Eigen::PlainObjectBase<Derived>& x) const {
    reduce(x, max);
  }

 private:
  template <typename Derived>
  static void reduce(Eigen::PlainObjectBase<Derived>& x, const std::function<void(double*, Index)>& op) {
    if (!op || x.size() == 0) return;
    using S = typename Derived::Scalar;
    if (std::is_same<S, double>::value) {
      op(reinterpret_cast<double*>(x.data()), x.size());
    } else {
      Eigen::Matrix<double, Eigen::Dynamic, 1> buf = Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, 1>>(x.data(), x.size()).template cast<double>();
      op(buf.data(), buf.size());
      Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, 1>>(x.data(), x.size()) = buf.template cast<S>();
    }
  }
};

}  // namespace wproj
