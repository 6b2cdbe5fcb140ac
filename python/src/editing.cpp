// wproj — Python bindings: LEACE concept erasure. MIT licence.
#include "common.hpp"

#include <wproj/editing/leace.hpp>

namespace wproj_py {
namespace {

template <typename S>
void bindLeace(py::module_& m, const char* fitterName, const char* eraserName) {
  using E = wproj::LeaceEraser<S>;
  using F = wproj::LeaceFitter<S>;
  constexpr Kind kind = sizeof(S) == 4 ? Kind::F32 : Kind::F64;
  py::class_<E>(m, eraserName)
      .def(py::init([](py::handle L, py::handle R, py::handle b, bool affine) {
        py::array l = castTo(asMatrixArray(L, "proj_left"), kind), r = castTo(asMatrixArray(R, "proj_right"), kind);
        py::array bb = castTo(asMatrixArray(b, "bias", 1), kind);
        Mat<S> lm = withView<S>(l, [](const auto& v) { return Mat<S>(v); });
        Mat<S> rm = withView<S>(r, [](const auto& v) { return Mat<S>(v.transpose()); });
        Vec<S> bm = Eigen::Map<const Vec<S>>(static_cast<const S*>(bb.data()), bb.shape(0));
        return E(std::move(lm), std::move(rm), std::move(bm), affine);
      }))
      .def("erase",
           [](const E& e, py::handle X) {
             py::array x = castTo(asMatrixArray(X, "X"), kind);
             Mat<S> out;
             {
               py::gil_scoped_release release;
               out = withView<S>(x, [&](const auto& v) { return e.erase(v); });
             }
             return toNumpy<S>(std::move(out));
           })
      .def("left", [](const E& e) { return toNumpy<S>(e.left()); })
      .def("right", [](const E& e) { return toNumpy<S>(e.right()); })
      .def("bias", [](const E& e) { return toNumpy<S>(e.bias()); })
      .def("affine", &E::affine)
      .def("dim", &E::dim)
      .def("rank", &E::rank)
      .def("projector", [](const E& e) { return toNumpy<S>(e.projector()); });
  py::class_<F>(m, fitterName)
      .def(py::init([](Index xDim, Index zDim, const std::string& method, bool affine, bool shrinkage,
                       bool constrainTrace, double svdTol) {
             F f(xDim, zDim);
             if (method == "leace") f.setMethod(wproj::LeaceMethod::Leace);
             else if (method == "orth") f.setMethod(wproj::LeaceMethod::Orthogonal);
             else throw py::value_error("argument 'method' = '" + method + "'; expected 'leace' or 'orth'");
             f.setAffine(affine).setShrinkage(shrinkage).setTraceConstraint(constrainTrace).setSvdTolerance(svdTol);
             return f;
           }),
           py::arg("x_dim"), py::arg("z_dim"), py::arg("method"), py::arg("affine"), py::arg("shrinkage"),
           py::arg("constrain_cov_trace"), py::arg("svd_tol"))
      .def("update",
           [](F& f, py::handle X, py::handle Z, bool labels) {
             py::array x = castTo(asMatrixArray(X, "X"), kind);
             if (labels) {
               auto z = py::array_t<long long, py::array::c_style | py::array::forcecast>::ensure(Z);
               if (!z || z.ndim() != 1) throw py::value_error("argument 'Z' (class labels) must be a 1-D integer array");
               Eigen::Map<const Eigen::Matrix<long long, Eigen::Dynamic, 1>> zm(z.data(), z.shape(0));
               py::gil_scoped_release release;
               withView<S>(x, [&](const auto& v) { f.update(v, zm); return 0; });
             } else {
               py::array z = castTo(asMatrixArray(Z, "Z"), kind);
               py::gil_scoped_release release;
               withView<S>(x, [&](const auto& v) {
                 withView<S>(z, [&](const auto& w) { f.update(v, w); return 0; });
                 return 0;
               });
             }
           })
      .def("eraser",
           [](const F& f) {
             py::gil_scoped_release release;
             return f.eraser();
           })
      .def("sigma_xx", [](const F& f) { return toNumpy<S>(f.sigmaXX()); })
      .def("count", [](const F& f) { return f.statistics().count(); });
}

}  // namespace

void initEditing(py::module_& m) {
  bindLeace<float>(m, "LeaceFitter32", "LeaceEraser32");
  bindLeace<double>(m, "LeaceFitter64", "LeaceEraser64");
}

}  // namespace wproj_py
