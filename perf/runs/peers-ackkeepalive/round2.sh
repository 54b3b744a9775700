#!/bin/bash
# one round: $1 tag, then name=edge-binary[:ENV=V,...] ...; the floor runs last, into the first run's dir
set -u
tag=$1; shift
cd /tmp/rel
first=
stat() { awk '/^cpu /{print "steal",$9,"iowait",$6}' /proc/stat; }
for nb in "$@"; do
  n=${nb%%=*}; rest=${nb#*=}; b=${rest%%:*}; envs=""; [ "$rest" != "$b" ] && envs=${rest#*:}
  out=/tmp/pr/$tag-$n; [ -z "$first" ] && first=$out
  env $(echo "$envs" | tr ',' ' ') RUST_LOG=info,ringside_edge::game::rooms=debug PEERS_EDGE_BIN=$b /tmp/ab/waitq.sh benches/peers/run.sh --no-build --players ${PLAYERS:-19000} --only ringside --out $out
  echo "env: $envs" >> $out/ringside.meta.txt
  echo "$(stat) (after)" >> $out/ringside.meta.txt
done
[ -n "${NOFLOOR:-}" ] || /tmp/ab/waitq.sh benches/peers/run.sh --no-build --players ${PLAYERS:-19000} --only floor --out $first
