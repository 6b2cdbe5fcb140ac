#include "test_common.hpp"

#include <wproj/linalg/dct.hpp>

#include <set>

using namespace wproj_test;
using wproj::DCT;
using wproj::DCTAlgorithm;
using wproj::ScoreNorm;

namespace {

/// The DCT-II formula evaluated directly in double: y_k = α_k Σ_j x_j cos(π(2j+1)k/(2N)).
Vec<double> dctFormula(const Vec<double>& x) {
  const Index n = x.size();
  const double pi = 3.14159265358979323846;
  Vec<double> y(n);
  for (Index k = 0; k < n; ++k) {
    double s = 0;
    for (Index j = 0; j < n; ++j) s += x(j) * std::cos(pi * double((2 * j + 1) * k) / double(2 * n));
    y(k) = s * (k == 0 ? std::sqrt(1.0 / double(n)) : std::sqrt(2.0 / double(n)));
  }
  return y;
}

}  // namespace

TEST_CASE("dctMatrix matches scipy.fft.dct(norm='ortho') and is orthogonal", "[dct]") {
  // scipy.fft.dct([1, 2, 3, 4], norm='ortho') = [5, -2.2304424973876635, 0, -0.15851266778110726]
  Eigen::Vector4d x(1, 2, 3, 4);
  const Eigen::Vector4d y = wproj::dctMatrix<double>(4) * x;
  CHECK(std::abs(y(0) - 5.0) < 1e-14);
  CHECK(std::abs(y(1) + 2.2304424973876635) < 1e-14);
  CHECK(std::abs(y(2)) < 1e-14);
  CHECK(std::abs(y(3) + 0.15851266778110726) < 1e-14);
  for (Index n : {1, 2, 3, 7, 16, 45}) {
    const Mat<double> c = wproj::dctMatrix<double>(n);
    CHECK(orthoError(c) < 1e-13);
    const Vec<double> v = gaussian<double>(n, 1, 3 + n);
    CHECK((c * v - dctFormula(v)).norm() < 1e-13 * std::sqrt(double(n)));
  }
  CHECK((wproj::dctMatrix<float>(9).template cast<double>() - wproj::dctMatrix<double>(9)).norm() < 1e-6);
}

TEMPLATE_TEST_CASE("Fast (Makhoul/FFT) and dense DCTs agree with the formula", "[dct]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 2e-5 : 1e-12;
  for (Index n : {1, 2, 3, 5, 8, 12, 31, 64, 97, 128}) {
    CAPTURE(n);
    const Mat<T> x = gaussian<T>(7, n, 40 + n);  // 7 rows of length n
    Mat<double> ref(7, n);
    for (Index i = 0; i < 7; ++i) ref.row(i) = dctFormula(x.row(i).transpose().template cast<double>()).transpose();
    const double scale = ref.norm();
    for (DCTAlgorithm alg : {DCTAlgorithm::Dense, DCTAlgorithm::Fast, DCTAlgorithm::Auto}) {
      const Mat<T> rows = wproj::dctOfRows(x, alg);
      CHECK((rows.template cast<double>() - ref).norm() < tol * scale);
      const Mat<T> cols = wproj::dctOfColumns(Mat<T>(x.transpose()), alg);
      CHECK((cols.template cast<double>() - ref.transpose()).norm() < tol * scale);
      // Inverses (DCT-III) undo the forward transforms.
      CHECK((wproj::idctOfRows(rows, alg) - x).norm() < tol * scale);
      CHECK((wproj::idctOfColumns(cols, alg) - x.transpose()).norm() < tol * scale);
    }
    // Inverse against the explicit transpose.
    const Mat<double> c = wproj::dctMatrix<double>(n);
    CHECK((wproj::idctOfRows(x, DCTAlgorithm::Fast).template cast<double>() - x.template cast<double>() * c).norm() <
          tol * scale);
  }
}

