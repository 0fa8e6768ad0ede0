"""Enums and the statistics snapshot: the vocabulary shared by every layer.

``ConnectionState`` and its one transition table, ``DisconnectReason`` (each one either
proactive or reactive), ``ReconnectStrategy`` and the frozen ``WebSocketStats`` snapshot.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = [
    "GAP_MARKERS",
    "LEGAL_TRANSITIONS",
    "Connected",
    "ConnectionState",
    "DisconnectReason",
    "Disconnected",
    "Gap",
    "Heartbeat",
    "Login",
    "Message",
    "ReconnectStrategy",
    "Stamped",
    "WebSocketStats",
]


class ConnectionState(enum.Enum):
    """Where a manager's connection stands. ``CLOSED`` is where ``close()`` ends."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    CLOSED = "closed"


_S = ConnectionState

#: The only legal state changes; the engine checks every transition against this table.
#: DISCONNECTED -> CONNECTING -> CONNECTED; CONNECTED -> RECONNECTING -> CONNECTED (success)
#: or DISCONNECTED (failure); CONNECTED -> CLOSING -> CLOSED; a proactive disconnect goes
#: CONNECTED -> DISCONNECTED; a closed manager may connect again (CLOSED -> CONNECTING).
LEGAL_TRANSITIONS: Mapping[ConnectionState, frozenset[ConnectionState]] = MappingProxyType(
    {
        _S.DISCONNECTED: frozenset({_S.CONNECTING, _S.CLOSING}),
        _S.CONNECTING: frozenset({_S.CONNECTED, _S.DISCONNECTED, _S.CLOSING}),
        _S.CONNECTED: frozenset({_S.RECONNECTING, _S.DISCONNECTED, _S.CLOSING}),
        _S.RECONNECTING: frozenset({_S.CONNECTED, _S.DISCONNECTED, _S.CLOSING}),
        _S.CLOSING: frozenset({_S.CLOSED}),
        _S.CLOSED: frozenset({_S.CONNECTING}),
    }
)


class DisconnectReason(enum.Enum):
    """Why a connection ended. Every disconnect has exactly one reason."""

    # Proactive: the user (or a rule the user set) chose the moment.
    USER_REQUESTED = "user_requested"
    SCHEDULED = "scheduled"
    CALLBACK_TRIGGERED = "callback_triggered"
    CONNECTION_LIMIT = "connection_limit"
    # Reactive: the connection was lost or broken.
    SERVER_CLOSED = "server_closed"
    NETWORK_ERROR = "network_error"
    PING_TIMEOUT = "ping_timeout"
    PROTOCOL_ERROR = "protocol_error"
    KILLED = "killed"
    #: No data message for ``receive_timeout`` seconds although the connection answered
    #: (a feed that went quiet while pongs still arrive).
    DATA_TIMEOUT = "data_timeout"

    @property
    def is_proactive(self) -> bool:
        """True when the disconnect was chosen (user, schedule, callback, age limit)."""
        return self in _PROACTIVE

    @property
    def is_reactive(self) -> bool:
        """True when the disconnect was suffered (server, network, ping, protocol, kill)."""
        return not self.is_proactive


_PROACTIVE = frozenset(
    {
        DisconnectReason.USER_REQUESTED,
        DisconnectReason.SCHEDULED,
        DisconnectReason.CALLBACK_TRIGGERED,
        DisconnectReason.CONNECTION_LIMIT,
    }
)


class ReconnectStrategy(enum.Enum):
    """How long to wait before reconnect attempt ``n`` (1-based) after a reactive loss.

    ``IMMEDIATE``: no wait. ``FIXED_DELAY``: ``reconnect_delay`` each time.
    ``EXPONENTIAL_BACKOFF`` (default): ``reconnect_delay * 2**(n-1)`` capped at
    ``reconnect_delay_max``, with full jitter in ``[delay/2, delay]``.
    """

    IMMEDIATE = "immediate"
    FIXED_DELAY = "fixed_delay"
    EXPONENTIAL_BACKOFF = "exponential_backoff"


