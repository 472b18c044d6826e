#!/usr/bin/env bash
# The built-in `wordcount` against CPython's word count of the same file,
# in the same run, one core each: one task over one generated file of
# non-ASCII text (French, Greek, Russian and Japanese words, capitals
# included, so the Unicode path and its lower-casing do the work).
#
#   bench/wordcount/run.sh [MEGABYTES]   # 100 by default
#
# Prints both times, their ratio, and whether the two counts agree; the
# last line is one JSON object with the same numbers.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
megabytes="${1:-100}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p quarry-cli
quarry="$root/target/release/quarry"

mkdir -p "$work/data"
python3 "$root/bench/wordcount/words.py" generate "$work/data/text.txt" "$megabytes"
cat > "$work/job.yaml" <<YAML
name: wordcount-bench
input: {prefix: ./data/*.txt}
function: wordcount
output: ./out/
YAML

start=$(date +%s.%N)
"$quarry" run "$work/job.yaml" --workers 1 --nthreads 1 --results json >"$work/results.json" 2>"$work/run.log" \
    || { cat "$work/run.log"; exit 1; }
quarry_s=$(echo "$(date +%s.%N) - $start" | bc)

python3 "$root/bench/wordcount/words.py" compare "$work/data/text.txt" "$work/results.json" "$quarry_s"
