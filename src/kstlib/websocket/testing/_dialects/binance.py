"""Binance spot: the market streams (the simulator's default behaviour, unchanged) and
the user-data stream of a listenKey.

Market streams
    ``/ws/<stream>``, ``/ws`` and ``/stream?streams=a/b``, the JSON control channel
    (``SUBSCRIBE``...) and the trade and kline streams: see the package docstring. With
    ``depth=True`` the diff-depth streams ``<symbol>@depth[@100ms]`` exist too
    (``{"e":"depthUpdate","U":first,"u":last,...}``; ``futures=True`` adds ``pu``, the
    previous event's ``u``). Heartbeat rule: the server's protocol pings
    (``ping_interval`` / ``pong_timeout``). Connection limit: ``max_connection_age``.

User-data stream
    A listenKey comes from REST (``POST /api/v3/userDataStream``), played here by
    :meth:`BinanceDialect.new_listen_key`: it returns the active key, extended, or a new
    one once the last expired. It is valid ``listen_key_ttl`` seconds (Binance: 60
    minutes); :meth:`BinanceDialect.keepalive_listen_key` (``PUT``) extends it and
    raises ``ValueError`` (Binance's -1125) for a key that is no more. ``/ws/<listenKey>``
    streams ``executionReport`` events at ``event_rate``; when the key expires the
    connection receives ``{"e":"listenKeyExpired","E":ms,"listenKey":key}`` and then no
    more events, though it stays open (as Binance documents). An unknown or expired key
    in the URL is refused with HTTP 400 like any invalid stream name (the simulator's
    choice). :meth:`BinanceDialect.expire_listen_key` ends a key's validity now.

Thread-safety: the listenKey store is guarded by :attr:`Dialect.lock`; the rest runs on
the simulator's loop.
"""

from __future__ import annotations

import http
import secrets
import time
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from kstlib.websocket.testing._dialects.base import Dialect, now_ms
from kstlib.websocket.testing._market import parse_stream

if TYPE_CHECKING:
    from websockets.http11 import Response

    from kstlib.websocket.testing._connection import Live, SimConnection
    from kstlib.websocket.testing._server import SimServer

__all__ = ["BinanceDialect"]


