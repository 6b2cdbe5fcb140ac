// wproj — Python bindings: subspaces, projections, null spaces. MIT licence.
#include "common.hpp"

#include <wproj/linalg/nullspace.hpp>
#include <wproj/linalg/subspace.hpp>

namespace wproj_py {
namespace {

template <typename S>
void bindSubspace(py::module_& m, const char* name) {
  using T = wproj::Subspace<S>;
  auto checked = [](const py::array& x) {
    if (kindOf(x) != (sizeof(S) == 4 ? Kind::F32 : Kind::F64)) return castTo(x, sizeof(S) == 4 ? Kind::F32 : Kind::F64);
    return x;
  };
  py::class_<T>(m, name)
      .def_static("from_columns",
                  [checked](py::handle K, double tol) {
                    py::array k = checked(asMatrixArray(K, "K"));
                    py::gil_scoped_release release;
                    return withView<S>(k, [&](const auto& v) { return T::fromColumns(v, S(tol)); });
                  })
      .def_static("from_orthonormal",
                  [checked](py::handle Q) {
                    py::array q = checked(asMatrixArray(Q, "Q"));
                    Mat<S> qm = withView<S>(q, [](const auto& v) { return Mat<S>(v); });
                    py::gil_scoped_release release;
                    return T::fromOrthonormal(qm);
                  })
      .def_static("zero", [](Index n) { return T(n); })
      .def("basis", [](const T& t) { return toNumpy<S>(t.basis()); })
      .def("dim", &T::dim)
      .def("ambient_dim", &T::ambientDim)
      .def("project",
           [checked](const T& t, py::handle X, const std::string& side) {
             py::array x = checked(asMatrixArray(X, "X"));
             const wproj::Side sd = parseSide(side);
             Mat<S> out;
             {
               py::gil_scoped_release release;
               out = withView<S>(x, [&](const auto& v) { return t.project(v, sd); });
             }
             return toNumpy<S>(std::move(out));
           })
      .def("project_out",
           [checked](const T& t, py::handle X, const std::string& side) {
             py::array x = checked(asMatrixArray(X, "X"));
             const wproj::Side sd = parseSide(side);
             Mat<S> out;
             {
               py::gil_scoped_release release;
               out = withView<S>(x, [&](const auto& v) { return t.projectOut(v, sd); });
             }
             return toNumpy<S>(std::move(out));
           })
      .def("complement",
           [](const T& t) {
             py::gil_scoped_release release;
             return t.complement();
           })
      .def("sum", [](const T& t, const T& o, double tol) {
             py::gil_scoped_release release;
             return t.sum(o, S(tol));
           })
      .def("intersection", [](const T& t, const T& o, double tol) {
             py::gil_scoped_release release;
             return t.intersection(o, S(tol));
           })
      .def("principal_angles",
           [](const T& t, const T& o) {
             Vec<S> a;
             {
               py::gil_scoped_release release;
               a = t.principalAngles(o);
             }
             return toNumpy<S>(std::move(a));
           })
      .def("overlap", [](const T& t, const T& o) {
        py::gil_scoped_release release;
        return double(t.overlap(o));
      });
}

template <typename S>
py::array nullSpaceT(const py::array& a, double tol) {
  Mat<S> b;
  {
    py::gil_scoped_release release;
    b = withView<S>(a, [&](const auto& v) { return Mat<S>(wproj::nullSpaceBasis(v, S(tol))); });
  }
  return toNumpy<S>(std::move(b));
}

}  // namespace

void initProjections(py::module_& m) {
  bindSubspace<float>(m, "Subspace32");
  bindSubspace<double>(m, "Subspace64");
  m.def(
      "null_space",
      [](py::handle A, double tol) {
        py::array a = asMatrixArray(A, "A");
        return kindOf(a) == Kind::F32 ? nullSpaceT<float>(a, tol) : nullSpaceT<double>(a, tol);
      },
      py::arg("A"), py::arg("tol"));
}

}  // namespace wproj_py
