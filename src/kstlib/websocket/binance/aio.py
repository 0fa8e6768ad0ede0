"""The asyncio twin of :class:`kstlib.websocket.binance.BinanceStreams`.

::

    from kstlib.websocket.binance.aio import BinanceStreams

    async with BinanceStreams(["btcusdt@trade"], unwrap=True) as bn:
        await bn.subscribe("ethusdt@trade")
        async for stream, event in bn.stream():
            handle(stream, event)

Same constructor, behaviour and errors as the sync client, which it drives: the engine
and reader threads are the same. Nothing blocks the event loop: :meth:`stream` awaits the
shared queue through a future the readers complete with ``call_soon_threadsafe``, and
the calls that may wait (connecting, closing, requests waiting for replies or for a send
slot under the 5-per-second limit) run in a worker thread (``asyncio.to_thread``).
Cancelling a request's task stops awaiting it at once, but its worker thread keeps the
client's request slot until the reply or the timeout (requests are serialised).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

from kstlib.websocket.binance import BinanceStreams as SyncBinanceStreams
from kstlib.websocket.binance import ConnectionEvent
from kstlib.websocket.inbox import InboxFinished
from kstlib.websocket.manager import WebSocketManager
from kstlib.websocket.models import WebSocketStats

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
        return self._sync.streams

    @property
    def connections(self) -> tuple[WebSocketManager, ...]:
        return self._sync.connections

    @property
    def stats(self) -> tuple[WebSocketStats, ...]:
        return self._sync.stats

    @property
    def is_connected(self) -> bool:
        return self._sync.is_connected

    @property
    def closed(self) -> bool:
        return self._sync.closed

    # ------------------------------------------------------------------ lifecycle

    async def connect(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self._sync.connect, timeout)

    async def close(self) -> None:
        await asyncio.to_thread(self._sync.close)

    # ------------------------------------------------------------------ requests

    async def subscribe(self, streams: str | Iterable[str], timeout: float = 10.0) -> None:
        names = [streams] if isinstance(streams, str) else list(streams)
        await asyncio.to_thread(self._sync.subscribe, names, timeout)

    async def unsubscribe(self, streams: str | Iterable[str], timeout: float = 10.0) -> None:
        names = [streams] if isinstance(streams, str) else list(streams)
        await asyncio.to_thread(self._sync.unsubscribe, names, timeout)

    async def list_subscriptions(self, timeout: float = 10.0) -> list[str]:
        return await asyncio.to_thread(self._sync.list_subscriptions, timeout)

    # ------------------------------------------------------------------ messages

    def stream(self, events: bool = False) -> AsyncIterator[Any]:
        """Async iterator over the messages of every connection; same items, end and error
        rules as the sync ``stream()``. Connects first if needed."""
        return self._iterate(events)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate(False)

    async def _iterate(self, events: bool) -> AsyncIterator[Any]:
        sync = self._sync
        if not sync._connected and not sync.closed:
            await self.connect()
        while True:
            try:
                batch = await sync._get_batch_async()
            except InboxFinished as end:
                if end.error is not None:
                    raise end.error from None
                return
            i = 0
            try:
                for item in batch:
                    i += 1
                    if events or type(item) is not ConnectionEvent:
                        yield item
            finally:
                if i < len(batch):
                    sync._put_back(batch[i:])