@dataclass(frozen=True)
class WebSocketStats:
    """A consistent, immutable snapshot of a manager's counters (``ws.stats``).

    ``uptime`` is seconds since the manager first connected; ``connection_time`` the
    seconds spent connected in total (current connection included).
    """

    connects: int = 0
    disconnects: int = 0
    proactive_disconnects: int = 0
    reactive_disconnects: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    uptime: float = 0.0
    connection_time: float = 0.0
    reconnect_attempts: int = 0
    messages_dropped: int = 0
    decode_errors: int = 0
    callback_errors: int = 0
    last_disconnect_reason: DisconnectReason | None = None
    disconnects_by_reason: Mapping[DisconnectReason, int] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: Make-before-break rotations completed, overlap duplicates dropped, and the
    #: seconds spent with two connections open during handovers.
    handovers: int = 0
    handover_failures: int = 0
    duplicates_dropped: int = 0
    overlap_seconds: float = 0.0
    #: Interruptions of the stream (a disconnect the engine recovers from, not a handover)
    #: and the seconds spent without a connection while the engine was running.
    gaps: int = 0
    gap_seconds: float = 0.0
    #: Payload bytes (after decompression) of the messages queued for the consumer now.
    queued_bytes: int = 0
    #: Jumps in the ``sequence`` numbers on live connections (each marked with a ``Gap``).
    sequence_gaps: int = 0
    #: Round trip of the last ping answered, and its moving average (seconds; None
    #: before the first pong).
    ping_rtt: float | None = None
    ping_rtt_avg: float | None = None


@dataclass(frozen=True)
class Disconnected:
    """Gap marker of ``stream(events=True)``: the connection ended here; messages after
    it come from a new connection, so data between the two may be missing.

    ``reason`` is the :class:`DisconnectReason`; ``at`` the wall-clock time
    (``time.time()``); ``code`` the close code when a close frame was exchanged."""

    reason: DisconnectReason
    at: float
    code: int | None = None


@dataclass(frozen=True)
class Connected:
    """Gap marker of ``stream(events=True)``: a connection was established here.

    ``at`` is the wall-clock time; ``resubscribed`` how many subscription messages were
    (re)sent on it; ``reconnect`` is False for the first connection of a stream."""

    at: float
    resubscribed: int
    reconnect: bool = True


@dataclass(frozen=True)
class Gap:
    """Marker of ``stream(events=True)``, with ``sequence`` set: on a live connection,
    stream ``stream`` jumped from the sequence number ``expected`` to ``received``, so
    messages in between are missing (a server-side drop, a stall). ``at`` is the
    wall-clock time."""

    stream: Hashable
    expected: int
    received: int
    at: float


#: The in-band marker types of ``stream(events=True)``.
GAP_MARKERS = (Connected, Disconnected, Gap)


class Stamped(NamedTuple):
    """A message with the time it was read from the socket (``timestamps=True``):
    ``received_ns`` is :func:`time.monotonic_ns` (one stamp per socket read). A named
    tuple: one is made per message, so it must be cheap."""

    message: Any
    received_ns: int


Message = dict[str, Any] | list[Any] | str | bytes


@dataclass(frozen=True)
class Heartbeat:
    """An application-level keepalive (option ``heartbeat``), for venues that want their
    own ping messages rather than (or beside) RFC 6455 pings.

    * ``send``: the message sent every ``every`` seconds while connected (a ``str`` as
      text, a ``dict``/``list`` as JSON), or a callable returning it;
    * ``is_reply``: recognises the server's answer (e.g. ``lambda m: m == "pong"``);
      when none arrives within ``timeout`` seconds (default: ``ping_timeout``) the
      connection ends with ``PING_TIMEOUT``. None: no answer is expected;
    * ``answer``: for a server's own application ping, returns what to reply (sent at
      once), or None for other messages.

    Heartbeat messages, their replies and the server's pings never reach ``stream()``;
    each message sent takes a slot of ``max_send_rate``. With ``send=None`` and an
    ``is_reply``, it is a watchdog on the server's own heartbeats (Kraken's, say): one
    must come every ``every`` + ``timeout`` seconds. A ``send`` callable that raises is
    counted in ``callback_errors`` and that beat is skipped.
    """

    send: Message | Callable[[], Message] | None = None
    every: float = 20.0
    is_reply: Callable[[Any], bool] | None = None
    timeout: float | None = None
    answer: Callable[[Any], Message | None] | None = None


@dataclass(frozen=True)
class Login:
    """A message every connection sends first (option ``login``), before the
    subscriptions: ``send`` (or a callable returning it, called per attempt, e.g. to sign
    a fresh timestamp). ``is_reply(msg)`` answers True for the acknowledgement, False for
    a refusal, None for other messages. No answer within ``timeout`` seconds fails the
    attempt (``WebSocketTimeoutError``); a refusal raises ``WebSocketLoginError`` with the
    server's reply, final by default. The reply never reaches ``stream()``."""

    send: Message | Callable[[], Message]
    is_reply: Callable[[Any], bool | None]
    timeout: float = 10.0
