#!/bin/bash
# 100K idle connect through perf/raw/edge-idle.sh (the load generator's default sources); edge handshake metrics
cd /work/main
export BIN=${BIN:-/tmp/ab/bin-base} RUN=/tmp/edgebench/run-eof PROCS=7 EDGE_EXTRA="--metrics-listen 127.0.0.1:19700"
perf/raw/edge-stack.sh start
sleep 3
perf/raw/edge-idle.sh eof-test 100000 connect --ramp-rate 4000 --hold-secs 5 >/dev/null 2>&1
grep -E "ringside-loadgen|sockets:|errors:|^connect |^loop_lag|cpu setup" /tmp/edgebench/out/eof-test/loadgen.txt
for i in 0 1 2 3 4 5 6; do curl -s http://127.0.0.1:$((19700+i))/metrics; done | grep -v "^#" | grep -E "handshakes_failed" | grep -v " 0$" | awk '{s+=$NF} END {print "edge handshakes failed:", s+0}'
perf/raw/edge-stack.sh stop
rm -f perf/raw/edge-eof-test-samples.csv
