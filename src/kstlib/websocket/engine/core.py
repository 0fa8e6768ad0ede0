"""The :class:`Engine`: the one API the sync and asyncio fronts call.

It owns the parts (see the package docstring), starts and ends the engine thread, and
turns every user call into a mailbox command, a state read or a write on the current
connection. Every method is thread-safe; a method that waits for its effect returns at
once when called from the engine thread itself (from a callback).
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import threading
from collections.abc import Callable
from typing import Any

import orjson

from kstlib.websocket import codec
from kstlib.websocket._http import redact_url
from kstlib.websocket._ratelimit import SendRateLimiter
from kstlib.websocket.config import Settings
from kstlib.websocket.exceptions import WebSocketClosedError, WebSocketError
from kstlib.websocket.inbox import Inbox
from kstlib.websocket.models import ConnectionState, WebSocketStats

from .callbacks import Callbacks
from .clock import SYSTEM_CLOCK, Clock
from .connector import send_subscription
from .control import send_message
from .delivery import Delivery, decode_plan
from .direct import DirectRead
from .link import Link
from .mailbox import Mailbox, StopMode
from .runtime import Runtime
from .state import StateMachine
from .stats import Counters
from .subscriptions import Message, Subscriptions
from .supervisor import Supervisor
from .waiters import Pending

__all__ = ["Engine"]

log = logging.getLogger("kstlib.websocket")


class Engine:
    """Connection engine behind one manager (sync or asyncio front)."""

    def __init__(self, settings: Settings, inbox: Inbox, clock: Clock = SYSTEM_CLOCK) -> None:
        self.inbox = inbox
        control = threading.Condition()
        counters = Counters(clock)
        mailbox = Mailbox(control, clock)
        callbacks = Callbacks(counters, lambda: self._rt.settings.on_error)
        self._rt = Runtime(
            settings=settings,
            clock=clock,
            control=control,
            state=StateMachine(control, clock),
            mailbox=mailbox,
            counters=counters,
            callbacks=callbacks,
            delivery=Delivery(
                # no Python frame per call: delivery asks on every read
                functools.partial(operator.attrgetter("_rt.settings"), self),
                inbox,
                mailbox,
                callbacks,
                counters,
                clock,
            ),
            subscriptions=Subscriptions(
                () if callable(settings.subscriptions) else settings.subscriptions
            ),
            limiter=None,
        )
        self._rt.delivery.intercept.answer = self._answer
        self._rt.direct = DirectRead(self._rt.delivery, clock, self._rt.buf)
        inbox.filler = self._rt.direct
        self.settings = settings
        self._thread: threading.Thread | None = None
        self._next_id = 0  # ids given to request() messages that had none

    # ------------------------------------------------------------------ settings / state

    @property
    def settings(self) -> Settings:
        return self._rt.settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """Replace the settings; takes effect at the next start (not while running)."""
        rt = self._rt
        rt.settings = settings
        if isinstance(settings.url, str) or not rt.url:
            rt.url = settings.url if isinstance(settings.url, str) else "(url factory)"
        rt.mode, rt.loads, _ = decode_plan(settings.decode)
        rt.delivery.intercept.heartbeat = settings.heartbeat
        rate = settings.max_send_rate
        rt.limiter = SendRateLimiter(rate) if rate else None

    @property
    def url(self) -> str:
        """The ``url`` setting, or what its factory returned for the last attempt."""
        return self._rt.url

    @property
    def state(self) -> ConnectionState:
        return self._rt.state.state

    @property
    def is_dead(self) -> bool:
        """No connection, and the engine will not (re)connect by itself."""
        return self._rt.state.dead

    @property
    def is_shutdown(self) -> bool:
        return self._rt.state.shutdown

    @property
    def in_engine_thread(self) -> bool:
        return threading.current_thread() is self._thread

    @property
    def connect_count(self) -> int:
        """How many connections were established so far (``stats.connects``)."""
        return self._rt.state.connect_count

    @property
    def direct(self) -> DirectRead:
        """The reading this engine lends to a waiting consumer (see :mod:`.direct`)."""
        return self._rt.direct

    def markers_check(self) -> Callable[[], bool]:
        """A call saying whether the gap markers are enabled now, cheap enough to ask
        once per batch: built from C callables, it runs no Python frame."""
        return functools.partial(getattr, self._rt.delivery, "markers")

    def enable_markers(self) -> None:
        """Put ``Connected`` / ``Disconnected`` gap markers in the inbox from now on."""
        self._rt.delivery.markers = True

    def stats(self) -> WebSocketStats:
        inbox = self.inbox
        return self._rt.counters.snapshot(self.connect_count, inbox.dropped, inbox.queued_bytes)

    # ------------------------------------------------------------------ lifecycle

    def start(self, delay: float = 0.0) -> None:
        """Start the engine thread if it is not running (dead); else ask it to connect
        now (``delay`` 0) or after ``delay`` seconds."""
        rt = self._rt
        with rt.control:
            if not rt.state.dead:
                at = None if delay <= 0 else rt.clock.monotonic() + delay
                rt.mailbox.post_connect(at)
                return
            old = self._thread
        if old is not None and old is not threading.current_thread():
            old.join(rt.settings.close_timeout + 1.0)
        with rt.control:
            if rt.state.dead:  # else another thread started it meanwhile
                self._spawn(delay)

    def _spawn(self, delay: float) -> None:
        # Called with the control lock held and the engine dead.
        rt = self._rt
        rt.state.dead = False
        rt.state.terminal_error = None
        rt.mailbox.open()
        self.inbox.reopen()
        self._thread = threading.Thread(
            target=self._run,
            args=(delay,),
            name=f"kstlib-ws-engine:{redact_url(rt.url)}",
            daemon=True,
        )
        self._thread.start()

    def wait_connected(self, since: int, timeout: float | None = None) -> None:
        """Block until a connection was established after ``connect_count`` was ``since``
        (even one the server closed at once); raise the error that made the engine give
        up, or ``WebSocketTimeoutError`` after ``timeout`` seconds."""
        self._rt.state.wait_connected(since, timeout)

    def disconnect(self) -> None:
        """Proactive disconnect now (USER_REQUESTED); waits until it took effect."""
        rt = self._rt
        with rt.control:
            if rt.state.dead:
                return
            seq = rt.mailbox.post_disconnect()
        self._wait_ack(seq)

    def request_disconnect(self) -> None:
        """Disconnect at the next safe moment; returns at once."""
        with self._rt.control:
            if not self._rt.state.dead:
                self._rt.mailbox.post_soft()

    def schedule_reconnect(self, delay: float) -> None:
        """Disconnect now if connected (SCHEDULED) and reconnect after ``delay`` seconds."""
        if delay < 0 or not math.isfinite(delay):
            raise ValueError(f"schedule_reconnect: delay must be >= 0 seconds, got {delay!r}")
        rt = self._rt
        with rt.control:
            if rt.state.shutdown:
                log.warning("schedule_reconnect() after force_close()/shutdown(): ignored")
                return
            if not rt.state.dead:
                rt.mailbox.post_connect(rt.clock.monotonic() + delay)
                return
        self.start(delay=delay)

    def kill(self) -> None:
        """Drop the socket without a closing handshake (reason KILLED, reactive)."""
        rt = self._rt
        with rt.control:
            if rt.state.dead or rt.link is None:
                return
            seq = rt.mailbox.post_kill()
        self._wait_ack(seq)

    def _wait_ack(self, seq: int) -> None:
        if not self.in_engine_thread:
            rt = self._rt
            rt.mailbox.wait_ack(seq, rt.settings.close_timeout + 1.0, lambda: rt.state.dead)

    def stop(self, mode: StopMode) -> None:
        """End the engine: ``CLOSE`` (closing handshake) or ``FORCE`` (immediate).

        Returns once the engine thread has ended (within ``close_timeout`` plus a small
        margin), or at once when called from the engine thread itself (a callback)."""
        rt = self._rt
        with rt.control:
            if mode is StopMode.FORCE:
                rt.state.shutdown = True
            thread = self._thread
            running = not rt.state.dead
            if running:
                rt.mailbox.post_stop(mode)
            cancel = rt.cancel_connect
        if cancel is not None:  # a handshake in progress: end it now
            cancel()
        self.inbox.interrupt_put()
        if not running:
            rt.state.close_out()
            self.inbox.finish(None)
        elif not self.in_engine_thread:
            assert thread is not None
            thread.join(rt.settings.close_timeout + 1.0)
            if thread.is_alive():  # pragma: no cover - a stuck handshake; never expected
                log.error("engine thread did not stop within close_timeout")

    # ------------------------------------------------------------------ the thread

    def _run(self, delay: float) -> None:
        rt = self._rt
        try:
            Supervisor(rt).run_loop(delay)
        except BaseException as exc:  # a bug must reach the consumer, never vanish
            log.exception("engine thread failed")
            with rt.control:
                if rt.state.terminal_error is None:
                    rt.state.terminal_error = exc
        finally:
            self._teardown()
        error = rt.state.terminal_error
        if error is not None:  # the end, reported last: is_dead is True by now
            rt.callbacks.report(error)

    def _teardown(self) -> None:
        rt = self._rt
        link = rt.link
        if link is not None:
            link.abort()
            rt.subscriptions.forget(link)
            rt.counters.retire(link)
        for closer in rt.closers:
            closer.join(rt.settings.close_timeout + 1.0)
        rt.closers = []
        with rt.control:
            if rt.stopping:
                rt.state.close_out()
            # dead first: a consumer woken by the end of the stream sees is_dead
            rt.state.dead = True
            if not self.inbox.finished:
                self.inbox.finish(rt.state.terminal_error)
            rt.mailbox.close()

    # ------------------------------------------------------------------ subscriptions / send

    def subscriptions(self) -> list[Message]:
        return self._rt.subscriptions.items()

    def add_subscription(self, msg: Message) -> None:
        """Remember ``msg`` (resent on every connect) and send it on the open connection."""
        self._rt.subscriptions.add(msg, self._send_subscription)

    def remove_subscription(self, msg: Message, unsubscribe_message: Message | None) -> None:
        """Forget ``msg`` (``ValueError`` if absent); send ``unsubscribe_message``, if
        given, on the open connection."""
        self._rt.subscriptions.remove(msg, unsubscribe_message, self._send_subscription)

    def _send_subscription(self, link: Link, msg: Message) -> bool:
        if not link.open:
            return True  # it ended: the next connection sends the whole list
        if not send_subscription(self._rt, link, msg) or self._rt.stopping:
            raise WebSocketClosedError(None, "closing")
        return True

    def request(self, message: Any, match: Callable[[Any], bool] | None, timeout: float) -> Any:
        """Send ``message`` and return the reply ``match`` accepts (default: a dict whose
        ``id`` is the message's; a dict without ``id`` gets the next integer id). The
        reply never reaches ``stream()``. Raises ``WebSocketTimeoutError("request")``,
        ``WebSocketRequestError`` (the connection ended first, or the reply matched
        several requests) or ``WebSocketClosedError`` (not connected)."""
        if match is None:
            message, match = self._by_id(message)
        intercept = self._rt.delivery.intercept
        pending = intercept.expect(match)
        try:
            self.send(message)
            return pending.wait(timeout)
        finally:
            intercept.forget(pending)

    def expect(self, match: Callable[[Any], bool], *, across_reconnects: bool = False) -> Pending:
        """Wait for a reply to a message the caller (or the engine: a subscription)
        sends: the first message ``match`` accepts is taken out of the stream and handed
        to ``pending.wait(timeout)``; ``forget(pending)`` drops the wait. Register it
        before sending, so the reply cannot come first."""
        return self._rt.delivery.intercept.expect(match, across_reconnects=across_reconnects)

    def forget(self, pending: Pending) -> None:
        self._rt.delivery.intercept.forget(pending)

    def _by_id(self, message: Any) -> tuple[Any, Callable[[Any], bool]]:
        if not isinstance(message, dict):
            raise TypeError("request() without match= takes a dict message (matched by id)")
        if "id" not in message:
            with self._rt.control:
                self._next_id += 1
                message = {**message, "id": self._next_id}
        rid = message["id"]
        return message, lambda reply: type(reply) is dict and reply.get("id") == rid

    def ping(self, timeout: float) -> float:
        """Send a ping (or wait for the one in flight) and return its round trip in
        seconds. Raises ``WebSocketClosedError`` when not connected or when the connection
        ends first, ``WebSocketTimeoutError("ping")`` after ``timeout`` seconds."""
        rt = self._rt
        if rt.link is None or rt.state.dead:
            raise WebSocketClosedError(None, f"not connected (state {self.state.name})")
        waiter = rt.ping_waiters.add()
        rt.mailbox.post_ping()
        try:
            return float(waiter.wait(timeout))
        finally:
            rt.ping_waiters.forget(waiter)

    def _answer(self, message: Any) -> None:
        """Reply to the server's application ping (engine thread, current connection)."""
        link = self._rt.link
        if link is not None:
            try:
                send_message(self._rt, link, message)
            except (OSError, WebSocketError) as exc:
                log.warning("could not answer the server's ping: %s", exc)

    def send(self, data: Any) -> None:
        """Send one message from any thread: str (text), bytes-like (binary), dict/list
        (JSON text). Waits for a pacing slot when ``max_send_rate`` is set."""
        opcode, payload = _frame_of(data)
        rt = self._rt
        if rt.limiter is not None:  # (not connected: raise at once, not after a wait)
            if rt.link is None:
                raise WebSocketClosedError(None, f"not connected (state {self.state.name})")
            if not rt.limiter.acquire(cancelled=lambda: rt.stopping):
                raise WebSocketClosedError(None, "closing")
        self._write(opcode, payload)

    def send_nowait(self, data: Any) -> Callable[[], None] | None:
        """:meth:`send` without waiting, for an event loop: None when the message went
        out whole at once; otherwise a function that does (or finishes) it, waiting,
        which must be run (in a worker thread). With ``max_send_rate`` that function is a
        plain :meth:`send`. Raises as :meth:`send` does."""
        opcode, payload = _frame_of(data)
        rt = self._rt
        link = rt.link
        if link is None:
            raise WebSocketClosedError(None, f"not connected (state {self.state.name})")
        if rt.limiter is not None:
            return lambda: self.send(data)
        try:
            rest = link.try_send_data(opcode, payload)
        except WebSocketClosedError:
            return lambda: self._write(opcode, payload)  # a handover may have replaced it
        except WebSocketError:
            raise
        except OSError as exc:
            raise WebSocketClosedError(None, f"connection lost while sending: {exc}") from exc
        if rest is None:
            return None
        return lambda: self._guard(rest)

    def _guard(self, write: Callable[[], None]) -> None:
        try:
            write()
        except WebSocketError:
            raise
        except OSError as exc:
            raise WebSocketClosedError(None, f"connection lost while sending: {exc}") from exc

    def _write(self, opcode: int, payload: Any) -> None:
        link = self._rt.link
        if link is None:
            raise WebSocketClosedError(None, f"not connected (state {self.state.name})")
        try:
            link.send_data(opcode, payload)
        except WebSocketClosedError:
            if self._rt.link not in (None, link):  # a handover replaced it meanwhile
                self._write(opcode, payload)
                return
            raise WebSocketClosedError(None, f"not connected (state {self.state.name})") from None
        except WebSocketError:
            raise
        except OSError as exc:
            raise WebSocketClosedError(None, f"connection lost while sending: {exc}") from exc


def _frame_of(data: Any) -> tuple[int, Any]:
    if isinstance(data, str):
        return codec.OP_TEXT, data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return codec.OP_BINARY, data
    if isinstance(data, (dict, list)):
        return codec.OP_TEXT, orjson.dumps(data)
    raise TypeError(f"send() takes str, bytes or a dict/list, not {type(data).__name__}")
