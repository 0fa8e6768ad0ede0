"""Every example of the reference user guide, run against the local simulator.

The example code below is the guide's, verbatim, except for two permitted changes: the
URL (``URL`` / ``KLINE_URL`` / ``BAD_URL`` placeholders, substituted before running) and,
for ``async with`` / ``async for`` examples, the import line switched to
``kstlib.websocket.aio``. Examples that stream forever are run as a task and cancelled
once they produced output, which exercises their ``async with`` exit path too.
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
import threading
from typing import Any

import pytest

from kstlib.websocket import ConnectionState, DisconnectReason, WebSocketStats
from kstlib.websocket.testing import ExchangeSimulator

#: the ``sim`` fixture (tests/conftest.py) for the examples: trades and 4h klines whose
#: candles close every 0.3 s
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.exchange_simulator(event_rate=50, kline_rate=20, kline_seconds={"4h": 0.3}),
]


class Printed:
    """Stands in for ``print`` so a test can see (and wait for) what an example prints."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.changed = threading.Event()

    def __call__(self, *args: Any) -> None:
        self.lines.append(" ".join(str(a) for a in args))
        self.changed.set()


def _source(code: str, **urls: str) -> str:
    code = textwrap.dedent(code)
    for name, value in urls.items():
        code = code.replace(name, repr(value))
    return code


def _run_forever_example(code: str, printed: Printed, lines: int) -> dict[str, Any]:
    """Exec an example whose last line is ``asyncio.run(main())``: run ``main()`` as a task
    until it printed ``lines`` lines, then cancel it (leaving its ``async with``)."""
    body, _, last = code.rstrip().rpartition("\n")
    assert last.strip() == "asyncio.run(main())"
    namespace: dict[str, Any] = {"print": printed}
    exec(compile(body, "<guide example>", "exec"), namespace)

    async def drive() -> None:
        task = asyncio.ensure_future(namespace["main"]())
        while len(printed.lines) < lines:
            assert not task.done(), task.exception() if task.done() else None
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(drive())
    return namespace


TLDR = """
    import asyncio
    from kstlib.websocket.aio import WebSocketManager
    async def main():
        async with WebSocketManager(URL) as ws:
            async for message in ws.stream():
                print(message)
    asyncio.run(main())
"""


def test_tldr(sim: ExchangeSimulator) -> None:
    printed = Printed()
    _run_forever_example(_source(TLDR, URL=sim.stream_url("btcusdt@trade")), printed, 5)
    assert all("'e': 'trade'" in line for line in printed.lines)


BASIC_USAGE = """
    import asyncio
    from kstlib.websocket.aio import WebSocketManager
    async def main():
        async with WebSocketManager(URL) as ws:
            async for message in ws.stream():
                print(message)
    asyncio.run(main())
"""


def test_quick_start_basic_usage(sim: ExchangeSimulator) -> None:
    # The guide shows the body at top level; it runs inside a coroutine as asyncio needs.
    printed = Printed()
    _run_forever_example(_source(BASIC_USAGE, URL=sim.stream_url("ethusdt@trade")), printed, 3)
    assert all("ETHUSDT" in line for line in printed.lines)


PROACTIVE = """
    from kstlib.websocket import WebSocketManager
    def next_candle_in() -> float:
        \"\"\"Seconds until next 4H candle.\"\"\"
        return CANDLE_CLOCK()
    ws = WebSocketManager(
        url=URL,
        # Disconnect when > 30s until next candle (safe window)
        should_disconnect=lambda: next_candle_in() > 30,
        # Reconnect when < 60s until next candle (prepare for data)
        should_reconnect=lambda: next_candle_in() < 60,
        disconnect_check_interval=5.0,
    )
"""


