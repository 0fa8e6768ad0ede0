"""The ``kstlib-ws`` command line: ``demo`` and ``stream``.

::

    kstlib-ws demo [--duration SECONDS] [--candle-seconds 20] [--connection-limit 60]
                   [--seed N]
    kstlib-ws stream URL [--subscribe JSON ...] [--raw] [--count N] [--timeout S]
                   [--max-attempts N] [--reconnect-delay S] [--no-reconnect]
                   [--config PATH] [-q]
    kstlib-ws --help | --version

``demo`` runs the guide's trading example against an in-process exchange simulator with
time compressed (see :mod:`kstlib.websocket.cli.demo`).

``stream`` connects a :class:`~kstlib.websocket.WebSocketManager` to ``URL`` and prints
every message on stdout as one line of JSON (NDJSON): JSON text messages as they decode,
a text message that is not JSON as a JSON string, a binary message as
``{"binary": "<base64>"}``. With ``--raw`` nothing is decoded: a text message is printed
as received, a binary one as a base64 line. Status (connects, disconnects with their
reason, errors) goes to stderr. Settings not given on the command line come from
``kstlib.conf.yml`` (``--config``, ``$KSTLIB_CONFIG``, ``./kstlib.conf.yml``,
``~/.config/kstlib/kstlib.conf.yml``) or the built-in defaults.

Exit status: 0 on a normal end (``--count`` reached, ``--timeout`` elapsed, Ctrl-C /
SIGTERM, a closed stdout pipe); 1 when connecting failed (``WebSocketConnectionError``,
attempts exhausted or a permanent HTTP refusal); 3 when the server closed the connection
and it is not restored (``WebSocketClosedError``, with ``--no-reconnect``); 4 for another
``WebSocketError``; 2 for a usage error. Errors are one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import base64
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO, TextIO

import orjson

from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketError,
)
from kstlib.websocket.models import DisconnectReason

__all__ = ["EXIT_CLOSED", "EXIT_CONNECT", "EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "main"]

PROG = "kstlib-ws"
EXIT_OK = 0
EXIT_CONNECT = 1
EXIT_USAGE = 2
EXIT_CLOSED = 3
EXIT_ERROR = 4


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kstlib-websocket")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _subscription(text: str) -> dict[str, Any] | str:
    """A ``--subscribe`` value: a JSON object is sent as JSON; any other valid JSON text
    (array, string, number) is sent exactly as given."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({exc})") from None
    if isinstance(value, dict):
        return value
    return text


def build_parser() -> argparse.ArgumentParser:
    """The ``kstlib-ws`` argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="kstlib-websocket: a proactive WebSocket client for trading programs.",
        epilog=(
            "Run `kstlib-ws demo --duration 30` to watch proactive disconnects and "
            "reconnects around candle closes."
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

    demo = sub.add_parser(
        "demo",
        help="the guide's trading example against a local exchange, time compressed",
        description=(
            "Start an exchange simulator in this process and run the guide's trading "
            "example on btcusdt@kline_4h with 4-hour candles compressed to "
            "--candle-seconds: disconnect while more than 60%% of a candle is left, "
            "reconnect when less than 40%% is left (so every candle close is received), "
            "and rotate connections after --connection-limit seconds. Prints candle "
            "closes, disconnects and reconnects with their reason, a live status line, "
            "and a statistics table at the end (also on Ctrl-C)."
        ),
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
        default=60.0,
        metavar="SECONDS",
        help="max_connection_age: proactive rotation (reason CONNECTION_LIMIT); the "
        "simulated exchange cuts connections 25%% later (default: 60)",
    )
    demo.add_argument("--seed", type=int, default=0, help="price walk seed (default: 0)")

    stream = sub.add_parser(
        "stream",
        help="print the messages of a WebSocket as NDJSON on stdout",
        description=(
            "Connect to URL and print each message as one JSON line on stdout (a text "
            "message that is not JSON as a JSON string, a binary one as "
            '{"binary": "<base64>"}). Status and errors go to stderr. Reconnects '
            "automatically. Exit status: 0 normal end, 1 connection failed, 3 closed by "
            "the server (--no-reconnect), 4 other error, 2 usage."
        ),
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
    return parser


class _PlainFormatter(logging.Formatter):
    """``kstlib-ws: <level>: <message>``, one line: tracebacks only with ``-vv``."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__(f"{PROG}: %(levelname)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks:
            return super().format(record)
        text = f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {_one_line(record.exc_info[1])}"
        return " ".join(text.split())


@contextmanager
def _library_logging(verbosity: int, err: TextIO, default_level: int) -> Iterator[None]:
    """Route the library's log records to ``err`` for the duration of the command.

    ``default_level`` applies without ``-v``; ``-v`` shows info, ``-vv`` debug records
    and tracebacks. Restores the logger as it was on exit.
    """
    logger = logging.getLogger("kstlib.websocket")
    handler = logging.StreamHandler(err)
    handler.setFormatter(_PlainFormatter(tracebacks=verbosity >= 2))
    level = default_level if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class _Status:
    """Status lines on stderr, from the engine thread and the main thread."""

    def __init__(self, err: TextIO, quiet: bool) -> None:
        self.err = err
        self.quiet = quiet
        self._lock = threading.Lock()

    def line(self, text: str, *, always: bool = False) -> None:
        if self.quiet and not always:
            return
        with self._lock:
            try:
                self.err.write(f"{PROG}: {text}\n")
                self.err.flush()
            except (BrokenPipeError, ValueError):
                pass


