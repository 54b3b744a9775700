#!/usr/bin/env bash
# Issue 13 item 2 on the lent 16-core machine, in one call: the reconnect storm of perf/storms.md at a player
# count this 2-core machine cannot hold (default 100K: 1000 rooms × 100) — baseline, kill1 and kill3 back to
# back, each on a fresh stack, from the package of perf/device/pack.sh alone (no cargo, no Redis installed).
#
#   bash perf/device/storm.sh --out $OUT                       # the device (perf/device/README.md, "Storms")
#   bash perf/device/storm.sh --rooms 50 --server-cpus 1 --loadgen-cpus 0 --ramp-rate 1000 --out /tmp/x  # here
#
# Each run is perf/raw/storm.sh itself (same stack, same game, same kill 3 s into question 1, baseline with
# `--kill-cmd true`), given the pack's binaries through small wrappers (they set LD_LIBRARY_PATH for the
# pack's glibc only; system tools keep theirs) and, on the device, its CPU split: server side (redis, engine,
# --procs edge processes × 1 thread, re-pinned every 0.2 s) on --server-cpus, load generator on
# --loadgen-cpus, the loopback's receive path steered (RPS) to the load generator's CPUs. Network namespace:
# used when `ip netns` works here (root + iproute2); else NS=none: the machine's own loopback, sysctls and
# RPS mask set if the kernel lets us (restored at the end) — each run's uptime.txt says which.
# kill1/kill3 add the objective reconnect_p99_ms<=5000 to loadgen's defaults (0 missed/duplicated/out-of-order
# events, 0 answers without an outcome), so each run's loadgen exit code is its SLO verdict; the 2× delivery
# goal needs the baseline and is checked in summary.md.
#
# Flags [defaults]: --rooms N [1000]  --players-per-room N [100]  --ramp-rate R [4000 joins/s]
#   --server-cpus LIST [0-9 on ≥ 12 CPUs, else 1]  --loadgen-cpus LIST [the rest, else 0]  --procs N [7]
#   --modes "baseline kill1 kill3"  --budget-secs S [480: all runs; each loadgen gets an equal share of what
#   is left, and a `timeout` ends a run that overstays]  --ns NAME|none [auto]  --out DIR [$OUT]
#   -- ARGS: more ringside-loadgen reconnect-storm flags for every run
# Writes to DIR (at most 3 files, the device tool brings back 8): summary.md (the tables of perf/storms.md),
# storm.log (this script's output) and storm-results.tar.gz (env.txt and per mode what storm.sh keeps:
# loadgen.txt, report.json.gz, total.hlog.gz, uptime.txt, metrics-N.txt, rates.txt, redis-info.txt).
# Exit code: 0 when every run's loadgen passed its objectives, else 1.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
T0=$(date +%s)
ROOMS=1000 PPR=100 RAMP=4000 SCPUS= LCPUS= PROCS=7 MODES="baseline kill1 kill3" BUDGET=480 NS= OUTDIR=${OUT:-}
EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --rooms) ROOMS=$2; shift ;;
    --players-per-room) PPR=$2; shift ;;
    --ramp-rate) RAMP=$2; shift ;;
    --server-cpus) SCPUS=$2; shift ;;
    --loadgen-cpus) LCPUS=$2; shift ;;
    --procs) PROCS=$2; shift ;;
    --modes) MODES=$2; shift ;;
    --budget-secs) BUDGET=$2; shift ;;
    --ns) NS=$2; shift ;;
    --out) OUTDIR=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "storm.sh: unknown flag $1" >&2; exit 1 ;;
  esac
  shift
done
DEADLINE=$((T0 + BUDGET))
OUTDIR=${OUTDIR:-/tmp/ringside-storm-out}
mkdir -p "$OUTDIR"; OUTDIR=$(cd "$OUTDIR" && pwd)
RUN=$(mktemp -d /tmp/ringside-storm.XXXXXX)
RES=$RUN/results
mkdir -p "$RES"
exec > >(tee -a "$OUTDIR/storm.log") 2>&1
say() { echo "[$(date -u +%H:%M:%S) +$(($(date +%s) - T0))s] $*"; }
left() { echo $((DEADLINE - $(date +%s))); }

