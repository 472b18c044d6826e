#!/usr/bin/env bash
# Runs quarry's whole test suite on a fresh machine. It installs what the
# tests need first: libzmq (Debian package), MinIO built from source (cached
# in ~/.cache/quarry/bin), the HDFS test helper (Java 17 and Maven; cached in
# ~/.m2 and ~/.cache/quarry/minidfs) and the deployment tools
# (scripts/deploy-tools.sh) and headless Chromium for the dashboard tests
# (scripts/browser.sh).
#
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh
echo "== MinIO (built from source once, then cached)"
# The harness finds the binary in the same cache; the build happens here.
scripts/minio.sh >/dev/null
echo "== deployment tools (docker-compose, helm, kubeconform, Kubernetes schemas, Slurm)"
scripts/deploy-tools.sh
echo "== headless Chromium (Debian's package) for the dashboard tests"
scripts/browser.sh
echo "== HDFS test helper (MiniDFSCluster, Maven build once; jars cached in ~/.m2)"
scripts/minidfs-build.sh >/dev/null

echo "== formatting"
cargo fmt --all -- --check

echo "== build (the process tests run the quarry binary)"
cargo build --workspace --all-targets
cargo build -p quarry-cli

echo "== tests"
cargo test --workspace --no-fail-fast

echo "== Python package (pytest in python/tests, in its own venv)"
scripts/python-tests.sh
