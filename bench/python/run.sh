#!/usr/bin/env bash
# Python `inc` tasks through quarry's warm interpreters against
# dask.distributed, in the same run (see inc_bench.py and adult_bench.py). Builds the package in
# release mode into target/py-venv, with dask beside it.
#
#   bench/python/run.sh [TASKS] [WORKERS]   # 10,000 inc tasks by default
#   bench/python/run.sh adult                # the adult grid search, three ways
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/target/py-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "maturin>=1.5,<2" cloudpickle "dask[distributed]" scikit-learn
(cd "$root/python" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --release --quiet)
if [ "${1:-}" = adult ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p quarry-cli
    exec "$venv/bin/python" "$root/bench/python/adult_bench.py" --workers "${2:-2}"
fi
exec "$venv/bin/python" "$root/bench/python/inc_bench.py" --tasks "${1:-10000}" --workers "${2:-2}"
