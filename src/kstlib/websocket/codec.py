"""Sans-I/O RFC 6455 framing: the C++ ``_speedups`` module, or its pure-Python twin.

This module picks the implementation once, at import:

* ``kstlib.websocket._speedups`` (C++, pybind11) when it imports;
* otherwise ``kstlib.websocket._pycodec`` with one ``RuntimeWarning``;
* ``KSTLIB_WS_PURE_PYTHON=1`` in the environment forces the pure-Python codec (no warning).

``IMPLEMENTATION`` is ``"cpp"`` or ``"python"``. Both modules expose the same interface,
described here; ``_pycodec`` is the reference the C++ code is tested against.

Interface (identical in both modules)
-------------------------------------

Constants: ``OP_CONTINUATION=0, OP_TEXT=1, OP_BINARY=2, OP_CLOSE=8, OP_PING=9, OP_PONG=10``;
``MODE_BYTES=0`` (every message as ``bytes``), ``MODE_TEXT=1`` (text as ``str``, binary as
``bytes``), ``MODE_JSON=2`` (text through ``loads``; binary as ``bytes``);
``DEFAULT_MAX_MESSAGE_SIZE = 16 MiB``.

``FrameParser(*, max_message_size=DEFAULT_MAX_MESSAGE_SIZE, mode=MODE_TEXT, loads=None,
inflate=False, inflate_no_context_takeover=False, inflate_window_bits=15)``
    Incremental parser of *server* frames (a masked server frame is an error).
    ``inflate`` allows RSV1 and inflates messages that carry it (permessage-deflate was
    negotiated); ``inflate_no_context_takeover`` resets the inflater after each message;
    ``inflate_window_bits`` is the negotiated ``server_max_window_bits`` (8..15).

    ``feed(data) -> (messages, controls, error)``: ``data`` is any bytes-like object of any
    length (one byte to many MiB); frames may be split anywhere. Returns

    * ``messages``: list of completed data messages in order, already decoded by ``mode``;
      in ``MODE_JSON`` a text message whose ``loads`` raises is delivered as ``str`` and
      counted in ``decode_errors`` (never dropped);
    * ``controls``: list of ``(opcode, payload_bytes)`` for ping, pong and close frames in
      arrival order. A close frame's payload has been validated. After a close frame the
      parser ignores any further input (``closed`` becomes True);
    * ``error``: ``None``, or a :class:`~kstlib.websocket.exceptions.WebSocketProtocolError`
      for the first violation found. Everything completed *before* the violation is still
      returned in ``messages`` / ``controls``. After an error the parser is ``failed`` and
      every later ``feed`` returns ``([], [], same_error)``.

    ``feed_from(fd, buf) -> (messages, controls, error, nread, payload) | None``: one
    non-blocking read of the socket ``fd`` into the writable buffer ``buf`` (its whole
    length at most), then ``feed`` on the bytes read, in one call: the read path of a
    plain TCP connection, which costs no Python frame per read. None when nothing waits
    to be read (no exception per idle read); ``nread`` is the number of bytes read (0: the
    peer's end of stream, with empty lists); ``payload`` is the growth of
    ``payload_bytes``, that is the payload of ``messages``. Other read errors raise
    ``OSError`` as ``socket.recv_into`` does (``EINTR`` is retried). The only I/O in the
    interface, kept beside ``feed`` so that one native call reads and parses.

    Violations and their close codes: masked frame, RSV bits not allowed by a negotiated
    extension (RSV1 only with ``inflate`` and only on the first frame of a data message;
    RSV2/RSV3 never), unknown opcode, control frame fragmented or longer than 125 bytes,
    continuation with no message started, a new data message inside a fragmented one,
    a 64-bit length with the top bit set, close payload of 1 byte or with a code that may
    not be sent (not 1000-1003, 1007-1014, 3000-4999) -> 1002; invalid UTF-8 in a text
    message or a close reason -> 1007, detected as soon as the received prefix cannot be
    valid (not only at the end of the message); a message larger than
    ``max_message_size`` (compressed bytes from the frame headers, decompressed bytes
    while inflating) -> 1009, detected before the oversize payload is buffered; a corrupt
    deflate stream -> 1007.

    Counters (read-only ints): ``messages_received`` (data messages completed),
    ``bytes_received`` (wire bytes fed, headers included), ``payload_bytes`` (payload
    bytes of the completed data messages, after decompression), ``decode_errors``.
    Other attributes: ``closed`` (bool), ``failed`` (bool).

``FrameEncoder(*, deflate=False, deflate_no_context_takeover=False, deflate_window_bits=15,
fragment_size=0)``
    Builds *client* frames, each masked with a fresh 4-byte key from the OS CSPRNG.
    ``encode(opcode, payload) -> bytes``: one data message (``OP_TEXT`` / ``OP_BINARY``;
    ``payload`` is bytes-like, or ``str`` which is UTF-8 encoded), compressed when
    ``deflate`` (RSV1 set on the first frame), split into frames of at most
    ``fragment_size`` payload bytes when it is > 0; or one control frame (``OP_PING`` /
    ``OP_PONG`` / ``OP_CLOSE``, payload <= 125 bytes else ``ValueError``).
    ``encode_close(code=None, reason="") -> bytes``: a close frame (empty payload when
    ``code`` is None; ``ValueError`` for a code that may not be sent or a payload over 125
    bytes). Counters: ``messages_sent`` (data messages), ``bytes_sent`` (wire bytes).

Functions: ``apply_mask(data, key) -> bytes`` (XOR with the 4-byte key, RFC 6455 5.3),
``validate_utf8(data) -> bool``, ``parse_close(payload) -> (code | None, reason)``
(raises ``WebSocketProtocolError`` for an invalid close payload).

Thread-safety: a parser or encoder belongs to one connection and is used by one thread at
a time (the engine's reader owns the parser; the encoder is used under the write lock).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from types import ModuleType

__all__ = ["IMPLEMENTATION", "implementation_module", "load"]


def load(pure_python: bool | None = None) -> tuple[ModuleType, str]:
    """Return ``(module, name)`` of the codec to use.

    ``pure_python=None`` reads ``KSTLIB_WS_PURE_PYTHON``; True forces ``_pycodec``; False
    prefers ``_speedups`` and falls back to ``_pycodec`` with a ``RuntimeWarning``.
    """
    if pure_python is None:
        pure_python = os.environ.get("KSTLIB_WS_PURE_PYTHON", "") not in ("", "0")
    if not pure_python:
        try:
            from kstlib.websocket import _speedups
        except ImportError as exc:
            if importlib.util.find_spec("kstlib.websocket._speedups") is None:
                why = "not installed (building it needs a C++ compiler and the zlib headers)"
            else:
                why = "does not import: " + " ".join(str(exc).split())  # one line
            warnings.warn(
                f"kstlib.websocket: C++ codec {why}; using the slower pure-Python codec",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            return _speedups, "cpp"
    from kstlib.websocket import _pycodec

    return _pycodec, "python"


implementation_module, IMPLEMENTATION = load()

OP_CONTINUATION: int = implementation_module.OP_CONTINUATION
OP_TEXT: int = implementation_module.OP_TEXT
OP_BINARY: int = implementation_module.OP_BINARY
OP_CLOSE: int = implementation_module.OP_CLOSE
OP_PING: int = implementation_module.OP_PING
OP_PONG: int = implementation_module.OP_PONG
MODE_BYTES: int = implementation_module.MODE_BYTES
MODE_TEXT: int = implementation_module.MODE_TEXT
MODE_JSON: int = implementation_module.MODE_JSON
DEFAULT_MAX_MESSAGE_SIZE: int = implementation_module.DEFAULT_MAX_MESSAGE_SIZE

FrameParser = implementation_module.FrameParser
FrameEncoder = implementation_module.FrameEncoder
apply_mask = implementation_module.apply_mask
validate_utf8 = implementation_module.validate_utf8
parse_close = implementation_module.parse_close
