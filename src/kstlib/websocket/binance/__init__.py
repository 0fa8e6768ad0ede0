"""Binance preset: stream URLs, combined payloads, requests with ids, and the published limits.

::

    from kstlib.websocket.binance import BinanceStreams

    with BinanceStreams(["btcusdt@trade", "ethusdt@kline_1m"], unwrap=True) as bn:
        bn.subscribe(["solusdt@aggTrade"])          # waits for {"result": null, "id": N}
        for stream, event in bn.stream():
            handle(stream, event)

The asyncio twin is :class:`kstlib.websocket.binance.aio.BinanceStreams` (``async with`` /
``async for``, awaitable requests).

Modules, one job each (this package only re-exports their public names):

============  ======================================================================
``names``     stream names (:func:`validate_stream`), URLs (:func:`stream_url`,
              :func:`combined_url`), :func:`unwrap`, the published limits
``hooks``     the engine hooks the preset installs: :func:`dedupe_key`
              (``dedupe_key``), :func:`is_server_shutdown` (``should_handover``)
``requests``  request ids, waiting for replies (the managers' ``request()``, and
              their ``expect()`` for the subscription messages),
              :class:`BinanceRequestError`
``pool``      the connections, their merge into one stream (no reader thread: an
              ``on_batch`` hook per engine), back-pressure, failure;
              :class:`ConnectionEvent`, :class:`ConnectionPacer`
``client``    :class:`BinanceStreams`, the facade
``aio``       the asyncio front
============  ======================================================================

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
      ``pacer=`` to count several clients of one process together, or a window in Redis
      with ``budget="redis://HOST:PORT/DB?key=NAME"`` to count several processes on one
      IP together);
    * connections are rotated before Binance's 24-hour cut (``max_connection_age`` 23 h 50
      min) make-before-break (handover), and a ``serverShutdown`` event triggers the same
      handover; the overlap's duplicates are dropped by :func:`dedupe_key`;
    * pongs echo the ping payload (the engine does).

Every option of :class:`~kstlib.websocket.config.Settings` may be passed to
:class:`BinanceStreams` and overrides the preset's value, except ``subscriptions``,
``on_message``, ``on_batch`` and ``decode`` which the client needs for itself.
"""

from __future__ import annotations

from .client import BinanceStreams
from .hooks import dedupe_key, is_server_shutdown
from .names import (
    DEFAULT_BASE,
    MAX_CONNECTION_AGE,
    MAX_CONNECTION_ATTEMPTS,
    MAX_SEND_RATE,
    MAX_STREAMS_PER_CONNECTION,
    REQUESTS_PER_SECOND,
    combined_url,
    stream_url,
    unwrap,
    validate_stream,
)
from .pool import ConnectionEvent, ConnectionPacer
from .requests import BinanceRequestError

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
