#!/usr/bin/env bash
# Runs `quarry bench noop` and dask.distributed's equivalent on the same
# machine, in the same run, and prints both plus the ratios.
#
#   bench/noop/compare.sh [TASKS] [WORKERS]
#
# Needs dask: python3 -m pip install "dask[distributed]".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tasks="${1:-20000}"
workers="${2:-2}"
"$root/scripts/install-deps.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p quarry-cli
quarry_json="$("$root/target/release/quarry" bench noop --tasks "$tasks" --workers "$workers" --roundtrips 300 --json)"
dask_json="$(python3 "$root/bench/noop/dask_noop.py" --tasks "$tasks" --workers "$workers" --roundtrips 300 2>/dev/null | tail -n 1)"
echo "quarry: $quarry_json"
echo "dask:   $dask_json"
python3 - "$quarry_json" "$dask_json" <<'PY'
import json, sys
q, d = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"throughput: quarry {q['tasks_per_sec']:.0f}/s vs dask {d['tasks_per_sec']:.0f}/s "
      f"= {q['tasks_per_sec'] / d['tasks_per_sec']:.1f}x")
print(f"round trip p50: quarry {q['roundtrip_p50_us']} us vs dask {d['roundtrip_p50_us']} us "
      f"= {d['roundtrip_p50_us'] / max(q['roundtrip_p50_us'], 1):.1f}x faster")
PY
