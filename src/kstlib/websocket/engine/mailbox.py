"""Commands from the user's threads to the engine thread, with wake-ups and acks.

A command is a flag set under the control condition; several of the same kind before
the engine looks are one. The engine thread is woken through a socket pair that it
polls together with its connection, so a command ends any wait at once. A caller that
must see the effect waits for an acknowledgement (:meth:`Mailbox.wait_ack`).

Thread-safety: every method may be called from any thread, except :meth:`take`,
:meth:`sleep` and :meth:`ack`, which belong to the engine thread.
"""

from __future__ import annotations

import enum
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .clock import Clock

__all__ = ["Commands", "Mailbox", "StopMode"]


class StopMode(enum.Enum):
    """How the engine is asked to end."""

    #: ``close()``: closing handshake, then CLOSED.
    CLOSE = "close"
    #: ``force_close()`` / ``shutdown()``: a close frame if it can go at once, no wait.
    FORCE = "force"


@dataclass(frozen=True)
class Commands:
    """What was asked since the engine last looked (one-shot commands are consumed)."""

    stop: StopMode | None = None
    disconnect: bool = False
    kill: bool = False
    #: ``request_disconnect()``: stays set until the engine acts on it (see ``Mailbox``).
    soft: bool = False
    connect_now: bool = False
    schedule_at: float | None = None
    #: ``ping()``: send a ping now to measure the round trip.
    ping: bool = False


class Mailbox:
    """Flags, a wake-up socket pair and an acknowledgement counter."""

    def __init__(self, control: threading.Condition, clock: Clock) -> None:
        self._control = control
        self._clock = clock
        #: True when something waits to be taken; read without the lock on the hot path.
        self.pending = False
        self.stop: StopMode | None = None
        self._disconnect = self._kill = self._soft = self._connect_now = False
        self._schedule_at: float | None = None
        self._ping = False
        self._ack_seq = 0
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # ------------------------------------------------------------------ life

    def open(self) -> None:
        """Clear every command and make a fresh wake-up pair (the engine is starting)."""
        with self._control:
            self.stop = None
            self._disconnect = self._kill = self._soft = self._connect_now = False
            self._schedule_at = None
            self._ping = False
            self.pending = False
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)

    def close(self) -> None:
        """Close the wake-up pair and release every waiter (the engine has ended)."""
        with self._control:
            for s in (self._wake_r, self._wake_w):
                if s is not None:
                    s.close()
            self._wake_r = self._wake_w = None
            self.pending = False
            self._ack_seq += 1
            self._control.notify_all()

    def fileno(self) -> int:
        """The descriptor to poll for commands (the engine thread only, while open)."""
        assert self._wake_r is not None
        return self._wake_r.fileno()

    # ------------------------------------------------------------------ posting (any thread)

    def post_stop(self, mode: StopMode) -> None:
        with self._control:
            if self.stop is not StopMode.FORCE:
                self.stop = mode
            self._wake()

    def post_disconnect(self) -> int:
        with self._control:
            self._disconnect = True
            return self._wake()

    def post_kill(self) -> int:
        with self._control:
            self._kill = True
            return self._wake()

    def post_ping(self) -> None:
        with self._control:
            self._ping = True
            self._wake()

    def post_soft(self) -> None:
        with self._control:
            self._soft = True
            self._wake()

    def post_connect(self, at: float | None) -> None:
        """Connect now (``at`` None) or at monotonic time ``at``."""
        with self._control:
            if at is None:
                self._connect_now = True
            else:
                self._schedule_at = at
            self._wake()

    def _wake(self) -> int:
        # Called with the control lock held; returns the ack sequence to wait past.
        self.pending = True
        w = self._wake_w
        if w is not None:
            try:
                w.send(b"\0")
            except OSError:
                pass  # a byte is already pending, or the engine is gone
        self._control.notify_all()
        return self._ack_seq

    # ------------------------------------------------------------------ engine thread

    def take(self) -> Commands:
        """What was asked; one-shot commands are cleared. ``stop`` and ``soft`` stay set."""
        with self._control:
            out = Commands(
                self.stop,
                self._disconnect,
                self._kill,
                self._soft,
                self._connect_now,
                self._schedule_at,
                self._ping,
            )
            self._disconnect = self._kill = self._connect_now = self._ping = False
            self._schedule_at = None
            self.pending = self.stop is not None
            self._drain_wake()
            return out

    def take_soft(self) -> bool:
        """Consume a pending ``request_disconnect()``; True if there was one."""
        with self._control:
            soft, self._soft = self._soft, False
            return soft

    def _drain_wake(self) -> None:
        r = self._wake_r
        if r is None:
            return
        try:
            while r.recv(4096):
                pass
        except OSError:
            pass

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a command ends it early."""
        r = self._wake_r
        if r is None:  # pragma: no cover - only while tearing down
            return
        select.select([r], [], [], min(max(0.0, seconds), 3600.0))

    def ack(self) -> None:
        """Tell waiting callers that the command they posted took effect."""
        with self._control:
            self._ack_seq += 1
            self._control.notify_all()

    def wait_ack(self, seq: int, timeout: float, dead: Callable[[], bool]) -> None:
        """Wait (any thread but the engine's) until an ack after ``seq``, ``dead()``, or
        ``timeout`` seconds."""
        deadline = self._clock.monotonic() + timeout
        with self._control:
            while self._ack_seq <= seq and not dead():
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    return
                self._control.wait(remaining)
