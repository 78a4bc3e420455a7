#!/usr/bin/env bash
# Installs the system packages Parley needs when they are missing (Debian/Ubuntu, as root or with sudo).
# Idempotent and quiet when everything is present: `make run`, `make test` and `make bench` call it first.
set -euo pipefail
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in pkg-config libffi-dev zlib1g-dev libsqlite3-dev libhiredis-dev redis-server python3-venv jq curl; do
  have_pkg "$p" || need+=("$p")
done
command -v cc >/dev/null || need+=(gcc)
command -v c++ >/dev/null || need+=(g++)
command -v rustc >/dev/null || need+=(rustc)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "deps: Swift 6.3 toolchain not found on PATH (see README: Requirements)" >&2; exit 1; }
