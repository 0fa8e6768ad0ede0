"""``kstlib-ws demo``: the guide's trading example, live, against a local exchange.

:func:`run_demo` starts an in-process :class:`~kstlib.websocket.testing.ExchangeSimulator`
publishing ``btcusdt@kline_4h`` (every 4-hour candle lasting ``candle_seconds``, 20 s by
default) and ``btcusdt@trade`` (subscribed with a ``SUBSCRIBE`` message the manager
resends on every connect), and follows it with a sync
:class:`~kstlib.websocket.WebSocketManager` that plays the scenario of
:mod:`kstlib.websocket.cli.scenario`:

* around every candle close, proactive disconnects (reason ``CALLBACK_TRIGGERED``, far
  from the close) and reconnects (``should_reconnect``, near it), so every candle's
  closing ``"x": true`` update is received;
* inside every connected window, a rotation at ``max_connection_age`` (reason
  ``CONNECTION_LIMIT``, a quarter of a candle by default), make-before-break: the new
  connection streams before the old one closes (a handover), duplicates of the overlap
  are dropped by ``dedupe_key`` and the stream has no gap. ``handover=False`` rotates
  break-before-make instead.

With the default settings, ``--duration 30`` always covers a whole connected window,
hence at least one handover, next to the disconnects and reconnects.

Output (:mod:`~kstlib.websocket.cli.narrator`, :mod:`~kstlib.websocket.cli.summary`):
a few lines describing the setup, then one line (and indented details) on stdout per
candle close, connect, disconnect and handover, with its reason and whether it was
proactive or reactive; a status line on stderr (redrawn in place on a terminal, a plain
line every 5 seconds otherwise); at the end a table of the demo's counters and of every
:class:`~kstlib.websocket.WebSocketStats` field on stdout. No line is wider than 80
columns. The demo ends after ``duration`` seconds, or on SIGINT (Ctrl-C) / SIGTERM,
always with the summary and exit status 0 (1 when the client failed); a second signal
ends the process at once; a closed stdout ends it quietly.

Not thread-safe: :func:`run_demo` is meant to run once per process, in the main thread
(signal handlers can only be installed there; elsewhere it runs without them).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from kstlib.websocket.cli.console import Console
from kstlib.websocket.cli.logs import PROG, one_line
from kstlib.websocket.cli.narrator import Narrator
from kstlib.websocket.cli.scenario import (
    KLINE_STREAM,
    TRADE_STREAM,
    CandleClock,
    DemoOptions,
    DemoPolicy,
    event_key,
)
from kstlib.websocket.cli.signals import StopSignals, silence
from kstlib.websocket.cli.summary import summary_lines
from kstlib.websocket.exceptions import WebSocketClosedError, WebSocketError
from kstlib.websocket.models import ReconnectStrategy

if TYPE_CHECKING:
    from kstlib.websocket.manager import WebSocketManager
    from kstlib.websocket.testing import ExchangeSimulator

__all__ = ["DemoOptions", "run_demo"]

#: Seconds between two plain status lines when stderr is not a terminal.
PLAIN_STATUS_EVERY = 5.0
#: Seconds between two redraws of the live status line on a terminal.
LIVE_STATUS_EVERY = 0.2


def _simulator(opts: DemoOptions) -> ExchangeSimulator:
    """The demo's exchange (not started): 4h candles of ``candle_seconds``, connections
    cut at ``server_connection_age``."""
    from kstlib.websocket.testing import ExchangeSimulator

    return ExchangeSimulator(
        event_rate=opts.trade_rate,
        kline_rate=opts.kline_rate,
        kline_seconds=opts.candle_seconds,
        seed=opts.seed,
        max_connection_age=opts.server_connection_age,
    )


def _manager(opts: DemoOptions, url: str, narrator: Narrator) -> WebSocketManager:
    """The demo's client: the guide's rules, the rotation age, handover (with
    ``dedupe_key``) unless ``opts.handover`` is off, and the narrator's callbacks. The
    user's ``kstlib.conf.yml`` is not read: the demo does not depend on it."""
    from kstlib.websocket.manager import WebSocketManager

    policy = narrator.policy
    continuity: dict[str, Any] = (
        {"handover": True, "dedupe_key": event_key} if opts.handover else {"handover": False}
    )
    return WebSocketManager(
        url,
        config={},
        subscriptions=[{"method": "SUBSCRIBE", "params": [TRADE_STREAM], "id": 1}],
        reconnect_strategy=ReconnectStrategy.EXPONENTIAL_BACKOFF,
        reconnect_delay=0.2,
        reconnect_delay_max=5.0,
        should_disconnect=policy.should_disconnect,
        should_reconnect=policy.should_reconnect,
        disconnect_check_interval=policy.check_interval,
        reconnect_check_interval=policy.check_interval,
        max_connection_age=opts.max_connection_age,
        close_timeout=2.0,
        on_connect=narrator.on_connect,
        on_disconnect=narrator.on_disconnect,
        **continuity,
    )


