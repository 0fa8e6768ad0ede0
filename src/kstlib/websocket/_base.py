"""What the sync and the asyncio manager share: settings, engine, inbox, and the calls
that never wait. Each front adds its own blocking or awaitable methods of the same names
(:mod:`kstlib.websocket.manager`, :mod:`kstlib.websocket.aio`)."""

from __future__ import annotations

import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from kstlib.websocket._http import redact_url
from kstlib.websocket.config import Settings, load_settings
from kstlib.websocket.engine import Engine, StopMode
from kstlib.websocket.inbox import Inbox, InboxFinished
from kstlib.websocket.models import GAP_MARKERS, ConnectionState, WebSocketStats

__all__ = ["BaseManager"]

log = logging.getLogger("kstlib.websocket")

Message = dict[str, Any] | str


class BaseManager:
    """Configuration, state and non-blocking controls of one managed connection.

    ``url`` is a ``ws://`` or ``wss://`` address, or a callable returning one before
    every connection attempt (a token in the URL that must be fresh); every option of
    :class:`kstlib.websocket.config.Settings` may be given as a keyword (it overrides
    the ``websocket:`` section of ``kstlib.conf.yml``, which overrides the defaults);
    ``config`` names the file (or gives a mapping) instead of the default search.
    Thread-safe: every method may be called from any thread.
    """

    def __init__(
        self,
        url: str | Callable[[], str],
        *,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self._settings = load_settings(url, config=config, **options)
        s = self._settings
        self._inbox = Inbox(s.queue_size, s.queue_overflow, s.queue_max_bytes)
        self._engine = Engine(self._settings, self._inbox)
        self._started = False
        #: Set by :meth:`shutdown`; other threads may wait on it.
        self.shutdown_event = threading.Event()
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._watch()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact_url(self.url)} {self.state.name}>"

    # ------------------------------------------------------------------ properties

    @property
    def settings(self) -> Settings:
        """The validated settings (defaults < config file < keywords)."""
        return self._settings

    @property
    def url(self) -> str:
        """The URL: the ``url`` argument, or what its factory returned for the last
        connection attempt."""
        return self._engine.url

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
    def subscriptions(self) -> list[Message]:
        """The messages (re)sent, in order, on every connect."""
        return self._engine.subscriptions()

    # ------------------------------------------------------------------ calls that return at once

    def request_disconnect(self) -> None:
        """Disconnect at the next safe moment: when ``should_disconnect()`` is True if it
        was given, else right after the messages already received are queued."""
        self._engine.request_disconnect()

    def schedule_reconnect(self, delay: float) -> None:
        """Disconnect now if connected (SCHEDULED) and reconnect after ``delay`` seconds."""
        self._started = True
        self._engine.schedule_reconnect(delay)

    def subscribe(self, message: Message) -> None:
        """Add ``message`` to the subscriptions (resent on every connect); send it now if
        connected (it may wait for a slot under ``max_send_rate``)."""
        self._engine.add_subscription(message)

    def unsubscribe(
        self, message: Message, unsubscribe_message: Message | None = None, *, send: bool = True
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

    # ------------------------------------------------------------------ replies

    def expect(self, match: Callable[[Any], bool], *, across_reconnects: bool = False) -> Any:
        """Wait for a reply to a message sent another way (``send``, ``subscribe``):
        register before sending; the first message ``match`` accepts never reaches
        ``stream()`` and is returned by ``.wait(timeout)`` on the returned object
        (``WebSocketTimeoutError("request")`` past it, ``WebSocketRequestError`` when the
        connection ends first, unless ``across_reconnects``: a subscription resent on the
        next connection is answered there). Drop an unused wait with :meth:`forget`."""
        return self._engine.expect(match, across_reconnects=across_reconnects)

    def forget(self, pending: Any) -> None:
        """Drop a wait made with :meth:`expect` (a reply that comes later is streamed)."""
        self._engine.forget(pending)

    # ------------------------------------------------------------------ polling

    def drain(self, max_items: int | None = None, *, events: bool = False) -> list[Any]:
        """What is queued now (at most ``max_items``), without waiting: ``[]`` when
        nothing is. The same items, in the same order, as ``stream(events=events)``
        would yield next. Raises the error that ended the stream, once it is drained."""
        hide = self._hide_markers(events)
        out: list[Any] = []
        while max_items is None or len(out) < max_items:
            want = None if max_items is None else max_items - len(out)
            try:
                batch = self._inbox.get_batch(timeout=0.0, max_items=want)
            except InboxFinished as end:
                if end.error is not None and not out:
                    raise end.error from None
                break
            if not batch:
                break
            out += batch if hide is None or not hide() else _without_markers(batch)
        return out

    def fileno(self) -> int:
        """A descriptor that polls readable while messages are queued (or the stream has
        ended), so a ``select``/``epoll`` loop or a GUI loop can wait on several
        managers and its own sockets at once, then call :meth:`drain`."""
        return self._inbox.fileno()

    # ------------------------------------------------------------------ for the fronts

    def _watch(self) -> None:
        """Arm the warning and the stop for a manager dropped while its engine runs."""
        if self._finalizer is None or not self._finalizer.alive:
            self._finalizer = weakref.finalize(self, _abandoned, self._engine)
            self._finalizer.atexit = False  # at exit, daemon engine threads end with it

    def _stop(self, mode: StopMode) -> None:
        """End the engine; the manager was closed, so dropping it warns of nothing (and
        nothing global keeps its engine, whose last error may reference the manager
        through the frames that caught it)."""
        self._engine.stop(mode)
        if self._finalizer is not None:
            self._finalizer.detach()

    def _connect(self, timeout: float | None) -> None:
        """Start the engine and block until connected (see the sync ``connect``)."""
        if self._engine.is_shutdown:
            log.warning("connect() after force_close()/shutdown() is ignored")
            return
        if self.is_connected:
            return
        self._started = True
        self._watch()
        since = self._engine.connect_count
        self._engine.start()
        if not self._engine.in_engine_thread:
            self._engine.wait_connected(since, timeout)

    def _hide_markers(self, events: bool) -> Callable[[], bool] | None:
        """Enable the gap markers for ``events=True``; else the rule that hides them."""
        if events:
            self._engine.enable_markers()
            return None
        return self._engine.markers_check()


def _abandoned(engine: Engine) -> None:
    """A manager was garbage-collected without ``close()``: end its engine (no thread,
    socket or reconnect loop outlives it) and say so, as CPython's own sockets do."""
    if engine.is_dead:
        return
    warnings.warn(
        f"kstlib.websocket manager for {redact_url(engine.url)} was not closed; closing it now",
        ResourceWarning,
        stacklevel=2,
    )
    engine.stop(StopMode.FORCE)


def _without_markers(batch: list[Any]) -> list[Any]:
    return [m for m in batch if type(m) not in GAP_MARKERS]
