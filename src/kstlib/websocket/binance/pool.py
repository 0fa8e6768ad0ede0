"""The connections of a Binance client, and how their batches merge into one stream.

A :class:`Pool` owns one :class:`~kstlib.websocket.WebSocketManager` per
:class:`Connection` and one shared bounded :class:`~kstlib.websocket.inbox.Inbox`
(``queue_size``, ``queue_overflow``) that the client's ``stream()`` drains. There is no
reader thread: every manager gets an ``on_batch`` hook that runs on its engine thread
with each batch the engine read (one per socket read) and with each gap marker (a batch
of one), and that

1. drops the replies to the client's ids that reach it (:meth:`Requests.take_reply`:
   nobody awaits them, their errors are logged; none is ever queued). Awaited replies
   never get here: the engine takes them out before ``on_batch`` (a manager's
   ``request()``, and the waits registered with ``expect()``);
2. turns a gap marker into a :class:`ConnectionEvent` (connection index, its streams,
   the engine's ``Connected`` / ``Disconnected``); the first ``Connected`` of a
   connection is no gap and gives none (the engine itself resolves the waits a lost
   connection owed);
3. with ``unwrap=True`` makes ``(stream, event)`` tuples of the payloads;
4. puts the whole resulting batch into the shared inbox in one ``put_batch`` and
   returns ``[]``, so the manager's own inbox stays empty.

Order: a connection's items keep their arrival order (one engine thread delivers them,
one put per batch); batches of different connections interleave as they arrive.

Back-pressure (``queue_overflow="block"``): when the shared queue is full the engine
thread waits inside ``on_batch`` (a condition variable, no polling) and stops reading
its socket; the engine credits that time to its ping and pong deadlines, so nothing is
lost and no keepalive fires. Three things end such a wait at once, after which the
batch is queued past the bound (by at most what arrives meanwhile): a request waiting
for its reply, a manager's ``request()`` included (a reply must never be stuck behind a
full queue that only the waiting caller would drain: an engine thread waiting here reads
nothing, so not even the engine could take the reply out), a connection being retired,
and :meth:`Pool.shutdown`.

Failure: the engine passes the error that ended a connection for good to ``on_error``
last, once ``manager.is_dead`` is True; the pool's ``on_error`` then closes every other
connection and finishes the shared inbox with that error (the consumer sees it after
the messages queued before it). A user's ``on_error`` is called first, for every error.
``on_batch`` and ``on_message`` are the pool's own: :data:`FORBIDDEN` refuses them.

Thread-safety: every method may be called from any thread; the hooks run on engine
threads (and on the closer thread of a handover), possibly for several connections at
once. Locks: :class:`Requests`' lock may be held while the gate's is taken, and the
gate's while the inbox's is; the pool's own lock (connections, streams) nests with
none. No lock is held while waiting for room, for the network or for a thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import (
    AsyncGenerator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from typing import Any

from kstlib.websocket._ratelimit import Cancel, SlidingWindow, check_count, check_seconds
from kstlib.websocket._stream import drain, drain_async
from kstlib.websocket.config import load_settings
from kstlib.websocket.exceptions import WebSocketClosedError
from kstlib.websocket.inbox import Inbox
from kstlib.websocket.manager import WebSocketManager
from kstlib.websocket.models import GAP_MARKERS, Connected, Disconnected

from .hooks import dedupe_key, is_server_shutdown
from .names import MAX_CONNECTION_AGE, MAX_SEND_RATE, REQUESTS_PER_SECOND, unwrap_item
from .requests import Requests

__all__ = [
    "FORBIDDEN",
    "Connection",
    "ConnectionEvent",
    "ConnectionPacer",
    "Pool",
    "preset_options",
    "refuse_forbidden",
]

log = logging.getLogger("kstlib.websocket.binance")

#: Manager options the client sets itself, with what to do instead.
FORBIDDEN = {
    "subscriptions": "pass streams, or call subscribe()",
    "on_message": "iterate stream() (the client reads every connection itself)",
    "on_batch": "iterate stream() (the client merges every connection's batches with it)",
    "url": "pass base=",
}


class ConnectionPacer(SlidingWindow):
    """At most ``max_attempts`` connection attempts in any sliding ``window`` seconds.

    :meth:`acquire` waits (in the calling thread, an engine thread when used from
    ``before_connect``) until the oldest of the last ``max_attempts`` attempts is more
    than ``window + margin`` seconds old, then records the attempt; it returns False,
    without recording, when ``cancel`` (an event) is set while waiting. The server
    counts handshakes when they *arrive*; ``margin`` (default 0.25 s) absorbs the
    variation of the connect latency. Share one pacer between clients (``pacer=``) that
    count against the same limit (Binance: 300 per 5 minutes per IP). The preset also
    paces its own requests on each connection with one (4 per 1.1 s).

    A :class:`~kstlib.websocket._ratelimit.SlidingWindow` (``clock`` and ``sleep`` are
    injectable); thread-safe.

    Raises:
        ValueError: ``max_attempts`` not an integer >= 1, ``window`` not > 0 or
            ``margin`` not >= 0 seconds.
    """

    def __init__(
        self,
        max_attempts: int = 300,
        window: float = 300.0,
        margin: float = 0.25,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        check_count("max_attempts", max_attempts)
        check_seconds("window", window, zero=False)
        check_seconds("margin", margin, zero=True)
        super().__init__(max_attempts, window, margin, clock=clock, sleep=sleep)

    @property
    def max_attempts(self) -> int:
        return self.slots

    def acquire(
        self, cancel: Cancel = None, sleep: Callable[[float], object] | None = None
    ) -> bool:
        """Wait for a slot and record an attempt; False, without recording, when
        ``cancel`` is set while waiting (the client is closing)."""
        return super().acquire(cancel, sleep)


@dataclass(frozen=True)
class ConnectionEvent:
    """Gap marker of ``BinanceStreams.stream(events=True)``: connection ``connection``
    (0-based) carrying ``streams`` connected or disconnected here (``event`` is the
    engine's :class:`~kstlib.websocket.models.Connected` or
    :class:`~kstlib.websocket.models.Disconnected`). Data of those streams may be missing
    between a ``Disconnected`` and the next ``Connected``."""

    connection: int
    streams: tuple[str, ...]
    event: Connected | Disconnected


class Connection:
    """One connection of the pool: its manager, the streams it carries, its request pace.

    ``streams`` (an ordered set) is guarded by the pool's lock; ``initial`` are the
    subscription messages it was created with; ``sends`` paces the client's requests
    on it at :data:`~kstlib.websocket.binance.names.REQUESTS_PER_SECOND` per 1.1 s,
    counting the subscriptions resent on each (re)connect.
    """

    manager: WebSocketManager

    def __init__(self, index: int, streams: list[str], initial: list[dict[str, Any]]) -> None:
        self.index = index
        self.streams: dict[str, None] = dict.fromkeys(streams)
        self.initial = initial
        self.retired = False  # closed because it carries no stream any more
        self.started = False  # connect() returned: from now on a failure ends the pool
        self.early_error: BaseException | None = None  # died before ``started``
        self.sends = ConnectionPacer(REQUESTS_PER_SECOND, 1.0, margin=0.1)


class _Gate:
    """Whether engine threads may wait for room in the shared inbox.

    :meth:`hold` (nested, counted) and :meth:`close` (final) make every blocking put
    return at once and the pool queue past the bound; :meth:`release` undoes a hold.
    Thread-safe; its lock is a leaf (only the inbox's is taken under it)."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self._lock = threading.Lock()
        self._holds = 0
        self._closed = False

    def hold(self) -> None:
        with self._lock:
            self._holds += 1
            if self._holds == 1:
                self._inbox.interrupt_put()

    def release(self) -> None:
        with self._lock:
            self._holds -= 1
            if self._holds == 0 and not self._closed:
                self._inbox.resume_put()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._inbox.interrupt_put()


def refuse_forbidden(user: Mapping[str, Any]) -> None:
    """Raise for an option the client sets itself.

    Raises:
        TypeError: a :data:`FORBIDDEN` option.
        ValueError: ``decode`` other than ``"json"``.
    """
    for name, hint in FORBIDDEN.items():
        if name in user:
            raise TypeError(f"BinanceStreams does not take {name}=: {hint}")
    decode = user.get("decode", "json")
    if decode != "json":
        raise ValueError(f"BinanceStreams decodes JSON itself; got decode={decode!r}")


def preset_options(
    user: dict[str, Any], pacer: ConnectionPacer, cancel: threading.Event
) -> dict[str, Any]:
    """The managers' options: the preset's, overridden by the user's, with a
    ``before_connect`` that waits for ``pacer`` (given up when ``cancel`` is set) before
    the user's own.

    Raises:
        TypeError: a :data:`FORBIDDEN` option.
        ValueError: ``decode`` other than ``"json"``; a ``before_connect`` that is not
            callable.
    """
    refuse_forbidden(user)
    user = dict(user)
    user.pop("decode", None)
    user_before = user.pop("before_connect", None)
    if user_before is not None and not callable(user_before):
        raise ValueError(f"before_connect must be callable, got {user_before!r}")

    def before_connect() -> None:
        pacer.acquire(cancel)
        if user_before is not None:
            user_before()

    options: dict[str, Any] = {
        "max_send_rate": MAX_SEND_RATE,
        "max_connection_age": MAX_CONNECTION_AGE,
        "dedupe_key": dedupe_key,
    }
    if user.get("handover") is not False:
        options["should_handover"] = is_server_shutdown
    options.update(user)
    options["before_connect"] = before_connect
    return options


class Pool:
    """The connections of one client and their merged stream (see the module docstring).

    ``url`` is the managers' address (``<base>/ws``); ``options`` their options
    (:func:`preset_options`), validated here at once (``ValueError`` / ``TypeError`` as
    :func:`~kstlib.websocket.config.load_settings`); ``unwrap`` makes the merge yield
    ``(stream, event)`` tuples. ``cancel`` is set by :meth:`shutdown` (pacer waits give
    up). The pool creates no connection by itself: see :meth:`add`.
    """

    def __init__(
        self,
        url: str,
        options: dict[str, Any],
        config: str | os.PathLike[str] | Mapping[str, Any] | None,
        *,
        unwrap: bool,
        cancel: threading.Event,
    ) -> None:
        settings = load_settings(url, config=config, **options)
        options = dict(options)
        self._url = url
        self._config = config
        self._user_on_error: Callable[[BaseException], None] | None = options.pop("on_error", None)
        self._options = options
        self._unwrap = unwrap
        self.cancel = cancel
        self.inbox = Inbox(settings.queue_size, settings.queue_overflow)
        self._gate = _Gate(self.inbox)
        self.requests = Requests(self._gate.hold, self._gate.release)
        self._lock = threading.Lock()  # guards the fields below and Connection.streams
        self._conns: list[Connection] = []
        self._owner: dict[str, Connection] = {}
        self._next_index = 0
        self._closing = False
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ connections

    def add(self, streams: list[str], subscriptions: list[dict[str, Any]]) -> Connection:
        """Create (not connect) a connection carrying ``streams``, whose manager sends
        ``subscriptions`` on every connect. Raises what the manager's constructor raises."""
        with self._lock:
            index = self._next_index
            self._next_index += 1
        conn = Connection(index, streams, subscriptions)
        conn.manager = WebSocketManager(
            self._url,
            config=self._config,
            subscriptions=subscriptions,
            on_batch=lambda batch: self._on_batch(conn, batch),
            on_error=lambda exc: self._on_error(conn, exc),
            **self._options,
        )
        with self._lock:
            for s in streams:
                self._owner[s] = conn
            self._conns.append(conn)
        return conn

    def start(self, conn: Connection, timeout: float | None) -> None:
        """Connect ``conn`` (see ``WebSocketManager.connect``); from now on its failure
        ends the pool. Raises what ``connect`` raises."""
        conn.manager.connect(timeout)
        with self._lock:
            conn.started = True
            early = conn.early_error
        if early is not None:  # it failed for good between connecting and now
            self._fail(conn, early)

    def retire(self, conn: Connection) -> None:
        """Close ``conn`` (it carries no stream any more) and forget it. Its engine's last
        batches are queued without waiting for room (see the module docstring)."""
        with self._lock:
            conn.retired = True
            self._conns.remove(conn)
        self._gate.hold()
        try:
            conn.manager.close()
        finally:
            self._gate.release()

    def pace(self, conn: Connection) -> None:
        """Wait for a request slot on ``conn``.

        Raises:
            WebSocketClosedError: the pool was shut down meanwhile.
        """
        if not conn.sends.acquire(self.cancel):
            raise WebSocketClosedError(None, "BinanceStreams closed")

    @property
    def connections(self) -> list[Connection]:
        """The live connections, in connection order (a copy)."""
        with self._lock:
            return list(self._conns)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` ran (a close, or a connection that failed)."""
        return self._closing

    # ------------------------------------------------------------------ streams

    @property
    def streams(self) -> list[str]:
        """Every stream carried, in the order they were assigned."""
        with self._lock:
            return list(self._owner)

    def plan(
        self, names: list[str], capacity: int
    ) -> tuple[list[tuple[Connection, list[str]]], list[str]]:
        """First fit: ``(connection, streams)`` for the names not carried yet that fit on
        the connections (at most ``capacity`` streams each), and the names left over."""
        with self._lock:
            new = [s for s in names if s not in self._owner]
            plan: list[tuple[Connection, list[str]]] = []
            for conn in self._conns:
                room = capacity - len(conn.streams)
                if room > 0 and new:
                    plan.append((conn, new[:room]))
                    new = new[room:]
        return plan, new

    def assign(self, conn: Connection, names: list[str]) -> None:
        """``conn`` carries ``names`` from now on."""
        with self._lock:
            conn.streams.update(dict.fromkeys(names))
            for s in names:
                self._owner[s] = conn

    def release(self, conn: Connection, names: Iterable[str]) -> bool:
        """``conn`` no longer carries ``names``; True if it is now spare (no stream, and
        not the first connection, which is always kept)."""
        with self._lock:
            for s in names:
                conn.streams.pop(s, None)
                if self._owner.get(s) is conn:
                    del self._owner[s]
            return not conn.streams and bool(self._conns) and conn is not self._conns[0]

    def owners(self, names: list[str]) -> list[tuple[Connection, set[str]]]:
        """Group ``names`` by the connection carrying them, in connection order.

        Raises:
            ValueError: a name is not carried (nothing changes).
        """
        with self._lock:
            unknown = [s for s in names if s not in self._owner]
            if unknown:
                raise ValueError(f"not subscribed: {', '.join(unknown)}")
            groups: dict[int, tuple[Connection, set[str]]] = {}
            for s in names:
                conn = self._owner[s]
                groups.setdefault(conn.index, (conn, set()))[1].add(s)
        return list(groups.values())

    # ------------------------------------------------------------------ the merged stream

    def messages(self, events: bool) -> Iterator[Any]:
        """Blocking iterator over the shared inbox (:func:`~kstlib.websocket._stream.drain`);
        without ``events`` the :class:`ConnectionEvent` items are skipped."""
        return drain(self.inbox, _hide(events), markers=(ConnectionEvent,))

    def messages_async(self, events: bool) -> AsyncGenerator[Any, None]:
        """Asynchronous twin of :meth:`messages` (:func:`~kstlib.websocket._stream.drain_async`)."""
        return drain_async(self.inbox, _hide(events), markers=(ConnectionEvent,))

    def _on_batch(self, conn: Connection, batch: list[Any]) -> list[Any]:
        """``on_batch`` of ``conn``'s manager, on its engine thread: see the module
        docstring. Never raises (the engine would queue the batch in the manager's own
        inbox, which nobody reads)."""
        try:
            items = self._translate(conn, batch)
        except Exception:  # a bug: keep the messages rather than lose them
            log.exception("merging a batch of connection %d failed", conn.index)
            items = batch
        if items:
            inbox = self.inbox
            queued = inbox.put_batch(items)  # waits for room under "block"
            if queued < len(items):  # interrupted: a request waits, a retire, or closing
                inbox.put_batch(items[queued:], force=True)
        return []

    def _translate(self, conn: Connection, batch: list[Any]) -> list[Any]:
        """Unawaited replies out, gap markers to :class:`ConnectionEvent`, unwrapping."""
        if len(batch) == 1 and type(batch[0]) in GAP_MARKERS:
            event = self._marker(conn, batch[0])
            return [] if event is None else [event]
        take, index = self.requests.take_reply, conn.index
        kept = [m for m in batch if type(m) is not dict or "id" not in m or not take(m, index)]
        if self._unwrap:
            return [unwrap_item(m) for m in kept]
        return kept

    def _marker(self, conn: Connection, event: Connected | Disconnected) -> ConnectionEvent | None:
        if isinstance(event, Connected):
            conn.sends.record(event.resubscribed)  # the (re)subscriptions just sent
            if not event.reconnect:  # the first connection: no gap before it
                return None
        with self._lock:
            streams = tuple(conn.streams)
        return ConnectionEvent(conn.index, streams, event)

    # ------------------------------------------------------------------ the end

    def _on_error(self, conn: Connection, exc: BaseException) -> None:
        """``on_error`` of ``conn``'s manager: the user's hook, then, for the error that
        ended the connection for good (``is_dead`` already True), the pool's end. An
        exception of the user's hook still reaches the engine (logged and counted in
        ``stats.callback_errors``), after the pool did its part."""
        try:
            if self._user_on_error is not None:
                self._user_on_error(exc)
        finally:
            if conn.manager.is_dead:  # else an error the engine recovers from
                self._ended(conn, exc)

    def _ended(self, conn: Connection, exc: BaseException) -> None:
        """``conn``'s engine ended for good with ``exc``: the pool's end, unless the pool
        closed it (retired, or closing) or ``connect()`` has not returned yet."""
        with self._lock:
            if conn.retired or self._closing:
                return
            if not conn.started:  # connect() raises it, or start() sees it
                conn.early_error = exc
                return
        self._fail(conn, exc)

    def _fail(self, conn: Connection, error: BaseException) -> None:
        """Close everything and end the merged stream with ``error`` (the first failure
        wins; a close already under way wins over any)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._error = error
        log.warning("connection %d failed for good: %r; closing the others", conn.index, error)
        self.shutdown(error)
        self.inbox.finish(error)

    def shutdown(self, error: BaseException | None) -> None:
        """Stop everything: puts stop waiting, pacer waits give up, pending requests fail
        (with ``error``, else ``WebSocketClosedError``), every connection is closed (each
        close waits for its engine thread, unless called from that thread). Idempotent.
        The inbox is left open: see :meth:`close`."""
        with self._lock:
            self._closing = True
            conns = list(self._conns)
        self._gate.close()
        self.cancel.set()
        self.requests.close(
            error if error is not None else WebSocketClosedError(None, "BinanceStreams closed")
        )
        for conn in conns:
            try:
                conn.manager.close()
            except Exception:  # close the others anyway
                log.exception("closing connection %d failed", conn.index)

    def close(self) -> None:
        """:meth:`shutdown`, then finish the inbox (with the error of a connection that
        failed, if one did): ``stream()`` ends once the queued items are read."""
        self.shutdown(None)
        with self._lock:
            error = self._error
        self.inbox.finish(error)


def _hide(events: bool) -> Callable[[], bool] | None:
    """The drain's rule for :class:`ConnectionEvent` items: shown only with ``events``."""
    return None if events else _always


def _always() -> bool:
    return True
