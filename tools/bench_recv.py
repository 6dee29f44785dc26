#!/usr/bin/env python3
"""Receive benchmark (SPEC §10): the same python-can-format traffic, from one
`canmc gen --iface lo` (sendmmsg + GSO) sender at a fixed offered rate, received in turn by

  raw_recvmmsg   examples/raw_recvmmsg.rs: count-only recvmmsg loop, the kernel's limit
  canmc uring    canmc dump --io uring --quiet --json
  canmc mmsg     canmc dump --io mmsg  --quiet --json
  canmc record   canmc record --io uring -o /dev/shm/….cmc --json (.cmc on tmpfs)
  python-can     UdpMulticastBus(channel='239.74.163.2').recv() in a loop (low rates only)

For every (rate, receiver): frames sent, frames received, loss %, received frames per
second of sending, CPU ns per received frame (utime+stime of the receiver process, from
wait4), and ratios against raw_recvmmsg at the same rate in the same run.

Runs inside a private network namespace: under `tools/netlab.sh run` it uses that one,
otherwise it re-executes itself under `unshare -n`. Nothing leaves the host.

    python3 tools/bench_recv.py            # full run, ~2.5 min; writes docs/perf/recv.{json,png}
    python3 tools/bench_recv.py --quick    # < 40 s; writes docs/perf/recv-quick.{json,png}
"""

import argparse
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

GROUP = "239.74.163.2"
PORT = 43113
CANMC = os.path.join(bc.REPO, "target", "release", "canmc")
RAW = os.path.join(bc.REPO, "target", "release", "examples", "raw_recvmmsg")
# tmpfs when there is one, so recording measures canmc rather than the disk.
RECORD_FILE = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                           f"canmc-bench-{os.getpid()}.cmc")

PYCAN_CHILD = r"""
import json, signal, sys, time
import can
from can.interfaces.udp_multicast import UdpMulticastBus
stop = False
def on_sig(*_):
    global stop
    stop = True
signal.signal(signal.SIGINT, on_sig)
signal.signal(signal.SIGTERM, on_sig)
bus = UdpMulticastBus(channel=sys.argv[1], port=int(sys.argv[2]))
n = 0
t0 = time.monotonic()
while not stop:
    try:
        m = bus.recv(0.05)
    except InterruptedError:
        continue
    if m is not None:
        n += 1
el = time.monotonic() - t0
bus.shutdown()
print(json.dumps({"receiver": "python-can", "frames": n, "elapsed_s": el,
                  "python_can": can.__version__}))
"""


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short run (< 40 s)")
    p.add_argument("--rates", help="comma list of frames/s, 'max' = as fast as gen can")
    p.add_argument("--seconds", type=float, help="sending time per measurement")
    p.add_argument("--repeat", type=int, help="rounds over all (rate, receiver) pairs")
    p.add_argument("--pycan-max", type=float, default=200000,
                   help="highest offered rate python-can gets (default 200000)")
    p.add_argument("--max-frames", type=int, default=1_800_000,
                   help="frames sent at rate 'max' (full run)")
    p.add_argument("--receivers", default="raw,uring,mmsg,record,pycan",
                   help="record is left out (with a note) while `canmc record` is missing")
    p.add_argument("--out", help="JSON result path (default docs/perf/recv[-quick].json)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--reanalyze", metavar="JSON",
                   help="recompute summary, table and plot from the rows of an earlier run")
    a = p.parse_args()
    if a.quick:
        a.rates = a.rates or "50000,500000,max"
        a.seconds = a.seconds or 0.6
        a.repeat = a.repeat or 1
        a.max_frames = min(a.max_frames, 800_000)
    else:
        a.rates = a.rates or "20000,50000,200000,500000,800000,max"
        a.seconds = a.seconds or 1.2
        a.repeat = a.repeat or 3
    a.out = a.out or os.path.join(
        bc.REPO, "docs", "perf", "recv-quick.json" if a.quick else "recv.json")
    return a


