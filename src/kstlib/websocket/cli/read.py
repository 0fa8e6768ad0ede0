"""``kstlib-ws read BUS``: print what a consumer of a relay's stream receives, as NDJSON.

Each item is one line on stdout: a message as ``stream`` prints it (decoded JSON; with
``--raw`` the payload text as published), a marker as an object naming it, e.g.
``{"marker":"Disconnected","reason":"killed","at":1700000000.5,"code":null}`` (hidden
with ``--no-events``). The reader is a consumer group member (Redis: ``--group``,
``--consumer``) or a durable consumer (NATS: ``--durable``) and acknowledges what it
printed. The bus is connected to first: a wrong address or a missing client library is
a usage error (exit 2), an unreachable bus a connection error (exit 1), one line each.
``--count``, ``--timeout`` (total seconds), ``--idle`` (seconds without a record),
SIGINT / SIGTERM and a closed stdout end it with status 0.

Thread-safety: the main thread reads; a timer thread may close the reader.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import threading
from typing import Any, BinaryIO, TextIO

from kstlib.websocket.cli.logs import one_line
from kstlib.websocket.cli.signals import StopSignals, silence
from kstlib.websocket.cli.stream import (
    EXIT_CONNECT,
    EXIT_OK,
    EXIT_USAGE,
    StatusLines,
    emit_line,
)
from kstlib.websocket.sinks import (
    RELAY_MARKERS,
    BusUnavailableError,
    MissingExtraError,
    open_reader,
    open_sink,
    parse_bus_url,
)

__all__ = ["marker_json", "run_read"]


def marker_json(marker: Any) -> dict[str, Any]:
    """A marker as a JSON-able object: ``{"marker": class name, **its fields}``."""
    fields = {
        k: (v.value if isinstance(v, enum.Enum) else v)
        for k, v in dataclasses.asdict(marker).items()
    }
    return {"marker": type(marker).__name__, **fields}


def _reader_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "decode": None if args.raw else "json",
        "events": not args.no_events,
        "idle_timeout": args.idle,
    }
    for name in ("group", "consumer", "durable"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def _open(args: argparse.Namespace, status: StatusLines) -> Any:
    """A reader on a reachable bus, or the exit status of the one-line error."""
    try:
        bus = parse_bus_url(args.bus)
        if bus.kind == "redis" and args.durable is not None:
            raise ValueError("--durable is for nats:// (Redis: --group, --consumer)")
        if bus.kind == "nats" and (args.group or args.consumer):
            raise ValueError("--group / --consumer are for redis:// (NATS: --durable)")
        probe = open_sink(args.bus, timeout=5.0)
        reader = open_reader(args.bus, **_reader_options(args))
    except (ValueError, MissingExtraError) as exc:
        status.line(f"error: {one_line(exc)}", always=True)
        return EXIT_USAGE
    try:
        probe.connect()
    except BusUnavailableError as exc:
        status.line(f"error: cannot reach the bus: {one_line(exc)}", always=True)
        return EXIT_CONNECT
    finally:
        probe.close()
    return reader


def run_read(args: argparse.Namespace, out: BinaryIO, err: TextIO) -> int:
    """Run ``read BUS`` (see the module docstring); the exit status."""
    status = StatusLines(err, args.quiet)
    reader = _open(args, status)
    if isinstance(reader, int):
        return reader
    printed = 0
    timer = threading.Timer(args.timeout or 0, reader.close)
    with StopSignals(lambda _signum: reader.close()):
        if args.timeout is not None:
            timer.start()
        try:
            with reader:
                for item in reader:
                    if isinstance(item, RELAY_MARKERS):
                        item = marker_json(item)
                    emit_line(out, item, raw=args.raw and not isinstance(item, dict))
                    printed += 1
                    if args.count is not None and printed >= args.count:
                        break
        except BrokenPipeError:
            silence(out)
        except KeyboardInterrupt:
            pass
        finally:
            timer.cancel()
    status.line(f"{printed} item(s) read")
    return EXIT_OK
