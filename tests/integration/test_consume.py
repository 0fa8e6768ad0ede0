"""``consume(handler)`` on both fronts, against the exchange simulator and a
``websockets`` server: each message reaches the handler in order (on the asyncio front,
in the loop's own reader turn while the handler keeps up), gap markers with
``events=True``, nothing lost when the handler raises or the call is cancelled, pings
answered while the handler blocks the loop, and the stream's end rules. And the asyncio
front's ``send_nowait``, with which a handler answers in its own turn: in order, also
while the peer reads slowly."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from helpers import FAST, no_leaks, wait_for
from scripted import ScriptedServer
from websockets.asyncio.server import ServerConnection

from kstlib.websocket import (
    Connected,
    Disconnected,
    DisconnectReason,
    WebSocketClosedError,
    WebSocketManager,
    aio,
)
from kstlib.websocket.engine.direct import AWAY
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(90)


class Enough(Exception):
    """Raised by a handler to end its ``consume()``."""


def test_the_handler_runs_in_the_loops_reader_turn(sim: ExchangeSimulator) -> None:
    """Past the first messages (queued before the engine lends the reading) the handler
    is called from the loop's reader callback: no task is running."""
    ids: list[int] = []
    in_task: list[bool] = []

    def handler(msg: dict[str, Any]) -> None:
        ids.append(msg["t"])
        in_task.append(asyncio.current_task() is not None)
        if len(ids) == 300:
            raise Enough

    async def main() -> None:
        async with aio.WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            with pytest.raises(Enough):
                await ws.consume(handler)

    with no_leaks():
        asyncio.run(main())
    assert ids == list(range(ids[0], ids[0] + 300))
    assert in_task.count(False) > 150, in_task.count(False)


def test_gap_markers_reach_the_handler_in_order(sim: ExchangeSimulator) -> None:
    items: list[Any] = []

    def handler(item: Any) -> None:
        items.append(item)
        if len(items) == 5:
            sim.close_all(4000, "rotate")
        if isinstance(item, Connected):
            raise Enough

    async def main() -> None:
        async with aio.WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            with pytest.raises(Enough):
                await ws.consume(handler, events=True)

    with no_leaks():
        asyncio.run(main())
    kinds = [type(i).__name__ for i in items]
    assert kinds[:5] == ["dict"] * 5
    disc = [i for i in items if isinstance(i, Disconnected)]
    assert len(disc) == 1 and disc[0].reason is DisconnectReason.SERVER_CLOSED
    assert disc[0].code == 4000
    assert kinds.index("Disconnected") < kinds.index("Connected") == len(items) - 1


async def ten_in_one_write(ws: ServerConnection) -> None:
    """Ten messages in one TCP write after the client's ``go``, then nothing."""
    await ws.recv()
    frames = b"".join(
        bytes([0x81, len(p)]) + p for p in (json.dumps({"n": n}).encode() for n in range(1, 11))
    )
    ws.transport.write(frames)
    await ws.wait_closed()


@pytest.mark.parametrize("asyncio_front", [False, True], ids=["sync", "asyncio"])
def test_a_raising_handler_leaves_the_rest_queued(asyncio_front: bool) -> None:
    """The handler raises on message 3 of a read of ten: the error comes out of
    ``consume()`` and messages 4 to 10 stay queued, in order."""
    seen: list[int] = []

    def handler(msg: dict[str, int]) -> None:
        seen.append(msg["n"])
        if msg["n"] == 3:
            raise Enough

    async def main(url: str) -> list[int]:
        async with aio.WebSocketManager(url, ping_interval=None, auto_reconnect=False) as ws:
            await ws.send("go")
            with pytest.raises(Enough):
                await ws.consume(handler)
            return [(await ws.recv(timeout=10))["n"] for _ in range(7)]

    with ScriptedServer(ten_in_one_write) as srv, no_leaks():
        if asyncio_front:
            rest = asyncio.run(main(srv.url))
        else:
            with WebSocketManager(srv.url, ping_interval=None, auto_reconnect=False) as ws:
                ws.send("go")
                with pytest.raises(Enough):
                    ws.consume(handler)
                rest = [ws.recv(timeout=10)["n"] for _ in range(7)]
    assert seen == [1, 2, 3]
    assert rest == list(range(4, 11))


def test_cancelling_consume_loses_nothing(sim: ExchangeSimulator) -> None:
    ids: list[int] = []

    async def main() -> list[int]:
        async with aio.WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            twenty = asyncio.get_running_loop().create_future()

            def handler(msg: dict[str, Any]) -> None:
                ids.append(msg["t"])
                if len(ids) == 20 and not twenty.done():
                    twenty.set_result(None)

            task = asyncio.ensure_future(ws.consume(handler))
            await twenty
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return [(await ws.recv(timeout=10))["t"] for _ in range(20)]

    with no_leaks():
        after = asyncio.run(main())
    assert ids + after == list(range(ids[0], ids[0] + len(ids) + 20))


