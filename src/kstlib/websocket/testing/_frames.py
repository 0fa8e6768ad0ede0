"""Raw, deliberately broken WebSocket frames a server can write to a client.

Each entry is a complete byte string written as-is to the TCP stream, bypassing the
server library's framing, so a client meets frames no conforming server would send.
The comment gives the close code an RFC 6455 client is expected to answer with.
"""

from __future__ import annotations

import struct
from typing import Literal, get_args

__all__ = ["MALFORMED_FRAMES", "MalformedKind", "malformed_frame"]

MalformedKind = Literal[
    "reserved_opcode",
    "reserved_control_opcode",
    "masked",
    "invalid_utf8",
    "reserved_bits",
    "fragmented_control",
    "oversized_control",
    "unexpected_continuation",
    "bad_close_code",
    "huge_length",
    "garbage",
    "truncated_reset",
]


def _masked_text(payload: bytes) -> bytes:
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + masked


MALFORMED_FRAMES: dict[str, bytes] = {
    # FIN + opcode 0x3 (reserved non-control opcode) -> 1002.
    "reserved_opcode": b"\x83\x00",
    # FIN + opcode 0xB (reserved control opcode) -> 1002.
    "reserved_control_opcode": b"\x8b\x00",
    # A server-to-client frame with the MASK bit set (RFC 6455 5.1) -> 1002.
    "masked": _masked_text(b'{"e":"masked"}'),
    # Text frame whose payload is not UTF-8 (0xC3 0x28) -> 1007.
    "invalid_utf8": b"\x81\x02\xc3\x28",
    # RSV2 set without a negotiated extension that defines it -> 1002.
    "reserved_bits": b"\xa1\x02hi",
    # Ping without FIN: control frames must not be fragmented -> 1002.
    "fragmented_control": b"\x09\x00",
    # Ping with a 126-byte payload: control payloads are at most 125 -> 1002.
    "oversized_control": b"\x89\x7e\x00\x7e" + b"x" * 126,
    # Continuation frame with no message in progress -> 1002.
    "unexpected_continuation": b"\x80\x02hi",
    # Close frame with code 999 (not a valid close code) -> 1002.
    "bad_close_code": b"\x88\x02" + struct.pack("!H", 999),
    # Text frame header announcing 2**63 - 1 bytes: a client must refuse it from the
    # header alone, before buffering (-> 1009), and must never try to allocate it.
    "huge_length": b"\x81\x7f" + struct.pack("!Q", 2**63 - 1),
    # Bytes that are no frame at all: FIN+RSV1-3 and opcode 0xF -> 1002.
    "garbage": b"\xff\xff\xff\xff\xff\xff\xff\xff",
    # Start of a 1000-byte text frame, only 10 payload bytes, then a TCP reset: the
    # connection is lost mid-message (the simulator sends the RST itself).
    "truncated_reset": b"\x81\x7e\x03\xe8" + b'{"e":"trun',
}

if set(MALFORMED_FRAMES) != set(get_args(MalformedKind)):  # pragma: no cover
    raise AssertionError("MALFORMED_FRAMES and MalformedKind disagree")


def malformed_frame(kind: str) -> bytes:
    """Return the raw bytes for ``kind``.

    Raises:
        ValueError: unknown kind (the message lists the known ones).
    """
    try:
        return MALFORMED_FRAMES[kind]
    except KeyError:
        known = ", ".join(sorted(MALFORMED_FRAMES))
        raise ValueError(f"unknown malformed frame kind {kind!r}; known: {known}") from None
