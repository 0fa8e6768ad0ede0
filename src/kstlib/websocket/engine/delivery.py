"""From parsed messages to the consumer: decode, de-duplicate, callbacks, inbox.

One batch per socket read travels this way (never one message at a time):

1. a ``decode`` callable, if set, maps each message (a failure keeps the raw message and
   is counted in ``decode_errors``);
2. with ``sequence``, a ``Gap`` marker goes before each message that follows a hole
   (:mod:`.sequences`; before step 3, since a venue's counter spans every message), and
   ``on_gap`` is called;
3. the engine's own messages leave the batch (:mod:`.intercept`: request replies,
   heartbeat answers, the server's application pings);
4. just after a handover, messages the old connection already delivered are dropped
   (keys remembered for :data:`DEDUPE_WINDOW` seconds, counted in ``duplicates_dropped``);
5. ``should_handover(msg)`` is asked for each message when handover is on;
6. with ``timestamps``, each message is wrapped in ``Stamped(message, received_ns)``;
7. ``on_batch(batch)``, if set, returns what goes on (gap markers pass through it too);
8. ``on_message`` gets each message, or else the batch goes to the inbox, waiting for room
   under ``queue_overflow="block"`` until a stop is asked.

The time spent in steps 4 and 5 is returned, so the keepalive timers can be credited
with it (the pong may be waiting unread meanwhile).

Thread-safety: the engine thread only (and the thread of a closing handshake).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from kstlib.websocket import codec
from kstlib.websocket.config import Settings
from kstlib.websocket.inbox import Inbox
from kstlib.websocket.models import GAP_MARKERS, Connected, Disconnected, Stamped

from .callbacks import Callbacks
from .clock import Clock
from .intercept import Interceptor
from .keepalive import Keepalive
from .mailbox import Mailbox
from .overlap import RecentKeys, handover_enabled
from .sequences import SequenceTracker
from .stats import Counters

__all__ = ["DEDUPE_WINDOW", "Delivery", "decode_plan"]

#: After a handover, new messages whose key the old stream delivered are dropped for this
#: many seconds (later ones cannot be duplicates of the old stream any more).
DEDUPE_WINDOW = 5.0

#: While ``queue_overflow="block"`` holds the engine back, it looks at commands this often.
BLOCKED_POLL = 0.25


def decode_plan(
    decode: Any,
) -> tuple[int, Callable[[bytes], Any] | None, Callable[..., Any] | None]:
    """``(codec mode, loads for the parser, callable applied after parsing)``."""
    if decode == "json":
        return codec.MODE_JSON, orjson.loads, None
    if decode == "bytes":
        return codec.MODE_BYTES, None, None
    if decode is None:
        return codec.MODE_TEXT, None, None
    if callable(decode):
        return codec.MODE_TEXT, None, decode
    raise ValueError(f"decode: unsupported value {decode!r}")


class Delivery:
    """The consumer side of the engine: see the module docstring."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        inbox: Inbox,
        mailbox: Mailbox,
        callbacks: Callbacks,
        counters: Counters,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self.inbox = inbox
        self._mailbox = mailbox
        self._callbacks = callbacks
        self._counters = counters
        self._clock = clock
        #: Put ``Connected`` / ``Disconnected`` markers in the inbox (``stream(events=True)``).
        self.markers = False
        #: Set when ``should_handover`` answered True; the read loop takes it.
        self.handover_wanted = False
        self.intercept = Interceptor(callbacks.call)
        #: Set when a batch held a message of the feed (not only the engine's own
        #: heartbeats and replies); the read loop takes it for ``receive_timeout``.
        self.data_seen = False
        self._sequences: SequenceTracker | None = None
        self._dedupe: RecentKeys | None = None
        self._dedupe_until = 0.0
        self._plain_for: Settings | None = None
        self._plain = False

    # ------------------------------------------------------------------ markers

    def marker(self, event: Connected | Disconnected) -> None:
        """Pass a gap marker through ``on_batch`` and queue it (past the bound: it is
        never dropped) when markers are enabled."""
        batch: list[Any] = [event]
        on_batch = self._settings().on_batch
        if on_batch is not None:
            batch = self._call_on_batch(on_batch, batch)
        if self.markers and batch:
            self.inbox.put_batch(batch, force=True)

    def dedupe_after_handover(self, seen: RecentKeys) -> None:
        """Drop new messages whose key is in ``seen`` for :data:`DEDUPE_WINDOW` seconds."""
        self._dedupe = seen
        self._dedupe_until = self._clock.monotonic() + DEDUPE_WINDOW

    # ------------------------------------------------------------------ delivering

    def may_write(self) -> bool:
        """True when delivering may write to the socket (the answers of the ``heartbeat``
        option to the server's pings), which may wait for room in it."""
        beat = self.intercept.heartbeat
        return beat is not None and beat.answer is not None

    def plain(self) -> bool:
        """True when no step of the module docstring changes a batch (no decode
        callable, sequence, interception, dedupe, ``should_handover``, timestamps,
        ``on_batch`` or ``on_message``): the batch may go to the consumer as parsed."""
        s = self._settings()
        if s is not self._plain_for:
            self._plain_for = s
            self._plain = (
                not callable(s.decode)
                and s.sequence is None
                and not (s.should_handover is not None and handover_enabled(s))
                and not s.timestamps
                and s.on_batch is None
                and s.on_message is None
            )
        return self._plain and self._dedupe is None and not self.intercept.active

    def deliver(self, msgs: list[Any], force: bool = False, nbytes: int = 0) -> float:
        """Hand a batch to the consumer; returns seconds spent held back by it.

        ``nbytes`` is the batch's payload (for the inbox's byte budget); ``force`` queues
        past the bounds without waiting (the connection is ending)."""
        s = self._settings()
        item_bytes = nbytes // len(msgs) if msgs else 0
        msgs = self._prepare(s, msgs)
        if s.on_batch is None and s.on_message is None:  # the hot path: straight to the inbox
            return self._queue(msgs, force, item_bytes)
        started = self._clock.monotonic()
        if s.on_batch is not None:
            msgs = self._call_on_batch(s.on_batch, msgs)
        if s.on_message is not None:
            self._call_on_message(s.on_message, msgs)
        else:
            self._queue(msgs, force, item_bytes)
        return self._clock.monotonic() - started

    def deliver_read(
        self, msgs: list[Any], nbytes: int, keepalive: Keepalive, force: bool = False
    ) -> None:
        """:meth:`deliver` the batch of one read and tell ``keepalive`` what it showed:
        data (``receive_timeout``), a heartbeat answer, time held back by the consumer.
        ``handover_wanted`` stays set for the engine."""
        blocked = self.deliver(msgs, force=force, nbytes=nbytes)
        if self.data_seen:  # heartbeats and replies do not prove the feed alive
            self.data_seen = False
            if keepalive.receive_timeout:
                keepalive.data_received(self._clock.monotonic() - blocked)
        if blocked:
            keepalive.credit(blocked)
        if self.intercept.beat_answered:
            self.intercept.beat_answered = False
            keepalive.beat_answered()

    def _call_on_batch(self, on_batch: Callable[[list[Any]], list[Any]], msgs: list[Any]) -> Any:
        try:
            return on_batch(msgs)
        except Exception as exc:
            self._callbacks.failed("on_batch", exc)
            return msgs

    def _prepare(self, s: Settings, msgs: list[Any]) -> list[Any]:
        fn = s.decode if callable(s.decode) else None
        if fn is not None:
            msgs = [self._decode_one(fn, m) for m in msgs]
        if s.sequence is not None:  # before interception: counters span every message
            msgs = self._check_sequences(s, msgs)
        if self.intercept.active:
            msgs = self.intercept.take(msgs)
        if msgs:
            self.data_seen = True  # a message of the feed itself, not the engine's own
        if self._dedupe is not None:
            msgs = self._drop_overlap(s, msgs)
        wants = s.should_handover
        if wants is not None and handover_enabled(s):
            for m in msgs:
                if self._callbacks.call("should_handover", wants, m):
                    self.handover_wanted = True
        if s.timestamps:
            now = time.monotonic_ns()
            msgs = [m if type(m) in GAP_MARKERS else Stamped(m, now) for m in msgs]
        return msgs

    def new_connection(self) -> None:
        """A connection (not a handover's) begins: sequence numbers start afresh."""
        if self._sequences is not None:
            self._sequences.reset()

    def _check_sequences(self, s: Settings, msgs: list[Any]) -> list[Any]:
        tracker = self._sequences
        if tracker is None:
            assert s.sequence is not None
            tracker = self._sequences = SequenceTracker(
                s.sequence, self._clock.time, lambda: self._counters.add("callback_errors")
            )
        marked, gaps = tracker.check(msgs)
        for gap in gaps:
            self._counters.add("sequence_gaps")
            self._callbacks.call("on_gap", s.on_gap, gap)
        # the markers travel in band only to whoever asked for events
        return marked if gaps and (self.markers or s.on_batch is not None) else msgs

    def _call_on_message(self, on_message: Callable[[Any], None], msgs: list[Any]) -> None:
        # A stop request ends the calls; the rest of the batch stays readable in stream().
        for i, m in enumerate(msgs):
            if self._mailbox.stop is not None:
                self.inbox.put_batch(msgs[i:], force=True)
                return
            self._callbacks.call("on_message", on_message, m)

    def _queue(self, msgs: list[Any], force: bool, item_bytes: int) -> float:
        """Queue ``msgs``; returns the seconds spent waiting for room."""
        inbox = self.inbox
        if force:
            inbox.put_batch(msgs, force=True, item_bytes=item_bytes)
            return 0.0
        blocking = inbox.overflow == "block"
        queued = inbox.put_batch(msgs, timeout=0.0 if blocking else None, item_bytes=item_bytes)
        if queued == len(msgs):
            return 0.0
        started = self._clock.monotonic()
        rest = msgs[queued:]
        while rest:
            if self._mailbox.stop is not None:  # the final close: keep the last read
                inbox.put_batch(rest, force=True, item_bytes=item_bytes)
                break
            rest = rest[inbox.put_batch(rest, timeout=BLOCKED_POLL, item_bytes=item_bytes) :]
        return self._clock.monotonic() - started

    def deliver_closing(self, msgs: list[Any], deadline: float, nbytes: int = 0) -> None:
        """Deliver what arrives during a closing handshake. For the final close (or with
        ``on_message``) everything is kept, past the bound; for a disconnect the engine
        recovers from, the bound holds: wait for room until ``deadline`` and count what
        still does not fit as dropped, so repeated disconnects cannot grow the queue."""
        s = self._settings()
        if self._mailbox.stop is not None or s.on_message is not None or s.on_batch is not None:
            self.deliver(msgs, force=True, nbytes=nbytes)
            return
        inbox = self.inbox
        item_bytes = nbytes // len(msgs)
        if inbox.overflow == "drop_oldest":
            inbox.put_batch(msgs, item_bytes=item_bytes)
            return
        wait = max(0.0, deadline - self._clock.monotonic())
        queued = inbox.put_batch(msgs, timeout=wait, item_bytes=item_bytes)
        if queued < len(msgs):
            inbox.count_dropped(len(msgs) - queued)

    def _drop_overlap(self, s: Settings, msgs: list[Any]) -> list[Any]:
        seen, key_of = self._dedupe, s.dedupe_key
        if seen is None or key_of is None or self._clock.monotonic() > self._dedupe_until:
            self._dedupe = None
            return msgs
        key = self._callbacks.key
        fresh = [m for m in msgs if (k := key(key_of, m)) is None or k not in seen]
        if len(fresh) < len(msgs):
            self._counters.add("duplicates_dropped", len(msgs) - len(fresh))
        return fresh

    def _decode_one(self, fn: Callable[[Any], Any], raw: Any) -> Any:
        try:
            return fn(raw)
        except Exception:
            self._counters.add("extra_decode_errors")
            return raw
