"""``on_batch``: the engine's batches (messages and gap markers, in order) reach the hook
before the queue; what it returns is what ``stream()`` yields."""

from __future__ import annotations

import threading
from typing import Any

from helpers import FAST, no_leaks, wait_for

from kstlib.websocket import Connected, Disconnected, WebSocketManager
from kstlib.websocket.testing import ExchangeSimulator


def test_on_batch_filters_what_the_stream_yields(sim: ExchangeSimulator) -> None:
    seen: list[Any] = []

    def keep_even(batch: list[Any]) -> list[Any]:
        seen.extend(batch)
        return [m for m in batch if isinstance(m, dict) and m.get("t", 1) % 2 == 0]

    with (
        no_leaks(),
        WebSocketManager(sim.stream_url("btcusdt@trade"), on_batch=keep_even, **FAST) as ws,
    ):
        got = []
        for msg in ws.stream():
            got.append(msg)
            if len(got) == 20:
                break
    assert all(m["t"] % 2 == 0 for m in got)
    trades = [m for m in seen if isinstance(m, dict) and "t" in m]
    assert [m for m in trades if m["t"] % 2 == 0][:20] == got  # same order, nothing else


def test_on_batch_sees_gap_markers_in_order(sim: ExchangeSimulator) -> None:
    seen: list[Any] = []
    lock = threading.Lock()

    def forward(batch: list[Any]) -> list[Any]:
        with lock:
            seen.extend(batch)
        return []  # everything is taken: nothing reaches stream()

    with (
        no_leaks(),
        WebSocketManager(sim.stream_url("btcusdt@trade"), on_batch=forward, **FAST) as ws,
    ):
        assert wait_for(lambda: len(seen) >= 5)
        ws.kill()
        assert wait_for(lambda: any(isinstance(m, Connected) and m.reconnect for m in seen))
        assert len(ws._inbox) == 0
    with lock:
        kinds = [type(m) for m in seen]
    first_gap = kinds.index(Disconnected)
    assert kinds[0] is Connected and Connected in kinds[first_gap:]
    assert all(k is dict for k in kinds[1:first_gap])


def test_a_raising_on_batch_loses_nothing(sim: ExchangeSimulator) -> None:
    def broken(batch: list[Any]) -> list[Any]:
        raise RuntimeError("bug in the hook")

    errors: list[BaseException] = []
    with (
        no_leaks(),
        WebSocketManager(
            sim.stream_url("btcusdt@trade"), on_batch=broken, on_error=errors.append, **FAST
        ) as ws,
    ):
        got = []
        for msg in ws.stream():
            got.append(msg)
            if len(got) == 10:
                break
        assert ws.stats.callback_errors >= 1
    assert [m["t"] for m in got] == sorted(m["t"] for m in got)
    assert isinstance(errors[0], RuntimeError)
