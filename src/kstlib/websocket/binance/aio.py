"""The asyncio twin of :class:`kstlib.websocket.binance.BinanceStreams`.

::

    from kstlib.websocket.binance.aio import BinanceStreams

    async with BinanceStreams(["btcusdt@trade"], unwrap=True) as bn:
        await bn.subscribe("ethusdt@trade")
        async for stream, event in bn.stream():
            handle(stream, event)

Same constructor, behaviour and errors as the sync client, which it drives through its
public API only: the engine threads and the merged queue are the same. Nothing blocks
the event loop: :meth:`BinanceStreams.stream` iterates the sync client's
:meth:`~kstlib.websocket.binance.BinanceStreams.stream_async` (the shared
:func:`~kstlib.websocket._stream.drain_async`: a future the engine threads complete
with ``call_soon_threadsafe``), and the calls that may wait (connecting, closing,
requests waiting for replies or for a send slot under the 5-per-second limit) run in a
worker thread (``asyncio.to_thread``). Cancelling a request's task stops awaiting it at
once, but its worker thread keeps the client's request slot until the reply or the
timeout (requests are serialised).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

from kstlib.websocket.manager import WebSocketManager
from kstlib.websocket.models import WebSocketStats

from .client import BinanceStreams as SyncBinanceStreams

__all__ = ["BinanceStreams"]


class BinanceStreams:
    """Asyncio front of :class:`kstlib.websocket.binance.BinanceStreams` (see it for the
    options, limits and semantics).

    Coroutines: :meth:`connect`, :meth:`close`, :meth:`subscribe`, :meth:`unsubscribe`,
    :meth:`list_subscriptions`. :meth:`stream` is an async iterator. Use one event loop
    per client.
    """

    def __init__(self, streams: str | Iterable[str] = (), **options: Any) -> None:
        self._sync = SyncBinanceStreams(streams, **options)

    async def __aenter__(self) -> BinanceStreams:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> BinanceStreams:
        raise TypeError(
            "kstlib.websocket.binance.aio.BinanceStreams is the asyncio client: use "
            "`async with`, or kstlib.websocket.binance.BinanceStreams for the sync one"
        )

    def __exit__(self, *exc_info: object) -> None:
        raise TypeError("use `async with` with kstlib.websocket.binance.aio.BinanceStreams")

    def __repr__(self) -> str:
        return "<aio." + repr(self._sync)[1:]

    # ------------------------------------------------------------------ properties

    @property
    def sync(self) -> SyncBinanceStreams:
        """The sync client this adapter drives."""
        return self._sync

    @property
    def streams(self) -> list[str]:
        """The streams currently subscribed, in order (as the sync client)."""
        return self._sync.streams

    @property
    def connections(self) -> tuple[WebSocketManager, ...]:
        """The sync managers, one per connection (their blocking calls block the loop)."""
        return self._sync.connections

    @property
    def stats(self) -> tuple[WebSocketStats, ...]:
        """One statistics snapshot per connection (never blocks)."""
        return self._sync.stats

    @property
    def is_connected(self) -> bool:
        """True while every connection is connected."""
        return self._sync.is_connected

    @property
    def started(self) -> bool:
        """True once :meth:`connect` succeeded (it stays True after :meth:`close`)."""
        return self._sync.started

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or a connection failed for good."""
        return self._sync.closed

    # ------------------------------------------------------------------ lifecycle

    async def connect(self, timeout: float | None = None) -> None:
        """The sync ``connect()`` in a worker thread (same errors)."""
        await asyncio.to_thread(self._sync.connect, timeout)

    async def close(self) -> None:
        """The sync ``close()`` in a worker thread; waits for every engine thread."""
        await asyncio.to_thread(self._sync.close)

    # ------------------------------------------------------------------ requests

    async def subscribe(self, streams: str | Iterable[str], timeout: float = 10.0) -> None:
        """The sync ``subscribe()`` in a worker thread (same errors)."""
        names = [streams] if isinstance(streams, str) else list(streams)
        await asyncio.to_thread(self._sync.subscribe, names, timeout)

    async def unsubscribe(self, streams: str | Iterable[str], timeout: float = 10.0) -> None:
        """The sync ``unsubscribe()`` in a worker thread (same errors)."""
        names = [streams] if isinstance(streams, str) else list(streams)
        await asyncio.to_thread(self._sync.unsubscribe, names, timeout)

    async def list_subscriptions(self, timeout: float = 10.0) -> list[str]:
        """The sync ``list_subscriptions()`` in a worker thread (same errors)."""
        return await asyncio.to_thread(self._sync.list_subscriptions, timeout)

    # ------------------------------------------------------------------ messages

    def stream(self, events: bool = False) -> AsyncIterator[Any]:
        """Async iterator over the messages of every connection; same items, end and error
        rules as the sync ``stream()``. Connects first if needed (in a worker thread).
        Breaking out of the loop puts the unread rest of a batch back once the generator
        is closed (at once with ``aclose()``, else when the event loop finalises it)."""
        return self._iterate(events)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate(False)

    async def _iterate(self, events: bool) -> AsyncIterator[Any]:
        sync = self._sync
        if not sync.started and not sync.closed:
            await self.connect()
        items = sync.stream_async(events)
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()  # puts the unread rest of a batch back
