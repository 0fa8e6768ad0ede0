"""The simulator's opening handshake: accept, refuse or delay it, and route the path.

:class:`Handshake` gives ``websockets.serve`` its two hooks. ``process_request`` runs
before the upgrade: it counts the attempt, applies the ``accept_delay`` and
``refuse_handshake`` faults and the ``max_connection_attempts`` rule (HTTP 429 with
``Retry-After``), then lets the dialect route the path (Binance: ``/ws``,
``/ws/<stream>``, ``/stream?streams=a/b``; 404 for another path, 400 for a bad stream
name or too many streams). ``process_response`` registers an accepted connection (its record and its
:class:`~kstlib.websocket.testing._connection.Live`) before the 101 is sent.

Thread-safety: runs on the simulator's loop; the shared counters, faults and records
are changed under ``SharedState.lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from kstlib.websocket.testing._connection import Live, SimConnection

if TYPE_CHECKING:
    from kstlib.websocket.testing._server import SimServer

__all__ = ["Handshake"]


class Handshake:
    """The ``process_request`` / ``process_response`` hooks of one server."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.shared = server.shared
        self.opts = server.opts

    async def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """Refuse the handshake with an HTTP response, or route it (``None``: upgrade)."""
        shared = self.shared
        with shared.lock:
            shared.handshake_attempts += 1
            delay = shared.faults.accept_delay
        stopping = self.server.stopping
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
        if stopping.is_set():
            return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n")
        throttled = self._throttle()
        if throttled is not None:
            response = conn.respond(http.HTTPStatus.TOO_MANY_REQUESTS, "Too many connections\n")
            response.headers["Retry-After"] = str(max(1, round(throttled)))
            return response
        refused = self._refusal(conn)
        if refused is not None:
            return refused
        return self._route(conn, request)

    def _throttle(self) -> float | None:
        """Apply ``max_connection_attempts``; seconds until a slot frees, or None."""
        limit = self.opts.max_connection_attempts
        if limit is None:
            return None
        count, window = limit
        now = self.server.loop.time()
        with self.shared.lock:
            times = self.shared.attempt_times
            times.append(now)
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) <= count:
                return None
            self.shared.refused_handshakes += 1
            return times[0] + window - now

    def _refusal(self, conn: ServerConnection) -> Response | None:
        """The response of the ``refuse_handshake`` fault while it is on (it counts down)."""
        shared = self.shared
        with shared.cond:
            faults = shared.faults
            status = faults.refuse_status
            if status is None:
                return None
            headers = dict(faults.refuse_headers)
            if faults.refuse_remaining is not None:
                faults.refuse_remaining -= 1
                if faults.refuse_remaining <= 0:
                    faults.refuse_status = None
                    faults.refuse_remaining = None
            shared.refused_handshakes += 1
            shared.cond.notify_all()
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Refused"
        response = conn.respond(status, f"{phrase}\n")
        for name, value in headers.items():
            response.headers[name] = value
        return response

    def _route(self, conn: ServerConnection, request: Request) -> Response | None:
        """Let the dialect check the path; it stores the route in ``conn.kst_route``."""
        assert isinstance(conn, SimConnection)
        return self.server.dialect.route(self.server, conn, request.path)

    def process_response(
        self, conn: ServerConnection, request: Request, response: Response
    ) -> None:
        """Register an accepted connection *before* the 101 is sent, so a client that
        sees its handshake succeed also sees it in ``connection_count``."""
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            return
        assert isinstance(conn, SimConnection)
        assert conn.kst_route is not None
        path, _streams, combined = conn.kst_route
        remote = conn.remote_address
        record = self.shared.new_record(
            path=path,
            remote=(str(remote[0]), int(remote[1])) if remote else None,
            opened_at=time.time(),
            combined=combined,
        )
        live = Live(conn, record)
        conn.kst_live = live
        self.server.live[live.index] = live
