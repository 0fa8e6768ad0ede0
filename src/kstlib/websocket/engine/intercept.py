"""Messages the engine answers itself, before they reach ``stream()``: the replies to
``request()``, the answers to the application heartbeat, and the server's own
application pings (answered at once).

:meth:`Interceptor.take` runs on the engine thread for every batch; it costs one test
per batch when no request is pending and no heartbeat is configured.

Thread-safety: :meth:`Interceptor.expect` and :meth:`Interceptor.connection_lost` may be
called from any thread; :meth:`Interceptor.take` from the engine thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kstlib.websocket.exceptions import WebSocketRequestError
from kstlib.websocket.models import Heartbeat

from .waiters import Pending

__all__ = ["Interceptor"]


class Interceptor:
    """Takes the engine's own messages out of each batch (see the module docstring)."""

    def __init__(self, call: Callable[..., Any]) -> None:
        self._call = call  # guarded user-callback invocation
        #: Sends a reply to the server's application ping (set by the engine).
        self.answer: Callable[[Any], None] = _no_connection
        self._lock = threading.Lock()
        self._pending: list[Pending] = []
        self._heartbeat: Heartbeat | None = None
        #: A request waits for its reply or a heartbeat is configured: :meth:`take` has
        #: work to do. An attribute, kept by every change, so that the read path tests it
        #: without a call.
        self.active = False
        #: Set when the heartbeat's answer came; the read loop takes it.
        self.beat_answered = False

    @property
    def heartbeat(self) -> Heartbeat | None:
        return self._heartbeat

    @heartbeat.setter
    def heartbeat(self, beat: Heartbeat | None) -> None:
        with self._lock:
            self._heartbeat = beat
            self._refresh()

    def _refresh(self) -> None:
        # Called with the lock held, after any change of the pending list or heartbeat.
        self.active = bool(self._pending) or self._heartbeat is not None

    def expect(self, match: Callable[[Any], bool], *, across_reconnects: bool = False) -> Pending:
        """Register a wait for a reply: the first message ``match`` accepts is it.
        ``across_reconnects``: the wait survives the end of its connection (the message
        is resent on the next one, as the subscriptions are)."""
        pending = Pending("request", match)
        pending.across_reconnects = across_reconnects
        with self._lock:
            self._pending.append(pending)
            self._refresh()
        return pending

    def forget(self, pending: Pending) -> None:
        with self._lock:
            if pending in self._pending:
                self._pending.remove(pending)
                self._refresh()

    def connection_lost(self) -> None:
        """The connection ended: replies owed on it will never come (except to waits
        made ``across_reconnects``)."""
        with self._lock:
            lost = [p for p in self._pending if not p.across_reconnects]
            self._pending = [p for p in self._pending if p.across_reconnects]
            self._refresh()
        for p in lost:
            p.fail(WebSocketRequestError("the connection ended before the reply"))

    def take(self, msgs: list[Any]) -> list[Any]:
        """``msgs`` without the messages the engine handles itself."""
        return [m for m in msgs if not self._handled(m)]

    def _handled(self, msg: Any) -> bool:
        if self._pending and self._reply(msg):
            return True
        beat = self._heartbeat
        if beat is None:
            return False
        if beat.is_reply is not None and self._call("heartbeat.is_reply", beat.is_reply, msg):
            self.beat_answered = True
            return True
        if beat.answer is not None:
            reply = self._call("heartbeat.answer", beat.answer, msg)
            if reply is not None:
                self.answer(reply)
                return True
        return False

    def _reply(self, msg: Any) -> bool:
        with self._lock:
            candidates = list(self._pending)
        matched = [p for p in candidates if self._call("request match", p.match, msg)]
        if not matched:
            return False
        with self._lock:  # a waiter that gave up meanwhile is gone
            matched = [p for p in matched if p in self._pending]
            for p in matched:
                self._pending.remove(p)
            self._refresh()
        if not matched:
            return True
        if len(matched) == 1:
            matched[0].resolve(msg)
        else:
            error = WebSocketRequestError(f"one reply matched {len(matched)} requests", msg)
            for p in matched:
                p.fail(error)
        return True


def _no_connection(reply: Any) -> None:
    raise RuntimeError("no connection to answer on")  # pragma: no cover - set at start
