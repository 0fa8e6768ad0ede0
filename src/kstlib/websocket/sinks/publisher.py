"""The relay's publisher thread: buffer -> chunks -> sink, reconnecting with backoff.

One thread (``kstlib-ws-publisher:<bus>``) takes whole batches from the
:class:`~kstlib.websocket.sinks.buffer.Buffer` (up to ``chunk_messages`` messages or
``chunk_bytes`` bytes: several socket reads merge into one round trip when the bus is
slower than the feed), numbers them and publishes each chunk in one call to the sink.

* **Bus away** (:class:`~kstlib.websocket.sinks.base.BusUnavailableError`): the chunk is
  kept and retried after a reconnect, waiting ``reconnect_delay`` doubled up to
  ``reconnect_delay_max``; the numbering makes the retry idempotent. Meanwhile the engine
  keeps reading and the buffer applies its overflow policy.
* **Holes** it creates are marked in the stream it publishes: messages the buffer dropped,
  messages larger than the bus's ``max_payload`` (never sent), and records the bus
  refused each give a :class:`~kstlib.websocket.sinks.records.RelayGap` at their place
  (a refusal reported by the bus: before the next chunk).
* **Stop**: :meth:`Publisher.stop` publishes what is buffered for at most ``drain_timeout``
  seconds; what cannot be published by then (the bus is still away) is counted in
  ``lost`` and logged: the one hole a relay cannot mark, since the bus is unreachable.

Thread-safety: :meth:`stats` and :meth:`stop` may be called from any thread; the sink
is used by the publisher thread only (and closed after it ended).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .base import BusUnavailableError, Chunk, KeyFunction, PublishResult, Sink
from .buffer import Buffer, Taken
from .records import RelayGap

__all__ = ["Publisher"]

log = logging.getLogger("kstlib.websocket.sinks")

COUNTERS = (
    "published", "duplicates", "markers", "refused", "too_large", "lost", "bus_errors",
    "bus_connects", "chunks", "errors",
)  # fmt: skip


class Publisher:
    """See the module docstring. Call :meth:`start` once, :meth:`stop` once."""

    def __init__(
        self,
        sink: Sink,
        buffer: Buffer,
        *,
        source: str,
        key_of: KeyFunction | None = None,
        chunk_messages: int = 4096,
        chunk_bytes: int = 4 * 1024 * 1024,
        reconnect_delay: float = 0.1,
        reconnect_delay_max: float = 5.0,
    ) -> None:
        self.sink = sink
        self.buffer = buffer
        self.source = source
        self.key_of = key_of
        self.chunk_messages = chunk_messages
        self.chunk_bytes = chunk_bytes
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._lag = (0.0, 0.0)  # last, max: seconds from socket read to the bus's answer
        self._last_id = ""
        self._bus_up = False
        self._seq = 0
        self._refused_gap: RelayGap | None = None
        self._stop = threading.Event()
        self._give_up_at: float | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"kstlib-ws-publisher:{sink.display_url}", daemon=True
        )

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Publish what is buffered (at most ``drain_timeout`` s), end the thread, close
        the sink. Idempotent."""
        with self._lock:
            if self._give_up_at is None:
                self._give_up_at = time.monotonic() + drain_timeout
        self._stop.set()
        self.buffer.interrupt()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(drain_timeout + 30.0)
        self.sink.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """A snapshot: the counters, ``lag`` / ``lag_max`` (s), ``bus_up``, ``last_id``."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["lag"], out["lag_max"] = self._lag
            out["bus_up"], out["last_id"] = self._bus_up, self._last_id
        return out

    def _add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                self._counts[name] += n

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            taken = self.buffer.take(self.chunk_messages, self.chunk_bytes, timeout=0.05)
            if taken is None:
                if self._stop.is_set():
                    return
                continue
            chunk = self._chunk(taken)
            try:
                published = self._publish(chunk)
            finally:
                self.buffer.release(taken.count, taken.nbytes)
            if published:
                self._lag_of(taken)
            else:
                self._add(lost=taken.count)
                log.error("relay stopped with the bus away: %d message(s) not published",
                          taken.count)  # fmt: skip

    def _chunk(self, taken: Taken) -> Chunk:
        """Number the entries; put the gap markers of the holes at their place."""
        parts: list[tuple[float, list[Any]]] = []
        if taken.dropped:
            at = taken.dropped_at
            parts.append((at, [RelayGap(at, taken.dropped, "overflow", self.source)]))
        if self._refused_gap is not None:
            parts.append((self._refused_gap.at, [self._refused_gap]))
            self._refused_gap = None
        limit = self.sink.max_payload
        for at, items, nbytes, is_marker in taken.entries:
            if not is_marker and nbytes > limit and max(map(len, items)) > limit:
                parts.extend(self._split_too_large(at, items, limit))
            else:
                parts.append((at, items))
        count = sum(len(items) for _, items in parts)
        chunk = Chunk(self._seq, parts, count, taken.nbytes, self.source, self.key_of)
        self._seq += count
        return chunk

    def _split_too_large(
        self, at: float, items: list[Any], limit: int
    ) -> list[tuple[float, list[Any]]]:
        out: list[tuple[float, list[Any]]] = []
        run: list[Any] = []
        for m in items:
            if len(m) <= limit:
                run.append(m)
                continue
            if run:
                out.append((at, run))
                run = []
            out.append((at, [RelayGap(time.time(), 1, "too_large", self.source)]))
            self._add(too_large=1)
            log.warning("message of %d bytes exceeds the bus's limit of %d: not published",
                        len(m), limit)  # fmt: skip
        if run:
            out.append((at, run))
        return out

    def _publish(self, chunk: Chunk) -> bool:
        """Publish ``chunk`` until it is done; False when stopping gave up on it."""
        delay = self.reconnect_delay
        while True:
            try:
                if not self._bus_up:
                    self._connect()
                self._book(chunk, self.sink.publish(chunk))
                return True
            except BusUnavailableError as exc:
                self._set_up(False)
                self._add(bus_errors=1)
                log.warning("bus %s unavailable: %s", self.sink.display_url, exc)
            except Exception as exc:  # a sink bug or an answer it did not expect
                self._add(errors=1)
                log.error("publishing to %s failed", self.sink.display_url, exc_info=exc)
                self._book(chunk, PublishResult(0, refused=chunk.count, error=repr(exc)))
                return True
            chunk.attempts += 1
            give_up = self._give_up_at
            if give_up is not None and time.monotonic() + delay > give_up:
                return False
            if give_up is None:
                self._stop.wait(delay)
            else:  # stopping: the last attempts before the deadline
                time.sleep(delay)
            delay = min(delay * 2, self.reconnect_delay_max)

    def _connect(self) -> None:
        """Connect the sink; any failure counts as the bus being unavailable."""
        try:
            self.sink.connect()
        except BusUnavailableError:
            raise
        except Exception as exc:
            raise BusUnavailableError(f"connecting failed: {exc!r}") from exc
        self._set_up(True)
        self._add(bus_connects=1)

    def _set_up(self, up: bool) -> None:
        with self._lock:
            self._bus_up = up

    def _book(self, chunk: Chunk, result: PublishResult) -> None:
        markers = sum(1 for _, items in chunk.parts if items and not isinstance(items[0], bytes))
        with self._lock:
            c = self._counts
            c["published"] += max(0, result.written - markers)
            c["markers"] += markers
            c["duplicates"] += result.duplicates
            c["refused"] += result.refused
            c["chunks"] += 1
            if result.last_id:
                self._last_id = result.last_id
        if result.refused:
            log.warning("bus %s refused %d record(s): %s", self.sink.display_url,
                        result.refused, result.error)  # fmt: skip
            self._refused_gap = RelayGap(time.time(), result.refused, "refused", self.source)

    def _lag_of(self, taken: Taken) -> None:
        if not taken.entries:
            return
        lag = max(0.0, time.time() - taken.entries[0][0])
        with self._lock:
            self._lag = (lag, max(lag, self._lag[1]))
