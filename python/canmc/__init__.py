"""canmc for Python: CAN and CAN FD over UDP multicast, backed by canmc's Rust engine.

- ``can.Bus(interface="canmc", channel=GROUP, ...)``: a python-can bus
  (:class:`canmc.bus.CanmcBus`), wire-compatible with ``udp_multicast``.
- ``.cmc`` recordings in python-can's ``Logger`` / ``LogReader`` (``can.logger``,
  ``can.player``, ``can.logconvert``): :mod:`canmc.io`.
- :func:`read` / :func:`read_arrays`: a capture as a pyarrow Table or numpy arrays.
- :func:`record`, :func:`replay`, :func:`info`: the command line's ``record``,
  ``replay`` and ``info`` as functions returning dicts.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional, Union

from . import _canmc
from ._canmc import (
    FLAG_BRS,
    FLAG_ERROR,
    FLAG_ESI,
    FLAG_EXTENDED,
    FLAG_FD,
    FLAG_RTR,
    CanmcError,
    IncompleteError,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = [
    "FLAG_BRS",
    "FLAG_ERROR",
    "FLAG_ESI",
    "FLAG_EXTENDED",
    "FLAG_FD",
    "FLAG_RTR",
    "CanmcError",
    "Frames",
    "IncompleteError",
    "info",
    "read",
    "read_arrays",
    "record",
    "replay",
]

__version__ = "0.1.0"

StrPath = Union[str, "os.PathLike[str]"]
Time = Union[float, int, _dt.datetime, None]


def _ns(t: Time, name: str) -> Optional[int]:
    """Seconds since the epoch (float/int) or an aware/naive datetime -> ns."""
    if t is None:
        return None
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.astimezone()
        return int(round(t.timestamp() * 1e9))
    if isinstance(t, (int, float)):
        if t != t or t < 0:
            raise ValueError(f"{name}={t!r}: must be seconds since the epoch, >= 0")
        return int(round(float(t) * 1e9))
    raise TypeError(f"{name}: seconds since the epoch or a datetime, not {type(t).__name__}")


class Frames:
    """The frames of a capture as numpy arrays, one entry per frame.

    Attributes (numpy arrays of length ``n`` unless said otherwise):

    - ``timestamp_ns`` (int64): receive time, ns since the Unix epoch
    - ``ids`` (uint32): identifier without flags
    - ``flags`` (uint8): ``FLAG_EXTENDED | FLAG_RTR | FLAG_ERROR | FLAG_FD | FLAG_BRS |
      FLAG_ESI``
    - ``dlc`` (uint8): python-can's ``Message.dlc`` (the length in bytes, or the raw
      DLC 9-15 of a classic frame where the file kept it)
    - ``lengths`` (uint8): payload bytes (the requested length for a remote frame)
    - ``offsets`` (int64, ``n + 1``) and ``payload`` (uint8): frame ``i``'s bytes are
      ``payload[offsets[i]:offsets[i + 1]]``
    - ``channel`` (int32): index into ``channels`` (a list of the python-can channels
      seen: ``None``, ints or strings)

    Derived on access: :attr:`timestamps` (float64 seconds, python-can's clock) and
    :attr:`data` (a 2-D ``(n, width)`` uint8 array, zero-padded).
    """

    __slots__ = (
        "timestamp_ns",
        "ids",
        "flags",
        "dlc",
        "lengths",
        "offsets",
        "payload",
        "channel",
        "channels",
        "problem",
    )

    def __init__(self, cols: dict[str, Any], channels: list[Any], problem: Optional[str]):
        self.timestamp_ns = cols["timestamp_ns"]
        self.ids = cols["id"]
        self.flags = cols["flags"]
        self.dlc = cols["dlc"]
        self.lengths = cols["len"]
        self.offsets = cols["offsets"]
        self.payload = cols["data"]
        self.channel = cols["channel"]
        self.channels = channels
        #: Why the file could not be read to its end (None if it was).
        self.problem = problem

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<canmc.Frames n={len(self)}>"

    @property
    def timestamps(self) -> np.ndarray:
        """Receive times as float64 seconds since the epoch (as ``Message.timestamp``)."""
        return self.timestamp_ns / 1e9

    @property
    def data(self) -> np.ndarray:
        """Payloads as a ``(n, width)`` uint8 array, ``width`` the longest payload;
        shorter ones are zero-padded. No copy when all payloads have one length."""
        import numpy as np

        n = len(self)
        if n == 0:
            return np.zeros((0, 0), dtype=np.uint8)
        lens = np.diff(self.offsets)
        width = int(lens.max())
        if width == 0:
            return np.zeros((n, 0), dtype=np.uint8)
        if int(lens.min()) == width:
            return self.payload.reshape(n, width)
        out = np.zeros((n, width), dtype=np.uint8)
        out[np.arange(width) < lens[:, None]] = self.payload
        return out

    def to_arrow(self) -> pa.Table:
        """The frames as a pyarrow Table (no copy of the columns): ``timestamp``
        (timestamp[ns, UTC]), ``id`` (uint32), ``flags``, ``dlc``, ``len`` (uint8),
        ``data`` (large_binary), ``channel`` (dictionary of strings)."""
        import pyarrow as pa

        n = len(self)
        ts = pa.Array.from_buffers(
            pa.timestamp("ns", tz="UTC"), n, [None, pa.py_buffer(self.timestamp_ns)]
        )
        data = pa.Array.from_buffers(
            pa.large_binary(),
            n,
            [None, pa.py_buffer(self.offsets), pa.py_buffer(self.payload)],
        )
        names = pa.array([None if c is None else str(c) for c in self.channels], pa.string())
        channel = pa.DictionaryArray.from_arrays(pa.array(self.channel), names)
        return pa.table(
            {
                "timestamp": ts,
                "id": pa.array(self.ids),
                "flags": pa.array(self.flags),
                "dlc": pa.array(self.dlc),
                "len": pa.array(self.lengths),
                "data": data,
                "channel": channel,
            }
        )


def read_arrays(
    path: StrPath,
    start: Time = None,
    end: Time = None,
    ids: Optional[Iterable[int]] = None,
    *,
    skip_bad: bool = False,
    strict: bool = True,
) -> Frames:
    """Reads the frames of a capture (``.cmc``, ``.log``, ``.asc``, ``.pcap``,
    ``.pcapng``, by extension) into numpy arrays (:class:`Frames`).

    :param start: first receive time to keep (seconds since the epoch, or a datetime);
        a ``.cmc`` seeks to it through its index.
    :param end: last receive time to keep; reading stops at the first frame after it.
    :param ids: keep only these identifiers.
    :param skip_bad: text formats: skip lines that do not parse instead of stopping.
    :param strict: a file damaged in the middle (corrupt record, bad line) raises
        :class:`IncompleteError`, whose ``partial`` attribute holds the frames before the
        damage; with ``strict=False`` those are returned with a warning.
    :raises FileNotFoundError: no such file.
    :raises ValueError: unknown extension, not a recording, bad arguments.
    """
    cols, channels, problem = _canmc.read_columns(
        os.fspath(path),
        start_ns=_ns(start, "start"),
        end_ns=_ns(end, "end"),
        ids=None if ids is None else [int(i) for i in ids],
        skip_bad=skip_bad,
    )
    frames = Frames(cols, channels, problem)
    if problem is not None:
        if strict:
            err = IncompleteError(problem)
            err.partial = frames
            raise err
        warnings.warn(problem, RuntimeWarning, stacklevel=2)
    return frames


def read(
    path: StrPath,
    start: Time = None,
    end: Time = None,
    ids: Optional[Iterable[int]] = None,
    *,
    skip_bad: bool = False,
    strict: bool = True,
) -> pa.Table:
    """Reads the frames of a capture into a pyarrow Table (see :meth:`Frames.to_arrow`
    for the columns and :func:`read_arrays` for the arguments).

    With ``strict=True`` a damaged file raises :class:`IncompleteError` whose
    ``partial`` attribute is the Table of the frames before the damage.
    """
    try:
        frames = read_arrays(path, start, end, ids, skip_bad=skip_bad, strict=strict)
    except IncompleteError as e:
        e.partial = e.partial.to_arrow()
        raise
    return frames.to_arrow()


def record(
    path: StrPath,
    channel: str,
    *,
    port: int = 43113,
    iface: Optional[str] = None,
    duration: Optional[float] = None,
    count: Optional[int] = None,
    filters: Optional[Iterable[dict[str, Any]]] = None,
    key_file: Optional[StrPath] = None,
    sources: Optional[Iterable[str]] = None,
    io: str = "mmsg",
) -> dict[str, Any]:
    """Records the group ``channel`` into ``path`` (format by extension; ``.cmc`` keeps
    every field and the losses) until ``count`` frames, ``duration`` seconds, or Ctrl-C.

    The frames go from the socket to the file on canmc's receive thread; Python only
    waits. On Ctrl-C the file is completed first, then KeyboardInterrupt is raised.

    :param filters: python-can filters (``{"can_id", "can_mask", "extended"}``).
    :returns: the summary: ``frames``, ``datagrams``, ``kernel_drops``, ``ring_drops``,
        ``seq_gaps``, ``decode_errors``, ``elapsed_s``, ... (as ``canmc record --json``).
    """
    specs = [
        (
            int(f["can_id"]),
            int(f["can_mask"]),
            None if f.get("extended") is None else bool(f["extended"]),
        )
        for f in filters or ()
    ]
    return _canmc.record(
        os.fspath(path),
        channel,
        port=port,
        iface=iface,
        duration=duration,
        count=count,
        filters=specs,
        key_file=None if key_file is None else os.fspath(key_file),
        sources=list(sources or ()),
        io=io,
    )


def replay(
    path: StrPath,
    channel: str,
    *,
    port: int = 43113,
    iface: Optional[str] = None,
    hop_limit: int = 1,
    speed: Optional[float] = 1.0,
    loops: Optional[int] = 1,
    start: Optional[float] = None,
    end: Optional[float] = None,
    wire: str = "pycan",
    key_file: Optional[StrPath] = None,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Plays a capture onto the group with its original timing divided by ``speed``
    (``speed=None``: as fast as possible), ``loops`` times (None: until Ctrl-C).

    :param start: skip the first ``start`` seconds of the file.
    :param end: stop ``end`` seconds after the file's first frame.
    :returns: the summary (``frames``, ``datagrams``, ``elapsed_s``, ``loops``, ...).
    """
    return _canmc.replay(
        os.fspath(path),
        channel,
        port=port,
        iface=iface,
        hop_limit=hop_limit,
        speed=speed,
        loops=loops,
        start=start,
        end=end,
        wire=wire,
        key_file=None if key_file is None else os.fspath(key_file),
        skip_bad=skip_bad,
    )


def info(path: StrPath, *, skip_bad: bool = False) -> dict[str, Any]:
    """What a capture holds, with the keys of ``canmc info --json`` (canmc's
    ``CaptureStats``): ``frames``, kinds (``standard``, ``extended``, ``remote``,
    ``error``, ``fd``), ``first_ns`` / ``last_ns`` (0 without frames), ``span_s``,
    ``rate_fps``, ``ids`` (distinct), ``top_ids`` (``[{"id": "123", "frames": n}, ...]``),
    ``senders``, losses (``loss_records``, ``lost_datagrams``, ``kernel_drop_records``,
    ``kernel_drops``), ``skipped_lines``, and how a ``.cmc`` ended (``end``: ``"finished"``,
    ``"unfinished"``, ``"truncated"``, ``"corrupt"``, None for other formats;
    ``problem``: why it could not be read to its end, else None)."""
    return _canmc.info(os.fspath(path), skip_bad=skip_bad)
