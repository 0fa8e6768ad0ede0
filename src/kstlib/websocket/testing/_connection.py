"""One simulator connection: the ``websockets`` connection with its hooks, and its state.

:class:`SimConnection` is the ``websockets`` server connection the simulator creates for
each TCP connection; its hooks implement the half-open peer of ``go_silent`` and report
every incoming frame to the server. :class:`Live` is the loop-side state of an accepted
(upgraded) connection: its record, its subscriptions, its rate window and its tasks.

Thread-safety: both live on the simulator's event loop thread and are used only there;
the :class:`~kstlib.websocket.testing._state.ConnRecord` a :class:`Live` points to is
shared with other threads and changed under ``SharedState.lock``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame

from kstlib.websocket.testing._state import ConnRecord

if TYPE_CHECKING:
    from kstlib.websocket.testing._server import SimServer

__all__ = ["Live", "SimConnection"]


class SimConnection(ServerConnection):
    """A ``websockets`` server connection with the simulator's hooks.

    * ``kst_silent``: while true, incoming bytes are held (not parsed, so pings are
      not answered and a close frame is not seen), nothing is written, and the
      transport stays open even after the peer's FIN: a half-open peer.
    * every incoming frame, control frames included, is reported to the server for
      rate limiting and recording.

    ``kst_server`` is set on a subclass made per server (see ``SimServer.start``);
    ``kst_route`` is set by the handshake, ``kst_live`` once the connection is accepted.
    """

    kst_server: SimServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kst_silent = False
        self.kst_held: list[bytes] = []
        self.kst_held_eof = False
        self.kst_live: Live | None = None
        self.kst_route: tuple[str, list[str], bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.kst_silent = self.kst_server.silent_new
        self.kst_server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.kst_server.conns.discard(self)
        self.kst_server.on_connection_lost(self)

    def data_received(self, data: bytes) -> None:
        if self.kst_silent:
            self.kst_held.append(data)
            return
        super().data_received(data)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if self.kst_silent:
            self.kst_held_eof = True
            return True  # keep the transport open: no FIN goes back
        super().eof_received()
        return None

    def send_data(self) -> None:
        if self.kst_silent:
            for _ in self.protocol.data_to_send():
                pass
            return
        super().send_data()

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and self.kst_live is not None:
            self.kst_server.on_frame(self.kst_live, event)

    def kst_release(self) -> None:
        """Leave silence: process what was held, as if it arrived now."""
        self.kst_silent = False
        held, self.kst_held = b"".join(self.kst_held), []
        if self.transport.is_closing():
            return
        if held:
            super().data_received(held)
        if self.kst_held_eof:
            self.kst_held_eof = False
            super().eof_received()
            self.transport.close()


class Live:
    """Loop-side state of one open connection.

    ``index`` is the global acceptance index (the key of ``SimServer.live``);
    ``combined`` is the connection's current payload wrapping (``SET_PROPERTY`` changes
    it); ``closing`` is set once the server started to end the connection (or saw it
    end), after which no reply is sent and no second close is started.

    The feed faults: while ``stalled`` no data is produced for the connection (pongs,
    heartbeats and replies still go out); ``drop_count`` sequenced data messages (of
    stream ``drop_stream``, or any) are still to be swallowed by the gap fault, and
    ``drop_open`` says the last one swallowed belongs to the hole being made. ``venue`` is
    the dialect's state of the connection, if it keeps one.
    """

    def __init__(self, conn: SimConnection, record: ConnRecord) -> None:
        self.conn = conn
        self.record = record
        self.index = record.index
        self.combined = record.combined
        self.streams: list[str] = []
        self.rate_window: deque[float] = deque()
        self.tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.stalled = False
        self.drop_count = 0
        self.drop_stream: str | None = None
        self.drop_open = False
        self.venue: Any = None
