# Install rules: headers, both libraries, the executables (added by their
# own directories), a CMake package and a pkg-config file.
include(CMakePackageConfigHelpers)

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/loopgain"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(TARGETS loopgain_receiver loopgain_receiver_static
  EXPORT LoopgainReceiverTargets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")

set(LGR_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/LoopgainReceiver")
install(EXPORT LoopgainReceiverTargets
  NAMESPACE LoopgainReceiver::
  DESTINATION "${LGR_CMAKE_DIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/LoopgainReceiverConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/LoopgainReceiverConfig.cmake"
  INSTALL_DESTINATION "${LGR_CMAKE_DIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/LoopgainReceiverConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/LoopgainReceiverConfig.cmake"
  "${PROJECT_BINARY_DIR}/LoopgainReceiverConfigVersion.cmake"
  DESTINATION "${LGR_CMAKE_DIR}")

# pkg-config: the installed file, and one for the build tree so that hosts
# (the Go module's cgo) can build against an uninstalled library in tests.
# The installed file is relocatable: paths are relative to where it lies, so
# `cmake --install --prefix ANYWHERE` gives a working file.
file(RELATIVE_PATH LGR_PC_UP "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
set(LGR_PC_PREFIX "\${pcfiledir}/${LGR_PC_UP}")
set(LGR_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
set(LGR_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
configure_file("${PROJECT_SOURCE_DIR}/cmake/loopgain-receiver.pc.in"
  "${PROJECT_BINARY_DIR}/loopgain-receiver.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/loopgain-receiver.pc"
  DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")

set(LGR_PC_PREFIX "${PROJECT_BINARY_DIR}")
set(LGR_PC_INCLUDEDIR "${PROJECT_SOURCE_DIR}/include")
set(LGR_PC_LIBDIR "$<TARGET_FILE_DIR:loopgain_receiver>")
configure_file("${PROJECT_SOURCE_DIR}/cmake/loopgain-receiver.pc.in"
  "${PROJECT_BINARY_DIR}/pkgconfig-build/loopgain-receiver.pc.in" @ONLY)
file(GENERATE
  OUTPUT "${PROJECT_BINARY_DIR}/pkgconfig-build/loopgain-receiver.pc"
  INPUT "${PROJECT_BINARY_DIR}/pkgconfig-build/loopgain-receiver.pc.in")
