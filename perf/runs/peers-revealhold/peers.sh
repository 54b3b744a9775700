#!/bin/bash
# peers.sh ROOT OUTDIR ONLY: one run of benches/peers at 19K from ROOT
ROOT=$1 OUTD=$2 ONLY=${3:-ringside}
/tmp/ab/waitq.sh $ROOT/benches/peers/run.sh --no-build --players 19000 --only $ONLY --out $OUTD
