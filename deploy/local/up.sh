#!/usr/bin/env bash
# The local demo stack, one command on a fresh machine:
#   Redis 7 (own server, own port; the `ringside` Functions library loaded, quizzes/ imported),
#   ringside-engine (timers), ringside-edge on ws://…:8080 and wss://…:8443 (self-signed dev cert).
# Ctrl-C (or SIGTERM) stops everything it started. Never touches a Redis it did not start.
#
# Settings (environment):
#   RINGSIDE_PORT=8080            ws + http port of the edge
#   RINGSIDE_TLS_PORT=8443        wss port (0: no wss edge)
#   RINGSIDE_LISTEN_HOST=127.0.0.1  bind address of the edge (0.0.0.0 to play from a phone)
#   RINGSIDE_REDIS_PORT=6390      first port tried for Redis (the next free one is used)
#   RINGSIDE_EDGE_PROCESSES=1     edge processes sharing the port (SO_REUSEPORT)
#   RINGSIDE_PROFILE=release      cargo profile (dev builds faster, runs slower)
# Flags: --smoke  start, check every part answers, play one short game with ringside-loadgen, stop.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1

PORT=${RINGSIDE_PORT:-8080}
TLS_PORT=${RINGSIDE_TLS_PORT:-8443}
HOST=${RINGSIDE_LISTEN_HOST:-127.0.0.1}
REDIS_PORT=${RINGSIDE_REDIS_PORT:-6390}
PROCS=${RINGSIDE_EDGE_PROCESSES:-1}
PROFILE=${RINGSIDE_PROFILE:-release}
RUN="$ROOT/.run/local"
mkdir -p "$RUN"

./scripts/setup.sh

echo "==> building ($PROFILE)"
cargo build --profile "$PROFILE" --bins -p ringside-edge -p ringside-engine -p ringside-lua -p ringside-loadgen
case "$PROFILE" in dev) BIN="$ROOT/target/debug" ;; *) BIN="$ROOT/target/$PROFILE" ;; esac

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PORT" "$TLS_PORT"; do
  if [ "$p" != 0 ] && port_busy "$p"; then
    echo "port $p is in use; set RINGSIDE_PORT / RINGSIDE_TLS_PORT" >&2
    exit 1
  fi
done
while port_busy "$REDIS_PORT"; do REDIS_PORT=$((REDIS_PORT + 1)); done
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"

PIDS=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "==> stopping"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "$name did not come up; see $RUN/*.log" >&2
  exit 1
}
http_ok() { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' "$2" >&3 && head -1 <&3 | grep -q ' 200 '; }

echo "==> redis on $REDIS_URL"
"${REDIS_SERVER:-redis-server}" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$RUN" --logfile "$RUN/redis.log" &
PIDS+=($!)
wait_for redis "${REDIS_CLI:-redis-cli}" -p "$REDIS_PORT" ping

echo "==> loading the Functions library and importing quizzes/"
"$BIN/ringside-quiz" import quizzes/*.json --redis "$REDIS_URL"

[ -f "$RUN/tls/cert.pem" ] || "$BIN/ringside-edge" gen-dev-cert --out "$RUN/tls" >/dev/null

ENGINE_PORT=9100
while port_busy "$ENGINE_PORT"; do ENGINE_PORT=$((ENGINE_PORT + 1)); done
echo "==> engine (metrics on 127.0.0.1:$ENGINE_PORT)"
"$BIN/ringside-engine" --redis "$REDIS_URL" --http "127.0.0.1:$ENGINE_PORT" >"$RUN/engine.log" 2>&1 &
PIDS+=($!)

# With several edge processes, each also serves its own /metrics on METRICS_PORT+i (a scrape of the
# shared port reaches one random process).
METRICS_ARGS=()
if [ "$PROCS" -gt 1 ]; then
  METRICS_PORT=9180
  range_busy() { for i in $(seq 0 $((PROCS - 1))); do port_busy $((METRICS_PORT + i)) && return 0; done; return 1; }
  while range_busy; do METRICS_PORT=$((METRICS_PORT + PROCS)); done
  METRICS_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT")
fi

echo "==> edge ($PROCS process(es))"
"$BIN/ringside-edge" --listen "$HOST:$PORT" --processes "$PROCS" --redis "$REDIS_URL" \
  --web-root "$ROOT/web" "${METRICS_ARGS[@]}" >"$RUN/edge.log" 2>&1 &
PIDS+=($!)
wait_for edge http_ok "$PORT" /healthz
if [ "$TLS_PORT" != 0 ]; then
  "$BIN/ringside-edge" --listen "$HOST:$TLS_PORT" --redis "$REDIS_URL" --web-root "$ROOT/web" \
    --tls-cert "$RUN/tls/cert.pem" --tls-key "$RUN/tls/key.pem" --threads 1 >"$RUN/edge-tls.log" 2>&1 &
  PIDS+=($!)
fi

cat <<MSG

Ringside is running.
  host a game   http://$HOST:$PORT/host.html
  play          http://$HOST:$PORT/play.html
  websocket     ws://$HOST:$PORT/ws   (subprotocols ringside.v1.json, ringside.v1.msgpack)
MSG
[ "$TLS_PORT" != 0 ] && echo "  secure        wss://$HOST:$TLS_PORT/ws  (self-signed: $RUN/tls/cert.pem)"
echo "  metrics       http://$HOST:$PORT/metrics (edge), http://127.0.0.1:$ENGINE_PORT/metrics (engine)"
[ "$PROCS" -gt 1 ] && echo "  per process   http://127.0.0.1:$METRICS_PORT/metrics … :$((METRICS_PORT + PROCS - 1))/metrics (edge process i on $METRICS_PORT+i)"
cat <<MSG
  redis         $REDIS_URL
  logs          $RUN/*.log
  load test     $BIN/ringside-loadgen game --url ws://127.0.0.1:$PORT/ws --rooms 5 --players-per-room 40 --questions 3 --out perf/runs/local
Ctrl-C stops everything.
MSG

if [ "$SMOKE" = 1 ]; then
  wait_for engine http_ok "$ENGINE_PORT" /healthz
  http_ok "$PORT" /readyz && http_ok "$PORT" /host.html && echo "smoke: edge and engine ok"
  if [ "$PROCS" -gt 1 ]; then
    for i in $(seq 0 $((PROCS - 1))); do wait_for "edge process $i metrics" http_ok $((METRICS_PORT + i)) /metrics; done
    echo "smoke: $PROCS edge processes answer on their metrics ports"
  fi
  # One short game through the whole stack, with the default objectives (no missed/duplicated events).
  "$BIN/ringside-loadgen" game --url "ws://127.0.0.1:$PORT/ws" --rooms 1 --players-per-room 5 --questions 1 \
    --time-per-q-ms 2000 --countdown-ms 500 --reveal-pause-ms 500 --duration 60 --quiet
  echo "smoke: a game played through edge, engine and Redis"
  exit 0
fi
wait -n "${PIDS[@]}" || true
echo "a component exited; see $RUN/*.log" >&2
