"""The thread-facing :class:`ExchangeSimulator` (see the package docstring)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from kstlib.websocket.testing._dialects import Dialect, make_dialect
from kstlib.websocket.testing._frames import MalformedKind, malformed_frame
from kstlib.websocket.testing._market import TradeGenerator
from kstlib.websocket.testing._state import (
    ConnectionInfo,
    ConnRecord,
    InjectedGap,
    SharedState,
    SimulatorOptions,
)

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

    from kstlib.websocket.testing._server import SimServer

__all__ = ["ExchangeSimulator"]

LOGGER = logging.getLogger("kstlib.websocket.testing")

_T = TypeVar("_T")
_S = TypeVar("_S", bound="ExchangeSimulator")

# Close codes a server may put in a close frame (RFC 6455 7.4, IANA registry).
_SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


class ExchangeSimulator:
    """A local exchange: a real WebSocket server on its own thread, Binance-style by
    default, or another venue's dialect (``dialect="okx"``...).

    Construction does nothing but store options; :meth:`start` starts a daemon
    thread running an asyncio loop and blocks until the socket listens; :meth:`stop`
    closes every connection, stops the loop and joins the thread. ``with
    ExchangeSimulator() as sim:`` does both. After :meth:`stop`, :meth:`start` binds
    the same port again (so clients can reconnect to the same URL), and event ids
    continue where they stopped.

    Args:
        host: interface to bind, loopback by default.
        port: TCP port, ``0`` for a free one (see :attr:`port`).
        event_rate: events per second produced by each stream (``0``: none).
        kline_rate: events per second of kline streams (default: ``event_rate``).
        kline_seconds: scale candles down: a number gives every kline interval that
            many seconds (``20`` makes ``kline_1m`` candles last 20 s); a mapping
            overrides single intervals (``{"1m": 20}``).
        seed: seed of the deterministic price walks.
        ping_interval: send a ping with a unique payload every this many seconds
            (``None``: never). The next ping is sent ``ping_interval`` after the
            previous pong.
        pong_timeout: close with 1008 ``"Pong timeout"`` when the pong echoing the
            ping's payload is not back within this many seconds.
        max_connection_age: close each connection with 1000 ``"Max connection age
            reached"`` this many seconds after it opened (Binance's 24-hour rule,
            scaled down).
        max_incoming_rate: close with 1008 ``"Too many requests"`` a connection on
            which the client sent more than this many messages within one second;
            data messages, pings and pongs all count (Binance: 5).
        max_connection_attempts: ``(n, window)``: at most ``n`` opening handshakes
            per ``window`` seconds (counted on the whole server, refused ones
            included); beyond, HTTP 429 with ``Retry-After`` (Binance: 300 per 5
            minutes per IP).
        max_streams_per_connection: more streams in the URL -> HTTP 400; a
            ``SUBSCRIBE`` that would exceed it -> error reply (Binance: 1024).
        compression: ``"deflate"`` accepts permessage-deflate when offered; ``None``
            refuses it.
        close_timeout: seconds the server waits for the client's half of a closing
            handshake before dropping the TCP connection.
        max_message_size: largest message accepted from a client (1009 beyond).
        max_write_buffer: bytes queued for a client that does not read; beyond it the
            connection is closed with 1008 ``"Slow consumer"``.
        history: how many closed connections' records are kept for inspection.
        dialect: the venue played: ``"binance"`` (default), ``"okx"``, ``"bybit"``,
            ``"coinbase"``, ``"kraken"``, ``"deribit"``, or a
            :class:`~kstlib.websocket.testing.Dialect` instance with options of its own
            (``OkxDialect(silence=0.5)``); one instance per simulator. The rules above
            (pings, age, rates, limits) and the fault switches apply to every dialect.

    Thread-safety: every public method may be called from any thread while the
    simulator runs. Fault switches take effect on the server's loop before they
    return (for the connections open at that moment).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        event_rate: float = 10.0,
        kline_rate: float | None = None,
        kline_seconds: float | Mapping[str, float] | None = None,
        seed: int | str = 0,
        ping_interval: float | None = None,
        pong_timeout: float = 10.0,
        max_connection_age: float | None = None,
        max_incoming_rate: float | None = None,
        max_connection_attempts: tuple[int, float] | None = None,
        max_streams_per_connection: int = 1024,
        compression: str | None = "deflate",
        close_timeout: float = 2.0,
        max_message_size: int = 2**20,
        max_write_buffer: int = 64 * 2**20,
        history: int = 1000,
        dialect: str | Dialect = "binance",
    ) -> None:
        for name, value in (
            ("event_rate", event_rate),
            ("kline_rate", kline_rate),
            ("ping_interval", ping_interval),
            ("pong_timeout", pong_timeout),
            ("max_connection_age", max_connection_age),
            ("max_incoming_rate", max_incoming_rate),
            ("close_timeout", close_timeout),
        ):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if max_connection_attempts is not None and (
            max_connection_attempts[0] < 1 or max_connection_attempts[1] <= 0
        ):
            raise ValueError("max_connection_attempts must be (n >= 1, window > 0)")
        lengths = (
            list(kline_seconds.values())
            if isinstance(kline_seconds, Mapping)
            else [kline_seconds]
            if kline_seconds is not None
            else []
        )
        if any(not isinstance(v, (int, float)) or v * 1000 < 1 for v in lengths):
            raise ValueError(f"kline_seconds must be >= 0.001 s, got {kline_seconds!r}")
        if max_streams_per_connection < 1:
            raise ValueError("max_streams_per_connection must be >= 1")
        if compression not in (None, "deflate"):
            raise ValueError(f"compression must be 'deflate' or None, got {compression!r}")
        self.options = SimulatorOptions(
            host=host,
            port=port,
            event_rate=event_rate,
            kline_rate=kline_rate,
            kline_seconds=kline_seconds,
            seed=seed,
            ping_interval=ping_interval,
            pong_timeout=pong_timeout,
            max_connection_age=max_connection_age,
            max_incoming_rate=max_incoming_rate,
            max_connection_attempts=max_connection_attempts,
            max_streams_per_connection=max_streams_per_connection,
            compression=compression,
            close_timeout=close_timeout,
            max_message_size=max_message_size,
            max_write_buffer=max_write_buffer,
            history=history,
        )
        self._shared = SharedState(self.options, make_dialect(dialect))
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: SimServer | None = None
        self._stop_event: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._lifecycle = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self: _S, timeout: float = 10.0) -> _S:
        """Start the server thread; return once the socket listens.

        Raises:
            RuntimeError: already running.
            OSError: the address could not be bound.
        """
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError("ExchangeSimulator is already running")
            ready = threading.Event()
            self._start_error = None
            thread = threading.Thread(
                target=self._thread_main,
                args=(ready,),
                name=f"kstlib-exchange-simulator:{self._port}",
                daemon=True,
            )
            thread.start()
            if not ready.wait(timeout):
                raise RuntimeError("ExchangeSimulator did not start in time")
            if self._start_error is not None:
                thread.join(timeout)
                error, self._start_error = self._start_error, None
                raise error
            thread.name = f"kstlib-exchange-simulator:{self._port}"
            self._thread = thread
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Close every connection (1001 if open, abort if silent), stop and join.

        Idempotent; a no-op when not running.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("stop() cannot be called from the simulator's own thread")
        with self._lifecycle:
            thread, loop, event = self._thread, self._loop, self._stop_event
            if thread is None:
                return
            if loop is not None and event is not None:
                loop.call_soon_threadsafe(event.set)
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError("ExchangeSimulator thread did not stop in time")
            self._thread = None
            self._loop = None
            self._server = None
            self._stop_event = None

    def _thread_main(self, ready: threading.Event) -> None:
        import asyncio  # here, not at module level: importing this module stays cheap

        try:
            asyncio.run(self._amain(ready))
        except BaseException as exc:
            if not ready.is_set():
                self._start_error = exc
                ready.set()
            else:
                LOGGER.exception("exchange simulator crashed")

    async def _amain(self, ready: threading.Event) -> None:
        import asyncio

        from kstlib.websocket.testing._server import SimServer

        server = SimServer(self._shared, self._port)
        self._port = await server.start()
        self._stop_event = asyncio.Event()
        self._server = server
        self._loop = asyncio.get_running_loop()
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await server.shutdown()

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<ExchangeSimulator {self.url} {state}>"

    @property
    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None

    # ------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        """The bound interface."""
        return self.options.host

    @property
    def port(self) -> int:
        """The bound port (``0`` before the first :meth:`start` when port=0)."""
        return self._port

    @property
    def dialect(self) -> Dialect:
        """The venue played (its own switches and REST stand-ins, e.g.
        ``sim.dialect.new_listen_key()``)."""
        return self._shared.dialect

    def endpoint(self, name: str = "public") -> str:
        """``ws://HOST:PORT`` + the path of the dialect's endpoint ``name`` (``"public"``,
        ``"private"``...: see each dialect's ``endpoints``)."""
        try:
            path = self._shared.dialect.endpoints[name]
        except KeyError:
            known = ", ".join(self._shared.dialect.endpoints)
            raise ValueError(f"no endpoint {name!r} in this dialect: {known}") from None
        return self.url + path

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` (IPv6 hosts in brackets)."""
        host = self.options.host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self._port}"

    def stream_url(self, stream: str | None = None) -> str:
        """``ws://HOST:PORT/ws/<stream>``; with no stream, ``/ws`` (subscribe later)."""
        if stream is None:
            return f"{self.url}/ws"
        return f"{self.url}/ws/{stream}"

    def combined_url(self, streams: str | Iterable[str]) -> str:
        """``ws://HOST:PORT/stream?streams=a/b``: payloads wrapped as
        ``{"stream": name, "data": event}``."""
        names = [streams] if isinstance(streams, str) else list(streams)
        return f"{self.url}/stream?streams=" + quote("/".join(names), safe="/@_")

    # ------------------------------------------------------------------ calls into the loop

    def _call(self, fn: Callable[[SimServer], _T], timeout: float = 10.0) -> _T:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            raise RuntimeError("ExchangeSimulator is not running")
        if threading.current_thread() is self._thread:
            return fn(server)
        import concurrent.futures

        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(server))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout)

    # ------------------------------------------------------------------ fault switches

    def close_all(self, code: int = 1000, reason: str = "", *, only: int | None = None) -> int:
        """Start a closing handshake with ``code``/``reason`` on every open connection
        (or only connection ``only``); silent connections are skipped.

        Returns the number of connections closed.

        Raises:
            ValueError: ``code`` cannot appear in a close frame (1005, 1006, 999...):
                use ``send_malformed("bad_close_code")`` to send an invalid one.
        """
        if not (code in _SENDABLE_CLOSE_CODES or 3000 <= code < 5000):
            raise ValueError(f"close code {code} cannot be sent in a close frame")
        if len(reason.encode()) > 123:
            raise ValueError("close reason must be at most 123 bytes in UTF-8")
        return self._call(lambda s: s.close_all(code, reason, self._index(only)))

    def reset_all(self, *, only: int | None = None) -> int:
        """Abort every open connection (or only ``only``) with a TCP RST
        (``SO_LINGER`` 0, no close frame, no FIN). Returns the count."""
        return self._call(lambda s: s.reset_all(self._index(only)))

    def go_silent(
        self, enabled: bool = True, *, include_new: bool = False, only: int | None = None
    ) -> int:
        """Turn the open connections into a half-open peer, or back.

        While silent, a connection writes nothing (no events, no replies, no pongs,
        no close frame, no FIN) and parses nothing it receives; its bytes are held
        and processed when silence ends (``go_silent(False)``), as if delayed by the
        network. With ``include_new=True`` connections accepted while silent are
        silent from the first byte (their handshake hangs). Rules (age, pings) wait
        while a connection is silent. :meth:`stop` aborts silent connections.

        Returns the number of connections affected.
        """
        return self._call(lambda s: s.go_silent(enabled, include_new, self._index(only)))

    def send_malformed(
        self, kind: MalformedKind = "reserved_opcode", *, only: int | None = None
    ) -> int:
        """Write one deliberately invalid frame to the open connections.

        Kinds (expected client close code): ``reserved_opcode``,
        ``reserved_control_opcode``, ``masked`` (a masked server frame),
        ``reserved_bits``, ``fragmented_control``, ``oversized_control``,
        ``unexpected_continuation``, ``bad_close_code``, ``garbage`` (1002);
        ``invalid_utf8`` (1007); ``huge_length`` (a header announcing 2**63-1 bytes:
        1009); ``truncated_reset`` (a partial frame, then a TCP RST). The bytes are
        written raw to the transport, after everything already sent.

        Raises:
            ValueError: unknown kind.
        """
        malformed_frame(kind)  # validate in the caller's thread
        return self._call(lambda s: s.send_malformed(kind, self._index(only)))

    def send_raw(self, data: bytes, *, only: int | None = None) -> int:
        """Write arbitrary bytes to the open connections' TCP streams."""
        payload = bytes(data)
        return self._call(lambda s: s.send_raw(payload, self._index(only)))

    def announce_shutdown(
        self, close_after: float | None = None, *, only: int | None = None
    ) -> int:
        """Send ``{"e":"serverShutdown","E":<ms>}`` (never wrapped) to every open
        connection; with ``close_after``, close those connections with 1001 that many
        seconds later (new connections are not affected). Returns the count."""
        return self._call(lambda s: s.announce_shutdown(close_after, self._index(only)))

    def inject_gap(
        self, count: int = 1, *, stream: str | None = None, only: int | None = None
    ) -> int:
        """Make a hole in the sequence numbers of the open connections (or ``only``):
        each swallows its next ``count`` sequenced data messages (of feed ``stream``
        only, if given: a Binance stream name, an OKX ``channel:instId``, a Bybit topic,
        a Deribit channel...), as a server-side drop would. Each call makes one hole per
        connection, recorded in :meth:`injected_gaps` (two, when a message of the same
        sequence goes out in between: a Coinbase heartbeat inside a ``stream``-filtered
        hole). Returns the count of connections armed."""
        if count < 1:
            raise ValueError("count must be >= 1")
        return self._call(lambda s: s.inject_gap(count, stream, self._index(only)))

    def stall(self, enabled: bool = True, *, only: int | None = None) -> int:
        """A silent feed: the data of the open connections (or ``only``) stops (or
        resumes), while pongs, the venue's heartbeats and replies still go out. Returns
        the count of connections affected."""
        return self._call(lambda s: s.stall(enabled, self._index(only)))

    def refuse_handshake(
        self,
        status: int | None = 503,
        *,
        times: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next opening handshakes with HTTP ``status`` instead of 101.

        ``times``: refuse only that many, then accept again (``None``: until
        ``refuse_handshake(None)``). ``headers`` are added to the response; a 429
        gets ``Retry-After: 1`` unless given. Works before :meth:`start` too.
        """
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"invalid HTTP status {status}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1")
        extra = dict(headers or {})
        if status == 429:
            extra.setdefault("Retry-After", "1")
        with self._shared.lock:
            faults = self._shared.faults
            faults.refuse_status = status
            faults.refuse_remaining = times if status is not None else None
            faults.refuse_headers = extra

    def accept_delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each new opening handshake (``0``: off).

        The TCP connection is accepted at once; only the HTTP 101 is delayed.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._shared.lock:
            self._shared.faults.accept_delay = float(seconds)

    def drop_after_accept(self, enabled: bool = True) -> None:
        """Complete each new handshake, then close the TCP connection at once
        (FIN, no close frame: the client sees an abnormal closure, 1006)."""
        with self._shared.lock:
            self._shared.faults.drop_after_accept = bool(enabled)

    # ------------------------------------------------------------------ observability

    @property
    def connection_count(self) -> int:
        """Connections whose handshake completed and whose TCP connection is open."""
        with self._shared.lock:
            return self._shared.open_count

    @property
    def total_connections(self) -> int:
        """Connections accepted (handshake completed) since construction."""
        with self._shared.lock:
            return self._shared.next_index

    @property
    def handshake_attempts(self) -> int:
        """HTTP upgrade requests received (accepted, refused or rejected)."""
        with self._shared.lock:
            return self._shared.handshake_attempts

    @property
    def refused_handshakes(self) -> int:
        """Handshakes refused: :meth:`refuse_handshake` statuses and the 429s of
        ``max_connection_attempts``."""
        with self._shared.lock:
            return self._shared.refused_handshakes

    @property
    def events_published(self) -> int:
        """Events produced by all streams (each counted once, however many
        subscribers)."""
        with self._shared.lock:
            return self._shared.events_published

    def last_event_id(self, stream: str) -> int:
        """Id of the last event produced on ``stream`` (trade ``t`` / kline ``u``),
        ``0`` if none yet."""
        with self._shared.lock:
            gen = self._shared.generators.get(stream)
            if gen is None:
                return 0
            if isinstance(gen, TradeGenerator):
                return gen.next_id - 1
            return gen.next_update_id - 1

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` is true; False on timeout.

        The predicate is re-evaluated on every state change (connections, received
        messages, pongs) and at least every 50 ms.
        """
        deadline = time.monotonic() + timeout
        with self._shared.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._shared.cond.wait(min(remaining, 0.05))
        return True

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` connections are open; False on timeout."""
        return self.wait_until(lambda: self._shared.open_count >= n, timeout)

    def wait_for_total_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` connections were ever accepted."""
        return self.wait_until(lambda: self._shared.next_index >= n, timeout)

    def _index(self, conn_index: int | None) -> int | None:
        if conn_index is None:
            return None
        total = self._shared.next_index
        index = conn_index + total if conn_index < 0 else conn_index
        if not 0 <= index < total:
            raise IndexError(f"no connection {conn_index} ({total} accepted so far)")
        return index

    def _record(self, conn_index: int) -> ConnRecord:
        index = self._index(conn_index)
        assert index is not None
        record = self._shared.records.get(index)
        if record is None:
            raise IndexError(f"connection {conn_index} was evicted from the history")
        return record

    def connection_info(self, conn_index: int = -1) -> ConnectionInfo:
        """Snapshot of connection ``conn_index`` (``-1``: the latest accepted).

        Raises:
            IndexError: no such connection, or evicted from the history.
        """
        with self._shared.lock:
            return self._record(conn_index).snapshot()

    def connections(self) -> list[ConnectionInfo]:
        """Snapshots of every connection in the history, oldest first."""
        with self._shared.lock:
            return [r.snapshot() for r in self._shared.records.values()]

    def received(self, conn_index: int = -1) -> list[str | bytes]:
        """Data messages the server received on connection ``conn_index``, in order
        (``str`` for text, ``bytes`` for binary; the most recent 10,000)."""
        with self._shared.lock:
            return list(self._record(conn_index).received)

    def injected_gaps(self, conn_index: int = -1) -> list[InjectedGap]:
        """The holes :meth:`inject_gap` made on connection ``conn_index``, in order."""
        with self._shared.lock:
            return list(self._record(conn_index).injected_gaps)

    def subscriptions_of(self, conn_index: int = -1) -> list[str]:
        """Current streams of connection ``conn_index``, in subscription order."""
        with self._shared.lock:
            return list(self._record(conn_index).streams)
