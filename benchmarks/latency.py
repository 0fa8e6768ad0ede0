"""The latency scenarios, client side: paced, time-stamped trade events (issue 12).

Every runner opens ``conns`` connections to one ``/timed`` group of the server
(:mod:`benchmarks.server`), sends the start frame on each, and receives ``count`` messages
on each. For every message it records, the moment its consumer holds the decoded dict,
``time.monotonic_ns()`` beside the event's ``"E"``: the server's ``time.monotonic_ns()``
taken just before the write (:class:`benchmarks.payloads.StampedEvents`). The difference
is the one-way latency: server write, loopback, the client's wake-up, read, framing, JSON
decoding and its hand-off to the consumer.

The first ``warm`` messages of each connection are a warm-up. When connection 0's
consumer holds its ``warm``-th message, the measurement window opens: process CPU time
(``time.process_time``: every thread of the process, user + sys; for kstlib the engine
thread and the consumer together), the consumer thread's own CPU
(``time.thread_time``), and context switches (``getrusage``). It closes when the last
connection received its last message. Messages stamped after the window opened are the
measured ones.

Each client is used in the form a trading strategy would use it, parsing with orjson:
the sync clients run one consumer thread per connection (for one connection, the main
thread), the asyncio clients one task per connection on the default event loop, picows
its ``on_ws_frame`` callback. ``transport-floor`` is a plain blocking socket (``epoll``
over the sockets for several connections) that frames by hand and parses with orjson:
what a single thread costs with no WebSocket library at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from benchmarks.clients import _Enough, _kstlib_sync_class
from benchmarks.payloads import OP_BINARY, client_frame

loads = orjson.loads
monotonic_ns = time.monotonic_ns

#: Seconds a measurement may take beyond its schedule before it counts as hung.
GRACE = 60.0


class Recorder:
    """Receive times and stamps per connection, and the CPU of the measurement window."""

    def __init__(self, conns: int, count: int, warm: int, seconds: float) -> None:
        if not 0 < warm < count:
            raise ValueError("need 0 < warm < count")
        self.conns = conns
        self.count = count
        self.warm = warm
        self.timeout = seconds + GRACE
        self.recv: list[list[int]] = [[] for _ in range(conns)]
        self.stamp: list[list[int]] = [[] for _ in range(conns)]
        self.window: dict[str, float] = {}
        self.errors: list[str] = []
        self.done = threading.Event()
        #: Called (on the finishing thread) once every connection is done or one failed.
        self.wake: Callable[[], None] | None = None
        self._remaining = conns
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open the window (connection 0 holds its ``warm``-th message)."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.window.update(
            t0=monotonic_ns(),
            cpu0=time.process_time(),
            thread0=time.thread_time(),
            nvcsw0=ru.ru_nvcsw,
            nivcsw0=ru.ru_nivcsw,
        )

    def finish(self) -> None:
        """One connection received its ``count`` messages; the last one closes the window."""
        with self._lock:
            self._remaining -= 1
            if self._remaining:
                return
        cpu1, thread1 = time.process_time(), time.thread_time()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.window.update(
            t1=monotonic_ns(),
            cpu1=cpu1,
            thread1=thread1,
            nvcsw1=ru.ru_nvcsw,
            nivcsw1=ru.ru_nivcsw,
        )
        self._signal()

    def fail(self, exc: BaseException) -> None:
        self.errors.append(f"{type(exc).__name__}: {exc}")
        self._signal()

    def _signal(self) -> None:
        self.done.set()
        if self.wake is not None:
            self.wake()

    def check(self) -> None:
        if self.errors:
            raise RuntimeError(self.errors[0])
        if "t1" not in self.window:
            raise RuntimeError("the measurement window never closed")


def _drive_threads(
    handles: list[Any],
    start: Callable[[Any], object],
    consume: Callable[[int, Any], None],
    rec: Recorder,
) -> None:
    """One consumer per connection: the main thread for one, else one thread each."""
    if len(handles) == 1:
        start(handles[0])
        consume(0, handles[0])
        rec.check()
        return

    def run(i: int, handle: Any) -> None:
        try:
            consume(i, handle)
        except Exception as exc:
            rec.fail(exc)

    threads = [
        threading.Thread(target=run, args=(i, h), daemon=True) for i, h in enumerate(handles)
    ]
    for t in threads:
        t.start()
    for h in handles:
        start(h)
    if not rec.done.wait(rec.timeout):
        raise TimeoutError("timed out waiting for the paced messages")
    rec.check()
    for t in threads:
        t.join(10)


async def _drive_tasks(
    handles: list[Any],
    start: Callable[[Any], Awaitable[object]],
    consume: Callable[[int, Any], Awaitable[None]],
    rec: Recorder,
) -> None:
    """One consumer task per connection on the running loop."""
    tasks = [asyncio.ensure_future(consume(i, h)) for i, h in enumerate(handles)]
    try:
        for h in handles:
            await start(h)
        await asyncio.wait_for(asyncio.gather(*tasks), rec.timeout)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    rec.check()


# --------------------------------------------------------------------------- kstlib


def _kstlib_managers(stack: contextlib.ExitStack, url: str, conns: int) -> list[Any]:
    """``conns`` sync managers as every kstlib runner opens them, closed with ``stack``."""
    manager = _kstlib_sync_class()
    return [
        stack.enter_context(manager(url, decode="json", compression=None, ping_interval=None))
        for _ in range(conns)
    ]


def kstlib_sync(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    rec = Recorder(conns, count, warm, seconds)

    def consume(i: int, ws: Any) -> None:
        recv, stamp, now = rec.recv[i].append, rec.stamp[i].append, monotonic_ns
        opens = warm if i == 0 else -1
        for n, msg in enumerate(ws.stream(), 1):
            recv(now())
            stamp(msg["E"])
            if n == opens:
                rec.open()
            if n == count:
                break
        rec.finish()

    with contextlib.ExitStack() as stack:
        handles = _kstlib_managers(stack, url, conns)
        _drive_threads(handles, lambda ws: ws.send(b"go"), consume, rec)
    return rec


def kstlib_merge(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    """Every connection read by one thread through ``merge()``."""
    from kstlib.websocket.merging import merge

    rec = Recorder(conns, count, warm, seconds)
    with contextlib.ExitStack() as stack:
        handles = _kstlib_managers(stack, url, conns)
        index = {id(ws): i for i, ws in enumerate(handles)}
        left = [count] * conns
        for ws in handles:
            ws.send(b"go")
        for source, msg in merge(*handles):
            i = index[id(source)]
            rec.recv[i].append(monotonic_ns())
            rec.stamp[i].append(msg["E"])
            left[i] -= 1
            if i == 0 and left[0] == count - warm:
                rec.open()
            if not left[i]:
                rec.finish()
                if rec.done.is_set():
                    break
    rec.check()
    return rec


def kstlib_asyncio(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    rec = Recorder(conns, count, warm, seconds)

    async def consume(i: int, ws: Any) -> None:
        recv, stamp, now = rec.recv[i].append, rec.stamp[i].append, monotonic_ns
        opens = warm if i == 0 else -1
        n = 0
        async for msg in ws.stream():
            recv(now())
            stamp(msg["E"])
            n += 1
            if n == opens:
                rec.open()
            if n == count:
                break
        rec.finish()

    _kstlib_tasks(url, conns, consume, rec)
    return rec


def kstlib_consume(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    """The asyncio front's ``consume(handler)``: the handler runs in the loop's reader turn
    (picows' ``on_ws_frame`` model)."""
    rec = Recorder(conns, count, warm, seconds)

    async def consume(i: int, ws: Any) -> None:
        recv, stamp, now = rec.recv[i].append, rec.stamp[i].append, monotonic_ns
        opens = warm if i == 0 else -1
        n = 0

        def handler(msg: Any) -> None:
            nonlocal n
            recv(now())
            stamp(msg["E"])
            n += 1
            if n == opens:
                rec.open()
            if n == count:
                raise _Enough

        with contextlib.suppress(_Enough):
            await ws.consume(handler)
        rec.finish()

    _kstlib_tasks(url, conns, consume, rec)
    return rec


def _kstlib_tasks(
    url: str, conns: int, consume: Callable[[int, Any], Awaitable[None]], rec: Recorder
) -> None:
    """``conns`` asyncio managers, one ``consume`` task each, on a new event loop."""
    from kstlib.websocket.aio import WebSocketManager

    async def start(ws: Any) -> None:
        await ws.send(b"go")

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack:
            handles = [
                await stack.enter_async_context(
                    WebSocketManager(url, decode="json", compression=None, ping_interval=None)
                )
                for _ in range(conns)
            ]
            await _drive_tasks(handles, start, consume, rec)

    asyncio.run(run())


# --------------------------------------------------------------------------- peers


def websocket_client(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    from benchmarks.clients import WebsocketClient

    rec = Recorder(conns, count, warm, seconds)

    def consume(i: int, ws: Any) -> None:
        recv, stamp, now = rec.recv[i].append, rec.stamp[i].append, monotonic_ns
        recv_data = ws.recv_data
        opens = warm if i == 0 else -1
        n = 0
        while n < count:
            msg = loads(recv_data()[1])
            recv(now())
            stamp(msg["E"])
            n += 1
            if n == opens:
                rec.open()
        rec.finish()

    handles: list[Any] = []
    try:
        for _ in range(conns):
            handles.append(WebsocketClient._connect(url))
        _drive_threads(handles, lambda ws: ws.send_binary(b"go"), consume, rec)
    finally:
        for ws in handles:
            with contextlib.suppress(Exception):
                ws.close()
    return rec


def websockets_sync(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    from benchmarks.clients import WebsocketsSync

    rec = Recorder(conns, count, warm, seconds)

    def consume(i: int, ws: Any) -> None:
        recv, stamp, now = rec.recv[i].append, rec.stamp[i].append, monotonic_ns
        receive = ws.recv
        opens = warm if i == 0 else -1
        n = 0
        while n < count:
            msg = loads(receive(decode=False))
            recv(now())
            stamp(msg["E"])
            n += 1
            if n == opens:
                rec.open()
        rec.finish()

    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(WebsocketsSync._connect(url)) for _ in range(conns)]
        _drive_threads(handles, lambda ws: ws.send(b"go"), consume, rec)
    return rec


def websockets_asyncio(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    from benchmarks.clients import WebsocketsAsync

    rec = Recorder(conns, count, warm, seconds)

    async def consume(i: int, ws: Any) -> None:
        recv, stamp, now = rec.recv[i].append, rec.stamp[i].append, monotonic_ns
        receive = ws.recv
        opens = warm if i == 0 else -1
        n = 0
        while n < count:
            msg = loads(await receive(decode=False))
            recv(now())
            stamp(msg["E"])
            n += 1
            if n == opens:
                rec.open()
        rec.finish()

    async def start(ws: Any) -> None:
        await ws.send(b"go")

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack:
            handles = [
                await stack.enter_async_context(WebsocketsAsync._connect(url)) for _ in range(conns)
            ]
            await _drive_tasks(handles, start, consume, rec)

    asyncio.run(run())
    return rec


def aiohttp_client(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    import aiohttp

    from benchmarks.clients import Aiohttp

    rec = Recorder(conns, count, warm, seconds)

    async def consume(i: int, ws: Any) -> None:
        recv, stamp, now = rec.recv[i].append, rec.stamp[i].append, monotonic_ns
        receive = ws.receive
        opens = warm if i == 0 else -1
        n = 0
        while n < count:
            msg = loads((await receive()).data)
            recv(now())
            stamp(msg["E"])
            n += 1
            if n == opens:
                rec.open()
        rec.finish()

    async def start(ws: Any) -> None:
        await ws.send_bytes(b"go")

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack:
            connector = aiohttp.TCPConnector(limit=0)  # its default holds 100 connections
            session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
            handles = [
                await stack.enter_async_context(Aiohttp._connect(session, url, False))
                for _ in range(conns)
            ]
            await _drive_tasks(handles, start, consume, rec)

    asyncio.run(run())
    return rec


def picows_client(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    from picows import WSListener, WSMsgType, ws_connect

    rec = Recorder(conns, count, warm, seconds)
    text = WSMsgType.TEXT

    class Listener(WSListener):
        def __init__(self, i: int) -> None:
            super().__init__()
            self.recv, self.stamp = rec.recv[i].append, rec.stamp[i].append
            self.opens = warm if i == 0 else -1
            self.n = 0

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not text:
                return
            msg = loads(frame.get_payload_as_memoryview())
            self.recv(monotonic_ns())
            self.stamp(msg["E"])
            self.n += 1
            if self.n == self.opens:
                rec.open()
            if self.n == count:
                rec.finish()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        rec.wake = wake
        transports: list[Any] = []
        try:
            for i in range(conns):
                transport, _listener = await ws_connect(lambda i=i: Listener(i), url)
                transports.append(transport)
            for transport in transports:
                transport.send(WSMsgType.BINARY, b"go")
            await asyncio.wait_for(done, rec.timeout)
        finally:
            for transport in transports:
                with contextlib.suppress(Exception):
                    transport.send_close()
                    transport.disconnect()
                    await asyncio.wait_for(transport.wait_disconnected(), 10)
        rec.check()

    asyncio.run(run())
    return rec


# --------------------------------------------------------------------------- floor


class _FloorConn:
    """Hand framing of unmasked server frames from a growing buffer, orjson per message."""

    def __init__(self, rec: Recorder, i: int, rest: bytes) -> None:
        self.rec = rec
        self.buf = bytearray(rest)
        self.recv, self.stamp = rec.recv[i].append, rec.stamp[i].append
        self.opens = rec.warm if i == 0 else -1
        self.count = rec.count
        self.n = 0

    def feed(self, data: bytes) -> bool:
        """Take ``data`` in, deliver every complete frame; True once ``count`` arrived."""
        buf = self.buf
        buf += data
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            msg = loads(buf[start:end])
            self.recv(monotonic_ns())
            self.stamp(msg["E"])
            self.n += 1
            if self.n == self.opens:
                self.rec.open()
            pos = end
            if self.n == self.count:
                break
        del buf[:pos]
        if self.n == self.count:
            self.rec.finish()
            return True
        return False


def transport_floor(url: str, conns: int, count: int, warm: int, seconds: float) -> Recorder:
    from benchmarks.clients import raw_close, raw_connect

    rec = Recorder(conns, count, warm, seconds)
    go = client_frame(OP_BINARY, b"go")
    socks: list[socket.socket] = []
    try:
        states = []
        for i in range(conns):
            sock, _headers, rest = raw_connect(url)
            socks.append(sock)
            states.append(_FloorConn(rec, i, rest))
        if conns == 1:
            sock, state = socks[0], states[0]
            sock.sendall(go)  # blocking, no timeout: a bare recv per read (no poll)
            recv = sock.recv
            while not state.feed(recv(262144) or _eof()):
                pass
        else:
            poller = select.epoll()
            by_fd = {}
            for sock, state in zip(socks, states, strict=True):
                sock.sendall(go)
                sock.setblocking(False)
                poller.register(sock.fileno(), select.EPOLLIN)
                by_fd[sock.fileno()] = (sock.recv, state)
            active = conns
            deadline = time.monotonic() + rec.timeout
            while active:
                events = poller.poll(1.0)
                if not events and time.monotonic() > deadline:
                    raise TimeoutError("timed out waiting for the paced messages")
                for fd, _mask in events:
                    recv, state = by_fd[fd]
                    if state.feed(recv(262144) or _eof()):
                        poller.unregister(fd)
                        active -= 1
            poller.close()
        rec.check()
    finally:
        for sock in socks:
            raw_close(sock)
    return rec


def _eof() -> bytes:
    raise ConnectionError("EOF before the end of the timed stream")


#: Runner name (as in :data:`benchmarks.clients.RUNNERS`) to its timed measurement.
TIMED: dict[str, Callable[[str, int, int, int, float], Recorder]] = {
    "kstlib-sync": kstlib_sync,
    "kstlib-asyncio": kstlib_asyncio,
    "kstlib-merge": kstlib_merge,
    "kstlib-consume": kstlib_consume,
    "websocket-client": websocket_client,
    "websockets-sync": websockets_sync,
    "websockets-asyncio": websockets_asyncio,
    "aiohttp": aiohttp_client,
    "picows": picows_client,
    "transport-floor": transport_floor,
}


# --------------------------------------------------------------------------- statistics


def _pct(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list, in µs."""
    if not sorted_ns:
        return float("nan")
    k = min(len(sorted_ns) - 1, max(0, round(q / 100 * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[k] / 1000


def summarize_run(rec: Recorder, burst: int) -> dict[str, Any]:
    """The numbers of one measurement: latency percentiles (µs), CPU, context switches."""
    w = rec.window
    t0 = w["t0"]
    for i, got in enumerate(rec.recv):
        if len(got) != rec.count:
            raise RuntimeError(f"connection {i}: {len(got)} of {rec.count} messages")
    lat: list[int] = []
    first: list[int] = []
    last: list[int] = []
    for got, stamps in zip(rec.recv, rec.stamp, strict=True):
        lat += [r - s for r, s in zip(got, stamps, strict=True) if s >= t0]
        if burst > 1:
            first += [got[k] - stamps[k] for k in range(rec.warm, rec.count, burst)]
            last += [got[k] - stamps[k] for k in range(rec.warm + burst - 1, rec.count, burst)]
    if not lat:
        raise RuntimeError("no message in the measurement window")
    lat.sort()
    if lat[0] < 0:
        raise RuntimeError(f"negative latency ({lat[0]} ns): clocks not comparable")
    n = len(lat)
    cpu = w["cpu1"] - w["cpu0"]
    seconds = (w["t1"] - t0) / 1e9
    out: dict[str, Any] = {
        "messages": n,
        "window_s": seconds,
        "msg_per_s": n / seconds if seconds > 0 else float("nan"),
        "p50_us": _pct(lat, 50),
        "p90_us": _pct(lat, 90),
        "p99_us": _pct(lat, 99),
        "p999_us": _pct(lat, 99.9),
        "max_us": lat[-1] / 1000,
        "mean_us": sum(lat) / n / 1000,
        "cpu_s": cpu,
        "cpu_ms_per_1k": cpu / n * 1e6,
        "vcsw_per_msg": (w["nvcsw1"] - w["nvcsw0"]) / n,
        "ivcsw_per_msg": (w["nivcsw1"] - w["nivcsw0"]) / n,
    }
    if rec.conns == 1:
        # open() and finish() ran on the consumer's thread: its own share of the CPU.
        out["consumer_cpu_ms_per_1k"] = (w["thread1"] - w["thread0"]) / n * 1e6
    if burst > 1:
        first.sort()
        last.sort()
        out.update(
            bursts=len(last),
            last_p50_us=_pct(last, 50),
            last_p99_us=_pct(last, 99),
            last_max_us=last[-1] / 1000 if last else float("nan"),
            first_p50_us=_pct(first, 50),
            first_p99_us=_pct(first, 99),
            cpu_us_per_burst=cpu / len(last) * 1e6 if last else float("nan"),
        )
    return out
