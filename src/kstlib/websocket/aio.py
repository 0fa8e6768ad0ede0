"""The asyncio front: same constructor and names as the sync manager, awaitable.

::

    from kstlib.websocket.aio import WebSocketManager

    async with WebSocketManager(url) as ws:
        async for msg in ws.stream():
            handle(msg)

It shares the engine and every non-blocking call with the sync front
(:class:`~kstlib.websocket._base.BaseManager`). Nothing here blocks the event loop:
messages arrive through a future that the engine completes with
``call_soon_threadsafe``; the calls that may wait (connect, close, disconnect, kill,
send, whose write may wait for a peer that stopped reading) run in a worker thread
(``asyncio.to_thread``). ``request_disconnect``, ``schedule_reconnect``, ``subscribe``
and ``unsubscribe`` stay plain calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from kstlib.websocket._base import BaseManager
from kstlib.websocket._stream import drain_async
from kstlib.websocket.engine import StopMode

__all__ = ["WebSocketManager"]


class WebSocketManager(BaseManager):
    """Asyncio front of the proactive WebSocket client. See the sync class for semantics.

    Coroutines: ``connect``, ``disconnect``, ``close``, ``force_close``, ``shutdown``,
    ``kill``, ``send``. ``stream()`` is an async iterator.
    """

    async def __aenter__(self) -> WebSocketManager:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> WebSocketManager:
        raise TypeError(
            "kstlib.websocket.aio.WebSocketManager is the asyncio client: use `async with`, "
            "or `from kstlib.websocket import WebSocketManager` for the sync one"
        )

    def __exit__(self, *exc_info: object) -> None:
        raise TypeError("use `async with` with kstlib.websocket.aio.WebSocketManager")

    def __repr__(self) -> str:
        return f"<aio.WebSocketManager {self.url} {self.state.name}>"

    # ------------------------------------------------------------------ lifecycle

    async def connect(self, timeout: float | None = None) -> None:
        """Connect (see the sync ``connect``). Cancelling the awaiting task (e.g.
        ``asyncio.wait_for``) stops the attempts: the engine is closed before the
        cancellation propagates, so nothing keeps trying in the background."""
        attempt = asyncio.ensure_future(asyncio.to_thread(self._connect, timeout))
        try:
            await asyncio.shield(attempt)
        except asyncio.CancelledError:
            await asyncio.to_thread(self._engine.stop, StopMode.CLOSE)
            await asyncio.gather(attempt, return_exceptions=True)  # the worker has ended
            raise

    async def disconnect(self) -> None:
        await asyncio.to_thread(self._engine.disconnect)

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.stop, StopMode.CLOSE)

    async def force_close(self) -> None:
        await asyncio.to_thread(self._engine.stop, StopMode.FORCE)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self._engine.stop, StopMode.FORCE)
        self.shutdown_event.set()

    async def kill(self) -> None:
        await asyncio.to_thread(self._engine.kill)

    # ------------------------------------------------------------------ messages

    async def send(self, data: Any) -> None:
        """Send a message (see the sync ``send``); the write runs in a worker thread, so
        a peer that stops reading never stalls the event loop."""
        await asyncio.to_thread(self._engine.send, data)

    def stream(self, events: bool = False) -> AsyncIterator[Any]:
        """Async iterator over incoming messages; same end and error rules, and the same
        ``events=True`` gap markers, as the sync ``stream()``. Connects first if
        ``connect()`` was never called."""
        hide = self._hide_markers(events)
        return drain_async(self._inbox, hide, None if self._started else self._connect_once)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.stream()

    async def _connect_once(self) -> None:
        if not self._started:
            await self.connect()
