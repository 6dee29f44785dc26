#!/usr/bin/env python3
"""Golden datagrams for canmc's python-can wire format (tests/pycan_golden.rs).

Prints one line per case, fields separated by single spaces:

  E <name> <msg> <hex>        python-can's pack_message(msg) is <hex>: canmc must encode
                              the same frame to the same bytes.
  D <name> <hex> <msg>        a datagram in a form python-can's sender never produces
                              (shuffled keys, missing keys, data as a list, int timestamp,
                              unknown keys with nested values): canmc must decode it to <msg>.
  R <name> <hex> <kind>       a datagram python-can's receiver rejects (checked here):
                              canmc must reject it with DecodeError <kind>.

<msg> is 12 tokens: ns id ext rtr err fd brs esi dlc data channel, where the bools are 0/1,
data is hex ("-" when empty) and channel is "none", "i:<int>" or "s:<utf-8 as hex>".
Timestamps are integer ns; the message carries float(ns) / 1e9, as canmc computes it.
"""

import random
import sys
from fractions import Fraction

import msgpack
from can import Message
from can.interfaces.udp_multicast.utils import pack_message, unpack_message

FD_LENGTHS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64]
KEYS = [
    "timestamp",
    "arbitration_id",
    "is_extended_id",
    "is_remote_frame",
    "is_error_frame",
    "channel",
    "dlc",
    "data",
    "is_fd",
    "bitrate_switch",
    "error_state_indicator",
]


def msg(ns, id, ext=False, rtr=False, err=False, fd=False, brs=False, esi=False,
        dlc=None, data=b"", channel=None):
    return Message(timestamp=float(ns) / 1e9, arbitration_id=id, is_extended_id=ext,
                   is_remote_frame=rtr, is_error_frame=err, is_fd=fd, bitrate_switch=brs,
                   error_state_indicator=esi, dlc=dlc, data=data, channel=channel, check=True)


def channel_token(ch):
    if ch is None:
        return "none"
    if isinstance(ch, int):
        return f"i:{ch}"
    return "s:" + ch.encode("utf-8").hex()


def describe(m, ns=None):
    if ns is None:
        # The exact nearest ns of the float python-can holds.
        ns = round(Fraction(m.timestamp) * 10**9)
    b = lambda v: "1" if v else "0"
    return " ".join([
        str(ns), str(m.arbitration_id), b(m.is_extended_id), b(m.is_remote_frame),
        b(m.is_error_frame), b(m.is_fd), b(m.bitrate_switch), b(m.error_state_indicator),
        str(m.dlc), bytes(m.data).hex() or "-", channel_token(m.channel),
    ])


def encode_cases():
    """(name, ns, Message) covering every frame kind, int width and channel kind."""
    t = 1_700_000_000_123_456_789
    cases = []
    for n in range(9):
        cases.append((f"std_len{n}", t, msg(t, 0x123, data=bytes(range(0xA0, 0xA0 + n)))))
    for id in [0, 0x7F, 0x80, 0xFF, 0x100, 0x7FF]:
        cases.append((f"std_id_{id:x}", t, msg(t, id, data=b"\x01")))
    for id in [0, 0x800, 0xFFFF, 0x10000, 0x1234567, 0x1FFFFFFF]:
        cases.append((f"ext_id_{id:x}", t, msg(t, id, ext=True, data=b"\xde\xad\xbe\xef")))
    for n in [0, 1, 4, 8]:
        cases.append((f"rtr_std_len{n}", t, msg(t, 0x321, rtr=True, dlc=n)))
        cases.append((f"rtr_ext_len{n}", t, msg(t, 0x1ABCDEF0, ext=True, rtr=True, dlc=n)))
    cases.append(("error_frame", t, msg(t, 0x80, ext=True, err=True, data=bytes(8))))
    cases.append(("error_frame_classes", t,
                  msg(t, 0x1FFFFFFF, ext=True, err=True, data=bytes([1, 2, 3, 4, 5, 6, 7, 8]))))
    cases.append(("error_frame_short", t, msg(t, 0x4, ext=True, err=True, data=b"\x00\x10")))
    for n in FD_LENGTHS:
        for brs, esi in [(False, False), (True, False), (False, True), (True, True)]:
            data = bytes((i * 7 + n) & 0xFF for i in range(n))
            name = f"fd_len{n}" + ("_brs" if brs else "") + ("_esi" if esi else "")
            cases.append((name, t, msg(t, 0x456, fd=True, brs=brs, esi=esi, data=data)))
    cases.append(("fd_ext_64", t, msg(t, 0x1FFFFFFF, ext=True, fd=True, brs=True,
                                      data=bytes(range(64)))))
    for ch in [None, "vcan0", "", "can-with-22-bytes-name", "kanał", "0",
               0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1,
               -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]:
        cases.append((f"channel_{channel_token(ch)}", t, msg(t, 0x123, data=b"\x11\x22", channel=ch)))
    for ns in [0, 1, 123, 999_999_999, 1_000_000_000, 1_500_000_000, 1_763_700_000_000_000_001,
               2**53, 2**64 - 1]:
        cases.append((f"timestamp_{ns}", ns, msg(ns, 0x123, data=b"\x01")))
    return cases


