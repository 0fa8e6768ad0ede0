"""Bus faults during a relay, on real servers: the bus killed (SIGKILL) and restarted, a
buffer too small for the outage, a payload the bus cannot take. The relay keeps reading
the exchange, and every hole it creates is marked in what readers get."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from busservers import BusServer, Recorder, bus_url, segments, text_frame, trade_ids
from helpers import FAST, wait_for

from kstlib.websocket import Connected, WebSocketManager
from kstlib.websocket.sinks import Relay, RelayGap, open_reader, open_sink
from kstlib.websocket.testing import ExchangeSimulator

TRADES = "btcusdt@trade"
QUICK_BUS = {"reconnect_delay": 0.05, "reconnect_delay_max": 0.2}


def start_relay(
    sim: ExchangeSimulator, url: str, **relay_options: Any
) -> tuple[Relay, Recorder, WebSocketManager]:
    relay = Relay(open_sink(url, timeout=2.0), **{**QUICK_BUS, **relay_options}).start()
    recorder = Recorder(relay.on_batch)
    ws = WebSocketManager(
        sim.stream_url(TRADES), **{**relay.manager_options(), "on_batch": recorder, **FAST}
    )
    ws.connect()
    return relay, recorder, ws


class Collector(threading.Thread):
    """A reader iterating in the background for the whole test: it lives through the bus
    restart, so it has no ``idle_timeout`` (an outage on a loaded machine lasts seconds,
    and a reader that is idle that long ends its iteration); leaving the ``with`` block
    closes it. :meth:`finish` waits for ``n`` items and returns what it got."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.reader = open_reader(url, reconnect_delay_max=0.2, timeout=2.0)
        self.got: list[Any] = []

    def run(self) -> None:
        for item in self.reader:
            self.got.append(item)

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.reader.close()
        self.join(15)
        assert not self.is_alive()

    def finish(self, n: int) -> list[Any]:
        assert wait_for(lambda: len(self.got) >= n, timeout=30), (len(self.got), n)
        self.stop()
        return self.got


def outage(server: BusServer, relay: Relay, recorder: Recorder, during: int) -> None:
    """Kill the bus, let ``during`` messages arrive from the exchange, restart it, and
    wait until the relay published everything it holds."""
    server.kill()
    assert wait_for(lambda: relay.stats.bus_errors >= 1, timeout=20)
    base = recorder.messages()
    assert wait_for(lambda: recorder.messages() >= base + during, timeout=20)  # still reading
    server.start()
    assert wait_for(lambda: relay.stats.bus_up and relay.stats.buffered == 0, timeout=30)


@pytest.mark.timeout(120)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_a_bus_restart_under_block_loses_nothing_and_needs_no_marker(
    sim: ExchangeSimulator, bus: BusServer
) -> None:
    url = bus_url(bus)
    relay, recorder, ws = start_relay(sim, url, overflow="block")
    with Collector(url) as collector:
        try:
            assert wait_for(lambda: recorder.messages() >= 1_000)
            outage(bus, relay, recorder, during=2_000)
            # the reader goes on past the outage while the relay runs: up to what was
            # received by its end (a fixed mark: on a loaded machine the reader, sharing
            # this process with the exchange and the relay, may read slower than the
            # exchange sends, and never come within a few messages of the live feed)
            restarted = len(recorder.seen)
            assert wait_for(lambda: len(collector.got) >= restarted, timeout=30)
        finally:
            ws.close()
            relay.close()
        got = collector.finish(len(recorder.seen))
    stats = relay.stats
    assert stats.bus_connects >= 2 and stats.dropped == stats.lost == 0
    assert got == recorder.expected()  # all of it, in order, exactly once
    assert [type(m) for m in got if not isinstance(m, dict)] == [Connected]
    (run,) = segments(got)
    assert run == list(range(run[0], run[0] + len(run)))


@pytest.mark.timeout(120)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_a_bus_restart_with_a_small_drop_oldest_buffer_leaves_no_unmarked_hole(
    sim: ExchangeSimulator, bus: BusServer
) -> None:
    url = bus_url(bus)
    relay, recorder, ws = start_relay(
        sim, url, overflow="drop_oldest", buffer_messages=300, chunk_messages=100
    )
    try:
        assert wait_for(lambda: recorder.messages() >= 1_000)
        outage(bus, relay, recorder, during=2_000)
        mark = recorder.messages()
        assert wait_for(lambda: recorder.messages() >= mark + 500)
    finally:
        ws.close()
        relay.close()
    stats = relay.stats
    assert stats.dropped > 0 and stats.lost == 0
    with open_reader(url, idle_timeout=3) as reader:
        got = list(reader)
    gaps = [m for m in got if isinstance(m, RelayGap)]
    assert gaps and sum(g.dropped for g in gaps) == stats.dropped
    assert all(g.why == "overflow" and g.source == relay.name for g in gaps)
    # every hole in the trade ids has a RelayGap between its two sides, and the gaps
    # count exactly the missing events
    received = trade_ids(recorder.expected())
    published = trade_ids(got)
    assert len(received) - len(published) == stats.dropped
    runs = segments(got)
    assert len(runs) == len(gaps) + 1
    for run in runs:
        assert run == list(range(run[0], run[0] + len(run)))


@pytest.mark.timeout(60)
@pytest.mark.exchange_simulator(event_rate=500)
def test_a_payload_too_large_for_the_bus_is_counted_and_marked_and_the_relay_goes_on(
    sim: ExchangeSimulator, bus: BusServer
) -> None:
    if bus.binary == "redis-server":  # give Redis a 1 MiB limit, as NATS has by default
        bus.stop()
        bus.extra.append("--proto-max-bulk-len")  # type: ignore[attr-defined]
        bus.extra.append("1mb")  # type: ignore[attr-defined]
        bus.start()
    url = bus_url(bus)
    relay, recorder, ws = start_relay(sim, url)
    big = b'{"e":"big","pad":"' + b"x" * (3 * 1024 * 1024 // 2) + b'"}'
    try:
        assert wait_for(lambda: recorder.messages() >= 100)
        assert sim.send_raw(text_frame(big)) == 1
        assert wait_for(lambda: any(m == big for m in recorder.seen), timeout=20)
        mark = recorder.messages()
        assert wait_for(lambda: recorder.messages() >= mark + 100)
    finally:
        ws.close()
        relay.close()
    assert relay.stats.too_large == 1 and relay.stats.refused == 0
    with open_reader(url, idle_timeout=3) as reader:
        got = list(reader)
    expected = recorder.expected()
    at = next(i for i, m in enumerate(expected) if isinstance(m, dict) and m["e"] == "big")
    gap = got[at]  # the marker takes the refused message's place
    assert isinstance(gap, RelayGap) and (gap.why, gap.dropped) == ("too_large", 1)
    assert got[:at] + got[at + 1 :] == expected[:at] + expected[at + 1 :]
