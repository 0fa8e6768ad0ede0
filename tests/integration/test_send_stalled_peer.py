"""Sending to a peer that stops reading: the write gives up after ``ping_timeout``, a
frame written only in part fails the connection (the byte stream cannot go on), and the
asyncio front's event loop keeps running meanwhile."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import NEVER, no_leaks, wait_for
from rawserver import RawServer, response_101

from kstlib.websocket import (
    ConnectionState,
    DisconnectReason,
    WebSocketManager,
    WebSocketTimeoutError,
    aio,
)

pytestmark = pytest.mark.timeout(120)

CHUNK = b"x" * (1 << 20)
OPTIONS: dict[str, Any] = {
    "ping_timeout": 0.5,  # also the write timeout
    "ping_interval": None,
    "compression": None,
    "auto_reconnect": False,
    "close_timeout": 0.5,
}


def stalled_server(serve: Callable[..., RawServer]) -> tuple[RawServer, threading.Event]:
    """Accept the handshake, then never read again (until ``release`` is set)."""
    release = threading.Event()

    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.sendall(response_101(headers))
        release.wait(60)

    return serve(behaviour), release


def fill_until_timeout(send: Callable[[bytes], None]) -> int:
    """Send 1 MiB messages until the write times out; how many went through."""
    for sent in range(256):  # far more than any loopback buffer holds
        try:
            send(CHUNK)
        except WebSocketTimeoutError:
            return sent
    raise AssertionError("256 MiB written to a peer that reads nothing")


def test_a_half_written_frame_fails_the_connection(serve: Callable[..., RawServer]) -> None:
    srv, release = stalled_server(serve)
    with no_leaks():
        ws = WebSocketManager(srv.url, **OPTIONS)
        ws.connect()
        fill_until_timeout(ws.send)
        # the peer holds part of a frame: the connection cannot carry another message
        assert wait_for(lambda: ws.stats.disconnects == 1)
        assert ws.stats.last_disconnect_reason is DisconnectReason.NETWORK_ERROR
        assert not ws.is_connected
        release.set()
        ws.close()


def test_asyncio_send_to_a_stalled_peer_never_blocks_the_loop(
    serve: Callable[..., RawServer],
) -> None:
    srv, release = stalled_server(serve)

    async def main() -> tuple[int, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        async with aio.WebSocketManager(srv.url, **OPTIONS) as ws:
            tick = asyncio.create_task(ticker())
            before = ticks
            for _ in range(256):
                try:
                    await ws.send(CHUNK)
                except WebSocketTimeoutError:
                    break
            during = ticks - before  # the last send waited ping_timeout for the socket
            release.set()
            stop.set()
            await tick
            return during, ws.stats.disconnects

    with no_leaks():
        during, _ = asyncio.run(main())
    # a loop blocked in the write would not have ticked while the send waited
    assert during > 5


@pytest.mark.timeout(60)
def test_close_against_a_full_socket_returns_closed_with_nothing_left(
    serve: Callable[..., RawServer],
) -> None:
    """A sender is stuck on a peer that reads nothing (its write would wait an hour);
    close() still ends within close_timeout: CLOSED, engine gone, the sender released."""
    srv, release = stalled_server(serve)
    options = {**OPTIONS, "ping_timeout": NEVER}
    calls = {"started": 0, "done": 0}
    outcome: list[BaseException] = []

    with no_leaks():
        ws = WebSocketManager(srv.url, **options)
        ws.connect()

        def sender() -> None:
            try:
                while True:
                    calls["started"] += 1
                    ws.send(CHUNK[:65536])
                    calls["done"] += 1
            except Exception as exc:
                outcome.append(exc)

        t = threading.Thread(target=sender)
        t.start()
        progress = {"done": -1, "stuck": 0}

        def stuck() -> bool:  # no send completed over 20 looks, 10 ms apart
            if calls["done"] == progress["done"]:
                progress["stuck"] += 1
            else:
                progress["done"], progress["stuck"] = calls["done"], 0
            return progress["stuck"] >= 20 and calls["started"] > calls["done"]

        assert wait_for(stuck, timeout=30)
        ws.close()
        assert ws.state is ConnectionState.CLOSED
        t.join(10)
        assert not t.is_alive() and len(outcome) == 1
        release.set()
