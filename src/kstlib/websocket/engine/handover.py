"""Make-before-break rotation of the current connection.

:func:`rotate` opens and subscribes a new connection while the old one still streams
(the old one's unread data waits in the kernel meanwhile), then reads both: the old
stream is still delivered and its keys remembered; the new stream is held back (see
:mod:`.overlap`). The old connection's keepalive keeps running, so a half-open old peer
is declared dead rather than waited for. The engine switches once the overlap is decided,
or the old connection ends, or ``connect_timeout`` passes: the old connection gets a close
frame (finished on a closer thread), the held messages are delivered without duplicates,
and the new connection becomes current. Unless the overlap proved the streams joined,
the switch is reported as a gap, with markers, like any reconnect.

A pending command (close, kill...) aborts the handover and is handled on the old
connection; so does a failure of the new one (counted in ``handover_failures``).

Thread-safety: the engine thread only.
"""

from __future__ import annotations

import logging
import select
from typing import Any

from kstlib.websocket.exceptions import WebSocketError
from kstlib.websocket.models import Connected, DisconnectReason

from .closing import Ending, close_in_background, lost, record
from .connector import open_link, subscribe
from .control import after_controls, answer_controls, send_ping
from .link import Link
from .overlap import Overlap, Verdict
from .runtime import READ_BUFFER_SIZE, Runtime
from .target import resolve

__all__ = ["rotate"]

log = logging.getLogger("kstlib.websocket")
_R = DisconnectReason


def rotate(rt: Runtime, old: Link, reason: DisconnectReason) -> Link | Ending | None:
    """Rotate ``old``: the new link; None if the new connection failed (the old one
    stays); an ``Ending`` if the old one ended and the new one failed too."""
    started = rt.clock.monotonic()
    prepared = _open_new(rt)
    if prepared is None:
        return None
    new, subscribed = prepared
    rotation = _Rotation(rt, old, new)
    if not rotation.overlap_until_decided():
        return rotation.old_ending
    return rotation.switch(reason, subscribed, started)


def _open_new(rt: Runtime) -> tuple[Link, int] | None:
    try:
        target = resolve(rt)
        new = open_link(rt, target)
    except (WebSocketError, OSError) as exc:
        _failed(rt, exc)
        return None
    try:
        subscribed = subscribe(rt, new, target)
    except WebSocketError as exc:
        _drop(rt, new)
        _failed(rt, exc)
        return None
    if subscribed is None:  # stopping
        _drop(rt, new)
        return None
    return new, subscribed


def _drop(rt: Runtime, link: Link) -> None:
    rt.subscriptions.forget(link)
    link.abort()


def _failed(rt: Runtime, exc: BaseException) -> None:
    log.warning("handover failed, staying on the current connection: %s", exc)
    rt.counters.add("handover_failures")
    rt.callbacks.report(exc)


