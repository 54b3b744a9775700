#!/usr/bin/env bash
# perf/storms.md: one reconnect-storm run (issue 13 item 2) on a fresh stack, the edge's CPU apart from the
# load generator's.
#
#   perf/raw/storm.sh NAME MODE [loadgen args...]      MODE: baseline | kill1 | kill3
#   e.g. /work/bin/quiet-lock perf/raw/storm.sh 50k kill1 --rooms 500 --players-per-room 100
#
# The stack, new for every run, all inside a network namespace of its own (NS, default ringside-storm:
# its own loopback, port range and listen backlogs, so nothing else on the machine is reached or in the way):
#   redis-server (a free port), ringside-engine, ringside-edge --processes 7 --threads 1 — all pinned to
#   SERVER_CPUS (default 1); the load generator pinned to LOADGEN_CPUS (default 0). The loopback's receive
#   path is steered (RPS) to the load generator's CPU: on loopback the sender's syscall would otherwise run
#   the receiver's whole TCP path, so the edge's CPU would pay for its clients' receive side, which in
#   production is on the players' phones. What the edge's CPU runs is then the edge, Redis and the engine
#   and their send paths; packets arriving at them (answers, SYNs, upgrades) are received on CPU 0 as a
#   NIC's queue on another core would.
# All three modes run the same reconnect-storm game with the same flags; the kill happens at the same moment
# (--kill-at-question, --kill-delay-ms). baseline kills nothing (--kill-cmd true), kill1 SIGKILLs one edge
# child, kill3 three at once. The launcher restarts a killed child after ~1 s (edge/src/launcher.rs): the
# restarted process takes its share of the reconnects again, as after a crash in production.
#
# Output (small files only) in perf/runs/storm-NAME-MODE/: loadgen.txt (its summary), report.json.gz,
# total.hlog.gz, uptime.txt (load average before/after, the commit of the binaries), metrics-N.txt (each
# edge child's admission/reconnect counters at the end), redis-info.txt, rates.txt (reconnects, upgrades and
# unaffected question receipts per second, from perf/raw/storm-rate.py).
# BIN (default target/release) is copied to $WORK/bin first, so a rebuild during the run changes nothing.
# DURATION (default 300 s) is the load generator's hard deadline: keep it below any `timeout` around this
# script, so a run that hangs still writes its report and gets copied.
# For perf/device/storm.sh (a lent machine: no curl/iproute2/procps maybe, maybe no network namespaces):
# NS=none runs everything in the machine's own namespace (then the sysctls and RPS are set there, each only
# if the kernel lets us; uptime.txt says what took), DEST replaces perf/runs/storm-NAME-MODE, and curl,
# pgrep, ss, sysctl and uptime each have a fallback through /proc or bash's /dev/tcp when missing. With
# the defaults and those tools present, nothing here differs from the runs in perf/storms.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=$1; MODE=$2; shift 2
case "$MODE" in baseline|kill1|kill3) ;; *) echo "MODE: baseline | kill1 | kill3" >&2; exit 1 ;; esac
NS=${NS:-ringside-storm}
SERVER_CPUS=${SERVER_CPUS:-1}
LOADGEN_CPUS=${LOADGEN_CPUS:-0}
RPS_MASK=${RPS_MASK:-1}             # hex CPU mask for the loopback's receive path (1 = CPU 0)
PROCS=${PROCS:-7}
BIN=${BIN:-target/release}
WORK=${WORK:-/tmp/storm}/$NAME-$MODE
DEST=${DEST:-perf/runs/storm-$NAME-$MODE}
RPORT=${REDIS_PORT:-18790}; EPORT=${EDGE_PORT:-18791}; MPORT=${METRICS_PORT:-18800}
PATH_Q=/ws; [ "${SEALED:-1}" = 1 ] && PATH_Q='/ws?sealed=1'
rm -rf "$WORK"; mkdir -p "$WORK/bin" "$DEST"
for b in ringside-edge ringside-engine ringside-loadgen ringside-quiz; do cp "$BIN/$b" "$WORK/bin/"; done
B=$WORK/bin
have() { command -v "$1" >/dev/null 2>&1; }
# Children of a pid (pgrep -P), from /proc when pgrep is missing.
kids() { if have pgrep; then pgrep -P "$1"; else cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$1" '$4 == p { print $1 }'; fi; }
up() { if have uptime; then uptime; else echo "$(date -u +%T) load average: $(cut -d' ' -f1-3 /proc/loadavg)"; fi; }
NOTES=()   # what NS=none could not set, for uptime.txt
if [ "$NS" = none ]; then
  X=""
  # No namespace: the machine's own sysctls (a lent machine, given back bare after the run), if writable.
  for kv in "net/ipv4/ip_local_port_range=10000 65000" net/ipv4/tcp_tw_reuse=2 net/core/somaxconn=65535 \
            net/ipv4/tcp_max_syn_backlog=65535; do
    echo "${kv#*=}" > "/proc/sys/${kv%%=*}" 2>/dev/null || NOTES+=("sysctl ${kv%%=*} not set ($(cat "/proc/sys/${kv%%=*}" 2>/dev/null || echo missing))")
  done
else
  X="ip netns exec $NS"
  ip netns add "$NS" 2>/dev/null || true
  ip -n "$NS" link set lo up
  $X sysctl -q -w net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=2 \
    net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
fi
# GET http://127.0.0.1:PORT/PATH inside the namespace: the body on 200, else fail (curl -sf, or bash).
http_get() {
  if have curl; then $X curl -sf "http://127.0.0.1:$1$2"; return; fi
  $X bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1; printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
    read -r -t 5 _ code _ <&3 || exit 1; [ "$code" = 200 ] || exit 1
    timeout 5 cat <&3 | sed "1,/^\r\{0,1\}\$/d"' _ "$1" "$2"
}
# RFS=1: receive each packet on the CPU of the process that reads it (RFS) instead of all on RPS_MASK's:
# the edge's and Redis's own receive paths (answers, pings, edge<->Redis calls) then run on the server's CPU
# as on a real host, and only the clients' receive side runs on the load generator's CPU. Without it every
# edge<->Redis round trip is received twice on the load generator's CPU (saturated at 30K+ players).
OLD_RFS=$(cat /proc/sys/net/core/rps_sock_flow_entries 2>/dev/null || true)
cleanup() {
  set +e
  [ -n "$OLD_RFS" ] && echo "$OLD_RFS" > /proc/sys/net/core/rps_sock_flow_entries
  [ -n "${PINNER:-}" ] && kill "$PINNER" 2>/dev/null || true
  [ -n "${EDGE:-}" ] && kill "$EDGE" 2>/dev/null || true
  [ -n "${ENGINE:-}" ] && kill "$ENGINE" 2>/dev/null || true
  sleep 1
  $X redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
  [ -n "${RPS_OLD:-}" ] && echo "$RPS_OLD" > /sys/class/net/lo/queues/rx-0/rps_cpus
}
trap cleanup EXIT
if [ "$NS" = none ]; then
  # The machine's own loopback: put its RPS mask back at the end; a kernel without it (gVisor) runs without.
  RPS_OLD=$(cat /sys/class/net/lo/queues/rx-0/rps_cpus 2>/dev/null || true)
  if [ -z "$RPS_OLD" ] || ! echo "$RPS_MASK" > /sys/class/net/lo/queues/rx-0/rps_cpus 2>/dev/null; then
    NOTES+=("RPS not available: no steering of the loopback's receive path"); RPS_MASK="none"; RPS_OLD=
  fi
  [ "${RFS:-0}" = 1 ] && NOTES+=("RFS=1 ignored with NS=none")
else
if [ "${RFS:-0}" = 1 ]; then
  RPS_MASK=3
  echo 32768 > /proc/sys/net/core/rps_sock_flow_entries
  $X sh -c "echo 32768 > /sys/class/net/lo/queues/rx-0/rps_flow_cnt"
else
  $X sh -c "echo 0 > /sys/class/net/lo/queues/rx-0/rps_flow_cnt"
fi
$X sh -c "echo $RPS_MASK > /sys/class/net/lo/queues/rx-0/rps_cpus"
fi
for p in $RPORT $EPORT; do
  have ss || break
  if $X ss -Htln "sport = :$p" | grep -q .; then echo "port $p is taken in $NS" >&2; exit 1; fi
done

SP="taskset -c $SERVER_CPUS"; LP="taskset -c $LOADGEN_CPUS"
have taskset || { SP=""; LP=""; NOTES+=("taskset missing: nothing pinned"); }
$X $SP redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --dir "$WORK" --logfile "$WORK/redis.log" --pidfile "$WORK/redis.pid"
for _ in $(seq 50); do $X redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS=redis://127.0.0.1:$RPORT/
$X "$B/ringside-quiz" import loadgen/quizzes/lg-3.json --redis "$REDIS" >"$WORK/quiz.log" 2>&1
$X $SP "$B/ringside-engine" --redis "$REDIS" --http 127.0.0.1:0 >"$WORK/engine.log" 2>&1 &
ENGINE=$!
# shellcheck disable=SC2086
$X $SP "$B/ringside-edge" --listen "127.0.0.1:$EPORT" --redis "$REDIS" --processes "$PROCS" --threads 1 \
  --metrics-listen "127.0.0.1:$MPORT" --addr-joins-per-sec 0 ${EDGE_ARGS:-} >"$WORK/edge.log" 2>&1 &
EDGE=$!
for _ in $(seq 200); do
  [ "$(kids "$EDGE" | wc -l)" -ge "$PROCS" ] && http_get "$EPORT" /readyz >/dev/null && break
  sleep 0.1
done
# Each edge process binds its worker thread to CPU (index % CPUs allowed) = CPU 0, whatever taskset it was
# started under (edge/src/server.rs worker_main; perf/device/README.md): re-pin every thread of every child to
# SERVER_CPUS, and keep doing it during the run, so a child the launcher restarts after a kill is moved too.
pin_edges() { for p in $(kids "$EDGE"); do taskset -a -p -c "$SERVER_CPUS" "$p" >/dev/null 2>&1 || true; done; }
pin_edges
( while kill -0 "$EDGE" 2>/dev/null; do sleep 0.2; pin_edges; done ) &
PINNER=$!
sleep 1
mapfile -t KIDS < <(kids "$EDGE")
KILL=(--kill-cmd true)
case "$MODE" in
  kill1) KILL=(--kill-pid "${KIDS[0]}") ;;
  kill3) KILL=(--kill-pid "${KIDS[0]}" --kill-pid "${KIDS[1]}" --kill-pid "${KIDS[2]}") ;;
