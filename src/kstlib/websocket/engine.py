"""The engine: one background thread per manager that owns the socket.

It connects (with the reconnect strategy), sends the subscriptions, reads and frames
everything the server sends, answers pings, sends keepalive pings, runs the proactive
checks (``should_disconnect``, ``max_connection_age``, ``request_disconnect``,
``schedule_reconnect``), and hands decoded messages to the :class:`~.inbox.Inbox` in
batches (one hand-off per socket read).

Threads and locks:

* The engine thread is the only reader of the socket and the only one that changes the
  connection state. It exists from ``connect()`` until the manager is *dead* (no
  connection and nothing will reconnect by itself): while it runs the manager may
  reconnect on its own; when it has ended, nothing happens until the user acts.
* Any thread may write (``send``); writes go through ``_write_lock`` so frames never
  interleave (pongs, pings, close frames and user messages share it).
* Commands from other threads (``disconnect``, ``kill``, ``close``...) are flags set under
  ``_cond``; the engine is woken through a socket pair it polls together with the socket.
  Callers that must wait for the effect wait on ``_cond`` for an acknowledgement.
* Nothing blocks forever: every wait has a deadline from the settings.
"""

from __future__ import annotations

import logging
import math
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kstlib.websocket import codec, transport
from kstlib.websocket._ratelimit import SendRateLimiter
from kstlib.websocket.config import Settings
from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketError,
    WebSocketProtocolError,
    WebSocketTimeoutError,
)
from kstlib.websocket.inbox import Inbox
from kstlib.websocket.models import (
    LEGAL_TRANSITIONS,
    Connected,
    ConnectionState,
    Disconnected,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketStats,
)

__all__ = ["HEALTHY_AFTER", "Engine", "IllegalTransitionError", "backoff_delay"]

log = logging.getLogger("kstlib.websocket")

#: Seconds a connection must stay up before the reconnect attempt counter resets, so a
#: server that accepts and then drops at once exhausts the attempts instead of looping.
HEALTHY_AFTER = 5.0

#: Size of the reusable read buffer (one ``recv_into`` per batch).
READ_BUFFER_SIZE = 256 * 1024

#: While ``queue_overflow="block"`` holds the engine back, it looks at commands this often.
BLOCKED_POLL = 0.25

#: Keys remembered from the old stream during a handover (bounded memory).
HANDOVER_MAX_KEYS = 200_000

#: After a handover switch, new messages whose key the old stream delivered are dropped
#: for this many seconds (later ones cannot be duplicates of the old stream any more).
HANDOVER_DEDUPE_WINDOW = 5.0

#: HTTP statuses that will not change by retrying: the first attempt's error is final.
PERMANENT_HTTP_STATUSES = frozenset({400, 401, 403, 404, 405, 406, 410, 426})

_INF = math.inf
_S = ConnectionState
_R = DisconnectReason


class IllegalTransitionError(RuntimeError):
    """A state change that the transition table forbids: a bug in the engine."""


def backoff_delay(
    strategy: ReconnectStrategy,
    attempt: int,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1-based).

    ``EXPONENTIAL_BACKOFF``: ``min(cap, base * 2**(attempt-1))`` with jitter, drawn in
    ``[d/2, d]`` so simultaneous clients spread out; ``FIXED_DELAY``: ``base``;
    ``IMMEDIATE``: 0.
    """
    if strategy is ReconnectStrategy.IMMEDIATE:
        return 0.0
    if strategy is ReconnectStrategy.FIXED_DELAY:
        return base
    delay = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return (rng or random).uniform(delay / 2.0, delay)


@dataclass
class _Ending:
    """How a connection ended: exactly one reason, plus the close code/reason if any."""

    reason: DisconnectReason
    code: int | None = None
    text: str = ""
    error: BaseException | None = None


class _RecentKeys:
    """Insertion-ordered set of at most ``maxlen`` keys (the oldest are forgotten)."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._keys: dict[Any, None] = {}

    def add(self, key: Any) -> None:
        keys = self._keys
        keys[key] = None
        if len(keys) > self.maxlen:
            del keys[next(iter(keys))]

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class _Link:
    """One open WebSocket connection. The engine thread reads; writers hold the write lock."""

    def __init__(self, hs: transport.Handshake, parser: Any, encoder: Any) -> None:
        self.handshake = hs
        self.sock: socket.socket = hs.sock
        self.parser = parser
        self.encoder = encoder
        self.tls = isinstance(hs.sock, ssl.SSLSocket)
        # OpenSSL objects must not be read and written by two threads at once.
        self.io_lock = threading.Lock()
        self.open = True
        self.connected_at = time.monotonic()
        self.ping_payload: bytes | None = None
        self.ping_count = 0
        self.pong_deadline = _INF
        self.close_sent = False
        #: monotonic time of a scheduled make-before-break rotation
        self.rotate_at = _INF


