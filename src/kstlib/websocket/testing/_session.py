"""One accepted connection served, from the upgrade to its close record.

:func:`serve` is the ``websockets`` handler: it applies ``drop_after_accept``, starts
what the dialect starts (Binance: the streams of the path) and the rule tasks
(:func:`_pinger` for ``ping_interval`` / ``pong_timeout``, :func:`_age_limit` for
``max_connection_age``), then records every data message and lets the dialect answer it
(Binance: :mod:`._requests`). :func:`on_frame` sees every incoming frame (client pings
and pongs are recorded; ``max_incoming_rate`` is enforced) and
:func:`on_connection_lost` writes the close into the connection's record.

Thread-safety: runs on the simulator's loop; records and counters are shared and
changed under ``SharedState.lock`` (``cond`` notified when a waiter may care).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from kstlib.websocket.testing._connection import Live, SimConnection
from kstlib.websocket.testing._streams import now_ms

if TYPE_CHECKING:
    from kstlib.websocket.testing._server import SimServer

__all__ = ["on_connection_lost", "on_frame", "serve"]

#: Frames counted by ``max_incoming_rate``, besides the last frame of each data message.
_COUNTED_OPCODES = frozenset({Opcode.PING, Opcode.PONG})
_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})


async def serve(server: SimServer, conn: ServerConnection) -> None:
    """The handler of one accepted connection; returns once it is closed."""
    assert isinstance(conn, SimConnection)
    assert conn.kst_route is not None and conn.kst_live is not None
    live = conn.kst_live
    try:
        with server.shared.lock:
            drop = server.shared.faults.drop_after_accept
        if drop:
            server.mark(conn, "drop_after_accept")
            live.closing = True
            conn.transport.close()  # FIN without a close frame
            await conn.wait_closed()
            return
        server.dialect.opened(server, live)
        if server.opts.ping_interval is not None:
            live.tasks.append(server.loop.create_task(_pinger(server, live)))
        if server.opts.max_connection_age is not None:
            live.tasks.append(server.loop.create_task(_age_limit(server, live)))
        async for message in conn:
            _on_message(server, live, message)
    except ConnectionClosed:
        pass
    finally:
        for task in live.tasks:
            task.cancel()
        for name in list(live.streams):
            # The record keeps the last subscriptions for inspection.
            server.hub.unsubscribe(live, name, record=False)
        server.live.pop(live.index, None)


def _on_message(server: SimServer, live: Live, message: str | bytes) -> None:
    """Record a data message, then answer it (no answer once the connection is closing)."""
    with server.shared.cond:
        live.record.received.append(message)
        live.record.messages_received += 1
        server.shared.cond.notify_all()
    if live.closing:
        return
    server.dialect.received(server, live, message)


def on_frame(server: SimServer, live: Live, frame: Frame) -> None:
    """Record a client ping or pong; close with 1008 past ``max_incoming_rate``."""
    opcode = frame.opcode
    record = live.record
    if opcode is Opcode.PING:
        with server.shared.lock:
            record.client_pings += 1
    elif opcode is Opcode.PONG:
        with server.shared.cond:
            record.pongs_received.append(bytes(frame.data))
            server.shared.cond.notify_all()
    limit = server.opts.max_incoming_rate
    if limit is None:
        return
    if opcode in _COUNTED_OPCODES or (opcode in _DATA_OPCODES and frame.fin):
        now = server.loop.time()
        window = live.rate_window
        window.append(now)
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) > limit:
            server.disconnect(live, "rate_limit", 1008, "Too many requests")


def on_connection_lost(server: SimServer, conn: SimConnection) -> None:
    """Forget a closed connection and write its close (codes, time) into its record."""
    live = conn.kst_live
    if live is None:
        return
    live.closing = True
    if server.live.get(live.index) is live and live.conn.protocol.state is State.CLOSED:
        for name in list(live.streams):
            server.hub.unsubscribe(live, name, record=False)
        server.live.pop(live.index, None)
    protocol = conn.protocol
    with server.shared.cond:
        record = live.record
        if record.closed_at is None:
            record.closed_at = time.time()
            if protocol.close_rcvd is not None:
                record.close_code = protocol.close_rcvd.code
                record.close_reason = protocol.close_rcvd.reason
            else:
                record.close_code = 1006
                record.close_reason = ""
            if protocol.close_sent is not None:
                record.close_sent_code = protocol.close_sent.code
            server.shared.open_count -= 1
        server.shared.cond.notify_all()


async def _pinger(server: SimServer, live: Live) -> None:
    """Ping every ``ping_interval``; close with 1008 when no pong within ``pong_timeout``.

    A silent connection is neither pinged nor timed out.
    """
    interval = server.opts.ping_interval
    assert interval is not None
    conn = live.conn
    count = 0
    while True:
        await asyncio.sleep(interval)
        if conn.kst_silent or live.closing:
            continue
        count += 1
        payload = f"{now_ms()}:{count}".encode()
        try:
            waiter = asyncio.ensure_future(await conn.ping(payload))
        except ConnectionClosed:
            return
        with server.shared.lock:
            live.record.pings_sent.append(payload)
        done, _ = await asyncio.wait({waiter}, timeout=server.opts.pong_timeout)
        if waiter.done() and not waiter.cancelled():
            waiter.exception()  # retrieve it, so it is never logged
        if not done and not conn.kst_silent:
            server.disconnect(live, "pong_timeout", 1008, "Pong timeout")
            return


async def _age_limit(server: SimServer, live: Live) -> None:
    """Close with 1000 after ``max_connection_age`` (once the connection is not silent)."""
    age = server.opts.max_connection_age
    assert age is not None
    await asyncio.sleep(age)
    while live.conn.kst_silent:
        await asyncio.sleep(0.05)
    server.disconnect(live, "max_age", 1000, "Max connection age reached")
