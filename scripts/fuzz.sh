#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders (fuzz/, its own workspace): libFuzzer through libfuzzer-sys,
# built by plain cargo on the stable toolchain with the flags cargo-fuzz would pass, so nothing has
# to be installed. See fuzz/README.md and perf/fuzz.md.
#
#   scripts/fuzz.sh build                 build every target
#   scripts/fuzz.sh smoke [SECS]          CI: replay seeds + regressions, then SECS (default 10) per target
#   scripts/fuzz.sh run TARGET [SECS] [libFuzzer flags...]
#                                         long run (default 600 s) with a kept corpus in fuzz/work/
#   scripts/fuzz.sh list                  the targets
#
# FUZZ_SANITIZER=address (default) builds with AddressSanitizer, which on stable needs
# RUSTC_BOOTSTRAP=1 for -Zsanitizer (set here, for this build only); FUZZ_SANITIZER=none builds
# without it (faster build and runs; the safe-Rust code under test needs no sanitizer to panic).
# FUZZ_JOBS limits cargo's jobs (default: all cores). Runs are nice'd (FUZZ_NICE, default 10).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

TARGETS=(ws_frame http_request envelope resp quiz)
SANITIZER=${FUZZ_SANITIZER:-address}
NICE=${FUZZ_NICE:-10}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
BIN=target/$SANITIZER/$TRIPLE/release

build() {
    # The instrumentation cargo-fuzz adds (SanitizerCoverage for libFuzzer); --target keeps it off
    # build scripts and proc macros.
    local flags="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
    flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
    flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
    flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares -Cforce-frame-pointers"
    local env=()
    case "$SANITIZER" in
        address) flags+=" -Zsanitizer=address"; env=(RUSTC_BOOTSTRAP=1) ;;
        none) ;;
        *) echo "FUZZ_SANITIZER must be address or none" >&2; exit 2 ;;
    esac
    # Each sanitizer gets its own target dir, so switching does not rebuild the other.
    env "${env[@]}" RUSTFLAGS="$flags" CARGO_TARGET_DIR="target/$SANITIZER" \
        nice -n "$NICE" cargo build --release --locked --target "$TRIPLE" ${FUZZ_JOBS:+-j "$FUZZ_JOBS"} --bins
}

# Inputs to start from: hand-written seeds and every crash found so far (minimised).
seed_dirs() {
    local t=$1
    for d in seeds/$t regressions/$t; do
        [[ -d $d ]] && echo "$d"
    done
}

fuzz() {
    local t=$1 secs=$2 corpus=$3
    shift 3
    mkdir -p "$corpus" work/artifacts/$t
    # -timeout: an input taking over 2 s is a hang; -rss_limit_mb: growth past 2 GiB is a leak or
    # an allocation a peer controls.
    nice -n "$NICE" "$BIN/$t" -max_total_time="$secs" -timeout=2 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="work/artifacts/$t/" "$@" "$corpus" $(seed_dirs "$t")
}

cmd=${1:-smoke}
case "$cmd" in
    list) printf '%s\n' "${TARGETS[@]}" ;;
    build) build ;;
    smoke)
        secs=${2:-10}
        build
        for t in "${TARGETS[@]}"; do
            echo "== fuzz smoke: $t (${secs}s)"
            tmp=$(mktemp -d)
            # A fresh corpus dir receives new inputs; the committed dirs are only read.
            status=0
            fuzz "$t" "$secs" "$tmp/corpus" > "$tmp/log" 2>&1 || status=$?
            if [[ $status -ne 0 ]]; then
                tail -n 60 "$tmp/log" >&2
                echo "fuzz target $t failed (exit $status); the input is in fuzz/work/artifacts/$t/" >&2
                rm -rf "$tmp"
                exit 1
            fi
            grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$tmp/log" || true
            rm -rf "$tmp"
        done
        ;;
    run)
        t=${2:?target}
        secs=${3:-600}
        shift $(( $# < 3 ? $# : 3 ))
        build
        fuzz "$t" "$secs" "work/corpus/$t" "$@"
        ;;
    *) echo "usage: $0 build | smoke [SECS] | run TARGET [SECS] [libFuzzer flags] | list" >&2; exit 2 ;;
esac
