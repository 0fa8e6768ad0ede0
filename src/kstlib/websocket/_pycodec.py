"""Pure-Python RFC 6455 / RFC 7692 codec: the reference implementation.

This module implements, in plain Python, exactly the interface described in
:mod:`kstlib.websocket.codec`. It has two jobs:

* it is the **oracle**: the C++ ``_speedups`` module is tested against it (unit tests on
  both, and differential tests feeding both the same random frame streams), so every
  rule here is written for clarity and exactness first;
* it is the **fallback** when the C++ extension is not available (or
  ``KSTLIB_WS_PURE_PYTHON=1``), so the hot paths avoid per-byte Python work: headers are
  read with integer arithmetic on ``bytes``, a message that lies whole in the input is
  sliced once and validated with one ``bytes.decode`` call, masking XORs the whole buffer
  as one big integer.

Behaviour beyond the contract (these are shared with the C++ module and pinned by
``tests/unit/test_codec.py``):

* Checks run in stream order, as soon as the bytes they need are there. Everything
  decidable from the first two header bytes (RSV bits, opcode, FIN on control frames,
  7-bit length of control frames, continuation/new-message state, MASK bit) is checked
  once those two bytes are in; the 64-bit length and the message size once the extended
  length is complete; a control frame (and so a close payload, code before reason) once
  its whole payload is in; UTF-8 of an uncompressed text message on every payload piece as
  it arrives (an impossible prefix such as ``ED A0`` fails at once).
* Lengths need not use the minimal encoding (a 16-bit length of 5 is accepted).
* ``max_message_size`` applies to data messages only (control frames are at most 125
  bytes anyway). For a compressed message it bounds both the sum of the frame payload
  lengths (checked from the headers) and the decompressed size (checked while inflating).
* Inflating always uses a 32 KiB window whatever ``inflate_window_bits`` says: a raw
  inflater with a window smaller than the one the sender used fails with "distance too
  far back", and zlib only enforces the window on back references that reach beyond the
  current output buffer, so a smaller window would make the outcome depend on how the
  input was chunked. A 15-bit inflater accepts every stream a conforming server produces.
* A deflate block with BFINAL set ends the raw stream; the rest of the message (and the
  appended ``00 00 ff ff``) starts a new raw stream whose preset dictionary is the last
  32 KiB of output since the last reset (RFC 7692 section 7.2.3.3; what zlib's
  ``inflateGetDictionary`` + ``inflateSetDictionary`` do).
* Each compressed frame is inflated in one zlib pass once its payload is complete (the
  final frame with ``00 00 ff ff`` appended, in the same pass), with the message's output
  capped at ``limit + 1`` bytes: zlib decodes ahead of a full output buffer (a block
  header, the next code), so inflating arbitrary chunks would make "corrupt" versus "too
  big" depend on the chunking. Within a pass a zlib error is 1007; otherwise, when the
  output passes the limit, the part that fits is UTF-8-checked first (invalid: 1007), then
  1009. UTF-8 of compressed text is checked per frame.
* Deflating uses zlib level 6 (the default), memLevel 8, the default strategy, and a
  window of ``max(9, deflate_window_bits)`` bits: zlib refuses raw streams with an 8-bit
  window, and its compressor never emits a distance larger than the window size minus
  262 (``MAX_DIST``), i.e. at most 250 with 9 bits, so a peer inflating with a 256-byte
  window can always decode what it produces.
"""

from __future__ import annotations

import codecs
import json
import os
import zlib
from collections.abc import Callable
from typing import Any, Final

from kstlib.websocket.exceptions import WebSocketProtocolError

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MODE_BYTES",
    "MODE_JSON",
    "MODE_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameEncoder",
    "FrameParser",
    "apply_mask",
    "parse_close",
    "validate_utf8",
]

OP_CONTINUATION: Final = 0
OP_TEXT: Final = 1
OP_BINARY: Final = 2
OP_CLOSE: Final = 8
OP_PING: Final = 9
OP_PONG: Final = 10

MODE_BYTES: Final = 0
MODE_TEXT: Final = 1
MODE_JSON: Final = 2

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024

