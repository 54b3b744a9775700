#!/usr/bin/env bash
# perf/api.md, "answer acks while a 100K-player game is stored": a 1,000-player game (10 rooms × 100, 10
# questions) on the local stack (deploy/local/up.sh on port 18080), alone ("base") and while the results of a
# prepared 100,000-player game are exported and stored in the middle of it ("export"). Alternates runs.
set -euo pipefail
cd "$(dirname "$0")/../../.."
KEY=$(cat .run/local/dev-host.key)
OUT=perf/raw/api
BENCH=./target/release/examples/api_bench
LOADGEN=./target/release/ringside-loadgen
game() { # out-dir
  "$LOADGEN" game --url ws://127.0.0.1:18080/ws --rooms 10 --players-per-room 100 --questions 10 \
    --time-per-q-ms 4000 --countdown-ms 1000 --reveal-pause-ms 1000 --source-ips 127.0.0.2-127.0.0.6 \
    --duration 120 --quiet --out "$1" 2>&1 | grep -E "^(answer_ack|question_delivery|delivery|room seq)" || true
}
for run in 1 2; do
  echo "== base $run: $(uptime)"
  game "$OUT/ack-base-$run"
  echo "== export $run: preparing the 100K game: $(uptime)"
  P=$("$BENCH" results --url http://127.0.0.1:9200 --key "$KEY" --redis redis://127.0.0.1:6390/ \
      --quiz general-knowledge --players 100000 --questions 10 --phase prepare 2>/dev/null)
  read -r CODE ROOM TOKEN < <(python3 -c "import json,sys;d=json.loads(sys.argv[1]);print(d['code'],d['roomId'],d['hostToken'])" "$P")
  echo "   game start: $(uptime)"
  game "$OUT/ack-export-$run" &
  G=$!
  sleep 25
  echo "   ending the 100K game: $(uptime)"
  "$BENCH" results --url http://127.0.0.1:9200 --key "$KEY" --redis redis://127.0.0.1:6390/ --phase finish \
    --code "$CODE" --room-id "$ROOM" --host-token "$TOKEN" 2>&1 | tail -1
  wait $G
done
