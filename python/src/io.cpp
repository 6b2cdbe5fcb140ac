// wproj — Python bindings: safetensors files (memory-mapped reader, atomic writer). MIT licence.
#include "common.hpp"

#include <wproj/io/safetensors.hpp>

#include <memory>
#include <tuple>

namespace wproj_py {
namespace {

using Reader = wproj::io::SafetensorsReader;

/// The reader with the buffer protocol over its whole mapping (read-only): NumPy views made from
/// it keep it, and so the mapping, alive through their base object.
struct MappedSafetensors {
  std::unique_ptr<Reader> reader;
};

}  // namespace

void initIo(py::module_& m) {
  py::class_<MappedSafetensors>(m, "SafetensorsFile", py::buffer_protocol())
      .def(py::init([](const std::string& path) {
        MappedSafetensors f;
        py::gil_scoped_release release;
        f.reader = std::make_unique<Reader>(path);
        return f;
      }))
      .def_buffer([](MappedSafetensors& f) {
        const auto& file = *f.reader;
        const std::size_t n = file.fileSize();
        const unsigned char* p = n ? file.rawData(wproj::io::TensorInfo{}) - file.header().dataStart() : nullptr;
        static const unsigned char empty[1] = {0};
        return py::buffer_info(const_cast<unsigned char*>(p ? p : empty), 1, py::format_descriptor<unsigned char>::format(),
                               1, {py::ssize_t(n)}, {py::ssize_t(1)}, /*readonly=*/true);
      })
      .def("tensors",
           [](const MappedSafetensors& f) {
             py::list out;
             const std::size_t start = f.reader->header().dataStart();
             for (const auto& t : f.reader->tensors()) {
               py::list shape;
               for (auto e : t.shape) shape.append(py::int_(e));
               out.append(py::make_tuple(t.name, std::string(wproj::io::dtypeName(t.dtype)), py::tuple(shape),
                                         start + t.begin, start + t.end));
             }
             return out;
           })
      .def("metadata",
           [](const MappedSafetensors& f) {
             py::dict d;
             for (const auto& kv : f.reader->metadata()) d[py::str(kv.first)] = kv.second;
             return d;
           })
      .def("read_float32", [](const MappedSafetensors& f, const std::string& name) {
        Mat<float> out;
        {
          py::gil_scoped_release release;
          out = f.reader->read<float>(name);
        }
        return toNumpy<float>(std::move(out));
      });

  m.def(
      "save_safetensors",
      [](const std::string& path, const std::vector<std::tuple<std::string, std::string, py::array>>& tensors,
         const std::vector<std::pair<std::string, std::string>>& metadata) {
        wproj::io::SafetensorsWriter w(path);
        for (const auto& kv : metadata) w.addMetadata(kv.first, kv.second);
        // The Python layer passes C-contiguous arrays and the safetensors dtype name of each.
        for (const auto& [name, dtype, a] : tensors) {
          std::vector<std::uint64_t> shape;
          for (py::ssize_t i = 0; i < a.ndim(); ++i) shape.push_back(std::uint64_t(a.shape(i)));
          w.declare(name, wproj::io::dtypeFromString(dtype), shape);
        }
        py::gil_scoped_release release;
        w.begin();
        for (const auto& [name, dtype, a] : tensors) w.writeRaw(name, a.data(), std::size_t(a.nbytes()));
        w.commit();
      },
      py::arg("path"), py::arg("tensors"), py::arg("metadata"));
}

}  // namespace wproj_py
