#!/bin/bash
# $1 out dir, $2 server (ringside|floor), $3 edge binary: perf stat (syscalls by kind, switches) on the server during a run
set -u
out=$1; srv=$2; bin=${3:-}
cd /tmp/rel
EV=context-switches,cpu-migrations,task-clock
for s in sendmsg sendto write writev read recvfrom io_uring_enter epoll_wait epoll_ctl futex timerfd_settime sched_yield; do EV=$EV,syscalls:sys_enter_$s; done
if [ $srv = ringside ]; then pat="ringside-edge --listen 127.0.0.1:18680"; else pat="peers-floor --listen"; fi
PEERS_EDGE_BIN=$bin benches/peers/run.sh --no-build --players ${PLAYERS:-2000} --only $srv --out $out &
runner=$!
for i in $(seq 300); do pid=$(pgrep -f "$pat" | tail -1); [ -n "$pid" ] && break; sleep 0.2; done
sleep ${DELAY:-10}
pids=$(pgrep -f "$pat" | tr '\n' ',' | sed 's/,$//')
echo "perf stat on $pids"
perf stat --per-thread -e $EV -p $pids -o $out/$srv.perfstat.txt -- sleep ${SECS:-80}
wait $runner
