"""Reading a relay's Redis stream through a consumer group: sync and asyncio.

::

    from kstlib.websocket.sinks import RedisReader

    with RedisReader("redis://127.0.0.1:6379/0", "btc", group="risk") as reader:
        for item in reader:                 # what stream(events=True) would yield
            ...

Items come in stream order: payloads decoded like the manager's ``decode`` (``"json"``
by default), ``Connected`` / ``Disconnected`` / :class:`RelayGap` markers restored as
those classes (hidden with ``events=False``). What was handed out is acknowledged
(``XACK``) with the next read, and when the iteration ends; a reader that crashed gets
what it was handed but had not acknowledged again when it restarts with the same
``consumer`` name (give each concurrent reader of a group its own name).

Reading ahead: when a reply with entries arrives, the reader sends the next ``XACK`` (of
what it had handed out until then) and ``XREADGROUP`` (without ``BLOCK``: what is there)
on the connection *before* it decodes and hands the batch out, and reads that reply at
its next round trip, so Redis prepares the next batch while this one is decoded and
consumed. After a reply without entries it waits with a blocking read instead. So up
to two batches (``2 * count`` entries) are delivered to this consumer and pending at a
time: the one being handed out and the one read ahead. A reader that stops or crashes
leaves what it did not hand out pending (read again by the same ``consumer`` name),
never lost and never handed out twice by one reader. A reader that ends reads the
reply of its read ahead (one round trip: it did not block) before its last ``XACK``.

The group is created at ``start`` if missing (``"0"``: everything the stream still
holds; ``"$"``: only what comes next). The bus going away is survived: the reader
reconnects with backoff (``reconnect_delay`` doubled up to ``reconnect_delay_max``),
re-creates the group if the server lost it, and goes on after the last id it handed out.
``idle_timeout`` ends the iteration after that many seconds without a record; ``close()``
(from any thread) ends it within ``block`` seconds.

The loop, the hand-out bookkeeping and the ends are :mod:`~kstlib.websocket.sinks.reader`'s;
this module has the Redis calls, the consumer-group rules are
:mod:`~kstlib.websocket.sinks._redis_group`'s.

Thread-safety: one thread (or task) iterates a reader; ``close()`` may come from another.
"""

from __future__ import annotations

import asyncio
from itertools import groupby
from typing import TYPE_CHECKING, Any

from ._extras import require
from ._redis_group import GroupCursor
from ._resp import pack
from .reader import AsyncReader, ReadBatch, ReaderCore, ReaderOptions, SyncReader
from .redis_sink import redis_errors
from .urls import server_url

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python >= 3.11

__all__ = ["AsyncRedisReader", "RedisReader"]


def _pack(command: list[bytes]) -> bytes:
    """``command`` as RESP; an ``XACK``'s ids (thousands, mostly of one length: entry ids
    written in the same millisecond) joined a run of equal lengths at a time."""
    if command[0] != b"XACK":
        return pack(command)
    parts = [b"*%d\r\n" % len(command)]
    for size, run in groupby(command, len):  # XACK, stream, group, then the ids
        head = b"$%d\r\n" % size
        parts += (head, (b"\r\n" + head).join(run), b"\r\n")
    return b"".join(parts)


class _RedisReader(ReaderCore):
    """What the two fronts share: the options (``group``, ``consumer``, ``start`` and
    :class:`~kstlib.websocket.sinks.reader.ReaderCore`'s), the cursor, the replies'
    handling."""

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        group: str = "kstlib",
        consumer: str = "consumer",
        start: str = "0",
        **options: Unpack[ReaderOptions],
    ) -> None:
        self._redis = require("redis", "redis", "Redis Streams support")
        super().__init__(**options)
        self.url = server_url(url, "redis")
        self.cursor = GroupCursor(
            stream, group, consumer, start=start, count=self.count, block=self.block,
            decode=self.decode, events=self.events,
        )  # fmt: skip
        self.timeout = max(self.timeout, self.block + 5.0)
        self._errors = redis_errors()
        self._conn: Any = None
        self._ahead = 0  # replies owed by the connection for the commands sent ahead

    def handed_out(self, batch: ReadBatch, n: int) -> None:
        """The first ``n`` items of ``batch`` are acknowledged with the next read."""
        self.cursor.handed_out(batch, n)

    def _client(self, module: Any) -> Any:
        return module.Redis.from_url(
            self.url, protocol=2, socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
        )  # fmt: skip

    def _packed(self, block: bool = True) -> tuple[bytes, int]:
        cmds = self.cursor.commands(block)
        return b"".join(map(_pack, cmds)), len(cmds)

    def _ahead_wanted(self) -> bool:
        """Send the next read before handing this batch out: the last reply had entries
        and the reader is not closing."""
        return self.cursor.read_ahead() and not self._closed.is_set()

    def _unless_nogroup(self, exc: BaseException) -> None:
        """Raise ``exc`` unless the server lost the stream and its group (they are
        created again on the next connection)."""
        if not (isinstance(exc, self._redis.ResponseError) and "NOGROUP" in str(exc)):
            raise exc

    @staticmethod
    def _unless_busygroup(exc: BaseException) -> None:
        """Raise ``exc`` unless it says the group exists already."""
        if "BUSYGROUP" not in str(exc):
            raise exc

    def _replied(self, replies: list[Any]) -> tuple[list[Any], bool]:
        """A round trip's replies (an ``XACK``'s first, if one was sent) taken in; the
        entries are decoded by ``self.cursor.batch`` (after the read ahead is sent)."""
        if len(replies) == 2:
            self.cursor.acked()
        self._reset_delay()
        return self.cursor.received(replies[-1])

    def _ack_command(self) -> bytes | None:
        """The ``XACK`` owed when the iteration ends, if any."""
        return _pack(self.cursor.commands()[0]) if self.cursor.to_ack else None

    def _take_connection(self) -> tuple[Any, int]:
        """The connection (None if none) and how many replies it owes for what was sent
        ahead; the reader is left without both, so a second ``_finish`` running at the
        same time (an asyncio generator's finalizer while ``async with`` exits) finds
        nothing to do."""
        conn, ahead = self._conn, self._ahead
        self._conn, self._ahead = None, 0
        return conn, ahead


