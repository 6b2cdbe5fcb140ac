// wproj — Python bindings: shared helpers (array views, results, dtype dispatch). MIT licence.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <wproj/core/config.hpp>
#include <wproj/core/side.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace wproj_py {

namespace py = pybind11;
using wproj::Index;

template <typename S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
template <typename S>
using MatR = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename S>
using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
/// A read-only view of an F-contiguous NumPy matrix.
template <typename S>
using MapC = Eigen::Map<const Mat<S>>;
/// A read-only view of a C-contiguous NumPy matrix (row-major map: no copy).
template <typename S>
using MapR = Eigen::Map<const MatR<S>>;

/// The scalar a set of inputs is computed in: float32 when every input is float32 (or a type
/// that converts to it without loss, float16), float64 otherwise.
enum class Kind { F32, F64 };

/// Converts `obj` once, when needed, into a float32/float64 ndarray of `ndim` dimensions that is
/// C- or F-contiguous. float32/float64 contiguous arrays pass through untouched (no copy).
/// float16 becomes float32; integers and bool become float64; complex and other dtypes are refused
/// (TypeError); non-contiguous arrays are copied once into C order.
py::array asMatrixArray(py::handle obj, const char* name, int ndim = 2);

/// Common kind of several arrays (float64 wins).
Kind kindOf(const py::array& a);
Kind commonKind(std::initializer_list<const py::array*> arrays);
/// `a` converted to the kind's dtype (no copy when it already has it).
py::array castTo(const py::array& a, Kind kind);

bool isFortran(const py::array& a);

/// Calls f(view) with an Eigen view of the 2-D array `a` (already of scalar S): a column-major
/// Map for F order, a row-major Map for C order. No copy.
template <typename S, typename F>
decltype(auto) withView(const py::array& a, F&& f) {
  const S* p = static_cast<const S*>(a.data());
  const Index r = a.shape(0), c = a.shape(1);
  if (isFortran(a)) return f(MapC<S>(p, r, c));
  return f(MapR<S>(p, r, c));
}

/// Calls f(view) with a column-major view when possible; a C-order array is viewed through its
/// transpose, f(MapC(data, cols, rows), true) — for algorithms that are cheaper on one layout.
template <typename S>
MapC<S> columnMajorView(const py::array& a, bool& transposed) {
  const S* p = static_cast<const S*>(a.data());
  transposed = !isFortran(a);
  if (transposed) return MapC<S>(p, a.shape(1), a.shape(0));
  return MapC<S>(p, a.shape(0), a.shape(1));
}

/// Storage of a large result handed to NumPy (F order). From 2 MiB on it is aligned to 2 MiB and
/// advised for transparent huge pages, as NumPy does for its own arrays from 4 MiB on: filling it
/// then faults once per 2 MiB instead of once per 4 KiB page (a fresh 2 MiB result costs 512
/// faults otherwise, several milliseconds on a virtual machine). Filled without the GIL, handed
/// over with it.
template <typename S>
class OutMatrix {
 public:
  OutMatrix(Index rows, Index cols) : m_rows(rows), m_cols(cols) {
    const std::size_t bytes = std::max<std::size_t>(1, std::size_t(rows) * std::size_t(cols) * sizeof(S));
    const std::size_t align = bytes >= kHugePage ? kHugePage : 64;
    void* p = nullptr;
    if (posix_memalign(&p, align, (bytes + align - 1) / align * align) != 0) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= kHugePage) madvise(p, (bytes + align - 1) / align * align, MADV_HUGEPAGE);  // advice only
#endif
    m_data = static_cast<S*>(p);
  }
  ~OutMatrix() { std::free(m_data); }
  OutMatrix(const OutMatrix&) = delete;
  OutMatrix& operator=(const OutMatrix&) = delete;

  Eigen::Map<Mat<S>> map() { return Eigen::Map<Mat<S>>(m_data, m_rows, m_cols); }
  /// The NumPy array owning the storage (needs the GIL); the object is empty afterwards.
  py::array release() {
    S* data = m_data;
    py::capsule owner(data, [](void* p) { std::free(p); });
    m_data = nullptr;
    return py::array_t<S, py::array::f_style>({py::ssize_t(m_rows), py::ssize_t(m_cols)},
                                              {py::ssize_t(sizeof(S)), py::ssize_t(sizeof(S)) * m_rows}, data, owner);
  }

 private:
  static constexpr std::size_t kHugePage = std::size_t(2) << 20;
  S* m_data = nullptr;
  Index m_rows, m_cols;
};

/// Moves an Eigen matrix into a NumPy array (F order) without copying its storage.
template <typename S>
py::array toNumpy(Mat<S>&& m) {
  auto* heap = new Mat<S>(std::move(m));
  py::capsule owner(heap, [](void* p) { delete static_cast<Mat<S>*>(p); });
  const py::ssize_t r = heap->rows(), c = heap->cols();
  return py::array_t<S, py::array::f_style>({r, c}, {py::ssize_t(sizeof(S)), py::ssize_t(sizeof(S)) * r}, heap->data(),
                                            owner);
}
template <typename S>
py::array toNumpy(const Mat<S>& m) {
  return toNumpy<S>(Mat<S>(m));
}
template <typename S>
py::array toNumpy(Vec<S>&& v) {
  auto* heap = new Vec<S>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<Vec<S>*>(p); });
  return py::array_t<S>({py::ssize_t(heap->size())}, {py::ssize_t(sizeof(S))}, heap->data(), owner);
}
template <typename S>
py::array toNumpy(const Vec<S>& v) {
  return toNumpy<S>(Vec<S>(v));
}
/// Transposed result (V → Vᵀ) as a C-order view of the same storage.
template <typename S>
py::array toNumpyTransposed(Mat<S>&& m) {
  return toNumpy<S>(std::move(m)).attr("T");
}

wproj::Side parseSide(const std::string& side);

/// Raises ValueError naming the argument.
[[noreturn]] void throwValue(const std::string& msg);

void initDecompositions(py::module_& m);
void initProjections(py::module_& m);
void initDct(py::module_& m);
void initEditing(py::module_& m);
void initMerging(py::module_& m);
void initIo(py::module_& m);
void initGradient(py::module_& m);

}  // namespace wproj_py
