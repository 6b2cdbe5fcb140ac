// Tour chapter: safetensors files — write, read back through a memory map, reject a corrupted copy.
#include "tour.hpp"

#include <wproj/core/random.hpp>
#include <wproj/io.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iomanip>
#include <string>
#include <vector>

namespace chapter60 {  // a named namespace per chapter: the chapters compile as one unit

void run(std::ostream& os, const tour::Options& opt) {
  namespace wio = wproj::io;
  const Eigen::Index n = opt.quick ? 64 : 512;
  const std::string dir = "/tmp/wproj_tour_io_" + std::to_string(::getpid());
  if (!wio::detail::isDirectory(dir)) ::mkdir(dir.c_str(), 0777);
  const std::string path = dir + "/tiny.safetensors", bad = dir + "/corrupted.safetensors";

  // Write two tensors: one in bf16, one in f32 (the writer sorts names and pads the header to 8 bytes).
  const Eigen::MatrixXf w = wproj::gaussianMatrix<Eigen::MatrixXf>(n, n / 2, 7);
  const Eigen::VectorXf b = Eigen::VectorXf::LinSpaced(n, -1.0f, 1.0f);
  {
    wio::SafetensorsWriter out(path);
    out.addMetadata("format", "pt");
    out.declare("layer.weight", wio::DType::BF16, {std::uint64_t(n), std::uint64_t(n / 2)});
    out.declare("layer.bias", wio::DType::F32, {std::uint64_t(n)});
    out.begin();
    out.write("layer.weight", w);
    out.write("layer.bias", b);
    out.commit();  // the file appears only now (temporary file + fsync + rename)
  }
  const wio::SafetensorsReader in(path);
  os << "Wrote " << path << " (" << in.fileSize() << " bytes) and mapped it back read-only:\n";
  for (const auto& t : in.tensors())
    os << "  " << std::left << std::setw(14) << t.name << std::setw(6) << wio::dtypeName(t.dtype) << t.shapeString()
       << "  bytes [" << t.begin << ", " << t.end << ")\n";
  const auto bias = in.view<float>("layer.bias");
  const Eigen::MatrixXf w2 = in.read<float>("layer.weight");
  os << "  layer.bias as a zero-copy Eigen::Map: " << (bias.isZeroCopy() ? "yes" : "no (copied)")
     << ", max |b - b'| = " << (bias.map() - b).cwiseAbs().maxCoeff() << "\n"
     << "  layer.weight through bf16: max relative error " << std::setprecision(3)
     << ((w2 - w).cwiseAbs().maxCoeff() / w.cwiseAbs().maxCoeff()) << " (bf16 keeps 8 significant bits)\n\n";

  // Corrupt a copy: claim one more column for the weight in the JSON header.
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const std::string from = "[" + std::to_string(n) + "," + std::to_string(n / 2) + "]";
  const std::string to = "[" + std::to_string(n) + "," + std::to_string(n / 2 + 1) + "]";
  const auto at = bytes.find(from);
  if (at != std::string::npos && from.size() == to.size()) bytes.replace(at, from.size(), to);
  std::ofstream(bad, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  os << "A copy whose header claims shape " << to << " for layer.weight is rejected before any data is read:\n";
  try {
    wio::SafetensorsReader r(bad);
    os << "  (unexpectedly accepted)\n";
  } catch (const wproj::IoError& e) {
    os << "  IoError: " << e.what() << "\n";
  }
  std::remove(path.c_str());
  std::remove(bad.c_str());
  ::rmdir(dir.c_str());
}

tour::Register chapter{60, "Files: safetensors and .npy", &run};

}  // namespace chapter60
