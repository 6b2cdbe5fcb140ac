// Tour chapter: subspaces, projectors and null spaces.
#include "tour.hpp"

#include <wproj/core/random.hpp>
#include <wproj/linalg/nullspace.hpp>
#include <wproj/linalg/subspace.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <iomanip>
#include <vector>

namespace chapter11 {  // a named namespace per chapter: the chapters compile as one unit

using Mat = Eigen::MatrixXd;

void run(std::ostream& os, const tour::Options& opt) {
  const Eigen::Index d = opt.quick ? 64 : 512, out = opt.quick ? 32 : 256, nKeys = opt.quick ? 12 : 64;
  os << std::setprecision(3);

  // 1. Protect what a layer does on a set of keys: project the update off span(K).
  const Mat keys = wproj::gaussianMatrix<Mat>(d, nKeys, 11);       // d×N, one key per column
  const Mat update = wproj::gaussianMatrix<Mat>(out, d, 12);       // ΔW, (out, in) = (out, d)
  const auto protectedKeys = wproj::Subspace<double>::fromColumns(keys);
  const Mat safe = protectedKeys.projectOut(update, wproj::Side::Right);  // ΔW (I − QQᵀ)
  os << "A layer W (" << out << "x" << d << ") must keep its outputs on " << nKeys << " keys K.\n"
     << "Projecting the update off span(K) on the input side, ΔW ← ΔW(I − QQᵀ):\n"
     << "  ‖ΔW K‖ / ‖ΔW‖‖K‖   before " << (update * keys).norm() / (update.norm() * keys.norm())
     << "   after " << (safe * keys).norm() / (update.norm() * keys.norm()) << "\n"
     << "  kept ‖ΔW'‖/‖ΔW‖ = " << safe.norm() / update.norm() << "  (≈ √(1 − N/d) = "
     << std::sqrt(1.0 - double(nKeys) / double(d)) << ")\n\n";

  // 2. AlphaEdit's variant: keys that are only approximately low-rank; keep the directions where
  //    the second moment K₀K₀ᵀ/n has eigenvalues below 2e-2.
  Eigen::VectorXd sigma(d);
  for (Eigen::Index i = 0; i < d; ++i) sigma(i) = 3.0 * std::exp(-double(i) / 3.0);
  const Mat u = wproj::orthonormalized(wproj::gaussianMatrix<Mat>(d, d, 13), wproj::OrthoMethod::Householder);
  const Mat k0 = u * sigma.asDiagonal() * wproj::gaussianMatrix<Mat>(d, 4 * d, 14) / 2.0;
  const Mat second = k0 * k0.transpose() / double(k0.cols());
  const auto free = wproj::psdNullSpace(second, 2e-2);
  const Mat edit = free.project(update, wproj::Side::Right);
  os << "Keys with a decaying spectrum: the eigenvalues of K₀K₀ᵀ/n below 2e-2 leave a " << free.dim() << "-dim\n"
     << "null space of R^" << d << ". Confining the update to it keeps ‖ΔW P‖/‖ΔW‖ = "
     << edit.norm() / update.norm() << " of the update\n"
     << "while the preserved keys' outputs move by only ‖ΔW P K₀‖ / ‖ΔW K₀‖ = "
     << (edit * k0).norm() / (update * k0).norm() << "\n\n";

  // 3. INLP: remove the directions of several linear classifiers at once, ∩ N(w_i).
  std::vector<Mat> classifiers;
  for (int i = 0; i < 3; ++i) classifiers.push_back(wproj::gaussianMatrix<Mat>(1, d, 20 + i));
  const auto clean = wproj::intersectNullSpaces(classifiers);
  const Mat x = wproj::gaussianMatrix<Mat>(d, 5, 30);
  const Mat px = clean.project(x, wproj::Side::Left);
  double worst = 0;
  for (const auto& w : classifiers) worst = std::max(worst, (w * px).cwiseAbs().maxCoeff());
  os << "INLP with 3 classifiers: ∩ N(w_i) has dimension " << clean.dim() << " = " << d << " − 3, and\n"
     << "  max |w_i · P x| = " << worst << "\n\n";

  // 4. Principal angles between two subspaces built at known angles.
  const double deg = 3.14159265358979323846 / 180.0;
  const std::vector<double> angles = {1e-6, 5.0 * deg, 30.0 * deg, 80.0 * deg};
  const Eigen::Index k = Eigen::Index(angles.size());
  const Mat q = wproj::orthonormalized(wproj::gaussianMatrix<Mat>(d, 2 * k, 40), wproj::OrthoMethod::Householder);
  Mat tilted(d, k);
  for (Eigen::Index i = 0; i < k; ++i)
    tilted.col(i) = std::cos(angles[size_t(i)]) * q.col(i) + std::sin(angles[size_t(i)]) * q.col(k + i);
  const auto a = wproj::Subspace<double>::fromOrthonormal(q.leftCols(k));
  const auto b = wproj::Subspace<double>::fromColumns(tilted * wproj::gaussianMatrix<Mat>(k, k, 41));  // any basis
  const Eigen::VectorXd found = a.principalAngles(b);
  os << "Principal angles between span(Q) and a subspace tilted by known angles (its basis mixed):\n";
  for (Eigen::Index i = 0; i < k; ++i)
    os << "  built " << std::setw(10) << angles[size_t(i)] << " rad   found " << std::setw(10) << found(i)
       << "   relative error " << std::abs(found(i) - angles[size_t(i)]) / angles[size_t(i)] << "\n";
  os << "  sign-free overlap ‖QᵀQ'‖²/k = " << a.overlap(b) << "; dim(span ∩) = " << a.intersection(b).dim()
     << ", dim(sum) = " << a.sum(b).dim() << "\n";
  os << std::defaultfloat;
}

tour::Register chapter{11, "Subspaces, projectors and null spaces", &run};

}  // namespace chapter11
