#!/usr/bin/env python3
"""bench_capture_replay.py — canmc's capture and replay beside tcpdump, tcpreplay and
python-can, in one run, inside a private network namespace (SPEC §10).

Usage (as root, from the repository):
    CANMC_PYTHON=/tmp/venv/bin/python tools/bench_capture_replay.py \
        [--canmc target/release/canmc] [--secs 10] [--out docs/perf/capture-replay.json]

The script re-executes itself inside `tools/netlab.sh run` (lo up, 224.0.0.0/4 via lo),
so every packet stays in a namespace it made; canmc uses `--iface lo` (127.0.0.1, TTL 0)
and group 239.74.163.2. It needs tcpdump, tcpreplay, and a python with python-can,
msgpack and matplotlib (the interpreter running it).

Figures (each a list of runs in the JSON):
  capture   the same python-can-format stream (`canmc gen -L 8`, several rates and the
            unpaced maximum) captured at once by `canmc record -o x.cmc` and
            `tcpdump -i lo -w x.pcap udp port P`: frames kept, drops, CPU ns per frame.
  native    `canmc gen --wire native -L 8 --rate R` -> `canmc record`, SECS seconds each;
            lossless means frames recorded == sent, seq_gaps == kernel_drops == 0.
  replay    `canmc replay --fast` (python-can format and native) of a capture vs
            `tcpreplay --topspeed -i lo` of the same frames as a pcap; frames/s.
  timing    a 5 000-frame candump log with 1–2 ms random gaps played at 1× by
            `canmc replay`, python-can's `can.player` and `tcpreplay`; a `canmc dump -L`
            receiver's kernel timestamps give the inter-frame interval error.
  disk      bytes per frame of .cmc, .log, .pcapng, .pcap for the same frames.

Why a synthetic pcap for tcpreplay: lo offloads UDP GSO, so tcpdump on lo stores a GSO
sender's batches as one oversized packet each, which tcpreplay would send as one datagram
that no receiver can decode. The pcap is written here from the capture's frames, one
Ethernet/IPv4/UDP packet per frame with the payload python-can's own `pack_message` gives.
"""

import argparse
import json
import os
import platform
import random
import struct
import subprocess
import sys
import time

GROUP = "239.74.163.2"
SYNTH_SRC = (10, 99, 0, 9)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
from bench_common import Load, Proc, counter_delta, kernel_counters, wait_udp  # noqa: E402


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and CPU


def tcpdump_stats(text):
    st = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "packets":
            key = " ".join(parts[2:])
            st[{"captured": "captured", "received by filter": "received_by_filter",
                "dropped by kernel": "dropped_by_kernel"}.get(key, key)] = int(parts[0])
    return st


# ---------------------------------------------------------------- pcap helpers


def pcap_frames(path):
    """(packets, python-can frames) in an EN10MB pcap of UDP/IPv4: the payloads are
    decoded as a stream of msgpack maps, so a GSO batch stored as one packet counts as
    the frames it carries."""
    import msgpack

    packets = frames = bad = 0
    with open(path, "rb") as f:
        hdr = f.read(24)
        magic = struct.unpack("<I", hdr[:4])[0]
        end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        while True:
            rh = f.read(16)
            if len(rh) < 16:
                break
            _, _, incl, _ = struct.unpack(end + "IIII", rh)
            pkt = f.read(incl)
            packets += 1
            ihl = (pkt[14] & 0x0F) * 4
            payload = pkt[14 + ihl + 8:]
            up = msgpack.Unpacker(raw=False)
            up.feed(payload)
            try:
                for _ in up:
                    frames += 1
            except Exception:
                bad += 1
    return {"packets": packets, "frames": frames, "undecodable_packets": bad}


