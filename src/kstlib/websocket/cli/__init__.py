"""The ``kstlib-ws`` command line: ``demo``, ``stream`` and ``read``.

::

    kstlib-ws demo [--duration SECONDS] [--candle-seconds 20] [--connection-limit S]
                   [--no-handover] [--seed N]
    kstlib-ws stream URL [--subscribe JSON ...] [--raw] [--count N] [--timeout S]
                   [--max-attempts N] [--reconnect-delay S] [--no-reconnect]
                   [--config PATH] [-q]
                   [--to BUS [--overflow block|drop_oldest] [--buffer-messages N]
                    [--buffer-bytes N] [--dedupe-key FIELD[,FIELD]]]
    kstlib-ws read BUS [--count N] [--timeout S] [--idle S] [--raw] [--no-events]
                   [--group G] [--consumer C] [--durable D] [-q]
    kstlib-ws --help | --version

``demo`` runs the guide's trading example against an in-process exchange simulator with
time compressed: proactive disconnects and reconnects around candle closes, and
make-before-break handovers at the connection age limit
(:mod:`kstlib.websocket.cli.demo`).

``stream`` connects a :class:`~kstlib.websocket.WebSocketManager` to ``URL`` and prints
every message on stdout as one line of JSON (NDJSON): JSON text messages as they decode,
a text message that is not JSON as a JSON string, a binary message as
``{"binary": "<base64>"}``. With ``--raw`` nothing is decoded: a text message is printed
as received, a binary one as a base64 line. Status (connects, disconnects with their
reason, errors) goes to stderr. Settings not given on the command line come from
``kstlib.conf.yml`` (``--config``, ``$KSTLIB_CONFIG``, ``./kstlib.conf.yml``,
``~/.config/kstlib/kstlib.conf.yml``) or the built-in defaults
(:mod:`kstlib.websocket.cli.stream`).

With ``--to redis://HOST:PORT/DB?stream=NAME`` or ``--to nats://HOST:PORT?subject=NAME``
``stream`` is a relay: it prints nothing on stdout and publishes every message and gap
marker to the bus, with a live status line on stderr (:mod:`kstlib.websocket.cli.relay`).
``read BUS`` prints what a consumer of such a stream receives, as NDJSON
(:mod:`kstlib.websocket.cli.read`).

Exit status: 0 on a normal end (``--count`` reached, ``--timeout`` elapsed, Ctrl-C /
SIGTERM, a closed stdout pipe); 1 when connecting failed (``WebSocketConnectionError``,
attempts exhausted or a permanent HTTP refusal); 3 when the server closed the connection
and it is not restored (``WebSocketClosedError``, with ``--no-reconnect``); 4 for another
``WebSocketError``; 2 for a usage error. Errors are one line on stderr, no traceback.

Modules: ``stream`` (the stream command), ``relay`` (``stream --to``), ``read``,
``demo`` (the demo: wiring and run loop),
``scenario`` (the demo's options and trading rules), ``narrator`` (what the demo prints
as things happen), ``summary`` (its final table), ``console`` (80-column output and the
live status line), ``signals`` (quiet ends on signals and closed pipes), ``logs``
(one-line library log on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from kstlib.websocket.cli.logs import PROG, library_logging
from kstlib.websocket.cli.stream import (
    EXIT_CLOSED,
    EXIT_CONNECT,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    run_stream,
)

__all__ = [
    "EXIT_CLOSED",
    "EXIT_CONNECT",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "build_parser",
    "main",
]


def _version() -> str:
    """The installed distribution's version, ``"unknown"`` from a bare source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kstlib-websocket")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


# ----------------------------------------------------------------------------- value types


def _number(text: str) -> float:
    """``text`` as a float; a usage error when it is not a number."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _positive_float(text: str) -> float:
    """A finite number > 0 (seconds)."""
    value = _number(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    """A finite number >= 0 (seconds)."""
    value = _number(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _subscription(text: str) -> dict[str, Any] | str:
    """A ``--subscribe`` value: a JSON object is sent as JSON; any other valid JSON text
    (array, string, number) is sent exactly as given; invalid JSON is a usage error."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({exc})") from None
    if isinstance(value, dict):
        return value
    return text


# ----------------------------------------------------------------------------- the parser

