"""The sans-I/O client protocol: bytes in, messages out, and frames to send.

:class:`ClientProtocol` sits on one connection's codec pair (the C++ or pure-Python
``FrameParser`` / ``FrameEncoder``, see :mod:`kstlib.websocket.codec`) and owns, once,
everything RFC 6455 asks of a client beyond framing:

* a ping from the server is answered with a pong carrying the same payload;
* our own pings carry a counter, and only the pong that echoes the ping we wait for
  clears the wait (:attr:`ClientProtocol.pong_matched`);
* a close frame from the server is echoed (its code only) unless we sent one first, and
  its code and reason are kept (:attr:`ClientProtocol.close_received`);
* a framing violation is kept in :attr:`ClientProtocol.error` with its close code;
  what was complete before it is still returned.

It never touches a socket or a clock. The caller reads bytes, passes them to
:meth:`~ClientProtocol.receive_data` (or reads and parses in one native call,
``FrameParser.feed_from``, and hands the control frames and the error to
:meth:`~ClientProtocol.received`), looks at :attr:`~ClientProtocol.has_news` (one
attribute test on the hot path) and writes what :meth:`~ClientProtocol.data_to_send`
returns.

Thread-safety: one thread receives (the connection's reader). Every method that builds a
frame (``encode_*``, ``data_to_send``) uses the encoder and must be called with the
connection's write lock held; ``receive_data`` only queues control replies, so the
reader never needs that lock to parse.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from kstlib.websocket import codec
from kstlib.websocket.exceptions import WebSocketProtocolError

__all__ = ["ClientProtocol", "ProtocolState"]


class ProtocolState(enum.Enum):
    """Where the closing handshake stands."""

    OPEN = "open"
    #: We sent a close frame and wait for the peer's.
    CLOSING = "closing"
    #: The peer's close frame arrived, or the stream failed: nothing more will be read.
    CLOSED = "closed"


class ClientProtocol:
    """RFC 6455 client behaviour over one ``FrameParser`` / ``FrameEncoder`` pair."""

    def __init__(self, parser: Any, encoder: Any) -> None:
        self.parser = parser
        self.encoder = encoder
        #: ``encode_data(opcode, payload)``: a data message (``OP_TEXT`` /
        #: ``OP_BINARY``) as wire bytes (the encoder's own method: no Python frame).
        self.encode_data: Callable[[int, Any], bytes] = encoder.encode
        self._feed = parser.feed
        self.close_sent = False
        #: ``(code, reason)`` of the peer's close frame (``(None, "")`` when empty).
        self.close_received: tuple[int | None, str] | None = None
        #: The first framing violation, or None.
        self.error: WebSocketProtocolError | None = None
        #: Set when ``receive_data`` produced anything besides data messages (a control
        #: frame, an error); the caller looks, acts, and resets it.
        self.has_news = False
        #: True when a pong answering our outstanding ping arrived (reset by the caller).
        self.pong_matched = False
        #: Payload bytes (after decompression) of the messages the last call returned.
        self.batch_bytes = 0
        self._ping_count = 0
        self._ping_payload: bytes | None = None
        self._outgoing: list[tuple[int, bytes]] = []

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> ProtocolState:
        if self.close_received is not None or self.error is not None:
            return ProtocolState.CLOSED
        return ProtocolState.CLOSING if self.close_sent else ProtocolState.OPEN

    @property
    def wants_to_send(self) -> bool:
        """True when received control frames wait for their reply (:meth:`data_to_send`)."""
        return bool(self._outgoing)

    @property
    def awaiting_pong(self) -> bool:
        """True while a ping of ours has not been answered."""
        return self._ping_payload is not None

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: Any) -> list[Any]:
        """Parse ``data`` (any bytes-like object); return the completed data messages.

        Control frames are handled here (see the module docstring); after the peer's close
        frame or an error the parser ignores further input."""
        parser = self.parser
        before = parser.payload_bytes
        messages, controls, error = self._feed(data)
        self.batch_bytes = parser.payload_bytes - before
        if controls or error is not None:
            self.received(controls, error)
        return messages  # type: ignore[no-any-return]

    def received(
        self, controls: list[tuple[int, bytes]], error: WebSocketProtocolError | None
    ) -> None:
        """Act on what the parser returned besides data messages, when the caller fed it
        itself (``FrameParser.feed_from``, the native read path of :mod:`.engine.link`):
        control frames and the first violation set :attr:`has_news`."""
        if controls:
            self._on_controls(controls)
        if error is not None and self.error is None:
            self.error = error
            self.has_news = True

    def _on_controls(self, controls: list[tuple[int, bytes]]) -> None:
        self.has_news = True
        for opcode, payload in controls:
            if opcode == codec.OP_PING:
                self._outgoing.append((codec.OP_PONG, payload))
            elif opcode == codec.OP_PONG:
                if payload == self._ping_payload:
                    self._ping_payload = None
                    self.pong_matched = True
            elif opcode == codec.OP_CLOSE:
                self._on_close(payload)

    def _on_close(self, payload: bytes) -> None:
        try:
            self.close_received = codec.parse_close(payload)
        except WebSocketProtocolError:  # the parser validated it; never expected
            self.close_received = (None, "")
        if not self.close_sent:
            self._outgoing.append((codec.OP_CLOSE, bytes(payload[:2])))

    # ------------------------------------------------------------------ sending (write lock held)

    def data_to_send(self) -> list[bytes]:
        """The control frames the received data asks for (pongs, the close echo), built
        now, in order. Call with the write lock held."""
        if not self._outgoing:
            return []
        frames = []
        for opcode, payload in self._outgoing:
            if opcode == codec.OP_CLOSE:
                if self.close_sent:
                    continue
                self.close_sent = True
            frames.append(self.encoder.encode(opcode, payload))
        self._outgoing.clear()
        return frames

    def encode_ping(self) -> tuple[bytes, bool]:
        """A new ping; returns ``(frame, waits)``. ``waits`` is True when this ping is the
        one whose pong is awaited (no other ping was outstanding)."""
        self._ping_count += 1
        payload = self._ping_count.to_bytes(8, "big")
        waits = self._ping_payload is None
        if waits:
            self._ping_payload = payload
        return self.encoder.encode(codec.OP_PING, payload), waits

    def encode_close(self, code: int | None, reason: str = "") -> bytes | None:
        """Our close frame, or None when one was already sent (it is sent once)."""
        if self.close_sent:
            return None
        self.close_sent = True
        return self.encoder.encode_close(code, reason)  # type: ignore[no-any-return]
