"""The pure-Python codec's encoder: client frames, masked, optionally compressed.

:class:`FrameEncoder` is re-exported by :mod:`kstlib.websocket._pycodec`; its interface
is specified in :mod:`kstlib.websocket.codec`. Twin of ``csrc/encoder.hpp``.

Thread-safety: one encoder per connection, used by one thread at a time (the caller holds
its write lock): with context takeover the compressor state must follow the order in which
frames are written.
"""

from __future__ import annotations

import os

from kstlib.websocket._pycodec_deflate import Deflater
from kstlib.websocket._pycodec_frame import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    apply_mask,
    close_code_allowed,
    parse_close,
)
from kstlib.websocket.exceptions import WebSocketProtocolError

__all__ = ["FrameEncoder"]


class FrameEncoder:
    """Builds client frames; see :mod:`kstlib.websocket.codec`.

    Every frame is masked with a fresh key from :func:`os.urandom`. With ``deflate`` every
    data message is compressed (also empty ones, which become the single byte ``00``).

    Thread-safety: one encoder per connection, used by one thread at a time (the caller
    holds its write lock): with context takeover the compressor state must follow the
    order in which frames are written.
    """

    __slots__ = ("_bytes_sent", "_deflater", "_fragment_size", "_messages_sent")

    def __init__(
        self,
        *,
        deflate: bool = False,
        deflate_no_context_takeover: bool = False,
        deflate_window_bits: int = 15,
        fragment_size: int = 0,
    ) -> None:
        """Create an encoder.

        ``ValueError`` when ``deflate_window_bits`` is not in 8..15 (8 compresses with a
        9-bit zlib window, which never refers further back than 250 bytes; see the
        :mod:`kstlib.websocket._pycodec` docs) or ``fragment_size`` is negative.
        """
        if not 8 <= deflate_window_bits <= 15:
            raise ValueError("deflate_window_bits must be in 8..15")
        if fragment_size < 0:
            raise ValueError("fragment_size must be >= 0")
        self._deflater = (
            Deflater(max(9, int(deflate_window_bits)), bool(deflate_no_context_takeover))
            if deflate
            else None
        )
        self._fragment_size = int(fragment_size)
        self._messages_sent = 0
        self._bytes_sent = 0

    @property
    def messages_sent(self) -> int:
        """Data messages encoded so far."""
        return self._messages_sent

    @property
    def bytes_sent(self) -> int:
        """Wire bytes produced so far (every frame, headers included)."""
        return self._bytes_sent

    def encode(self, opcode: int, payload: bytes | bytearray | memoryview | str) -> bytes:
        """Encode one data message or one control frame; see :mod:`kstlib.websocket.codec`.

        ``ValueError`` for an opcode other than text, binary, close, ping and pong, for a
        control payload over 125 bytes, and for an ``OP_CLOSE`` payload that
        :func:`parse_close` would reject. A ``bytes`` text payload is sent as is (not
        validated).
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        if opcode in (OP_TEXT, OP_BINARY):
            wire = self._message(opcode, data)
            self._messages_sent += 1
        elif opcode in (OP_CLOSE, OP_PING, OP_PONG):
            if len(data) > 125:
                raise ValueError("control frame payload longer than 125 bytes")
            if opcode == OP_CLOSE:
                try:
                    parse_close(data)
                except WebSocketProtocolError as exc:
                    raise ValueError(f"invalid close payload: {exc}") from None
            wire = _frame(0x80 | opcode, data)
        else:
            raise ValueError(f"cannot encode opcode {opcode!r}")
        self._bytes_sent += len(wire)
        return wire

    def encode_close(self, code: int | None = None, reason: str = "") -> bytes:
        """Encode a close frame.

        ``code=None`` gives an empty payload (then ``reason`` must be empty). ``ValueError``
        for a code that may not be sent (allowed: 1000-1003, 1007-1014, 3000-4999), a
        reason without a code, or a payload (2 + UTF-8 reason) over 125 bytes.
        """
        if code is None:
            if reason:
                raise ValueError("a close reason needs a close code")
            return self.encode(OP_CLOSE, b"")
        if not close_code_allowed(code):
            raise ValueError(f"close code {code} may not be sent")
        payload = code.to_bytes(2, "big") + reason.encode("utf-8")
        if len(payload) > 125:
            raise ValueError("close reason too long (payload over 125 bytes)")
        return self.encode(OP_CLOSE, payload)

    def _message(self, opcode: int, data: bytes) -> bytes:
        """The frames of one data message: compressed (RSV1 on the first frame) when
        deflate is on, split into ``fragment_size`` payloads when it is set."""
        first = 0x80 | opcode
        if self._deflater is not None:
            data = self._deflater.compress(data)
            first |= 0x40
        size = self._fragment_size
        if not size or len(data) <= size:
            return _frame(first, data)
        frames = []
        last = len(data) - size
        for start in range(0, len(data), size):
            b0 = (first & 0x7F) if start == 0 else 0
            if start >= last:
                b0 |= 0x80
            frames.append(_frame(b0, data[start : start + size]))
        return b"".join(frames)


def _frame(b0: int, payload: bytes) -> bytes:
    """One masked frame: first byte ``b0``, payload masked with a fresh random key."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes((b0, 0x80 | n))
    elif n < 65536:
        header = bytes((b0, 0xFE, n >> 8, n & 0xFF))
    else:
        header = bytes((b0, 0xFF)) + n.to_bytes(8, "big")
    return header + key + apply_mask(payload, key)
