"""Messages and comparisons the tests share."""

from __future__ import annotations

import time

import can

V4 = "239.74.163.2"


def sample_messages(n: int = 0) -> list[can.Message]:
    """One of each kind of frame, then ``n`` numbered standard frames."""
    t = time.time() - 10
    msgs = [
        can.Message(timestamp=t, arbitration_id=0x123, is_extended_id=False, data=b"\xde\xad"),
        can.Message(timestamp=t + 0.001, arbitration_id=0x12345678, data=bytes(range(8))),
        can.Message(
            timestamp=t + 0.002,
            arbitration_id=0x7FF,
            is_extended_id=False,
            is_remote_frame=True,
            dlc=4,
        ),
        can.Message(
            timestamp=t + 0.003,
            arbitration_id=0x1ABCDE,
            is_fd=True,
            bitrate_switch=True,
            data=bytes(range(64)),
        ),
        can.Message(
            timestamp=t + 0.004,
            arbitration_id=0x100,
            is_extended_id=False,
            is_fd=True,
            error_state_indicator=True,
            data=bytes(12),
        ),
        can.Message(
            timestamp=t + 0.005,
            arbitration_id=0x000,
            is_extended_id=False,
            data=b"",
            channel="can1",
        ),
        can.Message(
            timestamp=t + 0.006,
            arbitration_id=0x2,
            is_extended_id=False,
            is_error_frame=True,
            data=bytes(8),
        ),
    ]
    for i in range(n):
        msgs.append(
            can.Message(
                timestamp=t + 0.01 + i * 1e-4,
                arbitration_id=0x200 + i % 16,
                is_extended_id=False,
                data=i.to_bytes(4, "big"),
            )
        )
    return msgs


def same_frame(a: can.Message, b: can.Message, timestamp_delta: float | None = 1e-6) -> bool:
    """Equal as python-can compares, except the channel (a format may not keep it)."""
    return (
        a.arbitration_id == b.arbitration_id
        and a.is_extended_id == b.is_extended_id
        and a.is_remote_frame == b.is_remote_frame
        and a.is_error_frame == b.is_error_frame
        and a.is_fd == b.is_fd
        and a.bitrate_switch == b.bitrate_switch
        and a.error_state_indicator == b.error_state_indicator
        and a.dlc == b.dlc
        and (a.is_remote_frame or bytes(a.data) == bytes(b.data))
        and (timestamp_delta is None or abs(a.timestamp - b.timestamp) <= timestamp_delta)
    )
