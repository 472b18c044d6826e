#!/usr/bin/env bash
# quarry bench prefix over a real HDFS (a MiniDFSCluster on loopback, three
# DataNodes named dn-a, dn-b and dn-c, one replica per block), with a plain
# read floor measured in the same run: Hadoop's own Java client reading the
# same shards (scripts/minidfs.sh read-all, its second pass, timed inside
# the JVM).
#
#   bench/hdfs/run.sh                    # 24 x 16 MiB = 384 MiB, 3 workers
#   SHARDS=64 bench/hdfs/run.sh          # 1 GiB
#
# Settings (environment): SHARDS (24), SHARD_SIZE (16MiB), PASSES (2),
# QUARRY_BIN (target/release/quarry), OUT (a new directory under /tmp).
#
# Workers are told they run on dn-a, dn-b and dn-c (`--worker-hosts`), so
# pass 1 is placed on the DataNode holding each shard; pass 2 should read
# 0 bytes from HDFS with 100% locality (the shard caches).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shards=${SHARDS:-24}
shard_size=${SHARD_SIZE:-16MiB}
passes=${PASSES:-2}
quarry=${QUARRY_BIN:-$root/target/release/quarry}
out=${OUT:-$(mktemp -d /tmp/quarry-bench-hdfs.XXXXXX)}
mkdir -p "$out"

if [ ! -x "$quarry" ]; then
    echo "run.sh: $quarry is missing; build it with cargo build --release -p quarry-cli" >&2
    exit 1
fi

"$root/scripts/minidfs.sh" "$out/dfs" --hosts dn-a,dn-b,dn-c --replication 1 \
    >"$out/minidfs.out" 2>"$out/minidfs.log" &
dfs_pid=$!
trap 'kill "$dfs_pid" 2>/dev/null; wait "$dfs_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
    grep -q '^datanodes ' "$out/minidfs.out" 2>/dev/null && break
    kill -0 "$dfs_pid" 2>/dev/null || { cat "$out/minidfs.log" >&2; exit 1; }
    sleep 1
done
url=$(head -n 1 "$out/minidfs.out")
export HADOOP_CONF_DIR="$out/dfs/conf" HADOOP_USER_NAME=quarry
echo "== HDFS at $url (load: $(cut -d' ' -f1-3 /proc/loadavg))" | tee "$out/summary.txt"

"$quarry" bench prefix --url "$url/shards" --shards "$shards" --shard-size "$shard_size" \
    --workers 3 --worker-hosts dn-a,dn-b,dn-c --passes "$passes" --json \
    --floor "$root/scripts/minidfs.sh read-all {url} --passes 2" | tee "$out/prefix.jsonl"

python3 - "$out/prefix.jsonl" <<'PY' | tee -a "$out/summary.txt"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
floor = next(r for r in rows if r["bench"] == "prefix-floor")
print(f"floor (Hadoop client, plain read): {floor['seconds']:.2f} s, {floor['mib_per_sec']:.0f} MiB/s")
for r in rows:
    if r["bench"] == "prefix":
        print(f"pass {r['pass']}: {r['seconds']:.2f} s ({r['over_floor']:.2f}x the floor), "
              f"{r['mib_per_sec']:.0f} MiB/s, from HDFS {r['bytes_from_store']} bytes, "
              f"locality {r['locality_pct']:.0f}%")
PY
echo "(load after: $(cut -d' ' -f1-3 /proc/loadavg); everything is in $out)" | tee -a "$out/summary.txt"