def ip_checksum(b):
    s = sum(struct.unpack("!10H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def write_pcap(msgs, path, port):
    """One Ethernet/IPv4/UDP packet per can.Message (python-can's payload) at the
    message's timestamp, SYNTH_SRC -> GROUP:port, TTL 1.

    The source is not 127.0.0.1 (what tcpdump sees on lo): the kernel drops multicast
    arriving with a loopback or local source on input as martian, so tcpreplay of a raw
    lo capture delivers nothing to any socket. 10.99.0.9 is an unused address of the
    lab's v0 subnet."""
    from can.interfaces.udp_multicast.utils import pack_message

    g = [int(x) for x in GROUP.split(".")]
    dst_mac = bytes([0x01, 0x00, 0x5E, g[1] & 0x7F, g[2], g[3]])
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))  # ns pcap
        for m in msgs:
            payload = pack_message(m)
            udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
            iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 1, 17, 0,
                              bytes(SYNTH_SRC), bytes(g))
            iph = iph[:10] + struct.pack("!H", ip_checksum(iph)) + iph[12:]
            pkt = dst_mac + b"\x00" * 6 + b"\x08\x00" + iph + udp
            ns = int(round(m.timestamp * 1e9))
            f.write(struct.pack("<IIII", ns // 10**9, ns % 10**9, len(pkt), len(pkt)))
            f.write(pkt)


def read_log(path):
    import can

    return list(can.LogReader(path))


def file_size(path):
    """Bytes of a capture, with .cmc segment files FILE.1, FILE.2, ... counted."""
    total, i = 0, 0
    p = path
    while os.path.exists(p):
        total += os.path.getsize(p)
        i += 1
        p = f"{path}.{i}"
    return total


def rm(path):
    i, p = 0, path
    while os.path.exists(p):
        os.remove(p)
        i += 1
        p = f"{path}.{i}"


# ---------------------------------------------------------------- the figures


class Bench:
    def __init__(self, args):
        self.c = args.canmc
        self.d = args.tmp
        self.secs = args.secs
        self.port = 43113
        self.net = ["--iface", "lo", "--port", str(self.port)]

    def path(self, name):
        return os.path.join(self.d, name)

    def canmc(self, *a):
        return [self.c, *a]

    def record(self, out, name, extra=()):
        rec = Proc(self.canmc("record", *self.net, "-o", out, "--json", *extra),
                   self.path(name + ".rec.out"), self.path(name + ".rec.err"))
        wait_udp(self.port)
        return rec

    # a) canmc record vs tcpdump -w on the same stream
    def capture(self, rates):
        runs = []
        for rate in rates:
            name = f"cap-{rate or 'max'}"
            n = 1_000_000 if rate is None else max(40_000, 2 * rate)
            cmc, pcap = self.path(name + ".cmc"), self.path(name + ".pcap")
            with Load() as load:
                k0 = kernel_counters()
                td = Proc(["tcpdump", "-i", "lo", "-Z", "root", "-w", pcap,
                           "udp", "port", str(self.port)],
                          self.path(name + ".td.out"), self.path(name + ".td.err"))
                rec = self.record(cmc, name)
                time.sleep(0.3)  # tcpdump's filter is attached by now
                gen_cmd = self.canmc("gen", *self.net, "-L", "8", "-n", str(n), "--json")
                if rate:
                    gen_cmd += ["--rate", str(rate)]
                gen = Proc(gen_cmd, self.path(name + ".gen.out"), self.path(name + ".gen.err"))
                gen.wait()
                time.sleep(0.5)
                rec.signal()
                td.signal()
                rec.wait()
                td.wait()
            g, r = gen.summary(), rec.summary()
            ts = tcpdump_stats(td.stderr())
            pf = pcap_frames(pcap)
            run = {
                "offered_rate": rate, "sent": g["frames"], "gen_rate_fps": g["rate_fps"],
                "canmc": {"frames": r["frames"], "kernel_drops": r["kernel_drops"],
                          "ring_drops": r["ring_drops"], "cpu_s": rec.cpu_s,
                          "cpu_ns_per_frame": 1e9 * rec.cpu_s / max(1, r["frames"]),
                          "file_bytes": file_size(cmc)},
                "tcpdump": {**ts, **pf, "cpu_s": td.cpu_s,
                            "cpu_ns_per_frame": 1e9 * td.cpu_s / max(1, pf["frames"]),
                            "file_bytes": os.path.getsize(pcap)},
                "gen_cpu_s": gen.cpu_s, **load.info(), "kernel": counter_delta(k0),
                "commands": [" ".join(gen.cmd), " ".join(rec.cmd), " ".join(td.cmd)],
            }
            log("capture", json.dumps(run))
            runs.append(run)
            rm(cmc)
            os.remove(pcap)
        return runs

    # b) native gen -> record, sustained
    def native_run(self, rate):
        name = f"nat-{rate or 'max'}"
        cmc = self.path(name + ".cmc")
        with Load() as load:
            k0 = kernel_counters()
            rec = self.record(cmc, name)
            cmd = self.canmc("gen", *self.net, "--wire", "native", "-L", "8", "--json")
            if rate:
                cmd += ["--rate", str(rate), "-n", str(int(rate * self.secs))]
                gen = Proc(cmd, self.path(name + ".gen.out"), self.path(name + ".gen.err"))
            else:
                gen = Proc(cmd, self.path(name + ".gen.out"), self.path(name + ".gen.err"))
                time.sleep(self.secs)
                gen.signal()
            gen.wait(timeout=self.secs * 4 + 30)
            time.sleep(1.0)
            rec.signal()
            rec.wait()
        g, r = gen.summary(), rec.summary()
        lossless = (r["frames"] == g["frames"] and r["seq_gaps"] == 0
                    and r["kernel_drops"] == 0 and r["ring_drops"] == 0)
        run = {
            "offered_rate": rate, "sent": g["frames"], "gen_elapsed_s": g["elapsed_s"],
            "gen_rate_fps": g["rate_fps"], "recorded": r["frames"],
            "recorded_fps": r["frames"] / max(1e-9, g["elapsed_s"]),
            "seq_gaps": r["seq_gaps"], "kernel_drops": r["kernel_drops"],
            "ring_drops": r["ring_drops"], "datagrams": r["datagrams"], "lossless": lossless,
            "record_cpu_s": rec.cpu_s, "gen_cpu_s": gen.cpu_s,
            "file_bytes": file_size(cmc), **load.info(), "kernel": counter_delta(k0),
            "commands": [" ".join(gen.cmd), " ".join(rec.cmd)],
        }
        log("native", json.dumps(run))
        rm(cmc)
        return run

    def native(self, ladder):
        runs = [self.native_run(None)]
        top = runs[0]["gen_rate_fps"]
        for rate in ladder:
            if rate > top * 1.3:
                log(f"native: skip --rate {rate}, above the unpaced max {top:.0f}")
                continue
            runs.append(self.native_run(rate))
        return runs

    # c) replay as fast as possible vs tcpreplay --topspeed
    def replay(self, frames=200_000, loops_pycan=10, loops_native=50):
        cap = self.path("src.cmc")
        rec = self.record(cap, "src", ["-n", str(frames)])
        gen = Proc(self.canmc("gen", *self.net, "-L", "8", "-n", str(frames),
                              "--rate", "100000", "--json"),
                   self.path("src.gen.out"), self.path("src.gen.err"))
        gen.wait()
        rec.wait(timeout=10)
        srclog, pcap = self.path("src.log"), self.path("src.pcap")
        subprocess.run([self.c, "convert", cap, srclog], check=True)
        write_pcap(read_log(srclog), pcap, self.port)
        runs = []
        cases = [
            ("canmc replay --fast (python-can)",
             self.canmc("replay", *self.net, "--fast", "--loop", str(loops_pycan), "--json",
                        cap), frames * loops_pycan),
            ("canmc replay --fast --wire native",
             self.canmc("replay", *self.net, "--fast", "--wire", "native", "--loop",
                        str(loops_native), "--json", cap), frames * loops_native),
            ("tcpreplay --topspeed",
             ["tcpreplay", "--topspeed", "-i", "lo", "--loop", str(loops_pycan), pcap],
             frames * loops_pycan),
        ]
        for label, cmd, expect in cases:
            name = "rp-" + label.split()[0] + str(len(runs))
            with Load() as load:
                rx = self.record(self.path(name + ".cmc"), name)
                p = Proc(cmd, self.path(name + ".out"), self.path(name + ".err"))
                p.wait(timeout=300)
                time.sleep(0.5)
                rx.signal()
                rx.wait()
            r = rx.summary()
            if cmd[0] == "tcpreplay":
                out = p.stdout()
                act = [l for l in out.splitlines() if l.strip().startswith("Actual:")][0]
                sent = int(act.split()[1])
                secs = float(act.split("sent in")[1].split()[0])
                fps = sent / secs
            else:
                s = p.summary()
                sent, secs, fps = s["frames"], s["elapsed_s"], s["rate_fps"]
            run = {"player": label, "sent": sent, "expected": expect, "elapsed_s": secs,
                   "fps": fps, "sender_cpu_s": p.cpu_s, "received": r["frames"],
                   "receiver_kernel_drops": r["kernel_drops"],
                   "receiver_seq_gaps": r["seq_gaps"], "receiver_ring_drops": r["ring_drops"],
                   "receiver_decode_errors": r["decode_errors_total"], **load.info(),
                   "command": " ".join(cmd)}
            log("replay", json.dumps(run))
            runs.append(run)
            rm(self.path(name + ".cmc"))
        return runs, cap, srclog

    # d) replay timing at 1x
    def make_timing_log(self, path, n=5000, seed=7):
        rnd = random.Random(seed)
        t = 1_700_000_000.0
        lines = []
        for i in range(n):
            t += rnd.uniform(0.001, 0.002)
            idx = i.to_bytes(2, "big")
            k = i % 4
            if k == 0:
                body = f"{0x100 + i % 0x600:03X}#{(idx + bytes(6)).hex().upper()}"
            elif k == 1:
                body = f"{0x18DA0000 + i:08X}#{(idx + bytes(2)).hex().upper()}"
            elif k == 2:
                body = f"{0x200 + i % 0x100:03X}##1{(idx + bytes(14)).hex().upper()}"
            else:
                body = f"{0x300:03X}#{idx.hex().upper()}"
            lines.append(f"({t:.6f}) vcan0 {body}")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return [float(l[1:18]) for l in lines]

    def timing(self, py, reps=1):
        lg, pcap = self.path("timing.log"), self.path("timing.pcap")
        file_ts = self.make_timing_log(lg)
        write_pcap(read_log(lg), pcap, self.port)
        n = len(file_ts)
        plain = [
            ("canmc replay", self.canmc("replay", *self.net, "--json", lg)),
            ("python-can can.player", [py, "-m", "can.player", "-i", "udp_multicast",
                                       "-c", GROUP, lg]),
            ("tcpreplay", ["tcpreplay", "-i", "lo", pcap]),
        ]
        # The same three again under SCHED_FIFO: on a loaded machine the plain runs
        # measure the scheduler as much as the players.
        cases = plain + [(label + " (chrt -f 10)", ["chrt", "-f", "10", *cmd])
                         for label, cmd in plain]
        runs = []
        # Repetitions interleave the players, so each sees the same spread of load.
        for rep, (label, cmd) in [(r, c) for r in range(1, reps + 1) for c in cases]:
            name = "tm" + str(len(runs))
            with Load() as load:
                rx = Proc(self.canmc("dump", *self.net, "-L", "-n", str(n), "--duration",
                                     "40"), self.path(name + ".rx"), self.path(name + ".rxerr"))
                wait_udp(self.port)
                p = Proc(cmd, self.path(name + ".out"), self.path(name + ".err"))
                p.wait(timeout=60)
                rx.wait(timeout=45)
            got = {}
            for line in open(self.path(name + ".rx")):
                parts = line.split()
                if len(parts) < 3:
                    continue
                ts = float(parts[0][1:-1])
                data = parts[2].split("#", 1)[1].lstrip("#")
                if parts[2].split("#", 1)[1].startswith("#"):
                    data = data[1:]  # FD flag nibble
                got[int(data[:4], 16)] = ts
            errs = []
            for i in range(n - 1):
                if i in got and i + 1 in got:
                    errs.append((got[i + 1] - got[i]) - (file_ts[i + 1] - file_ts[i]))
            a = sorted(abs(e) for e in errs)

            def pct(q):
                return a[min(len(a) - 1, int(q * len(a)))] * 1e6 if a else None

            span = None
            if 0 in got and n - 1 in got:
                span = (got[n - 1] - got[0]) - (file_ts[-1] - file_ts[0])
            run = {"player": label, "rep": rep, "received": len(got), "frames": n,
                   "intervals": len(errs), "p50_us": pct(0.50), "p90_us": pct(0.90),
                   "p99_us": pct(0.99), "max_us": a[-1] * 1e6 if a else None,
                   "total_span_error_ms": span * 1e3 if span is not None else None,
                   "player_cpu_s": p.cpu_s, "player_rc": p.rc, **load.info(),
                   "command": " ".join(cmd),
                   "abs_errors_us_sorted_sample": [round(x * 1e6, 2) for x in a[:: max(1, len(a) // 400)]]}
            log("timing", json.dumps({k: v for k, v in run.items()
                                      if k != "abs_errors_us_sorted_sample"}))
            runs.append(run)
        return runs, lg

    # e) bytes per frame on disk
    def disk(self, sources):
        out = []
        for label, src in sources:
            info = json.loads(subprocess.run([self.c, "info", "--json", src], check=True,
                                             capture_output=True, text=True).stdout)
            frames = info["frames"]
            row = {"source": label, "frames": frames}
            base = os.path.splitext(src)[0] + "-disk"
            for ext in ("cmc", "log", "pcapng", "pcap"):
                dst = f"{base}.{ext}"
                r = subprocess.run([self.c, "convert", src, dst], capture_output=True, text=True)
                if r.returncode != 0:
                    row[ext] = {"error": r.stderr.strip()[:200]}
                else:
                    row[ext] = round(file_size(dst) / frames, 2)
                    rm(dst)
            log("disk", json.dumps(row))
            out.append(row)
        return out


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 9))
    cap = res["capture"]
    labels = [str(r["offered_rate"] or "max") for r in cap]
    x = range(len(cap))
    a = ax[0][0]
    a.bar([i - 0.2 for i in x], [r["canmc"]["cpu_ns_per_frame"] for r in cap], 0.4,
          label="canmc record CPU ns/frame")
    a.bar([i + 0.2 for i in x], [r["tcpdump"]["cpu_ns_per_frame"] for r in cap], 0.4,
          label="tcpdump -w CPU ns/frame")
    for i, r in enumerate(cap):
        a.annotate(f"lost {r['sent'] - r['canmc']['frames']}", (i - 0.2, 0), fontsize=7,
                   rotation=90, va="bottom")
        a.annotate(f"lost {r['sent'] - r['tcpdump']['frames']}", (i + 0.2, 0), fontsize=7,
                   rotation=90, va="bottom")
    a.set_xticks(list(x), labels)
    a.set_xlabel("offered frames/s (python-can format)")
    a.set_title("a) capture of one stream: CPU per frame (lost frames in bars)")
    a.legend(fontsize=8)

    a = ax[0][1]
    nat = res["native"]
    for r in nat:
        off = r["offered_rate"] or r["gen_rate_fps"]
        a.scatter([off / 1e6], [r["recorded_fps"] / 1e6], marker="o" if r["lossless"] else "x",
                  color="g" if r["lossless"] else "r", s=60)
        a.annotate("max" if r["offered_rate"] is None else "", (off / 1e6, r["recorded_fps"] / 1e6))
    a.axhline(10, ls="--", color="k", lw=0.8, label="target 10 M")
    a.axhline(20, ls=":", color="k", lw=0.8, label="aim 20 M")
    a.set_xlabel("offered M frames/s (native, 8-byte)")
    a.set_ylabel("recorded M frames/s")
    a.set_title("b) native gen -> record (o lossless, x lost)")
    a.legend(fontsize=8)

    a = ax[1][0]
    rp = res["replay"]
    a.barh([r["player"] for r in rp], [r["fps"] / 1e6 for r in rp])
    a.set_xlabel("M frames/s sent")
    a.set_title("c) replay as fast as possible")

    a = ax[1][1]
    for r in res["timing"]:
        if r.get("rep", 1) != 1:
            continue
        s = r["abs_errors_us_sorted_sample"]
        if s:
            a.plot(s, [i / len(s) for i in range(len(s))], label=r["player"])
    a.axvline(50, ls="--", color="k", lw=0.8, label="target p99 50 µs")
    a.set_xscale("log")
    a.set_xlabel("|inter-frame interval error| µs (receiver kernel timestamps)")
    a.set_ylabel("fraction of intervals")
    a.set_title("d) replay timing at 1× (CDF, repetition 1)")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def tables(res):
    """Markdown tables of a result JSON, as docs/perf/capture-replay.md shows them."""
    out = []
    if "capture" in res:
        out += ["| offered fps | sent | canmc kept | canmc kernel_drops | canmc CPU ns/frame "
                "| tcpdump packets | tcpdump frames | tcpdump dropped (packets) "
                "| tcpdump CPU ns/frame | ns UDP RcvbufErrors | softnet drops |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["capture"]:
            c, t, k = r["canmc"], r["tcpdump"], r.get("kernel", {})
            out.append(f"| {r['offered_rate'] or 'max (%.0f)' % r['gen_rate_fps']} | {r['sent']} "
                       f"| {c['frames']} | {c['kernel_drops']} | {c['cpu_ns_per_frame']:.0f} "
                       f"| {t['packets']} | {t['frames']} | {t.get('dropped_by_kernel')} "
                       f"| {t['cpu_ns_per_frame']:.0f} | {k.get('RcvbufErrors', '')} "
                       f"| {k.get('softnet_dropped', '')} |")
        out.append("")
    if "native" in res:
        out += ["| offered fps | sent | recorded | recorded fps | seq_gaps | kernel_drops "
                "| ring_drops | lossless | record CPU s | ns UDP RcvbufErrors |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["native"]:
            k = r.get("kernel", {})
            off = r["offered_rate"] or "unpaced (%.0f)" % r["gen_rate_fps"]
            out.append(f"| {off} | {r['sent']} | {r['recorded']} | {r['recorded_fps']:.0f} "
                       f"| {r['seq_gaps']} | {r['kernel_drops']} | {r['ring_drops']} "
                       f"| {'yes' if r['lossless'] else 'no'} | {r['record_cpu_s']:.2f} "
                       f"| {k.get('RcvbufErrors', '')} |")
        out.append("")
    if "replay" in res:
        out += ["| player | frames sent | seconds | frames/s | sender CPU s | receiver got "
                "| receiver drops (kernel/ring) |", "|---|---|---|---|---|---|---|"]
        for r in res["replay"]:
            out.append(f"| {r['player']} | {r['sent']} | {r['elapsed_s']:.3f} | {r['fps']:.0f} "
                       f"| {r['sender_cpu_s']:.2f} | {r['received']} "
                       f"| {r['receiver_kernel_drops']}/{r.get('receiver_ring_drops', '')} |")
        out.append("")
    if "timing" in res:
        out += ["| player | rep | received | p50 µs | p90 µs | p99 µs | max µs "
                "| total span error ms |", "|---|---|---|---|---|---|---|---|"]
        for r in res["timing"]:
            f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
            out.append(f"| {r['player']} | {r.get('rep', 1)} | {r['received']} "
                       f"| {f(r['p50_us'])} | {f(r['p90_us'])} | {f(r['p99_us'])} "
                       f"| {f(r['max_us'])} | {r['total_span_error_ms']:.2f} |")
        out.append("")
    if "disk" in res:
        out += ["| frames of | count | .cmc | .log | .pcapng | .pcap |", "|---|---|---|---|---|---|"]
        for r in res["disk"]:
            v = lambda x: x if not isinstance(x, dict) else "n/a"  # noqa: E731
            out.append(f"| {r['source']} | {r['frames']} | {v(r['cmc'])} | {v(r['log'])} "
                       f"| {v(r['pcapng'])} | {v(r['pcap'])} |")
    return "\n".join(out)


def version(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return ((r.stdout + r.stderr).strip().splitlines() or ["?"])[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canmc", default=os.path.join(REPO, "target/release/canmc"))
    ap.add_argument("--secs", type=float, default=10.0, help="native run length")
    ap.add_argument("--out", default=os.path.join(REPO, "docs/perf/capture-replay.json"))
    ap.add_argument("--tmp", default="/tmp/canmc-bench-cr")
    ap.add_argument("--only", default="capture,native,replay,timing,disk")
    ap.add_argument("--timing-reps", type=int, default=3)
    ap.add_argument("--rates", default="20000,100000,300000,max")
    ap.add_argument("--native-ladder", default="1000000,2000000,3000000,5000000,10000000,20000000")
    ap.add_argument("--tables", metavar="JSON", help="print markdown tables of a result and exit")
    args = ap.parse_args()
    if args.tables:
        print(tables(json.load(open(args.tables))))
        return
    args.canmc = os.path.abspath(args.canmc)
    if not os.environ.get("NETLAB_OUTER_NS"):
        os.execvp(os.path.join(REPO, "tools/netlab.sh"),
                  ["netlab.sh", "run", sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
    os.makedirs(args.tmp, exist_ok=True)
    os.chmod(args.tmp, 0o777)
    b = Bench(args)
    only = args.only.split(",")
    res = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "kernel": platform.release(), "cpus": os.cpu_count(),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "canmc": args.canmc,
        "tcpdump": version(["tcpdump", "--version"]),
        "tcpreplay": version(["tcpreplay", "-V"]),
        "python_can": __import__("can").__version__,
    }
    rates = [None if r == "max" else int(r) for r in args.rates.split(",")]
    with Load() as total:
        if "capture" in only:
            res["capture"] = b.capture(rates)
        if "native" in only:
            res["native"] = b.native([int(x) for x in args.native_ladder.split(",")])
        cap = srclog = lg = None
        if "replay" in only:
            res["replay"], cap, srclog = b.replay()
        if "timing" in only:
            res["timing"], lg = b.timing(sys.executable, args.timing_reps)
        if "disk" in only and cap:
            res["disk"] = b.disk([("gen -L 8 (classic 8-byte, random IDs) .cmc", cap),
                                  ("timing log (mixed std/ext/FD) .log", lg or srclog)])
    res["machine_busy_whole_run"] = round(total.busy, 3)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    if all(k in res for k in ("capture", "native", "replay", "timing")):
        plot(res, os.path.splitext(args.out)[0] + ".png")
    log("wrote", args.out)


if __name__ == "__main__":
    main()
