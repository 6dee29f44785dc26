"""Type stubs for canmc's Rust extension module (see python/src/lib.rs)."""

from collections.abc import Iterator
from typing import Any, Optional, Union

import can
import numpy as np

Channel = Union[None, int, str]

FLAG_EXTENDED: int
FLAG_RTR: int
FLAG_ERROR: int
FLAG_FD: int
FLAG_BRS: int
FLAG_ESI: int

class CanmcError(Exception):
    """Base class of canmc's errors."""

class IncompleteError(CanmcError):
    """A capture could not be read to its end; ``partial`` (set by :func:`canmc.read`)
    holds what was read before the damage."""

    partial: Any

class NativeBus:
    def __init__(
        self,
        message_cls: type[can.Message],
        channel: str,
        port: int = 43113,
        iface: Optional[str] = None,
        hop_limit: int = 1,
        fd: bool = True,
        receive_own_messages: bool = False,
        wire: str = "pycan",
        key_file: Optional[str] = None,
        sources: list[str] = ...,
        io: str = "auto",
        ring_capacity: int = 65536,
        loopback: bool = True,
    ) -> None: ...
    def recv(self, timeout: Optional[float] = None) -> Optional[can.Message]: ...
    def send(self, msg: can.Message) -> None: ...
    def set_filters(self, filters: list[tuple[int, int, Optional[bool]]]) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    @property
    def note(self) -> Optional[str]: ...
    @property
    def local_addr(self) -> tuple[str, int]: ...
    def shutdown(self) -> None: ...

def read_columns(
    path: str,
    start_ns: Optional[int] = None,
    end_ns: Optional[int] = None,
    ids: Optional[list[int]] = None,
    skip_bad: bool = False,
) -> tuple[dict[str, np.ndarray], list[Channel], Optional[str]]: ...

class FrameReader(Iterator[can.Message]):
    def __init__(
        self, path: str, message_cls: type[can.Message], skip_bad: bool = False
    ) -> None: ...
    def __iter__(self) -> FrameReader: ...
    def __next__(self) -> can.Message: ...
    def close(self) -> None: ...

class FileWriter:
    def __init__(self, path: str) -> None: ...
    def write(self, msg: can.Message) -> None: ...
    def flush(self) -> None: ...
    @property
    def frames(self) -> int: ...
    def close(self) -> None: ...

def record(
    path: str,
    channel: str,
    port: int = 43113,
    iface: Optional[str] = None,
    duration: Optional[float] = None,
    count: Optional[int] = None,
    filters: list[tuple[int, int, Optional[bool]]] = ...,
    key_file: Optional[str] = None,
    sources: list[str] = ...,
    io: str = "mmsg",
) -> dict[str, Any]: ...
def replay(
    path: str,
    channel: str,
    port: int = 43113,
    iface: Optional[str] = None,
    hop_limit: int = 1,
    speed: Optional[float] = 1.0,
    loops: Optional[int] = 1,
    start: Optional[float] = None,
    end: Optional[float] = None,
    wire: str = "pycan",
    key_file: Optional[str] = None,
    skip_bad: bool = False,
) -> dict[str, Any]: ...
def info(path: str, skip_bad: bool = False) -> dict[str, Any]: ...
