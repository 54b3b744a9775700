#!/usr/bin/env python3
"""Samples, every 0.5 s until killed, the CPU of redis-server and of each thread of the edge processes
(worker `edge-w*`, `ringside-redis`), as percent of one core over the interval. CSV on stdout:
t, name, pct.   edge-game-threads.py REDIS_PID EDGE_PID[,EDGE_PID...]"""
import os
import sys
import time

hz = os.sysconf("SC_CLK_TCK")
redis_pid = sys.argv[1]
edges = sys.argv[2].split(",")


def ticks(path):
    try:
        s = open(path).read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    f = s[s.rindex(")") + 2:].split()
    return comm, int(f[11]) + int(f[12])


def snapshot():
    out = {}
    r = ticks(f"/proc/{redis_pid}/stat")
    if r:
        out["redis-server"] = r[1]
    for i, p in enumerate(edges):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            r = ticks(f"/proc/{p}/task/{t}/stat")
            if r and (r[0].startswith("edge-w") or r[0].startswith("ringside-redis")):
                key = f"edge{i}:{r[0]}"
                out[key] = out.get(key, 0) + r[1]
    return out


t0 = time.time()
prev, pt = snapshot(), time.time()
print("t,name,pct", flush=True)
while True:
    time.sleep(0.5)
    cur, ct = snapshot(), time.time()
    for k, v in cur.items():
        if k in prev:
            print(f"{ct - t0:.1f},{k},{100 * (v - prev[k]) / hz / (ct - pt):.0f}", flush=True)
    prev, pt = cur, ct