TEMPLATE_TEST_CASE("DCT of row-major maps and reuse of a plan", "[dct]", float, double) {
  using T = TestType;
  const Index m = 20, n = 48;
  const Mat<T> x = gaussian<T>(m, n, 5);
  RowMajorMat<T> rm = x;
  Eigen::Map<const RowMajorMat<T>> map(rm.data(), m, n);
  DCT<T> fast(n, DCTAlgorithm::Fast), dense(n, DCTAlgorithm::Dense);
  const Mat<T> a = fast.ofRows(map), b = dense.ofRows(x);
  CHECK((a - b).norm() < 1e3 * eps<T>() * x.norm());
  // The same plan transforms many inputs.
  for (int rep = 0; rep < 3; ++rep) {
    const Mat<T> y = gaussian<T>(m, n, 60 + rep);
    CHECK((fast.ofRows(y) - dense.ofRows(y)).norm() < 1e3 * eps<T>() * y.norm());
  }
  // Orthonormal transform: the Frobenius norm is preserved.
  CHECK(std::abs(a.norm() - x.norm()) < 1e3 * eps<T>() * x.norm());
}

TEMPLATE_TEST_CASE("Batched fast DCT: many vectors, mixed radices, threads, layouts, expressions", "[dct]", float,
                   double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 5e-5 : 1e-11;
  // 75 vectors: two full batches of 2·Lanes (float) or four (double) plus a partial one; lengths
  // with every radix of the plan (4, 2, 3, 5, 7, a large prime factor 43) and a prime.
  for (Index n : {172, 210, 256, 343, 4096 / 4, 101}) {
    CAPTURE(n);
    const Index count = 75;
    const Mat<T> x = gaussian<T>(count, n, 500 + n);
    const Mat<double> c = wproj::dctMatrix<double>(n);
    const Mat<double> ref = x.template cast<double>() * c.transpose();
    DCT<T> fast(n, DCTAlgorithm::Fast);
    fast.setThreads(1);
    const Mat<T> one = fast.ofRows(x);
    CHECK((one.template cast<double>() - ref).norm() < tol * ref.norm());
    // Threads split the batches; the arithmetic per vector is unchanged: bit-identical.
    for (int t : {2, 3, 0}) {
      fast.setThreads(t);
      CHECK(fast.ofRows(x) == one);
    }
    // The 75 vectors above are one chunk (a thread's unit of work), so they run on one thread
    // whatever the setting; 1100 vectors are 3 (float) or 5 (double) chunks and do split.
    const Mat<T> big = gaussian<T>(1100, n, 700 + n);
    fast.setThreads(1);
    const Mat<T> bigOne = fast.ofRows(big), bigInv = fast.inverseOfRows(big);
    const Mat<T> bigCols = fast.ofColumns(Mat<T>(big.transpose()));
    for (int t : {2, 3}) {
      fast.setThreads(t);
      CHECK(fast.ofRows(big) == bigOne);
      CHECK(fast.inverseOfRows(big) == bigInv);
      CHECK(fast.ofColumns(Mat<T>(big.transpose())) == bigCols);
    }
    CHECK((bigOne.template cast<double>() - big.template cast<double>() * c.transpose()).norm() <
          tol * bigOne.template cast<double>().norm());
    fast.setThreads(0);
    // Columns of a row-major map, a column block and an expression give the same numbers.
    RowMajorMat<T> rm = x.transpose();
    Eigen::Map<const RowMajorMat<T>> map(rm.data(), n, count);
    CHECK(Mat<T>(fast.ofColumns(map).transpose()) == one);
    const Mat<T> wide = gaussian<T>(n, count + 9, 7);
    Mat<T> withBlock = wide;
    withBlock.leftCols(count) = x.transpose();
    CHECK(Mat<T>(fast.ofColumns(withBlock.leftCols(count)).transpose()) == one);
    CHECK((fast.ofRows(x * T(2)) - T(2) * one).norm() <= tol * one.norm());
    // Inverse of the forward transform, through both layouts.
    CHECK((fast.inverseOfRows(one) - x).norm() < tol * x.norm());
    CHECK((fast.inverseOfColumns(Mat<T>(one.transpose())) - Mat<T>(x.transpose())).norm() < tol * x.norm());
  }
}

TEST_CASE("DCT cost model", "[dct]") {
  CHECK_FALSE(DCT<float>::fastIsCheaper(16));
  CHECK_FALSE(DCT<float>::fastIsCheaper(128));
  CHECK(DCT<float>::fastIsCheaper(4096));
  CHECK(DCT<float>::fastIsCheaper(11008));       // 2^8 · 43
  CHECK_FALSE(DCT<float>::fastIsCheaper(4099));  // prime: the FFT degenerates to O(N²)
  CHECK(DCT<float>::largestPrimeFactor(11008) == 43);
  CHECK(DCT<float>::largestPrimeFactor(1) == 1);
  CHECK(DCT<float>::largestPrimeFactor(97) == 97);
  CHECK(DCT<double>(4096).usesFast());
  CHECK_FALSE(DCT<double>(4096, DCTAlgorithm::Dense).usesFast());
  CHECK(DCT<double>(8, DCTAlgorithm::Fast).usesFast());
}

