"""The exchange simulator, observed with independent clients.

Clients are ``websockets.sync.client`` (auto-answers pings, reports protocol errors
with the close code it sent) and ``websocket-client`` (``recv_frame`` reads raw
frames without answering pings, so a test can play a client that never pongs).
No test asserts a timing: waits are event-based with generous timeouts.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websocket  # websocket-client
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from kstlib.websocket.testing import MALFORMED_FRAMES, ExchangeSimulator

#: the ``sim`` fixture (tests/conftest.py) here is a quiet simulator (no events) unless a
#: test's own marker says otherwise
pytestmark = [pytest.mark.timeout(60), pytest.mark.exchange_simulator(event_rate=0)]

SRC = str(Path(__file__).resolve().parents[2] / "src")


def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    data = ws.recv(timeout=timeout)
    return json.loads(data)


def recv_until(ws: ClientConnection, pred: Callable[[Any], bool], limit: int = 500) -> Any:
    for _ in range(limit):
        msg = recv_json(ws)
        if pred(msg):
            return msg
    raise AssertionError("expected message not received")


def reply_to(ws: ClientConnection, request: dict[str, Any]) -> Any:
    ws.send(json.dumps(request))
    return recv_until(ws, lambda m: isinstance(m, dict) and ("result" in m or "error" in m))


def close_frame(ws: websocket.WebSocket, limit: int = 500) -> tuple[int, str]:
    """Read raw frames (answering nothing) until a close frame; return code, reason."""
    for _ in range(limit):
        frame = ws.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            (code,) = struct.unpack("!H", frame.data[:2])
            return code, frame.data[2:].decode()
    raise AssertionError("no close frame")


# --------------------------------------------------------------------------- lifecycle


def test_import_is_cheap_and_side_effect_free() -> None:
    code = textwrap.dedent(
        """
        import sys, threading
        import kstlib.websocket.testing as t
        assert "websockets" not in sys.modules, "websockets imported eagerly"
        assert "pytest" not in sys.modules, "pytest imported outside pytest"
        assert threading.active_count() == 1
        assert not hasattr(t, "exchange_simulator")
        s = t.ExchangeSimulator()
        assert not s.is_running and threading.active_count() == 1
        assert "websockets" not in sys.modules
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _fds() -> set[str]:
    gc.collect()
    return set(os.listdir("/proc/self/fd"))


def _sim_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("kstlib-exchange-simulator")}


def test_start_stop_urls_and_no_leaks() -> None:
    before = _fds()
    threads = _sim_threads()  # other tests' simulators, if any, are not ours to judge
    sim = ExchangeSimulator(event_rate=100)
    with contextlib.ExitStack() as stack:
        with sim:
            assert sim.is_running and sim.port > 0
            assert sim.url == f"ws://127.0.0.1:{sim.port}"
            assert sim.stream_url("btcusdt@trade") == f"{sim.url}/ws/btcusdt@trade"
            assert sim.stream_url() == f"{sim.url}/ws"
            assert sim.combined_url(["a@trade", "b@kline_1m"]) == (
                f"{sim.url}/stream?streams=a@trade/b@kline_1m"
            )
            assert len(_sim_threads() - threads) == 1
            with connect(sim.stream_url("btcusdt@trade")) as ws:
                recv_json(ws)
            clients = [
                stack.enter_context(connect(sim.stream_url("btcusdt@trade"))) for _ in range(3)
            ]
            assert sim.wait_for_connections(3)
            port = sim.port
        # stop() closed the clients' connections with 1001 "going away".
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                while True:
                    ws.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert not sim.is_running
    assert _sim_threads() == threads
    assert _fds() == before
    sim.stop()  # idempotent

    # Restart: same port, ids continue where they stopped.
    last = sim.last_event_id("btcusdt@trade")
    assert last > 0
    with sim, connect(sim.stream_url("btcusdt@trade")) as ws:
        assert sim.port == port
        assert recv_json(ws)["t"] > last
    assert _sim_threads() == threads


