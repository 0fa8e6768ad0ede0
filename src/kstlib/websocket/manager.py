"""``WebSocketManager``: the sync public API. Thin: it owns one engine and one inbox.

::

    from kstlib.websocket import WebSocketManager

    with WebSocketManager("wss://stream.binance.com:9443/ws/btcusdt@trade") as ws:
        for msg in ws.stream():      # blocking; dict for JSON text frames by default
            handle(msg)

A background thread (the engine, see :mod:`kstlib.websocket.engine`) connects, reads,
answers pings and reconnects; messages reach ``stream()`` through a bounded queue.
Every method is thread-safe and may be called from any thread, including from inside a
callback (then the call returns without waiting for its effect).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator
from types import TracebackType
from typing import Any

from kstlib.websocket._base import BaseManager
from kstlib.websocket._stream import drain
from kstlib.websocket.engine import StopMode
from kstlib.websocket.exceptions import WebSocketClosedError, WebSocketTimeoutError
from kstlib.websocket.inbox import InboxFinished
from kstlib.websocket.models import GAP_MARKERS

__all__ = ["WebSocketManager"]


class WebSocketManager(BaseManager):
    """Proactive WebSocket client: you choose when it disconnects and reconnects.

    Construction: see :class:`~kstlib.websocket._base.BaseManager` (``url``, ``config``,
    every option of :class:`~kstlib.websocket.config.Settings` as a keyword).

    Lifecycle:

    * ``connect()`` starts the engine and blocks until connected (subscriptions sent).
    * ``close()`` closing handshake, ends CLOSED; ``connect()`` works again afterwards.
    * ``force_close()`` immediate and terminal (``is_shutdown``); later ``connect()`` is a
      logged no-op. ``shutdown()`` is the same plus ``shutdown_event`` being set.
    * ``kill()`` drops the socket as a network loss would (reason KILLED); reconnects.
    * ``disconnect()`` proactive disconnect now; no reconnect until ``connect()``,
      ``schedule_reconnect()`` or ``should_reconnect`` says so.
    * ``request_disconnect()`` disconnect at the next safe moment (returns at once).
    * ``schedule_reconnect(delay)`` disconnect now (SCHEDULED), reconnect after ``delay``.
    """

    # ------------------------------------------------------------------ context managers

    def __enter__(self) -> WebSocketManager:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> WebSocketManager:
        raise TypeError(
            "kstlib.websocket.WebSocketManager is the sync client: use `with`, or for "
            "`async with` import the asyncio adapter: "
            "`from kstlib.websocket.aio import WebSocketManager`"
        )

    async def __aexit__(self, *exc_info: object) -> None:
        raise TypeError("use kstlib.websocket.aio.WebSocketManager with `async with`")

    # ------------------------------------------------------------------ lifecycle

    def connect(self, timeout: float | None = None) -> None:
        """Connect and block until CONNECTED (subscriptions sent).

        No-op when already connected; a logged no-op after ``force_close()`` /
        ``shutdown()``. Raises :class:`WebSocketConnectionError` once the attempts are
        exhausted (``connect_attempts``, each bounded by ``connect_timeout``), or
        :class:`WebSocketTimeoutError` when ``timeout`` (seconds) passes first.
        """
        self._connect(timeout)

    def disconnect(self) -> None:
        """Disconnect now (USER_REQUESTED, proactive), with a closing handshake."""
        self._engine.disconnect()

    def close(self) -> None:
        """Graceful close (closing handshake, at most ``close_timeout``); ends CLOSED.

        Idempotent. Queued messages stay readable; ``stream()`` ends after them."""
        self._stop(StopMode.CLOSE)

    def force_close(self) -> None:
        """Immediate, terminal close: ``is_shutdown`` becomes True."""
        self._stop(StopMode.FORCE)

    def shutdown(self) -> None:
        """``force_close()`` plus ``shutdown_event`` set, for other threads to see."""
        self._stop(StopMode.FORCE)
        self.shutdown_event.set()

    def kill(self) -> None:
        """Drop the socket without a closing handshake, like a network loss (KILLED).

        Auto-reconnect applies. Meant for testing watchdogs and reconnection logic."""
        self._engine.kill()

    # ------------------------------------------------------------------ messages

    def send(self, data: Any) -> None:
        """Send ``str`` (text), bytes-like (binary) or dict/list (JSON text) from any thread.

        Raises :class:`WebSocketClosedError` when not connected (also while reconnecting),
        :class:`WebSocketTimeoutError` when the peer stopped reading for ``ping_timeout``.
        Waits for a slot when ``max_send_rate`` is set."""
        self._engine.send(data)

    def request(
        self,
        message: Any,
        *,
        match: Callable[[Any], bool] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """Send ``message`` and return its reply, which never reaches ``stream()``.

        ``match(msg)`` recognises the reply; by default it is the dict whose ``id`` is
        the message's (a dict without ``id`` gets the next integer). Raises
        :class:`WebSocketTimeoutError` (``operation="request"``) after ``timeout``
        seconds, :class:`WebSocketRequestError` when the connection ends first or one
        reply matches several pending requests, :class:`WebSocketClosedError` when not
        connected."""
        return self._engine.request(message, match, timeout)

    def ping(self, timeout: float = 10.0) -> float:
        """Send a ping now and return its round trip in seconds (``stats.ping_rtt`` keeps
        the last one, ``stats.ping_rtt_avg`` a moving average). Raises
        :class:`WebSocketClosedError` when not connected, :class:`WebSocketTimeoutError`
        (``operation="ping"``) after ``timeout`` seconds."""
        return self._engine.ping(timeout)

    def recv(self, timeout: float | None = None, *, events: bool = False) -> Any:
        """The next message (or gap marker, with ``events=True``), waiting at most
        ``timeout`` seconds (None: until one comes): the item ``stream(events=events)``
        would yield next. Raises :class:`WebSocketTimeoutError` (``operation="recv"``),
        the error that ended the stream, or :class:`WebSocketClosedError` once the
        stream has ended. Connects first if ``connect()`` was never called."""
        hide = self._hide_markers(events)
        if not self._started:
            self.connect()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                batch = self._inbox.get_batch(timeout=remaining, max_items=1)
            except InboxFinished as end:
                raise end.error or WebSocketClosedError(None, "the stream has ended") from None
            if not batch:
                raise WebSocketTimeoutError("recv", timeout)
            if hide is None or not hide() or type(batch[0]) not in GAP_MARKERS:
                return batch[0]

    def stream(self, events: bool = False) -> Generator[Any, None, None]:
        """Blocking iterator over incoming messages, across reconnects.

        With ``events=True`` it also yields, in order with the messages, a
        :class:`~kstlib.websocket.models.Disconnected` marker where a connection ended and a
        :class:`~kstlib.websocket.models.Connected` marker where the next one began, so
        code that keeps state (an order book) knows where data may be missing. A
        make-before-break handover is no gap and yields no marker.

        Ends normally once the manager is closed or disconnected by the user (after the
        queued messages); raises :class:`WebSocketConnectionError` when reconnecting gave
        up and :class:`WebSocketClosedError` when the server closed for good
        (``auto_reconnect=False``). Connects first if ``connect()`` was never called.
        Leaving the loop early keeps unread messages queued for the next ``stream()``.
        """
        hide = self._hide_markers(events)
        if not self._started:
            self.connect()
        return drain(self._inbox, hide)

    def consume(self, handler: Callable[[Any], object], events: bool = False) -> None:
        """Call ``handler(msg)`` on this thread for every item ``stream(events=events)``
        yields, in order, until the stream ends (same end and error rules). When
        ``handler`` raises, the messages after that one stay queued and the error is
        raised here. The twin of the asyncio front's ``consume``."""
        with contextlib.closing(self.stream(events)) as stream:
            for msg in stream:
                handler(msg)

    def __iter__(self) -> Iterator[Any]:
        return self.stream()
