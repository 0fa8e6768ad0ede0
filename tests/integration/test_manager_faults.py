"""Every DisconnectReason produced for real, reconnect policy, exhausted attempts raised
in the consumer, overflow policies with exact counts, decode modes, and the state table
walked edge by edge. Servers: the simulator and an independent aiohttp server."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp_server import aiohttp_server
from helpers import FAST, no_leaks, wait_for

from kstlib.websocket import (
    ConnectionState,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketManager,
)
from kstlib.websocket import engine as engine_module
from kstlib.websocket.models import LEGAL_TRANSITIONS
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def aio_url() -> Any:
    with aiohttp_server() as base:
        yield base


def _reason_after(ws: WebSocketManager, n: int = 1) -> DisconnectReason | None:
    assert wait_for(lambda: ws.stats.disconnects >= n)
    return ws.stats.last_disconnect_reason


# ----------------------------------------------------------------- reactive reasons


def test_server_close_reconnects(sim: ExchangeSimulator) -> None:
    with no_leaks(), WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
        sim.close_all(4000, "maintenance")
        assert _reason_after(ws) is DisconnectReason.SERVER_CLOSED
        assert wait_for(lambda: ws.stats.connects == 2 and ws.is_connected)
        assert ws.stats.reactive_disconnects == 1


def test_server_close_without_auto_reconnect_raises_in_stream(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), auto_reconnect=False, **FAST)
        ws.connect()
        sim.close_all(4000, "maintenance")
        with pytest.raises(WebSocketClosedError) as info:
            for _ in ws.stream():
                pass
        assert (info.value.code, info.value.reason) == (4000, "maintenance")
        assert ws.is_dead and ws.is_recoverable
        ws.close()
    assert sim.connection_info(0).close_code == 4000  # we echoed the close code


def test_tcp_reset_is_network_error(sim: ExchangeSimulator) -> None:
    with no_leaks(), WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
        sim.reset_all()
        assert _reason_after(ws) is DisconnectReason.NETWORK_ERROR
        assert wait_for(lambda: ws.stats.connects == 2)


def test_truncated_frame_then_reset_is_network_error(sim: ExchangeSimulator) -> None:
    # no stream: nothing else is written between the partial frame and the RST
    with no_leaks(), WebSocketManager(sim.stream_url(), **FAST) as ws:
        sim.send_malformed("truncated_reset")
        assert _reason_after(ws) is DisconnectReason.NETWORK_ERROR


def test_silent_peer_is_ping_timeout(sim: ExchangeSimulator) -> None:
    with (
        no_leaks(),
        WebSocketManager(
            sim.stream_url("btcusdt@trade"), ping_interval=0.1, ping_timeout=0.3, **FAST
        ) as ws,
    ):
        assert wait_for(lambda: ws.stats.messages_received > 0)
        sim.go_silent(True)
        assert _reason_after(ws) is DisconnectReason.PING_TIMEOUT
        sim.go_silent(False)
        assert wait_for(lambda: ws.is_connected and ws.stats.connects >= 2)


@pytest.mark.parametrize(
    ("kind", "code"),
    [("reserved_opcode", 1002), ("masked", 1002), ("invalid_utf8", 1007), ("huge_length", 1009)],
)
def test_malformed_frames_are_protocol_errors(sim: ExchangeSimulator, kind: str, code: int) -> None:
    with no_leaks(), WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
        assert wait_for(lambda: ws.stats.messages_received > 0)
        sim.send_malformed(kind)  # type: ignore[arg-type]
        assert _reason_after(ws) is DisconnectReason.PROTOCOL_ERROR
        assert wait_for(lambda: sim.connection_info(0).close_code == code)
        assert wait_for(lambda: ws.stats.connects == 2)


@pytest.mark.exchange_simulator(event_rate=10, ping_interval=0.1, pong_timeout=1.0)
def test_server_pings_are_answered_with_the_same_payload(sim: ExchangeSimulator) -> None:
    with no_leaks(), WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST):
        assert wait_for(lambda: len(sim.connection_info(0).pongs_received) >= 3)
        info = sim.connection_info(0)
        assert set(info.pongs_received) <= set(info.pings_sent)
        assert info.is_open


# ----------------------------------------------------------------- reconnect policy


def test_refused_handshakes_exhaust_attempts_in_connect(sim: ExchangeSimulator) -> None:
    sim.refuse_handshake(503)
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), max_reconnect_attempts=3, **FAST)
        with pytest.raises(WebSocketConnectionError) as info:
            ws.connect()
        assert info.value.attempts == 3 and info.value.url == ws.url
        assert info.value.__cause__ is not None
        assert sim.refused_handshakes == 3
        assert ws.state is ConnectionState.DISCONNECTED and ws.is_recoverable


@pytest.mark.parametrize("status", [401, 403])
def test_permanent_refusal_is_not_retried(sim: ExchangeSimulator, status: int) -> None:
    sim.refuse_handshake(status)
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), max_reconnect_attempts=5, **FAST)
        with pytest.raises(WebSocketConnectionError) as info:
            ws.connect()
        assert info.value.attempts == 1 and str(status) in str(info.value)


def test_lost_connection_that_cannot_come_back_raises_in_the_consumer(
    sim: ExchangeSimulator,
) -> None:
    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            max_reconnect_attempts=2,
            reconnect_strategy=ReconnectStrategy.FIXED_DELAY,
            **FAST,
        )
        ws.connect()
        sim.refuse_handshake(503)
        sim.reset_all()
        received = 0
        with pytest.raises(WebSocketConnectionError) as info:
            for _ in ws.stream():
                received += 1
        assert info.value.attempts == 2
        assert received == ws.stats.messages_received  # everything queued came first
        assert ws.state is ConnectionState.DISCONNECTED


def test_accept_then_drop_cannot_cause_a_reconnect_storm(sim: ExchangeSimulator) -> None:
    sim.drop_after_accept(True)
    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            max_reconnect_attempts=4,
            reconnect_strategy=ReconnectStrategy.IMMEDIATE,
            **FAST,
        )
        with pytest.raises(WebSocketConnectionError):
            ws.connect()
            for _ in ws.stream():
                pass
        # attempts never reset because no connection stayed healthy
        assert sim.total_connections <= 4


def test_close_during_backoff_ends_closed(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"), reconnect_delay=30.0, reconnect_delay_max=30.0
        )
        ws.connect()
        sim.reset_all()
        assert wait_for(lambda: ws.state is ConnectionState.RECONNECTING)
        assert not ws.is_dead
        ws.close()
        assert ws.state is ConnectionState.CLOSED


# ----------------------------------------------------------------- overflow


def test_drop_oldest_counts_every_drop(aio_url: str) -> None:
    with (
        no_leaks(),
        WebSocketManager(
            aio_url + "/burst?n=1000", queue_size=10, queue_overflow="drop_oldest", **FAST
        ) as ws,
    ):
        assert wait_for(lambda: ws.stats.messages_received == 1000)
        got = []
        for msg in ws.stream():
            got.append(msg["i"])
            if msg["i"] == 999:
                break
        assert got == list(range(990, 1000))
        assert ws.stats.messages_dropped == 990


def test_block_policy_loses_nothing(aio_url: str) -> None:
    with (
        no_leaks(),
        WebSocketManager(
            aio_url + "/burst?n=5000", queue_size=10, queue_overflow="block", **FAST
        ) as ws,
    ):
        assert wait_for(lambda: ws.stats.messages_received >= 10)
        got = []
        for msg in ws.stream():
            got.append(msg["i"])
            if msg["i"] == 4999:
                break
        assert got == list(range(5000))
        assert ws.stats.messages_dropped == 0


# ----------------------------------------------------------------- independent server


def test_echo_and_decode_modes_on_aiohttp(aio_url: str) -> None:
    with no_leaks():
        with WebSocketManager(aio_url + "/mixed", **FAST) as ws:
            it = ws.stream()
            assert next(it) == {"kind": "json"}
            assert next(it) == "plain text, not JSON"  # delivered, never dropped
            assert next(it) == b"\x00\x01binary"
            assert ws.stats.decode_errors == 1
            ws.send({"a": [1, 2]})
            assert next(it) == {"a": [1, 2]}
            ws.send(b"\xffraw")
            assert next(it) == b"\xffraw"
        with WebSocketManager(aio_url + "/mixed", decode=None, **FAST) as ws:
            it = ws.stream()
            assert [next(it), next(it), next(it)] == [
                '{"kind": "json"}',
                "plain text, not JSON",
                b"\x00\x01binary",
            ]
        with WebSocketManager(aio_url + "/mixed", decode="bytes", **FAST) as ws:
            it = ws.stream()
            assert [next(it), next(it), next(it)] == [
                b'{"kind": "json"}',
                b"plain text, not JSON",
                b"\x00\x01binary",
            ]

        def upper(raw: Any) -> Any:
            if isinstance(raw, bytes):
                raise ValueError("binary not handled")
            return raw.upper()

        with WebSocketManager(aio_url + "/mixed", decode=upper, **FAST) as ws:
            it = ws.stream()
            assert [next(it), next(it), next(it)] == [
                '{"KIND": "JSON"}',
                "PLAIN TEXT, NOT JSON",
                b"\x00\x01binary",
            ]
            assert ws.stats.decode_errors == 1


def test_compression_negotiated_with_aiohttp(aio_url: str) -> None:
    big = {"payload": "x" * 50_000}
    with no_leaks(), WebSocketManager(aio_url + "/echo", **FAST) as ws:
        ws.send(big)
        assert next(iter(ws.stream())) == big
        assert ws.stats.bytes_sent < 5_000  # compressed on the wire


def test_server_close_code_from_aiohttp(aio_url: str) -> None:
    with no_leaks():
        ws = WebSocketManager(aio_url + "/close?code=4001&reason=gone", auto_reconnect=False)
        ws.connect()
        with pytest.raises(WebSocketClosedError) as info:
            for _ in ws.stream():
                pass
        assert (info.value.code, info.value.reason) == (4001, "gone")


# ----------------------------------------------------------------- the state table


def test_every_legal_transition_is_taken(
    sim: ExchangeSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Walk the manager through every edge of LEGAL_TRANSITIONS on a real server."""
    seen: set[tuple[ConnectionState, ConnectionState]] = set()
    original = engine_module.StateMachine.transition

    def recording(self: Any, new: ConnectionState) -> None:
        old = self.state
        original(self, new)
        if old is not new:
            seen.add((old, new))

    monkeypatch.setattr(engine_module.StateMachine, "transition", recording)
    url = sim.stream_url("btcusdt@trade")
    flag = {"safe": False}
    with no_leaks():
        ws = WebSocketManager(
            url,
            should_disconnect=lambda: flag["safe"],
            should_reconnect=lambda: not flag["safe"],
            disconnect_check_interval=0.05,
            reconnect_check_interval=0.05,
            max_reconnect_attempts=2,
            **FAST,
        )
        ws.connect()  # DISCONNECTED -> CONNECTING -> CONNECTED
        ws.kill()  # CONNECTED -> RECONNECTING -> CONNECTED
        assert wait_for(lambda: ws.is_connected)
        flag["safe"] = True  # CONNECTED -> DISCONNECTED
        assert wait_for(lambda: ws.state is ConnectionState.DISCONNECTED)
        ws.close()  # DISCONNECTED -> CLOSING -> CLOSED
        flag["safe"] = False
        ws.connect()  # CLOSED -> CONNECTING -> CONNECTED
        sim.refuse_handshake(503)
        ws.kill()  # CONNECTED -> RECONNECTING -> DISCONNECTED (attempts exhausted)
        assert wait_for(lambda: ws.is_dead)
        with pytest.raises(WebSocketConnectionError):
            ws.connect()  # DISCONNECTED -> CONNECTING -> DISCONNECTED
        sim.refuse_handshake(None)
        ws.connect()
        ws.close()  # CONNECTED -> CLOSING -> CLOSED
        sim.accept_delay(0.5)
        slow = WebSocketManager(url, **FAST)
        slow._started = True
        slow._engine.start()  # DISCONNECTED -> CONNECTING, handshake delayed by the server
        assert wait_for(lambda: slow.state is ConnectionState.CONNECTING)
        slow.close()  # CONNECTING -> CLOSING -> CLOSED
        sim.accept_delay(0)
        patient = WebSocketManager(url, reconnect_delay=30.0, reconnect_delay_max=30.0)
        patient.connect()
        sim.reset_all()
        assert wait_for(lambda: patient.state is ConnectionState.RECONNECTING)
        patient.close()  # RECONNECTING -> CLOSING -> CLOSED (caught in its backoff)
    expected = {(a, b) for a, targets in LEGAL_TRANSITIONS.items() for b in targets}
    assert expected - seen == set()
