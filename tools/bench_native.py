#!/usr/bin/env python3
"""bench_native.py — native-format `canmc gen` -> `canmc record` at a ladder of rates, on
`lo` and across a veth bridge between two network namespaces, beside a count-only GRO
receiver (examples/raw_recvmmsg --gro) that shows where the kernel's limit is.

Usage (as root, from the repository, after `cargo build --release --example raw_recvmmsg`
and `cargo build --release`):

    tools/bench_native.py [--quick] [--modes lo,bridge] [--secs 10]
        [--ladder 1000000,2000000,5000000,7000000,10000000,15000000,20000000,25000000,30000000]
        [--canmc target/release/canmc] [--out docs/perf/native.json]

The script re-executes itself inside `tools/netlab.sh hosts 2`: two private namespaces
(hosts 1 and 2) whose `v0` is a veth into a bridge in a third private namespace, so no
packet can reach the machine's own network. Modes:

  lo      sender and receiver both in host 1, `--iface lo` (127.0.0.1, TTL 0)
  bridge  `gen` in host 1, the receiver in host 2, `--iface v0` (10.77.0.0/24, TTL 1)

For each mode: one unpaced run (`gen` stopped by SIGINT after SECS), then `--rate R`
for each rung up to 1.3 x the unpaced rate, SECS seconds each (`-n R*SECS`). Each rung
runs twice, once into `canmc record -o /dev/shm/…/x.cmc` and once into the reference
receiver. Lossless means: for record, frames recorded == frames sent and seq_gaps ==
kernel_drops == ring_drops == 0; for the reference, datagrams received == datagrams
sent and kernel_drops == 0. Ratios (record / reference) are of the same rung in the same
run. `--quick` takes 2 s rungs and the ladder 1M, 5M, 10M, 20M, 30M (about a minute).

CPU is user + system time from wait4; softirq work done on a process's behalf (the
loopback receive path runs inside the sender's sendmmsg) is not in it, so `machine_busy`
(all CPUs, /proc/stat) is given too. The machine may be shared: see `loadavg_before`.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
from bench_common import Load, Proc, counter_delta, kernel_counters, wait_udp  # noqa: E402

GROUP = "239.74.163.2"
PORT = 43_180
TMP = "/dev/shm/canmc-bench-native"
GOALS = {"lo": 30e6, "bridge": 15e6}


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def rm_cmc(path):
    """A .cmc file and its segment files FILE.1, FILE.2, …"""
    i, p = 0, path
    while os.path.exists(p):
        os.remove(p)
        i += 1
        p = f"{path}.{i}"


class Mode:
    """Where the sender and the receiver run, and the flags that meet there."""

    def __init__(self, name, lab_exec):
        self.name = name
        if name == "lo":
            self.tx, self.rx = [lab_exec, "1"], [lab_exec, "1"]
            self.net = ["--iface", "lo", "--group", GROUP, "--port", str(PORT)]
            self.rx_addr = "127.0.0.1"
        elif name == "bridge":
            self.tx, self.rx = [lab_exec, "1"], [lab_exec, "2"]
            self.net = ["--iface", "v0", "--group", GROUP, "--port", str(PORT)]
            self.rx_addr = "10.77.0.2"
        else:
            raise SystemExit(f"bench: unknown mode {name!r} (lo, bridge)")


class Bench:
    def __init__(self, args):
        self.canmc = args.canmc
        self.raw = args.raw
        self.secs = args.secs
        self.settle = 0.5 if args.quick else 1.0
        self.lab_exec = os.environ["LAB_EXEC"]

    def path(self, name):
        return os.path.join(TMP, name)

    def gen(self, mode, rate, name):
        cmd = [*mode.tx, self.canmc, "gen", *mode.net, "--wire", "native", "-L", "8",
               "--json"]
        if rate:
            cmd += ["--rate", str(rate), "-n", str(int(rate * self.secs))]
        gen = Proc(cmd, self.path(name + ".gen.out"), self.path(name + ".gen.err"))
        if not rate:
            time.sleep(self.secs)
            gen.signal()
        if gen.wait(timeout=self.secs * 4 + 30) != 0:
            raise RuntimeError(f"gen failed: {gen.stderr()[-500:]}")
        return gen

    def run(self, mode, rate, receiver):
        """One rung: `receiver` ("record" or "raw") gets `gen` at `rate` (None: unpaced)."""
        name = f"{mode.name}-{receiver}-{rate or 'max'}"
        cmc = self.path(name + ".cmc")
        if receiver == "record":
            rcmd = [*mode.rx, self.canmc, "record", *mode.net, "-o", cmc, "--json"]
        else:
            rcmd = [*mode.rx, self.raw, "--gro", "--group", GROUP, "--port", str(PORT),
                    "--iface-addr", mode.rx_addr]
        with Load() as load:
            k0 = kernel_counters(mode.rx)
            rx = Proc(rcmd, self.path(name + ".rx.out"), self.path(name + ".rx.err"))
            wait_udp(PORT, ns=mode.rx)
            gen = self.gen(mode, rate, name)
            time.sleep(self.settle)
            rx.signal()
            if rx.wait() != 0:
                raise RuntimeError(f"{receiver} failed: {rx.stderr()[-500:]}")
            kernel = counter_delta(k0, mode.rx)
        g, r = gen.summary(), rx.summary()
        fpd = g["frames"] / max(1, g["datagrams"])
        if receiver == "record":
            got = r["frames"]
            lossless = (got == g["frames"] and r["seq_gaps"] == 0 and r["kernel_drops"] == 0
                        and r["ring_drops"] == 0)
            extra = {"seq_gaps": r["seq_gaps"], "ring_drops": r["ring_drops"],
                     "datagrams": r["datagrams"], "coalesced": r.get("coalesced")}
        else:
            # The reference counts datagrams; frames = datagrams x gen's frames per datagram.
            got = round(r["datagrams"] * fpd)
            lossless = r["datagrams"] == g["datagrams"] and r["kernel_drops"] == 0
            extra = {"datagrams": r["datagrams"], "receives": r["receives"]}
        run = {
            "mode": mode.name, "receiver": receiver, "offered_rate": rate,
            "sent": g["frames"], "sent_datagrams": g["datagrams"],
            "frames_per_datagram": round(fpd, 2), "gen_elapsed_s": g["elapsed_s"],
            "gen_rate_fps": g["rate_fps"],
            "pacing": g["rate_fps"] / rate if rate else None,
            "received": got, "received_fps": got / max(1e-9, g["elapsed_s"]),
            "delivered": got / max(1, g["frames"]), "kernel_drops": r["kernel_drops"],
            "lossless": lossless, **extra,
            "gen_cpu_s": gen.cpu_s, "rx_cpu_s": rx.cpu_s,
            "gen_cpu_ns_per_frame": 1e9 * gen.cpu_s / max(1, g["frames"]),
            "rx_cpu_ns_per_frame": 1e9 * rx.cpu_s / max(1, got),
            **load.info(), "kernel": kernel,
            "commands": [" ".join(gen.cmd), " ".join(rx.cmd)],
        }
        log(json.dumps({k: run[k] for k in ("mode", "receiver", "offered_rate",
                                            "gen_rate_fps", "received_fps", "lossless")}))
        rm_cmc(cmc)
        return run

    def mode(self, name, ladder):
        mode = Mode(name, self.lab_exec)
        runs = [self.run(mode, None, "raw"), self.run(mode, None, "record")]
        top = max(r["gen_rate_fps"] for r in runs)
        for rate in ladder:
            if rate > top * 1.3:
                log(f"{name}: skip --rate {rate}, above 1.3 x the unpaced {top:,.0f}/s")
                continue
            runs += [self.run(mode, rate, "raw"), self.run(mode, rate, "record")]
        return runs


def summarize(runs):
    """Per mode and receiver: the highest lossless offered rate (and rate reached), the
    goal, and per rung the record / reference ratios."""
    out = {}
    for r in runs:
        key = f"{r['mode']} {r['receiver']}"
        s = out.setdefault(key, {"mode": r["mode"], "receiver": r["receiver"],
                                 "best_lossless_fps": 0.0, "goal_fps": GOALS[r["mode"]]})
        if r["lossless"]:
            s["best_lossless_fps"] = max(s["best_lossless_fps"], r["received_fps"])
    for s in out.values():
        s["goal_met"] = s["best_lossless_fps"] >= s["goal_fps"]
    ratios = []
    for r in runs:
        if r["receiver"] != "record":
            continue
        ref = [x for x in runs if x["mode"] == r["mode"] and x["receiver"] == "raw"
               and x["offered_rate"] == r["offered_rate"]]
        if ref:
            ratios.append({"mode": r["mode"], "offered_rate": r["offered_rate"],
                           "received_vs_raw": r["received_fps"] / max(1, ref[0]["received_fps"]),
                           "delivered_vs_raw": r["delivered"] / max(1e-9, ref[0]["delivered"])})
    return {"best": list(out.values()), "ratios": ratios}


def table(res):
    lines = ["| mode | receiver | offered | gen sent/s | pacing | received/s | delivered | "
             "lossless | kernel drops | gen CPU ns/fr | rx CPU ns/fr | machine busy |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in res["runs"]:
        off = f"{r['offered_rate'] / 1e6:g}M" if r["offered_rate"] else "max"
        pacing = f"{r['pacing']:.3f}" if r["pacing"] else "-"
        lines.append(
            f"| {r['mode']} | {r['receiver']} | {off} | {r['gen_rate_fps'] / 1e6:.2f}M | "
            f"{pacing} | {r['received_fps'] / 1e6:.2f}M | {100 * r['delivered']:.2f} % | "
            f"{'yes' if r['lossless'] else 'no'} | {r['kernel_drops']:,} | "
            f"{r['gen_cpu_ns_per_frame']:.1f} | {r['rx_cpu_ns_per_frame']:.1f} | "
            f"{r['machine_busy']:.2f} |")
    lines += ["", "| mode | receiver | best lossless frames/s | goal | met |",
              "|---|---|---:|---:|---|"]
    for s in res["summary"]["best"]:
        lines.append(f"| {s['mode']} | {s['receiver']} | {s['best_lossless_fps'] / 1e6:.2f}M | "
                     f"{s['goal_fps'] / 1e6:g}M | {'yes' if s['goal_met'] else 'no'} |")
    lines += ["", "| mode | offered | record received / raw | record delivered / raw |",
              "|---|---:|---:|---:|"]
    for x in res["summary"]["ratios"]:
        off = f"{x['offered_rate'] / 1e6:g}M" if x["offered_rate"] else "max"
        lines.append(f"| {x['mode']} | {off} | {x['received_vs_raw']:.3f} | "
                     f"{x['delivered_vs_raw']:.3f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canmc", default=os.path.join(REPO, "target/release/canmc"))
    ap.add_argument("--raw", default=None,
                    help="reference receiver (default: raw_recvmmsg next to --canmc)")
    ap.add_argument("--modes", default="lo,bridge")
    ap.add_argument("--secs", type=float, default=None, help="seconds per rung (10; 2 quick)")
    ap.add_argument("--ladder", default=None,
                    help="offered frames/s, comma-separated (default 1M,2M,5M,7M,10M,15M,"
                         "20M,25M,30M; quick 1M,5M,10M,20M,30M)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None,
                    help="JSON result (default docs/perf/native.json, -quick with --quick)")
    ap.add_argument("--tables", metavar="JSON", help="print the tables of a result and exit")
    args = ap.parse_args()
    if args.tables:
        print(table(json.load(open(args.tables))))
        return
    args.canmc = os.path.abspath(args.canmc)
    args.raw = os.path.abspath(args.raw or os.path.join(os.path.dirname(args.canmc),
                                                        "examples", "raw_recvmmsg"))
    for exe in (args.canmc, args.raw):
        if not os.access(exe, os.X_OK):
            sys.exit(f"bench: {exe} missing (cargo build --release; "
                     "cargo build --release --example raw_recvmmsg)")
    if args.secs is None:
        args.secs = 2.0 if args.quick else 10.0
    if args.ladder is None:
        args.ladder = ("1000000,5000000,10000000,20000000,30000000" if args.quick
                       else "1000000,2000000,5000000,7000000,10000000,15000000,20000000,"
                            "25000000,30000000")
    if args.out is None:
        args.out = os.path.join(REPO, "docs/perf",
                                "native-quick.json" if args.quick else "native.json")
    if not os.environ.get("LAB_EXEC"):
        # Everything below runs in namespaces netlab makes; never in the host's own.
        if os.geteuid() != 0:
            sys.exit("bench: needs root (network namespaces with a bridge)")
        os.execvp(os.path.join(REPO, "tools/netlab.sh"),
                  ["netlab.sh", "hosts", "2", sys.executable, os.path.abspath(__file__),
                   *sys.argv[1:]])
    os.makedirs(TMP, exist_ok=True)
    b = Bench(args)
    ladder = [int(float(x)) for x in args.ladder.split(",")]
    res = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "kernel": platform.release(), "cpus": os.cpu_count(),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "canmc": args.canmc, "secs": args.secs, "quick": args.quick, "ladder": ladder,
        "runs": [],
    }
    t0 = time.monotonic()
    try:
        with Load() as total:
            for m in args.modes.split(","):
                res["runs"] += b.mode(m, ladder)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    res["machine_busy_whole_run"] = round(total.busy, 3)
    res["wall_s"] = round(time.monotonic() - t0, 1)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    res["summary"] = summarize(res["runs"])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(table(res))
    log(f"wrote {args.out} ({res['wall_s']} s)")


if __name__ == "__main__":
    main()
