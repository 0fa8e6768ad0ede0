"""The engine's sense of time, injectable so that timers are tested without sleeping."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


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
