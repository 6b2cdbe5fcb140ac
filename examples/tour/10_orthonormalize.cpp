// Tour chapter: orthonormalising tall-skinny blocks.
#include "tour.hpp"

#include <wproj/core/random.hpp>
#include <wproj/linalg/orthonormalize.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <iomanip>
#include <string>
#include <vector>

namespace chapter10 {  // a named namespace per chapter: the chapters compile as one unit

/// Prints, for each condition number, the method each request ended up using and the loss of
/// orthogonality ‖QᵀQ − I‖_F in units of u·√k (u = unit roundoff of Scalar).
template <typename Scalar>
void table(std::ostream& os, const char* name, Eigen::Index m, Eigen::Index k, const std::vector<double>& conds) {
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using MatD = Eigen::MatrixXd;
  const double unit = double(wproj::unitRoundoff<Scalar>()) * std::sqrt(double(k));
  const std::vector<wproj::OrthoMethod> methods = {wproj::OrthoMethod::Auto, wproj::OrthoMethod::Householder,
                                                   wproj::OrthoMethod::CholeskyQR2,
                                                   wproj::OrthoMethod::ShiftedCholeskyQR3};
  os << "  " << name << ", " << m << "x" << k << ": ‖QᵀQ − I‖_F / (u√k)  [method actually used]\n  " << std::setw(7)
     << "κ";
  for (auto method : methods) os << std::setw(22) << wproj::toString(method);
  os << "\n";
  const MatD u = wproj::orthonormalized(wproj::gaussianMatrix<MatD>(m, k, 1), wproj::OrthoMethod::Householder);
  const MatD v = wproj::orthonormalized(wproj::gaussianMatrix<MatD>(k, k, 2), wproj::OrthoMethod::Householder);
  for (double cond : conds) {
    Eigen::VectorXd s(k);
    for (Eigen::Index i = 0; i < k; ++i) s(i) = std::pow(cond, -double(i) / double(k - 1));
    const Mat x = (u * s.asDiagonal() * v.transpose()).cast<Scalar>();
    os << "  " << std::setw(7) << std::scientific << std::setprecision(0) << cond << std::fixed;
    for (auto method : methods) {
      Mat q = x;
      const auto used = wproj::orthonormalizeInPlace(q, method);
      const std::string tag = used == wproj::OrthoMethod::Householder          ? "HH"
                              : used == wproj::OrthoMethod::CholeskyQR2        ? "CQR2"
                                                                               : "sCQR3";
      os << std::setw(14) << std::setprecision(1) << double(wproj::orthogonalityError(q)) / unit << " [" << std::setw(5)
         << tag << "]";
    }
    os << "\n";
  }
  os << std::defaultfloat << std::setprecision(6) << "\n";
}

void run(std::ostream& os, const tour::Options& opt) {
  const Eigen::Index m = opt.quick ? 200 : 2000, k = opt.quick ? 20 : 60;
  os << "Every projection starts from an orthonormal basis Q. wproj picks CholeskyQR2 (all GEMM)\n"
        "when the block is well conditioned and falls back to shifted CholeskyQR3 or Householder\n"
        "when it is not; an explicit request that is out of its range falls back too. Blocks with\n"
        "condition number κ (geometric spectrum):\n\n";
  table<double>(os, "double", m, k, {1e0, 1e4, 1e6, 1e8, 1e10, 1e12, 1e14, 1e15});
  table<float>(os, "float", m, k, {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e7});
}

tour::Register chapter{10, "Orthonormal bases", &run};

}  // namespace chapter10
