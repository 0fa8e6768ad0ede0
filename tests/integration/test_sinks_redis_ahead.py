"""The Redis reader reads ahead (the next ``XACK`` + ``XREADGROUP`` sent before a batch is
handed out): what it hands out stays exactly once, in order, when the consumer stops
mid-batch and goes on, when the connection dies with a read ahead in flight, and on the
asyncio front; the consumer-group cursor's bookkeeping on its own (no server). Real
``redis-server`` (fixture), records written in the relay's format with ``XADD``."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis
from busservers import RedisServer

from kstlib.websocket import Connected
from kstlib.websocket.sinks import AsyncRedisReader, RedisReader
from kstlib.websocket.sinks._redis_group import GroupCursor

STREAM = "feed"


def publish(port: int, n: int, start: int = 0) -> None:
    """``n`` message records ``{"i": start..start+n-1}``, as a relay writes them."""
    client = redis.Redis(port=port)
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.xadd(STREAM, {"k": "m", "t": f"{1_700_000_000 + i:.6f}", "d": orjson.dumps({"i": i})})
    pipe.execute()


def numbers(items: list[Any]) -> list[int]:
    return [m["i"] for m in items]


def pending(port: int) -> int:
    return int(redis.Redis(port=port).xpending(STREAM, "kstlib")["pending"])


def reader(server: RedisServer, **options: Any) -> RedisReader:
    return RedisReader(server.url(), STREAM, count=50, reconnect_delay=0.01, **options)


@pytest.mark.timeout(60)
def test_a_consumer_that_stops_mid_batch_and_goes_on_gets_the_rest_once(
    redis_server: RedisServer,
) -> None:
    publish(redis_server.port, 500)
    got: list[Any] = []
    with reader(redis_server, idle_timeout=1) as r:
        for item in r:  # stops in the middle of the second batch, a third read ahead
            got.append(item)
            if len(got) == 70:
                break
        assert pending(redis_server.port) == 30 + 50  # not handed out: still pending
        got += list(r)  # the same reader again: reconnects, its pending entries first
    assert numbers(got) == list(range(500))
    assert pending(redis_server.port) == 0


@pytest.mark.timeout(60)
def test_the_connection_killed_with_a_read_ahead_in_flight_loses_and_repeats_nothing(
    redis_server: RedisServer,
) -> None:
    publish(redis_server.port, 1000)
    admin = redis.Redis(port=redis_server.port)
    got: list[Any] = []
    with reader(redis_server, idle_timeout=1) as r:
        for item in r:
            got.append(item)
            if len(got) in (75, 150, 420, 777):  # mid-batch and at a batch's end
                admin.client_kill_filter(_type="normal", skipme=True)
    assert numbers(got) == list(range(1000))
    assert pending(redis_server.port) == 0


@pytest.mark.timeout(60)
def test_new_entries_while_reading_ahead_come_in_order_after_a_wait(
    redis_server: RedisServer,
) -> None:
    publish(redis_server.port, 120)
    got: list[Any] = []
    with reader(redis_server, idle_timeout=2) as r:
        for item in r:
            got.append(item)
            if len(got) == 120:  # caught up: the read ahead found nothing, the next waits
                publish(redis_server.port, 80, start=120)
            if len(got) == 200:
                break
    assert numbers(got) == list(range(200))
    assert pending(redis_server.port) == 0


@pytest.mark.timeout(60)
def test_the_asyncio_reader_stopping_mid_batch_acknowledges_only_what_it_handed_out(
    redis_server: RedisServer,
) -> None:
    publish(redis_server.port, 300)
    errors: list[dict[str, Any]] = []

    async def read(n: int) -> list[Any]:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        got: list[Any] = []
        url = redis_server.url()
        async with AsyncRedisReader(url, STREAM, count=50, idle_timeout=1) as r:
            async for item in r:  # the generator's finalizer and the exit both end it
                got.append(item)
                if len(got) == n:
                    break
        await asyncio.sleep(0.05)  # the finalizer's task has run
        return got

    first = asyncio.run(read(120))
    assert pending(redis_server.port) == 30 + 50
    rest = asyncio.run(read(1000))
    assert numbers(first + rest) == list(range(300))
    assert pending(redis_server.port) == 0
    assert errors == []


# ----------------------------------------------------------------------------- the cursor


def record(eid: bytes, fields: list[bytes] | None) -> list[Any]:
    return [eid, fields]


def message(i: int, payload: bytes | None = None) -> list[Any]:
    data = orjson.dumps({"i": i}) if payload is None else payload
    return record(b"1-%d" % i, [b"k", b"m", b"t", b"%d.5" % i, b"d", data])


def test_the_cursor_forgets_only_the_acknowledgements_it_sent() -> None:
    cursor = GroupCursor(STREAM, "g", "c")
    cursor.on_reply([[b"feed", [message(1), message(2)]]])
    cursor.on_reply([[b"feed", []]])  # pending read done: new entries next
    cursor.handed_out(cursor.on_reply([[b"feed", [message(3), message(4)]]]), 2)
    later = cursor.on_reply([[b"feed", [message(5), message(6)]]])
    sent = cursor.commands(block=False)  # sent ahead: XACK 3 and 4, a read without BLOCK
    assert sent[0] == [b"XACK", b"feed", b"g", b"1-3", b"1-4"]
    assert b"BLOCK" not in sent[1]
    cursor.handed_out(later, 1)  # handed out while the XACK is in flight
    cursor.acked()
    assert cursor.to_ack == [b"1-5"]
    assert b"BLOCK" in cursor.commands()[-1]


@pytest.mark.parametrize("decode", ["json", "bytes", None, bytes.upper])
def test_a_reply_of_messages_decodes_as_entry_by_entry(decode: Any) -> None:
    plain = [message(i) for i in range(5)] + [message(5, b"not json \xff"), message(6, b"ok")]
    mixed = [*plain[:3], record(b"1-99", [b"k", b"c", b"at", b"1.5", b"n", b"2", b"r", b"0"])]
    for entries in (plain, mixed):
        cursor = GroupCursor(STREAM, "g", "c", decode=decode)
        cursor.on_reply([[b"feed", []]])
        batch = cursor.on_reply([[b"feed", entries]])
        one_by_one = GroupCursor(STREAM, "g", "c", decode=decode)
        one_by_one.on_reply([[b"feed", []]])
        expected = [one_by_one.on_reply([[b"feed", [e]]]) for e in entries]
        assert batch.items == [x for b in expected for x in b.items]
        assert batch.ids == [x for b in expected for x in b.ids]
        assert batch.times == [x for b in expected for x in b.times]
    assert isinstance(batch.items[-1], Connected)
    assert cursor.read_ahead()
    cursor.on_reply(None)  # a read without BLOCK that found nothing
    assert not cursor.read_ahead()
