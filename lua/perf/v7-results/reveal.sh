#!/bin/bash
# reveal.sh TAG BIN LIB [players]: own redis on CPU 1, bench on CPU 0
TAG=$1 BIN=$2 LIB=$3 P=${4:-1000,10000,100000}
PORT=7395
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1; sleep 0.3
taskset -c 1 redis-server --port $PORT --save '' --appendonly no --daemonize yes --logfile ${TMPDIR:-/tmp}/ringside-lua-bench-redis.log
sleep 0.5
redis-cli -p $PORT FUNCTION LOAD REPLACE "$(cat $LIB)" >/dev/null || exit 1
echo "=== $TAG $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
taskset -c 0 $BIN --redis redis://127.0.0.1:$PORT/ --no-load reveal --players $P
echo "=== end load $(cut -d' ' -f1-3 /proc/loadavg)"
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1
