"""The measured clients: one runner per client, each in the fastest form its API allows.

Every runner runs inside a fresh worker process (:mod:`benchmarks.worker`) and offers up
to three measurements:

``stream(url, n, deliver, marks)``
    Connect, send the start frame, then receive ``n`` messages. ``deliver`` says what each
    message must become: ``"json"`` (a dict, parsed with ``orjson``), ``"str"`` (text
    delivered as ``str``) or ``"bytes"`` (the payload as ``bytes``, text frames included
    when the API allows it). ``marks`` is a :class:`Marks`: at each mark (a message count)
    the time, and in the memory scenario the RSS, is sampled; the last mark is ``n``.
    Returns ``(t0, info)`` where ``t0`` is the ``perf_counter`` right after the start frame.
``rtt(url, n, warmup, payload)``
    Send ``payload`` as a binary message, wait for its echo, ``warmup + n`` times; returns
    the latencies (ns) of the last ``n``.
``many(url, conns, per_conn, idle)``
    Open ``conns`` connections to a paced stream, consume ``per_conn`` JSON messages on
    each, then stay connected and idle for ``idle`` seconds; returns process CPU seconds
    while streaming and while idle, and RSS.

Settings everywhere: no compression (the server never offers it anyway), no keepalive
pings, no size limit that could reject a 1 MiB message, no proxy. Beyond that, the
peers keep their defaults (queue sizes, buffers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from benchmarks.payloads import OP_BINARY, OP_CLOSE, TRADE_BLOCK, client_frame, trade_events

loads = orjson.loads
perf_counter = time.perf_counter
perf_counter_ns = time.perf_counter_ns

Info = dict[str, Any]


def rss_kb() -> int:
    """Resident set size of this process in KiB (``VmRSS`` of ``/proc/self/status``)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Marks:
    """Message counts at which a runner samples the clock (and optionally the RSS).

    ``first`` is the first count; ``hit(count)`` records a sample and returns the next
    count, or -1 after the last one (the runner then stops).
    """

    def __init__(self, marks: list[int], sample_rss: bool = False) -> None:
        if not marks or sorted(marks) != marks:
            raise ValueError("marks must be a non-empty ascending list")
        self.marks = marks
        self.index = 0
        self.sample_rss = sample_rss
        self.samples: list[tuple[int, float, int]] = []

    @property
    def first(self) -> int:
        return self.marks[0]

    def hit(self, count: int) -> int:
        self.samples.append((count, perf_counter(), rss_kb() if self.sample_rss else 0))
        self.index += 1
        return self.marks[self.index] if self.index < len(self.marks) else -1


def check_message(msg: object, deliver: str) -> None:
    """Raise if the last message is not what ``deliver`` asks for (catches misconfiguration)."""
    expected = {"json": dict, "str": str, "bytes": bytes}[deliver]
    if not isinstance(msg, expected):
        raise TypeError(f"expected {expected.__name__} messages, got {type(msg).__name__}")


