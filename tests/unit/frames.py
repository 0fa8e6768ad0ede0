"""A server-side frame builder for codec tests: well-formed and deliberately broken frames.

``frame()`` writes exactly the bits it is given, so tests can set reserved bits, unknown
opcodes, non-minimal or absurd lengths, a mask, and so on. Frames are unmasked (as a
server sends them) unless ``mask`` is given. Helpers build common sequences (fragmented
messages, compressed messages) on top of it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
TAIL = b"\x00\x00\xff\xff"


def xor_mask(data: bytes, key: bytes) -> bytes:
    """Independent (byte-by-byte) masking, used to check the codecs' ``apply_mask``."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def frame(
    opcode: int,
    payload: bytes | str = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
    length: int | None = None,
    length_bits: int | None = None,
) -> bytes:
    """One frame.

    ``length`` overrides the announced payload length (the payload bytes are still what
    is given); ``length_bits`` forces the length encoding (7, 16 or 64) even when it is not
    minimal; ``mask`` sets the MASK bit and masks the payload with that 4-byte key.
    """
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    n = len(data) if length is None else length
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0)
    b0 |= (0x10 if rsv3 else 0) | (opcode & 0x0F)
    if length_bits is None:
        length_bits = 7 if n < 126 else (16 if n < 65536 else 64)
    mbit = 0x80 if mask is not None else 0
    if length_bits == 7:
        if n > 127:
            raise ValueError("7-bit length field holds at most 127")
        header = bytes((b0, mbit | n))
    elif length_bits == 16:
        header = bytes((b0, mbit | 126)) + n.to_bytes(2, "big")
    elif length_bits == 64:
        header = bytes((b0, mbit | 127)) + n.to_bytes(8, "big")
    else:
        raise ValueError("length_bits must be 7, 16 or 64")
    if mask is not None:
        header += mask
        data = xor_mask(data, mask)
    return header + data


def fragments(
    opcode: int, payload: bytes | str, sizes: Sequence[int], *, rsv1: bool = False
) -> list[bytes]:
    """Split a message into frames whose payloads have the given ``sizes`` (the last
    frame takes the rest). RSV1 goes on the first frame only."""
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    out: list[bytes] = []
    pos = 0
    cuts = [*list(sizes), len(data)]
    for i, size in enumerate(cuts):
        last = i == len(cuts) - 1
        chunk = data[pos:] if last else data[pos : pos + size]
        pos += len(chunk)
        out.append(frame(OP_CONT if i else opcode, chunk, fin=last, rsv1=rsv1 and i == 0))
        if last:
            break
    return out


def close(code: int | None = None, reason: bytes | str = b"") -> bytes:
    """A close frame (code None: empty payload; the reason is not validated)."""
    if code is None:
        return frame(OP_CLOSE, b"")
    r = reason.encode("utf-8") if isinstance(reason, str) else reason
    return frame(OP_CLOSE, code.to_bytes(2, "big") + r)


class Compressor:
    """A permessage-deflate sender: raw deflate, Z_SYNC_FLUSH, tail stripped."""

    def __init__(self, *, window_bits: int = 15, no_context_takeover: bool = False) -> None:
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self._c = self._new()

    def _new(self) -> zlib._Compress:
        return zlib.compressobj(6, zlib.DEFLATED, -self.window_bits)

    def compress(self, data: bytes | str) -> bytes:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        out = self._c.compress(raw) + self._c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        if self.no_context_takeover:
            self._c = self._new()
        return out[:-4]


def compressed_message(
    comp: Compressor, opcode: int, payload: bytes | str, sizes: Sequence[int] = ()
) -> bytes:
    """A compressed message, optionally fragmented (``sizes`` of compressed pieces)."""
    return b"".join(fragments(opcode, comp.compress(payload), sizes, rsv1=True))


def join(parts: Iterable[bytes]) -> bytes:
    return b"".join(parts)


def split_client_frames(wire: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """``[(byte0, byte1, mask_key, payload_as_sent)]`` of a byte stream of whole frames
    (``mask_key`` is empty for unmasked frames)."""
    out: list[tuple[int, int, bytes, bytes]] = []
    pos = 0
    while pos < len(wire):
        b0, b1 = wire[pos], wire[pos + 1]
        n = b1 & 0x7F
        hl = 2
        if n == 126:
            n = int.from_bytes(wire[pos + 2 : pos + 4], "big")
            hl = 4
        elif n == 127:
            n = int.from_bytes(wire[pos + 2 : pos + 10], "big")
            hl = 10
        key = wire[pos + hl : pos + hl + 4] if b1 & 0x80 else b""
        start = pos + hl + len(key)
        if start + n > len(wire):
            raise ValueError("truncated frame")
        out.append((b0, b1, key, wire[start : start + n]))
        pos = start + n
    return out


def to_server(wire: bytes, unmask: Callable[[bytes, bytes], bytes] = xor_mask) -> bytes:
    """Turn masked client frames into the unmasked frames a server would send (same
    first byte, same length encoding), unmasking each payload with ``unmask``."""
    out = bytearray()
    pos = 0
    for b0, b1, key, payload in split_client_frames(wire):
        if not b1 & 0x80:
            raise ValueError("client frames must be masked")
        n = b1 & 0x7F
        ext = 0 if n < 126 else (2 if n == 126 else 8)
        out += bytes((b0, n)) + wire[pos + 2 : pos + 2 + ext] + unmask(payload, key)
        pos += 2 + ext + 4 + len(payload)
    return bytes(out)
