"""The simulator's venue dialects, observed with an independent client
(``websockets.sync.client``), then the bad input of issue 9 against them with the
engine: a login or heartbeat answer that never comes, a factory that raises or returns
garbage, a sequence extractor that raises, a request never answered.

No test asserts a duration: waits are event-based with generous timeouts, and the
venues' windows are scaled down through the dialects' options.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers import FAST, no_leaks, wait_for
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from kstlib.websocket import (
    Connected,
    DisconnectReason,
    Gap,
    Heartbeat,
    Login,
    WebSocketConnectionError,
    WebSocketLoginError,
    WebSocketManager,
    WebSocketTimeoutError,
)
from kstlib.websocket.testing import (
    DIALECTS,
    BinanceDialect,
    BybitDialect,
    CoinbaseDialect,
    DeribitDialect,
    ExchangeSimulator,
    KrakenDialect,
    OkxDialect,
)
from kstlib.websocket.testing._dialects.bybit import bybit_sign
from kstlib.websocket.testing._dialects.okx import okx_sign

pytestmark = pytest.mark.timeout(60)

Factory = Callable[..., ExchangeSimulator]


@contextmanager
def client(url: str, **kwargs: Any) -> Iterator[ClientConnection]:
    with connect(url, compression=None, open_timeout=5, **kwargs) as ws:
        yield ws


def recv(ws: ClientConnection, timeout: float = 5.0) -> Any:
    data = ws.recv(timeout=timeout)
    try:
        return json.loads(data)
    except ValueError:
        return data


def recv_until(ws: ClientConnection, pred: Callable[[Any], bool], limit: int = 500) -> Any:
    for _ in range(limit):
        msg = recv(ws)
        if pred(msg):
            return msg
    raise AssertionError("expected message not received")


def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


def send(ws: ClientConnection, msg: Any) -> None:
    ws.send(msg if isinstance(msg, str) else json.dumps(msg))


# --------------------------------------------------------------------------- choosing


def test_dialects_by_name_instance_and_endpoint() -> None:
    assert set(DIALECTS) == {"binance", "okx", "bybit", "coinbase", "kraken", "deribit"}
    assert ExchangeSimulator().dialect.name == "binance"  # the default, unchanged
    assert isinstance(ExchangeSimulator(dialect="OKX").dialect, OkxDialect)
    mine = KrakenDialect(token_ttl=1.0)
    sim = ExchangeSimulator(dialect=mine, port=1234)
    assert sim.dialect is mine
    assert sim.endpoint("private") == "ws://127.0.0.1:1234/auth/v2"
    with pytest.raises(ValueError, match="no endpoint 'nope'"):
        sim.endpoint("nope")
    with pytest.raises(ValueError, match="unknown dialect"):
        ExchangeSimulator(dialect="ftx")
    with pytest.raises(ValueError):
        OkxDialect(silence=0)
    with pytest.raises(ValueError, match="login, ping or request"):
        mine.ignore("pong")


def test_an_unknown_path_is_a_404_in_every_venue(exchange_simulator_factory: Factory) -> None:
    for name in DIALECTS:
        sim = exchange_simulator_factory(dialect=name, event_rate=0)
        with pytest.raises(InvalidStatus) as info, client(sim.url + "/nope"):
            pass
        assert info.value.response.status_code == 404


# --------------------------------------------------------------------------- OKX


def okx_login(dialect: OkxDialect, **changes: Any) -> dict[str, Any]:
    stamp = f"{time.time():.3f}"
    arg = {
        "apiKey": dialect.api_key,
        "passphrase": dialect.passphrase,
        "timestamp": stamp,
        "sign": okx_sign(dialect.secret_key, stamp),
    }
    return {"op": "login", "args": [{**arg, **changes}]}


def test_okx_cuts_a_silent_client_with_4004_whatever_its_protocol_pings(
    exchange_simulator_factory: Factory,
) -> None:
    sim = exchange_simulator_factory(dialect=OkxDialect(silence=0.3), event_rate=0)
    with client(sim.endpoint("public"), ping_interval=0.05) as ws:  # protocol pings only
        send(ws, "ping")
        assert recv(ws) == "pong"
        assert closed_with(ws) == (4004, "No data received in 0.3s.")
    assert sim.connection_info(0).cause == "silence"
    assert sim.connection_info(0).client_pings >= 1


def test_okx_login_refusals_and_private_channels(exchange_simulator_factory: Factory) -> None:
    dialect = OkxDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    orders = {"op": "subscribe", "args": [{"channel": "orders", "instType": "ANY"}]}
    with client(sim.endpoint("private")) as ws:
        send(ws, orders)
        assert recv(ws)["code"] == "60011"  # not logged in
        refusals = [
            ({"apiKey": "other"}, "60005"),
            ({"timestamp": "yesterday"}, "60004"),
            ({"timestamp": f"{time.time() - 60:.3f}"}, "60006"),
            ({"passphrase": "wrong"}, "60024"),
            ({"sign": "forged"}, "60007"),
        ]
        for change, code in refusals:
            send(ws, okx_login(dialect, **change))
            reply = recv(ws)
            assert (reply["event"], reply["code"]) == ("error", code), change
        send(ws, okx_login(dialect))
        assert recv(ws) == {"event": "login", "code": "0", "msg": "", "connId": "sim-000000"}
        send(ws, orders)
        assert recv(ws)["event"] == "subscribe"
        assert recv(ws)["data"][0]["state"] == "live"


def test_okx_books_sequence_and_the_gap_fault(exchange_simulator_factory: Factory) -> None:
    sim = exchange_simulator_factory(dialect="okx", event_rate=100)
    books = {"channel": "books", "instId": "BTC-USDT"}
    with client(sim.endpoint("public")) as ws:
        send(ws, {"op": "subscribe", "args": [books, {**books, "instId": "ETH-USDT"}]})
        got = [recv(ws) for _ in range(30)]
        assert sim.inject_gap(3, stream="books:ETH-USDT") == 1
        got += [recv(ws) for _ in range(30)]  # ETH loses its next three updates meanwhile
    updates = [m for m in got if m.get("action") == "update"]
    by_inst: dict[str, list[tuple[int, int]]] = {}
    for m in updates:
        data = m["data"][0]
        by_inst.setdefault(m["arg"]["instId"], []).append((data["prevSeqId"], data["seqId"]))
    btc = by_inst["BTC-USDT"]
    assert all(prev == last for (_, last), (prev, _) in itertools.pairwise(btc))  # whole
    eth = by_inst["ETH-USDT"]
    holes = [(a, b) for (_, a), (b, _) in itertools.pairwise(eth) if a != b]
    (gap,) = sim.injected_gaps(0)
    assert gap.stream == "ETH-USDT"
    assert holes == [(gap.expected - 1, gap.received - 1)]


# --------------------------------------------------------------------------- Bybit


def test_bybit_pong_shapes_auth_and_silence_cut(exchange_simulator_factory: Factory) -> None:
    dialect = BybitDialect(silence=0.3)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=0)
    with client(sim.endpoint("public")) as ws:
        send(ws, {"op": "ping", "req_id": "7"})
        pong = recv(ws)
        assert (pong["op"], pong["ret_msg"], pong["req_id"]) == ("ping", "pong", "7")
    with client(sim.endpoint("private")) as ws:
        send(ws, {"op": "ping", "req_id": "8"})
        assert recv(ws)["op"] == "pong"
        send(ws, {"op": "subscribe", "args": ["order"]})
        assert recv(ws)["ret_msg"] == "Request not authorized"
        stale = now_ms() - 1
        send(ws, {"op": "auth", "args": [dialect.api_key, stale, bybit_sign("x", stale)]})
        assert recv(ws)["ret_msg"] == "Request expired"
        expires = now_ms() + 5000
        send(ws, {"op": "auth", "args": [dialect.api_key, expires, "forged"]})
        assert recv(ws)["ret_msg"] == "Invalid sign"
        signature = bybit_sign(dialect.api_secret, expires)
        send(ws, {"op": "auth", "args": [dialect.api_key, expires, signature]})
        assert recv(ws) == {"success": True, "ret_msg": "", "conn_id": "sim-000001", "op": "auth"}
        assert closed_with(ws) == (1000, "max_active_time")  # nothing either way since


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- Coinbase


def test_coinbase_jwt_expiry_subscribe_rule_and_sequence_num(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = CoinbaseDialect(subscribe_within=0.3, heartbeat_interval=0.05)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=50)
    with client(sim.endpoint("public")) as ws:
        assert closed_with(ws) == (1000, "no subscribe")
    token = dialect.issue_jwt()
    with client(sim.endpoint("private")) as ws:
        send(ws, {"type": "subscribe", "channel": "heartbeats", "jwt": token})
        send(ws, {"type": "subscribe", "channel": "user", "product_ids": ["BTC-USD"], "jwt": token})
        got = [recv(ws) for _ in range(20)]
        assert sim.stall(True) == 1  # the user feed stops; the heartbeats go on
        later = [recv(ws) for _ in range(5)]
        dialect.expire_jwts()
        send(ws, {"type": "subscribe", "channel": "user", "product_ids": ["BTC-USD"], "jwt": token})
        refused = recv_until(ws, lambda m: m.get("type") == "error")
    assert refused == {"type": "error", "message": "authentication failure"}
    assert [m["sequence_num"] for m in got] == list(range(20))  # one counter, all channels
    assert {m["channel"] for m in got} == {"subscriptions", "heartbeats", "user"}
    assert {m["channel"] for m in later} == {"heartbeats"}
    assert not dialect.jwt_valid(token) and not dialect.jwt_valid("a.b.c")


# --------------------------------------------------------------------------- Kraken


def test_kraken_status_ping_token_and_heartbeats(exchange_simulator_factory: Factory) -> None:
    dialect = KrakenDialect(heartbeat_interval=0.05)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    with client(sim.endpoint("private")) as ws:
        assert recv(ws)["channel"] == "status"
        send(ws, {"method": "ping", "req_id": 3})
        pong = recv(ws)
        assert (pong["method"], pong["req_id"]) == ("pong", 3)
        token = dialect.issue_token()
        dialect.expire_tokens()
        params = {"channel": "executions", "token": token}
        send(ws, {"method": "subscribe", "params": params, "req_id": 4})
        assert recv(ws)["error"] == "ESession:Invalid session"
        params["token"] = dialect.issue_token()
        send(ws, {"method": "subscribe", "params": params, "req_id": 5})
        assert recv(ws)["success"] is True
        got = [recv(ws) for _ in range(40)]
    executions = [m["sequence"] for m in got if m.get("channel") == "executions"]
    assert executions == list(range(1, len(executions) + 1))
    assert {"channel": "heartbeat"} in got


# --------------------------------------------------------------------------- Deribit


def rpc(ws: ClientConnection, method: str, params: dict[str, Any], rid: int) -> Any:
    send(ws, {"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    return recv_until(ws, lambda m: m.get("id") == rid)


def test_deribit_closes_on_an_unanswered_test_request(exchange_simulator_factory: Factory) -> None:
    dialect = DeribitDialect(min_heartbeat_interval=0.1)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    with client(sim.endpoint("public")) as ws:
        assert rpc(ws, "public/set_heartbeat", {"interval": 0.01}, 1)["error"]["code"] == -32602
        channels = {"channels": ["user.orders.BTC-PERPETUAL.raw"]}
        assert rpc(ws, "private/subscribe", channels, 2)["error"]["message"] == "unauthorized"
        creds = {"grant_type": "client_credentials", "client_id": dialect.client_id}
        bad = rpc(ws, "public/auth", {**creds, "client_secret": "x"}, 3)
        assert bad["error"] == {"code": 13004, "message": "invalid_credentials"}
        good = rpc(ws, "public/auth", {**creds, "client_secret": dialect.client_secret}, 4)
        assert good["result"]["token_type"] == "bearer"
        assert rpc(ws, "private/subscribe", channels, 5)["result"] == channels["channels"]
        assert rpc(ws, "public/set_heartbeat", {"interval": 0.1}, 6)["result"] == "ok"
        beat = recv_until(ws, lambda m: m.get("method") == "heartbeat")
        assert beat["params"] == {"type": "test_request"}
        assert closed_with(ws) == (1000, "heartbeat timeout")  # never answered


# --------------------------------------------------------------------------- Binance


def test_binance_depth_streams_in_spot_and_futures_shape(
    exchange_simulator_factory: Factory,
) -> None:
    plain = exchange_simulator_factory(event_rate=50)  # the default has no depth streams
    with pytest.raises(InvalidStatus), client(plain.stream_url("btcusdt@depth")):
        pass
    sim = exchange_simulator_factory(dialect=BinanceDialect(futures=True), event_rate=100)
    with client(sim.stream_url("btcusdt@depth@100ms")) as ws:
        got = [recv(ws) for _ in range(10)]
        assert sim.inject_gap(2) == 1
        assert sim.wait_until(lambda: bool(sim.injected_gaps(0)))
        got += [recv(ws) for _ in range(10)]
    assert all(m["pu"] == m["U"] - 1 for m in got)  # futures: pu is the previous u
    holes = [(a["u"], b["U"]) for a, b in itertools.pairwise(got) if b["U"] != a["u"] + 1]
    (gap,) = sim.injected_gaps(0)
    assert gap.stream == "btcusdt@depth@100ms" and holes == [(gap.expected - 1, gap.received)]


def test_binance_listen_keys(exchange_simulator_factory: Factory) -> None:
    dialect = BinanceDialect(listen_key_ttl=60)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    key = dialect.new_listen_key()
    assert dialect.new_listen_key() == key  # POST with an active key: the same key
    dialect.keepalive_listen_key(key)
    with client(sim.stream_url(key)) as ws:
        assert recv(ws)["e"] == "executionReport"
        dialect.expire_listen_key(key)
        expired = recv_until(ws, lambda m: m["e"] == "listenKeyExpired")
        assert expired["listenKey"] == key
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # open, but nothing more
    with pytest.raises(ValueError, match="-1125"):
        dialect.keepalive_listen_key(key)
    with pytest.raises(InvalidStatus) as info, client(sim.stream_url(key)):
        pass
    assert info.value.response.status_code == 400
    assert dialect.new_listen_key() != key


# --------------------------------------------------------------------------- bad input


OKX_BOOKS = [{"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}]


def okx_is_login(msg: Any) -> bool | None:
    if isinstance(msg, dict) and msg.get("event") in ("login", "error"):
        return msg.get("code") == "0"
    return None


def test_a_login_answer_that_never_comes_fails_each_attempt(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = OkxDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=0)
    dialect.ignore("login")
    login = Login(send=lambda: okx_login(dialect), is_reply=okx_is_login, timeout=0.2)
    with no_leaks(), pytest.raises(WebSocketConnectionError) as exc:
        WebSocketManager(sim.endpoint("private"), login=login, connect_attempts=2, **FAST).connect()
    assert exc.value.attempts == 2 and isinstance(exc.value.__cause__, WebSocketTimeoutError)
    assert sim.total_connections == 2


def test_a_refused_login_is_typed_and_final(exchange_simulator_factory: Factory) -> None:
    dialect = OkxDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=0)
    login = Login(send=lambda: okx_login(dialect, passphrase="wrong"), is_reply=okx_is_login)
    with no_leaks(), pytest.raises(WebSocketLoginError) as exc:
        WebSocketManager(
            sim.endpoint("private"), login=login, connect_attempts=None, **FAST
        ).connect()
    reply = exc.value.reply
    assert isinstance(reply, dict) and (reply["event"], reply["code"]) == ("error", "60024")
    assert sim.total_connections == 1


def test_a_login_built_once_expires_and_ends_the_manager(
    exchange_simulator_factory: Factory,
) -> None:
    """Why the recipes pass a callable: the same signed login on a reconnect past the
    window is refused (OKX 60006), and a refusal is final."""
    dialect = OkxDialect(login_window=0.2)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    once = okx_login(dialect)
    login = Login(send=once, is_reply=okx_is_login)
    orders = [{"op": "subscribe", "args": [{"channel": "orders", "instType": "ANY"}]}]
    url = sim.endpoint("private")
    with no_leaks():
        with WebSocketManager(url, login=login, subscriptions=orders, **FAST) as ws:
            stamp = float(once["args"][0]["timestamp"])
            assert wait_for(lambda: time.time() - stamp > dialect.login_window)
            sim.reset_all()
            with pytest.raises(WebSocketLoginError) as exc:
                for _ in ws.stream():
                    pass
            assert isinstance(exc.value.reply, dict) and ws.is_dead
            assert exc.value.reply["code"] == "60006"


def test_a_login_factory_that_raises_fails_that_attempt_only(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = OkxDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    calls = itertools.count()

    def message() -> dict[str, Any]:
        if next(calls) == 0:
            raise RuntimeError("clock service down")
        return okx_login(dialect)

    errors: list[BaseException] = []
    login = Login(send=message, is_reply=okx_is_login)
    url = sim.endpoint("private")
    with no_leaks(), WebSocketManager(url, login=login, on_error=errors.append, **FAST) as ws:
        assert ws.is_connected and ws.stats.callback_errors == 1
    assert isinstance(errors[0], RuntimeError)
    assert any("login factory" in str(e) for e in errors[1:])


def test_a_heartbeat_answer_that_never_comes_is_a_ping_timeout(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = OkxDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    dialect.ignore("ping")
    beat = Heartbeat(send="ping", every=0.1, timeout=0.2, is_reply=lambda m: m == "pong")
    url = sim.endpoint("public")
    with no_leaks(), WebSocketManager(url, subscriptions=OKX_BOOKS, heartbeat=beat, **FAST) as ws:
        items = ws.stream(events=True)
        assert any(isinstance(i, Connected) and i.reconnect for i in items)  # replaced
        assert ws.stats.disconnects_by_reason[DisconnectReason.PING_TIMEOUT] >= 1


def test_a_heartbeat_factory_that_raises_is_counted_and_never_kills_the_engine(
    exchange_simulator_factory: Factory,
) -> None:
    sim = exchange_simulator_factory(dialect="okx", event_rate=50)
    calls: list[int] = []

    def ping() -> str:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("no ping today")
        return "ping"

    beat = Heartbeat(send=ping, every=0.05, is_reply=lambda m: m == "pong")
    url = sim.endpoint("public")
    with no_leaks(), WebSocketManager(url, subscriptions=OKX_BOOKS, heartbeat=beat, **FAST) as ws:
        assert wait_for(lambda: len(calls) > 5 or ws.is_dead, timeout=5)
        for _ in itertools.islice(ws.stream(), 20):
            pass
        assert ws.stats.callback_errors >= 1 and not ws.is_dead


def test_a_subscriptions_factory_returning_garbage_fails_that_attempt_only(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = KrakenDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    calls = itertools.count()

    def subscriptions() -> Any:
        if next(calls) == 0:
            return [None]  # neither a dict nor a str
        params = {"channel": "executions", "token": dialect.issue_token()}
        return [{"method": "subscribe", "params": params}]

    errors: list[BaseException] = []
    url = sim.endpoint("private")
    with (
        no_leaks(),
        WebSocketManager(url, subscriptions=subscriptions, on_error=errors.append, **FAST) as ws,
    ):
        execution = next(m for m in ws.stream() if m.get("channel") == "executions")
        assert execution["sequence"] == 1 and ws.stats.callback_errors == 1
    assert "subscriptions factory returned an invalid value" in str(errors[0])
    assert sim.total_connections == 1  # the bad attempt never reached the server


def test_a_sequence_extractor_that_raises_is_counted_and_the_stream_goes_on(
    exchange_simulator_factory: Factory,
) -> None:
    sim = exchange_simulator_factory(dialect="okx", event_rate=100)

    def numbers(msg: Any) -> Any:
        if msg.get("action") == "update" and msg["data"][0]["seqId"] % 2:
            raise KeyError("seqId")
        return None

    url = sim.endpoint("public")
    with no_leaks(), WebSocketManager(url, subscriptions=OKX_BOOKS, sequence=numbers, **FAST) as ws:
        got = list(itertools.islice((m for m in ws.stream() if "data" in m), 30))
        assert len(got) == 30 and ws.stats.sequence_gaps == 0  # the stream went on
        assert ws.stats.callback_errors >= 1  # ... and the failures are counted


def test_a_request_whose_reply_never_comes_times_out_and_the_stream_goes_on(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = DeribitDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=50)
    book = {"jsonrpc": "2.0", "id": 9001, "method": "public/subscribe"}
    subscribe = {**book, "params": {"channels": ["book.BTC-PERPETUAL.100ms"]}}
    url = sim.endpoint("public")
    with no_leaks(), WebSocketManager(url, subscriptions=[subscribe], **FAST) as ws:
        stream = ws.stream()
        next(stream)
        dialect.ignore("request")
        with pytest.raises(WebSocketTimeoutError) as exc:
            ws.request({"jsonrpc": "2.0", "method": "public/get_time", "params": {}}, timeout=0.3)
        assert exc.value.operation == "request"
        notes = itertools.islice((m for m in stream if m.get("method") == "subscription"), 10)
        assert len(list(notes)) == 10 and ws.is_connected


def test_a_connection_wide_counter_has_no_false_gaps_when_heartbeats_are_taken_out(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = CoinbaseDialect(heartbeat_interval=0.05)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=50)
    subs = [
        {"type": "subscribe", "channel": "heartbeats"},
        {"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USD"]},
    ]
    beat = Heartbeat(every=1.0, is_reply=lambda m: m.get("channel") == "heartbeats")
    with no_leaks():
        with WebSocketManager(
            sim.endpoint("public"),
            subscriptions=subs,
            heartbeat=beat,
            sequence=lambda m: ("connection", m["sequence_num"]),
            **FAST,
        ) as ws:
            items = list(itertools.islice(ws.stream(events=True), 60))  # a second of data
    assert not [i for i in items if isinstance(i, Gap)]
