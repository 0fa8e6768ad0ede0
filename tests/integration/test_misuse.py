"""Misuse that must not hang or leak: several consumers of one stream, a manager dropped
without close(), an asyncio connect cancelled by a timeout."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest
from helpers import FAST, engine_threads, no_leaks, sockets_to, wait_for

from kstlib.websocket import ConnectionState, WebSocketManager, aio
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(90)


def test_two_threads_iterating_one_stream_both_end_on_close(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        counts = [0, 0]

        def consume(i: int) -> None:
            for _ in ws.stream():
                counts[i] += 1

        threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        assert wait_for(lambda: sum(counts) > 20)
        ws.close()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)


def test_a_manager_dropped_without_close_ends_its_engine(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws: Any = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        assert len(engine_threads()) == 1
        with pytest.warns(ResourceWarning, match="was not closed"):
            del ws
            gc.collect()
        # no_leaks: no engine thread and no socket left, and it does not reconnect
    assert sim.wait_until(lambda: sim.connection_count == 0)


def test_cancelling_an_asyncio_connect_stops_the_attempts(sim: ExchangeSimulator) -> None:
    sim.go_silent(True, include_new=True)  # every handshake hangs

    async def main() -> aio.WebSocketManager:
        ws = aio.WebSocketManager(sim.stream_url("btcusdt@trade"), max_reconnect_attempts=None)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.connect(), 1.0)
        return ws

    ws = asyncio.run(main())
    # the engine thread is gone and the client end of the handshake closed: no attempt
    # goes on in the background (the simulator still holds its silent end)
    assert wait_for(lambda: engine_threads() == [])
    assert ws.state is ConnectionState.CLOSED
    assert sockets_to(sim.port) == []
