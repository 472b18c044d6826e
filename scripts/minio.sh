#!/usr/bin/env bash
# Builds the MinIO server from source, once, and prints the binary's path.
#
#   scripts/minio.sh            # -> /root/.cache/quarry/bin/minio
#
# The binary goes to $QUARRY_TOOLS_DIR (default: $HOME/.cache/quarry/bin), which
# is where quarry's integration tests look for it. When the binary is already
# there the script prints its path and returns at once; otherwise it runs
# `go install github.com/minio/minio@$QUARRY_MINIO_VERSION` (default: a pinned pseudo-version, the newest module version on 2026-12-03),
# which needs Go and takes 10-20 minutes on two cores. Build output goes to
# stderr only if the build fails; stdout carries nothing but the path.
set -euo pipefail

if [ -n "${QUARRY_MINIO_BIN:-}" ]; then
    if [ -x "$QUARRY_MINIO_BIN" ]; then
        echo "$QUARRY_MINIO_BIN"
        exit 0
    fi
    echo "minio.sh: QUARRY_MINIO_BIN=$QUARRY_MINIO_BIN is not an executable file" >&2
    exit 1
fi

tools_dir=${QUARRY_TOOLS_DIR:-${HOME:?HOME is not set}/.cache/quarry/bin}
binary="$tools_dir/minio"
version=${QUARRY_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}

if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin /usr/lib/go/bin; do
        if [ -x "$candidate/go" ]; then
            PATH="$candidate:$PATH"
            break
        fi
    done
fi
if ! command -v go >/dev/null 2>&1; then
    echo "minio.sh: Go is needed to build MinIO from source; install Go (a recent release) and retry" >&2
    exit 1
fi

mkdir -p "$tools_dir"
# Two builds at once (parallel CI steps) would waste 20 minutes: the second one
# waits for the first and then finds the binary.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools_dir/.minio.lock"
    flock 9
    if [ -x "$binary" ]; then
        echo "$binary"
        exit 0
    fi
fi

staging=$(mktemp -d "$tools_dir/.minio-build.XXXXXX")
trap 'rm -rf "$staging"' EXIT
echo "minio.sh: building MinIO ($version) from source into $tools_dir; this takes a while" >&2
if ! GOBIN="$staging" CGO_ENABLED=0 go install "github.com/minio/minio@$version" >"$staging/build.log" 2>&1; then
    echo "minio.sh: go install github.com/minio/minio@$version failed:" >&2
    tail -n 40 "$staging/build.log" >&2
    exit 1
fi
# Moved into place whole, so an interrupted build never leaves a broken binary
# where the tests would find it.
mv "$staging/minio" "$binary"
echo "$binary"
