"""NATS JetStream: a relay publishes an exchange feed, gap markers included; readers over a
durable pull consumer yield what ``stream(events=True)`` would and acknowledge what they
handed out. Real ``nats-server -js`` (fixture), real exchange simulator, no mocks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from busservers import NatsServer, Recorder, read_n, segments
from helpers import FAST, wait_for

from kstlib.websocket import Connected, Disconnected, WebSocketManager
from kstlib.websocket.sinks import AsyncNatsReader, NatsReader, Relay, open_reader, open_sink
from kstlib.websocket.testing import ExchangeSimulator

TRADES = "btcusdt@trade"


def start_relay(
    sim: ExchangeSimulator, url: str, **relay_options: Any
) -> tuple[Relay, Recorder, WebSocketManager]:
    relay = Relay(open_sink(url), **relay_options).start()
    recorder = Recorder(relay.on_batch)
    ws = WebSocketManager(
        sim.stream_url(TRADES), **{**relay.manager_options(), "on_batch": recorder, **FAST}
    )
    ws.connect()
    return relay, recorder, ws


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.exchange_simulator(event_rate=25_000)
def test_100k_events_reach_a_reader_in_order_with_the_markers_where_the_faults_were(
    sim: ExchangeSimulator, nats_server: NatsServer
) -> None:
    url = nats_server.url("md.btc")
    relay, recorder, ws = start_relay(sim, url)
    try:
        for threshold in (30_000, 60_000):
            assert wait_for(lambda t=threshold: recorder.messages() >= t, timeout=60)
            ws.kill()
        assert wait_for(lambda: recorder.messages() >= 100_000, timeout=60)
    finally:
        ws.close()
        relay.close()
    expected = recorder.expected()
    stats = relay.stats
    assert stats.published == recorder.messages() >= 100_000
    assert stats.lost == stats.dropped == stats.duplicates == 0

    with open_reader(url, idle_timeout=10) as reader:
        got = read_n(reader, len(expected))
    assert got == expected
    assert len([m for m in got if isinstance(m, Disconnected)]) == 2
    assert [type(m) for m in got].count(Connected) == 3
    for run in segments(got):
        assert run == list(range(run[0], run[0] + len(run)))


def publish_trades(sim: ExchangeSimulator, url: str, n: int) -> list[Any]:
    relay, recorder, ws = start_relay(sim, url)
    try:
        assert wait_for(lambda: recorder.messages() >= n // 2)
        ws.kill()
        assert wait_for(lambda: recorder.messages() >= n)
    finally:
        ws.close()
        relay.close()
    return recorder.expected()


@pytest.mark.timeout(60)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_the_asyncio_reader_yields_the_same_items(
    sim: ExchangeSimulator, nats_server: NatsServer
) -> None:
    url = nats_server.url("md.btc")
    expected = publish_trades(sim, url, 1_000)

    async def read() -> list[Any]:
        got: list[Any] = []
        server = f"nats://127.0.0.1:{nats_server.port}"
        async with AsyncNatsReader(server, "md.btc", idle_timeout=5) as reader:
            async for item in reader:
                got.append(item)
                if len(got) == len(expected):
                    break
        return got

    assert asyncio.run(read()) == expected


@pytest.mark.timeout(60)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_a_reader_acknowledges_what_it_handed_out_and_a_restart_goes_on_after_it(
    sim: ExchangeSimulator, nats_server: NatsServer
) -> None:
    url = nats_server.url("md.btc", durable="risk")
    expected = publish_trades(sim, url, 300)
    with open_reader(url, count=50) as reader:
        first = read_n(reader, 120)  # leaves in the middle of the third batch
    assert first == expected[:120]
    with open_reader(url, idle_timeout=2) as reader:
        rest = read_n(reader, len(expected))
    assert first + rest == expected  # nothing handed out twice, nothing skipped
    server = f"nats://127.0.0.1:{nats_server.port}"
    with NatsReader(server, "md.btc", durable="other", events=False, idle_timeout=2) as other:
        assert list(other) == [m for m in expected if isinstance(m, dict)]


async def die_holding(port: int, subject: str, durable: str, n: int) -> None:
    """Another reader of ``durable`` that fetches ``n`` messages and goes away without
    acknowledging them, as a crash would: JetStream keeps them for ``ack_wait`` (30 s)."""
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        sub = await nc.jetstream().pull_subscribe(subject, durable=durable)
        held = 0
        while held < n:
            held += len(await sub.fetch(n - held, timeout=5))
    finally:
        await nc.close()


@pytest.mark.timeout(60)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_what_a_dead_reader_held_comes_next_at_once_and_in_order(
    sim: ExchangeSimulator, nats_server: NatsServer
) -> None:
    url = nats_server.url("md.btc", durable="risk")
    expected = publish_trades(sim, url, 300)
    with open_reader(url, count=50) as reader:
        first = read_n(reader, 100)  # two whole batches, acknowledged when it ends
    assert first == expected[:100]
    asyncio.run(die_holding(nats_server.port, "md.btc", "risk", 50))
    with open_reader(url, idle_timeout=2) as reader:  # far within ack_wait
        rest = read_n(reader, len(expected))
    assert first + rest == expected  # neither skipped nor waited for


@pytest.mark.timeout(60)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_deliveries_taken_elsewhere_while_reading_are_neither_skipped_nor_acknowledged(
    sim: ExchangeSimulator, nats_server: NatsServer
) -> None:
    """A pull request of the same consumer that is not the reader's (what a request the
    server serves late, after the reader reconnected, does) takes deliveries the reader
    never sees; with one acknowledgement covering everything before it, the reader's next
    one would acknowledge them too: a hole. The reader sees the consumer sequence jump
    and starts the consumer again after what it handed out."""
    url = nats_server.url("md.btc", durable="risk")
    expected = publish_trades(sim, url, 300)
    with open_reader(url, count=20, idle_timeout=2) as reader:
        items = iter(reader)
        got = [next(items) for _ in range(40)]  # two whole batches, connection kept
        asyncio.run(die_holding(nats_server.port, "md.btc", "risk", 15))
        got += list(items)
    assert got == expected
