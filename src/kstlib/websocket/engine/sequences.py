"""Sequence-gap detection on a live connection (option ``sequence``). Pure: no I/O.

The ``sequence`` callable tells, for each message, the stream it belongs to and its
sequence numbers: ``(stream, seq)`` for a counter that goes up by one
(``prev = seq - 1``), or ``(stream, prev, last)`` for a message that follows ``prev``
and ends at ``last`` (Binance depth ``U - 1``/``u``, OKX ``prevSeqId``/``seqId``). A
message whose ``prev`` differs from the last number seen on its stream, and is not an
older one (a replay), is preceded by a :class:`~kstlib.websocket.models.Gap` marker.

Thread-safety: the engine thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from kstlib.websocket.models import Gap

__all__ = ["SequenceTracker"]


class SequenceTracker:
    """The last sequence number of each stream on the current connection."""

    def __init__(
        self,
        extract: Callable[[Any], Any],
        now: Callable[[], float],
        unreadable: Callable[[], None] = lambda: None,
    ) -> None:
        self._extract = extract
        self._now = now
        self._last: dict[Hashable, int] = {}
        #: Called for a message whose numbers could not be read (the callable raised or
        #: returned something else); the message is delivered, never checked.
        self._unreadable = unreadable

    def reset(self) -> None:
        """A new connection: its numbers are not compared with the old one's."""
        self._last.clear()

    def check(self, msgs: list[Any]) -> tuple[list[Any], list[Gap]]:
        """``msgs`` with a ``Gap`` before each message that follows a hole, and the gaps."""
        gaps: list[Gap] = []
        out: list[Any] | None = None
        for i, msg in enumerate(msgs):
            gap = self._one(msg)
            if gap is not None:
                if out is None:
                    out = list(msgs[:i])
                out.append(gap)
                gaps.append(gap)
            if out is not None:
                out.append(msg)
        return (msgs if out is None else out), gaps

    def _one(self, msg: Any) -> Gap | None:
        numbers = self._numbers(msg)
        if numbers is None:
            return None
        stream, prev, last = numbers
        seen = self._last.get(stream)
        if seen is not None and last <= seen:
            return None  # a replay of what came already
        self._last[stream] = last
        if seen is None or prev == seen:
            return None
        return Gap(stream, seen + 1, prev + 1, self._now())

    def _numbers(self, msg: Any) -> tuple[Hashable, int, int] | None:
        try:
            got = self._extract(msg)
        except Exception:
            self._unreadable()
            return None
        if got is None:
            return None
        try:
            if len(got) == 2:
                stream, seq = got
                return stream, int(seq) - 1, int(seq)
            stream, prev, last = got
            return stream, int(prev), int(last)
        except (TypeError, ValueError):
            self._unreadable()
            return None