# ── the package: the pack's binaries behind wrappers that give them (only them) the pack's libraries ──
PACK=${PACK:-$REPO/perf/device/pack}
[ -x "$PACK/bin/ringside-edge" ] || [ -f "$PACK/bin/ringside-edge" ] || { say "no package at $PACK (run perf/device/pack.sh and carry perf/device/pack)"; exit 1; }
if [ -e /tmp/ringside-pack ] && [ ! -L /tmp/ringside-pack ]; then say "/tmp/ringside-pack exists and is not a link"; exit 1; fi
chmod +x "$PACK"/bin/* "$PACK/ld.so" 2>/dev/null   # in case the copy lost the modes
ln -sfn "$(cd "$PACK" && pwd)" /tmp/ringside-pack
W=$RUN/wrap; mkdir -p "$W"
for b in ringside-edge ringside-engine ringside-quiz ringside-loadgen redis-server redis-cli; do
  printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/ringside-pack/lib exec /tmp/ringside-pack/bin/%s "$@"\n' "$b" > "$W/$b"
  chmod +x "$W/$b"
  "$W/$b" --help >/dev/null 2>&1 || "$W/$b" --version >/dev/null 2>&1 || { say "$b does not run from the pack"; exit 1; }
done
export PATH="$W:$PATH"   # storm.sh calls redis-server and redis-cli by name

# ── the machine ──
NPROC=$(nproc)
if [ -z "$SCPUS" ]; then
  if [ "$NPROC" -ge 12 ]; then SCPUS=0-9; else SCPUS=1; fi
fi
if [ -z "$LCPUS" ]; then
  if [ "$NPROC" -ge 12 ]; then LCPUS=10-$((NPROC - 1)); else LCPUS=0; fi
fi
# hex mask of a CPU list ("10-15", "0", "2,4-5") for RPS
mask_of() {
  local m=0 part a b c
  IFS=, read -r -a parts <<< "$1"
  for part in "${parts[@]}"; do
    a=${part%-*}; b=${part#*-}
    for ((c = a; c <= b; c++)); do m=$((m | (1 << c))); done
  done
  printf '%x\n' "$m"
}
RPS=$(mask_of "$LCPUS")
HARD=$(ulimit -Hn); ulimit -n "$HARD" 2>/dev/null
if [ -z "$NS" ]; then
  NS=none
  if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && ip netns add ringside-storm-probe 2>/dev/null; then
    ip netns exec ringside-storm-probe true 2>/dev/null && NS=ringside-storm
    ip netns del ringside-storm-probe 2>/dev/null
  fi
fi
PLAYERS=$((ROOMS * PPR))
NMODES=$(echo $MODES | wc -w)
{
  echo "date_utc $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "args rooms=$ROOMS players_per_room=$PPR players=$PLAYERS ramp=$RAMP procs=$PROCS modes=[$MODES] budget=$BUDGET extra=[${EXTRA[*]}]"
  echo "cpus server=$SCPUS loadgen=$LCPUS rps_mask=$RPS; netns $NS"
  echo "nproc $NPROC"; grep -m1 'model name' /proc/cpuinfo; grep -E '^(MemTotal|MemAvailable)' /proc/meminfo
  echo "kernel $(uname -r)"; [ -r /etc/os-release ] && grep PRETTY_NAME /etc/os-release
  echo "nofile hard $HARD (edge processes hold ~$((PLAYERS / PROCS)) sockets each before a kill)"
  [ $((PLAYERS * 10 / PROCS / 7)) -gt "$HARD" ] && echo "WARNING: ${PLAYERS}/${PROCS} sockets per edge process is over 70 % of the fd limit: use more --procs"
  for t in ip curl pgrep ss sysctl uptime taskset python3; do printf '%s=%s ' "$t" "$(command -v $t >/dev/null && echo yes || echo no)"; done; echo
  for k in net/core/somaxconn net/ipv4/tcp_max_syn_backlog net/ipv4/ip_local_port_range net/ipv4/tcp_tw_reuse; do
    [ -r "/proc/sys/$k" ] && echo "$k $(cat "/proc/sys/$k")"
  done
  echo "rps of lo: $(cat /sys/class/net/lo/queues/rx-0/rps_cpus 2>/dev/null || echo unavailable)"
  echo "loadavg $(cat /proc/loadavg)"
  cat "$PACK/PACKINFO" 2>/dev/null
} > "$RES/env.txt"
cat "$RES/env.txt"
BUILD=$(awk '/^built_from/ { print $2 }' "$PACK/PACKINFO" 2>/dev/null)

CUR=
cleanup() {
  trap - EXIT INT TERM
  [ -n "$CUR" ] && kill -TERM "$CUR" 2>/dev/null && sleep 3   # storm.sh's own trap ends its stack
  rm -f /tmp/ringside-pack
}
trap cleanup EXIT
trap 'say "signal: stopping"; exit 1' INT TERM

# ── the runs ──
FAIL=0 i=0
for MODE in $MODES; do
  n_left=$((NMODES - i)); i=$((i + 1))
  slot=$(( ($(left) - 5) / n_left ))
  DUR=$((slot - 25)); [ "$DUR" -gt 240 ] && DUR=240
  if [ "$DUR" -lt 30 ]; then say "$MODE skipped: only ${slot}s left for it"; FAIL=1; continue; fi
  SLO=(); [ "$MODE" != baseline ] && SLO=(--slo reconnect_p99_ms=5000)
  say "$MODE: $PLAYERS players ($ROOMS × $PPR), loadgen --duration $DUR, run limit $((DUR + 20))s"
  env BIN="$W" BUILD_COMMIT="${BUILD:-?}" NS="$NS" SERVER_CPUS="$SCPUS" LOADGEN_CPUS="$LCPUS" RPS_MASK="$RPS" \
    PROCS="$PROCS" WORK="$RUN/work" DEST="$RES/$MODE" DURATION="$DUR" \
    timeout -k 5 $((DUR + 20)) bash perf/raw/storm.sh device "$MODE" \
      --rooms "$ROOMS" --players-per-room "$PPR" --ramp-rate "$RAMP" --time-per-q-ms 5000 \
      --reveal-pause-ms 1000 --kill-at-question 1 --kill-delay-ms 3000 "${SLO[@]}" "${EXTRA[@]}" \
      > "$RUN/storm-$MODE.out" 2>&1 &
  CUR=$!
  wait "$CUR"; rc=$?; CUR=
  lg=$(awk '/^loadgen exit/ { print $3 }' "$RES/$MODE/loadgen.txt" 2>/dev/null)
  say "$MODE: storm.sh exit $rc, loadgen exit ${lg:-none}: $(head -1 "$RES/$MODE/loadgen.txt" 2>/dev/null)"
  [ "${lg:-1}" = 0 ] || FAIL=1
  mkdir -p "$RES/$MODE"; cp "$RUN/storm-$MODE.out" "$RES/$MODE/storm.out" 2>/dev/null
  if [ "$rc" != 0 ]; then  # storm.sh stopped early (set -e): keep the ends of the stack's logs
    FAIL=1; tail -20 "$RUN/storm-$MODE.out"
    for f in quiz.log redis.log engine.log edge.log; do
      [ -f "$RUN/work/device-$MODE/$f" ] || continue
      echo "== $f"; tail -20 "$RUN/work/device-$MODE/$f"
    done | tee "$RES/$MODE/logs-tail.txt"
  fi
  grep -E '^(SLO|players|room seq|answer outcomes|reconnect |question_delivery_unaffected)' "$RES/$MODE/loadgen.txt" 2>/dev/null
  sleep 2
done

bash perf/device/storm-summary.sh "$RES" > "$OUTDIR/summary.md" 2> "$RUN/summary.err"
cat "$RUN/summary.err" >&2
cat "$OUTDIR/summary.md"
tar -czf "$OUTDIR/storm-results.tar.gz" -C "$RES" .
rm -rf "$RUN"
say "done in $(($(date +%s) - T0)) s (exit $FAIL); $OUTDIR: summary.md, storm.log, storm-results.tar.gz"
exit "$FAIL"
