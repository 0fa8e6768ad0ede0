"""The asyncio front: same constructor and names as the sync manager, awaitable.

::

    from kstlib.websocket.aio import WebSocketManager

    async with WebSocketManager(url) as ws:
        async for msg in ws.stream():
            handle(msg)

It shares the engine and every non-blocking call with the sync front
(:class:`~kstlib.websocket._base.BaseManager`). Nothing here blocks the event loop:
while a consumer awaits a message, the socket is read on the loop itself (one
non-blocking read per readiness, :mod:`kstlib.websocket.engine.direct`), and the batch
resumes the waiting ``async for`` in that same loop turn; otherwise the engine thread
reads and completes the consumer's future with ``call_soon_threadsafe``.
``consume(handler)`` goes one step further: the handler runs in the loop turn that read
the message, with no task switch. ``merge(*managers)`` reads several managers in one
``async for``. The calls that may wait (connect, close, disconnect, kill,
and the rest of a write that the socket could not take at once) run in a worker thread
(``asyncio.to_thread``); ``send_nowait`` writes without awaiting. ``request_disconnect``,
``schedule_reconnect``, ``subscribe`` and ``unsubscribe`` stay plain calls.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from kstlib.websocket._base import BaseManager
from kstlib.websocket._stream import consume_async, drain_async
from kstlib.websocket.engine import StopMode
from kstlib.websocket.exceptions import WebSocketClosedError, WebSocketTimeoutError
from kstlib.websocket.inbox import InboxFinished
from kstlib.websocket.merging import merge_async as merge
from kstlib.websocket.models import GAP_MARKERS

__all__ = ["WebSocketManager", "merge"]


class WebSocketManager(BaseManager):
    """Asyncio front of the proactive WebSocket client. See the sync class for semantics.

    Coroutines: ``connect``, ``disconnect``, ``close``, ``force_close``, ``shutdown``,
    ``kill``, ``send``. ``stream()`` is an async iterator. The factories ``url``,
    ``headers`` and ``subscriptions`` may also be coroutine functions: they run on the
    event loop that awaited ``connect()``, each call bounded by ``connect_timeout``.
    """

    def __init__(
        self,
        url: str | Callable[[], Any],
        *,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self._loop_box: list[asyncio.AbstractEventLoop | None] = [None]
        #: The last write left to a worker thread (:meth:`send_nowait`), while pending.
        self._sending: asyncio.Future[None] | None = None
        url = self._on_loop(url, options)
        for name in ("headers", "subscriptions"):
            if name in options:
                options[name] = self._on_loop(options[name], options)
        super().__init__(url, config=config, **options)

    def _on_loop(self, value: Any, options: Mapping[str, Any]) -> Any:
        if not inspect.iscoroutinefunction(value):
            return value
        return _OnLoop(value, self._loop_box, options.get("connect_timeout", 10.0))

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
        self._loop_box[0] = asyncio.get_running_loop()
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
        await asyncio.to_thread(self._stop, StopMode.CLOSE)

    async def force_close(self) -> None:
        await asyncio.to_thread(self._stop, StopMode.FORCE)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self._stop, StopMode.FORCE)
        self.shutdown_event.set()

    async def kill(self) -> None:
        await asyncio.to_thread(self._engine.kill)

    # ------------------------------------------------------------------ messages

    async def send(self, data: Any) -> None:
        """Send a message (see the sync ``send``). It is written at once when the socket
        takes it whole (the common case); otherwise the rest of the write, or the wait
        for a ``max_send_rate`` slot, runs in a worker thread, so a peer that stops
        reading never stalls the event loop. Messages go out in the order of the calls
        (with :meth:`send_nowait`'s). Cancelling the call does not cut a frame: the
        write begun is finished."""
        pending = self.send_nowait(data)
        if pending is not None:
            await asyncio.shield(pending)

    def send_nowait(self, data: Any) -> asyncio.Future[None] | None:
        """Send a message without awaiting, on the event loop's thread: e.g. from a
        :meth:`consume` handler, to answer a message in the same loop turn. Returns None
        when the message went out whole at once (the common case). Otherwise its write
        (or the rest of it) runs in a worker thread after any earlier one still pending,
        so messages keep their order, and the returned future ends when it is written,
        or with the error :meth:`send` would raise. Raises at once what :meth:`send`
        raises before writing (not connected, a message it cannot frame)."""
        if self._sending is not None and not self._sending.done():
            pending = asyncio.ensure_future(self._send_after(self._sending, data))
        else:
            rest = self._engine.send_nowait(data)
            if rest is None:
                return None
            pending = asyncio.ensure_future(asyncio.to_thread(rest))
        self._sending = pending
        return pending

    async def _send_after(self, earlier: asyncio.Future[None], data: Any) -> None:
        await asyncio.wait([earlier])  # its outcome is its own caller's to see
        rest = self._engine.send_nowait(data)
        if rest is not None:
            await asyncio.to_thread(rest)

    async def request(
        self,
        message: Any,
        *,
        match: Callable[[Any], bool] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """Send ``message`` and return its reply (see the sync ``request``); waits in a
        worker thread."""
        return await asyncio.to_thread(self._engine.request, message, match, timeout)

    async def ping(self, timeout: float = 10.0) -> float:
        """Round trip of a ping now, in seconds (see the sync ``ping``)."""
        return await asyncio.to_thread(self._engine.ping, timeout)

    async def recv(self, timeout: float | None = None, *, events: bool = False) -> Any:
        """The next message (see the sync ``recv``); waiting never blocks the loop."""
        hide = self._hide_markers(events)
        await self._connect_once()
        try:
            return await asyncio.wait_for(self._next(hide), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise WebSocketTimeoutError("recv", timeout) from None

    async def _next(self, hide: Callable[[], bool] | None) -> Any:
        while True:
            try:
                (item,) = await self._inbox.get_batch_async(max_items=1)
            except InboxFinished as end:
                raise end.error or WebSocketClosedError(None, "the stream has ended") from None
            if hide is None or not hide() or type(item) not in GAP_MARKERS:
                return item

    def stream(self, events: bool = False) -> AsyncGenerator[Any, None]:
        """Async iterator over incoming messages; same end and error rules, and the same
        ``events=True`` gap markers, as the sync ``stream()``. Connects first if
        ``connect()`` was never called."""
        hide = self._hide_markers(events)
        return drain_async(self._inbox, hide, None if self._started else self._connect_once)

    async def consume(self, handler: Callable[[Any], object], events: bool = False) -> None:
        """Call ``handler(msg)`` on the event loop for every message (and gap marker, with
        ``events=True``), in order, until the stream ends: the same items, end and error
        rules as ``async for msg in ws.stream(events=events)``, with less between the
        socket and your code. While ``handler`` has nothing to do, the socket is read on
        the loop and a message that arrives is passed to ``handler`` in the same loop
        turn, with no task switch (picows' ``on_ws_frame`` model). ``handler`` is a plain
        function: it must not block the loop (hand slow work to a task or a thread).
        When it raises, the messages after that one stay queued (a later ``stream()`` or
        ``consume()`` gets them) and the error is raised here. Connects first if
        ``connect()`` was never called."""
        hide = self._hide_markers(events)
        start = None if self._started else self._connect_once
        await consume_async(self._inbox, handler, hide, start)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.stream()

    async def _connect_once(self) -> None:
        if not self._started:
            await self.connect()


class _OnLoop:
    """A coroutine-function factory made callable from the engine thread: it runs on the
    event loop in ``box`` (the one that awaited ``connect()``), or on a loop of its own
    when there is none, and waits ``timeout`` seconds at most."""

    def __init__(
        self,
        fn: Callable[[], Awaitable[Any]],
        box: list[asyncio.AbstractEventLoop | None],
        timeout: float,
    ) -> None:
        self._fn, self._box, self._timeout = fn, box, timeout

    async def _call(self) -> Any:
        return await self._fn()

    def __call__(self) -> Any:
        loop = self._box[0]
        if loop is None or loop.is_closed():
            return asyncio.run(self._call())
        return asyncio.run_coroutine_threadsafe(self._call(), loop).result(self._timeout)
