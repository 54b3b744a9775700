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
    waits = defaultdict(list)  # run-queue wait, in samplers from 2026-12-07 (evening) on
    for line in open(th).readlines()[1:]:
        t, name, pct, *wait = line.strip().split(",")
        key = name.split(":")[-1] if name.startswith("edge") else name
        by[key].append(float(pct))
        if wait:
            waits[key].append(float(wait[0]))
    print("thread CPU per 0.5 s interval (% of one core; edge threads of all processes pooled):")
    for name, v in sorted(by.items()):
        v.sort()
        busy = sum(1 for x in v if x >= 90)
        print(f"  {name:16s} p50 {v[len(v) // 2]:.0f}  p90 {v[int(len(v) * 0.9)]:.0f}  max {v[-1]:.0f}  "
              f"intervals >= 90 %: {busy} of {len(v)}")
    if waits:
        print("thread waiting for a CPU (run queue) per 0.5 s interval (% of the interval; pooled as above):")
        for name, v in sorted(waits.items()):
            v.sort()
            print(f"  {name:16s} p50 {v[len(v) // 2]:.0f}  p90 {v[int(len(v) * 0.9)]:.0f}  "
                  f"p99 {v[int(len(v) * 0.99)]:.0f}  max {v[-1]:.0f}  mean {sum(v) / len(v):.1f}")

# Redis's slow log (runs from 2026-12-07, evening, on): every command that took longer than the run's
# threshold inside Redis, by command (functions by name). Redis 7 also logs the commands a function runs
# (client address `?:0`); their time is already inside their FCALL's, so they are counted apart. A command
# of a 100-member key that took milliseconds was Redis off its CPU, not work.
slow = os.path.join(out, "redis-slowlog.txt")
if not os.path.exists(slow) and os.path.exists(slow + ".gz"):
    import gzip
    text = gzip.open(slow + ".gz", "rt").read()
elif os.path.exists(slow):
    text = open(slow).read()
else:
    text = None
if text is not None:
    lines = text.split("\n")
    calls, inner = [], []  # (duration µs, command)
    # redis-cli's plain output, newest first: id, unix time, duration µs, the arguments, the client's
    # address (`?:0` inside a function), the client's name (often empty). Arguments can look like anything,
    # so an entry is found by its id: the next entry starts where id - 1 is followed by a unix time.
    def is_start(i, want):
        return (i + 2 < len(lines) and lines[i] == str(want) and len(lines[i + 1]) == 10
                and lines[i + 1].isdigit() and lines[i + 2].isdigit())
    i = 0
    while i < len(lines) and not (lines[i].isdigit() and is_start(i, int(lines[i]))):
        i += 1
    while i < len(lines) and lines[i].isdigit() and is_start(i, int(lines[i])):
        k = int(lines[i])
        j = i + 3
        while j < len(lines) and not (k > 0 and is_start(j, k - 1)):
            j += 1
        body = lines[i + 3:j]
        if j >= len(lines) and body and body[-1] == "":
            body.pop()  # after the last entry: the text's final newline
        # the last two lines of an entry are the client's address and name (the name may be empty)
        addr = body[-2] if len(body) >= 2 else ""
        args = body[:-2]
        cmd = (args or ["?"])[0].upper()
        if cmd in ("FCALL", "EVALSHA") and len(args) > 1:
            cmd = f"{cmd} {args[1]}"
        (inner if addr == "?:0" else calls).append((int(lines[i + 2]), cmd))
        if k == 0:
            break
        i = j
    print(f"redis slow log: {len(calls)} calls over the threshold, {sum(d for d, _ in calls) / 1000:.0f} ms in all, "
          f"the longest {max([d for d, _ in calls] or [0]) / 1000:.1f} ms; and {len(inner)} commands inside functions "
          f"(by command: count, total ms, max ms)")
    for label, entries in (("", calls), ("inside a function: ", inner)):
        by = defaultdict(list)
        for d, c in entries:
            by[c].append(d)
        for c, ds in sorted(by.items(), key=lambda kv: -sum(kv[1]))[:6]:
            print(f"  {label + c:40s} {len(ds):5d} {sum(ds) / 1000:8.1f} {max(ds) / 1000:7.1f}")