def test_the_solution_proactive_control(sim: ExchangeSimulator) -> None:
    clock = {"left": 10.0}  # the guide elides next_candle_in's body; a controllable clock
    ns: dict[str, Any] = {"CANDLE_CLOCK": lambda: clock["left"]}
    exec(_source(PROACTIVE, URL=sim.stream_url("btcusdt@kline_4h")), ns)
    ws = ns["ws"]
    # speed the guide's 5 s check up for the test, through the settings it produced
    assert ws.settings.disconnect_check_interval == 5.0
    ws._engine.settings = ws.settings.__class__(
        **{
            **ws.settings.__dict__,
            "disconnect_check_interval": 0.05,
            "reconnect_check_interval": 0.05,
        }
    )
    ws.connect()
    try:
        clock["left"] = 3600.0  # safe window: it disconnects by itself
        _wait(lambda: ws.state is ConnectionState.DISCONNECTED)
        assert ws.stats.last_disconnect_reason is DisconnectReason.CALLBACK_TRIGGERED
        clock["left"] = 45.0  # candle close approaching: it reconnects by itself
        _wait(lambda: ws.is_connected)
        assert ws.stats.connects == 2
    finally:
        ws.close()


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            done.set()
            break
        done.wait(0.01)
    assert done.is_set()


AUTO_RECONNECT = """
    from kstlib.websocket import WebSocketManager, ReconnectStrategy
    ws = WebSocketManager(
        url=URL,
        reconnect_strategy=ReconnectStrategy.EXPONENTIAL_BACKOFF,
        max_reconnect_attempts=5,
        reconnect_delay=1.0,
        reconnect_delay_max=60.0,
    )
"""


def test_with_auto_reconnection(sim: ExchangeSimulator) -> None:
    ns: dict[str, Any] = {}
    exec(_source(AUTO_RECONNECT, URL=sim.stream_url("btcusdt@trade")), ns)
    ws = ns["ws"]
    with ws:
        ws.kill()
        _wait(lambda: ws.stats.connects == 2)  # backoff 0.5..1 s, then back
        assert ws.stats.reconnect_attempts == 1
        assert ws.stats.disconnects_by_reason == {DisconnectReason.KILLED: 1}


SUBSCRIPTIONS = """
    from kstlib.websocket import WebSocketManager
    ws = WebSocketManager(
        url=URL,
        subscriptions=[
            {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"]},
            {"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"]},
        ],
    )
    # Subscriptions are automatically restored on reconnection
"""


def test_with_subscriptions(sim: ExchangeSimulator) -> None:
    ns: dict[str, Any] = {}
    exec(_source(SUBSCRIPTIONS, URL=sim.stream_url()), ns)
    ws = ns["ws"]
    with ws:
        _wait(lambda: sim.subscriptions_of(-1) == ["btcusdt@kline_1m", "ethusdt@kline_1m"])
        ws.kill()
        _wait(lambda: sim.total_connections == 2)
        _wait(lambda: sim.subscriptions_of(-1) == ["btcusdt@kline_1m", "ethusdt@kline_1m"])


MANUAL_CONTROL = """
    import asyncio
    from kstlib.websocket.aio import WebSocketManager
    async def main():
        ws = WebSocketManager(url=URL)
        await ws.connect()
        # Request graceful disconnect (waits for safe moment)
        ws.request_disconnect()
        # Force immediate disconnect
        await ws.disconnect()
        # Schedule reconnection
        ws.schedule_reconnect(delay=30.0)
        # Check state
        print(ws.state) # ConnectionState.CONNECTED
        print(ws.stats) # WebSocketStats(...)
        return ws
"""


def test_manual_control(sim: ExchangeSimulator) -> None:
    printed = Printed()
    ns: dict[str, Any] = {"print": printed}
    exec(_source(MANUAL_CONTROL, URL=sim.stream_url("btcusdt@trade")), ns)

    async def drive() -> None:
        ws = await ns["main"]()
        assert not ws.is_dead  # a reconnect is scheduled in 30 s
        assert ws.stats.disconnects == 1
        await ws.close()

    asyncio.run(drive())
    assert printed.lines[0].startswith("ConnectionState.")
    assert printed.lines[1].startswith("WebSocketStats(")