def test_start_twice_and_calls_when_stopped() -> None:
    sim = ExchangeSimulator(event_rate=0)
    with pytest.raises(RuntimeError):
        sim.close_all()
    with sim, pytest.raises(RuntimeError):
        sim.start()
    with pytest.raises(RuntimeError):
        sim.reset_all()


@pytest.mark.parametrize(
    "options",
    [
        {"event_rate": -1},
        {"kline_seconds": 0},
        {"kline_seconds": {"1m": -5}},
        {"max_streams_per_connection": 0},
        {"compression": "zstd"},
        {"max_connection_attempts": (0, 1.0)},
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ExchangeSimulator(**options)


def test_bind_error_is_raised_by_start() -> None:
    threads = _sim_threads()
    with ExchangeSimulator(event_rate=0) as sim:
        other = ExchangeSimulator(port=sim.port, event_rate=0)
        with pytest.raises(OSError):
            other.start()
        assert not other.is_running
    assert _sim_threads() == threads


# --------------------------------------------------------------------------- streams


@pytest.mark.exchange_simulator(event_rate=200)
def test_trade_ids_identical_on_two_connections(sim: ExchangeSimulator) -> None:
    url = sim.stream_url("btcusdt@trade")
    with connect(url) as a, connect(url) as b:
        assert sim.wait_for_connections(2)
        got_a = [recv_json(a) for _ in range(60)]
        got_b = [recv_json(b) for _ in range(60)]
    for got in (got_a, got_b):
        ids = [m["t"] for m in got]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # +1 per event, no gap
        assert all(m["e"] == "trade" and m["s"] == "BTCUSDT" for m in got)
        assert set(got[0]) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
    by_id_a = {m["t"]: m for m in got_a}
    common = [m for m in got_b if m["t"] in by_id_a]
    assert len(common) >= 30
    assert all(by_id_a[m["t"]] == m for m in common)  # same events, byte for byte


@pytest.mark.exchange_simulator(event_rate=100)
def test_combined_stream_wrapping(sim: ExchangeSimulator) -> None:
    streams = ["btcusdt@trade", "ethusdt@kline_1m"]
    with connect(sim.combined_url(streams)) as ws:
        seen: dict[str, list[dict[str, Any]]] = {s: [] for s in streams}
        while min(len(v) for v in seen.values()) < 5:
            msg = recv_json(ws)
            assert set(msg) == {"stream", "data"}
            seen[msg["stream"]].append(msg["data"])
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {
            "result": streams,
            "id": 1,
        }
    assert all(d["e"] == "trade" for d in seen["btcusdt@trade"])
    klines = seen["ethusdt@kline_1m"]
    assert all(d["e"] == "kline" and d["k"]["i"] == "1m" for d in klines)
    assert [d["u"] for d in klines] == list(range(klines[0]["u"], klines[0]["u"] + len(klines)))
    assert sim.subscriptions_of(-1) == streams


@pytest.mark.exchange_simulator(event_rate=40, kline_seconds=0.25)
def test_kline_candles_close_exactly_once(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url("btcusdt@kline_1m")) as ws:
        events: list[dict[str, Any]] = []
        while sum(1 for e in events if e["k"]["x"]) < 3:
            events.append(recv_json(ws))
    updates = [e["u"] for e in events]
    assert updates == list(range(updates[0], updates[0] + len(updates)))
    candles: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        candles.setdefault(e["k"]["t"], []).append(e["k"])
        assert e["k"]["T"] == e["k"]["t"] + 250 - 1  # the 1m candle scaled to 250 ms
        assert e["k"]["t"] % 250 == 0
    starts = list(candles)
    assert starts == sorted(starts)
    closed = [t for t in starts if any(k["x"] for k in candles[t])]
    assert len(closed) == 3
    for t in closed:
        ks = candles[t]
        assert [k["x"] for k in ks] == [False] * (len(ks) - 1) + [True]
        assert float(ks[-1]["l"]) <= float(ks[-1]["c"]) <= float(ks[-1]["h"])
        # Each update is one more trade; the closing update adds none and repeats the
        # last state of the candle.
        counts = [k["n"] for k in ks[:-1]]
        assert counts == list(range(counts[0], counts[0] + len(counts)))
        assert {**ks[-1], "x": False} == ks[-2]


@pytest.mark.exchange_simulator(event_rate=100)
def test_subscribe_unsubscribe_list_and_recording(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url()) as ws:
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {"result": [], "id": 1}
        sub = {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@trade"], "id": 2}
        assert reply_to(ws, sub) == {"result": None, "id": 2}
        seen = {recv_json(ws)["s"] for _ in range(40)}
        assert seen == {"BTCUSDT", "ETHUSDT"}  # raw payloads on /ws, not wrapped
        unsub = {"method": "UNSUBSCRIBE", "params": ["ethusdt@trade"], "id": "x-3"}
        assert reply_to(ws, unsub) == {"result": None, "id": "x-3"}
        # Everything after the reply comes from the remaining stream only.
        assert {recv_json(ws)["s"] for _ in range(30)} == {"BTCUSDT"}
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 4}) == {
            "result": ["btcusdt@trade"],
            "id": 4,
        }
        assert sim.subscriptions_of(0) == ["btcusdt@trade"]
        sent = sim.received(0)
        assert [json.loads(m)["id"] for m in sent] == [1, 2, "x-3", 4]
        assert json.loads(sent[1]) == sub
        info = sim.connection_info()
        assert info.messages_received == 4 and info.is_open and info.path == "/ws"


def test_set_and_get_property_combined(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url()) as ws:
        assert reply_to(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 1}) == {
            "result": False,
            "id": 1,
        }
        req = {"method": "SET_PROPERTY", "params": ["combined", True], "id": 2}
        assert reply_to(ws, req) == {"result": None, "id": 2}
        assert reply_to(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 3})["result"]
        assert sim.connection_info().combined


