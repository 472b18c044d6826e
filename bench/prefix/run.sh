#!/usr/bin/env bash
# quarry bench prefix and the same workload in dask.distributed + s3fs, side
# by side, on one throw-away MinIO on loopback.
#
#   bench/prefix/run.sh                      # 64 x 16 MiB = 1 GiB, 2 workers
#   SHARDS=16 bench/prefix/run.sh            # 256 MiB
#
# Settings (environment): SECTIONS (1 2 3 4), SHARDS (64), SHARD_SIZE (16MiB), WORKERS (2),
# PASSES (3), BROADCAST_SIZE (1GiB), BROADCAST_TASKS (1000), FLOOR_PYTHON
# (python3; needs boto3 for the read floor),
# QUARRY_BIN (target/release/quarry), OUT (a new directory under /tmp).
#
# Needs: the MinIO binary (scripts/minio.sh), `cargo build --release -p
# quarry-cli`, and `pip install dask distributed s3fs`.
#
# Runs, in order, each with fresh worker processes (empty caches):
#   1. quarry, built-in `linecount` (reads every byte and little else: the
#      data plane), PASSES passes; then dask, same;
#   2. quarry, built-in `wordcount` (compute-bound), PASSES passes; then
#      dask, same;
#   3. quarry, `wc -l {input}` per shard (a command task), PASSES passes;
#      then dask, same;
#   4. quarry, BROADCAST_TASKS no-op tasks sharing one BROADCAST_SIZE
#      broadcast input, with MinIO's own count of GetObject requests and
#      bytes sent around it (MinIO metrics, independent of quarry); then
#      the same with workers told to fetch it with a single GET.
# Everything printed is also kept in $OUT.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shards=${SHARDS:-64}
shard_size=${SHARD_SIZE:-16MiB}
workers=${WORKERS:-2}
passes=${PASSES:-3}
broadcast_size=${BROADCAST_SIZE:-1GiB}
broadcast_tasks=${BROADCAST_TASKS:-1000}
quarry=${QUARRY_BIN:-$root/target/release/quarry}
out=${OUT:-$(mktemp -d /tmp/quarry-bench-prefix.XXXXXX)}
mkdir -p "$out"

[ -x "$quarry" ] || { echo "no $quarry: run cargo build --release -p quarry-cli" >&2; exit 1; }
minio=$("$root/scripts/minio.sh")

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
console_port=$(free_port)
endpoint="http://127.0.0.1:$port"

export AWS_ACCESS_KEY_ID="bench$(head -c 64 /dev/urandom | tr -dc a-z0-9 | head -c 10)"
export AWS_SECRET_ACCESS_KEY="$(head -c 256 /dev/urandom | tr -dc A-Za-z0-9 | head -c 32)"
export AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
export AWS_EC2_METADATA_DISABLED=true

MINIO_ROOT_USER="$AWS_ACCESS_KEY_ID" MINIO_ROOT_PASSWORD="$AWS_SECRET_ACCESS_KEY" \
MINIO_PROMETHEUS_AUTH_TYPE=public MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=on \
    "$minio" server "$out/minio-data" --address "127.0.0.1:$port" \
    --console-address "127.0.0.1:$console_port" >"$out/minio.log" 2>&1 &
minio_pid=$!
trap 'kill $minio_pid 2>/dev/null; wait $minio_pid 2>/dev/null; rm -rf "$out/minio-data"' EXIT
for _ in $(seq 1 600); do
    curl -fs "$endpoint/minio/health/cluster" >/dev/null && break
    sleep 0.1
done
curl -fs --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -X PUT "$endpoint/bench" >/dev/null

sections=" ${SECTIONS:-1 2 3 4} "
wanted() { [[ "$sections" == *" $1 "* ]]; }

url=s3://bench/shards/
common=(--url "$url" --shards "$shards" --shard-size "$shard_size" --workers "$workers" --json)

