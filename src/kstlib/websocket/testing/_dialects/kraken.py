"""Kraken Spot WebSocket v2: a token per connection, the heartbeat channel, and the
``sequence`` of the private channels.

Endpoints
    ``/v2`` (public; Kraken: ``wss://ws.kraken.com/v2``) and ``/auth/v2`` (private;
    Kraken: ``wss://ws-auth.kraken.com/v2``). A new connection first gets
    ``{"channel":"status","type":"update","data":[{"system":"online",...}]}``.

Heartbeat rule
    Once the connection has a subscription, the server sends ``{"channel":"heartbeat"}``
    every ``heartbeat_interval`` seconds (Kraken: about once a second); it keeps flowing
    when the data feed stalls. ``{"method":"ping","req_id":n}`` is answered
    ``{"method":"pong","req_id":n,"time_in":..,"time_out":..}``. No silence cut.

Token expiry
    Private channels take a token in the subscribe request (Kraken: from the REST call
    ``GetWebSocketsToken``, played here by :meth:`KrakenDialect.issue_token`). A token
    must be used within ``token_ttl`` seconds of its creation (Kraken: 15 minutes); a
    connection that subscribed with it keeps it, but the next connection needs a fresh
    one. :meth:`KrakenDialect.expire_tokens` ages every token issued so far past that.
    An expired or unknown token gets ``{"error":"ESession:Invalid session",
    "method":"subscribe","success":false,...}`` (the wording is the simulator's).

Subscriptions and sequence numbers
    ``{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"]},"req_id":1}``
    is acknowledged per symbol with ``{"method":"subscribe","result":{..},"success":true,
    ...}``; ``book`` has no sequence numbers (a CRC32 ``checksum``, here a placeholder).
    ``executions`` (private, with ``token``) sends a snapshot, then updates, each with
    a top-level ``sequence`` that grows by one: the gap fault's numbers are
    ``("executions", sequence - 1, sequence)``.
"""

from __future__ import annotations

import itertools
import secrets
import time
import zlib
from typing import Any, ClassVar

from kstlib.websocket.testing._dialects.base import (
    Numbers,
    VenueConn,
    VenueDialect,
    iso_now,
    levels,
)

__all__ = ["KrakenDialect"]