# argparse %-formats `help` strings (a literal % is written %%), never `description`s.
_DEMO_DESCRIPTION = (
    "Start an exchange simulator in this process and run the guide's trading example on "
    "btcusdt@kline_4h with 4-hour candles compressed to --candle-seconds: disconnect "
    "while more than 60% of a candle is left, reconnect when less than 40% is left (so "
    "every candle close is received), and rotate connections after --connection-limit "
    "seconds make-before-break (a handover: the new connection streams before the old "
    "one closes; nothing lost, duplicates dropped). Prints candle closes, disconnects, "
    "reconnects and handovers with their reason, a live status line, and a statistics "
    "table at the end (also on Ctrl-C). Every line fits in 80 columns."
)

_STREAM_DESCRIPTION = (
    "Connect to URL and print each message as one JSON line on stdout (a text message "
    'that is not JSON as a JSON string, a binary one as {"binary": "<base64>"}). Status '
    "and errors go to stderr. Reconnects automatically. Exit status: 0 normal end, 1 "
    "connection failed, 3 closed by the server (--no-reconnect), 4 other error, 2 usage."
)


def _add_demo_command(sub: Any) -> None:
    """The ``demo`` subcommand and its options."""
    demo = sub.add_parser(
        "demo",
        help="the guide's trading example against a local exchange, time compressed",
        description=_DEMO_DESCRIPTION,
    )
    demo.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--candle-seconds",
        type=_positive_float,
        default=20.0,
        metavar="SECONDS",
        help="length of one compressed 4h candle, >= 1 (default: 20)",
    )
    demo.add_argument(
        "--connection-limit",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="max_connection_age: rotate a connection after this many seconds (reason "
        "CONNECTION_LIMIT); the simulated exchange cuts connections 25%% later "
        "(default: a quarter of --candle-seconds, so one handover per connected window)",
    )
    demo.add_argument(
        "--no-handover",
        action="store_true",
        help="rotate break-before-make instead (no dedupe_key): the rotation leaves a gap",
    )
    demo.add_argument("--seed", type=int, default=0, help="price walk seed (default: 0)")


def _add_stream_command(sub: Any) -> None:
    """The ``stream`` subcommand and its options."""
    stream = sub.add_parser(
        "stream",
        help="print the messages of a WebSocket as NDJSON on stdout",
        description=_STREAM_DESCRIPTION,
    )
    stream.add_argument("url", metavar="URL", help="ws:// or wss:// address")
    stream.add_argument(
        "--subscribe",
        action="append",
        type=_subscription,
        default=[],
        metavar="JSON",
        help="a JSON message sent after every connect, in order; may be repeated",
    )
    stream.add_argument(
        "--raw",
        action="store_true",
        help="do not decode: print text messages as received, binary ones as base64",
    )
    stream.add_argument("--count", type=_positive_int, metavar="N", help="stop after N messages")
    stream.add_argument("--timeout", type=_positive_float, metavar="S", help="stop after S seconds")
    stream.add_argument(
        "--max-attempts",
        type=_positive_int,
        metavar="N",
        help="give up after N consecutive failed connection attempts "
        "(default: max_reconnect_attempts from the config, else 10)",
    )
    stream.add_argument(
        "--reconnect-delay",
        type=_non_negative_float,
        metavar="S",
        help="base delay of the exponential backoff (default: from the config, else 1)",
    )
    stream.add_argument(
        "--no-reconnect",
        action="store_true",
        help="do not reconnect after a lost connection: exit with status 3",
    )
    stream.add_argument(
        "--config", metavar="PATH", help="kstlib.conf.yml to read instead of the default search"
    )
    stream.add_argument(
        "-q", "--quiet", action="store_true", help="no status lines on stderr (errors only)"
    )
    _add_relay_options(stream)


