#!/bin/bash
cd /work/main
env PLAYERS=19000 perf/runs/peers-ackkeepalive/round2.sh s18a head=/tmp/relbin4-edge
env PLAYERS=2000 perf/runs/peers-ackkeepalive/round2.sh s18b head=/tmp/relbin4-edge
