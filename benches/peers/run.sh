#!/usr/bin/env bash
# Ringside, node ws, Socket.IO and the floor, side by side with one lean client (README.md).
#   benches/peers/run.sh --players 2000                    # build, then every server in turn
#   benches/peers/run.sh build                             # only the builds (cargo + npm ci)
#   benches/peers/run.sh --no-build --players 19000 --only ringside,floor --out perf/raw/peers/19k
# Servers (--only, comma list, in this order): ringside floor floor1 ws sio
#   floor1 is the floor with one write per frame. The peers' frame sizes come from the Ringside run
#   (its ringside.json in --out), so run ringside first at each scale.
# Other flags: --questions 20 --time-ms 2000 --pause-ms 2000 --countdown-ms 3000 --lead-ms 500
#   --concurrency 256 --source-ips 127.0.0.2-127.0.0.9 --out DIR (default /tmp/ringside-peers/<players>)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PEERS=$ROOT/benches/peers
PLAYERS=2000; ONLY=ringside,floor,floor1,ws,sio; BUILD=1; OUT=""
QUESTIONS=20; TIME_MS=2000; PAUSE_MS=2000; COUNTDOWN_MS=3000; LEAD_MS=500; GRACE_MS=500
CONC=256; SRC=127.0.0.2-127.0.0.9
PORT=${PEERS_PORT:-18680}; REDIS_PORT=${PEERS_REDIS_PORT:-16690}
MODE=run
while [ $# -gt 0 ]; do
  case $1 in
    build) MODE=build ;;
    --players) PLAYERS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    --questions) QUESTIONS=$2; shift ;;
    --time-ms) TIME_MS=$2; shift ;;
    --pause-ms) PAUSE_MS=$2; shift ;;
    --countdown-ms) COUNTDOWN_MS=$2; shift ;;
    --lead-ms) LEAD_MS=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    --source-ips) SRC=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

build() {
  (cd "$PEERS" && cargo build --release --locked)
  (cd "$ROOT" && cargo build --release -p ringside-edge -p ringside-engine -p ringside-lua)
  (cd "$PEERS/node" && npm ci --no-audit --no-fund)
}
if [ "$MODE" = build ]; then build; exit 0; fi
[ "$BUILD" = 1 ] && build

OUT=${OUT:-/tmp/ringside-peers/$PLAYERS}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$(mktemp -d /tmp/ringside-peers-run.XXXXXX)
# Copies of the binaries: a rebuild in the tree during a run changes nothing.
mkdir -p "$RUN/bin"
for b in ringside-edge ringside-engine ringside-quiz; do cp -p "$ROOT/target/release/$b" "$RUN/bin/"; done
# PEERS_EDGE_BIN: another edge binary in Ringside's place (e.g. the counting-allocator probe,
# edge/examples/mem_probe.rs: its per-size heap report goes to edge.log, kept as ringside.edge.log).
[ -n "${PEERS_EDGE_BIN:-}" ] && cp -p "$PEERS_EDGE_BIN" "$RUN/bin/ringside-edge"
for b in peers-client peers-floor; do cp "$PEERS/target/release/$b" "$RUN/bin/"; done
CLIENT=("$RUN/bin/peers-client" --players "$PLAYERS" --questions "$QUESTIONS"
  --time-ms "$TIME_MS" --pause-ms "$PAUSE_MS" --countdown-ms "$COUNTDOWN_MS" --lead-ms "$LEAD_MS"
  --grace-ms "$GRACE_MS" --concurrency "$CONC" --source-ips "$SRC" --addr "127.0.0.1:$PORT")
SCHED=(--players "$PLAYERS" --questions "$QUESTIONS" --time-ms "$TIME_MS" --grace-ms "$GRACE_MS"
  --pause-ms "$PAUSE_MS" --start-delay-ms 2000)

meta() { # name → $OUT/<name>.meta.txt: when, where, what
  { echo "utc_start $(date -u +%FT%TZ)"; echo "loadavg $(cat /proc/loadavg)"
    echo "git $(git -C "$ROOT" rev-parse HEAD)$(git -C "$ROOT" diff --quiet HEAD -- edge engine lua protocol || echo ' (edge/engine/lua/protocol with uncommitted changes)')"
    echo "edge binary built $(date -u -r "$RUN/bin/ringside-edge" +%FT%TZ) sha256 $(sha256sum "$RUN/bin/ringside-edge" | cut -c1-12)"
    echo "players $PLAYERS questions $QUESTIONS time_ms $TIME_MS pause_ms $PAUSE_MS"; } > "$OUT/$1.meta.txt"
}
meta_end() { echo "utc_end $(date -u +%FT%TZ)"; echo "loadavg_end $(cat /proc/loadavg)"; } >> "$OUT/$1.meta.txt"

wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

run_ringside() {
  local url="redis://127.0.0.1:$REDIS_PORT/"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$RUN" \
    --logfile "$RUN/redis.log" --daemonize yes --pidfile "$RUN/redis.pid"
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  "$RUN/bin/ringside-quiz" import "$PEERS/quiz-20.json" --redis "$url" >"$RUN/import.log" 2>&1
  "$RUN/bin/ringside-engine" --redis "$url" --http 127.0.0.1:0 >"$RUN/engine.log" 2>&1 &
  local engine=$!
  # One process, one worker thread (as the peers: one event loop); a fixed seal lead, so the clear
  # show's send instant (showAt − lead) is known to the client; admission and per-address limits off
  # (they only shape joins).
  "$RUN/bin/ringside-edge" --listen "127.0.0.1:$PORT" --processes 1 --threads 1 --redis "$url" \
    --web-root "$ROOT/web" --seal-lead-floor-ms "$LEAD_MS" --seal-lead-cap-ms "$LEAD_MS" \
    --addr-joins-per-sec 0 --addr-code-misses 0 --admission-max-fds-percent 0 \
    --admission-max-loop-lag-ms 0 --admission-max-queued-bytes 0 --admission-max-redis-in-flight 0 \
    --admission-max-redis-latency-ms 0 >"$RUN/edge.log" 2>&1 &
  local edge=$!
  wait_port; sleep 1
  local edges; edges=$(echo "$edge" $(pgrep -P "$edge") | tr ' ' ',')
  meta ringside
  "${CLIENT[@]}" --mode ringside --quiz-id peers-20 --watch "edge=$edges" \
    --watch "redis=$(cat "$RUN/redis.pid")" --watch "engine=$engine" --out "$OUT/ringside.json" \
    >/dev/null 2>"$OUT/ringside.client.log" || echo "ringside client failed (see $OUT/ringside.client.log)"
  meta_end ringside
  # the edge's own counts for the whole run (joins included): frames written and the writes carrying them
  curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^ringside_edge_((writes|frames_out|bytes_out|pings|pings_released|keepalives_acked)_total|board_gap_ms)' \
    >"$OUT/ringside.metrics.txt" || true
  kill -TERM "$edge" "$engine" 2>/dev/null || true
  wait "$edge" "$engine" 2>/dev/null || true
  [ -n "${PEERS_EDGE_BIN:-}" ] && cp "$RUN/edge.log" "$OUT/ringside.edge.log"
  kill -TERM "$(cat "$RUN/redis.pid")" 2>/dev/null || true
  sleep 0.5
}

sizes() { # question,reveal,leaderboard,result bytes of Ringside's frames at this scale
  python3 - "$OUT/ringside.json" <<'PY'
import json, sys
k = json.load(open(sys.argv[1]))["kinds"]
names = ["game:question:show", "game:question:reveal", "game:leaderboard", "game:answer:result"]
print(",".join(str(k[n]["bytes"] if k[n]["frames"] else 0) for n in names))
PY
}

run_peer() { # name: floor | floor1 | ws | sio
  local name=$1 sz pid
  sz=$(sizes)
  case $name in
    floor) "$RUN/bin/peers-floor" --listen "127.0.0.1:$PORT" "${SCHED[@]}" --sizes "$sz" >"$OUT/floor.server.json" 2>"$RUN/floor.log" & ;;
    floor1) "$RUN/bin/peers-floor" --listen "127.0.0.1:$PORT" "${SCHED[@]}" --sizes "$sz" --write-per-frame >"$OUT/floor1.server.json" 2>"$RUN/floor1.log" & ;;
    ws|sio) node "$PEERS/node/server.js" "$name" --port "$PORT" "${SCHED[@]}" --sizes "$sz" 2>"$RUN/$name.log" & ;;
  esac
  pid=$!
  wait_port; sleep 0.5
  meta "$name"
  echo "sizes $sz" >> "$OUT/$name.meta.txt"
  local mode=$name; [ "$name" = floor1 ] && mode=floor
  "${CLIENT[@]}" --mode "$mode" --watch "$name=$pid" --out "$OUT/$name.json" >/dev/null 2>"$OUT/$name.client.log" \
    || echo "$name client failed (see $OUT/$name.client.log)"
  meta_end "$name"
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

for s in ${ONLY//,/ }; do
  echo "== $s, $PLAYERS players ($(date -u +%T) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
  case $s in
    ringside) run_ringside ;;
    floor|floor1|ws|sio) run_peer "$s" ;;
    *) echo "unknown server $s" >&2; exit 2 ;;
  esac
done
rm -rf "$RUN"
python3 "$PEERS/report.py" "$OUT"
