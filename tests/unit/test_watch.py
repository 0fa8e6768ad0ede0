"""The watch (:mod:`kstlib.websocket.engine.watch`): one thread looks at every lent
reading each period, and ends once none is left."""

from __future__ import annotations

import threading

from kstlib.websocket.engine.watch import Watch


class Reading:
    """Counts its looks (from a given one on), and records the threads that made them."""

    def __init__(self) -> None:
        self.threads: set[threading.Thread] = set()
        self.looks = 0
        self._wanted = 0
        self._enough = threading.Event()

    def look(self) -> None:
        self.threads.add(threading.current_thread())
        self.looks += 1
        if self.looks >= self._wanted:
            self._enough.set()

    def wait_looks(self, more: int) -> bool:
        self._enough.clear()
        self._wanted = self.looks + more
        return self._enough.wait(10)


def test_one_thread_looks_at_every_reading_and_ends_when_none_is_left() -> None:
    watch = Watch(0.01)
    readings = [Reading() for _ in range(5)]
    for r in readings:
        watch.add(r)
    assert all(r.wait_looks(3) for r in readings)
    threads = {t for r in readings for t in r.threads}
    assert len(threads) == 1
    (thread,) = threads
    assert thread.name == "kstlib-ws-watch" and thread is not threading.current_thread()
    for r in readings:
        watch.discard(r)
    thread.join(10)
    assert not thread.is_alive()


def test_a_discarded_reading_is_no_longer_looked_at_and_a_new_one_restarts_the_thread() -> None:
    watch = Watch(0.01)
    gone, kept = Reading(), Reading()
    watch.add(gone)
    assert gone.wait_looks(1)
    watch.discard(gone)
    (first,) = gone.threads
    first.join(10)
    assert not first.is_alive()
    looks = gone.looks
    watch.add(kept)  # a new thread starts
    assert kept.wait_looks(3)
    assert gone.looks == looks  # none at the discarded one meanwhile
    (second,) = kept.threads
    assert second is not first
    watch.discard(kept)
    second.join(10)
    assert not second.is_alive()
