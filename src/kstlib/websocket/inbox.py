"""The bounded, thread-safe queue between the engine thread and the consumer.

The engine hands over whole batches (one lock acquisition per socket read, not per
message); the consumer takes everything queued in one call and iterates over it without
locks. Sync consumers wait on a condition variable; asyncio consumers register a future
that the engine completes through ``loop.call_soon_threadsafe`` (only while one waits, so
the hot path pays nothing for asyncio support).

Bounds and overflow: ``maxsize`` counts messages and ``max_bytes`` (optional) counts
their payload bytes after decompression, as the producer reports them per message
(``item_bytes``); both hold at once, except that an empty queue always takes one message,
however large (``max_message_size`` bounds that one):

* ``"block"``: :meth:`Inbox.put_batch` waits for room (back-pressure: the engine stops
  reading the socket, the kernel buffers fill, the server slows down). Nothing is lost.
  Time spent waiting is counted in ``blocked_seconds`` and the number of waits in
  ``blocked_puts``.
* ``"drop_oldest"``: the oldest queued messages are discarded to make room; each one is
  counted in ``dropped``.

``queued_bytes`` is the payload of what is queued now. Messages a consumer puts back
(:meth:`extend_front`) count the average size of the batch it took.

The end of the stream is signalled in-band with :meth:`finish`: consumers first drain
every queued message, then see the end (with the error, if any, that ended it).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["OVERFLOW_POLICIES", "Filler", "Inbox", "InboxFinished", "Waiter"]

OVERFLOW_POLICIES = ("block", "drop_oldest")


class InboxFinished(Exception):
    """Raised by the get methods once the inbox is finished and drained.

    ``error`` is the exception that ended the stream, or ``None`` for a normal end.
    """

    def __init__(self, error: BaseException | None) -> None:
        super().__init__("inbox finished")
        self.error = error


def look_again(fut: Any) -> None:
    """Complete an asyncio consumer's wait with None: it looks at the queue again."""
    if not fut.done():
        fut.set_result(None)


