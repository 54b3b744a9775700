#!/usr/bin/env bash
# The big-machine run of issue 16 #6, from the package of perf/device/pack.sh alone (no cargo, no Redis,
# no python, nothing to install; bash, coreutils, awk and taskset are all it uses of the machine):
#   (a) hold: --sockets sockets connect (upgrade + session:ack), are held --hold-secs with the server's
#       ping interval, and close: sockets held, connect rate, edge memory per socket, edge CPU for pings;
#   (b) fan-out: one room of --players players plays quiz lg-3 (3 questions of 10 s, JSON, pings off,
#       as perf/edge.md §3-§4): question delivery, spread, reveal, answer ack, missed events, CPU;
#   (c) game (with --game-rooms N, last): issue 16 #2's game, N rooms of 100 players, quiz lg-3, sealed, joins
#       at 1000/s, as perf/raw/edge-game.sh here, but with the load generator on cores of its own: answer
#       ack, ping round trip, question spread, keys by showAt, missed events, CPU.
# All against one stack: redis-server + the Functions library + quizzes, ringside-engine, and
# ringside-edge with N processes × 1 thread on one port (SO_REUSEPORT), each pinned to one edge core;
# ringside-loadgen's workers (≤ 15K sockets each) spread over source addresses 127.0.0.2… .
#
#   perf/device/run.sh --sockets 1000000 --cores 16     # the lent 16-core machine (perf/device/README.md)
#   perf/device/run.sh --sockets 20000 --players 10000 --cores 2 --budget-secs 420   # here, reduced
#   perf/device/run.sh --skip-hold --skip-fanout --game-rooms 500 --cores 16 --budget-secs 240   # 16 #2 alone
#
# Flags (defaults in brackets): --sockets N [1000000]  --players N [100000]  --cores N [nproc]
#   --edge-cores N [cores/2]  --hold-secs S [30]  --ramp-rate R (connects/s in (a)) [1500 × cores]
#   --join-rate R (joins/s in (b)) [1000 × cores, at most 8000]  --budget-secs S [540: the whole run, everything
#   killed by then]  --out DIR [$OUT, else /tmp/ringside-device-out]  --skip-hold  --skip-fanout
#   --ping-interval-ms MS (loadgen's app pings in (a); default: the server's pingInterval)
#   --game-rooms N  (c) with N rooms of 100 players [0: no (c)]
#   --no-lead  (b) with countdown and reveal pause of 900 ms: questions go out at their start, not ahead of
#              it (fair start's lead needs ≥ 1000 ms), as in perf/edge.md's runs before fair start
# Writes DIR/summary.md (tables in perf/edge.md's format), DIR/run.log and DIR/run-results.tar.gz: env.txt,
# samples.csv (1 s samples of the edge's memory and CPU, sockets, slab), {hold,fanout}/lg/report.json (loadgen's
# raw report and hlogs), {hold,fanout}/loadgen.txt, game/ the same for (c), logs/ (the device returns ≤ 8 files, ≤ 2 folders down).
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
T0=$(date +%s)

SOCKETS=1000000 PLAYERS=100000 CORES= EDGE_CORES= HOLD=30 RAMP= JOIN= BUDGET=540 OUTDIR=${OUT:-}
SKIP_HOLD= SKIP_FANOUT= PING_MS= NO_LEAD= GAME_ROOMS=0
while [ $# -gt 0 ]; do
  case $1 in
    --sockets) SOCKETS=$2; shift ;;
    --players) PLAYERS=$2; shift ;;
    --cores) CORES=$2; shift ;;
    --edge-cores) EDGE_CORES=$2; shift ;;
    --hold-secs) HOLD=$2; shift ;;
    --ramp-rate) RAMP=$2; shift ;;
    --join-rate) JOIN=$2; shift ;;
    --budget-secs) BUDGET=$2; shift ;;
    --out) OUTDIR=$2; shift ;;
    --ping-interval-ms) PING_MS=$2; shift ;;
    --skip-hold) SKIP_HOLD=1 ;;
    --skip-fanout) SKIP_FANOUT=1 ;;
    --no-lead) NO_LEAD=1 ;;
    --game-rooms) GAME_ROOMS=$2; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown flag $1" >&2; exit 1 ;;
  esac
  shift