def _add_relay_options(stream: Any) -> None:
    """``stream --to BUS`` and the relay's options."""
    relay = stream.add_argument_group("relay to a message bus")
    relay.add_argument(
        "--to",
        metavar="BUS",
        help="publish to redis://HOST:PORT/DB?stream=NAME or nats://HOST:PORT?subject=NAME "
        "instead of printing (needs kstlib-websocket[redis] / [nats])",
    )
    relay.add_argument(
        "--overflow",
        choices=("block", "drop_oldest"),
        default="block",
        help="when the bus is slower or away and the buffer is full: block (back-pressure, "
        "nothing lost) or drop_oldest (dropped, counted, marked) (default: block)",
    )
    relay.add_argument(
        "--buffer-messages", type=_positive_int, default=100_000, metavar="N",
        help="messages buffered for the bus at most (default: 100000)",
    )  # fmt: skip
    relay.add_argument(
        "--buffer-bytes", type=_positive_int, default=64 * 1024 * 1024, metavar="N",
        help="payload bytes buffered for the bus at most (default: 64 MiB)",
    )  # fmt: skip
    relay.add_argument(
        "--dedupe-key",
        metavar="FIELD[,FIELD]",
        help="message fields (dotted paths) identifying an event, e.g. s,t: redundant "
        "relays then publish each event once",
    )


def _add_read_command(sub: Any) -> None:
    """The ``read`` subcommand and its options."""
    read = sub.add_parser(
        "read",
        help="print what a consumer of a relay's Redis / NATS stream receives, as NDJSON",
        description="Read a stream a relay (stream --to) publishes and print each item as "
        'one JSON line: messages decoded, gap markers as {"marker": NAME, ...}. '
        "Acknowledges what it printed. Exit status: 0 normal end, 1 bus unreachable, 2 usage.",
    )
    read.add_argument(
        "bus",
        metavar="BUS",
        help="redis://HOST:PORT/DB?stream=NAME or nats://HOST:PORT?subject=NAME",
    )
    read.add_argument("--count", type=_positive_int, metavar="N", help="stop after N items")
    read.add_argument("--timeout", type=_positive_float, metavar="S", help="stop after S seconds")
    read.add_argument(
        "--idle", type=_positive_float, metavar="S", help="stop after S seconds without items"
    )
    read.add_argument("--raw", action="store_true", help="print payloads as published")
    read.add_argument("--no-events", action="store_true", help="hide the gap markers")
    read.add_argument("--group", help="Redis consumer group (default: kstlib)")
    read.add_argument("--consumer", help="Redis consumer name (default: consumer)")
    read.add_argument("--durable", help="NATS durable consumer (default: kstlib)")
    read.add_argument("-q", "--quiet", action="store_true", help="no status line on stderr")


def build_parser() -> argparse.ArgumentParser:
    """The ``kstlib-ws`` argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="kstlib-websocket: a proactive WebSocket client for trading programs.",
        epilog=(
            "Run `kstlib-ws demo --duration 30` to watch proactive disconnects, reconnects "
            "and make-before-break handovers around candle closes."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more of the library's log on stderr (-v: info, -vv: debug and tracebacks)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_demo_command(sub)
    _add_stream_command(sub)
    _add_read_command(sub)
    return parser


# ----------------------------------------------------------------------------- main


def _run_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``demo`` command: options checked (a bad value is a usage error, exit 2),
    then the demo runs on this process's stdout and stderr."""
    from kstlib.websocket.cli.demo import run_demo
    from kstlib.websocket.cli.scenario import DemoOptions

    try:
        opts = DemoOptions(
            duration=args.duration,
            candle_seconds=args.candle_seconds,
            connection_limit=args.connection_limit,
            handover=not args.no_handover,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    return run_demo(opts)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kstlib-ws``; returns the exit status (see the module docstring).

    ``--help``, ``--version`` and usage errors raise ``SystemExit`` (status 0 or 2), as
    argparse does. A Ctrl-C that arrives before a command installed its own handler ends
    with status 0 and no traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    err = sys.stderr
    # demo: its own lines tell every event, library warnings would break the status
    # line; stream: warnings (failed attempts that will be retried, lost connections)
    # are the status.
    quiet = args.command == "demo" or args.quiet
    level = logging.ERROR if quiet else logging.WARNING
    with library_logging(args.verbose, err, level):
        try:
            if args.command == "demo":
                return _run_demo(args, parser)
            if args.command == "read":
                from kstlib.websocket.cli.read import run_read

                return run_read(args, sys.stdout.buffer, err)
            if args.to is not None:
                from kstlib.websocket.cli.relay import run_relay

                return run_relay(args, err)
            return run_stream(args, sys.stdout.buffer, err)
        except KeyboardInterrupt:
            return EXIT_OK
