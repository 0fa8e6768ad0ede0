"""Outgoing pacing (sliding window) and the reconnect delay schedule."""

from __future__ import annotations

import random
import threading

import pytest

from kstlib.websocket._ratelimit import (
    WINDOW_MARGIN,
    LocalStore,
    SendRateLimiter,
    SlidingWindow,
)
from kstlib.websocket.binance import ConnectionPacer
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


def test_sliding_window_with_an_injected_clock() -> None:
    clock = FakeClock()
    window = SlidingWindow(3, 10.0, margin=0.5, clock=clock.monotonic, sleep=clock.sleep)
    assert window.delay() == 0.0
    for _ in range(3):
        assert window.acquire()
    assert clock.now == 1000.0  # three slots: no wait
    assert window.delay() == pytest.approx(10.5)
    clock.now += 4.0
    assert window.delay() == pytest.approx(6.5)
    assert window.acquire()  # sleeps (fake) until the oldest is window + margin old
    assert clock.now == pytest.approx(1010.5)
    # any window + margin span holds at most 3 acquisitions
    times = [clock.now]
    for _ in range(10):
        window.acquire()
        times.append(clock.now)
    for t in times:
        assert len([u for u in times if t <= u < t + 10.5]) <= 3


def test_sliding_window_record_and_cancel() -> None:
    clock = FakeClock()
    window = SlidingWindow(2, 1.0, clock=clock.monotonic, sleep=clock.sleep)
    window.record(5)  # capped at the slots; never waits
    assert window.delay() == pytest.approx(1.0)
    window.record(0)
    assert window.delay() == pytest.approx(1.0)
    stop = threading.Event()
    stop.set()
    assert window.acquire(stop) is False  # a set event: gives up without waiting
    assert clock.now == 1000.0
    asked: list[float] = []

    def sleep_then_cancel(seconds: float) -> None:
        asked.append(seconds)
        clock.now += seconds / 2  # woken early, then cancelled
        stop.set()

    stop.clear()
    assert window.acquire(stop.is_set, sleep_then_cancel) is False
    assert asked == [pytest.approx(1.0)]
    clock.now += 1.0
    assert window.acquire(stop)  # a free slot is taken even with the event set
    for bad in [(0, 1.0, 0.0), (1, 0.0, 0.0), (1, 1.0, -0.1), (1, float("inf"), 0.0)]:
        with pytest.raises(ValueError):
            SlidingWindow(*bad)


class ScriptedStore:
    """A store that answers ``take`` from a script of waits and records every call."""

    def __init__(self, waits: list[float]) -> None:
        self.waits = waits
        self.calls: list[tuple[str, int, float, int]] = []

    def take(self, slots: int, span: float) -> float:
        self.calls.append(("take", slots, span, 0))
        return self.waits.pop(0)

    def wait(self, slots: int, span: float) -> float:
        self.calls.append(("wait", slots, span, 0))
        return 7.0

    def force(self, slots: int, span: float, count: int) -> None:
        self.calls.append(("force", slots, span, count))


def test_a_window_keeps_its_times_in_its_store() -> None:
    window = SlidingWindow(3, 10.0, margin=0.5)
    assert isinstance(window.store, LocalStore)
    store = ScriptedStore([2.0, 0.5, 0.0])
    window.store = store
    slept: list[float] = []
    assert window.acquire(sleep=slept.append)  # waits what the store says, asks again
    assert slept == [2.0, 0.5]
    assert window.delay() == 7.0
    window.record(2)
    window.record(0)  # nothing
    assert store.calls == [("take", 3, 10.5, 0)] * 3 + [("wait", 3, 10.5, 0), ("force", 3, 10.5, 2)]


def test_send_limiter_and_connection_pacer_are_the_same_window() -> None:
    clock = FakeClock()
    limiter = SendRateLimiter(5, clock=clock.monotonic, sleep=clock.sleep)
    pacer = ConnectionPacer(5, 1.0, margin=0.1, clock=clock.monotonic, sleep=clock.sleep)
    assert isinstance(limiter, SlidingWindow) and isinstance(pacer, SlidingWindow)
    assert pacer.max_attempts == pacer.slots == limiter.slots == 5
    assert limiter.window + limiter.margin == pytest.approx(pacer.window + pacer.margin)
    for w in (limiter, pacer):
        start = clock.now
        for _ in range(6):
            assert w.acquire()
        assert clock.now == pytest.approx(start + 1.1)
    with pytest.raises(ValueError, match="max_attempts"):
        ConnectionPacer(0)
    with pytest.raises(ValueError, match="window"):
        ConnectionPacer(3, -1.0)
    with pytest.raises(ValueError, match="margin"):
        ConnectionPacer(3, 1.0, margin=-1.0)
    with pytest.raises(ValueError, match="max_send_rate"):
        SendRateLimiter(float("nan"))


def test_backoff_schedule() -> None:
    rng = random.Random(7)
    assert backoff_delay(ReconnectStrategy.IMMEDIATE, 3, 1.0, 60.0, rng) == 0.0
    assert backoff_delay(ReconnectStrategy.FIXED_DELAY, 9, 1.5, 60.0, rng) == 1.5
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (500, 60.0)]:
        d = backoff_delay(ReconnectStrategy.EXPONENTIAL_BACKOFF, attempt, 1.0, 60.0, rng)
        assert full / 2 <= d <= full  # jitter within [d/2, d], capped