class Engine:
    """Connection engine behind one ``WebSocketManager``. See the module docstring."""

    def __init__(self, settings: Settings, inbox: Inbox) -> None:
        self.settings = settings
        self.inbox = inbox
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._sub_lock = threading.Lock()
        self._state = _S.DISCONNECTED
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._link: _Link | None = None
        self._dead = True
        self._shutdown = False
        self._terminal_error: BaseException | None = None
        self._subscriptions: list[dict[str, Any] | str] = list(settings.subscriptions)
        self._limiter = SendRateLimiter(settings.max_send_rate) if settings.max_send_rate else None
        self._rng = random.Random()
        self._buf = bytearray(READ_BUFFER_SIZE)
        self._mode, self._loads, self._decode_fn = self._decode_plan(settings.decode)
        # commands (guarded by _cond); _cmd_pending is read without the lock on the hot path
        self._cmd_pending = False
        self._stop_mode: str | None = None  # "close" | "force"
        self._cmd_disconnect = False
        self._cmd_kill = False
        self._cmd_soft = False
        self._cmd_connect_now = False
        self._cmd_schedule_at: float | None = None
        self._pending_schedule_at = 0.0
        self._ack_seq = 0
        # counters (guarded by _stats_lock)
        self._first_connect_at: float | None = None
        self._connection_time = 0.0
        self._connects = 0
        self._disconnects = 0
        self._proactive = 0
        self._reactive = 0
        self._by_reason: dict[DisconnectReason, int] = {}
        self._reconnect_attempts = 0
        self._callback_errors = 0
        self._extra_decode_errors = 0
        self._last_reason: DisconnectReason | None = None
        self._closed_rx_msgs = 0
        self._closed_rx_bytes = 0
        self._closed_tx_msgs = 0
        self._closed_tx_bytes = 0
        self._closed_decode_errors = 0
        self._handovers = 0
        self._handover_failures = 0
        self._duplicates_dropped = 0
        self._overlap_seconds = 0.0
        self._gaps = 0
        self._gap_seconds = 0.0
        self._gap_started_at: float | None = None
        # handover and gap markers
        self._handover_enabled = (
            settings.handover if settings.handover is not None else settings.dedupe_key is not None
        )
        self._handover_wanted = False
        self._dedupe_seen: _RecentKeys | None = None
        self._dedupe_until = 0.0
        self._markers = False
        self._cancel_connect: Callable[[], None] | None = None
        self._closers: list[threading.Thread] = []

    # ------------------------------------------------------------------ decode plan

    @staticmethod
    def _decode_plan(
        decode: Any,
    ) -> tuple[int, Callable[[bytes], Any] | None, Callable[[Any], Any] | None]:
        if decode == "json":
            return codec.MODE_JSON, orjson.loads, None
        if decode == "bytes":
            return codec.MODE_BYTES, None, None
        if decode is None:
            return codec.MODE_TEXT, None, None
        if callable(decode):
            return codec.MODE_TEXT, None, decode
        raise ValueError(f"decode: unsupported value {decode!r}")

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def markers_enabled(self) -> bool:
        return self._markers

    def enable_markers(self) -> None:
        """Put ``Connected`` / ``Disconnected`` gap markers in the inbox from now on."""
        self._markers = True

    @property
    def is_dead(self) -> bool:
        """No connection, and the engine will not (re)connect by itself."""
        return self._dead

    @property
    def is_shutdown(self) -> bool:
        return self._shutdown

    @property
    def in_engine_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _transition(self, new: ConnectionState) -> None:
        with self._cond:
            old = self._state
            if new is old:
                return
            if new not in LEGAL_TRANSITIONS[old]:
                raise IllegalTransitionError(f"illegal state transition {old.name} -> {new.name}")
            self._state = new
            log.debug("state %s -> %s", old.name, new.name)
            self._cond.notify_all()

    # ------------------------------------------------------------------ commands (any thread)

    def _wake(self) -> None:
        # Called with _cond held.
        self._cmd_pending = True
        w = self._wake_w
        if w is not None:
            try:
                w.send(b"\0")
            except (BlockingIOError, OSError):
                pass  # already has a pending byte, or the engine is gone
        self._cond.notify_all()

    def _wait_ack(self, seq: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._ack_seq <= seq and not self._dead:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def start(self, delay: float = 0.0) -> None:
        """Start the engine thread if it is not running (dead); else ask it to connect now."""
        with self._cond:
            if not self._dead:
                if delay <= 0:
                    self._cmd_connect_now = True
                else:
                    self._cmd_schedule_at = time.monotonic() + delay
                self._wake()
                return
            old = self._thread
        if old is not None and old is not threading.current_thread():
            old.join(self.settings.close_timeout + 1.0)
        with self._cond:
            if not self._dead:  # another thread started it meanwhile
                return
            self._dead = False
            self._terminal_error = None
            self._stop_mode = None
            self._cmd_disconnect = self._cmd_kill = self._cmd_soft = False
            self._cmd_connect_now = False
            self._cmd_schedule_at = None
            self._cmd_pending = False
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self.inbox.reopen()
            self._thread = threading.Thread(
                target=self._run,
                args=(delay,),
                name=f"kstlib-ws-engine:{self.settings.url}",
                daemon=True,
            )
            self._thread.start()

    @property
    def connect_count(self) -> int:
        """How many connections were established so far (``stats.connects``)."""
        return self._connects

    def wait_connected(self, since: int, timeout: float | None = None) -> None:
        """Block until a connection was established after ``connect_count`` was ``since``
        (even one the server closed at once); raise the error that made the engine give
        up, or ``WebSocketTimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._connects <= since:
                if self._dead:
                    err = self._terminal_error
                    if err is not None:
                        raise err
                    raise WebSocketClosedError(None, "closed before the connection was established")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WebSocketTimeoutError("connect", timeout)
                self._cond.wait(remaining)

    def disconnect(self) -> None:
        """Proactive disconnect now (USER_REQUESTED); waits until it took effect."""
        with self._cond:
            if self._dead:
                return
            self._cmd_disconnect = True
            seq = self._ack_seq
            self._wake()
        if not self.in_engine_thread:
            self._wait_ack(seq, self.settings.close_timeout + 1.0)

    def request_disconnect(self) -> None:
        """Disconnect at the next safe moment; returns at once."""
        with self._cond:
            if self._dead:
                return
            self._cmd_soft = True
            self._wake()

    def schedule_reconnect(self, delay: float) -> None:
        """Disconnect now if connected (SCHEDULED) and reconnect after ``delay`` seconds."""
        if delay < 0 or not math.isfinite(delay):
            raise ValueError(f"schedule_reconnect: delay must be >= 0 seconds, got {delay!r}")
        with self._cond:
            if self._shutdown:
                log.warning("schedule_reconnect() after force_close()/shutdown(): ignored")
                return
            if self._dead:
                pass  # started below, outside the lock
            else:
                self._cmd_schedule_at = time.monotonic() + delay
                self._wake()
                return
        self.start(delay=delay)

    def kill(self) -> None:
        """Drop the socket without a closing handshake (reason KILLED, reactive)."""
        with self._cond:
            if self._dead or self._link is None:
                return
            self._cmd_kill = True
            seq = self._ack_seq
            self._wake()
        if not self.in_engine_thread:
            self._wait_ack(seq, self.settings.close_timeout + 1.0)

    def stop(self, mode: str) -> None:
        """End the engine: ``"close"`` (closing handshake) or ``"force"`` (immediate).

        Returns once the engine thread has ended (within ``close_timeout`` plus a small
        margin), or at once when called from the engine thread itself (a callback).
        """
        if mode == "force":
            self._shutdown = True
        with self._cond:
            thread = self._thread
            running = not self._dead
            if running:
                if self._stop_mode != "force":
                    self._stop_mode = mode
                self._wake()
            cancel = self._cancel_connect
        if cancel is not None:  # a handshake in progress: end it now
            cancel()
        self.inbox.interrupt_put()
        if running:
            if self.in_engine_thread:
                return
            assert thread is not None
            thread.join(self.settings.close_timeout + 1.0)
            if thread.is_alive():  # pragma: no cover - a stuck handshake; never expected
                log.error("engine thread did not stop within close_timeout")
            return
        with self._cond:
            if self._state is not _S.CLOSED:
                self._transition(_S.CLOSING)
                self._transition(_S.CLOSED)
        self.inbox.finish(None)

    # ------------------------------------------------------------------ subscriptions / send

    def subscriptions(self) -> list[dict[str, Any] | str]:
        with self._cond:
            return list(self._subscriptions)

    def add_subscription(self, msg: dict[str, Any] | str) -> None:
        # _sub_lock orders this against a connect that is sending the list: the message is
        # either in the list it sends, or sent here once it is CONNECTED.
        with self._sub_lock:
            with self._cond:
                self._subscriptions.append(msg)
                connected = self._state is _S.CONNECTED
            if connected:
                self.send(msg)

    def remove_subscription(
        self, msg: dict[str, Any] | str, unsubscribe_message: dict[str, Any] | str | None
    ) -> None:
        with self._sub_lock:
            with self._cond:
                try:
                    self._subscriptions.remove(msg)
                except ValueError:
                    raise ValueError(f"not subscribed: {msg!r}") from None
                connected = self._state is _S.CONNECTED
            if connected and unsubscribe_message is not None:
                self.send(unsubscribe_message)

    def send(self, data: Any) -> None:
        """Send one message from any thread: str (text), bytes-like (binary), dict/list (JSON)."""
        payload: Any
        if isinstance(data, str):
            opcode, payload = codec.OP_TEXT, data
        elif isinstance(data, (bytes, bytearray, memoryview)):
            opcode, payload = codec.OP_BINARY, data
        elif isinstance(data, (dict, list)):
            opcode, payload = codec.OP_TEXT, orjson.dumps(data)
        else:
            raise TypeError(f"send() takes str, bytes or a dict/list, not {type(data).__name__}")
        if self._link is None:
            raise WebSocketClosedError(None, f"not connected (state {self._state.name})")
        if self._limiter is not None and not self._limiter.acquire(
            cancelled=lambda: self._stop_mode is not None
        ):
            raise WebSocketClosedError(None, "closing")
        self._send_frame(opcode, payload, user=True)

    def _send_frame(
        self, opcode: int, payload: Any, user: bool = False, link: _Link | None = None
    ) -> None:
        """Encode and write one frame on ``link`` (default: the current connection)."""
        with self._write_lock:
            if link is None:
                link = self._link
            if link is None or not link.open or link.close_sent:
                raise WebSocketClosedError(None, f"not connected (state {self._state.name})")
            try:
                frame = link.encoder.encode(opcode, payload)
                self._write(link, frame)
            except WebSocketTimeoutError:
                raise
            except OSError as exc:
                if user:
                    raise WebSocketClosedError(
                        None, f"connection lost while sending: {exc}"
                    ) from exc
                raise

    def _write(self, link: _Link, data: bytes) -> None:
        """Write all of ``data`` on the non-blocking socket. Caller holds the write lock."""
        view = memoryview(data)
        sock = link.sock
        deadline: float | None = None
        while view:
            try:
                if link.tls:
                    with link.io_lock:
                        sent = sock.send(view)
                else:
                    sent = sock.send(view)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.settings.ping_timeout
                if now >= deadline:
                    raise WebSocketTimeoutError("send", self.settings.ping_timeout) from None
                if not link.open:
                    raise BrokenPipeError("connection closed while sending") from None
                select.select([], [sock], [], min(deadline - now, 0.5))
                continue
            view = view[sent:]

    # ------------------------------------------------------------------ stats

    def stats(self) -> WebSocketStats:
        now = time.monotonic()
        with self._stats_lock:
            rx_msgs, rx_bytes = self._closed_rx_msgs, self._closed_rx_bytes
            tx_msgs, tx_bytes = self._closed_tx_msgs, self._closed_tx_bytes
            dec = self._closed_decode_errors + self._extra_decode_errors
            conn_time = self._connection_time
            link = self._link
            if link is not None:
                rx_msgs += link.parser.messages_received
                rx_bytes += link.parser.bytes_received
                dec += link.parser.decode_errors
                tx_msgs += link.encoder.messages_sent
                tx_bytes += link.encoder.bytes_sent
                conn_time += now - link.connected_at
            uptime = 0.0 if self._first_connect_at is None else now - self._first_connect_at
            gap_seconds = self._gap_seconds
            if self._gap_started_at is not None:
                gap_seconds += now - self._gap_started_at
            return WebSocketStats(
                connects=self._connects,
                disconnects=self._disconnects,
                proactive_disconnects=self._proactive,
                reactive_disconnects=self._reactive,
                messages_received=rx_msgs,
                messages_sent=tx_msgs,
                bytes_received=rx_bytes,
                bytes_sent=tx_bytes,
                uptime=uptime,
                connection_time=conn_time,
                reconnect_attempts=self._reconnect_attempts,
                messages_dropped=self.inbox.dropped,
                decode_errors=dec,
                callback_errors=self._callback_errors,
                last_disconnect_reason=self._last_reason,
                disconnects_by_reason=dict(self._by_reason),
                handovers=self._handovers,
                handover_failures=self._handover_failures,
                duplicates_dropped=self._duplicates_dropped,
                overlap_seconds=self._overlap_seconds,
                gaps=self._gaps,
                gap_seconds=gap_seconds,
            )

    # ------------------------------------------------------------------ callbacks

    def _call(self, name: str, fn: Callable[..., Any] | None, *args: Any) -> Any:
        """Run a user callback; an exception is logged, counted and passed to on_error."""
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            with self._stats_lock:
                self._callback_errors += 1
            log.exception("callback %s raised", name)
            if name != "on_error":
                self._call("on_error", self.settings.on_error, exc)
            return None

    def _report_error(self, exc: BaseException) -> None:
        self._call("on_error", self.settings.on_error, exc)

    # ------------------------------------------------------------------ the thread

    def _run(self, delay: float) -> None:
        try:
            self._main(delay)
        except BaseException as exc:  # a bug must reach the consumer, never vanish
            log.exception("engine thread failed")
            with self._cond:
                if self._terminal_error is None:
                    self._terminal_error = exc
        finally:
            self._teardown()

    def _teardown(self) -> None:
        link = self._link
        if link is not None:
            self._abort(link)
            self._retire(link)
        for closer in self._closers:
            closer.join(self.settings.close_timeout + 1.0)
        self._closers = []
        with self._cond:
            if self._stop_mode is not None and self._state is not _S.CLOSED:
                try:
                    self._transition(_S.CLOSING)
                    self._transition(_S.CLOSED)
                except IllegalTransitionError:  # pragma: no cover - logged bug
                    log.exception("state bug during teardown")
            for s in (self._wake_r, self._wake_w):
                if s is not None:
                    s.close()
            self._wake_r = self._wake_w = None
            # dead first: a consumer woken by the end of the stream sees is_dead
            self._dead = True
            if not self.inbox.finished:
                self.inbox.finish(self._terminal_error)
            self._ack_seq += 1
            self._cmd_pending = False
            self._cond.notify_all()

    def _ack(self) -> None:
        with self._cond:
            self._ack_seq += 1
            self._cond.notify_all()

    def _take_commands(self) -> tuple[str | None, bool, bool, bool, bool, float | None]:
        with self._cond:
            out = (
                self._stop_mode,
                self._cmd_disconnect,
                self._cmd_kill,
                self._cmd_soft,
                self._cmd_connect_now,
                self._cmd_schedule_at,
            )
            self._cmd_disconnect = self._cmd_kill = self._cmd_connect_now = False
            self._cmd_schedule_at = None
            self._cmd_pending = self._stop_mode is not None
            if self._wake_r is not None:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            return out

    def _fail(self, error: BaseException) -> None:
        """Give up: the error reaches the consumer (stream / connect) at teardown."""
        with self._cond:
            self._terminal_error = error
            self._transition(_S.DISCONNECTED)

    def _main(self, delay: float) -> None:
        s = self.settings
        attempts = 0
        phase = _S.CONNECTING
        while True:
            # ---- wait before the attempt (backoff, schedule) -----------------------------
            if delay > 0:
                outcome, delay = self._wait(time.monotonic() + delay)
                if outcome == "stop":
                    return
                if outcome == "disconnect":
                    self._ack()
                    if self._transition_to_disconnected_idle(_R.USER_REQUESTED):
                        attempts, delay, phase = 0, 0.0, _S.CONNECTING
                        continue
                    return
                if outcome == "schedule":
                    continue
            self._transition(phase)
            # ---- connect -------------------------------------------------------------------
            limit = s.max_reconnect_attempts if s.auto_reconnect else 1
            if limit is not None and attempts >= limit:
                self._fail(
                    WebSocketConnectionError(
                        f"giving up on {s.url} after {attempts} connection attempt(s)",
                        url=s.url,
                        attempts=attempts,
                    )
                )
                return
            attempts += 1
            if phase is _S.RECONNECTING:
                with self._stats_lock:
                    self._reconnect_attempts += 1
            try:
                link = self._open()
            except (WebSocketConnectionError, WebSocketTimeoutError, WebSocketProtocolError) as exc:
                if self._stop_mode is not None:
                    return
                self._report_error(exc)
                status = getattr(exc.__cause__, "status_code", None)
                permanent = status in PERMANENT_HTTP_STATUSES
                exhausted = limit is not None and attempts >= limit
                if permanent or exhausted:
                    err = WebSocketConnectionError(
                        f"could not connect to {s.url} after {attempts} attempt(s): {exc}",
                        url=s.url,
                        attempts=attempts,
                    )
                    err.__cause__ = exc
                    self._fail(err)
                    return
                log.warning("connection attempt %d to %s failed: %s", attempts, s.url, exc)
                delay = backoff_delay(
                    s.reconnect_strategy,
                    attempts,
                    s.reconnect_delay,
                    s.reconnect_delay_max,
                    self._rng,
                )
                delay = max(delay, 1e-3)  # always look at commands between attempts
                continue
            if link is None:  # stopped while connecting
                return
            # ---- connected ----------------------------------------------------------------
            link, ending = self._serve(link)
            if time.monotonic() - link.connected_at >= HEALTHY_AFTER:
                attempts = 0
            reason = ending.reason
            # The state changes first, then the disconnect is recorded (and acknowledged),
            # so a caller woken by the acknowledgement sees the state that follows.
            if self._stop_mode is not None:
                self._transition(_S.CLOSING)
                self._record_disconnect(link, ending)
                return
            if reason is _R.SCHEDULED or reason is _R.CONNECTION_LIMIT:
                at = self._pending_schedule_at if reason is _R.SCHEDULED else 0.0
                self._transition(_S.RECONNECTING)
                self._record_disconnect(link, ending)
                phase, delay, attempts = _S.RECONNECTING, max(0.0, at - time.monotonic()), 0
                continue
            if reason is _R.USER_REQUESTED or reason is _R.CALLBACK_TRIGGERED:
                self._transition(_S.DISCONNECTED)
                self._record_disconnect(link, ending)
                if self._transition_to_disconnected_idle(reason):
                    attempts, delay, phase = 0, 0.0, _S.CONNECTING
                    continue
                return
            # reactive
            if not s.auto_reconnect:
                code = ending.code if ending.code is not None else 1006
                self._fail(WebSocketClosedError(code, ending.text or reason.value))
                self._record_disconnect(link, ending)
                return
            self._transition(_S.RECONNECTING)
            self._record_disconnect(link, ending)
            phase = _S.RECONNECTING
            delay = backoff_delay(
                s.reconnect_strategy,
                attempts + 1,
                s.reconnect_delay,
                s.reconnect_delay_max,
                self._rng,
            )
            delay = max(delay, 1e-3)

    def _transition_to_disconnected_idle(self, reason: DisconnectReason) -> bool:
        """After a proactive disconnect: wait for a reason to reconnect.

        Returns True to reconnect now, False when the engine should end (dead, or stop).
        ``should_reconnect()`` is polled every ``reconnect_check_interval``; with no
        ``should_reconnect``, a CALLBACK_TRIGGERED disconnect reconnects once
        ``should_disconnect()`` turns False. A plain ``disconnect()`` waits for the user.
        """
        s = self.settings
        self._transition(_S.DISCONNECTED)
        if s.should_reconnect is not None:
            probe: Callable[[], bool] | None = s.should_reconnect
        elif reason is _R.CALLBACK_TRIGGERED and s.should_disconnect is not None:
            should_disconnect = s.should_disconnect

            def probe() -> bool:
                return not should_disconnect()

        else:
            probe = None
        deadline = _INF
        while True:
            outcome, remaining = self._wait(deadline, probe)
            if outcome == "stop":
                return False
            if outcome in ("ready", "now"):
                return True
            if outcome == "schedule":
                deadline = time.monotonic() + remaining
                probe = None
                continue
            if outcome == "disconnect":
                self._ack()
                continue
            if outcome == "timeout":  # the scheduled time came
                return True
            if outcome == "idle":
                return False

    def _wait(self, deadline: float, probe: Callable[[], bool] | None = None) -> tuple[str, float]:
        """Wait while not connected, until ``deadline``, a command, or ``probe()`` is True.

        Returns ``(outcome, delay)``: ``"timeout"``, ``"stop"``, ``"now"`` (connect now),
        ``"schedule"`` (delay = seconds from now), ``"disconnect"``, ``"ready"`` (probe),
        or ``"idle"`` when nothing can ever end the wait (no deadline, no probe).
        """
        interval = self.settings.reconnect_check_interval
        next_probe = time.monotonic()
        while True:
            now = time.monotonic()
            if self._cmd_pending:
                stop, disc, _kill, _soft, now_cmd, sched = self._take_commands()
                with self._cond:
                    self._cmd_soft = False  # already disconnected: nothing left to request
                if stop is not None:
                    return "stop", 0.0
                if sched is not None:
                    return "schedule", max(0.0, sched - now)
                if now_cmd:
                    return "now", 0.0
                if disc:
                    return "disconnect", 0.0
            if probe is not None and now >= next_probe:
                if self._call("should_reconnect", probe):
                    return "ready", 0.0
                next_probe = now + interval
            if now >= deadline:
                return "timeout", 0.0
            if probe is None and deadline is _INF:
                return "idle", 0.0
            wake_at = min(deadline, next_probe if probe is not None else _INF)
            self._sleep(max(0.0, wake_at - now))

    def _sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a command wakes it early."""
        r = self._wake_r
        if r is None:  # pragma: no cover - only while tearing down
            time.sleep(min(seconds, 0.05))
            return
        select.select([r], [], [], min(seconds, 3600.0))

    # ------------------------------------------------------------------ connecting

    def _new_link(self) -> _Link:
        """Handshake one new connection (``before_connect`` first); no state changes."""
        s = self.settings
        self._call("before_connect", s.before_connect)
        hs = transport.open_connection(
            s.url,
            timeout=s.connect_timeout,
            headers=s.headers,
            subprotocols=s.subprotocols,
            ssl_context=s.ssl,
            proxy=s.proxy,
            compression=s.compression == "deflate",
            on_cancel=self._set_cancel_connect,
        )
        try:
            parser, encoder = transport.make_codec(
                hs, max_message_size=s.max_message_size, mode=self._mode, loads=self._loads
            )
            hs.sock.setblocking(False)
            return _Link(hs, parser, encoder)
        except BaseException:
            hs.sock.close()
            raise

    def _set_cancel_connect(self, cancel: Callable[[], None] | None) -> None:
        with self._cond:
            self._cancel_connect = cancel
            stopping = self._stop_mode is not None
        if stopping and cancel is not None:
            cancel()  # close() came before the handshake started

    def _subscribe(self, link: _Link) -> int | None:
        """Send the subscriptions, in order, on ``link``; returns how many (None: stopped).

        Caller holds ``_sub_lock``. Raises ``WebSocketConnectionError`` if the connection
        breaks meanwhile."""
        try:
            subs = self.subscriptions()
            for sub in subs:
                if self._limiter is not None and not self._limiter.acquire(
                    cancelled=lambda: self._stop_mode is not None, sleep=self._sleep
                ):
                    return None
                payload = sub if isinstance(sub, str) else orjson.dumps(sub)
                self._send_frame(codec.OP_TEXT, payload, link=link)
        except (OSError, WebSocketError) as exc:
            raise WebSocketConnectionError(
                f"connection to {self.settings.url} lost while subscribing: {exc}",
                url=self.settings.url,
            ) from exc
        return len(subs)

    def _open(self) -> _Link | None:
        """One connection attempt: handshake, subscriptions, CONNECTED (None: stopped)."""
        link = self._new_link()
        with self._write_lock, self._stats_lock:
            self._link = link
        if self._stop_mode is not None:
            return None
        with self._sub_lock:
            try:
                count = self._subscribe(link)
            except WebSocketConnectionError:
                self._abort(link)
                self._retire(link)
                raise
            if count is None:
                return None
            link.connected_at = time.monotonic()
            with self._stats_lock:
                self._connects += 1
                first = self._first_connect_at is None
                if first:
                    self._first_connect_at = link.connected_at
                if self._gap_started_at is not None:
                    self._gap_seconds += link.connected_at - self._gap_started_at
                    self._gap_started_at = None
            self._transition(_S.CONNECTED)
        if self._markers:
            self.inbox.put_batch([Connected(time.time(), count, not first)], force=True)
        log.info("connected to %s", self.settings.url)
        self._call("on_connect", self.settings.on_connect)
        return link

    # ------------------------------------------------------------------ serving

    def _serve(self, link: _Link) -> tuple[_Link, _Ending]:
        """Serve connections until one ends; a handover swaps in its successor.

        Returns the connection that ended and why."""
        while True:
            out = self._serve_link(link)
            if isinstance(out, _Ending):
                return link, out
            link = out

    def _serve_link(self, link: _Link) -> _Ending | _Link:
        """Read and dispatch until the connection ends (returns why) or a handover
        replaced it (returns the new connection)."""
        s = self.settings
        buf = self._buf
        view = memoryview(buf)
        sock = link.sock
        feed = link.parser.feed
        recv_into = sock.recv_into
        tls = link.tls
        io_lock = link.io_lock
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        assert self._wake_r is not None
        poller.register(self._wake_r.fileno(), select.POLLIN)

        now = time.monotonic()
        ping_every = s.ping_interval
        next_ping = now + ping_every if ping_every else _INF
        check_every = s.disconnect_check_interval
        # no should_disconnect: nothing to check, so an idle connection never wakes up
        next_check = now + check_every if s.should_disconnect is not None else _INF
        age_deadline = link.connected_at + s.max_connection_age if s.max_connection_age else _INF
        leftover = link.handshake.leftover
        pending_input: bytes | None = leftover if leftover else None
        rotation: DisconnectReason | None = None

        while True:
            # 1. read (never more than one recv between looking at commands and timers)
            if pending_input is not None:
                chunk: Any = pending_input
                n = len(chunk)
                pending_input = None
            else:
                try:
                    if tls:
                        with io_lock:
                            n = recv_into(buf)
                    else:
                        n = recv_into(buf)
                except (
                    BlockingIOError,
                    InterruptedError,
                    ssl.SSLWantReadError,
                    ssl.SSLWantWriteError,
                ):
                    n = -1
                except OSError as exc:
                    return self._lost(link, _R.NETWORK_ERROR, exc)
                if n == 0:
                    return self._lost(
                        link, _R.NETWORK_ERROR, EOFError("connection closed by peer (EOF)")
                    )
                chunk = view[:n] if n > 0 else None
            if n > 0:
                msgs, ctrls, err = feed(chunk)
                if msgs:
                    blocked = self._deliver(msgs)
                    if blocked:
                        next_ping += blocked
                        if link.pong_deadline is not _INF:
                            link.pong_deadline += blocked
                    if self._handover_wanted:
                        self._handover_wanted = False
                        rotation = _R.CONNECTION_LIMIT
                if ctrls:
                    ending = self._on_controls(link, ctrls)
                    if ending is not None:
                        return ending
                if err is not None:
                    return self._protocol_failure(link, err)
            # 2. commands
            if self._cmd_pending:
                ending = self._on_commands(link)
                if ending is not None:
                    return ending
            # 3. timers
            now = time.monotonic()
            if now >= next_ping:
                next_ping = now + ping_every  # type: ignore[operator]
                try:
                    self._send_ping(link, now)
                except (OSError, WebSocketError) as exc:
                    return self._lost(link, _R.NETWORK_ERROR, exc)
            if now >= link.pong_deadline:
                self._abort(link)
                return _Ending(_R.PING_TIMEOUT, None, f"no pong within {s.ping_timeout:g}s")
            if now >= next_check:
                next_check = now + check_every
                if s.should_disconnect is not None and self._call(
                    "should_disconnect", s.should_disconnect
                ):
                    with self._cond:
                        soft = self._cmd_soft
                        self._cmd_soft = False
                    reason = _R.USER_REQUESTED if soft else _R.CALLBACK_TRIGGERED
                    return self._graceful(link, reason)
            if now >= age_deadline:
                age_deadline = _INF
                rotation = _R.CONNECTION_LIMIT
            if now >= link.rotate_at:
                link.rotate_at = _INF
                rotation = _R.SCHEDULED
            if rotation is not None:
                reason, rotation = rotation, None
                if not self._handover_enabled:
                    return self._graceful(link, reason)
                out = self._handover(link, reason)
                if out is not None:
                    return out
                # the new connection failed: keep this one until its real end
            if n > 0:
                continue
            # 4. nothing to read: sleep until data, a command, or the next timer
            wake_at = min(next_ping, link.pong_deadline, next_check, age_deadline, link.rotate_at)
            if wake_at == _INF:
                poller.poll()  # nothing scheduled: data or a command (wake pipe) ends it
            else:
                poller.poll(min(max(0, math.ceil((wake_at - now) * 1000.0)), 3_600_000))

    # ------------------------------------------------------------------ handover

    def _read_into(self, link: _Link, buf: bytearray) -> int:
        """One non-blocking read: bytes read, -1 when nothing is available, 0 on EOF."""
        try:
            if link.tls:
                with link.io_lock:
                    return link.sock.recv_into(buf)
            return link.sock.recv_into(buf)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return -1

    def _handover(self, old: _Link, reason: DisconnectReason) -> _Link | _Ending | None:
        """Make-before-break rotation of ``old``.

        Opens and subscribes a new connection (the old one's unread data waits in the
        kernel meanwhile), then reads both: the old stream is still delivered, and its
        message keys are remembered; the new stream is held back. Once a held message's
        key was already delivered (the new stream has caught up), or the old connection
        ends, or ``connect_timeout`` passes, the engine switches: the old connection gets
        a close frame and is dropped, the held messages are delivered without the
        duplicates, and the new connection becomes current. Returns the new link; None
        if the new connection failed (the old one stays); an ``_Ending`` if the old one
        ended and the new one failed too. A pending command (close, kill...) aborts the
        handover and is handled on the old connection.
        """
        s = self.settings
        key_of = s.dedupe_key
        assert key_of is not None
        started = time.monotonic()
        with self._sub_lock:
            try:
                new = self._new_link()
            except (WebSocketError, OSError) as exc:
                self._handover_failed(exc)
                return None
            try:
                subscribed = self._subscribe(new)
                if subscribed is None:
                    self._abort(new)
                    return None
            except WebSocketError as exc:
                self._abort(new)
                self._handover_failed(exc)
                return None
            seen = _RecentKeys(HANDOVER_MAX_KEYS)
            held: list[Any] = []
            held_keys: set[Any] = set()
            first_key: Any = None  # key of the first keyed message of the new stream
            new_buf = bytearray(READ_BUFFER_SIZE)
            poller = select.poll()
            poller.register(old.sock.fileno(), select.POLLIN)
            poller.register(new.sock.fileno(), select.POLLIN)
            assert self._wake_r is not None
            poller.register(self._wake_r.fileno(), select.POLLIN)
            old_ending: _Ending | None = None
            now = time.monotonic()
            deadline = now + s.connect_timeout
            next_ping = now + s.ping_interval if s.ping_interval else _INF
            caught_up = hole = False
            pending = new.handshake.leftover or None
            while not (caught_up or hole):
                # the old stream: delivered as usual, its keys remembered; its keepalive
                # still runs, so a half-open old peer is declared dead, not waited for
                if old_ending is None:
                    old_ending, verdict = self._pump_old(old, seen, key_of, held_keys, first_key)
                    caught_up = verdict == "caught_up"
                    hole = verdict == "hole"
                now = time.monotonic()
                if old_ending is None and now >= old.pong_deadline:
                    self._abort(old)
                    old_ending = _Ending(_R.PING_TIMEOUT, None, "no pong during the handover")
                if old_ending is None and now >= next_ping:
                    next_ping = now + s.ping_interval  # type: ignore[operator]
                    try:
                        self._send_ping(old, now)
                    except (OSError, WebSocketError) as exc:
                        old_ending = self._lost(old, _R.NETWORK_ERROR, exc)
                # the new stream: held back
                failure: BaseException = EOFError("new connection closed during the handover")
                if pending is not None:
                    chunk: Any = pending
                    n, pending = len(pending), None
                else:
                    try:
                        n = self._read_into(new, new_buf)
                    except OSError as exc:
                        n, failure = 0, exc
                    chunk = memoryview(new_buf)[:n] if n > 0 else None
                fresh_keys: list[Any] = []
                if n > 0:
                    msgs, ctrls, err = new.parser.feed(chunk)
                    for m in msgs:
                        held.append(m)
                        k = self._key(key_of, m)
                        if k is not None:
                            held_keys.add(k)
                            fresh_keys.append(k)
                            if first_key is None:
                                first_key = k
                    if ctrls and self._on_controls(new, ctrls) is not None:
                        n = 0
                    if err is not None:
                        n, failure = 0, err
                if n == 0:  # the new connection broke: give up on it
                    self._abort(new)
                    self._handover_failed(failure)
                    return old_ending
                # Caught up: the new stream's first message was delivered by the old
                # one, so the two overlap with nothing in between. A later held message
                # seen on the old stream while the first was not means the old stream
                # skipped data: a hole, reported as a gap.
                if first_key is not None and not (caught_up or hole):
                    if first_key in seen:
                        caught_up = True
                    elif any(k in seen for k in fresh_keys):
                        hole = True
                if old_ending is not None or now >= deadline:
                    break
                if self._cmd_pending:  # close / kill / disconnect: back to the old link
                    self._abort(new)
                    return old_ending
                if not (caught_up or hole):
                    poller.poll(50)
            # switch
            if old_ending is None:
                self._close_in_background(old, reason.value)
                old_ending = _Ending(reason, 1000, reason.value)
            self._retire(old)
            new.connected_at = time.monotonic()
            with self._write_lock, self._stats_lock:
                self._link = new
                self._connects += 1
                self._handovers += 1
                self._overlap_seconds += new.connected_at - started
            # Caught up: the overlap proves nothing was missed. Otherwise (the old stream
            # stalled or ended first, or nothing arrived in time) data may be missing: it
            # is reported as a gap, with markers, like any reconnect.
            self._record_disconnect(old, old_ending, gap=not caught_up)
            fresh = []
            dups = 0
            for m in held:
                k = self._key(key_of, m)
                if k is not None and k in seen:
                    dups += 1
                else:
                    fresh.append(m)
            self._dedupe_seen = seen
            self._dedupe_until = time.monotonic() + HANDOVER_DEDUPE_WINDOW
            with self._stats_lock:
                self._duplicates_dropped += dups
        log.info(
            "handover completed (%s): %d duplicate(s) dropped%s",
            reason.name,
            dups,
            "" if caught_up else "; no overlap seen, reported as a gap",
        )
        if not caught_up:
            with self._stats_lock:
                self._gap_started_at = None  # the new connection was up all along
            if self._markers:
                self.inbox.put_batch([Connected(time.time(), subscribed, True)], force=True)
        if fresh:
            self._deliver(fresh)
        self._call("on_connect", s.on_connect)
        return new

    def _pump_old(
        self,
        old: _Link,
        seen: _RecentKeys,
        key_of: Callable[[Any], Any],
        held_keys: set[Any],
        first_key: Any,
    ) -> tuple[_Ending | None, str | None]:
        """During a handover: one read of the old connection.

        Returns ``(ending, verdict)``: ``ending`` once the old connection has ended;
        ``verdict`` ``"caught_up"`` when this batch reaches the new stream's first
        message (the batch is delivered, its keys remembered), ``"hole"`` when it holds
        messages the new stream already has but not its first one: the old stream
        skipped data (e.g. a half-open peer that came back), so the batch is *not*
        delivered (everything in it reaches the consumer from the new stream, after a gap
        marker), ``None`` otherwise (delivered as usual, keys remembered)."""
        try:
            n = self._read_into(old, self._buf)
        except OSError as exc:
            return self._lost(old, _R.NETWORK_ERROR, exc), None
        if n == 0:
            eof = EOFError("connection closed by peer (EOF)")
            return self._lost(old, _R.NETWORK_ERROR, eof), None
        if n < 0:
            return None, None
        msgs, ctrls, err = old.parser.feed(memoryview(self._buf)[:n])
        verdict = None
        if msgs:
            keys = [k for k in (self._key(key_of, m) for m in msgs) if k is not None]
            if first_key is not None and (first_key in seen or first_key in keys):
                verdict = "caught_up"
            elif any(k in held_keys for k in keys):
                verdict = "hole"
            if verdict != "hole":
                for k in keys:
                    seen.add(k)
                self._deliver(msgs)
                self._handover_wanted = False
        if ctrls:
            ending = self._on_controls(old, ctrls)
            if ending is not None:
                return ending, verdict
        if err is not None:
            return self._protocol_failure(old, err), verdict
        return None, verdict

    def _key(self, key_of: Callable[[Any], Any], msg: Any) -> Any:
        try:
            return key_of(msg)
        except Exception:
            with self._stats_lock:
                self._callback_errors += 1
            log.exception("dedupe_key raised; the message is not deduplicated")
            return None

    def _close_in_background(self, link: _Link, text: str) -> None:
        """Closing handshake of a replaced connection on a short-lived thread, so the new
        connection is served at once. What the old one still sends is discarded (the new
        stream has it). Bounded by ``close_timeout``; joined at teardown."""
        try:
            with self._write_lock:
                link.close_sent = True
                self._write(link, link.encoder.encode_close(1000, text))
        except (OSError, WebSocketError):
            self._abort(link)
            return

        def finish() -> None:
            deadline = time.monotonic() + self.settings.close_timeout
            buf = bytearray(65536)
            try:
                while link.open and time.monotonic() < deadline:
                    n = self._read_into(link, buf)
                    if n == 0:
                        break
                    if n < 0:
                        select.select([link.sock], [], [], min(0.1, deadline - time.monotonic()))
                        continue
                    _msgs, ctrls, err = link.parser.feed(memoryview(buf)[:n])
                    if err is not None or any(op == codec.OP_CLOSE for op, _ in ctrls):
                        break
            except (OSError, ValueError):
                pass
            finally:
                self._abort(link)

        closer = threading.Thread(target=finish, name="kstlib-ws-engine-closer", daemon=True)
        self._closers = [t for t in self._closers if t.is_alive()]
        self._closers.append(closer)
        closer.start()

    def _handover_failed(self, exc: BaseException) -> None:
        log.warning("handover failed, staying on the current connection: %s", exc)
        with self._stats_lock:
            self._handover_failures += 1
        self._report_error(exc)

    def _deliver(self, msgs: list[Any], force: bool = False) -> float:
        """Hand a batch to the consumer; returns seconds spent blocked by back-pressure.

        ``force`` queues past the bound without waiting (the connection is ending)."""
        fn = self._decode_fn
        if fn is not None:
            msgs = [self._decode_one(fn, m) for m in msgs]
        if self._dedupe_seen is not None:
            msgs = self._drop_overlap(msgs)
        wants = self.settings.should_handover
        if wants is not None and self._handover_enabled:
            for m in msgs:
                if self._call("should_handover", wants, m):
                    self._handover_wanted = True
        on_message = self.settings.on_message
        if on_message is not None:
            # Time spent in the callback is credited to the ping deadlines like
            # back-pressure (the pong may be waiting unread). A stop request ends the
            # calls; the rest of the batch stays readable through stream().
            started = time.monotonic()
            for i, m in enumerate(msgs):
                if self._stop_mode is not None:
                    self.inbox.put_batch(msgs[i:], force=True)
                    break
                self._call("on_message", on_message, m)
            return time.monotonic() - started
        inbox = self.inbox
        if force:
            inbox.put_batch(msgs, force=True)
            return 0.0
        queued = inbox.put_batch(msgs, timeout=0.0 if inbox.overflow == "block" else None)
        if queued == len(msgs):
            return 0.0
        started = time.monotonic()
        rest = msgs[queued:]
        while rest:
            if self._stop_mode is not None:  # the final close: keep the last read
                inbox.put_batch(rest, force=True)
                break
            queued = inbox.put_batch(rest, timeout=BLOCKED_POLL)
            rest = rest[queued:]
        return time.monotonic() - started

    def _deliver_closing(self, msgs: list[Any], deadline: float) -> None:
        """Deliver what arrives during a closing handshake. For the final close
        everything is kept (once, past the bound); for a disconnect the engine recovers
        from, the bound holds: it waits for room until ``deadline`` and counts what still
        does not fit as dropped, so repeated disconnects cannot grow the queue."""
        if self._stop_mode is not None or self.settings.on_message is not None:
            self._deliver(msgs, force=True)
            return
        inbox = self.inbox
        if inbox.overflow == "drop_oldest":
            inbox.put_batch(msgs)
            return
        queued = inbox.put_batch(msgs, timeout=max(0.0, deadline - time.monotonic()))
        if queued < len(msgs):
            inbox.count_dropped(len(msgs) - queued)

    def _drop_overlap(self, msgs: list[Any]) -> list[Any]:
        """Just after a handover: drop messages the old connection already delivered."""
        seen = self._dedupe_seen
        if seen is None or time.monotonic() > self._dedupe_until:
            self._dedupe_seen = None
            return msgs
        key_of = self.settings.dedupe_key
        assert key_of is not None
        fresh = []
        for m in msgs:
            k = self._key(key_of, m)
            if k is None or k not in seen:
                fresh.append(m)
        dropped = len(msgs) - len(fresh)
        if dropped:
            with self._stats_lock:
                self._duplicates_dropped += dropped
        return fresh

    def _decode_one(self, fn: Callable[[Any], Any], raw: Any) -> Any:
        try:
            return fn(raw)
        except Exception as exc:
            with self._stats_lock:
                self._extra_decode_errors += 1
            log.debug("decode callable raised %r; delivering the raw message", exc)
            return raw

    def _send_ping(self, link: _Link, now: float) -> None:
        link.ping_count += 1
        payload = link.ping_count.to_bytes(8, "big")
        if self._limiter is not None:
            self._limiter.record()
        self._send_frame(codec.OP_PING, payload, link=link)
        if link.pong_deadline is _INF:
            link.ping_payload = payload
            link.pong_deadline = now + self.settings.ping_timeout

    def _on_controls(self, link: _Link, ctrls: list[tuple[int, bytes]]) -> _Ending | None:
        for opcode, payload in ctrls:
            if opcode == codec.OP_PING:
                if self._limiter is not None:
                    self._limiter.record()
                try:
                    self._send_frame(codec.OP_PONG, payload, link=link)
                except (OSError, WebSocketError) as exc:
                    return self._lost(link, _R.NETWORK_ERROR, exc)
            elif opcode == codec.OP_PONG:
                if payload == link.ping_payload:
                    link.ping_payload = None
                    link.pong_deadline = _INF
            elif opcode == codec.OP_CLOSE:
                code, text = codec.parse_close(payload)
                if not link.close_sent:
                    try:
                        with self._write_lock:
                            link.close_sent = True
                            self._write(link, link.encoder.encode(codec.OP_CLOSE, payload[:2]))
                    except (OSError, WebSocketError):
                        pass
                self._abort(link)
                return _Ending(_R.SERVER_CLOSED, code, text)
        return None

    def _on_commands(self, link: _Link) -> _Ending | None:
        stop, disc, kill, soft, _now, sched = self._take_commands()
        if stop is not None:
            self._transition(_S.CLOSING)
        if stop == "force":
            self._abort(link, send_close=True)
            return _Ending(_R.USER_REQUESTED, 1000, "force_close")
        if stop == "close":
            return self._graceful(link, _R.USER_REQUESTED)
        if kill:
            self._abort(link)
            return _Ending(_R.KILLED, None, "killed")
        if disc:
            return self._graceful(link, _R.USER_REQUESTED)
        if sched is not None:
            if self._handover_enabled:  # rotate without a gap when the time comes
                link.rotate_at = sched
                return None
            self._pending_schedule_at = sched
            return self._graceful(link, _R.SCHEDULED)
        if soft and self.settings.should_disconnect is None:
            with self._cond:
                self._cmd_soft = False
            return self._graceful(link, _R.USER_REQUESTED)
        return None

    # ------------------------------------------------------------------ ending a connection

    def _graceful(self, link: _Link, reason: DisconnectReason, code: int = 1000) -> _Ending:
        """Closing handshake: send close, keep reading (and delivering) until the peer's
        close frame, EOF, or ``close_timeout``; then close the socket."""
        text = "" if reason is _R.PROTOCOL_ERROR else reason.value
        peer: tuple[int | None, str] | None = None
        try:
            with self._write_lock:
                if link.open and not link.close_sent:
                    link.close_sent = True
                    self._write(link, link.encoder.encode_close(code, text))
        except (OSError, WebSocketError):
            self._abort(link)
            return _Ending(reason, code, text)
        deadline = time.monotonic() + self.settings.close_timeout
        sock = link.sock
        buf = self._buf
        while link.open:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                if link.tls:
                    with link.io_lock:
                        n = sock.recv_into(buf)
                else:
                    n = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                select.select([sock], [], [], min(remaining, 0.5))
                if self._stop_mode == "force":
                    break
                continue
            except OSError:
                break
            if n == 0:
                break
            msgs, ctrls, err = link.parser.feed(memoryview(buf)[:n])
            if msgs:
                self._deliver_closing(msgs, deadline)
            if any(op == codec.OP_CLOSE for op, _ in ctrls):
                for op, payload in ctrls:
                    if op == codec.OP_CLOSE:
                        try:
                            peer = codec.parse_close(payload)
                        except WebSocketProtocolError:
                            peer = None
                break
            if err is not None:
                break
        self._abort(link)
        if peer is not None:
            log.debug("closing handshake completed by the server: %s", peer)
        return _Ending(reason, code, text)

    def _protocol_failure(self, link: _Link, err: WebSocketProtocolError) -> _Ending:
        log.warning("protocol error from %s: %s (close %d)", self.settings.url, err, err.close_code)
        self._report_error(err)
        self._graceful(link, _R.PROTOCOL_ERROR, code=err.close_code)
        return _Ending(_R.PROTOCOL_ERROR, err.close_code, str(err), err)

    def _lost(self, link: _Link, reason: DisconnectReason, exc: BaseException) -> _Ending:
        log.warning("connection to %s lost: %s", self.settings.url, exc)
        self._abort(link)
        return _Ending(reason, 1006, str(exc), exc)

    def _abort(self, link: _Link, send_close: bool = False) -> None:
        """Close the socket now (no waiting). Safe to call twice."""
        if not link.open:
            return
        if send_close and not link.close_sent:
            try:
                link.close_sent = True
                frame = link.encoder.encode_close(1000, "")
                if link.tls:
                    with link.io_lock:
                        link.sock.send(frame)
                else:
                    link.sock.send(frame)
            except (OSError, ValueError):
                pass
        link.open = False
        try:
            link.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self._write_lock:
            link.sock.close()

    def _retire(self, link: _Link) -> None:
        """Fold a finished connection's counters into the totals."""
        with self._write_lock, self._stats_lock:
            if self._link is not link:
                return
            self._closed_rx_msgs += link.parser.messages_received
            self._closed_rx_bytes += link.parser.bytes_received
            self._closed_decode_errors += link.parser.decode_errors
            self._closed_tx_msgs += link.encoder.messages_sent
            self._closed_tx_bytes += link.encoder.bytes_sent
            self._connection_time += time.monotonic() - link.connected_at
            self._link = None

    def _record_disconnect(self, link: _Link, ending: _Ending, gap: bool = True) -> None:
        """Count a disconnect once; ``gap`` is False for a handover (no interruption) and
        for the final close."""
        self._retire(link)
        reason = ending.reason
        gap = gap and self._stop_mode is None
        if gap and self._markers:
            self.inbox.put_batch([Disconnected(reason, time.time(), ending.code)], force=True)
        with self._stats_lock:
            if gap:
                self._gaps += 1
                self._gap_started_at = time.monotonic()
            self._disconnects += 1
            if reason.is_proactive:
                self._proactive += 1
            else:
                self._reactive += 1
            self._by_reason[reason] = self._by_reason.get(reason, 0) + 1
            self._last_reason = reason
        self._ack()
        log.info(
            "disconnected from %s: %s (%s)%s",
            self.settings.url,
            reason.name,
            "proactive" if reason.is_proactive else "reactive",
            f" code={ending.code} {ending.text}" if ending.code is not None else "",
        )
        self._call("on_disconnect", self.settings.on_disconnect, reason)
