#!/usr/bin/env python3
"""How good is a client's clock offset from the app ping/pong (perf/edge.md, "Pings").

Opens SOCKETS WebSockets (ringside.v1.json) to an edge, sends `ping` every EVERY seconds on each and
takes, for every `pong`, the offset sample serverTime - (t0 + t3) / 2 the pages compute
(web/ringside.js). Server and client share this machine's clock, so the true offset is 0 and every
sample is pure error: the edge's serverTime is whole ms (truncated), the rest is the asymmetry of the
round trip (RTT noise). It also applies the pages' estimator (the sample with the smallest
rtt/2 + age x 100 ppm among the last 8) and reports the spread of the sockets' estimates, which is what
the fair start's display spread would be from clock sync alone.

What this cannot measure on one machine is drift between two clocks; it reports what this machine's
own clock does: the kernel's NTP frequency correction (adjtimex `freq`) and CLOCK_REALTIME's rate
against CLOCK_MONOTONIC_RAW over the run (the slew applied while it ran).

    perf/raw/edge-idle-clock.py --url ws://127.0.0.1:18480/ws --sockets 20 --every 0.5 --secs 60 \
        --out perf/raw/edge-idle-clock-NAME
Writes NAME-samples.csv (socket, local ms, rtt ms, offset ms) and NAME.txt (the summary).
"""
import argparse
import asyncio
import base64
import ctypes
import json
import os
import struct
import time
import urllib.parse

DRIFT = 100e-6  # as web/ringside.js


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


class Timex(ctypes.Structure):
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("pad", ctypes.c_int * 11)]


def adjtimex():
    """(freq ppm, tick µs, status, state) of the kernel clock; None if unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        t = Timex()
        state = libc.adjtimex(ctypes.byref(t))
        return t.freq / 65536.0, t.tick, t.status, state
    except Exception:  # noqa: BLE001 - report only
        return None


def frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(r):
    b0, b1 = await r.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await r.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await r.readexactly(8))[0]
    return b0 & 0x0F, await r.readexactly(n)


async def one_socket(idx, url, every, secs, samples, src):
    u = urllib.parse.urlparse(url)
    local = (src, 0) if src else None
    r, w = await asyncio.open_connection(u.hostname, u.port, local_addr=local)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write((f"GET {u.path or '/ws'} HTTP/1.1\r\nHost: {u.hostname}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
             f"Sec-WebSocket-Protocol: ringside.v1.json\r\n\r\n").encode())
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    sent = {}
    end = time.monotonic() + secs
    rid = 0

    async def reader():
        while True:
            op, p = await read_frame(r)
            t3 = time.time() * 1000.0
            if op == 9:
                w.write(frame(10, p))
            elif op == 8:
                return
            elif op == 1:
                env = json.loads(p)
                if env.get("event") == "pong" and env.get("rid") in sent:
                    t0 = sent.pop(env["rid"])
                    st = env["data"]["serverTime"]
                    samples.append((idx, t3, t3 - t0, st - (t0 + t3) / 2))

    task = asyncio.create_task(reader())
    await asyncio.sleep(idx * every / 20 % every)  # spread the sockets' pings over the interval
    while time.monotonic() < end:
        rid += 1
        t0 = time.time() * 1000.0
        sent[rid] = t0
        w.write(frame(1, json.dumps({"event": "ping", "rid": rid, "data": {"t": t0}}).encode()))
        await w.drain()
        await asyncio.sleep(every)
    await asyncio.sleep(0.5)
    task.cancel()
    w.close()


def estimate(samples, now):
    """The pages' estimator over the last 8 samples of one socket."""
    last = samples[-8:]
    best = min(last, key=lambda s: s[2] / 2 + (now - s[1]) * DRIFT)
    return best[3]


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="ws://127.0.0.1:18480/ws")
    ap.add_argument("--sockets", type=int, default=20)
    ap.add_argument("--every", type=float, default=0.5)
    ap.add_argument("--secs", type=float, default=60)
    ap.add_argument("--source", default="", help="comma list of source addresses, round robin")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    srcs = [s for s in a.source.split(",") if s]
    samples = []
    fx0 = adjtimex()
    mono0, real0 = time.clock_gettime(time.CLOCK_MONOTONIC_RAW), time.time()
    await asyncio.gather(*(one_socket(i, a.url, a.every, a.secs, samples,
                                      srcs[i % len(srcs)] if srcs else None)
                           for i in range(a.sockets)))
    mono1, real1 = time.clock_gettime(time.CLOCK_MONOTONIC_RAW), time.time()
    fx1 = adjtimex()
    with open(a.out + "-samples.csv", "w") as f:
        f.write("socket,local_ms,rtt_ms,offset_ms\n")
        for s in samples:
            f.write(f"{s[0]},{s[1]:.3f},{s[2]:.3f},{s[3]:.3f}\n")
    rtts = [s[2] for s in samples]
    offs = [s[3] for s in samples]
    per = {}
    for s in sorted(samples, key=lambda s: s[1]):
        per.setdefault(s[0], []).append(s)
    # Every second of the run: each socket's estimate (the pages' rule) and their spread.
    t_first = min(s[1] for s in samples)
    t_last = max(s[1] for s in samples)
    spreads, errs = [], []
    t = t_first + 5000
    while t <= t_last:
        est = [estimate([s for s in ss if s[1] <= t], t) for ss in per.values()
               if any(s[1] <= t for s in ss)]
        if len(est) >= 2:
            spreads.append(max(est) - min(est))
            errs.extend(abs(e) for e in est)
        t += 1000
    wall = real1 - real0
    lines = [
        f"sockets {a.sockets}, ping every {a.every} s, {a.secs} s, {len(samples)} pongs",
        f"rtt ms p50 / p99 / max: {pct(rtts, 50):.3f} / {pct(rtts, 99):.3f} / {max(rtts):.3f}",
        f"offset sample ms (true offset 0) p1 / p50 / p99: {pct(offs, 1):.3f} / {pct(offs, 50):.3f} / "
        f"{pct(offs, 99):.3f}; |sample| p99 {pct([abs(o) for o in offs], 99):.3f}, max {max(abs(o) for o in offs):.3f}",
        f"estimator (last 8, rtt/2 + age x 100 ppm): |error| p50 / p99 / max {pct(errs, 50):.3f} / "
        f"{pct(errs, 99):.3f} / {max(errs):.3f} ms; spread across sockets p50 / p99 / max "
        f"{pct(spreads, 50):.3f} / {pct(spreads, 99):.3f} / {max(spreads):.3f} ms ({len(spreads)} instants)",
        f"this machine's clock: adjtimex freq {fx0[0]:+.3f} ppm (tick {fx0[1]} us, status {fx0[2]:#x}, "
        f"state {fx0[3]}) at start, {fx1[0]:+.3f} ppm at end" if fx0 and fx1 else "adjtimex: unavailable",
        f"CLOCK_REALTIME vs CLOCK_MONOTONIC_RAW over {wall:.1f} s: "
        f"{((real1 - real0) - (mono1 - mono0)) / (mono1 - mono0) * 1e6:+.2f} ppm",
    ]
    with open(a.out + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
