// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// Library version (one source of truth; CMake parses these three lines).
#define WPROJ_VERSION_MAJOR 0
#define WPROJ_VERSION_MINOR 1
#define WPROJ_VERSION_PATCH 0

#define WPROJ_VERSION_STRING "0.1.0"
