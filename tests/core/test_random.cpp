#include "test_common.hpp"

#include <set>
#include <thread>
#include <vector>

using namespace wproj_test;
using wproj::CounterRng;
using wproj::Philox4x32;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors", "[random]") {
  // Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32_10).
  const auto a = Philox4x32::block({0u, 0u, 0u, 0u}, {0u, 0u});
  CHECK(a == Philox4x32::Counter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  const auto b = Philox4x32::block({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  CHECK(b == Philox4x32::Counter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  const auto c = Philox4x32::block({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
  CHECK(c == Philox4x32::Counter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEMPLATE_TEST_CASE("Gaussian fills have the moments of N(0,1)", "[random]", float, double) {
  const Index n = 200000;
  Vec<TestType> x(n);
  CounterRng rng(12345);
  rng.fillGaussian(x);
  const double mean = x.template cast<double>().mean();
  const double var = (x.template cast<double>().array() - mean).square().sum() / double(n - 1);
  const double m4 = (x.template cast<double>().array() - mean).pow(4).sum() / double(n);
  // Standard errors: mean 1/√n ≈ 0.0022, variance √(2/n) ≈ 0.0032, 4th moment √(96/n) ≈ 0.022.
  CHECK(std::abs(mean) < 5 * 0.0023);
  CHECK(std::abs(var - 1.0) < 5 * 0.0032);
  CHECK(std::abs(m4 - 3.0) < 5 * 0.022);
  // Tail mass beyond 2σ: 4.55 %.
  const double tail = (x.template cast<double>().array().abs() > 2.0).template cast<double>().mean();
  CHECK(std::abs(tail - 0.0455) < 0.003);
}

TEST_CASE("Rademacher and uniform fills", "[random]") {
  Eigen::VectorXd r(100000), u(100000);
  CounterRng rng(7);
  rng.fillRademacher(r);
  rng.fillUniform(u, -1.0, 3.0);
  CHECK((r.array().abs() == 1.0).all());
  CHECK(std::abs(r.mean()) < 5.0 / std::sqrt(100000.0));
  CHECK(u.minCoeff() > -1.0);
  CHECK(u.maxCoeff() <= 3.0);
  CHECK(std::abs(u.mean() - 1.0) < 5 * 4.0 / std::sqrt(12.0 * 100000.0));
  // nextBelow is exactly in range and hits every value.
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto v = rng.nextBelow(7);
    REQUIRE(v < 7);
    seen.insert(v);
  }
  CHECK(seen.size() == 7);
}

TEST_CASE("A fill depends only on seed, stream and position", "[random]") {
  const auto a = wproj::gaussianMatrix<Eigen::MatrixXd>(37, 11, 99);
  const auto b = wproj::gaussianMatrix<Eigen::MatrixXd>(37, 11, 99);
  CHECK((a.array() == b.array()).all());
  const auto c = wproj::gaussianMatrix<Eigen::MatrixXd>(37, 11, 100);
  CHECK((a.array() != c.array()).any());
  const auto d = wproj::gaussianMatrix<Eigen::MatrixXd>(37, 11, 99, /*stream=*/1);
  CHECK((a.array() != d.array()).any());

  // Element (i, j) is the value at counter j·rows + i: filling blocks from different threads at
  // the matching positions reproduces the single-threaded fill bit for bit.
  Eigen::MatrixXd parallel(37, 11);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (Index j = t; j < 11; j += 4) {
        CounterRng local(99);
        local.setPosition(std::uint64_t(j) * 37);
        Eigen::VectorXd col(37);
        local.fillGaussian(col);
        parallel.col(j) = col;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK((a.array() == parallel.array()).all());

  // float fills are the double values rounded once.
  const auto f = wproj::gaussianMatrix<Eigen::MatrixXf>(37, 11, 99);
  CHECK((f.array() == a.cast<float>().array()).all());

  // Consecutive fills continue the counter sequence.
  CounterRng rng(99);
  Eigen::MatrixXd first(37, 5), second(37, 6);
  rng.fillGaussian(first);
  rng.fillGaussian(second);
  CHECK(rng.position() == 37u * 11u);
  CHECK((first.array() == a.leftCols(5).array()).all());
  CHECK((second.array() == a.rightCols(6).array()).all());
}

TEST_CASE("Pinned values guard against silent changes of the stream", "[random]") {
  // If these change, every seeded result of the library changes: bump the version and say so.
  const CounterRng rng(2024);
  CHECK(rng.gaussian(0) == 0x1.672715d7e8c69p+0);
  CHECK(rng.gaussian(1) == -0x1.41774f55eb259p+0);
  CHECK(rng.gaussian(2) == 0x1.19b274ea5c3cp+1);
  CHECK(rng.uniform(5) == 0x1.fab261861b262p-2);
  CHECK(rng.rademacher(6) == 1.0);
}

TEMPLATE_TEST_CASE("Sketch Gaussian fills: moments, bounds, determinism and layout", "[random]", float, double) {
  using T = TestType;
  const Index n = 200001;  // not a multiple of 4 or of the 512-value chunk
  Vec<T> x(n);
  CounterRng rng(12345, 3);
  rng.fillGaussianSketch(x);
  CHECK(rng.position() == std::uint64_t((n + 3) / 4));
  const Eigen::ArrayXd d = x.template cast<double>().array();
  REQUIRE(d.allFinite());
  const double mean = d.mean();
  const double var = (d - mean).square().sum() / double(n - 1);
  const double m4 = (d - mean).pow(4).sum() / double(n);
  CHECK(std::abs(mean) < 5 * 0.0023);
  CHECK(std::abs(var - 1.0) < 5 * 0.0032);
  CHECK(std::abs(m4 - 3.0) < 5 * 0.022);
  CHECK(std::abs((d.abs() > 2.0).template cast<double>().mean() - 0.0455) < 0.003);
  CHECK(d.abs().maxCoeff() <= 6.7);
  // The cosine and sine branches of one pair are uncorrelated (lag-1 correlation ≈ 0).
  const double lag1 = (d.head(n - 1) * d.tail(n - 1)).mean();
  CHECK(std::abs(lag1) < 5.0 / std::sqrt(double(n)));
  // Same seed and stream: same values; another stream or seed: different values.
  Vec<T> again(n), other(n);
  CounterRng(12345, 3).fillGaussianSketch(again);
  CounterRng(12345, 4).fillGaussianSketch(other);
  CHECK((again.array() == x.array()).all());
  CHECK((other.array() != x.array()).count() > n / 2);
  // Column-major order over matrices and blocks: a 37×11 fill equals the flat fill of 407 values,
  // and filling a block of columns through the rvalue overload writes the same values.
  Vec<T> flat(37 * 11);
  CounterRng(9, 1).fillGaussianSketch(flat);
  Mat<T> m(37, 11);
  CounterRng(9, 1).fillGaussianSketch(m);
  CHECK((Eigen::Map<const Vec<T>>(m.data(), 37 * 11).array() == flat.array()).all());
  Mat<T> wide = Mat<T>::Zero(37, 15);
  CounterRng(9, 1).fillGaussianSketch(wide.middleCols(2, 11));
  CHECK((wide.middleCols(2, 11).array() == m.array()).all());
  CHECK((wide.leftCols(2).array() == T(0)).all());
  CHECK((wide.rightCols(2).array() == T(0)).all());
}
