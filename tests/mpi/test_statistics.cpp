// Distributed statistics: every rank builds the same full data set, keeps its own (uneven, possibly
// empty) share of the rows, and the merged statistics / erasers / PLS fits are compared with the
// serial wproj classes run on all rows on every rank.
#include <catch2/catch.hpp>

#include <wproj/editing/dama.hpp>
#include <wproj/editing/inlp.hpp>
#include <wproj/editing/leace.hpp>
#include <wproj/mpi.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {

template <typename T>
using StatsMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

/// Rows per rank of a split of n rows: variant 0 gives rank 0 a fifth, rank 1 nothing (p ≥ 3)
/// and block-splits the rest; variant 1 gives rank 0 nothing (p ≥ 2). With one rank: all rows.
std::vector<wproj::Index> statsRowCounts(wproj::Index n, int p, int variant) {
  std::vector<wproj::Index> counts(std::size_t(p), 0);
  if (p == 1) {
    counts[0] = n;
  } else if (variant == 1) {
    for (int r = 1; r < p; ++r) counts[std::size_t(r)] = wproj::mpi::blockRows(n, r - 1, p - 1).count;
  } else {
    counts[0] = n / 5;
    const int first = p >= 3 ? 2 : 1;  // rank 1 holds no rows when p >= 3
    for (int r = first; r < p; ++r) counts[std::size_t(r)] = wproj::mpi::blockRows(n - n / 5, r - first, p - first).count;
  }
  return counts;
}

/// First row of `rank`'s share.
wproj::Index statsFirstRow(const std::vector<wproj::Index>& counts, int rank) {
  wproj::Index first = 0;
  for (int r = 0; r < rank; ++r) first += counts[std::size_t(r)];
  return first;
}

/// ‖a − b‖_max / max(1, ‖b‖_max); infinite for different shapes, 0 for two empty matrices.
template <typename A, typename B>
double statsRelDiff(const A& a, const B& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return std::numeric_limits<double>::infinity();
  if (b.size() == 0) return 0.0;
  const double scale = std::max(1.0, double(b.cwiseAbs().maxCoeff()));
  return double((a - b).cwiseAbs().maxCoeff()) / scale;
}

template <typename T>
double statsTol() {
  return std::is_same<T, float>::value ? 2e-4 : 1e-11;
}

}  // namespace

TEMPLATE_TEST_CASE("mpi::allreduce(StreamingCovariance) equals the serial statistics of all rows",
                   "[mpi][statistics]", float, double) {
  using T = TestType;
  const wproj::mpi::Communicator comm;
  const wproj::Index n = 157, d = 7, c = 3;
  StatsMat<T> x = wproj::gaussianMatrix<StatsMat<T>>(n, d, 11);
  for (wproj::Index j = 0; j < d; ++j) x.col(j).array() = x.col(j).array() * T(1 + j) + T(5 - 2 * j);
  const StatsMat<T> z = wproj::gaussianMatrix<StatsMat<T>>(n, c, 12);
  wproj::StreamingCovariance<T> serial(d, c);
  serial.update(x, z);
  for (int variant = 0; variant < 2; ++variant) {
    const auto counts = statsRowCounts(n, comm.size(), variant);
    const wproj::Index first = statsFirstRow(counts, comm.rank()), mine = counts[std::size_t(comm.rank())];
    wproj::StreamingCovariance<T> local(d, c);
    for (wproj::Index b = 0; b < mine; b += 11) {
      const wproj::Index m = std::min<wproj::Index>(11, mine - b);
      local.update(x.middleRows(first + b, m), z.middleRows(first + b, m));
    }
    REQUIRE(local.count() == mine);
    wproj::mpi::allreduce(local, comm);
    CHECK(local.count() == n);
    CHECK(statsRelDiff(local.meanX(), serial.meanX()) < statsTol<T>());
    CHECK(statsRelDiff(local.meanZ(), serial.meanZ()) < statsTol<T>());
    CHECK(statsRelDiff(local.scatterX(), serial.scatterX()) < statsTol<T>());
    CHECK(statsRelDiff(local.scatterXZ(), serial.scatterXZ()) < statsTol<T>());
    CHECK(statsRelDiff(local.covariance(), serial.covariance()) < statsTol<T>());
  }
  // x-only accumulators (zDim = 0) merge too.
  wproj::StreamingCovariance<T> serialX(d), localX(d);
  serialX.update(x);
  const auto counts = statsRowCounts(n, comm.size(), 0);
  if (counts[std::size_t(comm.rank())] > 0)
    localX.update(x.middleRows(statsFirstRow(counts, comm.rank()), counts[std::size_t(comm.rank())]));
  wproj::mpi::allreduce(localX, comm);
  CHECK(localX.count() == n);
  CHECK(statsRelDiff(localX.scatterX(), serialX.scatterX()) < statsTol<T>());
}

