"""The engine's read loop over TLS and TCP: bursts of every size arrive whole and in
order, including bytes OpenSSL already decrypted that no ``poll`` would show."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable

import pytest
from helpers import FAST, no_leaks
from rawserver import RawServer, response_101, server_frame

from kstlib.websocket import WebSocketManager

pytestmark = pytest.mark.timeout(60)

COUNT = 3000


def bursts(done: threading.Event) -> Callable[[socket.socket, dict[str, str], bytes], None]:
    """101, then COUNT numbered text frames in writes of growing, uneven sizes."""

    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(response_101(headers))
        frames = [
            server_frame(0x1, f'{{"n":{i}}}'.encode() + b" " * (i % 97)) for i in range(COUNT)
        ]
        i, size = 0, 1
        while i < COUNT:
            conn.sendall(b"".join(frames[i : i + size]))
            i += size
            size = size % 61 + 7
        done.wait(30)

    return behaviour


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_every_burst_arrives_whole_and_in_order(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    tls: bool,
) -> None:
    done = threading.Event()
    srv = serve(bursts(done), server_tls if tls else None)
    options = {"ssl": client_tls} if tls else {}
    with no_leaks(), WebSocketManager(srv.url, compression=None, **options, **FAST) as ws:
        got = [m["n"] for _, m in zip(range(COUNT), ws.stream(), strict=False)]
        done.set()
    assert got == list(range(COUNT))
