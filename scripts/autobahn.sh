#!/usr/bin/env bash
# Autobahn testsuite (fuzzingclient, cases 1-10; 12/13 are permessage-deflate, not implemented)
# against ringside-edge in echo mode.
#
# Builds the edge (release), starts it with --echo on a free 127.0.0.1 port, runs
# /work/shared/tools/autobahn/run.sh (first run installs PyPy + wstest, ~3 min, needs root),
# stops the edge with SIGTERM, and exits non-zero if any case FAILED or the suite could not run.
#
# Usage: scripts/autobahn.sh [CASES] [EXCLUDE]     (defaults: "*" and "12.*,13.*")
# Env:   AUTOBAHN_RUNNER (default ../shared/tools/autobahn/run.sh relative to the repo, then
#        /work/shared/tools/autobahn/run.sh), AB_OUT (default ./autobahn-reports),
#        EDGE_PROFILE (release|dev, default release), EDGE_DRIVER (fusion|legacy|uring).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CASES="${1:-*}"
EXCLUDE="${2-12.*,13.*}"
PROFILE="${EDGE_PROFILE:-release}"
DRIVER="${EDGE_DRIVER:-fusion}"
export AB_OUT="${AB_OUT:-$ROOT/autobahn-reports}"

RUNNER="${AUTOBAHN_RUNNER:-}"
for cand in "$RUNNER" "$ROOT/../shared/tools/autobahn/run.sh" /work/shared/tools/autobahn/run.sh; do
  if [ -n "$cand" ] && [ -x "$cand" ]; then RUNNER="$cand"; break; fi
done
[ -x "$RUNNER" ] || { echo "autobahn.sh: runner run.sh not found (set AUTOBAHN_RUNNER)" >&2; exit 2; }

echo "[autobahn.sh] building ringside-edge ($PROFILE)" >&2
if [ "$PROFILE" = release ]; then
  cargo build -q --release -p ringside-edge
  BIN="$ROOT/target/release/ringside-edge"
else
  cargo build -q -p ringside-edge
  BIN="$ROOT/target/debug/ringside-edge"
fi

# A free port: ask the kernel for one, then release it.
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
LOG="$(mktemp -t ringside-edge-autobahn.XXXXXX.log)"
# Limits: Autobahn sends messages up to 16 MiB (9.x); echo mode defaults are 32 MiB frame/message.
"$BIN" --echo --listen "127.0.0.1:$PORT" --threads 2 --driver "$DRIVER" \
  --max-frame 33554432 --max-message 33554432 --idle-timeout 300s >"$LOG" 2>&1 &
EDGE_PID=$!
stop_edge() {
  if kill -0 "$EDGE_PID" 2>/dev/null; then
    kill -TERM "$EDGE_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$EDGE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$EDGE_PID" 2>/dev/null || true
  fi
  wait "$EDGE_PID" 2>/dev/null || true
}
trap stop_edge EXIT

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$EDGE_PID" 2>/dev/null || { echo "[autobahn.sh] edge died:" >&2; cat "$LOG" >&2; exit 2; }
  sleep 0.1
done
grep -m2 -E "driver|listening" "$LOG" >&2 || true

set +e
"$RUNNER" "ws://127.0.0.1:$PORT" "$CASES" "$EXCLUDE"
RC=$?
set -e
stop_edge
trap - EXIT
if [ "$RC" -ne 0 ]; then
  echo "[autobahn.sh] FAILED (runner exit $RC); edge log: $LOG" >&2
  exit "$RC"
fi
echo "[autobahn.sh] OK: no case FAILED (report: $AB_OUT/servers/index.html)" >&2
rm -f "$LOG"
