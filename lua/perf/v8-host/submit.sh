#!/bin/bash
# submit.sh TAG BIN LIB [rounds]: the lone answer_submit (lua-bench batch --sizes 0) and answer_batch of 8/32/128,
# own redis-server on CPU 1 (port 7396, no persistence), the bench on CPU 0; a fresh Redis per round.
TAG=$1 BIN=$2 LIB=$3 ROUNDS=${4:-3}
PORT=7396
for r in $(seq "$ROUNDS"); do
  redis-cli -p $PORT shutdown nosave >/dev/null 2>&1; sleep 0.3
  taskset -c 1 redis-server --port $PORT --save '' --appendonly no --daemonize yes \
    --logfile "${TMPDIR:-/tmp}/ringside-lua-bench-redis.log"
  for _ in $(seq 50); do redis-cli -p $PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p $PORT FUNCTION LOAD REPLACE "$(cat "$LIB")" >/dev/null || exit 1
  echo "=== $TAG round $r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  taskset -c 0 "$BIN" --redis redis://127.0.0.1:$PORT/ --no-load batch --players 100000 --sizes 0,8,32,128 \
    --pipeline 64 --clients 4
  echo "=== end load $(cut -d' ' -f1-3 /proc/loadavg)"
done
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1
