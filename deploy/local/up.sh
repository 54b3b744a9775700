#!/usr/bin/env bash
# The local demo stack, one command on a fresh machine:
#   Redis 7 (own server, own port; the `ringside` Functions library loaded),
#   PostgreSQL (own server: a private data directory under .run/local/pg, its own port — never the
#   machine's 5432), ringside-control (the API on 127.0.0.1:9200; migrations applied; a development host
#   whose API key is printed; quizzes/ imported as that host's public quizzes),
#   ringside-engine (timers), ringside-edge on ws://…:8080 and wss://…:8443 (self-signed dev cert),
#   forwarding /api/ to ringside-control.
# Ctrl-C (or SIGTERM) stops everything it started. Never touches a Redis or PostgreSQL it did not start.
#
# Settings (environment):
#   RINGSIDE_PORT=8080            ws + http port of the edge
#   RINGSIDE_TLS_PORT=8443        wss port (0: no wss edge)
#   RINGSIDE_LISTEN_HOST=127.0.0.1  bind address of the edge (0.0.0.0 to play from a phone)
#   RINGSIDE_REDIS_PORT=6390      first port tried for Redis (the next free one is used)
#   RINGSIDE_PG_PORT=5440         first port tried for PostgreSQL (the next free one is used)
#   RINGSIDE_CONTROL_PORT=9200    first port tried for ringside-control (the next free one is used)
#   RINGSIDE_PUBLIC_URL           base URL of join links (default: from the request's Host)
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
cargo build --profile "$PROFILE" --bins -p ringside-edge -p ringside-engine -p ringside-lua -p ringside-loadgen \
  -p ringside-control
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
PG_STARTED=0
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "==> stopping"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$PG_STARTED" = 1 ]; then as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast >/dev/null 2>&1 || true; fi
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

echo "==> loading the Functions library"
"$BIN/ringside-quiz" load --redis "$REDIS_URL"

# PostgreSQL: Debian keeps initdb/pg_ctl in a versioned directory; as root they run as the postgres user.
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL's initdb not found (apt-get install -y postgresql; or set PG_BIN)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PG_DIR="$RUN/pg"
PG_DATA="$PG_DIR/data"
PG_PORT=${RINGSIDE_PG_PORT:-5440}
while port_busy "$PG_PORT"; do PG_PORT=$((PG_PORT + 1)); done
mkdir -p "$PG_DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR" && chmod 700 "$PG_DIR"
if [ ! -f "$PG_DATA/PG_VERSION" ]; then
  echo "==> initdb $PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C >"$RUN/initdb.log" 2>&1
fi
echo "==> postgres on 127.0.0.1:$PG_PORT"
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 60 \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null
PG_STARTED=1
psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'ringside'" \
  | grep -q 1 || psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE ringside"
export RINGSIDE_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/ringside"
export RINGSIDE_REDIS="$REDIS_URL"
"$BIN/ringside-control" migrate
if [ ! -s "$RUN/dev-host.key" ]; then
  "$BIN/ringside-control" host create --name "Local host" --key-file "$RUN/dev-host.key" 2>/dev/null \
    | sed -n 's/.*"hostId":\([0-9]*\).*/\1/p' >"$RUN/dev-host.id"
