"""`.cmc` in python-can's Logger/LogReader, logconvert, canmc.read/read_arrays/info, and
bad files. No network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import can
import numpy as np
import pyarrow as pa
import pytest

import canmc

from helpers import same_frame, sample_messages


def write_cmc(path: Path, msgs: list[can.Message]) -> None:
    with can.Logger(str(path)) as log:
        for m in msgs:
            log.on_message_received(m)


def test_logger_plugin_writes_and_logreader_reads_every_kind(tmp_path):
    path = tmp_path / "kinds.cmc"
    msgs = sample_messages(100)
    writer = can.Logger(str(path))
    assert type(writer).__name__ == "CmcWriter"
    with writer:
        for m in msgs:
            writer.on_message_received(m)
    reader = can.LogReader(str(path))
    assert type(reader).__name__ == "CmcReader"
    got = list(reader)
    assert len(got) == len(msgs)
    for sent, back in zip(msgs, got):
        assert same_frame(sent, back), (sent, back)
    assert got[5].channel == "can1"


def test_logconvert_cmc_to_asc_and_back(tmp_path):
    src, asc, back = tmp_path / "a.cmc", tmp_path / "a.asc", tmp_path / "b.cmc"
    msgs = sample_messages(50)
    write_cmc(src, msgs)
    for a, b in [(src, asc), (asc, back)]:
        r = subprocess.run(
            [sys.executable, "-m", "can.logconvert", str(a), str(b)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
    asc_msgs = list(can.LogReader(str(asc)))
    assert len(asc_msgs) == len(msgs)
    round_trip = list(can.LogReader(str(back)))
    assert len(round_trip) == len(msgs)
    # python-can's ASC reader returns times relative to the file's start, so only
    # the gaps between frames survive, to the microsecond.
    shift = round_trip[0].timestamp - msgs[0].timestamp
    for sent, got in zip(msgs, round_trip):
        # ASC writes an error frame as "ErrorFrame", without ID or payload
        assert got.is_error_frame if sent.is_error_frame else same_frame(sent, got, None)
        assert abs(got.timestamp - shift - sent.timestamp) < 2e-6


def test_read_table_columns(tmp_path):
    path = tmp_path / "t.cmc"
    msgs = sample_messages(1000)
    write_cmc(path, msgs)
    t = canmc.read(path)
    assert isinstance(t, pa.Table)
    assert t.num_rows == len(msgs)
    assert t.column_names == ["timestamp", "id", "flags", "dlc", "len", "data", "channel"]
    assert t["id"].to_pylist() == [m.arbitration_id for m in msgs]
    assert t["data"].to_pylist()[:2] == [b"\xde\xad", bytes(range(8))]
    ext = [(f & canmc.FLAG_EXTENDED) != 0 for f in t["flags"].to_pylist()]
    assert ext == [m.is_extended_id for m in msgs]
    ts = t["timestamp"].cast(pa.int64()).to_numpy()
    want = np.array([round(m.timestamp * 1e9) for m in msgs])
    assert np.abs(ts - want).max() < 1000
    assert t["channel"].to_pylist()[5] == "can1"
    assert t["dlc"].to_pylist()[2] == 4  # remote frame: the requested length


def test_read_arrays_and_selection(tmp_path):
    path = tmp_path / "s.cmc"
    msgs = sample_messages(1000)
    write_cmc(path, msgs)
    f = canmc.read_arrays(path, ids=[0x201, 0x202])
    want = [m for m in msgs if m.arbitration_id in (0x201, 0x202)]
    assert len(f) == len(want) > 0
    assert f.ids.dtype == np.uint32 and f.timestamp_ns.dtype == np.int64
    assert f.data.shape == (len(want), 4)
    assert [bytes(r) for r in f.data] == [bytes(m.data) for m in want]
    # time window: frames 100..199 of the numbered ones
    lo, hi = msgs[7 + 100].timestamp, msgs[7 + 199].timestamp
    w = canmc.read_arrays(path, start=lo - 1e-7, end=hi + 1e-7)
    assert len(w) == 100
    assert np.allclose(w.timestamps, [m.timestamp for m in msgs[107:207]], atol=1e-6)
    # padded 2-D data for mixed lengths
    full = canmc.read_arrays(path)
    assert full.data.shape == (len(msgs), 64)
    assert bytes(full.data[0][:2]) == b"\xde\xad" and not full.data[0][2:].any()


def test_read_log_written_by_python_can(tmp_path):
    path = tmp_path / "p.log"
    msgs = [m for m in sample_messages(200) if not m.is_error_frame]
    with can.CanutilsLogWriter(str(path), channel="vcan0") as w:
        for m in msgs:
            w.on_message_received(m)
    t = canmc.read(path)
    assert t["id"].to_pylist() == [m.arbitration_id for m in msgs]
    # python-can writes remote frames as `123#R`, without their length
    assert t["len"].to_pylist() == [0 if m.is_remote_frame else m.dlc for m in msgs]
    assert t["data"].to_pylist() == [b"" if m.is_remote_frame else bytes(m.data) for m in msgs]


def test_info(tmp_path):
    path = tmp_path / "i.cmc"
    msgs = sample_messages(10)
    write_cmc(path, msgs)
    d = canmc.info(path)
    assert d["frames"] == len(msgs)
    assert d["extended"] == sum(m.is_extended_id for m in msgs)
    assert d["fd"] == 2 and d["remote"] == 1 and d["error"] == 1
    assert d["end"] == "finished" and d["problem"] is None
    assert d["first_ns"] == pytest.approx(msgs[0].timestamp * 1e9, abs=1000)


# --- bad input ----------------------------------------------------------------------


def test_missing_file(tmp_path):
    for fn in (canmc.read, canmc.info, can.LogReader):
        with pytest.raises(FileNotFoundError, match="no such file"):
            fn(str(tmp_path / "nope.cmc"))


def test_unknown_extension(tmp_path):
    p = tmp_path / "x.xyz"
    p.write_bytes(b"hello")
    with pytest.raises(ValueError, match="unknown extension"):
        canmc.read(p)


def test_not_a_recording(tmp_path):
    p = tmp_path / "junk.cmc"
    p.write_bytes(b"this is not a recording" * 100)
    with pytest.raises(ValueError, match="not a .cmc recording"):
        canmc.read(p)
    with pytest.raises(ValueError, match="not a .cmc recording"):
        can.LogReader(str(p))


def _corrupt(tmp_path) -> tuple[Path, int]:
    """A recording of 300 frames with the payload of frame 200 damaged on disk."""
    path = tmp_path / "c.cmc"
    msgs = [
        can.Message(
            timestamp=1.7e9 + i,
            arbitration_id=0x10,
            is_extended_id=False,
            data=(0xC0DE0000 + i).to_bytes(4, "big") + b"\xaa\xbb\xcc\xdd",
        )
        for i in range(300)
    ]
    write_cmc(path, msgs)
    raw = bytearray(path.read_bytes())
    at = raw.find((0xC0DE0000 + 200).to_bytes(4, "big") + b"\xaa\xbb\xcc\xdd")
    assert at > 0
    raw[at + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path, 200


def test_corrupt_recording_keeps_the_frames_before(tmp_path):
    path, good = _corrupt(tmp_path)
    with pytest.raises(canmc.IncompleteError, match="corrupt record") as e:
        canmc.read(path)
    assert e.value.partial.num_rows == good
    assert e.value.partial["id"].to_pylist() == [0x10] * good
    with pytest.warns(RuntimeWarning, match="checksum"):
        f = canmc.read_arrays(path, strict=False)
    assert len(f) == good
    # python-can's LogReader: the frames before, then the exception
    seen = []
    with pytest.raises(canmc.IncompleteError):
        for m in can.LogReader(str(path)):
            seen.append(m)
    assert len(seen) == good
    assert canmc.info(path)["end"] == "corrupt"


def test_bad_line_in_log(tmp_path):
    p = tmp_path / "b.log"
    p.write_text("(1.000000) vcan0 123#00\n(2.000000) vcan0 12G#00\n(3.0) vcan0 124#01\n")
    with pytest.raises(canmc.IncompleteError, match=":2:") as e:
        canmc.read(p)
    assert e.value.partial.num_rows == 1
    assert canmc.read(p, skip_bad=True).num_rows == 2


def test_bad_arguments(tmp_path):
    path = tmp_path / "a.cmc"
    write_cmc(path, sample_messages())
    with pytest.raises(ValueError, match="start"):
        canmc.read(path, start=-1)
    with pytest.raises(TypeError):
        canmc.read(path, end="soon")
    with pytest.raises(can.CanInitializationError, match="not a multicast group"):
        can.Bus(interface="canmc", channel="10.1.2.3")
    with pytest.raises(can.CanInitializationError, match="not an IP address"):
        can.Bus(interface="canmc", channel="vcan0")
    with pytest.raises(can.CanInitializationError, match="io="):
        can.Bus(interface="canmc", channel="239.1.2.3", io="fast")
    with pytest.raises(can.CanInitializationError, match="key"):
        can.Bus(interface="canmc", channel="239.1.2.3", key_file=str(tmp_path / "none.key"))
