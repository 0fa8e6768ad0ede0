"""UTF-8 validation for the pure-Python codec: whole buffers and message pieces.

:func:`validate_utf8` checks a complete buffer (RFC 3629). Text messages that arrive in
pieces are checked with :data:`Utf8Decoder`, CPython's incremental decoder, plus
:func:`utf8_prefix_ok` on the bytes it holds back between pieces, so that an impossible
prefix fails at once rather than at the end of the message. Twin of ``csrc/utf8.hpp``.

Thread-safety: the functions are pure; a decoder instance belongs to one parser.
"""

from __future__ import annotations

import codecs

__all__ = ["Utf8Decoder", "utf8_prefix_ok", "validate_utf8"]

#: Factory of incremental UTF-8 decoders (one per text message being assembled).
Utf8Decoder = codecs.getincrementaldecoder("utf-8")


def validate_utf8(data: bytes | bytearray | memoryview) -> bool:
    """Return True when ``data`` is complete, valid UTF-8 (RFC 3629: no surrogates,
    no overlong forms, nothing above U+10FFFF)."""
    try:
        str(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def utf8_prefix_ok(tail: bytes) -> bool:
    """Can ``tail`` (an incomplete sequence of 1 to 3 bytes) start a valid character?

    CPython's incremental decoder accepts some impossible prefixes while it waits for more
    bytes (``ED A0``: a surrogate); this closes that gap so failures are immediate.
    """
    b0 = tail[0]
    if not 0xC2 <= b0 <= 0xF4:
        return False
    if len(tail) >= 2:
        b1 = tail[1]
        lo, hi = 0x80, 0xBF
        if b0 == 0xE0:
            lo = 0xA0
        elif b0 == 0xED:
            hi = 0x9F
        elif b0 == 0xF0:
            lo = 0x90
        elif b0 == 0xF4:
            hi = 0x8F
        if not lo <= b1 <= hi:
            return False
        for b in tail[2:]:
            if not 0x80 <= b <= 0xBF:
                return False
    return True
