"""Opening connections: handshake, codec, protocol, subscriptions.

:func:`open_link` makes one connection (``before_connect`` first) without touching the
state; :func:`subscribe` sends the subscription list on it; :func:`connect` does both
for the engine's current connection and enters CONNECTED. The handover uses the first
two for the connection it prepares.

Thread-safety: the engine thread only.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable

import orjson

from kstlib.websocket import codec, transport
from kstlib.websocket.exceptions import (
    WebSocketConnectionError,
    WebSocketError,
    WebSocketTimeoutError,
)
from kstlib.websocket.models import Connected
from kstlib.websocket.protocol import ClientProtocol

from .keepalive import Keepalive
from .link import Link
from .login import log_in
from .runtime import Runtime
from .subscriptions import Message
from .target import Target, resolve

__all__ = ["connect", "open_link", "send_subscription", "subscribe"]

log = logging.getLogger("kstlib.websocket")


def open_link(rt: Runtime, target: Target) -> Link:
    """Handshake one new connection to ``target``. Raises the transport's errors."""
    s = rt.settings
    rt.callbacks.call("before_connect", s.before_connect)
    hs = transport.open_connection(
        target.url,
        timeout=s.connect_timeout,
        headers=target.headers,
        subprotocols=s.subprotocols,
        ssl_context=tls_context(rt, target.url),
        proxy=s.proxy,
        compression=s.compression == "deflate",
        on_cancel=lambda cancel: _set_cancel(rt, cancel),
        redirects=s.redirects,
    )
    try:
        parser, encoder = transport.make_codec(
            hs, max_message_size=s.max_message_size, mode=rt.mode, loads=rt.loads
        )
        hs.sock.setblocking(False)
        now = rt.clock.monotonic()
        beat = s.heartbeat
        keepalive = Keepalive(
            s.ping_interval,
            s.ping_timeout,
            now,
            s.receive_timeout,
            beat.every if beat is not None else None,
            beat.timeout if beat is not None else None,
        )
        protocol = ClientProtocol(parser, encoder)
        return Link(hs, protocol, keepalive, clock=rt.clock, write_timeout=s.ping_timeout)
    except BaseException:
        hs.sock.close()
        raise


def tls_context(rt: Runtime, url: str) -> ssl.SSLContext | None:
    """The TLS context of ``wss://`` connections: the ``ssl`` setting, else the system's
    default context, built once per engine (building one costs milliseconds of CPU and
    loads every CA certificate); None for ``ws://``."""
    s = rt.settings
    if s.ssl is not None or not url.lower().startswith("wss:"):
        return s.ssl
    if rt.default_tls is None:
        rt.default_tls = ssl.create_default_context()
    return rt.default_tls


def _set_cancel(rt: Runtime, cancel: Callable[[], None] | None) -> None:
    with rt.control:
        rt.cancel_connect = cancel
        stopping = rt.stopping
    if stopping and cancel is not None:
        cancel()  # close() came before the handshake started


def send_subscription(rt: Runtime, link: Link, msg: Message) -> bool:
    """Send one subscription message on ``link`` (paced); False when a stop cancelled
    the wait for a send slot."""
    limiter = rt.limiter
    if limiter is not None and not limiter.acquire(
        cancelled=lambda: rt.stopping, sleep=rt.mailbox.sleep
    ):
        return False
    link.send_data(codec.OP_TEXT, msg if isinstance(msg, str) else orjson.dumps(msg))
    return True


def subscribe(rt: Runtime, link: Link, target: Target) -> int | None:
    """Send the subscriptions (``target``'s, when a factory made them), in order, on
    ``link``; how many (None: stopped). Raises ``WebSocketConnectionError`` if the
    connection breaks meanwhile."""
    send = functools.partial(send_subscription, rt)
    try:
        return rt.subscriptions.install(link, send, target.subscriptions)
    except (OSError, WebSocketError) as exc:
        raise WebSocketConnectionError(
            f"connection to {rt.where} lost while subscribing: {exc}", url=rt.url
        ) from exc


def connect(rt: Runtime) -> Link | None:
    """One connection attempt: factories, handshake, login, subscriptions, CONNECTED
    (None: stopped)."""
    target = resolve(rt)
    link = open_link(rt, target)
    rt.counters.attach(link)
    if rt.stopping:
        return None
    try:
        count = subscribe(rt, link, target) if log_in(rt, link) else None
    except (WebSocketConnectionError, WebSocketTimeoutError):
        link.abort()
        rt.counters.retire(link)
        raise
    if count is None:
        return None
    rt.delivery.new_connection()
    link.connected_at = rt.clock.monotonic()
    first = rt.counters.connected(link.connected_at)
    rt.state.connected()
    rt.delivery.marker(Connected(rt.clock.time(), count, not first))
    log.info("connected to %s", rt.where)
    rt.callbacks.call("on_connect", rt.settings.on_connect)
    return link
