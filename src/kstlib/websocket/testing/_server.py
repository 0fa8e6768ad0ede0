"""The simulator's asyncio server, built on ``websockets`` (imported only here).

Everything in this module runs on the simulator's own event loop thread; the public
:class:`~kstlib.websocket.testing.ExchangeSimulator` calls into it with
``loop.call_soon_threadsafe``. Outgoing data is written synchronously to each
connection's protocol and transport, so events, replies and raw frames reach a
client in exactly the order the server produced them, and one event is serialized
once for all its subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import socket
import struct
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from kstlib.websocket.testing._frames import malformed_frame
from kstlib.websocket.testing._market import (
    KlineGenerator,
    StreamSpec,
    TradeGenerator,
    make_generator,
    parse_stream,
)
from kstlib.websocket.testing._state import ConnRecord, SharedState

__all__ = ["SimServer"]

LOGGER = logging.getLogger("kstlib.websocket.testing")

_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_MAX_BATCH = 10_000
_COUNTED_OPCODES = frozenset({Opcode.PING, Opcode.PONG})
_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _error(code: int, msg: str, request_id: Any) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": request_id}


class _SimConnection(ServerConnection):
    """A ``websockets`` server connection with the simulator's hooks.

    * ``kst_silent``: while true, incoming bytes are held (not parsed, so pings are
      not answered and a close frame is not seen), nothing is written, and the
      transport stays open even after the peer's FIN: a half-open peer.
    * every incoming frame, control frames included, is reported to the server for
      rate limiting and recording.
    """

    kst_server: SimServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kst_silent = False
        self.kst_held: list[bytes] = []
        self.kst_held_eof = False
        self.kst_live: _Live | None = None
        self.kst_route: tuple[str, list[str], bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.kst_silent = self.kst_server.silent_new
        self.kst_server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.kst_server.conns.discard(self)
        self.kst_server.on_connection_lost(self)

    def data_received(self, data: bytes) -> None:
        if self.kst_silent:
            self.kst_held.append(data)
            return
        super().data_received(data)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if self.kst_silent:
            self.kst_held_eof = True
            return True  # keep the transport open: no FIN goes back
        super().eof_received()
        return None

    def send_data(self) -> None:
        if self.kst_silent:
            for _ in self.protocol.data_to_send():
                pass
            return
        super().send_data()

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and self.kst_live is not None:
            self.kst_server.on_frame(self.kst_live, event)

    def kst_release(self) -> None:
        """Leave silence: process what was held, as if it arrived now."""
        self.kst_silent = False
        held, self.kst_held = b"".join(self.kst_held), []
        if self.transport.is_closing():
            return
        if held:
            super().data_received(held)
        if self.kst_held_eof:
            self.kst_held_eof = False
            super().eof_received()
            self.transport.close()


class _Live:
    """Loop-side state of one open connection."""

    def __init__(self, conn: _SimConnection, record: ConnRecord) -> None:
        self.conn = conn
        self.record = record
        self.index = record.index
        self.combined = record.combined
        self.streams: list[str] = []
        self.rate_window: deque[float] = deque()
        self.tasks: list[asyncio.Task[None]] = []
        self.closing = False


class _Stream:
    """One generator, its subscribers and the task that drives it."""

    def __init__(self, spec: StreamSpec, gen: TradeGenerator | KlineGenerator) -> None:
        self.spec = spec
        self.gen = gen
        self.subscribers: dict[int, _Live] = {}
        self.task: asyncio.Task[None] | None = None


class SimServer:
    """The server of one ``ExchangeSimulator`` run (one event loop)."""

    def __init__(self, shared: SharedState, port: int) -> None:
        self.shared = shared
        self.opts = shared.options
        self.port = port
        self.loop = asyncio.get_running_loop()
        self.conns: set[_SimConnection] = set()
        self.live: dict[int, _Live] = {}
        self.streams: dict[str, _Stream] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.timers: set[asyncio.TimerHandle] = set()
        self.stopping = asyncio.Event()
        self.silent_new = False
        self.server: Server | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Bind and start listening; return the bound port."""

        class BoundConnection(_SimConnection):
            kst_server = self

        self.server = await serve(
            self._handler,
            self.opts.host,
            self.port,
            process_request=self._process_request,
            process_response=self._process_response,
            create_connection=BoundConnection,
            compression=self.opts.compression,
            open_timeout=None,
            ping_interval=None,
            close_timeout=self.opts.close_timeout,
            max_size=self.opts.max_message_size,
            logger=LOGGER,
            server_header="kstlib-exchange-simulator",
        )
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def shutdown(self) -> None:
        """Close every connection (1001 when open, abort otherwise) and the listener."""
        self.stopping.set()
        for stream in self.streams.values():
            if stream.task is not None:
                stream.task.cancel()
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        for conn in list(self.conns):
            if conn.kst_silent or conn.protocol.state is not State.OPEN:
                self._mark(conn, "stopped")
                conn.transport.abort()
            elif conn.kst_live is not None and conn.kst_live.record.cause is None:
                self._mark(conn, "stopped")
        if self.server is not None:
            self.server.close(close_connections=True, code=1001, reason="server stopped")
            try:
                await asyncio.wait_for(self.server.wait_closed(), self.opts.close_timeout + 2.0)
            except asyncio.TimeoutError:
                LOGGER.warning("simulator: connections did not close in time, aborting them")
            for conn in list(self.conns):
                conn.transport.abort()
        tasks = [t for t in self.tasks if not t.done()]
        for stream in self.streams.values():
            if stream.task is not None:
                tasks.append(stream.task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Let transports run their connection_lost callbacks before the loop closes.
        for _ in range(3):
            await asyncio.sleep(0)

    def _mark(self, conn: _SimConnection, cause: str) -> None:
        if conn.kst_live is not None:
            with self.shared.lock:
                if conn.kst_live.record.cause is None:
                    conn.kst_live.record.cause = cause

    def _later(self, delay: float, callback: Any, *args: Any) -> None:
        """``loop.call_later`` whose handle is cancelled by :meth:`shutdown`."""

        def run() -> None:
            self.timers.discard(handle)
            callback(*args)

        handle = self.loop.call_later(delay, run)
        self.timers.add(handle)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------------ handshake

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        shared = self.shared
        with shared.lock:
            shared.handshake_attempts += 1
            delay = shared.faults.accept_delay
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
        if self.stopping.is_set():
            return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n")
        throttled = self._throttle()
        if throttled is not None:
            response = conn.respond(http.HTTPStatus.TOO_MANY_REQUESTS, "Too many connections\n")
            response.headers["Retry-After"] = str(max(1, round(throttled)))
            return response
        with shared.cond:
            faults = shared.faults
            status = faults.refuse_status
            if status is not None:
                headers = dict(faults.refuse_headers)
                if faults.refuse_remaining is not None:
                    faults.refuse_remaining -= 1
                    if faults.refuse_remaining <= 0:
                        faults.refuse_status = None
                        faults.refuse_remaining = None
                shared.refused_handshakes += 1
                shared.cond.notify_all()
        if status is not None:
            try:
                phrase = http.HTTPStatus(status).phrase
            except ValueError:
                phrase = "Refused"
            response = conn.respond(status, f"{phrase}\n")
            for name, value in headers.items():
                response.headers[name] = value
            return response
        return self._route(conn, request)

    def _throttle(self) -> float | None:
        """Apply ``max_connection_attempts``; seconds until a slot frees, or None."""
        limit = self.opts.max_connection_attempts
        if limit is None:
            return None
        count, window = limit
        now = self.loop.time()
        with self.shared.lock:
            times = self.shared.attempt_times
            times.append(now)
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) <= count:
                return None
            self.shared.refused_handshakes += 1
            return times[0] + window - now

    def _route(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path = unquote(parts.path)
        if path in ("/ws", "/ws/"):
            streams: list[str] = []
            combined = False
        elif path.startswith("/ws/"):
            streams = [path[4:]]
            combined = False
        elif path in ("/stream", "/stream/"):
            values = parse_qs(parts.query).get("streams", [])
            streams = [s for v in values for s in v.split("/") if s]
            combined = True
        else:
            return conn.respond(http.HTTPStatus.NOT_FOUND, f"Unknown path {path}\n")
        unique = list(dict.fromkeys(streams))
        for name in unique:
            try:
                self._spec(name)
            except ValueError as exc:
                return conn.respond(http.HTTPStatus.BAD_REQUEST, f"{exc}\n")
        if len(unique) > self.opts.max_streams_per_connection:
            limit = self.opts.max_streams_per_connection
            return conn.respond(
                http.HTTPStatus.BAD_REQUEST, f"Too many streams: at most {limit} per connection\n"
            )
        assert isinstance(conn, _SimConnection)
        conn.kst_route = (request.path, unique, combined)
        return None

    def _spec(self, name: str) -> StreamSpec:
        return parse_stream(name, self.opts.kline_seconds)

    # ------------------------------------------------------------------ connection

    def _process_response(
        self, conn: ServerConnection, request: Request, response: Response
    ) -> None:
        """Register an accepted connection *before* the 101 is sent, so a client that
        sees its handshake succeed also sees it in ``connection_count``."""
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            return
        assert isinstance(conn, _SimConnection)
        assert conn.kst_route is not None
        path, _streams, combined = conn.kst_route
        remote = conn.remote_address
        record = self.shared.new_record(
            path=path,
            remote=(str(remote[0]), int(remote[1])) if remote else None,
            opened_at=time.time(),
            combined=combined,
        )
        live = _Live(conn, record)
        conn.kst_live = live
        self.live[live.index] = live

    async def _handler(self, conn: ServerConnection) -> None:
        assert isinstance(conn, _SimConnection)
        assert conn.kst_route is not None and conn.kst_live is not None
        _path, streams, _combined = conn.kst_route
        live = conn.kst_live
        try:
            with self.shared.lock:
                drop = self.shared.faults.drop_after_accept
            if drop:
                self._mark(conn, "drop_after_accept")
                live.closing = True
                conn.transport.close()  # FIN without a close frame
                await conn.wait_closed()
                return
            for name in streams:
                self._subscribe(live, name)
            if self.opts.ping_interval is not None:
                live.tasks.append(self.loop.create_task(self._pinger(live)))
            if self.opts.max_connection_age is not None:
                live.tasks.append(self.loop.create_task(self._age_limit(live)))
            async for message in conn:
                self._on_message(live, message)
        except ConnectionClosed:
            pass
        finally:
            for task in live.tasks:
                task.cancel()
            for name in list(live.streams):
                # The record keeps the last subscriptions for inspection.
                self._unsubscribe(live, name, record=False)
            self.live.pop(live.index, None)

    def on_connection_lost(self, conn: _SimConnection) -> None:
        live = conn.kst_live
        if live is None:
            return
        live.closing = True
        if self.live.get(live.index) is live and live.conn.protocol.state is State.CLOSED:
            for name in list(live.streams):
                self._unsubscribe(live, name, record=False)
            self.live.pop(live.index, None)
        protocol = conn.protocol
        with self.shared.cond:
            record = live.record
            if record.closed_at is None:
                record.closed_at = time.time()
                if protocol.close_rcvd is not None:
                    record.close_code = protocol.close_rcvd.code
                    record.close_reason = protocol.close_rcvd.reason
                else:
                    record.close_code = 1006
                    record.close_reason = ""
                if protocol.close_sent is not None:
                    record.close_sent_code = protocol.close_sent.code
                self.shared.open_count -= 1
            self.shared.cond.notify_all()

    def on_frame(self, live: _Live, frame: Frame) -> None:
        opcode = frame.opcode
        record = live.record
        if opcode is Opcode.PING:
            with self.shared.lock:
                record.client_pings += 1
        elif opcode is Opcode.PONG:
            with self.shared.cond:
                record.pongs_received.append(bytes(frame.data))
                self.shared.cond.notify_all()
        limit = self.opts.max_incoming_rate
        if limit is None:
            return
        if opcode in _COUNTED_OPCODES or (opcode in _DATA_OPCODES and frame.fin):
            now = self.loop.time()
            window = live.rate_window
            window.append(now)
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) > limit:
                self.disconnect(live, "rate_limit", 1008, "Too many requests")

    def _on_message(self, live: _Live, message: str | bytes) -> None:
        with self.shared.cond:
            live.record.received.append(message)
            live.record.messages_received += 1
            self.shared.cond.notify_all()
        if live.closing:
            return
        reply = self._control(live, message)
        self._write(live, orjson.dumps(reply))

    def disconnect(self, live: _Live, cause: str, code: int, reason: str) -> None:
        """Start a closing handshake initiated by the server (once per connection)."""
        if live.closing:
            return
        live.closing = True
        with self.shared.lock:
            if live.record.cause is None:
                live.record.cause = cause
        self._spawn(live.conn.close(code, reason))

    def _write(self, live: _Live, payload: bytes) -> bool:
        conn = live.conn
        if conn.kst_silent or conn.protocol.state is not State.OPEN:
            return False
        if conn.transport.is_closing():  # lost, connection_lost() not yet called
            return False
        try:
            conn.protocol.send_text(payload)
            conn.send_data()
        except Exception:  # the transport failed; connection_lost follows
            return False
        live.record.messages_sent += 1
        if conn.transport.get_write_buffer_size() > self.opts.max_write_buffer:
            self.disconnect(live, "slow_consumer", 1008, "Slow consumer")
        return True

    # ------------------------------------------------------------------ rules

    async def _pinger(self, live: _Live) -> None:
        interval = self.opts.ping_interval
        assert interval is not None
        conn = live.conn
        count = 0
        while True:
            await asyncio.sleep(interval)
            if conn.kst_silent or live.closing:
                continue
            count += 1
            payload = f"{_now_ms()}:{count}".encode()
            try:
                waiter = asyncio.ensure_future(await conn.ping(payload))
            except ConnectionClosed:
                return
            with self.shared.lock:
                live.record.pings_sent.append(payload)
            done, _ = await asyncio.wait({waiter}, timeout=self.opts.pong_timeout)
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieve it, so it is never logged
            if not done and not conn.kst_silent:
                self.disconnect(live, "pong_timeout", 1008, "Pong timeout")
                return

    async def _age_limit(self, live: _Live) -> None:
        age = self.opts.max_connection_age
        assert age is not None
        await asyncio.sleep(age)
        while live.conn.kst_silent:
            await asyncio.sleep(0.05)
        self.disconnect(live, "max_age", 1000, "Max connection age reached")

    # ------------------------------------------------------------------ control messages

    def _control(self, live: _Live, message: str | bytes) -> dict[str, Any]:
        if isinstance(message, bytes):
            try:
                message = message.decode()
            except UnicodeDecodeError:
                return _error(3, "Invalid JSON: binary frame is not UTF-8", None)
        try:
            request = json.loads(message)
        except ValueError as exc:
            return _error(3, f"Invalid JSON: {exc}", None)
        if not isinstance(request, dict):
            return _error(2, "Invalid request: expected a JSON object", None)
        request_id = request.get("id")
        if not (
            request_id is None
            or (type(request_id) is int and 0 <= request_id < 2**64)
            or (isinstance(request_id, str) and len(request_id) <= 36)
        ):
            return _error(
                2,
                "Invalid request: request ID must be an unsigned integer"
                " or a string of at most 36 characters",
                None,
            )
        method = request.get("method")
        if method is None:
            return _error(2, "Invalid request: missing field `method`", request_id)
        if method not in _METHODS:
            expected = ", ".join(f"`{m}`" for m in _METHODS)
            return _error(
                2,
                f"Invalid request: unknown variant `{method}`, expected one of {expected}",
                request_id,
            )
        params = request.get("params", [])
        if not isinstance(params, list):
            return _error(2, "Invalid request: `params` must be an array", request_id)
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return self._subscription_request(live, method, params, request_id)
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(live.streams), "id": request_id}
        if not params or params[0] != "combined":
            return _error(0, "Unknown property", request_id)
        if method == "GET_PROPERTY":
            return {"result": live.combined, "id": request_id}
        if len(params) != 2 or not isinstance(params[1], bool):
            return _error(1, "Invalid value type: expected Boolean", request_id)
        live.combined = params[1]
        with self.shared.lock:
            live.record.combined = params[1]
        return {"result": None, "id": request_id}

    def _subscription_request(
        self, live: _Live, method: str, params: list[Any], request_id: Any
    ) -> dict[str, Any]:
        for name in params:
            if not isinstance(name, str):
                return _error(2, "Invalid request: stream names must be strings", request_id)
        names = list(dict.fromkeys(params))
        if method == "UNSUBSCRIBE":
            for name in names:
                if name in live.streams:
                    self._unsubscribe(live, name)
            return {"result": None, "id": request_id}
        for name in names:
            try:
                self._spec(name)
            except ValueError as exc:
                return _error(2, f"Invalid request: {exc}", request_id)
        new = [n for n in names if n not in live.streams]
        limit = self.opts.max_streams_per_connection
        if len(live.streams) + len(new) > limit:
            return _error(
                2,
                f"Invalid request: too many streams, at most {limit} per connection",
                request_id,
            )
        for name in new:
            self._subscribe(live, name)
        return {"result": None, "id": request_id}

    # ------------------------------------------------------------------ streams

    def _subscribe(self, live: _Live, name: str) -> None:
        stream = self.streams.get(name)
        if stream is None:
            spec = self._spec(name)
            with self.shared.lock:
                gen = self.shared.generators.get(name)
                if gen is None:
                    gen = self.shared.generators[name] = make_generator(spec, self.opts.seed)
            stream = self.streams[name] = _Stream(spec, gen)
            rate = self.opts.event_rate
            if spec.kind == "kline" and self.opts.kline_rate is not None:
                rate = self.opts.kline_rate
            if rate > 0 and not self.stopping.is_set():
                stream.task = self.loop.create_task(self._run_stream(stream, rate))
        stream.subscribers[live.index] = live
        live.streams.append(name)
        with self.shared.lock:
            live.record.streams = list(live.streams)

    def _unsubscribe(self, live: _Live, name: str, *, record: bool = True) -> None:
        stream = self.streams.get(name)
        if stream is not None:
            stream.subscribers.pop(live.index, None)
        if name in live.streams:
            live.streams.remove(name)
        if record:
            with self.shared.lock:
                live.record.streams = list(live.streams)

    async def _run_stream(self, stream: _Stream, rate: float) -> None:
        """Produce events at ``rate`` per second on an absolute schedule.

        Events that fell due while the loop was busy are produced together (at most
        ``_MAX_BATCH`` per wake-up; beyond that the schedule skips ahead). Kline
        streams also wake at each candle's close time to emit its ``x: true`` event.
        """
        gen = stream.gen
        start = self.loop.time()
        produced = 0
        while True:
            now_ms = _now_ms()
            events = gen.roll(now_ms)
            due = int((self.loop.time() - start) * rate) - produced
            if due > _MAX_BATCH:
                produced += due - _MAX_BATCH
                due = _MAX_BATCH
            events.extend(gen.tick(now_ms) for _ in range(max(due, 0)))
            produced += max(due, 0)
            if events:
                self._publish(stream, events)
            delay = start + (produced + 1) / rate - self.loop.time()
            boundary = gen.next_boundary_ms()
            if boundary is not None:
                delay = min(delay, (boundary - _now_ms()) / 1000.0)
            await asyncio.sleep(max(delay, 0.001))

    def _publish(self, stream: _Stream, events: list[dict[str, Any]]) -> None:
        raw = [orjson.dumps(e) for e in events]
        wrapped: list[bytes] | None = None
        prefix = b'{"stream":' + orjson.dumps(stream.spec.name) + b',"data":'
        for live in list(stream.subscribers.values()):
            if live.combined:
                if wrapped is None:
                    wrapped = [prefix + r + b"}" for r in raw]
                payloads = wrapped
            else:
                payloads = raw
            for payload in payloads:
                if not self._write(live, payload):
                    break
        with self.shared.lock:
            self.shared.events_published += len(events)

    # ------------------------------------------------------------------ faults

    def targets(self, only: int | None) -> list[_Live]:
        """Open connections, or just the one with index ``only`` (if open)."""
        if only is None:
            return list(self.live.values())
        live = self.live.get(only)
        return [live] if live is not None else []

    def close_all(self, code: int, reason: str, only: int | None) -> int:
        lives = [lv for lv in self.targets(only) if not lv.conn.kst_silent]
        for live in lives:
            self.disconnect(live, "close_all", code, reason)
        return len(lives)

    def reset_all(self, only: int | None) -> int:
        lives = self.targets(only)
        for live in lives:
            self._reset(live, "reset")
        return len(lives)

    def _reset(self, live: _Live, cause: str) -> None:
        live.closing = True
        with self.shared.lock:
            if live.record.cause is None:
                live.record.cause = cause
        transport = live.conn.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def go_silent(self, enabled: bool, include_new: bool, only: int | None) -> int:
        if enabled:
            lives = self.targets(only)
            for live in lives:
                live.conn.kst_silent = True
            if only is None:
                self.silent_new = include_new
            return len(lives)
        if only is None:
            self.silent_new = False
            conns = [c for c in self.conns if c.kst_silent]
        else:
            conns = [lv.conn for lv in self.targets(only) if lv.conn.kst_silent]
        for conn in conns:
            conn.kst_release()
        return len(conns)

    def send_raw(self, data: bytes, only: int | None) -> int:
        lives = [lv for lv in self.targets(only) if not lv.conn.kst_silent]
        for live in lives:
            if not live.conn.transport.is_closing():
                live.conn.transport.write(data)
        return len(lives)

    def send_malformed(self, kind: str, only: int | None) -> int:
        data = malformed_frame(kind)
        lives = [lv for lv in self.targets(only) if not lv.conn.kst_silent]
        for live in lives:
            with self.shared.lock:
                if live.record.cause is None:
                    live.record.cause = "malformed"
            if not live.conn.transport.is_closing():
                live.conn.transport.write(data)
            if kind == "truncated_reset":
                # Give the partial frame time to reach the peer before the RST.
                self._later(0.05, self._reset, live, "malformed")
        return len(lives)

    def announce_shutdown(self, close_after: float | None, only: int | None) -> int:
        payload = orjson.dumps({"e": "serverShutdown", "E": _now_ms()})
        lives = self.targets(only)
        for live in lives:
            self._write(live, payload)
            if close_after is not None:
                self._later(close_after, self.disconnect, live, "shutdown", 1001, "Server shutdown")
        return len(lives)
