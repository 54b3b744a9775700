#!/bin/bash
# old/new loadgen default sources, 100K idle ramp at 4000/s, alternating, each at load < 0.5
for r in 1 2; do
  for t in base lg; do
    echo "=== $t r$r $(date -u +%T)"
    BIN=/tmp/ab/bin-$t perf/runs/peers-pingride/waitq.sh perf/runs/loadgen-sources/ramp.sh 2>&1 | grep -v "^edge launcher"
    cp /tmp/edgebench/out/eof-test/loadgen.txt /tmp/ab/lgab-$t-r$r-loadgen.txt
  done
done
