"""Binance preset: stream URLs, combined payloads, requests with ids, and the published limits.

::

    from kstlib.websocket.binance import BinanceStreams

    with BinanceStreams(["btcusdt@trade", "ethusdt@kline_1m"], unwrap=True) as bn:
        bn.subscribe(["solusdt@aggTrade"])          # waits for {"result": null, "id": N}
        for stream, event in bn.stream():
            handle(stream, event)

The asyncio twin is :class:`kstlib.websocket.binance.aio.BinanceStreams` (``async with`` /
``async for``, awaitable requests).

Building blocks
    :func:`stream_url` (``<base>/ws/<stream>``) and :func:`combined_url`
    (``<base>/stream?streams=a/b``) check stream names (:func:`validate_stream`) and are
    handy with a plain :class:`~kstlib.websocket.WebSocketManager`. :func:`unwrap` splits a
    combined payload ``{"stream": name, "data": event}`` into ``(name, event)``.
    :func:`dedupe_key` and :func:`is_server_shutdown` are the handover hooks the preset gives
    the engine. :class:`ConnectionPacer` paces connection attempts.

Limits respected by default (Binance spot market streams)
    * at most 5 outgoing frames per second per connection, pings and pongs included
      (``max_send_rate=5``, the engine's hard cap over a sliding one-second window). The
      client itself paces its requests, counting the subscriptions resent on each
      reconnect, at 4 per 1.1 s per connection: the server counts frames when they
      arrive, so a frame released exactly one second after an earlier one could land in
      the same window, and the fifth frame of each second stays free for a ping or pong;
    * at most 1024 streams per connection: more are spread over several connections
      (``max_streams_per_connection``), merged into one :meth:`BinanceStreams.stream`;
    * at most 300 connection attempts per 5 minutes, across all of a client's connections
      (``max_connection_attempts=(300, 300.0)``; share a :class:`ConnectionPacer` with
      ``pacer=`` to count several clients together);
    * connections are rotated before Binance's 24-hour cut (``max_connection_age`` 23 h 50
      min) make-before-break (handover), and a ``serverShutdown`` event triggers the same
      handover; the overlap's duplicates are dropped by :func:`dedupe_key`;
    * pongs echo the ping payload (the engine does).

Every option of :class:`~kstlib.websocket.config.Settings` may be passed to
:class:`BinanceStreams` and overrides the preset's value, except ``subscriptions``,
``on_message`` and ``decode`` which the client needs for itself.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketError,
    WebSocketTimeoutError,
)
from kstlib.websocket.inbox import Inbox, InboxFinished
from kstlib.websocket.manager import WebSocketManager
from kstlib.websocket.models import Connected, Disconnected, WebSocketStats

__all__ = [
    "DEFAULT_BASE",
    "MAX_CONNECTION_AGE",
    "MAX_CONNECTION_ATTEMPTS",
    "MAX_SEND_RATE",
    "MAX_STREAMS_PER_CONNECTION",
    "REQUESTS_PER_SECOND",
    "BinanceRequestError",
    "BinanceStreams",
    "ConnectionEvent",
    "ConnectionPacer",
    "combined_url",
    "dedupe_key",
    "is_server_shutdown",
    "stream_url",
    "unwrap",
    "validate_stream",
]

log = logging.getLogger("kstlib.websocket.binance")

#: Spot market streams endpoint.
DEFAULT_BASE = "wss://stream.binance.com:9443"
#: Streams one connection may carry.
MAX_STREAMS_PER_CONNECTION = 1024
#: Outgoing frames per second and connection (pings and pongs included).
MAX_SEND_RATE = 5
#: Connection attempts per window (seconds), per IP address.
MAX_CONNECTION_ATTEMPTS: tuple[int, float] = (300, 300.0)
#: The client's own pace for requests on one connection: this many per second (plus a
#: 0.1 s margin), leaving the fifth frame of each second to pings and pongs.
REQUESTS_PER_SECOND = 4
#: Rotation age: 23 h 50 min, ten minutes before Binance's 24-hour cut.
MAX_CONNECTION_AGE = 23 * 3600.0 + 50 * 60.0

# ----------------------------------------------------------------------------- errors


class BinanceRequestError(WebSocketError):
    """Binance answered a request with ``{"error": {"code": C, "msg": M}, "id": N}``.

    ``code`` and ``msg`` are Binance's; ``request_id`` the id of the refused request.
    """

    def __init__(self, code: int, msg: str, request_id: int | None = None) -> None:
        super().__init__(f"Binance request {request_id} refused (code {code}): {msg}")
        self.code = code
        self.msg = msg
        self.request_id = request_id

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, self.msg, self.request_id))


# ----------------------------------------------------------------------------- stream names

# A symbol stream: lowercase symbol, then one or more @-separated parts
# (btcusdt@trade, btcusdt@kline_1m, btcusdt@depth@100ms, btcusdt@aggTrade);
# an all-market stream: "!" then a name, optional @-parts (!ticker@arr, !bookTicker).
_STREAM_RE = re.compile(r"(?:[a-z0-9]+(?:@[A-Za-z0-9_]+)+|![A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)*)\Z")


def validate_stream(name: str) -> str:
    """Return ``name`` if it is a well-formed Binance stream name, else raise.

    Accepted: ``<symbol>@<type>[@<option>...]`` with a lowercase symbol
    (``btcusdt@trade``, ``btcusdt@kline_1m``, ``bnbbtc@depth@100ms``) and all-market
    streams (``!ticker@arr``, ``!bookTicker``). This checks the form only, not that
    Binance knows the stream (the server answers that).

    Raises:
        TypeError: ``name`` is not a ``str``.
        ValueError: malformed name; the message says why (an uppercase symbol is the
            usual mistake: Binance silently sends nothing for ``BTCUSDT@trade``).
    """
    if not isinstance(name, str):
        raise TypeError(f"a stream name is a str, got {type(name).__name__}")
    if _STREAM_RE.match(name):
        return name
    if not name:
        raise ValueError("empty stream name")
    symbol, sep, rest = name.partition("@")
    if sep and symbol != symbol.lower() and not symbol.startswith("!"):
        raise ValueError(
            f"invalid stream name {name!r}: the symbol must be lowercase "
            f"({symbol.lower()}@{rest!s})"
        )
    if not sep and not name.startswith("!"):
        raise ValueError(
            f"invalid stream name {name!r}: expected <symbol>@<type>, e.g. 'btcusdt@trade'"
        )
    raise ValueError(
        f"invalid stream name {name!r}: expected a lowercase symbol and @-separated parts "
        "of letters, digits and '_' (e.g. 'btcusdt@kline_1m', '!ticker@arr')"
    )


def _stream_list(streams: str | Iterable[str]) -> list[str]:
    """Validate ``streams`` (one name or an iterable of names); drop repeats, keep order."""
    names = [streams] if isinstance(streams, str) else list(streams)
    return list(dict.fromkeys(validate_stream(n) for n in names))


def _check_base(base: str) -> str:
    if not isinstance(base, str) or not re.match(r"wss?://[^/?#\s]+\Z", base.rstrip("/")):
        raise ValueError(
            f"base must be 'ws://host[:port]' or 'wss://host[:port]' without a path, got {base!r}"
        )
    return base.rstrip("/")


def stream_url(stream: str, *, base: str = DEFAULT_BASE) -> str:
    """``<base>/ws/<stream>``: a raw stream (payloads are the bare events).

    Raises:
        ValueError: malformed stream name or base.
    """
    return f"{_check_base(base)}/ws/{validate_stream(stream)}"


def combined_url(
    streams: str | Iterable[str],
    *,
    base: str = DEFAULT_BASE,
    max_streams: int = MAX_STREAMS_PER_CONNECTION,
) -> str:
    """``<base>/stream?streams=a/b/c``: payloads wrapped as ``{"stream": name, "data": event}``.

    Repeated names are kept once.

    Raises:
        ValueError: no stream, a malformed name, a bad base, or more than ``max_streams``
            streams (Binance refuses more than 1024 on one connection; use
            :class:`BinanceStreams` to spread them).
    """
    names = _stream_list(streams)
    if not names:
        raise ValueError("combined_url() needs at least one stream")
    if len(names) > max_streams:
        raise ValueError(
            f"{len(names)} streams exceed the {max_streams} allowed on one connection; "
            "BinanceStreams spreads them over several connections"
        )
    return f"{_check_base(base)}/stream?streams=" + "/".join(names)


def unwrap(msg: Any) -> tuple[str, Any]:
    """Split a combined-stream payload ``{"stream": name, "data": event}`` into
    ``(name, event)``.

    Raises:
        ValueError: ``msg`` is not a combined payload (e.g. a raw event or a reply).
    """
    if isinstance(msg, dict):
        stream = msg.get("stream")
        if isinstance(stream, str) and "data" in msg:
            return stream, msg["data"]
    raise ValueError(f"not a combined-stream payload: {msg!r:.120}")


# ----------------------------------------------------------------------------- handover hooks


def _event_key(d: Any, combined: bool) -> Hashable | None:
    """Identity of one Binance event, or None when it has none we trust."""
    if not isinstance(d, dict):
        return None
    e = d.get("e")
    s = d.get("s")
    try:
        if e == "trade":
            return ("trade", s, int(d["t"]))
        if e == "aggTrade":
            return ("aggTrade", s, int(d["a"]))
        if e == "kline":
            k = d["k"]
            if "u" in d:  # the simulator's per-stream update id
                return ("kline", s, k["i"], int(d["u"]))
            return ("kline", s, k["i"], int(k["t"]), int(d["E"]))
        if e == "depthUpdate":
            return ("depthUpdate", s, int(d["U"]), int(d["u"]))
        if e in ("24hrTicker", "24hrMiniTicker", "avgPrice"):
            return (e, s, int(d["E"]))
        if e is None and "u" in d and "s" in d and "b" in d and "a" in d:  # bookTicker
            return ("bookTicker", s, int(d["u"]))
        if e is None and combined and "lastUpdateId" in d:  # partial depth (needs the name)
            return ("depth", int(d["lastUpdateId"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def dedupe_key(msg: Any) -> Hashable | None:
    """The identity of a Binance message, for dropping a handover overlap's duplicates.

    Raw or combined (``{"stream", "data"}``, then keyed with the stream name) payloads of
    trade (``t``), aggTrade (``a``), kline (``u`` on the simulator; ``(k.t, E)`` on
    Binance, whose kline events have no id), depthUpdate (``U``, ``u``), bookTicker
    (``u``), 24hrTicker / 24hrMiniTicker / avgPrice (``E``) and, combined only, partial
    depth (``lastUpdateId``). Anything else, replies and ``serverShutdown`` included,
    gives ``None``: never deduplicated. Pure function; thread-safe.
    """
    if isinstance(msg, dict):
        stream = msg.get("stream")
        if isinstance(stream, str) and "data" in msg:
            inner = _event_key(msg["data"], True)
            return None if inner is None else (stream, inner)
    return _event_key(msg, False)


def is_server_shutdown(msg: Any) -> bool:
    """True for Binance's maintenance notice ``{"e": "serverShutdown", ...}`` (raw or in a
    combined wrapper): the preset's ``should_handover``."""
    if not isinstance(msg, dict):
        return False
    if msg.get("e") == "serverShutdown":
        return True
    data = msg.get("data")
    return isinstance(data, dict) and data.get("e") == "serverShutdown"


