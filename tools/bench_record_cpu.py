#!/usr/bin/env python3
"""CPU per frame of `canmc record` (or `dump -q`) on each receive path, beside a
`canmc gen` on lo.

Usage (root; re-executes itself in a private network namespace, so nothing leaves it):

    python3 tools/bench_record_cpu.py [--canmc PATH] [--io uring,mmsg]
                                      [--rates 20000,300000,0] [--seconds 3] [--rounds 2]
                                      [--command record|dump] [--variants ',--coalesce 1']

`--variants` lists extra receiver arguments to compare, separated by commas (an empty
item is the plain command).

Rate 0 means unpaced (the sender's maximum, 1 000 000 frames). For each round, rate and
receive path it starts `canmc record --iface lo --io IO -o /dev/shm/...cmc --json`, sends
RATE × SECONDS python-can frames (8 bytes) with `canmc gen --iface lo`, stops the
recorder with SIGINT, and prints its frames, kernel drops and CPU (user + system, from
wait4) per frame sent. Every path runs in the same invocation, so the ratios between
them are what to read; absolute figures move with the machine's load.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_private_netns():
    return os.environ.get("CANMC_BENCH_NETNS") == "1"


def reexec_in_netns():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        sys.exit("bench_record_cpu: needs root and unshare(1) for a private namespace")
    env = dict(os.environ, CANMC_BENCH_NETNS="1")
    script = "ip link set lo up && exec python3 \"$0\" \"$@\""
    os.execvpe("unshare", ["unshare", "-n", "sh", "-c", script, *sys.argv], env)


def one(canmc, io, rate, seconds, command="record", extra=()):
    n = 1_000_000 if rate == 0 else int(rate * seconds)
    out = f"/dev/shm/canmc-bench-cpu-{os.getpid()}.cmc"
    target = ["-o", out] if command == "record" else ["-q"]
    rec = subprocess.Popen(
        [canmc, command, "--iface", "lo", "--io", io, *target, "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.3)
    gen = [canmc, "gen", "--iface", "lo", "-L", "8", "-n", str(n)]
    if rate:
        gen += ["--rate", str(rate)]
    subprocess.run(gen, capture_output=True, check=True)
    time.sleep(0.3)
    rec.send_signal(signal.SIGINT)
    _, status, ru = os.wait4(rec.pid, 0)
    lines = rec.stdout.read().decode().strip().splitlines()
    try:
        os.unlink(out)
    except OSError:
        pass
    if status != 0 or not lines:
        sys.exit(f"record failed ({status}): {rec.stderr.read().decode()}")
    summary = json.loads(lines[-1])
    cpu = ru.ru_utime + ru.ru_stime
    return {
        "command": " ".join([command, *extra]),
        "io": io,
        "rate": rate or "max",
        "sent": n,
        "frames": summary["frames"],
        "kernel_drops": summary["kernel_drops"],
        "cpu_ns_per_frame": round(cpu * 1e9 / n),
        "user_ns": round(ru.ru_utime * 1e9 / n),
        "sys_ns": round(ru.ru_stime * 1e9 / n),
        "voluntary_switches": ru.ru_nvcsw,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canmc", default=os.path.join(REPO, "target/release/canmc"))
    ap.add_argument("--io", default="uring,mmsg")
    ap.add_argument("--rates", default="20000,300000,0")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--command", default="record", choices=["record", "dump"])
    ap.add_argument("--variants", default="", help="extra receiver args, comma-separated")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    a = ap.parse_args()
    if not in_private_netns():
        reexec_in_netns()
    print(f"# {a.canmc}; load average {os.getloadavg()[0]:.2f}", flush=True)
    print("| round | command | io | offered fps | sent | received | kernel drops | CPU ns/frame (user + sys) |")
    print("|---|---|---|---|---|---|---|---|")
    variants = [v.split() for v in a.variants.split(",")]
    runs = [
        (r, rate, io, extra)
        for r in range(1, a.rounds + 1)
        for rate in (int(x) for x in a.rates.split(","))
        for io in a.io.split(",")
        for extra in variants
    ]
    for r, rate, io, extra in runs:
        res = one(a.canmc, io, rate, a.seconds, a.command, extra)
        if a.json:
            print(json.dumps({"round": r, **res}), flush=True)
            continue
        print(
            f"| {r} | {res['command']} | {io} | {res['rate']} | {res['sent']} | "
            f"{res['frames']} | {res['kernel_drops']} | {res['cpu_ns_per_frame']} "
            f"({res['user_ns']} + {res['sys_ns']}) |",
            flush=True,
        )

if __name__ == "__main__":
    main()
