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

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from kstlib.websocket.config import Settings, load_settings
from kstlib.websocket.engine import Engine
from kstlib.websocket.inbox import Inbox, InboxFinished
from kstlib.websocket.models import GAP_MARKERS, ConnectionState, WebSocketStats

__all__ = ["WebSocketManager"]

log = logging.getLogger("kstlib.websocket")


class WebSocketManager:
    """Proactive WebSocket client: you choose when it disconnects and reconnects.

    ``url`` is a ``ws://`` or ``wss://`` address; every option of
    :class:`kstlib.websocket.config.Settings` may be given as a keyword (it overrides
    the ``websocket:`` section of ``kstlib.conf.yml``, which overrides the defaults);
    ``config`` names the file (or gives a mapping) instead of the default search.

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

    def __init__(
        self,
        url: str,
        *,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self._settings = load_settings(url, config=config, **options)
        self._inbox = Inbox(self._settings.queue_size, self._settings.queue_overflow)
        self._engine = Engine(self._settings, self._inbox)
        self._started = False
        #: Set by :meth:`shutdown`; other threads may wait on it.
        self.shutdown_event = threading.Event()

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

    def __repr__(self) -> str:
        return f"<WebSocketManager {self._settings.url} {self.state.name}>"

    # ------------------------------------------------------------------ properties

    @property
    def settings(self) -> Settings:
        """The validated settings (defaults < config file < keywords)."""
        return self._settings

    @property
    def url(self) -> str:
        return self._settings.url

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`."""
        return self._engine.state

    @property
    def stats(self) -> WebSocketStats:
        """A frozen snapshot of the counters (cheap; never blocks the engine)."""
        return self._engine.stats()

    @property
    def is_connected(self) -> bool:
        return self._engine.state is ConnectionState.CONNECTED

    @property
    def is_dead(self) -> bool:
        """No connection, and the engine will not reconnect by itself.

        A pending backoff, a scheduled reconnect or a ``should_reconnect`` wait is not
        dead."""
        return self._engine.is_dead

    @property
    def is_shutdown(self) -> bool:
        """True after ``force_close()`` or ``shutdown()``: this manager will not restart."""
        return self._engine.is_shutdown

    @property
    def is_recoverable(self) -> bool:
        """``is_dead and not is_shutdown``: a watchdog may call ``connect()``."""
        return self._engine.is_dead and not self._engine.is_shutdown

    @property
    def subscriptions(self) -> list[dict[str, Any] | str]:
        """The messages (re)sent, in order, on every connect."""
        return self._engine.subscriptions()

    # ------------------------------------------------------------------ lifecycle

    def connect(self, timeout: float | None = None) -> None:
        """Connect and block until CONNECTED (subscriptions sent).

        No-op when already connected; a logged no-op after ``force_close()`` /
        ``shutdown()``. Raises :class:`WebSocketConnectionError` once the attempts are
        exhausted (``max_reconnect_attempts``, each bounded by ``connect_timeout``), or
        :class:`WebSocketTimeoutError` when ``timeout`` (seconds) passes first.
        """
        if self._engine.is_shutdown:
            log.warning("connect() after force_close()/shutdown() is ignored")
            return
        if self.is_connected:
            return
        self._started = True
        since = self._engine.connect_count
        self._engine.start()
        if not self._engine.in_engine_thread:
            self._engine.wait_connected(since, timeout)

    def disconnect(self) -> None:
        """Disconnect now (USER_REQUESTED, proactive), with a closing handshake."""
        self._engine.disconnect()

    def request_disconnect(self) -> None:
        """Disconnect at the next safe moment: when ``should_disconnect()`` is True if it
        was given, else right after the messages already received are queued."""
        self._engine.request_disconnect()

    def schedule_reconnect(self, delay: float) -> None:
        """Disconnect now if connected (SCHEDULED) and reconnect after ``delay`` seconds."""
        self._started = True
        self._engine.schedule_reconnect(delay)

    def close(self) -> None:
        """Graceful close (closing handshake, at most ``close_timeout``); ends CLOSED.

        Idempotent. Queued messages stay readable; ``stream()`` ends after them."""
        self._engine.stop("close")

    def force_close(self) -> None:
        """Immediate, terminal close: ``is_shutdown`` becomes True."""
        self._engine.stop("force")

    def shutdown(self) -> None:
        """``force_close()`` plus ``shutdown_event`` set, for other threads to see."""
        self._engine.stop("force")
        self.shutdown_event.set()

    def kill(self) -> None:
        """Drop the socket without a closing handshake, like a network loss (KILLED).

        Auto-reconnect applies. Meant for testing watchdogs and reconnection logic."""
        self._engine.kill()

    # ------------------------------------------------------------------ messages

    def send(self, data: Any) -> None:
        """Send ``str`` (text), bytes-like (binary) or dict/list (JSON text) from any thread.

        Raises :class:`WebSocketClosedError` when not connected (also while reconnecting).
        Waits for a slot when ``max_send_rate`` is set."""
        self._engine.send(data)

    def subscribe(self, message: dict[str, Any] | str) -> None:
        """Add ``message`` to the subscriptions (resent on every connect); send it now if
        connected."""
        self._engine.add_subscription(message)

    def unsubscribe(
        self,
        message: dict[str, Any] | str,
        unsubscribe_message: dict[str, Any] | str | None = None,
        *,
        send: bool = True,
    ) -> None:
        """Remove ``message`` from the subscriptions (``ValueError`` if absent).

        When connected, ``unsubscribe_message`` is sent; by default, for a Binance-style
        ``{"method": "SUBSCRIBE", "params": [...]}`` message, the matching ``UNSUBSCRIBE``
        (same params and id) is sent. ``send=False`` only forgets ``message`` (e.g. a
        subscription the server refused)."""
        if not send:
            self._engine.remove_subscription(message, None)
            return
        if (
            unsubscribe_message is None
            and isinstance(message, dict)
            and message.get("method") == "SUBSCRIBE"
        ):
            unsubscribe_message = {**message, "method": "UNSUBSCRIBE"}
        self._engine.remove_subscription(message, unsubscribe_message)

    def stream(self, events: bool = False) -> Iterator[Any]:
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
        if events:
            self._engine.enable_markers()
        if not self._started:
            self.connect()
        return self._iterate(events)

    def __iter__(self) -> Iterator[Any]:
        return self.stream()

    def _iterate(self, events: bool) -> Iterator[Any]:
        inbox = self._inbox
        get_batch = inbox.get_batch
        engine = self._engine
        while True:
            try:
                batch = get_batch()
            except InboxFinished as end:
                if end.error is not None:
                    raise end.error from None
                return
            if engine.markers_enabled and not events:
                batch = [m for m in batch if type(m) not in GAP_MARKERS]
            it = iter(batch)
            try:
                yield from it
            finally:
                rest = list(it)
                if rest:
                    inbox.extend_front(rest)
