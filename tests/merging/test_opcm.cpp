// Tests of OPCM (continual merging by orthogonal projection): the thin-SVD projection against an
// independent full-SVD implementation, its orthogonality properties, adaptive scaling, constant
// state, bit-identical resume and the validated state format.
#include "test_common.hpp"

#include <wproj/merging/opcm.hpp>
#include <wproj/merging/opcm_streaming.hpp>

#include "data/opcm_state_v010.hpp"

#include <cstring>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace wproj_test;
using Catch::Matchers::Contains;

namespace {

/// The reference algorithm as written upstream, in double: full U (m×m) and V (n×n), P = UᵀτV,
/// zero P[:r,:r] and the diagonal, τ' = U P Vᵀ.
Mat<double> referenceProject(const Mat<double>& s, const Mat<double>& tau, double alpha, Index* rOut = nullptr) {
  Eigen::BDCSVD<Mat<double>> svd(s, Eigen::ComputeFullU | Eigen::ComputeFullV);
  const auto& sig = svd.singularValues();
  const double total = sig.sum();
  Index r = 0;
  double cum = 0;
  for (Index i = 0; i < sig.size(); ++i) {
    cum += sig(i);
    if (cum / total > alpha) {
      r = i;
      break;
    }
  }
  if (rOut) *rOut = r;
  Mat<double> p = svd.matrixU().transpose() * tau * svd.matrixV();
  for (Index i = 0; i < r; ++i)
    for (Index j = 0; j < r; ++j) p(i, j) = 0;
  for (Index i = 0; i < std::min(p.rows(), p.cols()); ++i) p(i, i) = 0;
  return svd.matrixU() * p * svd.matrixV().transpose();
}

/// Task vectors with a shared component so that projection matters.
template <typename T>
std::vector<Mat<T>> tasks(Index m, Index n, int count, std::uint64_t seed) {
  const Mat<double> shared = withSpectrum<double>(m, n, geometricSpectrum(std::min<Index>(3, std::min(m, n)), 4.0), seed);
  std::vector<Mat<T>> out;
  for (int i = 0; i < count; ++i)
    out.push_back((3.0 * shared + gaussian<double>(m, n, seed + 17 * (i + 1))).cast<T>());
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("OPCM projection equals the full-SVD reference (tall, wide, square)", "[merging][opcm]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 2e-4 : 1e-10;
  for (auto [m, n] : {std::pair<Index, Index>{24, 10}, {9, 30}, {16, 16}}) {
    for (double alpha : {0.5, 0.2, 0.9}) {
      const auto taus = tasks<T>(m, n, 5, 11 + m);
      wproj::OpcmMerging<T> opcm;
      opcm.setAlpha(alpha);
      Mat<double> sRef = taus[0].template cast<double>();
      opcm.add(taus[0]);
      for (std::size_t t = 1; t < taus.size(); ++t) {
        Index rRef = -1, r = -2;
        const Mat<double> ref = referenceProject(sRef, taus[t].template cast<double>(), alpha, &rRef);
        const Mat<T> got = wproj::opcmProject(opcm.accumulator(), taus[t], alpha, &r);
        CHECK(r == rRef);
        CHECK((got.template cast<double>() - ref).norm() <= tol * ref.norm());
        sRef += ref;
        opcm.add(taus[t]);
        CHECK((opcm.accumulator().template cast<double>() - sRef).norm() <= tol * sRef.norm());
      }
      // Adaptive scale: mean of the task-vector norms over the accumulator norm.
      double meanNorm = 0;
      for (const auto& t : taus) meanNorm += double(t.template cast<double>().norm());
      meanNorm /= double(taus.size());
      CHECK(std::abs(opcm.scale() - meanNorm / sRef.norm()) <= tol * opcm.scale());
      const Mat<double> merged = opcm.mergedDelta().template cast<double>();
      CHECK(std::abs(merged.norm() - meanNorm) <= 1e-4 * meanNorm);  // ‖λS‖ = mean ‖τ‖
    }
  }
}

TEMPLATE_TEST_CASE("the added component is orthogonal to the merged top block and to the diagonal", "[merging][opcm]",
                   float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-4 : 1e-11;
  const auto taus = tasks<T>(20, 14, 3, 5);
  const Mat<T> s = taus[0] + taus[1];
  Index r = -1;
  const Mat<T> added = wproj::opcmProject(s, taus[2], 0.5, &r);
  REQUIRE(r >= 1);
  Eigen::BDCSVD<Mat<double>> svd(s.template cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Mat<double> c = svd.matrixU().transpose() * added.template cast<double>() * svd.matrixV();
  const double scale = taus[2].template cast<double>().norm();
  CHECK(c.topLeftCorner(r, r).norm() <= tol * scale);
  CHECK(c.diagonal().norm() <= tol * scale);
  // …and nothing else was removed: the off-diagonal part outside the block is kept.
  const Mat<double> c0 = svd.matrixU().transpose() * taus[2].template cast<double>() * svd.matrixV();
  Mat<double> diff = c - c0;
  diff.topLeftCorner(r, r).setZero();
  diff.diagonal().setZero();
  CHECK(diff.norm() <= tol * scale);
  // A row-major map over a foreign buffer is accepted.
  RowMajorMat<T> rm = taus[2];
  Eigen::Map<const RowMajorMat<T>> map(rm.data(), rm.rows(), rm.cols());
  CHECK((wproj::opcmProject(s, map, 0.5) - added).norm() <= tol * scale);
}

TEMPLATE_TEST_CASE("model-level OPCM: rules, global norms, constant state, bit-identical resume", "[merging][opcm]", float,
                   double) {
  using T = TestType;
  const int models = 6;
  const std::vector<std::string> names{"fc.weight", "fc.bias", "norm.weight", "head.weight"};
  auto tensor = [](int model, const std::string& name) -> Mat<T> {
    const std::uint64_t seed = 1000 + 37 * std::uint64_t(model) + name.size();
    if (name == "fc.weight") return gaussian<T>(12, 8, seed) + gaussian<T>(12, 8, 1);
    if (name == "fc.bias") return gaussian<T>(12, 1, seed);
    if (name == "norm.weight") return gaussian<T>(8, 1, seed);
    return gaussian<T>(5, 12, seed);
  };
  auto fetchFor = [&](int model) { return [&, model](const std::string& n) { return tensor(model, n); }; };
  wproj::MergeRules rules;
  rules.add("^head\\.", wproj::TensorAction::Skip);

  wproj::OpcmMerging<T> full;
  full.setRules(rules);
  std::vector<std::size_t> bytes;
  Mat<double> sBias = Mat<double>::Zero(12, 1);
  double normSum = 0;
  for (int t = 0; t < models; ++t) {
    const auto rep = full.addModel(names, fetchFor(t));
    REQUIRE(rep.tensors.size() == names.size());
    CHECK(rep.find("head.weight")->action == wproj::TensorAction::Skip);
    CHECK(rep.find("fc.bias")->action == wproj::TensorAction::Average);
    CHECK(rep.find("fc.weight")->action == wproj::TensorAction::Project);
    if (t > 0) CHECK(rep.find("fc.weight")->rank >= 0);
    bytes.push_back(full.stateBytes());
    sBias += tensor(t, "fc.bias").template cast<double>();
    double sq = 0;
    for (const char* n : {"fc.weight", "fc.bias", "norm.weight"}) sq += double(tensor(t, n).squaredNorm());
    normSum += std::sqrt(sq);
  }
  // Biases and norms are added unprojected; the skipped head holds no state.
  CHECK((full.accumulator("fc.bias").template cast<double>() - sBias).norm() <= 1e-5 * sBias.norm());
  CHECK(full.accumulator("head.weight").size() == 0);
  CHECK(full.mergedDelta("head.weight").isZero(0));
  // State size independent of T.
  CHECK(bytes.front() == bytes.back());
  CHECK(bytes.front() == (12 * 8 + 12 + 8) * sizeof(T));
  // Global norms: λ = (Σ_t ‖τ_t‖ / T) / ‖S‖ over all merged tensors.
  double s2 = 0;
  for (const char* n : {"fc.weight", "fc.bias", "norm.weight"}) s2 += double(full.accumulator(n).template cast<double>().squaredNorm());
  CHECK(std::abs(full.scale() - (normSum / models) / std::sqrt(s2)) <= 1e-5 * full.scale());

  // Resume: 2 models, save, load into a fresh merger, 4 more models = the uninterrupted run, bit for bit.
  wproj::OpcmMerging<T> first;
  first.setRules(rules);
  for (int t = 0; t < 2; ++t) first.addModel(names, fetchFor(t));
  std::stringstream state2;
  first.save(state2);
  wproj::OpcmMerging<T> resumed;
  resumed.load(state2);
  CHECK(resumed.numModels() == 2);
  for (int t = 2; t < models; ++t) resumed.addModel(names, fetchFor(t));
  for (const auto& n : names) CHECK(resumed.accumulator(n) == full.accumulator(n));
  CHECK(resumed.scale() == full.scale());
  // The saved state has the same size after 2 and after 6 models.
  std::stringstream state6;
  full.save(state6);
  CHECK(state6.str().size() == state2.str().size());
  // writeMerged: θ₀ + λS, skipped tensors left at θ₀.
  std::vector<std::string> written;
  auto base = [](const std::string& n) { return Mat<T>(Mat<T>::Constant(n == "fc.weight" ? 12 : n == "head.weight" ? 5 : n == "fc.bias" ? 12 : 8,
                                                                          n == "fc.weight" ? 8 : n == "head.weight" ? 12 : 1, T(1))); };
  const auto out = full.writeMerged(base, [&](const std::string& n, const Mat<T>& w) {
    written.push_back(n);
    const Mat<T> expect = base(n) + full.mergedDelta(n);
    CHECK((w - expect).norm() <= T(1e-5) * expect.norm());
  });
  CHECK(written == names);
  CHECK(out.tensors.size() == names.size());
}

TEMPLATE_TEST_CASE("OPCM edge cases: zero task vectors, more models than the rank, shape errors", "[merging][opcm]", float,
                   double) {
  using T = TestType;
  // Zero first model: nothing to project against (warning), no NaN.
  wproj::OpcmMerging<T> z;
  z.add(Mat<T>(Mat<T>::Zero(6, 4)));
  CHECK(z.scale() == 0);
  CHECK(z.mergedDelta().isZero(0));
  const Mat<T> g = gaussian<T>(6, 4, 3);
  const auto rep = z.addModel({""}, [&](const std::string&) { return g; });
  CHECK(rep.tensors[0].rank == -1);
  CHECK_FALSE(rep.tensors[0].warnings.empty());
  CHECK((z.accumulator() - g).norm() == 0);
  CHECK(z.mergedDelta().allFinite());
  // All zero: scale 0, merged delta zero, still finite.
  wproj::OpcmMerging<T> allZero;
  for (int i = 0; i < 3; ++i) allZero.add(Mat<T>(Mat<T>::Zero(3, 3)));
  CHECK(allZero.mergedDelta().isZero(0));
  // Many more models than min(m, n) = 3: stays finite, the norm of the merged delta is the mean norm.
  wproj::OpcmMerging<T> many;
  double meanNorm = 0;
  for (int i = 0; i < 12; ++i) {
    const Mat<T> t = gaussian<T>(3, 5, 50 + i);
    meanNorm += double(t.norm()) / 12;
    many.add(t);
  }
  CHECK(many.mergedDelta().allFinite());
  CHECK(std::abs(double(many.mergedDelta().norm()) - meanNorm) <= 1e-4 * meanNorm);
  // Mismatched shape: a clear error, the merger is then unusable until a state is loaded.
  wproj::OpcmMerging<T> opcm;
  opcm.add(gaussian<T>(5, 4, 1));
  std::stringstream saved;
  opcm.save(saved);
  CHECK_THROWS_WITH(opcm.add(gaussian<T>(4, 5, 2)), Contains("has shape 4x5; expected 5x4"));
  CHECK_THROWS_AS(opcm.mergedDelta(), wproj::StateError);  // a state error, not an argument error
  CHECK_THROWS_AS(opcm.mergedDelta(), std::logic_error);
  CHECK_THROWS_WITH(opcm.save(saved), Contains("left invalid"));
  opcm.load(saved);
  CHECK(opcm.numModels() == 1);
  CHECK_NOTHROW(opcm.add(gaussian<T>(5, 4, 2)));
  // Unknown or missing tensors.
  CHECK_THROWS_WITH(opcm.addModel({"other"}, [](const std::string&) { return Mat<T>(Mat<T>::Zero(5, 4)); }),
                    Contains("'other' was not in the first model"));
  CHECK_THROWS_AS(opcm.setAlpha(1.5), wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::opcmProject(Mat<T>(Mat<T>::Zero(3, 3)), Mat<T>(Mat<T>::Zero(3, 4)), 0.5), wproj::InvalidArgument);
}

TEMPLATE_TEST_CASE("the OPCM state file is validated on load", "[merging][opcm][io]", float, double) {
  using T = TestType;
  wproj::OpcmMerging<T> opcm;
  opcm.setAlpha(0.3);
  opcm.add(gaussian<T>(5, 4, 1)).add(gaussian<T>(5, 4, 2));
  std::stringstream ss;
  opcm.save(ss);
  const std::string good = ss.str();
  auto loadFrom = [](const std::string& bytes) {
    std::stringstream in(bytes);
    wproj::OpcmMerging<T> m;
    m.load(in);
    return m;
  };
  const auto back = loadFrom(good);
  CHECK(back.alpha() == 0.3);
  CHECK(back.accumulator() == opcm.accumulator());
  // Corrupted payload (checksum), truncated, trailing bytes, bad magic, wrong scalar type.
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x5a;
  CHECK_THROWS_AS(loadFrom(flipped), wproj::IoError);
  CHECK_THROWS_AS(loadFrom(good.substr(0, good.size() - 3)), wproj::IoError);
  CHECK_THROWS_AS(loadFrom(good.substr(0, 20)), wproj::IoError);
  CHECK_THROWS_AS(loadFrom(good + "x"), wproj::IoError);
  std::string magic = good;
  magic[0] = 'X';
  CHECK_THROWS_WITH(loadFrom(magic), Contains("bad magic"));
  CHECK_THROWS_AS(loadFrom(std::string()), wproj::IoError);
  using Other = typename std::conditional<std::is_same<T, float>::value, double, float>::type;
  std::stringstream in(good);
  wproj::OpcmMerging<Other> wrongType;
  CHECK_THROWS_WITH(wrongType.load(in), Contains("scalars"));
  // A failed load leaves the target untouched.
  wproj::OpcmMerging<T> keep;
  keep.add(gaussian<T>(2, 2, 9));
  std::stringstream bad(flipped);
  CHECK_THROWS_AS(keep.load(bad), wproj::IoError);
  CHECK(keep.numModels() == 1);
  // File round trip (written atomically).
  const std::string path = "opcm_state_test_" + std::to_string(sizeof(T)) + ".bin";
  opcm.save(path);
  wproj::OpcmMerging<T> fromFile;
  fromFile.load(path);
  CHECK(fromFile.accumulator() == opcm.accumulator());
  std::remove(path.c_str());
  CHECK_THROWS_AS(fromFile.load(std::string("/nonexistent/dir/state.bin")), wproj::IoError);
}

namespace {

/// The inputs of tests/merging/data/opcm_state_v010.hpp.
template <typename T>
Mat<T> opcmFixtureMatrix(int r, int c, int seed) {
  Mat<T> m(r, c);
  for (int j = 0; j < c; ++j)
    for (int i = 0; i < r; ++i) m(i, j) = T(std::sin(0.7 * (i + 1) * (seed + 1) + 1.3 * j) + 0.1 * ((i * 7 + j * 3 + seed) % 5));
  return m;
}

template <typename T>
wproj::OpcmMerging<T> opcmFixtureRun(int models) {
  wproj::OpcmMerging<T> m;
  m.setAlpha(0.4);
  const std::vector<std::string> names = {"w", "b"};
  for (int t = 0; t < models; ++t)
    m.addModel(names, [&](const std::string& n) { return n == "w" ? opcmFixtureMatrix<T>(5, 4, t) : opcmFixtureMatrix<T>(3, 1, 10 + t); });
  return m;
}

}  // namespace

TEMPLATE_TEST_CASE("OPCM state files written by wproj 0.1.0 (format 1) still load and resume", "[merging][opcm][io]", float,
                   double) {
  using T = TestType;
  const bool isFloat = std::is_same<T, float>::value;
  const std::string v1 = isFloat ? std::string(reinterpret_cast<const char*>(kOpcmStateV1Float), sizeof(kOpcmStateV1Float))
                                 : std::string(reinterpret_cast<const char*>(kOpcmStateV1Double), sizeof(kOpcmStateV1Double));
  const double scale010 = isFloat ? kOpcmStateV1FloatScale : kOpcmStateV1DoubleScale;
  REQUIRE(v1.substr(0, 7) == "WPJOPCM");
  std::stringstream in(v1);
  wproj::OpcmMerging<T> loaded;
  REQUIRE_NOTHROW(loaded.load(in));
  CHECK(loaded.numModels() == 2);
  CHECK(loaded.alpha() == 0.4);
  CHECK(loaded.names() == std::vector<std::string>({"w", "b"}));
  CHECK(loaded.scale() == Approx(scale010).epsilon(1e-12));  // the scale 0.1.0 printed for this state
  // The same two models merged by this build give the same state.
  const auto fresh = opcmFixtureRun<T>(2);
  const double tol = isFloat ? 1e-5 : 1e-12;
  for (const char* n : {"w", "b"})
    CHECK((loaded.accumulator(n) - fresh.accumulator(n)).norm() <= tol * fresh.accumulator(n).norm());
  // Resuming from the old file continues like the uninterrupted run.
  const auto full = opcmFixtureRun<T>(4);
  for (int t = 2; t < 4; ++t)
    loaded.addModel({"w", "b"}, [&](const std::string& n) { return n == "w" ? opcmFixtureMatrix<T>(5, 4, t) : opcmFixtureMatrix<T>(3, 1, 10 + t); });
  for (const char* n : {"w", "b"})
    CHECK((loaded.mergedDelta(n) - full.mergedDelta(n)).norm() <= 10 * tol * full.mergedDelta(n).norm());
  // A corrupted old file is still refused by its own checksum.
  std::string bad = v1;
  bad[v1.size() / 2] ^= 0x20;
  std::stringstream badIn(bad);
  wproj::OpcmMerging<T> m;
  CHECK_THROWS_AS(m.load(badIn), wproj::IoError);
  // Saved again, it is written in the current format.
  std::stringstream out;
  loaded.save(out);
  CHECK(out.str().substr(0, 8) == "WPROJBIN");
}

TEMPLATE_TEST_CASE("the OPCM state uses the common container: version, kind, checksum, truncation", "[merging][opcm][io]",
                   float, double) {
  using T = TestType;
  const auto opcm = opcmFixtureRun<T>(3);
  std::stringstream ss;
  opcm.save(ss);
  const std::string good = ss.str();
  REQUIRE(good.substr(0, 8) == "WPROJBIN");
  std::uint32_t version = 0;
  std::memcpy(&version, &good[8], 4);
  CHECK(version == wproj::OpcmMerging<T>::kFormatVersion);
  CHECK(good.find("wproj.opcm") == 20);
  auto loadFrom = [](const std::string& bytes) {
    std::stringstream in(bytes);
    wproj::OpcmMerging<T> m;
    m.load(in);
    return m;
  };
  const auto back = loadFrom(good);
  for (const char* n : {"w", "b"}) CHECK(back.accumulator(n) == opcm.accumulator(n));  // bit for bit
  CHECK(back.scale() == opcm.scale());
  // Any flipped payload byte: checksum error.
  const std::size_t payload = wproj::serial::lengthFieldOffset("wproj.opcm") + 16;
  for (std::size_t i = payload; i < good.size(); i += 11) {
    std::string bad = good;
    bad[i] = char(bad[i] ^ 0x08);
    CHECK_THROWS_WITH(loadFrom(bad), Contains("checksum mismatch"));
  }
  CHECK_THROWS_WITH(loadFrom(good.substr(0, good.size() - 5)), Contains("truncated"));
  std::string newer = good;
  const std::uint32_t v = wproj::serial::kFormatVersion + 1;
  std::memcpy(&newer[8], &v, 4);
  CHECK_THROWS_WITH(loadFrom(newer), Contains("newer wproj"));
  // A gradient checkpoint is another kind.
  std::ostringstream other;
  wproj::serial::writeContainer(other, "wproj.gradient", [](auto& e) { e.section("AdamW", [](auto& s) { s.template pod<double>(1.0); }); }, "test");
  CHECK_THROWS_WITH(loadFrom(other.str()), Contains("holds a 'wproj.gradient'; expected a 'wproj.opcm'"));
  // A truncated version-1 file.
  const std::string v1(reinterpret_cast<const char*>(kOpcmStateV1Double), sizeof(kOpcmStateV1Double));
  wproj::OpcmMerging<double> d;
  std::stringstream shortIn(v1.substr(0, v1.size() - 9));
  CHECK_THROWS_AS(d.load(shortIn), wproj::IoError);
}

TEST_CASE("OpcmMerging::save(path) writes through the atomic writer (no fixed temporary name)", "[merging][opcm][io]") {
  const std::string dir = "opcm_atomic_test_dir";
  ::mkdir(dir.c_str(), 0777);
  const std::string path = dir + "/state.bin";
  // A stale file under the old fixed temporary name is neither used nor removed.
  { std::ofstream(path + ".tmp") << "stale"; }
  const auto opcm = opcmFixtureRun<float>(2);
  opcm.save(path);
  wproj::OpcmMerging<float> back;
  back.load(path);
  CHECK(back.accumulator("w") == opcm.accumulator("w"));
  std::ifstream stale(path + ".tmp");
  std::string content;
  stale >> content;
  CHECK(content == "stale");
  // Only the state and the stale file remain: no temporary left behind.
  std::vector<std::string> files;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") files.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(files.begin(), files.end());
  CHECK(files == std::vector<std::string>({"state.bin", "state.bin.tmp"}));
  // An unwritable destination: IoError, and the previous state is kept.
  CHECK_THROWS_AS(opcm.save(std::string("/nonexistent-folder/state.bin")), wproj::IoError);
  std::remove((path + ".tmp").c_str());
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
}

TEMPLATE_TEST_CASE("streamed OPCM (tensor by tensor, two passes) equals model-by-model OPCM bit for bit", "[merging][opcm]",
                   float, double) {
  using T = TestType;
  const wproj::Index models = 5;
  const std::vector<std::string> names{"a.weight", "a.bias", "skip.weight", "b.weight"};
  auto shape = [](const std::string& n) -> std::pair<Index, Index> {
    if (n == "a.weight") return {14, 9};
    if (n == "a.bias") return {14, 1};
    if (n == "skip.weight") return {3, 4};
    return {6, 11};
  };
  auto base = [&](const std::string& n) {
    const auto s = shape(n);
    return Mat<T>(gaussian<T>(s.first, s.second, 7 + n.size()));
  };
  auto model = [&](Index t, const std::string& n) {
    const auto s = shape(n);
    return Mat<T>(base(n) + T(0.1) * gaussian<T>(s.first, s.second, 100 + 13 * std::uint64_t(t) + n.size()));
  };
  wproj::MergeRules rules;
  rules.add("^skip\\.", wproj::TensorAction::Skip);
  for (const double alpha : {0.5, 0.9}) {
    INFO("alpha " << alpha);
    wproj::OpcmMerging<T> ref;
    ref.setAlpha(alpha).setRules(rules);
    for (Index t = 0; t < models; ++t) ref.addModel(names, [&](const std::string& n) { return Mat<T>(model(t, n) - base(n)); });
    std::map<std::string, Mat<T>> expected;
    ref.writeMerged(base, [&](const std::string& n, const Mat<T>& w) { expected[n] = w; });

    wproj::MemorySpillStore spill;
    std::vector<std::string> order;
    std::map<std::string, int> fetches;
    std::vector<std::pair<std::string, int>> progress;
    const auto res = wproj::opcmMergeStreaming<T>(
        names, models, alpha, rules, base,
        [&](Index t, const std::string& n) {
          ++fetches[n];
          return model(t, n);
        },
        [&](const std::string& n, const Mat<T>& w) {
          order.push_back(n);
          CHECK(w == expected.at(n));  // bit for bit
        },
        spill, [&](const std::string& n, int pass) { progress.emplace_back(n, pass); });
    CHECK(order == names);
    CHECK(res.scale == ref.scale());
    REQUIRE(res.report.tensors.size() == names.size());
    CHECK(res.report.tensors[2].action == wproj::TensorAction::Skip);
    CHECK(res.report.tensors[2].deltaNorm == 0);
    CHECK(res.report.tensors[1].action == wproj::TensorAction::Average);
    CHECK(res.report.tensors[0].deltaNorm == Approx(double((expected.at("a.weight") - base("a.weight")).norm())).epsilon(1e-4));
    // Every model fetched once per merged tensor; a skipped tensor only once (its shape).
    CHECK(fetches.at("a.weight") == models);
    CHECK(fetches.at("skip.weight") == 1);
    CHECK(progress.size() == 2 * names.size());
  }
  // Bad input: a model whose tensor has another shape names tensor and model; nothing is written.
  wproj::MemorySpillStore spill;
  int written = 0;
  CHECK_THROWS_WITH(wproj::opcmMergeStreaming<T>(
                        names, models, 0.5, rules, base,
                        [&](Index t, const std::string& n) { return t == 3 && n == "b.weight" ? Mat<T>(Mat<T>::Zero(6, 10)) : model(t, n); },
                        [&](const std::string&, const Mat<T>&) { ++written; }, spill),
                    Catch::Contains("'b.weight'") && Catch::Contains("model 3"));
  CHECK(written == 0);
  CHECK_THROWS_AS(wproj::opcmMergeStreaming<T>(names, 0, 0.5, rules, base, model, [](const std::string&, const Mat<T>&) {}, spill),
                  wproj::InvalidArgument);
  CHECK_THROWS_AS(wproj::opcmMergeStreaming<T>(names, 2, 1.5, rules, base, model, [](const std::string&, const Mat<T>&) {}, spill),
                  wproj::InvalidArgument);
}