def base_dicts():
    """python-can's own dicts for a few messages, the starting point of every variant.
    Their timestamps are exact binary fractions or whole seconds, so ns is unambiguous."""
    ms = [
        msg(1_700_000_000_500_000_000, 0x123, data=b"\x01\x02\x03", channel="vcan0"),
        msg(1_700_000_000_250_000_000, 0x1ABCDEF0, ext=True, fd=True, brs=True,
            data=bytes(range(12)), channel=2),
        msg(1_000_000_000, 0x7FF, rtr=True, dlc=6, channel=-1),
        msg(0, 0x80, ext=True, err=True, data=bytes(8)),
        msg(1_763_700_000_123_456_789, 0x42, fd=True, esi=True, data=bytes(range(64))),
    ]
    return [{k: getattr(m, k) for k in KEYS} for m in ms]


def pack(d):
    return msgpack.packb(d, use_bin_type=True)


NESTED = {
    "a": [1, [2, [3, [4, {"b": None, "c": [True, False]}]]]],
    "bytes": b"\x00\xff" * 40,
    "f": 1.5,
    "neg": -123456789,
    "big": 2**64 - 1,
    "ext": msgpack.ExtType(5, b"xyz"),
    "s": "x" * 300,
}


def decode_variants():
    """(name, dict as sent, dict python-can would build without the unknown keys)."""
    rng = random.Random(2024)
    out = []
    for i, d in enumerate(base_dicts()):
        for seed in range(3):
            items = list(d.items())
            rng.shuffle(items)
            out.append((f"b{i}_shuffled{seed}", dict(items), d))
        for k in KEYS:
            v = {kk: vv for kk, vv in d.items() if kk != k}
            out.append((f"b{i}_without_{k}", v, v))
        only = {"arbitration_id": d["arbitration_id"], "data": d["data"]}
        out.append((f"b{i}_only_id_and_data", only, only))
        v = dict(d, data=list(d["data"]))
        out.append((f"b{i}_data_as_list", v, v))
        v = dict(d, timestamp=int(d["timestamp"]))
        out.append((f"b{i}_int_timestamp", v, v))
        v = dict(d, is_extended_id=int(d["is_extended_id"]), is_fd=int(d["is_fd"]),
                 is_remote_frame=int(d["is_remote_frame"]))
        out.append((f"b{i}_bools_as_ints", v, v))
        for pos in [0, 5, 11]:
            items = list(d.items())
            items.insert(pos, ("unknown_nested", NESTED))
            items.insert(pos, ("is_rx", True))
            out.append((f"b{i}_unknown_keys_at{pos}", dict(items), d))
        items = list(d.items())
        rng.shuffle(items)
        items.insert(3, ("zzz", [[[[[[[[[[]]]]]]]]]]))
        v = dict(items, data=list(d["data"]), timestamp=int(d["timestamp"]))
        v.pop("channel")
        out.append((f"b{i}_everything", v, {k: vv for k, vv in v.items() if k != "zzz"}))
    return out


def reject_variants():
    """(name, dict, DecodeError kind): datagrams python-can's receiver rejects."""
    d = base_dicts()[0]
    return [
        ("negative_timestamp", dict(d, timestamp=-1.0), "InvalidFrame"),
        ("nan_timestamp", dict(d, timestamp=float("nan")), "InvalidFrame"),
        ("inf_timestamp", dict(d, timestamp=float("inf")), "InvalidFrame"),
        ("dlc_mismatch", dict(d, dlc=4), "InvalidFrame"),
        ("std_id_too_big", dict(d, arbitration_id=0x800), "InvalidFrame"),
        ("ext_id_too_big", dict(d, is_extended_id=True, arbitration_id=0x20000000), "InvalidFrame"),
        ("negative_id", dict(d, arbitration_id=-1), "InvalidFrame"),
        ("remote_fd", dict(d, is_remote_frame=True, is_fd=True), "InvalidFrame"),
        ("remote_error", dict(d, is_remote_frame=True, is_error_frame=True), "InvalidFrame"),
        ("classic_9_bytes", dict(d, data=bytes(9), dlc=9), "InvalidFrame"),
        ("fd_65_bytes", dict(d, is_fd=True, data=bytes(65), dlc=65), "InvalidFrame"),
        ("brs_without_fd", dict(d, bitrate_switch=True), "InvalidFrame"),
        ("dlc_as_string", dict(d, dlc="3"), "BadFieldType"),
        ("data_as_string", dict(d, data="abc"), "BadFieldType"),
        ("data_byte_256", dict(d, data=[1, 2, 256]), "BadFieldType"),
    ]


def main():
    for name, ns, m in encode_cases():
        print("E", name, describe(m, ns), pack_message(m).hex())

    for name, sent, effective in decode_variants():
        datagram = pack(sent)
        try:
            expected = Message(check=True, **effective)
        except ValueError:
            # e.g. a remote frame without is_remote_frame: dlc 6 but no data.
            print("R", name, datagram.hex(), "InvalidFrame")
            continue
        if sent is effective:
            # No unknown keys: python-can's own receiver must agree with the expectation.
            back = unpack_message(datagram, check=True)
            assert describe(back) == describe(expected), name
        print("D", name, datagram.hex(), describe(expected))

    for name, d, kind in reject_variants():
        datagram = pack(d)
        try:
            unpack_message(datagram, check=True)
        except (ValueError, TypeError):
            pass
        else:
            sys.exit(f"python-can accepted reject case {name}")
        print("R", name, datagram.hex(), kind)


if __name__ == "__main__":
    main()
