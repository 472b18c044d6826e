#!/usr/bin/env bash
# Installs the headless browser the dashboard tests load pages in
# (integration/tests/dashboard.rs): Debian's `chromium` package. Idempotent
# and quiet when it is there. Run as root (or with sudo available).
#
#   scripts/browser.sh
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
else
    as_root=(sudo)
fi
log=$(mktemp -t quarry-browser.XXXXXX)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${as_root[@]}" apt-get update -qq &&
       "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
    echo "browser: apt-get install chromium failed:" >&2
    tail -n 40 "$log" >&2
    exit 1
fi
command -v chromium >/dev/null 2>&1 || { echo "browser: chromium is installed but not on PATH" >&2; exit 1; }
