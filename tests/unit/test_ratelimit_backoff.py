"""Outgoing pacing (sliding window) and the reconnect delay schedule."""

from __future__ import annotations

import random
import threading

import pytest

from kstlib.websocket._ratelimit import WINDOW_MARGIN, SendRateLimiter
from kstlib.websocket.engine import backoff_delay
from kstlib.websocket.models import ReconnectStrategy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_window_never_holds_more_than_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr("kstlib.websocket._ratelimit.time.monotonic", clock.monotonic)
    limiter = SendRateLimiter(5)
    sent = []
    for _ in range(40):
        assert limiter.acquire(sleep=clock.sleep)
        sent.append(clock.now)
    window = WINDOW_MARGIN * 1.0
    for i in range(len(sent)):
        in_window = [t for t in sent if sent[i] <= t < sent[i] + window]
        assert len(in_window) <= 5
    assert sent[4] == sent[0]  # a burst of 5 goes out at once
    assert sent[5] == pytest.approx(sent[0] + window)


def test_fractional_rate_and_record(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr("kstlib.websocket._ratelimit.time.monotonic", clock.monotonic)
    limiter = SendRateLimiter(0.5)  # one message every 2 s
    assert limiter.slots == 1 and limiter.window == pytest.approx(2.0 * WINDOW_MARGIN)
    assert limiter.acquire(sleep=clock.sleep)
    limiter.record()  # a pong goes out regardless, and counts
    start = clock.now
    assert limiter.acquire(sleep=clock.sleep)
    assert clock.now == pytest.approx(start + limiter.window)


def test_acquire_can_be_cancelled() -> None:
    limiter = SendRateLimiter(1)
    assert limiter.acquire()
    stop = threading.Event()
    stop.set()
    assert limiter.acquire(cancelled=stop.is_set) is False


def test_rejects_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        SendRateLimiter(0)


def test_backoff_schedule() -> None:
    rng = random.Random(7)
    assert backoff_delay(ReconnectStrategy.IMMEDIATE, 3, 1.0, 60.0, rng) == 0.0
    assert backoff_delay(ReconnectStrategy.FIXED_DELAY, 9, 1.5, 60.0, rng) == 1.5
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (500, 60.0)]:
        d = backoff_delay(ReconnectStrategy.EXPONENTIAL_BACKOFF, attempt, 1.0, 60.0, rng)
        assert full / 2 <= d <= full  # jitter within [d/2, d], capped
