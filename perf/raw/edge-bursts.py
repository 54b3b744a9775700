#!/usr/bin/env python3
"""Edge and load generator CPU during question fan-outs of a stadium run (perf/edge.md §3).

Reads the 20 ms samples of perf/raw/edge-stadium.sh (edge-sample.py CSV): a question burst is
where the edge's CPU rate rises after >= 1.5 s below 0.05 cores (the reveal pause before a
question); prints CPU-seconds of the edge and of the load generator over the first 0.5/1.0/1.05 s.
  edge-bursts.py samples.csv
"""
import csv, sys

rows = list(csv.DictReader(open(sys.argv[1])))
T = [float(r['t']) for r in rows]
E = [float(r['edge_cpu_s']) for r in rows]
L = [float(r['loadgen_cpu_s']) for r in rows]
idle_since, bursts = None, []
W = 5  # the rate is taken over 5 samples (100 ms): the once-a-second sweep of 7 processes is not a burst
for i in range(W, len(T)):
    rate = (E[i] - E[i - W]) / (T[i] - T[i - W])
    if rate < 0.05:
        if idle_since is None:
            idle_since = T[i - 1]
    else:
        if idle_since is not None and T[i - 1] - idle_since >= 1.5:
            bursts.append(i - W)
        idle_since = None


def at(t):
    return min(range(len(T)), key=lambda k: abs(T[k] - t))


for b in bursts:
    for w in (0.5, 1.0, 1.05):
        j = at(T[b] + w)
        dt = T[j] - T[b]
        e, l = E[j] - E[b], L[j] - L[b]
        print(f"burst at +{T[b]-T[0]:.2f} s, window {dt:.2f} s: edge {e:.3f} CPU-s ({e/dt:.2f} cores), "
              f"loadgen {l:.3f} CPU-s ({l/dt:.2f} cores)")
