#!/bin/bash
# medians.sh DIR: per tag in DIR (small-rooms.sh's output), p25/p50/p75 over the 50 rooms of: Redis main-thread CPU
# per lone answer, the reveal's time inside Redis (host_skip, scoring 100 players), the results call's (101 players).
cd "${1:-.}"
q() { sort -n | awk '{a[NR]=$1} END {printf "%s / %s / %s", a[int(NR*0.25)], a[int(NR*0.5)], a[int(NR*0.75)]}'; }
for f in *-batch.txt; do
  t=${f%-batch.txt}
  a=$(grep -o '[0-9.]* µs of main-thread CPU per answer' "$f" | awk '{print $1}' | q)
  r=$(grep -o '[0-9]* µs in Redis (1 call' "$t-reveal.txt" | awk '{print $1}' | q)
  s=$(grep 'batches of 1000' "$t-reveal.txt" | grep -o '[0-9]* µs in Redis per call' | awk '{print $1}' | q)
  echo "$t | answer µs CPU: $a | reveal µs: $r | results µs: $s"
done
