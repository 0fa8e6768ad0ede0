"""The :class:`~kstlib.websocket.config.Settings` hooks the Binance preset installs.

* :func:`dedupe_key` is the preset's ``dedupe_key``: the identity of an event, so the
  overlap of a make-before-break handover delivers each event once;
* :func:`is_server_shutdown` is the preset's ``should_handover``: Binance's maintenance
  notice triggers the same handover as the 24-hour rotation.

Both run on an engine thread for every message (when handover is on): pure functions,
no state, thread-safe, and they never raise (a payload they do not recognise is simply
not deduplicated, or not a shutdown notice). Usable with a plain
:class:`~kstlib.websocket.WebSocketManager` too.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["dedupe_key", "is_server_shutdown"]


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
    combined wrapper): the preset's ``should_handover``. Pure function; thread-safe."""
    if not isinstance(msg, dict):
        return False
    if msg.get("e") == "serverShutdown":
        return True
    data = msg.get("data")
    return isinstance(data, dict) and data.get("e") == "serverShutdown"
