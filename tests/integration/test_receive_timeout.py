"""``receive_timeout``: a feed that goes quiet while the connection still answers pings is
noticed (``DATA_TIMEOUT``) and replaced, by a reconnect or a make-before-break rotation."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import FAST, no_leaks, wait_for

from kstlib.websocket import Connected, Disconnected, DisconnectReason, WebSocketManager
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(60)


@pytest.mark.exchange_simulator(event_rate=0, ping_interval=0.05)
def test_a_silent_feed_that_still_answers_is_replaced(sim: ExchangeSimulator) -> None:
    """No event ever comes, though the server pings and answers pings: the engine does
    not wait forever for data."""
    with (
        no_leaks(),
        WebSocketManager(
            sim.stream_url("btcusdt@trade"), receive_timeout=0.3, ping_interval=0.05, **FAST
        ) as ws,
    ):
        items: list[Any] = []
        for item in ws.stream(events=True):
            items.append(item)
            if isinstance(item, Connected) and item.reconnect:
                break
        assert ws.stats.disconnects_by_reason[DisconnectReason.DATA_TIMEOUT] >= 1
        assert ws.stats.disconnects_by_reason.get(DisconnectReason.PING_TIMEOUT, 0) == 0
    gaps = [i for i in items if isinstance(i, Disconnected)]
    assert gaps and gaps[0].reason is DisconnectReason.DATA_TIMEOUT
    assert DisconnectReason.DATA_TIMEOUT.is_reactive


@pytest.mark.exchange_simulator(event_rate=200)
def test_a_flowing_feed_is_never_cut(sim: ExchangeSimulator) -> None:
    with (
        no_leaks(),
        WebSocketManager(sim.stream_url("btcusdt@trade"), receive_timeout=0.5, **FAST) as ws,
    ):
        for seen, _ in enumerate(ws.stream(), 1):
            if seen == 400:  # about two seconds of data, four receive_timeouts
                break
        assert ws.stats.disconnects == 0


@pytest.mark.exchange_simulator(event_rate=200)
def test_with_handover_a_silent_feed_is_rotated_make_before_break(
    sim: ExchangeSimulator,
) -> None:
    with (
        no_leaks(),
        WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            receive_timeout=0.5,
            dedupe_key=lambda m: m.get("t"),
            connect_timeout=2.0,
            **FAST,
        ) as ws,
    ):
        assert wait_for(lambda: ws.stats.messages_received > 20)
        sim.go_silent(True, only=0)  # the first connection goes quiet (pongs too)
        assert wait_for(lambda: ws.stats.handovers >= 1)
        assert ws.stats.last_disconnect_reason is DisconnectReason.DATA_TIMEOUT
        sim.go_silent(False)