def wait_bound(port, timeout=10.0):
    """Waits until some UDP socket is bound to `port` (the receiver is up)."""
    want = f":{port:04X} "
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open("/proc/net/udp") as f:
            if any(want in line.split(None, 2)[1] + " " for line in list(f)[1:]):
                time.sleep(0.1)  # the join follows the bind
                return True
        time.sleep(0.02)
    return False


def thread_cpu(pid):
    """CPU seconds (utime+stime) of each thread of `pid`, by thread name; names repeat
    for pools, so values of one name add up."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        f = st[st.rindex(")") + 2:].split()
        out[comm] = out.get(comm, 0.0) + (int(f[11]) + int(f[12])) / tck
    return out


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in output: {text[-500:]!r}")


def receiver_cmd(name, py):
    if name == "raw":
        return "raw_recvmmsg", [RAW, "--group", GROUP, "--port", str(PORT)]
    if name in ("uring", "mmsg"):
        return f"canmc {name}", [CANMC, "dump", "--iface", "lo", "--port", str(PORT),
                                 "--io", name, "--quiet", "--json"]
    if name == "record":
        return "canmc record", [CANMC, "record", "--iface", "lo", "--port", str(PORT),
                                "--io", "uring", "-o", RECORD_FILE, "--json"]
    if name == "pycan":
        return "python-can", [py, "-c", PYCAN_CHILD, GROUP, str(PORT)]
    raise SystemExit(f"unknown receiver {name}")


def measure(name, rate, frames, py, drain):
    label, cmd = receiver_cmd(name, py)
    out = tempfile.TemporaryFile(mode="w+")
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err)
    if not wait_bound(PORT):
        proc.kill()
        raise SystemExit(f"{label} did not bind port {PORT}")
    gen = [CANMC, "gen", "--iface", "lo", "--port", str(PORT), "-n", str(frames),
           "-L", "8", "-D", "r", "--json"]
    if rate is not None:
        gen += ["--rate", str(rate)]
    g = subprocess.run(gen, capture_output=True, text=True)
    if g.returncode != 0:
        proc.kill()
        raise SystemExit(f"gen failed ({g.returncode}): {g.stderr}")
    gsum = last_json(g.stdout)
    time.sleep(drain)
    threads = thread_cpu(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    text, etext = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{label} exited {proc.returncode}: {etext}")
    rsum = last_json(text)
    if name == "record":
        files = [RECORD_FILE] + glob.glob(RECORD_FILE + ".*")
        files = [f for f in files if os.path.exists(f)]
        rsum["file_bytes"] = sum(os.path.getsize(f) for f in files)
        for f in files:
            os.remove(f)
    if name == "raw":
        received = rsum["datagrams"]
    else:
        received = rsum["frames"]
    sent = gsum["frames"]
    cpu_s = ru.ru_utime + ru.ru_stime
    row = {
        "receiver": label,
        "rate": rate,
        "sent": sent,
        "sent_elapsed_s": gsum["elapsed_s"],
        "sent_fps": sent / gsum["elapsed_s"],
        "received": received,
        "loss_pct": 100.0 * (sent - received) / sent if sent else 0.0,
        "recv_fps": received / gsum["elapsed_s"],
        "cpu_s": cpu_s,
        "cpu_ns_per_frame": 1e9 * cpu_s / received if received else None,
        "kernel_drops": rsum.get("kernel_drops"),
        "ring_drops": rsum.get("ring_drops"),
        "io": rsum.get("io"),
        "thread_cpu_s": threads,
        "receiver_summary": rsum,
        "receiver_stderr": etext.strip()[-400:],
    }
    return row


def fmt_threads(row):
    n = max(row["received"], 1)
    return " ".join(f"{k}={1e9 * v / n:.0f}ns" for k, v in row["thread_cpu_s"].items())


def summarize(rows):
    """One row per (rate, receiver): the median round (by delivered fraction, then
    received frames/s), so that each row's figures come from one measurement and agree
    with each other; then ratios against raw_recvmmsg at the same rate."""
    keys = []
    for r in rows:
        k = (r["rate"], r["receiver"])
        if k not in keys:
            keys.append(k)
    out = []
    for rate, recv in keys:
        m = sorted((r for r in rows if r["rate"] == rate and r["receiver"] == recv),
                   key=lambda r: (r["received"] / r["sent"], r["recv_fps"]))
        med = m[(len(m) - 1) // 2]
        s = {
            "receiver": recv,
            "rate": rate,
            "rounds": len(m),
            "median_round": med.get("round", 0),
            "sent_fps": med["sent_fps"],
            "received": med["received"],
            "sent": med["sent"],
            "loss_pct": med["loss_pct"],
            "loss_pct_worst": max(r["loss_pct"] for r in m),
            "loss_pct_best": min(r["loss_pct"] for r in m),
            "recv_fps": med["recv_fps"],
            "delivered": med["received"] / med["sent"],
            "cpu_ns_per_frame": med["cpu_ns_per_frame"],
        }
        out.append(s)
    for s in out:
        base = [b for b in out if b["rate"] == s["rate"] and b["receiver"] == "raw_recvmmsg"]
        if base and base[0]["recv_fps"]:
            s["fps_vs_raw"] = s["recv_fps"] / base[0]["recv_fps"]
            s["delivered_vs_raw"] = s["delivered"] / base[0]["delivered"]
            if s["cpu_ns_per_frame"] and base[0]["cpu_ns_per_frame"]:
                s["cpu_vs_raw"] = s["cpu_ns_per_frame"] / base[0]["cpu_ns_per_frame"]
    return out


def lossless(rows):
    """Per receiver, the highest sending rate it took without losing a frame: `strict`
    over all rounds (no loss in any round at that offered rate), and `median` of each
    round's best (a burst of outside load in one round then does not decide alone)."""
    recvs = sorted({r["receiver"] for r in rows})
    rounds = sorted({r.get("round", 0) for r in rows})
    strict, median = {}, {}
    for recv in recvs:
        mine = [r for r in rows if r["receiver"] == recv]
        for rate in {r["rate"] for r in mine}:
            m = [r for r in mine if r["rate"] == rate]
            if all(r["received"] >= r["sent"] for r in m):
                strict[recv] = max(strict.get(recv, 0.0), min(r["sent_fps"] for r in m))
        per_round = []
        for rnd in rounds:
            ok = [r["sent_fps"] for r in mine
                  if r.get("round", 0) == rnd and r["received"] >= r["sent"]]
            per_round.append(max(ok, default=0.0))
        median[recv] = statistics.median(per_round)
    return {"strict": strict, "median_of_rounds": median}


