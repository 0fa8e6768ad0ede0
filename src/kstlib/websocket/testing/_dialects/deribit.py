"""Deribit API v2 (JSON-RPC over WebSocket): ``test_request`` heartbeats, ``public/auth``,
book ``change_id``.

Endpoint
    ``/ws/api/v2`` (Deribit: ``wss://www.deribit.com/ws/api/v2``). Every request
    ``{"jsonrpc":"2.0","id":n,"method":..,"params":{..}}`` gets
    ``{"jsonrpc":"2.0","id":n,"result":..,"usIn":..,"usOut":..,"usDiff":..,"testnet":true}``
    or ``{"jsonrpc":"2.0","id":n,"error":{"code":c,"message":..},...}``.

Heartbeat rule
    ``public/set_heartbeat`` ``{"interval": s}`` (at least ``min_heartbeat_interval``;
    Deribit: 10) makes the server send
    ``{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}`` every
    ``s`` seconds; the client must answer each with a ``public/test`` request before the
    next one, or the connection is closed (1000 ``"heartbeat timeout"``, the simulator's
    choice; Deribit says it closes "immediately"). ``public/test`` returns
    ``{"version": ..}``; ``public/disable_heartbeat`` stops it. ``public/get_time``
    returns the server's time in milliseconds.

Login
    ``public/auth`` with ``grant_type`` ``client_credentials``, ``client_id`` and
    ``client_secret`` returns the tokens (scope ``connection``: valid on this connection
    only), or error 13004 ``invalid_credentials``.

Subscriptions and sequence numbers
    ``public/subscribe`` / ``private/subscribe`` ``{"channels": [..]}`` returns the
    channels subscribed. ``book.<instrument>.<interval>`` (public) sends a ``snapshot``
    with ``change_id``, then ``change`` notifications whose ``prev_change_id`` is the
    previous ``change_id`` (which grows by 1 to 5): the gap fault's numbers are
    ``(channel, prev_change_id, change_id)``. ``user.orders.<instrument>.raw`` needs the
    login and ``private/subscribe`` (else 13009 ``unauthorized``). Notifications are
    ``{"jsonrpc":"2.0","method":"subscription","params":{"channel":..,"data":..}}``.
"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

from kstlib.websocket.testing._dialects.base import Numbers, VenueConn, VenueDialect, now_ms

__all__ = ["DeribitDialect"]

_BOOK = re.compile(r"^book\.([A-Z0-9_-]+)\.(raw|100ms|agg2)$")
_ORDERS = re.compile(r"^user\.orders\.([A-Z0-9_-]+)\.(raw|100ms|agg2)$")


class DeribitDialect(VenueDialect):
    """Deribit API v2 over WebSocket (see the module docstring)."""

    name: ClassVar[str] = "deribit"
    endpoints: ClassVar[dict[str, str]] = {"public": "/ws/api/v2"}

    def __init__(
        self,
        *,
        min_heartbeat_interval: float = 10.0,
        client_id: str = "sim-deribit-id",
        client_secret: str = "sim-deribit-secret",
    ) -> None:
        super().__init__()
        if min_heartbeat_interval <= 0:
            raise ValueError("min_heartbeat_interval must be > 0")
        self.min_heartbeat_interval = min_heartbeat_interval
        self.client_id = client_id
        self.client_secret = client_secret

    def open(self, vc: VenueConn) -> None:
        vc.state.update(beat=0, awaiting=False)

    def numbers(self, message: Any) -> Numbers | None:
        data = message.get("params", {}).get("data", {})
        if "prev_change_id" not in data:
            return None
        return message["params"]["channel"], data["prev_change_id"], data["change_id"]

    def answer(self, vc: VenueConn, text: str, msg: dict[str, Any] | None) -> None:
        method = str(msg.get("method")) if msg else ""
        kind = {"public/test": "ping", "public/auth": "login"}.get(method, "request")
        if self.ignores(kind):
            return
        began = time.time_ns() // 1000
        params = msg.get("params") if msg else None
        params = params if isinstance(params, dict) else {}
        try:
            result = self._call(vc, method, params)
        except _RpcError as exc:
            reply: dict[str, Any] = {"error": {"code": exc.code, "message": exc.message}}
        else:
            reply = {"result": result}
        done = time.time_ns() // 1000
        timing = {"usIn": began, "usOut": done, "usDiff": done - began, "testnet": True}
        vc.send({"jsonrpc": "2.0", "id": msg.get("id") if msg else None, **reply, **timing})

    # ------------------------------------------------------------------ methods

    def _call(self, vc: VenueConn, method: str, params: dict[str, Any]) -> Any:
        if method == "public/test":
            vc.state["awaiting"] = False
            return {"version": "1.2.26"}
        if method == "public/auth":
            return self._auth(vc, params)
        if method == "public/get_time":
            return now_ms()
        if method == "public/set_heartbeat":
            return self._set_heartbeat(vc, params.get("interval"))
        if method == "public/disable_heartbeat":
            vc.state["beat"] += 1  # the running heartbeat stops at its next turn
            return "ok"
        if method in ("public/subscribe", "private/subscribe"):
            return self._subscribe(vc, method, params.get("channels"))
        if method in ("public/unsubscribe", "private/unsubscribe"):
            channels = [c for c in params.get("channels") or [] if c in vc.feeds]
            for channel in channels:
                del vc.feeds[channel]
            return channels
        raise _RpcError(-32601, "Method not found")

    def _auth(self, vc: VenueConn, params: dict[str, Any]) -> dict[str, Any]:
        if (
            params.get("grant_type") != "client_credentials"
            or params.get("client_id") != self.client_id
            or params.get("client_secret") != self.client_secret
        ):
            raise _RpcError(13004, "invalid_credentials")
        vc.authed = True
        return {
            "access_token": f"sim-access-{vc.live.index}",
            "expires_in": 900,
            "refresh_token": f"sim-refresh-{vc.live.index}",
            "scope": "connection mainaccount",
            "token_type": "bearer",
        }

    def _set_heartbeat(self, vc: VenueConn, interval: Any) -> str:
        if not isinstance(interval, (int, float)) or interval < self.min_heartbeat_interval:
            raise _RpcError(-32602, "Invalid params")
        vc.state["beat"] += 1
        generation = vc.state["beat"]
        vc.state["awaiting"] = False

        def beat() -> None:
            if vc.state["beat"] != generation:
                return
            if vc.state["awaiting"]:
                vc.close("heartbeat", 1000, "heartbeat timeout")
                return
            vc.state["awaiting"] = True
            vc.send({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}})

        vc.every(float(interval), beat)
        return "ok"

    def _subscribe(self, vc: VenueConn, method: str, channels: Any) -> list[str]:
        if not isinstance(channels, list) or not channels:
            raise _RpcError(-32602, "Invalid params")
        for channel in channels:
            if not (_BOOK.match(str(channel)) or _ORDERS.match(str(channel))):
                raise _RpcError(-32602, f"Invalid params: unknown channel {channel}")
            if _ORDERS.match(str(channel)) and not (vc.authed and method.startswith("private")):
                raise _RpcError(13009, "unauthorized")
        for channel in channels:
            book = _BOOK.match(channel)
            if book:
                vc.add_feed(channel, self._book(vc, channel, book.group(1)))
            else:
                vc.add_feed(channel, self._orders(vc, channel))
        return list(channels)

    # ------------------------------------------------------------------ channels

    def _book(self, vc: VenueConn, channel: str, instrument: str) -> Any:
        state = {"change": vc.rng.randint(10_000_000, 99_999_999), "first": True}

        def produce() -> dict[str, Any]:
            data: dict[str, Any] = {"type": "snapshot" if state["first"] else "change"}
            if not state["first"]:
                data["prev_change_id"] = state["change"]
                state["change"] += vc.rng.randint(1, 5)
            state["first"] = False
            price = 60_000.0 + vc.rng.uniform(-50, 50)
            data.update(
                timestamp=now_ms(),
                instrument_name=instrument,
                change_id=state["change"],
                bids=[["new", round(price - 0.5, 1), round(vc.rng.uniform(10, 5000))]],
                asks=[["new", round(price + 0.5, 1), round(vc.rng.uniform(10, 5000))]],
            )
            return _notification(channel, data)

        return produce

    def _orders(self, vc: VenueConn, channel: str) -> Any:
        count = [0]

        def produce() -> dict[str, Any]:
            count[0] += 1
            order = {
                "order_id": f"SIM-{vc.live.index}-{count[0]}",
                "instrument_name": channel.split(".")[2],
                "direction": "buy",
                "order_type": "limit",
                "order_state": "open",
                "price": 60_000.0,
                "amount": 10.0,
                "last_update_timestamp": now_ms(),
            }
            return _notification(channel, order)

        return produce


def _notification(channel: str, data: dict[str, Any]) -> dict[str, Any]:
    params = {"channel": channel, "data": data}
    return {"jsonrpc": "2.0", "method": "subscription", "params": params}


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
