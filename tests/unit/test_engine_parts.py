"""The engine's pure parts, driven by a fake clock with no socket and no sleep:
keepalive, proactive policy, handover overlap, state machine, mailbox, counters."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from kstlib.websocket.engine import IllegalTransitionError, StateMachine, StopMode
from kstlib.websocket.engine.keepalive import Keepalive
from kstlib.websocket.engine.mailbox import Mailbox
from kstlib.websocket.engine.overlap import Overlap, RecentKeys, Verdict
from kstlib.websocket.engine.policy import ProactivePolicy
from kstlib.websocket.engine.stats import Counters
from kstlib.websocket.exceptions import WebSocketClosedError, WebSocketTimeoutError
from kstlib.websocket.models import ConnectionState, DisconnectReason


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1.7e9 + self.now


# ---------------------------------------------------------------------------- keepalive


def test_keepalive_pings_every_interval_and_waits_for_the_first_unanswered_pong() -> None:
    ka = Keepalive(interval=30.0, timeout=10.0, now=0.0)
    assert not ka.ping_due(29.9) and ka.ping_due(30.0)
    ka.ping_sent(30.0, waits=True)
    assert ka.pong_deadline == 40.0 and ka.next_ping == 60.0
    assert not ka.expired(39.9) and ka.expired(40.0)
    ka.ping_sent(60.0, waits=False)  # a later ping does not move the awaited deadline
    assert ka.pong_deadline == 40.0
    assert ka.pong_received(42.5) == 12.5  # the round trip of the awaited ping
    assert not ka.expired(1e9) and ka.wake_at() == 90.0


def test_keepalive_credits_time_held_back_by_the_consumer() -> None:
    ka = Keepalive(interval=5.0, timeout=2.0, now=0.0)
    ka.ping_sent(5.0, waits=True)
    ka.credit(3.0)
    assert ka.next_ping == 13.0 and ka.pong_deadline == 10.0
    assert not ka.expired(9.9)


def test_keepalive_without_interval_never_wakes() -> None:
    ka = Keepalive(interval=None, timeout=10.0, now=0.0)
    assert not ka.ping_due(1e12) and ka.wake_at() == math.inf
    ka.credit(5.0)
    assert ka.pong_deadline == math.inf


def test_data_deadline_follows_each_data_message_and_the_credit() -> None:
    ka = Keepalive(interval=None, timeout=10.0, now=0.0, receive_timeout=5.0)
    assert ka.wake_at() == 5.0 and not ka.data_expired(4.9)
    ka.data_received(3.0)
    assert not ka.data_expired(7.9) and ka.data_expired(8.0)
    ka.credit(2.0)  # the consumer held the engine back: that time does not count
    assert not ka.data_expired(9.9) and ka.data_expired(10.0)
    off = Keepalive(interval=None, timeout=10.0, now=0.0)
    off.data_received(1.0)
    assert not off.data_expired(1e12)


# ---------------------------------------------------------------------------- policy


def test_policy_checks_only_when_should_disconnect_is_set() -> None:
    idle = ProactivePolicy(check_interval=None, max_age=None, connected_at=0.0, now=0.0)
    assert not idle.check_due(1e9) and idle.wake_at() == math.inf
    p = ProactivePolicy(check_interval=5.0, max_age=None, connected_at=0.0, now=0.0)
    assert not p.check_due(4.9) and p.check_due(5.0)
    assert not p.check_due(9.9) and p.check_due(10.0)  # re-armed from the check


def test_policy_rotations_fire_once_each() -> None:
    p = ProactivePolicy(check_interval=None, max_age=100.0, connected_at=10.0, now=10.0)
    assert p.rotation_due(109.9) is None
    assert p.rotation_due(110.0) is DisconnectReason.CONNECTION_LIMIT
    assert p.rotation_due(200.0) is None
    p.schedule_rotation(250.0)
    assert p.wake_at() == 250.0
    assert p.rotation_due(250.0) is DisconnectReason.SCHEDULED
    assert p.rotation_due(300.0) is None


# ---------------------------------------------------------------------------- overlap


def key(msg: Any) -> Any:
    return msg.get("t") if isinstance(msg, dict) else None


def msgs(*ids: int) -> list[dict[str, int]]:
    return [{"t": i} for i in ids]


def test_overlap_catches_up_when_the_old_stream_delivers_the_new_first() -> None:
    o = Overlap(key)
    assert o.old_batch(msgs(1, 2, 3))
    o.new_batch(msgs(4, 5))
    assert o.verdict is Verdict.PENDING
    assert o.old_batch(msgs(4, 5, 6))  # delivered: the old stream reached the new one
    assert o.verdict is Verdict.CAUGHT_UP
    fresh, dups = o.fresh_held()
    assert fresh == [] and dups == 2


def test_overlap_catches_up_when_the_new_stream_starts_inside_the_old() -> None:
    o = Overlap(key)
    o.old_batch(msgs(1, 2, 3, 4))
    o.new_batch(msgs(3, 4, 5))
    assert o.verdict is Verdict.CAUGHT_UP
    assert o.fresh_held() == (msgs(5), 2)


def test_overlap_reports_a_hole_when_the_old_stream_skipped_data() -> None:
    o = Overlap(key)
    o.old_batch(msgs(1, 2))
    o.new_batch(msgs(5, 6, 7))
    assert not o.old_batch(msgs(6, 7))  # 5 never came: that batch is not delivered
    assert o.verdict is Verdict.HOLE
    assert o.fresh_held() == (msgs(5, 6, 7), 0)


def test_overlap_ignores_messages_without_a_key() -> None:
    o = Overlap(key)
    o.new_batch(["pong", *msgs(9)])
    o.old_batch(["pong"])
    assert o.verdict is Verdict.PENDING
    assert o.fresh_held() == (["pong", *msgs(9)], 0)


def test_recent_keys_is_bounded() -> None:
    keys = RecentKeys(3)
    for k in range(5):
        keys.add(k)
    assert len(keys) == 3 and 1 not in keys and 4 in keys


# ---------------------------------------------------------------------------- state machine


def test_state_machine_allows_only_the_table() -> None:
    sm = StateMachine(threading.Condition(), FakeClock())
    with pytest.raises(IllegalTransitionError):
        sm.transition(ConnectionState.CONNECTED)  # DISCONNECTED -> CONNECTED skips a step
    sm.transition(ConnectionState.CONNECTING)
    sm.connected()
    assert sm.state is ConnectionState.CONNECTED and sm.connect_count == 1
    sm.close_out()
    assert sm.state is ConnectionState.CLOSED
    with pytest.raises(IllegalTransitionError):
        sm.transition(ConnectionState.RECONNECTING)


def test_wait_connected_raises_the_terminal_error_of_a_dead_engine() -> None:
    sm = StateMachine(threading.Condition(), FakeClock())
    sm.terminal_error = WebSocketClosedError(1008, "policy")
    with pytest.raises(WebSocketClosedError) as exc:
        sm.wait_connected(since=0, timeout=None)
    assert exc.value.code == 1008


def test_wait_connected_times_out_on_the_clock() -> None:
    clock = FakeClock()
    control = threading.Condition()
    sm = StateMachine(control, clock)
    sm.dead = False

    def later() -> None:  # the waiter's next look at the clock is past its deadline
        with control:
            clock.now += 10.0
            control.notify_all()

    timer = threading.Timer(0.05, later)
    timer.start()
    with pytest.raises(WebSocketTimeoutError):
        sm.wait_connected(since=0, timeout=5.0)
    timer.join()


# ---------------------------------------------------------------------------- mailbox


def test_mailbox_coalesces_and_keeps_stop_and_soft_until_taken() -> None:
    box = Mailbox(threading.Condition(), FakeClock())
    box.open()
    try:
        box.post_disconnect()
        box.post_disconnect()
        box.post_soft()
        box.post_connect(at=12.0)
        assert box.pending
        cmds = box.take()
        assert cmds.disconnect and cmds.soft and cmds.schedule_at == 12.0 and cmds.stop is None
        again = box.take()
        assert not again.disconnect and again.schedule_at is None and again.soft
        assert not box.pending
        box.post_stop(StopMode.FORCE)
        box.post_stop(StopMode.CLOSE)  # a forced stop is never softened
        assert box.take().stop is StopMode.FORCE and box.pending
        assert box.take_soft() and not box.take_soft()
    finally:
        box.close()


def test_mailbox_wakes_a_sleeping_engine() -> None:
    box = Mailbox(threading.Condition(), FakeClock())
    box.open()
    try:
        done = threading.Event()

        def engine() -> None:
            box.sleep(3600.0)
            done.set()

        t = threading.Thread(target=engine)
        t.start()
        box.post_kill()
        assert done.wait(30.0)
        t.join()
    finally:
        box.close()


def test_wait_ack_returns_on_the_ack() -> None:
    control = threading.Condition()
    box = Mailbox(control, FakeClock())
    box.open()
    try:
        seq = box.post_disconnect()
        threading.Timer(0.01, box.ack).start()
        box.wait_ack(seq, timeout=3600.0, dead=lambda: False)  # returns only on the ack
    finally:
        box.close()


# ---------------------------------------------------------------------------- counters


def test_counters_book_each_disconnect_once_and_time_the_gaps() -> None:
    clock = FakeClock(100.0)
    c = Counters(clock)
    assert c.connected(100.0) is True
    c.disconnected(DisconnectReason.PING_TIMEOUT, gap=True)
    clock.now = 103.0
    assert c.connected(103.0) is False
    c.disconnected(DisconnectReason.SCHEDULED, gap=False)
    clock.now = 110.0
    s = c.snapshot(connects=2, dropped=7, queued_bytes=42)
    assert (s.disconnects, s.proactive_disconnects, s.reactive_disconnects) == (2, 1, 1)
    assert s.gaps == 1 and s.gap_seconds == 3.0 and s.messages_dropped == 7
    assert s.queued_bytes == 42
    assert s.last_disconnect_reason is DisconnectReason.SCHEDULED
    assert s.uptime == 10.0
