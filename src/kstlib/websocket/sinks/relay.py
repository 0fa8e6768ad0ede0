"""A relay: an exchange feed published to a bus, gap markers included.

::

    from kstlib.websocket.sinks import Relay, open_sink

    with Relay(open_sink("redis://127.0.0.1:6379/0?stream=btc")) as relay:
        with relay.connect("wss://stream.binance.com:9443/ws/btcusdt@trade"):
            ...                                   # runs until closed; relay.stats

A :class:`Relay` is the publishing half: its :meth:`Relay.on_batch` is a manager's
``on_batch`` hook (either front: ``WebSocketManager(url, **relay.manager_options())``,
sync or asyncio). On the engine thread it puts each batch, raw ``bytes`` as the socket
delivered them (``decode="bytes"``), into the bounded
:class:`~kstlib.websocket.sinks.buffer.Buffer` and returns ``[]``: nothing reaches the
manager's own stream. Gap markers (``Connected`` / ``Disconnected``, batches of one)
are queued the same way, in order. The publisher thread
(:mod:`~kstlib.websocket.sinks.publisher`) publishes in chunks. The engine thread waits
only under ``overflow="block"`` when the buffer is full (that time is credited to its
ping deadlines by the engine).

``dedupe_key`` (for redundant relays: two relays, each with its own exchange connection,
publish the same feed and consumers see every event once) takes the *decoded* JSON
message, like the manager's: the payload is parsed with orjson only for it. It also turns
on the engine's make-before-break rotation (``handover``), since the engine gets the same
key. Keys must be unique within the feed (e.g. ``f"{m['s']}:{m['t']}"``).

Thread-safety: :meth:`on_batch` runs on engine threads; the other methods may be called
from any thread.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from .base import KeyFunction, Sink
from .buffer import Buffer
from .publisher import Publisher

if TYPE_CHECKING:
    from kstlib.websocket.manager import WebSocketManager

__all__ = ["Relay", "RelayStats", "raw_key"]

log = logging.getLogger("kstlib.websocket.sinks")


@dataclass(frozen=True)
class RelayStats:
    """A snapshot of a relay. Messages: ``received`` from the exchange, ``published`` to
    the bus, ``duplicates`` the bus already had (the other relay, or a retry),
    ``dropped`` by the buffer (``overflow="drop_oldest"``), ``too_large`` for the bus,
    ``refused`` by the bus, ``lost`` when the relay stopped with the bus away; ``markers``
    published (gap markers, the relay's own included); ``buffered`` /
    ``buffered_bytes`` held now; ``blocked_seconds`` the engine waited for room;
    ``bus_up``, ``bus_errors``, ``bus_connects``, ``chunks`` (round trips); ``lag`` /
    ``lag_max`` seconds from the socket read to the bus's answer (last chunk / worst);
    ``last_id`` the bus's position after the last chunk."""

    received: int
    published: int
    duplicates: int
    dropped: int
    too_large: int
    refused: int
    lost: int
    markers: int
    buffered: int
    buffered_bytes: int
    blocked_seconds: float
    bus_up: bool
    bus_errors: int
    bus_connects: int
    chunks: int
    lag: float
    lag_max: float
    last_id: str


def raw_key(key: Callable[[Any], Hashable | None]) -> KeyFunction:
    """``key`` (on the decoded JSON message) as a function of the raw payload; a payload
    that is not JSON, or a key that raises, gives None (not de-duplicated)."""

    def of_raw(raw: bytes) -> Hashable | None:
        try:
            return key(orjson.loads(raw))
        except Exception:
            return None

    return of_raw


def default_name() -> str:
    """``host-pid-random``: unique per relay instance (it keys the relay's numbering)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Relay:
    """Publishes a manager's stream to ``sink`` (see the module docstring).

    Args:
        sink: a :class:`~kstlib.websocket.sinks.base.Sink` (e.g. from
            :func:`~kstlib.websocket.sinks.open_sink`).
        name: this relay's name in its markers (default: host, pid, random).
        dedupe_key: ``(decoded message) -> key | None`` for redundant relays.
        buffer_messages / buffer_bytes: the buffer's bound (default 100 000 / 64 MiB).
        overflow: ``block`` (back-pressure) or ``drop_oldest`` (dropped, counted, marked).
        chunk_messages / chunk_bytes: the most one round trip carries.
        reconnect_delay / reconnect_delay_max: backoff between bus reconnects (s).
        drain_timeout: seconds :meth:`close` spends publishing what is buffered.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        name: str | None = None,
        dedupe_key: Callable[[Any], Hashable | None] | None = None,
        buffer_messages: int = 100_000,
        buffer_bytes: int = 64 * 1024 * 1024,
        overflow: str = "block",
        chunk_messages: int = 4096,
        chunk_bytes: int = 4 * 1024 * 1024,
        reconnect_delay: float = 0.1,
        reconnect_delay_max: float = 5.0,
        drain_timeout: float = 10.0,
    ) -> None:
        self.name = name or default_name()
        self.sink = sink
        self._key = raw_key(dedupe_key) if dedupe_key is not None else None
        self.buffer = Buffer(buffer_messages, buffer_bytes, overflow)
        self.publisher = Publisher(
            sink,
            self.buffer,
            source=self.name,
            key_of=self._key,
            chunk_messages=chunk_messages,
            chunk_bytes=chunk_bytes,
            reconnect_delay=reconnect_delay,
            reconnect_delay_max=reconnect_delay_max,
        )
        self.drain_timeout = drain_timeout
        self._received = 0
        self._blocked = 0.0
        self._started = False
        self._managers: list[WebSocketManager] = []

    # ------------------------------------------------------------------ the hook

    def on_batch(self, batch: list[Any]) -> list[Any]:
        """The manager's ``on_batch``: buffer the batch, return ``[]`` (engine thread)."""
        if not batch:
            return []
        if len(batch) == 1 and type(batch[0]) is not bytes:  # a gap marker, of any kind
            self.buffer.put_marker(batch[0], time.time())
            return []
        self._received += len(batch)
        self._blocked += self.buffer.put(batch, time.time(), sum(map(len, batch)))
        return []

    def manager_options(self) -> dict[str, Any]:
        """The keywords that make a manager (either front) feed this relay."""
        options: dict[str, Any] = {"on_batch": self.on_batch, "decode": "bytes"}
        if self._key is not None:
            options["dedupe_key"] = self._key
        return options

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Relay:
        """Start the publisher thread (it connects to the bus; idempotent)."""
        if not self._started:
            self._started = True
            self.publisher.start()
        return self

    def connect(self, url: str, **options: Any) -> WebSocketManager:
        """Start, then a connected sync manager on ``url`` feeding this relay (closed by
        :meth:`close`). ``on_batch`` and ``decode`` are the relay's own."""
        from kstlib.websocket.manager import WebSocketManager

        for taken in ("on_batch", "decode"):
            if taken in options:
                raise ValueError(f"{taken} is set by the relay")
        self.start()
        ws = WebSocketManager(url, **{**options, **self.manager_options()})
        self._managers.append(ws)
        ws.connect()
        return ws

    def close(self) -> None:
        """Close the managers made by :meth:`connect`, then publish what is buffered (at
        most ``drain_timeout`` s) and close the sink. Idempotent."""
        self.buffer.interrupt()  # a final read must not wait for room
        for ws in self._managers:
            ws.close()
        self.publisher.stop(self.drain_timeout)

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ observation

    @property
    def stats(self) -> RelayStats:
        p = self.publisher.stats()
        held, held_bytes = self.buffer.held
        return RelayStats(
            received=self._received,
            published=p["published"],
            duplicates=p["duplicates"],
            dropped=self.buffer.total_dropped,
            too_large=p["too_large"],
            refused=p["refused"],
            lost=p["lost"],
            markers=p["markers"],
            buffered=held,
            buffered_bytes=held_bytes,
            blocked_seconds=self._blocked,
            bus_up=p["bus_up"],
            bus_errors=p["bus_errors"],
            bus_connects=p["bus_connects"],
            chunks=p["chunks"],
            lag=p["lag"],
            lag_max=p["lag_max"],
            last_id=p["last_id"],
        )
