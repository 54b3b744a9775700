#!/bin/bash
# as run: /tmp/ab/peers.sh = peers.sh here (waitq.sh, then benches/peers/run.sh of the clone /tmp/rel)
O=/work/main/perf/runs/peers-revealhold
/work/bin/quiet-run /tmp/ab/peers.sh /tmp/rel $O/19k-default-r1 ringside,floor
/work/bin/quiet-run /tmp/ab/waitq.sh /tmp/rel/benches/peers/run.sh --no-build --players 2000 --only ringside,floor --out $O/2k-default-r1
RINGSIDE_EDGE_REVEAL_HOLD_MS=50 /work/bin/quiet-run /tmp/ab/waitq.sh /tmp/rel/benches/peers/run.sh --no-build --players 2000 --only ringside --out $O/2k-hold50-r1
echo ALLDONE
