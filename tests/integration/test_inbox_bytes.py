"""The inbox's byte budget against a server that inflates: messages of 1 MiB that take
about 1 KiB on the wire (permessage-deflate) must not fill memory, under either policy."""

from __future__ import annotations

import socket
import threading
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from helpers import no_leaks, wait_for
from rawserver import RawServer, response_101, server_frame

from kstlib.websocket import WebSocketManager

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20
COUNT = 64  # 64 MiB once inflated; the budget below is 8 MiB


def compressed(payload: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    return server_frame(0x2, body[:-4], rsv1=True)  # tail removed, RSV1 set


def inflating_server(serve: Callable[..., RawServer]) -> tuple[RawServer, threading.Event]:
    release = threading.Event()
    frame = compressed(bytes(MIB))

    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(response_101(headers, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
        conn.sendall(frame * COUNT)
        release.wait(60)

    return serve(behaviour), release


OPTIONS: dict[str, Any] = {
    "queue_max_bytes": 8 * MIB,
    "max_message_size": 2 * MIB,
    "ping_interval": None,
    "close_timeout": 1.0,
}


def test_block_holds_the_budget_and_loses_nothing(serve: Callable[..., RawServer]) -> None:
    srv, release = inflating_server(serve)
    with no_leaks():
        ws = WebSocketManager(srv.url, queue_overflow="block", **OPTIONS)
        ws.connect()
        assert wait_for(lambda: ws.stats.queued_bytes >= 8 * MIB)  # full: the engine waits
        assert ws.stats.queued_bytes <= 8 * MIB and ws.stats.messages_dropped == 0
        for got, msg in enumerate(ws.stream(), 1):
            assert len(msg) == MIB
            assert ws.stats.queued_bytes <= 8 * MIB
            if got == COUNT:
                break
        assert ws.stats.messages_dropped == 0
        release.set()
        ws.close()


def test_drop_oldest_holds_the_budget_and_counts_the_drops(
    serve: Callable[..., RawServer],
) -> None:
    srv, release = inflating_server(serve)
    with no_leaks():
        ws = WebSocketManager(srv.url, queue_overflow="drop_oldest", **OPTIONS)
        ws.connect()
        # every message is either queued or counted as dropped
        assert wait_for(lambda: ws.stats.messages_dropped + len(ws._inbox) == COUNT)
        assert ws.stats.queued_bytes <= 8 * MIB and len(ws._inbox) <= 8
        release.set()
        ws.close()
