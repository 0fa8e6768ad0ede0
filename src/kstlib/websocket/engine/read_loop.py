"""Serving one connection: wait, read, parse, deliver, answer, and run its timers.

:func:`serve` runs until the connection ends and returns why; a make-before-break
handover swaps in its successor and serving goes on there. Each turn of the loop:

1. reads once (never more than one read between looks at commands and timers) and
   hands the batch of complete messages to delivery;
2. answers the peer's control frames, or ends on its close frame or a violation;
3. takes the user's commands (close, kill, disconnect, schedule...);
4. runs the timers: keepalive ping and pong deadline, ``should_disconnect``, connection
   age and scheduled rotation (a handover when it is on, else a closing handshake);
5. when the read found nothing, or a short read emptied the socket, sleeps in ``poll``
   until data, a command or the next timer (so an idle socket costs no failing read).

Thread-safety: the engine thread only.
"""

from __future__ import annotations

import logging
import select
from typing import Any

from kstlib.websocket.exceptions import WebSocketError
from kstlib.websocket.models import ConnectionState, DisconnectReason

from . import handover
from .clock import poll_ms
from .closing import Ending, graceful, lost
from .control import after_controls, send_heartbeat, send_ping
from .direct import DirectRead
from .link import Link
from .mailbox import StopMode
from .overlap import handover_enabled
from .policy import ProactivePolicy
from .runtime import Runtime
from .watch import WATCH

__all__ = ["serve"]

log = logging.getLogger("kstlib.websocket")
_R = DisconnectReason
_EOF = "connection closed by peer (EOF)"


def serve(rt: Runtime, link: Link) -> tuple[Link, Ending]:
    """Serve connections until one ends: returns it and why."""
    try:
        while True:
            out = _Serving(rt, link).run()
            if isinstance(out, Ending):
                return link, out
            link = out
    finally:
        rt.direct.forget()


