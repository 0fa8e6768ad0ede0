"""``kstlib-ws demo``: the guide's trading example, live, against a local exchange.

The reference guide's "Trading Example" follows 4-hour Binance candles and keeps the
connection only around each candle close: it disconnects when more than 5 minutes are
left until the close and reconnects when fewer than 2 minutes are left. Nobody wants to
watch that for 4 hours, so the demo compresses time:

* an in-process :class:`~kstlib.websocket.testing.ExchangeSimulator` publishes
  ``btcusdt@kline_4h`` with every 4-hour candle lasting ``candle_seconds`` (20 s by
  default), plus ``btcusdt@trade`` (subscribed with a ``SUBSCRIBE`` message that the
  manager resends on every connect);
* the sync :class:`~kstlib.websocket.WebSocketManager` disconnects (reason
  ``CALLBACK_TRIGGERED``) while more than 60 % of a candle is left and reconnects once
  fewer than 40 % are left, so it is connected across every candle close and receives
  the closing ``"x": true`` update; both rules are polled every 5 % of a candle;
* ``max_connection_age`` (``connection_limit``, 60 s by default) rotates a connection
  proactively (reason ``CONNECTION_LIMIT``) before the simulator's own, slightly longer,
  connection lifetime (Binance's 24-hour rule, scaled down) would cut it.

Output: one line on stdout per candle close, connect and disconnect (with its reason and
whether it was proactive or reactive); a status line on stderr (redrawn in place on a
terminal, a plain line every few seconds otherwise); a final table of every
:class:`~kstlib.websocket.WebSocketStats` field on stdout. The demo ends after
``duration`` seconds, or on SIGINT (Ctrl-C) / SIGTERM, always with the summary and exit
status 0; a second signal ends the process at once.

Not thread-safe: :func:`run_demo` is meant to run once per process, in the main thread
(signal handlers can only be installed there; elsewhere it runs without them).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO, TextIO

from kstlib.websocket.exceptions import WebSocketClosedError, WebSocketError
from kstlib.websocket.models import (
    ConnectionState,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketStats,
)

__all__ = ["CandleClock", "DemoOptions", "DemoPolicy", "StopSignals", "run_demo", "silence"]

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
#: Seconds between two plain status lines when stderr is not a terminal.
PLAIN_STATUS_EVERY = 5.0
#: Seconds between two redraws of the live status line on a terminal.
LIVE_STATUS_EVERY = 0.2


@dataclass(frozen=True)
class DemoOptions:
    """What ``kstlib-ws demo`` runs.

    Attributes:
        duration: seconds before the demo ends by itself; ``None``: until a signal.
        candle_seconds: length of one (4-hour) candle in the compressed time, >= 1.
        connection_limit: ``max_connection_age`` of the client, in seconds, > 0. The
            simulator closes connections 25 % later (at least 1 s later).
        seed: seed of the simulator's price walk.
        trade_rate: trade events per second.
        kline_rate: kline updates per second.
    """

    duration: float | None = None
    candle_seconds: float = 20.0
    connection_limit: float = 60.0
    seed: int = 0
    trade_rate: float = 5.0
    kline_rate: float = 4.0

    def __post_init__(self) -> None:
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration!r}")
        if not self.candle_seconds >= 1:
            raise ValueError(f"candle seconds must be >= 1, got {self.candle_seconds!r}")
        if not self.connection_limit > 0:
            raise ValueError(f"connection limit must be > 0 seconds, got {self.connection_limit!r}")
        if self.trade_rate < 0 or self.kline_rate < 0:
            raise ValueError("event rates must be >= 0")

    @property
    def server_connection_age(self) -> float:
        """The simulator's own connection lifetime: a bit above ``connection_limit``."""
        return self.connection_limit + max(1.0, 0.25 * self.connection_limit)


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
    """The guide's two rules, scaled to a compressed candle.

    ``should_disconnect``: more than ``disconnect_above`` seconds until the close (and
    the candle opened more than ``grace`` seconds ago). ``should_reconnect``: fewer than
    ``reconnect_below`` seconds until the close. Thread-safe.
    """

    def __init__(self, clock: CandleClock) -> None:
        self.clock = clock
        self.disconnect_above = DISCONNECT_ABOVE * clock.length
        self.reconnect_below = RECONNECT_BELOW * clock.length
        self.check_interval = max(0.05, CHECK_FRACTION * clock.length)
        self.grace = self.check_interval

    def should_disconnect(self) -> bool:
        left = self.clock.seconds_until_close()
        return self.disconnect_above < left < self.clock.length - self.grace

    def should_reconnect(self) -> bool:
        return self.clock.seconds_until_close() < self.reconnect_below


