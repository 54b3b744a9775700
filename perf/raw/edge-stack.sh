#!/usr/bin/env bash
# The stack for perf/edge.md: its own redis-server, the Functions library + quizzes, the engine, and
# ringside-edge with N processes × 1 thread on one port (SO_REUSEPORT). Like deploy/local/up.sh, but on
# private ports so it does not collide with other benchmarks on the machine, and with binaries copied
# to $BIN so a rebuild in the tree during a run changes nothing.
#   BIN=/tmp/edgebench/bin PROCS=7 EDGE_PORT=18480 REDIS_PORT=16590 perf/raw/edge-stack.sh start|stop|pids
# EDGE_CPUS / OTHER_CPUS (taskset lists, e.g. 0 and 1) pin the edge processes, and redis + engine; run it
# inside the namespace of perf/raw/netns.sh (`ip netns exec ringside-bench ...`) to split the CPUs the way
# perf/edge.md §4 does.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-/tmp/edgebench/bin}
PROCS=${PROCS:-7}
THREADS=${THREADS:-1}
EDGE_PORT=${EDGE_PORT:-18480}
REDIS_PORT=${REDIS_PORT:-16590}
RUN=${RUN:-/tmp/edgebench/run}
EXTRA=${EDGE_EXTRA:-}
EDGE_PIN=${EDGE_CPUS:+taskset -c $EDGE_CPUS}
OTHER_PIN=${OTHER_CPUS:+taskset -c $OTHER_CPUS}
mkdir -p "$RUN"
URL="redis://127.0.0.1:$REDIS_PORT/"
case "${1:-start}" in
start)
  $OTHER_PIN redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$RUN" \
    --logfile "$RUN/redis.log" --daemonize yes --pidfile "$RUN/redis.pid"
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  "$BIN/ringside-quiz" import quizzes/*.json loadgen/quizzes/lg-3.json --redis "$URL" >"$RUN/import.log" 2>&1
  nohup $OTHER_PIN "$BIN/ringside-engine" --redis "$URL" --http 127.0.0.1:0 >"$RUN/engine.log" 2>&1 &
  echo $! >"$RUN/engine.pid"
  # shellcheck disable=SC2086
  nohup $EDGE_PIN "$BIN/ringside-edge" --listen "127.0.0.1:$EDGE_PORT" --processes "$PROCS" --threads "$THREADS" \
    --redis "$URL" --web-root web $EXTRA >"$RUN/edge.log" 2>&1 &
  echo $! >"$RUN/edge.pid"
  for _ in $(seq 200); do
    [ "$(pgrep -P "$(cat "$RUN/edge.pid")" | wc -l)" -ge "$PROCS" ] && \
      curl -sf "http://127.0.0.1:$EDGE_PORT/readyz" >/dev/null && break
    sleep 0.05
  done
  sleep 1
  echo "edge launcher $(cat "$RUN/edge.pid") children $(pgrep -P "$(cat "$RUN/edge.pid")" | tr '\n' ' ')"
  ;;
pids)
  pgrep -P "$(cat "$RUN/edge.pid")" | tr '\n' ',' | sed 's/,$//'
  ;;
stop)
  [ -f "$RUN/edge.pid" ] && kill -TERM "$(cat "$RUN/edge.pid")" 2>/dev/null || true
  [ -f "$RUN/engine.pid" ] && kill -TERM "$(cat "$RUN/engine.pid")" 2>/dev/null || true
  sleep 1
  [ -f "$RUN/redis.pid" ] && kill -TERM "$(cat "$RUN/redis.pid")" 2>/dev/null || true
  for _ in $(seq 150); do
    kill -0 "$(cat "$RUN/edge.pid")" 2>/dev/null || break; sleep 0.1
  done
  rm -f "$RUN"/*.pid
  ;;
esac
