"""The asyncio adapter: same names, coroutine lifecycle, async iteration, and an event
loop that keeps running on schedule while the engine connects, streams, reconnects and
closes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import FAST, no_leaks, wait_for

from kstlib.websocket import (
    ConnectionState,
    DisconnectReason,
    WebSocketClosedError,
    WebSocketConnectionError,
)
from kstlib.websocket.aio import WebSocketManager
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(60)


async def _take(ws: WebSocketManager, n: int) -> list[Any]:
    out: list[Any] = []
    async for msg in ws.stream():
        out.append(msg)
        if len(out) >= n:
            break
    return out


def test_async_with_and_async_for(sim: ExchangeSimulator) -> None:
    async def main() -> list[Any]:
        async with WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            assert ws.state is ConnectionState.CONNECTED
            return await _take(ws, 10)

    with no_leaks():
        events = asyncio.run(main())
    ids = [e["t"] for e in events]
    assert ids == list(range(ids[0], ids[0] + 10))


def test_event_loop_never_blocks(sim: ExchangeSimulator) -> None:
    """A 10 ms ticker keeps ticking while a slow handshake, streaming, a reconnect and a
    close against a silent server are awaited: each of those waits at least half a
    second, in which a loop blocked by the call would not tick at all."""
    sim.accept_delay(0.6)  # each handshake takes 0.6 s: a blocking connect would stall

    async def main() -> dict[str, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        async def during(coro: Any) -> int:
            before = ticks
            await coro
            return ticks - before

        tick = asyncio.create_task(ticker())
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            close_timeout=1.0,
            **{k: v for k, v in FAST.items() if k != "close_timeout"},
        )
        seen = {"connect": await during(ws.connect())}
        await _take(ws, 5)
        await ws.kill()  # reconnect through another slow handshake
        while ws.stats.connects < 2:
            await asyncio.sleep(0.01)
        await _take(ws, 5)
        sim.go_silent(True)
        seen["close"] = await during(ws.close())  # close_timeout: no close frame comes
        sim.go_silent(False)
        stop.set()
        await tick
        return seen

    with no_leaks():
        seen = asyncio.run(main())
    # a blocked loop would tick at most once per awaited call (after it returned)
    assert seen["connect"] > 3 and seen["close"] > 3, seen


def test_lifecycle_coroutines(sim: ExchangeSimulator) -> None:
    async def main() -> None:
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        await ws.connect()
        await ws.disconnect()
        assert ws.state is ConnectionState.DISCONNECTED and ws.is_recoverable
        await ws.connect()
        ws.schedule_reconnect(0.1)
        while ws.stats.connects < 3:
            await asyncio.sleep(0.01)
        assert ws.stats.last_disconnect_reason is DisconnectReason.SCHEDULED
        ws.request_disconnect()
        while ws.state is not ConnectionState.DISCONNECTED:
            await asyncio.sleep(0.01)
        await ws.connect()
        await ws.send({"method": "LIST_SUBSCRIPTIONS", "id": 3})
        await ws.shutdown()
        assert ws.is_shutdown and ws.shutdown_event.is_set()
        assert ws.state is ConnectionState.CLOSED
        await ws.connect()  # warning + no-op
        assert ws.state is ConnectionState.CLOSED

    with no_leaks():
        asyncio.run(main())


def test_watchdog_pattern_from_the_guide(sim: ExchangeSimulator) -> None:
    async def watchdog_loop(ws: WebSocketManager) -> int:
        restarts = 0
        while True:
            await asyncio.sleep(0.05)
            if ws.is_recoverable:
                await ws.connect()  # Restart accidental disconnect
                restarts += 1
            elif ws.is_shutdown:
                break  # Intentional shutdown, exit watchdog
        return restarts

    async def main() -> int:
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), auto_reconnect=False, **FAST)
        await ws.connect()
        dog = asyncio.create_task(watchdog_loop(ws))
        await ws.kill()  # accidental loss, no auto-reconnect: the watchdog restarts it
        while ws.stats.connects < 2:
            await asyncio.sleep(0.01)
        await ws.shutdown()  # intentional: the watchdog exits
        return await asyncio.wait_for(dog, 10)

    with no_leaks():
        assert asyncio.run(main()) == 1


def test_errors_reach_the_async_consumer(sim: ExchangeSimulator) -> None:
    async def closed() -> None:
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), auto_reconnect=False, **FAST)
        async with ws:
            sim.close_all(4002, "bye")
            async for _ in ws.stream():
                pass

    async def refused() -> None:
        async with WebSocketManager(
            sim.stream_url("btcusdt@trade"), max_reconnect_attempts=2, **FAST
        ):
            pass

    with no_leaks():
        with pytest.raises(WebSocketClosedError) as info:
            asyncio.run(closed())
        assert info.value.code == 4002
        sim.refuse_handshake(503)
        with pytest.raises(WebSocketConnectionError) as info2:
            asyncio.run(refused())
        assert info2.value.attempts == 2


def test_aio_class_refuses_plain_with(sim: ExchangeSimulator) -> None:
    ws = WebSocketManager(sim.stream_url("btcusdt@trade"))
    with pytest.raises(TypeError, match="async with"), ws:
        pass


def test_breaking_out_keeps_unread_messages(sim: ExchangeSimulator) -> None:
    async def main() -> list[int]:
        async with WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            while ws.stats.messages_received < 30:
                await asyncio.sleep(0.01)
            agen = ws.stream()
            first = []
            async for m in agen:
                first.append(m["t"])
                if len(first) == 5:
                    break
            await agen.aclose()  # type: ignore[attr-defined]
            second = await _take(ws, 5)
            return first + [m["t"] for m in second]

    with no_leaks():
        ids = asyncio.run(main())
    assert ids == list(range(ids[0], ids[0] + 10))
    assert wait_for(lambda: sim.connection_count == 0)
