"""python-can's logger and player with .cmc files, canmc.record and canmc.replay. In the
lab."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import can
import pytest

import canmc

from helpers import V4, same_frame, sample_messages

pytestmark = pytest.mark.usefixtures("lab")


def wait_for_logger(proc):
    """Returns once can.logger has printed its banner (its bus is then open)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "Can Logger" in line:
            return
    raise AssertionError("can.logger did not start: " + "".join(seen))


def test_python_can_logger_records_cmc(tmp_path, port):
    out = tmp_path / "log.cmc"
    p = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "can.logger",
            "-i",
            "canmc",
            "-c",
            V4,
            "--bus-kwargs",
            f"port={port}",
            "iface=lo",
            "-f",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_logger(p)
        time.sleep(0.3)
        msgs = sample_messages(200)
        with can.Bus(interface="canmc", channel=V4, port=port, iface="lo") as tx:
            for m in msgs:
                tx.send(m)
        time.sleep(0.5)
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=20)
    assert p.returncode == 0
    got = list(can.LogReader(str(out)))
    assert len(got) == len(msgs)
    assert all(same_frame(s, g, None) for s, g in zip(msgs, got))


def test_python_can_player_plays_cmc(tmp_path, port):
    src = tmp_path / "play.cmc"
    msgs = sample_messages(100)
    with can.Logger(str(src)) as w:
        for m in msgs:
            w.on_message_received(m)
    with can.Bus(interface="canmc", channel=V4, port=port, iface="lo") as rx:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "can.player",
                "-i",
                "canmc",
                "-c",
                V4,
                "--ignore-timestamps",
                "--error-frames",
                "--bus-kwargs",
                f"port={port}",
                "iface=lo",
                "--",
                str(src),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        got = []
        while (m := rx.recv(0.5)) is not None:
            got.append(m)
    assert len(got) == len(msgs)
    assert all(same_frame(s, g, None) for s, g in zip(msgs, got))


def test_record_and_replay(tmp_path, port):
    path = tmp_path / "rec.cmc"
    msgs = sample_messages(500)
    result = {}

    def rec():
        result["summary"] = canmc.record(
            path, V4, port=port, iface="lo", count=len(msgs), duration=20
        )

    t = threading.Thread(target=rec)
    t.start()
    time.sleep(0.5)
    with can.Bus(interface="canmc", channel=V4, port=port, iface="lo") as tx:
        for m in msgs:
            tx.send(m)
    t.join(30)
    assert not t.is_alive()
    s = result["summary"]
    assert s["command"] == "record" and s["frames"] == len(msgs)
    assert s["kernel_drops"] == 0 and s["ring_drops"] == 0
    assert canmc.info(path)["frames"] == len(msgs)
    assert canmc.read(path)["id"].to_pylist() == [m.arbitration_id for m in msgs]

    with can.Bus(interface="canmc", channel=V4, port=port, iface="lo") as rx:
        s = canmc.replay(path, V4, port=port, iface="lo", speed=None)
        assert s["frames"] == len(msgs) and s["loops"] == 1
        got = []
        while (m := rx.recv(0.5)) is not None:
            got.append(m)
    assert len(got) == len(msgs)
    assert all(same_frame(a, b, None) for a, b in zip(msgs, got))


def test_replay_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        canmc.replay(tmp_path / "none.cmc", V4)
    p = tmp_path / "x.log"
    p.write_text("(1.0) vcan0 123#00\n")
    with pytest.raises(ValueError, match="speed"):
        canmc.replay(p, V4, speed=0)
    with pytest.raises(ValueError, match="multicast"):
        canmc.replay(p, "127.0.0.1")
