"""What every dialect shares: the :class:`Dialect` interface the server calls, and for
the venues other than Binance, :class:`VenueDialect` with its per-connection
:class:`VenueConn` (JSON out, timers, data feeds) and the two feed faults.

A dialect is one venue's rules played by the simulator's server: which paths exist
(:meth:`Dialect.route`), what a new connection starts (:meth:`Dialect.opened`: a
silence watch, server heartbeats...), how each client message is answered
(:meth:`Dialect.received`: pings, logins, subscriptions) and which sequence numbers a
data message carries (:meth:`Dialect.numbers`, what the gap fault records).

The feed faults work the same in every dialect:

* the **gap** (``ExchangeSimulator.inject_gap``): the next ``count`` sequenced data
  messages of a connection are produced, numbers included, and not sent, as a
  server-side drop would; :func:`take_drop` decides and records each one;
* the **stall** (``ExchangeSimulator.stall``): a connection's data feeds stop
  producing while everything else (pongs, the venue's heartbeats, replies) goes on.

Thread-safety: the server calls the hooks on the simulator's loop. A dialect's own
state that tests reach from other threads (issued tokens, switches) is guarded by
:attr:`Dialect.lock`.
"""

from __future__ import annotations

import asyncio
import datetime
import http
import random
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from kstlib.websocket.testing._state import InjectedGap

if TYPE_CHECKING:
    from websockets.http11 import Response

    from kstlib.websocket.testing._connection import Live, SimConnection
    from kstlib.websocket.testing._server import SimServer

__all__ = [
    "Dialect",
    "Feed",
    "InjectedGap",
    "Numbers",
    "VenueConn",
    "VenueDialect",
    "iso_now",
    "levels",
    "now_ms",
    "take_drop",
]

#: ``(stream, prev, last)``: the message follows number ``prev`` and ends at ``last``,
#: the convention of the client's ``sequence`` option.
Numbers = tuple[Hashable, int, int]


def now_ms() -> int:
    """Wall-clock time in milliseconds."""
    return time.time_ns() // 1_000_000