def _emit_line(out: BinaryIO, msg: Any, raw: bool) -> None:
    if raw:
        if isinstance(msg, str):
            data = msg.encode("utf-8", "surrogatepass")
        else:
            data = base64.b64encode(bytes(msg))
    elif isinstance(msg, (bytes, bytearray, memoryview)):
        data = orjson.dumps({"binary": base64.b64encode(bytes(msg)).decode("ascii")})
    else:
        try:
            data = orjson.dumps(msg)
        except TypeError:  # a value a custom decoder produced; keep the line valid JSON
            data = orjson.dumps(str(msg))
    out.write(data + b"\n")
    out.flush()


def run_stream(args: argparse.Namespace, out: BinaryIO, err: TextIO) -> int:
    """The ``stream`` command; returns the exit status."""
    from kstlib.websocket.cli.demo import StopSignals, silence
    from kstlib.websocket.manager import WebSocketManager

    status = _Status(err, args.quiet)
    stop = threading.Event()
    state: dict[str, Any] = {"connects": 0}

    def on_connect() -> None:
        state["connects"] += 1
        n = state["connects"]
        status.line(f"connected to {args.url}" + (f" (connect #{n})" if n > 1 else ""))

    def on_disconnect(reason: DisconnectReason) -> None:
        kind = "proactive" if reason.is_proactive else "reactive"
        then = ""
        if reason.is_reactive and not stop.is_set():
            then = "; not reconnecting" if args.no_reconnect else "; reconnecting"
        status.line(f"disconnected: {reason.name} ({kind}){then}")

    options: dict[str, Any] = {
        "subscriptions": list(args.subscribe),
        "decode": None if args.raw else "json",
        "on_connect": on_connect,
        "on_disconnect": on_disconnect,
    }
    if args.max_attempts is not None:
        options["max_reconnect_attempts"] = args.max_attempts
    if args.reconnect_delay is not None:
        options["reconnect_delay"] = args.reconnect_delay
    if args.no_reconnect:
        options["auto_reconnect"] = False
    try:
        ws = WebSocketManager(args.url, config=args.config, **options)
    except (ValueError, OSError) as exc:
        status.line(f"error: {_one_line(exc)}", always=True)
        return EXIT_USAGE

    def stopper() -> None:
        stop.wait(args.timeout)
        stop.set()
        ws.close()

    received = 0
    code = EXIT_OK
    thread = threading.Thread(target=stopper, name="kstlib-ws-stream-stopper", daemon=True)
    with StopSignals(lambda _signum: stop.set()) as signals:
        thread.start()
        try:
            if not stop.is_set():
                ws.connect()
                for msg in ws.stream():
                    _emit_line(out, msg, args.raw)
                    received += 1
                    if args.count is not None and received >= args.count:
                        break
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly; further writes go nowhere.
            silence(out)
        except WebSocketConnectionError as exc:
            if not stop.is_set():
                status.line(f"error: {_one_line(exc)}", always=True)
                code = EXIT_CONNECT
        except WebSocketClosedError as exc:
            if not stop.is_set():
                status.line(f"error: connection closed: {_one_line(exc)}", always=True)
                code = EXIT_CLOSED
        except WebSocketError as exc:
            if not stop.is_set():
                status.line(f"error: {_one_line(exc)}", always=True)
                code = EXIT_ERROR
        except KeyboardInterrupt:  # a SIGINT before the handler was installed
            pass
        finally:
            stop.set()
            thread.join()
    if code == EXIT_OK:  # after an error, the error stays the last line
        ended = f" ({signals.name})" if signals.name else ""
        status.line(f"{received} message(s) received{ended}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kstlib-ws``; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    err = sys.stderr
    # demo: its own lines tell every event, library warnings would break the status
    # line; stream: warnings (failed attempts that will be retried, lost connections)
    # are the status.
    quiet = args.command == "demo" or args.quiet
    level = logging.ERROR if quiet else logging.WARNING
    with _library_logging(args.verbose, err, level):
        if args.command == "demo":
            from kstlib.websocket.cli.demo import DemoOptions, run_demo

            try:
                opts = DemoOptions(
                    duration=args.duration,
                    candle_seconds=args.candle_seconds,
                    connection_limit=args.connection_limit,
                    seed=args.seed,
                )
            except ValueError as exc:
                parser.error(str(exc))
            try:
                return run_demo(opts)
            except KeyboardInterrupt:  # Ctrl-C before the demo's own handler was installed
                return EXIT_OK
        try:
            return run_stream(args, sys.stdout.buffer, err)
        except KeyboardInterrupt:  # Ctrl-C before the stream's own handler was installed
            return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
