"""Shared helpers for the manager's integration tests: event-based waits and leak checks.

No test asserts on wall-clock time. A test proving that something does *not* wait for a
long delay sets that delay to :data:`NEVER` and carries a per-test
``@pytest.mark.timeout``: a regression then hangs and pytest-timeout fails the test,
while the assertions check states, threads and sockets once the call has returned."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ENGINE_THREAD_PREFIX = "kstlib-ws-engine"

#: Seconds for a delay or timeout that must never be waited for: far above every
#: per-test timeout, so waiting for it is a hang that pytest-timeout reports.
NEVER = 3600.0

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


def sockets_to(port: int) -> list[int]:
    """Inodes of this process's TCP sockets whose *remote* port is ``port``.

    With ``port`` a local server's port, these are the client ends of connections to it
    (the server's own ends have it as their local port), so an empty list means every
    client socket to that server is closed, whatever the server still holds open.
    """
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            mine.add(int(target[len("socket:[") : -1]))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table, encoding="ascii") as rows:
            next(rows)  # header
            for row in rows:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                inode = int(fields[9])
                if remote_port == port and inode in mine:
                    found.append(inode)
    return found