_TAIL: Final = b"\x00\x00\xff\xff"  # what Z_SYNC_FLUSH ends with (RFC 7692 7.2.1)
_WINDOW: Final = 32768  # bytes of history a 15-bit inflater keeps
_MAX_LEN: Final = (1 << 63) - 1

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


# ------------------------------------------------------------------ small functions


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


def validate_utf8(data: bytes | bytearray | memoryview) -> bool:
    """Return True when ``data`` is complete, valid UTF-8 (RFC 3629: no surrogates,
    no overlong forms, nothing above U+10FFFF)."""
    try:
        str(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _close_code_allowed(code: int) -> bool:
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
    if not _close_code_allowed(code):
        raise WebSocketProtocolError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketProtocolError(1007, "invalid UTF-8 in close reason") from None
    return code, reason


def _utf8_prefix_ok(tail: bytes) -> bool:
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


def _error(code: int, text: str) -> WebSocketProtocolError:
    return WebSocketProtocolError(code, text)


# ------------------------------------------------------------------ parser


class FrameParser:
    """Incremental parser of server frames; see :mod:`kstlib.websocket.codec`.

    Memory: between calls it keeps at most 127 bytes of an incomplete header or control
    frame, plus the pieces of the data message being assembled (bounded by
    ``max_message_size``). It copies what it keeps, so the caller may reuse the buffer it
    passed to :meth:`feed` (for instance a ``memoryview`` over a receive buffer).

    Thread-safety: one parser per connection, used by one thread at a time.
    """

    __slots__ = (
        "_buf",
        "_bytes_received",
        "_closed",
        "_dec",
        "_decode_errors",
        "_error",
        "_f_fin",
        "_f_left",
        "_hist",
        "_hist_len",
        "_in_payload",
        "_inflate",
        "_inflate_nct",
        "_inflate_window_bits",
        "_inflater",
        "_loads",
        "_max",
        "_messages_received",
        "_mode",
        "_msg_compressed",
        "_msg_len",
        "_msg_op",
        "_msg_wire",
        "_pieces",
        "_strs",
        "_zbuf",
    )

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        mode: int = MODE_TEXT,
        loads: Callable[[bytes], Any] | None = None,
        inflate: bool = False,
        inflate_no_context_takeover: bool = False,
        inflate_window_bits: int = 15,
    ) -> None:
        """Create a parser.

        ``ValueError`` when ``max_message_size`` is not in 1..2**63-1, ``mode`` is not one
        of the ``MODE_*`` constants or ``inflate_window_bits`` is not in 8..15. In
        ``MODE_JSON`` with ``loads=None``, :func:`json.loads` is used.
        """
        if not 1 <= max_message_size <= _MAX_LEN:
            raise ValueError("max_message_size must be in 1..2**63-1")
        if mode not in (MODE_BYTES, MODE_TEXT, MODE_JSON):
            raise ValueError(f"unknown mode {mode!r}")
        if not 8 <= inflate_window_bits <= 15:
            raise ValueError("inflate_window_bits must be in 8..15")
        self._max = int(max_message_size)
        self._mode = int(mode)
        self._loads: Callable[[bytes], Any] = loads if loads is not None else json.loads
        self._inflate = bool(inflate)
        self._inflate_nct = bool(inflate_no_context_takeover)
        self._inflate_window_bits = int(inflate_window_bits)
        self._inflater: Any = None  # zlib decompress object, created on first use
        self._hist: list[bytes] = []  # output of earlier compressed messages (dictionary)
        self._hist_len = 0
        self._buf = b""
        self._in_payload = False
        self._f_fin = False
        self._f_left = 0
        self._msg_op = 0  # 0: no data message in progress
        self._msg_compressed = False
        self._msg_wire = 0
        self._msg_len = 0
        self._pieces: list[bytes] = []
        self._strs: list[str] = []
        self._zbuf: list[bytes] = []  # compressed bytes of the current, incomplete frame
        self._dec: codecs.IncrementalDecoder | None = None
        self._messages_received = 0
        self._bytes_received = 0
        self._decode_errors = 0
        self._closed = False
        self._error: WebSocketProtocolError | None = None

    # -------------------------------------------------------------- read-only state

    @property
    def messages_received(self) -> int:
        """Data messages completed (delivered) so far."""
        return self._messages_received

    @property
    def bytes_received(self) -> int:
        """Bytes passed to :meth:`feed` while the parser was open (headers included).

        A call made once the parser is closed or failed is not counted; the call that
        closes or fails it is counted whole.
        """
        return self._bytes_received

    @property
    def decode_errors(self) -> int:
        """Text messages whose ``loads`` raised in ``MODE_JSON`` (delivered as ``str``)."""
        return self._decode_errors

    @property
    def closed(self) -> bool:
        """True once a (valid) close frame was parsed; later input is ignored."""
        return self._closed

    @property
    def failed(self) -> bool:
        """True once a protocol violation was found."""
        return self._error is not None

    # -------------------------------------------------------------- feeding

    def feed(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[list[Any], list[tuple[int, bytes]], WebSocketProtocolError | None]:
        """Consume ``data``; return ``(messages, controls, error)`` (see the module docs)."""
        if self._error is not None:
            return [], [], self._error
        if self._closed:
            return [], [], None
        data = bytes(data)
        self._bytes_received += len(data)
        if self._buf:
            data = self._buf + data
            self._buf = b""
        messages: list[Any] = []
        controls: list[tuple[int, bytes]] = []
        n = len(data)
        pos = 0
        err: WebSocketProtocolError | None = None
        while True:
            if self._in_payload:
                left = self._f_left
                avail = n - pos
                if left > avail:
                    if avail == 0:
                        break
                    piece = data[pos:] if pos else data
                    pos = n
                    self._f_left = left - avail
                    err = self._data(piece, False, messages)
                else:
                    piece = data[pos : pos + left] if (pos or left != n) else data
                    pos += left
                    self._f_left = 0
                    self._in_payload = False
                    if left or self._f_fin or self._zbuf:
                        err = self._data(piece, True, messages)
                if err is not None:
                    break
                continue
            avail = n - pos
            if avail < 2:
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            op = b0 & 0x0F
            # -- everything decidable from the first two bytes (all 1002)
            if b0 & 0x70:
                if b0 & 0x30:
                    err = _error(1002, "reserved bits RSV2/RSV3 set")
                    break
                if not self._inflate:
                    err = _error(1002, "reserved bit RSV1 set without a negotiated extension")
                    break
                if op != OP_TEXT and op != OP_BINARY:
                    err = _error(1002, "reserved bit RSV1 set on a control or continuation frame")
                    break
            if b1 & 0x80:
                err = _error(1002, "masked frame from the server")
                break
            length = b1 & 0x7F
            if op >= 8:
                if op > 10:
                    err = _error(1002, f"unknown opcode {op}")
                    break
                if not b0 & 0x80:
                    err = _error(1002, "fragmented control frame")
                    break
                if length > 125:
                    err = _error(1002, "control frame payload longer than 125 bytes")
                    break
                end = pos + 2 + length
                if end > n:
                    break  # wait for the whole control frame
                payload = data[pos + 2 : end]
                pos = end
                if op == OP_CLOSE:
                    try:
                        parse_close(payload)
                    except WebSocketProtocolError as exc:
                        err = exc
                        break
                    controls.append((op, payload))
                    self._closed = True
                    self._reset_message()
                    break
                controls.append((op, payload))
                continue
            if op == OP_CONTINUATION:
                if not self._msg_op:
                    err = _error(1002, "continuation frame without a message started")
                    break
            elif op > 2:
                err = _error(1002, f"unknown opcode {op}")
                break
            elif self._msg_op:
                err = _error(1002, "new data message inside a fragmented message")
                break
            # -- extended length, then the size limit
            if length == 126:
                if avail < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                pos += 4
            elif length == 127:
                if avail < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if length >> 63:
                    err = _error(1002, "64-bit payload length with the most significant bit set")
                    break
                pos += 10
            else:
                pos += 2
            wire = self._msg_wire + length if op == OP_CONTINUATION else length
            if wire > self._max:
                err = _error(1009, f"message larger than max_message_size ({self._max} bytes)")
                break
            if op != OP_CONTINUATION:
                self._msg_op = op
                self._msg_compressed = bool(b0 & 0x40)
            self._msg_wire = wire
            self._f_fin = bool(b0 & 0x80)
            self._f_left = length
            self._in_payload = True
        if err is not None:
            self._error = err
            self._reset_message()
            self._buf = b""
            return messages, controls, err
        if not self._closed and pos < n:
            self._buf = data[pos:]
        return messages, controls, None

    # -------------------------------------------------------------- message assembly

    def _reset_message(self) -> None:
        self._msg_op = 0
        self._msg_wire = 0
        self._msg_len = 0
        self._pieces = []
        self._strs = []
        self._zbuf = []
        self._dec = None
        self._in_payload = False

    def _data(self, piece: bytes, frame_end: bool, out: list[Any]) -> WebSocketProtocolError | None:
        """Take payload bytes of the current data message (``frame_end``: the last bytes
        of the current frame); deliver the message after its final frame."""
        text = self._msg_op == OP_TEXT
        final = frame_end and self._f_fin
        if self._msg_compressed:
            # A compressed frame is inflated in one go once complete (with the 00 00 ff ff
            # tail after the final one): zlib looks ahead (it decodes the next block header
            # or code even when the output is full), so inflating arbitrary chunks would make
            # "corrupt" versus "too big" depend on how the input was split.
            if not frame_end:
                self._zbuf.append(piece)
                return None
            if self._zbuf:
                self._zbuf.append(piece)
                piece = b"".join(self._zbuf)
                self._zbuf = []
            if final:
                piece += _TAIL
            elif not piece:
                return None
            allowed = self._max - self._msg_len
            try:
                inflated, too_big = self._inflate_piece(piece, allowed)
            except zlib.error:
                return _error(1007, "corrupt deflate stream")
            if too_big:
                if text:
                    err = self._text_piece(inflated[:allowed], False)
                    if err is not None:
                        return err
                return _error(1009, f"decompressed message larger than {self._max} bytes")
            piece = inflated
        if text:
            if final and self._dec is None and not self._pieces:
                return self._deliver_whole_text(piece, out)
            err = self._text_piece(piece, final)
            if err is not None:
                return err
        if piece:
            self._pieces.append(piece)
            self._msg_len += len(piece)
        if final:
            self._deliver(out)
        return None

    def _text_piece(self, piece: bytes, final: bool) -> WebSocketProtocolError | None:
        dec = self._dec
        if dec is None:
            dec = self._dec = _Utf8Decoder()
        try:
            s = dec.decode(piece, final)
        except UnicodeDecodeError:
            return _error(1007, "invalid UTF-8 in a text message")
        if not final:
            tail = dec.getstate()[0]
            if tail and not _utf8_prefix_ok(tail):
                return _error(1007, "invalid UTF-8 in a text message")
        if self._mode == MODE_TEXT and s:
            self._strs.append(s)
        return None

    def _deliver_whole_text(self, payload: bytes, out: list[Any]) -> WebSocketProtocolError | None:
        """A text message that arrived in one piece: validate and decode it in one call."""
        mode = self._mode
        if mode == MODE_TEXT:
            try:
                out.append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                return _error(1007, "invalid UTF-8 in a text message")
        else:
            if not payload.isascii():
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    return _error(1007, "invalid UTF-8 in a text message")
            if mode == MODE_BYTES:
                out.append(payload)
            else:
                out.append(self._json(payload))
        self._finish_message([payload])
        return None

    def _json(self, payload: bytes) -> Any:
        try:
            return self._loads(payload)
        except Exception:
            self._decode_errors += 1
            return payload.decode("utf-8")

    def _deliver(self, out: list[Any]) -> None:
        pieces = self._pieces
        if self._msg_op == OP_TEXT and self._mode == MODE_TEXT:
            out.append("".join(self._strs))
        else:
            payload = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            text_json = self._msg_op == OP_TEXT and self._mode == MODE_JSON
            out.append(self._json(payload) if text_json else payload)
        self._finish_message(pieces)

    def _finish_message(self, pieces: list[bytes]) -> None:
        self._messages_received += 1
        if self._msg_compressed:
            if self._inflate_nct:
                self._inflater = None
                self._hist = []
                self._hist_len = 0
            else:
                for piece in pieces:
                    if piece:
                        self._remember(piece)
        self._msg_op = 0
        self._msg_wire = 0
        self._msg_len = 0
        if self._pieces:
            self._pieces = []
        if self._strs:
            self._strs = []
        self._dec = None

    def _remember(self, output: bytes) -> None:
        """Keep the last 32 KiB of inflated output (needed only to restart after BFINAL)."""
        if len(output) >= _WINDOW:
            self._hist = [output[-_WINDOW:]]
            self._hist_len = _WINDOW
            return
        hist = self._hist
        hist.append(output)
        self._hist_len += len(output)
        while self._hist_len - len(hist[0]) >= _WINDOW:
            self._hist_len -= len(hist.pop(0))

    def _window(self) -> bytes:
        """The last 32 KiB of output since the last reset, before the current pass."""
        parts: list[bytes] = []
        need = _WINDOW
        for seq in (self._pieces, self._hist):
            for part in reversed(seq):
                parts.append(part)
                need -= len(part)
                if need <= 0:
                    break
            if need <= 0:
                break
        parts.reverse()
        return b"".join(parts)[-_WINDOW:]

    def _inflate_piece(self, data: bytes, allowed: int) -> tuple[bytes, bool]:
        """Inflate ``data``; return ``(output, too_big)`` where ``too_big`` means more than
        ``allowed`` bytes came out (then ``output`` holds ``allowed + 1`` bytes).
        Raises ``zlib.error`` for a corrupt stream.

        A BFINAL block ends the raw stream; what follows goes to a new raw stream whose
        preset dictionary is the window so far (RFC 7692 7.2.3.3). Each such restart costs
        one 32 KiB copy, never a pass over the whole message.
        """
        d = self._inflater
        if d is None:
            d = self._inflater = zlib.decompressobj(-15)
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
            window = self._window() if window is None else window
            window = (window + chunk)[-_WINDOW:] if chunk else window
            d = self._inflater = (
                zlib.decompressobj(-15, zdict=window) if window else zlib.decompressobj(-15)
            )
            if not data:
                break
        if not outs:
            return b"", False
        return (outs[0] if len(outs) == 1 else b"".join(outs)), False


# ------------------------------------------------------------------ encoder


class FrameEncoder:
    """Builds client frames; see :mod:`kstlib.websocket.codec`.

    Every frame is masked with a fresh key from :func:`os.urandom`. With ``deflate`` every
    data message is compressed (also empty ones, which become the single byte ``00``).

    Thread-safety: one encoder per connection, used by one thread at a time (the caller
    holds its write lock): with context takeover the compressor state must follow the
    order in which frames are written.
    """

    __slots__ = (
        "_bytes_sent",
        "_compressor",
        "_deflate",
        "_deflate_nct",
        "_deflate_wbits",
        "_fragment_size",
        "_messages_sent",
    )

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
        9-bit zlib window, which never refers further back than 250 bytes; see the module
        docs) or ``fragment_size`` is negative.
        """
        if not 8 <= deflate_window_bits <= 15:
            raise ValueError("deflate_window_bits must be in 8..15")
        if fragment_size < 0:
            raise ValueError("fragment_size must be >= 0")
        self._deflate = bool(deflate)
        self._deflate_nct = bool(deflate_no_context_takeover)
        self._deflate_wbits = max(9, int(deflate_window_bits))
        self._fragment_size = int(fragment_size)
        self._compressor: Any = None
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
            first = 0x80 | opcode
            if self._deflate:
                c = self._compressor
                if c is None:
                    c = self._compressor = zlib.compressobj(
                        zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._deflate_wbits, 8
                    )
                data = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
                if data.endswith(_TAIL):
                    data = data[:-4]
                if self._deflate_nct:
                    self._compressor = None
                first |= 0x40
            size = self._fragment_size
            if size and len(data) > size:
                frames = []
                last = len(data) - size
                for start in range(0, len(data), size):
                    b0 = (first & 0x7F) if start == 0 else 0
                    if start >= last:
                        b0 |= 0x80
                    frames.append(_frame(b0, data[start : start + size]))
                wire = b"".join(frames)
            else:
                wire = _frame(first, data)
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
        if not _close_code_allowed(code):
            raise ValueError(f"close code {code} may not be sent")
        payload = code.to_bytes(2, "big") + reason.encode("utf-8")
        if len(payload) > 125:
            raise ValueError("close reason too long (payload over 125 bytes)")
        return self.encode(OP_CLOSE, payload)


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
