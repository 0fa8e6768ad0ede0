"""What every bus reader does, whatever the bus: sync and asyncio iteration over batches.

A bus reader (:class:`~kstlib.websocket.sinks.RedisReader`,
:class:`~kstlib.websocket.sinks.NatsReader` and their asyncio twins) is this core plus
one bus module that knows how to fetch a batch and how to acknowledge. The core owns:

* the loop: fetch a :class:`ReadBatch` (one round trip, which also carries the
  acknowledgement owed), hand its items out one by one, fetch the next, until
  :meth:`ReaderCore.close` or ``idle_timeout`` seconds without an item; a bus module
  may send its next request before it returns a batch (the Redis reader reads ahead),
  as long as it acknowledges only what ``handed_out`` reported;
* the hand-out bookkeeping: when the consumer stops mid-batch (``break``, an exception,
  the generator closed), only the items it received are reported to the bus module
  (``handed_out(batch, n)``), so the rest is read again, never skipped;
* the end: the bus module's ``_finish`` (acknowledge what was handed out, disconnect)
  runs when the iteration ends, however it ends, and at ``with`` / ``async with`` exit;
* the reconnect pace: :meth:`ReaderCore._next_delay` doubles from ``reconnect_delay``
  up to ``reconnect_delay_max``; :meth:`ReaderCore._reset_delay` after a round trip
  that went through.

A bus module subclasses :class:`SyncReader` or :class:`AsyncReader` and provides
``_round_trip()`` (a batch, or None when the bus was away: it waited its delay already),
``handed_out(batch, n)`` and ``_finish()`` (a coroutine on the asyncio front).

Thread-safety: one thread (or task) iterates a reader; :meth:`ReaderCore.close` may be
called from any thread (it sets an event the loop looks at between round trips).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from operator import length_hint
from types import TracebackType
from typing import Any, TypedDict, TypeVar

from .records import payload_decoder

__all__ = ["AsyncReader", "ReadBatch", "ReaderCore", "ReaderOptions", "SyncReader"]

_Sync = TypeVar("_Sync", bound="SyncReader")
_Async = TypeVar("_Async", bound="AsyncReader")


@dataclass
class ReadBatch:
    """Items of one read, in stream order, with what acknowledges each (``ids``: Redis
    entry ids, NATS messages) and the receive times (``time.time()`` at the relay's
    socket read, as bytes; None for markers)."""

    items: list[Any] = field(default_factory=list)
    ids: list[Any] = field(default_factory=list)
    times: list[bytes | None] = field(default_factory=list)


class ReaderOptions(TypedDict, total=False):
    """The options every reader takes (keywords; defaults in :class:`ReaderCore`)."""

    decode: Any
    events: bool
    count: int
    block: float
    idle_timeout: float | None
    reconnect_delay: float
    reconnect_delay_max: float
    timeout: float


class ReaderCore(ABC):
    """Options and state both fronts share: closing, idling, the reconnect delay.

    ``decode`` (like the manager's: ``"json"``, ``"bytes"``, ``None`` or a callable;
    ValueError otherwise), ``events`` (False: markers hidden), ``count`` (items per round
    trip at most), ``block`` (seconds a read waits for something new), ``idle_timeout``,
    ``reconnect_delay`` / ``reconnect_delay_max``, ``timeout`` (seconds for one call to
    the bus).
    """

    def __init__(
        self,
        *,
        decode: Any = "json",
        events: bool = True,
        count: int = 1000,
        block: float = 0.5,
        idle_timeout: float | None = None,
        reconnect_delay: float = 0.1,
        reconnect_delay_max: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        self.decode = payload_decoder(decode)
        self.events, self.count, self.block = events, count, block
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self._closed = threading.Event()
        self._delay = reconnect_delay

    def close(self) -> None:
        """End the iteration (within one round trip: ``block`` seconds); what was handed
        out is acknowledged by the iterating side as it ends. Any thread."""
        self._closed.set()

    @abstractmethod
    def handed_out(self, batch: ReadBatch, n: int) -> None:
        """The first ``n`` items of ``batch`` reached the consumer (the bus module
        acknowledges them); the rest were not handed out."""

    def _idle(self, since: float) -> bool:
        """Nothing came for ``idle_timeout`` seconds since ``since``."""
        return self.idle_timeout is not None and time.monotonic() - since >= self.idle_timeout

    def _next_delay(self) -> float:
        """The delay before the next reconnect (doubled each time, capped)."""
        delay, self._delay = self._delay, min(self._delay * 2, self.reconnect_delay_max)
        return delay

    def _reset_delay(self) -> None:
        """A round trip went through: the next outage starts at ``reconnect_delay``."""
        self._delay = self.reconnect_delay


class SyncReader(ReaderCore):
    """The sync front: ``for item in reader``, :meth:`records`, ``with reader``."""

    @abstractmethod
    def _round_trip(self) -> ReadBatch | None:
        """One round trip: the owed acknowledgement, then a batch (None: the bus was
        away, and the reconnect delay was waited)."""

    @abstractmethod
    def _finish(self) -> None:
        """Acknowledge what was handed out if the bus is there, then disconnect."""

    def __iter__(self) -> Iterator[Any]:
        # ``yield from`` a list iterator: no Python-level step per item; the iterator
        # gives an item only when the consumer asks for it, so what it has given is
        # what was handed out, however the iteration ends
        for batch in self._batches():
            it = iter(batch.items)
            try:
                yield from it
            finally:
                self.handed_out(batch, len(batch.items) - length_hint(it))

    def records(self) -> Iterator[tuple[Any, float | None]]:
        """Like iterating, with each item's receive time at the relay (None: marker)."""
        for batch in self._batches():
            times = [None if t is None else float(t) for t in batch.times]
            it = iter(list(zip(batch.items, times, strict=True)))
            try:
                yield from it
            finally:
                self.handed_out(batch, len(times) - length_hint(it))

    def _batches(self) -> Iterator[ReadBatch]:
        """The non-empty batches until closed or idle; the caller reports what it handed
        out of each (:meth:`handed_out`) before asking for the next."""
        idle_since = time.monotonic()
        try:
            while not self._closed.is_set():
                batch = self._round_trip()
                if batch is not None and batch.items:
                    idle_since = time.monotonic()
                    yield batch
                elif self._idle(idle_since):
                    return
        finally:
            self._finish()

    def __enter__(self: _Sync) -> _Sync:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._finish()


class AsyncReader(ReaderCore):
    """The asyncio front: ``async for item in reader``, ``async with reader``."""

    @abstractmethod
    async def _round_trip(self) -> ReadBatch | None:
        """As :meth:`SyncReader._round_trip`, without blocking the loop."""

    @abstractmethod
    async def _finish(self) -> None:
        """As :meth:`SyncReader._finish`, without blocking the loop."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        idle_since = time.monotonic()
        try:
            while not self._closed.is_set():
                batch = await self._round_trip()
                if batch is not None and batch.items:
                    idle_since = time.monotonic()
                    n = 0
                    try:
                        for item in batch.items:
                            n += 1
                            yield item
                    finally:
                        self.handed_out(batch, n)
                elif self._idle(idle_since):
                    return
        finally:
            await self._finish()

    async def __aenter__(self: _Async) -> _Async:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self._finish()
