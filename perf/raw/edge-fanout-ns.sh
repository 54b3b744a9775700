#!/usr/bin/env bash
# perf/edge.md §4: the isolated fan-out bench (edge/examples/fanout.rs, one worker thread) inside the
# namespace of perf/raw/netns.sh: the worker pinned to CPU 0, the clients (ringside-loadgen connect)
# and the loopback receive path (RPS) on CPU 1. /proc/stat is read once every socket is connected and
# again after the last round, so the busy time of each CPU per frame can be computed.
#   ip netns exec ringside-bench perf/raw/edge-fanout-ns.sh NAME SOCKETS [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=$1; N=$2; ROUNDS=${3:-12}
BIN=${BIN:-/tmp/edgebench/bin}
OUT=/tmp/edgebench/out/$NAME; mkdir -p "$OUT"
PORT=${PORT:-18490}
taskset -c 0 "$BIN/fanout" "$PORT" 195 1000 "$ROUNDS" > "$OUT/fanout.txt" 2>&1 &
FAN=$!
sleep 0.5
taskset -c 1 "$BIN/ringside-loadgen" connect --url "ws://127.0.0.1:$PORT/ws" --sockets "$N" --ramp-rate 6000 \
  --hold-secs $((ROUNDS + N / 5000 + 10)) --ping-interval-ms 0 --quiet --out "$OUT/lg" > "$OUT/loadgen.txt" 2>&1 &
LG=$!
# Every socket is in the room once a round reports all of them.
for _ in $(seq 600); do grep -q "members=$N " "$OUT/fanout.txt" 2>/dev/null && break; sleep 0.1; done
grep '^cpu' /proc/stat > "$OUT/proc-stat-before.txt"; before=$(grep -c "members=$N " "$OUT/fanout.txt")
wait $FAN || true
grep '^cpu' /proc/stat > "$OUT/proc-stat-after.txt"
kill $LG 2>/dev/null || true; wait $LG 2>/dev/null || true
rounds=$(( $(grep -c "members=$N " "$OUT/fanout.txt") - before ))
python3 - "$OUT" "$N" "$rounds" <<'PY'
import sys
out, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def read(f):
    return {l.split()[0]: [int(x) for x in l.split()[1:]] for l in open(f"{out}/{f}")}
b, a = read("proc-stat-before.txt"), read("proc-stat-after.txt")
frames = n * rounds
print(f"{rounds} rounds x {n} sockets = {frames} frames measured")
for cpu in ("cpu0", "cpu1"):
    d = [y - x for x, y in zip(b[cpu], a[cpu])]
    user, nice, sys_, idle, iowait, irq, softirq = d[:7]
    busy = user + nice + sys_ + irq + softirq
    print(f"{cpu}: busy {busy/100:.2f} s (user {user/100:.2f}, sys {sys_/100:.2f}, softirq {softirq/100:.2f}) "
          f"= {busy*1e4/frames:.2f} us per frame")
PY
grep "members=$N " "$OUT/fanout.txt" | tail -n "$rounds" | grep -o "last_write_ms=[0-9.]*\|frames_per_cpu_s=[0-9]*" | paste - - \
  | awk '{print}' > "$OUT/rounds.txt"; cat "$OUT/rounds.txt"
