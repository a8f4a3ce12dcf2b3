# The dependencies are fixed by the design and come from Debian 12 packages:
#   libboost1.81-dev libboost-json1.81-dev libsqlitecpp-dev libsodium-dev
#   doctest-dev
# Nothing is downloaded at build time and nothing is vendored.
find_package(Threads REQUIRED)
# Boost 1.81 exactly: Boost.JSON's API and Beast's behaviour are what we
# build and test against; 1.74 (Debian's default libboost-dev) lacks json.
find_package(Boost 1.81.0 EXACT REQUIRED COMPONENTS json CONFIG)
find_package(SQLiteCpp REQUIRED CONFIG)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
if(LGR_BUILD_TESTS)
  find_package(doctest REQUIRED CONFIG)
endif()
# The executables parse their command lines with Boost.Program_options from
# the same Boost release.
if(LGR_BUILD_EXAMPLES)
  find_package(Boost 1.81.0 EXACT REQUIRED COMPONENTS program_options CONFIG)
endif()
