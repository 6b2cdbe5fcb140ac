// Builds against the installed wproj package and checks one projection end to end.
#include <wproj/wproj.hpp>

#include <iostream>

int main() {
  Eigen::MatrixXd x = wproj::gaussianMatrix<Eigen::MatrixXd>(50, 6, 3);
  wproj::orthonormalizeInPlace(x);
  const double err = wproj::orthogonalityError(x);
  std::cout << "consumer: wproj " << WPROJ_VERSION_STRING << ", ‖QᵀQ − I‖ = " << err << "\n";
  return err < 1e-12 ? 0 : 1;
}
