# Shared by scripts/run and scripts/test: package installation and builds.
# Sourced, not run.

# Debian 12 packages the project needs. Boost 1.81 is requested by its
# versioned names: Debian's default libboost-dev is 1.74 and has no
# Boost.JSON, and the two must not be mixed.
LGR_BUILD_PACKAGES=(
  g++ make cmake pkg-config
  libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev
  libsqlite3-dev libsqlitecpp-dev libsodium-dev
)
LGR_TEST_PACKAGES=(doctest-dev python3 golang-go valgrind sqlite3)

lgr_missing_packages() {
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
        | grep -q 'install ok installed'; then
      printf '%s\n' "$pkg"
    fi
  done
}

# Installs whatever of "$@" is missing. As a non-root user it prints the
# exact command to run and stops instead.
lgr_ensure_packages() {
  local missing
  mapfile -t missing < <(lgr_missing_packages "$@")
  [ "${#missing[@]}" -eq 0 ] && return 0
  local cmd="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages. As root, run:" >&2
    echo "  apt-get update && $cmd" >&2
    exit 1
  fi
  echo "Installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $cmd >/dev/null
}

lgr_jobs() {
  nproc 2>/dev/null || echo 2
}
