#!/usr/bin/env python3
"""Writes a synthetic pybpfprof recording (format 1, see docs/FORMATS.md) with N distinct stacks and 2N samples,
to time the exporters and the flame graph page on large profiles:
    Scripts/bench/make_recording.py big.pybpfprof 100000 && pybpfprof report big.pybpfprof -o big.html
"""
import random, struct, sys
N = int(sys.argv[2]); out = sys.argv[1]
random.seed(1)
def varint(v):
    b = bytearray()
    while v >= 0x80: b.append((v & 0x7f) | 0x80); v >>= 7
    b.append(v); return bytes(b)
def zz(v): return varint((v << 1) ^ (v >> 63))
def s(t): e = t.encode(); return varint(len(e)) + e
frames = []
for i in range(3000): frames.append((i % 3, f"func_{i}", f"/srv/app/mod_{i % 97}.py" if i % 3 == 0 else f"lib{i % 13}.so", (i * 7) % 500 + 1))
stacks = set()
while len(stacks) < N:
    depth = random.randint(5, 30)
    stacks.add(tuple(random.randrange(len(frames)) for _ in range(depth)))
stacks = list(stacks)
b = bytearray(b"PYBPFREC") + struct.pack("<I", 1) + varint(100) + struct.pack("<d", 1.7e9) + varint(10**10)
b += varint(1) + zz(100) + s("python3 app.py") + s("3.12.1")
b += varint(len(frames))
for k, n, f, l in frames: b += varint(k) + s(n) + s(f) + varint(l)
b += varint(len(stacks))
for st in stacks: b += varint(len(st)) + b"".join(varint(x) for x in st)
b += varint(1) + s("python3")
samples = [(i * 10_000_000, i % N) for i in range(2 * N)]
b += varint(len(samples))
prev = 0
for t, st in samples:
    b += varint(t - prev) + varint(0) + zz(100) + zz(100) + varint(0) + varint(st); prev = t
open(out, "wb").write(b)
