// wproj — Python bindings: model merging on arrays. MIT licence.
#include "common.hpp"

#include <wproj/merging/baselines.hpp>
#include <wproj/merging/opcm.hpp>
#include <wproj/merging/spectral.hpp>

#include <functional>
#include <vector>

namespace wproj_py {
namespace {

/// base + merger.mergeDelta([θ_i − base]) for 2-D arrays of one scalar type.
template <typename S, typename Merger>
py::array mergeT(const py::array& base, const std::vector<py::array>& models, const Merger& merger) {
  Mat<S> theta0 = withView<S>(base, [](const auto& v) { return Mat<S>(v); });
  std::vector<Mat<S>> taus;
  taus.reserve(models.size());
  Mat<S> out;
  {
    py::gil_scoped_release release;
    for (std::size_t i = 0; i < models.size(); ++i) {
      const py::array& a = models[i];
      if (a.shape(0) != theta0.rows() || a.shape(1) != theta0.cols())
        throw wproj::InvalidArgument("merge: model " + std::to_string(i) + " has shape " +
                                     wproj::detail::shapeString(a.shape(0), a.shape(1)) + "; expected the base's " +
                                     wproj::detail::shapeString(theta0.rows(), theta0.cols()));
      taus.push_back(withView<S>(a, [&](const auto& v) { return Mat<S>(v - theta0); }));
    }
    out = theta0 + merger.mergeDelta(taus);
  }
  return toNumpy<S>(std::move(out));
}

template <typename S>
py::array opcmT(const py::array& base, const std::vector<py::array>& models, double alpha) {
  Mat<S> theta0 = withView<S>(base, [](const auto& v) { return Mat<S>(v); });
  wproj::OpcmMerging<S> opcm;
  opcm.setAlpha(alpha);
  Mat<S> out;
  {
    py::gil_scoped_release release;
    for (const py::array& a : models) {
      if (a.shape(0) != theta0.rows() || a.shape(1) != theta0.cols())
        throw wproj::InvalidArgument("opcm: a model has shape " + wproj::detail::shapeString(a.shape(0), a.shape(1)) +
                                     "; expected the base's " + wproj::detail::shapeString(theta0.rows(), theta0.cols()));
      Mat<S> tau = withView<S>(a, [&](const auto& v) { return Mat<S>(v - theta0); });
      opcm.add(tau);
    }
    out = theta0 + opcm.mergedDelta();
  }
  return toNumpy<S>(std::move(out));
}

/// Dispatches on the common dtype of base and models; `run<S>` does the work.
template <typename Run32, typename Run64>
py::array dispatch(py::handle base, py::handle models, Run32 run32, Run64 run64) {
  py::array b = asMatrixArray(base, "base");
  std::vector<py::array> ms;
  for (py::handle h : models) ms.push_back(asMatrixArray(h, "models[i]"));
  if (ms.empty()) throw py::value_error("argument 'models' is empty; expected at least one fine-tuned model");
  Kind k = kindOf(b);
  for (const auto& a : ms)
    if (kindOf(a) == Kind::F64) k = Kind::F64;
  b = castTo(b, k);
  for (auto& a : ms) a = castTo(a, k);
  return k == Kind::F32 ? run32(b, ms) : run64(b, ms);
}

#define WPROJ_PY_MERGE(NAME, SETUP)                                                                      \
  [&](const py::array& b, const std::vector<py::array>& ms) {                                           \
    NAME<float> mg;                                                                                      \
    SETUP;                                                                                               \
    return mergeT<float>(b, ms, mg);                                                                     \
  },                                                                                                     \
      [&](const py::array& b, const std::vector<py::array>& ms) {                                       \
        NAME<double> mg;                                                                                 \
        SETUP;                                                                                           \
        return mergeT<double>(b, ms, mg);                                                                \
      }

}  // namespace

void initMerging(py::module_& m) {
  m.def("merge_task_arithmetic", [](py::handle base, py::handle models, double scale) {
    return dispatch(base, models, WPROJ_PY_MERGE(wproj::TaskArithmeticMerging, mg.setScale(scale)));
  });
  m.def("merge_ties", [](py::handle base, py::handle models, double density, double scale) {
    return dispatch(base, models, WPROJ_PY_MERGE(wproj::TiesMerging, mg.setDensity(density).setScale(scale)));
  });
  m.def("merge_dare", [](py::handle base, py::handle models, double drop, double scale, std::uint64_t seed) {
    return dispatch(base, models, WPROJ_PY_MERGE(wproj::DareMerging, mg.setDropRate(drop).setScale(scale).setSeed(seed)));
  });
  m.def("merge_slerp", [](py::handle base, py::handle models, double t, double threshold) {
    return dispatch(base, models, WPROJ_PY_MERGE(wproj::SlerpMerging, mg.setT(t).setLerpThreshold(threshold)));
  });
  m.def("merge_model_stock", [](py::handle base, py::handle models) {
    return dispatch(base, models, WPROJ_PY_MERGE(wproj::ModelStockMerging, (void)0));
  });
  m.def("merge_iso_c", [](py::handle base, py::handle models, double scale) {
    return dispatch(base, models, WPROJ_PY_MERGE(wproj::IsoCMerging, mg.setScale(scale)));
  });
  m.def("merge_iso_cts", [](py::handle base, py::handle models, double scale, double common) {
    return dispatch(base, models, WPROJ_PY_MERGE(wproj::IsoCtsMerging, mg.setScale(scale).setCommonFraction(common)));
  });
  m.def("merge_tsv", [](py::handle base, py::handle models, double scale) {
    return dispatch(base, models, WPROJ_PY_MERGE(wproj::TsvMerging, mg.setScale(scale)));
  });
  m.def("merge_opcm", [](py::handle base, py::handle models, double alpha) {
    return dispatch(
        base, models, [&](const py::array& b, const std::vector<py::array>& ms) { return opcmT<float>(b, ms, alpha); },
        [&](const py::array& b, const std::vector<py::array>& ms) { return opcmT<double>(b, ms, alpha); });
  });
}

}  // namespace wproj_py
