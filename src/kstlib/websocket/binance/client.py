"""``BinanceStreams``: Binance market streams over as many connections as needed.

The facade a user holds. It decides which connection carries which stream, sends the
requests that change that (paced, with ids, waiting for the replies) and hands out the
merged stream. The work itself is done by its parts: :mod:`.pool` (the connections and
their merge, back-pressure, failure), :mod:`.requests` (ids, waiting for replies: the
managers' ``request()`` for ``LIST_SUBSCRIPTIONS``, their ``expect()`` for the messages
of the subscription lists; unawaited replies), :mod:`.names` (stream names, limits) and
:mod:`.hooks` (the engine hooks).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from kstlib.websocket._ratelimit import WindowStore
from kstlib.websocket.exceptions import WebSocketClosedError, WebSocketTimeoutError
from kstlib.websocket.manager import WebSocketManager
from kstlib.websocket.models import WebSocketStats

from .names import (
    DEFAULT_BASE,
    MAX_CONNECTION_ATTEMPTS,
    MAX_STREAMS_PER_CONNECTION,
    check_base,
    stream_list,
)
from .pool import Connection, ConnectionPacer, Pool, preset_options, refuse_forbidden
from .requests import BinanceRequestError

__all__ = ["BinanceStreams"]


def _check_arguments(combined: bool, unwrap: bool, capacity: object, timeout: object) -> None:
    if unwrap and not combined:
        raise ValueError("unwrap=True needs combined=True: a raw event does not name its stream")
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise ValueError(f"max_streams_per_connection must be an integer >= 1, got {capacity!r}")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"request_timeout must be > 0, got {timeout!r}")


def _pacer(
    pacer: ConnectionPacer | None,
    budget: str | WindowStore | None,
    attempts: tuple[int, float],
) -> ConnectionPacer:
    """The given pacer, or a new one of ``attempts`` kept in ``budget`` when given.

    Raises:
        ValueError: both ``pacer`` and ``budget``; a bad budget address.
        MissingExtraError: a budget address without the ``redis`` package.
        BudgetUnavailableError: the budget's Redis does not answer.
    """
    if pacer is not None:
        if budget is not None:
            raise ValueError("pass pacer= or budget=, not both (set the pacer's store)")
        return pacer
    pacer = ConnectionPacer(*attempts)
    if isinstance(budget, str):
        from kstlib.websocket.sinks.budget import open_budget

        budget = open_budget(budget)
    if budget is not None:
        pacer.store = budget
    return pacer


class BinanceStreams:
    """Binance market streams over as many connections as needed, merged into one stream.

    ``streams`` are subscribed on connect; at most ``max_streams_per_connection`` (1024)
    share a connection, more open more connections (each a
    :class:`~kstlib.websocket.WebSocketManager` on ``<base>/ws``). Streams are carried by
    ``SUBSCRIBE`` messages registered with each manager, so a reconnect restores exactly
    the current set, and :meth:`subscribe` / :meth:`unsubscribe` change it. With
    ``combined=True`` (default) each connection first sends ``SET_PROPERTY combined``, so
    payloads are ``{"stream": name, "data": event}``; ``unwrap=True`` makes
    :meth:`stream` yield ``(stream, event)`` tuples instead (``(None, msg)`` for the rare
    unwrapped message, e.g. ``serverShutdown``). ``combined=False`` delivers bare events
    (``unwrap`` is then refused: a bare event does not name its stream). Streams travel
    in messages rather than in a ``/stream?streams=`` URL because a URL cannot forget a
    stream (a reconnect would restore an unsubscribed one) and 1024 names make a URL
    of some 20 KB.

    Gap markers: ``stream(events=True)`` also yields a
    :class:`~kstlib.websocket.binance.ConnectionEvent` where a connection was lost and
    where it came back (a handover is no gap and yields none).

    Options: ``base`` (``wss://host[:port]``), ``max_connection_attempts`` (``(n,
    seconds)``, default ``(300, 300.0)``) or ``pacer`` (a shared
    :class:`~kstlib.websocket.binance.ConnectionPacer`), ``budget`` (the attempts'
    window kept in Redis, shared by every process using the same key, so that relays on
    one IP respect the limit together: ``"redis://HOST:PORT/DB?key=NAME"`` or a
    :class:`~kstlib.websocket._ratelimit.WindowStore` such as
    :class:`~kstlib.websocket.sinks.RedisBudget`; needs ``kstlib-websocket[redis]``;
    fails closed, see :mod:`kstlib.websocket.sinks.budget`), ``request_timeout`` (seconds
    allowed for the initial subscriptions' replies in :meth:`connect`, default 10),
    ``config`` and every :class:`~kstlib.websocket.config.Settings` option for the
    managers (they override the preset: ``max_send_rate=5``, ``max_connection_age``
    23 h 50 min, ``dedupe_key``, ``should_handover``; a ``before_connect`` you give runs
    after the pacer; an ``on_error`` you give sees every connection's errors), except
    ``subscriptions``, ``on_message``, ``on_batch``, ``url`` (``TypeError``) and a
    ``decode`` other than ``"json"`` (``ValueError``): the client needs them itself.

    Merging and back-pressure (details in :mod:`kstlib.websocket.binance.pool`): each
    connection's engine thread hands its whole batches, replies taken out, to one shared
    bounded queue (``queue_size``, ``queue_overflow``); no thread of the client's own
    sits in between. With ``queue_overflow="block"`` a slow consumer holds the engines
    back: they stop reading their sockets while the queue is full, the pause credited to
    their ping and pong deadlines, and nothing is lost; :meth:`close` interrupts every
    wait. Order is arrival order within each connection; connections interleave as they
    arrive. While a request waits for its reply the engines stop waiting for room (the
    queue may exceed its bound by what arrives meanwhile), so a reply is never stuck
    behind a full queue that only the waiting caller would drain.

    Requests (:meth:`subscribe`, :meth:`unsubscribe`, :meth:`list_subscriptions`) carry
    increasing integer ids; the reply with that id completes the call and is never
    yielded. Replies to ids of this client that nobody awaits (resubscriptions after a
    reconnect, late replies) are dropped, errors among them logged; replies carrying
    other ids pass through. An error reply raises
    :class:`~kstlib.websocket.binance.BinanceRequestError`, no reply in time
    :class:`~kstlib.websocket.WebSocketTimeoutError` (``operation="request"``). Requests
    are paced at 4 per 1.1 s per connection, counting the subscriptions resent on each
    reconnect (the fifth frame of each second stays free for pings and pongs).

    Failure: when one connection fails for good (reconnect attempts exhausted, or the
    server closed with ``auto_reconnect=False``) the others are closed too and
    :meth:`stream` raises that error after the messages queued before it.

    Thread-safety: every method may be called from any thread; requests are serialised
    (one at a time per client). :meth:`stream` is meant for one consumer. Calling
    :meth:`close` from inside a callback of a connection (an engine thread) does not wait
    for that connection's engine. A client connects once: after :meth:`close` make a new
    one.
    """

    def __init__(
        self,
        streams: str | Iterable[str] = (),
        *,
        base: str = DEFAULT_BASE,
        combined: bool = True,
        unwrap: bool = False,
        max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
        max_connection_attempts: tuple[int, float] = MAX_CONNECTION_ATTEMPTS,
        pacer: ConnectionPacer | None = None,
        budget: str | WindowStore | None = None,
        request_timeout: float = 10.0,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **manager_options: Any,
    ) -> None:
        refuse_forbidden(manager_options)
        _check_arguments(combined, unwrap, max_streams_per_connection, request_timeout)
        names = stream_list(streams)
        self._base = check_base(base)
        cancel = threading.Event()  # set on close: pacer waits give up
        pacer = _pacer(pacer, budget, max_connection_attempts)
        options = preset_options(manager_options, pacer, cancel)
        self._combined = bool(combined)
        self._capacity = max_streams_per_connection
        self._request_timeout = float(request_timeout)
        self._pool = Pool(f"{self._base}/ws", options, config, unwrap=bool(unwrap), cancel=cancel)
        self._requests = self._pool.requests
        self._ops = threading.Lock()  # serialises connect / requests
        self._connected = False
        chunks = [names[i : i + self._capacity] for i in range(0, len(names), self._capacity)]
        for chunk in chunks or [[]]:
            self._add_connection(chunk)

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> BinanceStreams:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        n, s = len(self._pool.connections), len(self._pool.streams)
        return f"<BinanceStreams {self._base} {s} streams on {n} connections>"

    # ------------------------------------------------------------------ properties

    @property
    def streams(self) -> list[str]:
        """The streams currently subscribed (requested and not refused), in order."""
        return self._pool.streams

    @property
    def connections(self) -> tuple[WebSocketManager, ...]:
        """The managers, one per connection, in connection order."""
        return tuple(c.manager for c in self._pool.connections)

    @property
    def stats(self) -> tuple[WebSocketStats, ...]:
        """One statistics snapshot per connection."""
        return tuple(m.stats for m in self.connections)

    @property
    def is_connected(self) -> bool:
        """True while every connection is connected."""
        return all(m.is_connected for m in self.connections)

    @property
    def started(self) -> bool:
        """True once :meth:`connect` succeeded (it stays True after :meth:`close`)."""
        return self._connected

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or a connection failed for good."""
        return self._pool.closed

    # ------------------------------------------------------------------ lifecycle

    def connect(self, timeout: float | None = None) -> None:
        """Connect every connection, and wait for the initial subscriptions' replies.

        No-op when connected. ``timeout`` bounds each connection's connect (``None``: the
        managers' own attempts and ``connect_timeout`` decide).

        Raises:
            WebSocketConnectionError / WebSocketTimeoutError: a connection failed; the
                client is then closed.
            BinanceRequestError: Binance refused an initial subscription (the client is
                then closed).
            WebSocketClosedError: the client was closed.
        """
        with self._ops:
            if self._pool.closed:
                raise WebSocketClosedError(None, "BinanceStreams is closed; create a new one")
            if self._connected:
                return
            try:
                ids: list[int] = []
                for conn in self._pool.connections:
                    ids += self._start(conn, timeout)
                self._requests.wait(ids, self._request_timeout)
            except BaseException:
                self.close()
                raise
            self._connected = True

    def close(self) -> None:
        """Close every connection (closing handshakes); :meth:`stream` ends after the
        queued messages. Pending requests fail with ``WebSocketClosedError``. Idempotent;
        returns once every connection's engine thread has ended."""
        self._pool.close()

    def _add_connection(self, streams: list[str]) -> Connection:
        """Create (not connect) a connection carrying ``streams``."""
        subs: list[dict[str, Any]] = []
        if self._combined:
            rid = self._requests.new_id()
            subs.append({"method": "SET_PROPERTY", "params": ["combined", True], "id": rid})
        if streams:
            subs.append(self._requests.subscribe_entry(streams))
        return self._pool.add(streams, subs)

    def _start(self, conn: Connection, timeout: float | None) -> list[int]:
        """Connect ``conn``; returns the ids of its initial subscriptions, to await."""
        ids = [int(sub["id"]) for sub in conn.initial]
        for sub in conn.initial:
            self._requests.expect(int(sub["id"]), str(sub["method"]), conn)
        try:
            self._pool.start(conn, timeout)
        except BaseException:
            self._requests.forget(ids)
            raise
        return ids

    # ------------------------------------------------------------------ requests

    def _require_open(self) -> None:
        """Raise ``WebSocketClosedError`` unless connected and not closing (hold ``_ops``)."""
        if self._pool.closed:
            raise WebSocketClosedError(None, "BinanceStreams is closed")
        if not self._connected:
            raise WebSocketClosedError(None, "not connected: call connect() first")

    def subscribe(self, streams: str | Iterable[str], timeout: float = 10.0) -> None:
        """Subscribe to ``streams`` and wait for Binance's replies.

        Streams already subscribed are skipped. New ones go to the connections with room
        (first fit); the rest open new connections. Each touched connection gets one
        ``SUBSCRIBE`` with a new id, registered with its manager so that every reconnect
        restores it.

        Raises:
            ValueError / TypeError: malformed stream name (nothing is sent).
            BinanceRequestError: refused; those streams are forgotten again.
            WebSocketTimeoutError: no reply within ``timeout`` (the subscription stays
                registered and is resent on reconnect).
            WebSocketConnectionError: a new connection could not connect.
            WebSocketClosedError: the client is closed.
        """
        names = stream_list(streams)
        with self._ops:
            self._require_open()
            plan, rest = self._pool.plan(names, self._capacity)
            if not plan and not rest:
                return
            sent: list[tuple[Connection, dict[str, Any]]] = []
            try:
                ids = self._subscribe_on(plan, sent)
                for i in range(0, len(rest), self._capacity):
                    conn = self._add_connection(rest[i : i + self._capacity])
                    sent.append((conn, conn.initial[-1]))
                    ids += self._start(conn, timeout)
                self._requests.wait(ids, timeout)
            except BinanceRequestError:
                self._undo_subscribe(sent)
                raise

    def _subscribe_on(
        self,
        plan: list[tuple[Connection, list[str]]],
        sent: list[tuple[Connection, dict[str, Any]]],
    ) -> list[int]:
        """Send one ``SUBSCRIBE`` per planned connection (appended to ``sent``); the ids."""
        ids: list[int] = []
        for conn, chunk in plan:
            entry = self._requests.subscribe_entry(chunk)
            self._requests.expect(entry["id"], "SUBSCRIBE", conn)
            ids.append(entry["id"])
            self._pool.assign(conn, chunk)
            sent.append((conn, entry))
            self._pool.pace(conn)
            try:
                conn.manager.subscribe(entry)
            except WebSocketClosedError:
                pass  # registered: sent with the others on the reconnect
        return ids

    def _undo_subscribe(self, sent: list[tuple[Connection, dict[str, Any]]]) -> None:
        """Forget subscriptions Binance refused (one UNSUBSCRIBE removes each entry from
        the resend list; its reply, ours, is dropped)."""
        for conn, entry in sent:
            params = list(entry["params"])
            undo = {"method": "UNSUBSCRIBE", "params": params, "id": self._requests.new_id()}
            try:
                self._pool.pace(conn)
                conn.manager.unsubscribe(entry, undo)
            except (ValueError, WebSocketClosedError):
                pass
            if self._pool.release(conn, params):
                self._pool.retire(conn)

    def unsubscribe(self, streams: str | Iterable[str], timeout: float = 10.0) -> None:
        """Unsubscribe from ``streams`` and wait for Binance's replies.

        The streams leave the resend lists at once (a reconnect no longer restores them).
        A registered ``SUBSCRIBE`` that also carries streams that stay is replaced by one
        for those (an extra message). A connection left without streams is closed (the
        first one is kept).

        Raises:
            ValueError: a stream is not subscribed (nothing is sent).
            BinanceRequestError: an error reply.
            WebSocketTimeoutError: no reply within ``timeout``.
            WebSocketClosedError: the client is closed.
        """
        names = stream_list(streams)
        with self._ops:
            self._require_open()
            groups = self._pool.owners(names)
            ids: list[int] = []
            spare: list[Connection] = []
            try:
                for conn, gone in groups:
                    ids += self._unsubscribe_on(conn, gone)
                    if self._pool.release(conn, gone):
                        spare.append(conn)
                self._requests.wait(ids, timeout)
            finally:
                for conn in spare:
                    self._pool.retire(conn)

    def _unsubscribe_on(self, conn: Connection, gone: set[str]) -> list[int]:
        """Send what removes ``gone`` from ``conn``; the ids of the replies to await."""
        manager = conn.manager
        ids: list[int] = []
        for entry in manager.subscriptions:
            if not isinstance(entry, dict) or entry.get("method") != "SUBSCRIBE":
                continue
            params = list(entry.get("params", ()))
            drop = [p for p in params if p in gone]
            if not drop:
                continue
            keep = [p for p in params if p not in gone]
            if keep:  # re-register the streams that stay (a no-op for the server)
                replacement = self._requests.subscribe_entry(keep)
                self._requests.expect(replacement["id"], "SUBSCRIBE", conn)
                ids.append(replacement["id"])
                self._pool.pace(conn)
                try:
                    manager.subscribe(replacement)
                except WebSocketClosedError:
                    pass
            ids += self._send_unsubscribe(conn, entry, drop)
        return ids

    def _send_unsubscribe(
        self, conn: Connection, entry: dict[str, Any], drop: list[str]
    ) -> list[int]:
        rid = self._requests.new_id()
        request = {"method": "UNSUBSCRIBE", "params": drop, "id": rid}
        self._pool.pace(conn)
        awaited = conn.manager.is_connected  # else nothing is sent: the reconnect omits it
        if awaited:
            self._requests.expect(rid, "UNSUBSCRIBE", conn)
        try:
            conn.manager.unsubscribe(entry, request)
        except WebSocketClosedError:  # lost while sending: not resent, so done
            self._requests.forget([rid])
            return []
        return [rid] if awaited else []

    def list_subscriptions(self, timeout: float = 10.0) -> list[str]:
        """Ask every connection for its streams (``LIST_SUBSCRIPTIONS``, one connection
        after the other, each with its manager's ``request()``); return them all,
        connection after connection, as Binance lists them.

        Raises:
            BinanceRequestError: an error reply.
            WebSocketTimeoutError: the replies did not all come within ``timeout``
                (waiting for a send slot does not count).
            WebSocketClosedError: a connection is not connected (or was lost before
                replying), or the client is closed.
        """
        with self._ops:
            self._require_open()
            left = timeout  # for the replies: the pacing waits do not count
            result: list[str] = []
            for conn in self._pool.connections:
                self._pool.pace(conn)
                request = {"method": "LIST_SUBSCRIPTIONS", "id": self._requests.new_id()}
                started = time.monotonic()
                try:
                    reply = self._requests.ask(conn.manager.request, request, max(0.0, left))
                except WebSocketTimeoutError as exc:
                    if exc.operation != "request":
                        raise
                    raise WebSocketTimeoutError("request", timeout) from None
                left -= time.monotonic() - started
                listed = reply.get("result")
                if isinstance(listed, list):
                    result.extend(str(s) for s in listed)
        return result

    # ------------------------------------------------------------------ messages

    def stream(self, events: bool = False) -> Iterator[Any]:
        """Blocking iterator over the messages of every connection.

        Items: the payloads (``dict``), or ``(stream, event)`` with ``unwrap=True``; with
        ``events=True`` also :class:`~kstlib.websocket.binance.ConnectionEvent` gap
        markers, in order with the messages of their connection. Connects first if
        needed. Ends after :meth:`close` once the queued messages are read; raises the
        error of a connection that failed for good. Leaving the loop early keeps unread
        messages for the next ``stream()``. Drains with
        :func:`kstlib.websocket._stream.drain` (a whole batch per wake-up).
        """
        if not self._connected and not self._pool.closed:
            self.connect()
        return self._pool.messages(events)

    __iter__ = stream

    def stream_async(self, events: bool = False) -> AsyncGenerator[Any, None]:
        """The asyncio twin of :meth:`stream` over the same queue: items, end and errors
        are the same, and waiting never blocks the event loop
        (:func:`kstlib.websocket._stream.drain_async`). It does *not* connect (that would
        block the loop): await ``connect`` in a worker thread first, as the asyncio front
        :class:`kstlib.websocket.binance.aio.BinanceStreams` does. Iterate it on one
        event loop; ``aclose()`` it to put the unread rest of a batch back at once."""
        return self._pool.messages_async(events)
