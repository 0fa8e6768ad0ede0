"""permessage-deflate (RFC 7692) for the pure-Python codec, on zlib raw streams.

:class:`Inflater` decompresses the frames of incoming messages with the output of each
message capped (a deflate bomb is detected with bounded memory) and restarts the raw
stream after a block with BFINAL set, with the last 32 KiB of output as its preset
dictionary. :class:`Deflater` compresses one outgoing message with ``Z_SYNC_FLUSH`` and
strips the trailing ``00 00 ff ff``. Both keep the LZ77 window between messages
("context takeover") unless told not to. Twin of ``csrc/deflate.hpp``; the choices made
(a 32 KiB inflate window whatever was negotiated, a 9-bit deflate window at least) are
explained in :mod:`kstlib.websocket._pycodec`.

Thread-safety: one instance per connection and direction, used by one thread at a time.
"""

from __future__ import annotations

import zlib
from typing import Any, Final

__all__ = ["TAIL", "Deflater", "Inflater"]

#: What ``Z_SYNC_FLUSH`` ends with (RFC 7692 7.2.1): stripped by the sender, appended back
#: to a message's last frame by the receiver.
TAIL: Final = b"\x00\x00\xff\xff"
_WINDOW: Final = 32768  # bytes of history a 15-bit inflater keeps


class Inflater:
    """The receiving side of permessage-deflate for one connection.

    :meth:`inflate` is called once per complete compressed frame; once a compressed
    message is delivered, :meth:`remember` is given its output (context takeover) or
    :meth:`reset` is called (no context takeover). Memory: one zlib stream plus at most 32 KiB of
    earlier output (kept only to restart after a BFINAL block).
    """

    __slots__ = ("_d", "_hist", "_hist_len")

    def __init__(self) -> None:
        self._d: Any = None  # zlib decompress object, created on first use
        self._hist: list[bytes] = []  # output of earlier compressed messages (dictionary)
        self._hist_len = 0

    def inflate(self, data: bytes, allowed: int, current: bytearray) -> tuple[bytes, bool]:
        """Inflate ``data``; return ``(output, too_big)`` where ``too_big`` means more than
        ``allowed`` bytes came out (then ``output`` holds ``allowed + 1`` bytes).
        Raises ``zlib.error`` for a corrupt stream. ``current`` is the output of the current
        message so far (part of the window).

        A BFINAL block ends the raw stream; what follows goes to a new raw stream whose
        preset dictionary is the window so far (RFC 7692 7.2.3.3). Each such restart costs
        one 32 KiB copy, never a pass over the whole message.
        """
        d = self._d
        if d is None:
            d = self._d = zlib.decompressobj(-15)
        limit = allowed + 1
        outs: list[bytes] = []
        produced = 0
        window: bytes | None = None
        while True:
            chunk = d.decompress(data, limit - produced)
            if chunk:
                outs.append(chunk)
                produced += len(chunk)
                if produced > allowed:
                    return b"".join(outs), True
            if not d.eof:
                break
            data = d.unused_data
            window = self._window(current) if window is None else window
            window = (window + chunk)[-_WINDOW:] if chunk else window
            d = self._d = (
                zlib.decompressobj(-15, zdict=window) if window else zlib.decompressobj(-15)
            )
            if not data:
                break
        if not outs:
            return b"", False
        return (outs[0] if len(outs) == 1 else b"".join(outs)), False

    def reset(self) -> None:
        """Forget the stream and the history (no context takeover, after each message)."""
        self._d = None
        self._hist = []
        self._hist_len = 0

    def remember(self, output: bytes) -> None:
        """Keep the last 32 KiB of inflated output (needed only to restart after BFINAL).

        Called with the output of each delivered message, in order (context takeover).
        """
        if len(output) >= _WINDOW:
            self._hist = [output[-_WINDOW:]]
            self._hist_len = _WINDOW
            return
        hist = self._hist
        hist.append(output)
        self._hist_len += len(output)
        while self._hist_len - len(hist[0]) >= _WINDOW:
            self._hist_len -= len(hist.pop(0))

    def _window(self, current: bytearray) -> bytes:
        """The last 32 KiB of output since the last reset, before the current pass."""
        parts: list[bytes] = []
        need = _WINDOW
        for seq in ([bytes(current[-_WINDOW:])], self._hist):
            for part in reversed(seq):
                parts.append(part)
                need -= len(part)
                if need <= 0:
                    break
            if need <= 0:
                break
        parts.reverse()
        return b"".join(parts)[-_WINDOW:]


class Deflater:
    """The sending side of permessage-deflate for one connection.

    zlib level 6 (the default), memLevel 8, the default strategy, a raw stream with a
    ``window_bits`` window (the caller passes at least 9: zlib refuses 8 for raw streams).
    With ``no_context_takeover`` each message starts from a fresh compressor.
    """

    __slots__ = ("_c", "_nct", "_window_bits")

    def __init__(self, window_bits: int, no_context_takeover: bool) -> None:
        self._window_bits = window_bits
        self._nct = no_context_takeover
        self._c: Any = None  # zlib compress object, created on first use

    def compress(self, data: bytes) -> bytes:
        """One whole message, compressed and flushed, without the trailing ``00 00 ff ff``."""
        c = self._c
        if c is None:
            c = self._c = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._window_bits, 8
            )
        data = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        if data.endswith(TAIL):
            data = data[:-4]
        if self._nct:
            self._c = None
        return data
