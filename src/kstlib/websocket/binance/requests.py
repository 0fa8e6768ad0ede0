"""Requests to Binance and their replies: ids, waiting for a reply, unawaited replies.

A request (``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``)
carries a new integer id (1, 2, 3 ... per client). Its reply is ``{"result": ..., "id":
N}`` or ``{"error": {...}, "id": N}``; an error reply raises
:class:`BinanceRequestError`, no reply in time
:class:`~kstlib.websocket.WebSocketTimeoutError` (``operation="request"``). The engine
takes every awaited reply out of the batch before ``on_batch``; two ways to await one:

* a plain request (``LIST_SUBSCRIPTIONS``) is the engine's own
  ``WebSocketManager.request()`` (:meth:`Requests.ask`), failed by the engine when its
  connection ends;
* a message of a manager's subscription list (``SET_PROPERTY``, ``SUBSCRIBE``,
  ``UNSUBSCRIBE``) is sent by the engine itself, on connect and on every connection of
  a make-before-break overlap: the caller registers the wait with the connection's
  manager (``WebSocketManager.expect``) before the message is sent
  (:meth:`Requests.expect`) and collects the replies (:meth:`Requests.wait`). A
  ``SUBSCRIBE`` or ``SET_PROPERTY`` is resent on the next connection, whose reply
  satisfies the wait (``across_reconnects=True``); an ``UNSUBSCRIBE`` is not, so it is
  done when its connection ends.

:meth:`Requests.take_reply` (the pool's ``on_batch``) drops the replies to ids of this
client that nobody awaits (resubscriptions after a reconnect, late replies, a request
that timed out, the second reply of a handover's overlap), logging the errors among
them. Replies carrying other ids are not ours and pass through.

While at least one request waits (either way), the merged queue must not hold an
engine thread back: an engine thread waiting for room inside ``on_batch`` reads nothing,
so a reply would be stuck behind a full queue that only the waiting caller would drain,
even though the engine is the one taking it out of the batch. The first waiting request
calls ``hold()``, the last one leaving ``release()``.

Thread-safety: every method may be called from any thread; one lock guards the table
and is held only for bookkeeping (``hold`` / ``release`` run under it, so they must be
quick and must not call back).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketError,
    WebSocketRequestError,
    WebSocketTimeoutError,
)

__all__ = ["BinanceRequestError", "Requests"]

log = logging.getLogger("kstlib.websocket.binance")


class BinanceRequestError(WebSocketError):
    """Binance answered a request with ``{"error": {"code": C, "msg": M}, "id": N}``.

    ``code`` and ``msg`` are Binance's; ``request_id`` the id of the refused request.
    """

    def __init__(self, code: int, msg: str, request_id: int | None = None) -> None:
        super().__init__(f"Binance request {request_id} refused (code {code}): {msg}")
        self.code = code
        self.msg = msg
        self.request_id = request_id

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, self.msg, self.request_id))


class _Wait:
    """One subscription-list request waiting for its reply: the wait registered with
    the manager of its connection (``WebSocketManager.expect``)."""

    __slots__ = ("manager", "method", "pending")

    def __init__(self, method: str, manager: Any, pending: Any) -> None:
        self.method = method
        self.manager = manager
        self.pending = pending


def _is_reply(msg: Any) -> bool:
    """Shape of a reply: a dict with an int ``id`` and ``result`` or ``error``, and
    neither ``stream`` nor ``e`` (an event may carry an ``id`` of its own)."""
    if type(msg) is not dict or "id" not in msg or not ("result" in msg or "error" in msg):
        return False
    return type(msg["id"]) is int and "stream" not in msg and "e" not in msg


def _raise_error_reply(reply: dict[str, Any]) -> None:
    error = reply.get("error")
    if error is None:
        return
    code = error.get("code", -1) if isinstance(error, dict) else -1
    text = error.get("msg", str(error)) if isinstance(error, dict) else str(error)
    raise BinanceRequestError(int(code), str(text), reply.get("id"))


class Requests:
    """The ids and waiting requests of one client (see the module docstring).

    ``conn`` arguments are connections: their ``manager`` (a
    :class:`~kstlib.websocket.WebSocketManager`, or anything with its ``expect`` and
    ``forget``) takes the replies out of its batches.
    """

    def __init__(self, hold: Callable[[], None], release: Callable[[], None]) -> None:
        self._hold = hold
        self._release = release
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._last_id = 0
        self._pending: dict[int, _Wait] = {}
        self._asking = 0  # callers inside ask()
        self._closed: BaseException | None = None

    # ------------------------------------------------------------------ ids

    def new_id(self) -> int:
        """The next request id (1, 2, 3 ...)."""
        with self._lock:
            rid = next(self._ids)
            self._last_id = rid
            return rid

    def subscribe_entry(self, streams: Iterable[str]) -> dict[str, Any]:
        """A ``SUBSCRIBE`` request for ``streams`` with a new id."""
        return {"method": "SUBSCRIBE", "params": list(streams), "id": self.new_id()}

    # ------------------------------------------------------------------ the hold

    def _count(self) -> int:
        return len(self._pending) + self._asking

    def _rebalance(self, before: int) -> None:
        """Under the lock, after a change from ``before`` waiting requests: the first one
        holds the queue, the last one leaving releases it."""
        after = self._count()
        if before == 0 and after:
            self._hold()
        elif before and not after:
            self._release()

    def _check_open(self) -> None:
        if self._closed is not None:
            raise WebSocketClosedError(None, "BinanceStreams is closed")

    # ------------------------------------------------------------------ plain requests

    def ask(self, request: Callable[..., Any], message: dict[str, Any], timeout: float) -> Any:
        """Send ``message`` (with an int ``id``) with ``request``, a manager's
        ``request()``, and return its reply (an error reply raises). The engine takes the
        reply out before ``on_batch``; a late one reaches :meth:`take_reply`, which drops
        it.

        Raises:
            BinanceRequestError: an error reply.
            WebSocketTimeoutError: no reply within ``timeout`` (``operation="request"``).
            WebSocketClosedError: not connected, the connection ended before the reply,
                or the client is closed (then the error it closed with, if any).
        """
        match = _reply_to(message["id"])
        with self._lock:
            self._check_open()
            before = self._count()
            self._asking += 1
            self._rebalance(before)
        try:
            reply = request(message, match=match, timeout=timeout)
        except WebSocketRequestError as exc:  # the connection ended first
            closed = self._closed
            if closed is not None:
                raise closed from exc
            raise WebSocketClosedError(None, "connection lost before the reply") from exc
        finally:
            with self._lock:
                before = self._count()
                self._asking -= 1
                self._rebalance(before)
        _raise_error_reply(reply)
        return reply

    # ------------------------------------------------------------------ subscription-list requests

    def expect(self, rid: int, method: str, conn: Any) -> None:
        """Await the reply to request ``rid`` (``method``), which ``conn``'s manager is
        about to send: call it before sending. A ``SUBSCRIBE`` or ``SET_PROPERTY`` wait
        survives the end of the connection (the engine resends the message on the next
        one); an ``UNSUBSCRIBE`` is done when its connection ends.

        Raises:
            WebSocketClosedError: the client is closed (:meth:`close`).
        """
        with self._lock:
            self._check_open()
        manager = conn.manager
        pending = manager.expect(_reply_to(rid), across_reconnects=method != "UNSUBSCRIBE")
        with self._lock:
            if self._closed is None:
                before = self._count()
                self._pending[rid] = _Wait(method, manager, pending)
                self._rebalance(before)
                return
        manager.forget(pending)  # closed meanwhile
        raise WebSocketClosedError(None, "BinanceStreams is closed")

    def forget(self, rids: Iterable[int]) -> None:
        """Stop waiting for ``rids`` (their late replies will be dropped)."""
        with self._lock:
            before = self._count()
            gone = [w for w in (self._pending.pop(rid, None) for rid in rids) if w is not None]
            self._rebalance(before)
        for w in gone:
            w.manager.forget(w.pending)

    def wait(self, rids: list[int], timeout: float) -> list[dict[str, Any]]:
        """Wait for the replies of ``rids`` (all within ``timeout`` seconds), then forget
        them; returns the replies in the order of ``rids``. A request resolved without a
        reply (an ``UNSUBSCRIBE`` whose connection ended) gives none.

        Raises:
            WebSocketTimeoutError: a reply did not come in time (``operation="request"``).
            BinanceRequestError: the first error reply.
            WebSocketClosedError / WebSocketError: the client closed, or a connection
                failed, while waiting.
        """
        deadline = time.monotonic() + timeout
        try:
            replies: list[dict[str, Any]] = []
            for rid in rids:
                with self._lock:
                    w = self._pending.get(rid)
                if w is None:  # never awaited
                    continue
                try:
                    reply = w.pending.wait(max(0.0, deadline - time.monotonic()))
                except WebSocketTimeoutError:
                    raise WebSocketTimeoutError("request", timeout) from None
                except WebSocketRequestError:  # its connection ended first
                    with self._lock:
                        closed = self._closed
                    if closed is not None:
                        raise closed from None
                    if w.method == "UNSUBSCRIBE":  # done: its entry is no longer resent
                        continue
                    raise
                replies.append(reply)
            for reply in replies:
                _raise_error_reply(reply)
            return replies
        finally:
            self.forget(rids)

    # ------------------------------------------------------------------ engine threads

    def take_reply(self, msg: Any, connection: int) -> bool:
        """True if ``msg`` is a reply to one of this client's ids that nobody awaits (the
        engine took the awaited ones out before ``on_batch``): it must not reach the
        consumer; an error is logged. ``connection`` (its index) is only for the log.
        Called on engine threads, once per message the engine did not take itself."""
        if not _is_reply(msg):
            return False
        rid = msg["id"]
        with self._lock:
            if not 1 <= rid <= self._last_id:
                return False
        if msg.get("error") is not None:
            log.warning(
                "Binance refused request %d on connection %d: %r", rid, connection, msg["error"]
            )
        return True

    def close(self, failure: BaseException) -> None:
        """Fail every waiting subscription-list request with ``failure`` (a waiting
        :meth:`ask` raises it once its connection closes); :meth:`expect` and
        :meth:`ask` refuse new ones. Idempotent (the first failure stays)."""
        with self._lock:
            if self._closed is None:
                self._closed = failure
            waiting = list(self._pending.values())
        for w in waiting:
            w.pending.fail(failure)


def _reply_to(rid: int) -> Callable[[Any], bool]:
    """The engine's ``match`` for the reply to request ``rid``."""

    def match(msg: Any) -> bool:
        return _is_reply(msg) and msg["id"] == rid

    return match