def _intro(opts: DemoOptions, policy: DemoPolicy, url: str) -> list[tuple[str, str]]:
    """The setup, as (label, text) rows printed before the first event."""
    if opts.handover:
        rotation = "make-before-break handover (dedupe_key: trade and kline ids)"
    else:
        rotation = "break-before-make (--no-handover)"
    return [
        ("exchange", f"simulator at {url}: {KLINE_STREAM} + {TRADE_STREAM}"),
        ("candles", f"4h candles compressed to {opts.candle_seconds:g} s"),
        (
            "rules",
            f"disconnect when > {policy.disconnect_above:g} s to candle close, reconnect "
            f"when < {policy.reconnect_below:g} s (checked every {policy.check_interval:g} s)",
        ),
        (
            "rotation",
            f"max_connection_age {opts.max_connection_age:g} s, {rotation}; the exchange "
            f"cuts connections at {opts.server_connection_age:g} s",
        ),
        ("status", "state | time to close | handovers | proactive, reactive disconnects"),
        ("running", f"{opts.duration:g} s" if opts.duration else "until Ctrl-C"),
    ]


def _print_intro(console: Console, rows: list[tuple[str, str]]) -> None:
    """A title line, then the ``rows`` with their labels aligned (wrapped text is
    indented under the text)."""
    console.event(f"{PROG} demo: the guide's trading example on a local exchange simulator")
    width = max(len(label) for label, _ in rows)
    indent = " " * (width + 4)
    for label, text in rows:
        console.event(f"  {label:<{width}}  {text}", indent=indent)


def _start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start ``target`` on a daemon thread named ``name``."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def _show_status(narrator: Narrator, console: Console, done: threading.Event) -> None:
    """Refresh the status line until ``done`` is set (status thread)."""
    every = LIVE_STATUS_EVERY if console.live else PLAIN_STATUS_EVERY
    while not done.wait(every):
        console.status(narrator.status_fields(), narrator.stamp())


def _consume(ws: WebSocketManager, narrator: Narrator, console: Console) -> str:
    """Connect and hand every stream item (gap markers included) to the narrator until
    the stream ends; return the error that ended it, or ``""``.

    A closed stdout stops the demo (nobody is watching). Closing while ``connect()``
    waits raises ``WebSocketClosedError``: after a stop request that is no error.
    """
    stopping = narrator.stopping
    try:
        if not stopping.is_set():
            ws.connect()
            for item in ws.stream(events=True):
                narrator.handle(item)
                if console.broken:
                    stopping.set()
    except WebSocketError as exc:
        if not (isinstance(exc, WebSocketClosedError) and stopping.is_set()):
            return one_line(exc)
    except KeyboardInterrupt:  # a SIGINT that arrived before the handler was set
        pass
    return ""


def _run(ws: WebSocketManager, narrator: Narrator, console: Console, duration: float | None) -> str:
    """Run the demo until ``duration`` passes, a stop request or an error; return the
    error text (``""`` for none). The stop request (``narrator.stopping``) closes the
    manager from a helper thread; the status thread runs meanwhile."""
    stopping = narrator.stopping
    done = threading.Event()

    def stopper() -> None:
        stopping.wait(duration)
        stopping.set()
        ws.close()

    stop_thread = _start_thread(stopper, "kstlib-ws-demo-stopper")
    status_thread = _start_thread(
        lambda: _show_status(narrator, console, done), "kstlib-ws-demo-status"
    )
    try:
        return _consume(ws, narrator, console)
    finally:
        stopping.set()
        stop_thread.join()
        done.set()
        status_thread.join()
        console.end_status()


def run_demo(opts: DemoOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the demo, printing on ``out`` / ``err`` (default: stdout / stderr); return the
    process exit status: 0, or 1 when the client failed (the error is printed last).

    Blocks for ``opts.duration`` seconds, or until SIGINT / SIGTERM. See the module
    docstring for what it prints.
    """
    console = Console(out or sys.stdout, err or sys.stderr)
    policy = DemoPolicy(CandleClock(opts.candle_seconds))
    narrator = Narrator(opts, policy, console, threading.Event())
    # Signals first: from here on, Ctrl-C / SIGTERM only request the stop (no traceback,
    # even while the simulator starts).
    with StopSignals(lambda _signum: narrator.stopping.set()) as signals, _simulator(opts) as sim:
        ws = _manager(opts, sim.stream_url(KLINE_STREAM), narrator)
        narrator.ws = ws
        _print_intro(console, _intro(opts, policy, sim.url))
        error_text = _run(ws, narrator, console, opts.duration)
        ended_by = signals.name or ("error" if error_text else "duration reached")
        stats = ws.stats
    summary = summary_lines(opts, policy, narrator.counts(), stats, ended_by, narrator.elapsed())
    console.event("\n".join(summary))
    if error_text:
        console.error(f"{PROG}: error: {error_text}")
    if console.broken:
        silence(console.out)
    return 1 if error_text else 0
