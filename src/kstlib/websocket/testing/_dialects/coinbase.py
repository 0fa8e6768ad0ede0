"""Coinbase Advanced Trade: a JWT in each subscribe message, the heartbeats channel, and
one ``sequence_num`` counter per connection.

Endpoints
    ``/`` (market data; Coinbase: ``wss://advanced-trade-ws.coinbase.com``) and ``/user``
    (user orders; Coinbase: ``wss://advanced-trade-ws-user.coinbase.com``).

Heartbeat rule and silence cut
    A connection that sends no ``subscribe`` within ``subscribe_within`` seconds
    (Coinbase: 5) is closed (1000 ``"no subscribe"``, the simulator's choice). The
    ``heartbeats`` channel sends ``{"channel":"heartbeats",...,"events":[{"current_time":..,
    "heartbeat_counter":n}]}`` every ``heartbeat_interval`` seconds; it keeps flowing when
    the data feed stalls.

Token expiry
    ``{"type":"subscribe","channel":C,"product_ids":[..],"jwt":..}``: one channel per
    message, and the JWT lives ``jwt_ttl`` seconds (Coinbase: 2 minutes), so each
    subscribe needs a fresh one. Real clients sign it with their CDP key (ES256);
    here :meth:`CoinbaseDialect.issue_jwt` stands in for that builder (HS256 with the
    simulator's secret, claims ``iss``, ``sub``, ``nbf``, ``exp``) and
    :meth:`CoinbaseDialect.expire_jwts` makes every token issued so far expire. The
    ``user`` channel (``/user``) needs a valid JWT; a JWT given must be valid. A bad one
    gets ``{"type":"error","message":"authentication failure"}``.

Sequence numbers
    Every channel message carries ``sequence_num``, one counter per connection across
    all channels (0, 1, 2...): the gap fault's numbers are ``("sequence_num", n - 1, n)``.
    Subscribing is answered on the ``subscriptions`` channel; ``level2`` sends
    ``l2_data`` (a snapshot, then updates) and ``user`` order updates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
import time
from typing import Any, ClassVar

import orjson

from kstlib.websocket.testing._dialects.base import (
    Numbers,
    VenueConn,
    VenueDialect,
    iso_now,
    levels,
)

__all__ = ["CoinbaseDialect"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CoinbaseDialect(VenueDialect):
    """Coinbase Advanced Trade market and user WebSockets (see the module docstring)."""

    name: ClassVar[str] = "coinbase"
    endpoints: ClassVar[dict[str, str]] = {"public": "/", "private": "/user"}

    def __init__(
        self,
        *,
        jwt_ttl: float = 120.0,
        subscribe_within: float = 5.0,
        heartbeat_interval: float = 1.0,
        key_name: str = "organizations/sim/apiKeys/sim",
    ) -> None:
        super().__init__()
        if min(jwt_ttl, subscribe_within, heartbeat_interval) <= 0:
            raise ValueError("jwt_ttl, subscribe_within and heartbeat_interval must be > 0")
        self.jwt_ttl = jwt_ttl
        self.subscribe_within = subscribe_within
        self.heartbeat_interval = heartbeat_interval
        self.key_name = key_name
        self._secret = secrets.token_bytes(32)
        self._ids = itertools.count(1)
        self._first_valid = 1  # tokens with a smaller jti are expired

    # ------------------------------------------------------------------ tokens

    def issue_jwt(self) -> str:
        """A JWT valid ``jwt_ttl`` seconds (the stand-in for the client's own builder)."""
        now = time.time()
        with self.lock:
            jti = next(self._ids)
        header = _b64(orjson.dumps({"alg": "HS256", "kid": self.key_name, "typ": "JWT"}))
        claims = {"iss": "cdp", "sub": self.key_name, "nbf": now, "exp": now + self.jwt_ttl}
        body = _b64(orjson.dumps({**claims, "jti": jti}))
        signature = hmac.new(self._secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(signature)}"

    def expire_jwts(self) -> None:
        """Every JWT issued so far is expired from now on."""
        with self.lock:
            self._first_valid = next(self._ids)

    def jwt_valid(self, token: Any) -> bool:
        try:
            header, body, signature = str(token).split(".")
            claims = orjson.loads(_unb64(body))
            expected = hmac.new(self._secret, f"{header}.{body}".encode(), hashlib.sha256)
            good = hmac.compare_digest(_unb64(signature), expected.digest())
        except ValueError:
            return False
        with self.lock:
            fresh = int(claims.get("jti", 0)) >= self._first_valid
        return good and fresh and float(claims.get("exp", 0)) > time.time()

    # ------------------------------------------------------------------ server hooks

    def open(self, vc: VenueConn) -> None:
        vc.state.update(sequence=itertools.count(0), subscribed=False, beats=0)

        def no_subscribe() -> None:
            if not vc.state["subscribed"]:
                vc.close("silence", 1000, "no subscribe")

        vc.server.later(self.subscribe_within, no_subscribe)

    def stamp(self, vc: VenueConn, message: Any) -> Any:
        if "channel" not in message:
            return message
        return {**message, "sequence_num": next(vc.state["sequence"])}

    def numbers(self, message: Any) -> Numbers | None:
        seq = message.get("sequence_num")
        return None if seq is None else ("sequence_num", seq - 1, seq)

    def answer(self, vc: VenueConn, text: str, msg: dict[str, Any] | None) -> None:
        if self.ignores("request"):
            return
        kind = msg.get("type") if msg else None
        if kind not in ("subscribe", "unsubscribe") or msg is None:
            vc.send({"type": "error", "message": "Failed to parse message"})
            return
        channel = msg.get("channel")
        products = [str(p) for p in msg.get("product_ids") or []]
        needs_jwt = channel == "user" or "jwt" in msg
        if needs_jwt and not self.jwt_valid(msg.get("jwt")):
            vc.send({"type": "error", "message": "authentication failure"})
            return
        if channel not in ("heartbeats", "level2", "user") or (
            channel == "user" and vc.endpoint != "private"
        ):
            vc.send({"type": "error", "message": f"Failed to subscribe: unknown channel {channel}"})
            return
        vc.state["subscribed"] = True
        if kind == "subscribe":
            self._subscribe(vc, str(channel), products)
        else:
            for name in [n for n in vc.feeds if n.split(":")[0] == channel]:
                del vc.feeds[name]
        listing: dict[str, list[str]] = {}
        for name in vc.feeds:
            chan, _, product = name.partition(":")
            listing.setdefault(chan, []).append(product or chan)
        if vc.state.get("heartbeats"):
            listing["heartbeats"] = ["heartbeats"]
        vc.send(self._message("subscriptions", [{"subscriptions": listing}]))

    # ------------------------------------------------------------------ channels

    def _message(self, channel: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        return {"channel": channel, "client_id": "", "timestamp": iso_now(), "events": events}

    def _subscribe(self, vc: VenueConn, channel: str, products: list[str]) -> None:
        if channel == "heartbeats":
            if not vc.state.get("heartbeats"):
                vc.state["heartbeats"] = True
                vc.every(self.heartbeat_interval, lambda: self._beat(vc))
            return
        if channel == "user":
            vc.add_feed("user", self._user(vc))
            return
        for product in products:
            vc.add_feed(f"level2:{product}", self._level2(vc, product))

    def _beat(self, vc: VenueConn) -> None:
        vc.state["beats"] += 1
        now = iso_now()
        event = {"current_time": now, "heartbeat_counter": vc.state["beats"]}
        vc.send(self._message("heartbeats", [event]))

    def _level2(self, vc: VenueConn, product: str) -> Any:
        first = [True]

        def produce() -> dict[str, Any]:
            bids, asks = levels(vc.rng, 60_000.0, 1 if not first[0] else 3)
            now = iso_now()
            updates = [
                {"side": side, "event_time": now, "price_level": p, "new_quantity": q}
                for side, book in (("bid", bids), ("offer", asks))
                for p, q in book
            ]
            kind = "snapshot" if first[0] else "update"
            first[0] = False
            return self._message(
                "l2_data", [{"type": kind, "product_id": product, "updates": updates}]
            )

        return produce

    def _user(self, vc: VenueConn) -> Any:
        count = [0]

        def produce() -> dict[str, Any]:
            count[0] += 1
            order = {
                "order_id": f"sim-{vc.live.index}-{count[0]}",
                "client_order_id": "",
                "product_id": "BTC-USD",
                "order_side": "BUY",
                "order_type": "Limit",
                "status": "OPEN",
                "limit_price": "60000",
                "leaves_quantity": "0.01",
            }
            kind = "snapshot" if count[0] == 1 else "update"
            return self._message("user", [{"type": kind, "orders": [order]}])

        return produce
