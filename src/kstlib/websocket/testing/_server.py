"""The simulator's asyncio server, built on ``websockets``.

``websockets`` is imported only by this module and the ones it imports, which the
simulator imports on its server thread at ``start`` (importing the package stays cheap).

:class:`SimServer` is one run of an
:class:`~kstlib.websocket.testing.ExchangeSimulator`: it listens, owns the loop-side
state (open connections, streams, timers, tasks), provides the few primitives every part
uses (:meth:`~SimServer.write`, :meth:`~SimServer.disconnect`, :meth:`~SimServer.later`)
and exposes the fault switches the simulator calls. The jobs are in sibling modules:

* ``_connection``: the ``websockets`` connection with the simulator's hooks, and
  ``Live``, the state of one accepted connection;
* ``_handshake``: accept, refuse or delay a handshake, route the path;
* ``_session``: serve one accepted connection (rules, messages, close record);
* ``_requests``: the JSON control channel (``SUBSCRIBE``...);
* ``_streams``: the market streams, their subscribers and publishing;
* ``_faults``: the fault switches applied to open connections;
* ``_dialects``: the venue each run plays (routes, answers, heartbeats, logins,
  sequence numbers), Binance by default.

Thread-safety: everything here runs on the simulator's own event loop thread; the
public :class:`~kstlib.websocket.testing.ExchangeSimulator` calls into it with
``loop.call_soon_threadsafe``. Outgoing data is written synchronously to each
connection's protocol and transport, so events, replies and raw frames reach a client
in exactly the order the server produced them, and one event is serialized once for
all its subscribers. State shared with other threads (``SharedState``) is changed
under its lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import Frame
from websockets.protocol import State

from kstlib.websocket.testing import _faults, _session
from kstlib.websocket.testing._connection import Live, SimConnection
from kstlib.websocket.testing._handshake import Handshake
from kstlib.websocket.testing._state import SharedState
from kstlib.websocket.testing._streams import StreamHub

__all__ = ["SimServer"]

LOGGER = logging.getLogger("kstlib.websocket.testing")


class SimServer:
    """The server of one ``ExchangeSimulator`` run (one event loop).

    Create it on the loop that will run it, then :meth:`start`; :meth:`shutdown` ends
    the run. The fault-switch methods return how many connections they acted on;
    ``only`` is a connection index or ``None`` (every open connection).
    """

    def __init__(self, shared: SharedState, port: int) -> None:
        self.shared = shared
        self.opts = shared.options
        self.port = port
        self.loop = asyncio.get_running_loop()
        self.conns: set[SimConnection] = set()
        self.live: dict[int, Live] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.timers: set[asyncio.TimerHandle] = set()
        self.stopping = asyncio.Event()
        self.silent_new = False
        self.server: Server | None = None
        self.dialect = shared.dialect
        self.hub = StreamHub(self)
        self.handshake = Handshake(self)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Bind and start listening; return the bound port."""

        class BoundConnection(SimConnection):
            kst_server = self

        self.server = await serve(
            self._handler,
            self.opts.host,
            self.port,
            process_request=self.handshake.process_request,
            process_response=self.handshake.process_response,
            create_connection=BoundConnection,
            compression=self.opts.compression,
            open_timeout=None,
            ping_interval=None,
            close_timeout=self.opts.close_timeout,
            max_size=self.opts.max_message_size,
            logger=LOGGER,
            server_header="kstlib-exchange-simulator",
        )
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _handler(self, conn: ServerConnection) -> None:
        await _session.serve(self, conn)

    async def shutdown(self) -> None:
        """Close every connection (1001 when open, abort otherwise) and the listener."""
        self.stopping.set()
        for task in self.hub.tasks():
            task.cancel()
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        for conn in list(self.conns):
            self.mark(conn, "stopped")
            if conn.kst_silent or conn.protocol.state is not State.OPEN:
                conn.transport.abort()
        if self.server is not None:
            await self._close_listener(self.server)
        tasks = [t for t in self.tasks if not t.done()]
        tasks.extend(self.hub.tasks())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Let transports run their connection_lost callbacks before the loop closes.
        for _ in range(3):
            await asyncio.sleep(0)

    async def _close_listener(self, server: Server) -> None:
        """Close the listener and the open connections (1001); abort what is left."""
        server.close(close_connections=True, code=1001, reason="server stopped")
        try:
            await asyncio.wait_for(server.wait_closed(), self.opts.close_timeout + 2.0)
        except asyncio.TimeoutError:
            LOGGER.warning("simulator: connections did not close in time, aborting them")
        for conn in list(self.conns):
            conn.transport.abort()

    # ------------------------------------------------------------------ primitives

    def mark(self, conn: SimConnection, cause: str) -> None:
        """Record why the server ended ``conn`` (the first cause recorded stays)."""
        if conn.kst_live is not None:
            with self.shared.lock:
                if conn.kst_live.record.cause is None:
                    conn.kst_live.record.cause = cause

    def later(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        """``loop.call_later`` whose handle is cancelled by :meth:`shutdown`."""

        def run() -> None:
            self.timers.discard(handle)
            callback(*args)

        handle = self.loop.call_later(delay, run)
        self.timers.add(handle)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task that :meth:`shutdown` cancels if it is still running."""
        task: asyncio.Task[Any] = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def disconnect(self, live: Live, cause: str, code: int, reason: str) -> None:
        """Start a closing handshake initiated by the server (once per connection)."""
        if live.closing:
            return
        live.closing = True
        with self.shared.lock:
            if live.record.cause is None:
                live.record.cause = cause
        self.spawn(live.conn.close(code, reason))

    def write(self, live: Live, payload: bytes) -> bool:
        """Send ``payload`` as a text frame now; False when the connection cannot take it.

        Nothing is written to a silent or closing connection. Past ``max_write_buffer``
        bytes waiting in the transport, the connection is closed as a slow consumer (1008).
        """
        conn = live.conn
        if conn.kst_silent or conn.protocol.state is not State.OPEN:
            return False
        if conn.transport.is_closing():  # lost, connection_lost() not yet called
            return False
        try:
            conn.protocol.send_text(payload)
            conn.send_data()
        except Exception:  # the transport failed; connection_lost follows
            return False
        live.record.messages_sent += 1
        if conn.transport.get_write_buffer_size() > self.opts.max_write_buffer:
            self.disconnect(live, "slow_consumer", 1008, "Slow consumer")
        return True

    # ------------------------------------------------------------------ connection hooks

    def on_frame(self, live: Live, frame: Frame) -> None:
        """Every incoming frame of an accepted connection (from ``SimConnection``)."""
        _session.on_frame(self, live, frame)

    def on_connection_lost(self, conn: SimConnection) -> None:
        """A connection's transport is gone (from ``SimConnection``)."""
        _session.on_connection_lost(self, conn)

    # ------------------------------------------------------------------ fault switches

    def targets(self, only: int | None) -> list[Live]:
        """Open connections, or just the one with index ``only`` (if open)."""
        return _faults.targets(self, only)

    def close_all(self, code: int, reason: str, only: int | None) -> int:
        """A closing handshake with ``code`` and ``reason`` (silent connections skipped)."""
        return _faults.close_all(self, code, reason, only)

    def reset_all(self, only: int | None) -> int:
        """A TCP RST."""
        return _faults.reset_all(self, only)

    def go_silent(self, enabled: bool, include_new: bool, only: int | None) -> int:
        """Enter or leave the half-open silence."""
        return _faults.go_silent(self, enabled, include_new, only)

    def send_raw(self, data: bytes, only: int | None) -> int:
        """Raw bytes on the transport."""
        return _faults.send_raw(self, data, only)

    def send_malformed(self, kind: str, only: int | None) -> int:
        """One of the ``MALFORMED_FRAMES``."""
        return _faults.send_malformed(self, kind, only)

    def announce_shutdown(self, close_after: float | None, only: int | None) -> int:
        """Binance's ``serverShutdown`` event, then a 1001 close after ``close_after`` s."""
        return _faults.announce_shutdown(self, close_after, only)

    def inject_gap(self, count: int, stream: str | None, only: int | None) -> int:
        """Swallow the next ``count`` sequenced data messages (one hole per connection)."""
        return _faults.inject_gap(self, count, stream, only)

    def stall(self, enabled: bool, only: int | None) -> int:
        """Stop (or resume) the data feeds; everything else goes on."""
        return _faults.stall(self, enabled, only)
