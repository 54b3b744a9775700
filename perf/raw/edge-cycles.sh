#!/usr/bin/env bash
# perf/edge.md §2: ROUNDS rounds of N sockets connect → session:ack → close against the stack of
# perf/raw/edge-stack.sh; the sum of the edge processes' VmRSS before, and 3 s after each round.
#   perf/raw/edge-cycles.sh NAME ROUNDS N
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=$1; ROUNDS=$2; N=$3
BIN=${BIN:-/tmp/edgebench/bin}
OUT=/tmp/edgebench/out/$NAME; mkdir -p "$OUT"
PIDS=$(perf/raw/edge-stack.sh pids)
# VmRSS, and its anonymous part (heap, stacks: what connection state lives in; VmRSS also counts the
# binary's code pages, which are read in from the file the first time a code path runs).
rss() { local s=0; for p in ${PIDS//,/ }; do s=$((s + $(awk "/^$1:/{print \$2}" /proc/$p/status))); done; echo $s; }
CSV=perf/raw/edge-$NAME.csv
echo "round,t,load1,edge_rss_kib,edge_rss_anon_kib,connected,upgrade_failed" > "$CSV"
echo "0,$(date +%s),$(cut -d' ' -f1 /proc/loadavg),$(rss VmRSS),$(rss RssAnon),0,0" >> "$CSV"
for r in $(seq 1 "$ROUNDS"); do
  "$BIN/ringside-loadgen" connect --url ws://127.0.0.1:${EDGE_PORT:-18480}/ws --sockets "$N" --ramp-rate 5000 \
    --hold-secs 1 --source-ips 127.0.0.2-127.0.0.9 --quiet --duration 120 --out "$OUT/r$r" > "$OUT/r$r.txt" 2>&1 || true
  sleep 3
  c=$(grep -o '"sockets_connected": [0-9]*' "$OUT/r$r/report.json" | grep -o '[0-9]*$')
  u=$(grep -o '"upgrade_failed": [0-9]*' "$OUT/r$r/report.json" | grep -o '[0-9]*$')
  echo "$r,$(date +%s),$(cut -d' ' -f1 /proc/loadavg),$(rss VmRSS),$(rss RssAnon),$c,$u" | tee -a "$CSV"
done
