#!/usr/bin/env python3
"""bench_lake.py — speed and size of the logger/lake formats, in one run on one recording.

Makes one recording of N classic 8-byte frames (default 10 M: random IDs of 11 bits, random
data, 10 µs apart), as a candump .log converted to .cmc by canmc, then in the same run:

  * `canmc convert rec.cmc rec.parquet` (zstd, snappy, none; row groups 128 Ki and 1 Mi)
  * `canmc convert rec.cmc rec.mf4` (plain and --mf4-compress) and reading the .mf4 back
    (`canmc convert rec.mf4 back.cmc`)
  * python-can 4.6's MF4Writer and MF4Reader on the first M frames of the same recording
    (default 200 000: python-can takes minutes per million), as frames/s
  * bytes per frame of .cmc, .log, .asc, .mf4 (plain, compressed), .parquet (and .blf when
    this build writes it)

Prints a Markdown table of wall-clock times, frames/s and ratios. The machine is shared:
compare ratios from one run, not absolute numbers across runs.

Usage: tools/bench_lake.py [--frames N] [--pycan-frames M] [--dir DIR] [--canmc PATH]
"""
import argparse
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import load_avg, venv_python  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_log(path, n):
    rnd = random.Random(1)
    t0 = 1_796_288_400_000_000  # µs, 2026-12-03T09:00Z
    with open(path, "w", buffering=1 << 20) as f:
        chunk = []
        for i in range(n):
            t = t0 + i * 10
            chunk.append("(%d.%06d) can0 %03X#%016X\n" % (t // 1_000_000, t % 1_000_000,
                                                           rnd.getrandbits(11), rnd.getrandbits(64)))
            if len(chunk) == 100_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


PYCAN = r"""
import sys, time, can
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
msgs = []
for m in can.LogReader(src):
    msgs.append(m)
    if len(msgs) == n:
        break
t = time.perf_counter()
w = can.MF4Writer(out)
for m in msgs:
    w.on_message_received(m)
w.stop()
tw = time.perf_counter() - t
t = time.perf_counter()
k = sum(1 for _ in can.MF4Reader(out))
tr = time.perf_counter() - t
assert k == n, (k, n)
print(tw, tr)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10_000_000)
    ap.add_argument("--pycan-frames", type=int, default=200_000)
    ap.add_argument("--dir", default="/work/scratch-lake/bench" if os.path.isdir("/work") else "/tmp/canmc-bench-lake")
    ap.add_argument("--canmc", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release", "canmc"))
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    d = lambda name: os.path.join(a.dir, name)  # noqa: E731
    canmc = a.canmc
    n = a.frames
    print(f"load average before: {load_avg()}", file=sys.stderr)
    if not os.path.exists(d("rec.log")) or os.path.getsize(d("rec.log")) < n * 30:
        make_log(d("rec.log"), n)
    rows = []  # (what, seconds, frames)
    rows.append(("convert .log → .cmc", timed([canmc, "convert", d("rec.log"), d("rec.cmc")]), n))
    for comp, rg in [("zstd", 1 << 20), ("zstd", 1 << 17), ("snappy", 1 << 20), ("none", 1 << 20)]:
        out = d(f"rec-{comp}-{rg}.parquet")
        s = timed([canmc, "convert", d("rec.cmc"), out, "--compression", comp, "--row-group", str(rg)])
        rows.append((f"convert .cmc → .parquet ({comp}, row group {rg})", s, n))
    rows.append(("convert .cmc → .mf4", timed([canmc, "convert", d("rec.cmc"), d("rec.mf4")]), n))
    rows.append(("convert .cmc → .mf4 --mf4-compress",
                 timed([canmc, "convert", d("rec.cmc"), d("rec-z.mf4"), "--mf4-compress"]), n))
    rows.append(("convert .mf4 → .cmc (MF4 read)", timed([canmc, "convert", d("rec.mf4"), d("back.cmc")]), n))
    rows.append(("convert compressed .mf4 → .cmc", timed([canmc, "convert", d("rec-z.mf4"), d("back.cmc")]), n))
    rows.append(("convert .cmc → .cmc (baseline: read + write .cmc)",
                 timed([canmc, "convert", d("rec.cmc"), d("copy.cmc")]), n))
    rows.append(("convert .parquet → .cmc (Parquet read)",
                 timed([canmc, "convert", d(f"rec-zstd-{1 << 20}.parquet"), d("back.cmc")]), n))
    rows.append(("convert .cmc → .asc", timed([canmc, "convert", d("rec.cmc"), d("rec.asc")]), n))
    blf = subprocess.run([canmc, "convert", d("rec.cmc"), d("rec.blf")], capture_output=True).returncode == 0
    py = venv_python()
    m = min(a.pycan_frames, n)
    out = subprocess.run([py, "-c", PYCAN, d("rec.log"), d("pycan.mf4"), str(m)], check=True,
                         capture_output=True, text=True).stdout.split()
    tw, tr = float(out[0]), float(out[1])
    rows.append((f"python-can MF4Writer ({m} frames)", tw, m))
    rows.append((f"python-can MF4Reader ({m} frames)", tr, m))
    rate = {w: f / s for w, s, f in rows}
    print(f"\nload average after: {load_avg()}; frames: {n}\n")
    print("| step | seconds | frames/s |")
    print("|---|---:|---:|")
    for w, s, f in rows:
        print(f"| {w} | {s:.2f} | {f / s:,.0f} |")
    pw = rate[f"python-can MF4Writer ({m} frames)"]
    pr = rate[f"python-can MF4Reader ({m} frames)"]
    print()
    print(f"MF4 write vs python-can MF4Writer: {rate['convert .cmc → .mf4'] / pw:.1f}× "
          f"(compressed {rate['convert .cmc → .mf4 --mf4-compress'] / pw:.1f}×)")
    print(f"MF4 read vs python-can MF4Reader: {rate['convert .mf4 → .cmc (MF4 read)'] / pr:.1f}× "
          f"(compressed {rate['convert compressed .mf4 → .cmc'] / pr:.1f}×)")
    print("\n| file | bytes | bytes per frame |")
    print("|---|---:|---:|")
    files = ["rec.cmc", "rec.log", "rec.asc"] + (["rec.blf"] if blf else []) + [
        "rec.mf4", "rec-z.mf4", "pycan.mf4"] + [f"rec-{c}-{rg}.parquet" for c, rg in
                                                 [("zstd", 1 << 20), ("zstd", 1 << 17), ("snappy", 1 << 20), ("none", 1 << 20)]]
    for name in files:
        size = os.path.getsize(d(name))
        if name.endswith(".cmc"):  # and its segments rec.cmc.1, rec.cmc.2, …
            k = 1
            while os.path.exists(d(f"{name}.{k}")):
                size += os.path.getsize(d(f"{name}.{k}"))
                k += 1
        frames = m if name == "pycan.mf4" else n
        print(f"| {name} | {size:,} | {size / frames:.2f} |")


if __name__ == "__main__":
    main()
