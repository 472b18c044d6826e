#!/usr/bin/env bash
# Command-task throughput: quarry running N `true` commands (scheduler and
# worker processes over TCP loopback, `quarry bench command`), next to the
# floor of the same N processes started by `xargs -P` with no scheduler at
# all. HyperQueue cannot be built here; its published figure for this test,
# 1,641 tasks/s, is printed as the reference (quarry's target is 1,750/s).
#
#   bench/command/compare.sh [N]          # default N=10000
#   WORKERS=4 bench/command/compare.sh 50000
#
# Prints one JSON object per line (quarry, xargs) and then a summary.
set -euo pipefail

N=${1:-10000}
WORKERS=${WORKERS:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
QUARRY=${QUARRY:-$ROOT/target/release/quarry}
HYPERQUEUE_REFERENCE=1641
TARGET=1750

if [ ! -x "$QUARRY" ]; then
    (cd "$ROOT" && cargo build --release -p quarry-cli)
fi

quarry_json=$("$QUARRY" bench command --tasks "$N" --workers "$WORKERS" --json)
echo "$quarry_json"
quarry_rate=$(echo "$quarry_json" | sed -n 's/.*"tasks_per_sec":\([0-9.e+-]*\).*/\1/p')

start=$(date +%s.%N)
seq "$N" | xargs -P "$WORKERS" -n 1 true
end=$(date +%s.%N)
xargs_seconds=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f", e - s }')
xargs_rate=$(awk -v n="$N" -v t="$xargs_seconds" 'BEGIN { printf "%.1f", n / t }')
echo "{\"bench\":\"xargs\",\"tasks\":$N,\"workers\":$WORKERS,\"seconds\":$xargs_seconds,\"tasks_per_sec\":$xargs_rate}"

awk -v q="$quarry_rate" -v x="$xargs_rate" -v h="$HYPERQUEUE_REFERENCE" -v t="$TARGET" \
    -v n="$N" -v w="$WORKERS" 'BEGIN {
    printf "\n%d `true` tasks, %d workers (processes) on %s\n", n, w, ENVIRON["HOSTNAME"] ? ENVIRON["HOSTNAME"] : "this machine"
    printf "  quarry        %9.1f tasks/s\n", q
    printf "  xargs -P%d     %9.1f tasks/s  (floor: process start-up only)\n", w, x
    printf "  HyperQueue    %9.1f tasks/s  (published reference, not measured here)\n", h
    printf "  quarry / xargs      = %.2f\n", q / x
    printf "  quarry / HyperQueue = %.2f   (target: %d tasks/s)\n", q / h, t
}'
