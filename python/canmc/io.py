"""python-can file plugins for canmc's ``.cmc`` recordings.

Registered through the ``can.io.message_reader`` / ``can.io.message_writer`` entry
points under the suffix ``.cmc``, so ``can.LogReader("x.cmc")``, ``can.Logger("x.cmc")``,
``python -m can.logger -f x.cmc``, ``python -m can.player x.cmc`` and
``python -m can.logconvert x.cmc y.asc`` work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Union

from can import Message
from can.io.generic import MessageReader, MessageWriter

from . import _canmc

__all__ = ["CmcReader", "CmcWriter"]

StringPath = Union[str, "os.PathLike[str]"]


def _path(file: Any, what: str) -> str:
    if isinstance(file, (str, os.PathLike)):
        return os.fspath(file)
    name = getattr(file, "name", None)
    if isinstance(name, str):
        # python-can may hand over an open file; .cmc files are mapped, not streamed.
        return name
    raise TypeError(f"{what} needs a file path, not {type(file).__name__}")


class CmcReader(MessageReader):
    """Iterates the frames of a capture as :class:`can.Message` objects.

    Reads ``.cmc`` recordings (and the other formats canmc reads: ``.log``, ``.asc``,
    ``.pcap``, ``.pcapng``) on a Rust thread, a batch ahead of the consumer.

    A recording damaged in the middle yields every frame before the damage, then raises
    :class:`canmc.IncompleteError` saying where and why.

    :param file: path of the recording.
    :param skip_bad: for text formats, skip lines that do not parse.
    """

    def __init__(self, file: StringPath, skip_bad: bool = False, **kwargs: Any) -> None:
        self._path = _path(file, "CmcReader")
        self._reader = _canmc.FrameReader(self._path, Message, skip_bad=skip_bad)

    def __iter__(self) -> Iterator[Message]:
        return self._reader

    def stop(self) -> None:
        """Stops reading and releases the file."""
        self._reader.close()


class CmcWriter(MessageWriter):
    """Writes received messages to a ``.cmc`` recording (crash-safe: after a crash the
    file holds every message written before).

    The format is chosen by the file's extension, so this also writes ``.log``,
    ``.asc``, ``.pcap`` and ``.pcapng`` through canmc's writers.

    :param file: path of the recording to create.
    """

    def __init__(self, file: StringPath, **kwargs: Any) -> None:
        self._path = _path(file, "CmcWriter")
        if kwargs.get("append"):
            raise ValueError("CmcWriter cannot append to an existing recording")
        self._writer = _canmc.FileWriter(self._path)

    def on_message_received(self, msg: Message) -> None:
        self._writer.write(msg)

    @property
    def frames(self) -> int:
        """Messages written so far."""
        return self._writer.frames

    def flush(self) -> None:
        """Pushes buffered data to the file."""
        self._writer.flush()

    def stop(self) -> None:
        """Completes the file. Idempotent."""
        self._writer.close()
