#!/usr/bin/env bash
# perf/edge.md "Pings": 100K idle sockets' edge CPU with each packet received on the CPU of the process that
# reads it (RFS), so the load generator's TCP receive path — on a real host, the players' phones — no longer
# runs inside the edge's sendmsg as plain loopback makes it. Same stack and load as edge-idle-pings.sh's 20 s
# run (perf/raw/edge-stack.sh: 7 edge processes × 1 thread; edge-idle.sh: 100K sockets over 127.0.0.2..),
# inside a namespace of its own: edge on CPU 1, Redis, engine and load generator on CPU 0.
#   BIN=/tmp/pingbench/bin /work/bin/quiet-run perf/raw/edge-idle-rfs.sh [NAME] [loadgen args...]
# rps_sock_flow_entries is a machine-wide sysctl (0 by default): set for the run, restored at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=${1:-idle-100k-ping20s-rfs}; shift || true
NS=${NS:-ringside-idle}
export BIN=${BIN:-/tmp/pingbench/bin} RUN=/tmp/edgebench/run-rfs PROCS=${PROCS:-7} EDGE_CPUS=1 OTHER_CPUS=0
X="ip netns exec $NS"
OLD=$(cat /proc/sys/net/core/rps_sock_flow_entries)
trap 'echo "$OLD" > /proc/sys/net/core/rps_sock_flow_entries; $X perf/raw/edge-stack.sh stop || true' EXIT
ip netns add "$NS" 2>/dev/null || true
ip -n "$NS" link set lo up
$X sysctl -q -w net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=2 \
  net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
echo 32768 > /proc/sys/net/core/rps_sock_flow_entries
$X sh -c "echo 32768 > /sys/class/net/lo/queues/rx-0/rps_flow_cnt; echo 3 > /sys/class/net/lo/queues/rx-0/rps_cpus"
$X perf/raw/edge-stack.sh start
$X taskset -c 0 perf/raw/edge-idle.sh "$NAME" 100000 connect --ramp-rate 4000 --hold-secs 60 "$@"
cat "/tmp/edgebench/out/$NAME/loadgen.txt" "/tmp/edgebench/out/$NAME/uptime.txt" > "perf/raw/edge-$NAME-loadgen.txt"
grep -E "^cpu|sockets:|uptime" "perf/raw/edge-$NAME-loadgen.txt"
