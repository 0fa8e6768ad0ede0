"""A local exchange simulator (Binance-style by default, five other venues as dialects)
and its pytest plugin.

:class:`ExchangeSimulator` is a real WebSocket server built on the ``websockets``
library (an implementation independent of kstlib's own codec), running on its own
thread, that behaves like a Binance market-data endpoint, with switches to break it
on purpose. Use it to test a trading bot's connection handling without the network::

    from kstlib.websocket.testing import ExchangeSimulator

    with ExchangeSimulator(event_rate=50, max_connection_age=60) as sim:
        url = sim.stream_url("btcusdt@trade")      # ws://127.0.0.1:PORT/ws/btcusdt@trade
        ...
        sim.reset_all()                            # TCP RST on every connection

Endpoints
    ``/ws/<stream>`` (raw payloads), ``/ws`` (nothing until ``SUBSCRIBE``),
    ``/stream?streams=a/b`` (combined: ``{"stream": name, "data": event}``). Unknown
    paths get HTTP 404, invalid stream names or too many streams HTTP 400.

Streams
    ``<symbol>@trade``: ``{"e":"trade","E":ms,"s":"BTCUSDT","t":id,"p":"..","q":"..",
    "T":ms,"m":bool,"M":true}``. ``<symbol>@kline_<interval>`` (``1s``, ``1m``,
    ``4h``, ``1d``... scaled by ``kline_seconds``): ``{"e":"kline","E":ms,
    "s":"BTCUSDT","u":id,"k":{"t":start,"T":close,"i":"1m","o","h","l","c","v",
    "n","x",...}}`` where ``x`` is true exactly on the last update of a candle.
    **Ids**: each stream has one generator, shared by every connection; trade ``t``
    and kline ``u`` (a simulator extension, absent on Binance) start at 1 and grow by
    1 per event, so every connection subscribed to a stream receives the very same
    events with the same ids: ``t`` / ``u`` are the deduplication keys for handover
    tests. Prices are a seeded random walk (``seed``). Generators start on the first
    subscription and run until :meth:`~ExchangeSimulator.stop`.

Control messages (JSON text from the client)
    ``{"method":"SUBSCRIBE","params":[..],"id":N}`` and ``UNSUBSCRIBE`` ->
    ``{"result":null,"id":N}``; ``LIST_SUBSCRIPTIONS`` -> ``{"result":[..],"id":N}``;
    ``SET_PROPERTY ["combined", bool]`` / ``GET_PROPERTY ["combined"]``. Errors, as
    Binance: ``{"error":{"code":C,"msg":".."},"id":N}`` with code 3 (invalid JSON,
    id null), 2 (invalid request: unknown method, bad params or id, invalid stream,
    too many streams), 0 (unknown property), 1 (invalid value type). Every data
    message a connection received is recorded: :meth:`~ExchangeSimulator.received`.

Rules (constructor options, off by default)
    ``ping_interval`` + ``pong_timeout`` (close 1008), ``max_connection_age`` (close
    1000), ``max_incoming_rate`` (messages per second including pings and pongs;
    close 1008), ``max_connection_attempts`` (handshakes per window; HTTP 429),
    ``max_streams_per_connection`` (1024), ``max_write_buffer`` (slow consumer,
    close 1008), and
    :meth:`~ExchangeSimulator.announce_shutdown` (``{"e":"serverShutdown","E":ms}``).

Fault switches (thread-safe, while running)
    ``close_all(code, reason)``, ``reset_all()`` (TCP RST), ``go_silent(True/False)``
    (half-open peer: no data, no pongs, no FIN), ``send_malformed(kind)`` /
    ``send_raw(bytes)``, ``refuse_handshake(status, times=)``,
    ``accept_delay(seconds)``, ``drop_after_accept(True)``. Most accept ``only=`` to
    target one connection index.

Dialects
    ``ExchangeSimulator(dialect="okx")`` (or ``"bybit"``, ``"coinbase"``, ``"kraken"``,
    ``"deribit"``, or an instance such as ``OkxDialect(silence=0.5)`` for scaled-down
    windows) plays another venue: its endpoints (``sim.endpoint("private")``), its
    application heartbeat and silence cut, its login and acknowledgement, its token
    expiry, its sequence numbers (the module of each dialect documents them). The
    Binance dialect (default) also serves listenKey user-data streams
    (``sim.dialect.new_listen_key()``) and, with ``BinanceDialect(depth=True)``,
    diff-depth streams. Feed faults, in every dialect: ``inject_gap(count, stream=)``
    (the next sequenced data messages are swallowed: a hole in the sequence numbers on
    a live connection, recorded in ``injected_gaps(i)``) and ``stall(True/False)`` (a
    silent feed: no data while pongs, heartbeats and replies still flow). Venue
    dialects also take ``sim.dialect.ignore("login" | "ping" | "request")``: requests of
    that kind are read and never answered.

Observability
    ``connection_count``, ``total_connections``, ``handshake_attempts``,
    ``refused_handshakes``, ``events_published``, ``last_event_id(stream)``,
    ``wait_for_connections(n, timeout)``, ``wait_for_total_connections(n, timeout)``,
    ``wait_until(predicate, timeout)``, ``received(i)``, ``subscriptions_of(i)``,
    ``connection_info(i)`` / ``connections()`` (close codes, pings, pongs, and the
    ``cause`` when the server ended the connection). Indices are global acceptance
    order; negative ones count from the latest (``-1``).

pytest plugin
    Installing kstlib-websocket registers this module as a pytest plugin (entry point
    ``pytest11``), which provides:

    * ``exchange_simulator``: a started :class:`ExchangeSimulator`, stopped after the
      test (function scope). Options come from the marker
      ``@pytest.mark.exchange_simulator(event_rate=100, ping_interval=1)``.
    * ``exchange_simulator_factory``: a callable taking the constructor's keywords
      and returning a started simulator; every simulator it made is stopped at
      teardown. For tests that need several servers or several configurations.

    ::

        def test_bot_survives_reset(exchange_simulator):
            bot = MyBot(exchange_simulator.stream_url("btcusdt@trade"))
            assert exchange_simulator.wait_for_connections(1)
            exchange_simulator.reset_all()
            assert exchange_simulator.wait_for_total_connections(2)

Importing this module is cheap and has no side effects: ``websockets`` is imported
by the server thread on :meth:`~ExchangeSimulator.start`, and the fixtures are only
defined when pytest is already imported (as it is when pytest loads the plugin).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

from kstlib.websocket.testing._dialects import (
    DIALECTS,
    BinanceDialect,
    BybitDialect,
    CoinbaseDialect,
    DeribitDialect,
    Dialect,
    KrakenDialect,
    OkxDialect,
    VenueDialect,
)
from kstlib.websocket.testing._frames import MALFORMED_FRAMES, MalformedKind
from kstlib.websocket.testing._market import StreamSpec, parse_stream
from kstlib.websocket.testing._simulator import ExchangeSimulator
from kstlib.websocket.testing._state import ConnectionInfo, InjectedGap

__all__ = [
    "DIALECTS",
    "MALFORMED_FRAMES",
    "BinanceDialect",
    "BybitDialect",
    "CoinbaseDialect",
    "ConnectionInfo",
    "DeribitDialect",
    "Dialect",
    "ExchangeSimulator",
    "InjectedGap",
    "KrakenDialect",
    "MalformedKind",
    "OkxDialect",
    "StreamSpec",
    "VenueDialect",
    "parse_stream",
]

if "pytest" in sys.modules:
    import pytest

    def pytest_configure(config: pytest.Config) -> None:
        """Register the ``exchange_simulator`` marker."""
        config.addinivalue_line(
            "markers",
            "exchange_simulator(**options): ExchangeSimulator keyword arguments for the "
            "exchange_simulator fixture",
        )

    @pytest.fixture
    def exchange_simulator(request: pytest.FixtureRequest) -> Iterator[ExchangeSimulator]:
        """A started :class:`ExchangeSimulator`, stopped after the test.

        Options: ``@pytest.mark.exchange_simulator(**kwargs)`` on the test, class or
        module.
        """
        marker = request.node.get_closest_marker("exchange_simulator")
        options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
        with ExchangeSimulator(**options) as simulator:
            yield simulator

    @pytest.fixture
    def exchange_simulator_factory() -> Iterator[Callable[..., ExchangeSimulator]]:
        """Make started simulators: ``factory(**kwargs) -> ExchangeSimulator``.

        Every simulator made is stopped at teardown, latest first.
        """
        made: list[ExchangeSimulator] = []

        def factory(*args: Any, **kwargs: Any) -> ExchangeSimulator:
            simulator = ExchangeSimulator(*args, **kwargs)
            simulator.start()
            made.append(simulator)
            return simulator

        yield factory
        errors: list[BaseException] = []
        for simulator in reversed(made):
            try:
                simulator.stop()
            except BaseException as exc:  # stop them all, then report
                errors.append(exc)
        if errors:
            raise errors[0]