class StopSignals:
    """Turn SIGINT / SIGTERM into a call of ``on_signal(signum)``, once.

    The handler only records the signal and calls ``on_signal`` (which must return at
    once: it runs in the main thread between two bytecodes, possibly while that thread
    holds a lock). A second signal gets the default action (the process ends at once).
    Installed only when used from the main thread; a no-op elsewhere. Use as a context
    manager: the previous handlers are restored on exit.
    """

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}
        self.received: int | None = None

    def _handler(self, signum: int, frame: object) -> None:
        import signal

        if self.received is not None:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.received = signum
        self._on_signal(signum)

    def __enter__(self) -> StopSignals:
        import signal

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        import signal

        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @property
    def name(self) -> str | None:
        """``"SIGINT"`` / ``"SIGTERM"`` once a signal was received, else ``None``."""
        if self.received is None:
            return None
        import signal

        return signal.Signals(self.received).name


class Console:
    """Event lines on ``out``, a status line on ``err``; safe from any thread.

    On a terminal (``err.isatty()``) the status line is redrawn in place with a carriage
    return and erased before each event line; otherwise :meth:`status` prints plain
    lines. Writes to a closed pipe are ignored (``broken`` becomes True).
    """

    def __init__(self, out: TextIO, err: TextIO, live: bool | None = None) -> None:
        self.out = out
        self.err = err
        self.live = err.isatty() if live is None else live
        self.broken = False
        self._lock = threading.Lock()
        self._status = ""

    def _width(self) -> int:
        return max(20, shutil.get_terminal_size((100, 24)).columns - 1)

    def _draw(self) -> None:
        if self.live and self._status:
            self.err.write("\r\x1b[K" + self._status[: self._width()])
            self.err.flush()

    def _erase(self) -> None:
        if self.live and self._status:
            self.err.write("\r\x1b[K")
            self.err.flush()

    def event(self, line: str) -> None:
        """Print one event line on ``out`` (the status line is kept below it)."""
        with self._lock:
            try:
                self._erase()
                self.out.write(line + "\n")
                self.out.flush()
                self._draw()
            except (BrokenPipeError, ValueError):
                self.broken = True

    def status(self, line: str) -> None:
        """Show the status: redraw in place (terminal) or print a plain line."""
        with self._lock:
            try:
                if self.live:
                    self._status = line
                    self._draw()
                else:
                    self.err.write(line + "\n")
                    self.err.flush()
            except (BrokenPipeError, ValueError):
                self.broken = True

    def error(self, line: str) -> None:
        """Print one line on ``err`` (below the status line, which is not redrawn)."""
        with self._lock:
            try:
                self._erase()
                self._status = ""
                self.err.write(line + "\n")
                self.err.flush()
            except (BrokenPipeError, ValueError):
                self.broken = True

    def end_status(self) -> None:
        """Erase the live status line for good."""
        with self._lock:
            try:
                self._erase()
            except (BrokenPipeError, ValueError):
                self.broken = True
            self._status = ""


def _hms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).strftime("%H:%M:%S")


def _reason_word(reason: DisconnectReason) -> str:
    return "proactive" if reason.is_proactive else "reactive"


