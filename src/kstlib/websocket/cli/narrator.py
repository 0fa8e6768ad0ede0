"""What ``kstlib-ws demo`` says as things happen.

:class:`Narrator` receives the manager's callbacks (engine thread) and the stream's
items (main thread), prints one event line (with indented detail lines) per connect,
disconnect, handover and candle close, and keeps the counters the status line and the
summary show. Event lines start with the seconds since the demo started, e.g.::

    [  16.02s] DISCONNECTED: CONNECTION_LIMIT (proactive): max_connection_age 5s
               handover: the new connection takes over before this one closes
    [  16.02s] RECONNECTED (connect #3) after CONNECTION_LIMIT: HANDOVER #1
               make-before-break: #3 streamed beside #2 for 0.15s, then #2 closed
               no gap, 4 duplicates dropped; 2.9s to candle close

A handover is recognised from the public statistics: ``ws.stats.handovers`` grew since
the previous connect. The stream is read with ``events=True``, so the narrator also
checks that trade ids follow each other without a hole or a repeat, except across the
gaps the stream marks (:class:`~kstlib.websocket.Disconnected`): a handover must leave
none.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from kstlib.websocket.cli.scenario import DemoOptions, DemoPolicy
from kstlib.websocket.models import Disconnected, DisconnectReason, WebSocketStats

if TYPE_CHECKING:
    from kstlib.websocket.cli.console import Console
    from kstlib.websocket.manager import WebSocketManager

__all__ = ["DemoCounts", "Narrator", "hms", "kind_of", "plural"]

#: Indentation of detail lines: the width of a time stamp and its space.
DETAIL_INDENT = " " * len("[   0.00s] ")


def hms(ms: int) -> str:
    """``HH:MM:SS`` (UTC) of a time in milliseconds since the epoch."""
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).strftime("%H:%M:%S")


def kind_of(reason: DisconnectReason) -> str:
    """``"proactive"`` or ``"reactive"``."""
    return "proactive" if reason.is_proactive else "reactive"


def plural(n: int, word: str) -> str:
    """``"1 handover"``, ``"2 handovers"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _price(text: Any) -> str:
    """A price string with 2 decimals (as received when it is not a number)."""
    try:
        return f"{float(text):.2f}"
    except (TypeError, ValueError):
        return str(text)


@dataclass(frozen=True)
class DemoCounts:
    """What the demo's consumer saw (a snapshot for the summary).

    ``trades_checked`` counts the trades whose id could be compared with the previous
    one (not the first trade after a gap); ``trades_missing`` the ids skipped and
    ``trades_repeated`` the ids received again, outside marked gaps.
    ``handover_gaps`` counts handovers the engine reported as a gap (no overlap seen).
    """

    candles: int = 0
    kline_updates: int = 0
    trades: int = 0
    acks: int = 0
    trades_checked: int = 0
    trades_missing: int = 0
    trades_repeated: int = 0
    handover_gaps: int = 0


