"""Embedding in a framework's own loop: ``recv(timeout)``, ``drain(max_items)`` and a
selectable ``fileno()``, with the ordering and the gap markers of ``stream()``."""

from __future__ import annotations

import asyncio
import gc
import select
import socket
from typing import Any

import pytest
from helpers import FAST, no_leaks, wait_for
from scripted import ScriptedServer, burst

from kstlib.websocket import (
    Connected,
    Disconnected,
    WebSocketClosedError,
    WebSocketManager,
    WebSocketTimeoutError,
    aio,
)

pytestmark = pytest.mark.timeout(60)


def test_recv_gives_the_next_message_or_times_out() -> None:
    with ScriptedServer(burst(3)) as srv, no_leaks():
        with WebSocketManager(srv.url, **FAST) as ws:
            assert [ws.recv(timeout=10)["n"] for _ in range(3)] == [1, 2, 3]
            with pytest.raises(WebSocketTimeoutError):
                ws.recv(timeout=0.1)
            ws.send("more")
            assert ws.recv(timeout=10) == {"n": 4}
            ws.close()
            assert [ws.recv()["n"], ws.recv()["n"]] == [5, 6]  # queued ones stay readable
            with pytest.raises(WebSocketClosedError):
                ws.recv(timeout=10)


def test_recv_with_events_sees_the_gap_markers_in_order() -> None:
    with ScriptedServer(burst(2)) as srv, no_leaks():
        ws = WebSocketManager(srv.url, **FAST)
        items = [ws.recv(timeout=10, events=True) for _ in range(3)]
        assert isinstance(items[0], Connected) and [i["n"] for i in items[1:]] == [1, 2]
        ws.kill()
        after = [ws.recv(timeout=10, events=True) for _ in range(4)]
        assert isinstance(after[0], Disconnected) and isinstance(after[1], Connected)
        assert [i["n"] for i in after[2:]] == [1, 2]  # the new connection starts over
        ws.close()


def test_drain_never_waits_and_takes_at_most_what_is_asked() -> None:
    with ScriptedServer(burst(5)) as srv, no_leaks():
        with WebSocketManager(srv.url, **FAST) as ws:
            assert wait_for(lambda: len(ws._inbox) == 5)
            assert [m["n"] for m in ws.drain(max_items=2)] == [1, 2]
            assert [m["n"] for m in ws.drain()] == [3, 4, 5]
            assert ws.drain() == []


def test_a_select_loop_waits_on_two_managers_and_its_own_socket() -> None:
    own_r, own_w = socket.socketpair()
    with ScriptedServer(burst(3)) as one, ScriptedServer(burst(2)) as two, no_leaks():
        a = WebSocketManager(one.url, **FAST)
        b = WebSocketManager(two.url, **FAST)
        a.connect()
        b.connect()
        got: dict[str, list[int]] = {"a": [], "b": []}
        own_w.send(b"x")
        own_seen = False
        while len(got["a"]) < 3 or len(got["b"]) < 2 or not own_seen:
            readable, _, _ = select.select([a, b, own_r], [], [], 10)
            assert readable, "nothing became readable"
            for r in readable:
                if r is own_r:
                    own_seen = own_r.recv(1) == b"x"
                else:
                    got["a" if r is a else "b"] += [m["n"] for m in r.drain()]
        assert got == {"a": [1, 2, 3], "b": [1, 2]}
        # drained and quiet: no longer readable
        assert select.select([a, b], [], [], 0)[0] == []
        a.close()
        b.close()
        assert select.select([a, b], [], [], 0)[0] == [a, b]  # the end is readable too
        del a, b, r, readable  # the descriptors live as long as their manager
        gc.collect()
    own_r.close()
    own_w.close()


def test_asyncio_recv() -> None:
    async def main(url: str) -> list[Any]:
        async with aio.WebSocketManager(url, **FAST) as ws:
            out = [await ws.recv(timeout=10) for _ in range(3)]
            with pytest.raises(WebSocketTimeoutError):
                await ws.recv(timeout=0.1)
            return out

    with ScriptedServer(burst(3)) as srv, no_leaks():
        assert [m["n"] for m in asyncio.run(main(srv.url))] == [1, 2, 3]
