"""Overlap tracking of a make-before-break handover. Pure: no I/O, no clock.

During a handover two connections stream the same feed. The old one is still delivered
(its message keys remembered in :class:`RecentKeys`); the new one is held back. The
tracker decides, batch by batch, where the two streams stand (:class:`Verdict`):

* ``CAUGHT_UP``: the new stream's first keyed message was delivered by the old stream,
  so the two overlap with nothing missing in between: switch, dropping the duplicates;
* ``HOLE``: the old stream delivered a later message of the new stream but not its first
  one: the old stream skipped data (e.g. a half-open peer that came back). The old batch
  that shows it is not delivered; the new stream's messages are, after a gap marker;
* ``PENDING``: neither yet.

Thread-safety: used by the engine thread only.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from kstlib.websocket.config import Settings

__all__ = ["MAX_KEYS", "Overlap", "RecentKeys", "Verdict", "handover_enabled"]

#: Keys remembered from the old stream during a handover (bounded memory).
MAX_KEYS = 200_000


def handover_enabled(s: Settings) -> bool:
    """Make-before-break rotation is on: ``handover`` true, or unset with a ``dedupe_key``."""
    return s.handover if s.handover is not None else s.dedupe_key is not None


class Verdict(enum.Enum):
    PENDING = "pending"
    CAUGHT_UP = "caught_up"
    HOLE = "hole"


class RecentKeys:
    """Insertion-ordered set of at most ``maxlen`` keys (the oldest are forgotten)."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._keys: dict[Any, None] = {}

    def add(self, key: Any) -> None:
        keys = self._keys
        keys[key] = None
        if len(keys) > self.maxlen:
            del keys[next(iter(keys))]

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class Overlap:
    """Where the old and the new stream of a handover stand; ``key`` never raises
    (a message whose key is None is never matched)."""

    def __init__(self, key: Callable[[Any], Any], max_keys: int = MAX_KEYS) -> None:
        self._key = key
        self.seen = RecentKeys(max_keys)
        self.held: list[Any] = []
        self._held_keys: set[Any] = set()
        self._first_key: Any = None
        self.verdict = Verdict.PENDING

    def old_batch(self, msgs: list[Any]) -> bool:
        """A batch of the old stream; True when it is to be delivered (not a hole)."""
        keys = [k for k in map(self._key, msgs) if k is not None]
        first = self._first_key
        if self.verdict is Verdict.PENDING:
            if first is not None and (first in self.seen or first in keys):
                self.verdict = Verdict.CAUGHT_UP
            elif any(k in self._held_keys for k in keys):
                self.verdict = Verdict.HOLE
                return False
        for k in keys:
            self.seen.add(k)
        return True

    def new_batch(self, msgs: list[Any]) -> None:
        """A batch of the new stream: held back until the switch."""
        fresh = []
        for m in msgs:
            self.held.append(m)
            k = self._key(m)
            if k is not None:
                self._held_keys.add(k)
                fresh.append(k)
        if self._first_key is None and fresh:
            self._first_key = fresh[0]
        if self.verdict is Verdict.PENDING and self._first_key is not None:
            if self._first_key in self.seen:
                self.verdict = Verdict.CAUGHT_UP
            elif any(k in self.seen for k in fresh):
                self.verdict = Verdict.HOLE

    @property
    def decided(self) -> bool:
        return self.verdict is not Verdict.PENDING

    def fresh_held(self) -> tuple[list[Any], int]:
        """The held messages the old stream did not deliver, and how many it did."""
        fresh = [m for m in self.held if (k := self._key(m)) is None or k not in self.seen]
        return fresh, len(self.held) - len(fresh)
