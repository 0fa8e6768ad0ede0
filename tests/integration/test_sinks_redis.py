"""Redis Streams: a relay publishes an exchange feed, gap markers included; readers over a
consumer group yield what ``stream(events=True)`` would and acknowledge what they handed
out. Real ``redis-server`` (fixture), real exchange simulator, no mocks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from busservers import Recorder, RedisServer, read_n, segments, trade_ids
from helpers import FAST, wait_for

from kstlib.websocket import Connected, Disconnected, WebSocketManager
from kstlib.websocket.sinks import AsyncRedisReader, RedisReader, Relay, open_reader, open_sink
from kstlib.websocket.testing import ExchangeSimulator

TRADES = "btcusdt@trade"


def start_relay(
    sim: ExchangeSimulator, url: str, **relay_options: Any
) -> tuple[Relay, Recorder, WebSocketManager]:
    """A relay fed by a manager on the simulator's trade stream, behind a recorder."""
    relay = Relay(open_sink(url), **relay_options).start()
    recorder = Recorder(relay.on_batch)
    options = {**relay.manager_options(), "on_batch": recorder, **FAST}
    ws = WebSocketManager(sim.stream_url(TRADES), **options)
    ws.connect()
    return relay, recorder, ws


@pytest.mark.timeout(120)
@pytest.mark.exchange_simulator(event_rate=25_000)
def test_100k_events_reach_a_reader_in_order_with_the_markers_where_the_faults_were(
    sim: ExchangeSimulator, redis_server: RedisServer
) -> None:
    url = redis_server.url("feed")
    relay, recorder, ws = start_relay(sim, url)
    try:
        for threshold in (30_000, 60_000):  # two connection losses mid-stream
            assert wait_for(lambda t=threshold: recorder.messages() >= t, timeout=30)
            ws.kill()
        assert wait_for(lambda: recorder.messages() >= 100_000, timeout=30)
    finally:
        ws.close()
        relay.close()
    expected = recorder.expected()
    assert relay.stats.published == recorder.messages() >= 100_000
    assert relay.stats.lost == relay.stats.dropped == 0

    with open_reader(url, idle_timeout=10) as reader:
        got = read_n(reader, len(expected))
    assert got == expected  # every event, in order, the markers at their place
    kills = [m for m in got if isinstance(m, Disconnected)]
    assert len(kills) == 2 and [type(m) for m in got].count(Connected) == 3
    for run in segments(got):  # between markers, trade ids have no hole
        assert run == list(range(run[0], run[0] + len(run)))


@pytest.mark.timeout(60)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_the_asyncio_reader_yields_the_same_items(
    sim: ExchangeSimulator, redis_server: RedisServer
) -> None:
    url = redis_server.url("feed")
    relay, recorder, ws = start_relay(sim, url)
    try:
        assert wait_for(lambda: recorder.messages() >= 500)
        ws.kill()
        assert wait_for(lambda: recorder.messages() >= 1_500)
    finally:
        ws.close()
        relay.close()
    expected = recorder.expected()

    async def read() -> list[Any]:
        got: list[Any] = []
        async with AsyncRedisReader(redis_server.url(), "feed", idle_timeout=5) as reader:
            async for item in reader:
                got.append(item)
                if len(got) == len(expected):
                    break
        return got

    assert asyncio.run(read()) == expected


def publish_trades(sim: ExchangeSimulator, url: str, n: int) -> list[Any]:
    relay, recorder, ws = start_relay(sim, url)
    try:
        assert wait_for(lambda: recorder.messages() >= n)
    finally:
        ws.close()
        relay.close()
    return recorder.expected()


@pytest.mark.timeout(60)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_a_reader_acknowledges_what_it_handed_out_and_a_restart_goes_on_after_it(
    sim: ExchangeSimulator, redis_server: RedisServer
) -> None:
    url = redis_server.url("feed", group="g", consumer="c1")
    expected = publish_trades(sim, url, 300)
    client = redis.Redis(port=redis_server.port)

    with open_reader(url, count=50) as reader:
        first = read_n(reader, 120)  # leaves in the middle of the third batch
    assert first == expected[:120]
    summary = client.xpending("feed", "g")
    # read from the bus, not handed out: still pending (the rest of the third batch and
    # the fourth, read ahead while the third was handed out)
    assert summary["pending"] == 30 + 50

    with open_reader(url, idle_timeout=2) as reader:  # same consumer: goes on at 121
        rest = read_n(reader, len(expected))
    assert first + rest == expected
    assert client.xpending("feed", "g")["pending"] == 0


@pytest.mark.timeout(60)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_groups_each_get_everything_and_events_false_hides_the_markers(
    sim: ExchangeSimulator, redis_server: RedisServer
) -> None:
    url = redis_server.url("feed")
    expected = publish_trades(sim, url, 200)
    with RedisReader(redis_server.url(), "feed", group="a", idle_timeout=2) as a:
        got_a = read_n(a, len(expected))
    with RedisReader(
        redis_server.url(), "feed", group="b", events=False, decode="bytes", idle_timeout=2
    ) as b:
        got_b = list(b)
    assert got_a == expected
    assert [m for m in expected if isinstance(m, dict)] == [
        __import__("orjson").loads(m) for m in got_b
    ]
    assert all(isinstance(m, bytes) for m in got_b)
    assert trade_ids(got_a) == trade_ids(expected)
