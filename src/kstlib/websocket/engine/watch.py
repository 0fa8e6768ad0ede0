"""One thread looks after every lent reading of the process (:mod:`.direct`).

While an engine lends its reading to a consumer, somebody must notice when that
consumer stopped reading (it is busy with its own work, or its event loop is blocked),
so that the engine reads again: pings get their pongs and the queue bound holds. Each
engine looking at its own lend once a second costs a thread wake-up per manager per
second: at 500 managers, 500 wake-ups a second, about 40% of the process's CPU at
1,000 messages a second. Instead, one thread for the whole process looks at every lent
reading once per :data:`~.direct.AWAY` and wakes only the engines that must take theirs
back (:meth:`.direct.DirectRead.look`).

The thread starts with the first lend and ends as soon as no reading is lent. A reading
left unused for ``AWAY`` seconds is noticed within ``2 * AWAY``.

Thread-safety: :meth:`Watch.add` and :meth:`Watch.discard` from any engine thread.
"""

from __future__ import annotations

import threading
from typing import Protocol

from .direct import AWAY

__all__ = ["WATCH", "Watch"]


class Watched(Protocol):
    """What the watch needs of a lent reading."""

    def look(self) -> None: ...


class Watch:
    """Calls ``look()`` on every watched reading each ``period`` seconds, on one thread."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._cond = threading.Condition(threading.Lock())
        self._watched: dict[int, Watched] = {}
        self._running = False

    def add(self, reading: Watched) -> None:
        """Watch ``reading`` (an engine lent it); starts the thread if none runs."""
        with self._cond:
            self._watched[id(reading)] = reading
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="kstlib-ws-watch", daemon=True).start()

    def discard(self, reading: Watched) -> None:
        """Stop watching ``reading`` (its engine took it back); the thread ends once none
        is left."""
        with self._cond:
            self._watched.pop(id(reading), None)
            if not self._watched:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._watched:
                    self._cond.wait(self.period)
                if not self._watched:
                    self._running = False
                    return
                readings = list(self._watched.values())
            for reading in readings:  # each takes its own lock: none of ours is held
                reading.look()


#: The process's watch over lent readings.
WATCH = Watch(AWAY)
