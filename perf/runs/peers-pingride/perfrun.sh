#!/bin/bash
# $1 out dir, $2 edge binary: a 19K ringside run with perf record (499 Hz, no call graph) on the edge worker
set -u
out=$1; bin=$2
cd /tmp/rel
PEERS_EDGE_BIN=$bin benches/peers/run.sh --no-build --players ${PLAYERS:-19000} --only ringside --out $out &
runner=$!
for i in $(seq 200); do pid=$(pgrep -f "ringside-edge --listen 127.0.0.1:18680" | tail -1); [ -n "$pid" ] && break; sleep 0.2; done
pids=$(pgrep -f "ringside-edge --listen 127.0.0.1:18680" | tr '\n' ',' | sed 's/,$//')
echo "perf on $pids"
sleep 8
perf record -F ${HZ:-499} -p $pids -o $out.perf.data -- sleep 90 2>&1 | tail -2
wait $runner
