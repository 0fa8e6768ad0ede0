"""The asyncio adapter: same constructor and names as the sync manager, awaitable.

::

    from kstlib.websocket.aio import WebSocketManager

    async with WebSocketManager(url) as ws:
        async for msg in ws.stream():
            handle(msg)

It drives the very same engine thread as :class:`kstlib.websocket.WebSocketManager`;
nothing here blocks the event loop: messages arrive through a future that the engine
completes with ``call_soon_threadsafe``, and the blocking lifecycle calls (connect,
close, disconnect, ...) run in a worker thread (``asyncio.to_thread``).
``request_disconnect`` and ``schedule_reconnect`` return at once and stay plain calls.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

from kstlib.websocket.config import Settings
from kstlib.websocket.inbox import InboxFinished
from kstlib.websocket.manager import WebSocketManager as SyncWebSocketManager
from kstlib.websocket.models import GAP_MARKERS, ConnectionState, WebSocketStats

__all__ = ["WebSocketManager"]


class WebSocketManager:
    """Asyncio front of the proactive WebSocket client. See the sync class for semantics.

    Coroutines: ``connect``, ``disconnect``, ``close``, ``force_close``, ``shutdown``,
    ``kill``, ``send``. Plain calls: ``request_disconnect``, ``schedule_reconnect``,
    ``subscribe``/``unsubscribe`` (they only record and, when connected, send a small
    message). ``stream()`` is an async iterator.
    """

    def __init__(
        self,
        url: str,
        *,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self._sync = SyncWebSocketManager(url, config=config, **options)

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
        return f"<aio.WebSocketManager {self._sync.url} {self.state.name}>"

    # ------------------------------------------------------------------ properties

    @property
    def sync(self) -> SyncWebSocketManager:
        """The sync manager this adapter drives (same engine)."""
        return self._sync

    @property
    def settings(self) -> Settings:
        return self._sync.settings

    @property
    def url(self) -> str:
        return self._sync.url

    @property
    def state(self) -> ConnectionState:
        return self._sync.state

    @property
    def stats(self) -> WebSocketStats:
        return self._sync.stats

    @property
    def is_connected(self) -> bool:
        return self._sync.is_connected

    @property
    def is_dead(self) -> bool:
        return self._sync.is_dead

    @property
    def is_shutdown(self) -> bool:
        return self._sync.is_shutdown

    @property
    def is_recoverable(self) -> bool:
        return self._sync.is_recoverable

    @property
    def shutdown_event(self) -> threading.Event:
        return self._sync.shutdown_event

    @property
    def subscriptions(self) -> list[dict[str, Any] | str]:
        return self._sync.subscriptions

    # ------------------------------------------------------------------ lifecycle

    async def connect(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self._sync.connect, timeout)

    async def disconnect(self) -> None:
        await asyncio.to_thread(self._sync.disconnect)

    def request_disconnect(self) -> None:
        self._sync.request_disconnect()

    def schedule_reconnect(self, delay: float) -> None:
        self._sync.schedule_reconnect(delay)

    async def close(self) -> None:
        await asyncio.to_thread(self._sync.close)

    async def force_close(self) -> None:
        await asyncio.to_thread(self._sync.force_close)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self._sync.shutdown)

    async def kill(self) -> None:
        await asyncio.to_thread(self._sync.kill)

    # ------------------------------------------------------------------ messages

    async def send(self, data: Any) -> None:
        """Send a message. Runs inline (a non-blocking write) unless pacing
        (``max_send_rate``) may have to wait, which then happens in a worker thread."""
        if self._sync.settings.max_send_rate is None:
            self._sync.send(data)
        else:
            await asyncio.to_thread(self._sync.send, data)

    def subscribe(self, message: dict[str, Any] | str) -> None:
        self._sync.subscribe(message)

    def unsubscribe(
        self,
        message: dict[str, Any] | str,
        unsubscribe_message: dict[str, Any] | str | None = None,
        *,
        send: bool = True,
    ) -> None:
        self._sync.unsubscribe(message, unsubscribe_message, send=send)

    def stream(self, events: bool = False) -> AsyncIterator[Any]:
        """Async iterator over incoming messages; same end and error rules, and the same
        ``events=True`` gap markers, as the sync ``stream()``. Connects first if
        ``connect()`` was never called."""
        if events:
            self._sync._engine.enable_markers()
        return self._iterate(events)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate(False)

    async def _iterate(self, events: bool) -> AsyncIterator[Any]:
        sync = self._sync
        if not sync._started:
            await self.connect()
        inbox = sync._inbox
        engine = sync._engine
        get_batch = inbox.get_batch_async
        while True:
            try:
                batch = await get_batch()
            except InboxFinished as end:
                if end.error is not None:
                    raise end.error from None
                return
            if engine.markers_enabled and not events:
                batch = [m for m in batch if type(m) not in GAP_MARKERS]
            i = 0
            try:
                for msg in batch:
                    i += 1
                    yield msg
            finally:
                if i < len(batch):
                    inbox.extend_front(batch[i:])
