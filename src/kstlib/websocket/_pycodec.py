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

Modules: this one holds the interface and :class:`FrameParser`; the pieces it shares with
the encoder or that stand on their own live beside it, each the twin of a C++ file:
``_pycodec_frame`` (opcodes, masking, close payloads), ``_pycodec_utf8`` (UTF-8
validation), ``_pycodec_deflate`` (permessage-deflate) and ``_pycodec_encoder``
(:class:`FrameEncoder`). Import them from here: this module is the codec.

Thread-safety: a parser or an encoder belongs to one connection and is used by one
thread at a time; the functions are pure.
"""

from __future__ import annotations

import codecs
import json
import os
import zlib
from collections.abc import Callable
from typing import Any, Final

from kstlib.websocket._pycodec_deflate import TAIL, Inflater
from kstlib.websocket._pycodec_encoder import FrameEncoder
from kstlib.websocket._pycodec_frame import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    apply_mask,
    parse_close,
)
from kstlib.websocket._pycodec_utf8 import Utf8Decoder, utf8_prefix_ok, validate_utf8
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

MODE_BYTES: Final = 0
MODE_TEXT: Final = 1
MODE_JSON: Final = 2

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024

_MAX_LEN: Final = (1 << 63) - 1


def _error(code: int, text: str) -> WebSocketProtocolError:
    return WebSocketProtocolError(code, text)


def _header_error(b0: int, b1: int, inflate: bool) -> WebSocketProtocolError:
    """The violation in the RSV bits or the MASK bit of a header (all 1002).

    Called only when there is one (see :func:`_rsv_table`): RSV2 or RSV3 set; RSV1 set
    without ``inflate`` (permessage-deflate not negotiated) or on a frame other than the
    first of a data message; or, failing those, a masked frame.
    """
    if b0 & 0x30:
        return _error(1002, "reserved bits RSV2/RSV3 set")
    if b0 & 0x40:
        if not inflate:
            return _error(1002, "reserved bit RSV1 set without a negotiated extension")
        op = b0 & 0x0F
        if op != OP_TEXT and op != OP_BINARY:
            return _error(1002, "reserved bit RSV1 set on a control or continuation frame")
    return _error(1002, "masked frame from the server")


def _rsv_table(inflate: bool) -> tuple[int, ...]:
    """For each first header byte, 1 when its RSV bits are a violation, else 0.

    RSV2 and RSV3 never may be set; RSV1 only with ``inflate`` and on a text or binary
    frame (the first of a message: RSV1 on a continuation is refused as well). A table,
    so that the parser's loop tests a compressed frame's header without a call.
    """
    return tuple(
        1 if b & 0x30 or (b & 0x40 and not (inflate and (b & 0x0F) in (OP_TEXT, OP_BINARY))) else 0
        for b in range(256)
    )


_RSV_BAD: Final = _rsv_table(inflate=False)
_RSV_BAD_INFLATE: Final = _rsv_table(inflate=True)


def _data_opcode_error(op: int) -> WebSocketProtocolError:
    """The violation of a data-frame opcode that is out of sequence or unknown (1002).

    Called only for an invalid one: ``op`` in 3..7, a continuation with no message
    started, or a new message while a fragmented one is in progress.
    """
    if op > 2:
        return _error(1002, f"unknown opcode {op}")
    if op == OP_CONTINUATION:
        return _error(1002, "continuation frame without a message started")
    return _error(1002, "new data message inside a fragmented message")


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
        "_in_payload",
        "_inflate",
        "_inflate_nct",
        "_inflate_window_bits",
        "_inflater",
        "_loads",
        "_max",
        "_messages_received",
        "_mode",
        "_msg",
        "_msg_compressed",
        "_msg_len",
        "_msg_op",
        "_msg_wire",
        "_payload_bytes",
        "_rsv_bad",
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
        self._rsv_bad = _RSV_BAD_INFLATE if self._inflate else _RSV_BAD
        self._inflater = Inflater()  # zlib is only set up by the first compressed frame
        self._buf = b""
        self._in_payload = False
        self._f_fin = False
        self._f_left = 0
        self._msg_op = 0  # 0: no data message in progress
        self._msg_compressed = False
        self._msg_wire = 0
        self._msg_len = 0
        self._msg = bytearray()  # the data message being assembled, in one growing buffer
        self._zbuf: list[bytes] = []  # compressed bytes of the current, incomplete frame
        self._dec: codecs.IncrementalDecoder | None = None
        self._messages_received = 0
        self._bytes_received = 0
        self._payload_bytes = 0
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
    def payload_bytes(self) -> int:
        """Payload bytes of the completed data messages, after decompression."""
        return self._payload_bytes

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

    def feed_from(
        self, fd: int, buf: bytearray
    ) -> tuple[list[Any], list[tuple[int, bytes]], WebSocketProtocolError | None, int, int] | None:
        """One non-blocking read of ``fd`` into ``buf``, then :meth:`feed` on what came:
        ``(messages, controls, error, nread, payload)``, or None when nothing waits
        (see the module docs)."""
        try:
            n = os.readv(fd, [buf])
        except BlockingIOError:
            return None
        before = self._payload_bytes
        messages, controls, error = self.feed(memoryview(buf)[:n])  # n 0: EOF, nothing
        return messages, controls, error, n, self._payload_bytes - before

    def feed(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[list[Any], list[tuple[int, bytes]], WebSocketProtocolError | None]:
        """Consume ``data``; return ``(messages, controls, error)`` (see the module docs).

        The hot path of the pure-Python codec, kept in one loop on purpose (a call per
        frame would cost more than the frame's own work): the checks that can only fail
        (:func:`_header_error`, :func:`_data_opcode_error`) and the rare control frames
        (:meth:`_control_frame`) are out of line, behind one test each.
        """
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
        rsv_bad = self._rsv_bad
        while True:
            if self._in_payload:
                left = self._f_left
                avail = n - pos
                if left > avail:
                    if avail == 0:
                        break
                    piece = data[pos:]  # the whole of data when pos == 0: no copy
                    pos = n
                    self._f_left = left - avail
                    err = self._data(piece, False, messages)
                else:
                    piece = data[pos : pos + left]
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
            # -- everything decidable from the first two bytes (all 1002)
            if rsv_bad[b0] | (b1 & 0x80):  # an RSV bit not allowed, or MASK
                err = _header_error(b0, b1, self._inflate)
                break
            op = b0 & 0x0F
            length = b1 & 0x7F
            if op >= 8:
                end, err = self._control_frame(data, pos, b0, length, controls)
                if end == pos:  # incomplete, or a violation
                    break
                pos = end  # len(data) after a close frame: the rest is ignored
                continue
            if op > 2 or (op == OP_CONTINUATION) == (not self._msg_op):
                err = _data_opcode_error(op)
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
            if op:  # the first frame of a message (a failure below fails the parser)
                self._msg_op = op
                self._msg_compressed = bool(b0 & 0x40)
                wire = length
            else:
                wire = self._msg_wire + length
            if wire > self._max:
                err = _error(1009, f"message larger than max_message_size ({self._max} bytes)")
                break
            self._msg_wire = wire
            self._f_fin = bool(b0 & 0x80)
            self._f_left = length
            self._in_payload = True
        if err is not None:
            self._error = err
            self._reset_message()
            self._buf = b""
            return messages, controls, err
        if pos < n:  # never after a close frame: pos is then n
            self._buf = data[pos:]
        return messages, controls, None

    def _control_frame(
        self, data: bytes, pos: int, b0: int, length: int, controls: list[tuple[int, bytes]]
    ) -> tuple[int, WebSocketProtocolError | None]:
        """Take the control frame whose header starts at ``pos``; return ``(end, error)``.

        ``end == pos`` when nothing was taken: the frame is not complete yet (``error`` is
        None: wait for more input) or it violates the protocol (1002; a close payload may
        give 1007). A close frame closes the parser and gives ``end == len(data)``.
        """
        op = b0 & 0x0F
        if op > 10:
            return pos, _error(1002, f"unknown opcode {op}")
        if not b0 & 0x80:
            return pos, _error(1002, "fragmented control frame")
        if length > 125:
            return pos, _error(1002, "control frame payload longer than 125 bytes")
        end = pos + 2 + length
        if end > len(data):
            return pos, None  # wait for the whole control frame
        payload = data[pos + 2 : end]
        if op == OP_CLOSE:
            try:
                parse_close(payload)
            except WebSocketProtocolError as exc:
                return pos, exc
            controls.append((op, payload))
            self._closed = True
            self._reset_message()
            return len(data), None
        controls.append((op, payload))
        return end, None

    # -------------------------------------------------------------- message assembly

    def _reset_message(self) -> None:
        self._msg_op = 0
        self._msg_wire = 0
        self._msg_len = 0
        self._msg = bytearray()
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
                piece += TAIL
            elif not piece:
                return None
            allowed = self._max - self._msg_len
            try:
                inflated, too_big = self._inflater.inflate(piece, allowed, self._msg)
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
            if final and self._dec is None and not self._msg:
                return self._deliver_whole_text(piece, out)
            err = self._text_piece(piece, final)
            if err is not None:
                return err
        if piece:
            self._msg += piece
            self._msg_len += len(piece)
        if final:
            self._deliver(out)
        return None

    def _text_piece(self, piece: bytes, final: bool) -> WebSocketProtocolError | None:
        dec = self._dec
        if dec is None:
            dec = self._dec = Utf8Decoder()
        try:
            s = dec.decode(piece, final)
        except UnicodeDecodeError:
            return _error(1007, "invalid UTF-8 in a text message")
        if not final:
            tail = dec.getstate()[0]
            if tail and not utf8_prefix_ok(tail):
                return _error(1007, "invalid UTF-8 in a text message")
        del s  # validated only: the message is decoded once, whole, when it ends
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
        self._finish_message(payload)
        return None

    def _json(self, payload: bytes) -> Any:
        try:
            return self._loads(payload)
        except Exception:
            self._decode_errors += 1
            return payload.decode("utf-8")

    def _deliver(self, out: list[Any]) -> None:
        payload = bytes(self._msg)  # the one copy of a fragmented message
        if self._msg_op == OP_TEXT and self._mode == MODE_TEXT:
            out.append(payload.decode("utf-8"))  # validated piece by piece already
        else:
            text_json = self._msg_op == OP_TEXT and self._mode == MODE_JSON
            out.append(self._json(payload) if text_json else payload)
        self._finish_message(payload)

    def _finish_message(self, payload: bytes) -> None:
        self._messages_received += 1
        self._payload_bytes += len(payload)
        if self._msg_compressed:
            if self._inflate_nct:
                self._inflater.reset()
            elif payload:
                self._inflater.remember(payload)
        self._msg_op = 0
        self._msg_wire = 0
        self._msg_len = 0
        if self._msg:
            self._msg = bytearray()
        self._dec = None
