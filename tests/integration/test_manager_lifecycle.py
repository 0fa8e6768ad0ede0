"""The sync manager on a real server (the simulator): lifecycle rows, states, streams,
subscriptions, sending and callbacks. No thread or socket survives a close."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
from helpers import FAST, NEVER, engine_threads, no_leaks, sockets_to, wait_for

from kstlib.websocket import (
    ConnectionState,
    DisconnectReason,
    WebSocketClosedError,
    WebSocketManager,
)
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(60)


def take(ws: WebSocketManager, n: int) -> list[Any]:
    out: list[Any] = []
    for msg in ws.stream():
        out.append(msg)
        if len(out) >= n:
            break
    return out


def test_with_block_streams_and_leaves_nothing_behind(sim: ExchangeSimulator) -> None:
    with no_leaks():
        with WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
            assert ws.state is ConnectionState.CONNECTED and ws.is_connected
            events = take(ws, 20)
            ids = [e["t"] for e in events]
            assert all(e["e"] == "trade" for e in events)
            assert ids == sorted(ids) and len(set(ids)) == 20
        assert ws.state is ConnectionState.CLOSED
        assert ws.is_dead and ws.is_recoverable and not ws.is_shutdown
    assert wait_for(lambda: sim.connection_count == 0)
    info = sim.connection_info(-1)
    assert info.close_code == 1000  # a real closing handshake


def test_close_is_idempotent_and_connect_works_again(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        ws.connect()  # no-op while connected
        assert wait_for(lambda: sim.total_connections == 1)
        ws.close()
        ws.close()
        assert ws.state is ConnectionState.CLOSED
        ws.connect()
        assert ws.state is ConnectionState.CONNECTED
        assert take(ws, 3)
        ws.close()
        stats = ws.stats
        assert stats.connects == 2 and stats.disconnects == 2
        assert stats.proactive_disconnects == 2 and stats.reactive_disconnects == 0
        assert stats.disconnects_by_reason == {DisconnectReason.USER_REQUESTED: 2}


def test_stream_ends_normally_after_close_from_another_thread(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        got: list[Any] = []
        timer = threading.Timer(0.3, ws.close)
        timer.start()
        for msg in ws.stream():  # must end by itself, without an error
            got.append(msg)
        timer.join()
        assert got and ws.state is ConnectionState.CLOSED


def test_force_close_is_terminal(sim: ExchangeSimulator, caplog: pytest.LogCaptureFixture) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        ws.force_close()
        assert ws.state is ConnectionState.CLOSED
        assert ws.is_shutdown and ws.is_dead and not ws.is_recoverable
        assert not ws.shutdown_event.is_set()
        with caplog.at_level(logging.WARNING, logger="kstlib.websocket"):
            ws.connect()
        assert "ignored" in caplog.text
        assert ws.state is ConnectionState.CLOSED
        # the ignored connect() started no engine thread: nothing can connect later
        assert engine_threads() == []
        assert wait_for(lambda: sim.total_connections == 1)
        assert sim.handshake_attempts == 1


def test_shutdown_sets_the_marker_event(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        waiter_saw: list[bool] = []
        waiter = threading.Thread(target=lambda: waiter_saw.append(ws.shutdown_event.wait(10)))
        waiter.start()
        ws.shutdown()
        waiter.join(10)
        assert waiter_saw == [True]
        assert ws.is_shutdown and ws.state is ConnectionState.CLOSED
        ws.connect()
        assert ws.state is ConnectionState.CLOSED


def test_kill_is_reactive_and_reconnects(sim: ExchangeSimulator) -> None:
    reasons: list[DisconnectReason] = []
    with (
        no_leaks(),
        WebSocketManager(
            sim.stream_url("btcusdt@trade"), on_disconnect=reasons.append, **FAST
        ) as ws,
    ):
        take(ws, 2)
        ws.kill()
        assert ws.state in (ConnectionState.RECONNECTING, ConnectionState.CONNECTED)
        assert not ws.is_dead
        assert wait_for(lambda: ws.stats.connects == 2)
        assert take(ws, 2)
        assert ws.stats.reactive_disconnects == 1
        assert ws.stats.disconnects_by_reason[DisconnectReason.KILLED] == 1
    assert reasons == [DisconnectReason.KILLED, DisconnectReason.USER_REQUESTED]
    assert sim.connection_info(0).close_code == 1006  # no closing handshake on kill


def test_kill_without_auto_reconnect_is_recoverable(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), auto_reconnect=False, **FAST)
        ws.connect()
        ws.kill()
        assert wait_for(lambda: ws.is_dead)
        assert ws.is_recoverable and ws.state is ConnectionState.DISCONNECTED
        with pytest.raises(WebSocketClosedError) as info:
            for _ in ws.stream():
                pass
        assert info.value.code == 1006
        ws.connect()  # the watchdog's move
        assert ws.is_connected
        ws.close()


def test_disconnect_is_proactive_and_stays_down(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        ws.disconnect()
        assert ws.state is ConnectionState.DISCONNECTED
        assert ws.is_dead and ws.is_recoverable
        assert ws.stats.last_disconnect_reason is DisconnectReason.USER_REQUESTED
        assert ws.stats.proactive_disconnects == 1
        for _ in ws.stream():  # drains what was queued, then ends normally
            pass
        # the engine thread has ended: nothing is left that could bring it back by itself
        assert wait_for(lambda: engine_threads() == [])
        assert sim.handshake_attempts == 1 and sim.total_connections == 1
        ws.connect()
        assert ws.is_connected
        ws.close()


def test_request_disconnect_without_callback_happens_at_once(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        ws.request_disconnect()  # returns at once
        assert wait_for(lambda: ws.state is ConnectionState.DISCONNECTED)
        assert ws.stats.last_disconnect_reason is DisconnectReason.USER_REQUESTED
        ws.close()


def test_request_disconnect_waits_for_should_disconnect(sim: ExchangeSimulator) -> None:
    safe = threading.Event()
    answers: list[bool] = []

    def should_disconnect() -> bool:
        answers.append(safe.is_set())
        return answers[-1]

    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            should_disconnect=should_disconnect,
            disconnect_check_interval=0.05,
            **FAST,
        )
        ws.connect()
        asked = len(answers)
        ws.request_disconnect()
        # the engine asked three times after the request and was told "not yet"
        assert wait_for(lambda: len(answers) >= asked + 3)
        assert ws.is_connected  # not a safe moment yet
        assert not any(answers)
        safe.set()
        assert wait_for(lambda: ws.state is ConnectionState.DISCONNECTED)
        assert ws.stats.last_disconnect_reason is DisconnectReason.USER_REQUESTED
        ws.close()


def test_schedule_reconnect(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        ws.schedule_reconnect(0.5)
        assert wait_for(lambda: ws.stats.disconnects == 1)
        assert ws.stats.last_disconnect_reason is DisconnectReason.SCHEDULED
        assert ws.state is ConnectionState.RECONNECTING
        assert not ws.is_dead  # a pending schedule is not dead
        assert wait_for(lambda: ws.is_connected)
        assert ws.stats.connects == 2 and ws.stats.proactive_disconnects == 1
        ws.close()


def test_schedule_reconnect_when_disconnected_restarts(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST)
        ws.connect()
        ws.disconnect()
        assert ws.is_dead
        ws.schedule_reconnect(0.2)
        assert not ws.is_dead
        assert wait_for(lambda: ws.is_connected)
        ws.close()


def test_should_disconnect_and_should_reconnect(sim: ExchangeSimulator) -> None:
    window = {"safe": False}
    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            should_disconnect=lambda: window["safe"],
            should_reconnect=lambda: not window["safe"],
            disconnect_check_interval=0.05,
            reconnect_check_interval=0.05,
            **FAST,
        )
        ws.connect()
        window["safe"] = True
        assert wait_for(lambda: ws.state is ConnectionState.DISCONNECTED)
        assert ws.stats.last_disconnect_reason is DisconnectReason.CALLBACK_TRIGGERED
        assert not ws.is_dead  # waiting on should_reconnect
        window["safe"] = False
        assert wait_for(lambda: ws.is_connected)
        assert ws.stats.connects == 2
        ws.close()


def test_should_disconnect_alone_reconnects_when_it_turns_false(sim: ExchangeSimulator) -> None:
    window = {"safe": False}
    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            should_disconnect=lambda: window["safe"],
            disconnect_check_interval=0.05,
            reconnect_check_interval=0.05,
            **FAST,
        )
        ws.connect()
        window["safe"] = True
        assert wait_for(lambda: ws.state is ConnectionState.DISCONNECTED)
        window["safe"] = False
        assert wait_for(lambda: ws.is_connected)
        ws.close()


def test_max_connection_age_rotates_proactively(sim: ExchangeSimulator) -> None:
    with (
        no_leaks(),
        WebSocketManager(sim.stream_url("btcusdt@trade"), max_connection_age=0.3, **FAST) as ws,
    ):
        assert wait_for(lambda: ws.stats.connects >= 3)
        stats = ws.stats
        assert stats.disconnects_by_reason[DisconnectReason.CONNECTION_LIMIT] >= 2
        assert stats.reactive_disconnects == 0


def test_subscriptions_are_sent_in_order_and_restored(sim: ExchangeSimulator) -> None:
    subs = [
        {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1},
        {"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 2},
    ]
    with no_leaks(), WebSocketManager(sim.stream_url(), subscriptions=subs, **FAST) as ws:
        assert wait_for(lambda: sim.subscriptions_of(-1) == ["btcusdt@trade", "ethusdt@trade"])
        ws.kill()
        assert wait_for(lambda: sim.total_connections == 2 and sim.connection_count == 1)
        assert wait_for(lambda: sim.subscriptions_of(-1) == ["btcusdt@trade", "ethusdt@trade"])
        ws.unsubscribe(subs[1])
        ws.subscribe({"method": "SUBSCRIBE", "params": ["bnbusdt@trade"], "id": 3})
        assert wait_for(lambda: sim.subscriptions_of(-1) == ["btcusdt@trade", "bnbusdt@trade"])
        ws.kill()
        assert wait_for(lambda: sim.total_connections == 3 and sim.connection_count == 1)
        assert wait_for(lambda: sim.subscriptions_of(-1) == ["btcusdt@trade", "bnbusdt@trade"])
        received = [m for m in sim.received(-1) if isinstance(m, str)]
        assert [r for r in received if "SUBSCRIBE" in r][:2] == [
            '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}',
            '{"method":"SUBSCRIBE","params":["bnbusdt@trade"],"id":3}',
        ]
        with pytest.raises(ValueError, match="not subscribed"):
            ws.unsubscribe(subs[1])


def test_send_from_another_thread_and_when_closed(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url(), **FAST)
        with pytest.raises(WebSocketClosedError):
            ws.send("too early")
        ws.connect()
        t = threading.Thread(target=ws.send, args=({"method": "LIST_SUBSCRIPTIONS", "id": 7},))
        t.start()
        t.join()
        replies = take(ws, 1)
        assert replies == [{"result": [], "id": 7}]
        assert ws.stats.messages_sent == 1
        with pytest.raises(TypeError):
            ws.send(12345)
        ws.close()
        with pytest.raises(WebSocketClosedError):
            ws.send("after close")


def test_callbacks_run_and_errors_are_counted(sim: ExchangeSimulator) -> None:
    seen: list[Any] = []
    errors: list[BaseException] = []
    connected = threading.Event()

    def on_message(msg: Any) -> None:
        seen.append(msg)
        if len(seen) == 3:
            raise RuntimeError("bot bug")

    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            on_connect=connected.set,
            on_message=on_message,
            on_error=errors.append,
            **FAST,
        )
        ws.connect()
        assert connected.is_set()
        assert wait_for(lambda: len(seen) >= 10)  # the engine survived the raise
        ws.close()
    assert ws.stats.callback_errors == 1
    assert len(errors) == 1 and str(errors[0]) == "bot bug"


def test_sync_class_refuses_async_with(sim: ExchangeSimulator) -> None:
    ws = WebSocketManager(sim.stream_url("btcusdt@trade"))

    async def main() -> None:
        async with ws:
            pass

    with pytest.raises(TypeError, match=r"kstlib\.websocket\.aio"):
        asyncio.run(main())
    assert engine_threads() == []


@pytest.mark.timeout(30)  # far below NEVER: waiting for the keepalive is a hang
def test_close_returns_in_time_against_a_silent_server(sim: ExchangeSimulator) -> None:
    """The server never answers the closing handshake, and the keepalive would not
    notice it before ping_timeout = NEVER: close() gives up after close_timeout, with
    the engine thread ended and the client socket closed when it returns."""
    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"), close_timeout=1.0, ping_timeout=NEVER
        )
        ws.connect()
        sim.go_silent(True)
        started = time.monotonic()
        ws.close()
        print(f"\nclose() returned after {time.monotonic() - started:.2f} s")  # information only
        # close() joins the engine thread for at most close_timeout + 1 s: a thread still
        # alive here means it was still waiting for the silent peer
        assert engine_threads() == []
        assert ws.state is ConnectionState.CLOSED
        assert sockets_to(sim.port) == []
        sim.go_silent(False)  # the simulator (same process) may now release its side too


def test_breaking_out_of_stream_keeps_unread_messages(sim: ExchangeSimulator) -> None:
    with no_leaks(), WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
        assert wait_for(lambda: ws.stats.messages_received >= 30)
        first = take(ws, 5)
        second = take(ws, 5)
        ids = [m["t"] for m in first + second]
        assert ids == list(range(ids[0], ids[0] + 10))  # nothing skipped in between


@pytest.mark.timeout(30)  # far below NEVER: waiting for the handshake is a hang
def test_close_while_connecting_aborts_the_handshake(sim: ExchangeSimulator) -> None:
    """The server never answers the opening handshake (nor would the client give up on
    it before connect_timeout = NEVER): close() cuts it, with the engine thread ended
    and the client socket closed when it returns."""
    sim.accept_delay(NEVER)  # the server would never answer the handshake
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            ws.connect()
        except WebSocketClosedError as exc:
            outcome.append(exc)

    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"), close_timeout=1.0, connect_timeout=NEVER
        )
        t = threading.Thread(target=connect)
        t.start()
        assert wait_for(lambda: sim.handshake_attempts == 1)
        assert wait_for(lambda: sockets_to(sim.port))  # the client's TCP connection is up
        started = time.monotonic()
        ws.close()
        print(f"\nclose() returned after {time.monotonic() - started:.2f} s")  # information only
        assert engine_threads() == []  # joined within close_timeout + 1 s: not waiting
        assert ws.state is ConnectionState.CLOSED
        assert sockets_to(sim.port) == []
        t.join(10)
        assert not t.is_alive()
        assert len(outcome) == 1  # connect() reports that it was closed, not a hang
