#!/usr/bin/env python3
"""Samples, every 0.5 s until killed, the CPU of redis-server and of each thread of the edge processes
(worker `edge-w*`, `ringside-redis`), as percent of one core over the interval, and how long each was
runnable but waiting for a CPU (the kernel's run-queue wait, `schedstat`'s second field), as percent of the
interval. CSV on stdout: t, name, pct, wait_pct.   edge-game-threads.py REDIS_PID EDGE_PID[,EDGE_PID...]"""
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


def waited(path):
    """ns the thread has spent runnable on a run queue, not running."""
    try:
        return int(open(path).read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def snapshot():
    out = {}
    r = ticks(f"/proc/{redis_pid}/stat")
    if r:
        out["redis-server"] = (r[1], waited(f"/proc/{redis_pid}/task/{redis_pid}/schedstat"))
    for i, p in enumerate(edges):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            r = ticks(f"/proc/{p}/task/{t}/stat")
            if r and (r[0].startswith("edge-w") or r[0].startswith("ringside-redis")):
                key = f"edge{i}:{r[0]}"
                c, w = out.get(key, (0, 0))
                out[key] = (c + r[1], w + waited(f"/proc/{p}/task/{t}/schedstat"))
    return out


t0 = time.time()
prev, pt = snapshot(), time.time()
print("t,name,pct,wait_pct", flush=True)
while True:
    time.sleep(0.5)
    cur, ct = snapshot(), time.time()
    for k, (c, w) in cur.items():
        if k in prev:
            pc, pw = prev[k]
            dt = ct - pt
            print(f"{ct - t0:.1f},{k},{100 * (c - pc) / hz / dt:.0f},{100 * (w - pw) / 1e9 / dt:.0f}", flush=True)
    prev, pt = cur, ct
