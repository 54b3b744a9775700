#!/usr/bin/env bash
# A network namespace for the fan-out runs of perf/edge.md §4: its own loopback, so the benchmark
# neither sees nor disturbs anything else on the machine, with the receive path of that loopback
# steered (RPS) to the CPUs in RPS_CPUS (a hex mask; default 2 = CPU 1).
#
# On loopback a sender's sendmsg normally runs the receiver's whole TCP path and wake-up inside its
# own syscall. With RPS the sender only queues the packet to another CPU's backlog, which is what a
# NIC does for an edge whose clients are on other machines. The edge is then pinned to the CPUs not
# in the mask, and the clients (load generator), redis and the engine to the others.
#   sudo perf/raw/netns.sh up|down            # then: ip netns exec ringside-bench <command>
set -euo pipefail
NS=${NS:-ringside-bench}
RPS_CPUS=${RPS_CPUS:-2}
case "${1:-up}" in
up)
  ip netns add "$NS" 2>/dev/null || true
  ip -n "$NS" link set lo up
  ip netns exec "$NS" sysctl -q -w net.ipv4.ip_local_port_range="32768 60999" net.ipv4.tcp_tw_reuse=2 \
    net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
  ip netns exec "$NS" sh -c "echo $RPS_CPUS > /sys/class/net/lo/queues/rx-0/rps_cpus"
  echo "netns $NS: lo up, rps_cpus=$(ip netns exec "$NS" cat /sys/class/net/lo/queues/rx-0/rps_cpus)"
  ;;
down)
  ip netns del "$NS"
  ;;
esac