@pytest.mark.parametrize(
    ("request_text", "code", "reply_id"),
    [
        ("{not json", 3, None),
        ("[1, 2]", 2, None),
        ('{"method": "FLY", "id": 5}', 2, 5),
        ('{"params": [], "id": 6}', 2, 6),
        ('{"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 7}', 2, 7),
        ('{"method": "SUBSCRIBE", "params": ["BTCUSDT@TRADE"], "id": 8}', 2, 8),
        ('{"method": "SUBSCRIBE", "params": ["btcusdt@depth"], "id": 9}', 2, 9),
        ('{"method": "SUBSCRIBE", "params": [1], "id": 10}', 2, 10),
        ('{"method": "LIST_SUBSCRIPTIONS", "id": -1}', 2, None),
        ('{"method": "LIST_SUBSCRIPTIONS", "id": 1.5}', 2, None),
        ('{"method": "SET_PROPERTY", "params": ["speed", 1], "id": 11}', 0, 11),
        ('{"method": "SET_PROPERTY", "params": ["combined", 1], "id": 12}', 1, 12),
    ],
)
def test_error_replies(sim: ExchangeSimulator, request_text: str, code: int, reply_id: Any) -> None:
    with connect(sim.stream_url()) as ws:
        ws.send(request_text)
        reply = recv_json(ws)
        assert set(reply) == {"error", "id"}
        assert reply["id"] == reply_id
        assert reply["error"]["code"] == code
        assert isinstance(reply["error"]["msg"], str) and reply["error"]["msg"]
        # The connection survives a bad request.
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 99})["id"] == 99
        assert sim.subscriptions_of() == []
    assert sim.received(-1)[0] == request_text


