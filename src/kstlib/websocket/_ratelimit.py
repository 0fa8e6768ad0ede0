"""Outgoing message pacing: at most ``rate`` messages in any sliding one-second window.

Exchanges count every frame a client sends (Binance: 5 per second, pings and pongs
included) over a sliding window, so a token bucket that refills continuously could still
exceed the limit. :class:`SendRateLimiter` keeps the send times of the last ``n`` messages
(``n = max(1, floor(rate))``, window ``n / rate`` seconds plus a 10 % margin) and lets a
message through only when the oldest of them has left the window. The margin absorbs the
network jitter between our clock and the server's: without it, a frame released exactly
one window after the oldest one may land inside the server's window (seen against the
simulator about one run in four).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["WINDOW_MARGIN", "SendRateLimiter"]

#: The sliding window is this much longer than ``slots / rate``.
WINDOW_MARGIN = 1.1


class SendRateLimiter:
    """Sliding-window limiter shared by every thread that writes to one connection.

    Thread-safe. ``acquire`` waits (in the caller's thread) until a slot is free;
    ``record`` takes a slot without waiting, for frames that cannot be delayed (pongs).
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"max_send_rate must be > 0, got {rate}")
        self.slots = max(1, math.floor(rate))
        self.window = WINDOW_MARGIN * self.slots / rate
        self._times: deque[float] = deque(maxlen=self.slots)
        self._lock = threading.Lock()

    def _wait_needed(self, now: float) -> float:
        if len(self._times) < self.slots:
            return 0.0
        return max(0.0, self._times[0] + self.window - now)

    def acquire(
        self,
        cancelled: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], object] = time.sleep,
    ) -> bool:
        """Wait for a free slot and take it. Returns False (slot not taken) if ``cancelled()``
        becomes True while waiting; ``sleep`` is called with the time still to wait (it may
        return early, e.g. when woken by a close)."""
        while True:
            with self._lock:
                now = time.monotonic()
                wait = self._wait_needed(now)
                if wait <= 0:
                    self._times.append(now)
                    return True
            if cancelled():
                return False
            sleep(wait)

    def record(self) -> None:
        """Take a slot now, even if the window is full (the frame cannot wait)."""
        with self._lock:
            self._times.append(time.monotonic())
