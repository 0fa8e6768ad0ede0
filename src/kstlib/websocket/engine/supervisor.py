"""The engine thread: connect, serve, and decide what follows each ending.

:class:`Supervisor` runs from ``start()`` until the engine is dead. Its loop waits (a
backoff, a schedule), makes an attempt, serves the connection (:func:`.read_loop.serve`)
and, from the ending's reason, chooses the next step:

* a stop (``close()``, ``force_close()``): CLOSING, then the thread ends (CLOSED);
* ``SCHEDULED`` / ``CONNECTION_LIMIT``: RECONNECTING, at the scheduled time or at once;
* ``USER_REQUESTED`` / ``CALLBACK_TRIGGERED``: DISCONNECTED, then wait for a reason to
  reconnect (``should_reconnect``, ``schedule_reconnect``, ``connect()``);
* anything reactive: RECONNECTING after a backoff, or the end with
  ``WebSocketClosedError`` when ``auto_reconnect`` is off.

Failed attempts are retried by the reconnect strategy until the attempt budget is spent
(``connect_attempts`` for a ``connect()``, ``max_reconnect_attempts`` after a loss); an
HTTP refusal that cannot change (:data:`.backoff.PERMANENT_HTTP_STATUSES`) is final at
once. The budget is renewed once a connection stayed up :data:`.backoff.HEALTHY_AFTER`
seconds.

Thread-safety: :meth:`Supervisor.run` is the engine thread's body.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketLoginError,
    WebSocketProtocolError,
    WebSocketTimeoutError,
)
from kstlib.websocket.models import ConnectionState, DisconnectReason

from .backoff import HEALTHY_AFTER, backoff_delay, is_permanent, retry_after
from .closing import Ending, record
from .connector import connect
from .link import Link
from .read_loop import serve
from .runtime import Runtime
from .target import has_factories

__all__ = ["Supervisor"]

log = logging.getLogger("kstlib.websocket")
_S = ConnectionState
_R = DisconnectReason
_INF = math.inf


class Wake(enum.Enum):
    """Why a wait between connections ended."""

    TIMEOUT = "timeout"  # the deadline came
    STOP = "stop"
    CONNECT_NOW = "connect_now"
    SCHEDULE = "schedule"  # a new reconnect time was set
    DISCONNECT = "disconnect"
    READY = "ready"  # the probe (should_reconnect) said yes
    IDLE = "idle"  # nothing can ever end the wait


@dataclass
class _Next:
    """The next attempt: in which state, after how long, with how many spent."""

    phase: ConnectionState
    delay: float
    attempts: int


_FRESH = _Next(_S.CONNECTING, 0.0, 0)


class Supervisor:
    """The engine thread's loop over connections (see the module docstring)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.rng = random.Random()
        self._schedule_delay = 0.0
        self._refreshed = False  # a 401/403 already made the factories run again

    # ------------------------------------------------------------------ the loop

    def run_loop(self, delay: float) -> None:
        """Connect and reconnect until the engine ends."""
        step: _Next | None = _Next(_S.CONNECTING, delay, 0)
        while step is not None:
            if step.delay > 0:
                step = self._before_attempt(step)
                if step is None:
                    return
                if step.delay > 0:
                    continue
            step = self._attempt(step)

    def _before_attempt(self, step: _Next) -> _Next | None:
        """Wait ``step.delay``; commands may end, renew or reschedule the wait."""
        wake = self._wait(self.rt.clock.monotonic() + step.delay)
        if wake is Wake.STOP:
            return None
        if wake is Wake.DISCONNECT:
            self.rt.mailbox.ack()
            return _FRESH if self._idle(_R.USER_REQUESTED) else None
        if wake is Wake.SCHEDULE:
            return _Next(step.phase, self._schedule_delay, step.attempts)
        return _Next(step.phase, 0.0, step.attempts)

    def _attempt(self, step: _Next) -> _Next | None:
        """One connection attempt and, if it succeeds, the whole connection."""
        rt = self.rt
        rt.state.transition(step.phase)
        limit = self._limit(step.phase)
        attempts = step.attempts
        if limit is not None and attempts >= limit:
            rt.state.fail(self._gave_up(attempts, None))
            return None
        attempts += 1
        if step.phase is _S.RECONNECTING:
            rt.counters.add("reconnect_attempts")
        try:
            link = connect(rt)
        except (WebSocketConnectionError, WebSocketTimeoutError, WebSocketProtocolError) as exc:
            return self._attempt_failed(exc, step.phase, attempts, limit)
        if link is None:  # stopped while connecting
            return None
        self._refreshed = False
        link, ending = serve(rt, link)
        if rt.clock.monotonic() - link.connected_at >= HEALTHY_AFTER:
            attempts = 0
        return self._after(link, ending, attempts)

    def _limit(self, phase: ConnectionState) -> int | None:
        s = self.rt.settings
        if not s.auto_reconnect:
            return 1
        if phase is not _S.CONNECTING:
            return s.max_reconnect_attempts
        limits = [n for n in (s.connect_attempts, s.max_reconnect_attempts) if n is not None]
        return min(limits) if limits else None

    def _attempt_failed(
        self, exc: BaseException, phase: ConnectionState, attempts: int, limit: int | None
    ) -> _Next | None:
        rt = self.rt
        if rt.stopping:
            return None
        rt.callbacks.report(exc)
        if self._credentials_refused(exc):
            log.warning(
                "%s refused the credentials (%s); asking the factories again", rt.where, exc
            )
            return _Next(phase, 1e-3, attempts)  # at once, once, with fresh ones
        if self._permanent(exc) or (limit is not None and attempts >= limit):
            rt.state.fail(self._gave_up(attempts, exc))
            return None
        delay = max(self._backoff(attempts), 1e-3)  # always look at commands between attempts
        asked = retry_after(exc, rt.clock.time())
        if asked is not None:  # the server's Retry-After, within reconnect_delay_max
            delay = max(delay, min(asked, rt.settings.reconnect_delay_max))
        log.warning(
            "connection attempt %d to %s failed: %s; retrying in %.1f s%s%s",
            attempts,
            rt.where,
            exc,
            delay,
            "" if asked is None else f" (the server asked Retry-After {asked:g} s)",
            "" if limit is None else f", giving up after attempt {limit}",
        )
        return _Next(phase, delay, attempts)

    def _credentials_refused(self, exc: BaseException) -> bool:
        """A 401/403 with factories that may produce fresh credentials: True the first
        time in a row (the next attempt asks them again), False after that."""
        status = getattr(exc.__cause__, "status_code", None)
        if status not in (401, 403) or not has_factories(self.rt) or self._refreshed:
            return False
        self._refreshed = True
        return True

    def _permanent(self, exc: BaseException) -> bool:
        """The ``is_permanent_failure`` setting, else :func:`.backoff.is_permanent`."""
        rule = self.rt.settings.is_permanent_failure
        if rule is None:
            return is_permanent(exc)
        verdict = self.rt.callbacks.call("is_permanent_failure", rule, exc)
        return is_permanent(exc) if verdict is None else bool(verdict)

    def _gave_up(self, attempts: int, exc: BaseException | None) -> WebSocketConnectionError:
        where = self.rt.where
        if exc is None:
            text = f"giving up on {where} after {attempts} connection attempt(s)"
        else:
            text = f"could not connect to {where} after {attempts} attempt(s): {exc}"
        err: WebSocketConnectionError
        if isinstance(exc, WebSocketLoginError):  # keep the type and the server's reply
            err = WebSocketLoginError(text, url=self.rt.url, reply=exc.reply, attempts=attempts)
        else:
            err = WebSocketConnectionError(text, url=self.rt.url, attempts=attempts)
        err.__cause__ = exc
        return err

    def _backoff(self, attempt: int) -> float:
        s = self.rt.settings
        return backoff_delay(
            s.reconnect_strategy, attempt, s.reconnect_delay, s.reconnect_delay_max, self.rng
        )

    # ------------------------------------------------------------------ after an ending

    def _after(self, link: Link, ending: Ending, attempts: int) -> _Next | None:
        """Book ``ending`` and choose the next step. The state changes first, then the
        disconnect is recorded (and acknowledged), so a caller woken by the
        acknowledgement sees the state that follows."""
        rt = self.rt
        reason = ending.reason
        if rt.stopping:
            rt.state.transition(_S.CLOSING)
            record(rt, link, ending)
            return None
        if reason is _R.SCHEDULED or reason is _R.CONNECTION_LIMIT:
            rt.state.transition(_S.RECONNECTING)
            record(rt, link, ending)
            at = ending.reconnect_at
            delay = 0.0 if at is None else max(0.0, at - rt.clock.monotonic())
            return _Next(_S.RECONNECTING, delay, 0)
        if reason is _R.USER_REQUESTED or reason is _R.CALLBACK_TRIGGERED:
            rt.state.transition(_S.DISCONNECTED)
            record(rt, link, ending)
            return _FRESH if self._idle(reason) else None
        if not rt.settings.auto_reconnect:
            code = ending.code if ending.code is not None else 1006
            rt.state.fail(WebSocketClosedError(code, ending.text or reason.value))
            record(rt, link, ending)
            return None
        rt.state.transition(_S.RECONNECTING)
        record(rt, link, ending)
        return _Next(_S.RECONNECTING, max(self._backoff(attempts + 1), 1e-3), attempts)

    def _idle(self, reason: DisconnectReason) -> bool:
        """After a proactive disconnect: wait for a reason to reconnect. True to
        reconnect now, False when the engine should end (nothing will wake it, or stop).

        ``should_reconnect()`` is polled every ``reconnect_check_interval``; without it, a
        CALLBACK_TRIGGERED disconnect reconnects once ``should_disconnect()`` turns False.
        A plain ``disconnect()`` waits for the user."""
        self.rt.state.transition(_S.DISCONNECTED)
        probe = self._reconnect_probe(reason)
        deadline = _INF
        while True:
            wake = self._wait(deadline, probe)
            if wake is Wake.DISCONNECT:
                self.rt.mailbox.ack()
            elif wake is Wake.SCHEDULE:
                deadline = self.rt.clock.monotonic() + self._schedule_delay
                probe = None
            else:
                return wake in (Wake.READY, Wake.CONNECT_NOW, Wake.TIMEOUT)

    def _reconnect_probe(self, reason: DisconnectReason) -> Callable[[], bool] | None:
        s = self.rt.settings
        if s.should_reconnect is not None:
            return s.should_reconnect
        should_disconnect = s.should_disconnect
        if reason is _R.CALLBACK_TRIGGERED and should_disconnect is not None:
            return lambda: not should_disconnect()
        return None

    def _wait(self, deadline: float, probe: Callable[[], bool] | None = None) -> Wake:
        """Wait while not connected, until ``deadline``, a command, or ``probe()``."""
        rt = self.rt
        interval = rt.settings.reconnect_check_interval
        next_probe = rt.clock.monotonic()
        while True:
            now = rt.clock.monotonic()
            if rt.mailbox.pending:
                wake = self._command_wake(now)
                if wake is not None:
                    return wake
            if probe is not None and now >= next_probe:
                if rt.callbacks.call("should_reconnect", probe):
                    return Wake.READY
                next_probe = now + interval
            if now >= deadline:
                return Wake.TIMEOUT
            if probe is None and deadline == _INF:
                return Wake.IDLE
            wake_at = min(deadline, next_probe if probe is not None else _INF)
            rt.mailbox.sleep(wake_at - now)

    def _command_wake(self, now: float) -> Wake | None:
        cmds = self.rt.mailbox.take()
        self.rt.mailbox.take_soft()  # already disconnected: nothing left to request
        if cmds.stop is not None:
            return Wake.STOP
        if cmds.schedule_at is not None:
            self._schedule_delay = max(0.0, cmds.schedule_at - now)
            return Wake.SCHEDULE
        if cmds.connect_now:
            return Wake.CONNECT_NOW
        if cmds.disconnect:
            return Wake.DISCONNECT
        return None