STATES = """
    from kstlib.websocket import ConnectionState
    ConnectionState.DISCONNECTED # Initial state
    ConnectionState.CONNECTING # Connection in progress
    ConnectionState.CONNECTED # Active connection
    ConnectionState.RECONNECTING # Restoring lost connection
    ConnectionState.CLOSING # Graceful shutdown
    ConnectionState.CLOSED # Terminal state
"""

REASONS = """
    from kstlib.websocket import DisconnectReason
    # Proactive (user-controlled)
    DisconnectReason.USER_REQUESTED # Manual disconnect
    DisconnectReason.SCHEDULED # Scheduled reconnect
    DisconnectReason.CALLBACK_TRIGGERED # should_disconnect() returned True
    DisconnectReason.CONNECTION_LIMIT # Preemptive (before platform limit)
    # Reactive (forced)
    DisconnectReason.SERVER_CLOSED # Server closed connection
    DisconnectReason.NETWORK_ERROR # Network issue
    DisconnectReason.PING_TIMEOUT # No pong response
    DisconnectReason.PROTOCOL_ERROR # Protocol violation
"""


def test_states_and_reasons_listings() -> None:
    exec(textwrap.dedent(STATES), {})
    exec(textwrap.dedent(REASONS), {})
    proactive = {"USER_REQUESTED", "SCHEDULED", "CALLBACK_TRIGGERED", "CONNECTION_LIMIT"}
    for reason in DisconnectReason:
        assert reason.is_proactive == (reason.name in proactive)
        assert reason.is_reactive == (not reason.is_proactive)


STATISTICS = """
    stats = ws.stats
    print(f"Connects: {stats.connects}")
    print(f"Disconnects: {stats.disconnects}")
    print(f" Proactive: {stats.proactive_disconnects}")
    print(f" Reactive: {stats.reactive_disconnects}")
    print(f"Messages: {stats.messages_received} rx, {stats.messages_sent} tx")
    print(f"Bytes: {stats.bytes_received} rx, {stats.bytes_sent} tx")
    print(f"Uptime: {stats.uptime:.1f}s")
    print(f"Connection time: {stats.connection_time:.1f}s")
"""


def test_statistics(sim: ExchangeSimulator) -> None:
    from kstlib.websocket import WebSocketManager

    printed = Printed()
    with WebSocketManager(sim.stream_url("btcusdt@trade")) as ws:
        _wait(lambda: ws.stats.messages_received >= 5)
        ws.kill()
        _wait(lambda: ws.stats.connects == 2)
        exec(textwrap.dedent(STATISTICS), {"ws": ws, "print": printed})
        assert isinstance(ws.stats, WebSocketStats)
    assert printed.lines[0] == "Connects: 2"
    assert printed.lines[1] == "Disconnects: 1"
    assert printed.lines[3] == " Reactive: 1"
    assert printed.lines[4].startswith("Messages: ") and not printed.lines[4].startswith(
        "Messages: 0 rx"
    )


CONFIG_YAML = """
    websocket:
      # Connection settings
      connect_timeout: 10.0
      ping_interval: 30.0
      ping_timeout: 10.0
      # Reconnection settings
      reconnect_delay: 1.0
      reconnect_delay_max: 60.0
      max_reconnect_attempts: 10
      # Queue settings
      queue_size: 1000
      # Proactive control
      disconnect_check_interval: 5.0
"""


def test_configuration_file_in_the_working_directory(sim: ExchangeSimulator) -> None:
    from pathlib import Path

    from kstlib.websocket import WebSocketManager

    # tests run in an empty temporary working directory (tests/conftest.py)
    Path("kstlib.conf.yml").write_text(
        textwrap.dedent(CONFIG_YAML).replace("queue_size: 1000", "queue_size: 777")
    )
    ws = WebSocketManager(sim.stream_url("btcusdt@trade"))
    s = ws.settings
    assert (s.connect_timeout, s.ping_interval, s.ping_timeout) == (10.0, 30.0, 10.0)
    assert (s.reconnect_delay, s.reconnect_delay_max, s.max_reconnect_attempts) == (1, 60, 10)
    assert (s.queue_size, s.disconnect_check_interval) == (777, 5.0)
    assert s.source is not None and s.source.endswith("kstlib.conf.yml")