class _Rotation:
    """The two connections of one handover, read side by side."""

    def __init__(self, rt: Runtime, old: Link, new: Link) -> None:
        self.rt, self.old, self.new = rt, old, new
        key_of = rt.settings.dedupe_key
        assert key_of is not None
        self.overlap = Overlap(lambda m: rt.callbacks.key(key_of, m))
        self.old_ending: Ending | None = None
        self._new_buf = bytearray(READ_BUFFER_SIZE)
        self._pending = new.take_leftover()
        self._held_bytes = 0  # payload of the new stream's held messages
        self._poller = select.poll()
        for fd in (old.fileno(), new.fileno(), rt.mailbox.fileno()):
            self._poller.register(fd, select.POLLIN)

    def overlap_until_decided(self) -> bool:
        """Read both streams until it is time to switch (True) or the handover is
        abandoned (False: the new connection failed, or a command is pending)."""
        rt = self.rt
        deadline = rt.clock.monotonic() + rt.settings.connect_timeout
        while not self.overlap.decided:
            if self.old_ending is None:
                self.old_ending = self._pump_old()
            now = rt.clock.monotonic()
            if self.old_ending is None:
                self.old_ending = self._old_keepalive(now)
            failure = self._pump_new()
            if failure is not None:
                _drop(rt, self.new)
                _failed(rt, failure)
                return False
            if self.old_ending is not None or now >= deadline:
                return True
            if rt.mailbox.pending:  # close / kill / disconnect: back to the old link
                _drop(rt, self.new)
                return False
            if not self.overlap.decided:
                self._poller.poll(50)
        return True

    def _pump_old(self) -> Ending | None:
        """One read of the old connection: delivered as usual unless it shows a hole."""
        rt, old = self.rt, self.old
        try:
            n = old.read_into(rt.buf)
        except OSError as exc:
            return lost(rt, old, _R.NETWORK_ERROR, exc)
        if n == 0:
            return lost(rt, old, _R.NETWORK_ERROR, EOFError("connection closed by peer (EOF)"))
        if n < 0:
            return None
        msgs = old.protocol.receive_data(memoryview(rt.buf)[:n])
        if msgs and self.overlap.old_batch(msgs):
            rt.delivery.deliver(msgs, nbytes=old.protocol.batch_bytes)
            rt.delivery.handover_wanted = False
        return after_controls(rt, old) if old.protocol.has_news else None

    def _old_keepalive(self, now: float) -> Ending | None:
        old = self.old
        if old.keepalive.expired(now):
            old.abort()
            return Ending(_R.PING_TIMEOUT, None, "no pong during the handover")
        if old.keepalive.ping_due(now):
            try:
                send_ping(self.rt, old, now)
            except (OSError, WebSocketError) as exc:
                return lost(self.rt, old, _R.NETWORK_ERROR, exc)
        return None

    def _pump_new(self) -> BaseException | None:
        """One read of the new connection, held back; the error if it broke."""
        new = self.new
        chunk: Any = self._pending
        self._pending = None
        if chunk is None:
            try:
                n = new.read_into(self._new_buf)
            except OSError as exc:
                return exc
            if n == 0:
                return EOFError("new connection closed during the handover")
            if n < 0:
                return None
            chunk = memoryview(self._new_buf)[:n]
        msgs = new.protocol.receive_data(chunk)
        if msgs:
            self.overlap.new_batch(msgs)
            self._held_bytes += new.protocol.batch_bytes
        return self._new_controls() if new.protocol.has_news else None

    def _new_controls(self) -> BaseException | None:
        protocol = self.new.protocol
        try:
            answer_controls(self.rt, self.new)
        except (OSError, WebSocketError) as exc:
            return exc
        if protocol.close_received is not None:
            return EOFError("new connection closed during the handover")
        return protocol.error

    def switch(self, reason: DisconnectReason, subscribed: int, started: float) -> Link:
        """Make the new connection current and book the old one's end."""
        rt, old, new = self.rt, self.old, self.new
        old_ending = self.old_ending
        if old_ending is None:
            close_in_background(rt, old, reason.value)
            old_ending = Ending(reason, 1000, reason.value)
        rt.counters.retire(old)
        new.connected_at = rt.clock.monotonic()
        rt.counters.attach(new)
        rt.state.count_connection()
        rt.counters.add("handovers")
        rt.counters.add("overlap_seconds", new.connected_at - started)
        caught_up = self.overlap.verdict is Verdict.CAUGHT_UP
        record(rt, old, old_ending, gap=not caught_up)
        fresh, dups = self.overlap.fresh_held()
        rt.delivery.dedupe_after_handover(self.overlap.seen)
        rt.counters.add("duplicates_dropped", dups)
        self._log(reason, dups, caught_up)
        if not caught_up:
            rt.counters.forget_gap()  # the new connection was up all along
            rt.delivery.marker(Connected(rt.clock.time(), subscribed, True))
        if fresh:
            held = len(self.overlap.held)
            rt.delivery.deliver(fresh, nbytes=self._held_bytes * len(fresh) // held)
        rt.callbacks.call("on_connect", rt.settings.on_connect)
        return new

    @staticmethod
    def _log(reason: DisconnectReason, dups: int, caught_up: bool) -> None:
        log.info(
            "handover completed (%s): %d duplicate(s) dropped%s",
            reason.name,
            dups,
            "" if caught_up else "; no overlap seen, reported as a gap",
        )
