"""Liveness of one connection: the client ping schedule, the pong deadline, the
application heartbeat's schedule and answer deadline (option ``heartbeat``), and the
data deadline (``receive_timeout``). Pure: no I/O, no clock.

The read loop asks :meth:`Keepalive.ping_due`, sends a ping through the protocol, and
reports it with :meth:`Keepalive.ping_sent`; a matching pong calls
:meth:`Keepalive.pong_received`. Past :attr:`Keepalive.pong_deadline` the connection is
declared dead (``PING_TIMEOUT``); past :attr:`Keepalive.data_deadline` (no data message
for ``receive_timeout`` seconds) the feed is declared silent (``DATA_TIMEOUT``). Time
the engine spent held back by the consumer (back-pressure, a slow ``on_message``) is
credited with :meth:`Keepalive.credit`, since the pong (or the data) may be waiting
unread in the socket meanwhile.

Thread-safety: used by the engine thread only.
"""

from __future__ import annotations

import math

__all__ = ["Keepalive"]

_INF = math.inf


class Keepalive:
    """``interval`` seconds between pings (None: never ping); ``timeout`` for the pong;
    ``receive_timeout`` for the next data message (None: no limit); ``beat_every`` and
    ``beat_timeout`` for the application heartbeat (None: none)."""

    def __init__(
        self,
        interval: float | None,
        timeout: float,
        now: float,
        receive_timeout: float | None = None,
        beat_every: float | None = None,
        beat_timeout: float | None = None,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.receive_timeout = receive_timeout
        self.beat_every = beat_every
        self.beat_timeout = beat_timeout if beat_timeout is not None else timeout
        self.next_ping = now + interval if interval else _INF
        self.pong_deadline = _INF
        self.data_deadline = now + receive_timeout if receive_timeout else _INF
        self.next_beat = now + beat_every if beat_every else _INF
        self.beat_deadline = _INF
        #: Monotonic time the awaited ping went out (for its round trip).
        self.ping_sent_at = _INF

    def ping_due(self, now: float) -> bool:
        return now >= self.next_ping

    def ping_sent(self, now: float, waits: bool) -> None:
        """A ping went out at ``now``; ``waits``: its pong is the one awaited."""
        if self.interval:
            self.next_ping = now + self.interval
        if waits:
            self.pong_deadline = now + self.timeout
            self.ping_sent_at = now

    def pong_received(self, now: float) -> float | None:
        """The awaited pong came at ``now``: its round trip, if its ping was timed."""
        self.pong_deadline = _INF
        sent, self.ping_sent_at = self.ping_sent_at, _INF
        return now - sent if sent != _INF else None

    def beat_due(self, now: float) -> bool:
        return now >= self.next_beat

    def beat_sent(self, now: float, expects_answer: bool) -> None:
        """A heartbeat went out at ``now``; the first unanswered one sets the deadline."""
        if self.beat_every:
            self.next_beat = now + self.beat_every
        if expects_answer and self.beat_deadline == _INF:
            self.beat_deadline = now + self.beat_timeout

    def beat_answered(self) -> None:
        self.beat_deadline = _INF

    def beat_expired(self, now: float) -> bool:
        return now >= self.beat_deadline

    def expired(self, now: float) -> bool:
        """True when the awaited pong is late."""
        return now >= self.pong_deadline

    def data_received(self, now: float) -> None:
        if self.receive_timeout:
            self.data_deadline = now + self.receive_timeout

    def data_expired(self, now: float) -> bool:
        """True when no data message came for ``receive_timeout`` seconds."""
        return now >= self.data_deadline

    def credit(self, seconds: float) -> None:
        """Move the timers later by ``seconds`` the engine could not read."""
        self.next_ping += seconds
        if self.pong_deadline != _INF:
            self.pong_deadline += seconds
        if self.data_deadline != _INF:
            self.data_deadline += seconds
        if self.beat_deadline != _INF:
            self.beat_deadline += seconds
        self.next_beat += seconds

    def wake_at(self) -> float:
        """The next moment this needs the engine (``inf`` when never)."""
        return min(
            self.next_ping,
            self.pong_deadline,
            self.data_deadline,
            self.next_beat,
            self.beat_deadline,
        )
