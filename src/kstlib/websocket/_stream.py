"""Reading an :class:`~kstlib.websocket.inbox.Inbox`: one sync and one asyncio drain.

Every front (the managers, the Binance clients) iterates its inbox with these two, so
the rules are written once:

* a whole batch is taken at a time (one lock per batch, none per message);
* ``hide_markers()``, asked once per batch, True hides the gap markers (the types in
  ``markers``) of that batch from this iterator, for a stream that did not ask for
  events (a marker put back with the unread rest stays for another iterator);
* leaving the loop early puts the unread rest of the batch back at the head of the
  queue, in order, for the next iterator;
* the iterator ends once the inbox is finished and drained, raising the error that
  finished it, if any.

Thread-safety: any number of iterators may run on one inbox, in any threads; each item
reaches exactly one of them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

from kstlib.websocket.inbox import Inbox, InboxFinished
from kstlib.websocket.models import GAP_MARKERS

__all__ = ["consume_async", "drain", "drain_async"]

HideMarkers = Callable[[], bool] | None
Markers = tuple[type, ...]


def drain(
    inbox: Inbox, hide_markers: HideMarkers = None, markers: Markers = GAP_MARKERS
) -> Generator[Any, None, None]:
    """Blocking iterator over ``inbox`` (see the module docstring)."""
    while True:
        try:
            batch = inbox.get_batch()
        except InboxFinished as end:
            if end.error is not None:
                raise end.error from None
            return
        hide = markers if hide_markers is not None and hide_markers() else ()
        it = iter(batch)
        try:
            if hide:
                for item in it:
                    if type(item) not in hide:
                        yield item
            else:  # the hot path: one generator, the list iterator hands the items out in C
                yield from it
        finally:
            rest = list(it)  # what the consumer did not take
            if rest:
                inbox.extend_front(rest)


async def drain_async(
    inbox: Inbox,
    hide_markers: HideMarkers = None,
    start: Callable[[], Awaitable[None]] | None = None,
    markers: Markers = GAP_MARKERS,
) -> AsyncGenerator[Any, None]:
    """Asynchronous iterator over ``inbox``; waiting never blocks the event loop.
    ``start``, if given, is awaited before the first batch (e.g. connect first)."""
    if start is not None:
        await start()
    while True:
        try:
            batch = await inbox.get_batch_async()
        except InboxFinished as end:
            if end.error is not None:
                raise end.error from None
            return
        hide = markers if hide_markers is not None and hide_markers() else ()
        # The hot path of the asyncio front: one async-generator step per message.
        it = iter(batch)
        try:
            for item in it:
                if not hide or type(item) not in hide:
                    yield item
        finally:
            rest = list(it)  # what the consumer did not take
            if rest:
                inbox.extend_front(rest)


async def consume_async(
    inbox: Inbox,
    handler: Callable[[Any], object],
    hide_markers: HideMarkers = None,
    start: Callable[[], Awaitable[None]] | None = None,
    markers: Markers = GAP_MARKERS,
) -> None:
    """Call ``handler(item)`` for every item of ``inbox``, in order, on the event loop,
    until the inbox is finished (same end and error rules as :func:`drain_async`). A
    message read on the loop reaches ``handler`` in the reader's own turn
    (:meth:`Inbox.serve_async`). When ``handler`` raises, the rest of its batch goes
    back to the head of the queue and the error is raised here."""
    if start is not None:
        await start()
    try:
        await inbox.serve_async(handler, hide_markers, markers)
    except InboxFinished as end:
        if end.error is not None:
            raise end.error from None
