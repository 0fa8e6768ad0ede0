"""The fault switches, applied on the simulator's loop to the open connections.

Each function takes the server and ``only`` (a connection index, or ``None`` for every
open connection) and returns how many connections it acted on. They are the bodies of
the ``SimServer`` methods that ``ExchangeSimulator`` calls through ``loop.call_soon_threadsafe``:
``close_all`` (a closing handshake), ``reset_all`` (TCP RST), ``go_silent`` (a half-open
peer, see :class:`~kstlib.websocket.testing._connection.SimConnection`), ``send_raw`` /
``send_malformed`` (bytes written under the ``websockets`` protocol) and
``announce_shutdown`` (Binance's ``serverShutdown`` event, then optionally a 1001 close),
``inject_gap`` (the next sequenced data messages swallowed: a hole in the sequence
numbers on a live connection) and ``stall`` (a silent feed: no data, while pongs,
heartbeats and replies still flow).
The handshake faults (refusals, delays, drop after accept) are switches in
``SharedState.faults``, read by :mod:`._handshake` and :mod:`._session`.

Thread-safety: loop thread only; records are changed under ``SharedState.lock``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import TYPE_CHECKING

import orjson

from kstlib.websocket.testing._connection import Live
from kstlib.websocket.testing._frames import malformed_frame
from kstlib.websocket.testing._streams import now_ms

if TYPE_CHECKING:
    from kstlib.websocket.testing._server import SimServer

__all__ = [
    "announce_shutdown",
    "close_all",
    "go_silent",
    "inject_gap",
    "reset",
    "reset_all",
    "send_malformed",
    "send_raw",
    "stall",
    "targets",
]


def targets(server: SimServer, only: int | None) -> list[Live]:
    """Open connections, or just the one with index ``only`` (if open)."""
    if only is None:
        return list(server.live.values())
    live = server.live.get(only)
    return [live] if live is not None else []


def close_all(server: SimServer, code: int, reason: str, only: int | None) -> int:
    """Start a closing handshake with ``code`` and ``reason`` (silent connections skipped)."""
    lives = [lv for lv in targets(server, only) if not lv.conn.kst_silent]
    for live in lives:
        server.disconnect(live, "close_all", code, reason)
    return len(lives)


def reset_all(server: SimServer, only: int | None) -> int:
    """Abort the connections with a TCP RST."""
    lives = targets(server, only)
    for live in lives:
        reset(server, live, "reset")
    return len(lives)


def reset(server: SimServer, live: Live, cause: str) -> None:
    """Abort one connection with a TCP RST (``SO_LINGER`` 0), recording ``cause``."""
    live.closing = True
    with server.shared.lock:
        if live.record.cause is None:
            live.record.cause = cause
    transport = live.conn.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def go_silent(server: SimServer, enabled: bool, include_new: bool, only: int | None) -> int:
    """Enter (``enabled``) or leave silence; ``include_new`` also silences new connections.

    Leaving processes what each connection held, as if it arrived now.
    """
    if enabled:
        lives = targets(server, only)
        for live in lives:
            live.conn.kst_silent = True
        if only is None:
            server.silent_new = include_new
        return len(lives)
    if only is None:
        server.silent_new = False
        conns = [c for c in server.conns if c.kst_silent]
    else:
        conns = [lv.conn for lv in targets(server, only) if lv.conn.kst_silent]
    for conn in conns:
        conn.kst_release()
    return len(conns)


def send_raw(server: SimServer, data: bytes, only: int | None) -> int:
    """Write ``data`` as is on each (non-silent) connection's transport."""
    lives = [lv for lv in targets(server, only) if not lv.conn.kst_silent]
    for live in lives:
        if not live.conn.transport.is_closing():
            live.conn.transport.write(data)
    return len(lives)


def send_malformed(server: SimServer, kind: str, only: int | None) -> int:
    """Write the malformed frame ``kind`` (``truncated_reset``: then a RST 50 ms later)."""
    data = malformed_frame(kind)
    lives = [lv for lv in targets(server, only) if not lv.conn.kst_silent]
    for live in lives:
        with server.shared.lock:
            if live.record.cause is None:
                live.record.cause = "malformed"
        if not live.conn.transport.is_closing():
            live.conn.transport.write(data)
        if kind == "truncated_reset":
            # Give the partial frame time to reach the peer before the RST.
            server.later(0.05, reset, server, live, "malformed")
    return len(lives)


def announce_shutdown(server: SimServer, close_after: float | None, only: int | None) -> int:
    """Send ``{"e": "serverShutdown", "E": ms}``; close with 1001 after ``close_after`` s."""
    payload = orjson.dumps({"e": "serverShutdown", "E": now_ms()})
    lives = targets(server, only)
    for live in lives:
        server.write(live, payload)
        if close_after is not None:
            server.later(close_after, server.disconnect, live, "shutdown", 1001, "Server shutdown")
    return len(lives)


def inject_gap(server: SimServer, count: int, stream: str | None, only: int | None) -> int:
    """Make each connection swallow its next ``count`` sequenced data messages (of
    ``stream`` only, if given): one hole each, recorded as it is made."""
    lives = targets(server, only)
    for live in lives:
        live.drop_count = count
        live.drop_stream = stream
        live.drop_open = False
    return len(lives)


def stall(server: SimServer, enabled: bool, only: int | None) -> int:
    """Stop (``enabled``) or resume the connections' data feeds."""
    lives = targets(server, only)
    for live in lives:
        live.stalled = enabled
    return len(lives)
