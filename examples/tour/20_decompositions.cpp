// Tour chapter: decompositions — exact vs randomized SVD, warm starts, fixed accuracy, DCT bases.
#include "tour.hpp"

#include <wproj/core/random.hpp>
#include <wproj/linalg/dct.hpp>
#include <wproj/linalg/randomized_svd.hpp>
#include <wproj/linalg/truncated_svd.hpp>

#include <Eigen/Dense>
#include <algorithm>

#include <chrono>
#include <cmath>
#include <iomanip>

namespace chapter20 {  // a named namespace per chapter: the chapters compile as one unit

using Mat = Eigen::MatrixXf;

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// U diag(σ) Vᵀ with σ_i = 1/(i+1) (a power law: the hard case for sketching) and random
/// orthonormal U, V — a stand-in for a trained weight matrix.
Mat powerLawMatrix(Eigen::Index m, Eigen::Index n) {
  const Eigen::Index r = std::min(m, n);
  Mat u = wproj::gaussianMatrix<Mat>(m, r, 1), v = wproj::gaussianMatrix<Mat>(n, r, 2);
  wproj::orthonormalizeInPlace(u);
  wproj::orthonormalizeInPlace(v);
  Eigen::VectorXf s(r);
  for (Eigen::Index i = 0; i < r; ++i) s(i) = 1.0f / float(i + 1);
  return u * s.asDiagonal() * v.transpose();
}

void run(std::ostream& os, const tour::Options& opt) {
  const Eigen::Index m = opt.quick ? 300 : 1200, n = opt.quick ? 240 : 1000, k = opt.quick ? 16 : 48;
  const Mat a = powerLawMatrix(m, n);
  os << "A " << m << "x" << n << " with singular values 1/i; rank k = " << k << ".\n\n";

  // 1. Exact truncated SVD versus randomized SVD.
  auto t0 = std::chrono::steady_clock::now();
  wproj::TruncatedSVD<Mat> exact;
  exact.setRank(k).setMethod(wproj::SVDMethod::Bdc).compute(a);
  const double tExact = seconds(t0);
  const double optimal = (a - exact.reconstruct()).norm() / a.norm();
  os << "  " << std::left << std::setw(34) << "method" << std::right << std::setw(12) << "err/optimal" << std::setw(12)
     << "estimate" << std::setw(11) << "time\n";
  os << std::fixed;
  auto row = [&](const char* name, double err, double est, double t) {
    os << "  " << std::left << std::setw(34) << name << std::right << std::setprecision(4) << std::setw(12) << err / optimal
       << std::setw(12);
    if (est >= 0) os << est / optimal;
    else os << "-";
    os << std::setprecision(1) << std::setw(8) << t * 1e3 << " ms\n";
  };
  row("TruncatedSVD (BDCSVD)", optimal, -1, tExact);
  t0 = std::chrono::steady_clock::now();
  wproj::TruncatedSVD<Mat> gram;
  gram.setRank(k).setMethod(wproj::SVDMethod::Gram).compute(a);
  row("TruncatedSVD (Gram, double)", (a - gram.reconstruct()).norm() / a.norm(), -1, seconds(t0));
  struct Variant {
    const char* name;
    Eigen::Index q;
    bool krylov;
    Eigen::Index block;  // Krylov block size (−1: ℓ = k + p)
  };
  for (const Variant& v : {Variant{"RandomizedSVD q=0", 0, false, -1}, Variant{"RandomizedSVD q=2", 2, false, -1},
                           Variant{"RandomizedSVD auto (q=7)", -1, false, -1},
                           Variant{"RandomizedSVD block Krylov q=2", 2, true, -1},
                           Variant{"RandomizedSVD Krylov b=k/2, q=3", 3, true, std::max<Eigen::Index>(1, k / 2)}}) {
    t0 = std::chrono::steady_clock::now();
    wproj::RandomizedSVD<Mat> rsvd;
    rsvd.setRank(k).setPowerIterations(v.q).setBlockKrylov(v.krylov).setKrylovBlockSize(v.block).setSeed(42).compute(a);
    const double t = seconds(t0);
    row(v.name, (a - rsvd.reconstruct()).norm() / a.norm(), rsvd.errorEstimate(), t);
  }
  os << "  (estimate: the a-posteriori error from 8 Gaussian probes, no extra pass over A)\n";

  // 2. Warm start: the matrix drifts a little (as a gradient between GaLore refreshes).
  const Mat drifted = a + 0.002f * wproj::gaussianMatrix<Mat>(m, n, 7) / std::sqrt(float(n));
  wproj::RandomizedSVD<Mat> cold, warm;
  cold.setRank(k).setSeed(1).compute(a);
  t0 = std::chrono::steady_clock::now();
  warm.setRank(k).setStartingRightBasis(cold.matrixV()).compute(drifted);
  const double tWarm = seconds(t0);
  wproj::TruncatedSVD<Mat> truth(drifted, k);
  const double ov = (warm.matrixU().transpose() * truth.matrixU()).squaredNorm() / double(k);
  os << "\nWarm start from the previous V (two products with A, one subspace iteration):\n  overlap with the exact "
     << "top-" << k << " subspace " << std::setprecision(4) << ov << " in " << std::setprecision(1) << tWarm * 1e3 << " ms\n";

  // 3. Fixed accuracy: let the rank follow a requested error.
  wproj::RandomizedSVD<Mat> adaptive;
  adaptive.setTolerance(0.1).setSeed(3).compute(a);
  os << "\nFixed accuracy (relative Frobenius error ≤ 0.1): rank " << adaptive.rank() << ", estimate "
     << std::setprecision(4) << adaptive.errorEstimate() << ", true " << (a - adaptive.reconstruct()).norm() / a.norm()
     << "\n";

  // 4. SVD-free DCT basis: keep the r DCT frequencies that carry most of a smooth gradient.
  const Eigen::Index gm = opt.quick ? 256 : 1024, gn = opt.quick ? 128 : 512, r = 8;
  Mat g = wproj::gaussianMatrix<Mat>(gm, 4, 11) * wproj::gaussianMatrix<Mat>(4, gn, 12);
  for (Eigen::Index j = 1; j < gn; ++j) g.col(j) = 0.9f * g.col(j - 1) + 0.1f * g.col(j);  // smooth rows
  const auto sel = wproj::dctSelect(g, r, wproj::Side::Right);
  wproj::TruncatedSVD<Mat> best(g, r);
  os << "\nDCT top-" << r << " of a smooth " << gm << "x" << gn << " gradient keeps "
     << std::setprecision(2) << 100.0 * sel.projected.squaredNorm() / g.squaredNorm() << "% of its energy (SVD optimum "
     << 100.0 * best.singularValues().squaredNorm() / g.squaredNorm() << "%), frequencies";
  for (auto i : sel.indices) os << " " << i;
  os << "\n" << std::defaultfloat;
}

tour::Register chapter{20, "Decompositions: exact, randomized, warm-started, DCT", &run};

}  // namespace chapter20
