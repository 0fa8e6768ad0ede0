"""The direct read (:mod:`kstlib.websocket.engine.direct`): a consumer waiting in
``stream()`` / ``recv()`` reads the socket on its own thread (the asyncio front: on its
loop), and every guarantee of the engine's read stays: order, pings answered while the
consumer is busy or the loop blocked, the end of the stream, the queue bound."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from helpers import no_leaks
from scripted import ScriptedServer, one_per_go
from websockets.asyncio.server import ServerConnection

from kstlib.websocket import (
    DisconnectReason,
    Heartbeat,
    WebSocketClosedError,
    WebSocketManager,
    aio,
)
from kstlib.websocket.engine.direct import AWAY
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(90)

QUIET = {"ping_interval": None, "auto_reconnect": False}


class ReaderThreads:
    """A ``decode`` that records which thread read each message."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, raw: Any) -> Any:
        self.names.append(threading.current_thread().name)
        return orjson.loads(raw)


def test_a_waiting_consumer_reads_its_messages_on_its_own_thread() -> None:
    readers = ReaderThreads()
    with ScriptedServer(one_per_go) as srv, no_leaks():
        with WebSocketManager(srv.url, decode=readers, **QUIET) as ws:
            got = []
            for _ in range(20):
                ws.send("go")
                got.append(ws.recv(timeout=30)["n"])
    assert got == list(range(1, 21))
    # the engine lends the reading once the consumer waited (after the first message)
    assert readers.names[2:] == [threading.current_thread().name] * 18


async def one_by_one(ws: aio.WebSocketManager, count: int) -> list[int]:
    """Ask a :func:`one_per_go` server for ``count`` messages, one ``go`` per ``recv``."""
    got = []
    for _ in range(count):
        await ws.send("go")
        got.append((await ws.recv(timeout=30))["n"])
    return got


def test_an_asyncio_consumer_reads_its_messages_on_its_loop() -> None:
    readers = ReaderThreads()

    async def main(url: str) -> list[int]:
        async with aio.WebSocketManager(url, decode=readers, **QUIET) as ws:
            return await one_by_one(ws, 20)

    with ScriptedServer(one_per_go) as srv, no_leaks():
        got = asyncio.run(main(srv.url))
    assert got == list(range(1, 21))
    assert readers.names[2:] == [threading.current_thread().name] * 18


async def pings_then_one_per_go(ws: ServerConnection) -> None:
    """An application ping first (answered by the ``heartbeat`` option), then
    :func:`one_per_go`."""
    await ws.send(json.dumps({"op": "ping"}))
    await one_per_go(ws)


def test_an_asyncio_consumer_never_reads_when_delivery_may_write() -> None:
    """Answering the server's pings writes, and a write may wait for room: never on the
    loop, so the engine thread keeps the reading."""
    readers = ReaderThreads()
    beat = Heartbeat(
        send=None, every=3600, answer=lambda m: {"op": "pong"} if m == {"op": "ping"} else None
    )

    async def main(url: str) -> list[int]:
        async with aio.WebSocketManager(url, decode=readers, heartbeat=beat, **QUIET) as ws:
            return await one_by_one(ws, 10)

    with ScriptedServer(pings_then_one_per_go) as srv, no_leaks():
        got = asyncio.run(main(srv.url))
    assert got == list(range(1, 11))
    assert threading.current_thread().name not in readers.names


def busy_consumer_keeps_the_connection(*, asyncio_front: bool) -> tuple[list[int], Any]:
    """The simulator pings every 0.3 s and closes (1008) when a pong is 3 s late; the
    consumer stops for 5 s after its 50th message (a busy thread, or a blocked loop)."""
    with ExchangeSimulator(event_rate=100, ping_interval=0.3, pong_timeout=3.0) as sim:
        url = sim.stream_url("btcusdt@trade")
        ids: list[int] = []
        if asyncio_front:

            async def main() -> Any:
                async with aio.WebSocketManager(url, ping_interval=None) as ws:
                    async for msg in ws.stream():
                        ids.append(msg["t"])
                        if len(ids) == 50:
                            time.sleep(5 * AWAY)  # blocks the loop itself
                        if len(ids) == 700:
                            return ws.stats

            stats = asyncio.run(main())
        else:
            with WebSocketManager(url, ping_interval=None) as ws:
                for msg in ws.stream():
                    ids.append(msg["t"])
                    if len(ids) == 50:
                        time.sleep(5 * AWAY)
                    if len(ids) == 700:
                        break
                stats = ws.stats
    return ids, stats


@pytest.mark.parametrize("asyncio_front", [False, True], ids=["sync", "asyncio"])
def test_pings_are_answered_while_the_consumer_is_busy(asyncio_front: bool) -> None:
    with no_leaks():
        ids, stats = busy_consumer_keeps_the_connection(asyncio_front=asyncio_front)
    assert stats.disconnects == 0 and stats.connects == 1
    assert ids == list(range(ids[0], ids[0] + 700))  # nothing lost, in order


async def closes_after(ws: ServerConnection) -> None:
    for n in range(1, 6):
        await ws.send(json.dumps({"n": n}))
    async for msg in ws:
        if msg == "bye":
            await ws.close(4001, "done")


