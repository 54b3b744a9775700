#!/usr/bin/env bash
# perf/edge.md "Real game: where the CPU goes": one game run like perf/raw/fair-start.sh (fresh redis-server,
# ringside-engine, ringside-edge with EDGE_PROCESSES processes of one thread, quiz lg-3, sealed questions),
# plus, on the edge's processes: CPU (utime/stime from /proc before and after), their /metrics before and
# after (frames, bytes, send syscalls, loop-lag and answer histograms; --metrics-listen), syscall counts by
# kind (perf stat on the syscall tracepoints, the whole run), and with PROFILE=1 a call-graph profile
# (perf record -g at 499 Hz for PERF_SECS from PERF_DELAY s after the load generator starts; only the
# text report is kept). Redis's INFO commandstats, SLOWLOG (calls > SLOWLOG_US, default 1000) and LATENCY
# LATEST at the end.
#   perf/raw/edge-game.sh NAME SCENARIO [loadgen args...]
#   e.g. PROFILE=1 perf/raw/edge-game.sh g30k game --rooms 300 --players-per-room 100 --ramp-rate 1000
# SEALED=0: questions in clear; PROGRESS=1: the players ask for the progress ticks (/ws?progress=1).
# BIN (default target/release); OUT_ROOT (default /tmp/edgegame); REDIS_PORT, EDGE_PORT, METRICS_PORT,
# ENGINE_HTTP_PORT (the engine's /metrics, kept as engine-metrics.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=$1; SCENARIO=$2; shift 2
BIN=${BIN:-target/release}
OUT=${OUT_ROOT:-/tmp/edgegame}/$NAME; rm -rf "$OUT"; mkdir -p "$OUT"
RPORT=${REDIS_PORT:-18710}; EPORT=${EDGE_PORT:-18711}; MPORT=${METRICS_PORT:-18720}
PROCS=${EDGE_PROCESSES:-3}; KIDS=
REDIS=redis://127.0.0.1:$RPORT/
PATH_Q=/ws; [ "${SEALED:-1}" = 1 ] && PATH_Q='/ws?sealed=1'
# PROGRESS=1: the players ask for the live game:answer:progress ticks too (/ws?…progress=1), as every
# player got them before library v8
if [ "${PROGRESS:-0}" = 1 ]; then case $PATH_Q in *\?*) PATH_Q="$PATH_Q&progress=1" ;; *) PATH_Q="$PATH_Q?progress=1" ;; esac; fi

redis-server --port "$RPORT" --save '' --appendonly no --daemonize yes --logfile "$OUT/redis.log" \
  --pidfile "$OUT/redis.pidfile" --slowlog-log-slower-than "${SLOWLOG_US:-1000}" --slowlog-max-len 10000 \
  --latency-monitor-threshold 1
