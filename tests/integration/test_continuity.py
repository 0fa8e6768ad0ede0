"""Trading-grade continuity: make-before-break handover (no lost, no duplicated event
over many rotations), handover on a server's announced shutdown, a failed handover that
keeps the old connection, and in-band gap markers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import FAST, no_leaks, wait_for

from kstlib.websocket import (
    Connected,
    Disconnected,
    DisconnectReason,
    WebSocketManager,
    aio,
)
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(120)


def trade_id(msg: Any) -> Any:
    return msg.get("t") if isinstance(msg, dict) else None


def assert_contiguous(ids: list[int]) -> None:
    assert ids, "no events"
    assert ids == list(range(ids[0], ids[0] + len(ids))), "an id was lost or repeated"


@pytest.mark.slow
@pytest.mark.exchange_simulator(event_rate=400)
def test_hundred_rotations_lose_and_repeat_nothing(sim: ExchangeSimulator) -> None:
    with no_leaks():
        with WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            max_connection_age=0.05,
            dedupe_key=trade_id,
            **FAST,
        ) as ws:
            ids: list[int] = []
            for msg in ws.stream():
                ids.append(msg["t"])
                if ws.stats.handovers >= 100 and len(ids) > 50:
                    break
            stats = ws.stats
        assert_contiguous(ids)
        assert stats.handovers >= 100
        assert stats.gaps == 0 and stats.reactive_disconnects == 0
        assert stats.disconnects_by_reason[DisconnectReason.CONNECTION_LIMIT] >= 100
        assert stats.duplicates_dropped > 0  # the overlap really overlapped
        # every rotated connection was closed by us with a close frame
        closed = [c for c in sim.connections() if not c.is_open]
        assert closed and all(c.close_code == 1000 for c in closed)


def test_handover_on_announced_server_shutdown(sim: ExchangeSimulator) -> None:
    with no_leaks():
        with WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            dedupe_key=trade_id,
            should_handover=lambda m: isinstance(m, dict) and m.get("e") == "serverShutdown",
            **FAST,
        ) as ws:
            ids: list[int] = []
            announced = False
            for msg in ws.stream():
                if msg.get("e") == "serverShutdown":
                    continue
                ids.append(msg["t"])
                if len(ids) == 20 and not announced:
                    sim.announce_shutdown(close_after=2.0, only=0)
                    announced = True
                if ws.stats.handovers == 1 and len(ids) > 100:
                    break
        assert_contiguous(ids)
        assert ws.stats.gaps == 0


def test_scheduled_rotation_with_handover_has_no_gap(sim: ExchangeSimulator) -> None:
    with no_leaks():
        with WebSocketManager(sim.stream_url("btcusdt@trade"), dedupe_key=trade_id, **FAST) as ws:
            events: list[Any] = []
            for item in ws.stream(events=True):
                events.append(item)
                if len(events) == 10:
                    ws.schedule_reconnect(0)
                if ws.stats.handovers == 1 and len(events) > 60:
                    break
        assert not any(isinstance(e, (Connected, Disconnected)) for e in events)
        assert_contiguous([e["t"] for e in events])
        assert ws.stats.disconnects_by_reason == {
            DisconnectReason.SCHEDULED: 1,
            DisconnectReason.USER_REQUESTED: 1,
        }


def test_failed_handover_keeps_the_old_connection(sim: ExchangeSimulator) -> None:
    with no_leaks():
        with WebSocketManager(
            sim.stream_url("btcusdt@trade"), max_connection_age=0.2, dedupe_key=trade_id, **FAST
        ) as ws:
            sim.refuse_handshake(503)
            assert wait_for(lambda: ws.stats.handover_failures >= 1)
            before = ws.stats.messages_received
            assert wait_for(lambda: ws.stats.messages_received > before + 20)
            assert ws.is_connected and ws.stats.disconnects == 0
            sim.refuse_handshake(None)
            sim.close_all(1001, "going away")  # the old one's real end: normal reconnect
            assert wait_for(lambda: ws.stats.connects == 2 and ws.is_connected)
            assert ws.stats.last_disconnect_reason is DisconnectReason.SERVER_CLOSED


def test_gap_markers_in_band_and_in_order(sim: ExchangeSimulator) -> None:
    with no_leaks():
        with WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            items: list[Any] = []
            for item in ws.stream(events=True):
                items.append(item)
                if len(items) == 10:
                    ws.kill()
                if isinstance(item, Connected):
                    break
            stats = ws.stats
    kinds = [type(i).__name__ for i in items]
    assert kinds[:10] == ["dict"] * 10
    disc = [i for i in items if isinstance(i, Disconnected)]
    assert len(disc) == 1 and disc[0].reason is DisconnectReason.KILLED
    assert kinds.index("Disconnected") < kinds.index("Connected") == len(items) - 1
    assert isinstance(items[-1], Connected) and items[-1].reconnect
    assert stats.gaps == 1 and stats.gap_seconds > 0


def test_plain_stream_never_sees_markers(sim: ExchangeSimulator) -> None:
    with no_leaks():
        with WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            first = next(iter(ws.stream(events=True)))
            assert isinstance(first, dict)
            ws.kill()
            assert wait_for(lambda: ws.stats.connects == 2)
            seen = []
            for msg in ws.stream():
                seen.append(msg)
                if len(seen) == 30:
                    break
            assert all(isinstance(m, dict) for m in seen)


def test_async_gap_markers(sim: ExchangeSimulator) -> None:
    async def main() -> list[Any]:
        async with aio.WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            items: list[Any] = []
            async for item in ws.stream(events=True):
                items.append(item)
                if len(items) == 5:
                    sim.close_all(4000, "rotate")
                if isinstance(item, Connected):
                    break
            return items

    with no_leaks():
        items = asyncio.run(main())
    disc = [i for i in items if isinstance(i, Disconnected)]
    assert len(disc) == 1 and disc[0].reason is DisconnectReason.SERVER_CLOSED
    assert disc[0].code == 4000
