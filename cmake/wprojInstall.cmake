# Install rules: headers, the exported wproj::wproj target, a package config and a pkg-config file.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS wproj EXPORT wprojTargets)
install(DIRECTORY include/wproj DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT wprojTargets NAMESPACE wproj:: DESTINATION ${CMAKE_INSTALL_DATADIR}/wproj/cmake)

configure_package_config_file(cmake/wprojConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/wprojConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/wproj/cmake)
# Header-only and architecture-independent: any build of the same version works.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/wprojConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/wprojConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/wprojConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_DATADIR}/wproj/cmake)

set(WPROJ_PC_CFLAGS "")
set(WPROJ_PC_LIBS "")
if(WPROJ_USE_BLAS)
  set(WPROJ_PC_CFLAGS "-DEIGEN_USE_BLAS")
  if(WPROJ_HAVE_DSYEVD)
    string(APPEND WPROJ_PC_CFLAGS " -DWPROJ_USE_LAPACK")
  endif()
  if(WPROJ_HAVE_OPENBLAS_THREADS)
    string(APPEND WPROJ_PC_CFLAGS " -DWPROJ_OPENBLAS")
  endif()
  set(WPROJ_PC_LIBS "-lopenblas")
endif()
configure_file(cmake/wproj.pc.in ${CMAKE_CURRENT_BINARY_DIR}/wproj.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/wproj.pc DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)
