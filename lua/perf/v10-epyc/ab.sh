#!/bin/bash
# ab.sh WHAT ROUNDS LIB...: libraries timed alternately on Debian's redis-server, a fresh redis-server per
# run on CPU 1 (port 7397, no persistence), the release lua-bench on CPU 0 (BENCH, default
# /tmp/rel/target/release/lua-bench). WHAT:
#   lone   the lone answer_submit, one room of 100,001 players (lua-bench batch --sizes 0)
#   batch  answer_batch of 8 and of 32, then the lone answer_submit, a fresh 100,001-player room each
#   joins  room_join: lua-bench reveal --players N (default 20000), its "joined" and "submitted" lines
WHAT=$1 R=$2; shift 2
PORT=7397 N=${N:-20000} BENCH=${BENCH:-/tmp/rel/target/release/lua-bench}
case $WHAT in
  lone) ARGS=(batch --players 100000 --sizes 0 --pipeline 64 --clients 4); KEEP='main-thread CPU per answer' ;;
  batch) ARGS=(batch --players 100000 --sizes 8,32 --pipeline 64 --clients 4); KEEP='answer_batch of|answer_submit|main-thread CPU per answer' ;;
  joins) ARGS=(reveal --players "$N"); KEEP='joined|submitted' ;;
  *) echo "WHAT: lone | batch | joins" >&2; exit 2 ;;
esac
for r in $(seq "$R"); do for lib in "$@"; do
  redis-cli -p $PORT shutdown nosave >/dev/null 2>&1; sleep 0.3
  taskset -c 1 redis-server --port $PORT --save '' --appendonly no --daemonize yes --logfile "${TMPDIR:-/tmp}/ab-redis.log"
  for _ in $(seq 50); do redis-cli -p $PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p $PORT FUNCTION LOAD REPLACE "$(cat "$lib")" >/dev/null || exit 1
  echo "== $(basename "$lib") r$r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  taskset -c 0 "$BENCH" --redis redis://127.0.0.1:$PORT/ --no-load "${ARGS[@]}" | grep -E "$KEEP"
done; done
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1