@pytest.mark.exchange_simulator(event_rate=0, max_streams_per_connection=3)
def test_max_streams_per_connection(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url()) as ws:
        ok = {"method": "SUBSCRIBE", "params": ["a1@trade", "a2@trade"], "id": 1}
        assert reply_to(ws, ok) == {"result": None, "id": 1}
        too_many = {"method": "SUBSCRIBE", "params": ["a3@trade", "a4@trade"], "id": 2}
        reply = reply_to(ws, too_many)
        assert reply["error"]["code"] == 2 and "too many streams" in reply["error"]["msg"]
        assert sim.subscriptions_of() == ["a1@trade", "a2@trade"]  # all or nothing
        again = {"method": "SUBSCRIBE", "params": ["a1@trade", "a3@trade"], "id": 3}
        assert reply_to(ws, again) == {"result": None, "id": 3}  # a1 is not counted twice
    with pytest.raises(InvalidStatus) as info:
        connect(sim.combined_url(["a1@trade", "a2@trade", "a3@trade", "a4@trade"]))
    assert info.value.response.status_code == 400


@pytest.mark.parametrize(
    ("path", "status"),
    [("/nope", 404), ("/ws/btcusdt@depth", 400), ("/stream?streams=x@trade/BAD", 400)],
)
def test_http_errors_for_bad_paths(sim: ExchangeSimulator, path: str, status: int) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(sim.url + path, timeout=5)
    assert info.value.status_code == status
    assert sim.total_connections == 0 and sim.handshake_attempts == 1


# --------------------------------------------------------------------------- rules


@pytest.mark.exchange_simulator(event_rate=0, ping_interval=0.05, pong_timeout=2)
def test_server_pings_answered_keep_the_connection(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url()) as ws:  # websockets answers pings by itself
        assert sim.wait_until(lambda: len(sim.connection_info().pongs_received) >= 4, 10)
        info = sim.connection_info()
        # Every pong echoed the payload of a ping the server sent, in order.
        assert list(info.pongs_received) == list(info.pings_sent[: len(info.pongs_received)])
        assert len(set(info.pings_sent)) == len(info.pings_sent)  # unique payloads
        assert info.is_open and info.cause is None
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})["id"] == 1


@pytest.mark.exchange_simulator(
    event_rate=0, ping_interval=0.05, pong_timeout=0.2, close_timeout=0.3
)
def test_late_pong_disconnects(sim: ExchangeSimulator) -> None:
    ws = websocket.create_connection(sim.stream_url(), timeout=10)
    try:
        # recv_frame reads raw frames and never answers the ping.
        ping = ws.recv_frame()
        assert ping.opcode == websocket.ABNF.OPCODE_PING
        # the server records a ping once written: possibly just after it arrived here
        assert sim.wait_until(lambda: len(sim.connection_info().pings_sent) >= 1)
        assert ping.data == sim.connection_info().pings_sent[0]
        assert close_frame(ws) == (1008, "Pong timeout")
    finally:
        ws.close()
    assert sim.wait_until(lambda: sim.connection_count == 0, 10)
    info = sim.connection_info()
    assert info.cause == "pong_timeout" and info.close_sent_code == 1008
    assert info.pongs_received == ()


@pytest.mark.exchange_simulator(event_rate=0, max_connection_age=0.2)
def test_max_connection_age_closes_with_1000(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url()) as ws:
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (
            1000,
            "Max connection age reached",
        )
    assert sim.connection_info().cause == "max_age"
    # Every connection gets its own lifetime: a new one works until it ages too.
    with connect(sim.stream_url()) as ws:
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})["id"] == 1


@pytest.mark.exchange_simulator(event_rate=0, max_incoming_rate=5)
@pytest.mark.parametrize("kind", ["messages", "pings", "pongs"])
def test_incoming_rate_limit_disconnects(sim: ExchangeSimulator, kind: str) -> None:
    ws = websocket.create_connection(sim.stream_url(), timeout=10)
    try:
        for i in range(12):
            if kind == "messages":
                ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            elif kind == "pings":
                ws.ping(b"p%d" % i)
            else:
                ws.pong(b"unsolicited")
        assert close_frame(ws) == (1008, "Too many requests")
    finally:
        ws.close()
    assert sim.connection_info().cause == "rate_limit"


@pytest.mark.exchange_simulator(event_rate=0, max_incoming_rate=5)
def test_rate_limit_allows_traffic_under_the_limit(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url()) as ws:
        for i in range(4):
            assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": i})["id"] == i
    assert sim.connection_info().cause is None


