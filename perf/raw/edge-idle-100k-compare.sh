#!/usr/bin/env bash
# perf/edge.md "The edge's own timers, cut" and "An idle socket's ping": 100K idle sockets (7 edge processes,
# the default 20 s app ping) on sets of binaries, one after the other on the same machine. Each BIN dir holds
# ringside-edge, ringside-engine, ringside-quiz and ringside-loadgen (release builds, copied aside).
#   quiet-run perf/raw/edge-idle-100k-compare.sh before=/tmp/idle/bin-before after=/tmp/idle/bin-after
# Raw files: perf/raw/edge-idle-100k-$SERIES-<tag>-{loadgen.txt,samples.csv} (SERIES: clock by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
for arg in "$@"; do
  tag=${arg%%=*}
  export BIN=${arg#*=} RUN=/tmp/edgebench/run-$tag PROCS=7
  perf/raw/edge-stack.sh start
  sleep 3
  perf/raw/edge-idle.sh "idle-100k-${SERIES:-clock}-$tag" 100000 connect --ramp-rate 4000 --hold-secs 60
  name=idle-100k-${SERIES:-clock}-$tag
  cat "/tmp/edgebench/out/$name/loadgen.txt" "/tmp/edgebench/out/$name/uptime.txt" > "perf/raw/edge-$name-loadgen.txt"
  perf/raw/edge-stack.sh stop
  sleep 5
done
