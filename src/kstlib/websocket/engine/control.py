"""Control frames of a live connection: keepalive pings out, the peer's frames answered.

* :func:`send_ping` sends a keepalive ping and arms the pong deadline;
* :func:`answer_controls` writes the pongs and the close echo the protocol asks for and
  clears the keepalive wait on a matching pong;
* :func:`after_controls` does that, then ends the connection on the peer's close frame
  or a violation;
* :func:`send_heartbeat` sends the application heartbeat (option ``heartbeat``).

Every control frame we write takes a slot of the send pacing (``max_send_rate``): an
exchange counts pongs too. Thread-safety: the engine thread only.
"""

from __future__ import annotations

from typing import Any

import orjson

from kstlib.websocket import codec
from kstlib.websocket.exceptions import WebSocketError
from kstlib.websocket.models import DisconnectReason

from .closing import Ending, lost, protocol_failure, server_closed
from .link import Link
from .runtime import Runtime

__all__ = ["after_controls", "answer_controls", "send_heartbeat", "send_message", "send_ping"]

_R = DisconnectReason


def send_ping(rt: Runtime, link: Link, now: float) -> None:
    """Send a keepalive ping on ``link`` and arm its timers."""
    if rt.limiter is not None:
        rt.limiter.record()
    link.keepalive.ping_sent(now, link.send_ping())


def answer_controls(rt: Runtime, link: Link) -> None:
    """Act on the control frames ``link``'s protocol reported: a matching pong clears the
    keepalive wait; pongs and the close echo are written (each takes a pacing slot).
    Raises ``OSError`` / ``WebSocketError`` when writing fails."""
    protocol = link.protocol
    protocol.has_news = False
    if protocol.pong_matched:
        protocol.pong_matched = False
        rtt = link.keepalive.pong_received(rt.clock.monotonic())
        if rtt is not None:
            rt.counters.round_trip(rtt)
            rt.ping_waiters.resolve(rtt)
    sent = link.flush()
    if rt.limiter is not None:
        for _ in range(sent):
            rt.limiter.record()


def after_controls(rt: Runtime, link: Link) -> Ending | None:
    """:func:`answer_controls`, then the ending the peer's frames call for, if any."""
    try:
        answer_controls(rt, link)
    except (OSError, WebSocketError) as exc:
        if link.protocol.close_received is None:
            return lost(rt, link, _R.NETWORK_ERROR, exc)
    if link.protocol.close_received is not None:
        return server_closed(link)
    if link.protocol.error is not None:
        return protocol_failure(rt, link, link.protocol.error)
    return None


def send_heartbeat(rt: Runtime, link: Link, now: float) -> None:
    """Send the application heartbeat on ``link`` (it takes a pacing slot) and arm its
    answer deadline. Raises ``OSError`` / ``WebSocketError`` when writing fails."""
    beat = rt.settings.heartbeat
    assert beat is not None
    sent = False
    try:
        msg = beat.send() if callable(beat.send) else beat.send
        if msg is not None:
            send_message(rt, link, msg)
            sent = True
    except (OSError, WebSocketError):
        raise
    except Exception as exc:  # the callable raised, or gave no message: counted
        rt.callbacks.failed("heartbeat.send", exc)
    # a watchdog (send=None) waits for the server's own heartbeats just the same
    link.keepalive.beat_sent(now, beat.is_reply is not None and (sent or beat.send is None))


def send_message(rt: Runtime, link: Link, msg: Any) -> None:
    """Write one message the engine itself sends (a heartbeat, an answer to the
    server's ping): ``str`` as text, ``bytes`` as binary, anything else as JSON. It takes
    a pacing slot without waiting for one (it cannot be late)."""
    if rt.limiter is not None:
        rt.limiter.record()
    if isinstance(msg, str):
        link.send_data(codec.OP_TEXT, msg)
    elif isinstance(msg, (bytes, bytearray)):
        link.send_data(codec.OP_BINARY, msg)
    else:
        link.send_data(codec.OP_TEXT, orjson.dumps(msg))
