"""``kstlib-ws stream URL --to BUS``: relay a WebSocket feed to Redis Streams or NATS.

Nothing goes to stdout: every message, and every gap marker, is published to the bus
(:mod:`kstlib.websocket.sinks`). Stderr has the connect / disconnect lines of ``stream``
and a live status line: messages per second received and published, the bus lag (socket
read to the bus's answer), what is buffered, markers published, messages dropped, too
large or lost, and whether the bus is up (rewritten in place on a terminal; otherwise one
line every :data:`STATUS_EVERY` seconds). The last line sums it up.

The bus address is checked and the bus connected to before the exchange: a wrong URL or
a missing client library is a usage error (exit 2), an unreachable bus a connection
error (exit 1), each one line. ``--count`` stops after that many messages received.

Thread-safety: runs on the main thread; the relay's hook on the engine thread.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TextIO

from kstlib.websocket.cli.logs import one_line
from kstlib.websocket.cli.signals import StopSignals
from kstlib.websocket.cli.stream import (
    EXIT_CONNECT,
    EXIT_OK,
    EXIT_USAGE,
    StatusLines,
    _error_status,
    _manager_options,
)
from kstlib.websocket.exceptions import WebSocketError
from kstlib.websocket.sinks import BusUnavailableError, MissingExtraError, Relay, RelayStats
from kstlib.websocket.sinks import open_sink as _open_sink

__all__ = ["STATUS_EVERY", "dedupe_key_of", "run_relay", "status_text"]

#: Seconds between two status lines when stderr is not a terminal.
STATUS_EVERY = 10.0


def dedupe_key_of(spec: str) -> Callable[[Any], Hashable | None]:
    """``--dedupe-key s,t`` or ``data.t``: the key is the values at those (dotted) paths,
    joined by ``|``; None when one is missing."""
    paths = [p.split(".") for p in spec.split(",") if p]

    def key(msg: Any) -> Hashable | None:
        values = []
        for path in paths:
            value = msg
            for part in path:
                if not isinstance(value, dict) or part not in value:
                    return None
                value = value[part]
            values.append(str(value))
        return "|".join(values)

    return key


def status_text(stats: RelayStats, previous: RelayStats | None, seconds: float) -> str:
    """One status line for ``stats`` (rates since ``previous``, ``seconds`` ago)."""
    rate_in = rate_out = 0.0
    if previous is not None and seconds > 0:
        rate_in = (stats.received - previous.received) / seconds
        rate_out = (stats.published - previous.published) / seconds
    fields = [
        f"in {rate_in:,.0f}/s out {rate_out:,.0f}/s",
        f"lag {stats.lag * 1000:.1f} ms",
        f"buffered {stats.buffered:,}",
        f"markers {stats.markers:,}",
        f"dropped {stats.dropped:,}",
        f"bus {'up' if stats.bus_up else 'DOWN'}",
    ]
    if stats.too_large or stats.refused:
        fields.append(f"refused {stats.too_large + stats.refused:,}")
    return " | ".join(fields)


def _summary(stats: RelayStats, bus: str) -> str:
    return (
        f"{stats.received:,} message(s) relayed to {bus}: {stats.published:,} published, "
        f"{stats.markers:,} marker(s), {stats.dropped:,} dropped, {stats.too_large:,} too "
        f"large, {stats.refused:,} refused, {stats.lost:,} lost"
    )


def _open_relay(args: argparse.Namespace, status: StatusLines) -> Relay | int:
    """The relay on a connected bus, or the exit status of the one-line error."""
    try:
        sink = _open_sink(args.to)
    except (ValueError, MissingExtraError) as exc:
        status.line(f"error: {one_line(exc)}", always=True)
        return EXIT_USAGE
    try:
        sink.connect()
    except BusUnavailableError as exc:
        sink.close()
        status.line(f"error: cannot reach the bus: {one_line(exc)}", always=True)
        return EXIT_CONNECT
    key = dedupe_key_of(args.dedupe_key) if args.dedupe_key else None
    return Relay(
        sink,
        dedupe_key=key,
        overflow=args.overflow,
        buffer_messages=args.buffer_messages,
        buffer_bytes=args.buffer_bytes,
    )


class _Status:
    """The live status line on stderr (in place on a terminal)."""

    def __init__(self, err: TextIO, quiet: bool) -> None:
        self.err, self.quiet = err, quiet
        self.tty = not quiet and err.isatty()
        self.previous: RelayStats | None = None
        self.when = time.monotonic()
        self.printed = self.when

    def tick(self, stats: RelayStats) -> None:
        now = time.monotonic()
        if self.quiet or (not self.tty and now - self.printed < STATUS_EVERY):
            return
        text = status_text(stats, self.previous, now - self.when)
        self.previous, self.when, self.printed = stats, now, now
        try:
            self.err.write(f"\r\x1b[K{text}" if self.tty else f"kstlib-ws: {text}\n")
            self.err.flush()
        except (BrokenPipeError, ValueError):
            pass

    def end(self) -> None:
        if self.tty:
            self.err.write("\n")


def run_relay(args: argparse.Namespace, err: TextIO) -> int:
    """Run ``stream URL --to BUS`` (see the module docstring); the exit status."""
    from kstlib.websocket.manager import WebSocketManager

    status = StatusLines(err, args.quiet)
    relay = _open_relay(args, status)
    if isinstance(relay, int):
        return relay
    stop = threading.Event()
    try:
        options = {**_manager_options(args, status, stop), **relay.manager_options()}
        ws = WebSocketManager(args.url, config=args.config, **options)
    except (ValueError, OSError) as exc:
        relay.sink.close()
        status.line(f"error: {one_line(exc)}", always=True)
        return EXIT_USAGE
    code = EXIT_OK
    with StopSignals(lambda _signum: stop.set()):
        relay.start()
        try:
            ws.connect()
            _watch(args, relay, ws, stop, _Status(err, args.quiet))
        except WebSocketError as exc:
            if not stop.is_set():
                code = _error_status(exc, status)
        except KeyboardInterrupt:
            pass
        finally:
            ws.close()
            relay.close()
    if code == EXIT_OK:
        status.line(_summary(relay.stats, relay.sink.display_url))
    return code


def _watch(
    args: argparse.Namespace, relay: Relay, ws: Any, stop: threading.Event, line: _Status
) -> None:
    """Draw the status until a signal, ``--timeout``, ``--count`` or a dead manager."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while not stop.wait(0.2):
            stats = relay.stats
            line.tick(stats)
            if args.count is not None and stats.received >= args.count:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            if ws.is_dead:  # its stream holds nothing but the error that ended it
                for _ in ws.stream():
                    pass
                return
    finally:
        line.end()
