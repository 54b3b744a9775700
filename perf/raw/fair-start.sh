#!/usr/bin/env bash
# perf/fair-start.md: one fair-start run — a fresh stack (redis-server, ringside-engine, ringside-edge with
# EDGE_PROCESSES processes of one thread, per-address join limits off), quiz lg-3, then one ringside-loadgen
# run against it. SEALED=1 (default) opens the players' sockets with /ws?sealed=1.
#   perf/raw/fair-start.sh NAME SCENARIO [loadgen args...]
#   e.g. perf/raw/fair-start.sh game-30k game --rooms 300 --players-per-room 100 --ramp-rate 1000
# BIN: the binaries (default target/release); OUT_ROOT (default /tmp/fairstart); REDIS_PORT, EDGE_PORT.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=$1; SCENARIO=$2; shift 2
BIN=${BIN:-target/release}
OUT=${OUT_ROOT:-/tmp/fairstart}/$NAME; rm -rf "$OUT"; mkdir -p "$OUT"
RPORT=${REDIS_PORT:-18700}; EPORT=${EDGE_PORT:-18701}
REDIS=redis://127.0.0.1:$RPORT/
PATH_Q=/ws; [ "${SEALED:-1}" = 1 ] && PATH_Q='/ws?sealed=1'

redis-server --port "$RPORT" --save '' --appendonly no --daemonize yes --logfile "$OUT/redis.log" \
  --pidfile "$OUT/redis.pidfile"
cleanup() {
  [ -n "${EDGE:-}" ] && kill "$EDGE" 2>/dev/null
  [ -n "${ENGINE:-}" ] && kill "$ENGINE" 2>/dev/null
  redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/ringside-quiz" import loadgen/quizzes/lg-3.json --redis "$REDIS" >"$OUT/quiz.log" 2>&1
"$BIN/ringside-engine" --redis "$REDIS" --http 127.0.0.1:0 >"$OUT/engine.log" 2>&1 &
ENGINE=$!
"$BIN/ringside-edge" --listen "127.0.0.1:$EPORT" --redis "$REDIS" --processes "${EDGE_PROCESSES:-3}" --threads 1 \
  --addr-joins-per-sec 0 ${EDGE_ARGS:-} >"$OUT/edge.log" 2>&1 &
EDGE=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$EPORT/readyz" >/dev/null && break; sleep 0.1; done

echo "uptime before: $(uptime)" | tee "$OUT/uptime.txt"
set +e
"$BIN/ringside-loadgen" "$SCENARIO" --url "ws://127.0.0.1:$EPORT$PATH_Q" --quiz lg-3 --quiet --duration 400 \
  --watch-pid "edge=$EDGE" --out "$OUT/lg" "$@" >"$OUT/loadgen.txt" 2>&1
echo "loadgen exit $?" >>"$OUT/loadgen.txt"
set -e
echo "uptime after: $(uptime)" | tee -a "$OUT/uptime.txt"
cat "$OUT/loadgen.txt"
