#!/usr/bin/env python3
"""Shared helpers for canmc's benchmark scripts: finding the venv python, entering a
private network namespace, and drawing the plots for docs/perf.md.

Run as a script (with the venv python, which has matplotlib) it draws plots:

    .venv/bin/python tools/bench_common.py plot-recv docs/perf/recv.json docs/perf/recv.png
    .venv/bin/python tools/bench_common.py plot-latency docs/perf/latency.json docs/perf/latency.png

and prints the markdown tables of docs/perf.md (any python 3):

    python3 tools/bench_common.py md-recv docs/perf/recv.json
    python3 tools/bench_common.py md-latency docs/perf/latency.json
"""

import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def venv_python():
    """The python with python-can: $CANMC_PYTHON, else <repo>/.venv/bin/python.

    Exits with a clear message if neither exists (a missing interpreter is a failure,
    never a silent skip)."""
    py = os.environ.get("CANMC_PYTHON") or os.path.join(REPO, ".venv", "bin", "python")
    if not os.access(py, os.X_OK):
        sys.exit(
            f"bench: no python-can interpreter at {py}; set CANMC_PYTHON or run "
            "tools/setup-venv.sh (or: python3 -m venv .venv && "
            ".venv/bin/pip install python-can msgpack)"
        )
    return py


def ensure_matplotlib(py):
    """Installs matplotlib into the venv of `py` if it is missing."""
    if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0:
        return
    print("bench: installing matplotlib into the venv", file=sys.stderr)
    subprocess.run([py, "-m", "pip", "install", "-q", "matplotlib"], check=True)


def in_own_netns():
    """True inside a namespace made for us: by reexec_in_netns or by tools/netlab.sh, both
    of which record in the environment the namespace they were called from (pid 1's may
    be unreadable, so it cannot be the reference)."""
    mine = os.readlink("/proc/self/ns/net")
    outer = [os.environ.get(k) for k in ("CANMC_BENCH_OUTER_NS", "NETLAB_OUTER_NS")]
    outer = [o for o in outer if o]
    try:
        outer.append(os.readlink("/proc/1/ns/net"))
    except OSError:
        pass
    has_mark = any(os.environ.get(k) for k in ("CANMC_BENCH_OUTER_NS", "NETLAB_OUTER_NS"))
    return has_mark and mine not in outer


def reexec_in_netns(argv):
    """Runs argv again inside a fresh network namespace with only lo (up) and a
    224.0.0.0/4 route on lo, so nothing can leave the host and python-can's INADDR_ANY
    join meets `--iface lo` traffic. Returns the child's exit code."""
    setup = "ip link set lo up && ip route add 224.0.0.0/4 dev lo && exec \"$@\""
    env = dict(os.environ, CANMC_BENCH_OUTER_NS=os.readlink("/proc/self/ns/net"))
    return subprocess.run(["unshare", "-n", "sh", "-c", setup, "sh", *argv],
                          env=env).returncode


def prepare_netns():
    """Inside a namespace (ours or tools/netlab.sh's): lo up, multicast routed to lo."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    routes = subprocess.run(
        ["ip", "route", "show", "224.0.0.0/4"], capture_output=True, text=True
    ).stdout
    if "dev lo" not in routes:
        subprocess.run(["ip", "route", "replace", "224.0.0.0/4", "dev", "lo"], check=True)


# ---------------------------------------------------------------- processes and counters


class Proc:
    """A child process whose CPU time is read with wait4 (user + system, its own)."""

    def __init__(self, cmd, out=None, err=None):
        self.cmd = cmd
        self.out_path, self.err_path = out, err
        self.p = subprocess.Popen(
            cmd,
            stdout=open(out, "w") if out else subprocess.DEVNULL,
            stderr=open(err, "w") if err else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self.t0 = time.monotonic()
        self.rc = None

    def signal(self, sig=signal.SIGINT):
        if self.rc is None:
            self.p.send_signal(sig)

    def wait(self, timeout=120):
        end = time.monotonic() + timeout
        while self.rc is None:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid:
                self.rc = os.waitstatus_to_exitcode(status)
                self.p.returncode = self.rc
                self.cpu_s = ru.ru_utime + ru.ru_stime
                self.wall_s = time.monotonic() - self.t0
                break
            if time.monotonic() > end:
                self.p.kill()
                end += 5
            time.sleep(0.01)
        return self.rc

    def stdout(self):
        return open(self.out_path).read() if self.out_path else ""

    def stderr(self):
        return open(self.err_path).read() if self.err_path else ""

    def summary(self):
        """canmc's --json summary: the last JSON line of stdout."""
        for line in reversed(self.stdout().splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"{self.cmd} printed no JSON summary: {self.stderr()[-500:]}")


