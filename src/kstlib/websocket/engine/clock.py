"""The engine's sense of time, injectable so that timers are tested without sleeping."""

from __future__ import annotations

import math
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "poll_ms"]


class Clock(Protocol):
    """Where the engine reads the time. ``monotonic()`` drives every deadline; ``time()``
    stamps the wall-clock time of gap markers."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The real clocks (:func:`time.monotonic`, :func:`time.time`). Thread-safe."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM_CLOCK: Clock = SystemClock()


def poll_ms(delay: float) -> int:
    """``poll``'s timeout for ``delay`` seconds: -1 for ever (``inf``), else whole
    milliseconds, at most an hour (``poll`` takes a C int; the caller polls again)."""
    if delay == math.inf:
        return -1
    return min(max(0, math.ceil(delay * 1000.0)), 3_600_000)
