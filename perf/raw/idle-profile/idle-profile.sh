#!/bin/bash
# 15K idle sockets on one edge process, no app pings: where does the edge's idle CPU go?
# perf/edge.md "Pings": one edge process (CPU 1), 15K idle sockets from the load generator (CPU 0), plain loopback.
# PING_MS=3600000 (default): no app pings, only the edge's WebSocket keepalive; PING_MS=1000: 15K app pings/s.
#   /work/bin/quiet-run perf/raw/idle-profile/idle-profile.sh        B = release binaries (default /tmp/rel/target/release)
set -u; cd "$(dirname "$0")/../../.."
B=${B:-/tmp/rel/target/release}; P=18620; R=18621; W=/tmp/sweepprof; rm -rf $W; mkdir -p $W
redis-server --port $R --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir $W --logfile $W/redis.log --pidfile $W/redis.pid
sleep 0.5
$B/ringside-quiz import loadgen/quizzes/lg-3.json --redis redis://127.0.0.1:$R/ >/dev/null 2>&1
taskset -c 1 $B/ringside-edge --listen 127.0.0.1:$P --redis redis://127.0.0.1:$R/ --processes 1 --threads 1 ${EDGE_ARGS:-} > $W/edge.log 2>&1 &
EL=$!
sleep 2
EP=$(pgrep -P $EL | head -1); [ -z "$EP" ] && EP=$EL; echo "edge pid $EP"
taskset -c 0 $B/ringside-loadgen connect --url ws://127.0.0.1:$P/ws --sockets 15000 --ramp-rate 5000 --hold-secs 45 --ping-interval-ms ${PING_MS:-3600000} --quiet --duration 120 --out $W/lg > $W/loadgen.txt 2>&1 &
LG=$!
sleep 15
t0=$(awk '{print $14+$15}' /proc/$EP/stat)
perf record -g -F 999 -p $EP -o $W/perf.data -- sleep 20 2>/dev/null
t1=$(awk '{print $14+$15}' /proc/$EP/stat)
echo "edge cpu over 20 s (incl. perf overhead): $(( (t1-t0) )) ticks = $(echo "scale=4; ($t1-$t0)/100/20" | bc) core"
t0=$(awk '{print $14+$15}' /proc/$EP/stat); sleep 10; t1=$(awk '{print $14+$15}' /proc/$EP/stat)
echo "edge cpu over 10 s without perf: $(echo "scale=4; ($t1-$t0)/100/10" | bc) core"
wait $LG
kill $EL; sleep 1; redis-cli -p $R shutdown nosave >/dev/null 2>&1
grep -E "sockets|ping" $W/loadgen.txt | head -5
perf report -i $W/perf.data --no-children --sort sym --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -40
