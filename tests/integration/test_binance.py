"""The Binance preset, end to end on the simulator configured with Binance's rules: at most
5 incoming messages per second per connection (closes with 1008 "Too many requests"),
a few streams per connection (3 here, 1024 on Binance) and a connection-attempt throttle
(HTTP 429)."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
from collections import defaultdict
from typing import Any

import pytest
from helpers import ENGINE_THREAD_PREFIX, FAST, no_leaks, wait_for

from kstlib.websocket import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketError,
    WebSocketTimeoutError,
)
from kstlib.websocket.binance import (
    DEFAULT_BASE,
    BinanceRequestError,
    BinanceStreams,
    ConnectionEvent,
    ConnectionPacer,
    combined_url,
    dedupe_key,
    is_server_shutdown,
    stream_url,
    unwrap,
    validate_stream,
)
from kstlib.websocket.binance import aio as binance_aio
from kstlib.websocket.models import Connected, Disconnected
from kstlib.websocket.testing import ExchangeSimulator

PER_CONN = 3
BINANCE_RULES: dict[str, Any] = {
    "max_incoming_rate": 5,
    "max_streams_per_connection": PER_CONN,
    "max_connection_attempts": (30, 5.0),
}

#: the ``sim`` fixture (tests/conftest.py) here runs Binance's rules at 40 events/s
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.exchange_simulator(event_rate=40, **BINANCE_RULES),
]


def client(sim: ExchangeSimulator, streams: Any = (), **options: Any) -> BinanceStreams:
    return BinanceStreams(
        streams, base=sim.url, max_streams_per_connection=PER_CONN, **{**FAST, **options}
    )


def rate_limited(sim: ExchangeSimulator) -> list[int]:
    """Indices of the connections the simulator closed for sending too much."""
    return [c.index for c in sim.connections() if c.cause == "rate_limit"]


def requests_sent(sim: ExchangeSimulator, index: int) -> list[dict[str, Any]]:
    return [json.loads(m) for m in sim.received(index)]


def is_reply(item: Any) -> bool:
    return isinstance(item, dict) and "id" in item and ("result" in item or "error" in item)


# ----------------------------------------------------------------------------- pure helpers


def test_url_builders() -> None:
    assert stream_url("btcusdt@trade") == "wss://stream.binance.com:9443/ws/btcusdt@trade"
    assert DEFAULT_BASE == "wss://stream.binance.com:9443"
    assert (
        combined_url(["btcusdt@trade", "ethusdt@kline_1m", "btcusdt@trade"], base="ws://h:1/")
        == "ws://h:1/stream?streams=btcusdt@trade/ethusdt@kline_1m"
    )
    assert combined_url("bnbbtc@depth@100ms").endswith("?streams=bnbbtc@depth@100ms")
    for name in ("btcusdt@aggTrade", "!ticker@arr", "!bookTicker", "ethusdt@kline_4h"):
        assert validate_stream(name) == name
    with pytest.raises(ValueError, match="lowercase"):
        stream_url("BTCUSDT@trade")
    with pytest.raises(ValueError, match="<symbol>@<type>"):
        stream_url("btcusdt")
    for bad in ("", "btc usdt@trade", "btcusdt@", "btcusdt@trade/ethusdt@trade", "a@b?c"):
        with pytest.raises(ValueError):
            validate_stream(bad)
    with pytest.raises(TypeError):
        validate_stream(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        combined_url([])
    with pytest.raises(ValueError, match="1024"):
        combined_url([f"s{i}usdt@trade" for i in range(1025)])
    with pytest.raises(ValueError, match="base"):
        stream_url("btcusdt@trade", base="https://stream.binance.com")
    with pytest.raises(ValueError, match="base"):
        stream_url("btcusdt@trade", base="wss://host/ws")


def test_unwrap_dedupe_and_shutdown_hooks() -> None:
    trade = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 7}
    assert unwrap({"stream": "btcusdt@trade", "data": trade}) == ("btcusdt@trade", trade)
    with pytest.raises(ValueError, match="combined"):
        unwrap(trade)
    with pytest.raises(ValueError):
        unwrap({"result": None, "id": 1})

    kline_sim = {"e": "kline", "E": 5, "s": "BTCUSDT", "u": 9, "k": {"t": 0, "i": "1m"}}
    kline_binance = {"e": "kline", "E": 5, "s": "BTCUSDT", "k": {"t": 60000, "i": "1m"}}
    agg = {"e": "aggTrade", "E": 3, "s": "BTCUSDT", "a": 12}
    keys = {dedupe_key(m) for m in (trade, kline_sim, kline_binance, agg)}
    assert None not in keys and len(keys) == 4
    # the same event on two connections has the same key; another event another one
    assert dedupe_key(dict(trade)) == dedupe_key(trade)
    assert dedupe_key({**trade, "t": 8}) != dedupe_key(trade)
    assert dedupe_key({**kline_binance, "E": 6}) != dedupe_key(kline_binance)
    # combined wrapping: the stream name is part of the key
    wrapped = dedupe_key({"stream": "btcusdt@trade", "data": trade})
    assert wrapped is not None and wrapped != dedupe_key(trade)
    assert wrapped != dedupe_key({"stream": "btcusdt@trade", "data": {**trade, "t": 8}})
    # never deduplicated
    for msg in ({"result": None, "id": 1}, {"e": "serverShutdown", "E": 1}, [1, 2], "text"):
        assert dedupe_key(msg) is None

    assert is_server_shutdown({"e": "serverShutdown", "E": 1})
    assert is_server_shutdown({"stream": "x@trade", "data": {"e": "serverShutdown"}})
    assert not is_server_shutdown(trade) and not is_server_shutdown("serverShutdown")

    err = pickle.loads(pickle.dumps(BinanceRequestError(2, "Invalid request", 5)))
    assert (err.code, err.msg, err.request_id) == (2, "Invalid request", 5)
    assert isinstance(err, WebSocketError)


def test_connection_pacer_window_and_cancel() -> None:
    pacer = ConnectionPacer(3, 60.0, margin=0.0)
    for _ in range(3):
        assert pacer.acquire()
    assert pacer.delay() > 50.0  # the 4th attempt waits for the first to age out
    cancel = threading.Event()
    cancel.set()
    assert pacer.acquire(cancel) is False  # closing: gives up without recording
    with pytest.raises(ValueError):
        ConnectionPacer(0)
    with pytest.raises(ValueError):
        ConnectionPacer(3, 0.0)
    with pytest.raises(ValueError):
        ConnectionPacer(3, 1.0, margin=-1.0)


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="combined"):
        BinanceStreams(["btcusdt@trade"], combined=False, unwrap=True)
    with pytest.raises(ValueError, match="lowercase"):
        BinanceStreams(["BTCUSDT@trade"])
    with pytest.raises(TypeError, match="on_message"):
        BinanceStreams(["btcusdt@trade"], on_message=print)
    with pytest.raises(TypeError, match="subscriptions"):
        BinanceStreams(["btcusdt@trade"], subscriptions=[])
    with pytest.raises(TypeError, match="queue_sise"):
        BinanceStreams(["btcusdt@trade"], queue_sise=10)
    # the preset's defaults, and a user's option overriding one
    bn = BinanceStreams(["btcusdt@trade"], max_send_rate=4)
    s = bn.connections[0].settings
    assert s.max_send_rate == 4
    assert s.max_connection_age is not None and 23 * 3600 < s.max_connection_age < 24 * 3600
    assert s.dedupe_key is dedupe_key and s.should_handover is is_server_shutdown
    assert s.before_connect is not None
    assert BinanceStreams(["btcusdt@trade"]).connections[0].settings.max_send_rate == 5


# ----------------------------------------------------------------------------- end to end


def test_combined_unwrap_and_raw_payloads(sim: ExchangeSimulator) -> None:
    streams = ["btcusdt@trade", "ethusdt@kline_1m"]
    with no_leaks():
        with client(sim, streams, unwrap=True) as bn:
            seen: dict[str, dict[str, Any]] = {}
            for name, event in bn.stream():
                seen[name] = event
                if len(seen) == 2:
                    break
        assert seen["btcusdt@trade"]["e"] == "trade"
        assert seen["ethusdt@kline_1m"]["e"] == "kline"

        with client(sim, streams) as bn:
            msg = next(iter(bn.stream()))
            assert set(msg) == {"stream", "data"} and msg["stream"] in streams

        with client(sim, streams, combined=False) as bn:
            msg = next(iter(bn.stream()))
            assert msg["e"] in ("trade", "kline") and "stream" not in msg
    assert rate_limited(sim) == []


def test_subscribe_list_unsubscribe_replies_hidden(sim: ExchangeSimulator) -> None:
    items: list[Any] = []
    with client(sim, ["btcusdt@trade"]) as bn:
        consumer = threading.Thread(target=lambda: items.extend(bn.stream()))
        consumer.start()
        assert bn.list_subscriptions() == ["btcusdt@trade"]
        bn.subscribe(["ethusdt@trade", "btcusdt@trade"])  # the known one is skipped
        assert bn.list_subscriptions() == ["btcusdt@trade", "ethusdt@trade"]
        assert bn.streams == ["btcusdt@trade", "ethusdt@trade"]
        assert wait_for(lambda: any(m.get("stream") == "ethusdt@trade" for m in items[:]))
        bn.unsubscribe("btcusdt@trade")
        assert bn.list_subscriptions() == ["ethusdt@trade"]
        with pytest.raises(ValueError, match="not subscribed"):
            bn.unsubscribe("solusdt@trade")
        # a reconnect restores exactly the current set
        bn.connections[0].kill()
        assert sim.wait_for_total_connections(2)
        assert wait_for(lambda: sim.subscriptions_of(-1) == ["ethusdt@trade"])
        assert bn.list_subscriptions() == ["ethusdt@trade"]
    consumer.join(10)
    assert not consumer.is_alive()
    assert items and not [m for m in items if is_reply(m)]
    assert all(set(m) == {"stream", "data"} for m in items)

    sent = requests_sent(sim, 0)
    ids = [m["id"] for m in sent]
    assert all(type(i) is int for i in ids) and ids == sorted(set(ids))  # increasing
    methods = [m["method"] for m in sent]
    assert methods[:2] == ["SET_PROPERTY", "SUBSCRIBE"]
    assert {"LIST_SUBSCRIPTIONS", "UNSUBSCRIBE"} <= set(methods)
    assert rate_limited(sim) == []


def test_error_reply_raises_typed_error(sim: ExchangeSimulator) -> None:
    with client(sim, ["btcusdt@trade"]) as bn:
        with pytest.raises(BinanceRequestError) as info:
            bn.subscribe("btcusdt@depth")  # well-formed, but unknown to the simulator
        assert info.value.code == 2 and "btcusdt@depth" in info.value.msg
        assert info.value.request_id is not None
        # refused streams are forgotten: not listed, not resent on reconnect
        assert bn.streams == ["btcusdt@trade"]
        assert all(
            "btcusdt@depth" not in s.get("params", ())
            for s in bn.connections[0].subscriptions
            if isinstance(s, dict) and s["method"] == "SUBSCRIBE"
        )
        assert bn.list_subscriptions() == ["btcusdt@trade"]


def test_request_timeout_then_late_reply_dropped(sim: ExchangeSimulator) -> None:
    with client(sim, ["btcusdt@trade"], close_timeout=0.5) as bn:
        sim.go_silent(True)
        with pytest.raises(WebSocketTimeoutError) as info:
            bn.list_subscriptions(timeout=0.5)
        assert info.value.operation == "request"
        sim.go_silent(False)  # the held request is answered now: a reply nobody awaits
        assert bn.list_subscriptions() == ["btcusdt@trade"]
        got = []
        for msg in bn.stream():
            got.append(msg)
            if len(got) == 30:
                break
        assert not [m for m in got if is_reply(m)]


def test_requests_whose_connection_ends(sim: ExchangeSimulator) -> None:
    """The connection carrying a request ends before the reply: a LIST_SUBSCRIPTIONS
    fails, a SUBSCRIBE is answered by the next connection's resend, an UNSUBSCRIBE is
    done (the next connection no longer gets the stream)."""

    def while_lost(call: Any) -> Any:
        """Run ``call`` in a thread while the connection is silent, kill the connection
        once the request went out, and return what ``call`` returned or raised."""
        manager = bn.connections[0]
        assert wait_for(lambda: manager.is_connected)  # back from the previous kill
        sent = manager.stats.messages_sent
        sim.go_silent(True)  # holds the request: no reply on this connection
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(call())
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        assert wait_for(lambda: manager.stats.messages_sent > sent)
        manager.kill()
        thread.join(20)
        assert not thread.is_alive()
        sim.go_silent(False)
        return outcome[0]

    with client(sim, ["btcusdt@trade"]) as bn:
        failed = while_lost(lambda: bn.list_subscriptions(timeout=20))
        assert isinstance(failed, WebSocketClosedError)
        assert while_lost(lambda: bn.subscribe("ethusdt@trade", timeout=20)) is None
        assert bn.streams == ["btcusdt@trade", "ethusdt@trade"]
        assert bn.list_subscriptions() == ["btcusdt@trade", "ethusdt@trade"]
        assert while_lost(lambda: bn.unsubscribe("btcusdt@trade", timeout=20)) is None
        assert bn.streams == ["ethusdt@trade"]
        assert wait_for(lambda: bn.is_connected)
        assert wait_for(lambda: sim.subscriptions_of(-1) == ["ethusdt@trade"])
        assert bn.list_subscriptions() == ["ethusdt@trade"]
        assert not [m for m in _take(bn, 20) if is_reply(m)]
    assert sim.total_connections == 4
    assert rate_limited(sim) == []


def test_seven_streams_spread_over_three_connections(sim: ExchangeSimulator) -> None:
    streams = [f"s{i}usdt@trade" for i in range(7)]
    with no_leaks():
        with client(sim, streams, unwrap=True) as bn:
            assert len(bn.connections) == 3
            assert sim.wait_for_connections(3)
            per_conn = [sim.subscriptions_of(i) for i in range(3)]
            assert sorted(len(p) for p in per_conn) == [1, 3, 3]
            assert sorted(s for p in per_conn for s in p) == sorted(streams)
            ids: dict[str, list[int]] = defaultdict(list)
            for name, event in bn.stream():
                ids[name].append(event["t"])
                if len(ids) == 7 and min(len(v) for v in ids.values()) >= 5:
                    break
            assert sorted(ids) == sorted(streams)
            for name, got in ids.items():  # per-stream order kept, nothing lost
                assert got == list(range(got[0], got[0] + len(got))), name
            assert sorted(bn.list_subscriptions()) == sorted(streams)

            # one more than the room left opens a fourth connection ...
            bn.subscribe(["a1usdt@trade", "a2usdt@trade", "a3usdt@trade"])
            assert len(bn.connections) == 4 and sim.wait_for_connections(4)
            assert sorted(len(sim.subscriptions_of(i)) for i in range(4)) == [1, 3, 3, 3]
            # ... which closes once its last stream is gone
            assert sim.subscriptions_of(3) == ["a3usdt@trade"]
            bn.unsubscribe("a3usdt@trade")
            assert len(bn.connections) == 3
            assert wait_for(lambda: sim.connection_count == 3)
    assert rate_limited(sim) == []


def test_merging_several_connections_needs_no_reader_thread(sim: ExchangeSimulator) -> None:
    """The engines hand their batches to the merged queue themselves: while three
    connections stream, the client's only threads are their three engine threads, and
    every stream keeps its order."""
    before = set(threading.enumerate())
    streams = [f"s{i}usdt@trade" for i in range(7)]
    with no_leaks():
        with client(sim, streams, unwrap=True) as bn:
            ids: dict[str, list[int]] = defaultdict(list)
            for name, event in bn.stream():
                ids[name].append(event["t"])
                if len(ids) == 7 and min(len(v) for v in ids.values()) >= 5:
                    break
            new = [t for t in threading.enumerate() if t not in before]
            assert sorted(t.name.startswith(ENGINE_THREAD_PREFIX) for t in new) == [True] * 3
            assert len(bn.connections) == 3
            assert all(m.stats.messages_received > 0 for m in bn.connections)
        for got in ids.values():
            _assert_contiguous(got)
    assert rate_limited(sim) == []


def test_slow_consumer_loses_nothing_and_requests_still_answer() -> None:
    """queue_size=4 with "block": the queues fill, the engines stop reading; a request
    still gets its reply (the engines stop waiting for room while it is pending), and a
    late consumer then sees every event of every stream, in order."""
    streams = ["btcusdt@trade", "ethusdt@trade", "solusdt@trade", "bnbusdt@trade"]
    with ExchangeSimulator(event_rate=200, **BINANCE_RULES) as sim, no_leaks():
        with client(sim, streams, queue_size=4, unwrap=True) as bn:
            assert sim.wait_until(lambda: sim.events_published > 400, timeout=20)
            assert sorted(bn.list_subscriptions()) == sorted(streams)
            ids: dict[str, list[int]] = defaultdict(list)
            for name, event in bn.stream():
                ids[name].append(event["t"])
                if sum(map(len, ids.values())) >= 300:
                    break
            assert all(m.stats.messages_dropped == 0 for m in bn.connections)
            # close while the queues are full and nobody reads: nothing hangs
            assert sim.wait_until(lambda: sim.events_published > 1000, timeout=20)
        for name, got in ids.items():
            assert got == list(range(got[0], got[0] + len(got))), name
        assert rate_limited(sim) == []


# paced at 5 requests/s by design: 20+ requests take over 4 s
@pytest.mark.slow
def test_many_requests_quickly_never_trip_the_rate_limit(sim: ExchangeSimulator) -> None:
    with client(sim, ["btcusdt@trade"]) as bn:
        for i in range(4):
            bn.subscribe(f"x{i}usdt@trade")
            assert len(bn.list_subscriptions()) == 2
            bn.unsubscribe(f"x{i}usdt@trade")
        # requests from several threads at once are serialised and paced
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                bn.list_subscriptions()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert bn.connections[0].stats.messages_sent >= 20
        assert bn.connections[0].stats.reactive_disconnects == 0
    assert sim.total_connections == 1
    assert rate_limited(sim) == []


def test_connection_attempts_paced_under_the_throttle() -> None:
    with ExchangeSimulator(
        event_rate=10, max_incoming_rate=5, max_connection_attempts=(3, 1.0)
    ) as sim:
        streams = [f"s{i}usdt@trade" for i in range(5)]
        with BinanceStreams(
            streams,
            base=sim.url,
            max_streams_per_connection=1,
            max_connection_attempts=(3, 1.0),
            **FAST,
        ) as bn:
            assert len(bn.connections) == 5 and bn.is_connected
            assert sorted(bn.list_subscriptions()) == streams
        assert sim.total_connections == 5
        assert sim.refused_handshakes == 0  # never a 429: the pacer waited instead


def test_a_connection_failing_for_good_ends_the_stream(sim: ExchangeSimulator) -> None:
    with no_leaks():
        bn = client(sim, [f"s{i}usdt@trade" for i in range(4)], max_reconnect_attempts=1)
        with bn:
            sim.refuse_handshake(503)
            bn.connections[1].kill()
            with pytest.raises(WebSocketConnectionError):
                for _ in bn.stream():
                    pass
            assert bn.closed
            assert wait_for(lambda: sim.connection_count == 0)
            with pytest.raises(WebSocketError):
                bn.list_subscriptions()
        sim.refuse_handshake(None)


def test_gap_markers_name_the_connection_and_its_streams(sim: ExchangeSimulator) -> None:
    streams = [f"s{i}usdt@trade" for i in range(5)]
    with client(sim, streams) as bn:
        events: list[ConnectionEvent] = []
        killed = False
        for item in bn.stream(events=True):
            if isinstance(item, ConnectionEvent):
                events.append(item)
                if isinstance(item.event, Connected):
                    break
            elif not killed:
                bn.connections[1].kill()
                killed = True
        # plain stream() hides the markers
        assert not [m for m in _take(bn, 20) if isinstance(m, ConnectionEvent)]
    assert [type(e.event) for e in events] == [Disconnected, Connected]
    assert {e.connection for e in events} == {1}
    assert events[0].streams == tuple(sim.subscriptions_of(1))


def _take(bn: BinanceStreams, n: int) -> list[Any]:
    out: list[Any] = []
    for msg in bn.stream():
        out.append(msg)
        if len(out) == n:
            break
    return out


def _assert_contiguous(ids: list[int]) -> None:
    assert ids == list(range(ids[0], ids[0] + len(ids))), "an id was lost or repeated"


def test_rotation_hands_over_without_loss_or_duplicates() -> None:
    with ExchangeSimulator(event_rate=100, kline_rate=50, **BINANCE_RULES) as sim:
        streams = ["btcusdt@trade", "ethusdt@kline_1m"]
        with client(sim, streams, unwrap=True, max_connection_age=0.6) as bn:
            ids: dict[str, list[int]] = defaultdict(list)
            for name, event in bn.stream():
                if name is None:
                    continue
                ids[name].append(event["t"] if "t" in event else event["u"])
                if bn.connections[0].stats.handovers >= 3 and len(ids[streams[1]]) > 20:
                    break
            stats = bn.connections[0].stats
        assert stats.handovers >= 3 and stats.gaps == 0 and stats.reactive_disconnects == 0
        assert stats.duplicates_dropped > 0
        for name in streams:
            _assert_contiguous(ids[name])
        assert rate_limited(sim) == []


def test_server_shutdown_triggers_a_handover(sim: ExchangeSimulator) -> None:
    with client(sim, ["btcusdt@trade"], unwrap=True) as bn:
        ids: list[int] = []
        notices = 0
        for name, event in bn.stream():
            if name is None:
                notices += event.get("e") == "serverShutdown"
                continue
            ids.append(event["t"])
            if len(ids) == 10:
                sim.announce_shutdown(close_after=5.0, only=0)
            if bn.connections[0].stats.handovers == 1 and len(ids) > 40:
                break
        assert notices == 1
        assert bn.connections[0].stats.gaps == 0
    _assert_contiguous(ids)
    assert sim.connection_info(0).close_code == 1000  # we closed it, before its end


# ----------------------------------------------------------------------------- asyncio


def test_asyncio_client(sim: ExchangeSimulator) -> None:
    async def main() -> tuple[set[str], list[str], list[str]]:
        async with binance_aio.BinanceStreams(
            ["btcusdt@trade"], base=sim.url, unwrap=True, **FAST
        ) as bn:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())
            await bn.subscribe("ethusdt@trade")
            listed = await bn.list_subscriptions()
            with pytest.raises(BinanceRequestError):
                await bn.subscribe("btcusdt@depth")
            seen: set[str] = set()
            async for name, _event in bn.stream():
                seen.add(name)
                if len(seen) == 2:
                    break
            await bn.unsubscribe(["btcusdt@trade"])
            after = await bn.list_subscriptions()
            task.cancel()
            assert ticks > 5  # the loop kept running while requests waited (paced: > 1 s)
        return seen, listed, after

    with no_leaks():
        seen, listed, after = asyncio.run(main())
    assert seen == {"btcusdt@trade", "ethusdt@trade"}
    assert listed == ["btcusdt@trade", "ethusdt@trade"]
    assert after == ["ethusdt@trade"]
    assert rate_limited(sim) == []


def test_asyncio_client_refuses_sync_with() -> None:
    bn = binance_aio.BinanceStreams(["btcusdt@trade"])
    with pytest.raises(TypeError, match="async with"), bn:
        pass
