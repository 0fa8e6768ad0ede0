"""``kstlib-ws stream URL``: print a WebSocket's messages on stdout as NDJSON.

Each message becomes one line: a JSON text message as it decodes, a text message that
is not JSON as a JSON string, a binary message as ``{"binary": "<base64>"}``; with
``--raw`` nothing is decoded (text as received, binary as a base64 line). Status lines
(connects, disconnects and their reason, the final count) and errors go to stderr, so
stdout stays pure data.

The command ends with :data:`EXIT_OK` after ``--count`` messages, after ``--timeout``
seconds, on SIGINT / SIGTERM or when stdout's reader goes away; :data:`EXIT_CONNECT`
when connecting failed, :data:`EXIT_CLOSED` when the server closed and no reconnect
follows (``--no-reconnect``), :data:`EXIT_ERROR` on another ``WebSocketError``,
:data:`EXIT_USAGE` for settings the manager refuses (a bad config file...).
"""

from __future__ import annotations

import argparse
import base64
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import orjson

from kstlib.websocket.cli.logs import PROG, one_line
from kstlib.websocket.cli.signals import StopSignals, silence
from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketError,
)
from kstlib.websocket.models import DisconnectReason

if TYPE_CHECKING:
    from kstlib.websocket.manager import WebSocketManager

__all__ = [
    "EXIT_CLOSED",
    "EXIT_CONNECT",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "emit_line",
    "run_stream",
]

EXIT_OK = 0
EXIT_CONNECT = 1
EXIT_USAGE = 2
EXIT_CLOSED = 3
EXIT_ERROR = 4


class StatusLines:
    """``kstlib-ws: <text>`` lines on stderr, from the engine thread and the main thread.

    With ``quiet`` only the lines written with ``always=True`` (errors) appear. A closed
    stderr is ignored.
    """

    def __init__(self, err: TextIO, quiet: bool) -> None:
        self.err = err
        self.quiet = quiet
        self._lock = threading.Lock()

    def line(self, text: str, *, always: bool = False) -> None:
        """Write one status line (unless quiet and not ``always``)."""
        if self.quiet and not always:
            return
        with self._lock:
            try:
                self.err.write(f"{PROG}: {text}\n")
                self.err.flush()
            except (BrokenPipeError, ValueError):
                pass


def emit_line(out: BinaryIO, msg: Any, raw: bool) -> None:
    """Write ``msg`` as one line on ``out`` and flush (see the module docstring).

    A value a custom decoder produced that JSON cannot encode is written as its ``str``,
    as a JSON string, so every line stays valid JSON. Raises ``BrokenPipeError`` when
    the reader went away.
    """
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
        except TypeError:
            data = orjson.dumps(str(msg))
    out.write(data + b"\n")
    out.flush()


def _manager_options(
    args: argparse.Namespace, status: StatusLines, stop: threading.Event
) -> dict[str, Any]:
    """The manager's keywords for ``args``, with callbacks that report each connect and
    each disconnect (its reason, proactive or reactive, and what happens next)."""
    connects = [0]

    def on_connect() -> None:
        connects[0] += 1
        n = connects[0]
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
    return options


class _Printer:
    """Prints a manager's messages on ``out``; :attr:`received` counts the lines written
    so far (also when the stream ends with an error)."""

    def __init__(self, args: argparse.Namespace, out: BinaryIO) -> None:
        self.args = args
        self.out = out
        self.received = 0

    def run(self, ws: WebSocketManager, stop: threading.Event) -> None:
        """Connect and print until ``--count``, the end of the stream, or ``stop`` (set
        by a signal or ``--timeout``, which also close the manager).

        Errors propagate; a closed stdout pipe ends the loop quietly (see
        :func:`~kstlib.websocket.cli.signals.silence`).
        """
        if stop.is_set():
            return
        ws.connect()
        count = self.args.count
        try:
            for msg in ws.stream():
                emit_line(self.out, msg, self.args.raw)
                self.received += 1
                if count is not None and self.received >= count:
                    return
        except BrokenPipeError:
            silence(self.out)


def _error_status(exc: WebSocketError, status: StatusLines) -> int:
    """Report ``exc`` as one error line; return the exit status it stands for."""
    if isinstance(exc, WebSocketConnectionError):
        status.line(f"error: {one_line(exc)}", always=True)
        return EXIT_CONNECT
    if isinstance(exc, WebSocketClosedError):
        status.line(f"error: connection closed: {one_line(exc)}", always=True)
        return EXIT_CLOSED
    status.line(f"error: {one_line(exc)}", always=True)
    return EXIT_ERROR


def run_stream(args: argparse.Namespace, out: BinaryIO, err: TextIO) -> int:
    """Run the ``stream`` command for the parsed ``args``; return the exit status.

    Messages go to ``out``, status and errors to ``err``. SIGINT / SIGTERM and
    ``--timeout`` stop it with status 0; an error that happens because of that stop is
    not reported. The last status line counts the messages printed (after an error, the
    error stays the last line).
    """
    from kstlib.websocket.manager import WebSocketManager

    status = StatusLines(err, args.quiet)
    stop = threading.Event()
    try:
        ws = WebSocketManager(args.url, config=args.config, **_manager_options(args, status, stop))
    except (ValueError, OSError) as exc:
        status.line(f"error: {one_line(exc)}", always=True)
        return EXIT_USAGE

    def stopper() -> None:
        stop.wait(args.timeout)
        stop.set()
        ws.close()

    printer, code = _Printer(args, out), EXIT_OK
    thread = threading.Thread(target=stopper, name="kstlib-ws-stream-stopper", daemon=True)
    with StopSignals(lambda _signum: stop.set()) as signals:
        thread.start()
        try:
            printer.run(ws, stop)
        except WebSocketError as exc:
            if not stop.is_set():
                code = _error_status(exc, status)
        except KeyboardInterrupt:  # a SIGINT before the handler was installed
            pass
        finally:
            stop.set()
            thread.join()
    if code == EXIT_OK:
        ended = f" ({signals.name})" if signals.name else ""
        status.line(f"{printer.received} message(s) received{ended}")
    return code
