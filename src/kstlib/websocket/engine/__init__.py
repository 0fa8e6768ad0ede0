"""The engine: one background thread per manager that owns the connection.

It connects (with the reconnect strategy), sends the subscriptions, reads and frames
everything the server sends, answers pings, sends keepalive pings, runs the proactive
rules (``should_disconnect``, ``max_connection_age``, ``request_disconnect``,
``schedule_reconnect``), rotates connections make-before-break, and hands decoded
messages to the :class:`~kstlib.websocket.inbox.Inbox` in batches (one hand-off per read).

Parts, one job each (the protocol rules themselves are in
:mod:`kstlib.websocket.protocol`, sans-I/O):

===================  ==================================================================
``core``             :class:`Engine`, the API of the fronts: commands, state, send, stats
``supervisor``       the thread's loop: attempts, backoff, what follows each ending
``connector``        handshake + codec + protocol, subscriptions, entering CONNECTED
``read_loop``        serving one connection: read, deliver, answer, commands, timers
``direct``           the reading lent to a consumer waiting in ``stream()`` / ``recv()``
``watch``            one thread of the process looking after every lent reading
``control``          keepalive pings out, the peer's control frames answered
``handover``         make-before-break rotation of the current connection
``overlap``          pure: where the old and the new stream of a handover stand
``closing``          every way a connection ends, each giving one ``Ending``; booking it
``link``             one socket + protocol: non-blocking read, locked writes, abort
``keepalive``        pure: ping schedule and pong deadline
``policy``           pure: ``should_disconnect`` schedule, age limit, scheduled rotation
``backoff``          pure: delay between attempts, which failures are final
``delivery``         decode, post-handover dedupe, ``on_message``, inbox back-pressure
``subscriptions``    the list resent on every connection, and the links that have it
``mailbox``          typed commands from other threads, wake-ups, acknowledgements
``state``            the state machine, ``dead`` / ``shutdown``, the terminal error
``stats``            counters and the snapshot; the current connection
``callbacks``        user callbacks that may raise without hurting the engine
``clock``            injectable time, so the pure parts are tested without sleeping
``runtime``          the wiring shared by the loops
===================  ==================================================================

Threads:

* The engine thread reads the current socket, except while it lends the reading to a
  consumer waiting for messages (:mod:`.direct`); it is the only one that changes the
  connection state once it runs (before it starts and after it ended, the
  caller of ``start()`` / ``stop()`` does, under the control lock). It exists from
  ``connect()`` until the manager is *dead* (nothing will reconnect by itself).
* One watch thread for the process (:mod:`.watch`) looks at every lent reading once
  per second, while any is lent, and wakes the engines that must take theirs back.
* A connection replaced by a handover is read by a short-lived closer thread until its
  closing handshake ends (``close_timeout``); the engine joins it at the end.
* Any thread may write (``send``, ``subscribe``); see :mod:`.link`.

Lock order (a thread holding one may take only those after it; none is held while
waiting for the network, except that a write holds its link's ``write_lock`` while it
waits for room in the socket, at most ``ping_timeout``):

1. ``Subscriptions._lock``: held while a subscription message is written;
2. the control condition (``Runtime.control``, shared by state and mailbox): held for
   flag changes and waits for acknowledgements, never across I/O;
3. ``Link.write_lock``: one frame at a time on one connection;
4. ``Link.io_lock``: each call into an ``SSLSocket``;
5. leaves, which call nothing while held: ``Counters.lock``, the inbox's lock, the rate
   limiter's lock.
"""

from __future__ import annotations

from .backoff import HEALTHY_AFTER, PERMANENT_HTTP_STATUSES, backoff_delay
from .core import Engine
from .mailbox import StopMode
from .state import IllegalTransitionError, StateMachine

__all__ = [
    "HEALTHY_AFTER",
    "PERMANENT_HTTP_STATUSES",
    "Engine",
    "IllegalTransitionError",
    "StateMachine",
    "StopMode",
    "backoff_delay",
]