# ----------------------------------------------------------------------------- pacing


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ConnectionPacer:
    """At most ``max_attempts`` connection attempts in any sliding ``window`` seconds.

    :meth:`acquire` waits (in the calling thread, an engine thread when used from
    ``before_connect``) until the oldest of the last ``max_attempts`` attempts is more
    than ``window + margin`` seconds old, then records the attempt. The server counts
    handshakes when they *arrive*; ``margin`` (default 0.25 s) absorbs the variation of
    the connect latency, so an attempt released exactly one window after an earlier one
    cannot land inside the server's window. Share one pacer between clients
    (``pacer=``) that count against the same limit (Binance: 300 per 5 minutes per IP).
    Thread-safe.
    """

    def __init__(
        self, max_attempts: int = 300, window: float = 300.0, margin: float = 0.25
    ) -> None:
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        if not _finite(window) or window <= 0:
            raise ValueError(f"window must be a number of seconds > 0, got {window!r}")
        if not _finite(margin) or margin < 0:
            raise ValueError(f"margin must be a number of seconds >= 0, got {margin!r}")
        self.max_attempts = max_attempts
        self.window = float(window)
        self.margin = float(margin)
        self._times: deque[float] = deque(maxlen=max_attempts)
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Seconds until an attempt would be allowed (0 when one is allowed now)."""
        with self._lock:
            return self._delay(time.monotonic())

    def _delay(self, now: float) -> float:
        if len(self._times) < self.max_attempts:
            return 0.0
        return max(0.0, self._times[0] + self.window + self.margin - now)

    def acquire(self, cancel: threading.Event | None = None) -> bool:
        """Wait for a slot and record an attempt. Returns False, without recording, when
        ``cancel`` is set while waiting (the client is closing)."""
        while True:
            with self._lock:
                now = time.monotonic()
                wait = self._delay(now)
                if wait <= 0.0:
                    self._times.append(now)
                    return True
            if cancel is None:
                time.sleep(wait)
            elif cancel.wait(wait):
                return False

    def record(self, count: int = 1) -> None:
        """Record ``count`` attempts made now without waiting (they could not wait)."""
        with self._lock:
            now = time.monotonic()
            self._times.extend([now] * min(count, self.max_attempts))


# ----------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class ConnectionEvent:
    """Gap marker of ``BinanceStreams.stream(events=True)``: connection ``connection``
    (0-based) carrying ``streams`` connected or disconnected here (``event`` is the
    engine's :class:`~kstlib.websocket.models.Connected` or
    :class:`~kstlib.websocket.models.Disconnected`). Data of those streams may be missing
    between a ``Disconnected`` and the next ``Connected``."""

    connection: int
    streams: tuple[str, ...]
    event: Connected | Disconnected


class _Pending:
    """One request waiting for its reply (set by a reader thread)."""

    __slots__ = ("conn", "done", "failure", "method", "reply")

    def __init__(self, method: str, conn: _Conn) -> None:
        self.method = method
        self.conn = conn
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None
        self.failure: BaseException | None = None


class _Conn:
    """One connection of the client: its manager, streams and reader thread."""

    def __init__(self, index: int, manager: WebSocketManager) -> None:
        self.index = index
        self.manager = manager
        self.streams: dict[str, None] = {}  # ordered set
        self.reader: threading.Thread | None = None
        self.initial: list[dict[str, Any]] = []  # subscriptions it was created with
        self.retired = False
        # Frames this client sends on the connection: requests, and the resent
        # subscriptions recorded when a (re)connect is seen (late is on the safe side).
        self.sends = ConnectionPacer(REQUESTS_PER_SECOND, 1.0, margin=0.1)


_FORBIDDEN = {
    "subscriptions": "pass streams, or call subscribe()",
    "on_message": "iterate stream() (the client reads every connection itself)",
    "url": "pass base=",
}


class BinanceStreams:
    """Binance market streams over as many connections as needed, merged into one stream.

    ``streams`` are subscribed on connect; at most ``max_streams_per_connection`` (1024)
    share a connection, more open more connections (each a
    :class:`~kstlib.websocket.WebSocketManager` on ``<base>/ws``). Streams are carried by
    ``SUBSCRIBE`` messages registered with each manager, so a reconnect restores exactly
    the current set, and :meth:`subscribe` / :meth:`unsubscribe` change it. With
    ``combined=True`` (default) each connection first sends ``SET_PROPERTY combined``, so
    payloads are ``{"stream": name, "data": event}``; ``unwrap=True`` makes
    :meth:`stream` yield ``(stream, event)`` tuples instead (``(None, msg)`` for the rare
    unwrapped message, e.g. ``serverShutdown``). ``combined=False`` delivers bare events
    (``unwrap`` is then refused: a bare event does not name its stream). Streams travel
    in messages rather than in a ``/stream?streams=`` URL because a URL cannot forget a
    stream (a reconnect would restore an unsubscribed one) and 1024 names make a URL
    of some 20 KB.

    Gap markers: ``stream(events=True)`` also yields a :class:`ConnectionEvent` where a
    connection was lost and where it came back (a handover is no gap and yields none).

    Options: ``base`` (``wss://host[:port]``), ``max_connection_attempts`` (``(n,
    seconds)``, default ``(300, 300.0)``) or ``pacer`` (a shared
    :class:`ConnectionPacer`), ``request_timeout`` (seconds allowed for the initial
    subscriptions' replies in :meth:`connect`, default 10), ``config`` and every
    :class:`~kstlib.websocket.config.Settings` option for the managers (they override
    the preset: ``max_send_rate=5``, ``max_connection_age`` 23 h 50 min, ``dedupe_key``,
    ``should_handover``; a ``before_connect`` you give runs after the pacer).

    Merging and back-pressure: each connection has one reader thread that iterates its
    manager's ``stream()`` and forwards every message into one shared bounded
    :class:`~kstlib.websocket.inbox.Inbox` (``queue_size``, ``queue_overflow``). Readers
    rather than ``on_message`` callbacks, because the engine's own inbox then keeps doing
    its job: with ``queue_overflow="block"`` a slow consumer fills the shared queue, the
    reader waits (no polling, a condition variable), the manager's queue fills, and that
    engine stops reading its socket while accounting for the pause in its ping and pong
    deadlines; nothing is lost, and ``close()`` still interrupts every wait. Order is
    arrival order within each connection; connections interleave as they arrive. Replies
    are taken out by the readers before the queue; while a request waits for its reply
    the readers stop waiting for room (the queue may exceed its bound by what arrives
    meanwhile), so a reply is never stuck behind a full queue that only the waiting
    caller would drain.

    Requests (:meth:`subscribe`, :meth:`unsubscribe`, :meth:`list_subscriptions`) carry
    increasing integer ids; the reply with that id completes the call and is never
    yielded. Replies to ids of this client that nobody awaits (resubscriptions after a
    reconnect, late replies) are dropped, errors among them logged; replies carrying
    other ids pass through. An error reply raises :class:`BinanceRequestError`, no reply
    in time :class:`~kstlib.websocket.WebSocketTimeoutError` (``operation="request"``).

    Failure: when one connection fails for good (reconnect attempts exhausted, or the
    server closed with ``auto_reconnect=False``) the others are closed too and
    :meth:`stream` raises that error after the messages queued before it.

    Thread-safety: every method may be called from any thread; requests are serialised
    (one at a time per client). :meth:`stream` is meant for one consumer. A client
    connects once: after :meth:`close` make a new one.
    """

    def __init__(
        self,
        streams: str | Iterable[str] = (),
        *,
        base: str = DEFAULT_BASE,
        combined: bool = True,
        unwrap: bool = False,
        max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
        max_connection_attempts: tuple[int, float] = MAX_CONNECTION_ATTEMPTS,
        pacer: ConnectionPacer | None = None,
        request_timeout: float = 10.0,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **manager_options: Any,
    ) -> None:
        for name, hint in _FORBIDDEN.items():
            if name in manager_options:
                raise TypeError(f"BinanceStreams does not take {name}=: {hint}")
        decode = manager_options.pop("decode", "json")
        if decode != "json":
            raise ValueError(f"BinanceStreams decodes JSON itself; got decode={decode!r}")
        if unwrap and not combined:
            raise ValueError(
                "unwrap=True needs combined=True: a raw event does not name its stream"
            )
        if (
            not isinstance(max_streams_per_connection, int)
            or isinstance(max_streams_per_connection, bool)
            or max_streams_per_connection < 1
        ):
            raise ValueError(
                f"max_streams_per_connection must be an integer >= 1, "
                f"got {max_streams_per_connection!r}"
            )
        if not isinstance(request_timeout, (int, float)) or not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0, got {request_timeout!r}")
        names = _stream_list(streams)
        self._base = _check_base(base)
        self._combined = bool(combined)
        self._unwrap = bool(unwrap)
        self._capacity = max_streams_per_connection
        self._request_timeout = float(request_timeout)
        self._pacer = pacer if pacer is not None else ConnectionPacer(*max_connection_attempts)
        self._cancel = threading.Event()  # set on close: pacer waits give up

        user_before = manager_options.pop("before_connect", None)
        if user_before is not None and not callable(user_before):
            raise ValueError(f"before_connect must be callable, got {user_before!r}")

        def before_connect() -> None:
            self._pacer.acquire(self._cancel)
            if user_before is not None:
                user_before()

        options: dict[str, Any] = {
            "max_send_rate": MAX_SEND_RATE,
            "max_connection_age": MAX_CONNECTION_AGE,
            "dedupe_key": dedupe_key,
        }
        if manager_options.get("handover") is not False:
            options["should_handover"] = is_server_shutdown
        options.update(manager_options)
        options["before_connect"] = before_connect
        self._options = options
        self._config = config

        self._lock = threading.Lock()  # guards the fields below
        self._ops = threading.Lock()  # serialises connect / requests
        self._ids = itertools.count(1)
        self._last_id = 0
        self._pending: dict[int, _Pending] = {}
        self._bypass = 0
        self._conns: list[_Conn] = []
        self._owner: dict[str, _Conn] = {}
        self._next_index = 0
        self._readers = 0
        self._connected = False
        self._closing = False
        self._error: BaseException | None = None

        # Validate every option now (the first manager does), not at connect().
        chunks = [names[i : i + self._capacity] for i in range(0, len(names), self._capacity)]
        for chunk in chunks or [[]]:
            self._new_conn(chunk)
        settings = self._conns[0].manager.settings
        self._inbox = Inbox(settings.queue_size, settings.queue_overflow)

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> BinanceStreams:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        with self._lock:
            n, s = len(self._conns), len(self._owner)
        return f"<BinanceStreams {self._base} {s} streams on {n} connections>"

    # ------------------------------------------------------------------ properties

    @property
    def streams(self) -> list[str]:
        """The streams currently subscribed (requested and not refused), in order."""
        with self._lock:
            return list(self._owner)

    @property
    def connections(self) -> tuple[WebSocketManager, ...]:
        """The managers, one per connection, in connection order."""
        with self._lock:
            return tuple(c.manager for c in self._conns)

    @property
    def stats(self) -> tuple[WebSocketStats, ...]:
        """One statistics snapshot per connection."""
        return tuple(m.stats for m in self.connections)

    @property
    def is_connected(self) -> bool:
        """True while every connection is connected."""
        return all(m.is_connected for m in self.connections)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or a connection failed for good."""
        return self._closing

    # ------------------------------------------------------------------ ids and requests

    def _new_id(self) -> int:
        with self._lock:
            rid = next(self._ids)
            self._last_id = rid
            return rid

    def _sub_entry(self, streams: list[str]) -> dict[str, Any]:
        return {"method": "SUBSCRIBE", "params": list(streams), "id": self._new_id()}

    def _expect(self, rid: int, method: str, conn: _Conn) -> None:
        with self._lock:
            if self._closing:
                raise WebSocketClosedError(None, "BinanceStreams is closed")
            self._pending[rid] = _Pending(method, conn)
            self._bypass += 1
            if self._bypass == 1:
                self._inbox.interrupt_put()

    def _forget(self, rids: Iterable[int]) -> None:
        with self._lock:
            for rid in rids:
                if self._pending.pop(rid, None) is not None:
                    self._bypass -= 1
            if self._bypass == 0 and not self._closing:
                self._inbox.resume_put()

    def _await(self, rids: list[int], timeout: float) -> list[dict[str, Any]]:
        """Wait for the replies of ``rids``; raise the first failure or error reply."""
        deadline = time.monotonic() + timeout
        try:
            replies: list[dict[str, Any]] = []
            for rid in rids:
                with self._lock:
                    pending = self._pending.get(rid)
                if pending is None:  # resolved without a reply (e.g. unsubscribe on a lost link)
                    continue
                if not pending.done.wait(max(0.0, deadline - time.monotonic())):
                    raise WebSocketTimeoutError("request", timeout)
                if pending.failure is not None:
                    raise pending.failure
                if pending.reply is not None:
                    replies.append(pending.reply)
            for reply in replies:
                error = reply.get("error")
                if error is not None:
                    code = error.get("code", -1) if isinstance(error, dict) else -1
                    text = error.get("msg", str(error)) if isinstance(error, dict) else str(error)
                    raise BinanceRequestError(int(code), str(text), reply.get("id"))
            return replies
        finally:
            self._forget(rids)

    def _pace(self, conn: _Conn) -> None:
        """Wait for a request slot on ``conn`` (see :data:`REQUESTS_PER_SECOND`)."""
        if not conn.sends.acquire(self._cancel):
            raise WebSocketClosedError(None, "BinanceStreams closed")

    def _take_reply(self, conn: _Conn, msg: Any) -> bool:
        """Called by a reader: True if ``msg`` is a reply to this client (consumed)."""
        if type(msg) is not dict or "id" not in msg or not ("result" in msg or "error" in msg):
            return False
        rid = msg["id"]
        if type(rid) is not int or "stream" in msg or "e" in msg:
            return False
        with self._lock:
            if not 1 <= rid <= self._last_id:
                return False
            pending = self._pending.get(rid)
        if pending is not None:
            pending.reply = msg
            pending.done.set()
        elif msg.get("error") is not None:
            log.warning(
                "Binance refused request %d on connection %d: %r", rid, conn.index, msg["error"]
            )
        return True

    def _on_marker(self, conn: _Conn, event: Connected | Disconnected) -> None:
        """Called by a reader: the connection ended, so replies it owed never come.

        An ``UNSUBSCRIBE`` is then done (its entry is no longer resent); a
        ``LIST_SUBSCRIPTIONS`` fails; a ``SUBSCRIBE`` stays registered and its reply comes
        from the next connection."""
        if isinstance(event, Connected):
            conn.sends.record(event.resubscribed)
            return
        with self._lock:
            owed = [p for p in self._pending.values() if p.conn is conn and not p.done.is_set()]
        for p in owed:
            if p.method == "UNSUBSCRIBE":
                p.done.set()
            elif p.method == "LIST_SUBSCRIPTIONS":
                p.failure = WebSocketClosedError(None, "connection lost before the reply")
                p.done.set()

    # ------------------------------------------------------------------ connections

    def _new_conn(self, streams: list[str]) -> _Conn:
        """Create (not connect) a connection carrying ``streams``."""
        subs: list[dict[str, Any]] = []
        if self._combined:
            subs.append(
                {"method": "SET_PROPERTY", "params": ["combined", True], "id": self._new_id()}
            )
        if streams:
            subs.append(self._sub_entry(streams))
        manager = WebSocketManager(
            f"{self._base}/ws", config=self._config, subscriptions=subs, **self._options
        )
        with self._lock:
            conn = _Conn(self._next_index, manager)
            self._next_index += 1
            conn.initial = subs
            conn.streams.update(dict.fromkeys(streams))
            for s in streams:
                self._owner[s] = conn
            self._conns.append(conn)
        return conn

    def _start(self, conn: _Conn, timeout: float | None) -> list[int]:
        """Connect ``conn`` and start its reader; returns the ids whose replies to await."""
        ids = [int(sub["id"]) for sub in conn.initial]
        for sub in conn.initial:
            self._expect(int(sub["id"]), str(sub["method"]), conn)
        try:
            conn.manager.connect(timeout)
        except BaseException:
            self._forget(ids)
            raise
        conn.sends.record(len(conn.initial))
        reader = threading.Thread(
            target=self._read, args=(conn,), name=f"kstlib-binance-reader-{conn.index}", daemon=True
        )
        with self._lock:
            conn.reader = reader
            self._readers += 1
        reader.start()
        return ids

    def _read(self, conn: _Conn) -> None:
        """Reader thread: one connection's messages -> replies or the shared queue."""
        error: BaseException | None = None
        forward = self._forward
        take_reply = self._take_reply
        unwrap_items = self._unwrap
        try:
            for item in conn.manager.stream(events=True):
                if isinstance(item, (Connected, Disconnected)):
                    self._on_marker(conn, item)
                    with self._lock:
                        streams = tuple(conn.streams)
                    forward(ConnectionEvent(conn.index, streams, item))
                    continue
                if take_reply(conn, item):
                    continue
                if unwrap_items:
                    if (
                        type(item) is dict
                        and isinstance(item.get("stream"), str)
                        and "data" in item
                    ):
                        item = (item["stream"], item["data"])
                    else:
                        item = (None, item)
                forward(item)
        except BaseException as exc:
            error = exc
        finally:
            self._reader_done(conn, error)

    def _forward(self, item: Any) -> None:
        inbox = self._inbox
        if inbox.put_batch([item]) == 0:  # interrupted: a reply is awaited, or closing
            inbox.put_batch([item], force=True)

    def _reader_done(self, conn: _Conn, error: BaseException | None) -> None:
        fail = False
        with self._lock:
            self._readers -= 1
            if error is not None and not conn.retired and not self._closing:
                self._error = error
                fail = True
        if fail:
            assert error is not None
            log.warning("connection %d failed for good: %r; closing the others", conn.index, error)
            self._shutdown(error)
        with self._lock:
            done = self._readers == 0 and self._closing
            error = self._error
        if done:
            self._inbox.finish(error)

    def _shutdown(self, error: BaseException | None) -> None:
        """Stop everything: pacer waits, pending requests, every connection."""
        with self._lock:
            self._closing = True
            self._inbox.interrupt_put()
            pending = list(self._pending.values())
            conns = list(self._conns)
        self._cancel.set()
        failure = (
            error if error is not None else WebSocketClosedError(None, "BinanceStreams closed")
        )
        for p in pending:
            if not p.done.is_set():
                p.failure = failure
                p.done.set()
        for conn in conns:
            try:
                conn.manager.close()
            except Exception:  # close the others anyway
                log.exception("closing connection %d failed", conn.index)

    def _retire(self, conn: _Conn) -> None:
        """Close a connection that no longer carries any stream (never the first one)."""
        with self._lock:
            conn.retired = True
            self._conns.remove(conn)
        conn.manager.close()

    # ------------------------------------------------------------------ lifecycle

    def connect(self, timeout: float | None = None) -> None:
        """Connect every connection, and wait for the initial subscriptions' replies.

        No-op when connected. ``timeout`` bounds each connection's connect (``None``: the
        managers' own attempts and ``connect_timeout`` decide).

        Raises:
            WebSocketConnectionError / WebSocketTimeoutError: a connection failed; the
                client is then closed.
            BinanceRequestError: Binance refused an initial subscription (the client is
                then closed).
            WebSocketClosedError: the client was closed.
        """
        with self._ops:
            if self._closing:
                raise WebSocketClosedError(None, "BinanceStreams is closed; create a new one")
            if self._connected:
                return
            try:
                ids: list[int] = []
                for conn in list(self._conns):
                    ids += self._start(conn, timeout)
                self._await(ids, self._request_timeout)
            except BaseException:
                self.close()
                raise
            self._connected = True

    def close(self) -> None:
        """Close every connection (closing handshakes); :meth:`stream` ends after the
        queued messages. Pending requests fail with ``WebSocketClosedError``. Idempotent;
        waits for the reader threads."""
        self._shutdown(None)
        with self._lock:
            readers = [c.reader for c in self._conns if c.reader is not None]
            none_left = self._readers == 0
            error = self._error
        for reader in readers:
            if reader is not threading.current_thread():
                reader.join()
        if none_left:
            self._inbox.finish(error)

    # ------------------------------------------------------------------ requests

    def _require_open(self) -> None:
        """Raise ``WebSocketClosedError`` unless connected and not closing (hold ``_ops``)."""
        if self._closing:
            raise WebSocketClosedError(None, "BinanceStreams is closed")
        if not self._connected:
            raise WebSocketClosedError(None, "not connected: call connect() first")

    def subscribe(self, streams: str | Iterable[str], timeout: float = 10.0) -> None:
        """Subscribe to ``streams`` and wait for Binance's replies.

        Streams already subscribed are skipped. New ones go to the connections with room
        (first fit); the rest open new connections. Each touched connection gets one
        ``SUBSCRIBE`` with a new id, registered with its manager so that every reconnect
        restores it.

        Raises:
            ValueError / TypeError: malformed stream name (nothing is sent).
            BinanceRequestError: refused; those streams are forgotten again.
            WebSocketTimeoutError: no reply within ``timeout`` (the subscription stays
                registered and is resent on reconnect).
            WebSocketClosedError: the client is closed.
        """
        names = _stream_list(streams)
        with self._ops:
            self._require_open()
            with self._lock:
                new = [s for s in names if s not in self._owner]
                plan: list[tuple[_Conn, list[str]]] = []
                for conn in self._conns:
                    room = self._capacity - len(conn.streams)
                    if room > 0 and new:
                        plan.append((conn, new[:room]))
                        new = new[room:]
            if not plan and not new:
                return
            sent: list[tuple[_Conn, dict[str, Any]]] = []
            ids: list[int] = []
            try:
                for conn, chunk in plan:
                    entry = self._sub_entry(chunk)
                    self._expect(entry["id"], "SUBSCRIBE", conn)
                    ids.append(entry["id"])
                    with self._lock:
                        conn.streams.update(dict.fromkeys(chunk))
                        for s in chunk:
                            self._owner[s] = conn
                    sent.append((conn, entry))
                    self._pace(conn)
                    try:
                        conn.manager.subscribe(entry)
                    except WebSocketClosedError:
                        pass  # registered: sent with the others on the reconnect
                for i in range(0, len(new), self._capacity):
                    chunk = new[i : i + self._capacity]
                    conn = self._new_conn(chunk)
                    sent.append((conn, conn.initial[-1]))
                    ids += self._start(conn, timeout)
                self._await(ids, timeout)
            except BinanceRequestError:
                self._undo_subscribe(sent)
                raise

    def _undo_subscribe(self, sent: list[tuple[_Conn, dict[str, Any]]]) -> None:
        """Forget subscriptions Binance refused (one UNSUBSCRIBE removes each entry from
        the resend list; its reply, ours, is dropped)."""
        for conn, entry in sent:
            params = list(entry["params"])
            undo = {"method": "UNSUBSCRIBE", "params": params, "id": self._new_id()}
            try:
                self._pace(conn)
                conn.manager.unsubscribe(entry, undo)
            except (ValueError, WebSocketClosedError):
                pass
            with self._lock:
                for s in params:
                    conn.streams.pop(s, None)
                    if self._owner.get(s) is conn:
                        del self._owner[s]
                empty = not conn.streams and conn is not self._conns[0]
            if empty:
                self._retire(conn)

    def unsubscribe(self, streams: str | Iterable[str], timeout: float = 10.0) -> None:
        """Unsubscribe from ``streams`` and wait for Binance's replies.

        The streams leave the resend lists at once (a reconnect no longer restores them).
        A registered ``SUBSCRIBE`` that also carries streams that stay is replaced by one
        for those (an extra message). A connection left without streams is closed (the
        first one is kept).

        Raises:
            ValueError: a stream is not subscribed (nothing is sent).
            BinanceRequestError: an error reply.
            WebSocketTimeoutError: no reply within ``timeout``.
            WebSocketClosedError: the client is closed.
        """
        names = _stream_list(streams)
        with self._ops:
            self._require_open()
            with self._lock:
                unknown = [s for s in names if s not in self._owner]
                if unknown:
                    raise ValueError(f"not subscribed: {', '.join(unknown)}")
                groups: dict[int, tuple[_Conn, set[str]]] = {}
                for s in names:
                    conn = self._owner[s]
                    groups.setdefault(conn.index, (conn, set()))[1].add(s)
            ids: list[int] = []
            try:
                for conn, gone in groups.values():
                    ids += self._unsubscribe_on(conn, gone)
                self._await(ids, timeout)
            finally:
                for conn, _ in groups.values():
                    with self._lock:
                        empty = not conn.streams and conn is not self._conns[0]
                    if empty:
                        self._retire(conn)

    def _unsubscribe_on(self, conn: _Conn, gone: set[str]) -> list[int]:
        manager = conn.manager
        ids: list[int] = []
        for entry in manager.subscriptions:
            if not isinstance(entry, dict) or entry.get("method") != "SUBSCRIBE":
                continue
            params = list(entry.get("params", ()))
            drop = [p for p in params if p in gone]
            if not drop:
                continue
            keep = [p for p in params if p not in gone]
            if keep:  # re-register the streams that stay (a no-op for the server)
                replacement = self._sub_entry(keep)
                self._expect(replacement["id"], "SUBSCRIBE", conn)
                ids.append(replacement["id"])
                self._pace(conn)
                try:
                    manager.subscribe(replacement)
                except WebSocketClosedError:
                    pass
            rid = self._new_id()
            request = {"method": "UNSUBSCRIBE", "params": drop, "id": rid}
            self._pace(conn)
            if manager.is_connected:  # else nothing is sent: the reconnect just omits it
                self._expect(rid, "UNSUBSCRIBE", conn)
                ids.append(rid)
            try:
                manager.unsubscribe(entry, request)
            except WebSocketClosedError:  # lost while sending: not resent, so done
                self._forget([rid])
        with self._lock:
            for s in gone:
                conn.streams.pop(s, None)
                self._owner.pop(s, None)
        return ids

    def list_subscriptions(self, timeout: float = 10.0) -> list[str]:
        """Ask every connection for its streams (``LIST_SUBSCRIPTIONS``); return them all,
        connection after connection, as Binance lists them.

        Raises:
            BinanceRequestError: an error reply.
            WebSocketTimeoutError: no reply within ``timeout``.
            WebSocketClosedError: a connection is not connected (or was lost before
                replying), or the client is closed.
        """
        with self._ops:
            self._require_open()
            with self._lock:
                conns = list(self._conns)
            ids: list[int] = []
            try:
                for conn in conns:
                    rid = self._new_id()
                    self._expect(rid, "LIST_SUBSCRIPTIONS", conn)
                    ids.append(rid)
                    self._pace(conn)
                    conn.manager.send({"method": "LIST_SUBSCRIPTIONS", "id": rid})
            except BaseException:
                self._forget(ids)
                raise
            replies = self._await(ids, timeout)
        result: list[str] = []
        for reply in replies:
            listed = reply.get("result")
            if isinstance(listed, list):
                result.extend(str(s) for s in listed)
        return result

    # ------------------------------------------------------------------ messages

    def stream(self, events: bool = False) -> Iterator[Any]:
        """Blocking iterator over the messages of every connection.

        Items: the payloads (``dict``), or ``(stream, event)`` with ``unwrap=True``; with
        ``events=True`` also :class:`ConnectionEvent` gap markers, in order with the
        messages of their connection. Connects first if needed. Ends after :meth:`close`
        once the queued messages are read; raises the error of a connection that failed
        for good. Leaving the loop early keeps unread messages for the next ``stream()``.
        """
        if not self._connected and not self._closing:
            self.connect()
        return self._iterate(events)

    __iter__ = stream

    def _iterate(self, events: bool) -> Iterator[Any]:
        inbox = self._inbox
        while True:
            try:
                batch = inbox.get_batch()
            except InboxFinished as end:
                if end.error is not None:
                    raise end.error from None
                return
            i = 0
            try:
                for item in batch:
                    i += 1
                    if events or type(item) is not ConnectionEvent:
                        yield item
            finally:
                if i < len(batch):
                    inbox.extend_front(batch[i:])

    # used by the asyncio adapter
    async def _get_batch_async(self) -> list[Any]:
        return await self._inbox.get_batch_async()

    def _put_back(self, items: list[Any]) -> None:
        self._inbox.extend_front(items)