class RedisReader(_RedisReader, SyncReader):
    """Sync reader (see the module docstring)."""

    def _round_trip(self) -> ReadBatch | None:
        try:
            conn = self._connection()
            n, self._ahead = self._ahead, 0
            if not n:  # nothing read ahead: send the read now (blocking for new entries)
                data, n = self._packed()
                conn.send_packed_command([data], check_health=False)
            replies = [conn.read_response() for _ in range(n)]
        except self._errors:
            self._drop()
            self._closed.wait(self._next_delay())
            return None
        except self._redis.ResponseError as exc:
            self._unless_nogroup(exc)
            self._drop()
            return None
        got = self._replied(replies)
        if self._ahead_wanted():  # before decoding: Redis works while this batch decodes
            self._send_ahead(conn)
        return self.cursor.batch(*got)

    def _send_ahead(self, conn: Any) -> None:
        """Send the next ``XACK`` + ``XREADGROUP`` (not blocking); their replies are read
        by the next round trip. A failure drops the connection (the next round trip
        reconnects); the batch at hand is handed out all the same."""
        data, n = self._packed(block=False)
        try:
            conn.send_packed_command([data], check_health=False)
        except self._errors:
            self._drop()
            return
        self._ahead = n

    def _connection(self) -> Any:
        if self._conn is None:
            conn = self._client(self._redis).connection_pool.get_connection()
            try:
                conn.send_packed_command([pack(self.cursor.create_group())])
                conn.read_response()
            except self._redis.ResponseError as exc:
                self._unless_busygroup(exc)
            self.cursor.reconnected()
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        conn, self._conn, self._ahead = self._conn, None, 0
        if conn is not None:
            conn.disconnect()

    def _finish(self) -> None:
        """Take the replies of what was sent ahead (an ``XACK`` counts; the entries read
        ahead stay pending, read again after the next connect), acknowledge what was
        handed out (if the bus is there), then disconnect."""
        conn, ahead = self._take_connection()
        if conn is None:
            return
        try:
            replies = [conn.read_response() for _ in range(ahead)]
            if len(replies) == 2:
                self.cursor.acked()
            command = self._ack_command()
            if command is not None:
                conn.send_packed_command([command])
                conn.read_response()
                self.cursor.acked()
        except (*self._errors, self._redis.ResponseError):
            pass
        finally:
            conn.disconnect()


class AsyncRedisReader(_RedisReader, AsyncReader):
    """Asyncio reader: ``async for item in reader`` (see the module docstring)."""

    async def _round_trip(self) -> ReadBatch | None:
        try:
            conn = await self._connection()
            n, self._ahead = self._ahead, 0
            if not n:  # nothing read ahead: send the read now (blocking for new entries)
                data, n = self._packed()
                await conn.send_packed_command([data], check_health=False)
            replies = [await conn.read_response() for _ in range(n)]
        except self._errors:
            await self._drop()
            await asyncio.sleep(self._next_delay())
            return None
        except self._redis.ResponseError as exc:
            self._unless_nogroup(exc)
            await self._drop()
            return None
        got = self._replied(replies)
        if self._ahead_wanted():  # before decoding: Redis works while this batch decodes
            await self._send_ahead(conn)
        return self.cursor.batch(*got)

    async def _send_ahead(self, conn: Any) -> None:
        """As :meth:`RedisReader._send_ahead`."""
        data, n = self._packed(block=False)
        try:
            await conn.send_packed_command([data], check_health=False)
        except self._errors:
            await self._drop()
            return
        self._ahead = n

    async def _connection(self) -> Any:
        if self._conn is None:
            aioredis = require("redis.asyncio", "redis", "Redis Streams support")
            conn = await self._client(aioredis).connection_pool.get_connection()
            try:
                await conn.send_packed_command([pack(self.cursor.create_group())])
                await conn.read_response()
            except self._redis.ResponseError as exc:
                self._unless_busygroup(exc)
            self.cursor.reconnected()
            self._conn = conn
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn, self._ahead = self._conn, None, 0
        if conn is not None:
            await conn.disconnect()

    async def _finish(self) -> None:
        """As :meth:`RedisReader._finish`, without blocking the loop."""
        conn, ahead = self._take_connection()
        if conn is None:
            return
        try:
            replies = [await conn.read_response() for _ in range(ahead)]
            if len(replies) == 2:
                self.cursor.acked()
            command = self._ack_command()
            if command is not None:
                await conn.send_packed_command([command])
                await conn.read_response()
                self.cursor.acked()
        except (*self._errors, self._redis.ResponseError):
            pass
        finally:
            await conn.disconnect()