def test_the_server_closing_while_the_consumer_reads_ends_the_stream() -> None:
    with ScriptedServer(closes_after) as srv, no_leaks():
        with WebSocketManager(srv.url, **QUIET) as ws:
            got = [ws.recv(timeout=30)["n"] for _ in range(5)]
            ws.send("bye")
            with pytest.raises(WebSocketClosedError):
                ws.recv(timeout=30)  # the close frame reached the consumer's read
            stats = ws.stats
    assert got == [1, 2, 3, 4, 5]
    assert stats.disconnects_by_reason == {DisconnectReason.SERVER_CLOSED: 1}


FLOOD = 100_000


async def floods_on_go(ws: ServerConnection) -> None:
    async for msg in ws:
        if msg == "go":
            for n in range(1, FLOOD + 1):
                await ws.send(json.dumps({"n": n, "pad": "x" * 100}))


def test_a_busy_asyncio_consumer_leaves_the_flood_unread() -> None:
    """While the consumer task is busy (the loop free), the loop's reader does not
    read for it: the engine takes over after AWAY and stops at the queue bound, the
    rest waits in the kernel (back-pressure); then everything arrives, in order."""

    async def main(url: str) -> tuple[list[int], int, int]:
        got: list[int] = []
        queued = read = -1
        async with aio.WebSocketManager(url, queue_size=50, **QUIET) as ws:
            await ws.send("go")
            async for msg in ws.stream():
                got.append(msg["n"])
                if len(got) == 2000:  # the loop reads by now: then busy, the loop runs
                    await asyncio.sleep(3 * AWAY)
                    queued, read = len(ws._inbox), ws.stats.messages_received
                if len(got) == FLOOD:
                    break
        return got, queued, read

    with ScriptedServer(floods_on_go) as srv, no_leaks():
        got, queued, read = asyncio.run(main(srv.url))
    assert got == list(range(1, FLOOD + 1))
    assert queued <= 50
    # the first read's batch, the bound, and at most a read the engine holds back
    assert read < FLOOD // 2


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the loop run until ``condition`` holds (it is looked at each millisecond)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def test_two_asyncio_tasks_waiting_on_one_manager_both_get_a_message() -> None:
    # One task waits on the loop's read; a second one must not take that wait over (nor
    # end it when it leaves): each message wakes one of them, none is left hanging.
    async def main(url: str) -> list[int]:
        async with aio.WebSocketManager(url, **QUIET) as ws:
            direct, inbox = ws._engine.direct, ws._inbox
            # A consumer that asked for the reading (the engine has it, so it waits on
            # the queue) before the first message: the engine lends once it read it.
            zeroth = asyncio.ensure_future(ws.recv(timeout=30))
            await until(lambda: len(inbox._async_waiters) == 1)
            await ws.send("go")
            assert (await zeroth)["n"] == 1
            first = asyncio.ensure_future(ws.recv(timeout=30))
            await until(lambda: direct._loop_fut is not None)  # it holds the loop's read
            second = asyncio.ensure_future(ws.recv(timeout=30))
            await until(lambda: len(inbox._async_waiters) == 1)  # it waits for the queue
            for _ in range(2):
                await ws.send("go")
            got = await asyncio.gather(first, second)
            return sorted(msg["n"] for msg in got)

    with ScriptedServer(one_per_go) as srv, no_leaks():
        assert asyncio.run(main(srv.url)) == [2, 3]


def test_a_sync_recv_with_a_very_long_timeout_reads_directly() -> None:
    # poll() takes an int of milliseconds: a timeout of years must not overflow it.
    with ScriptedServer(one_per_go) as srv, no_leaks():
        with WebSocketManager(srv.url, **QUIET) as ws:
            got = []
            for _ in range(5):  # the engine lends the reading once the consumer waited
                ws.send("go")
                got.append(ws.recv(timeout=1e8)["n"])
    assert got == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("asyncio_front", [False, True], ids=["sync", "asyncio"])
def test_a_quiet_connection_stays_with_the_consumer(asyncio_front: bool) -> None:
    """Nothing arrives for 2.5 x AWAY between messages, while the consumer does its own
    work (the watch looks twice meanwhile): the message that ends each quiet spell is
    still read on the consumer's thread, not handed over by the engine."""
    readers = ReaderThreads()
    quiet = 2.5 * AWAY

    async def main(url: str) -> list[int]:
        async with aio.WebSocketManager(url, decode=readers, **QUIET) as ws:
            got = await one_by_one(ws, 3)
            for _ in range(2):
                await asyncio.sleep(quiet)
                got += await one_by_one(ws, 1)
            return got

    with ScriptedServer(one_per_go) as srv, no_leaks():
        if asyncio_front:
            got = asyncio.run(main(srv.url))
        else:
            with WebSocketManager(srv.url, decode=readers, **QUIET) as ws:
                got = []
                for n in range(5):
                    if n >= 3:
                        time.sleep(quiet)
                    ws.send("go")
                    got.append(ws.recv(timeout=30)["n"])
    assert got == [1, 2, 3, 4, 5]
    # the messages that end the quiet spells (the first ones may come before the lend)
    assert readers.names[3:] == [threading.current_thread().name] * 2
