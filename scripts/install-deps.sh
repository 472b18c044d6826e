#!/usr/bin/env bash
# Installs the system packages quarry needs to build: libzmq (with CURVE) and
# pkg-config, from Debian's packages. Idempotent: does nothing, and prints
# nothing, when they are already there. Run as root (or with sudo available).
#
#   scripts/install-deps.sh
set -euo pipefail

have_libzmq() {
    command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libzmq
}

if have_libzmq; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-deps: libzmq3-dev and pkg-config are missing; run this script as root" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: no apt-get here; install libzmq (>= 4, with CURVE) and pkg-config by hand" >&2
    exit 1
fi

log=$(mktemp -t quarry-install-deps.XXXXXX)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${as_root[@]}" apt-get update -qq &&
       "${as_root[@]}" apt-get install -y -qq --no-install-recommends libzmq3-dev pkg-config; } >"$log" 2>&1; then
    echo "install-deps: apt-get failed:" >&2
    cat "$log" >&2
    exit 1
fi

if ! have_libzmq; then
    echo "install-deps: libzmq3-dev is installed but pkg-config cannot find libzmq" >&2
    exit 1
fi
