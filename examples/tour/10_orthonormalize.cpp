// Tour chapter: orthonormalising tall-skinny blocks.
#include "tour.hpp"

#include <wproj/core/random.hpp>
#include <wproj/linalg/orthonormalize.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <iomanip>

namespace {

void run(std::ostream& os, const tour::Options& opt) {
  const Eigen::Index m = opt.quick ? 400 : 2000, k = 40;
  os << "Every projection starts from an orthonormal basis Q. wproj picks CholeskyQR2 (all GEMM)\n"
        "when the block is well conditioned and falls back to shifted CholeskyQR3 or Householder\n"
        "when it is not. A " << m << "x" << k << " block with condition number κ:\n\n";
  os << "  " << std::setw(8) << "κ" << std::setw(24) << "method (auto)" << std::setw(16) << "‖QᵀQ − I‖\n";
  for (double cond : {1e0, 1e4, 1e8, 1e12, 1e15}) {
    Eigen::MatrixXd u = wproj::gaussianMatrix<Eigen::MatrixXd>(m, k, 1), v = wproj::gaussianMatrix<Eigen::MatrixXd>(k, k, 2);
    u = wproj::orthonormalized(u, wproj::OrthoMethod::Householder);
    v = wproj::orthonormalized(v, wproj::OrthoMethod::Householder);
    Eigen::VectorXd s(k);
    for (Eigen::Index i = 0; i < k; ++i) s(i) = std::pow(cond, -double(i) / double(k - 1));
    Eigen::MatrixXd x = u * s.asDiagonal() * v.transpose();
    const auto used = wproj::orthonormalizeInPlace(x);
    os << "  " << std::setw(8) << std::scientific << std::setprecision(0) << cond << std::setw(24) << wproj::toString(used)
       << std::setw(14) << std::setprecision(2) << wproj::orthogonalityError(x) << "\n";
  }
  os << std::defaultfloat;
}

tour::Register chapter{10, "Orthonormal bases", &run};

}  // namespace
