"""What ``kstlib-ws demo`` plays: its options and the guide's trading rules, time compressed.

The reference guide's "Trading Example" follows 4-hour Binance candles and keeps the
connection only around each candle close: it disconnects when more than 5 minutes are
left until the close and reconnects when fewer than 2 minutes are left. The demo
compresses a 4-hour candle to ``candle_seconds`` and scales the rules to fractions of a
candle (:class:`DemoPolicy`): disconnect while more than 60 % of it is left, reconnect
once fewer than 40 % are left, so the client is connected across every close.

Connections are also rotated at ``max_connection_age`` (by default a quarter of a
candle, so once in every connected window), before the simulated exchange's own, 25 %
longer, connection lifetime (Binance's 24-hour cut, scaled down). With ``handover`` on
(the default) the rotation is make-before-break: :func:`event_key` gives every market
event its identity (the trade id ``t``, the kline update id ``u``), so the engine can
drop the overlap's duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHECK_FRACTION",
    "DISCONNECT_ABOVE",
    "KLINE_STREAM",
    "RECONNECT_BELOW",
    "ROTATE_FRACTION",
    "TRADE_STREAM",
    "CandleClock",
    "DemoOptions",
    "DemoPolicy",
    "event_key",
]

#: Stream names published by the demo's exchange.
KLINE_STREAM = "btcusdt@kline_4h"
TRADE_STREAM = "btcusdt@trade"
#: Fractions of a candle: disconnect above, reconnect below (time left until the close).
DISCONNECT_ABOVE = 0.6
RECONNECT_BELOW = 0.4
#: Fraction of a candle between two polls of should_disconnect / should_reconnect, and
#: the grace after a candle opens during which the demo does not disconnect yet (so the
#: previous candle's closing update, published right at the boundary, gets through).
CHECK_FRACTION = 0.05
#: Default max_connection_age, as a fraction of a candle: shorter than the shortest
#: connected window (about 40 % of a candle), at least half of the longest (about 50 %):
#: one rotation in every connected window.
ROTATE_FRACTION = 0.25


@dataclass(frozen=True)
class DemoOptions:
    """What ``kstlib-ws demo`` runs.

    Attributes:
        duration: seconds before the demo ends by itself; ``None``: until a signal.
        candle_seconds: length of one (4-hour) candle in the compressed time, >= 1.
        connection_limit: ``max_connection_age`` of the client in seconds, > 0;
            ``None``: a quarter of ``candle_seconds`` (see :attr:`max_connection_age`).
        handover: rotate make-before-break (``dedupe_key`` given) rather than
            disconnect, then reconnect.
        seed: seed of the simulator's price walk.
        trade_rate: trade events per second.
        kline_rate: kline updates per second.

    Raises:
        ValueError: a value out of range (the message names it).
    """

    duration: float | None = None
    candle_seconds: float = 20.0
    connection_limit: float | None = None
    handover: bool = True
    seed: int = 0
    trade_rate: float = 5.0
    kline_rate: float = 4.0

    def __post_init__(self) -> None:
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration!r}")
        if not self.candle_seconds >= 1:
            raise ValueError(f"candle seconds must be >= 1, got {self.candle_seconds!r}")
        if self.connection_limit is not None and not self.connection_limit > 0:
            raise ValueError(f"connection limit must be > 0 seconds, got {self.connection_limit!r}")
        if self.trade_rate < 0 or self.kline_rate < 0:
            raise ValueError("event rates must be >= 0")

    @property
    def max_connection_age(self) -> float:
        """The client's rotation age: ``connection_limit``, else a quarter of a candle."""
        if self.connection_limit is not None:
            return self.connection_limit
        return ROTATE_FRACTION * self.candle_seconds

    @property
    def server_connection_age(self) -> float:
        """The simulator's own connection lifetime: 25 % (at least 1 s) above
        :attr:`max_connection_age`."""
        age = self.max_connection_age
        return age + max(1.0, 0.25 * age)


class CandleClock:
    """Seconds until the current candle closes, on the simulator's clock.

    The simulator aligns candles on multiples of their length since the Unix epoch
    (like Binance), using the wall clock in milliseconds; so does this clock.
    Thread-safe (no state besides the length).
    """

    def __init__(self, candle_seconds: float, now: Callable[[], float] = time.time) -> None:
        self.length_ms = round(candle_seconds * 1000)
        self.length = self.length_ms / 1000.0
        self._now = now

    def seconds_until_close(self) -> float:
        """Seconds until the current candle's close (in ``(0, length]``)."""
        now_ms = int(self._now() * 1000)
        return (self.length_ms - now_ms % self.length_ms) / 1000.0


class DemoPolicy:
    """The guide's two rules, scaled to a compressed candle. Thread-safe.

    ``should_disconnect``: more than ``disconnect_above`` seconds until the close, and
    the candle opened more than ``grace`` seconds ago. ``should_reconnect``: fewer than
    ``reconnect_below`` seconds until the close. Both are meant to be polled every
    ``check_interval`` seconds.
    """

    def __init__(self, clock: CandleClock) -> None:
        self.clock = clock
        self.disconnect_above = DISCONNECT_ABOVE * clock.length
        self.reconnect_below = RECONNECT_BELOW * clock.length
        self.check_interval = max(0.05, CHECK_FRACTION * clock.length)
        self.grace = self.check_interval

    def should_disconnect(self) -> bool:
        """True in the safe part of the candle: far from the close, past the grace."""
        left = self.clock.seconds_until_close()
        return self.disconnect_above < left < self.clock.length - self.grace

    def should_reconnect(self) -> bool:
        """True once the close is near."""
        return self.clock.seconds_until_close() < self.reconnect_below


def event_key(msg: Any) -> tuple[str, int] | None:
    """The demo's ``dedupe_key``: ``("trade", t)`` for a trade, ``("kline", u)`` for a
    kline update (the simulator's ids, the same on every connection), ``None`` for
    anything else (replies to ``SUBSCRIBE``: never dropped). Never raises."""
    if not isinstance(msg, dict):
        return None
    kind = msg.get("e")
    ident = msg.get("t") if kind == "trade" else msg.get("u") if kind == "kline" else None
    if isinstance(kind, str) and isinstance(ident, int):
        return kind, ident
    return None
