#!/usr/bin/env python3
"""perf/storms.md: per-second counts of one loadgen metric from a run's interval logs.

  perf/raw/storm-rate.py TAG DIR/hlog/worker-*.hlog     e.g. TAG=reconnect
Prints, per second since the run's start, how many values the workers recorded under TAG (e.g. how many
reconnects completed in that second: the rate the surviving edges admitted them), and the max of that second.
Decodes HdrHistogram V2 compressed histograms (the .hlog lines) with the standard library only.
"""
import base64, collections, struct, sys, zlib


def decode(b64):
    raw = base64.b64decode(b64)
    _cookie, length = struct.unpack(">ii", raw[:8])
    body = zlib.decompress(raw[8:8 + length])
    _c, plen, _off, sig, low, _high, _ratio = struct.unpack(">iiiiqqd", body[:40])
    payload = body[40:40 + plen]
    # sub-bucket layout of HdrHistogram for `sig` significant digits and lowest `low`
    largest = 2 * 10 ** sig
    sub_bucket_count = 1 << (largest - 1).bit_length()
    half = sub_bucket_count // 2
    unit_mag = (low).bit_length() - 1 if low > 0 else 0
    sub_mag = (sub_bucket_count - 1).bit_length()
    i, idx, total, vmax = 0, 0, 0, 0
    while i < len(payload):
        # zig-zag LEB128 (up to 9 bytes)
        v, shift = 0, 0
        while True:
            b = payload[i]; i += 1
            if shift == 56:
                v |= b << 56; break
            v |= (b & 0x7F) << shift; shift += 7
            if b < 0x80: break
        v = (v >> 1) ^ -(v & 1)
        if v < 0:
            idx += -v
            continue
        if v > 0:
            total += v
            bucket = (idx >> (sub_mag - 1)) - 1
            sub = (idx & (half - 1)) + half
            if bucket < 0:
                sub -= half; bucket = 0
            vmax = max(vmax, sub << (bucket + unit_mag))
        idx += 1
    return total, vmax


def main():
    tag, files = sys.argv[1], sys.argv[2:]
    per = collections.Counter(); mx = collections.defaultdict(int)
    for f in files:
        for line in open(f):
            if not line.startswith("Tag=" + tag + ","):
                continue
            _t, start, _len, _max, h = line.strip().split(",")
            n, m = decode(h)
            s = int(float(start))
            per[s] += n; mx[s] = max(mx[s], m)
    print("second count max_ms")
    for s in sorted(per):
        print(s, per[s], round(mx[s] / 1000))


main()