class _Serving:
    """One connection's loop (see the module docstring)."""

    def __init__(self, rt: Runtime, link: Link) -> None:
        s = rt.settings
        self.rt = rt
        self.link = link
        self.policy = ProactivePolicy(
            check_interval=s.disconnect_check_interval if s.should_disconnect else None,
            max_age=s.max_connection_age,
            connected_at=link.connected_at,
            now=rt.clock.monotonic(),
        )
        self.rotation: DisconnectReason | None = None
        self.poller = select.poll()
        self.poller.register(link.fileno(), select.POLLIN)
        self.poller.register(rt.mailbox.fileno(), select.POLLIN)
        self.lent_poller: select.poll | None = None
        #: Delivery runs no callback that must stay on the engine thread.
        self.lendable = s.on_message is None and s.on_batch is None

    def run(self) -> Ending | Link:
        rt, link = self.rt, self.link
        buf = rt.buf
        read_frames = link.read_frames
        protocol = link.protocol
        mailbox = rt.mailbox
        pending = link.take_leftover()
        while True:
            msgs: list[Any] | None
            if pending is not None:  # what came with the handshake's response
                msgs, n = protocol.receive_data(pending), len(pending)
                nbytes, pending = protocol.batch_bytes, None
            else:
                try:
                    got = read_frames(buf)
                except OSError as exc:
                    return lost(rt, link, _R.NETWORK_ERROR, exc)
                if got is None:  # nothing to read
                    msgs, n, nbytes = None, -1, 0
                else:
                    msgs, controls, error, n, nbytes = got
                    if n == 0:
                        return lost(rt, link, _R.NETWORK_ERROR, EOFError(_EOF))
                    if controls or error is not None:
                        protocol.received(controls, error)
            if msgs:
                self._deliver(msgs, nbytes)
            if protocol.has_news and (ending := after_controls(rt, link)) is not None:
                return ending
            if mailbox.pending and (ending := self._commands()) is not None:
                return ending
            out = self._timers()
            if out is not None:
                return out
            # a short read emptied the socket: no read that would fail
            idle = n <= 0 or (n < len(buf) and link.drained())
            if idle and (ending := self._idle()) is not None:
                return ending

    def _deliver(self, msgs: list[Any], nbytes: int) -> None:
        delivery = self.rt.delivery
        delivery.deliver_read(msgs, nbytes, self.link.keepalive)
        if delivery.handover_wanted:
            delivery.handover_wanted = False
            self.rotation = _R.CONNECTION_LIMIT

    def _commands(self) -> Ending | None:
        rt, link = self.rt, self.link
        cmds = rt.mailbox.take()
        if cmds.stop is not None:
            rt.state.transition(ConnectionState.CLOSING)
            if cmds.stop is StopMode.FORCE:
                link.abort(send_close=True)
                return Ending(_R.USER_REQUESTED, 1000, "force_close")
            return graceful(rt, link, _R.USER_REQUESTED)
        if cmds.kill:
            link.abort()
            return Ending(_R.KILLED, None, "killed")
        if cmds.disconnect:
            return graceful(rt, link, _R.USER_REQUESTED)
        if cmds.schedule_at is not None:
            if handover_enabled(rt.settings):  # rotate without a gap when the time comes
                self.policy.schedule_rotation(cmds.schedule_at)
                return None
            ending = graceful(rt, link, _R.SCHEDULED)
            ending.reconnect_at = cmds.schedule_at
            return ending
        if cmds.ping and not link.protocol.awaiting_pong:
            try:
                send_ping(rt, link, rt.clock.monotonic())
            except (OSError, WebSocketError) as exc:
                return lost(rt, link, _R.NETWORK_ERROR, exc)
        if cmds.soft and rt.settings.should_disconnect is None:
            rt.mailbox.take_soft()
            return graceful(rt, link, _R.USER_REQUESTED)
        return None

    def _timers(self) -> Ending | Link | None:
        rt, link = self.rt, self.link
        now = rt.clock.monotonic()
        keepalive = link.keepalive
        if keepalive.ping_due(now):
            try:
                send_ping(rt, link, now)
            except (OSError, WebSocketError) as exc:
                return lost(rt, link, _R.NETWORK_ERROR, exc)
        if keepalive.expired(now):
            link.abort()
            return Ending(_R.PING_TIMEOUT, None, f"no pong within {keepalive.timeout:g}s")
        beat = self._heartbeat(now)
        if beat is not None:
            return beat
        if keepalive.data_expired(now):
            keepalive.data_received(now)  # one verdict per silence, even if a rotation fails
            return self._silent()
        if self.policy.check_due(now) and rt.callbacks.call(
            "should_disconnect", rt.settings.should_disconnect
        ):
            soft = rt.mailbox.take_soft()
            return graceful(rt, link, _R.USER_REQUESTED if soft else _R.CALLBACK_TRIGGERED)
        rotation = self.policy.rotation_due(now) or self.rotation
        if rotation is None:
            return None
        self.rotation = None
        if not handover_enabled(rt.settings):
            return graceful(rt, link, rotation)
        # None: the new connection failed, keep this one until its real end
        return handover.rotate(rt, link, rotation)

    def _heartbeat(self, now: float) -> Ending | None:
        """The application heartbeat: send it when due; end the connection when its
        answer is late."""
        rt, link = self.rt, self.link
        keepalive = link.keepalive
        if keepalive.beat_expired(now):
            link.abort()
            text = f"no heartbeat answer within {keepalive.beat_timeout:g}s"
            return Ending(_R.PING_TIMEOUT, None, text)
        if keepalive.beat_due(now):
            try:
                send_heartbeat(rt, link, now)
            except (OSError, WebSocketError) as exc:
                return lost(rt, link, _R.NETWORK_ERROR, exc)
        return None

    def _silent(self) -> Ending | Link | None:
        """No data for ``receive_timeout``: rotate make-before-break when handover is on
        (None if that failed: this connection stays), else end the connection."""
        rt, link = self.rt, self.link
        log.warning("no data from %s for %gs", rt.where, link.keepalive.receive_timeout)
        if handover_enabled(rt.settings):
            return handover.rotate(rt, link, _R.DATA_TIMEOUT)
        link.abort()
        timeout = link.keepalive.receive_timeout
        return Ending(_R.DATA_TIMEOUT, None, f"no data message within {timeout:g}s")

    def _idle(self) -> Ending | None:
        """Nothing to read: lend the reading to a consumer waiting for it, else sleep
        until data, a command or the next timer."""
        direct = self.rt.direct
        if direct.wanted and self.lendable:
            return self._lend(direct)
        self._sleep()
        return None

    def _lend(self, direct: DirectRead) -> Ending | None:
        """Let a waiting consumer read (:mod:`.direct`) until the engine must act; then
        act on what the consumer saw."""
        direct.lend(self.link)
        self.rt.delivery.inbox.wake_waiters()
        try:
            self._while_lent(direct)
        finally:
            direct.reclaim()
        if self.rt.mailbox.pending and (ending := self._commands()) is not None:
            return ending
        error = direct.take_error()
        if error is not None:
            return lost(self.rt, self.link, _R.NETWORK_ERROR, error)
        link = self.link
        if link.protocol.has_news and (ending := after_controls(self.rt, link)) is not None:
            return ending
        if self.rt.delivery.handover_wanted:
            self.rt.delivery.handover_wanted = False
            self.rotation = _R.CONNECTION_LIMIT
        return None

    def _while_lent(self, direct: DirectRead) -> None:
        """Sleep while a consumer reads: until a command, news from the consumer, a
        timer, or the watch recalling the role (:mod:`.watch`)."""
        clock, mailbox = self.rt.clock, self.rt.mailbox
        if self.lent_poller is None:
            self.lent_poller = select.poll()
            self.lent_poller.register(mailbox.fileno(), select.POLLIN)
            self.lent_poller.register(direct.engine_fileno(), select.POLLIN)
        WATCH.add(direct)
        try:
            while True:
                timers = self._wake_at()
                if self.lent_poller.poll(poll_ms(timers - clock.monotonic())):
                    direct.clear_engine_wake()
                if mailbox.pending or direct.news or direct.recall:
                    return
                if timers <= clock.monotonic():
                    return
        finally:
            WATCH.discard(direct)

    def _sleep(self) -> None:
        # nothing scheduled (inf): data or a command ends it
        self.poller.poll(poll_ms(self._wake_at() - self.rt.clock.monotonic()))

    def _wake_at(self) -> float:
        """The next moment a timer of this connection is due (``inf``: none)."""
        return min(self.link.keepalive.wake_at(), self.policy.wake_at())
