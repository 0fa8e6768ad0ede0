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
  next ``stream()`` / ``recv()`` / ``merge()``. The asyncio merge does so when it is
  closed: an async generator left by ``break`` is closed only once collected, and reads
  on until then, so wrap it in ``contextlib.aclosing`` when the same managers are read
  next;
* a manager never connected is connected first (as ``stream()`` does).

The sync :func:`merge` is one thread on one ``poll``: over the sockets of the managers
whose engine lends it the reading (:mod:`kstlib.websocket.engine.direct`: a message
costs that thread one wake-up, whatever the number of managers), and over every
manager's :meth:`~WebSocketManager.fileno` for what the engines deliver themselves. The
asyncio twin is :func:`kstlib.websocket.aio.merge` (one task per manager; the reads run
on the loop).

Thread-safety: a merge is one iterator for one thread; the managers stay usable from
any thread (``send``, ``subscribe``, ``close``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
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
    done: list[_Read] = []  # what the direct reads brought, in the order they did
    slots = [_Slot(m, events, done) for m in managers]
    poller = _Poller()
    live = {slot.manager.fileno(): slot for slot in slots}  # by inbox signal
    for fd in live:
        poller.watch(fd)
    unread = list(slots)  # managers whose socket this thread does not read
    ready = list(slots)  # look at each queue once before the first wait
    finished: deque[_Read] = deque()  # reads not handed out yet
    try:
        while live:
            for slot in ready:
                yield from _handed_out(slot.manager, _queued(slot, poller, live))
            if not live:
                break
            if unread:
                unread = [slot for slot in unread if not slot.arm(poller)]
            ready = [live[fd] for fd in poller.run_once(busy=bool(done)) if fd in live]
            finished.extend(done)  # the slots keep appending to this same list
            done.clear()
            while finished:
                slot, batch = finished.popleft()
                if batch:
                    yield from _handed_out(slot.manager, batch)
                else:  # the wait ended: delivery queued the batch, or the engine took
                    slot.end(poller)  # the reading back
                    unread.append(slot)
                    ready.append(slot)
    finally:
        for slot, batch in finished:  # left early: the reads not handed out go back
            if batch:
                slot.manager._inbox.extend_front(batch)
        for m in managers:
            m._engine.direct.detach(poller)
        poller.close()


def _queued(slot: _Slot, poller: _Poller, live: dict[int, Any]) -> list[Any]:
    """What ``slot``'s manager has queued now, markers hidden unless wanted; an ended
    stream leaves the merge (or raises)."""
    m = slot.manager
    try:
        batch = m._inbox.get_batch(timeout=0.0)
    except InboxFinished as end:
        if end.error is not None:
            raise end.error from None
        fd = m.fileno()
        poller.forget(fd)
        live.pop(fd, None)
        return []
    if slot.hide is not None and slot.hide():
        return [item for item in batch if type(item) not in GAP_MARKERS]
    return batch


class _Slot:
    """The direct reads of one manager for the merge: a :class:`~kstlib.websocket.inbox.
    Waiter` that stays open from batch to batch (no new wait per message). Each batch
    joins ``done`` as it is read; None or ``[]`` (look at the queue) ends the wait and
    joins it too."""

    __slots__ = ("_direct", "_done", "_inbox", "_list", "hide", "manager")

    def __init__(self, manager: WebSocketManager, events: bool, done: list[_Read]) -> None:
        self.manager = manager
        self.hide = manager._hide_markers(events)
        self._done = False
        self._list = done
        self._direct = manager._engine.direct
        self._inbox = manager._inbox

    def arm(self, poller: _Poller) -> bool:
        """Read the manager's socket on this thread from now on, if its engine lends it
        (True); True as well once its stream ended (nothing to read any more)."""
        if self._inbox.finished:
            return True
        self._done = False
        if not self._direct.fill_async(poller, self):
            return False
        if len(self._inbox):  # queued before the lend: those first (this wait ends at
            self.set_result(None)  # once, and a read meanwhile goes to the queue)
        return True

    def end(self, poller: _Poller) -> None:
        """The wait has ended: the reading is not this thread's any more."""
        self._direct.stop_async(poller, self)

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        if self._done:
            return
        if not result:
            self._done = True
        self._list.append((self, result))


#: A direct read of the merge: the slot, and its batch (None or ``[]``: the wait ended).
_Read = tuple[_Slot, "list[Any] | None"]


class _Poller:
    """The smallest event loop the direct read needs (:class:`~kstlib.websocket.engine.
    direct.Reactor`), on one ``poll``, plus plain descriptors to watch. Its thread runs
    :meth:`run_once`; other threads may only :meth:`call_soon_threadsafe`."""

    def __init__(self) -> None:
        # epoll where there is one: its cost is per ready descriptor, poll's per watched
        self._poll: Any = select.epoll() if hasattr(select, "epoll") else select.poll()
        self._readers: dict[int, tuple[Callable[..., object], tuple[Any, ...]]] = {}
        self._soon: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._poll.register(self._wake_r.fileno(), select.POLLIN)
        self._closed = False

    def watch(self, fd: int) -> None:
        self._poll.register(fd, select.POLLIN)

    def forget(self, fd: int) -> None:
        with contextlib.suppress(KeyError, OSError):
            self._poll.unregister(fd)

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self._readers[fd] = (callback, args)
        try:
            self._poll.register(fd, select.POLLIN)
        except FileExistsError:  # epoll: watched already
            self._poll.modify(fd, select.POLLIN)

    def remove_reader(self, fd: int) -> bool:
        if self._readers.pop(fd, None) is None:
            return False
        self.forget(fd)
        return True

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        self._soon.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("merge() has ended")
            self._soon.append((callback, args))
        with contextlib.suppress(OSError):  # a byte is pending already
            self._wake_w.send(b"\0")

    def is_closed(self) -> bool:
        return self._closed

    def run_once(self, *, busy: bool) -> list[int]:
        """Wait (not at all when ``busy`` or a call is due), run the readers that are
        ready and the calls due; returns the watched descriptors that are ready."""
        events = self._poll.poll(0 if busy or self._soon else -1)  # same in s and ms
        ready = []
        for fd, _ in events:
            reader = self._readers.get(fd)
            if reader is not None:
                reader[0](*reader[1])
            elif fd == self._wake_r.fileno():
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            else:
                ready.append(fd)
        if self._soon:  # (one added meanwhile by another thread wakes the next poll)
            with self._lock:
                soon, self._soon = self._soon, deque()
            for callback, args in soon:
                callback(*args)
        return ready

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if hasattr(self._poll, "close"):
            self._poll.close()
        self._wake_r.close()
        self._wake_w.close()


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
    stream = m.stream(events=events)
    held: Any = _NOTHING  # an item taken from the stream, not yet in the queue
    try:
        async for held in stream:
            await queue.put((m, held))
            held = _NOTHING
    except asyncio.CancelledError:
        # what the stream had not handed out goes back first; ahead of it the held
        # item, and ahead of that what _put_back returns from the queue
        await stream.aclose()
        if held is not _NOTHING:
            m._inbox.extend_front([held])
        raise
    except BaseException as exc:
        await queue.put((None, exc))
        return
    await queue.put((None, None))


_NOTHING = object()


def _put_back(queue: asyncio.Queue[tuple[Any, Any]]) -> None:
    """Return what the consumer did not take to each manager, in order."""
    rest: dict[int, tuple[Any, list[Any]]] = {}
    while not queue.empty():
        source, item = queue.get_nowait()
        if source is not None:
            rest.setdefault(id(source), (source, []))[1].append(item)
    for source, items in rest.values():
        source._inbox.extend_front(items)
