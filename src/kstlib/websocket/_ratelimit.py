"""Sliding-window pacing: at most ``slots`` events in any ``window + margin`` seconds.

Exchanges count what a client does over a sliding window (Binance: 5 frames per second
per connection, pings and pongs included; 300 connection attempts per 5 minutes), so a
token bucket that refills continuously could still exceed the limit. A
:class:`SlidingWindow` keeps the times of the last ``slots`` events and lets a new one
through only when the oldest of them is more than ``window + margin`` seconds old.

The margin absorbs the jitter between our clock and the server's, which counts events
when they *arrive*: without it, a frame released exactly one window after the oldest one
may land inside the server's window (seen against the simulator about one run in four).

Two users, one class:

* :class:`SendRateLimiter`: the engine's ``max_send_rate`` (``n = max(1, floor(rate))``
  slots over ``n / rate`` seconds, stretched by :data:`WINDOW_MARGIN`);
* :class:`kstlib.websocket.binance.ConnectionPacer`: Binance's connection-attempt limit
  and the preset's own request pace, ``max_attempts`` over ``window`` plus ``margin``.

Where the times are kept is a :class:`WindowStore`: :class:`LocalStore` (this process's
memory, the default) or a shared one (:class:`kstlib.websocket.sinks.budget.RedisBudget`:
a Redis sorted set, so that several processes count against one limit together). Set
:attr:`SlidingWindow.store` before the window is used.

Time is injectable (``clock``, ``sleep``) so the window is tested without sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "WINDOW_MARGIN",
    "LocalStore",
    "SendRateLimiter",
    "SlidingWindow",
    "WindowStore",
    "check_count",
    "check_seconds",
]

#: The send limiter's window is this much longer than ``slots / rate``.
WINDOW_MARGIN = 1.1

#: What :meth:`SlidingWindow.acquire` accepts to give up waiting: an event that is set,
#: or a callable that returns True.
Cancel = threading.Event | Callable[[], bool] | None


def check_count(name: str, value: object) -> int:
    """``value`` if it is an ``int >= 1`` (not a bool), else ``ValueError`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def check_seconds(name: str, value: object, *, zero: bool) -> float:
    """``value`` as a float if it is a finite number of seconds, ``> 0`` (``>= 0`` with
    ``zero=True``); else ``ValueError`` naming ``name``."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be a number of seconds {bound}, got {value!r}")
    return float(number)


class WindowStore(Protocol):
    """Where a :class:`SlidingWindow` keeps the times of its last events.

    Each call is atomic (two windows sharing a store never both take the last free
    slot). ``slots`` and ``span`` (``window + margin``, seconds) are the window's.
    """

    def take(self, slots: int, span: float) -> float:
        """Take a slot if one is free (0.0), else take nothing and return the seconds
        to wait before asking again (> 0)."""

    def wait(self, slots: int, span: float) -> float:
        """Seconds until a slot is free (0.0 when one is free now); takes nothing."""

    def force(self, slots: int, span: float, count: int) -> None:
        """Record ``count`` events now, full or not (only the last ``slots`` count)."""


class LocalStore:
    """The times in this process's memory: a deque of the last ``slots`` times, under a
    lock (never held while waiting). ``clock``: seconds, monotonic (default
    :func:`time.monotonic`, looked up at each call). Thread-safe; ``O(1)`` per call."""

    def __init__(self, slots: int, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._times: deque[float] = deque(maxlen=slots)
        self._lock = threading.Lock()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else time.monotonic()

    def _wait_needed(self, slots: int, span: float, now: float) -> float:
        # Called with the lock held.
        if len(self._times) < slots:
            return 0.0
        return max(0.0, self._times[-slots] + span - now)

    def take(self, slots: int, span: float) -> float:
        with self._lock:
            now = self._now()
            wait = self._wait_needed(slots, span, now)
            if wait <= 0.0:
                self._times.append(now)
            return wait

    def wait(self, slots: int, span: float) -> float:
        with self._lock:
            return self._wait_needed(slots, span, self._now())

    def force(self, slots: int, span: float, count: int) -> None:
        with self._lock:
            now = self._now()
            self._times.extend([now] * min(count, slots))


class SlidingWindow:
    """At most ``slots`` events in any sliding span of ``window + margin`` seconds.

    :meth:`acquire` waits, in the calling thread, for a free slot and takes it;
    :meth:`record` takes slots without waiting (for what cannot be delayed, e.g. a pong);
    :meth:`delay` tells how long the next :meth:`acquire` would wait. The times are kept
    in :attr:`store` (default a :class:`LocalStore`: only the last ``slots`` times,
    memory ``O(slots)``, each call ``O(1)``); another store (e.g. a Redis one shared by
    several processes) may be set before the window is used, and its errors pass
    through these methods.

    ``clock`` (seconds, monotonic; default :func:`time.monotonic`, looked up at each
    call; used by the local store) and ``sleep`` (default :func:`time.sleep`) are
    injectable.

    Thread-safe: any number of threads may share one window; no lock is held while
    waiting.

    Raises:
        ValueError: ``slots`` is not an integer >= 1, ``window`` not > 0 or ``margin``
            not >= 0 (finite numbers of seconds).
    """

    def __init__(
        self,
        slots: int,
        window: float,
        margin: float = 0.0,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.slots = check_count("slots", slots)
        #: Nominal length of the window (seconds); a slot frees ``window + margin``
        #: seconds after it was taken.
        self.window = check_seconds("window", window, zero=False)
        self.margin = check_seconds("margin", margin, zero=True)
        self._sleep = sleep
        #: Where the times are kept (see the class docstring).
        self.store: WindowStore = LocalStore(self.slots, clock)

    @property
    def span(self) -> float:
        """Seconds after which a slot is free again: ``window + margin``."""
        return self.window + self.margin

    def delay(self) -> float:
        """Seconds until a slot is free (0.0 when one is free now)."""
        return self.store.wait(self.slots, self.span)

    def acquire(
        self, cancelled: Cancel = None, sleep: Callable[[float], object] | None = None
    ) -> bool:
        """Wait for a free slot and take it; True once taken.

        ``cancelled`` (a :class:`threading.Event`, or a callable returning True) makes
        the wait give up: False is returned and no slot is taken. It is checked only
        when a wait is needed, so a free slot is taken even if it is already set.
        ``sleep`` is called with the seconds still to wait and may return early (it is
        asked again); by default the event's ``wait`` when ``cancelled`` is an event,
        else the window's ``sleep``.
        """
        if isinstance(cancelled, threading.Event):
            if sleep is None:
                sleep = cancelled.wait
            cancelled = cancelled.is_set
        if sleep is None:
            sleep = self._sleep if self._sleep is not None else time.sleep
        while True:
            wait = self.store.take(self.slots, self.span)
            if wait <= 0.0:
                return True
            if cancelled is not None and cancelled():
                return False
            sleep(wait)

    def record(self, count: int = 1) -> None:
        """Take ``count`` slots now, even if the window is full (events that happened
        without waiting). Only the last ``slots`` are kept."""
        if count >= 1:
            self.store.force(self.slots, self.span, count)


class SendRateLimiter(SlidingWindow):
    """The engine's ``max_send_rate``: at most ``rate`` frames per second over a sliding
    window, shared by every thread that writes to one connection.

    ``n = max(1, floor(rate))`` slots over ``WINDOW_MARGIN * n / rate`` seconds (so 0.5
    means one frame every 2.2 s). Thread-safe, as :class:`SlidingWindow`.

    Raises:
        ValueError: ``rate`` is not a finite number > 0.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"max_send_rate must be > 0, got {rate}")
        slots = max(1, math.floor(rate))
        super().__init__(slots, WINDOW_MARGIN * slots / rate, clock=clock, sleep=sleep)
