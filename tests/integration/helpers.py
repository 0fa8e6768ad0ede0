"""Shared helpers for the manager's integration tests: event-based waits and leak checks."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ENGINE_THREAD_PREFIX = "kstlib-ws-engine"

#: Manager options for tests: quick reconnects and a bounded closing handshake.
FAST: dict[str, Any] = {"reconnect_delay": 0.05, "reconnect_delay_max": 0.2, "close_timeout": 2.0}


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01
) -> bool:
    """Poll ``predicate`` until it is truthy; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(ENGINE_THREAD_PREFIX)]


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@contextmanager
def no_leaks() -> Iterator[None]:
    """Assert that the block leaves no engine thread and no new open file descriptor."""
    before_fds = open_fds()
    assert engine_threads() == []
    yield
    assert wait_for(lambda: engine_threads() == [], timeout=10), engine_threads()
    # descriptors the block opened must all be closed again (allow the asyncio/pytest
    # machinery a moment to release its own)
    assert wait_for(lambda: open_fds() <= before_fds, timeout=5), open_fds() - before_fds