def check_echo(msg: object, payload: bytes) -> None:
    if msg != payload:
        raise ValueError(f"echo mismatch: got {type(msg).__name__} of {len(msg)} bytes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- kstlib


def _kstlib_sync_class() -> Any:
    try:
        from kstlib.websocket import WebSocketManager  # type: ignore[attr-defined]
    except ImportError:
        from kstlib.websocket.manager import WebSocketManager
    return WebSocketManager


def _kstlib_decode(deliver: str) -> str | None:
    return {"json": "json", "str": None, "bytes": "bytes"}[deliver]


def _kstlib_info(ws: Any) -> Info:
    info: Info = {}
    with contextlib.suppress(Exception):
        from kstlib.websocket import codec

        info["codec"] = codec.IMPLEMENTATION
    with contextlib.suppress(Exception):
        stats = ws.stats
        info["messages_received"] = stats.messages_received
        info["messages_dropped"] = stats.messages_dropped
    return info


class KstlibSync:
    name = "kstlib-sync"
    overflow = "block"

    def _manager(self, url: str, decode: str | None) -> Any:
        return _kstlib_sync_class()(
            url,
            decode=decode,
            compression=None,
            ping_interval=None,
            queue_overflow=self.overflow,
        )

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        msg: object = None
        with self._manager(url, _kstlib_decode(deliver)) as ws:
            ws.send(b"go")
            t0 = perf_counter()
            mark = marks.first
            for count, msg in enumerate(ws.stream(), 1):  # noqa: B007 (msg checked below)
                if count == mark:
                    mark = marks.hit(count)
                    if mark < 0:
                        break
            info = _kstlib_info(ws)
        check_message(msg, deliver)
        return t0, info

    def rtt(self, url: str, n: int, warmup: int, payload: bytes) -> tuple[list[int], Info]:
        lat = [0] * n
        with self._manager(url, None) as ws:
            it = iter(ws.stream())
            send = ws.send
            msg: object = None
            for _ in range(warmup):
                send(payload)
                msg = next(it)
            for i in range(n):
                t = perf_counter_ns()
                send(payload)
                msg = next(it)
                lat[i] = perf_counter_ns() - t
            info = _kstlib_info(ws)
        check_echo(msg, payload)
        return lat, info

    def many(self, url: str, conns: int, per_conn: int, idle: float) -> Info:
        with contextlib.ExitStack() as stack:

            def open_one() -> Any:
                return stack.enter_context(self._manager(url, "json"))

            def consume(ws: Any, done: Callable[[], None]) -> None:
                for count, _msg in enumerate(ws.stream(), 1):
                    if count == per_conn:
                        done()

            return _many_threads(
                open_one,
                lambda ws: ws.send(b"go"),
                consume,
                lambda ws: None,
                stack.close,
                conns,
                idle,
            )


class KstlibAsync:
    name = "kstlib-asyncio"

    @staticmethod
    def _manager(url: str, decode: str | None) -> Any:
        from kstlib.websocket.aio import WebSocketManager

        return WebSocketManager(url, decode=decode, compression=None, ping_interval=None)

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        async def run() -> tuple[float, Info, object]:
            msg: object = None
            async with self._manager(url, _kstlib_decode(deliver)) as ws:
                await ws.send(b"go")
                t0 = perf_counter()
                count = 0
                mark = marks.first
                async for msg in ws.stream():  # noqa: B007 (msg checked below)
                    count += 1
                    if count == mark:
                        mark = marks.hit(count)
                        if mark < 0:
                            break
                info = _kstlib_info(ws)
            return t0, info, msg

        t0, info, msg = asyncio.run(run())
        check_message(msg, deliver)
        return t0, info

    def rtt(self, url: str, n: int, warmup: int, payload: bytes) -> tuple[list[int], Info]:
        async def run() -> tuple[list[int], Info, object]:
            lat = [0] * n
            async with self._manager(url, None) as ws:
                it = ws.stream().__aiter__()
                send = ws.send
                msg: object = None
                for _ in range(warmup):
                    await send(payload)
                    msg = await it.__anext__()
                for i in range(n):
                    t = perf_counter_ns()
                    await send(payload)
                    msg = await it.__anext__()
                    lat[i] = perf_counter_ns() - t
                info = _kstlib_info(ws)
            return lat, info, msg

        lat, info, msg = asyncio.run(run())
        check_echo(msg, payload)
        return lat, info

    def many(self, url: str, conns: int, per_conn: int, idle: float) -> Info:
        async def run() -> Info:
            async with contextlib.AsyncExitStack() as stack:

                async def open_one() -> Any:
                    return await stack.enter_async_context(self._manager(url, "json"))

                async def start(ws: Any) -> None:
                    await ws.send(b"go")

                async def consume(ws: Any, done: Callable[[], None]) -> None:
                    count = 0
                    async for _msg in ws.stream():
                        count += 1
                        if count == per_conn:
                            done()

                async def close_one(ws: Any) -> None:
                    return None

                return await _many_async(open_one, start, consume, close_one, conns, idle)

        return asyncio.run(run())


class KstlibConsume(KstlibAsync):
    """The asyncio front's ``consume(handler)``: the handler runs in the event loop's
    reader turn, as picows' ``on_ws_frame`` does (timed scenarios:
    :func:`benchmarks.latency.kstlib_consume`)."""

    name = "kstlib-consume"

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        last: list[object] = [None]

        async def run() -> tuple[float, Info]:
            async with self._manager(url, _kstlib_decode(deliver)) as ws:
                await ws.send(b"go")
                t0 = perf_counter()
                count = 0
                mark = marks.first

                def handler(msg: object) -> None:
                    nonlocal count, mark
                    count += 1
                    if count == mark:
                        mark = marks.hit(count)
                        if mark < 0:
                            last[0] = msg
                            raise _Enough

                with contextlib.suppress(_Enough):
                    await ws.consume(handler)
                info = _kstlib_info(ws)
            return t0, info

        t0, info = asyncio.run(run())
        check_message(last[0], deliver)
        return t0, info

    def rtt(self, url: str, n: int, warmup: int, payload: bytes) -> tuple[list[int], Info]:
        """Each echo's handler sends the next request (``send_nowait``, in its turn)."""
        lat = [0] * n
        last: list[object] = [None]

        async def run() -> Info:
            async with self._manager(url, None) as ws:
                send = ws.send_nowait
                i, t = -warmup, perf_counter_ns()

                def handler(msg: object) -> None:
                    nonlocal i, t
                    if i >= 0:
                        lat[i] = perf_counter_ns() - t
                    i += 1
                    if i == n:
                        last[0] = msg
                        raise _Enough
                    t = perf_counter_ns()
                    send(payload)

                await ws.send(payload)
                with contextlib.suppress(_Enough):
                    await ws.consume(handler)
                return _kstlib_info(ws)

        info = asyncio.run(run())
        check_echo(last[0], payload)
        return lat, info


class _Enough(Exception):
    """Ends a ``consume()`` handler's run once it has its messages."""


class KstlibSyncStamped(KstlibSync):
    """The sync iterator with ``timestamps=True``: each message arrives as
    ``Stamped(message, received_ns)`` (the cost of the stamp, against kstlib-sync)."""

    name = "kstlib-sync-stamped"

    def _manager(self, url: str, decode: str | None) -> Any:
        return _kstlib_sync_class()(
            url, decode=decode, compression=None, ping_interval=None, timestamps=True
        )

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        item: Any = None
        with self._manager(url, _kstlib_decode(deliver)) as ws:
            ws.send(b"go")
            t0 = perf_counter()
            mark = marks.first
            for count, item in enumerate(ws.stream(), 1):  # noqa: B007 (item checked below)
                if count == mark:
                    mark = marks.hit(count)
                    if mark < 0:
                        break
            info = _kstlib_info(ws)
        check_message(item.message, deliver)
        return t0, info


class KstlibMerge(KstlibSync):
    """``merge(*managers)``: one thread reads every connection (the timed scenarios with
    several connections, :func:`benchmarks.latency.kstlib_merge`); with one connection
    it is the sync iterator."""

    name = "kstlib-merge"


class KstlibSyncDrop(KstlibSync):
    """The sync iterator with ``queue_overflow="drop_oldest"`` (JSON throughput only).

    Messages may be dropped when the consumer falls behind, so the loop cannot count to
    ``n``: it stops at the stream's last trade (known in advance, the payloads are
    deterministic) and reports how many were delivered and dropped. The rate is ``n``
    over the time to ingest the whole stream.
    """

    name = "kstlib-sync-drop"
    overflow = "drop_oldest"

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        if deliver != "json" or len(marks.marks) != 1 or n > TRADE_BLOCK:
            raise ValueError("the drop_oldest variant runs the JSON throughput scenario only")
        last_t = loads(trade_events(n)[n - 1])["t"]  # trade ids are unique within a block
        msg: Any = None
        with self._manager(url, "json") as ws:
            ws.send(b"go")
            t0 = perf_counter()
            count = 0
            for msg in ws.stream():
                count += 1
                if msg["t"] == last_t:
                    break
            marks.hit(n)
            info = _kstlib_info(ws)
        check_message(msg, deliver)
        info["delivered"] = count
        return t0, info


# --------------------------------------------------------------------------- websocket-client


class WebsocketClient:
    name = "websocket-client"

    @staticmethod
    def _connect(url: str) -> Any:
        import websocket

        return websocket.create_connection(url, enable_multithread=False, skip_utf8_validation=True)

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        ws = self._connect(url)
        msg: object = None
        try:
            ws.send_binary(b"go")
            t0 = perf_counter()
            count = 0
            mark = marks.first
            if deliver == "json":
                recv_data = ws.recv_data
                while True:
                    msg = loads(recv_data()[1])
                    count += 1
                    if count == mark:
                        mark = marks.hit(count)
                        if mark < 0:
                            break
            elif deliver == "str":
                recv = ws.recv
                while True:
                    msg = recv()
                    count += 1
                    if count == mark:
                        mark = marks.hit(count)
                        if mark < 0:
                            break
            else:
                recv_data = ws.recv_data
                while True:
                    msg = recv_data()[1]
                    count += 1
                    if count == mark:
                        mark = marks.hit(count)
                        if mark < 0:
                            break
        finally:
            ws.close()
        check_message(msg, deliver)
        return t0, {}

    def rtt(self, url: str, n: int, warmup: int, payload: bytes) -> tuple[list[int], Info]:
        lat = [0] * n
        ws = self._connect(url)
        try:
            send = ws.send_binary
            recv = ws.recv
            msg: object = None
            for _ in range(warmup):
                send(payload)
                msg = recv()
            for i in range(n):
                t = perf_counter_ns()
                send(payload)
                msg = recv()
                lat[i] = perf_counter_ns() - t
        finally:
            ws.close()
        check_echo(msg, payload)
        return lat, {}

    def many(self, url: str, conns: int, per_conn: int, idle: float) -> Info:
        def consume(ws: Any, done: Callable[[], None]) -> None:
            count = 0
            recv_data = ws.recv_data
            while True:
                _msg = loads(recv_data()[1])
                count += 1
                if count == per_conn:
                    done()

        return _many_threads(
            lambda: self._connect(url),
            lambda ws: ws.send_binary(b"go"),
            consume,
            lambda ws: ws.abort(),
            lambda: None,
            conns,
            idle,
        )


# --------------------------------------------------------------------------- websockets


_WEBSOCKETS_OPTIONS: dict[str, Any] = {
    "compression": None,
    "ping_interval": None,
    "max_size": None,
    "proxy": None,
}


class WebsocketsSync:
    name = "websockets-sync"

    @staticmethod
    def _connect(url: str) -> Any:
        from websockets.sync.client import connect

        return connect(url, **_WEBSOCKETS_OPTIONS)

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        msg: object = None
        with self._connect(url) as ws:
            ws.send(b"go")
            t0 = perf_counter()
            count = 0
            mark = marks.first
            recv = ws.recv
            if deliver == "json":
                while True:
                    msg = loads(recv(decode=False))
                    count += 1
                    if count == mark:
                        mark = marks.hit(count)
                        if mark < 0:
                            break
            else:
                decode = deliver == "str"
                while True:
                    msg = recv(decode=decode)
                    count += 1
                    if count == mark:
                        mark = marks.hit(count)
                        if mark < 0:
                            break
        check_message(msg, deliver)
        return t0, {}

    def rtt(self, url: str, n: int, warmup: int, payload: bytes) -> tuple[list[int], Info]:
        lat = [0] * n
        msg: object = None
        with self._connect(url) as ws:
            send = ws.send
            recv = ws.recv
            for _ in range(warmup):
                send(payload)
                msg = recv()
            for i in range(n):
                t = perf_counter_ns()
                send(payload)
                msg = recv()
                lat[i] = perf_counter_ns() - t
        check_echo(msg, payload)
        return lat, {}

    def many(self, url: str, conns: int, per_conn: int, idle: float) -> Info:
        def consume(ws: Any, done: Callable[[], None]) -> None:
            count = 0
            recv = ws.recv
            while True:
                _msg = loads(recv(decode=False))
                count += 1
                if count == per_conn:
                    done()

        return _many_threads(
            lambda: self._connect(url),
            lambda ws: ws.send(b"go"),
            consume,
            lambda ws: ws.close(),
            lambda: None,
            conns,
            idle,
        )


class WebsocketsAsync:
    name = "websockets-asyncio"

    @staticmethod
    def _connect(url: str) -> Any:
        from websockets.asyncio.client import connect

        return connect(url, **_WEBSOCKETS_OPTIONS)

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        async def run() -> tuple[float, object]:
            msg: object = None
            async with self._connect(url) as ws:
                await ws.send(b"go")
                t0 = perf_counter()
                count = 0
                mark = marks.first
                recv = ws.recv
                if deliver == "json":
                    while True:
                        msg = loads(await recv(decode=False))
                        count += 1
                        if count == mark:
                            mark = marks.hit(count)
                            if mark < 0:
                                break
                else:
                    decode = deliver == "str"
                    while True:
                        msg = await recv(decode=decode)
                        count += 1
                        if count == mark:
                            mark = marks.hit(count)
                            if mark < 0:
                                break
            return t0, msg

        t0, msg = asyncio.run(run())
        check_message(msg, deliver)
        return t0, {}

    def rtt(self, url: str, n: int, warmup: int, payload: bytes) -> tuple[list[int], Info]:
        async def run() -> tuple[list[int], object]:
            lat = [0] * n
            msg: object = None
            async with self._connect(url) as ws:
                send = ws.send
                recv = ws.recv
                for _ in range(warmup):
                    await send(payload)
                    msg = await recv()
                for i in range(n):
                    t = perf_counter_ns()
                    await send(payload)
                    msg = await recv()
                    lat[i] = perf_counter_ns() - t
            return lat, msg

        lat, msg = asyncio.run(run())
        check_echo(msg, payload)
        return lat, {}

    def many(self, url: str, conns: int, per_conn: int, idle: float) -> Info:
        async def run() -> Info:
            async def open_one() -> Any:
                return await self._connect(url)

            async def start(ws: Any) -> None:
                await ws.send(b"go")

            async def consume(ws: Any, done: Callable[[], None]) -> None:
                count = 0
                recv = ws.recv
                while True:
                    _msg = loads(await recv(decode=False))
                    count += 1
                    if count == per_conn:
                        done()

            async def close_one(ws: Any) -> None:
                await ws.close()

            return await _many_async(open_one, start, consume, close_one, conns, idle)

        return asyncio.run(run())


# --------------------------------------------------------------------------- aiohttp


class Aiohttp:
    name = "aiohttp"

    @staticmethod
    def _connect(session: Any, url: str, decode_text: bool) -> Any:
        return session.ws_connect(
            url,
            compress=0,
            autoping=True,
            heartbeat=None,
            max_msg_size=0,
            decode_text=decode_text,
        )

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        import aiohttp

        async def run() -> tuple[float, object]:
            msg: object = None
            async with (
                aiohttp.ClientSession() as session,
                self._connect(session, url, deliver == "str") as ws,
            ):
                await ws.send_bytes(b"go")
                t0 = perf_counter()
                count = 0
                mark = marks.first
                receive = ws.receive
                if deliver == "json":
                    while True:
                        msg = loads((await receive()).data)
                        count += 1
                        if count == mark:
                            mark = marks.hit(count)
                            if mark < 0:
                                break
                else:
                    while True:
                        m = await receive()
                        msg = m.data
                        count += 1
                        if count == mark:
                            mark = marks.hit(count)
                            if mark < 0:
                                if m.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                                    raise RuntimeError(f"unexpected message {m.type!r}")
                                break
            return t0, msg

        t0, msg = asyncio.run(run())
        check_message(msg, deliver)
        return t0, {}

    def rtt(self, url: str, n: int, warmup: int, payload: bytes) -> tuple[list[int], Info]:
        import aiohttp

        async def run() -> tuple[list[int], object]:
            lat = [0] * n
            msg: object = None
            async with (
                aiohttp.ClientSession() as session,
                self._connect(session, url, True) as ws,
            ):
                send = ws.send_bytes
                receive = ws.receive
                for _ in range(warmup):
                    await send(payload)
                    msg = (await receive()).data
                for i in range(n):
                    t = perf_counter_ns()
                    await send(payload)
                    msg = (await receive()).data
                    lat[i] = perf_counter_ns() - t
            return lat, msg

        lat, msg = asyncio.run(run())
        check_echo(msg, payload)
        return lat, {}

    def many(self, url: str, conns: int, per_conn: int, idle: float) -> Info:
        import aiohttp

        async def run() -> Info:
            async with aiohttp.ClientSession() as session:

                async def open_one() -> Any:
                    return await self._connect(session, url, False)

                async def start(ws: Any) -> None:
                    await ws.send_bytes(b"go")

                async def consume(ws: Any, done: Callable[[], None]) -> None:
                    count = 0
                    receive = ws.receive
                    while True:
                        _msg = loads((await receive()).data)
                        count += 1
                        if count == per_conn:
                            done()

                async def close_one(ws: Any) -> None:
                    await ws.close()

                return await _many_async(open_one, start, consume, close_one, conns, idle)

        return asyncio.run(run())


# --------------------------------------------------------------------------- picows


def _picows_listener_classes() -> dict[str, type]:
    """picows listeners, one per delivery so that ``on_ws_frame`` has no branch."""
    from picows import WSListener, WSMsgType

    class Base(WSListener):  # type: ignore[misc]
        def __init__(self, marks: Marks | None, done: asyncio.Future[None]) -> None:
            super().__init__()
            self.marks = marks
            self.mark = marks.first if marks is not None else 0
            self.done = done
            self.count = 0
            self.msg: object = None
            self.transport: Any = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def reached(self) -> None:
            assert self.marks is not None
            self.mark = self.marks.hit(self.count)
            if self.mark < 0 and not self.done.done():
                self.done.set_result(None)

        def on_ws_disconnected(self, transport: Any) -> None:
            if not self.done.done():
                self.done.set_exception(ConnectionError("picows: disconnected early"))

    class Json(Base):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            self.msg = loads(frame.get_payload_as_memoryview())
            self.count += 1
            if self.count == self.mark:
                self.reached()

    class Str(Base):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            self.msg = frame.get_payload_as_utf8_text()
            self.count += 1
            if self.count == self.mark:
                self.reached()

    class Bytes(Base):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            self.msg = frame.get_payload_as_bytes()
            self.count += 1
            if self.count == self.mark:
                self.reached()

    class Echo(Base):
        """Round trips driven from the callback: send the next request on each echo."""

        n = 0
        warmup = 0
        payload = b""
        lat: list[int]
        sent_at = 0

        def send_next(self) -> None:
            self.sent_at = perf_counter_ns()
            self.transport.send(WSMsgType.BINARY, self.payload)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            now = perf_counter_ns()
            self.msg = frame.get_payload_as_bytes()
            i = self.count - self.warmup
            if i >= 0:
                self.lat[i] = now - self.sent_at
            self.count += 1
            if self.count == self.warmup + self.n:
                if not self.done.done():
                    self.done.set_result(None)
            else:
                self.send_next()

    class Many(Base):
        per_conn = 0
        on_done: Callable[[], None]

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            self.msg = loads(frame.get_payload_as_memoryview())
            self.count += 1
            if self.count == self.per_conn:
                self.on_done()

        def on_ws_disconnected(self, transport: Any) -> None:
            return None

    return {"json": Json, "str": Str, "bytes": Bytes, "echo": Echo, "many": Many}


class Picows:
    name = "picows"

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        from picows import WSMsgType, ws_connect

        cls = _picows_listener_classes()[deliver]

        async def run() -> tuple[float, object]:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            transport, listener = await ws_connect(lambda: cls(marks, done), url)
            transport.send(WSMsgType.BINARY, b"go")
            t0 = perf_counter()
            try:
                await done
            finally:
                transport.send_close()
                transport.disconnect()
                await transport.wait_disconnected()
            return t0, listener.msg

        t0, msg = asyncio.run(run())
        check_message(msg, deliver)
        return t0, {}

    def rtt(self, url: str, n: int, warmup: int, payload: bytes) -> tuple[list[int], Info]:
        from picows import ws_connect

        cls: Any = _picows_listener_classes()["echo"]

        async def run() -> tuple[list[int], object]:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def factory() -> Any:
                listener = cls(None, done)
                listener.n, listener.warmup, listener.payload = n, warmup, payload
                listener.lat = [0] * n
                return listener

            transport, listener = await ws_connect(factory, url)
            listener.send_next()
            try:
                await done
            finally:
                transport.send_close()
                transport.disconnect()
                await transport.wait_disconnected()
            return listener.lat, listener.msg

        lat, msg = asyncio.run(run())
        check_echo(msg, payload)
        return lat, {}

    def many(self, url: str, conns: int, per_conn: int, idle: float) -> Info:
        from picows import WSMsgType, ws_connect

        cls: Any = _picows_listener_classes()["many"]

        async def run() -> Info:
            loop = asyncio.get_running_loop()
            listeners: list[Any] = []

            async def open_one() -> Any:
                def factory() -> Any:
                    listener = cls(None, loop.create_future())
                    listener.per_conn = per_conn
                    listeners.append(listener)
                    return listener

                transport, _listener = await ws_connect(factory, url)
                return transport

            async def start(transport: Any) -> None:
                transport.send(WSMsgType.BINARY, b"go")

            async def close_one(transport: Any) -> None:
                transport.send_close()
                transport.disconnect()
                await transport.wait_disconnected()

            def attach(done: Callable[[], None]) -> None:
                for listener in listeners:
                    listener.on_done = done

            return await _many_async(
                open_one, start, None, close_one, conns, idle, attach_done=attach
            )

        return asyncio.run(run())


# --------------------------------------------------------------------------- floors


def raw_connect(url: str) -> tuple[socket.socket, dict[str, str], bytes]:
    """Open a WebSocket by hand on a plain socket: ``(sock, response headers, extra bytes)``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    sock.sendall(
        (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("handshake: EOF")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if " 101 " not in lines[0] + " ":
        raise ConnectionError(f"handshake refused: {lines[0]}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return sock, headers, rest


def raw_close(sock: socket.socket) -> None:
    """Send a close frame and wait for the server's EOF."""
    with contextlib.suppress(OSError):
        sock.sendall(client_frame(OP_CLOSE, b"\x03\xe8"))
        sock.settimeout(10)
        while sock.recv(1 << 20):
            pass
    sock.close()


class TransportFloor:
    """A plain ``recv_into`` loop over the same byte stream: no framing, no objects."""

    name = "transport-floor"

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        sock, headers, rest = raw_connect(url)
        try:
            total = int(headers["x-bench-bytes"])
            buf = bytearray(1 << 20)
            recv_into = sock.recv_into
            sock.sendall(client_frame(OP_BINARY, b"go"))
            t0 = perf_counter()
            got = len(rest)
            while got < total:
                r = recv_into(buf)
                if not r:
                    raise ConnectionError("EOF before the end of the stream")
                got += r
            marks.samples.append((n, perf_counter(), 0))
        finally:
            raw_close(sock)
        return t0, {"bytes": total}

    def rtt(self, url: str, n: int, warmup: int, payload: bytes) -> tuple[list[int], Info]:
        sock, _headers, _rest = raw_connect(url)
        lat = [0] * n
        try:
            frame = client_frame(OP_BINARY, payload)
            expect = len(payload) + (2 if len(payload) < 126 else 4)
            buf = bytearray(expect)
            view = memoryview(buf)
            sendall = sock.sendall
            recv_into = sock.recv_into

            def one() -> None:
                sendall(frame)
                got = 0
                while got < expect:
                    r = recv_into(view[got:])
                    if not r:
                        raise ConnectionError("EOF")
                    got += r

            for _ in range(warmup):
                one()
            for i in range(n):
                t = perf_counter_ns()
                one()
                lat[i] = perf_counter_ns() - t
        finally:
            raw_close(sock)
        check_echo(bytes(buf[expect - len(payload) :]), payload)
        return lat, {}


class JsonFloor:
    """``orjson.loads`` alone over the very same payload bytes (no I/O)."""

    name = "orjson-floor"

    def stream(self, url: str, n: int, deliver: str, marks: Marks) -> tuple[float, Info]:
        if deliver != "json":
            raise ValueError("the JSON floor only applies to the JSON scenario")
        payloads = trade_events(min(n, TRADE_BLOCK))
        whole, rest = divmod(n, len(payloads))
        msg: object = None
        t0 = perf_counter()
        for _ in range(whole):
            for p in payloads:
                msg = loads(p)
        for p in payloads[:rest]:
            msg = loads(p)
        marks.samples.append((n, perf_counter(), 0))
        check_message(msg, deliver)
        return t0, {}


# --------------------------------------------------------------------------- many helpers


def _many_threads(
    open_one: Callable[[], Any],
    start: Callable[[Any], None],
    consume: Callable[[Any, Callable[[], None]], None],
    wake: Callable[[Any], None],
    close_all: Callable[[], None],
    conns: int,
    idle: float,
) -> Info:
    """Many connections with one consumer thread each (the sync clients)."""
    rss0 = rss_kb()
    handles = [open_one() for _ in range(conns)]
    lock = threading.Lock()
    finished = threading.Event()
    remaining = [conns]
    errors: list[str] = []

    def done() -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                finished.set()

    def run(handle: Any) -> None:
        try:
            consume(handle, done)
        except Exception as exc:  # the teardown ends every consumer with an error
            if not finished.is_set():
                errors.append(f"{type(exc).__name__}: {exc}")
                finished.set()

    threads = [threading.Thread(target=run, args=(h,), daemon=True) for h in handles]
    for t in threads:
        t.start()
    try:
        return _many_measure(lambda: [start(h) for h in handles], finished.wait, idle, rss0, errors)
    finally:
        for h in handles:
            with contextlib.suppress(Exception):
                wake(h)
        close_all()
        for t in threads:
            t.join(10)


def _many_measure(
    start_all: Callable[[], object],
    wait: Callable[[float], bool],
    idle: float,
    rss0: int,
    errors: list[str],
) -> Info:
    cpu0 = time.process_time()
    t0 = perf_counter()
    start_all()
    if not wait(600) or errors:
        raise RuntimeError(errors[0] if errors else "timed out waiting for the paced messages")
    cpu1 = time.process_time()
    t1 = perf_counter()
    time.sleep(0.5)
    cpu2 = time.process_time()
    time.sleep(idle)
    cpu3 = time.process_time()
    return {
        "stream_cpu": cpu1 - cpu0,
        "stream_seconds": t1 - t0,
        "idle_cpu": cpu3 - cpu2,
        "idle_seconds": idle,
        "rss_kb": rss_kb(),
        "rss_growth_kb": rss_kb() - rss0,
    }


async def _many_async(
    open_one: Callable[[], Any],
    start: Callable[[Any], Any],
    consume: Callable[[Any, Callable[[], None]], Any] | None,
    close_one: Callable[[Any], Any],
    conns: int,
    idle: float,
    attach_done: Callable[[Callable[[], None]], None] | None = None,
) -> Info:
    """Many connections on one event loop, one consumer task each (the asyncio clients)."""
    rss0 = rss_kb()
    handles = [await open_one() for _ in range(conns)]
    finished = asyncio.Event()
    remaining = [conns]
    errors: list[str] = []

    def done() -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            finished.set()

    async def run(handle: Any) -> None:
        assert consume is not None
        try:
            await consume(handle, done)
        except Exception as exc:
            if not finished.is_set():
                errors.append(f"{type(exc).__name__}: {exc}")
                finished.set()

    tasks = [asyncio.ensure_future(run(h)) for h in handles] if consume is not None else []
    if attach_done is not None:
        attach_done(done)
    try:
        cpu0 = time.process_time()
        t0 = perf_counter()
        for h in handles:
            await start(h)
        try:
            await asyncio.wait_for(finished.wait(), 600)
        except asyncio.TimeoutError:
            errors.append("timed out waiting for the paced messages")
        if errors:
            raise RuntimeError(errors[0])
        cpu1 = time.process_time()
        t1 = perf_counter()
        await asyncio.sleep(0.5)
        cpu2 = time.process_time()
        await asyncio.sleep(idle)
        cpu3 = time.process_time()
        return {
            "stream_cpu": cpu1 - cpu0,
            "stream_seconds": t1 - t0,
            "idle_cpu": cpu3 - cpu2,
            "idle_seconds": idle,
            "rss_kb": rss_kb(),
            "rss_growth_kb": rss_kb() - rss0,
        }
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for h in handles:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_one(h), 10)


RUNNERS: dict[str, Any] = {
    cls.name: cls
    for cls in (
        KstlibSync,
        KstlibAsync,
        KstlibSyncDrop,
        KstlibSyncStamped,
        KstlibMerge,
        KstlibConsume,
        WebsocketClient,
        WebsocketsSync,
        WebsocketsAsync,
        Aiohttp,
        Picows,
        TransportFloor,
        JsonFloor,
    )
}

OURS = (
    "kstlib-sync",
    "kstlib-asyncio",
    "kstlib-consume",
    "kstlib-sync-drop",
    "kstlib-sync-stamped",
)
PEERS = ("websocket-client", "websockets-sync", "websockets-asyncio", "aiohttp", "picows")
FLOORS = ("orjson-floor", "transport-floor")


def iter_runner_names() -> Iterator[str]:
    yield from RUNNERS
