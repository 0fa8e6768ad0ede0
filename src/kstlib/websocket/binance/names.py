"""Binance stream names and URLs, the combined payload, and the published limits.

Pure functions and constants: no I/O, no state, thread-safe.

* :func:`validate_stream` checks the form of a stream name (not that Binance knows it);
* :func:`stream_url` (``<base>/ws/<stream>``) and :func:`combined_url`
  (``<base>/stream?streams=a/b``) build URLs for a plain
  :class:`~kstlib.websocket.WebSocketManager`;
* :func:`unwrap` splits a combined payload ``{"stream": name, "data": event}``;
  :func:`unwrap_item` is its lenient twin used by ``BinanceStreams(unwrap=True)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "DEFAULT_BASE",
    "MAX_CONNECTION_AGE",
    "MAX_CONNECTION_ATTEMPTS",
    "MAX_SEND_RATE",
    "MAX_STREAMS_PER_CONNECTION",
    "REQUESTS_PER_SECOND",
    "check_base",
    "combined_url",
    "stream_list",
    "stream_url",
    "unwrap",
    "unwrap_item",
    "validate_stream",
]

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

# A symbol stream: lowercase symbol, then one or more @-separated parts
# (btcusdt@trade, btcusdt@kline_1m, btcusdt@depth@100ms, btcusdt@aggTrade);
# an all-market stream: "!" then a name, optional @-parts (!ticker@arr, !bookTicker).
_STREAM_RE = re.compile(r"(?:[a-z0-9]+(?:@[A-Za-z0-9_]+)+|![A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)*)\Z")
_BASE_RE = re.compile(r"wss?://[^/?#\s]+\Z")


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


def stream_list(streams: str | Iterable[str]) -> list[str]:
    """Validate ``streams`` (one name or an iterable of names); drop repeats, keep order.

    Raises:
        TypeError / ValueError: as :func:`validate_stream`, for the first bad name.
    """
    names = [streams] if isinstance(streams, str) else list(streams)
    return list(dict.fromkeys(validate_stream(n) for n in names))


def check_base(base: str) -> str:
    """``base`` without a trailing ``/`` if it is ``ws[s]://host[:port]``.

    Raises:
        ValueError: anything else (a path, a query, another scheme).
    """
    if not isinstance(base, str) or not _BASE_RE.match(base.rstrip("/")):
        raise ValueError(
            f"base must be 'ws://host[:port]' or 'wss://host[:port]' without a path, got {base!r}"
        )
    return base.rstrip("/")


def stream_url(stream: str, *, base: str = DEFAULT_BASE) -> str:
    """``<base>/ws/<stream>``: a raw stream (payloads are the bare events).

    Raises:
        ValueError: malformed stream name or base.
    """
    return f"{check_base(base)}/ws/{validate_stream(stream)}"


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
            :class:`~kstlib.websocket.binance.BinanceStreams` to spread them).
    """
    names = stream_list(streams)
    if not names:
        raise ValueError("combined_url() needs at least one stream")
    if len(names) > max_streams:
        raise ValueError(
            f"{len(names)} streams exceed the {max_streams} allowed on one connection; "
            "BinanceStreams spreads them over several connections"
        )
    return f"{check_base(base)}/stream?streams=" + "/".join(names)


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


def unwrap_item(msg: Any) -> tuple[str | None, Any]:
    """:func:`unwrap` that never raises: ``(None, msg)`` for anything that is not a
    combined payload (e.g. ``serverShutdown``). Runs once per message on the engine
    thread, so it tests exact types only."""
    if type(msg) is dict:
        stream = msg.get("stream")
        if type(stream) is str and "data" in msg:
            return stream, msg["data"]
    return None, msg
