"""Synthetic Binance-style market data for the exchange simulator.

Pure Python, no I/O, no clock: every function takes the wall-clock time in
milliseconds as an argument, so the generators are deterministic for a given seed
and a given sequence of timestamps.

Stream names (lowercase, like Binance):

* ``<symbol>@trade``: one event per trade, ``t`` is the trade id (per stream,
  starts at 1, +1 per event).
* ``<symbol>@kline_<interval>``: candle updates. ``<interval>`` is ``<n><unit>`` with
  unit ``s`` (seconds), ``m`` (minutes), ``h``, ``d``, ``w`` or ``M`` (30 days), e.g.
  ``1s``, ``1m``, ``4h``, ``1M``. Each event carries a top-level ``"u"``: a per-stream
  update id (starts at 1, +1 per event, strictly increasing) that real Binance kline
  events do not have; use it as the deduplication key for klines.
* ``<symbol>@depth`` and ``<symbol>@depth@100ms`` (only with ``depth=True``, a
  :class:`~kstlib.websocket.testing.BinanceDialect` option): diff-depth events whose
  update ids ``U`` (first) to ``u`` (last) continue the previous event's ``u``; with
  ``futures=True`` they also carry ``pu`` (the previous event's ``u``) and ``T``, as on
  the futures streams.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DepthGenerator",
    "KlineGenerator",
    "StreamSpec",
    "TradeGenerator",
    "make_generator",
    "parse_stream",
]

_STREAM_RE = re.compile(r"^([a-z0-9]{2,30})@(?:(trade)|kline_([1-9][0-9]{0,3})([smhdwM]))$")
_DEPTH_RE = re.compile(r"^([a-z0-9]{2,30})@depth(?:@(?:100|1000)ms)?$")

_UNIT_SECONDS: dict[str, int] = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "M": 30 * 86400,
}

_BASE_PRICES: dict[str, float] = {
    "btcusdt": 60000.0,
    "ethusdt": 3000.0,
    "bnbusdt": 550.0,
    "solusdt": 150.0,
    "ethbtc": 0.05,
    "bnbbtc": 0.009,
}


@dataclass(frozen=True)
class StreamSpec:
    """A parsed stream name.

    Attributes:
        name: the stream name as given (``btcusdt@kline_1m``).
        symbol: uppercase symbol (``BTCUSDT``), as it appears in payloads.
        kind: ``"trade"``, ``"kline"`` or ``"depth"``.
        interval: the kline interval label (``"1m"``), ``None`` for trades.
        interval_ms: the candle length in milliseconds after the ``kline_seconds``
            override, ``0`` for trades.
    """

    name: str
    symbol: str
    kind: Literal["trade", "kline", "depth"]
    interval: str | None
    interval_ms: int


def parse_stream(
    name: str,
    kline_seconds: float | Mapping[str, float] | None = None,
    *,
    depth: bool = False,
) -> StreamSpec:
    """Parse and validate a stream name.

    ``kline_seconds`` scales candles down: a number gives every kline interval that
    length in seconds (the ``i`` field keeps the label, e.g. ``"1m"``); a mapping
    overrides only the intervals it names (``{"1m": 20}``). ``depth`` accepts the
    diff-depth streams too.

    Raises:
        ValueError: the name is not a supported stream, or the override is not a
            positive duration.
    """
    deep = _DEPTH_RE.match(name) if depth else None
    if deep is not None:
        return StreamSpec(name, deep.group(1).upper(), "depth", None, 0)
    match = _STREAM_RE.match(name)
    if match is None:
        raise ValueError(f"invalid stream name {name!r}")
    symbol_lower, trade, count, unit = match.groups()
    if trade:
        return StreamSpec(name, symbol_lower.upper(), "trade", None, 0)
    interval = f"{count}{unit}"
    seconds: float = int(count) * _UNIT_SECONDS[unit]
    if isinstance(kline_seconds, Mapping):
        seconds = float(kline_seconds.get(interval, seconds))
    elif kline_seconds is not None:
        seconds = float(kline_seconds)
    interval_ms = round(seconds * 1000)
    if interval_ms <= 0:
        raise ValueError(f"kline length for {interval!r} must be positive, got {seconds!r}")
    return StreamSpec(name, symbol_lower.upper(), "kline", interval, interval_ms)


def _fmt(value: float) -> str:
    return f"{value:.8f}"


class _PriceWalk:
    """Seeded random walk around a per-symbol base price."""

    def __init__(self, spec: StreamSpec, seed: int | str) -> None:
        # random.Random seeded with a str is stable across runs and platforms.
        self.rng = random.Random(f"{seed}:{spec.name}")
        self.price = _BASE_PRICES.get(spec.symbol.lower(), 100.0)

    def step(self) -> tuple[float, float]:
        self.price = max(self.price * (1.0 + self.rng.gauss(0.0, 0.0005)), 1e-8)
        qty = round(self.rng.uniform(0.0001, 2.0), 5)
        return self.price, qty


class TradeGenerator:
    """Produces ``<symbol>@trade`` events with strictly increasing ``t``.

    Not thread-safe: one generator is driven by one task.
    """

    def __init__(self, spec: StreamSpec, seed: int | str = 0) -> None:
        self.spec = spec
        self._walk = _PriceWalk(spec, seed)
        self.next_id = 1

    def tick(self, now_ms: int) -> dict[str, Any]:
        """Return the next trade event, stamped ``now_ms``."""
        price, qty = self._walk.step()
        trade_id = self.next_id
        self.next_id += 1
        return {
            "e": "trade",
            "E": now_ms,
            "s": self.spec.symbol,
            "t": trade_id,
            "p": _fmt(price),
            "q": _fmt(qty),
            "T": now_ms,
            "m": self._walk.rng.random() < 0.5,
            "M": True,
        }

    def roll(self, now_ms: int) -> list[dict[str, Any]]:
        """Trades have no candles: always empty (same interface as klines)."""
        return []

    def next_boundary_ms(self) -> int | None:
        """Trades have no time boundary: ``None``."""
        return None


class KlineGenerator:
    """Produces ``<symbol>@kline_<interval>`` events.

    Candles are aligned on multiples of ``interval_ms`` since the epoch, like
    Binance. Every :meth:`tick` is one synthetic trade inside the current candle
    (``x`` false). :meth:`roll`, called when the wall clock has passed the candle's
    close time, emits the final update of that candle with ``x`` true: exactly one
    such event per candle, and it is the last event carrying that candle's ``k.t``.
    Every event (tick or close) takes the next ``u``. Not thread-safe.
    """

    def __init__(self, spec: StreamSpec, seed: int | str = 0) -> None:
        self.spec = spec
        self._walk = _PriceWalk(spec, seed)
        self.next_update_id = 1
        self.next_trade_id = 1
        self._candle: dict[str, Any] | None = None

    def _open(self, now_ms: int) -> dict[str, Any]:
        start = now_ms - now_ms % self.spec.interval_ms
        price = _fmt(self._walk.price)
        return {
            "t": start,
            "T": start + self.spec.interval_ms - 1,
            "s": self.spec.symbol,
            "i": self.spec.interval,
            "f": -1,
            "L": -1,
            "o": price,
            "c": price,
            "h": price,
            "l": price,
            "v": 0.0,
            "n": 0,
            "x": False,
            "q": 0.0,
            "V": 0.0,
            "Q": 0.0,
            "B": "0",
        }

    def _event(self, now_ms: int, candle: dict[str, Any]) -> dict[str, Any]:
        k = dict(candle)
        for key in ("v", "q", "V", "Q"):
            k[key] = _fmt(k[key])
        update_id = self.next_update_id
        self.next_update_id += 1
        return {"e": "kline", "E": now_ms, "s": self.spec.symbol, "u": update_id, "k": k}

    def roll(self, now_ms: int) -> list[dict[str, Any]]:
        """Close the current candle if ``now_ms`` is past its close time.

        Returns the closing event (``x`` true) or an empty list.
        """
        candle = self._candle
        if candle is None or now_ms <= candle["T"]:
            return []
        self._candle = None
        candle["x"] = True
        return [self._event(now_ms, candle)]

    def tick(self, now_ms: int) -> dict[str, Any]:
        """Return the next update of the candle containing ``now_ms`` (``x`` false).

        Call :meth:`roll` first: a candle that has ended is closed there, never here.
        """
        candle = self._candle
        if candle is None:
            candle = self._candle = self._open(now_ms)
        price, qty = self._walk.step()
        trade_id = self.next_trade_id
        self.next_trade_id += 1
        if candle["f"] < 0:
            candle["f"] = trade_id
            candle["o"] = _fmt(price)
            candle["h"] = candle["l"] = candle["o"]
        candle["L"] = trade_id
        candle["c"] = _fmt(price)
        if price > float(candle["h"]):
            candle["h"] = candle["c"]
        if price < float(candle["l"]):
            candle["l"] = candle["c"]
        candle["v"] += qty
        candle["q"] += qty * price
        if self._walk.rng.random() < 0.5:
            candle["V"] += qty
            candle["Q"] += qty * price
        candle["n"] += 1
        return self._event(now_ms, candle)

    def next_boundary_ms(self) -> int | None:
        """Wall-clock ms at which the open candle must be closed, or ``None``."""
        return None if self._candle is None else int(self._candle["T"]) + 1


class DepthGenerator:
    """Produces ``<symbol>@depth`` diff events: each covers one to three update ids,
    ``U`` being the previous event's ``u`` + 1. Not thread-safe."""

    def __init__(self, spec: StreamSpec, seed: int | str = 0, futures: bool = False) -> None:
        self.spec = spec
        self.futures = futures
        self._walk = _PriceWalk(spec, seed)
        self.next_update_id = 1

    def tick(self, now_ms: int) -> dict[str, Any]:
        """Return the next diff event, stamped ``now_ms``."""
        price, qty = self._walk.step()
        first = self.next_update_id
        last = first + self._walk.rng.randint(0, 2)
        self.next_update_id = last + 1
        event: dict[str, Any] = {
            "e": "depthUpdate",
            "E": now_ms,
            "s": self.spec.symbol,
            "U": first,
            "u": last,
            "b": [[_fmt(price * 0.9999), _fmt(qty)]],
            "a": [[_fmt(price * 1.0001), _fmt(qty / 2)]],
        }
        if self.futures:
            event["T"] = now_ms
            event["pu"] = first - 1
        return event

    def roll(self, now_ms: int) -> list[dict[str, Any]]:
        """No candles: always empty (same interface as klines)."""
        return []

    def next_boundary_ms(self) -> int | None:
        return None


Generator = TradeGenerator | KlineGenerator | DepthGenerator


def make_generator(spec: StreamSpec, seed: int | str = 0, *, futures: bool = False) -> Generator:
    """Return the generator for ``spec`` (``futures``: depth events in the futures shape)."""
    if spec.kind == "trade":
        return TradeGenerator(spec, seed)
    if spec.kind == "depth":
        return DepthGenerator(spec, seed, futures)
    return KlineGenerator(spec, seed)