def lossless_text(best):
    def fmt(d):
        return ", ".join(f"{k} {v:.0f}/s" if v else f"{k} none"
                         for k, v in sorted(d.items(), key=lambda kv: -kv[1]))
    return ("highest sending rate without loss, median of rounds: "
            + fmt(best["median_of_rounds"])
            + "\n                         strict (no loss in any round): "
            + fmt(best["strict"]))


def table(summary):
    hdr = (f"{'offered':>8} {'receiver':<13} {'sent/s':>9} {'recv/s':>9} {'loss %':>7} "
           f"{'ns CPU/frame':>12} {'fps vs raw':>10} {'dlv vs raw':>10} {'CPU vs raw':>10}")
    lines = [hdr, "-" * len(hdr)]
    for s in summary:
        rate = "max" if s["rate"] is None else f"{s['rate']:.0f}"
        cpu = f"{s['cpu_ns_per_frame']:.0f}" if s["cpu_ns_per_frame"] else "-"
        fr = f"{s['fps_vs_raw']:.3f}" if "fps_vs_raw" in s else "-"
        cr = f"{s['cpu_vs_raw']:.2f}" if "cpu_vs_raw" in s else "-"
        dr = f"{s['delivered_vs_raw']:.3f}" if "delivered_vs_raw" in s else "-"
        lines.append(f"{rate:>8} {s['receiver']:<13} {s['sent_fps']:>9.0f} "
                     f"{s['recv_fps']:>9.0f} {s['loss_pct']:>7.2f} {cpu:>12} {fr:>10} {dr:>10} {cr:>10}")
    return "\n".join(lines)


