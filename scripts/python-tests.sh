#!/usr/bin/env bash
# Builds the Python package and runs its tests (python/tests) on a fresh
# machine: a virtual environment in target/py-venv with maturin, pytest,
# pytest-timeout, cloudpickle, numpy, boto3 (the independent S3 client
# that seeds MinIO), scikit-learn (the grid-search example), duckdb and polars (the
# documented manifest queries, engines independent of quarry), the package
# built into it with `maturin develop`, and the quarry binary the process
# tests start (target/debug/quarry).
#
#   scripts/python-tests.sh [PYTEST ARGS...]
#
# Needs python3 (3.9 or later) with venv, and MinIO (scripts/minio.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "maturin>=1.5,<2" pytest pytest-timeout cloudpickle numpy boto3 scikit-learn duckdb polars

cargo build -p quarry-cli
QUARRY_MINIO_BIN=$(scripts/minio.sh)
export QUARRY_MINIO_BIN
(cd python && VIRTUAL_ENV="$PWD/../$venv" PATH="$PWD/../$venv/bin:$PATH" maturin develop --quiet)
cd python
exec "../$venv/bin/python" -m pytest -q "$@"
