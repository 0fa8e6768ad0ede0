"""OKX v5: text ``ping``/``pong``, the 30-second silence cut, ``login``, books ``seqId``.

Endpoints
    ``/ws/v5/public`` and ``/ws/v5/private`` (OKX: ``wss://ws.okx.com:8443/ws/v5/...``).

Heartbeat rule and silence cut
    The text ``ping`` is answered with the text ``pong``. A connection on which the
    client sent no data message for ``silence`` seconds (OKX: 30) is closed with 4004
    ``"No data received in 30s."``; protocol pings do not count.

Login
    ``{"op":"login","args":[{"apiKey","passphrase","timestamp","sign"}]}`` where
    ``sign`` is base64(HMAC-SHA256(secret, timestamp + "GET" + "/users/self/verify"))
    and ``timestamp`` Unix seconds no older than ``login_window`` (OKX: 30 s). Answer
    ``{"event":"login","code":"0","msg":"","connId":..}``, or
    ``{"event":"error","code":C,"msg":..,"connId":..}``: 60005 unknown key, 60004 bad
    timestamp, 60006 timestamp expired, 60024 wrong passphrase, 60007 bad sign. A
    login message built once is refused on a reconnect past the window: its token
    expires.

Subscriptions
    ``{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}`` (public) and
    ``{"channel":"orders","instType":"ANY"}`` (private; 60011 "Please log in" before the
    login), each acknowledged with ``{"event":"subscribe","arg":..,"connId":..}``.
    ``books`` sends a snapshot (``prevSeqId`` -1), then updates whose ``prevSeqId`` is
    the previous ``seqId`` (``seqId`` grows by 1 to 3): the gap fault's numbers are
    ``(instId, prevSeqId, seqId)``. ``orders`` streams order updates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any, ClassVar

from kstlib.websocket.testing._dialects.base import (
    Numbers,
    VenueConn,
    VenueDialect,
    levels,
    now_ms,
)

__all__ = ["OkxDialect"]


def okx_sign(secret: str, timestamp: str) -> str:
    """OKX's login signature."""
    text = f"{timestamp}GET/users/self/verify".encode()
    return base64.b64encode(hmac.new(secret.encode(), text, hashlib.sha256).digest()).decode()


