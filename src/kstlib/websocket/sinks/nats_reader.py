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
acknowledged with the next fetch, and when the iteration ends (waiting for the server to
confirm it); a restarted reader with the same ``durable`` goes on after it.

JetStream gives a message it delivered but that was never acknowledged (fetched but not
handed out when the iteration ended, lost in flight with a connection, held by a reader
that crashed) again only after ``ack_wait`` (30 s) or a NAK, and by then it has delivered
later ones: the reader would have to skip it (out of order) or hand it out late. So on
every (re)connect the reader looks at the consumer, and when it delivered beyond both its
acknowledgement floor and what this reader handed out, it re-creates the consumer (same
configuration) to start just after them: the next message is the one that follows, at
once. Deliveries can also go elsewhere while the reader is connected: a pull request
of its previous connection that the server served only after the reconnect, or another
reader of the same ``durable``; the reader sees the consumer's delivery sequence jump,
hands out nothing past the jump and re-creates the consumer the same way. A fetch that
times out is an empty batch, not a broken connection. Give each reader its own
``durable``. A message delivered again at or below the
last stream sequence handed out (its acknowledgement was lost) is not handed out again,
only acknowledged. The bus going away is survived (reconnect with backoff).
``idle_timeout`` ends the iteration after that many seconds without a message; ``close()``
(any thread) ends it within ``block`` seconds.

The loop, the hand-out bookkeeping and the ends are :mod:`~kstlib.websocket.sinks.reader`'s;
this module has the JetStream calls.

Thread-safety: one thread (or task) iterates a reader; ``close()`` may come from another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _nats_common as common
from ._extras import require
from .reader import AsyncReader, ReadBatch, ReaderCore, ReaderOptions, SyncReader
from .records import decode_marker
from .urls import server_url

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python >= 3.11

__all__ = ["AsyncNatsReader", "NatsReader"]


