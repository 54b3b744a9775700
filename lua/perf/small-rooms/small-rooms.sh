#!/bin/bash
# small-rooms.sh TAG LIB [OUT]: timed, 50 rooms of 100 players answering (lone answer_submit, Redis main-thread CPU per
# answer) and 50 rooms of 100 revealed and scored (host_skip) with their results; own redis-server on CPU 1, the
# bench on CPU 0 (BENCH, default target/release/lua-bench). Medians: lua/perf/small-rooms/medians.sh OUT.
TAG=$1 LIB=$2 OUT=${3:-.} PORT=7399 BIN=${BENCH:-target/release/lua-bench}
S=$(printf '0,%.0s' $(seq 50)); S=${S%,}
P=$(printf '100,%.0s' $(seq 50)); P=${P%,}
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1; sleep 0.3
taskset -c 1 redis-server --port $PORT --save '' --appendonly no --daemonize yes --logfile ${TMPDIR:-/tmp}/ringside-small-rooms-redis.log
for _ in $(seq 50); do redis-cli -p $PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p $PORT FUNCTION LOAD REPLACE "$(cat "$LIB")" >/dev/null || exit 1
echo "=== $TAG $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
taskset -c 0 $BIN --redis redis://127.0.0.1:$PORT/ --no-load batch --players 100 --sizes $S --pipeline 64 --clients 1 > "$OUT/$TAG-batch.txt"
taskset -c 0 $BIN --redis redis://127.0.0.1:$PORT/ --no-load reveal --players $P > "$OUT/$TAG-reveal.txt"
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1
echo "=== end load $(cut -d' ' -f1-3 /proc/loadavg)"
