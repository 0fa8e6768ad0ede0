"""Every way a connection ends, each giving one :class:`Ending` (one reason, once).

* :func:`graceful`: our close frame, then keep reading (and delivering) until the peer's
  close frame, EOF, or ``close_timeout``; then the socket is closed;
* :func:`close_in_background`: the same for a connection a handover replaced, on a
  short-lived thread, so the new connection is served at once;
* :func:`lost`: the network failed (``NETWORK_ERROR``); the socket is dropped;
* :func:`protocol_failure`: the peer broke RFC 6455: close with the violation's code;
* :func:`server_closed`: the peer's close frame (already echoed by the protocol).

:func:`record` books an ending exactly once.

Thread-safety: the engine thread (and the closer threads it starts).
"""

from __future__ import annotations

import logging
import select
import threading
from dataclasses import dataclass

from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketError,
    WebSocketProtocolError,
)
from kstlib.websocket.models import Disconnected, DisconnectReason

from .link import Link
from .mailbox import StopMode
from .runtime import Runtime

__all__ = [
    "Ending",
    "close_in_background",
    "graceful",
    "lost",
    "protocol_failure",
    "record",
    "server_closed",
]

log = logging.getLogger("kstlib.websocket")
_R = DisconnectReason


@dataclass
class Ending:
    """How a connection ended: exactly one reason, plus the close code/text if any."""

    reason: DisconnectReason
    code: int | None = None
    text: str = ""
    error: BaseException | None = None
    #: For ``SCHEDULED``: the monotonic time to reconnect at.
    reconnect_at: float | None = None


def lost(rt: Runtime, link: Link, reason: DisconnectReason, exc: BaseException) -> Ending:
    log.warning("connection to %s lost: %s", rt.where, exc)
    link.abort()
    return Ending(reason, 1006, str(exc), exc)


def server_closed(link: Link) -> Ending:
    code, text = link.protocol.close_received or (None, "")
    link.abort()
    return Ending(_R.SERVER_CLOSED, code, text)


def protocol_failure(rt: Runtime, link: Link, err: WebSocketProtocolError) -> Ending:
    log.warning("protocol error from %s: %s (close %d)", rt.where, err, err.close_code)
    rt.callbacks.report(err)
    graceful(rt, link, _R.PROTOCOL_ERROR, code=err.close_code)
    return Ending(_R.PROTOCOL_ERROR, err.close_code, str(err), err)


def graceful(rt: Runtime, link: Link, reason: DisconnectReason, code: int = 1000) -> Ending:
    """Closing handshake on ``link`` (see the module docstring)."""
    text = "" if reason is _R.PROTOCOL_ERROR else reason.value
    timeout = rt.settings.close_timeout
    deadline = rt.clock.monotonic() + timeout
    try:
        link.send_close(code, text, timeout)  # a full socket or a stuck writer: give up
    except (OSError, WebSocketError):
        link.abort()
        return Ending(reason, code, text)
    _drain_until_close(rt, link, deadline)
    link.abort()
    return Ending(reason, code, text)


def _drain_until_close(rt: Runtime, link: Link, deadline: float) -> None:
    """Read until the peer's close frame, EOF, an error, ``deadline`` or a forced stop,
    delivering the data that still arrives."""
    buf = rt.buf
    protocol = link.protocol
    while link.open:
        remaining = deadline - rt.clock.monotonic()
        if remaining <= 0:
            return
        try:
            n = link.read_into(buf)
        except OSError:
            return
        if n < 0:
            select.select([link.sock], [], [], min(remaining, 0.5))
            if rt.mailbox.stop is StopMode.FORCE:
                return
            continue
        if n == 0:
            return
        msgs = protocol.receive_data(memoryview(buf)[:n])
        if msgs:
            rt.delivery.deliver_closing(msgs, deadline, protocol.batch_bytes)
        if protocol.close_received is not None or protocol.error is not None:
            return


def close_in_background(rt: Runtime, link: Link, text: str) -> None:
    """Run ``link``'s closing handshake on a closer thread, discarding what it still
    sends (the new connection has it), so the engine thread serves the new connection at
    once. Bounded by ``close_timeout``; joined at teardown."""
    timeout = rt.settings.close_timeout
    deadline = rt.clock.monotonic() + timeout

    def finish() -> None:
        buf = bytearray(65536)
        try:
            link.send_close(1000, text, timeout)
            while link.open and rt.clock.monotonic() < deadline:
                n = link.read_into(buf)
                if n == 0:
                    break
                if n < 0:
                    wait = min(0.1, deadline - rt.clock.monotonic())
                    select.select([link.sock], [], [], max(0.0, wait))
                    continue
                link.protocol.receive_data(memoryview(buf)[:n])
                if link.protocol.close_received is not None or link.protocol.error:
                    break
        except (OSError, ValueError, WebSocketError):
            pass
        finally:
            link.abort()

    closer = threading.Thread(target=finish, name="kstlib-ws-engine-closer", daemon=True)
    rt.closers = [t for t in rt.closers if t.is_alive()]
    rt.closers.append(closer)
    closer.start()


# ---------------------------------------------------------------------- bookkeeping


def record(rt: Runtime, link: Link, ending: Ending, gap: bool = True) -> None:
    """Count a disconnect once, mark the gap, wake ``disconnect()`` / ``kill()``
    callers, log it and call ``on_disconnect``. ``gap`` is False for a handover that
    lost nothing; the final close is never a gap."""
    rt.subscriptions.forget(link)
    rt.counters.retire(link)
    rt.delivery.intercept.connection_lost()  # replies owed on it never come
    rt.ping_waiters.fail(
        WebSocketClosedError(ending.code, f"connection ended ({ending.reason.value})")
    )
    reason = ending.reason
    gap = gap and not rt.stopping
    if gap:
        rt.delivery.marker(Disconnected(reason, rt.clock.time(), ending.code))
    rt.counters.disconnected(reason, gap=gap)
    rt.mailbox.ack()
    log.info(
        "disconnected from %s: %s (%s)%s",
        rt.where,
        reason.name,
        "proactive" if reason.is_proactive else "reactive",
        f" code={ending.code} {ending.text}" if ending.code is not None else "",
    )
    rt.callbacks.call("on_disconnect", rt.settings.on_disconnect, reason)
