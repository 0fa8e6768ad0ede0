"""``consume_async`` (:mod:`kstlib.websocket._stream`) over a real inbox, with no
filler: the items queued reach the handler in order, markers hidden unless asked for, a
handler that raises leaves the rest of its batch queued, and the end of the inbox ends
the call the way it ends ``stream()``. The reads on the loop are tested against real
servers in ``tests/integration/test_consume.py``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kstlib.websocket._stream import consume_async
from kstlib.websocket.exceptions import WebSocketClosedError
from kstlib.websocket.inbox import Inbox
from kstlib.websocket.models import Connected, Disconnected, DisconnectReason

pytestmark = pytest.mark.timeout(30)


class Boom(Exception):
    pass


def run(inbox: Inbox, handler: Any, hide: Any = None) -> None:
    asyncio.run(asyncio.wait_for(consume_async(inbox, handler, hide), 10))


def test_queued_batches_reach_the_handler_in_order_until_the_end() -> None:
    inbox = Inbox(100)
    inbox.put_batch([1, 2, 3])
    inbox.put_batch([4, 5])
    inbox.finish()
    got: list[int] = []
    run(inbox, got.append)
    assert got == [1, 2, 3, 4, 5]


def test_a_raising_handler_leaves_the_rest_of_its_batch_queued() -> None:
    inbox = Inbox(100)
    inbox.put_batch(list(range(10)))
    got: list[int] = []

    def handler(item: int) -> None:
        got.append(item)
        if item == 3:
            raise Boom

    with pytest.raises(Boom):
        run(inbox, handler)
    assert got == [0, 1, 2, 3]
    assert inbox.drain() == [4, 5, 6, 7, 8, 9]


def test_markers_are_hidden_only_when_asked() -> None:
    gone = Disconnected(DisconnectReason.SERVER_CLOSED, 0.0, 1000)
    back = Connected(0.0, 2)
    for hide, expected in ((lambda: True, ["a", "b"]), (None, ["a", gone, back, "b"])):
        inbox = Inbox(100)
        inbox.put_batch(["a", gone, back, "b"])
        inbox.finish()
        got: list[Any] = []
        run(inbox, got.append, hide)
        assert got == expected


def test_the_error_that_ends_the_inbox_is_raised_after_the_queued_items() -> None:
    inbox = Inbox(100)
    inbox.put_batch(["last"])
    inbox.finish(WebSocketClosedError(4002, "bye"))
    got: list[str] = []
    with pytest.raises(WebSocketClosedError) as info:
        run(inbox, got.append)
    assert got == ["last"] and info.value.code == 4002


def test_a_put_from_another_thread_wakes_the_waiting_call() -> None:
    inbox = Inbox(100)
    got: list[int] = []

    async def main() -> None:
        task = asyncio.ensure_future(consume_async(inbox, got.append))
        await asyncio.sleep(0)  # the call now waits for a put
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, inbox.put_batch, [7, 8])
        await loop.run_in_executor(None, inbox.finish)
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert got == [7, 8]
