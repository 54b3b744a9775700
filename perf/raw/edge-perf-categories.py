#!/usr/bin/env python3
"""Classifies the samples of `perf script -F comm,ip,sym` (a perf record -g of the edge's processes) by
what they were doing: the syscall each kernel sample is under (sendmsg split into our own TCP send and
the receiver's TCP path that loopback runs inside it), or, for user-space samples, the nearest
recognisable frame (JSON, allocator, monoio, the Redis thread...). Prints percent of all samples.
  perf script -i perf.data -F comm,ip,sym | edge-perf-categories.py"""
import sys
from collections import Counter

SYSCALLS = ["sendmsg", "recvfrom", "io_uring_enter", "write", "writev", "epoll_wait", "read", "futex",
            "sendto", "close", "accept"]


def classify(comm, frames):
    syms = [f[1] for f in frames]
    kernel = [s for f, s in zip(frames, syms) if f[0].startswith("ffffffff")]
    thread = "redis-thread" if comm.startswith("ringside-redis") else "worker"
    if kernel:
        sc = next((s for s in syms if s.startswith("__x64_sys_") or s.startswith("__sys_")
                   or s.startswith("__do_sys_") or s.startswith("___sys_")), None)
        name = None
        for s in syms:
            for c in SYSCALLS:
                if s in (f"__x64_sys_{c}", f"__do_sys_{c}", f"__sys_{c}", f"___sys_{c}", f"ksys_{c}"):
                    name = c
                    break
            if name:
                break
        if name is None and any("io_uring" in s for s in syms):
            name = "io_uring_enter"
        if name is None:
            if any(s in ("asm_sysvec_apic_timer_interrupt", "asm_common_interrupt", "irq_exit_rcu") for s in syms):
                name = "interrupt"
            elif any(s.startswith("schedule") or s == "finish_task_switch.isra.0" for s in syms):
                name = "sched(other)"
            else:
                name = "kernel(other: " + (syms[-1] if syms else "?") + ")"
        if name == "sendmsg":
            # loopback runs the receiver's TCP path (softirq) inside our sendmsg
            if any(s in ("net_rx_action", "__netif_receive_skb_one_core", "process_backlog") for s in syms):
                name = "sendmsg: receiver's TCP path (loopback softirq)"
            else:
                name = "sendmsg: own TCP send"
        return thread, "kernel " + name
    joined = " ".join(syms)
    for key, label in [("simd_json", "JSON (simd_json)"), ("serde_json", "JSON (serde_json)"),
                       ("rmp", "msgpack"), ("redis::", "redis-rs"), ("tokio::", "tokio"),
                       ("ringside_edge::ws::frame", "ws framing"), ("sendq", "send queue"),
                       ("ringside_edge::game", "game layer"), ("monoio", "monoio runtime"),
                       ("mi_", "mimalloc"), ("_mi_", "mimalloc"), ("ringside_edge::conn", "conn task"),
                       ("ringside_edge::handle", "conn handle")]:
        if key in joined:
            # the innermost frame that matches decides (frames are innermost first)
            break
    inner = None
    for s in syms:
        for key, label in [("simd_json", "JSON (simd_json)"), ("serde_json", "JSON (serde_json)"),
                           ("rmp_serde", "msgpack"), ("redis::", "redis-rs"), ("tokio::", "tokio"),
                           ("mi_", "mimalloc"), ("memcpy", "memcpy"), ("ws::frame", "ws framing"),
                           ("sendq", "send queue"), ("rooms", "game fan-out (rooms.rs)"),
                           ("ringside_edge::game", "game layer"), ("monoio", "monoio runtime"),
                           ("conn::", "conn task"), ("handle::", "conn handle"), ("poll_fn", "conn task (poll_fn)")]:
            if key in s:
                inner = label
                break
        if inner:
            break
    return thread, "user " + (inner or "other")


def main():
    counts = Counter()
    total = 0
    comm, frames = None, []
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                counts[classify(comm, frames)] += 1
                total += 1
            comm, frames = None, []
            continue
        if not line.startswith("\t") and not line.startswith(" "):
            comm, frames = line.strip(), []
        else:
            parts = line.strip().split(None, 1)
            frames.append((parts[0], parts[1] if len(parts) > 1 else "?"))
    if comm is not None:
        counts[classify(comm, frames)] += 1
        total += 1
    print(f"{total} samples")
    for (thread, cat), n in counts.most_common():
        if 100 * n / total >= 0.3:
            print(f"{100 * n / total:6.1f} %  {thread:13s} {cat}")


main()