def reanalyze(path, plot):
    with open(path) as f:
        res = json.load(f)
    res["summary"] = summarize(res["rows"])
    res["lossless_fps"] = lossless(res["rows"])
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(table(res["summary"]))
    print(lossless_text(res["lossless_fps"]))
    if plot:
        write_plot(path)


def write_plot(path):
    py = bc.venv_python()
    png = os.path.splitext(path)[0] + ".png"
    bc.ensure_matplotlib(py)
    subprocess.run([py, os.path.join(bc.REPO, "tools", "bench_common.py"), "plot-recv",
                    path, png], check=True)
    print(f"wrote {png}")


def main():
    a = parse_args()
    if a.reanalyze:
        return reanalyze(a.reanalyze, not a.no_plot)
    if not bc.in_own_netns():
        if os.environ.get("CANMC_BENCH_OUTER_NS"):
            raise SystemExit("bench: unshare -n did not give a private network namespace")
        if not a.no_build:
            subprocess.run(["cargo", "build", "--release", "--bin", "canmc",
                            "--example", "raw_recvmmsg"], cwd=bc.REPO, check=True)
        py = bc.venv_python()
        if not a.no_plot:
            bc.ensure_matplotlib(py)
        argv = [sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
        if not a.no_build:
            argv.append("--no-build")
        sys.exit(bc.reexec_in_netns(argv))
    bc.prepare_netns()
    if not a.no_build:
        # Inside the namespace there is no network: build from what cargo already has.
        subprocess.run(["cargo", "build", "--offline", "--release", "--bin", "canmc",
                        "--example", "raw_recvmmsg"], cwd=bc.REPO, check=True)
    py = bc.venv_python()
    for b in (CANMC, RAW):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"missing {b}: cargo build --release --bin canmc "
                             "--example raw_recvmmsg")
    rates = [None if r.strip() == "max" else float(r) for r in a.rates.split(",")]
    wanted = a.receivers.split(",")
    notes = []
    if "record" in wanted and subprocess.run([CANMC, "record", "--help"],
                                             capture_output=True).returncode != 0:
        wanted.remove("record")
        notes.append("`canmc record` is not in this build: receive+record not measured")
        print("bench: " + notes[-1], file=sys.stderr)
    t0 = time.monotonic()
    load_start = bc.load_avg()
    rows = []
    for rnd in range(a.repeat):
        for rate in rates:
            if rate is None:
                frames = a.max_frames
            else:
                frames = int(rate * a.seconds)
            for name in wanted:
                if name == "pycan" and (rate is None or rate > a.pycan_max):
                    continue
                drain = 0.8 if name == "pycan" else 0.4
                row = measure(name, rate, frames, py, drain)
                row["round"] = rnd
                row["load"] = bc.load_avg()
                rows.append(row)
                print(f"round {rnd} rate {'max' if rate is None else int(rate):>7} "
                      f"{row['receiver']:<13} sent {row['sent']:>8} at {row['sent_fps']:>9.0f}/s"
                      f"  got {row['received']:>8} ({row['loss_pct']:6.2f} % lost)  "
                      f"{row['cpu_ns_per_frame'] or 0:7.0f} ns CPU/frame  load {row['load'][0]}  "
                      f"threads {fmt_threads(row)}",
                      file=sys.stderr, flush=True)
    summary = summarize(rows)
    best = lossless(rows)
    res = {
        "command": " ".join(["python3 tools/bench_recv.py"]
                            + [x for x in sys.argv[1:] if x != "--no-build"]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"kernel": os.uname().release, "cores": os.cpu_count()},
        "load_start": load_start,
        "load_end": bc.load_avg(),
        "wall_s": time.monotonic() - t0,
        "seconds_per_measurement": a.seconds,
        "summary": summary,
        "lossless_fps": best,
        "notes": notes,
        "rows": rows,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(table(summary))
    print(lossless_text(best))
    print(f"load {load_start} -> {res['load_end']}, {res['wall_s']:.0f} s; wrote {a.out}")
    if not a.no_plot:
        write_plot(a.out)


if __name__ == "__main__":
    main()
