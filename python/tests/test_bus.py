"""The canmc bus beyond python-can's suite: own messages, filters in the engine,
counters, native wire with a key, source allow-list, Ctrl-C, GIL, shutdown. In the lab."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import can
import pytest

from helpers import V4, same_frame, sample_messages

pytestmark = pytest.mark.usefixtures("lab")


def bus(port, **kw):
    kw.setdefault("iface", "lo")
    return can.Bus(interface="canmc", channel=V4, port=port, **kw)


def drain(b, n, timeout=2.0):
    out = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        m = b.recv(0.1)
        if m is not None:
            out.append(m)
    return out


def test_every_kind_both_ways_with_python_can(port):
    msgs = sample_messages(20)
    with bus(port) as a, can.Bus(interface="udp_multicast", channel=V4, port=port) as p:
        for m in msgs:
            a.send(m)
        got = drain(p, len(msgs))
        assert len(got) == len(msgs)
        assert all(same_frame(s, g, None) for s, g in zip(msgs, got))
        for m in msgs:
            p.send(m)
        got = drain(a, len(msgs))
        assert len(got) == len(msgs)
        assert all(same_frame(s, g, None) and g.is_rx for s, g in zip(msgs, got))
        assert got[5].channel == "can1"
        # python-can stamps the send time; canmc reports the kernel's receive time
        assert abs(got[0].timestamp - time.time()) < 5


def test_receive_own_messages_marked_tx(port):
    with bus(port, receive_own_messages=True) as a, bus(port) as b:
        a.send(can.Message(arbitration_id=0x42, is_extended_id=False, data=b"\x01"))
        own = a.recv(1)
        other = b.recv(1)
        assert own is not None and other is not None
        assert own.is_rx is False and other.is_rx is True
        assert own.arbitration_id == other.arbitration_id == 0x42
        assert b.recv(0.1) is None
    with bus(port) as c:
        c.send(can.Message(arbitration_id=0x43))
        assert c.recv(0.2) is None
        assert c.stats["filtered"] == 1


def test_filters_run_in_the_engine(port):
    with (
        bus(port, can_filters=[{"can_id": 0x100, "can_mask": 0x7F0, "extended": False}]) as a,
        bus(port) as tx,
    ):
        for i in (0x100, 0x105, 0x200, 0x10F):
            tx.send(can.Message(arbitration_id=i, is_extended_id=False))
        tx.send(can.Message(arbitration_id=0x100, is_extended_id=True))
        got = [m.arbitration_id for m in drain(a, 3)]
        assert got == [0x100, 0x105, 0x10F]
        assert a.recv(0.1) is None
        assert a.stats["id_filtered"] == 2
        a.set_filters(None)
        tx.send(can.Message(arbitration_id=0x300, is_extended_id=False))
        assert a.recv(1).arbitration_id == 0x300


def test_stats_counters(port):
    with bus(port) as a, bus(port) as tx:
        for i in range(50):
            tx.send(can.Message(arbitration_id=i, is_extended_id=False))
        assert len(drain(a, 50)) == 50
        s = a.stats
        for k in ("kernel_drops", "ring_drops", "seq_gaps", "decode_errors"):
            assert s[k] == 0, (k, s)
        assert s["frames"] == 50 and s["datagrams"] == 50
        assert tx.stats["frames_sent"] == 50
        # an undecodable datagram is counted by kind, not delivered
        import socket

        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        u.sendto(b"\xc1", (V4, port))
        u.close()
        assert a.recv(0.3) is None
        assert a.stats["decode_errors"] == 1
        assert sum(a.stats["decode_errors_by_kind"].values()) == 1


def test_native_wire_with_key_refuses_others(port, tmp_path):
    key = tmp_path / "k.key"
    key.write_text(os.urandom(32).hex())
    with (
        bus(port, wire="native", key_file=str(key)) as a,
        bus(port, wire="native", key_file=str(key)) as b,
        bus(port) as plain,
    ):
        a.send(can.Message(arbitration_id=0x77, data=b"\x01\x02"))
        m = b.recv(1)
        assert m is not None and m.arbitration_id == 0x77 and bytes(m.data) == b"\x01\x02"
        plain.send(can.Message(arbitration_id=0x78))
        assert b.recv(0.3) is None
        assert b.stats["decode_errors_by_kind"]["bad_auth"] == 1


def test_source_allow_list(port):
    with bus(port, sources=["192.0.2.1"]) as a, bus(port) as tx:
        tx.send(can.Message(arbitration_id=1))
        assert a.recv(0.3) is None
    with bus(port, sources=["127.0.0.1"]) as a, bus(port) as tx:
        tx.send(can.Message(arbitration_id=1))
        assert a.recv(1) is not None


def test_send_errors_and_fd_off(port):
    with bus(port, fd=False) as a:
        with pytest.raises(can.CanOperationError, match="fd=False"):
            a.send(can.Message(arbitration_id=1, is_fd=True, data=bytes(12)))
        with pytest.raises(can.CanOperationError, match="cannot send"):
            a.send(can.Message(arbitration_id=0x800, is_extended_id=False))
        with pytest.raises(can.CanOperationError, match="cannot send"):
            a.send(can.Message(arbitration_id=1, data=bytes(9)))
        assert a.protocol == can.CanProtocol.CAN_20


def test_unknown_kwargs_accepted_and_shutdown_idempotent(port):
    a = bus(port, bitrate=500000, single_handle=True, app_name="x")
    a.shutdown()
    a.shutdown()
    with pytest.raises(can.CanOperationError, match="shut down"):
        a.recv(0)


def test_recv_releases_the_gil(port):
    with bus(port) as a:
        done = threading.Event()
        spins = [0]

        def spin():
            while not done.is_set():
                spins[0] += 1

        t = threading.Thread(target=spin)
        t.start()
        start = time.monotonic()
        assert a.recv(0.5) is None
        done.set()
        t.join()
        assert time.monotonic() - start >= 0.45
        # A thread holding the GIL for 0.5 s would allow none; python alone does 1e5+.
        assert spins[0] > 10_000


def test_ctrl_c_interrupts_recv_at_once(port):
    code = (
        "import can, sys, time\n"
        f"b = can.Bus(interface='canmc', channel='{V4}', port={port}, iface='lo')\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    b.recv()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', time.monotonic(), flush=True)\n"
        "    b.shutdown()\n"
        "    sys.exit(3)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 3, out
    took = float(out.split()[1]) - sent
    assert took < 0.5, took
