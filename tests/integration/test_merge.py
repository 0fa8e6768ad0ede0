"""``merge(*managers)`` and ``aio.merge``: several managers read from one thread or one
task, each item with its source, in order per manager, markers in place, the unread
rest put back, the end and the errors of ``stream()``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import no_leaks
from scripted import ScriptedServer, burst, one_per_go

from kstlib.websocket import WebSocketClosedError, WebSocketManager, aio, merge, merging

pytestmark = pytest.mark.timeout(60)

QUIET = {"ping_interval": None}
COUNT = 300


def per_source(pairs: list[tuple[Any, Any]], *managers: Any) -> list[list[int]]:
    """The message numbers of each manager, in the order the merge gave them."""
    return [[msg["n"] for source, msg in pairs if source is m] for m in managers]


def on_server(body: Callable[[str], Any]) -> Any:
    """``body(url)`` against a :func:`~scripted.burst` server; the managers it made must be
    gone afterwards (a manager's ``fileno()`` lives as long as the manager)."""
    with ScriptedServer(burst(COUNT)) as srv, no_leaks():
        result = body(srv.url)
        gc.collect()
    return result


def test_merge_yields_every_item_with_its_source_in_order_per_manager() -> None:
    def body(url: str) -> list[list[int]]:
        with WebSocketManager(url, **QUIET) as a, WebSocketManager(url, **QUIET) as b:
            pairs = []
            for pair in merge(a, b):
                pairs.append(pair)
                if len(pairs) == 2 * COUNT:
                    break
            return per_source(pairs, a, b)

    assert on_server(body) == [list(range(1, COUNT + 1))] * 2


def test_leaving_a_merge_early_puts_the_unread_rest_back_in_order() -> None:
    def body(url: str) -> list[tuple[int, int]]:
        with WebSocketManager(url, **QUIET) as a, WebSocketManager(url, **QUIET) as b:
            seen = []
            for pair in merge(a, b):
                seen.append(pair)
                if len(seen) == 50:
                    break
            lasts = [(ids or [0])[-1] for ids in per_source(seen, a, b)]
            for m in (a, b):
                m.send("more")  # so that each has a next message, taken or not
            return [(last, m.recv(timeout=30)["n"]) for last, m in zip(lasts, (a, b), strict=True)]

    # the next item of each manager follows the last one the merge handed out
    assert all(nxt == last + 1 for last, nxt in on_server(body))


def test_leaving_a_merge_keeps_the_reads_of_the_other_managers() -> None:
    # Both sockets hold a message when a merge starts, so its first wait reads both (once
    # the engines lent their reading); leaving after the first item must put the other
    # manager's read back.
    sent = threading.Semaphore(0)

    async def handler(ws: Any) -> None:
        n = 0
        async for _ in ws:
            n += 1
            await ws.send(json.dumps({"n": n}))  # returns once the kernel has it
            sent.release()

    def wait_sent(count: int) -> None:
        for _ in range(count):
            assert sent.acquire(timeout=10), "a message was never sent"

    def rounds(url: str) -> None:
        with WebSocketManager(url, **QUIET) as a, WebSocketManager(url, **QUIET) as b:
            for n in range(1, 41):
                for m in (a, b):
                    m.send("go")
                wait_sent(2)
                source, msg = next(merge(a, b))  # one item, then the merge is left
                other = b if source is a else a
                assert msg["n"] == n
                assert other.recv(timeout=10)["n"] == n

    with ScriptedServer(handler) as srv, no_leaks():
        rounds(srv.url)
        gc.collect()  # a manager's fileno() lives as long as the manager


def test_merge_ends_when_every_manager_is_closed() -> None:
    def body(url: str) -> tuple[int, bool]:
        a = WebSocketManager(url, **QUIET)
        b = WebSocketManager(url, **QUIET)
        count = 0
        closers = [threading.Thread(target=m.close) for m in (a, b)]
        for _source, _msg in merge(a, b):
            count += 1
            if count == COUNT:  # closed from other threads while the merge runs
                for t in closers:
                    t.start()
        for t in closers:
            t.join(30)
        return count, a.is_dead and b.is_dead

    count, dead = on_server(body)
    assert count >= COUNT and dead  # both ended normally, after what they had queued


def test_merge_marks_where_one_manager_lost_its_connection() -> None:
    def body(url: str) -> tuple[list[str], list[str]]:
        with WebSocketManager(url, **QUIET) as a, WebSocketManager(url, **QUIET) as b:
            items: list[tuple[Any, Any]] = []
            from_a = 0
            for source, item in merge(a, b, events=True):
                items.append((source, item))
                from_a += source is a and isinstance(item, dict)
                if from_a == COUNT and a.stats.connects == 1:
                    a.kill()  # a reconnects: its markers come in place
                if from_a == 2 * COUNT:
                    break
            return [_kind(i) for s, i in items if s is a], [_kind(i) for s, i in items if s is b]

    of_a, of_b = on_server(body)
    assert of_a[: COUNT + 2] == ["msg"] * COUNT + ["Disconnected", "Connected"]
    assert set(of_b) <= {"msg", "Connected"}  # b kept its connection


def _kind(item: Any) -> str:
    return "msg" if isinstance(item, dict) else type(item).__name__


def test_a_manager_that_ends_with_an_error_raises_it_from_the_merge() -> None:
    def body(url: str) -> int:
        with (
            WebSocketManager(url, auto_reconnect=False, **QUIET) as a,
            WebSocketManager(url, **QUIET) as b,
        ):
            from_a = 0
            with pytest.raises(WebSocketClosedError):
                for source, _msg in merge(a, b):
                    if source is a:
                        from_a += 1
                        if from_a == COUNT:
                            a.send("bye")  # the server closes a for good
            return from_a

    assert on_server(body) == COUNT  # everything a queued came before the error


def test_merge_reads_the_sockets_itself_on_its_thread() -> None:
    """Once the engines lend their reading, one poll on the merging thread reads every
    socket: the messages are parsed and decoded there."""
    names: list[str] = []

    def decode(raw: Any) -> Any:
        names.append(threading.current_thread().name)
        return json.loads(raw)

    def body(url: str) -> list[list[int]]:
        opts = {"decode": decode, **QUIET}
        with WebSocketManager(url, **opts) as a, WebSocketManager(url, **opts) as b:
            merged, pairs = merge(a, b), []
            for _ in range(20):
                a.send("go")
                b.send("go")
                pairs += [next(merged), next(merged)]
            merged.close()
            return per_source(pairs, a, b)

    with ScriptedServer(one_per_go) as srv, no_leaks():
        got = body(srv.url)
        gc.collect()
    assert got == [list(range(1, 21))] * 2
    assert names[-20:] == [threading.current_thread().name] * 20


def test_merge_refuses_nothing_and_duplicates() -> None:
    with pytest.raises(ValueError):
        merge()

    def body(url: str) -> None:
        with WebSocketManager(url, **QUIET) as a, pytest.raises(ValueError):
            merge(a, a)

    on_server(body)


async def first_then_leave(merged: Any, count: int) -> list[tuple[Any, Any]]:
    """The first ``count`` pairs of an asyncio merge, which is then closed (an async
    generator left by ``break`` is closed only once collected)."""
    pairs = []
    async with contextlib.aclosing(merged):
        async for pair in merged:
            pairs.append(pair)
            if len(pairs) == count:
                break
    return pairs


def test_asyncio_merge_in_order_per_manager_and_the_rest_put_back() -> None:
    async def main(url: str) -> tuple[list[list[int]], list[int]]:
        async with (
            aio.WebSocketManager(url, **QUIET) as a,
            aio.WebSocketManager(url, **QUIET) as b,
        ):
            pairs = await first_then_leave(aio.merge(a, b), COUNT)
            for m in (a, b):
                await m.send("more")  # so that each has a next message, taken or not
            nexts = [(await m.recv(timeout=30))["n"] for m in (a, b)]
            return per_source(pairs, a, b), nexts

    got, nexts = on_server(lambda url: asyncio.run(main(url)))
    for ids, nxt in zip(got, nexts, strict=True):
        assert ids == list(range(1, len(ids) + 1))
        assert nxt == len(ids) + 1  # the unread rest went back to its manager


def test_asyncio_merge_left_with_full_buffers_loses_nothing(monkeypatch: Any) -> None:
    # A tiny merge buffer: when the consumer leaves, each pump is blocked putting an
    # item it took from its stream, with the rest of its batch still in the stream.
    monkeypatch.setattr(merging, "ASYNC_BUFFER", 2)

    async def main(url: str) -> list[list[int]]:
        async with (
            aio.WebSocketManager(url, **QUIET) as a,
            aio.WebSocketManager(url, **QUIET) as b,
        ):
            got = per_source(await first_then_leave(aio.merge(a, b), 10), a, b)
            for ids, m in zip(got, (a, b), strict=True):
                while len(ids) < COUNT:
                    ids.append((await m.recv(timeout=30))["n"])
            return got

    assert on_server(lambda url: asyncio.run(main(url))) == [list(range(1, COUNT + 1))] * 2