class _Demo:
    """One demo run: the callbacks, the consumer loop, the status and the summary."""

    def __init__(self, opts: DemoOptions, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.clock = CandleClock(opts.candle_seconds)
        self.policy = DemoPolicy(self.clock)
        self.started = time.monotonic()
        self.stop_event = threading.Event()
        self.done = threading.Event()
        self.ws: Any = None
        self.lock = threading.Lock()
        # guarded by lock
        self.last_reason: DisconnectReason | None = None
        self.connects = 0
        self.candles = 0
        self.last_close: tuple[str, int] | None = None  # (close price, close time ms)
        self.last_trade: str | None = None
        self.trades = 0
        self.kline_updates = 0
        self.acks = 0

    # ------------------------------------------------------------------ helpers

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.started:7.2f}s]"

    def left(self) -> str:
        return f"{self.clock.seconds_until_close():.1f}s to candle close"

    # ------------------------------------------------------------------ callbacks (engine thread)

    def on_connect(self) -> None:
        with self.lock:
            self.connects += 1
            n, after = self.connects, self.last_reason
        if after is None:
            self.console.event(f"{self.stamp()} connected (connect #{n}), {self.left()}")
            return
        if after is DisconnectReason.CALLBACK_TRIGGERED:
            why = f"should_reconnect(): under {self.policy.reconnect_below:g}s to close"
        elif after is DisconnectReason.CONNECTION_LIMIT:
            why = "rotation after max_connection_age"
        elif after.is_reactive:
            why = "automatic reconnect after a lost connection"
        else:
            why = "reconnect"
        self.console.event(
            f"{self.stamp()} RECONNECTED (connect #{n}) after {after.name}: {why}, {self.left()}"
        )

    def on_disconnect(self, reason: DisconnectReason) -> None:
        with self.lock:
            self.last_reason = reason
        if reason is DisconnectReason.CALLBACK_TRIGGERED:
            why = (
                f"should_disconnect(): over {self.policy.disconnect_above:g}s to close, "
                f"waiting until under {self.policy.reconnect_below:g}s"
            )
        elif reason is DisconnectReason.CONNECTION_LIMIT:
            why = (
                f"connection reached max_connection_age={self.opts.connection_limit:g}s, "
                f"rotating before the exchange's {self.opts.server_connection_age:g}s limit"
            )
        elif reason is DisconnectReason.USER_REQUESTED and self.stop_event.is_set():
            why = "end of the demo"
        else:
            why = "reconnecting by the reconnect strategy" if reason.is_reactive else ""
        self.console.event(
            f"{self.stamp()} DISCONNECTED: {reason.name} ({_reason_word(reason)})"
            + (f": {why}" if why else "")
            + f", {self.left()}"
        )

    # ------------------------------------------------------------------ consumer (main thread)

    def handle(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        kind = msg.get("e")
        if kind == "trade":
            with self.lock:
                self.trades += 1
                self.last_trade = str(msg.get("p"))
            return
        if kind == "kline":
            k = msg.get("k") or {}
            with self.lock:
                self.kline_updates += 1
            if not k.get("x"):
                return
            close_ms = int(k["T"]) + 1
            with self.lock:
                self.candles += 1
                self.last_close = (str(k["c"]), close_ms)
                n = self.candles
            self.console.event(
                f"{self.stamp()} CANDLE CLOSED #{n} {msg.get('s')} {k.get('i')} "
                f"{_hms(int(k['t']))}-{_hms(close_ms)} UTC  o={k['o']} h={k['h']} "
                f"l={k['l']} c={k['c']} trades={k.get('n')}"
            )
            return
        if "result" in msg and "id" in msg:
            with self.lock:
                self.acks += 1

    # ------------------------------------------------------------------ status thread

    def status_line(self) -> str:
        ws = self.ws
        state: ConnectionState = ws.state
        stats: WebSocketStats = ws.stats
        with self.lock:
            last_close, last_trade, candles = self.last_close, self.last_trade, self.candles
        close = (
            f"last close {last_close[0]} @ {_hms(last_close[1])}"
            if last_close is not None
            else "no candle closed yet"
        )
        reasons = ", ".join(f"{r.name} {n}" for r, n in stats.disconnects_by_reason.items() if n)
        return (
            f"{state.name:<12} | {self.left()} | {close} ({candles}) | "
            f"trade {last_trade or '-'} | connects {stats.connects} | disconnects "
            f"{stats.proactive_disconnects} proactive / {stats.reactive_disconnects} reactive"
            + (f" ({reasons})" if reasons else "")
        )

    def status_loop(self) -> None:
        every = LIVE_STATUS_EVERY if self.console.live else PLAIN_STATUS_EVERY
        while not self.done.wait(every):
            line = self.status_line()
            self.console.status(line if self.console.live else f"{self.stamp()} status: {line}")

    def stopper(self) -> None:
        self.stop_event.wait(self.opts.duration)
        self.stop_event.set()
        self.ws.close()

    # ------------------------------------------------------------------ summary

    def summary(self, stats: WebSocketStats, ended_by: str) -> list[str]:
        opts = self.opts
        with self.lock:
            rows: list[tuple[str, str]] = [
                ("ended by", ended_by),
                ("ran for", f"{time.monotonic() - self.started:.1f} s"),
                ("candle length (4h compressed)", f"{opts.candle_seconds:g} s"),
                (
                    "rules",
                    f"disconnect > {self.policy.disconnect_above:g} s to close, "
                    f"reconnect < {self.policy.reconnect_below:g} s",
                ),
                (
                    "max_connection_age",
                    f"{opts.connection_limit:g} s "
                    f"(exchange limit {opts.server_connection_age:g} s)",
                ),
                ("candle closes received", str(self.candles)),
                ("kline updates received", str(self.kline_updates)),
                ("trades received", str(self.trades)),
            ]
        lines = ["", "Demo summary", "------------"]
        width = max(len(k) for k, _ in rows)
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        lines += ["", "WebSocketStats", "--------------"]
        fields: list[tuple[str, str]] = []
        for f in dataclasses.fields(stats):
            if f.name == "disconnects_by_reason":
                continue
            value = getattr(stats, f.name)
            if isinstance(value, float):
                text = f"{value:.2f} s"
            elif isinstance(value, DisconnectReason):
                text = f"{value.name} ({_reason_word(value)})"
            elif value is None:
                text = "-"
            else:
                text = str(value)
            fields.append((f.name, text))
        width = max(len(k) for k, _ in fields)
        lines += [f"  {k:<{width}}  {v:>12}" for k, v in fields]
        lines += ["  disconnects_by_reason:"]
        for reason in DisconnectReason:
            n = stats.disconnects_by_reason.get(reason, 0)
            lines.append(f"    {reason.name:<20} {_reason_word(reason):<9}  {n:>6}")
        return lines


def _start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    return t


def run_demo(opts: DemoOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the demo; return the process exit status (0, or 1 when the client failed).

    Blocks for ``opts.duration`` seconds (or until SIGINT/SIGTERM). See the module
    docstring for what it prints.
    """
    from kstlib.websocket.manager import WebSocketManager
    from kstlib.websocket.testing import ExchangeSimulator

    console = Console(out or sys.stdout, err or sys.stderr)
    demo = _Demo(opts, console)
    policy = demo.policy
    sim = ExchangeSimulator(
        event_rate=opts.trade_rate,
        kline_rate=opts.kline_rate,
        kline_seconds=opts.candle_seconds,
        seed=opts.seed,
        max_connection_age=opts.server_connection_age,
    )
    status = 0
    error_text = ""
    # Signals first: from here on, Ctrl-C / SIGTERM only set stop_event (no traceback,
    # even while the simulator starts); the stopper thread then closes the manager.
    with StopSignals(lambda _signum: demo.stop_event.set()) as signals, sim:
        ws = WebSocketManager(
            sim.stream_url(KLINE_STREAM),
            config={},  # the demo does not depend on the user's kstlib.conf.yml
            subscriptions=[{"method": "SUBSCRIBE", "params": [TRADE_STREAM], "id": 1}],
            reconnect_strategy=ReconnectStrategy.EXPONENTIAL_BACKOFF,
            reconnect_delay=0.2,
            reconnect_delay_max=5.0,
            should_disconnect=policy.should_disconnect,
            should_reconnect=policy.should_reconnect,
            disconnect_check_interval=policy.check_interval,
            reconnect_check_interval=policy.check_interval,
            max_connection_age=opts.connection_limit,
            close_timeout=2.0,
            on_connect=demo.on_connect,
            on_disconnect=demo.on_disconnect,
        )
        demo.ws = ws
        console.event(
            f"kstlib-ws demo: exchange simulator at {sim.url}, stream {KLINE_STREAM} "
            f"(4h candles compressed to {opts.candle_seconds:g} s) + {TRADE_STREAM}"
        )
        console.event(
            f"rules: disconnect when > {policy.disconnect_above:g} s to candle close, "
            f"reconnect when < {policy.reconnect_below:g} s (checked every "
            f"{policy.check_interval:g} s); max_connection_age {opts.connection_limit:g} s "
            f"(exchange cuts at {opts.server_connection_age:g} s)"
            + (f"; running {opts.duration:g} s" if opts.duration else "; Ctrl-C to stop")
        )
        stopper = _start_thread(demo.stopper, "kstlib-ws-demo-stopper")
        status_thread = _start_thread(demo.status_loop, "kstlib-ws-demo-status")
        try:
            if not demo.stop_event.is_set():
                ws.connect()
                for msg in ws.stream():
                    demo.handle(msg)
                    if console.broken:  # stdout closed (`| head`): nobody is watching
                        demo.stop_event.set()
        except WebSocketError as exc:
            # closing while connect() waits raises WebSocketClosedError: not an error
            if not (isinstance(exc, WebSocketClosedError) and demo.stop_event.is_set()):
                error_text = " ".join(str(exc).split())
                status = 1
        except KeyboardInterrupt:  # a SIGINT that arrived before the handler was set
            pass
        finally:
            demo.stop_event.set()
            stopper.join()
            demo.done.set()
            status_thread.join()
            console.end_status()
        ended_by = signals.name or ("error" if status else "duration reached")
        stats = ws.stats
    for line in demo.summary(stats, ended_by):
        console.event(line)
    if error_text:
        console.error(f"kstlib-ws: error: {error_text}")
    if console.broken:
        silence(console.out)
    return status


def silence(stream: TextIO | BinaryIO) -> None:
    """After EPIPE on ``stream`` (stdout piped into ``head``...): point its descriptor at
    /dev/null so later writes and the interpreter's final flush do not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
