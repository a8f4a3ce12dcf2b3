# Run by ctest (see CMakeLists.txt beside this file): install, then build
# and run consumers of the installed package.
cmake_minimum_required(VERSION 3.25)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")

# 1. find_package(LoopgainReceiver CONFIG), shared and static.
run("${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${WORK_DIR}/build"
    "-DCMAKE_PREFIX_PATH=${prefix}"
    "-DCMAKE_C_COMPILER=${CMAKE_C_COMPILER}"
    "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}")
run("${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer_shared" "${WORK_DIR}/shared.db" "${FIXTURE}")
run("${WORK_DIR}/build/consumer_static" "${WORK_DIR}/static.db" "${FIXTURE}")

# 2. pkg-config, with a plain C compiler invocation.
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig")
execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs loopgain-receiver
  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know loopgain-receiver")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run("${CMAKE_C_COMPILER}" -std=c11 -Wall -Wextra -Werror
    "${CONSUMER_SOURCE_DIR}/consumer.c" -o "${WORK_DIR}/consumer_pkgconfig"
    ${flags})
run("${WORK_DIR}/consumer_pkgconfig" "${WORK_DIR}/pkgconfig.db" "${FIXTURE}")
message(STATUS "installed package consumed through CMake and pkg-config")