done
DEADLINE=$((T0 + BUDGET))
OUTDIR=${OUTDIR:-/tmp/ringside-device-out}
mkdir -p "$OUTDIR"
# The device returns at most 8 files from $OUT, none deeper than 2 folders: everything is written to a work
# folder and packed at exit (cleanup) into FINAL: summary.md, run.log and run-results.tar.gz.
FINAL=$(cd "$OUTDIR" && pwd)
OUTDIR=$(mktemp -d /tmp/ringside-device-out.XXXXXX)
RUN=$(mktemp -d /tmp/ringside-run.XXXXXX)
mkdir -p "$OUTDIR/logs" "$OUTDIR/hold" "$OUTDIR/fanout" "$OUTDIR/game"
exec > >(tee -a "$OUTDIR/run.log") 2>&1
say() { echo "[$(date -u +%H:%M:%S) +$(($(date +%s) - T0))s] $*"; }
left() { echo $((DEADLINE - $(date +%s))); }

# ── the package ──
PACK=${PACK:-$REPO/perf/device/pack}
[ -x "$PACK/bin/ringside-edge" ] || { say "no package at $PACK (run perf/device/pack.sh and carry perf/device/pack)"; exit 1; }
if [ -e /tmp/ringside-pack ] && [ ! -L /tmp/ringside-pack ]; then say "/tmp/ringside-pack exists and is not a link"; exit 1; fi
chmod +x "$PACK"/bin/* "$PACK/ld.so" 2>/dev/null   # in case the copy lost the modes
ln -sfn "$(cd "$PACK" && pwd)" /tmp/ringside-pack
B=/tmp/ringside-pack/bin
# Only the pack's binaries get the pack's glibc; a system binary (taskset, env) starts them.
P() { env LD_LIBRARY_PATH=/tmp/ringside-pack/lib "$@"; }
for b in ringside-edge ringside-engine ringside-quiz ringside-loadgen redis-server; do
  P "$B/$b" --help >/dev/null 2>&1 || P "$B/$b" --version >/dev/null 2>&1 || { say "$b does not run from the pack"; exit 1; }
done

# ── the machine ──
NPROC=$(nproc)
CORES=${CORES:-$NPROC}
[ "$CORES" -gt "$NPROC" ] && CORES=$NPROC
HARD=$(ulimit -Hn)
ulimit -n "$HARD"
TICK=$(getconf CLK_TCK 2>/dev/null || echo 100)
PAGE=$(getconf PAGESIZE 2>/dev/null || echo 4096)
read -r PLO PHI < /proc/sys/net/ipv4/ip_local_port_range
HAVE_TASKSET=; command -v taskset >/dev/null && HAVE_TASKSET=1
# CPUs: the edge on [0, E); redis alone on the last core; engine and load generator on the rest.
if [ "$CORES" -ge 4 ]; then
  E=${EDGE_CORES:-$((CORES / 2))}
  EDGE_CPUS=$(seq -s, 0 $((E - 1))); REDIS_CPUS=$((CORES - 1)); OTHER_CPUS=$(seq -s, "$E" $((CORES - 2)))
elif [ "$CORES" -ge 2 ]; then
  E=1; EDGE_CPUS=0; REDIS_CPUS=$((CORES - 1)); OTHER_CPUS=$(seq -s, 1 $((CORES - 1)))
else
  E=1; EDGE_CPUS=0; REDIS_CPUS=0; OTHER_CPUS=0
fi
# Command prefixes (arrays, not a function: `func ... &` would make $! a subshell's pid, not the program's).
PIN_EDGE=() PIN_REDIS=() PIN_OTHER=()
if [ -n "$HAVE_TASKSET" ]; then
  PIN_EDGE=(taskset -c "$EDGE_CPUS"); PIN_REDIS=(taskset -c "$REDIS_CPUS"); PIN_OTHER=(taskset -c "$OTHER_CPUS")
fi
LIBENV=(env LD_LIBRARY_PATH=/tmp/ringside-pack/lib)
RAMP=${RAMP:-$((1500 * CORES))}
if [ -z "$JOIN" ]; then  # room_join costs 78 µs of the room's Redis core (perf/lua.md): ≤ 12.8K/s
  JOIN=$((1000 * CORES)); [ "$JOIN" -gt 8000 ] && JOIN=8000
fi
# Sockets per process: 70 % of the hard fd limit (the edge refuses upgrades past 90 % of it; SO_REUSEPORT
# spreads unevenly), at least one process per edge core, a multiple of the edge cores.
PER_PROC=$((HARD * 7 / 10))
NEED=$SOCKETS; [ -n "$SKIP_HOLD" ] && NEED=0
[ -z "$SKIP_FANOUT" ] && [ $((PLAYERS + 1)) -gt "$NEED" ] && NEED=$((PLAYERS + 1))
GAME_SOCKETS=$((GAME_ROOMS * 101))  # 100 players and a host per room
[ "$GAME_SOCKETS" -gt "$NEED" ] && NEED=$GAME_SOCKETS
EP=$(((NEED + PER_PROC - 1) / PER_PROC)); EP=$((((EP + E - 1) / E) * E))
LG_MAX=$((HARD * 3 / 4)); [ "$LG_MAX" -gt 15000 ] && LG_MAX=15000
# 70 % of half the ephemeral range per address: connect() searches for a free port in the calling
# thread, even ports first, and a fuller range stalls the load generator (loadgen/README.md)
PER_SRC=$(((PHI - PLO + 1) / 2 * 7 / 10)); [ "$PER_SRC" -lt 1000 ] && PER_SRC=1000
ip_of() { local n=$1; echo "127.$(((n >> 16) & 255)).$(((n >> 8) & 255)).$((n & 255))"; }
SRC0=2  # 127.0.0.2
NA=$(((SOCKETS + PER_SRC - 1) / PER_SRC + 1))
NB=$(((PLAYERS + 1 + PER_SRC - 1) / PER_SRC + 1))
SRC_A="$(ip_of $SRC0)-$(ip_of $((SRC0 + NA - 1)))"
SRC_B="$(ip_of $((SRC0 + NA)))-$(ip_of $((SRC0 + NA + NB - 1)))"   # fresh addresses: (a)'s ports may be in TIME_WAIT
NC=$(((GAME_SOCKETS + PER_SRC - 1) / PER_SRC + 1))
SRC_C="$(ip_of $((SRC0 + NA + NB)))-$(ip_of $((SRC0 + NA + NB + NC - 1)))"
REDIS_PORT=16690 EDGE_PORT=18580 METRICS_PORT=19600
URL="redis://127.0.0.1:$REDIS_PORT/"
WS="ws://127.0.0.1:$EDGE_PORT/ws"

{
  echo "date_utc $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "args sockets=$SOCKETS players=$PLAYERS cores=$CORES hold=$HOLD ramp=$RAMP join=$JOIN budget=$BUDGET"
  echo "nproc $NPROC"; grep -m1 'model name' /proc/cpuinfo; grep -E '^(MemTotal|MemAvailable)' /proc/meminfo
  echo "kernel $(uname -r)"; [ -r /etc/os-release ] && grep PRETTY_NAME /etc/os-release
  echo "nofile hard $HARD"; echo "ip_local_port_range $PLO $PHI ($PER_SRC used per source address)"
  for k in net/ipv4/tcp_tw_reuse net/core/somaxconn net/ipv4/tcp_max_syn_backlog net/ipv4/tcp_mem \
           net/ipv4/tcp_rmem net/ipv4/tcp_wmem fs/file-max fs/nr_open kernel/io_uring_disabled \
           net/ipv4/tcp_congestion_control net/netfilter/nf_conntrack_max net/netfilter/nf_conntrack_count \
           net/ipv4/tcp_max_orphans vm/max_map_count kernel/pid_max kernel/threads-max; do
    [ -r "/proc/sys/$k" ] && echo "$k $(cat "/proc/sys/$k")"
  done
  fmax=$(cat /proc/sys/fs/file-max 2>/dev/null || echo 0)
  [ "$fmax" -lt $((SOCKETS * 21 / 10)) ] && echo "WARNING: fs.file-max $fmax < 2.1 x sockets (both ends of each connection are on this machine)"
  echo "thp $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
  echo "taskset ${HAVE_TASKSET:-missing: nothing pinned}"
  echo "cpus edge=$EDGE_CPUS redis=$REDIS_CPUS engine+loadgen=$OTHER_CPUS"
  echo "edge processes $EP x 1 thread (<= $PER_PROC sockets each); loadgen <= $LG_MAX sockets per worker"
  echo "sources hold=$SRC_A fanout=$SRC_B game=$SRC_C"
  echo "game rooms $GAME_ROOMS (100 players each)"
  echo "loadavg $(cat /proc/loadavg)"
  cat "$PACK/PACKINFO" 2>/dev/null
} > "$OUTDIR/env.txt"
cat "$OUTDIR/env.txt"

# ── cleanup: every process we start is recorded by pid and ended at exit ──
# (cat, not awk over the files: mawk stops at the first process that vanished meanwhile)
children_of() { cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$1" '$4 == p { print $1 }'; }
PIDS_FILE=$RUN/pids
track() { echo "$1" >> "$PIDS_FILE"; }
cleanup() {
  trap - EXIT INT TERM
  touch "$RUN/stop"
  local p all=
  [ -f "$PIDS_FILE" ] && for p in $(tac "$PIDS_FILE"); do all="$all $p $(children_of "$p")"; done
  for p in $all; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=
    for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.2
  done
  for p in $all; do kill -KILL "$p" 2>/dev/null && say "killed $p"; done
  rm -f /tmp/ringside-pack
  rm -rf "$RUN"
  [ -f "$OUTDIR/summary.md" ] && cp "$OUTDIR/summary.md" "$FINAL/"
  cp "$OUTDIR/run.log" "$FINAL/run.log" 2>/dev/null
  tar czf "$FINAL/run-results.tar.gz" -C "$OUTDIR" . 2>/dev/null && rm -rf "$OUTDIR"
}
trap cleanup EXIT
trap 'say "signal: stopping"; exit 1' INT TERM

# ── the stack ──
say "redis on cpu $REDIS_CPUS, port $REDIS_PORT"
"${PIN_REDIS[@]}" "${LIBENV[@]}" "$B/redis-server" --port $REDIS_PORT --bind 127.0.0.1 \
  --save "" --appendonly no --dir "$RUN" --logfile "$OUTDIR/logs/redis.log" --maxclients 10000 &
REDIS_PID=$!; track $REDIS_PID
for _ in $(seq 100); do P "$B/redis-cli" -p $REDIS_PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
P "$B/ringside-quiz" import quizzes/*.json loadgen/quizzes/lg-3.json --redis "$URL" > "$OUTDIR/logs/import.log" 2>&1 \
  || { say "quiz import failed"; cat "$OUTDIR/logs/import.log"; exit 1; }
"${PIN_OTHER[@]}" "${LIBENV[@]}" "$B/ringside-engine" --redis "$URL" --http 127.0.0.1:0 \
  > "$OUTDIR/logs/engine.log" 2>&1 &
ENGINE_PID=$!; track $ENGINE_PID
say "edge: $EP processes on cpus $EDGE_CPUS, port $EDGE_PORT"
# --addr-joins-per-sec 0: every simulated player comes from a few source addresses (the per-address join
# limit, 50/s by default, is for real clients).
"${PIN_EDGE[@]}" "${LIBENV[@]}" RUST_LOG=warn "$B/ringside-edge" --listen 127.0.0.1:$EDGE_PORT \
  --processes "$EP" --threads 1 --redis "$URL" --web-root web --metrics-listen 127.0.0.1:$METRICS_PORT \
  --addr-joins-per-sec 0 \
  > "$OUTDIR/logs/edge.log" 2>&1 &
EDGE_PID=$!; track $EDGE_PID
http_status() { # host port path -> the status code, or nothing
  local code
  exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || return 0
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
  read -r -t 2 _ code _ <&3; exec 3<&-; echo "$code"
}
http_body() { # host port path -> the body
  exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || return 0
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
  timeout 5 cat <&3 | sed '1,/^\r\{0,1\}$/d'; exec 3<&-
}
edge_pids() { if [ "$EP" -gt 1 ]; then children_of $EDGE_PID | sort -n | tr '\n' ' '; else echo "$EDGE_PID"; fi; }
for _ in $(seq 300); do
  n=$(edge_pids | wc -w)
  [ "$n" -ge "$EP" ] && [ "$(http_status 127.0.0.1 $EDGE_PORT /readyz)" = 200 ] && break
  sleep 0.1
done
EDGE_PIDS=$(edge_pids)
[ "$(echo $EDGE_PIDS | wc -w)" -ge "$EP" ] || { say "edge did not start: $(tail -5 "$OUTDIR/logs/edge.log")"; exit 1; }
# Each edge process's worker pins itself to CPU (worker index % CPUs), i.e. CPU 0 with --threads 1 in
# every process: spread them over the edge cores, one process after another.
IFS=, read -r -a ECPU <<< "$EDGE_CPUS"
i=0
for p in $EDGE_PIDS; do
  c=${ECPU[$((i % ${#ECPU[@]}))]}
  before=$(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/^Cpus_allowed_list/ { printf "%s ", $2 }')
  [ -n "$HAVE_TASKSET" ] && taskset -a -p -c "$c" "$p" >/dev/null
  echo "pid $p -> cpu $c (threads' CPUs before: $before)" >> "$OUTDIR/logs/edge-pins.txt"; i=$((i + 1))
done
EDGE_CSV=$(echo $EDGE_PIDS | tr ' ' ',')
say "stack up: redis $REDIS_PID, engine $ENGINE_PID, edge launcher $EDGE_PID children $EDGE_PIDS"

# ── 1 s sampler: edge memory and CPU (sum over its processes), redis, sockets, slab ──
echo base > "$RUN/phase"
sampler() {
  echo "epoch_ms,phase,edge_rss_kb,edge_anon_kb,edge_cpu_ticks,redis_rss_kb,redis_cpu_ticks,tcp_inuse,tcp_tw,tcp_mem_pages,slab_kb,memavail_kb,load1"
  while [ ! -f "$RUN/stop" ] && [ "$(date +%s)" -lt "$DEADLINE" ]; do
    local rss=0 anon=0 cpu=0 p s f r_rss=0 r_cpu=0
    for p in $EDGE_PIDS; do
      read -r _ s sh _ 2>/dev/null < "/proc/$p/statm" || continue
      rss=$((rss + s * PAGE / 1024)); anon=$((anon + (s - sh) * PAGE / 1024))
      read -r -a f 2>/dev/null < "/proc/$p/stat" || continue
      cpu=$((cpu + f[13] + f[14]))
    done
    if read -r _ s _ 2>/dev/null < "/proc/$REDIS_PID/statm"; then
      r_rss=$((s * PAGE / 1024)); read -r -a f < "/proc/$REDIS_PID/stat"; r_cpu=$((f[13] + f[14]))
    fi
    local sock mem
    sock=$(awk '/^TCP:/ { print $3 "," $7 "," $11 }' /proc/net/sockstat)
    mem=$(awk '/^Slab:/ { s = $2 } /^MemAvailable:/ { a = $2 } END { print s "," a }' /proc/meminfo)
    echo "$(date +%s%3N),$(cat "$RUN/phase"),$rss,$anon,$cpu,$r_rss,$r_cpu,$sock,$mem,$(cut -d' ' -f1 /proc/loadavg)"
    sleep 1
  done
}
sampler > "$OUTDIR/samples.csv" &
track $!

# Runs loadgen in the background and waits for it; a watchdog ends it at the deadline.
loadgen() { # outdir args...
  local dir=$1; shift
  "${PIN_OTHER[@]}" "${LIBENV[@]}" "$B/ringside-loadgen" "$@" --out "$dir/lg" --quiet \
    --watch-pid "edge=$EDGE_CSV" --watch-pid "redis=$REDIS_PID" --watch-pid "engine=$ENGINE_PID" \
    > "$dir/loadgen.txt" 2>&1 &
  local lg=$!; track $lg
  ( while kill -0 $lg 2>/dev/null && [ "$(date +%s)" -lt $((DEADLINE - 15)) ]; do sleep 1; done
    if kill -0 $lg 2>/dev/null; then
      echo "watchdog: budget spent, stopping loadgen" >> "$dir/loadgen.txt"
      kill -TERM $lg $(children_of $lg) 2>/dev/null; sleep 3; kill -KILL $lg $(children_of $lg) 2>/dev/null
    fi ) &
  local wd=$!
  wait $lg; local rc=$?
  kill $wd 2>/dev/null; wait $wd 2>/dev/null
  echo "exit $rc" >> "$dir/loadgen.txt"
  say "loadgen exit $rc: $(grep -v '^exit' "$dir/loadgen.txt" | tail -3 | tr '\n' ' ')"
}

# Time for (b): joins at --join-rate, the lobby, countdown, 3 questions of 10 s + reveals, the end.
FANOUT_NEED=0
[ -z "$SKIP_FANOUT" ] && FANOUT_NEED=$((PLAYERS / JOIN + 90))
# Time for (c): joins at 1000/s, 3 questions, the end.
GAME_NEED=0
[ "$GAME_ROOMS" -gt 0 ] && GAME_NEED=$((GAME_ROOMS / 10 + 70))

# Frames and answers the edge counted, per process (each serves its own /metrics on METRICS_PORT+i).
edge_metrics() {
  for i in $(seq 0 $((EP - 1))); do
    http_body 127.0.0.1 $((METRICS_PORT + i)) /metrics | grep -E "^ringside_edge_($1)"
  done 2>/dev/null
}

# ── (a) hold ──
if [ -z "$SKIP_HOLD" ]; then
  sleep 5
  echo hold > "$RUN/phase"
  echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" > "$OUTDIR/hold/loadavg-start.txt"
  DA=$(($(left) - FANOUT_NEED - GAME_NEED - 30))
  say "(a) hold: $SOCKETS sockets at $RAMP/s from $SRC_A, hold ${HOLD}s; loadgen --duration $DA"
  PING_ARGS=(); [ -n "$PING_MS" ] && PING_ARGS=(--ping-interval-ms "$PING_MS")
  if [ "$DA" -gt 20 ]; then
    loadgen "$OUTDIR/hold" connect --url "$WS" --sockets "$SOCKETS" --ramp-rate "$RAMP" --hold-secs "$HOLD" \
      --source-ips "$SRC_A" --max-sockets-per-worker "$LG_MAX" --duration "$DA" \
      --join-timeout-secs $((DA / 2)) "${PING_ARGS[@]}"
  else
    say "(a) skipped: only ${DA}s left for it"
  fi
  echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" > "$OUTDIR/hold/loadavg-end.txt"
  echo after > "$RUN/phase"
  sleep 10
fi

# ── (b) fan-out to one room ──
if [ -z "$SKIP_FANOUT" ]; then
  echo fanout > "$RUN/phase"
  DB=$(($(left) - GAME_NEED - 25))
  echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" > "$OUTDIR/fanout/loadavg-start.txt"
  edge_metrics 'frames_out_total' > "$OUTDIR/fanout/edge-metrics-before.txt"
  say "(b) fan-out: one room of $PLAYERS players, joins at $JOIN/s from $SRC_B; loadgen --duration $DB"
  if [ "$DB" -gt 40 ]; then
    LEAD_ARGS=(); [ -n "$NO_LEAD" ] && LEAD_ARGS=(--countdown-ms 900 --reveal-pause-ms 900)
    loadgen "$OUTDIR/fanout" stadium --url "$WS" --players "$PLAYERS" --quiz lg-3 --ramp-rate "$JOIN" \
      --ping-interval-ms 0 --source-ips "$SRC_B" --max-sockets-per-worker "$LG_MAX" --duration "$DB" "${LEAD_ARGS[@]}"
  else
    say "(b) skipped: only ${DB}s left for it"
  fi
  echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" > "$OUTDIR/fanout/loadavg-end.txt"
  edge_metrics 'frames_out_total|slow_consumer|dropped_superseded|upgrades_refused|connections_' \
    > "$OUTDIR/fanout/edge-metrics.txt"
fi
# ── (c) the 50K game of issue 16 #2 (last, so that it does not change (a)'s baseline) ──
if [ "$GAME_ROOMS" -gt 0 ]; then
  sleep 3
  echo game > "$RUN/phase"
  DC=$(($(left) - 25))
  echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" > "$OUTDIR/game/loadavg-start.txt"
  edge_metrics 'frames_out_total' > "$OUTDIR/game/edge-metrics-before.txt"
  say "(c) game: $GAME_ROOMS rooms of 100 players, joins at 1000/s from $SRC_C; loadgen --duration $DC"
  if [ "$DC" -gt $((GAME_NEED - 10)) ]; then
    loadgen "$OUTDIR/game" game --url "$WS?sealed=1" --quiz lg-3 --rooms "$GAME_ROOMS" --players-per-room 100 \
      --ramp-rate 1000 --source-ips "$SRC_C" --max-sockets-per-worker "$LG_MAX" --duration "$DC"
  else
    say "(c) skipped: only ${DC}s left for it"
  fi
  echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)" > "$OUTDIR/game/loadavg-end.txt"
  edge_metrics 'frames_out_total|writes_total|answer_stage_seconds_(sum|count)|doorbell_wait_seconds_(sum|count)' \
    > "$OUTDIR/game/edge-metrics.txt"
fi

echo end > "$RUN/phase"
touch "$RUN/stop"
sleep 1
tail -c 200000 "$OUTDIR/logs/edge.log" > "$OUTDIR/logs/edge.tail.log" 2>/dev/null && mv "$OUTDIR/logs/edge.tail.log" "$OUTDIR/logs/edge.log"

# ── figures ──
bash "$REPO/perf/device/summary.sh" "$OUTDIR" > "$OUTDIR/summary.md" 2> "$OUTDIR/summary.err"
cat "$OUTDIR/summary.md"
say "done in $(($(date +%s) - T0)) s; outputs in $FINAL (summary.md, run.log, run-results.tar.gz)"
