#!/usr/bin/env python3
"""Samples the edge processes (and optionally a load generator's process tree) for perf/edge.md.

Every --interval seconds one CSV line: wall time (epoch s), 1-min load average, edge RSS sum (KiB,
VmRSS of each pid in --pids), edge CPU (s, sum over all threads of /proc/PID/task/*/schedstat, ns
precision), loadgen CPU (s, same, for --loadgen-root and its descendants; the tree is re-read once a second,
and a worker that exited stops counting), TCP sockets in use and
kernel TCP memory (pages) from /proc/net/sockstat, and each edge pid's RSS (KiB, ';'-joined), then the edge's RssAnon sum (KiB: heap and stacks,
without the binary's code pages that VmRSS also counts).
Stops after --duration seconds or when --stop-file exists. Bounded by design.
"""
import argparse, os, time


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ns(pid):
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    except OSError:
        pass
    return total


def descendants(root):
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def sockstat():
    inuse = mem = 0
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                v = line.split()
                inuse = int(v[v.index("inuse") + 1])
                mem = int(v[v.index("mem") + 1])
    return inuse, mem


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pids", required=True)
    ap.add_argument("--loadgen-root", type=int)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--stop-file")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    pids = [int(p) for p in a.pids.split(",") if p]
    end = time.time() + a.duration
    lg_pids, lg_at = [], 0.0
    with open(a.out, "w") as out:
        out.write("t,load1,edge_rss_kib,edge_cpu_s,loadgen_cpu_s,tcp_inuse,tcp_mem_pages,rss_per_pid_kib,edge_rss_anon_kib\n")
        while time.time() < end and not (a.stop_file and os.path.exists(a.stop_file)):
            t = time.time()
            rss = [rss_kib(p) for p in pids]
            anon = sum(rss_kib(p, "RssAnon") for p in pids)
            ecpu = sum(cpu_ns(p) for p in pids) / 1e9
            if a.loadgen_root and t - lg_at > 1.0:  # the process tree, refreshed once a second
                lg_pids, lg_at = descendants(a.loadgen_root), t
            lcpu = sum(cpu_ns(p) for p in lg_pids) / 1e9
            inuse, mem = sockstat()
            load1 = os.getloadavg()[0]
            out.write(f"{t:.3f},{load1:.2f},{sum(rss)},{ecpu:.4f},{lcpu:.4f},{inuse},{mem},{';'.join(map(str, rss))},{anon}\n")
            out.flush()
            time.sleep(max(0.0, a.interval - (time.time() - t)))


if __name__ == "__main__":
    main()