def iso_now() -> str:
    """Wall-clock time as RFC 3339 with microseconds (``2024-01-02T03:04:05.678901Z``)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def levels(rng: random.Random, mid: float, n: int = 2) -> tuple[list[list[str]], list[list[str]]]:
    """``n`` bid and ``n`` ask levels ``[price, size]`` (strings) around ``mid``."""
    bids = [[f"{mid - (i + 1) * 0.5:.2f}", f"{rng.uniform(0.001, 2):.4f}"] for i in range(n)]
    asks = [[f"{mid + (i + 1) * 0.5:.2f}", f"{rng.uniform(0.001, 2):.4f}"] for i in range(n)]
    return bids, asks


class Dialect:
    """One venue's rules, played by the server (see the module docstring).

    ``name`` is what ``ExchangeSimulator(dialect=...)`` accepts; ``endpoints`` maps an
    endpoint name (``"public"``, ``"private"``...) to its path, for
    ``ExchangeSimulator.endpoint(name)``.
    """

    name: ClassVar[str] = ""
    endpoints: ClassVar[Mapping[str, str]] = {}
    #: The Binance market streams' options (the only dialect with shared market streams).
    market_depth = False
    futures = False

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def route(self, server: SimServer, conn: SimConnection, target: str) -> Response | None:
        """Accept the upgrade of ``target`` (the request's path and query): set
        ``conn.kst_route`` and return None; or refuse it with an HTTP response."""
        raise NotImplementedError

    def opened(self, server: SimServer, live: Live) -> None:
        """A connection was accepted: start what the venue does on its own."""

    def received(self, server: SimServer, live: Live, message: str | bytes) -> None:
        """Answer one data message from the client."""
        raise NotImplementedError

    def numbers(self, message: Any) -> Numbers | None:
        """The sequence numbers a data message carries, or None."""
        return None

    def stamp(self, vc: VenueConn, message: Any) -> Any:
        """The message as it goes out (a dialect that numbers every message adds it)."""
        return message


def take_drop(server: SimServer, live: Live, stream: str, numbers: Numbers | None) -> bool:
    """True when the gap fault swallows this sequenced message (then it is recorded).

    A message of the same sequence that goes out while a hole is being made (a
    Coinbase heartbeat between two swallowed ``l2_data`` of a ``stream``-filtered hole)
    closes that hole: the next one swallowed starts another, as the client will see it.
    """
    if live.drop_count <= 0 or numbers is None:
        return False
    key, prev, last = numbers
    if live.drop_stream is not None and live.drop_stream != stream:
        if live.drop_open and live.record.injected_gaps[-1].stream == key:
            live.drop_open = False
        return False
    live.drop_count -= 1
    with server.shared.cond:
        gaps = live.record.injected_gaps
        if live.drop_open:
            old = gaps[-1]
            gaps[-1] = InjectedGap(old.stream, old.expected, last + 1)
        else:
            gaps.append(InjectedGap(key, prev + 1, last + 1))
        live.drop_open = live.drop_count > 0
        server.shared.cond.notify_all()
    return True


class Feed:
    """One subscription's data on one connection: ``produce()`` makes its next message."""

    def __init__(self, name: str, produce: Callable[[], Any]) -> None:
        self.name = name
        self.produce = produce


class VenueConn:
    """The venue side of one open connection (see :class:`VenueDialect`)."""

    def __init__(self, dialect: VenueDialect, server: SimServer, live: Live, endpoint: str):
        self.dialect = dialect
        self.server = server
        self.live = live
        self.endpoint = endpoint
        self.query = parse_qs(urlsplit(live.record.path).query)
        self.conn_id = f"sim-{live.index:06d}"
        self.authed = False
        self.feeds: dict[str, Feed] = {}
        self.last_heard = server.loop.time()
        #: Loop time the last data message was written.
        self.last_data = self.last_heard
        self.rng = random.Random(f"{server.opts.seed}:{dialect.name}:{live.index}")
        #: Dialect-specific state of the connection.
        self.state: dict[str, Any] = {}
        self._ticker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ out

    def send(self, message: Any) -> bool:
        """Write ``message`` as JSON text (stamped by the dialect). A message with
        sequence numbers (a Coinbase heartbeat) may be swallowed by the gap fault."""
        message = self.dialect.stamp(self, message)
        if self.live.drop_count and take_drop(
            self.server, self.live, "", self.dialect.numbers(message)
        ):
            return False
        return self.server.write(self.live, orjson.dumps(message))

    def send_text(self, text: str) -> bool:
        return self.server.write(self.live, text.encode())

    def close(self, cause: str, code: int, reason: str) -> None:
        self.server.disconnect(self.live, cause, code, reason)

    # ------------------------------------------------------------------ time

    def every(self, period: float, action: Callable[[], Any]) -> None:
        """Run ``action()`` every ``period`` seconds while the connection is open and not
        silent (the task ends with the connection)."""

        async def run() -> None:
            while not self.live.closing:
                await asyncio.sleep(period)
                if not (self.live.conn.kst_silent or self.live.closing):
                    action()

        self.live.tasks.append(self.server.loop.create_task(run()))

    def quiet_for(self) -> float:
        """Seconds since the client last sent a data message."""
        return self.server.loop.time() - self.last_heard

    # ------------------------------------------------------------------ data

    def add_feed(self, name: str, produce: Callable[[], Any]) -> None:
        """Publish ``produce()`` at the simulator's ``event_rate`` (first message now)."""
        if name in self.feeds:
            return
        self.feeds[name] = feed = Feed(name, produce)
        if not self.live.stalled:
            self.emit(feed)
        rate = self.server.opts.event_rate
        if self._ticker is None and rate > 0:
            self._ticker = self.server.loop.create_task(self._tick(1.0 / rate))
            self.live.tasks.append(self._ticker)

    def emit(self, feed: Feed) -> None:
        """Produce and send the next message of ``feed`` (or drop it: the gap fault)."""
        message = self.dialect.stamp(self, feed.produce())
        if take_drop(self.server, self.live, feed.name, self.dialect.numbers(message)):
            return
        if self.server.write(self.live, orjson.dumps(message)):
            self.last_data = self.server.loop.time()

    async def _tick(self, period: float) -> None:
        loop = self.server.loop
        start = loop.time()
        n = 0
        while not self.live.closing:
            n += 1
            await asyncio.sleep(max(0.0, start + n * period - loop.time()))
            if self.live.stalled or self.live.conn.kst_silent:
                continue
            for feed in list(self.feeds.values()):
                self.emit(feed)


class VenueDialect(Dialect):
    """A venue served by :class:`VenueConn`: JSON requests answered per connection.

    Subclasses implement :meth:`open` (what a new connection starts) and :meth:`answer`
    (one client message; ``text`` is the raw text, ``msg`` the parsed JSON or None).

    ``ignore(*kinds)`` makes the server read and never answer some requests: ``"login"``,
    ``"ping"`` (the application heartbeat) or ``"request"`` (anything else); the bad-input
    tests use it for a reply that never comes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ignored: frozenset[str] = frozenset()

    def ignore(self, *kinds: str) -> None:
        """Never answer these kinds of request from now on (no argument: answer all)."""
        unknown = set(kinds) - {"login", "ping", "request"}
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}: login, ping or request")
        with self.lock:
            self._ignored = frozenset(kinds)

    def ignores(self, kind: str) -> bool:
        with self.lock:
            return kind in self._ignored

    def route(self, server: SimServer, conn: SimConnection, target: str) -> Response | None:
        path = urlsplit(target).path
        if self.endpoint_of(path) is None:
            return conn.respond(http.HTTPStatus.NOT_FOUND, f"Unknown path {unquote(path)}\n")
        conn.kst_route = (target, [], False)
        return None

    def endpoint_of(self, path: str) -> str | None:
        """The endpoint name of ``path``, or None."""
        path = unquote(path)
        for name, known in self.endpoints.items():
            if path == known or path == known.rstrip("/") + "/":
                return name
        return None

    def opened(self, server: SimServer, live: Live) -> None:
        path = urlsplit(live.record.path).path
        endpoint = self.endpoint_of(path) or ""
        live.venue = vc = VenueConn(self, server, live, endpoint)
        self.open(vc)

    def received(self, server: SimServer, live: Live, message: str | bytes) -> None:
        vc = live.venue
        assert isinstance(vc, VenueConn)
        vc.last_heard = server.loop.time()
        text = message.decode(errors="replace") if isinstance(message, bytes) else message
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            msg = None
        self.answer(vc, text, msg if isinstance(msg, dict) else None)

    def open(self, vc: VenueConn) -> None:
        """A new connection: start its timers."""

    def answer(self, vc: VenueConn, text: str, msg: dict[str, Any] | None) -> None:
        raise NotImplementedError
