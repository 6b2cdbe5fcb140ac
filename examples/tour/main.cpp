// wproj tour — runs every chapter on embedded default data and prints a short report.
//
//   tour            the full tour
//   tour --quick    smaller problems (what the test suite runs)
//   tour --list     the chapter titles
//   tour N          only chapter N (1-based, as listed)

#include "tour.hpp"

#include <wproj/version.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>

int main(int argc, char** argv) {
  tour::Options options;
  bool list = false;
  int only = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) options.quick = true;
    else if (std::strcmp(argv[i], "--list") == 0) list = true;
    else if (std::atoi(argv[i]) > 0) only = std::atoi(argv[i]);
    else {
      std::cerr << "tour: unknown argument '" << argv[i] << "' (use --quick, --list or a chapter number)\n";
      return 2;
    }
  }
  auto& all = tour::chapters();
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  if (list) {
    for (std::size_t i = 0; i < all.size(); ++i) std::cout << i + 1 << ". " << all[i].title << "\n";
    return 0;
  }
  std::cout << "wproj " << WPROJ_VERSION_STRING << " — a tour of weight-matrix projection methods\n";
  try {
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (only != 0 && int(i + 1) != only) continue;
      const auto t0 = std::chrono::steady_clock::now();
      tour::heading(std::cout, std::to_string(i + 1) + ". " + all[i].title);
      all[i].run(std::cout, options);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cout << "  (" << s << " s)\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "tour: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
