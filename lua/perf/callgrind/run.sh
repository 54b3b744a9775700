#!/bin/bash
# run.sh OUT LIB LUA_BENCH [players, default 100,2000]: instructions (Ir, valgrind's callgrind) that
# redis-server executes per player in each phase of `lua-bench reveal`: the room's creation and its
# joins (room_join, pipelined 256), the answers (answer_submit, one per player, pipelined 64), the reveal
# (host_skip: the reveal and, up to SCORE_STEP players, the scoring), the score fires after it (bigger
# rooms) and the personal results (`results`, calls of 1,000).
# Instruction counts do not depend on the machine's load or the VM's speed: two runs of one library give
# the same figures within ~0.1 %, so a change to the library can be measured here on a busy machine.
# MODE=batch: `lua-bench batch` instead, answer_batch at each of SIZES (default 0,8,32; 0 = the lone
# answer_submit), a fresh room of PLAYERS (one number, default 5000) per size, counted per answer
# (phases batch<size>-PLAYERS).
# Needs valgrind and bc (apt-get install valgrind bc). Writes OUT/cg.out.* and OUT/summary.txt.
set -euo pipefail
OUT=$1 LIB=$2 BENCH=$3 PLAYERS=${4:-100,2000}
[ "${MODE:-reveal}" = batch ] && PLAYERS=${4:-5000} # batch takes one room size
PORT=${PORT:-7398}
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$OUT"; mkdir -p "$OUT"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/cg.out" \
  redis-server --port "$PORT" --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
VG=$!
export CG_PID=$VG
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill $VG 2>/dev/null; wait $VG 2>/dev/null || true' EXIT
for _ in $(seq 300); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
redis-cli -p "$PORT" FUNCTION LOAD REPLACE "$(cat "$LIB")" >/dev/null
if [ "${MODE:-reveal}" = batch ]; then
  ARGS=(batch --players "$PLAYERS" --sizes "${SIZES:-0,8,32}" --pipeline 64 --clients 1)
else
  ARGS=(reveal --players "$PLAYERS")
fi
"$BENCH" --redis "redis://127.0.0.1:$PORT/" --no-load --phase-cmd "$HERE/phase.sh" "${ARGS[@]}" >"$OUT/bench.txt"
# each dump: the phase's name (from the dump's trigger) and its instruction total
{
  echo "library: $LIB ($(sha256sum "$LIB" | cut -c1-12)); redis: $(redis-server --version | cut -d' ' -f3)"
  echo "phase           players           Ir  Ir/player (answers: per answer)"
  for f in $(ls -v "$OUT"/cg.out.*); do
    name=$(sed -n 's/^desc: Trigger: dump //p' "$f")
    ir=$(sed -n 's/^summary: //p' "$f" | awk '{print $1}')
    n=${name##*-}; per=$((n + 1)) # the room has n + 1 players; n of them answer
    case $name in answers-* | batch*) per=$n ;; esac
    printf '%-15s %7s %12s %10.0f\n' "$name" "$n" "$ir" "$(echo "$ir / $per" | bc -l)"
  done
} | tee "$OUT/summary.txt"
