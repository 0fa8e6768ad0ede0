"""Ending a command quietly: on Ctrl-C / SIGTERM, and when the reader of stdout goes away.

* :class:`StopSignals` turns the first SIGINT or SIGTERM into a stop request, so the
  command can close its connection and print its last lines instead of a traceback; a
  second signal ends the process at once.
* :func:`silence` is for a closed pipe (``kstlib-ws stream URL | head``): after EPIPE, it
  points the descriptor at ``/dev/null`` so that later writes and the interpreter's
  final flush do not raise again (Python would print ``BrokenPipeError`` at exit).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, BinaryIO, TextIO

__all__ = ["StopSignals", "silence"]


class StopSignals:
    """Turn SIGINT / SIGTERM into one call of ``on_signal(signum)``.

    The handler records the signal and calls ``on_signal``, which must return at once:
    it runs in the main thread between two bytecodes, possibly while that thread holds a
    lock. A second signal gets the default action (the process ends at once). Handlers
    are installed only when entered from the main thread (elsewhere this is a no-op);
    use as a context manager: the previous handlers are restored on exit.
    """

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}
        #: The first signal received, or ``None``.
        self.received: int | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        """First signal: record it and call ``on_signal``; later: the default action."""
        if self.received is not None:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.received = signum
        self._on_signal(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @property
    def name(self) -> str | None:
        """``"SIGINT"`` / ``"SIGTERM"`` once a signal was received, else ``None``."""
        if self.received is None:
            return None
        return signal.Signals(self.received).name


def silence(stream: TextIO | BinaryIO) -> None:
    """Point ``stream``'s file descriptor at ``/dev/null`` (after EPIPE on it).

    Later writes and the interpreter's final flush then succeed and go nowhere. Does
    nothing when the stream has no descriptor or it cannot be replaced.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
