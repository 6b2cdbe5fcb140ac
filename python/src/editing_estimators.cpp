// wproj — Python bindings: DeTox and AlphaEdit estimators. MIT licence.
// Inputs are copied once into column-major matrices: these estimators work on small matrices
// (embeddings of a few hundred pairs, d×d moments), and one layout keeps the module small.
#include "common.hpp"

#include <wproj/editing/alpha_edit.hpp>
#include <wproj/editing/detox.hpp>

namespace wproj_py {
namespace {

template <typename S>
Mat<S> copyOf(py::handle obj, const char* name) {
  py::array a = castTo(asMatrixArray(obj, name), sizeof(S) == 4 ? Kind::F32 : Kind::F64);
  return withView<S>(a, [](const auto& v) { return Mat<S>(v); });
}

template <typename S>
py::tuple detoxT(py::handle P, py::handle N, Index rank, bool centering) {
  Mat<S> p = copyOf<S>(P, "preferred"), n = copyOf<S>(N, "toxic");
  wproj::DetoxEstimator<S> est;
  est.setRank(rank).setCentering(centering);
  {
    py::gil_scoped_release release;
    est.fit(p, n);
  }
  if (est.info() != Eigen::Success) throw wproj::NumericalError("detox_subspace: the SVD did not converge");
  return py::make_tuple(py::cast(est.subspace()), toNumpy<S>(Vec<S>(est.singularValues())),
                        toNumpy<S>(Vec<S>(est.centeringDirection())));
}

template <typename S>
void bindAlphaEdit(py::module_& m, const char* name) {
  using T = wproj::AlphaEdit<S>;
  py::class_<T>(m, name)
      .def(py::init([](double threshold, double lambda) {
        T t;
        t.setNullSpaceThreshold(threshold).setLambda(lambda);
        return t;
      }))
      .def("set_preserved_keys",
           [](T& t, py::handle K0) {
             Mat<S> k = copyOf<S>(K0, "preserved_keys");
             py::gil_scoped_release release;
             t.setPreservedKeys(k);
           })
      .def("set_preserved_second_moment",
           [](T& t, py::handle S0) {
             Mat<S> s = copyOf<S>(S0, "second_moment");
             py::gil_scoped_release release;
             t.setPreservedSecondMoment(s);
           })
      .def("update",
           [](T& t, py::handle K, py::handle R, bool commit) {
             Mat<S> k = copyOf<S>(K, "keys"), r = copyOf<S>(R, "residuals"), d;
             {
               py::gil_scoped_release release;
               d = commit ? t.update(k, r) : t.computeUpdate(k, r);
             }
             return toNumpy<S>(std::move(d));
           })
      .def("null_space", [](const T& t) { return t.nullSpace(); })
      .def("cache", [](const T& t) { return toNumpy<S>(t.cache()); })
      .def("set_cache", [](T& t, py::handle C) { t.setCache(copyOf<S>(C, "cache")); });
}

}  // namespace

void initEditingEstimators(py::module_& m) {
  m.def("detox", [](py::handle P, py::handle N, Index rank, bool centering, bool f32) {
    return f32 ? detoxT<float>(P, N, rank, centering) : detoxT<double>(P, N, rank, centering);
  });
  bindAlphaEdit<float>(m, "AlphaEdit32");
  bindAlphaEdit<double>(m, "AlphaEdit64");
}

}  // namespace wproj_py
