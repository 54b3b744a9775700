#!/usr/bin/env bash
# perf/edge.md "An idle socket's ping": the idle floor (benches/peers' peers-idle-floor: epoll, one read and
# one write per ping, nothing else) in the edge's place — 7 processes on one port (SO_REUSEPORT), 100K
# sockets of `ringside-loadgen connect` pinging at the announced 20 s — measured like the edge's runs.
#   quiet-run perf/raw/edge-idle-floor.sh TAG FLOOR_BIN LOADGEN_BIN_DIR
# Raw files: perf/raw/edge-idle-100k-floor-<TAG>-{loadgen.txt,samples.csv}.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=$1 FLOOR=$2; export BIN=$3
PIDS=""
for _ in 1 2 3 4 5 6 7; do
  "$FLOOR" --listen "127.0.0.1:${EDGE_PORT:-18480}" --duration-secs 400 >/dev/null 2>&1 &
  PIDS="$PIDS${PIDS:+,}$!"
done
export PIDS
sleep 3
name=idle-100k-floor-$TAG
perf/raw/edge-idle.sh "$name" 100000 connect --ramp-rate 4000 --hold-secs 60
cat "/tmp/edgebench/out/$name/loadgen.txt" "/tmp/edgebench/out/$name/uptime.txt" > "perf/raw/edge-$name-loadgen.txt"
kill ${PIDS//,/ } 2>/dev/null || true
wait 2>/dev/null || true
sleep 5
