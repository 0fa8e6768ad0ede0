"""Reading a relay's JetStream stream through a durable pull consumer: sync and asyncio.

::

    from kstlib.websocket.sinks import NatsReader

    with NatsReader("nats://127.0.0.1:4222", "md.btc", durable="risk") as reader:
        for item in reader:                 # what stream(events=True) would yield
            ...

The same items as :class:`~kstlib.websocket.sinks.RedisReader`, in stream order:
payloads decoded like the manager's ``decode``, markers restored as their classes
(hidden with ``events=False``). The consumer ``durable`` (created if missing, with
``AckPolicy.ALL``: one acknowledgement covers everything before it) starts at ``start``
(``"all"``: what the stream holds; ``"new"``: what comes next). What was handed out is
acknowledged with the next fetch and when the iteration ends (what was fetched but not
handed out is given back); a restarted reader with the same ``durable`` goes on after it
(after a crash: once JetStream's ``ack_wait``, 30 s, expired). A message JetStream
delivers again (its acknowledgement was lost, or took longer than ``ack_wait``) at or
below the last stream sequence handed out is skipped. The bus going away is survived
(reconnect with backoff). ``idle_timeout`` ends the iteration after that many seconds
without a message; ``close()`` (any thread) ends it within ``block`` seconds.

Thread-safety: one thread (or task) iterates a reader; ``close()`` may come from another.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

from . import _nats_common as common
from ._extras import require
from ._redis_group import ReadBatch
from .records import decode_marker, payload_decoder
from .urls import server_url

__all__ = ["AsyncNatsReader", "NatsReader"]


class _Consumer:
    """The asyncio half both readers share: connect, fetch a batch, acknowledge."""

    def __init__(
        self,
        url: str,
        subject: str,
        *,
        stream: str | None = None,
        durable: str = "kstlib",
        start: str = "all",
        decode: Any = "json",
        events: bool = True,
        count: int = 1000,
        block: float = 0.5,
        idle_timeout: float | None = None,
        reconnect_delay: float = 0.1,
        reconnect_delay_max: float = 5.0,
        timeout: float = 10.0,
        duplicate_window: float = 120.0,
    ) -> None:
        common.nats()
        if start not in ("all", "new"):
            raise ValueError(f"start: expected 'all' or 'new', got {start!r}")
        self.url, self.subject = server_url(url, "nats"), subject
        self.stream = stream or common.stream_name(subject)
        self.durable, self.start = durable, start
        self.decode = payload_decoder(decode)
        self.events, self.count, self.block = events, count, block
        self.idle_timeout, self.timeout = idle_timeout, timeout
        self.reconnect_delay, self.reconnect_delay_max = reconnect_delay, reconnect_delay_max
        self.duplicate_window = duplicate_window
        self._errors = common.nats_errors()
        self._closed = threading.Event()
        self._nc: Any = None
        self._sub: Any = None
        self._delay = reconnect_delay
        self._handed = 0  # stream sequence of the last item handed out
        self._to_ack: Any = None  # the last message handed out, not yet acknowledged
        self._unhanded: list[Any] = []  # fetched, not handed out (the loop was left)

    async def _subscribe(self) -> None:
        api = require("nats.js.api", "nats", "NATS JetStream support")
        self._nc = await common.connect(self.url, self.timeout)
        js = self._nc.jetstream(timeout=self.timeout)
        await common.ensure_stream(js, self.stream, self.subject, self.duplicate_window, None)
        policy = api.DeliverPolicy.ALL if self.start == "all" else api.DeliverPolicy.NEW
        config = api.ConsumerConfig(ack_policy=api.AckPolicy.ALL, deliver_policy=policy)
        self._sub = await js.pull_subscribe(
            self.subject, durable=self.durable, stream=self.stream, config=config
        )

    async def fetch(self) -> ReadBatch | None:
        """One round trip: the owed acknowledgement, then up to ``count`` messages."""
        try:
            if self._sub is None:
                await self._subscribe()
            await self._ack()
            msgs = await self._sub.fetch(self.count, timeout=self.block)
        except common.nats().errors.TimeoutError:
            return ReadBatch()
        except self._errors:
            await self._drop()
            await asyncio.sleep(self._next_delay())
            return None
        self._delay = self.reconnect_delay
        return self._decode(msgs)

    def _decode(self, msgs: list[Any]) -> ReadBatch:
        batch = ReadBatch()
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            if seq <= self._handed:
                continue  # delivered again: handed out already
            headers = {k.lower(): v for k, v in (msg.headers or {}).items()}
            kind = headers.get("kst-k", "")
            if kind == "m":
                batch.items.append(self.decode(msg.data))
                batch.times.append(headers.get("kst-t", "").encode() or None)
            elif self.events and kind in ("c", "d", "g"):
                fields = {k[4:].encode(): v.encode() for k, v in headers.items() if k[:4] == "kst-"}
                try:
                    batch.items.append(decode_marker(kind.encode(), fields))
                except ValueError:
                    continue
                batch.times.append(None)
            else:
                continue
            batch.ids.append(msg)
        return batch

    def handed_out(self, batch: ReadBatch, n: int) -> None:
        self._unhanded = batch.ids[n:]
        if n:
            msg: Any = batch.ids[n - 1]
            self._to_ack = msg
            self._handed = max(self._handed, msg.metadata.sequence.stream)

    async def _ack(self) -> None:
        msg, self._to_ack = self._to_ack, None
        if msg is not None:
            await msg.ack()

    async def finish(self) -> None:
        """Acknowledge what was handed out, give back (NAK) what was fetched but not
        handed out, so the next reader gets it at once, and disconnect."""
        rest, self._unhanded = self._unhanded, []
        try:
            await self._ack()
            for msg in rest:
                await msg.nak()
        except Exception:  # the bus is away: redelivered after ack_wait
            pass
        await self._drop()

    async def _drop(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None:
            await common.close(nc)

    def _idle(self, since: float) -> bool:
        """Nothing came for ``idle_timeout`` seconds since ``since``."""
        return self.idle_timeout is not None and time.monotonic() - since >= self.idle_timeout

    def _next_delay(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, self.reconnect_delay_max)
        return delay

    def close(self) -> None:
        """End the iteration (within ``block`` s)."""
        self._closed.set()


class NatsReader(_Consumer):
    """Sync reader (see the module docstring); nats-py runs on a private loop thread."""

    def __init__(self, url: str, subject: str, **options: Any) -> None:
        super().__init__(url, subject, **options)
        self._loop = common.LoopThread(f"kstlib-ws-nats-reader:{subject}")

    def __iter__(self) -> Iterator[Any]:
        idle_since = time.monotonic()
        try:
            while not self._closed.is_set():
                batch = self._loop.run(self.fetch())
                if batch is not None and batch.items:
                    idle_since = time.monotonic()
                    i = 0
                    try:
                        for item in batch.items:
                            i += 1
                            yield item
                    finally:
                        self.handed_out(batch, i)
                elif self._idle(idle_since):
                    return
        finally:
            self._finish_sync()

    def _finish_sync(self) -> None:
        try:
            self._loop.run(self.finish(), self.timeout)
        except (RuntimeError, TimeoutError):  # closed already
            pass

    def __enter__(self) -> NatsReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._finish_sync()
        self._loop.stop()


class AsyncNatsReader(_Consumer):
    """Asyncio reader: ``async for item in reader`` (see the module docstring)."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        idle_since = time.monotonic()
        try:
            while not self._closed.is_set():
                batch = await self.fetch()
                if batch is not None and batch.items:
                    idle_since = time.monotonic()
                    i = 0
                    try:
                        for item in batch.items:
                            i += 1
                            yield item
                    finally:
                        self.handed_out(batch, i)
                elif self._idle(idle_since):
                    return
        finally:
            await self.finish()

    async def __aenter__(self) -> AsyncNatsReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.finish()
