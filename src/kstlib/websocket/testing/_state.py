"""State shared between the simulator's server thread and the threads that drive it.

Everything here is plain Python (no asyncio, no ``websockets``) so that importing the
public module stays cheap. All mutable fields are guarded by :attr:`SharedState.lock`
(a re-entrant lock, so ``wait_until`` predicates may call the simulator's accessors).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kstlib.websocket.testing._market import Generator

if TYPE_CHECKING:
    from kstlib.websocket.testing._dialects.base import Dialect

__all__ = ["ConnRecord", "ConnectionInfo", "InjectedGap", "SharedState", "SimulatorOptions"]

#: How many recent messages / ping payloads a connection record keeps.
RECORD_LIMIT = 10_000


@dataclass(frozen=True)
class SimulatorOptions:
    """Constructor options of :class:`~kstlib.websocket.testing.ExchangeSimulator`.

    See the class docstring for the meaning of each field.
    """

    host: str = "127.0.0.1"
    port: int = 0
    event_rate: float = 10.0
    kline_rate: float | None = None
    kline_seconds: float | Mapping[str, float] | None = None
    seed: int | str = 0
    ping_interval: float | None = None
    pong_timeout: float = 10.0
    max_connection_age: float | None = None
    max_incoming_rate: float | None = None
    max_connection_attempts: tuple[int, float] | None = None
    max_streams_per_connection: int = 1024
    compression: str | None = "deflate"
    close_timeout: float = 2.0
    max_message_size: int = 2**20
    max_write_buffer: int = 64 * 2**20
    history: int = 1000


@dataclass(frozen=True)
class InjectedGap:
    """A hole the gap fault (``ExchangeSimulator.inject_gap``) made on a connection, in
    the terms of the client's ``Gap`` marker: on ``stream`` the client expects the
    number ``expected`` next, and the first message it gets after the hole follows
    ``received - 1``. ``stream`` is the dialect's name for the sequence (a Binance
    stream name, an OKX ``instId``, a Bybit topic, a Deribit channel...)."""

    stream: Hashable
    expected: int
    received: int


@dataclass(frozen=True)
class ConnectionInfo:
    """Snapshot of one server-side connection (open or closed).

    Attributes:
        index: global connection number, 0 for the first accepted connection.
        path: request path with query string (``/stream?streams=...``).
        remote: the client's ``(host, port)``.
        opened_at / closed_at: ``time.time()`` stamps (``closed_at`` is ``None``
            while the TCP connection is open).
        is_open: the TCP connection is still open.
        streams: current (or last) subscriptions, in subscription order.
        combined: events are wrapped as ``{"stream": .., "data": ..}``.
        messages_received: data messages received from the client.
        messages_sent: data messages written to the client (events, replies,
            announcements; not raw frames).
        pings_sent: payloads of the server's keepalive pings (most recent 10,000).
        pongs_received: payloads of every pong the client sent (most recent 10,000).
        client_pings: number of ping frames the client sent.
        close_code / close_reason: close frame received from the client
            (``1006`` / ``""`` when the connection ended without one).
        close_sent_code: code of the close frame the server sent, if any.
        cause: why the *server* ended the connection, ``None`` if it did not:
            ``"close_all"``, ``"reset"``, ``"drop_after_accept"``, ``"max_age"``,
            ``"rate_limit"``, ``"pong_timeout"``, ``"shutdown"``, ``"slow_consumer"``,
            ``"malformed"``, ``"stopped"``.
    """

    index: int
    path: str
    remote: tuple[str, int] | None
    opened_at: float
    closed_at: float | None
    is_open: bool
    streams: tuple[str, ...]
    combined: bool
    messages_received: int
    messages_sent: int
    pings_sent: tuple[bytes, ...]
    pongs_received: tuple[bytes, ...]
    client_pings: int
    close_code: int | None
    close_reason: str | None
    close_sent_code: int | None
    cause: str | None


@dataclass
class ConnRecord:
    """Mutable per-connection record; fields change under ``SharedState.lock``."""

    index: int
    path: str
    remote: tuple[str, int] | None
    opened_at: float
    combined: bool
    closed_at: float | None = None
    streams: list[str] = field(default_factory=list)
    received: deque[str | bytes] = field(default_factory=lambda: deque(maxlen=RECORD_LIMIT))
    messages_received: int = 0
    messages_sent: int = 0
    pings_sent: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECORD_LIMIT))
    pongs_received: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECORD_LIMIT))
    client_pings: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    close_sent_code: int | None = None
    cause: str | None = None
    #: Holes the gap fault made on this connection, in order.
    injected_gaps: list[InjectedGap] = field(default_factory=list)

    def snapshot(self) -> ConnectionInfo:
        """Return an immutable copy (call with the lock held)."""
        return ConnectionInfo(
            index=self.index,
            path=self.path,
            remote=self.remote,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
            is_open=self.closed_at is None,
            streams=tuple(self.streams),
            combined=self.combined,
            messages_received=self.messages_received,
            messages_sent=self.messages_sent,
            pings_sent=tuple(self.pings_sent),
            pongs_received=tuple(self.pongs_received),
            client_pings=self.client_pings,
            close_code=self.close_code,
            close_reason=self.close_reason,
            close_sent_code=self.close_sent_code,
            cause=self.cause,
        )


@dataclass
class _Faults:
    refuse_status: int | None = None
    refuse_remaining: int | None = None
    refuse_headers: dict[str, str] = field(default_factory=dict)
    accept_delay: float = 0.0
    drop_after_accept: bool = False


class SharedState:
    """Counters, records, fault switches, generators and the dialect, which outlive one
    server run."""

    def __init__(self, options: SimulatorOptions, dialect: Dialect) -> None:
        self.options = options
        self.dialect = dialect
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.records: dict[int, ConnRecord] = {}
        self.next_index = 0
        self.open_count = 0
        self.handshake_attempts = 0
        self.refused_handshakes = 0
        self.events_published = 0
        self.faults = _Faults()
        self.attempt_times: deque[float] = deque()
        # Generators persist across stop()/start(), so ids keep increasing.
        self.generators: dict[str, Generator] = {}

    def notify(self) -> None:
        """Wake every ``wait_until`` caller (takes the lock)."""
        with self.cond:
            self.cond.notify_all()

    def new_record(self, **fields: Any) -> ConnRecord:
        """Create, register and return the record of a newly accepted connection."""
        with self.cond:
            record = ConnRecord(index=self.next_index, **fields)
            self.next_index += 1
            self.open_count += 1
            self.records[record.index] = record
            excess = len(self.records) - max(self.options.history, 1)
            if excess > 0:
                for index in [i for i, r in self.records.items() if r.closed_at is not None]:
                    if excess <= 0:
                        break
                    del self.records[index]
                    excess -= 1
            self.cond.notify_all()
            return record
