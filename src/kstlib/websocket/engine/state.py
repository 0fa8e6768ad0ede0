"""The connection state machine and the engine's life flags.

Every state change goes through :meth:`StateMachine.transition`, which checks it against
:data:`~kstlib.websocket.models.LEGAL_TRANSITIONS`, logs it and wakes the waiters. The
life flags say whether the engine thread runs (``dead``), whether the user ended the
manager for good (``shutdown``), and which error made the engine give up.

Thread-safety: every field is written under the control condition the engine shares
with its mailbox; reads of a single field need no lock (they are atomic in CPython).
"""

from __future__ import annotations

import logging
import threading

from kstlib.websocket.exceptions import WebSocketClosedError, WebSocketTimeoutError
from kstlib.websocket.models import LEGAL_TRANSITIONS, ConnectionState

from .clock import Clock

__all__ = ["IllegalTransitionError", "StateMachine"]

log = logging.getLogger("kstlib.websocket")


class IllegalTransitionError(RuntimeError):
    """A state change that the transition table forbids: a bug in the engine."""


class StateMachine:
    """``ConnectionState`` plus ``dead`` / ``shutdown`` / the terminal error."""

    def __init__(self, control: threading.Condition, clock: Clock) -> None:
        self._control = control
        self._clock = clock
        self.state = ConnectionState.DISCONNECTED
        #: No engine thread runs: nothing will (re)connect until the user acts.
        self.dead = True
        #: ``force_close()`` / ``shutdown()`` was called: the manager will not restart.
        self.shutdown = False
        #: The error that made the engine give up, raised to ``connect()`` / ``stream()``.
        self.terminal_error: BaseException | None = None
        #: Connections established so far (each handshake that reached CONNECTED).
        self.connect_count = 0

    def transition(self, new: ConnectionState) -> None:
        """Move to ``new`` (no-op when already there); raise for an illegal change."""
        with self._control:
            old = self.state
            if new is old:
                return
            if new not in LEGAL_TRANSITIONS[old]:
                raise IllegalTransitionError(f"illegal state transition {old.name} -> {new.name}")
            self.state = new
            log.debug("state %s -> %s", old.name, new.name)
            self._control.notify_all()

    def connected(self) -> None:
        """A connection was established: count it, then enter CONNECTED."""
        with self._control:
            self.connect_count += 1
            self.transition(ConnectionState.CONNECTED)

    def count_connection(self) -> None:
        """A connection replaced the current one (a handover): count it, state unchanged."""
        with self._control:
            self.connect_count += 1
            self._control.notify_all()

    def fail(self, error: BaseException) -> None:
        """Give up: ``error`` reaches the consumer once the engine has ended."""
        with self._control:
            self.terminal_error = error
            self.transition(ConnectionState.DISCONNECTED)

    def close_out(self) -> None:
        """End in CLOSED (through CLOSING) from wherever the state is."""
        with self._control:
            if self.state is not ConnectionState.CLOSED:
                self.transition(ConnectionState.CLOSING)
                self.transition(ConnectionState.CLOSED)

    def wait_connected(self, since: int, timeout: float | None) -> None:
        """Block until a connection was established after ``connect_count`` was
        ``since``; raise the terminal error if the engine ended first, or
        ``WebSocketTimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self._control:
            while self.connect_count <= since:
                if self.dead:
                    if self.terminal_error is not None:
                        raise self.terminal_error
                    raise WebSocketClosedError(None, "closed before the connection was established")
                remaining = None if deadline is None else deadline - self._clock.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WebSocketTimeoutError("connect", timeout)
                self._control.wait(remaining)