ERROR_HANDLING = """
    import asyncio
    import logging
    from kstlib.websocket.aio import WebSocketManager
    from kstlib.websocket import (
        WebSocketError,
        WebSocketConnectionError,
        WebSocketClosedError,
        WebSocketTimeoutError,
    )
    log = logging.getLogger("guide")
    async def main():
        try:
            async with WebSocketManager(url, **OPTIONS) as ws:
                async for message in ws.stream():
                    process(message)
        except WebSocketConnectionError as e:
            log.error(f"Connection failed: {e.url}, attempts: {e.attempts}")
        except WebSocketClosedError as e:
            log.warning(f"Closed: {e.code} - {e.reason}")
        except WebSocketTimeoutError as e:
            log.warning(f"Timeout: {e.operation}")
        except WebSocketError as e:
            log.error(f"WebSocket error: {e}")
"""


@pytest.mark.parametrize("case", ["refused", "closed"])
def test_error_handling(
    sim: ExchangeSimulator, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = sim.stream_url("btcusdt@trade")
    options: dict[str, Any] = {"reconnect_delay": 0.01, "reconnect_delay_max": 0.02}
    if case == "refused":
        sim.refuse_handshake(503)
        options["max_reconnect_attempts"] = 2
    else:
        options["auto_reconnect"] = False
    seen: list[Any] = []

    def process(message: Any) -> None:
        seen.append(message)
        if len(seen) == 3:
            sim.close_all(4003, "end of session")

    ns: dict[str, Any] = {"url": url, "OPTIONS": options, "process": process}
    exec(textwrap.dedent(ERROR_HANDLING), ns)
    with caplog.at_level(logging.WARNING, logger="guide"):
        asyncio.run(ns["main"]())
    if case == "refused":
        assert f"Connection failed: {url}, attempts: 2" in caplog.text
    else:
        assert "Closed: 4003 - end of session" in caplog.text


TRADING = """
    import asyncio
    from datetime import datetime
    from kstlib.websocket.aio import WebSocketManager
    from kstlib.websocket import ReconnectStrategy
    def seconds_until_candle_close(interval_minutes: int = 240) -> float:
        \"\"\"Calculate seconds until next candle close.\"\"\"
        now = datetime.utcnow()
        minutes = now.hour * 60 + now.minute
        next_close = ((minutes // interval_minutes) + 1) * interval_minutes
        seconds_to_close = (next_close - minutes) * 60 - now.second
        return max(0, seconds_to_close)
    async def main():
        ws = WebSocketManager(
            url=KLINE_URL,
            reconnect_strategy=ReconnectStrategy.EXPONENTIAL_BACKOFF,
            # Disconnect when > 5 min until candle close
            should_disconnect=lambda: seconds_until_candle_close() > 300,
            # Reconnect when < 2 min until candle close
            should_reconnect=lambda: seconds_until_candle_close() < 120,
            disconnect_check_interval=10.0,
        )
        async with ws:
            async for message in ws.stream():
                kline = message.get("k", {})
                if kline.get("x"): # Candle closed
                    print(f"Candle closed: {kline['c']}")
    asyncio.run(main())
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the guide uses utcnow()
def test_trading_example(sim: ExchangeSimulator) -> None:
    # The simulator closes a "4h" candle every 0.3 s (time compressed).
    printed = Printed()
    _run_forever_example(_source(TRADING, KLINE_URL=sim.stream_url("btcusdt@kline_4h")), printed, 2)
    assert all(line.startswith("Candle closed: ") for line in printed.lines)
    assert sim.wait_until(lambda: sim.connection_count == 0, timeout=10)
