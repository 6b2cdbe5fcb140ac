// The tour: a walk through what wproj does, one chapter per capability.
#pragma once

#include <iostream>
#include <string>
#include <vector>

namespace tour {

/// Options every chapter sees.
struct Options {
  bool quick = false;  ///< smaller problems (used by the test suite)
};

/// One chapter: an order key, a title, and the function that prints it.
struct Chapter {
  int order;
  std::string title;
  void (*run)(std::ostream&, const Options&);
};

inline std::vector<Chapter>& chapters() {
  static std::vector<Chapter> all;
  return all;
}

/// Registers a chapter at static-initialisation time: `static tour::Register r{30, "Title", &fn};`
struct Register {
  Register(int order, std::string title, void (*run)(std::ostream&, const Options&)) {
    chapters().push_back({order, std::move(title), run});
  }
};

/// Prints a section rule under a title.
inline void heading(std::ostream& os, const std::string& title) {
  os << "\n" << title << "\n" << std::string(title.size(), '-') << "\n";
}

}  // namespace tour
