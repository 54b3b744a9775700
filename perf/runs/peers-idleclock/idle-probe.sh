#!/bin/bash
# idle edge CPU: ns of CPU over SECS s (sum of all threads' schedstat), after WARM s
BIN=$1; TAG=$2; SECS=${SECS:-30}; WARM=${WARM:-5}
RP=18810; EP=18811
redis-server --port $RP --save '' --appendonly no --daemonize yes --pidfile /tmp/idle/r.pid --logfile /tmp/idle/r.log
sleep 0.5; /tmp/bin-base/ringside-quiz import /tmp/rel/loadgen/quizzes/lg-3.json --redis redis://127.0.0.1:$RP/ >/dev/null
$BIN/ringside-edge --listen 127.0.0.1:$EP --redis redis://127.0.0.1:$RP/ --threads 1 > /tmp/idle/edge-$TAG.log 2>&1 &
E=$!
sleep $WARM
cpu() { cat /proc/$E/task/*/schedstat | awk '{s+=$1} END {print s}'; }
wakes() { cat /proc/$E/task/*/schedstat | awk '{s+=$3} END {print s}'; }
a=$(cpu); w=$(wakes); sleep $SECS; b=$(cpu); w2=$(wakes)
echo "$TAG: $(( (b-a)/SECS/1000 )) us/s CPU, $(( (w2-w)/SECS )) timeslices/s, load $(cut -d' ' -f1 /proc/loadavg)"
for t in /proc/$E/task/*; do echo "  $(cat $t/comm): $(awk '{print $1, $3}' $t/schedstat)"; done > /tmp/idle/threads-$TAG.txt
kill $E; wait $E 2>/dev/null
redis-cli -p $RP shutdown nosave >/dev/null 2>&1