@pytest.mark.exchange_simulator(event_rate=0, max_connection_attempts=(2, 60.0))
def test_connection_attempts_are_throttled(sim: ExchangeSimulator) -> None:
    for _ in range(2):
        with connect(sim.stream_url()):
            pass
    with pytest.raises(InvalidStatus) as info:
        connect(sim.stream_url())
    assert info.value.response.status_code == 429
    assert int(info.value.response.headers["Retry-After"]) >= 1
    assert sim.total_connections == 2 and sim.refused_handshakes == 1


@pytest.mark.exchange_simulator(event_rate=20_000, max_write_buffer=64 * 1024)
def test_slow_consumer_is_disconnected(sim: ExchangeSimulator) -> None:
    small = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
    ws = websocket.create_connection(sim.stream_url("btcusdt@trade"), timeout=10, sockopt=small)
    try:  # never reads
        assert sim.wait_until(lambda: sim.connection_info().cause == "slow_consumer", 30)
    finally:
        ws.close()
    assert sim.wait_until(lambda: sim.connection_count == 0, 10)


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        sim = ExchangeSimulator("::1", event_rate=50).start()
    except OSError:
        pytest.skip("::1 not available")
    try:
        with connect(sim.stream_url("btcusdt@trade")) as ws:
            assert sim.url.startswith("ws://[::1]:")
            assert recv_json(ws)["t"] >= 1
            assert sim.connection_info().remote is not None
    finally:
        sim.stop()


def test_announce_shutdown_then_close(sim: ExchangeSimulator) -> None:
    with connect(sim.combined_url(["btcusdt@trade"])) as old:
        assert sim.wait_for_connections(1)
        assert sim.announce_shutdown(close_after=0.3) == 1
        with connect(sim.stream_url()) as new:  # opened after the announcement
            msg = recv_json(old)
            assert msg["e"] == "serverShutdown" and isinstance(msg["E"], int)
            with pytest.raises(ConnectionClosedOK) as info:
                old.recv(timeout=10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            assert reply_to(new, {"method": "LIST_SUBSCRIPTIONS", "id": 1})["id"] == 1
            assert sim.connection_count == 1
    assert sim.connection_info(0).cause == "shutdown"


# --------------------------------------------------------------------------- faults


def test_close_all_with_code_and_reason(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url()) as a, connect(sim.stream_url()) as b:
        assert sim.wait_for_connections(2)
        assert sim.close_all(4001, "maintenance") == 2
        for ws in (a, b):
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=10)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "maintenance")
    assert sim.wait_until(lambda: sim.connection_count == 0)
    assert [c.cause for c in sim.connections()] == ["close_all", "close_all"]
    with pytest.raises(ValueError):
        sim.close_all(1006)


def test_close_only_one_connection(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url()) as a, connect(sim.stream_url()) as b:
        assert sim.wait_for_connections(2)
        assert sim.close_all(1000, only=0) == 1
        with pytest.raises(ConnectionClosedOK):
            a.recv(timeout=10)
        assert reply_to(b, {"method": "LIST_SUBSCRIPTIONS", "id": 1})["id"] == 1
        with pytest.raises(IndexError):
            sim.close_all(only=5)


def test_reset_all_gives_connection_reset(sim: ExchangeSimulator) -> None:
    ws = websocket.create_connection(sim.stream_url(), timeout=10)
    try:
        assert sim.wait_for_connections(1)
        assert sim.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            ws.recv()
    finally:
        ws.close()
    assert sim.wait_until(lambda: sim.connection_count == 0)
    info = sim.connection_info()
    assert info.cause == "reset" and info.close_code == 1006


