"""Reading an :class:`~kstlib.websocket.inbox.Inbox`: one sync and one asyncio drain.

Every front (the managers, the Binance clients) iterates its inbox with these two, so
the rules are written once:

* a whole batch is taken at a time (one lock per batch, none per message);
* ``hide_markers()``, asked once per batch, True drops the gap markers from it (for a
  stream that did not ask for events while another one did);
* leaving the loop early puts the unread rest of the batch back at the head of the
  queue, in order, for the next iterator;
* the iterator ends once the inbox is finished and drained, raising the error that
  finished it, if any.

Thread-safety: any number of iterators may run on one inbox, in any threads; each item
reaches exactly one of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

from kstlib.websocket.inbox import Inbox, InboxFinished
from kstlib.websocket.models import GAP_MARKERS

__all__ = ["drain", "drain_async"]

HideMarkers = Callable[[], bool] | None


def drain(inbox: Inbox, hide_markers: HideMarkers = None) -> Iterator[Any]:
    """Blocking iterator over ``inbox`` (see the module docstring)."""
    while True:
        try:
            batch = inbox.get_batch()
        except InboxFinished as end:
            if end.error is not None:
                raise end.error from None
            return
        yield from _yield_batch(inbox, batch, hide_markers)


def _yield_batch(
    inbox: Inbox, batch: list[Any], hide_markers: HideMarkers
) -> Generator[Any, None, None]:
    if hide_markers is not None and hide_markers():
        batch = [m for m in batch if type(m) not in GAP_MARKERS]
    i = 0
    try:
        for item in batch:
            i += 1
            yield item
    finally:
        if i < len(batch):
            inbox.extend_front(batch[i:])


async def drain_async(inbox: Inbox, hide_markers: HideMarkers = None) -> AsyncIterator[Any]:
    """Asynchronous iterator over ``inbox``; waiting never blocks the event loop."""
    while True:
        try:
            batch = await inbox.get_batch_async()
        except InboxFinished as end:
            if end.error is not None:
                raise end.error from None
            return
        items = _yield_batch(inbox, batch, hide_markers)
        try:
            for item in items:
                yield item
        finally:
            items.close()  # puts the unread rest back
