#!/bin/bash
# ab.sh ROUNDS lib...: lone answer_submit, 100,001-player room, fresh redis per run, redis CPU1, bench CPU0
R=$1; shift; PORT=7397
for r in $(seq $R); do for lib in "$@"; do
  redis-cli -p $PORT shutdown nosave >/dev/null 2>&1; sleep 0.3
  taskset -c 1 redis-server --port $PORT --save '' --appendonly no --daemonize yes --logfile /tmp/probe/redis.log
  for _ in $(seq 50); do redis-cli -p $PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p $PORT FUNCTION LOAD REPLACE "$(cat $lib)" >/dev/null || exit 1
  echo "== $lib r$r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  taskset -c 0 /tmp/rel/target/release/lua-bench --redis redis://127.0.0.1:$PORT/ --no-load batch --players 100000 --sizes 8,32 --pipeline 64 --clients 4 | grep -E "answer_batch of|main-thread CPU per answer"
done; done
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1
