"""``can.Bus(interface="canmc", ...)``: python-can's bus API on canmc's receive engine.

python-can finds this class through the ``can.interface`` entry point. It speaks
python-can's ``udp_multicast`` wire format by default, so it joins a group of
``udp_multicast`` buses as one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import can
from can import BusABC, CanProtocol, Message
from can.typechecking import AutoDetectedConfig, CanFilters

from . import _canmc

__all__ = ["CanmcBus", "DEFAULT_GROUP_IPv4", "DEFAULT_GROUP_IPv6", "DEFAULT_PORT"]

#: python-can's default IPv6 group (site-local scope), also canmc's.
DEFAULT_GROUP_IPv6 = "ff15:7079:7468:6f6e:6465:6d6f:6d63:6173"
#: python-can's default IPv4 group.
DEFAULT_GROUP_IPv4 = "239.74.163.2"
#: python-can's default port.
DEFAULT_PORT = 43113


class CanmcBus(BusABC):
    """A CAN bus on a UDP multicast group, received by canmc's Rust engine.

    Wire-compatible with python-can's ``udp_multicast`` interface (``wire="pycan"``,
    the default): the two meet on the same group and port. Unlike it, this bus can
    receive its own messages, runs the ID filters in Rust (before any
    :class:`can.Message` is built), counts every loss (:attr:`stats`) and keeps up with
    more than a million frames per second on its receive thread.

    :param channel: the multicast group, IPv4 (``224.0.0.0/4``) or IPv6
        (``ff00::/8``); python-can's IPv6 default if omitted.
    :param port: UDP port (43113, python-can's default).
    :param iface: interface name (``"eth0"``, ``"lo"``) or one of its addresses; None
        lets the kernel choose by route, as python-can does.
    :param hop_limit: IPv6 hop limit / IPv4 TTL of sent datagrams (0 keeps them on
        this host).
    :param fd: accept and send CAN FD frames; with ``False`` sending one raises and
        received ones are ignored (as ``udp_multicast`` does).
    :param receive_own_messages: also receive the messages this bus sends (with
        ``is_rx=False``).
    :param wire: ``"pycan"`` (python-can's msgpack datagrams) or ``"native"`` (canmc's
        batched format with sequence numbers, which makes gaps countable).
    :param key_file: a 32-byte key (raw or 64 hex digits): send authenticated native
        datagrams and accept only those carrying a valid tag.
    :param sources: accept datagrams only from these sender addresses.
    :param io: receive path, ``"auto"`` (io_uring, else recvmmsg), ``"uring"`` or
        ``"mmsg"``.
    :param ring_capacity: events the ring between the receive thread and :meth:`recv`
        holds; a burst larger than this, unread, counts as ``ring_drops``.
    :param can_filters: see :meth:`can.BusABC.set_filters`.

    Other keyword arguments (``bitrate``, ``single_handle``, ...) are accepted and
    ignored, as python-can's own interfaces do.

    :raises can.CanInitializationError: for a channel that is not a multicast group,
        a bad option, or a socket that cannot join.
    """

    def __init__(
        self,
        channel: str = DEFAULT_GROUP_IPv6,
        port: int = DEFAULT_PORT,
        iface: str | None = None,
        hop_limit: int = 1,
        fd: bool = True,
        receive_own_messages: bool = False,
        wire: str = "pycan",
        key_file: str | None = None,
        sources: Sequence[str] | None = None,
        io: str = "auto",
        ring_capacity: int = 1 << 16,
        can_filters: CanFilters | None = None,
        **kwargs: Any,
    ) -> None:
        if channel is None:
            channel = DEFAULT_GROUP_IPv6
        if not isinstance(channel, str):
            raise can.CanInitializationError(
                f"channel {channel!r}: canmc's channel is a multicast group address string"
            )
        try:
            self._native = _canmc.NativeBus(
                Message,
                channel,
                port=int(port),
                iface=iface,
                hop_limit=int(hop_limit),
                fd=bool(fd),
                receive_own_messages=bool(receive_own_messages),
                wire=wire,
                key_file=None if key_file is None else str(key_file),
                sources=list(sources or ()),
                io=io,
                ring_capacity=int(ring_capacity),
            )
        except (ValueError, OSError, OverflowError, TypeError) as e:
            raise can.CanInitializationError(f"canmc: {e}") from e
        self.channel = channel
        self.channel_info = f"canmc multicast group {channel} port {port}"
        self._can_protocol = CanProtocol.CAN_FD if fd else CanProtocol.CAN_20
        super().__init__(channel, can_filters=can_filters, **kwargs)

    # Receiving -------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message passing the filters, or None after ``timeout`` seconds
        (``None``: wait for ever). The GIL is released while waiting; Ctrl-C raises
        :class:`KeyboardInterrupt` at once.

        :raises can.CanOperationError: if the bus is shut down.
        """
        try:
            return self._native.recv(timeout)
        except OSError as e:
            raise can.CanOperationError(f"canmc: {e}") from e

    def _recv_internal(self, timeout: float | None) -> tuple[Message | None, bool]:
        # The filters already ran in the engine's consumer.
        return self.recv(timeout), True

    def _apply_filters(self, filters: CanFilters | None) -> None:
        specs = []
        for f in filters or ():
            ext = f.get("extended")
            specs.append((int(f["can_id"]), int(f["can_mask"]), None if ext is None else bool(ext)))
        self._native.set_filters(specs)

    # Sending ---------------------------------------------------------------------

    def send(self, msg: Message, timeout: float | None = None) -> None:
        """Sends one message (as one python-can datagram, or an authenticated native one
        with ``key_file``).

        :raises can.CanOperationError: for a message that is not a valid CAN frame
            (the reason is in the text) or a socket error.
        """
        try:
            self._native.send(msg)
        except (ValueError, OSError, OverflowError, TypeError) as e:
            raise can.CanOperationError(f"canmc: {e}") from e

    # State -----------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since the bus opened: ``kernel_drops`` (datagrams the socket buffer
        dropped), ``ring_drops`` (frames the ring had no room for), ``seq_gaps``
        (native datagrams missing from their senders' sequences), ``decode_errors``
        (datagrams that were not valid frames; by kind in
        ``decode_errors_by_kind``), and traffic: ``frames``, ``datagrams``, ``bytes``,
        ``frames_sent``, ``id_filtered``, ``filtered``."""
        return self._native.stats()

    @property
    def local_address(self) -> tuple[str, int]:
        """The address this bus's datagrams come from."""
        return self._native.local_addr

    def shutdown(self) -> None:
        """Stops periodic tasks and the engine, closes the sockets. Idempotent."""
        if self._is_shutdown:
            return
        super().shutdown()
        native = getattr(self, "_native", None)
        if native is not None:
            native.shutdown()

    @staticmethod
    def _detect_available_configs() -> list[AutoDetectedConfig]:
        return [
            {"interface": "canmc", "channel": DEFAULT_GROUP_IPv6},
            {"interface": "canmc", "channel": DEFAULT_GROUP_IPv4},
        ]