def test_a_handler_blocking_the_loop_keeps_the_connection() -> None:
    """The simulator pings every 0.3 s and closes (1008) when a pong is 3 s late; the
    handler blocks the loop for 5 s at its 50th message. The engine takes the reading
    back, answers the pings, and the handler then gets every message in order."""
    ids: list[int] = []

    def handler(msg: dict[str, Any]) -> None:
        ids.append(msg["t"])
        if len(ids) == 50:
            time.sleep(5 * AWAY)  # blocks the loop itself
        if len(ids) == 700:
            raise Enough

    async def main(url: str) -> Any:
        async with aio.WebSocketManager(url, ping_interval=None) as ws:
            with pytest.raises(Enough):
                await ws.consume(handler)
            return ws.stats

    with ExchangeSimulator(event_rate=100, ping_interval=0.3, pong_timeout=3.0) as sim:
        with no_leaks():
            stats = asyncio.run(main(sim.stream_url("btcusdt@trade")))
    assert stats.disconnects == 0 and stats.connects == 1
    assert ids == list(range(ids[0], ids[0] + 700))


def test_consume_ends_with_the_stream(sim: ExchangeSimulator) -> None:
    """Closing the manager ends ``consume()`` normally; a server's close for good
    (``auto_reconnect=False``) raises it, as ``stream()`` does."""

    async def closed_by_us() -> int:
        async with aio.WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            got: list[Any] = []

            def handler(msg: Any) -> None:
                got.append(msg)
                if len(got) == 10:
                    asyncio.get_running_loop().create_task(ws.close())

            await ws.consume(handler)
            return len(got)

    async def closed_by_server() -> None:
        url = sim.stream_url("btcusdt@trade")
        async with aio.WebSocketManager(url, auto_reconnect=False, **FAST) as ws:

            def handler(msg: Any) -> None:
                sim.close_all(4002, "bye")

            await ws.consume(handler)

    with no_leaks():
        assert asyncio.run(closed_by_us()) >= 10
        with pytest.raises(WebSocketClosedError) as info:
            asyncio.run(closed_by_server())
    assert info.value.code == 4002


# --------------------------------------------------------------------------- send_nowait


async def echo(ws: ServerConnection) -> None:
    async for msg in ws:
        await ws.send(msg)


def test_a_handler_answers_in_its_own_turn_with_send_nowait() -> None:
    """A ping-pong of 100 messages driven from the handler: each echo is answered in
    the turn that read it, and every message keeps its place."""
    got: list[int] = []
    in_task: list[bool] = []

    async def main(url: str) -> None:
        async with aio.WebSocketManager(url, ping_interval=None, auto_reconnect=False) as ws:

            def handler(msg: str) -> None:
                got.append(int(msg))
                in_task.append(asyncio.current_task() is not None)
                if len(got) == 100:
                    raise Enough
                pending = ws.send_nowait(str(int(msg) + 1))
                assert pending is None  # a few bytes: the socket takes them at once

            await ws.send("1")
            with pytest.raises(Enough):
                await ws.consume(handler)

    with ScriptedServer(echo) as srv, no_leaks():
        asyncio.run(main(srv.url))
    assert got == list(range(1, 101))
    assert in_task.count(False) > 50, in_task.count(False)


def test_send_nowait_keeps_the_order_while_the_peer_is_slow() -> None:
    """The peer reads nothing until all 128 messages of 256 KiB (32 MiB, more than the
    loopback buffers hold) were handed to ``send_nowait``: the later ones wait for room
    in worker threads, and the peer still receives them in the order of the calls."""
    count, size = 128, 256 * 1024
    handed = threading.Event()
    received: list[int] = []

    async def slow_reader(ws: ServerConnection) -> None:
        await asyncio.to_thread(handed.wait, 60)
        for _ in range(count):
            received.append(int((await ws.recv())[:6]))

    async def main(url: str) -> int:
        async with aio.WebSocketManager(
            url, ping_interval=None, auto_reconnect=False, compression=None
        ) as ws:
            pad = b"x" * (size - 6)
            pending = [ws.send_nowait(b"%06d" % i + pad) for i in range(count)]
            handed.set()
            later = [p for p in pending if p is not None]
            await asyncio.gather(*later)
            return len(later)

    with ScriptedServer(slow_reader) as srv, no_leaks():
        deferred = asyncio.run(main(srv.url))
        assert wait_for(lambda: len(received) == count, timeout=30)
    assert deferred > 0  # the back-pressure path ran
    assert received == list(range(count))


def test_send_nowait_refuses_at_once_when_not_connected(sim: ExchangeSimulator) -> None:
    async def main() -> None:
        ws = aio.WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        with pytest.raises(WebSocketClosedError):
            ws.send_nowait("hello")

    asyncio.run(main())
