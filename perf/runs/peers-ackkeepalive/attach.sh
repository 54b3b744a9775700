#!/bin/bash
# $1 stat|record, $2 out dir, $3 server (ringside|floor), $4 edge binary: a peers run (2K by default) with perf
# attached to the server after its joins (DELAY s) for SECS s.
#   stat:   perf stat --per-thread, context switches and the syscalls by kind -> <out>/<server>.perfstat.txt
#   record: perf record -g at HZ (1,999)                                     -> <out>/<server>.perf.data
set -u
mode=$1; out=$2; srv=$3; bin=${4:-}
cd /tmp/rel
if [ $srv = ringside ]; then pat="ringside-edge --listen 127.0.0.1:18680"; else pat="peers-floor --listen"; fi
PEERS_EDGE_BIN=$bin benches/peers/run.sh --no-build --players ${PLAYERS:-2000} --only $srv --out $out &
runner=$!
for i in $(seq 300); do pid=$(pgrep -f "$pat" | tail -1); [ -n "$pid" ] && break; sleep 0.2; done
sleep ${DELAY:-10}
pids=$(pgrep -f "$pat" | tr '\n' ',' | sed 's/,$//')
echo "perf $mode on $pids"
if [ $mode = stat ]; then
  EV=context-switches,cpu-migrations,task-clock
  for s in sendmsg sendto write writev read recvfrom io_uring_enter epoll_wait epoll_ctl futex timerfd_settime sched_yield; do EV=$EV,syscalls:sys_enter_$s; done
  perf stat --per-thread -e $EV -p $pids -o $out/$srv.perfstat.txt -- sleep ${SECS:-80}
else
  perf record -F ${HZ:-1999} -g -p $pids -o $out/$srv.perf.data -- sleep ${SECS:-80} 2>&1 | tail -2
fi
wait $runner
