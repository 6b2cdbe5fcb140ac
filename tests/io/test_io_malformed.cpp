// Every file in tests/io/malformed/ is rejected with its own message (listed in EXPECTED.tsv).
#include "test_common.hpp"

#include <wproj/io.hpp>

#include <fstream>
#include <set>
#include <string>

namespace wio = wproj::io;

namespace {

std::string malformedDir() {
  std::string f = __FILE__;
  return f.substr(0, f.find_last_of('/')) + "/malformed/";
}

std::string rejection(const std::string& path) {
  try {
    if (path.size() > 4 && path.compare(path.size() - 4, 4, ".npy") == 0) {
      (void)wio::readNpy<double>(path);
    } else {
      (void)wio::SafetensorsReader(path);
    }
  } catch (const wproj::IoError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("malformed files: each one is rejected with an IoError naming its rule", "[io][malformed]") {
  std::ifstream list(malformedDir() + "EXPECTED.tsv");
  REQUIRE(list.good());
  std::string line;
  std::set<std::string> listed, messages;
  while (std::getline(list, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto tab = line.find('\t');
    REQUIRE(tab != std::string::npos);
    const std::string file = line.substr(0, tab), expected = line.substr(tab + 1);
    listed.insert(file);
    const std::string msg = rejection(malformedDir() + file);
    INFO(file << ": " << msg);
    CHECK_THAT(msg, Catch::Contains(expected));
    CHECK_THAT(msg, Catch::Contains(file));  // the message names the file
    messages.insert(msg.substr(msg.find(':') + 1));
  }
  CHECK(listed.size() >= 35);
  CHECK(messages.size() == listed.size());  // every file has its own message
  // Every data file in the folder is listed.
  for (const auto& f : wio::detail::listDirectory(malformedDir())) {
    if (f == "EXPECTED.tsv" || f == "generate.py") continue;
    CHECK(listed.count(f) == 1);
  }
}

TEST_CASE("malformed files: the messages name the tensor", "[io][malformed]") {
  const std::string msg = rejection(malformedDir() + "st_size_mismatch.safetensors");
  CHECK_THAT(msg, Catch::Contains("tensor 'w'"));
  CHECK_THAT(msg, Catch::Contains("[2, 2]"));
  CHECK_THAT(rejection(malformedDir() + "st_gap.safetensors"), Catch::Contains("tensor 'b'"));
}