class BinanceDialect(Dialect):
    """Binance spot market and user-data streams (see the module docstring)."""

    name: ClassVar[str] = "binance"
    endpoints: ClassVar[dict[str, str]] = {"public": "/ws", "combined": "/stream"}

    def __init__(
        self, *, depth: bool = False, futures: bool = False, listen_key_ttl: float = 3600.0
    ) -> None:
        super().__init__()
        if listen_key_ttl <= 0:
            raise ValueError("listen_key_ttl must be > 0")
        self.market_depth = depth or futures
        self.futures = futures
        self.listen_key_ttl = listen_key_ttl
        self._keys: dict[str, float] = {}  # listenKey -> expiry (time.monotonic())

    # ------------------------------------------------------------------ REST stand-ins

    def new_listen_key(self) -> str:
        """``POST /api/v3/userDataStream``: the active key (validity extended), or a
        new one when none is active."""
        now = time.monotonic()
        with self.lock:
            for key, until in self._keys.items():
                if until > now:
                    self._keys[key] = now + self.listen_key_ttl
                    return key
            key = secrets.token_urlsafe(45)[:60]
            self._keys[key] = now + self.listen_key_ttl
            return key

    def keepalive_listen_key(self, key: str) -> None:
        """``PUT /api/v3/userDataStream``: extend ``key``; ``ValueError`` when it is no
        more (Binance: -1125 "This listenKey does not exist.")."""
        now = time.monotonic()
        with self.lock:
            if self._keys.get(key, 0.0) <= now:
                raise ValueError("-1125 This listenKey does not exist.")
            self._keys[key] = now + self.listen_key_ttl

    def expire_listen_key(self, key: str | None = None) -> None:
        """End the validity of ``key`` (every key when None) now."""
        with self.lock:
            for k in [key] if key is not None else list(self._keys):
                if k in self._keys:
                    self._keys[k] = 0.0

    def listen_key_active(self, key: str) -> bool:
        with self.lock:
            return self._keys.get(key, 0.0) > time.monotonic()

    def _is_listen_key(self, name: str) -> bool:
        with self.lock:
            return name in self._keys

    # ------------------------------------------------------------------ server hooks

    def route(self, server: SimServer, conn: SimConnection, target: str) -> Response | None:
        """``/ws``, ``/ws/<stream or listenKey>`` or ``/stream?streams=a/b``; 404 for
        another path, 400 for a bad stream name, an expired key or too many streams."""
        from urllib.parse import parse_qs, unquote, urlsplit

        parts = urlsplit(target)
        path = unquote(parts.path)
        if path in ("/ws", "/ws/"):
            streams: list[str] = []
            combined = False
        elif path.startswith("/ws/"):
            name = path[4:]
            if self._is_listen_key(name):
                if not self.listen_key_active(name):
                    return conn.respond(http.HTTPStatus.BAD_REQUEST, "listenKey expired\n")
                conn.kst_route = (target, [], False)
                return None
            streams = [name]
            combined = False
        elif path in ("/stream", "/stream/"):
            values = parse_qs(parts.query).get("streams", [])
            streams = [s for v in values for s in v.split("/") if s]
            combined = True
        else:
            return conn.respond(http.HTTPStatus.NOT_FOUND, f"Unknown path {path}\n")
        unique = list(dict.fromkeys(streams))
        for name in unique:
            try:
                parse_stream(name, server.opts.kline_seconds, depth=self.market_depth)
            except ValueError as exc:
                return conn.respond(http.HTTPStatus.BAD_REQUEST, f"{exc}\n")
        limit = server.opts.max_streams_per_connection
        if len(unique) > limit:
            return conn.respond(
                http.HTTPStatus.BAD_REQUEST, f"Too many streams: at most {limit} per connection\n"
            )
        conn.kst_route = (target, unique, combined)
        return None

    def opened(self, server: SimServer, live: Live) -> None:
        conn = live.conn
        assert conn.kst_route is not None
        target, streams, _combined = conn.kst_route
        for name in streams:
            server.hub.subscribe(live, name)
        if not streams and target.startswith("/ws/") and len(target) > 4:
            self._user_data(server, live, target[4:])

    def received(self, server: SimServer, live: Live, message: str | bytes) -> None:
        from kstlib.websocket.testing._requests import reply

        server.write(live, orjson.dumps(reply(server, live, message)))

    # ------------------------------------------------------------------ user data

    def _user_data(self, server: SimServer, live: Live, key: str) -> None:
        """Stream ``executionReport`` events until ``key`` expires, then say so once."""
        import asyncio

        rate = server.opts.event_rate

        async def run() -> None:
            order_id = 0
            step = min(1.0 / rate, 0.05) if rate > 0 else 0.05
            next_event = server.loop.time()
            while not live.closing:
                await asyncio.sleep(step)
                if live.conn.kst_silent:
                    continue
                if not self.listen_key_active(key):
                    server.write(
                        live,
                        orjson.dumps({"e": "listenKeyExpired", "E": now_ms(), "listenKey": key}),
                    )
                    return
                if rate <= 0 or live.stalled or server.loop.time() < next_event:
                    continue
                next_event += 1.0 / rate
                order_id += 1
                server.write(live, orjson.dumps(_execution_report(order_id)))

        live.tasks.append(server.loop.create_task(run()))


def _execution_report(order_id: int) -> dict[str, Any]:
    ms = now_ms()
    return {
        "e": "executionReport",
        "E": ms,
        "s": "BTCUSDT",
        "c": f"sim-{order_id}",
        "S": "BUY",
        "o": "LIMIT",
        "f": "GTC",
        "q": "0.01000000",
        "p": "60000.00000000",
        "x": "NEW",
        "X": "NEW",
        "i": order_id,
        "T": ms,
        "O": ms,
    }
