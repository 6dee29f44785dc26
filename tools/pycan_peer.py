#!/usr/bin/env python3
"""python-can peer for canmc's interop tests.

Runs real python-can (`can.interfaces.udp_multicast.UdpMulticastBus`) so that the tests
check canmc against the implementation it must be compatible with, not against itself.
Meant to run inside `tools/netlab.sh run` (python-can cannot choose an interface: inside
the lab namespace its defaults go where canmc's `--iface lo` / `--iface v0` go).

Subcommands:

  kinds
      Print one line per frame kind, `IFNAME ID#DATA`, the same list `send` sends.
  send --group G --port P [--kinds all] [--gap S] [--hop-limit N]
      Send every frame kind through python-can and print, for each, the candump log
      line canmc is expected to print for it, without the `(timestamp) ` prefix.
  recv --group G --port P --count N --timeout S [--linger S] [--ready-file F] [--quiet]
      Receive N messages with python-can (which validates each with check=True) and
      print each as one JSON line. Exit 0 only if exactly N arrived (also during the
      --linger time after the N-th) and python-can raised nothing.

The line format is canmc's `dump -L` (see cli-spec): IFNAME is the channel string,
`can<N>` for an integer channel, `vcan0` without one; IDs have 3 hex digits (standard)
or 8 (extended, and error frames with 0x20000000 set); FD frames use `##<nibble>` with
FDF=4, BRS=1, ESI=2; remote frames `ID#R` or `ID#R<len>`; hex is uppercase.
"""

import argparse
import json
import os
import sys
import time

import can
from can.interfaces.udp_multicast import UdpMulticastBus

FD_LENGTHS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64]
CAN_ERR_FLAG = 0x20000000


def ifname(channel):
    if channel is None:
        return "vcan0"
    if isinstance(channel, bool):
        raise ValueError(f"bool channel {channel!r}")
    if isinstance(channel, int):
        return f"can{channel}"
    return str(channel)


def to_line(msg):
    """candump log line of a python-can message, without the timestamp."""
    if msg.is_error_frame:
        ident = f"{CAN_ERR_FLAG | msg.arbitration_id:08X}"
    elif msg.is_extended_id:
        ident = f"{msg.arbitration_id:08X}"
    else:
        ident = f"{msg.arbitration_id:03X}"
    if msg.is_remote_frame:
        body = "R" if msg.dlc == 0 else f"R{msg.dlc:X}"
    elif msg.is_fd:
        nibble = 4 | (1 if msg.bitrate_switch else 0) | (2 if msg.error_state_indicator else 0)
        body = f"#{nibble:X}" + bytes(msg.data).hex().upper()
    else:
        body = bytes(msg.data).hex().upper()
    return f"{ifname(msg.channel)} {ident}#{body}"


def pattern(n, seed):
    return bytes((seed + 7 * i) & 0xFF for i in range(n))


def all_kinds():
    """Every frame kind of SPEC §1, with channels none / "can1" / 3 spread over them."""
    m = []

    def add(**kw):
        kw.setdefault("is_extended_id", False)
        m.append(kw)

    # Classic data frames: standard and extended IDs, every length 0..8, ID edges.
    add(arbitration_id=0x123, data=bytes.fromhex("DEADBEEF"))
    add(arbitration_id=0x000, data=b"")
    add(arbitration_id=0x7FF, data=pattern(8, 0xF0))
    for n in range(9):
        add(arbitration_id=0x100 + n, data=pattern(n, n))
    add(arbitration_id=0x12345678, is_extended_id=True, data=pattern(8, 0x11))
    add(arbitration_id=0x00000001, is_extended_id=True, data=b"\x00")
    add(arbitration_id=0x1FFFFFFF, is_extended_id=True, data=b"")
    add(arbitration_id=0x00000123, is_extended_id=True, data=bytes.fromhex("AB"))
    # Remote frames: with a requested length and with 0.
    add(arbitration_id=0x123, is_remote_frame=True, dlc=4)
    add(arbitration_id=0x124, is_remote_frame=True, dlc=0)
    add(arbitration_id=0x7FF, is_remote_frame=True, dlc=8)
    add(arbitration_id=0x1ABCDEF0, is_extended_id=True, is_remote_frame=True, dlc=8)
    add(arbitration_id=0x00000042, is_extended_id=True, is_remote_frame=True, dlc=0)
    # Error frames: SocketCAN error classes, 8 data bytes.
    add(arbitration_id=0x080, is_extended_id=True, is_error_frame=True, data=bytes(8))
    add(
        arbitration_id=0x004,
        is_extended_id=True,
        is_error_frame=True,
        data=bytes.fromhex("0004000000000000"),
    )
    add(arbitration_id=0x1FF, is_extended_id=True, is_error_frame=True, data=pattern(8, 3))
    # CAN FD at every allowed length, with every BRS/ESI combination, std and ext IDs.
    for i, n in enumerate(FD_LENGTHS):
        for flags in range(4):
            brs, esi = bool(flags & 1), bool(flags & 2)
            ext = (i + flags) % 2 == 1
            ident = (0x1F000000 | (n << 8) | flags) if ext else (0x200 + 4 * i + flags)
            add(
                arbitration_id=ident,
                is_extended_id=ext,
                is_fd=True,
                bitrate_switch=brs,
                error_state_indicator=esi,
                data=pattern(n, n + flags),
            )
    channels = [None, "can1", 3]
    msgs = []
    for i, kw in enumerate(m):
        msgs.append(can.Message(channel=channels[i % 3], check=True, **kw))
    return msgs


