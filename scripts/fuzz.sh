#!/usr/bin/env bash
# Runs quarry's coverage-guided fuzz targets (fuzz/, libFuzzer through
# cargo-fuzz) for a bounded time each, then keeps what they found:
#
#   - inputs that crashed, leaked, hung or ran out of memory are copied to
#     fuzz/regressions/TARGET/, which `cargo test` replays
#     (crates/proto/tests/corpus.rs, crates/job/tests/fuzz_regressions.rs);
#     the script then exits 1;
#   - the growing working corpus lives in fuzz/target/fuzz-work/TARGET/
#     (ignored by git) so the next run resumes where this one stopped;
#     --update-corpus also merges into the checked-in fuzz/corpus/TARGET/
#     only the inputs that add coverage.
#
# usage: scripts/fuzz.sh [--seconds N] [--update-corpus] [TARGET...] [-- LIBFUZZER-ARGS...]
#
#   --seconds N        fuzzing time per target (default $FUZZ_SECONDS or 60)
#   --update-corpus    merge new coverage into fuzz/corpus/TARGET/
#   TARGET             decode_frame, job_spec, task_key (default: all)
#   LIBFUZZER-ARGS     passed on, such as -max_len=65536 or -jobs=2
#
# cargo-fuzz wants a nightly toolchain for its -Z flags (the address
# sanitizer). This project builds with stable Rust only, so the script sets
# RUSTC_BOOTSTRAP=1, which lets stable rustc accept them; the sanitizer
# runtimes ship with the stable standard library. cargo-fuzz itself is
# installed from crates.io on first use.

set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
all_targets=(decode_frame job_spec task_key)
cargo_fuzz_version="0.13.2"

seconds="${FUZZ_SECONDS:-60}"
update_corpus=false
targets=()
libfuzzer_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds)
            seconds="${2:?--seconds needs a number}"
            shift 2
            ;;
        --update-corpus)
            update_corpus=true
            shift
            ;;
        --help | -h)
            sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        --)
            shift
            libfuzzer_args=("$@")
            break
            ;;
        -*)
            echo "fuzz.sh: unknown option $1 (see --help)" >&2
            exit 2
            ;;
        *)
            targets+=("$1")
            shift
            ;;
    esac
done
if [[ ! "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -lt 1 ]]; then
    echo "fuzz.sh: --seconds must be a positive number of seconds, not '$seconds'" >&2
    exit 2
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all_targets[@]}")
fi
for target in "${targets[@]}"; do
    if [[ ! -f "$fuzz_dir/fuzz_targets/$target.rs" ]]; then
        echo "fuzz.sh: no fuzz target '$target' (have: ${all_targets[*]})" >&2
        exit 2
    fi
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz $cargo_fuzz_version from crates.io" >&2
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

export RUSTC_BOOTSTRAP=1
# -a keeps debug assertions (integer overflow checks) in the optimised build.
build_flags=(--release --debug-assertions --sanitizer address)

cd "$fuzz_dir"
found_problems=()
for target in "${targets[@]}"; do
    seeds="$fuzz_dir/corpus/$target"
    regressions="$fuzz_dir/regressions/$target"
    work="$fuzz_dir/target/fuzz-work/$target"
    # Emptied before each run, so everything in it afterwards is new.
    artifacts="$fuzz_dir/target/fuzz-artifacts/$target"
    rm -rf "$artifacts"
    mkdir -p "$seeds" "$regressions" "$work" "$artifacts"

    echo "== $target: fuzzing for ${seconds}s (working corpus: $work)" >&2
    status=0
    # New inputs go into the first directory; the others are only read.
    cargo fuzz run "${build_flags[@]}" "$target" "$work" "$seeds" "$regressions" -- \
        -max_total_time="$seconds" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" \
        ${libfuzzer_args[@]+"${libfuzzer_args[@]}"} || status=$?

    # What libFuzzer saved (crash-, leak-, timeout-, oom- files) becomes a
    # regression input; slow-unit- files are only slow, not wrong.
    saved=0
    for artifact in "$artifacts"/*; do
        [[ -f "$artifact" ]] || continue
        name="$(basename "$artifact")"
        [[ "$name" == slow-unit-* ]] && continue
        cp "$artifact" "$regressions/$name"
        found_problems+=("$target: $name (saved to fuzz/regressions/$target/)")
        saved=$((saved + 1))
    done
    if [[ $status -ne 0 && $saved -eq 0 ]]; then
        found_problems+=("$target: libFuzzer exited with status $status without saving an input")
    fi

    if $update_corpus; then
        echo "== $target: merging new coverage into fuzz/corpus/$target" >&2
        cargo fuzz run "${build_flags[@]}" "$target" "$seeds" "$work" -- \
            -merge=1 -timeout=10 -rss_limit_mb=2048
    fi
done

if [[ ${#found_problems[@]} -gt 0 ]]; then
    echo >&2
    echo "fuzz.sh: the fuzzers found problems:" >&2
    printf '  %s\n' "${found_problems[@]}" >&2
    echo "reproduce one with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -a TARGET FILE" >&2
    exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]} (${seconds}s each)" >&2