fi
DEV_KEY=$(cat "$RUN/dev-host.key")
echo "==> importing quizzes/ as the development host's public quizzes"
"$BIN/ringside-control" quiz import --host-id "$(cat "$RUN/dev-host.id")" --visibility public quizzes/*.json

ENGINE_PORT=9100
while port_busy "$ENGINE_PORT"; do ENGINE_PORT=$((ENGINE_PORT + 1)); done

# With several edge processes, each also serves its own /metrics on METRICS_PORT+i (a scrape of the
# shared port reaches one random process).
METRICS_ARGS=()
OPS_SCRAPE="edge=http://127.0.0.1:$PORT/metrics"
if [ "$PROCS" -gt 1 ]; then
  METRICS_PORT=9180
  range_busy() { for i in $(seq 0 $((PROCS - 1))); do port_busy $((METRICS_PORT + i)) && return 0; done; return 1; }
  while range_busy; do METRICS_PORT=$((METRICS_PORT + PROCS)); done
  METRICS_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT")
  OPS_SCRAPE=$(for i in $(seq 0 $((PROCS - 1))); do printf 'edge=http://127.0.0.1:%s/metrics,' $((METRICS_PORT + i)); done)
  OPS_SCRAPE=${OPS_SCRAPE%,}
fi
OPS_SCRAPE="$OPS_SCRAPE,engine=http://127.0.0.1:$ENGINE_PORT/metrics"

# The ops page (/ops.html) reads the control plane's GET /api/ops with this token.
[ -s "$RUN/ops.token" ] || (umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/ops.token")
CONTROL_PORT=${RINGSIDE_CONTROL_PORT:-9200}
while port_busy "$CONTROL_PORT"; do CONTROL_PORT=$((CONTROL_PORT + 1)); done
echo "==> control plane on 127.0.0.1:$CONTROL_PORT"
"$BIN/ringside-control" serve --listen "127.0.0.1:$CONTROL_PORT" --ops-token-file "$RUN/ops.token" \
  --ops-scrape "$OPS_SCRAPE" >"$RUN/control.log" 2>&1 &
PIDS+=($!)
wait_for control http_ok "$CONTROL_PORT" /healthz

[ -f "$RUN/tls/cert.pem" ] || "$BIN/ringside-edge" gen-dev-cert --out "$RUN/tls" >/dev/null

echo "==> engine (metrics on 127.0.0.1:$ENGINE_PORT)"
"$BIN/ringside-engine" --redis "$REDIS_URL" --http "127.0.0.1:$ENGINE_PORT" >"$RUN/engine.log" 2>&1 &
PIDS+=($!)

echo "==> edge ($PROCS process(es))"
"$BIN/ringside-edge" --listen "$HOST:$PORT" --processes "$PROCS" --redis "$REDIS_URL" \
  --web-root "$ROOT/web" --api-upstream "127.0.0.1:$CONTROL_PORT" "${METRICS_ARGS[@]}" >"$RUN/edge.log" 2>&1 &
PIDS+=($!)
wait_for edge http_ok "$PORT" /healthz
if [ "$TLS_PORT" != 0 ]; then
  "$BIN/ringside-edge" --listen "$HOST:$TLS_PORT" --redis "$REDIS_URL" --web-root "$ROOT/web" \
    --api-upstream "127.0.0.1:$CONTROL_PORT" \
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
  API           http://$HOST:$PORT/api/  (ringside-control on 127.0.0.1:$CONTROL_PORT; docs/api.md)
  ops page      http://$HOST:$PORT/ops.html  (ops token: $(cat "$RUN/ops.token"))
  host API key  $DEV_KEY
                (the development host "Local host"; also in $RUN/dev-host.key. New hosts:
                 RINGSIDE_DATABASE_URL=$RINGSIDE_DATABASE_URL $BIN/ringside-control host create --name NAME)
  postgres      $RINGSIDE_DATABASE_URL
  redis         $REDIS_URL
  logs          $RUN/*.log
  load test     $BIN/ringside-loadgen game --url ws://127.0.0.1:$PORT/ws --rooms 5 --players-per-room 40 --questions 3 --out perf/runs/local
Ctrl-C stops everything.
MSG

if [ "$SMOKE" = 1 ]; then
  wait_for engine http_ok "$ENGINE_PORT" /healthz
  http_ok "$PORT" /readyz && http_ok "$PORT" /host.html && echo "smoke: edge and engine ok"
  # the API through the edge: the development host, a room of a public quiz
  curl -fsS -H "Authorization: Bearer $DEV_KEY" "http://127.0.0.1:$PORT/api/me" | grep -q '"Local host"'
  curl -fsS -H "Authorization: Bearer $DEV_KEY" -H 'Content-Type: application/json' \
    -d '{"quizId":"general-knowledge"}' "http://127.0.0.1:$PORT/api/rooms" | grep -q '"hostToken"'
  echo "smoke: the control plane answers through the edge (host key, room creation)"
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
