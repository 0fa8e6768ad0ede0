"""Several managers read from one thread (or one task): ``merge(*managers)``.

A strategy that follows ten feeds wants one loop, not ten threads::

    from kstlib.websocket import WebSocketManager, merge

    with WebSocketManager(url_a) as a, WebSocketManager(url_b) as b:
        for source, msg in merge(a, b):
            ...   # source is a or b

Rules, the same as ``stream()``'s for each manager:

* each item comes with its source, ``(manager, item)``; the items of one manager come
  in its order (no order holds *between* managers: each has its own clock);
* ``events=True`` yields the gap markers (``Connected``, ``Disconnected``, ``Gap``) in
  place, as ``stream(events=True)`` does; otherwise they are hidden;
* a manager whose stream ends normally (closed by the user) leaves the merge, which ends
  when none is left; a manager whose stream ends with an error (reconnecting gave up,
  the server closed for good) raises that error from the merge, after the items it
  queued before it;
* leaving the loop early puts the unread items back in their managers, in order, for the
  next ``stream()`` / ``recv()`` / ``merge()``;
* a manager never connected is connected first (as ``stream()`` does).

The sync :func:`merge` waits on every manager's :meth:`~WebSocketManager.fileno` at once
(one ``poll``), then drains the ready ones: one thread, any number of managers. The
asyncio twin is :func:`kstlib.websocket.aio.merge`.

Thread-safety: a merge is one iterator for one thread; the managers stay usable from
any thread (``send``, ``subscribe``, ``close``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from kstlib.websocket.inbox import InboxFinished
from kstlib.websocket.models import GAP_MARKERS

if TYPE_CHECKING:
    from kstlib.websocket import aio
    from kstlib.websocket.manager import WebSocketManager

__all__ = ["merge", "merge_async"]

#: Items the asyncio merge holds between its readers and its consumer, per manager.
ASYNC_BUFFER = 1000


def merge(*managers: WebSocketManager, events: bool = False) -> Iterator[tuple[Any, Any]]:
    """``(manager, item)`` for every item of every manager (see the module docstring).

    Raises ``ValueError`` without managers or when one is given twice."""
    _check(managers)
    for m in managers:
        if not m._started:
            m.connect()
    return _merged(list(managers), events)


def _check(managers: tuple[Any, ...]) -> None:
    if not managers:
        raise ValueError("merge() needs at least one manager")
    if len({id(m) for m in managers}) != len(managers):
        raise ValueError("merge(): a manager is given twice")


def _merged(managers: list[WebSocketManager], events: bool) -> Iterator[tuple[Any, Any]]:
    hides = {id(m): m._hide_markers(events) for m in managers}
    poller = select.poll()
    by_fd = {}
    for m in managers:
        fd = m.fileno()
        by_fd[fd] = m
        poller.register(fd, select.POLLIN)
    ready = list(managers)  # look at each once before the first wait
    while by_fd:
        for m in ready:
            try:
                batch = m._inbox.get_batch(timeout=0.0)
            except InboxFinished as end:
                if end.error is not None:
                    raise end.error from None
                poller.unregister(m.fileno())
                del by_fd[m.fileno()]
                continue
            hide = hides[id(m)]
            if hide is not None and hide():
                batch = [item for item in batch if type(item) not in GAP_MARKERS]
            yield from _handed_out(m, batch)
        ready = [by_fd[fd] for fd, _ in poller.poll()] if by_fd else []


def _handed_out(m: WebSocketManager, batch: list[Any]) -> Iterator[tuple[Any, Any]]:
    """Yield ``batch`` with its source; what the consumer did not take goes back."""
    it = iter(batch)
    try:
        for item in it:
            yield m, item
    finally:
        rest = list(it)
        if rest:
            m._inbox.extend_front(rest)


async def merge_async(
    *managers: aio.WebSocketManager, events: bool = False
) -> AsyncIterator[tuple[Any, Any]]:
    """The asyncio :func:`merge`: one task reads each manager's ``stream()`` (the reads
    themselves run on the loop, see :mod:`kstlib.websocket.engine.direct`); the items
    meet in one bounded queue (:data:`ASYNC_BUFFER` per manager). Same rules."""
    _check(managers)
    queue: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue(ASYNC_BUFFER * len(managers))
    readers = [asyncio.ensure_future(_pump(m, events, queue)) for m in managers]
    try:
        live = len(readers)
        while live:
            source, item = await queue.get()
            if source is None:  # a reader ended: normally (None) or with its error
                live -= 1
                if item is not None:
                    raise item
                continue
            yield source, item
    finally:
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(BaseException):
                await task
        _put_back(queue)


async def _pump(m: aio.WebSocketManager, events: bool, queue: asyncio.Queue[Any]) -> None:
    try:
        async for item in m.stream(events=events):
            await queue.put((m, item))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        await queue.put((None, exc))
        return
    await queue.put((None, None))


def _put_back(queue: asyncio.Queue[tuple[Any, Any]]) -> None:
    """Return what the consumer did not take to each manager, in order."""
    rest: dict[int, tuple[Any, list[Any]]] = {}
    while not queue.empty():
        source, item = queue.get_nowait()
        if source is not None:
            rest.setdefault(id(source), (source, []))[1].append(item)
    for source, items in rest.values():
        source._inbox.extend_front(items)
