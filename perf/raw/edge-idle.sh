#!/usr/bin/env bash
# perf/edge.md §1: idle sockets held by the edge processes and RSS before/during/after.
#   perf/raw/edge-idle.sh NAME SOCKETS [loadgen args...]   (stack from perf/raw/edge-stack.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=$1; N=$2; shift 2
BIN=${BIN:-/tmp/edgebench/bin}
OUT=/tmp/edgebench/out/$NAME; mkdir -p "$OUT"
PIDS=${PIDS:-$(perf/raw/edge-stack.sh pids)}  # or the processes of another server (edge-idle-floor.sh)
echo "uptime before: $(uptime)" | tee "$OUT/uptime.txt"
rm -f "$OUT/stop"
python3 perf/raw/edge-sample.py --pids "$PIDS" --interval 1 --duration 900 --stop-file "$OUT/stop" \
  --out "perf/raw/edge-$NAME-samples.csv" &
SAMPLER=$!
sleep 5
"$BIN/ringside-loadgen" "$@" --url ws://127.0.0.1:${EDGE_PORT:-18480}/ws --sockets "$N" --out "$OUT/lg" \
  --watch-pid "edge=$PIDS" --quiet --duration 400 > "$OUT/loadgen.txt" 2>&1 || echo "loadgen exit $?" | tee -a "$OUT/loadgen.txt"
echo "uptime after: $(uptime)" | tee -a "$OUT/uptime.txt"
sleep 15
touch "$OUT/stop"; wait $SAMPLER
