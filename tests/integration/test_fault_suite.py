"""Fault suite on the exchange simulator (issue 5), beyond test_manager_faults.py.

TCP reset in the middle of a large message, half-open peers (idle, during reconnect,
during a handover), slow consumers under both overflow policies with exact counts, a
server that accepts then drops after a healthy connection, handshake refusals during
reconnects (401 final; 429 and 503 retried until they stop), close while connecting,
send while not connected, callbacks that raise or block, and reconnect cycles without
growth in threads, file descriptors or memory.

``KSTLIB_WS_LONG=1`` runs the full 10,000 reconnect cycles of the issue (several
minutes); the default suite runs ``DEFAULT_CYCLES``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers import NEVER, engine_threads, no_leaks, open_fds, sockets_to, wait_for

from kstlib.websocket import (
    Connected,
    ConnectionState,
    Disconnected,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketManager,
)
from kstlib.websocket.engine.direct import AWAY
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(90)

FAST: dict[str, Any] = {"reconnect_delay": 0.05, "reconnect_delay_max": 0.2, "close_timeout": 1.0}
TRADES = "btcusdt@trade"

LONG = os.environ.get("KSTLIB_WS_LONG", "") not in ("", "0")
#: One kill -> reconnect cycle takes ~25-50 ms on loopback (2 busy cores, dominated by
#: the opening handshake): 500 fit in ~15-30 s; the full 10,000 take 4-8 minutes.
DEFAULT_CYCLES = 500
FULL_CYCLES = 10_000


def trade_id(msg: Any) -> Any:
    return msg.get("t") if isinstance(msg, dict) else None


def boom(*_args: Any) -> Any:
    raise RuntimeError("callback failure injected by the test")


def text_frame_header(length: int) -> bytes:
    """Header of an unmasked, final text frame of ``length`` bytes (64-bit length form)."""
    return bytes([0x81, 127]) + length.to_bytes(8, "big")


def missing_outside_markers(items: list[Any]) -> list[tuple[int, int]]:
    """Runs of trade ids skipped with no ``Disconnected`` marker in between."""
    runs = []
    last: int | None = None
    marker = False
    for item in items:
        if isinstance(item, Disconnected):
            marker = True
        elif isinstance(item, dict) and isinstance(item.get("t"), int):
            tid = item["t"]
            if last is not None and tid != last + 1 and not marker:
                runs.append((last, tid))
            last, marker = tid, False
    return runs


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def os_thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


# ----------------------------------------------------------------- TCP reset mid-message


def test_reset_in_the_middle_of_a_large_message(sim: ExchangeSimulator) -> None:
    """A RST while a 2 MiB frame is half received: NETWORK_ERROR, nothing partial is
    delivered, and the next connection's parser starts clean (a full 2 MiB arrives
    intact)."""
    size = 2 * 2**20
    half = text_frame_header(size) + b"a" * (size // 2)
    with no_leaks(), WebSocketManager(sim.stream_url(), decode=None, **FAST) as ws:
        before = ws.stats.bytes_received
        assert sim.send_raw(half) == 1
        # the half frame is in the client's parser before the RST
        assert wait_for(lambda: ws.stats.bytes_received >= before + len(half))
        assert ws.stats.messages_received == 0
        sim.reset_all()
        assert wait_for(lambda: ws.stats.disconnects == 1)
        assert ws.stats.last_disconnect_reason is DisconnectReason.NETWORK_ERROR
        assert wait_for(lambda: ws.is_connected and ws.stats.connects == 2)
        assert wait_for(lambda: sim.connection_count == 1)
        assert sim.send_raw(text_frame_header(size) + b"b" * size) == 1
        msg = next(iter(ws.stream()))
        assert msg == "b" * size  # the first message seen: nothing of the cut one
        assert ws.stats.messages_received == 1


@pytest.mark.exchange_simulator(event_rate=1000)
def test_reset_mid_message_while_streaming_keeps_order_and_marks_the_gap(
    sim: ExchangeSimulator,
) -> None:
    with no_leaks():
        with WebSocketManager(sim.stream_url(TRADES), **FAST) as ws:
            items: list[Any] = []
            resets = 0
            for item in ws.stream(events=True):
                items.append(item)
                if isinstance(item, Connected) or len(items) == 50:
                    if resets == 3:
                        break
                    sim.reset_all()  # under load: very likely in the middle of a frame
                    resets += 1
            assert ws.stats.reactive_disconnects == 3
    ids = [i["t"] for i in items if isinstance(i, dict)]
    assert ids == sorted(set(ids)), "an id was repeated or reordered"
    assert missing_outside_markers(items) == []
    assert sum(isinstance(i, Disconnected) for i in items) == 3


# ----------------------------------------------------------------- half-open peer


def test_half_open_idle_connection_is_detected_by_ping_timeout(sim: ExchangeSimulator) -> None:
    # no stream: pings are the only traffic, so only the keepalive can notice
    with (
        no_leaks(),
        WebSocketManager(sim.stream_url(), ping_interval=0.1, ping_timeout=0.3, **FAST) as ws,
    ):
        assert wait_for(lambda: sim.connection_info(0).client_pings >= 1)
        sim.go_silent(True)
        assert wait_for(lambda: ws.stats.disconnects == 1)
        assert ws.stats.last_disconnect_reason is DisconnectReason.PING_TIMEOUT
        assert wait_for(lambda: ws.is_connected and ws.stats.connects == 2)
        sim.go_silent(False)  # the server side learns of the old connection's end
        assert sim.wait_until(lambda: sim.connection_count == 1)


def test_half_open_during_reconnect_is_bounded_by_connect_timeout(
    sim: ExchangeSimulator,
) -> None:
    """The peer goes half-open and so does every new connection (handshake hangs): each
    attempt ends at connect_timeout, the engine keeps trying, and recovers once the
    network comes back; the consumer sees one gap, reason PING_TIMEOUT."""
    with (
        no_leaks(),
        WebSocketManager(
            sim.stream_url(TRADES),
            ping_interval=0.1,
            ping_timeout=0.3,
            connect_timeout=0.3,
            max_reconnect_attempts=None,
            **FAST,
        ) as ws,
    ):
        items: list[Any] = []
        for item in ws.stream(events=True):
            items.append(item)
            if len(items) == 10:
                sim.go_silent(True, include_new=True)
            if isinstance(item, Disconnected):
                # several attempts time out on hanging handshakes, then the network heals
                assert wait_for(lambda: ws.stats.reconnect_attempts >= 3)
                assert ws.state is ConnectionState.RECONNECTING
                sim.go_silent(False)
            if isinstance(item, Connected):
                break
        assert ws.stats.connects == 2 and ws.is_connected
    disc = [i for i in items if isinstance(i, Disconnected)]
    assert len(disc) == 1 and disc[0].reason is DisconnectReason.PING_TIMEOUT


def test_handover_away_from_a_half_open_connection_marks_the_gap(sim: ExchangeSimulator) -> None:
    with no_leaks():
        with WebSocketManager(
            sim.stream_url(TRADES),
            max_connection_age=1.0,
            dedupe_key=trade_id,
            ping_interval=None,
            connect_timeout=1.0,
            **FAST,
        ) as ws:
            items: list[Any] = []
            for item in ws.stream(events=True):
                items.append(item)
                if len(items) == 20:
                    sim.go_silent(True, only=0)  # the rotation will find it stalled
                if ws.stats.handovers + ws.stats.gaps >= 1 and len(items) > 300:
                    break
            stats = ws.stats
        sim.go_silent(False)
    assert missing_outside_markers(items) == []
    assert stats.gaps >= 1


@pytest.mark.exchange_simulator(event_rate=500)
@pytest.mark.slow
def test_rotation_while_the_old_peer_is_half_open_keeps_order_and_marks_the_gap(
    sim: ExchangeSimulator,
) -> None:
    """The old connection goes half-open just before its rotation; the peer comes back
    long after ping_timeout but before connect_timeout. The engine should have declared
    the old one dead (PING_TIMEOUT, a gap) instead of waiting for it to catch up."""
    released = threading.Event()
    with no_leaks():
        with WebSocketManager(
            sim.stream_url(TRADES),
            max_connection_age=1.0,
            dedupe_key=trade_id,
            ping_interval=0.2,
            ping_timeout=1.5,
            connect_timeout=10.0,
            **FAST,
        ) as ws:

            def release_later() -> None:
                # the replacement has streamed 3 s of events: > ping_timeout + interval
                sim.wait_until(
                    lambda: (
                        sim.total_connections >= 2 and sim.connection_info(1).messages_sent >= 1500
                    ),
                    timeout=20,
                )
                sim.go_silent(False)
                released.set()

            releaser = threading.Thread(target=release_later)
            items: list[Any] = []
            after_release = 0
            for item in ws.stream(events=True):
                items.append(item)
                if len(items) == 10:
                    sim.go_silent(True, only=0)
                    releaser.start()
                if released.is_set():
                    after_release += 1
                    if after_release >= 500:
                        break
            releaser.join(20)
    ids = [i["t"] for i in items if isinstance(i, dict)]
    assert missing_outside_markers(items) == []
    assert ids == sorted(set(ids)), "ids repeated or delivered out of order"


# ----------------------------------------------------------------- slow consumer


@pytest.mark.exchange_simulator(event_rate=2000)
def test_slow_consumer_block_loses_nothing_and_applies_back_pressure(
    sim: ExchangeSimulator,
) -> None:
    with no_leaks():
        with WebSocketManager(
            sim.stream_url(TRADES), queue_size=8, queue_overflow="block", **FAST
        ) as ws:
            ids: list[int] = []
            for msg in ws.stream():
                ids.append(msg["t"])
                if len(ids) < 300:
                    time.sleep(0.002)  # slower than the producer (0.5 ms per event)
                if len(ids) == 100:
                    # away longer than the direct read's AWAY: the engine reads again,
                    # fills the queue and must wait for room
                    time.sleep(3 * AWAY)
                if len(ids) == 3000:
                    break
            stats = ws.stats
            blocked = ws._inbox.blocked_puts  # the engine really waited for room
    assert ids == list(range(ids[0], ids[0] + 3000))
    assert stats.messages_dropped == 0
    assert blocked > 0


def test_slow_consumer_drop_oldest_counts_exactly(sim: ExchangeSimulator) -> None:
    """Consumer that reads nothing for a while, then slowly: every message received is
    either delivered or counted as dropped, and what is delivered is the newest, in
    order."""
    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url(TRADES), queue_size=10, queue_overflow="drop_oldest", **FAST
        )
        ws.connect()
        assert wait_for(lambda: ws.stats.messages_received >= 300)
        delivered: list[int] = []
        it = ws.stream()
        for msg in it:
            delivered.append(msg["t"])
            time.sleep(0.01)  # ~100/s against 200/s produced: drops continue
            if len(delivered) == 40:
                break
        ws.close()  # stream() ends after what is still queued
        delivered.extend(m["t"] for m in ws.stream())
        stats = ws.stats
    assert stats.messages_dropped > 0
    assert stats.messages_dropped == stats.messages_received - len(delivered)
    assert delivered == sorted(set(delivered))
    # one connection, whose stream started at id 1: ids 1..received were received, and
    # the newest one was delivered (only the oldest are dropped)
    assert stats.messages_received == sim.connection_info(0).messages_sent
    assert delivered[-1] == stats.messages_received


# ----------------------------------------------------------------- accept then drop


def test_accept_then_drop_after_a_healthy_connection_is_bounded(sim: ExchangeSimulator) -> None:
    """The server starts dropping every new connection right after its handshake: the
    reconnects are bounded by max_reconnect_attempts (no storm), the consumer gets
    WebSocketConnectionError, and a watchdog's connect() recovers once the server is
    fixed."""
    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url(TRADES),
            max_reconnect_attempts=4,
            reconnect_strategy=ReconnectStrategy.IMMEDIATE,
            **FAST,
        )
        ws.connect()
        sim.drop_after_accept(True)
        sim.reset_all()
        with pytest.raises(WebSocketConnectionError):
            for _ in ws.stream():
                pass
        dropped = sim.total_connections - 1
        assert 1 <= dropped <= 4
        assert ws.is_recoverable
        sim.drop_after_accept(False)
        ws.connect()
        assert ws.is_connected
        assert sim.wait_until(lambda: sim.connection_count == 1)
        ws.close()


# ----------------------------------------------------------------- handshake refusals


def test_401_on_reconnect_is_final(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url(TRADES), max_reconnect_attempts=10, **FAST)
        ws.connect()
        sim.refuse_handshake(401)
        sim.reset_all()
        with pytest.raises(WebSocketConnectionError) as info:
            for _ in ws.stream():
                pass
        assert "401" in str(info.value)
        # not retried: one refused handshake after the first (accepted) one. (attempts
        # counts the first connection too, as it was not up for HEALTHY_AFTER seconds.)
        assert sim.refused_handshakes == 1 and sim.handshake_attempts == 2
        assert ws.is_recoverable
        ws.close()


@pytest.mark.parametrize("status", [429, 503])
def test_transient_refusal_at_connect_is_retried(sim: ExchangeSimulator, status: int) -> None:
    sim.refuse_handshake(status, times=2)
    with no_leaks(), WebSocketManager(sim.stream_url(TRADES), **FAST) as ws:
        assert ws.is_connected
        assert sim.refused_handshakes == 2 and sim.handshake_attempts == 3
        assert ws.stats.connects == 1


@pytest.mark.parametrize("status", [429, 503])
def test_transient_refusal_on_reconnect_recovers_when_it_stops(
    sim: ExchangeSimulator, status: int
) -> None:
    with no_leaks():
        with WebSocketManager(sim.stream_url(TRADES), max_reconnect_attempts=None, **FAST) as ws:
            items: list[Any] = []
            for item in ws.stream(events=True):
                items.append(item)
                if len(items) == 5:
                    sim.refuse_handshake(status)  # until told otherwise
                    sim.reset_all()
                if isinstance(item, Disconnected):
                    assert sim.wait_until(lambda: sim.refused_handshakes >= 3)
                    assert ws.state is ConnectionState.RECONNECTING
                    sim.refuse_handshake(None)
                if isinstance(item, Connected):
                    break
            assert ws.is_connected and ws.stats.connects == 2
            assert ws.stats.reconnect_attempts == sim.refused_handshakes + 1


# ----------------------------------------------------------------- close while connecting


@pytest.mark.timeout(30)  # far below NEVER: waiting for the handshake is a hang
@pytest.mark.parametrize("how", ["close", "force_close"])
def test_close_while_connecting_is_bounded_and_leaves_nothing(
    sim: ExchangeSimulator, how: str
) -> None:
    """close() / force_close() during a handshake the server never answers (nor would the
    client give up on it before connect_timeout = NEVER): the handshake is cut, the
    engine thread has ended and the client socket is closed when the call returns."""
    sim.accept_delay(NEVER)  # TCP accepted at once, HTTP 101 never
    fds_before = open_fds()
    ws = WebSocketManager(sim.stream_url(TRADES), close_timeout=1.0, connect_timeout=NEVER)
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            ws.connect()
        except BaseException as exc:
            errors.append(exc)

    connector = threading.Thread(target=connect)
    connector.start()
    assert sim.wait_until(lambda: sim.handshake_attempts == 1)
    assert wait_for(lambda: sockets_to(sim.port))  # the client's TCP connection is up
    assert ws.state is ConnectionState.CONNECTING
    started = time.monotonic()
    getattr(ws, how)()
    print(f"\n{how}() returned after {time.monotonic() - started:.2f} s")  # information only
    # close() joins the engine thread for at most close_timeout + 1 s: a thread still
    # alive here means it was still waiting for the handshake
    assert engine_threads() == []
    assert ws.state is ConnectionState.CLOSED
    assert sockets_to(sim.port) == []  # the client end of the pending handshake is closed
    connector.join(5)
    assert not connector.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], WebSocketClosedError)
    assert sim.total_connections == 0
    sim.stop()  # ends the server's end of the pending handshake (stop() is idempotent)
    assert wait_for(lambda: open_fds() <= fds_before, timeout=5)


# ----------------------------------------------------------------- send while not connected


def test_send_while_reconnecting_raises_a_clear_error(sim: ExchangeSimulator) -> None:
    with no_leaks():
        ws = WebSocketManager(sim.stream_url(TRADES), max_reconnect_attempts=None, **FAST)
        ws.connect()
        sim.refuse_handshake(503)  # keep it reconnecting
        sim.reset_all()
        assert wait_for(lambda: ws.state is ConnectionState.RECONNECTING)
        with pytest.raises(WebSocketClosedError) as info:
            ws.send({"method": "LIST_SUBSCRIPTIONS", "id": 1})
        assert "not connected" in str(info.value)
        assert "RECONNECTING" in str(info.value)
        # the failed send changed nothing: the engine recovers and sends work again
        sim.refuse_handshake(None)
        assert wait_for(lambda: ws.is_connected and ws.stats.connects == 2)
        ws.send({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        assert sim.wait_until(lambda: len(sim.received(-1)) == 1)
        assert '"id":2' in str(sim.received(-1)[0])
        ws.close()
        with pytest.raises(WebSocketClosedError):
            ws.send("after close")


def test_send_while_connecting_raises(sim: ExchangeSimulator) -> None:
    sim.accept_delay(2.0)
    with no_leaks():
        ws = WebSocketManager(sim.stream_url(TRADES), **FAST)
        connector = threading.Thread(target=ws.connect)
        connector.start()
        assert sim.wait_until(lambda: sim.handshake_attempts == 1)
        with pytest.raises(WebSocketClosedError, match="not connected"):
            ws.send("too early")
        connector.join(10)
        assert ws.is_connected
        ws.close()
    assert sim.received(0) == []


# ----------------------------------------------------------------- callbacks that raise


def _scenario_on_connect(
    ws_kwargs: dict[str, Any],
) -> Callable[[WebSocketManager, ExchangeSimulator], int]:
    ws_kwargs["on_connect"] = boom

    def drive(ws: WebSocketManager, sim: ExchangeSimulator) -> int:
        ws.kill()
        assert wait_for(lambda: ws.is_connected and ws.stats.connects == 2)
        return 2

    return drive


def _scenario_on_disconnect(
    ws_kwargs: dict[str, Any],
) -> Callable[[WebSocketManager, ExchangeSimulator], int]:
    ws_kwargs["on_disconnect"] = boom

    def drive(ws: WebSocketManager, sim: ExchangeSimulator) -> int:
        ws.kill()
        assert wait_for(lambda: ws.is_connected and ws.stats.connects == 2)
        sim.close_all(1001, "going away")
        assert wait_for(lambda: ws.is_connected and ws.stats.connects == 3)
        return 2

    return drive


def _scenario_should_disconnect(
    ws_kwargs: dict[str, Any],
) -> Callable[[WebSocketManager, ExchangeSimulator], int]:
    ws_kwargs.update(should_disconnect=boom, disconnect_check_interval=0.02)

    def drive(ws: WebSocketManager, sim: ExchangeSimulator) -> int:
        assert wait_for(lambda: ws.stats.callback_errors >= 5)
        assert ws.stats.disconnects == 0  # a raising check is not a "yes"
        return -1

    return drive


def _scenario_should_reconnect(
    ws_kwargs: dict[str, Any],
) -> Callable[[WebSocketManager, ExchangeSimulator], int]:
    healed = threading.Event()

    def should_reconnect() -> bool:
        if not healed.is_set():
            raise RuntimeError("should_reconnect failure injected by the test")
        return True

    ws_kwargs.update(should_reconnect=should_reconnect, reconnect_check_interval=0.02)

    def drive(ws: WebSocketManager, sim: ExchangeSimulator) -> int:
        ws.disconnect()
        assert ws.state is ConnectionState.DISCONNECTED
        assert wait_for(lambda: ws.stats.callback_errors >= 5)
        assert ws.state is ConnectionState.DISCONNECTED and not ws.is_dead
        healed.set()
        assert wait_for(lambda: ws.is_connected and ws.stats.connects == 2)
        return -1

    return drive


def _scenario_dedupe_key(
    ws_kwargs: dict[str, Any],
) -> Callable[[WebSocketManager, ExchangeSimulator], int]:
    ws_kwargs.update(dedupe_key=boom, max_connection_age=0.3, connect_timeout=0.5)

    def drive(ws: WebSocketManager, sim: ExchangeSimulator) -> int:
        # without keys the overlap cannot be matched: the switch happens at the deadline
        assert wait_for(lambda: ws.stats.handovers >= 2)
        assert ws.stats.callback_errors > 0
        return -1

    return drive


def _scenario_on_message(
    ws_kwargs: dict[str, Any],
) -> Callable[[WebSocketManager, ExchangeSimulator], int]:
    calls = [0]

    def on_message(msg: Any) -> None:
        calls[0] += 1
        if calls[0] % 2:
            raise ValueError("on_message failure injected by the test")

    ws_kwargs["on_message"] = on_message

    def drive(ws: WebSocketManager, sim: ExchangeSimulator) -> int:
        assert wait_for(lambda: calls[0] >= 40)
        ws.kill()  # the engine is intact: it reconnects and keeps delivering
        assert wait_for(lambda: ws.stats.connects == 2)
        seen = calls[0]
        assert wait_for(lambda: calls[0] >= seen + 20)
        ws.close()  # freeze the counters: every odd call raised
        return (calls[0] + 1) // 2

    return drive


def _scenario_before_connect_and_on_error(
    ws_kwargs: dict[str, Any],
) -> Callable[[WebSocketManager, ExchangeSimulator], int]:
    ws_kwargs.update(before_connect=boom, on_error=boom)

    def drive(ws: WebSocketManager, sim: ExchangeSimulator) -> int:
        ws.kill()
        assert wait_for(lambda: ws.is_connected and ws.stats.connects == 2)
        return 4  # each before_connect error, and on_error raising while reporting it

    return drive


def _scenario_should_handover(
    ws_kwargs: dict[str, Any],
) -> Callable[[WebSocketManager, ExchangeSimulator], int]:
    ws_kwargs.update(should_handover=boom, dedupe_key=trade_id)

    def drive(ws: WebSocketManager, sim: ExchangeSimulator) -> int:
        assert wait_for(lambda: ws.stats.callback_errors >= 20)
        assert ws.stats.handovers == 0  # a raising hook is not a "yes"
        return -1

    return drive


@pytest.mark.parametrize(
    "scenario",
    [
        _scenario_on_connect,
        _scenario_on_disconnect,
        _scenario_should_disconnect,
        _scenario_should_reconnect,
        _scenario_dedupe_key,
        _scenario_on_message,
        _scenario_before_connect_and_on_error,
        _scenario_should_handover,
    ],
    ids=lambda f: f.__name__.removeprefix("_scenario_"),
)
def test_raising_callback_is_counted_and_never_kills_the_engine(
    sim: ExchangeSimulator,
    scenario: Callable[[dict[str, Any]], Callable[[WebSocketManager, ExchangeSimulator], int]],
) -> None:
    kwargs: dict[str, Any] = dict(FAST)
    drive = scenario(kwargs)
    with no_leaks():
        ws = WebSocketManager(sim.stream_url(TRADES), **kwargs)
        ws.connect()

        def main_engine_threads() -> list[Any]:
            # not the short-lived closer threads of a handover
            return [t for t in engine_threads() if not t.name.endswith("-closer")]

        thread = main_engine_threads()
        expected = drive(ws, sim)
        if expected >= 0:
            assert ws.stats.callback_errors == expected
        else:
            assert ws.stats.callback_errors > 0
        if ws.state is not ConnectionState.CLOSED:
            # the same engine thread still serves, and data still flows
            assert main_engine_threads() == thread and ws.is_connected
            before = ws.stats.messages_received
            assert wait_for(lambda: ws.stats.messages_received > before + 10)
            ws.close()
        assert ws.state is ConnectionState.CLOSED


# ----------------------------------------------------------------- callbacks that block


@pytest.mark.timeout(30)
def test_callbacks_that_block_delay_but_break_nothing(sim: ExchangeSimulator) -> None:
    """on_connect and should_disconnect block 0.5 s each time, the consumer's first
    message handling blocks too: the stream only lags, nothing is lost, and close()
    stays bounded: it waits for the check already running, starts no other one, and
    the engine thread has ended when it returns."""

    def slow_connect() -> None:
        time.sleep(0.5)

    checks = [0]

    def slow_check() -> bool:
        checks[0] += 1
        time.sleep(0.5)
        return False

    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url(TRADES),
            on_connect=slow_connect,
            should_disconnect=slow_check,
            disconnect_check_interval=0.1,
            ping_interval=0.2,
            ping_timeout=2.0,
            **{**FAST, "close_timeout": 1.0},
        )
        ws.connect()
        ids: list[int] = []
        for msg in ws.stream():
            ids.append(msg["t"])
            if len(ids) == 1:
                time.sleep(0.5)  # a slow consumer step
            if checks[0] >= 3 and len(ids) >= 400:
                break
        assert ws.is_connected and ws.stats.disconnects == 0  # no false ping timeout
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        checks_before = checks[0]
        started = time.monotonic()
        ws.close()
        print(f"\nclose() returned after {time.monotonic() - started:.2f} s")  # information only
        # close() joins the engine thread for at most close_timeout + 1 s: had it waited
        # for more than the check in progress, the thread would still be alive here
        assert engine_threads() == []
        assert ws.state is ConnectionState.CLOSED
        assert checks[0] <= checks_before + 1  # one check may have been starting
        assert sockets_to(sim.port) == []


def test_on_message_blocking_does_not_cause_a_false_ping_timeout(sim: ExchangeSimulator) -> None:
    ids: list[int] = []

    def on_message(msg: Any) -> None:
        if len(ids) < 4:
            time.sleep(0.5)  # 2 s of stalls in total, each shorter than ping_timeout
        ids.append(msg["t"])

    with no_leaks():
        with WebSocketManager(
            sim.stream_url(TRADES),
            on_message=on_message,
            ping_interval=0.2,
            ping_timeout=1.0,
            **FAST,
        ) as ws:
            assert wait_for(lambda: len(ids) >= 600)
            stats = ws.stats
    assert stats.disconnects == 0, stats.disconnects_by_reason
    assert ids == list(range(ids[0], ids[0] + len(ids)))


@pytest.mark.exchange_simulator(event_rate=50)
@pytest.mark.timeout(30)  # less than draining the backlog through on_message would take
def test_close_is_bounded_while_on_message_blocks(sim: ExchangeSimulator) -> None:
    """on_message blocks 0.5 s per message and a backlog of 100+ messages waits in the
    socket: close() ends the calls (at most the one running finishes) instead of
    draining the backlog (50+ s), and the engine thread has ended when it returns."""
    calls = [0]

    def slow(msg: Any) -> None:
        calls[0] += 1
        time.sleep(0.5)

    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url(TRADES), on_message=slow, **{**FAST, "close_timeout": 1.0}
        )
        ws.connect()
        assert wait_for(lambda: calls[0] >= 3)
        # a backlog builds up: the server has sent 100 more messages than were handled
        assert sim.wait_until(
            lambda: sim.connection_info(0).messages_sent >= calls[0] + 100, timeout=20
        )
        calls_before = calls[0]
        started = time.monotonic()
        ws.close()
        print(f"\nclose() returned after {time.monotonic() - started:.2f} s")  # information only
        alive = engine_threads()
        state = ws.state
        calls_after = calls[0]
        assert alive == [] and state is ConnectionState.CLOSED
        assert calls_after <= calls_before + 1  # one call may have been starting
        assert sockets_to(sim.port) == []


# ----------------------------------------------------------------- reconnect cycles


@pytest.mark.slow
@pytest.mark.timeout(1200 if LONG else 90)
@pytest.mark.exchange_simulator(event_rate=50, history=100)
def test_reconnect_cycles_do_not_grow_threads_fds_or_memory(
    sim: ExchangeSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """kill -> reconnect, over and over (IMMEDIATE strategy, a live stream): the thread
    count, the descriptors and the RSS come back to their warmed-up baseline."""
    # every kill logs a warning, which pytest would keep in memory for the report
    caplog.set_level(logging.CRITICAL, logger="kstlib.websocket")
    cycles = FULL_CYCLES if LONG else DEFAULT_CYCLES
    warmup = 150
    connected = threading.Event()
    ws = WebSocketManager(
        sim.stream_url(TRADES),
        reconnect_strategy=ReconnectStrategy.IMMEDIATE,
        # kills come faster than HEALTHY_AFTER: without this the attempt counter,
        # which only resets after a healthy connection, would give up after 10
        max_reconnect_attempts=None,
        on_connect=connected.set,
        **FAST,
    )
    ws.connect()
    # a consumer drains the stream: unread messages would pile up in the inbox (each
    # disconnect queues its last batch past queue_size) and look like a leak
    consumed = [0]

    def consume() -> None:
        for _ in ws.stream():
            consumed[0] += 1

    consumer = threading.Thread(target=consume, name="cycles-consumer")
    consumer.start()

    def cycle() -> None:
        connected.clear()
        ws.kill()
        assert connected.wait(10), f"no reconnect after kill; stats {ws.stats}"

    for _ in range(warmup):
        cycle()
    assert sim.wait_until(lambda: sim.connection_count == 1)
    threads0, tasks0, fds0, rss0 = (
        threading.active_count(),
        os_thread_count(),
        len(open_fds()),
        rss_kib(),
    )
    started = time.monotonic()
    for _ in range(cycles):
        cycle()
    elapsed = time.monotonic() - started
    assert sim.wait_until(lambda: sim.connection_count == 1)
    assert wait_for(lambda: len(open_fds()) <= fds0)
    threads1, tasks1, fds1, rss1 = (
        threading.active_count(),
        os_thread_count(),
        len(open_fds()),
        rss_kib(),
    )
    stats = ws.stats
    ws.close()
    consumer.join(10)
    assert not consumer.is_alive() and consumed[0] > 0
    print(
        f"\n{cycles} reconnect cycles in {elapsed:.1f} s ({elapsed / cycles * 1000:.1f} ms "
        f"each): threads {threads0}->{threads1}, OS threads {tasks0}->{tasks1}, "
        f"fds {fds0}->{fds1}, RSS {rss0} KiB->{rss1} KiB"
    )
    assert stats.connects == 1 + warmup + cycles
    assert stats.disconnects_by_reason == {DisconnectReason.KILLED: warmup + cycles}
    assert (threads1, tasks1) == (threads0, tasks0)
    assert fds1 <= fds0
    assert rss1 - rss0 < 10 * 1024, f"RSS grew by {(rss1 - rss0) / 1024:.1f} MiB"