cleanup() {
  set +e
  [ -n "${PERFREC:-}" ] && kill -INT "$PERFREC" 2>/dev/null
  [ -n "${PERFSTAT:-}" ] && kill -INT "$PERFSTAT" 2>/dev/null
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null
  [ -n "${EDGE:-}" ] && kill "$EDGE" 2>/dev/null
  [ -n "${ENGINE:-}" ] && kill "$ENGINE" 2>/dev/null
  sleep 2
  for p in ${KIDS//,/ }; do kill "$p" 2>/dev/null; done
  redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1
  return 0
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/ringside-quiz" import loadgen/quizzes/lg-3.json --redis "$REDIS" >"$OUT/quiz.log" 2>&1
"$BIN/ringside-engine" --redis "$REDIS" --http "127.0.0.1:${ENGINE_HTTP_PORT:-18730}" >"$OUT/engine.log" 2>&1 &
ENGINE=$!
# shellcheck disable=SC2086
"$BIN/ringside-edge" --listen "127.0.0.1:$EPORT" --redis "$REDIS" --processes "$PROCS" --threads 1 \
  --metrics-listen "127.0.0.1:$MPORT" --addr-joins-per-sec 0 ${EDGE_ARGS:-} >"$OUT/edge.log" 2>&1 &
EDGE=$!
for _ in $(seq 100); do
  [ "$(pgrep -P "$EDGE" | wc -l)" -ge "$PROCS" ] && curl -sf "http://127.0.0.1:$EPORT/readyz" >/dev/null && break
  sleep 0.1
done
sleep 0.5
KIDS=$(pgrep -P "$EDGE" | tr '\n' ',' | sed 's/,$//')
cpu() { for p in ${KIDS//,/ }; do awk '{u+=$14; s+=$15} END {print u, s}' "/proc/$p/stat"; done |
  awk '{u+=$1; s+=$2} END {print u, s}'; }
scrape() { for i in $(seq 0 $((PROCS - 1))); do curl -sf "http://127.0.0.1:$((MPORT + i))/metrics"; done; }
scrape >"$OUT/metrics-before.txt"
echo "$(cpu)" >"$OUT/cpu-before.txt"
SYSCALLS=raw_syscalls:sys_enter
for s in sendmsg sendto recvfrom read write io_uring_enter futex epoll_wait writev readv recvmsg; do
  SYSCALLS="$SYSCALLS,syscalls:sys_enter_$s"
done
python3 perf/raw/edge-game-threads.py "$(cat "$OUT/redis.pidfile")" "$KIDS" >"$OUT/threads.csv" &
SAMPLER=$!
perf stat -e "$SYSCALLS" -p "$KIDS" -o "$OUT/syscalls.txt" 2>/dev/null &
PERFSTAT=$!
if [ "${PROFILE:-0}" = 1 ]; then
  (sleep "${PERF_DELAY:-35}"; exec perf record -F 499 -g -p "$KIDS" -o "$OUT/perf.data" -- sleep "${PERF_SECS:-30}") \
    >"$OUT/perf-record.log" 2>&1 &
  PERFREC=$!
fi

echo "uptime before: $(uptime)" | tee "$OUT/uptime.txt"
echo "edge children: $KIDS"
WATCH=(); for p in ${KIDS//,/ }; do WATCH+=(--watch-pid "edge=$p"); done
set +e
"$BIN/ringside-loadgen" "$SCENARIO" --url "ws://127.0.0.1:$EPORT$PATH_Q" --quiz lg-3 --quiet --duration 400 \
  "${WATCH[@]}" --watch-pid "redis=$(cat "$OUT/redis.pidfile")" --watch-pid "engine=$ENGINE" \
  --out "$OUT/lg" "$@" >"$OUT/loadgen.txt" 2>&1
echo "loadgen exit $?" >>"$OUT/loadgen.txt"
set -e
echo "uptime after: $(uptime)" | tee -a "$OUT/uptime.txt"
echo "$(cpu)" >"$OUT/cpu-after.txt"
scrape >"$OUT/metrics-after.txt"
redis-cli -p "$RPORT" info commandstats >"$OUT/redis-commandstats.txt"
curl -sf "http://127.0.0.1:${ENGINE_HTTP_PORT:-18730}/metrics" >"$OUT/engine-metrics.txt" || true
# every call that ran longer than SLOWLOG_US (default 1 ms) inside Redis, and Redis's own latency events
redis-cli -p "$RPORT" slowlog get 10000 >"$OUT/redis-slowlog.txt"
redis-cli -p "$RPORT" latency latest >"$OUT/redis-latency.txt"
kill "$SAMPLER" 2>/dev/null || true; SAMPLER=
kill -INT "$PERFSTAT" 2>/dev/null || true; wait "$PERFSTAT" 2>/dev/null || true; PERFSTAT=
if [ -n "${PERFREC:-}" ]; then
  wait "$PERFREC" 2>/dev/null || true; PERFREC=
  perf report -i "$OUT/perf.data" --no-children --sort dso,sym --percent-limit 0.5 --stdio -g none \
    >"$OUT/perf-flat.txt" 2>/dev/null || true
  perf report -i "$OUT/perf.data" --children --sort sym --percent-limit 2 --stdio -g caller,0.5,callee,function,percent \
    >"$OUT/perf-children.txt" 2>/dev/null || true
  rm -f "$OUT/perf.data"
fi
# Summary: edge CPU per frame written, send syscalls per frame, histograms.
python3 perf/raw/edge-game-summary.py "$OUT" | tee "$OUT/summary.txt"
cat "$OUT/loadgen.txt"
