// wproj — Python bindings: the merge-method registry on arrays. MIT licence.
#include "common.hpp"

#include <wproj/merging/registry.hpp>

#include <limits>
#include <string>
#include <vector>

namespace wproj_py {
namespace {

/// The registry as plain Python data: one dict per method (the Python package generates its
/// functions and docstrings from it).
py::list methodTable() {
  py::list out;
  for (const wproj::MergeMethod& m : wproj::mergeMethods()) {
    py::list params;
    for (const wproj::ParamSpec& p : m.params) {
      py::dict d;
      d["name"] = p.name;
      d["kind"] = std::string(wproj::toString(p.kind));
      d["default"] = p.required ? py::object(py::none()) : py::object(py::float_(p.defaultValue));
      d["meaning"] = p.meaning;
      d["expected"] = p.expected;
      d["required"] = p.required;
      params.append(d);
    }
    py::dict d;
    d["name"] = m.name;
    d["aliases"] = m.aliases;
    d["title"] = m.title;
    d["reference"] = m.reference;
    d["params"] = params;
    d["needs_base"] = m.needsBase;
    d["accepts_base"] = m.acceptsBase;
    d["randomized"] = m.randomized;
    d["elementwise"] = m.elementwise;
    d["continual"] = m.continual;
    d["min_models"] = py::int_(m.minModels);
    d["max_models"] = m.maxModels == std::numeric_limits<Index>::max() ? py::object(py::none()) : py::object(py::int_(m.maxModels));
    out.append(d);
  }
  return out;
}

/// Python values → MergeParams: bool → flag, number → number, sequence → one number per model.
wproj::MergeParams toParams(const py::dict& params) {
  wproj::MergeParams out;
  for (auto kv : params) {
    const std::string name = py::str(kv.first);
    py::handle v = kv.second;
    if (py::isinstance<py::bool_>(v)) {
      out[name] = wproj::ParamValue::flag(v.cast<bool>());
    } else if (py::isinstance<py::str>(v) || py::isinstance<py::bytes>(v)) {
      throw py::value_error("argument '" + name + "' = '" + py::str(v).cast<std::string>() +
                            "'; expected a number, true/false or one number per model");
    } else if (py::hasattr(v, "__len__") || py::hasattr(v, "__iter__")) {
      std::vector<double> xs;
      for (py::handle x : py::iter(v)) xs.push_back(x.cast<double>());
      out[name] = wproj::ParamValue::perModel(std::move(xs));
    } else {
      out[name] = wproj::ParamValue::number(v.cast<double>());
    }
  }
  return out;
}

template <typename S>
py::array runT(const wproj::MergeMethod& m, const py::object& base, const std::vector<py::array>& models,
               const wproj::MergeParams& given, std::uint64_t seed, const std::string& name) {
  const Index n = Index(models.size());
  const bool hasBase = !base.is_none();
  py::array b = hasBase ? py::array(base) : py::array();
  auto fetch = [](const py::array& a) { return withView<S>(a, [](const auto& v) { return Mat<S>(v); }); };
  Mat<S> out;
  {
    py::gil_scoped_release release;
    const wproj::ResolvedParams r = m.resolve(given, n);
    if (m.hasTensorForm()) {
      wproj::TensorMergeInputs<S> in;
      in.name = name;
      in.numModels = n;
      in.hasBase = hasBase;
      if (hasBase) in.base = [&]() { return fetch(b); };
      in.model = [&](Index i) { return fetch(models[std::size_t(i)]); };
      in.seed = seed;
      out = m.mergeTensor(wproj::MergeMethod::tensorParams(r, n), in);
    } else {
      // Whole-model methods (OPCM): one tensor through the job interface.
      wproj::requireArg(hasBase, m.where().c_str(), "base", "None", "a base model (the method merges task vectors)");
      wproj::MergeJob<S> job;
      job.names = {name.empty() ? std::string("tensor") : name};
      job.numModels = n;
      job.seed = seed;
      job.base = [&](const std::string&) { return fetch(b); };
      job.model = [&](Index i, const std::string&) { return fetch(models[std::size_t(i)]); };
      job.sink = [&](const std::string&, const wproj::MergeMatrix<S>& t) { out = t; };
      m.run(given, job);
    }
  }
  return toNumpy<S>(std::move(out));
}

py::array mergeArrays(const std::string& method, py::object base, py::handle models, py::dict params, std::uint64_t seed,
                      const std::string& name) {
  const wproj::MergeMethod& m = wproj::mergeMethod(method);
  std::vector<py::array> ms;
  for (py::handle h : models) ms.push_back(asMatrixArray(h, "models[i]"));
  if (ms.empty()) throw py::value_error("argument 'models' is empty; expected at least one model");
  Kind k = Kind::F32;
  if (!base.is_none()) {
    if (!m.acceptsBase)
      throw py::value_error("argument 'base' is given; merge method '" + m.name + "' takes no base model");
    base = asMatrixArray(base, "base");
    k = kindOf(py::array(base));
  } else if (m.needsBase) {
    throw py::value_error("argument 'base' is None; merge method '" + m.name + "' needs a base model");
  }
  for (const auto& a : ms)
    if (kindOf(a) == Kind::F64) k = Kind::F64;
  if (!base.is_none()) base = castTo(py::array(base), k);
  const Index rows = base.is_none() ? ms[0].shape(0) : py::array(base).shape(0);
  const Index cols = base.is_none() ? ms[0].shape(1) : py::array(base).shape(1);
  for (std::size_t i = 0; i < ms.size(); ++i) {
    ms[i] = castTo(ms[i], k);
    if (ms[i].shape(0) != rows || ms[i].shape(1) != cols)
      throw py::value_error("argument 'models[" + std::to_string(i) + "]' has shape " +
                            wproj::detail::shapeString(ms[i].shape(0), ms[i].shape(1)) + "; expected " +
                            wproj::detail::shapeString(rows, cols) + (base.is_none() ? " (the first model's)" : " (the base's)"));
  }
  const wproj::MergeParams given = toParams(params);
  return k == Kind::F32 ? runT<float>(m, base, ms, given, seed, name) : runT<double>(m, base, ms, given, seed, name);
}

}  // namespace

void initMerging(py::module_& m) {
  m.def("merge_methods", &methodTable, "The merge-method registry as a list of dicts.");
  m.def("merge_arrays", &mergeArrays, py::arg("method"), py::arg("base"), py::arg("models"), py::arg("params"),
        py::arg("seed") = 0, py::arg("name") = std::string(),
        "Runs the registry method `method` on 2-D arrays (base may be None).");
}

}  // namespace wproj_py
