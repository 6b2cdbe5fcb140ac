// Tests of the distributed randomized SVD: every rank builds the same full A (deterministic from a
// seed) with a known spectrum, takes its row block, and compares the distributed result with the
// serial RandomizedSVD of the full A (same settings) and with the oracles: orthonormal U (over all
// ranks) and V, and the reconstruction error against the optimal truncation.
#include <catch2/catch.hpp>

#include <wproj/mpi.hpp>
#include <wproj/linalg/randomized_svd.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <string>
#include <vector>

namespace {

using wproj::Index;

wproj::mpi::Communicator svdtWorld() { return wproj::mpi::Communicator(); }

template <typename S>
using SvdtMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;

// A = U0 diag(sigma) V0ᵀ with orthonormal U0 (m×r), V0 (n×r) from Gaussian blocks.
template <typename S>
SvdtMat<S> svdtMatrix(Index m, Index n, const Eigen::VectorXd& sigma, std::uint64_t seed) {
  const Index r = sigma.size();
  const Eigen::MatrixXd u0 = wproj::orthonormalized(wproj::gaussianMatrix<Eigen::MatrixXd>(m, r, seed, 7));
  const Eigen::MatrixXd v0 = wproj::orthonormalized(wproj::gaussianMatrix<Eigen::MatrixXd>(n, r, seed, 8));
  return (u0 * sigma.asDiagonal() * v0.transpose()).cast<S>();
}

// sigma_i = 10·0.8^i (gaps of 20%: well-defined singular vectors).
Eigen::VectorXd svdtGeometric(Index r) {
  Eigen::VectorXd s(r);
  for (Index i = 0; i < r; ++i) s(i) = 10.0 * std::pow(0.8, double(i));
  return s;
}

// Row counts of a custom partition: rank 1 holds no rows (with ≥ 2 ranks), the others hold
// uneven shares (weights r + 1).
std::vector<Index> svdtUnevenCounts(Index m, int p) {
  std::vector<Index> counts(std::size_t(p), 0);
  if (p == 1) {
    counts[0] = m;
    return counts;
  }
  Index weightSum = 0;
  for (int r = 0; r < p; ++r)
    if (r != 1) weightSum += r + 1;
  Index given = 0;
  for (int r = 0; r < p; ++r) {
    if (r == 1) continue;
    counts[std::size_t(r)] = m * (r + 1) / weightSum;
    given += counts[std::size_t(r)];
  }
  counts[0] += m - given;
  return counts;
}

template <typename S>
struct SvdtTol {
  // Measured differences are ≈ 2e-7 (float) and 1e-15 (double): the tolerances leave 10× to 100×.
  static double values() { return std::is_same<S, float>::value ? 5e-6 : 5e-14; }
  static double vectors() { return std::is_same<S, float>::value ? 2e-5 : 1e-12; }
  static double ortho() { return std::is_same<S, float>::value ? 1e-5 : 1e-13; }
};

// ‖UᵀU − I‖_F over all ranks.
template <typename S>
double svdtGlobalOrtho(const wproj::mpi::Communicator& comm, const SvdtMat<S>& uLocal) {
  Eigen::MatrixXd g = Eigen::MatrixXd::Zero(uLocal.cols(), uLocal.cols());
  if (uLocal.rows() > 0) g = uLocal.template cast<double>().transpose() * uLocal.template cast<double>();
  comm.allreduceSum(g);
  return (g - Eigen::MatrixXd::Identity(g.rows(), g.cols())).norm();
}

// Compares the distributed decomposition with the serial one on the full A, and checks the
// oracles. `firstRow` is this rank's first row.
template <typename S>
void svdtCompare(const wproj::mpi::Communicator& comm, const wproj::mpi::DistributedRandomizedSVD<S>& dist,
                 const wproj::RandomizedSVD<SvdtMat<S>>& serial, const SvdtMat<S>& full, Index firstRow,
                 bool compareVectors = true) {
  using Tol = SvdtTol<S>;
  const Index localRows = dist.matrixU().rows();
  REQUIRE(dist.singularValues().size() == serial.singularValues().size());
  REQUIRE(dist.matrixV().rows() == full.cols());
  REQUIRE(dist.matrixV().cols() == serial.matrixV().cols());
  const double s0 = std::max(1e-300, double(serial.singularValues()(0)));
  const double valueErr =
      (dist.singularValues().template cast<double>() - serial.singularValues().template cast<double>())
          .cwiseAbs()
          .maxCoeff();
  CHECK(valueErr <= Tol::values() * s0);
  if (compareVectors) {
    const double vErr = (dist.matrixV() - serial.matrixV()).cwiseAbs().maxCoeff();
    CHECK(vErr <= Tol::vectors());
    double uErr = 0;
    if (localRows > 0)
      uErr = (dist.matrixU() - serial.matrixU().middleRows(firstRow, localRows)).cwiseAbs().maxCoeff();
    CHECK(comm.max(uErr) <= Tol::vectors());
  }
  CHECK(dist.usedExact() == serial.usedExact());
  CHECK(svdtGlobalOrtho<S>(comm, dist.matrixU()) <= Tol::ortho());
  CHECK(wproj::orthogonalityError(dist.matrixV()) <= Tol::ortho());
  // Every rank holds the same V and Σ.
  Eigen::MatrixXd v = dist.matrixV().template cast<double>();
  Eigen::MatrixXd vSum = v;
  comm.allreduceSum(vSum);
  CHECK((vSum - double(comm.size()) * v).cwiseAbs().maxCoeff() == 0.0);
}

// ‖A − UΣVᵀ‖²_F over all ranks.
template <typename S>
double svdtResidualSq(const wproj::mpi::Communicator& comm, const wproj::mpi::DistributedRandomizedSVD<S>& d,
                      const SvdtMat<S>& local) {
  double e = 0;
  if (local.rows() > 0) {
    const Eigen::MatrixXd r = local.template cast<double>() - d.matrixU().template cast<double>() *
                                                                   d.singularValues().template cast<double>().asDiagonal() *
                                                                   d.matrixV().template cast<double>().transpose();
    e = r.squaredNorm();
  }
  return comm.sum(e);
}

// A matrix-free distributed operator A = B Cᵀ, this rank holding its rows of B.
template <typename S>
struct SvdtFactoredOperator {
  using Scalar = S;
  using Matrix = SvdtMat<S>;
  Matrix bLocal, c;  // m_r×r, n×r
  Index first = 0, global = 0;
  Index rows() const { return bLocal.rows(); }
  Index globalRows() const { return global; }
  Index firstRow() const { return first; }
  Index cols() const { return c.rows(); }
  void multiply(const Matrix& x, Matrix& y) const { y = bLocal * (c.transpose() * x); }
  void multiplyTranspose(const Matrix& y, Matrix& z) const {
    if (bLocal.rows() == 0) z = Matrix::Zero(c.rows(), y.cols());
    else z = c * (bLocal.transpose() * y);
  }
};

}  // namespace

