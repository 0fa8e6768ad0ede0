"""The relay's bounded buffer between the engine thread and the publisher thread.

Entries are whole batches: the raw messages of one socket read with their receive time,
or one gap marker. The bound counts messages *and* payload bytes, and it includes what
the publisher has taken but not yet published (a chunk being retried while the bus is
away still holds its memory): :meth:`Buffer.release` frees it once published.

When a batch does not fit:

* ``block``: :meth:`Buffer.put` waits for room (the engine stops reading its socket,
  back-pressure reaches the exchange, nothing is lost); :meth:`Buffer.interrupt` ends
  every wait, and from then on batches are queued past the bound (the relay is closing
  and wants the last reads published);
* ``drop_oldest``: the oldest queued data batches are dropped (markers never are); if
  that is not enough, the new batch is dropped. The dropped messages are counted and
  :meth:`Buffer.take` reports them once, so the publisher puts a
  :class:`~kstlib.websocket.sinks.records.RelayGap` before the next item it publishes.

An empty buffer always takes one batch, whatever its size. Markers are queued past the
bound and never dropped.

Thread-safety: any thread may put; one publisher thread takes and releases. One
condition variable; no lock is held while the caller publishes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["OVERFLOW_POLICIES", "Buffer", "Entry", "Taken"]

OVERFLOW_POLICIES = ("block", "drop_oldest")

#: ``(received_at, items, nbytes, is_marker)``.
Entry = tuple[float, list[Any], int, bool]


@dataclass
class Taken:
    """What :meth:`Buffer.take` hands the publisher: ``entries`` in order, and the messages
    dropped since the previous take (``dropped``, noticed at ``dropped_at``)."""

    entries: list[Entry]
    count: int
    nbytes: int
    dropped: int = 0
    dropped_at: float = 0.0


class Buffer:
    """See the module docstring. ``max_messages`` and ``max_bytes`` are >= 1."""

    def __init__(self, max_messages: int, max_bytes: int, overflow: str = "block") -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow: expected one of {OVERFLOW_POLICIES}, got {overflow!r}")
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("max_messages and max_bytes must be >= 1")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.overflow = overflow
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Entry] = deque()
        self._count = 0  # queued + taken, not yet released
        self._bytes = 0
        self._dropped = 0  # not yet reported by take()
        self._dropped_at = 0.0
        self._interrupted = False
        self.total_dropped = 0

    # ------------------------------------------------------------------ producers

    def put(self, items: list[Any], received_at: float, nbytes: int) -> float:
        """Queue one data batch; returns the seconds spent waiting for room."""
        n = len(items)
        with self._cond:
            if self._fits(n, nbytes):
                self._append((received_at, items, nbytes, False), n, nbytes)
                return 0.0
            if self.overflow == "drop_oldest":
                self._drop_for(items, received_at, n, nbytes)
                return 0.0
            started = time.monotonic()
            while not self._fits(n, nbytes) and not self._interrupted:
                self._cond.wait()
            self._append((received_at, items, nbytes, False), n, nbytes)
            return time.monotonic() - started

    def put_marker(self, marker: Any, at: float) -> None:
        """Queue a marker past the bound (never dropped)."""
        with self._cond:
            self._queue.append((at, [marker], 0, True))
            self._cond.notify_all()

    def _fits(self, n: int, nbytes: int) -> bool:
        if self._count == 0:
            return True
        return self._count + n <= self.max_messages and self._bytes + nbytes <= self.max_bytes

    def _append(self, entry: Entry, n: int, nbytes: int) -> None:
        self._queue.append(entry)
        self._count += n
        self._bytes += nbytes
        self._cond.notify_all()

    def _drop_for(self, items: list[Any], received_at: float, n: int, nbytes: int) -> None:
        kept: list[Entry] = []
        while self._queue and not self._fits(n, nbytes):
            entry = self._queue.popleft()
            if entry[3]:
                kept.append(entry)
                continue
            self._count -= len(entry[1])
            self._bytes -= entry[2]
            self._note_drop(len(entry[1]))
        self._queue.extendleft(reversed(kept))
        if self._fits(n, nbytes):
            self._append((received_at, items, nbytes, False), n, nbytes)
        else:
            self._note_drop(n)

    def _note_drop(self, n: int) -> None:
        if self._dropped == 0:
            self._dropped_at = time.time()
        self._dropped += n
        self.total_dropped += n

    # ------------------------------------------------------------------ the publisher

    def take(self, max_count: int, max_bytes: int, timeout: float) -> Taken | None:
        """Whole entries from the head, at least one, until ``max_count`` messages or
        ``max_bytes`` would be passed; None when nothing came within ``timeout`` s."""
        with self._cond:
            if not self._queue and not self._dropped:
                self._cond.wait(timeout)
                if not self._queue and not self._dropped:
                    return None
            taken = Taken([], 0, 0, self._dropped, self._dropped_at)
            self._dropped = 0
            while self._queue:
                entry = self._queue[0]
                n = len(entry[1]) if not entry[3] else 0
                if taken.entries and (
                    taken.count + n > max_count or taken.nbytes + entry[2] > max_bytes
                ):
                    break
                self._queue.popleft()
                taken.entries.append(entry)
                taken.count += n
                taken.nbytes += entry[2]
            return taken

    def release(self, count: int, nbytes: int) -> None:
        """Free the room of ``count`` messages / ``nbytes`` taken earlier."""
        with self._cond:
            self._count -= count
            self._bytes -= nbytes
            self._cond.notify_all()

    def interrupt(self) -> None:
        """End every wait for room; later puts do not wait (closing)."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ observation

    @property
    def held(self) -> tuple[int, int]:
        """``(messages, bytes)`` queued or being published."""
        with self._cond:
            return self._count, self._bytes

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)
