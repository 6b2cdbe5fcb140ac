// wproj — Python bindings: the extension module wproj._core. MIT licence.
#include "common.hpp"

#include <wproj/version.hpp>

#include <new>
#include <stdexcept>

namespace wproj_py {

bool isFortran(const py::array& a) {
  // A 2-D array that is both C- and F-contiguous (one row or column) is taken as C order.
  return (a.flags() & py::array::f_style) && !(a.flags() & py::array::c_style);
}

py::array asMatrixArray(py::handle obj, const char* name, int ndim) {
  py::module_ np = py::module_::import("numpy");
  py::array a = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj)
                                               : py::array(np.attr("asarray")(obj));
  if (a.ndim() != ndim) {
    throw py::value_error(std::string("argument '") + name + "' has " + std::to_string(a.ndim()) +
                          " dimension(s); expected " + std::to_string(ndim));
  }
  const char k = a.dtype().kind();
  const auto itemsize = a.dtype().itemsize();
  py::dtype target;
  if (k == 'f' && (itemsize == 4 || itemsize == 8)) {
    target = a.dtype();
  } else if (k == 'f' && itemsize == 2) {
    target = py::dtype::of<float>();
  } else if (k == 'i' || k == 'u' || k == 'b') {
    target = py::dtype::of<double>();
  } else {
    throw py::type_error(std::string("argument '") + name + "' has dtype " +
                         py::str(a.dtype()).cast<std::string>() +
                         "; expected a real floating-point (float32/float64) array, or integers/bool/float16 "
                         "(converted once)");
  }
  const bool contiguous = (a.flags() & py::array::c_style) || (a.flags() & py::array::f_style);
  const bool sameType = target.is(a.dtype()) || target.equal(a.dtype());
  const bool native = a.dtype().attr("isnative").cast<bool>();
  if (sameType && contiguous && native) return a;
  // One conversion into a C-contiguous array of the target dtype.
  return np.attr("ascontiguousarray")(a, target);
}

Kind kindOf(const py::array& a) { return a.dtype().itemsize() == 4 ? Kind::F32 : Kind::F64; }

Kind commonKind(std::initializer_list<const py::array*> arrays) {
  for (const py::array* a : arrays)
    if (kindOf(*a) == Kind::F64) return Kind::F64;
  return Kind::F32;
}

py::array castTo(const py::array& a, Kind kind) {
  if (kindOf(a) == kind) return a;
  py::module_ np = py::module_::import("numpy");
  return np.attr("ascontiguousarray")(a, kind == Kind::F32 ? py::dtype::of<float>() : py::dtype::of<double>());
}

wproj::Side parseSide(const std::string& side) {
  if (side == "left") return wproj::Side::Left;
  if (side == "right") return wproj::Side::Right;
  throw py::value_error("argument 'side' = '" + side + "'; expected 'left' or 'right'");
}

void throwValue(const std::string& msg) { throw py::value_error(msg); }

void initEditingEstimators(py::module_& m);  // editing_estimators.cpp
void initIncremental(py::module_& m);        // incremental.cpp
void initLowrank(py::module_& m);            // lowrank.cpp
void initEditingMore(py::module_& m);        // editing_more.cpp
void initOptimizers(py::module_& m);         // optimizers.cpp
void initMergeConfig(py::module_& m);        // merge_config.cpp

}  // namespace wproj_py

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  m.doc() = "wproj's compiled core (pybind11 over the C++ headers). Use the `wproj` package.";
  m.attr("__version__") = std::to_string(WPROJ_VERSION_MAJOR) + "." + std::to_string(WPROJ_VERSION_MINOR) + "." +
                          std::to_string(WPROJ_VERSION_PATCH);

  static py::exception<wproj::NumericalError> numerical(m, "NumericalError", PyExc_ArithmeticError);
  numerical.doc() = "A computation could not produce a meaningful result (e.g. a factorisation failed).";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const wproj::NumericalError& e) {
      numerical(e.what());
    } catch (const wproj::InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const wproj::IoError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const wproj::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  wproj_py::initDecompositions(m);
  wproj_py::initIncremental(m);
  wproj_py::initProjections(m);
  wproj_py::initDct(m);
  wproj_py::initEditing(m);
  wproj_py::initEditingEstimators(m);
  wproj_py::initMerging(m);
  wproj_py::initLowrank(m);
  wproj_py::initIo(m);
  wproj_py::initEditingMore(m);
  wproj_py::initOptimizers(m);
  wproj_py::initMergeConfig(m);
}
