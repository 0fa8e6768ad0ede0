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

Thread-safety: one thread (or task) iterates a reader; ``close()`` may come from another.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

from ._extras import require
from ._redis_group import GroupCursor, ReadBatch
from ._resp import pack
from .redis_sink import redis_errors
from .urls import server_url

__all__ = ["AsyncRedisReader", "RedisReader"]


class _Base:
    def __init__(
        self,
        url: str,
        stream: str,
        *,
        group: str = "kstlib",
        consumer: str = "consumer",
        start: str = "0",
        decode: Any = "json",
        events: bool = True,
        count: int = 1000,
        block: float = 0.5,
        idle_timeout: float | None = None,
        reconnect_delay: float = 0.1,
        reconnect_delay_max: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        self._redis = require("redis", "redis", "Redis Streams support")
        self.url = server_url(url, "redis")
        self.cursor = GroupCursor(
            stream, group, consumer, start=start, count=count, block=block,
            decode=decode, events=events,
        )  # fmt: skip
        self.idle_timeout = idle_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self.timeout = max(timeout, block + 5.0)
        self._errors = redis_errors()
        self._closed = threading.Event()
        self._conn: Any = None
        self._delay = reconnect_delay

    def close(self) -> None:
        """End the iteration (within ``block`` s); acknowledgements are flushed by the
        iterating side as it ends."""
        self._closed.set()

    def _packed(self) -> tuple[bytes, int]:
        cmds = self.cursor.commands()
        return b"".join(pack(c) for c in cmds), len(cmds)

    def _is_nogroup(self, exc: BaseException) -> bool:
        return isinstance(exc, self._redis.ResponseError) and "NOGROUP" in str(exc)

    def _idle(self, since: float) -> bool:
        """Nothing came for ``idle_timeout`` seconds since ``since``."""
        return self.idle_timeout is not None and time.monotonic() - since >= self.idle_timeout

    def _next_delay(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, self.reconnect_delay_max)
        return delay


class RedisReader(_Base):
    """Sync reader (see the module docstring)."""

    def __iter__(self) -> Iterator[Any]:
        for batch in self._batches():
            i = 0
            try:
                for item in batch.items:
                    i += 1
                    yield item
            finally:
                self.cursor.handed_out(batch, i)

    def records(self) -> Iterator[tuple[Any, float | None]]:
        """Like iterating, with each item's receive time at the relay (None: marker)."""
        for batch in self._batches():
            i = 0
            try:
                for item, t in zip(batch.items, batch.times, strict=True):
                    i += 1
                    yield item, (None if t is None else float(t))
            finally:
                self.cursor.handed_out(batch, i)

    def _batches(self) -> Iterator[ReadBatch]:
        idle_since = time.monotonic()
        try:
            while not self._closed.is_set():
                batch = self._round_trip()
                if batch is not None and batch.items:
                    idle_since = time.monotonic()
                    yield batch
                elif self._idle(idle_since):
                    return
        finally:
            self._finish()

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
            if not self._is_nogroup(exc):
                raise
            self._drop()  # the server lost the stream and its group: create it again
            return None
        if n == 2:
            self.cursor.acked()
        self._delay = self.reconnect_delay
        return self.cursor.on_reply(replies[-1])

    def _connection(self) -> Any:
        if self._conn is None:
            client = self._redis.Redis.from_url(
                self.url, protocol=2, socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
            )  # fmt: skip
            conn = client.connection_pool.get_connection()
            try:
                conn.send_packed_command([pack(self.cursor.create_group())])
                conn.read_response()
            except self._redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.cursor.reconnected()
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()

    def _finish(self) -> None:
        """Acknowledge what was handed out (if the bus is there), then disconnect."""
        if self.cursor.to_ack and self._conn is not None:
            try:
                self._conn.send_packed_command([pack(self.cursor.commands()[0])])
                self._conn.read_response()
                self.cursor.acked()
            except (*self._errors, self._redis.ResponseError):
                pass
        self._drop()

    def __enter__(self) -> RedisReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._finish()


class AsyncRedisReader(_Base):
    """Asyncio reader: ``async for item in reader`` (see the module docstring)."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        idle_since = time.monotonic()
        try:
            while not self._closed.is_set():
                batch = await self._round_trip()
                if batch is not None and batch.items:
                    idle_since = time.monotonic()
                    i = 0
                    try:
                        for item in batch.items:
                            i += 1
                            yield item
                    finally:
                        self.cursor.handed_out(batch, i)
                elif self._idle(idle_since):
                    return
        finally:
            await self._finish()

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
            if not self._is_nogroup(exc):
                raise
            await self._drop()
            return None
        if n == 2:
            self.cursor.acked()
        self._delay = self.reconnect_delay
        return self.cursor.on_reply(replies[-1])

    async def _connection(self) -> Any:
        if self._conn is None:
            aioredis = require("redis.asyncio", "redis", "Redis Streams support")
            client = aioredis.Redis.from_url(
                self.url, protocol=2, socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
            )  # fmt: skip
            conn = await client.connection_pool.get_connection()
            try:
                await conn.send_packed_command([pack(self.cursor.create_group())])
                await conn.read_response()
            except self._redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.cursor.reconnected()
            self._conn = conn
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()

    async def _finish(self) -> None:
        if self.cursor.to_ack and self._conn is not None:
            try:
                await self._conn.send_packed_command([pack(self.cursor.commands()[0])])
                await self._conn.read_response()
                self.cursor.acked()
            except (*self._errors, self._redis.ResponseError):
                pass
        await self._drop()

    async def __aenter__(self) -> AsyncRedisReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self._finish()
