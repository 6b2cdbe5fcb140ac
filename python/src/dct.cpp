// wproj — Python bindings: orthonormal DCT-II. MIT licence.
#include "common.hpp"

#include <wproj/linalg/dct.hpp>

namespace wproj_py {
namespace {

template <typename S>
py::array dctT(const py::array& x, int axis, bool inverse) {
  bool transposed = false;
  MapC<S> v = columnMajorView<S>(x, transposed);
  // A C-ordered X is viewed as Xᵀ (column-major): the rows of X are the columns of the view.
  const bool alongColumnsOfView = (axis == 0) != transposed;
  Mat<S> out;
  {
    py::gil_scoped_release release;
    wproj::checkNonEmpty(v, "dct", "X");
    const Index n = alongColumnsOfView ? v.rows() : v.cols();
    wproj::DCT<S> plan(n);
    if (alongColumnsOfView) out = inverse ? plan.inverseOfColumns(v) : plan.ofColumns(v);
    else out = inverse ? plan.inverseOfRows(v) : plan.ofRows(v);
  }
  py::array r = toNumpy<S>(std::move(out));
  return transposed ? py::array(r.attr("T")) : r;
}

}  // namespace

void initDct(py::module_& m) {
  m.def(
      "dct_matrix",
      [](Index n, bool f32) {
        if (f32) return toNumpy<float>(wproj::dctMatrix<float>(n));
        return toNumpy<double>(wproj::dctMatrix<double>(n));
      },
      py::arg("n"), py::arg("float32"));
  m.def(
      "dct",
      [](py::handle X, int axis, bool inverse) {
        if (axis != 0 && axis != 1) throw py::value_error("argument 'axis' = " + std::to_string(axis) + "; expected 0 or 1");
        py::array x = asMatrixArray(X, "X");
        return kindOf(x) == Kind::F32 ? dctT<float>(x, axis, inverse) : dctT<double>(x, axis, inverse);
      },
      py::arg("X"), py::arg("axis"), py::arg("inverse"));
}

}  // namespace wproj_py
