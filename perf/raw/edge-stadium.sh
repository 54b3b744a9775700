#!/usr/bin/env bash
# perf/edge.md §3: one room of N players (ringside-loadgen stadium) against the stack of
# perf/raw/edge-stack.sh, with the edge and load generator CPU sampled every 20 ms.
#   perf/raw/edge-stadium.sh NAME PLAYERS [extra loadgen args]
# LG_CPUS (a taskset list) pins the load generator. /proc/stat is saved before and after the run, so
# per-CPU busy time (softirq included) can be read from it.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=$1; N=$2; shift 2
BIN=${BIN:-/tmp/edgebench/bin}
OUT=/tmp/edgebench/out/$NAME; mkdir -p "$OUT"; rm -f "$OUT/stop"
PIDS=$(perf/raw/edge-stack.sh pids)
echo "uptime before: $(uptime)" | tee "$OUT/uptime.txt"
grep '^cpu' /proc/stat > "$OUT/proc-stat-before.txt"
${LG_CPUS:+taskset -c $LG_CPUS} "$BIN/ringside-loadgen" stadium --url ws://127.0.0.1:${EDGE_PORT:-18480}/ws --players "$N" --quiz lg-3 \
  --watch-pid "edge=$PIDS" --quiet --duration 400 --out "$OUT/lg" "$@" > "$OUT/loadgen.txt" 2>&1 &
LG=$!
python3 perf/raw/edge-sample.py --pids "$PIDS" --loadgen-root $LG --interval 0.02 --duration 420 \
  --stop-file "$OUT/stop" --out "$OUT/samples.csv" &
SAMPLER=$!
wait $LG || echo "loadgen exit $?" | tee -a "$OUT/loadgen.txt"
touch "$OUT/stop"; wait $SAMPLER
grep '^cpu' /proc/stat > "$OUT/proc-stat-after.txt"
echo "uptime after: $(uptime)" | tee -a "$OUT/uptime.txt"
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14; do curl -s "http://127.0.0.1:${EDGE_PORT:-18480}/metrics"; done \
  | grep -E "^ringside_edge_(frames_out_total|slow_consumer|dropped_superseded)" | sort | uniq > "$OUT/metrics-sampled.txt"
