#!/bin/bash
# as run: /tmp/ab/peers.sh = peers.sh here (waitq.sh, then benches/peers/run.sh of the clone /tmp/rel)
O=/work/main/perf/runs/peers-revealhold
for spec in "$@"; do
  name=${spec%%:*}; ms=${spec##*:}
  RINGSIDE_EDGE_REVEAL_HOLD_MS=$ms /work/bin/quiet-run /tmp/ab/peers.sh /tmp/rel $O/19k-$name ringside
done
echo ALLDONE
