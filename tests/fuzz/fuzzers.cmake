# libFuzzer targets (included from the top-level CMakeLists.txt when WPROJ_BUILD_FUZZERS is ON;
# they need only the io headers, not the command-line tool's dependencies).
# Needs clang with libFuzzer, e.g.: CXX=clang++ cmake -S . -B build-fuzz -DWPROJ_BUILD_FUZZERS=ON
#   cmake --build build-fuzz --target fuzz_safetensors fuzz_npy
#   build-fuzz/fuzz_safetensors -max_total_time=600 tests/fuzz/corpus/safetensors
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(WARNING "WPROJ_BUILD_FUZZERS needs clang (libFuzzer); fuzzers skipped with ${CMAKE_CXX_COMPILER_ID}")
  return()
endif()
include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer")
check_cxx_source_compiles("
#include <cstddef>
#include <cstdint>
extern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }" WPROJ_HAVE_LIBFUZZER)
unset(CMAKE_REQUIRED_FLAGS)
if(NOT WPROJ_HAVE_LIBFUZZER)
  message(WARNING "clang without libFuzzer: fuzzers skipped")
  return()
endif()
foreach(_f fuzz_safetensors fuzz_npy fuzz_json)
  add_executable(${_f} ${PROJECT_SOURCE_DIR}/tests/fuzz/${_f}.cpp)
  target_link_libraries(${_f} PRIVATE wproj::wproj)
  target_compile_options(${_f} PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(${_f} PRIVATE -fsanitize=fuzzer,address,undefined)
endforeach()
