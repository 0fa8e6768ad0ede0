"""Autobahn|Testsuite echo client built on kstlib.websocket's transport and codec.

Usage (normally driven by ``scripts/autobahn.py run``)::

    python tests/conformance/echo_client.py --server ws://127.0.0.1:9001 --agent NAME

It asks the fuzzing server how many cases there are, runs each one (echoing text as text
and binary as binary, answering pings with pongs, answering a close with the same code,
failing the connection with the codec's close code on a violation), then asks the server
to write its reports.  The codec is the one :mod:`kstlib.websocket.codec` picks, so the
caller selects it with ``KSTLIB_WS_PURE_PYTHON``.  Blocking, one connection at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import time
from typing import Any

from kstlib.websocket import codec, transport
from kstlib.websocket.exceptions import WebSocketError

MAX_MESSAGE_SIZE = 64 * 1024 * 1024  # 9.* sends up to 16 MiB messages
RECV_CHUNK = 256 * 1024
IO_TIMEOUT = 120.0  # no single read may hang longer than this (the server times cases out)
CLOSE_WAIT = 10.0  # after our close frame, wait this long at most for the server's EOF


def _wait_for_eof(sock: socket.socket, parser: Any, deadline: float) -> None:
    """Read (and feed, to notice the server's close) until EOF or ``deadline``."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            sock.settimeout(remaining)
            data = sock.recv(RECV_CHUNK)
        except OSError:
            return
        if not data:
            return
        if parser is not None:
            parser.feed(data)


def _finish(sock: socket.socket, parser: Any) -> None:
    _wait_for_eof(sock, parser, time.monotonic() + CLOSE_WAIT)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def run_connection(url: str, *, collect: bool = False) -> list[Any]:
    """Connect to ``url`` and echo until the connection ends; return messages if ``collect``."""
    hs = transport.open_connection(url, timeout=IO_TIMEOUT, compression=True)
    parser, encoder = transport.make_codec(
        hs, max_message_size=MAX_MESSAGE_SIZE, mode=codec.MODE_TEXT
    )
    sock = hs.sock
    sock.settimeout(IO_TIMEOUT)
    collected: list[Any] = []
    encode = encoder.encode
    op_text, op_binary, op_ping = codec.OP_TEXT, codec.OP_BINARY, codec.OP_PING
    data: bytes = hs.leftover
    while True:
        if data:
            messages, controls, error = parser.feed(data)
            out: list[bytes] = []
            close_payload: bytes | None = None
            # Control frames first: a ping that arrived inside a fragmented message must be
            # answered before that message is echoed (cases 5.*).  A close is always last.
            for opcode, payload in controls:
                if opcode == op_ping:
                    out.append(encode(codec.OP_PONG, payload))
                elif opcode == codec.OP_CLOSE:
                    close_payload = bytes(payload)
            for msg in messages:
                if collect:
                    collected.append(msg)
                else:
                    out.append(encode(op_text if isinstance(msg, str) else op_binary, msg))
            if error is not None:
                out.append(encoder.encode_close(error.close_code))
            elif close_payload is not None:
                code, _reason = codec.parse_close(close_payload)
                # Echo the status code (RFC 6455 5.5.1); an empty close gets an empty close.
                out.append(encoder.encode_close(code))
            if out:
                try:
                    sock.sendall(b"".join(out))
                except OSError:
                    sock.close()
                    return collected
            if error is not None or close_payload is not None:
                _finish(sock, None if error is not None else parser)
                return collected
        try:
            data = sock.recv(RECV_CHUNK)
        except OSError:
            sock.close()
            return collected
        if not data:
            sock.close()
            return collected


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="ws://host:port of the fuzzing server")
    ap.add_argument("--agent", required=True, help="agent name in the reports")
    ap.add_argument(
        "--expect-codec", choices=("python", "cpp"), help="fail unless this codec is in use"
    )
    args = ap.parse_args(argv)
    base = args.server.rstrip("/")
    if args.expect_codec and args.expect_codec != codec.IMPLEMENTATION:
        print(
            f"echo client: codec {codec.IMPLEMENTATION!r} in use, {args.expect_codec!r} asked",
            file=sys.stderr,
        )
        return 3

    counts = run_connection(f"{base}/getCaseCount", collect=True)
    if not counts:
        print("echo client: no case count received", file=sys.stderr)
        return 2
    total = int(counts[0])
    print(f"echo client [{codec.IMPLEMENTATION}]: {total} cases", flush=True)
    started = time.monotonic()
    errors = 0
    for i in range(1, total + 1):
        url = f"{base}/runCase?case={i}&agent={args.agent}"
        try:
            run_connection(url)
        except WebSocketError as exc:  # the report says what went wrong; keep going
            errors += 1
            print(f"echo client: case #{i}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if i % 50 == 0:
            print(f"  {i}/{total} cases, {time.monotonic() - started:.1f}s", flush=True)
    run_connection(f"{base}/updateReports?agent={args.agent}", collect=True)
    print(
        f"echo client [{codec.IMPLEMENTATION}]: done in {time.monotonic() - started:.1f}s"
        f" ({errors} connection errors)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