class OkxDialect(VenueDialect):
    """OKX v5 public and private WebSocket (see the module docstring)."""

    name: ClassVar[str] = "okx"
    endpoints: ClassVar[dict[str, str]] = {
        "public": "/ws/v5/public",
        "private": "/ws/v5/private",
    }

    def __init__(
        self,
        *,
        silence: float = 30.0,
        login_window: float = 30.0,
        api_key: str = "sim-okx-key",
        secret_key: str = "sim-okx-secret",
        passphrase: str = "sim-okx-passphrase",
    ) -> None:
        super().__init__()
        if silence <= 0 or login_window <= 0:
            raise ValueError("silence and login_window must be > 0")
        self.silence = silence
        self.login_window = login_window
        self.api_key = api_key
        self.secret_key = secret_key
        self.passphrase = passphrase

    def open(self, vc: VenueConn) -> None:
        def watch() -> None:
            if vc.quiet_for() > self.silence:
                vc.close("silence", 4004, f"No data received in {self.silence:g}s.")

        vc.every(min(self.silence / 5, 1.0), watch)

    def answer(self, vc: VenueConn, text: str, msg: dict[str, Any] | None) -> None:
        if text == "ping":
            if not self.ignores("ping"):
                vc.send_text("pong")
            return
        op = msg.get("op") if msg else None
        if op == "login":
            if not self.ignores("login"):
                self._login(vc, msg.get("args") if msg else None)
        elif op in ("subscribe", "unsubscribe") and isinstance(msg, dict):
            if not self.ignores("request"):
                for arg in msg.get("args") or [{}]:
                    self._subscribe(vc, op, arg if isinstance(arg, dict) else {})
        elif not self.ignores("request"):
            self._error(vc, "60012", f"Invalid request: {text[:200]}")

    def numbers(self, message: Any) -> Numbers | None:
        if message.get("action") != "update":
            return None
        data = message["data"][0]
        return message["arg"]["instId"], data["prevSeqId"], data["seqId"]

    # ------------------------------------------------------------------ login

    def _login(self, vc: VenueConn, args: Any) -> None:
        code, text = self._verify(args[0] if isinstance(args, list) and args else None)
        if code != "0":
            self._error(vc, code, text)
            return
        vc.authed = True
        vc.send({"event": "login", "code": "0", "msg": "", "connId": vc.conn_id})

    def _verify(self, arg: Any) -> tuple[str, str]:
        if not isinstance(arg, dict) or arg.get("apiKey") != self.api_key:
            return "60005", "Invalid OK-ACCESS-KEY"
        try:
            stamp = float(arg.get("timestamp", ""))
        except (TypeError, ValueError):
            return "60004", "Invalid timestamp"
        if abs(time.time() - stamp) > self.login_window:
            return "60006", "Timestamp request expired"
        if arg.get("passphrase") != self.passphrase:
            return "60024", "Wrong passphrase"
        if not hmac.compare_digest(
            str(arg.get("sign", "")), okx_sign(self.secret_key, str(arg["timestamp"]))
        ):
            return "60007", "Invalid sign"
        return "0", ""

    # ------------------------------------------------------------------ subscriptions

    def _subscribe(self, vc: VenueConn, op: str, arg: dict[str, Any]) -> None:
        channel = arg.get("channel")
        if channel == "books" and vc.endpoint == "public" and arg.get("instId"):
            name = f"books:{arg['instId']}"
            produce = self._books(vc, str(arg["instId"]))
        elif channel == "orders" and vc.endpoint == "private":
            if not vc.authed:
                self._error(vc, "60011", "Please log in")
                return
            name = "orders"
            produce = self._orders(vc, arg)
        else:
            self._error(
                vc,
                "60018",
                f"Wrong URL or channel:{channel},instId:{arg.get('instId')} doesn't exist.",
            )
            return
        vc.send({"event": op, "arg": arg, "connId": vc.conn_id})
        if op == "subscribe":
            vc.add_feed(name, produce)
        else:
            vc.feeds.pop(name, None)

    def _error(self, vc: VenueConn, code: str, text: str) -> None:
        vc.send({"event": "error", "code": code, "msg": text, "connId": vc.conn_id})

    def _books(self, vc: VenueConn, inst: str) -> Any:
        seq = [vc.rng.randint(10_000, 99_999)]
        snapshot = [True]

        def produce() -> dict[str, Any]:
            prev = -1 if snapshot[0] else seq[0]
            if not snapshot[0]:
                seq[0] += vc.rng.randint(1, 3)
            bids, asks = levels(vc.rng, 60_000.0)
            action = "snapshot" if snapshot[0] else "update"
            snapshot[0] = False
            book = {
                "asks": [[p, s, "0", "1"] for p, s in asks],
                "bids": [[p, s, "0", "1"] for p, s in bids],
                "ts": str(now_ms()),
                "checksum": vc.rng.randint(-(2**31), 2**31 - 1),
                "prevSeqId": prev,
                "seqId": seq[0],
            }
            return {"arg": {"channel": "books", "instId": inst}, "action": action, "data": [book]}

        return produce

    def _orders(self, vc: VenueConn, arg: dict[str, Any]) -> Any:
        count = [0]

        def produce() -> dict[str, Any]:
            count[0] += 1
            ms = str(now_ms())
            order = {
                "instId": "BTC-USDT",
                "ordId": str(600_000_000 + count[0]),
                "px": "60000",
                "sz": "0.01",
                "side": "buy",
                "ordType": "limit",
                "state": "live",
                "cTime": ms,
                "uTime": ms,
            }
            return {"arg": {**arg, "uid": "sim-uid"}, "data": [order]}

        return produce
