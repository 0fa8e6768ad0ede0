"""The simulator's market streams: one generator per stream, its subscribers, its task.

:class:`StreamHub` subscribes and unsubscribes connections. The first subscription to a
stream takes its generator from ``SharedState.generators`` (created then, and kept
across stop/start so ids keep growing) and starts the task that produces its events at
``event_rate`` (``kline_rate`` for klines) on an absolute schedule. Each batch of events
is serialized once and written to every subscriber, wrapped as ``{"stream": name,
"data": event}`` for a combined connection.

Thread-safety: runs on the simulator's loop; generators, records and the published
counter are shared and changed under ``SharedState.lock``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson

from kstlib.websocket.testing._connection import Live
from kstlib.websocket.testing._dialects.base import take_drop
from kstlib.websocket.testing._market import (
    Generator,
    StreamSpec,
    make_generator,
    parse_stream,
)

if TYPE_CHECKING:
    from kstlib.websocket.testing._server import SimServer

__all__ = ["Stream", "StreamHub", "now_ms", "numbers"]

#: Most events produced in one wake-up of a stream task; beyond, the schedule skips ahead.
_MAX_BATCH = 10_000


def now_ms() -> int:
    """Wall-clock time in milliseconds (the exchange's event time ``E``)."""
    return time.time_ns() // 1_000_000


def numbers(stream: str, event: dict[str, Any]) -> tuple[str, int, int] | None:
    """``(stream, prev, last)`` of a market event: trade ``t``, kline ``u``, depth
    ``U``..``u`` (what a client's ``sequence`` option would read)."""
    kind = event.get("e")
    if kind == "trade":
        return stream, event["t"] - 1, event["t"]
    if kind == "kline":
        return stream, event["u"] - 1, event["u"]
    if kind == "depthUpdate":
        return stream, event["U"] - 1, event["u"]
    return None


class Stream:
    """One generator, its subscribers and the task that drives it."""

    def __init__(self, spec: StreamSpec, gen: Generator) -> None:
        self.spec = spec
        self.gen = gen
        self.subscribers: dict[int, Live] = {}
        self.task: asyncio.Task[None] | None = None


class StreamHub:
    """The streams of one server run, by name."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.shared = server.shared
        self.opts = server.opts
        self.streams: dict[str, Stream] = {}
        self.depth = server.dialect.market_depth
        self.futures = server.dialect.futures

    def spec(self, name: str) -> StreamSpec:
        """Parse a stream name (``ValueError`` with the reason for a bad one)."""
        return parse_stream(name, self.opts.kline_seconds, depth=self.depth)

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks of the streams that have one (for shutdown)."""
        return [s.task for s in self.streams.values() if s.task is not None]

    def subscribe(self, live: Live, name: str) -> None:
        """Add ``live`` to the subscribers of ``name`` (a valid, new stream for it)."""
        stream = self.streams.get(name)
        if stream is None:
            stream = self.streams[name] = self._open(name)
        stream.subscribers[live.index] = live
        live.streams.append(name)
        with self.shared.lock:
            live.record.streams = list(live.streams)

    def _open(self, name: str) -> Stream:
        """The stream ``name`` with its generator, and its task unless stopping."""
        spec = self.spec(name)
        with self.shared.lock:
            gen = self.shared.generators.get(name)
            if gen is None:
                gen = make_generator(spec, self.opts.seed, futures=self.futures)
                self.shared.generators[name] = gen
        stream = Stream(spec, gen)
        rate = self.opts.event_rate
        if spec.kind == "kline" and self.opts.kline_rate is not None:
            rate = self.opts.kline_rate
        if rate > 0 and not self.server.stopping.is_set():
            stream.task = self.server.loop.create_task(self._run(stream, rate))
        return stream

    def unsubscribe(self, live: Live, name: str, *, record: bool = True) -> None:
        """Remove ``live`` from ``name``; ``record=False`` keeps the record's list as is."""
        stream = self.streams.get(name)
        if stream is not None:
            stream.subscribers.pop(live.index, None)
        if name in live.streams:
            live.streams.remove(name)
        if record:
            with self.shared.lock:
                live.record.streams = list(live.streams)

    async def _run(self, stream: Stream, rate: float) -> None:
        """Produce events at ``rate`` per second on an absolute schedule.

        Events that fell due while the loop was busy are produced together (at most
        ``_MAX_BATCH`` per wake-up; beyond that the schedule skips ahead). Kline
        streams also wake at each candle's close time to emit its ``x: true`` event.
        """
        loop = self.server.loop
        gen = stream.gen
        start = loop.time()
        produced = 0
        while True:
            now = now_ms()
            events = gen.roll(now)
            due = int((loop.time() - start) * rate) - produced
            if due > _MAX_BATCH:
                produced += due - _MAX_BATCH
                due = _MAX_BATCH
            events.extend(gen.tick(now) for _ in range(max(due, 0)))
            produced += max(due, 0)
            if events:
                self._publish(stream, events)
            delay = start + (produced + 1) / rate - loop.time()
            boundary = gen.next_boundary_ms()
            if boundary is not None:
                delay = min(delay, (boundary - now_ms()) / 1000.0)
            await asyncio.sleep(max(delay, 0.001))

    def _publish(self, stream: Stream, events: list[dict[str, Any]]) -> None:
        """Write ``events`` to every subscriber, serialized once (wrapped once); a stalled
        subscriber gets nothing and the gap fault swallows its share (see ``_faults``)."""
        raw = [orjson.dumps(e) for e in events]
        wrapped: list[bytes] | None = None
        prefix = b'{"stream":' + orjson.dumps(stream.spec.name) + b',"data":'
        name = stream.spec.name
        for live in list(stream.subscribers.values()):
            if live.stalled:
                continue
            if live.combined:
                if wrapped is None:
                    wrapped = [prefix + r + b"}" for r in raw]
                payloads = wrapped
            else:
                payloads = raw
            for event, payload in zip(events, payloads, strict=True):
                if live.drop_count and take_drop(self.server, live, name, numbers(name, event)):
                    continue
                if not self.server.write(live, payload):
                    break
        with self.shared.lock:
            self.shared.events_published += len(events)
