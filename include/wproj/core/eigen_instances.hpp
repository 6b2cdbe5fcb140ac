// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Build-time accelerator (opt-in). Eigen's dense decompositions (BDCSVD alone takes ≈ 18 s of
/// compiler time per scalar type) are instantiated again in every translation unit that uses
/// an SVD, an eigensolver or a QR. A project with many such files can compile them once:
///   - define `WPROJ_EXTERN_TEMPLATES` in every translation unit (the headers then declare the
///     instances below `extern`, so the compiler does not instantiate them), and
///   - compile one file that defines `WPROJ_INSTANTIATE_EIGEN` and includes this header, which
///     emits the instances (float and double, column-major dynamic matrices).
/// wproj's own tests, examples, tools and benchmarks build this way (CMake target
/// `wproj_instances`). The results are identical; only the compile time changes.

#include <Eigen/Dense>

#if defined(WPROJ_INSTANTIATE_EIGEN)
/// Emits the explicit instantiation `template class T;` of an Eigen decomposition.
#define WPROJ_EIGEN_INSTANCE(...) template class __VA_ARGS__;
#elif defined(WPROJ_EXTERN_TEMPLATES)
/// Declares the instance `extern template class T;` so that this translation unit does not instantiate it.
#define WPROJ_EIGEN_INSTANCE(...) extern template class __VA_ARGS__;
#else
/// Expands to nothing: without `WPROJ_INSTANTIATE_EIGEN` or `WPROJ_EXTERN_TEMPLATES` Eigen instantiates implicitly.
#define WPROJ_EIGEN_INSTANCE(...)
#endif

WPROJ_EIGEN_INSTANCE(Eigen::BDCSVD<Eigen::MatrixXf>)
WPROJ_EIGEN_INSTANCE(Eigen::BDCSVD<Eigen::MatrixXd>)
WPROJ_EIGEN_INSTANCE(Eigen::JacobiSVD<Eigen::MatrixXf>)
WPROJ_EIGEN_INSTANCE(Eigen::JacobiSVD<Eigen::MatrixXd>)
WPROJ_EIGEN_INSTANCE(Eigen::SelfAdjointEigenSolver<Eigen::MatrixXf>)
WPROJ_EIGEN_INSTANCE(Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>)
WPROJ_EIGEN_INSTANCE(Eigen::HouseholderQR<Eigen::MatrixXf>)
WPROJ_EIGEN_INSTANCE(Eigen::HouseholderQR<Eigen::MatrixXd>)
WPROJ_EIGEN_INSTANCE(Eigen::ColPivHouseholderQR<Eigen::MatrixXf>)
WPROJ_EIGEN_INSTANCE(Eigen::ColPivHouseholderQR<Eigen::MatrixXd>)
WPROJ_EIGEN_INSTANCE(Eigen::LLT<Eigen::MatrixXf>)
WPROJ_EIGEN_INSTANCE(Eigen::LLT<Eigen::MatrixXd>)
WPROJ_EIGEN_INSTANCE(Eigen::LDLT<Eigen::MatrixXf>)
WPROJ_EIGEN_INSTANCE(Eigen::LDLT<Eigen::MatrixXd>)
WPROJ_EIGEN_INSTANCE(Eigen::PartialPivLU<Eigen::MatrixXf>)
WPROJ_EIGEN_INSTANCE(Eigen::PartialPivLU<Eigen::MatrixXd>)

#undef WPROJ_EIGEN_INSTANCE
