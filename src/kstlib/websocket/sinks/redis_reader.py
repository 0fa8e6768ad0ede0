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

    def handed_out(self, batch: ReadBatch, n: int) -> None:
        """The first ``n`` items of ``batch`` are acknowledged with the next read."""
        self.cursor.handed_out(batch, n)

    def _client(self, module: Any) -> Any:
        return module.Redis.from_url(
            self.url, protocol=2, socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
        )  # fmt: skip

    def _packed(self) -> tuple[bytes, int]:
        cmds = self.cursor.commands()
        return b"".join(pack(c) for c in cmds), len(cmds)

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

    def _replied(self, replies: list[Any]) -> ReadBatch:
        """The batch of a round trip's replies (an ``XACK``'s first, if one was sent)."""
        if len(replies) == 2:
            self.cursor.acked()
        self._reset_delay()
        return self.cursor.on_reply(replies[-1])

    def _ack_command(self) -> bytes | None:
        """The ``XACK`` owed when the iteration ends, if any and connected."""
        if self.cursor.to_ack and self._conn is not None:
            return pack(self.cursor.commands()[0])
        return None


class RedisReader(_RedisReader, SyncReader):
    """Sync reader (see the module docstring)."""

    def _round_trip(self) -> ReadBatch | None:
        try:
            conn = self._connection()
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
        return self._replied(replies)

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
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()

    def _finish(self) -> None:
        """Acknowledge what was handed out (if the bus is there), then disconnect."""
        command = self._ack_command()
        if command is not None:
            try:
                self._conn.send_packed_command([command])
                self._conn.read_response()
                self.cursor.acked()
            except (*self._errors, self._redis.ResponseError):
                pass
        self._drop()


class AsyncRedisReader(_RedisReader, AsyncReader):
    """Asyncio reader: ``async for item in reader`` (see the module docstring)."""

    async def _round_trip(self) -> ReadBatch | None:
        try:
            conn = await self._connection()
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
        return self._replied(replies)

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
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()

    async def _finish(self) -> None:
        """Acknowledge what was handed out (if the bus is there), then disconnect."""
        command = self._ack_command()
        if command is not None:
            try:
                await self._conn.send_packed_command([command])
                await self._conn.read_response()
                self.cursor.acked()
            except (*self._errors, self._redis.ResponseError):
                pass
        await self._drop()
