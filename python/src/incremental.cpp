// wproj — Python bindings: incremental SVD and orthonormalisation (a translation unit of its own,
// compiled in parallel with decompositions.cpp). MIT licence.
#include "common.hpp"

#include <wproj/linalg/incremental_svd.hpp>
#include <wproj/linalg/orthonormalize.hpp>

namespace wproj_py {
namespace {

template <typename S>
py::array orthonormalizeT(const py::array& x, const std::string& method) {
  wproj::OrthoMethod om;
  if (method == "auto") om = wproj::OrthoMethod::Auto;
  else if (method == "householder") om = wproj::OrthoMethod::Householder;
  else if (method == "cholesky-qr2") om = wproj::OrthoMethod::CholeskyQR2;
  else if (method == "shifted-cholesky-qr3") om = wproj::OrthoMethod::ShiftedCholeskyQR3;
  else throw py::value_error("argument 'method' = '" + method +
                             "'; expected 'auto', 'householder', 'cholesky-qr2' or 'shifted-cholesky-qr3'");
  if (x.shape(0) < x.shape(1))
    throw py::value_error("orthonormalize: argument 'X' has shape " + std::to_string(x.shape(0)) + "x" +
                          std::to_string(x.shape(1)) + "; expected at least as many rows as columns");
  Mat<S> q;
  {
    py::gil_scoped_release release;
    q = withView<S>(x, [](const auto& v) { return Mat<S>(v); });
    wproj::checkFinite(q, "orthonormalize", "X");
    wproj::orthonormalizeInPlace(q, om);
  }
  return toNumpy<S>(std::move(q));
}

/// IncrementalSVD over one scalar type; the Python class picks the instance.
template <typename S>
void bindIncremental(py::module_& m, const char* name) {
  using T = wproj::IncrementalSVD<Mat<S>>;
  auto F = [](const py::array& a) {  // an F-ordered copy only when the input is C ordered
    return Mat<S>(withView<S>(a, [](const auto& v) { return Mat<S>(v); }));
  };
  py::class_<T>(m, name)
      .def(py::init<>())
      .def("set_max_rank", [](T& t, Index k) { t.setMaxRank(k); })
      .def("set_tolerance", [](T& t, double tol) { t.setTolerance(tol); })
      .def("set_period", [](T& t, Index p) { t.setReorthonormalizationPeriod(p); })
      .def("initialize_zero", [](T& t, Index r, Index c) { t.initialize(r, c); })
      .def("initialize", [F](T& t, const py::array& a) {
        Mat<S> x = F(a);
        py::gil_scoped_release release;
        t.initialize(x);
      })
      .def("update", [F](T& t, const py::array& a, const py::array& b) {
        Mat<S> x = F(a), y = F(b);
        py::gil_scoped_release release;
        t.update(x, y);
      })
      .def("append_columns", [F](T& t, const py::array& a) {
        Mat<S> x = F(a);
        py::gil_scoped_release release;
        t.appendColumns(x);
      })
      .def("append_rows", [F](T& t, const py::array& a) {
        Mat<S> x = F(a);
        py::gil_scoped_release release;
        t.appendRows(x);
      })
      .def("reorthonormalize", [](T& t) {
        py::gil_scoped_release release;
        t.reorthonormalize();
      })
      .def("U", [](const T& t) { return toNumpy<S>(t.matrixU()); })
      .def("S", [](const T& t) { return toNumpy<S>(Vec<S>(t.singularValues().template cast<S>())); })
      .def("V", [](const T& t) { return toNumpy<S>(t.matrixV()); })
      .def("rank", &T::rank)
      .def("rows", &T::rows)
      .def("cols", &T::cols)
      .def("updates", &T::updates)
      .def("orthogonality_error", &T::orthogonalityError)
      .def("ok", [](const T& t) { return t.info() == Eigen::Success; });
}

}  // namespace

void initIncremental(py::module_& m) {
  m.def(
      "orthonormalize",
      [](py::handle X, std::string method) {
        py::array x = asMatrixArray(X, "X");
        return kindOf(x) == Kind::F32 ? orthonormalizeT<float>(x, method) : orthonormalizeT<double>(x, method);
      },
      py::arg("X"), py::arg("method"));
  bindIncremental<float>(m, "IncrementalSVD32");
  bindIncremental<double>(m, "IncrementalSVD64");
}

}  // namespace wproj_py
