#!/usr/bin/env python3
"""Redis's own round trip, sampled: `redis-probe.py PORT SECONDS` prints `unix_ms rtt_ms` for a PING every
50 ms (perf/raw/storm.sh PROBE=1): tells whether a slow game call is Redis's queue or the caller's."""
import socket, sys, time

port, secs = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
end = time.time() + secs
while time.time() < end:
    t0 = time.time()
    s.sendall(b"PING\r\n")
    buf = b""
    while not buf.endswith(b"\r\n"):
        buf += s.recv(64)
    print(f"{int(t0 * 1000)} {(time.time() - t0) * 1000:.2f}", flush=True)
    time.sleep(0.05)