def make_bus(args):
    return UdpMulticastBus(channel=args.group, port=args.port, hop_limit=args.hop_limit)


def cmd_kinds(_args):
    for msg in all_kinds():
        print(to_line(msg))
    return 0


def cmd_send(args):
    msgs = all_kinds()
    bus = make_bus(args)
    try:
        for msg in msgs:
            msg.timestamp = time.time()
            bus.send(msg)
            print(to_line(msg), flush=True)
            if args.gap > 0:
                time.sleep(args.gap)
    finally:
        bus.shutdown()
    return 0


def as_json(msg):
    return json.dumps(
        {
            "arbitration_id": msg.arbitration_id,
            "is_extended_id": msg.is_extended_id,
            "is_remote_frame": msg.is_remote_frame,
            "is_error_frame": msg.is_error_frame,
            "dlc": msg.dlc,
            "data": bytes(msg.data).hex().upper(),
            "is_fd": msg.is_fd,
            "bitrate_switch": msg.bitrate_switch,
            "error_state_indicator": msg.error_state_indicator,
            "channel": msg.channel,
            "timestamp": msg.timestamp,
            "line": to_line(msg),
        },
        separators=(",", ":"),
    )


def cmd_recv(args):
    bus = make_bus(args)
    got = 0
    try:
        if args.ready_file:
            with open(args.ready_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        deadline = time.monotonic() + args.timeout
        while got < args.count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msg = bus.recv(timeout=min(left, 0.5))
            if msg is None:
                continue
            got += 1
            if not args.quiet:
                print(as_json(msg), flush=False)
        sys.stdout.flush()
        extra = 0
        linger_end = time.monotonic() + args.linger
        while True:
            left = linger_end - time.monotonic()
            if left <= 0:
                break
            msg = bus.recv(timeout=left)
            if msg is not None:
                extra += 1
                print(as_json(msg), flush=True)
    finally:
        bus.shutdown()
    if got < args.count:
        print(f"pycan_peer recv: only {got} of {args.count} messages arrived", file=sys.stderr)
        return 1
    if extra:
        print(f"pycan_peer recv: {extra} messages more than {args.count}", file=sys.stderr)
        return 1
    print(f"pycan_peer recv: {got} messages", file=sys.stderr)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("kinds")
    for name in ("send", "recv"):
        s = sub.add_parser(name)
        s.add_argument("--group", default=UdpMulticastBus.DEFAULT_GROUP_IPv6)
        s.add_argument("--port", type=int, default=43113)
        s.add_argument("--hop-limit", type=int, default=1)
        if name == "send":
            s.add_argument("--kinds", choices=["all"], default="all")
            s.add_argument("--gap", type=float, default=0.0, help="seconds between frames")
        else:
            s.add_argument("--count", type=int, required=True)
            s.add_argument("--timeout", type=float, required=True)
            s.add_argument("--linger", type=float, default=0.0)
            s.add_argument("--ready-file")
            s.add_argument("--quiet", action="store_true", help="no JSON lines")
    args = p.parse_args()
    return {"kinds": cmd_kinds, "send": cmd_send, "recv": cmd_recv}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
