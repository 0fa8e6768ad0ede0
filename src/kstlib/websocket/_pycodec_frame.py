"""The RFC 6455 frame format shared by both directions of the pure-Python codec.

Opcodes, masking (:func:`apply_mask`) and the close-frame payload rules
(:func:`close_code_allowed`, :func:`parse_close`): what :mod:`._pycodec`'s parser and
:mod:`._pycodec_encoder` both need. Twin of ``csrc/mask.hpp`` and the close rules of
``csrc/parser.cpp``; the behaviour is specified in :mod:`kstlib.websocket.codec`.

Thread-safety: pure functions and constants.
"""

from __future__ import annotations

from typing import Final

from kstlib.websocket.exceptions import WebSocketProtocolError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "apply_mask",
    "close_code_allowed",
    "parse_close",
]

OP_CONTINUATION: Final = 0
OP_TEXT: Final = 1
OP_BINARY: Final = 2
OP_CLOSE: Final = 8
OP_PING: Final = 9
OP_PONG: Final = 10


def apply_mask(data: bytes | bytearray | memoryview, key: bytes | bytearray | memoryview) -> bytes:
    """Return ``data`` XOR the repeated 4-byte ``key`` (RFC 6455 section 5.3).

    Masking and unmasking are the same operation. ``ValueError`` if ``key`` is not 4 bytes.
    The whole buffer is XORed as one integer, so the cost is a few linear passes in C.
    """
    key = bytes(key)
    if len(key) != 4:
        raise ValueError("mask key must be 4 bytes")
    data = bytes(data)
    n = len(data)
    if n == 0:
        return b""
    full = key * ((n + 3) >> 2)
    if len(full) != n:
        full = full[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(full, "little")).to_bytes(n, "little")


def close_code_allowed(code: int) -> bool:
    """May ``code`` be sent in a close frame? (1000-1003, 1007-1014, 3000-4999.)"""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close(payload: bytes | bytearray | memoryview) -> tuple[int | None, str]:
    """Decode a close frame payload into ``(code, reason)``.

    An empty payload gives ``(None, "")``. Raises ``WebSocketProtocolError`` with close code
    1002 for a 1-byte payload, a payload over 125 bytes or a code that may not be sent
    (allowed: 1000-1003, 1007-1014, 3000-4999), and 1007 for a reason that is not valid
    UTF-8. The code is checked before the reason.
    """
    payload = bytes(payload)
    n = len(payload)
    if n == 0:
        return None, ""
    if n == 1:
        raise WebSocketProtocolError(1002, "close frame payload of 1 byte")
    if n > 125:
        raise WebSocketProtocolError(1002, "close frame payload longer than 125 bytes")
    code = (payload[0] << 8) | payload[1]
    if not close_code_allowed(code):
        raise WebSocketProtocolError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketProtocolError(1007, "invalid UTF-8 in close reason") from None
    return code, reason
