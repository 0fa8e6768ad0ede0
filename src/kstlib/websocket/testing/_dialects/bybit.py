"""Bybit v5: ``{"op":"ping"}``, ``auth`` with an ``expires`` stamp, orderbook ``u``.

Endpoints
    ``/v5/public/spot``, ``/v5/public/linear`` and ``/v5/private`` (Bybit:
    ``wss://stream.bybit.com/v5/...``).

Heartbeat rule and silence cut
    ``{"req_id":..,"op":"ping"}`` is answered, on a public endpoint,
    ``{"success":true,"ret_msg":"pong","conn_id":..,"req_id":..,"op":"ping"}`` and on the
    private one ``{"req_id":..,"op":"pong","args":["<ms>"],"conn_id":..}`` (both shapes
    are Bybit's). A connection with neither a client message nor data sent for
    ``silence`` seconds (Bybit: 10 minutes; ``?max_active_time=30s..600s`` on the
    private URL) is closed with 1000 ``"max_active_time"`` (close code and reason are
    the simulator's choice).

Login
    ``{"op":"auth","args":[api_key, expires, signature]}``: ``expires`` in Unix ms, in
    the future; ``signature`` hex(HMAC-SHA256(secret, "GET/realtime" + expires)). Answer
    ``{"success":true,"ret_msg":"","op":"auth","conn_id":..}`` or ``success`` false
    with ``ret_msg`` ``"Invalid apikey"``, ``"Request expired"`` or ``"Invalid sign"``
    (the simulator's wording). An auth message built once expires with its stamp.

Subscriptions
    ``{"op":"subscribe","args":["orderbook.50.BTCUSDT"],"req_id":..}`` (public) and
    ``"order"`` (private, after the auth: else ``"Request not authorized"``), answered
    ``{"success":true,...,"op":"subscribe"}``. An orderbook sends a ``snapshot``, then
    ``delta`` messages whose ``data.u`` grows by one: the gap fault's numbers are
    ``(topic, u - 1, u)``. ``order`` streams order updates.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any, ClassVar

from kstlib.websocket.testing._dialects.base import (
    Numbers,
    VenueConn,
    VenueDialect,
    levels,
    now_ms,
)

__all__ = ["BybitDialect"]

_BOOK = re.compile(r"^orderbook\.(1|50|200|1000)\.([A-Z0-9]{2,30})$")
_PRIVATE_TOPICS = frozenset({"order", "execution", "position", "wallet"})
_ACTIVE_TIME = re.compile(r"^(\d+)([sm]?)$")


def bybit_sign(secret: str, expires: int) -> str:
    """Bybit's WebSocket auth signature."""
    return hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()


