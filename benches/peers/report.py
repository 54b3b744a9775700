#!/usr/bin/env python3
"""The table of benches/peers (README.md) from the client's JSON files in a run folder, with every figure
also as a ratio to the floor's. `python3 benches/peers/report.py DIR [DIR…]` (one table per folder)."""
import json
import os
import sys

ORDER = ["floor", "floor1", "ringside", "ws", "sio"]
LABEL = {"floor": "floor (one write per socket per instant)", "floor1": "floor, one write per frame",
         "ringside": "Ringside (edge + redis + engine)", "ws": "node ws", "sio": "Socket.IO 4"}


def load(d):
    out = {}
    for n in ORDER:
        p = os.path.join(d, f"{n}.json")
        if os.path.exists(p):
            out[n] = json.load(open(p))
    return out


def figures(r):
    procs = {k: v for k, v in r["procs"].items() if k != "client"}
    main = "edge" if "edge" in procs else next(iter(procs))
    kb = procs[main]["kib_per_socket"] * 1024 / 1000
    kb_all = sum(p["kib_per_socket"] for p in procs.values()) * 1024 / 1000
    return {
        "kb": kb, "kb_all": kb_all,
        "cpu": r["server_cpu_s_per_1m_frames"],
        "user": r["server_user_s"] / (r["frames"] / 1e6) if r["frames"] else 0,
        "cpu_q": r["server_cpu_s_per_question"],
        "main_cpu": procs[main]["cpu_s_per_1m_frames"],
        "p50": r["question_ms"]["p50"], "p99": r["question_ms"]["p99"],
        "ttl": r["time_to_last_ms"]["median"] or 0, "ttl_max": r["time_to_last_ms"]["max"] or 0,
        "frames": r["frames"], "joined": r["joined"], "players": r["players"],
        # the servers' CPU per second with no socket open, and the run's CPU less that (runs since
        # the client's --idle-ms; None before)
        "idle": r.get("server_idle_ms_per_s"), "main_idle": procs[main].get("idle_ms_per_s"),
        "less_idle": r.get("server_cpu_s_per_1m_frames_less_idle"),
        "main_less_idle": procs[main].get("cpu_s_per_1m_frames_less_idle"),
    }


def ratio(x, f):
    return f"{x / f:.2f}×" if f else "–"


def table(d):
    runs = load(d)
    if not runs:
        return f"(no results in {d})"
    fl = figures(runs["floor"]) if "floor" in runs else None
    rows = ["| server | joined | frames | KB/socket | server CPU-s per 1M frames (user) | CPU-s per question | "
            "question p50 / p99 ms | time-to-last median / max ms | idle ms/s; CPU-s per 1M frames less idle |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n in ORDER:
        if n not in runs:
            continue
        f = figures(runs[n])
        def r(key):
            return f" ({ratio(f[key], fl[key])})" if fl else ""
        kb = f"{f['kb']:.2f}{r('kb')}"
        if n == "ringside":
            kb += f"; +redis +engine {f['kb_all']:.2f}"
        cpu = f"{f['cpu']:.2f}{r('cpu')} ({f['user']:.2f} user)"
        if n == "ringside":
            cpu += f"; edge alone {f['main_cpu']:.2f}"
        idle = "–"
        if f["idle"] is not None:
            idle = f"{f['idle']:.2f}; {f['less_idle']:.2f}"
            if n == "ringside" and f["main_idle"] is not None:
                idle += f" (edge {f['main_idle']:.2f}; {f['main_less_idle']:.2f})"
        rows.append(
            f"| {LABEL[n]} | {f['joined']}/{f['players']} | {f['frames']} | {kb} | {cpu} | "
            f"{f['cpu_q']:.3f}{r('cpu_q')} | {f['p50']:.1f} / {f['p99']:.1f}{r('p99')} | "
            f"{f['ttl']:.1f} / {f['ttl_max']:.1f}{r('ttl')} | {idle} |")
    return "\n".join(rows)


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(f"{d}:\n")
        print(table(d))
        print()
