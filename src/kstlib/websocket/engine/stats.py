"""The engine's counters and the ``ws.stats`` snapshot.

Per-message counters live in the codec (counted in C++ on the hot path) and are folded in
here when a connection ends (:meth:`Counters.retire`); everything else is counted here
once per event. The current connection (:attr:`Counters.live`) is kept here too, changed
under the same lock as the totals, so a snapshot never counts a connection twice or not
at all; :meth:`Counters.snapshot` adds its codec counters.

Thread-safety: every method may be called from any thread; one leaf lock guards the
counters (nothing else is locked while it is held).
"""

from __future__ import annotations

import threading
from typing import Literal

from kstlib.websocket.models import DisconnectReason, WebSocketStats

from .clock import Clock
from .link import Link

__all__ = ["Counter", "Counters"]

#: The counters that events add to one by one (the others have methods of their own).
Counter = Literal[
    "reconnect_attempts",
    "callback_errors",
    "extra_decode_errors",
    "handovers",
    "handover_failures",
    "duplicates_dropped",
    "overlap_seconds",
    "sequence_gaps",
]


class Counters:
    """Cumulative counters of one engine, across every connection it made."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.lock = threading.Lock()
        #: The current connection: the one ``send()`` writes to and stats count live.
        self.live: Link | None = None
        self.first_connect_at: float | None = None
        self._connection_time = 0.0
        self._closed = [0, 0, 0, 0, 0]  # rx msgs, rx bytes, decode errors, tx msgs, tx bytes
        self._disconnects = 0
        self._proactive = 0
        self._reactive = 0
        self._by_reason: dict[DisconnectReason, int] = {}
        self._last_reason: DisconnectReason | None = None
        self.reconnect_attempts = 0
        self.callback_errors = 0
        self.extra_decode_errors = 0
        self.handovers = 0
        self.handover_failures = 0
        self.duplicates_dropped = 0
        self.overlap_seconds = 0.0
        self.sequence_gaps = 0
        self.ping_rtt: float | None = None
        self.ping_rtt_avg: float | None = None
        self._gaps = 0
        self._gap_seconds = 0.0
        self._gap_started_at: float | None = None

    def add(self, name: Counter, amount: float = 1) -> None:
        """Add ``amount`` to the counter ``name``."""
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)

    def connected(self, at: float, *, gap_ended: bool = True) -> bool:
        """A connection began at ``at``; returns True for the first one ever.
        ``gap_ended`` False keeps an open gap open (a handover is no reconnect)."""
        with self.lock:
            first = self.first_connect_at is None
            if first:
                self.first_connect_at = at
            if gap_ended:
                self._end_gap(at)
            return first

    def _end_gap(self, at: float) -> None:
        if self._gap_started_at is not None:
            self._gap_seconds += at - self._gap_started_at
            self._gap_started_at = None

    def forget_gap(self) -> None:
        """The gap just counted is no stretch of downtime (the new connection was up)."""
        with self.lock:
            self._gap_started_at = None

    def round_trip(self, rtt: float) -> None:
        """A pong answered our ping after ``rtt`` seconds (moving average: 1/8 weight)."""
        with self.lock:
            self.ping_rtt = rtt
            avg = self.ping_rtt_avg
            self.ping_rtt_avg = rtt if avg is None else avg + (rtt - avg) / 8.0

    def attach(self, link: Link) -> None:
        """Make ``link`` the current connection."""
        with self.lock:
            self.live = link

    def retire(self, link: Link) -> None:
        """Fold ``link``'s codec counters and time into the totals, once, and stop
        counting it live. A link that is not the current one is left alone."""
        with self.lock:
            if self.live is not link:
                return
            self.live = None
            counts = link.counters()
            self._closed = [a + b for a, b in zip(self._closed, counts, strict=True)]
            self._connection_time += self._clock.monotonic() - link.connected_at

    def disconnected(self, reason: DisconnectReason, *, gap: bool) -> None:
        """Count one disconnect; ``gap``: the stream is interrupted from now on."""
        with self.lock:
            if gap:
                self._gaps += 1
                self._gap_started_at = self._clock.monotonic()
            self._disconnects += 1
            if reason.is_proactive:
                self._proactive += 1
            else:
                self._reactive += 1
            self._by_reason[reason] = self._by_reason.get(reason, 0) + 1
            self._last_reason = reason

    def snapshot(self, connects: int, dropped: int, queued_bytes: int) -> WebSocketStats:
        """A consistent snapshot of every counter."""
        now = self._clock.monotonic()
        with self.lock:
            rx, rxb, dec, tx, txb = self._closed
            conn_time = self._connection_time
            live = self.live
            if live is not None:
                lrx, lrxb, ldec, ltx, ltxb = live.counters()
                rx, rxb, dec, tx, txb = rx + lrx, rxb + lrxb, dec + ldec, tx + ltx, txb + ltxb
                conn_time += now - live.connected_at
            gap_seconds = self._gap_seconds
            if self._gap_started_at is not None:
                gap_seconds += now - self._gap_started_at
            return WebSocketStats(
                connects=connects,
                disconnects=self._disconnects,
                proactive_disconnects=self._proactive,
                reactive_disconnects=self._reactive,
                messages_received=rx,
                messages_sent=tx,
                bytes_received=rxb,
                bytes_sent=txb,
                uptime=0.0 if self.first_connect_at is None else now - self.first_connect_at,
                connection_time=conn_time,
                reconnect_attempts=self.reconnect_attempts,
                messages_dropped=dropped,
                decode_errors=dec + self.extra_decode_errors,
                callback_errors=self.callback_errors,
                last_disconnect_reason=self._last_reason,
                disconnects_by_reason=dict(self._by_reason),
                handovers=self.handovers,
                handover_failures=self.handover_failures,
                duplicates_dropped=self.duplicates_dropped,
                overlap_seconds=self.overlap_seconds,
                gaps=self._gaps,
                gap_seconds=gap_seconds,
                queued_bytes=queued_bytes,
                sequence_gaps=self.sequence_gaps,
                ping_rtt=self.ping_rtt,
                ping_rtt_avg=self.ping_rtt_avg,
            )