class Waiter(Protocol):
    """A consumer's wait that a :class:`Filler` completes on the consumer's loop: an
    asyncio future, a ``merge()`` slot, or the wait of :meth:`Inbox.serve_async`, which
    stays open from batch to batch (``done()`` stays False after ``set_result`` with a
    batch; None ends it)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...


class Filler(Protocol):
    """Reads messages into an inbox on the thread of a consumer that waits for them."""

    #: Payload bytes per message of the last batch :meth:`fill` returned.
    item_bytes: int
    #: Times the reading was lent: a consumer the filler refused waits on the queue only
    #: while this is unchanged (a lend between the refusal and the wait would be missed).
    lends: int

    def fill(self, timeout: float | None) -> list[Any] | None:
        """Read for up to ``timeout`` seconds (None: no limit), only while nothing is
        queued. A list when it had the reading: messages to hand out before anything
        queued meanwhile (queued after it, by a producer that took the reading back; it
        may also have queued some itself: look at the queue again); None when it cannot
        read now: wait for the queue (:meth:`Inbox.wake_waiters` says when to retry)."""
        ...

    def fill_async(self, loop: asyncio.AbstractEventLoop, fut: Waiter) -> bool:
        """Read on ``loop`` (the caller's, which is about to await ``fut``) until the
        next batch: True when it does, and then completes ``fut`` with the batch (to
        hand out as it is), or with None when anything else ends the wait (messages
        queued, the reading taken back); the caller calls :meth:`stop_async` when its
        wait ends. False when it cannot read now."""
        ...

    def stop_async(self, loop: asyncio.AbstractEventLoop, fut: Waiter) -> None:
        """The wait on ``fut`` that :meth:`fill_async` began has ended (on ``loop``'s
        thread)."""
        ...


class Inbox:
    """Bounded multi-producer / multi-consumer message queue with batch hand-off.

    Thread-safe: every method may be called from any thread. The async getter must be
    awaited on a running event loop.
    """

    def __init__(
        self, maxsize: int = 1000, overflow: str = "block", max_bytes: int | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"queue_size must be >= 1, got {maxsize}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"queue_max_bytes must be >= 1, got {max_bytes}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"queue_overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.overflow = overflow
        self._items: deque[Any] = deque()
        #: Payload sizes of the queued items as runs ``[count, bytes each]``, oldest
        #: first: one entry per batch, nothing per message on the hot path.
        self._runs: deque[list[int]] = deque()
        self.queued_bytes = 0
        self._taken_size = 0  # average item size of the last batch taken
        self._signal: tuple[socket.socket, socket.socket] | None = None  # see fileno()
        self._signalled = False
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        #: Threads waiting in get_batch / put_batch (notify only when someone waits).
        self._getters = self._putters = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], int]] = []
        self._finished = False
        self._error: BaseException | None = None
        self._interrupted = False
        #: Reads for a waiting consumer of :meth:`get_batch` (see :class:`Filler`).
        self.filler: Filler | None = None
        self.dropped = 0
        self.blocked_puts = 0
        self.blocked_seconds = 0.0

    # -- producer side (engine thread) ---------------------------------------------------

    def put_batch(
        self,
        items: list[Any],
        timeout: float | None = None,
        force: bool = False,
        item_bytes: int = 0,
    ) -> int:
        """Queue ``items`` in order; return how many were queued. ``item_bytes`` is the
        payload size of each (an average for a batch; 0 for markers).

        With ``"drop_oldest"`` every item is queued (older ones dropped as needed). With
        ``"block"`` this waits for room up to ``timeout`` seconds (``None``: until room or
        :meth:`interrupt_put`), and returns early with a partial count when the time is up
        or the put was interrupted; the caller keeps the rest and retries. ``force``
        queues everything at once past the bound (used when the connection ends, so the
        messages of its last read are kept; the excess is at most one read).
        """
        if not items:
            return 0
        with self._lock:
            if force:
                self._append(items, item_bytes)
                self._notify_consumers()
                return len(items)
            if self.overflow == "drop_oldest":
                self._append(items, item_bytes)
                self._drop_excess()
                self._notify_consumers()
                return len(items)
            queued = self._put_blocking(items, timeout, item_bytes)
            if queued:
                self._notify_consumers()
            return queued

    def _append(self, items: list[Any], item_bytes: int) -> None:
        # Called with the lock held.
        self._items.extend(items)
        runs = self._runs
        if runs and runs[-1][1] == item_bytes:
            runs[-1][0] += len(items)
        else:
            runs.append([len(items), item_bytes])
        self.queued_bytes += item_bytes * len(items)

    def _drop_excess(self) -> None:
        # Called with the lock held: the oldest go until both bounds hold (one stays).
        items, max_bytes = self._items, self.max_bytes
        while len(items) > self.maxsize or (
            max_bytes is not None and self.queued_bytes > max_bytes and len(items) > 1
        ):
            items.popleft()
            self.queued_bytes -= self._pop_sizes(1)
            self.dropped += 1

    def _pop_sizes(self, count: int) -> int:
        # Called with the lock held: the payload of the ``count`` oldest items, forgotten.
        runs, total = self._runs, 0
        while count:
            run = runs[0]
            n = min(count, run[0])
            total += n * run[1]
            count -= n
            run[0] -= n
            if not run[0]:
                runs.popleft()
        return total

    def _room(self, item_bytes: int) -> int:
        """How many more items of ``item_bytes`` fit now (lock held)."""
        room = self.maxsize - len(self._items)
        if self.max_bytes is not None and item_bytes > 0:
            room = min(room, (self.max_bytes - self.queued_bytes) // item_bytes)
            if room <= 0 and not self._items:
                room = 1  # an empty queue takes one message, however large
        return room

    def _put_blocking(self, items: list[Any], timeout: float | None, item_bytes: int) -> int:
        total = len(items)
        room = self._room(item_bytes)
        if room >= total:
            self._append(items, item_bytes)
            return total
        queued = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        started = time.monotonic()
        self.blocked_puts += 1
        try:
            while queued < total:
                room = self._room(item_bytes)
                if room > 0:
                    chunk = items[queued : queued + room]
                    self._append(chunk, item_bytes)
                    queued += len(chunk)
                    self._notify_consumers()
                    continue
                if self._interrupted:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._putters += 1
                try:
                    self._not_full.wait(remaining)
                finally:
                    self._putters -= 1
        finally:
            self.blocked_seconds += time.monotonic() - started
        return queued

    def count_dropped(self, n: int) -> None:
        """Count ``n`` messages the producer had to give up on (never queued)."""
        with self._lock:
            self.dropped += n

    def interrupt_put(self) -> None:
        """Make a blocked :meth:`put_batch` return now (and future ones not wait)."""
        with self._lock:
            self._interrupted = True
            self._not_full.notify_all()

    def resume_put(self) -> None:
        """Undo :meth:`interrupt_put`: blocking puts wait for room again."""
        with self._lock:
            self._interrupted = False

    def finish(self, error: BaseException | None = None) -> None:
        """End the stream after the queued messages; ``error`` is raised to consumers."""
        with self._lock:
            self._finished = True
            self._error = error
            self._notify_consumers()
            self._not_empty.notify_all()  # every waiting consumer sees the end

    def reopen(self) -> None:
        """Start a new stream (after a reconnect the user asked for); keeps queued items."""
        with self._lock:
            self._finished = False
            self._error = None
            self._interrupted = False

    def _notify_consumers(self) -> None:
        # Called with the lock held.
        if self._getters:
            self._not_empty.notify()
        if self._signal is not None:
            self._raise_signal()
        if self._async_waiters:
            self._wake_async()

    def _wake_async(self) -> None:
        # Called with the lock held: every waiter's future is completed on its loop, by a
        # call scheduled there (through the loop's self-pipe unless this is its thread: a
        # read on the loop). Never here: the waiter may resume inside set_result
        # (_Resume), and its task would take this lock.
        waiters, self._async_waiters = self._async_waiters, []
        here = threading.get_ident()
        for loop, fut, thread in waiters:
            try:
                if thread == here:
                    loop.call_soon(look_again, fut)
                else:
                    loop.call_soon_threadsafe(look_again, fut)
            except RuntimeError:  # loop closed: nobody is waiting any more
                pass

    # -- consumer side ---------------------------------------------------------------------

    def _take(self, max_items: int | None) -> list[Any]:
        # Called with the lock held and at least one item queued.
        items = self._items
        if max_items is None or max_items >= len(items):
            return self._take_all()
        batch = [items.popleft() for _ in range(max_items)]
        taken = self._pop_sizes(max_items)
        self.queued_bytes -= taken
        self._taken_size = taken // max_items
        if self._putters:
            self._not_full.notify()
        if self._getters:
            self._not_empty.notify()  # the rest is for the next consumer
        if self._async_waiters:
            self._wake_async()
        return batch

    def _take_all(self) -> list[Any]:
        # Called with the lock held and at least one item queued.
        if len(self._items) == 1:
            batch = [self._items.popleft()]
        else:
            batch = list(self._items)
            self._items.clear()
        self._forget_sizes(len(batch))
        if self._putters:
            self._not_full.notify()
        if self._signal is not None:
            self._clear_signal()
        return batch

    def _forget_sizes(self, taken: int) -> None:
        # Called with the lock held, once ``taken`` items (all of them) left the queue.
        self._taken_size = self.queued_bytes // taken if taken else 0
        self._runs.clear()
        self.queued_bytes = 0

    def get_batch(self, timeout: float | None = None, max_items: int | None = None) -> list[Any]:
        """Take every queued message, or the first ``max_items`` (oldest first); wait up
        to ``timeout`` for one (0: do not wait).

        Returns ``[]`` when the time is up. Raises :class:`InboxFinished` once the inbox
        is finished and empty. While it waits, a :attr:`filler` may read the messages in
        on this thread (see :class:`Filler`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._items:
                if self._finished:
                    raise InboxFinished(self._error)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                got = self._fill(remaining)
                if got is None:
                    self._getters += 1
                    try:
                        self._not_empty.wait(remaining)
                    finally:
                        self._getters -= 1
                elif got and (out := self._filled(got, max_items)) is not None:
                    return out  # the hot path: read on this thread, handed out as is
            return self._take(max_items)

    def _filled(self, got: list[Any], max_items: int | None) -> list[Any] | None:
        # Called with the lock held: the filler's batch, handed out as it is when nothing
        # is queued and it fits ``max_items``; else it goes ahead of what is queued, which
        # the producer queued after it took the reading back (the filler reads only while
        # nothing older is queued), and None.
        assert self.filler is not None
        if not self._items and (max_items is None or len(got) <= max_items):
            self._taken_size = self.filler.item_bytes
            return got
        self._put_ahead(got)
        return None

    def _put_ahead(self, got: list[Any]) -> None:
        # Called with the lock held: a filler's batch goes ahead of the queue.
        assert self.filler is not None
        item_bytes = self.filler.item_bytes
        self._items.extendleft(reversed(got))
        self._runs.appendleft([len(got), item_bytes])
        self.queued_bytes += item_bytes * len(got)

    def _fill(self, timeout: float | None) -> list[Any] | None:
        # Called with the lock held; releases it while the filler reads.
        filler = self.filler
        if filler is None:
            return None
        lends = filler.lends
        self._lock.release()
        try:
            got = filler.fill(timeout)
        finally:
            self._lock.acquire()
        if got is None and filler.lends != lends:
            return []  # lent since it refused: try again
        return got

    def wake_waiters(self) -> None:
        """Wake every consumer waiting in :meth:`get_batch` or :meth:`get_batch_async`
        (to try the filler again)."""
        with self._lock:
            self._not_empty.notify_all()
            if self._async_waiters:
                self._wake_async()

    async def get_batch_async(self, max_items: int | None = None) -> list[Any]:
        """Awaitable :meth:`get_batch` (no timeout: wrap it in ``asyncio.wait_for``);
        never blocks the event loop. While it waits, a :attr:`filler` may read the
        messages in on the loop (see :class:`Filler`)."""
        loop = asyncio.get_running_loop()
        filler = self.filler
        while True:
            with self._lock:
                if self._items:
                    return self._take(max_items)
                if self._finished:
                    raise InboxFinished(self._error)
            fut: asyncio.Future[list[Any] | None] = _Resume(loop=loop)
            lends = 0 if filler is None else filler.lends
            if filler is None or not filler.fill_async(loop, fut):
                await self._wait_for_put(loop, fut, lends)
                continue
            try:  # the filler completes fut with a batch, or None for anything else
                got = None if self._items else await fut  # (queued before it lent)
            except asyncio.CancelledError:
                self._keep_read(fut)
                raise
            finally:
                filler.stop_async(loop, fut)
            if got:
                with self._lock:
                    if (out := self._filled(got, max_items)) is not None:
                        return out  # the hot path: read on this loop, handed out as is

    async def serve_async(
        self,
        handler: Callable[[Any], object],
        hide: Callable[[], bool] | None = None,
        hidden: tuple[type, ...] = (),
    ) -> None:
        """Call ``handler(item)`` for every item, oldest first, until the inbox is
        finished (then raise :class:`InboxFinished`); never blocks the event loop.
        ``hide()``, asked once per batch, True skips that batch's items whose type is in
        ``hidden``. While nothing is queued, a :attr:`filler` reads on the loop and
        passes each batch to ``handler`` in the reader's own turn, so a message reaches
        it with one loop wake-up and no task switch; queued batches are passed from this
        task. An exception from ``handler`` ends the wait and is raised here; the items
        after the one that raised go back to the head of the queue."""
        loop = asyncio.get_running_loop()
        filler = self.filler
        while True:
            serving = _Serving(loop, self, handler, hide, hidden)
            with self._lock:
                batch = self._take(None) if self._items else None
                if batch is None and self._finished:
                    raise InboxFinished(self._error)
            if batch is not None:
                serving.set_result(batch)
                if serving.ended.done():
                    serving.ended.result()  # raises what the handler raised
                continue
            lends = 0 if filler is None else filler.lends
            if filler is None or not filler.fill_async(loop, serving):
                await self._wait_for_put(loop, _Resume(loop=loop), lends)
                continue
            try:
                if not self._items:  # (queued before it lent: those first)
                    await serving.ended
            finally:
                filler.stop_async(loop, serving)

    def _keep_read(self, fut: asyncio.Future[list[Any] | None]) -> None:
        # A consumer cancelled after the filler completed its wait with a batch: the
        # batch goes ahead of the queue, for the next consumer.
        if fut.done() and not fut.cancelled() and (got := fut.result()):
            with self._lock:
                self._put_ahead(got)
                self._notify_consumers()

    async def _wait_for_put(
        self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], lends: int
    ) -> None:
        """Await the next put (or the end, or the filler becoming free: at once when it
        was lent again since its count was ``lends``)."""
        waiter = (loop, fut, threading.get_ident())
        with self._lock:
            if self._items or self._finished:
                return
            if self.filler is not None and self.filler.lends != lends:
                return
            self._async_waiters.append(waiter)
        try:
            await fut
        finally:
            if fut.cancelled() or not fut.done():  # cancelled: forget the waiter
                with self._lock:
                    try:
                        self._async_waiters.remove(waiter)
                    except ValueError:
                        pass

    def drain(self) -> list[Any]:
        """Remove and return everything queued now, without waiting."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._forget_sizes(len(items))
            self._not_full.notify_all()
            if self._signal is not None:
                self._clear_signal()
            return items

    # -- selectable --------------------------------------------------------------------

    def fileno(self) -> int:
        """A descriptor that polls readable while messages are queued or the stream has
        ended (for ``select``/``epoll`` loops). Created on the first call; it costs one
        small write when the queue goes from empty to not empty, nothing otherwise."""
        with self._lock:
            if self._signal is None:
                r, w = socket.socketpair()
                r.setblocking(False)
                w.setblocking(False)
                self._signal = (r, w)
                weakref.finalize(self, _close_pair, r, w)
                if self._items or self._finished:
                    self._raise_signal()
            return self._signal[0].fileno()

    def _raise_signal(self) -> None:
        # Called with the lock held and the signal pair made.
        if not self._signalled:
            assert self._signal is not None
            try:
                self._signal[1].send(b"\0")
            except OSError:
                pass
            self._signalled = True

    def _clear_signal(self) -> None:
        # Called with the lock held once the queue is empty.
        if self._signalled and not self._finished:
            assert self._signal is not None
            try:
                self._signal[0].recv(64)
            except OSError:
                pass
            self._signalled = False

    def extend_front(self, items: Iterable[Any]) -> None:
        """Put ``items`` back at the head of the queue (a consumer that stopped early)."""
        with self._lock:
            back = list(items)
            self._items.extendleft(reversed(back))
            if back:
                self._runs.appendleft([len(back), self._taken_size])
            self.queued_bytes += self._taken_size * len(back)
            self._notify_consumers()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def finished(self) -> bool:
        """True once :meth:`finish` was called (items may still be queued)."""
        return self._finished


class _Serving:
    """The wait of :meth:`Inbox.serve_async` (a filler's waiter, on the loop's thread):
    the items of each batch the filler reads go to the handler at once and the wait goes
    on; None, or ``[]`` (the batch went to the queue), or an error from the handler ends
    it. (This runs for every message read on the loop: one Python frame per batch.)"""

    __slots__ = ("_handler", "_hidden", "_hide", "_inbox", "done", "ended")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        inbox: Inbox,
        handler: Callable[[Any], object],
        hide: Callable[[], bool] | None,
        hidden: tuple[type, ...],
    ) -> None:
        self._inbox = inbox
        self._handler = handler
        self._hide = hide
        self._hidden = hidden
        self.ended: asyncio.Future[None] = loop.create_future()
        #: True once the wait ended (the future's own method: no Python frame).
        self.done: Callable[[], bool] = self.ended.done

    def set_result(self, batch: list[Any] | None, /) -> None:
        if self.ended.done():
            return
        if not batch:
            self.ended.set_result(None)
            return
        handler, hide = self._handler, self._hide
        it = iter(batch)
        try:
            if hide is not None and hide():
                hidden = self._hidden
                for item in it:
                    if type(item) not in hidden:
                        handler(item)
            else:
                for item in it:
                    handler(item)
        except BaseException as exc:
            rest = list(it)  # what the handler did not take
            if rest:
                self._inbox.extend_front(rest)
            self.ended.set_exception(exc)
            if not isinstance(exc, Exception):
                raise


class _Resume(asyncio.Future[Any]):
    """An asyncio consumer's wait for the inbox (on a filler's reading, or for a put):
    completed with a result outside any task (by the filler's reader, or by a call the
    producer scheduled on the loop), it resumes the task that awaits it *at once*, inside
    ``set_result``, instead of scheduling that for the next loop turn as an asyncio
    future does. A message read on the loop thus reaches ``async for`` in the reader's
    own turn, and one the engine thread queued in the turn that learns of it: one loop
    turn, one ``epoll_wait`` and asyncio's pure-Python ``call_soon`` less.

    Completed inside a task, with an exception, or cancelled, it schedules the
    resumption as usual. The first done-callback is the awaiting task's; any other is
    an ordinary one. Limits: whoever calls ``set_result`` must hold no lock the resumed
    task may take (the filler completes its waiter once its lock is released); loop
    thread only, like any asyncio future."""

    #: The awaiting task's wake-up and its context, until run.
    _resume: tuple[Callable[..., object], Any] | None = None

    def add_done_callback(self, fn: Callable[..., object], *, context: Any = None) -> None:
        if self._resume is None and not self.done():
            self._resume = (fn, context)
        else:
            super().add_done_callback(fn, context=context)

    def remove_done_callback(self, fn: Callable[..., object]) -> int:
        removed = super().remove_done_callback(fn)
        if self._resume is not None and self._resume[0] == fn:
            self._resume = None
            removed += 1
        return removed

    def set_result(self, result: Any, /) -> None:
        super().set_result(result)
        self._wake(asyncio.current_task(self.get_loop()) is None)

    def set_exception(self, exception: type | BaseException, /) -> None:
        super().set_exception(exception)
        self._wake(False)

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg=msg):
            return False
        self._wake(False)
        return True

    def _wake(self, now: bool) -> None:
        if self._resume is None:
            return
        fn, context = self._resume
        self._resume = None
        if not now:
            self.get_loop().call_soon(fn, self, context=context)
        elif context is None:
            fn(self)
        else:
            context.run(fn, self)


def _close_pair(r: socket.socket, w: socket.socket) -> None:
    r.close()
    w.close()
