#!/usr/bin/env bash
# Installs the Debian packages Parley needs that are missing, for one purpose:
#   scripts/deps.sh build   what `make run` needs: C libraries the build links (libffi, zlib, SQLite, hiredis) and the
#                           compilers for the example plugins (cc, c++, rustc)
#   scripts/deps.sh test    build + what `make test` needs (python3-venv for the python-socketio client, chromium
#                           for the chat page test in a real browser, nginx + openssl for the reverse-proxy test,
#                           postgresql and redis-server for the cluster tests, started by scripts/with-services.sh)
#   scripts/deps.sh bench   build + what `make bench` needs (python3-venv, taskset)
# Idempotent and quiet when everything is present. Says what it will install before installing; uses sudo only
# when not root.
set -euo pipefail
purpose=${1:-build}
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
want=(pkg-config libffi-dev zlib1g-dev libsqlite3-dev libhiredis-dev)
case "$purpose" in
  build) ;;
  test) want+=(python3-venv chromium nginx openssl postgresql redis-server) ;;
  bench) want+=(python3-venv util-linux) ;;
  *) echo "deps: unknown purpose '$purpose' (build, test or bench)" >&2; exit 2 ;;
esac
need=()
for p in "${want[@]}"; do have_pkg "$p" || need+=("$p"); done
command -v cc >/dev/null || need+=(gcc)
command -v c++ >/dev/null || need+=(g++)
command -v rustc >/dev/null || need+=(rustc)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "deps: missing Debian packages: ${need[*]}; install them as root (apt-get install ${need[*]})" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "deps: installing the missing Debian packages for '$purpose': ${need[*]}${SUDO:+ (with sudo)}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "deps: Swift 6.3 toolchain not found on PATH (see README: Requirements)" >&2; exit 1; }