class Narrator:
    """Turns the demo's callbacks and stream items into lines and counters.

    ``stopping`` is set when the demo ends, so the final disconnect reads "end of the
    demo". :attr:`ws` must be set before the manager connects. Callbacks may run on the
    engine thread while :meth:`handle` runs on the main thread and
    :meth:`status_fields` on the status thread: the counters are behind one lock.
    """

    def __init__(
        self,
        opts: DemoOptions,
        policy: DemoPolicy,
        console: Console,
        stopping: threading.Event,
    ) -> None:
        self.opts = opts
        self.policy = policy
        self.console = console
        self.stopping = stopping
        self.started = time.monotonic()
        self.ws: WebSocketManager | None = None
        self._lock = threading.Lock()
        # guarded by _lock
        self._connects = 0
        self._last_reason: DisconnectReason | None = None
        self._at_last_connect = WebSocketStats()
        self._next_trade: int | None = None
        self._last_trade = "-"
        self._counts = DemoCounts()

    # ------------------------------------------------------------------ helpers

    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return time.monotonic() - self.started

    def stamp(self) -> str:
        """``[   12.34s]``: the time stamp of a line."""
        return f"[{self.elapsed():7.2f}s]"

    def left(self) -> str:
        """``"6.2s to candle close"``."""
        return f"{self.policy.clock.seconds_until_close():.1f}s to candle close"

    def stats(self) -> WebSocketStats:
        """The manager's statistics (empty before :attr:`ws` is set)."""
        return self.ws.stats if self.ws is not None else WebSocketStats()

    def counts(self) -> DemoCounts:
        """A snapshot of the consumer's counters."""
        with self._lock:
            return self._counts

    def _count(self, **changes: int) -> None:
        """Add ``changes`` to the counters (caller holds the lock)."""
        c = self._counts
        self._counts = dataclasses.replace(
            c, **{name: getattr(c, name) + n for name, n in changes.items()}
        )

    def say(self, first: str, *details: str) -> None:
        """Print an event: ``first`` after the time stamp, each detail on its own line
        below it, indented under ``first``."""
        text = f"{self.stamp()} {first}" + "".join(f"\n{DETAIL_INDENT}{d}" for d in details)
        self.console.event(text, indent=DETAIL_INDENT)

    # ------------------------------------------------------------------ callbacks (engine thread)

    def on_connect(self) -> None:
        """Print the connect: the first one, a reconnect and why, or a handover."""
        stats = self.stats()
        with self._lock:
            self._connects += 1
            n, after, before = self._connects, self._last_reason, self._at_last_connect
            self._at_last_connect = stats
            handover = stats.handovers > before.handovers
            if handover and stats.gaps > before.gaps:
                self._count(handover_gaps=1)
        if after is None:
            self.say(f"connected (connect #{n}), {self.left()}")
        elif handover:
            self.say(
                f"RECONNECTED (connect #{n}) after {after.name}: HANDOVER #{stats.handovers}",
                *self._handover_details(n, before, stats),
            )
        else:
            self.say(f"RECONNECTED (connect #{n}) after {after.name}", self._reconnect_why(after))

    def _handover_details(self, n: int, before: WebSocketStats, now: WebSocketStats) -> list[str]:
        """Detail lines of handover ``n``: its overlap and the duplicates it dropped (the
        statistics' growth since the previous connect), or that it left a gap."""
        overlap = now.overlap_seconds - before.overlap_seconds
        dups = now.duplicates_dropped - before.duplicates_dropped
        if now.gaps > before.gaps:
            return [
                f"make-before-break, but no overlap seen: reported as a gap; {self.left()}",
            ]
        return [
            f"make-before-break: #{n} streamed beside #{n - 1} for {overlap:.2f}s, "
            f"then #{n - 1} closed",
            f"no gap, {plural(dups, 'duplicate')} dropped; {self.left()}",
        ]

    def _reconnect_why(self, after: DisconnectReason) -> str:
        """Detail line of a reconnect (not a handover) after a disconnect for ``after``."""
        if after is DisconnectReason.CALLBACK_TRIGGERED:
            below = self.policy.reconnect_below
            return f"should_reconnect(): {self.left()} < {below:g}s"
        if after is DisconnectReason.CONNECTION_LIMIT:
            return f"break-before-make rotation, a gap; {self.left()}"
        if after.is_reactive:
            return f"automatic reconnect after a lost connection; {self.left()}"
        return self.left()

    def on_disconnect(self, reason: DisconnectReason) -> None:
        """Print the disconnect, its reason, proactive or reactive, and what follows."""
        with self._lock:
            self._last_reason = reason
        first = f"DISCONNECTED: {reason.name} ({kind_of(reason)})"
        if reason is DisconnectReason.CALLBACK_TRIGGERED:
            p = self.policy
            self.say(
                f"{first}: should_disconnect()",
                f"{self.left()} > {p.disconnect_above:g}s: off until < {p.reconnect_below:g}s",
            )
        elif reason is DisconnectReason.CONNECTION_LIMIT:
            self.say(
                f"{first}: max_connection_age {self.opts.max_connection_age:g}s", self._rotation()
            )
        elif reason is DisconnectReason.USER_REQUESTED and self.stopping.is_set():
            self.say(f"{first}: end of the demo")
        elif reason.is_reactive:
            self.say(first, f"reconnecting (exponential backoff); {self.left()}")
        else:
            self.say(first, self.left())

    def _rotation(self) -> str:
        """Detail line of a ``CONNECTION_LIMIT`` disconnect: how the rotation is made."""
        if self.opts.handover:
            return "handover: the new connection takes over before this one closes"
        cut = self.opts.server_connection_age
        return f"rotating break-before-make, before the exchange's {cut:g}s cut"

    # ------------------------------------------------------------------ the stream (main thread)

    def handle(self, item: Any) -> None:
        """Take one item of ``ws.stream(events=True)``: count it, print candle closes."""
        if isinstance(item, Disconnected):
            with self._lock:
                self._next_trade = None  # a marked gap: ids may jump
            return
        if not isinstance(item, dict):
            return
        kind = item.get("e")
        if kind == "trade":
            self._on_trade(item)
        elif kind == "kline":
            self._on_kline(item)
        elif "result" in item and "id" in item:
            with self._lock:
                self._count(acks=1)

    def _on_trade(self, msg: dict[str, Any]) -> None:
        """Count a trade and check its id follows the previous one."""
        trade_id = msg.get("t")
        with self._lock:
            self._count(trades=1)
            self._last_trade = _price(msg.get("p"))
            if not isinstance(trade_id, int):
                return
            expected = self._next_trade
            if expected is not None and trade_id < expected:
                self._count(trades_checked=1, trades_repeated=1)
                return
            if expected is not None:
                self._count(trades_checked=1, trades_missing=trade_id - expected)
            self._next_trade = trade_id + 1

    def _on_kline(self, msg: dict[str, Any]) -> None:
        """Count a kline update; print the candle's close (its ``"x": true`` update)."""
        k = msg.get("k") or {}
        with self._lock:
            self._count(kline_updates=1)
            closed = bool(k.get("x"))
            if closed:
                self._count(candles=1)
            n = self._counts.candles
        if not closed:
            return
        close_ms = int(k["T"]) + 1
        self.say(
            f"CANDLE CLOSED #{n} {msg.get('s')} {k.get('i')} "
            f"{hms(int(k['t']))}-{hms(close_ms)} UTC c={_price(k.get('c'))}",
            f"o={_price(k.get('o'))} h={_price(k.get('h'))} l={_price(k.get('l'))}, "
            f"{plural(int(k.get('n') or 0), 'trade')}",
        )

    # ------------------------------------------------------------------ status line

    def status_fields(self) -> list[str]:
        """The status line's fields, most important first: state, time to the close,
        handovers, proactive and reactive disconnects, candle closes, last trade."""
        ws = self.ws
        if ws is None:
            return []
        state, stats = ws.state, ws.stats
        with self._lock:
            candles, trade = self._counts.candles, self._last_trade
        return [
            f"{state.name:<12}",
            self.left(),
            plural(stats.handovers, "handover"),
            f"{stats.proactive_disconnects} proactive",
            f"{stats.reactive_disconnects} reactive",
            plural(candles, "close"),
            f"trade {trade}",
        ]
