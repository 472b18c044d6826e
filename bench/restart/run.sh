#!/usr/bin/env bash
# The scheduler-restart measurements of issue #9, printed, not asserted:
#
#   1. 20 trials of the kill -9 restart test (integration/tests/restart.rs):
#      each kills the scheduler mid-job and restarts it from its journal,
#      and the tally says how many finished tasks ran again;
#   2. `quarry bench restart`: from a scheduler's start to its first answer
#      with a journal of TASKS finished tasks (default 1,000,000);
#   3. `quarry bench noop --journal`: throughput with and without the
#      journal, measured in the same run.
#
#   bench/restart/run.sh [TRIALS] [TASKS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
trials="${1:-20}"
tasks="${2:-1000000}"
"$root/scripts/install-deps.sh"
cd "$root"
cargo build --release --quiet -p quarry-cli
echo "== $trials restart trials"
QUARRY_RESTART_TRIALS="$trials" cargo test --release --quiet -p quarry-integration --test restart -- --nocapture 2>&1 |
    grep -E '^(trial|tally)'
journal="$(mktemp -d)/journal"
echo "== restart with a journal of $tasks finished tasks"
target/release/quarry bench restart --tasks "$tasks" --journal "$journal" --json
echo "== noop throughput with and without the journal"
target/release/quarry bench noop --tasks 100000 --roundtrips 200 --journal "$journal" --json
rm -rf "$(dirname "$journal")"
