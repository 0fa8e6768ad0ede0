"""The direct read: a consumer waiting on an empty inbox reads the socket itself.

Through the engine thread a message costs two wake-ups (the engine's, then the
consumer's) and a hand-over of the GIL between them. When a sync consumer waits in
``stream()`` / ``recv()`` with nothing queued, the engine *lends* it the reading of the
current connection: the consumer sleeps in ``poll`` on the socket, and a message that
arrives wakes only that thread, which reads, parses and delivers it (decode, sequences,
replies, dedupe, the inbox) exactly as the engine would, then hands it on. The engine
thread keeps the timers and the commands, and takes the reading back for anything else.

Who reads the current connection (the *role*), under one small lock:

* ``ENGINE``: the engine thread; always during connect, handover, closing, and while it
  acts on what a consumer saw;
* ``LENT``: the engine lent the role and no consumer is reading at this moment;
* ``CONSUMER``: a consumer thread is inside :meth:`DirectRead.fill`, polling the socket;
* ``LOOP``: an asyncio loop has a reader on the socket for its waiting consumer
  (:meth:`DirectRead.fill_async`); each read runs on the loop, under the lock, only
  while that consumer waits, so the engine takes this role back at once.

The engine lends only when a waiting consumer asked (:meth:`fill` found the role taken)
and only on the hot path (no ``on_message`` / ``on_batch``: those run on the engine
thread). It takes the role back (:meth:`reclaim`, which interrupts a consumer's
``poll``) before it acts: on a command, a timer, a control frame, an error or the end
of the stream a consumer reported (``news``), or when the role stayed unused for
:data:`AWAY` seconds while bytes wait to be read (the consumer is busy with its own
work, or its loop is blocked: the engine reads again, so pings are answered and the
queue bound holds however long the consumer works). A quiet connection stays lent: the
message that ends a quiet spell reaches the waiting consumer with one wake-up.

While lent, the engine sleeps until a command, a timer or news; one thread of the
process (:mod:`.watch`) looks at every lent reading each :data:`AWAY` seconds
(:meth:`DirectRead.look`) and wakes the engine (one byte on :meth:`engine_fileno`) that
must take its reading back.

Limits: one consumer reads at a time (others wait on the inbox); what one read yields is
queued at once past the bounds (the consumer that read it is the one who empties the
queue), so the queue may exceed its bound by one read (256 KiB of frames).
Callbacks that run in delivery (``decode``, ``on_gap``, ``should_handover``,
``dedupe_key``, ``sequence``) run on whichever thread reads.

Thread-safety: :meth:`fill` from any consumer thread; :meth:`fill_async` and
:meth:`stop_async` on the consumer's loop thread; the other public methods belong to the
engine thread.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from kstlib.websocket.inbox import Waiter, look_again

from .clock import Clock, poll_ms
from .delivery import Delivery

if TYPE_CHECKING:
    from .link import Link

__all__ = ["AWAY", "DirectRead", "Reactor", "Waiter"]

#: Seconds the lent role may stay unused before the engine reads again, and the period
#: of the watch's looks (:mod:`.watch`): long next to a message gap at trading rates; a
#: server ping waits at most twice this for its pong while the consumer is busy (the
#: engine's own keepalive timers end any lend at once).
AWAY = 1.0

_ENGINE, _LENT, _CONSUMER, _LOOP = 0, 1, 2, 3


class Reactor(Protocol):
    """What the loop reading needs of an event loop: an asyncio loop, or the poller of
    a sync ``merge()`` (:mod:`kstlib.websocket.merging`)."""

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None: ...

    def remove_reader(self, fd: int) -> bool: ...

    def call_soon(self, callback: Callable[..., object], *args: Any) -> object: ...

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> object: ...

    def is_closed(self) -> bool: ...


_EOF = "connection closed by peer (EOF)"


class DirectRead:
    """The lending of one engine's reading (see the module docstring)."""

    def __init__(self, delivery: Delivery, clock: Clock, buf: bytearray) -> None:
        self._delivery = delivery
        self._clock = clock
        self._buf = buf
        self._lock = threading.Lock()
        #: Set when a consumer leaves while the engine reclaims the role.
        self._left = threading.Event()
        self._role = _ENGINE
        self._link: Link | None = None
        self._poller: select.poll | None = None
        self._reclaiming = False
        #: The loop, link and descriptor of an asyncio consumer's reader, while
        #: registered; and whether that consumer waits for a batch now.
        self._on_loop: tuple[Reactor, Link, int] | None = None
        self._loop_fut: Waiter | None = None
        #: A loop that found the role taken: woken when it is lent.
        self._wanting: Reactor | None = None
        #: A blocking consumer found the role with the engine since the last lend.
        self.wanted = False
        #: A consumer saw what the engine must act on (control frame, error, EOF,
        #: a wanted handover); the role is not lent again until the engine took it back.
        self.news = False
        #: The error (or EOF) a consumer's read ended with, for the engine to report.
        self.error: BaseException | None = None
        #: Payload bytes per message of the last batch :meth:`fill` returned.
        self.item_bytes = 0
        #: Times the role was lent (see :class:`~kstlib.websocket.inbox.Filler`).
        self.lends = 0
        #: Times a consumer read (left :meth:`fill`, or read on its loop), and when one
        #: last left; the count at the watch's previous look.
        self.visits = 0
        self._left_at = 0.0
        self._seen = 0
        #: The watch found the role unused: the engine takes it back.
        self.recall = False
        #: Wake-up pairs (made at the first lend of a connection, closed at its end).
        self._to_consumer: tuple[socket.socket, socket.socket] = _NO_PAIR
        self._to_engine: tuple[socket.socket, socket.socket] = _NO_PAIR

    # ------------------------------------------------------------------ consumer side

    def fill(self, timeout: float | None) -> list[Any] | None:
        """Read the connection for this waiting consumer, up to ``timeout`` seconds
        (None: no limit) for one batch. Returns the batch when delivery would not change
        it (:meth:`Delivery.plain`: the caller hands it out as it is, after anything
        queued), else ``[]`` (the batch went through delivery to the inbox; or the time
        is up; or the engine took the role back): look at the inbox again. None when
        the engine reads now: wait on the inbox, the engine lends the role at its next
        idle moment."""
        with self._lock:
            if self._role != _LENT or self.news or self._reclaiming:
                self.wanted = True
                return None
            self._role = _CONSUMER
            link = self._link
        assert link is not None and self._poller is not None
        try:
            if self._delivery.inbox:  # queued before the lend: those go first
                return []
            return self._read(link, self._poller, timeout)
        finally:
            self._leave()

    def _read(self, link: Link, poller: select.poll, timeout: float | None) -> list[Any]:
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        wake = self._to_consumer[0].fileno()
        must_poll = not link.tls or link.drained()  # over TLS, decrypted bytes may wait
        while True:
            if must_poll:
                events = poller.poll(-1 if deadline is None else self._poll_ms(deadline))
                if not events:
                    return []  # the time is up
                if (len(events) > 1 or events[0][0] == wake) and self._woken():
                    return []
            out, must_poll = self._step(link)
            if out is not None:
                return out

    def _step(self, link: Link) -> tuple[list[Any] | None, bool]:
        """One non-blocking read, shared by both kinds of consumer. ``(out, _)`` when
        the wait is over: a batch came (``out`` is it when :meth:`Delivery.plain`, else
        ``[]`` once delivery queued it), or ``news`` is set (a control frame, an error,
        EOF). ``(None, idle)`` when it goes on: ``idle`` when nothing more can be read
        without waiting (else a frame is partly read: read again)."""
        try:
            got = link.read_frames(self._buf)
        except OSError as exc:
            self._report(exc)
            return [], False
        if got is None:
            return None, True
        msgs, controls, error, n, nbytes = got
        if n == 0:
            self._report(EOFError(_EOF))
            return [], False
        protocol, delivery = link.protocol, self._delivery
        if controls or error is not None:
            protocol.received(controls, error)
        out = msgs
        if msgs:  # hand the batch over (inline: this runs for every message)
            keepalive = link.keepalive
            self.item_bytes = nbytes // len(msgs)
            if delivery.plain():  # as it is
                if keepalive.receive_timeout:
                    keepalive.data_received(self._clock.monotonic())
            else:  # through delivery to the inbox, past the bounds: this thread empties
                # the queue next, and waiting for room would wait for itself
                delivery.deliver_read(msgs, nbytes, keepalive, force=True)
                out = []
        if protocol.has_news or delivery.handover_wanted:
            self.news = True
            return out, False
        if msgs:
            return out, False
        return None, n < len(self._buf) and link.drained()

    def _poll_ms(self, deadline: float) -> int:
        return poll_ms(deadline - self._clock.monotonic())

    def _woken(self) -> bool:
        """The engine's wake byte arrived: True when it wants the role back."""
        try:
            self._to_consumer[0].recv(64)
        except OSError:
            pass
        return self._reclaiming

    def _report(self, error: BaseException) -> None:
        self.error = error
        self.news = True

    def _leave(self) -> None:
        with self._lock:
            self._role = _LENT
            self.visits += 1
            self._left_at = self._clock.monotonic()
            wake = self.news
            if self._reclaiming:
                self._left.set()
        if wake:
            _send_byte(self._to_engine[1])

    # ------------------------------------------------------------------ asyncio consumer

    def fill_async(self, loop: Reactor, fut: Waiter) -> bool:
        """An asyncio consumer (on ``loop``'s thread) is about to await an empty inbox:
        True when the socket is read on ``loop`` for it (the next batch completes its
        wait; it calls :meth:`stop_async` when the wait ends); False when the engine
        reads now, or when delivering may write (a write may wait, and a loop must not).
        A batch delivery would not change completes ``fut`` as it is. The loop's reader
        stays registered from one wait to the next."""
        if self._delivery.may_write():
            return False
        with self._lock:
            # The engine takes the role back: a wait begun now would never end.
            taking_back = self.news or self._reclaiming
            reg = self._on_loop
            if not taking_back and self._role == _LOOP and reg is not None and reg[0] is loop:
                if self._loop_fut is not None:  # another task on this loop waits for
                    return False  # the reading: this one waits for the queue
                self._loop_fut = fut
                return True
            if taking_back or self._role != _LENT:
                self.wanted, self._wanting = True, loop
                return False
            if reg is not None and reg[0] is not loop:
                self.wanted = True  # another loop's reader is not gone yet
                return False
            link = self._link
            assert link is not None
            self._role, self._loop_fut = _LOOP, fut
        self._register(loop, link)
        if not link.drained():  # decrypted bytes wait in the SSLSocket: no poll shows them
            loop.call_soon(self._on_readable, loop, link)
        return True

    def stop_async(self, loop: Reactor, fut: Waiter) -> None:
        """The wait on ``fut`` ended (on ``loop``'s thread)."""
        if self._loop_fut is fut:
            self._loop_fut = None

    def detach(self, loop: Reactor) -> None:
        """``loop`` stops reading for good (on its thread): its reader goes, the role
        returns to the engine's care."""
        with self._lock:
            reg = self._on_loop
            if reg is None or reg[0] is not loop:
                return
            if self._role == _LOOP:
                self._role, self._left_at = _LENT, self._clock.monotonic()
            self._loop_fut = None
        self._unregister(loop)

    def _register(self, loop: Reactor, link: Link) -> None:
        reg = self._on_loop
        if reg is not None and reg[1] is link:
            return
        self._unregister(loop)
        fd = link.fileno()
        loop.add_reader(fd, self._on_readable, loop, link)
        self._on_loop = (loop, link, fd)

    def _unregister(self, loop: Reactor, link: Link | None = None) -> None:
        """Remove the loop's reader, if any (of ``link`` only, if given; on the loop's
        thread)."""
        reg = self._on_loop
        if reg is None or reg[0] is not loop or (link is not None and reg[1] is not link):
            return
        self._on_loop = None
        if not loop.is_closed():
            loop.remove_reader(reg[2])

    def _on_readable(self, loop: Reactor, link: Link) -> None:
        """The socket is readable (on the loop's thread): read one batch for the waiting
        consumer. With nobody waiting (the consumer is busy) the reading pauses, so the
        queue bound holds; with the role gone (the engine took it back) it stops. The
        batch completes the wait last, once the lock is released and the reader's own
        state is settled, because the waiter may run the consumer's code there: the
        waiter of :meth:`~kstlib.websocket.inbox.Inbox.serve_async` (which keeps waiting:
        ``done()`` still False) calls the handler, and that of
        :meth:`~kstlib.websocket.inbox.Inbox.get_batch_async` resumes the awaiting task.
        One batch per wait otherwise; a waiter left waiting when the reading stops looks
        at the queue again. (This runs for every read on a loop: its loop over
        :meth:`_step` is inline, to spare a frame.)"""
        with self._lock:
            fut = self._loop_fut
            if self._role != _LOOP or self._link is not link or fut is None:
                paused = self._pause(link)
                out, stop = None, True
            else:  # read until a batch, news, or nothing more without waiting
                paused = stop = False
                while True:
                    out, idle = self._step(link)
                    if out is not None or idle:
                        break
                if out is not None:
                    self.visits += 1
                    if fut.done():  # the wait was cancelled meanwhile: keep the batch
                        self._keep(out, link)
                        out = None
                    if self.news:
                        self._role, stop = _LENT, True
        if stop:
            self._unregister(loop)
            if self.news:
                _send_byte(self._to_engine[1])
        if out is not None:  # last: the waiter may run the consumer's code right here
            assert fut is not None
            fut.set_result(out)
            if stop:
                look_again(fut)
            if self._loop_fut is fut and fut.done():
                self._loop_fut = None
        if paused:  # another task may wait for the queue: it may take the reading now
            self._delivery.inbox.wake_waiters()

    def _pause(self, link: Link) -> bool:
        """Nobody waits for the loop's reading (lock held): True when it pauses (the
        role is lent again), False when the role is gone (the reading stops)."""
        if self._role == _LOOP and self._link is link:
            self._role, self._left_at = _LENT, self._clock.monotonic()
            return True
        return False

    def _keep(self, batch: list[Any], link: Link) -> None:
        """A batch read for a wait cancelled meanwhile (lock held): it is queued."""
        self._loop_fut = None
        if batch:
            self._delivery.deliver_read(
                batch, self.item_bytes * len(batch), link.keepalive, force=True
            )

    # ------------------------------------------------------------------ engine side

    def engine_fileno(self) -> int:
        """Polled by the engine while the role is lent: readable when a consumer has
        news, or the watch recalls the role."""
        return self._to_engine[0].fileno()

    def lend(self, link: Link) -> None:
        """Lend the reading of ``link`` (the engine thread holds the role)."""
        if self._link is not link:
            if self._to_engine is _NO_PAIR:
                self._to_consumer, self._to_engine = _pair(), _pair()
            poller = select.poll()
            poller.register(link.fileno(), select.POLLIN)
            poller.register(self._to_consumer[0].fileno(), select.POLLIN)
            self._link, self._poller = link, poller
        with self._lock:
            self.wanted = self.recall = False
            self.lends += 1
            self._seen = self.visits
            self._left_at = self._clock.monotonic()
            self._role = _LENT
            wanting, self._wanting = self._wanting, None
        if wanting is not None:  # a loop asked: it may take the role now
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                wanting.call_soon_threadsafe(_nothing)

    def look(self) -> None:
        """The watch's periodic look while the role is lent (on its thread): recall the
        role when bytes wait to be read and nobody read them, that is, when it stayed
        unused for :data:`AWAY` seconds (the consumer is busy), or when a loop read
        nothing since the previous look (the loop is blocked, or its consumer busy):
        the engine reads again, and the next wait gets the role back. A quiet connection
        stays lent, so the message that ends the quiet reaches the waiting consumer
        with one wake-up."""
        with self._lock:
            seen, self._seen = self._seen, self.visits
            if self._role == _LENT:
                unused = self._clock.monotonic() - self._left_at >= AWAY
            else:
                unused = self._role == _LOOP and self.visits == seen
            link = self._link
            if not unused or self.recall or link is None:
                return
        if not link.unread():
            return
        with self._lock:
            if self.recall or self._link is not link:
                return
            self.recall = True
        _send_byte(self._to_engine[1])

    def clear_engine_wake(self) -> None:
        """Read the wake-up bytes sent to the engine."""
        try:
            while self._to_engine[0].recv(64):
                pass
        except OSError:
            pass

    def reclaim(self) -> None:
        """Take the role back; returns once no consumer reads (a consumer inside
        :meth:`fill` is woken and leaves after the batch it is delivering, if any)."""
        with self._lock:
            if self._role == _ENGINE:
                return
            if self._role == _LOOP:
                self._wake_loop()  # its reader sees the role gone
            self._reclaiming = True
            self._left.clear()
            reading = self._role == _CONSUMER
        while reading:
            _send_byte(self._to_consumer[1])
            self._left.wait(AWAY)
            with self._lock:
                reading = self._role == _CONSUMER
        with self._lock:
            self._role = _ENGINE
            self._reclaiming = False
        self.clear_engine_wake()

    def _wake_loop(self) -> None:
        """The asyncio consumer waiting for the loop's reading looks at the queue
        again (from the engine thread, lock held)."""
        fut, reg = self._loop_fut, self._on_loop
        if fut is not None and reg is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                reg[0].call_soon_threadsafe(look_again, fut)

    def take_error(self) -> BaseException | None:
        """What a consumer's read ended with (once); clears ``news``."""
        error, self.error = self.error, None
        self.news = False
        return error

    def forget(self) -> None:
        """The connection ends: no consumer may read it any more (the role is the
        engine's); the wake-up pairs are closed, and a loop's reader left registered is
        removed on its loop."""
        self._link = self._poller = None
        on_loop = self._on_loop
        if on_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to do
                on_loop[0].call_soon_threadsafe(self._unregister, on_loop[0], on_loop[1])
        self.wanted = False
        for s in self._to_consumer + self._to_engine:
            s.close()
        self._to_consumer = self._to_engine = _NO_PAIR


def _pair() -> tuple[socket.socket, socket.socket]:
    pair = socket.socketpair()
    for s in pair:
        s.setblocking(False)
    return pair


#: No pair: closed sockets, on which every call fails quietly as on a pair that is gone.
_NO_PAIR: tuple[socket.socket, socket.socket] = _pair()
for _s in _NO_PAIR:
    _s.close()


def _nothing() -> None:
    """A call that only wakes a loop up."""


def _send_byte(sock: socket.socket) -> None:
    try:
        sock.send(b"\0")
    except OSError:
        pass  # a byte is pending already
