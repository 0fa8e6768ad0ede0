"""The sinks' parts: addresses, the record format, the relay's buffer, the error that
names the missing extra (no bus), and the Redis sink's publishing script on its own
against a real ``redis-server`` (retries, de-duplication, refusals, trimming)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import redis
from busservers import RedisServer
from helpers import wait_for

from kstlib.websocket import Connected, Disconnected, DisconnectReason
from kstlib.websocket.sinks import Buffer, RelayGap, open_sink, parse_bus_url
from kstlib.websocket.sinks.base import Chunk, KeyFunction
from kstlib.websocket.sinks.records import decode_marker, decode_payload, marker_fields

# ----------------------------------------------------------------------------- addresses


def test_bus_urls_keep_the_server_part_for_the_client_library() -> None:
    bus = parse_bus_url("redis://u:p@127.0.0.1:6380/2?stream=btc&maxlen=5&socket_timeout=3")
    assert (bus.kind, bus.name) == ("redis", "btc")
    assert bus.server == "redis://u:p@127.0.0.1:6380/2?socket_timeout=3"
    assert bus.params == {"stream": "btc", "maxlen": "5"}
    nats = parse_bus_url("nats://127.0.0.1?subject=md.btc")
    assert (nats.kind, nats.name, nats.server) == ("nats", "md.btc", "nats://127.0.0.1:4222")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:6379/0?stream=x", "scheme must be"),
        ("redis://127.0.0.1:6379/0", "add ?stream=NAME"),
        ("redis://127.0.0.1:6379/zero?stream=x", "database must be a number"),
        ("redis://127.0.0.1:99999/0?stream=x", "bad bus URL"),
        ("redis://127.0.0.1:6379/0?stream=x&maxlen=-1", "maxlen must be"),
        ("nats://127.0.0.1:4222", "add ?subject=NAME"),
        ("nats://127.0.0.1:4222?subject=x&colour=red", "unknown parameter(s) colour"),
        ("nats://:4222?subject=x", "no host"),
    ],
)
def test_a_wrong_bus_url_is_a_one_line_error_saying_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match="bad bus URL") as err:
        parse_bus_url(url)
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("module", "extra"), [("redis", "redis"), ("nats", "nats")])
def test_without_the_client_library_the_error_names_the_extra(module: str, extra: str) -> None:
    url = "redis://127.0.0.1:1/0?stream=x" if extra == "redis" else "nats://127.0.0.1:1?subject=x"
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from kstlib.websocket.sinks import open_sink, MissingExtraError\n"
        f"try:\n    open_sink({url!r})\n"
        "except MissingExtraError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert f"pip install 'kstlib-websocket[{extra}]'" in out.stdout, out.stderr


# ----------------------------------------------------------------------------- records


@pytest.mark.parametrize(
    "marker",
    [
        Connected(1.1 / 3, 2, True),
        Connected(1700000000.123456789, 0, False),
        Disconnected(DisconnectReason.PING_TIMEOUT, 1700000000.5),
        Disconnected(DisconnectReason.SERVER_CLOSED, 1700000000.25, 1001),
        RelayGap(1700000000.75, 12, "overflow", "relay-a"),
    ],
)
def test_markers_read_back_as_the_same_objects(marker: object) -> None:
    flat = marker_fields(marker, "relay-a")  # type: ignore[arg-type]
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    assert decode_marker(fields[b"k"], fields) == marker


def test_payloads_decode_like_the_managers_decode_option() -> None:
    assert decode_payload(b'{"t":1}') == {"t": 1}
    assert decode_payload(b"not json") == "not json"
    assert decode_payload(b"\xff\xfe", "json") == b"\xff\xfe"
    assert decode_payload(b"abc", None) == "abc"
    assert decode_payload(b"abc", "bytes") == b"abc"
    assert decode_payload(b"abc", len) == 3
    with pytest.raises(ValueError, match="decode"):
        decode_payload(b"abc", "xml")


# ----------------------------------------------------------------------------- the buffer


def test_drop_oldest_drops_whole_batches_keeps_markers_and_reports_the_hole_once() -> None:
    buf = Buffer(max_messages=4, max_bytes=1000, overflow="drop_oldest")
    buf.put([b"1", b"2"], 1.0, 2)
    buf.put_marker("marker", 1.5)
    buf.put([b"3", b"4"], 2.0, 2)
    buf.put([b"5", b"6"], 3.0, 2)  # no room: the oldest batch (1, 2) goes
    taken = buf.take(100, 10_000, timeout=1)
    assert taken is not None
    assert taken.dropped == 2 and buf.total_dropped == 2
    assert [e[1] for e in taken.entries] == [["marker"], [b"3", b"4"], [b"5", b"6"]]
    buf.release(taken.count, taken.nbytes)
    again = buf.take(100, 10_000, timeout=0.01)
    assert again is None  # the hole was reported once


def test_a_batch_larger_than_the_bound_goes_into_an_empty_buffer() -> None:
    buf = Buffer(max_messages=2, max_bytes=10, overflow="drop_oldest")
    buf.put([b"x" * 100] * 5, 1.0, 500)
    assert buf.held == (5, 500)


def test_the_byte_bound_counts_what_the_publisher_still_holds() -> None:
    buf = Buffer(max_messages=100, max_bytes=10, overflow="drop_oldest")
    buf.put([b"a" * 8], 1.0, 8)
    taken = buf.take(100, 100, timeout=1)  # being published, not released yet
    assert taken is not None
    buf.put([b"b" * 8], 2.0, 8)  # no room while the first is held: dropped
    assert buf.total_dropped == 1
    buf.release(taken.count, taken.nbytes)
    buf.put([b"c" * 8], 3.0, 8)
    assert buf.total_dropped == 1 and buf.held == (1, 8)


@pytest.mark.timeout(10)
def test_block_waits_for_room_until_released_or_interrupted() -> None:
    buf = Buffer(max_messages=2, max_bytes=1000, overflow="block")
    buf.put([b"1", b"2"], 1.0, 2)
    done = threading.Event()
    waited: list[float] = []

    def producer() -> None:
        waited.append(buf.put([b"3"], 2.0, 1))
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.2)  # no room: waiting
    taken = buf.take(100, 100, timeout=1)
    assert taken is not None
    buf.release(taken.count, taken.nbytes)
    assert done.wait(5) and waited[0] > 0
    thread.join()

    buf.put([b"4"], 3.0, 1)  # full again: 3 and 4
    late = threading.Thread(target=buf.put, args=([b"6"], 4.0, 1))
    late.start()
    assert wait_for(lambda: late.is_alive())
    buf.interrupt()  # closing: the wait ends, the batch is queued past the bound
    late.join(5)
    assert not late.is_alive() and buf.held[0] == 3


def test_another_engine_marker_travels_by_class_name_and_fields() -> None:
    # the generic record form (kind x) of any marker dataclass of kstlib.websocket.models,
    # e.g. a sequence Gap: its class name and its fields as JSON
    fields = {b"k": b"x", b"type": b"Connected", b"v": b'{"at":1.5,"resubscribed":2}'}
    assert decode_marker(b"x", fields) == Connected(1.5, 2, True)
    with pytest.raises(ValueError, match="malformed"):
        decode_marker(b"x", {**fields, b"type": b"NoSuchMarker"})


# ----------------------------------------------------------------------------- the Redis script


def chunk(first_seq: int, source: str, *parts: tuple[float, list[object]], **kw: object) -> Chunk:
    count = sum(len(items) for _, items in parts)
    return Chunk(first_seq, list(parts), count, 0, source, **kw)  # type: ignore[arg-type]


def stream_records(server: RedisServer, stream: str = "s") -> list[dict[bytes, bytes]]:
    client = redis.Redis(port=server.port, protocol=2)
    return [dict(fields) for _, fields in client.xrange(stream)]


def test_a_retried_chunk_is_written_once_even_where_it_overlaps_the_bus(
    redis_server: RedisServer,
) -> None:
    sink = open_sink(redis_server.url("s"))
    sink.connect()
    mark = Connected(1.25, 0, False)
    first = chunk(0, "r1", (1.5, [b"a", b"b"]), (1.25, [mark]), (2.5, [b"c"]))
    assert sink.publish(first).written == 4
    assert sink.publish(first).written == 4  # the retry of an answer lost: nothing new
    # numbers 3.. again: c (3) is there already, d and e are not
    assert sink.publish(chunk(3, "r1", (2.5, [b"c"]), (3.0, [b"d", b"e"]))).written == 3
    sink.close()
    got = stream_records(redis_server)
    shown = [r.get(b"d", b"<" + r[b"k"] + b">") for r in got]  # <c>: the Connected marker
    assert shown == [b"a", b"b", b"<c>", b"c", b"d", b"e"]
    assert [r[b"t"] for r in got if r[b"k"] == b"m"] == [b"1.500000"] * 2 + [b"2.500000"] + [
        b"3.000000"
    ] * 2


def test_keyed_runs_are_written_once_across_relays_and_keyless_messages_always(
    redis_server: RedisServer,
) -> None:
    key_of: KeyFunction = lambda raw: None if raw.startswith(b"x") else raw.decode()  # noqa: E731
    sink = open_sink(redis_server.url("s"))
    sink.connect()
    one = sink.publish(chunk(0, "r1", (1.0, [b"1", b"x1", b"2"]), key_of=key_of))
    two = sink.publish(chunk(0, "r2", (1.0, [b"2", b"3", b"x1"]), key_of=key_of))
    sink.close()
    assert (one.written, one.duplicates, two.written, two.duplicates) == (3, 0, 2, 1)
    assert [r[b"d"] for r in stream_records(redis_server)] == [b"1", b"x1", b"2", b"3", b"x1"]


def test_records_the_bus_refuses_are_counted_with_the_first_error(
    redis_server: RedisServer,
) -> None:
    redis.Redis(port=redis_server.port).set("s", "not a stream")
    sink = open_sink(redis_server.url("s"))
    sink.connect()
    result = sink.publish(chunk(0, "r1", (1.0, [b"a", b"b"]), (1.0, [Connected(1.0, 0, False)])))
    sink.close()
    assert (result.written, result.refused) == (0, 3) and "WRONGTYPE" in result.error


def test_the_stream_is_trimmed_once_per_chunk_to_about_maxlen(redis_server: RedisServer) -> None:
    sink = open_sink(redis_server.url("s", maxlen="100"))
    sink.connect()
    for n in range(10):
        sink.publish(chunk(n * 500, "r1", (1.0, [b"%d" % i for i in range(500)])))
    sink.close()
    length = redis.Redis(port=redis_server.port).xlen("s")
    assert 100 <= length < 1000  # whole nodes go (approximate trimming): never below maxlen