class KrakenDialect(VenueDialect):
    """Kraken Spot WebSocket v2, public and private (see the module docstring)."""

    name: ClassVar[str] = "kraken"
    endpoints: ClassVar[dict[str, str]] = {"public": "/v2", "private": "/auth/v2"}

    def __init__(self, *, token_ttl: float = 900.0, heartbeat_interval: float = 1.0) -> None:
        super().__init__()
        if token_ttl <= 0 or heartbeat_interval <= 0:
            raise ValueError("token_ttl and heartbeat_interval must be > 0")
        self.token_ttl = token_ttl
        self.heartbeat_interval = heartbeat_interval
        self._tokens: dict[str, float] = {}  # token -> created (time.monotonic())

    # ------------------------------------------------------------------ tokens

    def issue_token(self) -> str:
        """A WebSocket token (the stand-in for REST ``GetWebSocketsToken``)."""
        token = secrets.token_urlsafe(32)
        with self.lock:
            self._tokens[token] = time.monotonic()
        return token

    def expire_tokens(self) -> None:
        """Every token issued so far is too old to open a subscription from now on."""
        with self.lock:
            for token in self._tokens:
                self._tokens[token] = -self.token_ttl

    def token_valid(self, token: Any) -> bool:
        with self.lock:
            created = self._tokens.get(str(token))
        return created is not None and time.monotonic() - created < self.token_ttl

    # ------------------------------------------------------------------ server hooks

    def open(self, vc: VenueConn) -> None:
        vc.state.update(beating=False, tokens=set())
        status = {
            "api_version": "v2",
            "connection_id": 8_000_000_000 + vc.live.index,
            "system": "online",
            "version": "2.0.10",
        }
        vc.send({"channel": "status", "type": "update", "data": [status]})

    def numbers(self, message: Any) -> Numbers | None:
        seq = message.get("sequence")
        return None if seq is None else (message["channel"], seq - 1, seq)

    def answer(self, vc: VenueConn, text: str, msg: dict[str, Any] | None) -> None:
        method = msg.get("method") if msg else None
        if self.ignores("ping" if method == "ping" else "request"):
            return
        time_in = iso_now()
        req_id = msg.get("req_id") if msg else None
        if method == "ping":
            vc.send({"method": "pong", "req_id": req_id, "time_in": time_in, "time_out": iso_now()})
            return
        if method not in ("subscribe", "unsubscribe") or msg is None:
            self._error(vc, str(method), req_id, time_in, "EGeneral:Invalid arguments")
            return
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        assert isinstance(params, dict)
        channel = params.get("channel")
        if channel == "executions" and vc.endpoint == "private":
            token = params.get("token")
            if token not in vc.state["tokens"] and not self.token_valid(token):
                self._error(vc, str(method), req_id, time_in, "ESession:Invalid session")
                return
            vc.state["tokens"].add(token)
            self._ack(vc, str(method), req_id, time_in, {"channel": channel, "snapshot": True})
            self._apply(vc, str(method), "executions", self._executions)
        elif channel == "book" and isinstance(params.get("symbol"), list):
            for symbol in params["symbol"]:
                result = {"channel": channel, "symbol": symbol, "depth": 10, "snapshot": True}
                self._ack(vc, str(method), req_id, time_in, result)
                self._apply(vc, str(method), f"book:{symbol}", lambda v, s=symbol: self._book(v, s))
        else:
            self._error(vc, str(method), req_id, time_in, "EGeneral:Invalid arguments")

    # ------------------------------------------------------------------ replies

    def _ack(
        self, vc: VenueConn, method: str, req_id: Any, time_in: str, result: dict[str, Any]
    ) -> None:
        reply = {"method": method, "result": result, "success": True, "time_in": time_in}
        vc.send({**reply, "time_out": iso_now(), **({"req_id": req_id} if req_id else {})})

    def _error(self, vc: VenueConn, method: str, req_id: Any, time_in: str, error: str) -> None:
        reply = {"error": error, "method": method, "success": False, "time_in": time_in}
        vc.send({**reply, "time_out": iso_now(), **({"req_id": req_id} if req_id else {})})

    def _apply(self, vc: VenueConn, method: str, name: str, make: Any) -> None:
        if method == "unsubscribe":
            vc.feeds.pop(name, None)
            return
        vc.add_feed(name, make(vc))
        if not vc.state["beating"]:
            vc.state["beating"] = True
            vc.every(self.heartbeat_interval, lambda: vc.send({"channel": "heartbeat"}))

    # ------------------------------------------------------------------ channels

    def _book(self, vc: VenueConn, symbol: str) -> Any:
        first = [True]

        def produce() -> dict[str, Any]:
            bids, asks = levels(vc.rng, 60_000.0)
            book = {
                "symbol": symbol,
                "bids": [{"price": float(p), "qty": float(q)} for p, q in bids],
                "asks": [{"price": float(p), "qty": float(q)} for p, q in asks],
                "checksum": zlib.crc32(repr((bids, asks)).encode()),
                "timestamp": iso_now(),
            }
            kind = "snapshot" if first[0] else "update"
            first[0] = False
            return {"channel": "book", "type": kind, "data": [book]}

        return produce

    def _executions(self, vc: VenueConn) -> Any:
        sequence = itertools.count(1)

        def produce() -> dict[str, Any]:
            n = next(sequence)
            report = {
                "order_id": f"OSIM{vc.live.index:02d}-{n:05d}",
                "symbol": "BTC/USD",
                "side": "buy",
                "order_type": "limit",
                "order_qty": 0.01,
                "limit_price": 60_000.0,
                "exec_type": "new",
                "order_status": "new",
                "timestamp": iso_now(),
            }
            kind = "snapshot" if n == 1 else "update"
            return {"channel": "executions", "type": kind, "data": [report], "sequence": n}

        return produce