class _Consumer(ReaderCore):
    """The asyncio half both readers share: connect, fetch a batch, acknowledge. Options:
    ``stream``, ``durable``, ``start``, ``duplicate_window`` (for a stream it creates) and
    :class:`~kstlib.websocket.sinks.reader.ReaderCore`'s."""

    def __init__(
        self,
        url: str,
        subject: str,
        *,
        stream: str | None = None,
        durable: str = "kstlib",
        start: str = "all",
        duplicate_window: float = 120.0,
        **options: Unpack[ReaderOptions],
    ) -> None:
        common.nats()
        if start not in ("all", "new"):
            raise ValueError(f"start: expected 'all' or 'new', got {start!r}")
        super().__init__(**options)
        self.url, self.subject = server_url(url, "nats"), subject
        self.stream = stream or common.stream_name(subject)
        self.durable, self.start = durable, start
        self.duplicate_window = duplicate_window
        self._errors = common.nats_errors()
        self._nc: Any = None
        self._sub: Any = None
        #: The consumer sequence of the last delivery seen; None: start again.
        self._delivered: int | None = None
        self._handed = 0  # the highest stream sequence handed out (or passed over)
        self._to_ack: Any = None  # the message acknowledging that, not yet acknowledged

    async def _subscribe(self) -> None:
        api = require("nats.js.api", "nats", "NATS JetStream support")
        self._nc = await common.connect(self.url, self.timeout)
        js = self._nc.jetstream(timeout=self.timeout)
        await common.ensure_stream(js, self.stream, self.subject, self.duplicate_window, None)
        delivered = await self._restart_after_handed(js)
        policy = api.DeliverPolicy.ALL if self.start == "all" else api.DeliverPolicy.NEW
        config = api.ConsumerConfig(ack_policy=api.AckPolicy.ALL, deliver_policy=policy)
        self._sub = await js.pull_subscribe(
            self.subject, durable=self.durable, stream=self.stream, config=config
        )
        self._delivered = delivered

    async def _restart_after_handed(self, js: Any) -> int:
        """Re-create the consumer after its acknowledgement floor (or after what this
        reader handed out, if that is further) when it delivered beyond it (see the
        module docstring); the consumer sequence of its last delivery (0 when it is new)."""
        api = require("nats.js.api", "nats", "NATS JetStream support")
        js_errors = require("nats.js.errors", "nats", "NATS JetStream support")
        try:
            info = await js.consumer_info(self.stream, self.durable)
        except js_errors.NotFoundError:
            return 0  # created at ``start`` by the subscription
        after = max(info.ack_floor.stream_seq, self._handed)
        if info.delivered.stream_seq <= after:
            return int(info.delivered.consumer_seq)
        common.log.debug(
            "nats reader %s: %s delivered up to %d, acknowledged or handed out up to %d:"
            " starting again at %d",
            self.durable, self.stream, info.delivered.stream_seq, after, after + 1,
        )  # fmt: skip
        config = dataclasses.replace(
            info.config,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            opt_start_time=None,
        )
        try:
            await js.delete_consumer(self.stream, self.durable)
        except js_errors.NotFoundError:  # deleted meanwhile
            pass
        await js.add_consumer(self.stream, config)
        self._to_ack = None  # the new consumer starts after it
        return 0

    async def fetch(self) -> ReadBatch | None:
        """One round trip: the owed acknowledgement, then up to ``count`` messages."""
        try:
            if self._delivered is None:  # deliveries went elsewhere: start again
                await self._drop()
            if self._sub is None:
                await self._subscribe()
            await self._ack()
            msgs = await self._pull()
        except self._errors:
            await self._drop()
            await asyncio.sleep(self._next_delay())
            return None
        self._reset_delay()
        return self._decode(msgs)

    async def _pull(self) -> list[Any]:
        """Up to ``count`` messages, waiting ``block`` seconds at most; none when that
        passed. nats-py raises its own TimeoutError or asyncio's (when the server's
        answer came too late to ask again): neither means the connection is broken."""
        try:
            msgs: list[Any] = await self._sub.fetch(self.count, timeout=self.block)
        except asyncio.TimeoutError:
            return []
        return msgs

    def _in_order(self, msg: Any) -> bool:
        """Whether ``msg`` is the consumer's next delivery after the last one this
        subscription saw. When it is not, deliveries in between went to a pull request
        that is not this reader's (one the server served late, after a reconnect; a
        reader sharing the ``durable``): acknowledging past them would lose them, so the
        rest of the batch is left and the next fetch starts the consumer again."""
        delivered = int(msg.metadata.sequence.consumer)
        if self._delivered is not None and delivered == self._delivered + 1:
            self._delivered = delivered
            return True
        common.log.debug(
            "nats reader %s: delivery %d after %s: deliveries went elsewhere, starting again",
            self.durable, delivered, self._delivered,
        )  # fmt: skip
        self._delivered = None
        return False

    def _decode(self, msgs: list[Any]) -> ReadBatch:
        """The batch's items; ``ids[i]`` is the message acknowledging item ``i`` and the
        messages after it that are not handed out (hidden, or handed out already)."""
        batch = ReadBatch()
        passed: Any = None  # the last message passed over since the previous item
        for msg in msgs:
            if not self._in_order(msg):
                break
            item = self._item(msg) if _seq(msg) > self._handed else None
            if item is None:
                passed = _later(passed, msg)
                continue
            if batch.ids:
                batch.ids[-1] = _later(batch.ids[-1], passed)
            elif passed is not None:
                self._consumed(passed)  # before the first item: nothing to hand out
            passed = None
            batch.items.append(item[0])
            batch.times.append(item[1])
            batch.ids.append(msg)
        if batch.ids:
            batch.ids[-1] = _later(batch.ids[-1], passed)
        elif passed is not None:
            self._consumed(passed)
        return batch

    def _item(self, msg: Any) -> tuple[Any, bytes | None] | None:
        """What ``msg`` hands out, with its receive time; None when it is hidden."""
        headers = {k.lower(): v for k, v in (msg.headers or {}).items()}
        kind = headers.get("kst-k", "")
        if kind == "m":
            return self.decode(msg.data), headers.get("kst-t", "").encode() or None
        if self.events and kind in ("c", "d", "g"):
            fields = {k[4:].encode(): v.encode() for k, v in headers.items() if k[:4] == "kst-"}
            try:
                return decode_marker(kind.encode(), fields), None
            except ValueError:
                return None
        return None

    def handed_out(self, batch: ReadBatch, n: int) -> None:
        """The first ``n`` items of ``batch`` were handed out."""
        if n:
            self._consumed(batch.ids[n - 1])

    def _consumed(self, msg: Any) -> None:
        self._to_ack = _later(self._to_ack, msg)
        self._handed = max(self._handed, _seq(msg))

    async def _ack(self) -> None:
        """Acknowledge what was handed out (on the current connection: the message may
        have come on an earlier one)."""
        msg, self._to_ack = self._to_ack, None
        if msg is not None:
            try:
                await self._nc.publish(msg.reply)
            except BaseException:
                self._to_ack = _later(self._to_ack, msg)  # owed still, on the next connection
                raise

    async def finish(self) -> None:
        """Acknowledge what was handed out, wait for the server to confirm it (the next
        reader's position is read from it), and disconnect."""
        msg, self._to_ack = self._to_ack, None
        try:
            if msg is not None and self._nc is not None:
                await self._nc.request(msg.reply, b"", timeout=self.timeout)
        except Exception:  # the bus is away: the next reader gets these again
            pass
        await self._drop()

    async def _drop(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None:
            await common.close(nc)


def _seq(msg: Any) -> int:
    """The stream sequence of a JetStream message."""
    return int(msg.metadata.sequence.stream)


def _later(a: Any, b: Any) -> Any:
    """Of two messages (either may be None), the one further in the stream."""
    if a is None or (b is not None and _seq(b) > _seq(a)):
        return b
    return a


class NatsReader(_Consumer, SyncReader):
    """Sync reader (see the module docstring); nats-py runs on a private loop thread,
    stopped at ``with`` exit."""

    def __init__(self, url: str, subject: str, **options: Any) -> None:
        super().__init__(url, subject, **options)
        self._loop = common.LoopThread(f"kstlib-ws-nats-reader:{subject}")

    def _round_trip(self) -> ReadBatch | None:
        return self._loop.run(self.fetch())

    def _finish(self) -> None:
        try:
            self._loop.run(self.finish(), self.timeout * 2)
        except (RuntimeError, TimeoutError, concurrent.futures.TimeoutError):  # closed already
            pass

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        self._loop.stop()


class AsyncNatsReader(_Consumer, AsyncReader):
    """Asyncio reader: ``async for item in reader`` (see the module docstring)."""

    async def _round_trip(self) -> ReadBatch | None:
        return await self.fetch()

    async def _finish(self) -> None:
        await self.finish()
