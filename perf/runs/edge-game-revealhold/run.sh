#!/bin/bash
cd /work/main
for spec in "$@"; do
  name=${spec%%:*}; ms=${spec##*:}
  BIN=/tmp/ci/target/release OUT_ROOT=/tmp/edgegame EDGE_ARGS="--reveal-hold-ms $ms" /work/bin/quiet-run /tmp/ab/waitq.sh \
    perf/raw/edge-game.sh $name game --rooms 500 --players-per-room 100 --ramp-rate 1000 > /tmp/ab/$name.log 2>&1
done
echo ALLDONE