TEST_CASE("fillGaussianSketchRows gives a full fill's rows bit for bit and advances the same", "[mpi][svd]") {
  struct Case {
    Index total, first, count, cols;
    std::uint64_t start;
  };
  const std::vector<Case> cases = {{300, 0, 300, 3, 0},   {300, 17, 100, 4, 5},  {512, 511, 1, 2, 0},
                                   {513, 500, 13, 3, 37}, {1000, 0, 0, 2, 3},    {7, 3, 4, 200, 1},
                                   {640, 128, 384, 1, 2}, {1025, 1, 1023, 2, 99}};
  for (const Case& c : cases) {
    wproj::CounterRng full(11, 3), rows(11, 3);
    full.setPosition(c.start);
    rows.setPosition(c.start);
    Eigen::MatrixXf all(c.total, c.cols);
    full.fillGaussianSketch(all);
    Eigen::MatrixXf part(c.count, c.cols);
    rows.fillGaussianSketchRows(part, c.total, c.first);
    INFO("total " << c.total << " first " << c.first << " count " << c.count << " cols " << c.cols);
    CHECK(rows.position() == full.position());
    bool same = true;
    for (Index j = 0; j < c.cols; ++j)
      for (Index i = 0; i < c.count; ++i)
        same = same && std::memcmp(&part(i, j), &all(c.first + i, j), sizeof(float)) == 0;
    CHECK(same);
    // Double targets receive the same values (converted from float).
    Eigen::MatrixXd partD(c.count, c.cols);
    wproj::CounterRng rowsD(11, 3);
    rowsD.setPosition(c.start);
    rowsD.fillGaussianSketchRows(partD.leftCols(c.cols), c.total, c.first);
    CHECK((partD - part.cast<double>()).cwiseAbs().sum() == 0.0);
  }
  wproj::CounterRng rng(1);
  Eigen::MatrixXf x(4, 2);
  CHECK_THROWS_AS(rng.fillGaussianSketchRows(x, 5, 2), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("DistributedRandomizedSVD equals the serial RandomizedSVD (tall, wide, uneven)", "[mpi][svd]",
                   float, double) {
  using S = TestType;
  const auto comm = svdtWorld();
  const int p = comm.size(), me = comm.rank();
  struct Shape {
    Index m, n;
    bool custom;
  };
  for (const Shape sh : {Shape{157, 60, false}, Shape{61, 143, false}, Shape{157, 60, true}, Shape{61, 143, true}}) {
    INFO("m " << sh.m << " n " << sh.n << " custom partition " << sh.custom << " ranks " << p);
    const Index r = 40, k = 8;
    const SvdtMat<S> full = svdtMatrix<S>(sh.m, sh.n, svdtGeometric(r), 5);
    Index first = 0, count = 0;
    if (sh.custom) {
      const auto counts = svdtUnevenCounts(sh.m, p);
      for (int q = 0; q < me; ++q) first += counts[std::size_t(q)];
      count = counts[std::size_t(me)];
    } else {
      const auto range = wproj::mpi::blockRows(sh.m, me, p);
      first = range.first;
      count = range.count;
    }
    const SvdtMat<S> local = full.middleRows(first, count);
    wproj::RandomizedSVD<SvdtMat<S>> serial;
    serial.setRank(k).setOversampling(6).setSeed(21).compute(full);
    wproj::mpi::DistributedRandomizedSVD<S> dist(comm);
    dist.setRank(k).setOversampling(6).setSeed(21);
    if (sh.custom) dist.compute(local, first);
    else dist.compute(local);
    CHECK(dist.firstRow() == first);
    CHECK(dist.globalRows() == sh.m);
    CHECK(dist.sketchSize() == serial.sketchSize());
    CHECK(dist.powerIterationsUsed() == serial.powerIterationsUsed());
    svdtCompare<S>(comm, dist, serial, full, first);
    // The error estimate reproduces the serial one (same probes).
    CHECK(std::abs(dist.errorEstimate() - serial.errorEstimate()) <= 1e-3 * serial.errorEstimate() + 1e-6);
    // Reconstruction error against the optimal rank-k truncation (known spectrum).
    const Eigen::VectorXd sig = svdtGeometric(r);
    const double optimal = sig.tail(r - k).squaredNorm();
    const double err = svdtResidualSq<S>(comm, dist, local);
    CHECK(err <= 1.001 * optimal);
    CHECK(err >= (1.0 - 1e-4) * optimal);
    CHECK(dist.repairs() == 0);
  }
}

TEMPLATE_TEST_CASE("DistributedRandomizedSVD counts its collectives as documented", "[mpi][svd]", float, double) {
  using S = TestType;
  const auto comm = svdtWorld();
  const Index p = comm.size();
  const Index r = 30, k = 5, ell = 9, q = 2, s = 4;
  for (const bool tall : {false, true}) {
    const Index m = tall ? 120 : 50, n = tall ? 50 : 120;
    const SvdtMat<S> full = svdtMatrix<S>(m, n, svdtGeometric(r), 9);
    const auto range = wproj::mpi::blockRows(m, comm.rank(), comm.size());
    const SvdtMat<S> local = full.middleRows(range.first, range.count);
    wproj::mpi::DistributedRandomizedSVD<S> dist(comm);
    dist.setRank(k).setOversampling(ell - k).setPowerIterations(q).setErrorProbes(s).setSeed(3).compute(local, range.first);
    INFO("tall " << tall);
    REQUIRE(dist.repairs() == 0);
    if (!tall) {
      // Power normalisations of a well-conditioned block take one pass.
      CHECK(dist.allreduceCalls() == 2 * q + 6);
      CHECK(dist.allreduceValues() == 5 * p + q * (ell * ell + n * ell) + 2 * ell * ell + n * ell + 1 + 3 * k * p);
    } else {
      CHECK(dist.allreduceCalls() == 2 * q + 5);
      CHECK(dist.allreduceValues() == 5 * p + n * (ell + s) + q * (ell * ell + n * ell) + ell * ell + k * s + 3 * k * p);
    }
    CHECK(dist.communicationSeconds() >= 0.0);
  }
}

TEMPLATE_TEST_CASE("DistributedRandomizedSVD: row-major maps and the operator form", "[mpi][svd]", float, double) {
  using S = TestType;
  const auto comm = svdtWorld();
  const int p = comm.size(), me = comm.rank();
  const Index m = 131, n = 57, r = 25, k = 6;
  const SvdtMat<S> full = svdtMatrix<S>(m, n, svdtGeometric(r), 13);
  const auto counts = svdtUnevenCounts(m, p);
  Index first = 0;
  for (int q = 0; q < me; ++q) first += counts[std::size_t(q)];
  const Index count = counts[std::size_t(me)];
  wproj::RandomizedSVD<SvdtMat<S>> serial;
  serial.setRank(k).setSeed(4).compute(full);

  // A row-major buffer of this rank's rows, seen through a Map.
  using RowMajor = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const RowMajor buffer = full.middleRows(first, count);
  const Eigen::Map<const RowMajor> map(buffer.data(), count, n);
  wproj::mpi::DistributedRandomizedSVD<S> dist(comm);
  dist.setRank(k).setSeed(4).compute(map, first);
  svdtCompare<S>(comm, dist, serial, full, first);

  // The dense adaptor through computeOperator.
  const SvdtMat<S> local = full.middleRows(first, count);
  wproj::mpi::DistributedRandomizedSVD<S> viaOp(comm);
  viaOp.setRank(k).setSeed(4).computeOperator(wproj::mpi::makeDistributedOperator(local, first, m));
  svdtCompare<S>(comm, viaOp, serial, full, first);

  // A matrix-free operator A = B Cᵀ (wide, so Ω is on the replicated side), against the serial
  // decomposition of the formed matrix.
  const Index m2 = 47, n2 = 150;
  const SvdtMat<S> b = wproj::gaussianMatrix<SvdtMat<S>>(m2, 12, 5, 1);
  const SvdtMat<S> c = wproj::gaussianMatrix<SvdtMat<S>>(n2, 12, 5, 2);
  const SvdtMat<S> formed = b * c.transpose();
  const auto range = wproj::mpi::blockRows(m2, me, p);
  SvdtFactoredOperator<S> op;
  op.bLocal = b.middleRows(range.first, range.count);
  op.c = c;
  op.first = range.first;
  op.global = m2;
  wproj::RandomizedSVD<SvdtMat<S>> serial2;
  serial2.setRank(4).setOversampling(4).setSeed(8).compute(formed);
  wproj::mpi::DistributedRandomizedSVD<S> dist2(comm);
  dist2.setRank(4).setOversampling(4).setSeed(8).computeOperator(op);
  svdtCompare<S>(comm, dist2, serial2, formed, range.first);
}

TEMPLATE_TEST_CASE("DistributedRandomizedSVD: exact path, rank-deficient and zero matrices", "[mpi][svd]", float,
                   double) {
  using S = TestType;
  using Tol = SvdtTol<S>;
  const auto comm = svdtWorld();
  const int p = comm.size(), me = comm.rank();
  for (const bool tall : {true, false}) {
    INFO("tall " << tall << " ranks " << p);
    const Index m = tall ? 83 : 14, n = tall ? 14 : 83;
    const auto counts = svdtUnevenCounts(m, p);
    Index first = 0;
    for (int q = 0; q < me; ++q) first += counts[std::size_t(q)];
    const Index count = counts[std::size_t(me)];

    // k ≥ min(m, n): the exact path.
    {
      const SvdtMat<S> full = svdtMatrix<S>(m, n, svdtGeometric(14), 17);
      wproj::RandomizedSVD<SvdtMat<S>> serial;
      serial.setRank(14).setSeed(2).compute(full);
      wproj::mpi::DistributedRandomizedSVD<S> dist(comm);
      dist.setRank(14).setSeed(2).compute(SvdtMat<S>(full.middleRows(first, count)), first);
      REQUIRE(dist.usedExact());
      svdtCompare<S>(comm, dist, serial, full, first);
      CHECK(dist.errorEstimate() == Approx(serial.errorEstimate()).margin(1e-6));
      // Exact on a rank-deficient A (rank 5 < min(m, n)): values match, U and V stay orthonormal.
      const SvdtMat<S> lowRank = svdtMatrix<S>(m, n, svdtGeometric(5), 19);
      serial.compute(lowRank);
      dist.compute(SvdtMat<S>(lowRank.middleRows(first, count)), first);
      svdtCompare<S>(comm, dist, serial, lowRank, first, false);
    }
    // Randomized path on A of rank 5 < ℓ = 12: null directions of the sketch are repaired.
    {
      const SvdtMat<S> full = svdtMatrix<S>(m == 83 ? 83 : 40, m == 83 ? 40 : 83, svdtGeometric(5), 23);
      const Index mm = full.rows();
      const auto counts2 = svdtUnevenCounts(mm, p);
      Index f2 = 0;
      for (int q = 0; q < me; ++q) f2 += counts2[std::size_t(q)];
      const SvdtMat<S> local = full.middleRows(f2, counts2[std::size_t(me)]);
      wproj::RandomizedSVD<SvdtMat<S>> serial;
      serial.setRank(8).setOversampling(4).setSeed(6).compute(full);
      wproj::mpi::DistributedRandomizedSVD<S> dist(comm);
      dist.setRank(8).setOversampling(4).setSeed(6).compute(local, f2);
      REQUIRE(!dist.usedExact());
      CHECK(dist.repairs() > 0);
      svdtCompare<S>(comm, dist, serial, full, f2, false);
      // The five leading triplets are defined: compare them.
      const double vErr = (dist.matrixV().leftCols(5) - serial.matrixV().leftCols(5)).cwiseAbs().maxCoeff();
      CHECK(vErr <= Tol::vectors());
      CHECK(svdtResidualSq<S>(comm, dist, local) <= 1e-8 * double(full.squaredNorm()) + (std::is_same<S, float>::value ? 1e-8 : 0.0));
    }
    // The zero matrix: zero singular values, orthonormal U and V, no NaN.
    {
      const SvdtMat<S> zero = SvdtMat<S>::Zero(count, n);
      for (const Index k : {Index(3), Index(20)}) {
        wproj::mpi::DistributedRandomizedSVD<S> dist(comm);
        dist.setRank(k).setOversampling(2).setSeed(1).compute(zero, first);
        CHECK(dist.singularValues().size() == std::min<Index>(k, std::min(m, n)));
        CHECK(dist.singularValues().cwiseAbs().maxCoeff() == S(0));
        CHECK(dist.matrixU().allFinite());
        CHECK(dist.matrixV().allFinite());
        CHECK(svdtGlobalOrtho<S>(comm, dist.matrixU()) <= Tol::ortho());
        CHECK(wproj::orthogonalityError(dist.matrixV()) <= Tol::ortho());
      }
    }
  }
}

TEST_CASE("DistributedRandomizedSVD rejects bad input on every rank", "[mpi][svd]") {
  const auto comm = svdtWorld();
  const int p = comm.size(), me = comm.rank();
  const Index m = 40, n = 30;
  const Eigen::MatrixXd full = svdtMatrix<double>(m, n, svdtGeometric(10), 3);
  const auto range = wproj::mpi::blockRows(m, me, p);
  Eigen::MatrixXd local = full.middleRows(range.first, range.count);
  wproj::mpi::DistributedRandomizedSVD<double> dist(comm);

  // No rank set: every rank throws (the settings agree).
  CHECK_THROWS_AS(dist.compute(local, range.first), wproj::InvalidArgument);
  dist.setRank(4);

  // A NaN on the last rank: InvalidArgument on every rank, naming that rank.
  Eigen::MatrixXd bad = local;
  if (me == p - 1) bad(0, 1) = std::nan("");
  try {
    dist.compute(bad, range.first);
    FAIL("no exception");
  } catch (const wproj::InvalidArgument& e) {
    CHECK_THAT(e.what(), Catch::Contains("non-finite") && Catch::Contains("rank(s) " + std::to_string(p - 1)));
  }
  // A wrong first row on the last rank (a gap in the tiling; with one rank, a start ≠ 0).
  CHECK_THROWS_AS(dist.compute(local, range.first + (me == p - 1 ? 1 : 0)), wproj::InvalidArgument);
  // Different column counts.
  const Eigen::MatrixXd narrow = local.leftCols(me == p - 1 ? n - 1 : n);
  if (p > 1) CHECK_THROWS_AS(dist.compute(narrow, range.first), wproj::InvalidArgument);
  // Different settings on one rank: CollectiveError on every rank.
  if (p > 1) {
    wproj::mpi::DistributedRandomizedSVD<double> other(comm);
    other.setRank(me == 0 ? 4 : 5);
    CHECK_THROWS_AS(other.compute(local, range.first), wproj::CollectiveError);
  }
  // An operator whose globalRows() is wrong on one rank.
  wproj::mpi::DistributedDenseOperator<Eigen::MatrixXd> op(local, range.first, me == p - 1 ? m + 1 : m);
  CHECK_THROWS_AS(dist.computeOperator(op), wproj::InvalidArgument);
  // After the failures the communicator still works: a good call succeeds on every rank.
  dist.compute(local, range.first);
  CHECK(dist.singularValues().size() == 4);
  // The input is not modified.
  CHECK(local == full.middleRows(range.first, range.count));
}

TEMPLATE_TEST_CASE("DistributedRandomizedSVD: the wide-spectrum route equals the serial one", "[mpi][svd]", float,
                   double) {
  // sigma_i = 0.2^i: sigma_7/sigma_0 ≈ 1.3e-5 lies below the Gram route's cut in float and double,
  // so Z = P R (P distributed when m > n) and Jacobi of R give the small SVD.
  using S = TestType;
  const auto comm = svdtWorld();
  const int p = comm.size(), me = comm.rank();
  Eigen::VectorXd sigma(20);
  for (Index i = 0; i < 20; ++i) sigma(i) = std::pow(0.2, double(i));
  for (const bool tall : {true, false}) {
    INFO("tall " << tall << " ranks " << p);
    const Index m = tall ? 97 : 45, n = tall ? 45 : 97;
    const SvdtMat<S> full = svdtMatrix<S>(m, n, sigma, 29);
    const auto counts = svdtUnevenCounts(m, p);
    Index first = 0;
    for (int q = 0; q < me; ++q) first += counts[std::size_t(q)];
    const Index count = counts[std::size_t(me)];
    wproj::RandomizedSVD<SvdtMat<S>> serial;
    serial.setRank(8).setOversampling(6).setSeed(12).compute(full);
    wproj::mpi::DistributedRandomizedSVD<S> dist(comm);
    dist.setRank(8).setOversampling(6).setSeed(12).compute(SvdtMat<S>(full.middleRows(first, count)), first);
    // The vectors of sigma_i are resolved to ≈ u·sigma_0/(sigma_{i-1} − sigma_i) (≈ 2e-12 in double
    // for i = 7; in float only the four leading ones are resolved well): compare accordingly.
    const bool isDouble = std::is_same<S, double>::value;
    svdtCompare<S>(comm, dist, serial, full, first, false);
    const Index nv = isDouble ? 8 : 4;
    const double tol = isDouble ? 1e-9 : 1e-4;
    const double vErr = (dist.matrixV().leftCols(nv) - serial.matrixV().leftCols(nv)).cwiseAbs().maxCoeff();
    double uErr = 0;
    if (count > 0)
      uErr = (dist.matrixU().leftCols(nv) - serial.matrixU().block(first, 0, count, nv)).cwiseAbs().maxCoeff();
    CHECK(vErr <= tol);
    CHECK(comm.max(uErr) <= tol);
    // Relative accuracy of the trailing singular values against the construction.
    for (Index i = 0; i < 8; ++i)
      CHECK(std::abs(double(dist.singularValues()(i)) - sigma(i)) <= (isDouble ? 1e-10 : 1e-5));
  }
}