TEST_CASE("Column/row scores and top-r selection", "[dct]") {
  Eigen::MatrixXd x(3, 4);
  x << 1, -5, 0, 2,  //
      -1, 0, 0, -2,  //
      1, 1, 3, 0;
  const Eigen::VectorXd l1 = wproj::columnScores(x, ScoreNorm::L1);
  CHECK(l1(0) == 3);
  CHECK(l1(1) == 6);
  CHECK(l1(2) == 3);
  CHECK(l1(3) == 4);
  const Eigen::VectorXd l2 = wproj::columnScores(x, ScoreNorm::L2);
  CHECK(std::abs(l2(1) - std::sqrt(26.0)) < 1e-15);
  const auto top = wproj::topIndices(l1, 3);
  REQUIRE(top.size() == 3);
  CHECK(top[0] == 1);
  CHECK(top[1] == 3);
  CHECK(top[2] == 0);  // tie with column 2: smaller index first
  const auto topL2 = wproj::topIndices(l2, 2);  // 5.10, 3, 3, 2.83
  CHECK(topL2[0] == 1);
  CHECK(topL2[1] == 2);
  const Eigen::VectorXd r1 = wproj::rowScores(x, ScoreNorm::L1);
  CHECK(r1(0) == 8);
  CHECK(r1(1) == 3);
  CHECK(r1(2) == 5);
  CHECK_THROWS_AS(wproj::topIndices(l1, 0), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::topIndices(l1, 5), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("dctSelect keeps the dominant DCT frequencies (GaLore DCT variant)", "[dct]", float, double) {
  using T = TestType;
  const Index m = 60, n = 40, r = 5;
  // G = A·C[idx, :] with known frequencies: its row DCT lives on exactly those columns.
  const std::vector<Index> freq = {3, 17, 0, 29, 8};
  const Mat<double> c = wproj::dctMatrix<double>(n);
  Mat<double> coeff = gaussian<double>(m, r, 77);
  for (Index j = 0; j < r; ++j) coeff.col(j) *= double(10 - j);  // distinct scores
  Mat<double> g = Mat<double>::Zero(m, n);
  for (Index j = 0; j < r; ++j) g += coeff.col(j) * c.row(freq[std::size_t(j)]);
  g += 1e-3 * gaussian<double>(m, n, 78);
  const Mat<T> gt = g.cast<T>();
  const auto sel = wproj::dctSelect(gt, r, wproj::Side::Right);
  CHECK(std::set<Index>(sel.indices.begin(), sel.indices.end()) == std::set<Index>(freq.begin(), freq.end()));
  REQUIRE(sel.projected.rows() == m);
  REQUIRE(sel.projected.cols() == r);
  // projected = G·Q[:, idx] with Q = Cᵀ.
  for (Index j = 0; j < r; ++j) {
    const Vec<double> expect = g * c.row(sel.indices[std::size_t(j)]).transpose();
    CHECK((sel.projected.col(j).template cast<double>() - expect).norm() < 1e-4 * g.norm());
  }
  // Left side: transpose problem, rows of C G.
  const Mat<T> gl = gt.transpose();
  const auto left = wproj::dctSelect(gl, r, wproj::Side::Left, ScoreNorm::L2);
  CHECK(std::set<Index>(left.indices.begin(), left.indices.end()) == std::set<Index>(freq.begin(), freq.end()));
  CHECK(left.projected.rows() == r);
  CHECK(left.projected.cols() == m);
}

TEMPLATE_TEST_CASE("Streaming DCT scores and selection equal the stored transform's", "[dct]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-10;
  const Index n = 192, count = 75, r = 9;  // 192 = 4·4·4·3; 75 vectors: two full batches + a partial one
  const Mat<T> g = gaussian<T>(count, n, 91);  // rows are the vectors (Side::Right)
  DCT<T> fast(n, DCTAlgorithm::Fast), dense(n, DCTAlgorithm::Dense);
  const Mat<T> s = dense.ofRows(g);
  for (ScoreNorm norm : {ScoreNorm::L1, ScoreNorm::L2}) {
    const Eigen::VectorXd ref = wproj::columnScores(s, norm);
    fast.setThreads(1);
    const Eigen::VectorXd one = fast.scoresOfRows(g, norm);
    CHECK((one - ref).norm() < tol * ref.norm());
    fast.setThreads(2);
    CHECK(fast.scoresOfRows(g, norm) == one);  // chunked partial sums: independent of the threads
    // Enough vectors for several chunks, so that two and three threads really split the work.
    const Mat<T> big = gaussian<T>(1100, n, 92);
    fast.setThreads(1);
    const Eigen::VectorXd bigOne = fast.scoresOfRows(big, norm);
    CHECK((bigOne - wproj::columnScores(dense.ofRows(big), norm)).norm() < tol * bigOne.norm());
    for (int t : {2, 3}) {
      fast.setThreads(t);
      CHECK(fast.scoresOfRows(big, norm) == bigOne);
    }
    const Mat<T> gt = g.transpose();
    CHECK((fast.scoresOfColumns(gt, norm) - wproj::rowScores(Mat<T>(s.transpose()), norm)).norm() < tol * ref.norm());
    CHECK((dense.scoresOfRows(g, norm) - ref).norm() < tol * ref.norm());
  }
  const std::vector<Index> idx = {5, 0, 191, 64, 7};
  const Mat<T> sel = fast.selectedOfRows(g, idx);
  const Mat<T> selT = fast.selectedOfColumns(Mat<T>(g.transpose()), idx);
  REQUIRE(sel.rows() == count);
  REQUIRE(sel.cols() == 5);
  REQUIRE(selT.rows() == 5);
  REQUIRE(selT.cols() == count);
  for (Index j = 0; j < 5; ++j) {
    CHECK((sel.col(j) - s.col(idx[std::size_t(j)])).norm() < tol * s.norm());
    CHECK((selT.row(j).transpose() - s.col(idx[std::size_t(j)])).norm() < tol * s.norm());
  }
  // dctSelect / dctTopIndices through the fast path agree with the dense path on both sides.
  for (wproj::Side side : {wproj::Side::Right, wproj::Side::Left}) {
    const Mat<T> x = side == wproj::Side::Right ? g : Mat<T>(g.transpose());
    const auto a = wproj::dctSelect(x, r, side, ScoreNorm::L1, DCTAlgorithm::Fast);
    const auto b = wproj::dctSelect(x, r, side, ScoreNorm::L1, DCTAlgorithm::Dense);
    CHECK(a.indices == b.indices);
    CHECK(wproj::dctTopIndices(x, r, side, ScoreNorm::L1, DCTAlgorithm::Fast) == a.indices);
    CHECK((a.projected - b.projected).norm() < tol * b.projected.norm());
  }
  // Non-finite input is reported, never transformed silently.
  Mat<T> bad = g;
  bad(40, 3) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_AS(fast.scoresOfRows(bad), wproj::InvalidArgument);
  CHECK_THROWS_AS(fast.ofRows(bad), wproj::InvalidArgument);
  bad(40, 3) = std::numeric_limits<T>::infinity();
  CHECK_THROWS_AS(fast.ofColumns(Mat<T>(bad.transpose())), wproj::InvalidArgument);
  CHECK_THROWS_AS(fast.selectedOfRows(g, {n}), wproj::InvalidArgument);
}

TEST_CASE("DCT functions reject invalid arguments", "[dct][errors]") {
  using wproj::InvalidArgument;
  CHECK_THROWS_AS(wproj::dctMatrix<double>(0), InvalidArgument);
  CHECK_THROWS_AS(DCT<double>(0), InvalidArgument);
  CHECK_THROWS_AS(wproj::dctOfRows(Eigen::MatrixXd(3, 0)), InvalidArgument);
  DCT<double> d(4);
  CHECK_THROWS_AS(d.ofRows(Eigen::MatrixXd::Ones(2, 5)), InvalidArgument);
  CHECK_THROWS_AS(d.ofColumns(Eigen::MatrixXd::Ones(5, 2)), InvalidArgument);
  Eigen::MatrixXd bad = Eigen::MatrixXd::Ones(2, 4);
  bad(1, 2) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(d.ofRows(bad), InvalidArgument);
  CHECK_THROWS_AS(wproj::dctSelect(Eigen::MatrixXd::Ones(6, 4), 5, wproj::Side::Right), InvalidArgument);
  CHECK_THROWS_AS(wproj::dctSelect(Eigen::MatrixXd::Ones(6, 4), 0, wproj::Side::Left), InvalidArgument);
}