TEST_CASE("mpi::allreduce(StreamingCovariance): no samples anywhere, and mismatched dimensions", "[mpi][statistics]") {
  const wproj::mpi::Communicator comm;
  wproj::StreamingCovariance<double> empty(4, 2);
  wproj::mpi::allreduce(empty, comm);
  CHECK(empty.count() == 0);
  CHECK(empty.xDim() == 4);
  CHECK(empty.zDim() == 2);
  if (comm.size() > 1) {
    wproj::StreamingCovariance<double> odd(4, comm.rank() == 1 ? 3 : 2);
    CHECK_THROWS_AS(wproj::mpi::allreduce(odd, comm), wproj::CollectiveError);
  }
  wproj::StreamingCovariance<double> unset;  // no dimensions on any rank
  CHECK_THROWS_AS(wproj::mpi::allreduce(unset, comm), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("mpi::fitLeace equals the serial LEACE eraser of all rows", "[mpi][statistics]", float, double) {
  using T = TestType;
  const wproj::mpi::Communicator comm;
  const wproj::Index n = 211, d = 6;
  const int classes = 3;
  StatsMat<T> x = wproj::gaussianMatrix<StatsMat<T>>(n, d, 21);
  wproj::Labels labels(n);
  for (wproj::Index i = 0; i < n; ++i) {
    labels(i) = int((i * 7) % classes);
    x(i, labels(i)) += T(2);  // class-dependent mean shift
    x(i, 5) += T(0.5) * T(labels(i)) + T(3);
  }
  wproj::LeaceFitter<T> serialFit(d, classes);
  serialFit.update(x, labels);
  const wproj::LeaceEraser<T> serial = serialFit.eraser();
  for (int variant = 0; variant < 2; ++variant) {
    const auto counts = statsRowCounts(n, comm.size(), variant);
    const wproj::Index first = statsFirstRow(counts, comm.rank()), mine = counts[std::size_t(comm.rank())];
    wproj::LeaceFitter<T> fitter(d, classes);
    for (wproj::Index b = 0; b < mine; b += 16) {
      const wproj::Index m = std::min<wproj::Index>(16, mine - b);
      fitter.update(x.middleRows(first + b, m), labels.segment(first + b, m));
    }
    const wproj::LeaceEraser<T> eraser = wproj::mpi::fitLeace(fitter, comm);
    REQUIRE(fitter.statistics().count() == n);
    REQUIRE(eraser.rank() == serial.rank());
    CHECK(eraser.rank() == classes - 1);
    CHECK(statsRelDiff(eraser.projector(), serial.projector()) < 50 * statsTol<T>());
    CHECK(statsRelDiff(eraser.bias(), serial.bias()) < statsTol<T>());
    // LEACE's guarantee: after erasure every class has the same mean.
    const StatsMat<T> erased = eraser.erase(x);
    StatsMat<T> means = StatsMat<T>::Zero(classes, d);
    Eigen::VectorXd sizes = Eigen::VectorXd::Zero(classes);
    for (wproj::Index i = 0; i < n; ++i) {
      means.row(labels(i)) += erased.row(i);
      sizes(labels(i)) += 1;
    }
    for (int k = 0; k < classes; ++k) means.row(k) /= T(sizes(k));
    for (int k = 1; k < classes; ++k) CHECK(statsRelDiff(means.row(k), means.row(0)) < 50 * statsTol<T>());
  }
}

// Double only: the float instantiation of the serial DAMA oracle (PLS, LDLT, the subspace's rank
// rule) would add about a quarter of this file's compile time; the algorithm is scalar-generic.
TEMPLATE_TEST_CASE("mpi::fitDama and mpi::fitPls equal the serial DAMA and PLS fits of all rows", "[mpi][statistics]", float,
                   double) {
  using T = TestType;
  const wproj::mpi::Communicator comm;
  const wproj::Index n = 90, d = 8, t = 3, r = 3;
  StatsMat<T> x = wproj::gaussianMatrix<StatsMat<T>>(n, d, 31);
  for (wproj::Index j = 0; j < d; ++j) x.col(j) *= T(1 + 0.4 * double(j));
  x.col(2).array() += T(5);  // a mean far from 0
  const StatsMat<T> b = wproj::gaussianMatrix<StatsMat<T>>(d, t, 32);
  const StatsMat<T> y = x * b + T(0.1) * wproj::gaussianMatrix<StatsMat<T>>(n, t, 33);
  StatsMat<T> c = wproj::gaussianMatrix<StatsMat<T>>(d, d, 34);
  c = (c * c.transpose() / T(d)).eval();
  const double tol = std::is_same<T, float>::value ? 2e-3 : 1e-8;
  for (int whiten = 0; whiten < 2; ++whiten) {
    wproj::DamaEstimator<T> serial;
    serial.setRank(r).setPlsIterations(500, 1e-10);
    if (whiten) serial.setWhitening(c, 5.0);
    serial.fit(x, y);
    for (int variant = 0; variant < 2; ++variant) {
      const auto counts = statsRowCounts(n, comm.size(), variant);
      const wproj::Index first = statsFirstRow(counts, comm.rank()), mine = counts[std::size_t(comm.rank())];
      wproj::DamaEstimator<T> dist;
      dist.setRank(r).setPlsIterations(500, 1e-10);
      if (whiten) dist.setWhitening(c, 5.0);
      wproj::mpi::fitDama(dist, x.middleRows(first, mine), y.middleRows(first, mine), comm);
      REQUIRE(dist.pls().components() == r);
      CHECK(dist.info() == serial.info());
      CHECK(dist.pls().samples() == n);
      CHECK(statsRelDiff(dist.xWeights(), serial.xWeights()) < tol);
      CHECK(statsRelDiff(dist.pls().yWeights(), serial.pls().yWeights()) < tol);
      CHECK(statsRelDiff(dist.pls().xLoadings(), serial.pls().xLoadings()) < tol);
      CHECK(statsRelDiff(dist.pls().yLoadings(), serial.pls().yLoadings()) < tol);
      CHECK(statsRelDiff(dist.pls().xMean(), serial.pls().xMean()) < tol);
      CHECK(statsRelDiff(dist.pls().xScores(), serial.pls().xScores().middleRows(first, mine)) < tol);
      CHECK(statsRelDiff(dist.subspace().projector(), serial.subspace().projector()) < tol);
      // The estimator is serial again afterwards: a plain fit on all rows gives the serial result.
      dist.fit(x, y);
      CHECK(statsRelDiff(dist.xWeights(), serial.xWeights()) == 0);
    }
  }
  // PLS on its own, with a Y column that is exhausted after the first component (a constant
  // multiple of the first score direction) and more components than Y can feed.
  {
    StatsMat<T> y2(n, 2);
    y2.col(0) = x.col(0);
    y2.col(1) = y.col(1);
    wproj::PartialLeastSquares<T> serial;
    serial.setComponents(4).compute(x, y2);
    const auto counts = statsRowCounts(n, comm.size(), 1);
    const wproj::Index first = statsFirstRow(counts, comm.rank()), mine = counts[std::size_t(comm.rank())];
    wproj::PartialLeastSquares<T> dist;
    dist.setComponents(4);
    wproj::mpi::fitPls(dist, x.middleRows(first, mine), y2.middleRows(first, mine), comm);
    REQUIRE(dist.components() == serial.components());
    CHECK(dist.info() == serial.info());
    CHECK(dist.iterations() == serial.iterations());
    CHECK(statsRelDiff(dist.xWeights(), serial.xWeights()) < tol);
    CHECK(statsRelDiff(dist.yLoadings(), serial.yLoadings()) < tol);
  }
  // Too many components for the number of samples: InvalidArgument on every rank.
  wproj::DamaEstimator<T> tooMany;
  tooMany.setRank(n);
  const auto counts = statsRowCounts(n, comm.size(), 0);
  const wproj::Index first = statsFirstRow(counts, comm.rank()), mine = counts[std::size_t(comm.rank())];
  CHECK_THROWS_AS(wproj::mpi::fitDama(tooMany, x.middleRows(first, mine), y.middleRows(first, mine), comm),
                  wproj::InvalidArgument);
  // A non-finite entry on one rank: CollectiveError on every rank.
  StatsMat<T> bad = x.middleRows(first, mine);
  if (comm.rank() == comm.size() - 1 && bad.rows() > 0) bad(0, 0) = std::numeric_limits<T>::quiet_NaN();
  wproj::DamaEstimator<T> dama;
  dama.setRank(2);
  if (comm.size() > 1 || bad.rows() > 0)
    CHECK_THROWS_AS(wproj::mpi::fitDama(dama, bad, y.middleRows(first, mine), comm), wproj::CollectiveError);
  // Different settings on different ranks: CollectiveError on every rank, nobody left waiting.
  if (comm.size() > 1) {
    wproj::PartialLeastSquares<T> odd;
    odd.setComponents(comm.rank() == 1 ? 3 : 2);
    CHECK_THROWS_AS(wproj::mpi::fitPls(odd, x.middleRows(first, mine), y.middleRows(first, mine), comm),
                    wproj::CollectiveError);
  }
}

TEMPLATE_TEST_CASE("mpi::fitInlp equals the serial INLP with logistic regression on all rows", "[mpi][statistics]", float,
                   double) {
  using T = TestType;
  const wproj::mpi::Communicator comm;
  const wproj::Index n = 120, d = 6;
  // Labels that depend on the first two coordinates; the rows are sorted by label, so with the
  // uneven splits some ranks hold one class only and some no rows at all.
  for (int classes = 2; classes <= 3; ++classes) {
    StatsMat<T> x = wproj::gaussianMatrix<StatsMat<T>>(n, d, 41 + classes);
    x.col(4).array() += T(3);  // a mean far from 0
    wproj::Labels z(n);
    for (wproj::Index i = 0; i < n; ++i) {
      const double v = double(x(i, 0)) + 0.5 * double(x(i, 1));
      z(i) = classes == 2 ? (v > 0.2 ? 7 : 3) : (v < -0.5 ? 1 : v < 0.5 ? 4 : 9);
    }
    std::vector<wproj::Index> order(static_cast<std::size_t>(n));
    for (wproj::Index i = 0; i < n; ++i) order[std::size_t(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](wproj::Index a, wproj::Index b) { return z(a) < z(b); });
    StatsMat<T> xs(n, d);
    wproj::Labels zs(n);
    for (wproj::Index i = 0; i < n; ++i) {
      xs.row(i) = x.row(order[std::size_t(i)]);
      zs(i) = z(order[std::size_t(i)]);
    }
    for (int balanced = 0; balanced < 2; ++balanced) {
      wproj::LogisticRegression<T> clf;
      clf.setC(0.5).setBalanced(balanced != 0);
      wproj::InlpEstimator<T, wproj::LogisticRegression<T>> serial(clf);
      serial.setIterations(4);
      serial.fit(xs, zs);
      REQUIRE(serial.classifiersKept() >= 2);
      for (int variant = 0; variant < 2; ++variant) {
        const auto counts = statsRowCounts(n, comm.size(), variant);
        const wproj::Index first = statsFirstRow(counts, comm.rank()), mine = counts[std::size_t(comm.rank())];
        wproj::InlpEstimator<T, wproj::LogisticRegression<T>> dist(clf);
        dist.setIterations(4);
        wproj::mpi::fitInlp(dist, xs.middleRows(first, mine), wproj::Labels(zs.segment(first, mine)), comm);
        REQUIRE(dist.classifiersKept() == serial.classifiersKept());
        CHECK(dist.majorityAccuracy() == serial.majorityAccuracy());
        REQUIRE(dist.accuracies().size() == serial.accuracies().size());
        // (a prediction on the decision boundary may flip with the rounding of the weights)
        for (std::size_t i = 0; i < serial.accuracies().size(); ++i)
          CHECK(std::abs(dist.accuracies()[i] - serial.accuracies()[i]) <= 1.5 / double(n));
        const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-9;
        for (std::size_t i = 0; i < serial.classifierWeights().size(); ++i)
          CHECK(statsRelDiff(dist.classifierWeights()[i], serial.classifierWeights()[i]) < tol);
        CHECK(statsRelDiff(dist.subspace().projector(), serial.subspace().projector()) < tol);
        // Every rank holds the same subspace (bit for bit: the reduced sums are the same everywhere).
        StatsMat<T> p = dist.subspace().projector();
        StatsMat<T> p0 = p;
        comm.broadcast(p0, 0);
        CHECK((p.array() == p0.array()).all());
      }
    }
  }
  // A non-finite entry on one rank: CollectiveError on every rank.
  StatsMat<T> x = wproj::gaussianMatrix<StatsMat<T>>(30, 4, 50);
  wproj::Labels z(30);
  for (wproj::Index i = 0; i < 30; ++i) z(i) = x(i, 0) > 0 ? 1 : 0;
  if (comm.rank() == comm.size() - 1) x(0, 0) = std::numeric_limits<T>::quiet_NaN();
  wproj::InlpEstimator<T, wproj::LogisticRegression<T>> bad;
  CHECK_THROWS_AS(wproj::mpi::fitInlp(bad, x, z, comm), wproj::CollectiveError);
  // One class over all ranks: InvalidArgument on every rank.
  wproj::InlpEstimator<T, wproj::LogisticRegression<T>> one;
  CHECK_THROWS_AS(wproj::mpi::fitInlp(one, StatsMat<T>(x.bottomRows(5)), wproj::Labels(wproj::Labels::Constant(5, 2)), comm),
                  wproj::InvalidArgument);
  // LinearSVM cannot fit samples split over processes.
  wproj::InlpEstimator<T> svm;
  CHECK_THROWS_AS(svm.setSampleReduction(wproj::mpi::sampleReduction(comm)), wproj::InvalidArgument);
}
