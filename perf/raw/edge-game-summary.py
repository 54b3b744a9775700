#!/usr/bin/env python3
"""Summary of one perf/raw/edge-game.sh run directory: the edge processes' CPU per frame written, send
syscalls per frame, syscall counts per frame by kind, and the loop-lag / answer histograms (bucket upper
bounds for p50/p90/p99; the edge's histograms have fixed buckets)."""
import os
import re
import sys
from collections import defaultdict

out = sys.argv[1]


def metrics(path):
    tot = defaultdict(float)
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, v = line.rpartition(" ")
        m = re.match(r"([a-z_]+)(\{.*\})?", name_labels)
        name, labels = m.group(1), m.group(2) or ""
        labels = re.sub(r'process="\d+",?', "", labels).replace("{}", "")
        try:
            tot[name + labels] += float(v)
        except ValueError:
            pass
    return tot


b = metrics(os.path.join(out, "metrics-before.txt"))
a = metrics(os.path.join(out, "metrics-after.txt"))
d = {k: a[k] - b.get(k, 0) for k in a}
u0, s0 = map(int, open(os.path.join(out, "cpu-before.txt")).read().split())
u1, s1 = map(int, open(os.path.join(out, "cpu-after.txt")).read().split())
hz = os.sysconf("SC_CLK_TCK")
user, sys_ = (u1 - u0) / hz, (s1 - s0) / hz
frames = d.get("ringside_edge_frames_out_total", 0)
writes = d.get("ringside_edge_writes_total", 0)
fin = d.get("ringside_edge_frames_in_total", 0)
print(f"edge CPU: user {user:.2f} s, system {sys_:.2f} s ({100 * sys_ / max(user + sys_, 1e-9):.0f} % kernel)")
print(f"frames written {frames:.0f}, bytes {d.get('ringside_edge_bytes_out_total', 0):.0f}, frames read {fin:.0f}")
if frames:
    print(f"edge CPU per frame written: {1e6 * (user + sys_) / frames:.2f} us "
          f"(user {1e6 * user / frames:.2f}, system {1e6 * sys_ / frames:.2f})")
    print(f"send syscalls (writes_total) per frame written: {writes / frames:.3f}")
sc = os.path.join(out, "syscalls.txt")
if os.path.exists(sc) and frames:
    print("syscalls per frame written (perf stat, whole run incl. setup):")
    for line in open(sc):
        m = re.match(r"\s*([\d,]+)\s+(\S+)", line)
        if m and ":" in m.group(2):
            n = int(m.group(1).replace(",", ""))
            print(f"  {m.group(2):40s} {n:>12d}  {n / frames:.3f}")


def hist(name, label=""):
    """`label`: the series' other labels before `le`, e.g. 'stage="redis_call",'."""
    pts = []
    for k, v in d.items():
        m = re.match(re.escape(name) + r"_bucket\{" + re.escape(label) + r'le="([^"]+)"\}', k)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            pts.append((le, v))
    pts.sort()
    if not pts or pts[-1][1] == 0:
        return f"{name}: no samples"
    n = pts[-1][1]
    res = []
    for q in (0.5, 0.9, 0.99, 0.999):
        le = next(le for le, c in pts if c >= q * n)
        res.append(f"p{q * 100:g} <= {le * 1000:g} ms")
    sel = "{" + label.rstrip(",") + "}" if label else ""
    total = d.get(f"{name}_sum{sel}", 0)
    return f"{name}{sel}: {n:.0f} samples, mean {1000 * total / n:.1f} ms, " + ", ".join(res)


print(hist("ringside_edge_loop_lag_seconds"))
print(hist("ringside_edge_answer_seconds"))
if "ringside_edge_doorbell_wait_seconds_count" in d:
    print(hist("ringside_edge_doorbell_wait_seconds"))
# where an answer's time in the edge goes (binaries from 2026-12-07 on)
for stage in ("to_redis_thread", "batch_wait", "redis_call", "to_worker"):
    if f'ringside_edge_answer_stage_seconds_count{{stage="{stage}"}}' in d:
        print("  " + hist("ringside_edge_answer_stage_seconds", f'stage="{stage}",'))

th = os.path.join(out, "threads.csv")
if os.path.exists(th):
    by = defaultdict(list)
    for line in open(th).readlines()[1:]:
        t, name, pct = line.strip().split(",")
        by[name.split(":")[-1] if name.startswith("edge") else name].append(float(pct))
    print("thread CPU per 0.5 s interval (% of one core; edge threads of all processes pooled):")
    for name, v in sorted(by.items()):
        v.sort()
        busy = sum(1 for x in v if x >= 90)
        print(f"  {name:16s} p50 {v[len(v) // 2]:.0f}  p90 {v[int(len(v) * 0.9)]:.0f}  max {v[-1]:.0f}  "
              f"intervals >= 90 %: {busy} of {len(v)}")
