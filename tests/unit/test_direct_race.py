"""Races of the direct read (:mod:`kstlib.websocket.engine.direct`) that no server can
time: the engine taking the reading back while an asyncio consumer starts a wait.

The interleaving is forced by a lock that runs the consumer's step the moment the
engine thread asks for the lock a second time inside ``reclaim``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kstlib.websocket.engine.clock import SYSTEM_CLOCK
from kstlib.websocket.engine.direct import DirectRead
from kstlib.websocket.inbox import Inbox


class Link:
    """What the lending needs of a connection: a descriptor to poll."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def drained(self) -> bool:
        return True


class Delivery:
    """Delivery that never writes, so an asyncio consumer may read on its loop."""

    def __init__(self) -> None:
        self.inbox = Inbox()

    def may_write(self) -> bool:
        return False


class Loop:
    """A reactor that records what is asked of it and runs the thread-safe calls when
    told (as a loop would on its next turn)."""

    def __init__(self) -> None:
        self.readers: dict[int, Any] = {}
        self.soon: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self.readers[fd] = (callback, args)

    def remove_reader(self, fd: int) -> bool:
        return self.readers.pop(fd, None) is not None

    def call_soon(self, callback: Callable[..., object], *args: Any) -> object:
        self.soon.append((callback, args))
        return None

    call_soon_threadsafe = call_soon

    def is_closed(self) -> bool:
        return False

    def run_soon(self) -> None:
        soon, self.soon = self.soon, []
        for callback, args in soon:
            callback(*args)


class Wait:
    """An asyncio future's two methods the loop reading uses."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def done(self) -> bool:
        return bool(self.results)

    def set_result(self, result: Any, /) -> None:
        self.results.append(result)


class SteppingLock:
    """A lock that, on the engine's ``nth`` acquisition, first runs ``step`` (which may
    take the lock itself)."""

    def __init__(self, nth: int, step: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._nth = nth
        self._step: Callable[[], None] | None = step

    def __enter__(self) -> None:
        self._count += 1
        if self._count == self._nth and self._step is not None:
            step, self._step = self._step, None
            step()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@pytest.fixture
def lent() -> Iterator[tuple[DirectRead, Loop]]:
    """A reading lent to a loop that already read once and whose consumer is busy."""
    a, b = socket.socketpair()
    direct = DirectRead(Delivery(), SYSTEM_CLOCK, bytearray(64))  # type: ignore[arg-type]
    loop = Loop()
    direct.lend(Link(a))  # type: ignore[arg-type]
    first = Wait()
    assert direct.fill_async(loop, first)  # type: ignore[arg-type]
    direct.stop_async(loop, first)  # its batch came; the consumer works on it
    yield direct, loop
    direct.forget()
    a.close()
    b.close()


def test_a_loop_wait_begun_while_the_engine_takes_the_reading_back_is_not_forgotten(
    lent: tuple[DirectRead, Loop],
) -> None:
    """The consumer's next wait starts after the engine looked at the loop's wait (none
    then) and before the role is the engine's: it must end, or wait on the queue."""
    direct, loop = lent
    wait = Wait()
    began: list[bool] = []

    def consumer_waits() -> None:
        began.append(direct.fill_async(loop, wait))  # type: ignore[arg-type]

    direct._lock = SteppingLock(2, consumer_waits)  # type: ignore[assignment]
    direct.reclaim()
    loop.run_soon()
    assert began == [False] or wait.results == [None]
    if began == [False]:
        assert direct.wanted  # the engine lends again at its next idle moment


def test_a_loop_wait_begun_before_the_engine_takes_the_reading_back_is_ended(
    lent: tuple[DirectRead, Loop],
) -> None:
    direct, loop = lent
    wait = Wait()
    assert direct.fill_async(loop, wait)  # type: ignore[arg-type]
    direct.reclaim()
    loop.run_soon()
    assert wait.results == [None]  # the consumer looks at the queue again
