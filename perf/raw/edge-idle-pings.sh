#!/usr/bin/env bash
# perf/edge.md "Pings": 100K idle sockets' edge CPU with the default app ping interval (session:ack's
# pingInterval, --app-ping-interval 20 s), then on the same stack with the clients pinging every 5 s (the old
# interval, loadgen --ping-interval-ms 5000); and the clock-offset error of 20 pinging sockets
# (edge-idle-clock.py), on the quiet stack and during the 20 s hold. One stack (perf/raw/edge-stack.sh: 7 edge
# processes × 1 thread, Redis, the engine); the load generator spreads its workers over 127.0.0.2..8.
#   BIN=/tmp/pingbench/bin /work/bin/quiet-lock perf/raw/edge-idle-pings.sh
# Raw files: perf/raw/edge-idle-100k-ping{20s,5s}-{samples.csv,loadgen.txt}, perf/raw/edge-idle-clock-{quiet,100k}{.txt,-samples.csv.gz}.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BIN=${BIN:-/tmp/pingbench/bin} RUN=${RUN:-/tmp/pingbench/run} PROCS=${PROCS:-7}
EDGE_URL=ws://127.0.0.1:${EDGE_PORT:-18480}/ws
trap 'perf/raw/edge-stack.sh stop' EXIT
perf/raw/edge-stack.sh start
python3 perf/raw/edge-idle-clock.py --url "$EDGE_URL" --sockets 20 --every 0.5 --secs 30 \
  --out perf/raw/edge-idle-clock-quiet
keep() { cat "/tmp/edgebench/out/$1/loadgen.txt" "/tmp/edgebench/out/$1/uptime.txt" > "perf/raw/edge-$1-loadgen.txt"; }
( sleep 45; python3 perf/raw/edge-idle-clock.py --url "$EDGE_URL" --sockets 20 --every 0.5 --secs 40 \
    --out perf/raw/edge-idle-clock-100k ) &
CLOCK=$!
perf/raw/edge-idle.sh idle-100k-ping20s 100000 connect --ramp-rate 4000 --hold-secs 60
wait $CLOCK || echo "clock tool exit $?"
keep idle-100k-ping20s
perf/raw/edge-idle.sh idle-100k-ping5s 100000 connect --ramp-rate 4000 --hold-secs 30 --ping-interval-ms 5000
keep idle-100k-ping5s
gzip -f perf/raw/edge-idle-clock-quiet-samples.csv perf/raw/edge-idle-clock-100k-samples.csv
