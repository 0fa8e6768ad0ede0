"""Running the user's callbacks on the engine thread without letting them hurt it.

A callback that raises is logged, counted in ``stats.callback_errors`` and passed to
``on_error`` (unless it was ``on_error`` itself); the engine goes on.

Thread-safety: called from the engine thread (and its closer threads).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .stats import Counters

__all__ = ["Callbacks"]

log = logging.getLogger("kstlib.websocket")


class Callbacks:
    """Guarded calls of user code; ``on_error`` is looked up at each call."""

    def __init__(self, counters: Counters, on_error: Callable[[], Callable[..., Any] | None]):
        self._counters = counters
        self._on_error = on_error

    def call(self, name: str, fn: Callable[..., Any] | None, *args: Any) -> Any:
        """``fn(*args)``, or None when ``fn`` is None or raised."""
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            self.failed(name, exc)
            return None

    def failed(self, name: str, exc: Exception) -> None:
        """Book a callback's exception: log, count, and pass it to ``on_error``."""
        self._counters.add("callback_errors")
        log.error("callback %s raised", name, exc_info=exc)
        if name != "on_error":
            self.call("on_error", self._on_error(), exc)

    def report(self, exc: BaseException) -> None:
        """Tell ``on_error`` about an error the engine handled."""
        self.call("on_error", self._on_error(), exc)

    def key(self, key_of: Callable[[Any], Any], msg: Any) -> Any:
        """``dedupe_key(msg)``; None (not deduplicated) when it raises."""
        try:
            return key_of(msg)
        except Exception:
            self._counters.add("callback_errors")
            log.exception("dedupe_key raised; the message is not deduplicated")
            return None