# The sum of one MinIO metric over its label sets matching a filter. MinIO
# refreshes these figures about every 10 s, so wait that long first.
metric() {
    sleep 15
    curl -fs "$endpoint/minio/v2/metrics/cluster" |
        awk -v name="$1" -v filter="$2" '$1 ~ "^"name"[{ ]" && $1 ~ filter { sum += $NF } END { printf "%.0f\n", sum }'
}

if wanted 1; then
    echo "== 1. line count: quarry, then dask ($shards x $shard_size, $workers workers)"
    # Pass 1 beside a plain parallel-GET floor (boto3, measured first in
    # the same run): the JSON of each pass has over_floor.
    RUST_LOG=error "$quarry" bench prefix "${common[@]}" --passes "$passes" \
        --floor "${FLOOR_PYTHON:-python3} $here/s3_floor.py {url} $((workers * 4))" |
        tee "$out/quarry-linecount.jsonl"
    python3 "$here/dask_compare.py" --url "$url" --workers "$workers" --passes "$passes" \
        --function linecount --quarry-results "$out/quarry-linecount.jsonl" | tee "$out/dask-linecount.txt"
fi

if wanted 2; then
    echo "== 2. word count: quarry, then dask"
    RUST_LOG=error "$quarry" bench prefix "${common[@]}" --passes "$passes" --function wordcount |
        tee "$out/quarry-wordcount.jsonl"
    python3 "$here/dask_compare.py" --url "$url" --workers "$workers" --passes "$passes" \
        --function wordcount --quarry-results "$out/quarry-wordcount.jsonl" | tee "$out/dask-wordcount.txt"
fi

if wanted 3; then
    echo "== 3. wc -l per shard: quarry, then dask"
    RUST_LOG=error "$quarry" bench prefix "${common[@]}" --passes "$passes" \
        --command "wc -l {input}" | tee "$out/quarry-wc.jsonl"
    python3 "$here/dask_compare.py" --url "$url" --workers "$workers" --passes "$passes" \
        --function wc-l --quarry-results "$out/quarry-wc.jsonl" | tee "$out/dask-wc.txt"
fi

if wanted 4; then
    echo "== 4. broadcast: $broadcast_tasks tasks sharing one $broadcast_size input"
    # Seed the broadcast object first, so that the counted run only reads it.
    RUST_LOG=error "$quarry" bench prefix "${common[@]}" --passes 0 --broadcast-size "$broadcast_size" \
        --broadcast-tasks 0 >/dev/null
    gets_before=$(metric minio_s3_requests_total 'api="getobject"')
    sent_before=$(metric minio_s3_traffic_sent_bytes '')
    RUST_LOG=error "$quarry" bench prefix "${common[@]}" --passes 0 --broadcast-size "$broadcast_size" \
        --broadcast-tasks "$broadcast_tasks" | tee "$out/quarry-broadcast.jsonl"
    gets_after=$(metric minio_s3_requests_total 'api="getobject"')
    sent_after=$(metric minio_s3_traffic_sent_bytes '')
    echo "{\"bench\":\"minio-metrics\",\"getobject_requests\":$((gets_after - gets_before)),\"bytes_sent\":$((sent_after - sent_before)),\"workers\":$workers}" |
        tee "$out/minio-broadcast.json"
    # The same with single-GET downloads (workers' --parallel-get-threshold
    # above the object's size).
    RUST_LOG=error "$quarry" bench prefix "${common[@]}" --passes 0 --broadcast-size "$broadcast_size" \
        --broadcast-tasks "$broadcast_tasks" --parallel-get-threshold "$broadcast_size" |
        tee "$out/quarry-broadcast-single-get.jsonl"
    gets_single=$(metric minio_s3_requests_total 'api="getobject"')
    sent_single=$(metric minio_s3_traffic_sent_bytes '')
    echo "{\"bench\":\"minio-metrics-single-get\",\"getobject_requests\":$((gets_single - gets_after)),\"bytes_sent\":$((sent_single - sent_after)),\"workers\":$workers}" |
        tee "$out/minio-broadcast-single-get.json"
fi
echo "results kept in $out"