def machine_cpu():
    """(busy jiffies, total jiffies) of the whole machine (all namespaces share it)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class Load:
    """Machine CPU busy fraction over a block, with the load average at its start."""

    def __enter__(self):
        self.a = machine_cpu()
        self.loadavg = open("/proc/loadavg").read().split()[:3]
        return self

    def __exit__(self, *exc):
        b = machine_cpu()
        self.busy = (b[0] - self.a[0]) / max(1, b[1] - self.a[1])
        return False

    def info(self):
        return {"loadavg_before": self.loadavg, "machine_busy": round(self.busy, 3)}


def read_proc(path, ns=()):
    """A /proc/net file as this namespace sees it, or (ns = a command prefix such as
    [LAB_EXEC, "2"]) as the namespace that prefix enters sees it."""
    if not ns:
        with open(path) as f:
            return f.read()
    return subprocess.run([*ns, "cat", path], capture_output=True, text=True,
                          check=True).stdout


def kernel_counters(ns=()):
    """A namespace's UDP counters (/proc/net/snmp) and the machine's softnet backlog
    drops: where a datagram lost before any socket counter sees it is counted."""
    rows = [line.split()[1:] for line in read_proc("/proc/net/snmp", ns).splitlines()
            if line.startswith("Udp:")]
    c = {k: int(v) for k, v in zip(rows[0], rows[1])}
    with open("/proc/net/softnet_stat") as f:
        c["softnet_dropped"] = sum(int(line.split()[1], 16) for line in f)
    return c


def counter_delta(before, ns=()):
    after = kernel_counters(ns)
    keys = ("InDatagrams", "InErrors", "RcvbufErrors", "MemErrors", "softnet_dropped")
    return {k: after[k] - before[k] for k in keys}


def wait_udp(port, secs=10, ns=()):
    """Waits until something in the namespace (see read_proc) is bound to UDP `port`."""
    hexport = f":{port:04X} "
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for f in ("/proc/net/udp", "/proc/net/udp6"):
            if hexport in read_proc(f, ns):
                time.sleep(0.2)
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing bound to UDP port {port}")


def load_avg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def _fmt_rate(r):
    if r is None:
        return "max"
    return f"{r / 1000:g}k"


def plot_recv(src, dst):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(src) as f:
        res = json.load(f)
    rows = res["summary"]
    receivers = []
    for r in rows:
        if r["receiver"] not in receivers:
            receivers.append(r["receiver"])
    rates = []
    for r in rows:
        if r["rate"] not in rates:
            rates.append(r["rate"])
    labels = [_fmt_rate(r) for r in rates]
    colors = {
        "raw_recvmmsg": "#555555",
        "canmc uring": "#1f77b4",
        "canmc mmsg": "#2ca02c",
        "canmc record": "#9467bd",
        "python-can": "#d62728",
    }
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 11), sharex=True)
    width = 0.8 / max(1, len(receivers))
    for i, name in enumerate(receivers):
        xs, fps, loss, sent = [], [], [], []
        for j, rate in enumerate(rates):
            m = [r for r in rows if r["receiver"] == name and r["rate"] == rate]
            if not m:
                continue
            xs.append(j + (i - (len(receivers) - 1) / 2) * width)
            fps.append(m[0]["recv_fps"] / 1e3)
            sent.append(m[0]["sent_fps"] / 1e3)
            loss.append(m[0]["loss_pct"])
        c = colors.get(name)
        bars = ax1.bar(xs, fps, width, label=name, color=c)
        for b, v in zip(bars, fps):
            ax1.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                         ha="center", va="bottom", fontsize=7)
        # What the sender reached while this receiver ran (it shares the CPUs).
        ax1.hlines(sent, [x - width / 2 for x in xs], [x + width / 2 for x in xs],
                   colors="black", linewidth=2,
                   label="sent by gen (same run)" if i == 0 else None)
        cpu = [m["cpu_ns_per_frame"] or 0 for rate in rates
               for m in [r for r in rows if r["receiver"] == name and r["rate"] == rate]]
        cb = ax3.bar(xs, cpu, width, label=name, color=c)
        for b, v in zip(cb, cpu):
            ax3.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                         ha="center", va="bottom", fontsize=7)
        lb = ax2.bar(xs, loss, width, label=name, color=c)
        for b, v in zip(lb, loss):
            ax2.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                         ha="center", va="bottom", fontsize=7)
    ax1.set_ylabel("received frames/s (thousands)")
    ax1.set_title(
        "python-can format receive on loopback multicast, one `canmc gen` sender\n"
        f"(median round of {rows[0].get('rounds', 1)}; "
        f"{res.get('host', {}).get('cores', '?')} cores, load average at start "
        f"{res.get('load_start', ['?'])[0]})"
    )
    ax1.legend(fontsize=8)
    ax1.grid(axis="y", alpha=0.3)
    ax2.set_ylabel("loss %")
    ax2.grid(axis="y", alpha=0.3)
    ax3.set_ylabel("receiver CPU ns per frame (log)")
    ax3.set_yscale("log")
    ax3.set_xlabel("offered rate (frames/s)")
    ax3.set_xticks(range(len(rates)))
    ax3.set_xticklabels(labels)
    ax3.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


def plot_latency(src, dst):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(src) as f:
        res = json.load(f)
    rows = res["results"]
    pcts = ["p50_us", "p99_us", "p999_us"]
    fig, ax = plt.subplots(figsize=(9, 5))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(pcts))]
        vals = [r[p] for p in pcts]
        bars = ax.bar(xs, vals, width, label=r["name"])
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(pcts)))
    ax.set_xticklabels(["p50", "p99", "p99.9"])
    ax.set_yscale("log")
    ax.set_ylabel("one-way latency, µs (log scale)")
    ax.set_title(
        f"send → consumer latency on loopback multicast, {res.get('rate', '?'):g} msgs/s, "
        f"{res.get('seconds', '?'):g} s each in {res.get('rounds', 1)} rounds\n"
        f"(load average {', '.join(str(x) for x in res.get('loadavg', []))})"
    )
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


def md_recv(src):
    """The docs/perf.md tables of a bench_recv.py result."""
    with open(src) as f:
        res = json.load(f)
    out = ["| offered | receiver | sent/s | received/s | loss % | CPU ns/frame | "
           "recv/s vs raw | delivered vs raw | CPU vs raw |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["summary"]:
        cpu = f"{s['cpu_ns_per_frame']:,.0f}" if s.get("cpu_ns_per_frame") else "-"
        out.append(
            f"| {_fmt_rate(s['rate'])} | {s['receiver']} | {s['sent_fps']:,.0f} | "
            f"{s['recv_fps']:,.0f} | {s['loss_pct']:.2f} | {cpu} | "
            f"{s.get('fps_vs_raw', 0):.3f} | {s.get('delivered_vs_raw', 0):.3f} | "
            f"{s.get('cpu_vs_raw', 0):.2f} |")
    ll = res.get("lossless_fps", {})
    med, strict = ll.get("median_of_rounds", {}), ll.get("strict", {})
    out += ["", "| receiver | median over the rounds | strict (no loss in any round) |",
            "|---|---:|---:|"]
    for k in sorted(med, key=lambda k: -med[k]):
        out.append(f"| {k} | {med[k]:,.0f}/s | "
                   + (f"{strict[k]:,.0f}/s" if strict.get(k) else "none") + " |")
    return "\n".join(out)


def md_latency(src):
    """The docs/perf.md table of a latency bench result."""
    with open(src) as f:
        res = json.load(f)
    out = ["| receiver | received/sent | p50 µs | p99 µs | p99.9 µs | max µs | p50 / raw | "
           "p99 / raw | p99.9 / raw |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in res["results"]:
        out.append(
            f"| {x['name']} | {x['received']}/{x['sent']} | {x['p50_us']:.1f} | "
            f"{x['p99_us']:.1f} | {x['p999_us']:.0f} | {x['max_us']:.0f} | "
            f"{x['p50_vs_raw']:.2f} | {x['p99_vs_raw']:.2f} | {x['p999_vs_raw']:.2f} |")
    return "\n".join(out)


def main():
    cmds = {"plot-recv": plot_recv, "plot-latency": plot_latency}
    if len(sys.argv) == 3 and sys.argv[1] in ("md-recv", "md-latency"):
        print({"md-recv": md_recv, "md-latency": md_latency}[sys.argv[1]](sys.argv[2]))
        return
    if len(sys.argv) != 4 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
