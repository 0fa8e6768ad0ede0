"""The parts of one engine, shared by the loops that run on its thread.

:class:`Runtime` is plain wiring: the settings, the clock, the state machine, the
mailbox, the counters, delivery, the subscriptions, the send pacing, and the engine
thread's reusable read buffer. The loops (:mod:`.supervisor`, :mod:`.read_loop`,
:mod:`.handover`, :mod:`.closing`, :mod:`.connector`) take it as their one argument.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kstlib.websocket._http import redact_url
from kstlib.websocket._ratelimit import SendRateLimiter
from kstlib.websocket.config import Settings

from .callbacks import Callbacks
from .clock import Clock
from .delivery import Delivery
from .direct import DirectRead
from .link import Link
from .mailbox import Mailbox
from .state import StateMachine
from .stats import Counters
from .subscriptions import Subscriptions
from .waiters import PingWaiters

__all__ = ["READ_BUFFER_SIZE", "Runtime"]

#: Size of the reusable read buffer (one ``recv_into`` per batch).
READ_BUFFER_SIZE = 256 * 1024


@dataclass
class Runtime:
    """See the module docstring. Fields are set once, except ``settings`` (replaced only
    while the engine thread is not running) and ``cancel_connect`` / ``closers``."""

    settings: Settings
    clock: Clock
    control: threading.Condition
    state: StateMachine
    mailbox: Mailbox
    counters: Counters
    callbacks: Callbacks
    delivery: Delivery
    subscriptions: Subscriptions
    limiter: SendRateLimiter | None
    buf: bytearray = field(default_factory=lambda: bytearray(READ_BUFFER_SIZE))
    #: The URL of the last attempt (the ``url`` setting, or what its factory returned).
    url: str = ""
    #: Aborts the handshake in progress (set by the transport while one runs).
    cancel_connect: Callable[[], None] | None = None
    #: Threads finishing the closing handshake of replaced connections.
    closers: list[threading.Thread] = field(default_factory=list)
    #: The system's default TLS context, built at the first ``wss://`` connection.
    default_tls: ssl.SSLContext | None = None
    #: Callers of ``ping()`` waiting for the next round trip.
    ping_waiters: PingWaiters = field(default_factory=PingWaiters)
    #: Lends the reading to a consumer waiting in ``stream()`` (set by the engine).
    direct: DirectRead = field(init=False)
    #: Codec mode and loads of the current ``decode`` setting.
    mode: int = 0
    loads: Callable[[bytes], Any] | None = None

    @property
    def stopping(self) -> bool:
        return self.mailbox.stop is not None

    @property
    def where(self) -> str:
        """The current URL for logs and errors, password hidden."""
        return redact_url(self.url)

    @property
    def link(self) -> Link | None:
        """The current connection."""
        return self.counters.live
