#!/usr/bin/env python3
"""bench_convert.py — canmc's file conversions against python-can, in one run on the same
input (docs/perf.md, "Conversions").

    python3 tools/bench_convert.py [--frames N] [--out docs/perf/convert.json]

Makes one candump .log of N frames (default 1 000 000: 80 % classic 8-byte, 10 % CAN FD
of 12–64 bytes, 5 % extended 4-byte, 5 % remote; 3 channels, both directions), then times:

- `canmc convert in.log out.EXT` against `python -m can.logconvert in.log out.EXT` for
  .asc, .blf and .trc (python-can's TRC writer drops the FD and remote frames; its time
  is for fewer frames, which favours python-can), and .log → .log;
- BLF read: `canmc info in.blf` (reads every object, counts IDs) against a loop over
  python-can's BLFReader;
- BLF write: `canmc convert in.cmc out.blf` (reading the .cmc included) against
  python-can's BLFWriter fed from messages already in memory (reading not included).

Each command runs once (the machine is shared: ratios within one run are what counts);
wall time and the peak RSS of each process (wait4) are reported. Needs the venv python
with python-can (tools/setup-venv.sh) and a release build (cargo build --release; the
binary is $CANMC_BIN or target/release/canmc).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import REPO, load_avg, venv_python  # noqa: E402


def canmc_bin():
    b = os.environ.get("CANMC_BIN")
    if not b:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
        b = os.path.join(target, "release", "canmc")
    if not os.access(b, os.X_OK):
        sys.exit(f"bench_convert: no canmc binary at {b}; cargo build --release or set CANMC_BIN")
    return b


def make_log(path, n):
    rnd = random.Random(10)
    t = 1_700_000_000_000_000
    with open(path, "w") as f:
        for i in range(n):
            t += rnd.randint(50, 400)
            ch = f"can{i % 3}"
            r = rnd.random()
            if r < 0.80:
                frame = f"{rnd.randrange(0x800):03X}#{rnd.getrandbits(64):016X}"
            elif r < 0.90:
                ln = rnd.choice([12, 16, 20, 24, 32, 48, 64])
                frame = f"{rnd.randrange(0x800):03X}##{rnd.randrange(4)}{rnd.getrandbits(8 * ln):0{2 * ln}X}"
            elif r < 0.95:
                frame = f"{rnd.randrange(1 << 29):08X}#{rnd.getrandbits(32):08X}"
            else:
                frame = f"{rnd.randrange(0x800):03X}#R{rnd.randrange(9)}"
            tx = " T" if i % 7 == 0 else ""
            f.write(f"({t // 1_000_000}.{t % 1_000_000:06d}) {ch} {frame}{tx}\n")


def run(cmd):
    """Runs `cmd`; returns (seconds, peak RSS in MiB)."""
    # stderr to a file: python-can's TRC writer logs one warning per dropped frame,
    # which would fill a pipe and stall it.
    with tempfile.TemporaryFile() as errf:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
        errf.seek(0)
        err = errf.read().decode(errors="replace")[-2000:]
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench_convert: {' '.join(cmd)} failed:\n{err}")
    return wall, ru.ru_maxrss / 1024


PY_BLF_READ = """
import sys, can
n = 0
for m in can.BLFReader(sys.argv[1]):
    n += 1
print(n)
"""

PY_BLF_WRITE = """
import sys, time, can
msgs = list(can.LogReader(sys.argv[1]))
t = time.perf_counter()
with can.BLFWriter(sys.argv[2]) as w:
    for m in msgs:
        w.on_message_received(m)
print(time.perf_counter() - t)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "perf", "convert.json"))
    a = ap.parse_args()
    py = venv_python()
    canmc = canmc_bin()
    results = {"frames": a.frames, "load_before": load_avg(), "rows": []}
    with tempfile.TemporaryDirectory(prefix="canmc-bench-convert-") as d:
        src = os.path.join(d, "in.log")
        make_log(src, a.frames)
        results["input_bytes"] = os.path.getsize(src)

        def row(what, mine, theirs, note=""):
            r = {
                "what": what,
                "canmc_s": mine[0],
                "canmc_rss_mib": mine[1],
                "python_can_s": theirs[0],
                "python_can_rss_mib": theirs[1],
                "ratio": theirs[0] / mine[0],
                "note": note,
            }
            results["rows"].append(r)
            print(
                f"{what:28} canmc {mine[0]:7.2f} s {mine[1]:6.1f} MiB   "
                f"python-can {theirs[0]:7.2f} s {theirs[1]:6.1f} MiB   {r['ratio']:6.1f}x {note}",
                flush=True,
            )

        for ext in ["asc", "blf", "trc", "log"]:
            mine = run([canmc, "convert", src, os.path.join(d, f"c.{ext}")])
            theirs = run([py, "-m", "can.logconvert", src, os.path.join(d, f"p.{ext}")])
            note = "python-can writes only the classic data frames" if ext == "trc" else ""
            row(f".log -> .{ext} (convert)", mine, theirs, note)

        blf = os.path.join(d, "c.blf")
        results["blf_bytes"] = os.path.getsize(blf)
        mine = run([canmc, "info", blf])
        theirs = run([py, "-c", PY_BLF_READ, blf])
        row("BLF read", mine, theirs)

        cmc = os.path.join(d, "in.cmc")
        run([canmc, "convert", src, cmc])
        mine = run([canmc, "convert", cmc, os.path.join(d, "w.blf")])
        out = subprocess.run(
            [py, "-c", PY_BLF_WRITE, src, os.path.join(d, "pw.blf")],
            check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        theirs_s = float(out.stdout.strip())
        row("BLF write", mine, (theirs_s, float("nan")),
            "python-can: writer loop only, messages already in memory")
    results["load_after"] = load_avg()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"load average before {results['load_before']}, after {results['load_after']}")


if __name__ == "__main__":
    main()