esac
REDIS_PID=$(cat "$WORK/redis.pid")
[ -n "${REDIS_NICE:-}" ] && renice -n "$REDIS_NICE" -p "$REDIS_PID" >/dev/null

{
  echo "binaries: ${BUILD_COMMIT:-?} (BUILD_COMMIT), copied from $BIN at $(date -u +%FT%TZ)"
  echo "server cpus $SERVER_CPUS (edge ${KIDS[*]}, redis $REDIS_PID, engine $ENGINE), loadgen cpus $LOADGEN_CPUS, rps mask $RPS_MASK, rfs ${RFS:-0}, netns $NS"
  echo "kill: ${KILL[*]}; redis nice ${REDIS_NICE:-0}"
  echo "edge child ${KIDS[0]} threads' CPUs: $(grep -h Cpus_allowed_list /proc/"${KIDS[0]}"/task/*/status | awk '{print $2}' | sort | uniq -c | tr '\n' ' ')"
  for n in "${NOTES[@]}"; do echo "note: $n"; done
  echo "uptime before: $(up)"
} | tee "$WORK/uptime.txt"
# PROBE=1: Redis's own round trip every second during the run (is a slow ack Redis's queue or the edge's?)
if [ "${PROBE:-0}" = 1 ]; then
  $X $LP python3 perf/raw/redis-probe.py "$RPORT" "${DURATION:-300}" >"$WORK/redis-latency.txt" 2>&1 &
  PROBER=$!
