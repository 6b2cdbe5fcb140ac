// wproj — Python bindings: truncated and randomized SVD. MIT licence.
#include "common.hpp"

#include <wproj/linalg/randomized_svd.hpp>
#include <wproj/linalg/truncated_svd.hpp>

#include <memory>
#include <type_traits>

namespace wproj_py {
namespace {

/// Keeps wproj's sign convention (largest-magnitude entry of each u_i positive) after the
/// factors of Aᵀ were swapped into those of A.
template <typename MU, typename MV>
void fixSigns(MU&& u, MV&& v) {
  using S = typename std::decay_t<MU>::Scalar;
  for (Index j = 0; j < u.cols(); ++j) {
    Index i = 0;
    u.col(j).cwiseAbs().maxCoeff(&i);
    if (u(i, j) < S(0)) {
      u.col(j) = -u.col(j);
      v.col(j) = -v.col(j);
    }
  }
}

/// A C-ordered A is decomposed as Aᵀ (a column-major view of the same memory): check it in its
/// own layout first, so that an error names the entry of A, not of Aᵀ.
template <typename S>
void checkFiniteAsGiven(const py::array& a, bool transposed, const char* where) {
  if (!transposed) return;
  const S* p = static_cast<const S*>(a.data());
  wproj::checkFinite(MapR<S>(p, a.shape(0), a.shape(1)), where, "a");
}

/// (U, S, Vt) in NumPy's orientation from the factors of A (or of Aᵀ when `transposed`).
template <typename S>
py::tuple svdResult(Mat<S>&& u, Vec<S>&& s, Mat<S>&& v, bool transposed) {
  if (transposed) {
    std::swap(u, v);
    fixSigns(u, v);
  }
  py::array U = toNumpy<S>(std::move(u));
  py::array Sv = toNumpy<S>(std::move(s));
  py::array Vt = toNumpyTransposed<S>(std::move(v));
  return py::make_tuple(U, Sv, Vt);
}

struct RsvdOptions {
  Index rank, oversampling, powerIterations;
  std::uint64_t seed;
  std::string method, normalization;
  double tol;
  Index krylovBlock;
};

/// The solver behind `randomized_svd`, one per thread and scalar type: it keeps its work
/// matrices between calls, so repeated calls of one shape touch no fresh memory. Workspaces
/// above `kKeptWorkspaceBytes` are freed after the call.
template <typename S>
wproj::RandomizedSVD<Mat<S>>& threadSolver() {
  thread_local wproj::RandomizedSVD<Mat<S>> svd;
  return svd;
}
constexpr std::size_t kKeptWorkspaceBytes = std::size_t(256) << 20;

template <typename S>
py::tuple randomizedSvdT(const py::array& a, const RsvdOptions& o, double* errorEstimate) {
  bool transposed = false;
  MapC<S> view = columnMajorView<S>(a, transposed);
  if (o.method != "power" && o.method != "krylov")
    throw py::value_error("argument 'method' = '" + o.method + "'; expected 'power' or 'krylov'");
  using PN = wproj::PowerNormalization;
  const std::string& n = o.normalization;
  PN normalization;
  if (n == "auto") normalization = PN::Auto;
  else if (n == "lu") normalization = PN::LU;
  else if (n == "none") normalization = PN::None;
  else if (n == "orthonormalize") normalization = PN::Orthonormalize;
  else throw py::value_error("argument 'normalization' = '" + n + "'; expected 'auto', 'lu', 'none' or 'orthonormalize'");
  // Every setting the function exposes is set on each call (the solver is reused).
  wproj::RandomizedSVD<Mat<S>>& svd = threadSolver<S>();
  const bool krylov = o.method == "krylov";
  svd.setRank(o.rank).setOversampling(o.oversampling).setPowerIterations(o.powerIterations).setSeed(o.seed);
  svd.setNormalization(normalization).setBlockKrylov(krylov).setKrylovBlockSize(krylov ? o.krylovBlock : -1);
  if (o.tol > 0) svd.setTolerance(o.tol);
  else svd.clearTolerance();
  std::unique_ptr<OutMatrix<S>> u, v;  // the results, copied into storage NumPy will own
  Vec<S> s;
  {
    py::gil_scoped_release release;
    // A non-finite A makes the first sketch non-finite, and compute() then reports it; the check
    // in A's own layout (which names the entry of A, not of Aᵀ) runs only in that case, so a
    // finite A is read by the products alone.
    try {
      svd.compute(view);
    } catch (const wproj::InvalidArgument&) {
      checkFiniteAsGiven<S>(a, transposed, "RandomizedSVD::compute");
      throw;
    }
    if (svd.workspaceBytes() > kKeptWorkspaceBytes) svd.releaseWorkspace();
    if (svd.info() != Eigen::Success && o.tol > 0)
      throw wproj::NumericalError("randomized_svd: the tolerance tol = " + std::to_string(o.tol) +
                                  " was not reached within rank = " + std::to_string(o.rank) +
                                  " (estimated relative error " + std::to_string(svd.errorEstimate()) +
                                  "); raise rank or tol");
    if (svd.info() != Eigen::Success) throw wproj::NumericalError("randomized_svd: the small SVD did not converge");
    // The factors of Aᵀ are those of A swapped.
    const Mat<S>& su = transposed ? svd.matrixV() : svd.matrixU();
    const Mat<S>& sv = transposed ? svd.matrixU() : svd.matrixV();
    u = std::make_unique<OutMatrix<S>>(su.rows(), su.cols());
    v = std::make_unique<OutMatrix<S>>(sv.rows(), sv.cols());
    u->map() = su;
    v->map() = sv;
    if (transposed) fixSigns(u->map(), v->map());
    s = svd.singularValues().template cast<S>();
  }
  *errorEstimate = svd.errorEstimate();
  py::array U = u->release();
  py::array Sv = toNumpy<S>(std::move(s));
  py::array Vt = v->release().attr("T");
  return py::make_tuple(U, Sv, Vt);
}

template <typename S>
py::tuple truncatedSvdT(const py::array& a, Index rank, const std::string& method) {
  bool transposed = false;
  MapC<S> view = columnMajorView<S>(a, transposed);
  wproj::TruncatedSVD<Mat<S>> svd;
  if (rank >= 1) svd.setRank(rank);
  else if (rank != -1) throw py::value_error("argument 'rank' = " + std::to_string(rank) + "; expected >= 1, or None for all");
  if (method == "auto") svd.setMethod(wproj::SVDMethod::Auto);
  else if (method == "bdc") svd.setMethod(wproj::SVDMethod::Bdc);
  else if (method == "gram") svd.setMethod(wproj::SVDMethod::Gram);
  else throw py::value_error("argument 'method' = '" + method + "'; expected 'auto', 'bdc' or 'gram'");
  Mat<S> u, v;
  Vec<S> s;
  {
    py::gil_scoped_release release;
    checkFiniteAsGiven<S>(a, transposed, "TruncatedSVD::compute");
    svd.compute(view);
    if (svd.info() != Eigen::Success) throw wproj::NumericalError("truncated_svd: the SVD did not converge");
    u = svd.matrixU();
    v = svd.matrixV();
    s = svd.singularValues().template cast<S>();
  }
  return svdResult<S>(std::move(u), std::move(s), std::move(v), transposed);
}

}  // namespace

void initDecompositions(py::module_& m) {
  m.def(
      "randomized_svd",
      [](py::handle A, Index rank, Index oversampling, Index powerIterations, std::uint64_t seed, std::string method,
         std::string normalization, double tol, Index krylovBlock) {
        py::array a = asMatrixArray(A, "A");
        RsvdOptions o{rank, oversampling, powerIterations, seed, method, normalization, tol, krylovBlock};
        double err = 0;
        py::tuple r = kindOf(a) == Kind::F32 ? randomizedSvdT<float>(a, o, &err) : randomizedSvdT<double>(a, o, &err);
        return py::make_tuple(r[0], r[1], r[2], err);
      },
      py::arg("A"), py::arg("rank"), py::arg("oversampling"), py::arg("power_iterations"), py::arg("seed"),
      py::arg("method"), py::arg("normalization"), py::arg("tol"), py::arg("krylov_block_size"));
  m.def(
      "truncated_svd",
      [](py::handle A, Index rank, std::string method) {
        py::array a = asMatrixArray(A, "A");
        return kindOf(a) == Kind::F32 ? truncatedSvdT<float>(a, rank, method) : truncatedSvdT<double>(a, rank, method);
      },
      py::arg("A"), py::arg("rank"), py::arg("method"));
}

}  // namespace wproj_py
