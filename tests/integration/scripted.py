"""A WebSocket server whose behaviour a test writes as one coroutine per connection,
built on the ``websockets`` library (an implementation independent of ours), on
127.0.0.1 in a thread of its own. For venue rules the simulator does not play: logins,
application heartbeats, request/reply, sequence numbers.

    with ScriptedServer(handler) as srv:     # handler: async (connection) -> None
        WebSocketManager(srv.url, ...)
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

Handler = Callable[[ServerConnection], Awaitable[None]]


class ScriptedServer:
    """Runs ``handler`` for each connection; ``log`` collects what handlers append."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.log: list[Any] = []
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._loop.call_soon_threadsafe(self._finish)
        self._thread.join(10)

    def _finish(self) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._serve, "127.0.0.1", 0, compression=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    async def _serve(self, connection: ServerConnection) -> None:
        self.connections += 1
        try:
            await self.handler(connection)
        except Exception as exc:  # a closed connection ends the script
            self.log.append(("handler ended", repr(exc)))


def burst(count: int) -> Handler:
    """Sends ``count`` numbered messages (``{"n": 1}``...) at once, then as many again on
    each ``more``; closes with 4000 on ``bye``."""

    async def handler(ws: ServerConnection) -> None:
        sent = 0
        for _ in range(count):
            sent += 1
            await ws.send(json.dumps({"n": sent}))
        async for msg in ws:
            if msg == "more":
                for _ in range(count):
                    sent += 1
                    await ws.send(json.dumps({"n": sent}))
            elif msg == "bye":
                await ws.close(4000, "bye")

    return handler


async def one_per_go(ws: ServerConnection) -> None:
    """Sends message ``n`` for the ``n``-th ``go``: nothing arrives unasked."""
    n = 0
    async for msg in ws:
        if msg == "go":
            n += 1
            await ws.send(json.dumps({"n": n}))
