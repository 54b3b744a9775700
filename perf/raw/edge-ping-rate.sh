#!/usr/bin/env bash
# perf/edge.md "An idle socket's ping": the CPU of one app ping, edge against the idle floor. One edge process
# (one worker) or one peers-idle-floor holds 10,000 sockets of `ringside-loadgen connect` that ping every 2 s
# (5,000 pings/s, so the pings dominate the sockets' fixed cost); the server's CPU over the 30 s hold.
# Servers alternate, ROUNDS times (numbered from FIRST_ROUND, 1); a spec is TAG=BIN_DIR (a release ringside-edge, ringside-engine,
# ringside-quiz, ringside-loadgen) or TAG=floor:PATH (benches/peers' peers-idle-floor; the load generator
# from FLOOR_LG_BIN). A TAG ending in -epoll runs the edge with RINGSIDE_EDGE_DRIVER=legacy.
#   quiet-run perf/raw/edge-ping-rate.sh base=/tmp/b fast=/tmp/f floor=floor:/tmp/peers-idle-floor
# Raw: perf/raw/ping-rate/<TAG>-r<N>-{loadgen.txt,samples.csv}.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2} FIRST=${FIRST_ROUND:-1}
OUTDIR=perf/raw/ping-rate; mkdir -p "$OUTDIR"
LOAD=(connect --ramp-rate 5000 --hold-secs 30 --ping-interval-ms 2000)
for r in $(seq "$FIRST" $((FIRST + ROUNDS - 1))); do
  for spec in "$@"; do
    tag=${spec%%=*}; what=${spec#*=}; name=pingrate-$tag-r$r
    if [[ $what == floor:* ]]; then
      "${what#floor:}" --listen "127.0.0.1:${EDGE_PORT:-18480}" --duration-secs 120 >/dev/null 2>&1 & fp=$!
      sleep 1
      BIN=${FLOOR_LG_BIN:?the load generator\'s bin dir} PIDS=$fp perf/raw/edge-idle.sh "$name" 10000 "${LOAD[@]}" >/dev/null
      kill "$fp"; wait "$fp" 2>/dev/null || true
    else
      export BIN=$what RUN=/tmp/edgebench/run-pingrate PROCS=1
      if [[ $tag == *-epoll ]]; then export RINGSIDE_EDGE_DRIVER=legacy; else unset RINGSIDE_EDGE_DRIVER; fi
      perf/raw/edge-stack.sh start >/dev/null
      sleep 2
      # one process: the launcher is the server (no children)
      PIDS=$(cat "$RUN/edge.pid") perf/raw/edge-idle.sh "$name" 10000 "${LOAD[@]}" >/dev/null
      perf/raw/edge-stack.sh stop
    fi
    cat "/tmp/edgebench/out/$name/loadgen.txt" "/tmp/edgebench/out/$name/uptime.txt" > "$OUTDIR/$tag-r$r-loadgen.txt"
    mv "perf/raw/edge-$name-samples.csv" "$OUTDIR/$tag-r$r-samples.csv"
    echo "$tag-r$r: $(grep 'cpu hold' "$OUTDIR/$tag-r$r-loadgen.txt")"
    sleep 3
  done
done