@pytest.mark.exchange_simulator(event_rate=100, ping_interval=0.05, pong_timeout=0.1)
def test_go_silent_is_a_half_open_peer(sim: ExchangeSimulator) -> None:
    ws = websocket.create_connection(sim.stream_url("btcusdt@trade"), timeout=10)
    try:
        first = json.loads(ws.recv())["t"]
        assert sim.go_silent(True) == 1
        ws.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            for _ in range(10_000):  # drain what was in flight, then nothing: no FIN
                ws.recv()
        ws.ping(b"anyone?")
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv_data_frame(True)
        assert sim.connection_count == 1  # the server did not drop it (no pong timeout)
        assert sim.go_silent(False) == 1
        ws.settimeout(10)
        pong = None
        for _ in range(10_000):
            opcode, frame = ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"anyone?":
                pong = frame
                break
        assert pong is not None  # the held ping was answered once silence ended
        assert json.loads(ws.recv())["t"] > first  # events flow again
    finally:
        ws.close()
    assert sim.connection_info().cause is None


def test_go_silent_include_new_hangs_handshakes(sim: ExchangeSimulator) -> None:
    sim.go_silent(True, include_new=True)
    with pytest.raises(TimeoutError):
        connect(sim.stream_url(), open_timeout=0.3)
    sim.go_silent(False)
    with connect(sim.stream_url()) as ws:
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})["id"] == 1


@pytest.mark.parametrize(
    ("kind", "expected_code"),
    [
        ("reserved_opcode", 1002),
        ("reserved_control_opcode", 1002),
        ("masked", 1002),
        ("invalid_utf8", 1007),
        ("reserved_bits", 1002),
        ("fragmented_control", 1002),
        ("oversized_control", 1002),
        ("unexpected_continuation", 1002),
        ("bad_close_code", 1002),
        ("huge_length", 1009),
        ("garbage", 1002),
    ],
)
def test_send_malformed_gives_client_protocol_error(
    sim: ExchangeSimulator, kind: str, expected_code: int
) -> None:
    with connect(sim.stream_url()) as ws:
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})["id"] == 1
        assert sim.send_malformed(kind) == 1  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=10)
        assert info.value.sent is not None
        assert info.value.sent.code == expected_code
    assert sim.connection_info().cause == "malformed"


def test_every_malformed_kind_is_tested() -> None:
    tested = {
        "reserved_opcode",
        "reserved_control_opcode",
        "masked",
        "invalid_utf8",
        "reserved_bits",
        "fragmented_control",
        "oversized_control",
        "unexpected_continuation",
        "bad_close_code",
        "huge_length",
        "garbage",
        "truncated_reset",
    }
    assert set(MALFORMED_FRAMES) == tested
    with pytest.raises(ValueError, match="known"):
        ExchangeSimulator().send_malformed("nope")  # type: ignore[arg-type]


def test_truncated_frame_then_reset(sim: ExchangeSimulator) -> None:
    ws = websocket.create_connection(sim.stream_url(), timeout=10)
    try:
        assert sim.wait_for_connections(1)
        sim.send_malformed("truncated_reset")
        with pytest.raises(ConnectionResetError):
            ws.recv()
    finally:
        ws.close()


def test_send_raw_bytes(sim: ExchangeSimulator) -> None:
    with connect(sim.stream_url()) as ws:
        assert sim.wait_for_connections(1)
        sim.send_raw(b"\x81\x05hello")  # a valid text frame written by hand
        assert ws.recv(timeout=10) == "hello"


@pytest.mark.parametrize("status", [401, 429, 503])
def test_refuse_handshake_with_status(sim: ExchangeSimulator, status: int) -> None:
    sim.refuse_handshake(status)
    for _ in range(2):
        with pytest.raises(InvalidStatus) as info:
            connect(sim.stream_url())
        assert info.value.response.status_code == status
    if status == 429:
        assert info.value.response.headers["Retry-After"] == "1"
    with pytest.raises(websocket.WebSocketBadStatusException) as other:
        websocket.create_connection(sim.stream_url(), timeout=5)
    assert other.value.status_code == status
    assert sim.refused_handshakes == 3 and sim.total_connections == 0
    sim.refuse_handshake(None)
    with connect(sim.stream_url()):
        assert sim.wait_for_connections(1)