fi
set +e
$X $LP "$B/ringside-loadgen" reconnect-storm --url "ws://127.0.0.1:$EPORT$PATH_Q" \
  --quiz lg-3 --quiet --duration "${DURATION:-300}" "${KILL[@]}" \
  --watch-pid "edge=$(IFS=,; echo "${KIDS[*]}")" --watch-pid "redis=$REDIS_PID" --watch-pid "engine=$ENGINE" \
  --out "$WORK/lg" "$@" >"$WORK/loadgen.txt" 2>&1
echo "loadgen exit $?" >>"$WORK/loadgen.txt"
set -e
echo "uptime after: $(up)" | tee -a "$WORK/uptime.txt"
[ -n "${PROBER:-}" ] && { kill "$PROBER" 2>/dev/null || true; }
for i in $(seq 0 $((PROCS - 1))); do
  http_get "$((MPORT + i))" /metrics 2>/dev/null \
    | grep -E '^ringside_edge_(admission|connections_open|reconnect|refusals|upgrades|accept|answer_seconds|loop_lag|redis_latency|redis_in_flight|answer_batch)' >"$WORK/metrics-$i.txt" || true
done
$X redis-cli -p "$RPORT" info stats >"$WORK/redis-info.txt" 2>&1 || true

rm -rf "$DEST"; mkdir -p "$DEST"
[ -f "$WORK/redis-latency.txt" ] && gzip -c "$WORK/redis-latency.txt" >"$DEST/redis-latency.txt.gz"
cp "$WORK/loadgen.txt" "$WORK/uptime.txt" "$WORK/redis-info.txt" "$WORK"/metrics-*.txt "$DEST/"
gzip -c "$WORK/lg/report.json" >"$DEST/report.json.gz" 2>/dev/null || true
gzip -c "$WORK/lg/total.hlog" >"$DEST/total.hlog.gz" 2>/dev/null || true
grep -iE 'panic|error' "$WORK/edge.log" | head -50 >"$DEST/edge-errors.txt" || true
for t in reconnect connect question_delivery_unaffected; do
  echo "== $t (per second since the run's start; kill at the loadgen's note)"
  python3 perf/raw/storm-rate.py "$t" "$WORK"/lg/hlog/worker-*.hlog
done >"$DEST/rates.txt" 2>&1 || true
cat "$WORK/loadgen.txt"