class BybitDialect(VenueDialect):
    """Bybit v5 public and private WebSocket (see the module docstring)."""

    name: ClassVar[str] = "bybit"
    endpoints: ClassVar[dict[str, str]] = {
        "public": "/v5/public/spot",
        "linear": "/v5/public/linear",
        "private": "/v5/private",
    }

    def __init__(
        self,
        *,
        silence: float = 600.0,
        api_key: str = "sim-bybit-key",
        api_secret: str = "sim-bybit-secret",
    ) -> None:
        super().__init__()
        if silence <= 0:
            raise ValueError("silence must be > 0")
        self.silence = silence
        self.api_key = api_key
        self.api_secret = api_secret

    def open(self, vc: VenueConn) -> None:
        limit = self.silence
        found = _ACTIVE_TIME.match((vc.query.get("max_active_time") or [""])[0])
        if vc.endpoint == "private" and found:
            seconds = int(found.group(1)) * (60 if found.group(2) == "m" else 1)
            limit = float(min(max(seconds, 30), 600))

        def watch() -> None:
            if min(vc.quiet_for(), vc.server.loop.time() - vc.last_data) > limit:
                vc.close("silence", 1000, "max_active_time")

        vc.every(min(limit / 5, 1.0), watch)

    def answer(self, vc: VenueConn, text: str, msg: dict[str, Any] | None) -> None:
        op = msg.get("op") if msg else None
        kind = {"ping": "ping", "auth": "login"}.get(str(op), "request")
        if self.ignores(kind) or msg is None:
            return
        req_id = msg.get("req_id")
        if op == "ping":
            self._pong(vc, req_id)
        elif op == "auth":
            self._auth(vc, msg.get("args"), req_id)
        elif op in ("subscribe", "unsubscribe"):
            self._subscribe(vc, str(op), msg.get("args") or [], req_id)
        else:
            self._reply(vc, str(op), req_id, f"error:handler not found,op:{op}", success=False)

    def numbers(self, message: Any) -> Numbers | None:
        if message.get("type") != "delta":
            return None
        u = message["data"]["u"]
        return message["topic"], u - 1, u

    # ------------------------------------------------------------------ replies

    def _reply(
        self, vc: VenueConn, op: str, req_id: Any, ret_msg: str, *, success: bool = True
    ) -> None:
        reply: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": vc.conn_id}
        if req_id is not None:
            reply["req_id"] = req_id
        reply["op"] = op
        vc.send(reply)

    def _pong(self, vc: VenueConn, req_id: Any) -> None:
        if vc.endpoint == "private":
            vc.send(
                {"req_id": req_id, "op": "pong", "args": [str(now_ms())], "conn_id": vc.conn_id}
            )
        else:
            reply = {"success": True, "ret_msg": "pong", "conn_id": vc.conn_id}
            vc.send({**reply, "req_id": req_id if req_id is not None else "", "op": "ping"})

    def _auth(self, vc: VenueConn, args: Any, req_id: Any) -> None:
        error = self._verify(args)
        if error:
            self._reply(vc, "auth", req_id, error, success=False)
            return
        vc.authed = True
        self._reply(vc, "auth", req_id, "")

    def _verify(self, args: Any) -> str:
        if not isinstance(args, list) or len(args) != 3:
            return "Params Error"
        key, expires, signature = args
        if key != self.api_key:
            return "Invalid apikey"
        if not isinstance(expires, int) or expires <= now_ms():
            return "Request expired"
        if not hmac.compare_digest(str(signature), bybit_sign(self.api_secret, expires)):
            return "Invalid sign"
        return ""

    # ------------------------------------------------------------------ subscriptions

    def _subscribe(self, vc: VenueConn, op: str, topics: Any, req_id: Any) -> None:
        for topic in topics if isinstance(topics, list) else []:
            book = _BOOK.match(str(topic))
            if vc.endpoint != "private" and book:
                produce = self._book(vc, str(topic), book.group(2))
            elif vc.endpoint == "private" and topic in _PRIVATE_TOPICS:
                if not vc.authed:
                    self._reply(vc, op, req_id, "Request not authorized", success=False)
                    return
                produce = self._orders(vc, str(topic))
            else:
                self._reply(vc, op, req_id, f"error:handler not found,topic:{topic}", success=False)
                return
            if op == "subscribe":
                vc.add_feed(str(topic), produce)
            else:
                vc.feeds.pop(str(topic), None)
        self._reply(vc, op, req_id, "" if vc.endpoint == "private" else op)

    def _book(self, vc: VenueConn, topic: str, symbol: str) -> Any:
        state = {"u": vc.rng.randint(1_000_000, 9_999_999), "seq": 7_000_000_000, "first": True}

        def produce() -> dict[str, Any]:
            if not state["first"]:
                state["u"] += 1
            state["seq"] += vc.rng.randint(1, 50)
            bids, asks = levels(vc.rng, 60_000.0)
            kind = "snapshot" if state["first"] else "delta"
            state["first"] = False
            ms = now_ms()
            data = {"s": symbol, "b": bids, "a": asks, "u": state["u"], "seq": state["seq"]}
            return {"topic": topic, "ts": ms, "type": kind, "data": data, "cts": ms - 2}

        return produce

    def _orders(self, vc: VenueConn, topic: str) -> Any:
        count = [0]

        def produce() -> dict[str, Any]:
            count[0] += 1
            ms = now_ms()
            order = {
                "category": "spot",
                "symbol": "BTCUSDT",
                "orderId": f"sim-{vc.live.index}-{count[0]}",
                "side": "Buy",
                "orderType": "Limit",
                "price": "60000",
                "qty": "0.01",
                "orderStatus": "New",
                "updatedTime": str(ms),
            }
            return {
                "id": f"{vc.conn_id}-{count[0]}",
                "topic": topic,
                "creationTime": ms,
                "data": [order],
            }

        return produce