def test_refuse_handshake_a_number_of_times(sim: ExchangeSimulator) -> None:
    sim.refuse_handshake(503, times=2)
    statuses = []
    for _ in range(2):
        with pytest.raises(InvalidStatus) as info:
            connect(sim.stream_url())
        statuses.append(info.value.response.status_code)
    assert statuses == [503, 503]
    with connect(sim.stream_url()):
        assert sim.total_connections == 1
    assert sim.handshake_attempts == 3


def test_accept_delay(sim: ExchangeSimulator) -> None:
    sim.accept_delay(60)
    with pytest.raises(TimeoutError):
        connect(sim.stream_url(), open_timeout=0.3)
    assert sim.wait_until(lambda: sim.handshake_attempts == 1)
    assert sim.total_connections == 0
    sim.accept_delay(0.05)
    with connect(sim.stream_url(), open_timeout=10) as ws:
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})["id"] == 1
    sim.accept_delay(0)
    # stop() does not wait for the 60 s handshake still pending on the server.


def test_drop_after_accept(sim: ExchangeSimulator) -> None:
    sim.drop_after_accept(True)
    for n in (1, 2):
        with connect(sim.stream_url()) as ws:  # the handshake succeeds...
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=10)  # ...then the connection is gone, without a close frame
            assert info.value.rcvd is None
        assert sim.total_connections == n
    assert sim.wait_until(lambda: sim.connection_count == 0)
    assert {c.cause for c in sim.connections()} == {"drop_after_accept"}
    sim.drop_after_accept(False)
    with connect(sim.stream_url()) as ws:
        assert reply_to(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})["id"] == 1


def test_stop_is_prompt_with_silent_and_pending_connections() -> None:
    threads = _sim_threads()
    sim = ExchangeSimulator(event_rate=50, close_timeout=30).start()
    silent = websocket.create_connection(sim.stream_url("btcusdt@trade"), timeout=10)
    raw = socket.create_connection(("127.0.0.1", sim.port))  # TCP only, no handshake
    try:
        assert sim.wait_for_connections(1)
        sim.go_silent(True)
        sim.accept_delay(60)
        pending = socket.create_connection(("127.0.0.1", sim.port))
        pending.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert sim.wait_until(lambda: sim.handshake_attempts == 2)
        sim.stop(timeout=10)  # must not wait for close_timeout (30 s) nor the delay
        assert _sim_threads() == threads
        pending.settimeout(10)
        while pending.recv(4096):  # closed by the server
            pass
        pending.close()
    finally:
        silent.close()
        raw.close()
        sim.stop()


# --------------------------------------------------------------------------- plugin


def test_pytest_plugin_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import threading
            import pytest
            from websockets.sync.client import connect

            made = []

            @pytest.mark.exchange_simulator(event_rate=0, max_streams_per_connection=3)
            def test_marker(exchange_simulator):
                assert exchange_simulator.is_running
                assert exchange_simulator.options.max_streams_per_connection == 3
                made.append(exchange_simulator)

            def test_factory(exchange_simulator_factory):
                a = exchange_simulator_factory(event_rate=0)
                b = exchange_simulator_factory(event_rate=0, ping_interval=1)
                assert a.port != b.port and a.is_running and b.is_running
                with connect(b.stream_url()):
                    assert b.wait_for_connections(1)
                made.extend([a, b])

            def test_all_stopped():
                assert len(made) == 3
                assert not any(s.is_running for s in made)
                names = [t.name for t in threading.enumerate()]
                assert not [n for n in names if n.startswith("kstlib-exchange-simulator")]
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": SRC, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "kstlib.websocket.testing",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout


@pytest.mark.exchange_simulator()  # the plugin's defaults, not this module's quiet one
def test_fixture_in_this_session(exchange_simulator: ExchangeSimulator) -> None:
    assert exchange_simulator.is_running
    with connect(exchange_simulator.stream_url("btcusdt@trade")) as ws:
        assert recv_json(ws)["e"] == "trade"
