"""Callers of other threads waiting for something the engine thread will hand them: a
request's reply, the round trip of a ping.

Thread-safety: every method may be called from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kstlib.websocket.exceptions import WebSocketTimeoutError

__all__ = ["Pending", "PingWaiters"]


class Pending:
    """One caller waiting for a value; ``match`` says which message is its (requests)."""

    def __init__(self, operation: str, match: Callable[[Any], bool] | None = None) -> None:
        self.operation = operation
        self.match = match or (lambda _msg: False)
        #: A request wait that survives the end of its connection (see ``expect``).
        self.across_reconnects = False
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def resolve(self, value: Any) -> None:
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def wait(self, timeout: float) -> Any:
        """The value; ``WebSocketTimeoutError(operation)`` after ``timeout`` seconds, or
        the error it failed with."""
        if not self._done.wait(timeout):
            raise WebSocketTimeoutError(self.operation, timeout)
        if self._error is not None:
            raise self._error
        return self._value


class PingWaiters:
    """Callers of ``ping()``: each gets the next round trip measured."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[Pending] = []

    def add(self) -> Pending:
        pending = Pending("ping")
        with self._lock:
            self._waiting.append(pending)
        return pending

    def forget(self, pending: Pending) -> None:
        with self._lock:
            if pending in self._waiting:
                self._waiting.remove(pending)

    def resolve(self, rtt: float) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for p in waiting:
            p.resolve(rtt)

    def fail(self, error: BaseException) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for p in waiting:
            p.fail(error)
