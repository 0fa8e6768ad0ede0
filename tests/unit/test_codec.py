"""Unit tests of the frame codec, run against both implementations (``codec`` fixture).

Every rule of the interface in ``kstlib.websocket.codec`` has a test here. Where the
contract left a choice open, the pure-Python reference (``_pycodec``) made the decision
below, and the C++ module must make the same one (the tests pin each of them):

 1. Header checks run as soon as the bytes they need are there: everything decidable from
    the first two bytes (RSV bits, opcode, FIN of a control frame, 7-bit length of a
    control frame, continuation / new-message state, MASK bit) fails with 1002 once two
    bytes are in, even if the rest of the header is missing. The 64-bit "top bit set"
    check (1002) and then the size limit (1009) run once the extended length is complete.
 2. Length fields need not be minimal (a 16-bit length of 5 is accepted).
 3. A control frame is processed only once its whole payload is in; a close payload's
    code is checked before its reason (bad code and bad reason: 1002).
 4. ``max_message_size`` bounds data messages only: a message of exactly the limit passes,
    one byte more is 1009. A compressed message is bounded twice: the sum of its frame
    payload lengths (from the headers) and its decompressed size (while inflating).
 5. UTF-8 fails fast: every payload piece of a text message is validated as it arrives,
    also inside a partly received frame; an impossible prefix (ED A0, F4 90, E0 80, C0,
    F5, stray continuation...) fails at the byte that makes it impossible; a text message
    ending inside a sequence fails at its end. All 1007.
 6. Inflating always uses a 15-bit (32 KiB) window whatever ``inflate_window_bits`` (which
    is only validated, 8..15): zlib enforces a smaller window only across output buffers,
    so it would make the result depend on the chunking.
 7. Inflating is done per frame: a compressed frame is inflated in ONE zlib pass once its
    whole payload is in (the final frame with 00 00 ff ff appended, in the same pass),
    with the output capped at limit + 1 bytes for the message. zlib decodes ahead of a
    full output buffer (the next block header or code), so inflating arbitrary chunks
    would make "corrupt" (1007) versus "too big" (1009) depend on the chunking. Within a
    pass: a zlib error is 1007 (even if the output reached the cap in that pass, as
    zlib reports it); otherwise, when the output passes the limit, the part that fits is
    UTF-8-checked first (invalid: 1007), then 1009. UTF-8 of compressed text is checked
    per frame (uncompressed text per received piece, decision 5).
 8. A deflate block with BFINAL=1 ends the raw stream; the rest of the message (and the
    appended 00 00 ff ff) goes to a new raw stream whose preset dictionary is the last
    32 KiB of inflated output since the last reset (RFC 7692 7.2.3.3). With
    ``inflate_no_context_takeover`` the inflater (and that history) is reset after every
    compressed message; uncompressed messages never touch the inflater.
 9. ``bytes_received`` counts every byte of a ``feed`` call made while the parser is open
    (the call that closes or fails it counts whole; later calls count nothing).
    ``messages_received`` counts delivered data messages (also those with a decode error).
10. After a close frame: the close is the last control returned, a partly received data
    message is dropped, ``closed`` is True and every later ``feed`` returns
    ``([], [], None)``. After an error every later ``feed`` returns ``([], [], error)``
    with the very same error object.
11. ``messages`` holds bare values: ``bytes`` (binary, or text in MODE_BYTES; text is
    still UTF-8-validated), ``str`` (text in MODE_TEXT, or text whose ``loads`` raised in
    MODE_JSON), or what ``loads`` returned. ``loads`` gets ``bytes``; any ``Exception``
    counts as a decode error; ``loads=None`` in MODE_JSON means ``json.loads``.
12. Encoder: with ``deflate`` every data message is compressed (the empty message becomes
    the single byte 00) and then split into fragments, RSV1 on the first frame only;
    zlib level 6, memLevel 8, default strategy, window ``max(9, deflate_window_bits)``
    (zlib refuses raw 8-bit windows; a 9-bit compressor never refers back more than 250
    bytes, so 8-bit peers decode it - tested below). Control frames are never compressed
    nor fragmented. ``encode(OP_CLOSE, payload)`` validates the payload like
    ``parse_close`` (``ValueError``). A ``bytes`` text payload is not validated.
    Opcodes other than 1, 2, 8, 9, 10: ``ValueError``. ``messages_sent`` counts data
    messages, ``bytes_sent`` every wire byte (control frames too).
13. ``encode_close``: ``code=None`` with a non-empty reason is ``ValueError``.
14. ``ValueError`` from the constructors: ``max_message_size`` not in 1..2**63-1, unknown
    mode, window bits outside 8..15, negative ``fragment_size``. ``parse_close`` rejects
    a payload over 125 bytes (1002). ``apply_mask`` needs a 4-byte key (``ValueError``)
    and returns ``bytes``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import frames
import orjson
import pytest
from frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    TAIL,
    Compressor,
    close,
    compressed_message,
    fragments,
    frame,
    split_client_frames,
    xor_mask,
)

from kstlib.websocket.exceptions import WebSocketProtocolError

Result = tuple[list[Any], list[tuple[int, bytes]], int | None]


# ------------------------------------------------------------------ helpers


def run(codec: ModuleType, data: bytes, chunks: Iterable[int] | None = None, **kw: Any) -> Result:
    """Feed ``data`` to a fresh parser (one shot, or in pieces of the given sizes)."""
    parser = codec.FrameParser(**kw)
    return feed_all(parser, data, chunks)


def feed_all(parser: Any, data: bytes, chunks: Iterable[int] | None = None) -> Result:
    msgs: list[Any] = []
    ctrls: list[tuple[int, bytes]] = []
    pieces: list[bytes] = []
    if chunks is None:
        pieces = [data]
    else:
        pos = 0
        for size in chunks:
            pieces.append(data[pos : pos + size])
            pos += size
        pieces.append(data[pos:])
    for piece in pieces:
        m, c, err = parser.feed(piece)
        msgs += m
        ctrls += c
        if err is not None:
            assert isinstance(err, WebSocketProtocolError)
            return msgs, ctrls, err.close_code
    return msgs, ctrls, None


def bytewise(codec: ModuleType, data: bytes, **kw: Any) -> Result:
    return run(codec, data, [1] * len(data), **kw)


def code_of(codec: ModuleType, data: bytes, **kw: Any) -> int | None:
    """The error close code, checking one-shot and byte-at-a-time feeding agree."""
    one = run(codec, data, **kw)
    assert bytewise(codec, data, **kw) == one
    return one[2]


def to_server(codec: ModuleType, wire: bytes) -> bytes:
    """Client frames -> server frames, unmasked with the codec's own ``apply_mask``."""
    return frames.to_server(wire, codec.apply_mask)


# ------------------------------------------------------------------ constants, functions


def test_constants(codec: ModuleType) -> None:
    assert (codec.OP_CONTINUATION, codec.OP_TEXT, codec.OP_BINARY) == (0, 1, 2)
    assert (codec.OP_CLOSE, codec.OP_PING, codec.OP_PONG) == (8, 9, 10)
    assert (codec.MODE_BYTES, codec.MODE_TEXT, codec.MODE_JSON) == (0, 1, 2)
    assert codec.DEFAULT_MAX_MESSAGE_SIZE == 16 * 1024 * 1024


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 125, 126, 1000, 65537])
def test_apply_mask_matches_bytewise_xor(codec: ModuleType, n: int) -> None:
    data = os.urandom(n)
    key = os.urandom(4)
    masked = codec.apply_mask(data, key)
    assert type(masked) is bytes
    assert masked == xor_mask(data, key)
    assert codec.apply_mask(masked, key) == data


def test_apply_mask_accepts_buffers_and_checks_key(codec: ModuleType) -> None:
    data = bytearray(b"Hello")
    key = b"\x37\xfa\x21\x3d"
    assert codec.apply_mask(memoryview(data), bytearray(key)) == bytes.fromhex("7f9f4d5158")
    for bad in (b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"):
        with pytest.raises(ValueError):
            codec.apply_mask(data, bad)


@pytest.mark.parametrize(
    ("data", "valid"),
    [
        (b"", True),
        (b"hello", True),
        ("κόσμε".encode(), True),
        (b"\xf0\x9f\x98\x80", True),
        (b"\xf4\x8f\xbf\xbf", True),  # U+10FFFF
        (b"\xef\xbf\xbf", True),  # U+FFFF
        (b"\xed\x9f\xbf", True),  # U+D7FF
        (b"\xee\x80\x80", True),  # U+E000
        (b"\xed\xa0\x80", False),  # surrogate
        (b"\xed\xbf\xbf", False),
        (b"\xf4\x90\x80\x80", False),  # above U+10FFFF
        (b"\xc0\xaf", False),  # overlong
        (b"\xe0\x80\xaf", False),
        (b"\xf0\x80\x80\xaf", False),
        (b"\x80", False),
        (b"\xbf", False),
        (b"\xfe", False),
        (b"\xff", False),
        (b"\xce", False),  # truncated
        (b"\xe1\xbd", False),
        (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", False),
    ],
)
def test_validate_utf8(codec: ModuleType, data: bytes, valid: bool) -> None:
    assert codec.validate_utf8(data) is valid
    assert codec.validate_utf8(memoryview(data)) is valid


def test_parse_close(codec: ModuleType) -> None:
    assert codec.parse_close(b"") == (None, "")
    assert codec.parse_close(b"\x03\xe8") == (1000, "")
    assert codec.parse_close(b"\x03\xe9bye") == (1001, "bye")
    assert codec.parse_close(b"\x0f\xa0" + "κόσμε".encode()) == (4000, "κόσμε")
    assert codec.parse_close(memoryview(b"\x0b\xb8ok")) == (3000, "ok")
    cases = [
        (b"\x03", 1002),
        (b"\x03\xec", 1002),  # 1004
        (b"\x03\xed", 1002),  # 1005
        (b"\x03\xee", 1002),  # 1006
        (b"\x03\xf7", 1002),  # 1015
        (b"\x00\x00", 1002),
        (b"\x13\x88", 1002),  # 5000
        (b"\x03\xe8\xff", 1007),
        (b"\x03\xe8\xed\xa0\x80", 1007),
        (b"\x03\xec\xff", 1002),  # bad code and bad reason: the code wins
        (b"\x03\xe8" + b"a" * 124, 1002),  # 126 bytes
    ]
    for payload, expected in cases:
        with pytest.raises(WebSocketProtocolError) as info:
            codec.parse_close(payload)
        assert info.value.close_code == expected, payload


ALLOWED_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
ALLOWED_CODES += [3000, 3999, 4000, 4999]
FORBIDDEN_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


# ------------------------------------------------------------------ RFC 6455 section 5.7


def test_rfc_single_frame_unmasked_text(codec: ModuleType) -> None:
    data = bytes.fromhex("810548656c6c6f")
    assert code_of(codec, data) is None
    assert run(codec, data) == (["Hello"], [], None)


def test_rfc_single_frame_masked_text_is_rejected_from_a_server(codec: ModuleType) -> None:
    data = bytes.fromhex("818537fa213d7f9f4d5158")
    assert codec.apply_mask(data[6:], data[2:6]) == b"Hello"
    assert code_of(codec, data) == 1002


def test_rfc_fragmented_unmasked_text(codec: ModuleType) -> None:
    data = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    assert run(codec, data) == (["Hello"], [], None)
    assert bytewise(codec, data) == (["Hello"], [], None)


def test_rfc_ping_and_masked_pong(codec: ModuleType) -> None:
    assert run(codec, bytes.fromhex("890548656c6c6f")) == ([], [(9, b"Hello")], None)
    pong = bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert codec.apply_mask(pong[6:], pong[2:6]) == b"Hello"
    assert code_of(codec, pong) == 1002  # masked, from a server
    assert run(codec, frame(OP_PONG, b"Hello")) == ([], [(10, b"Hello")], None)


def test_rfc_256_bytes_binary_16bit_length(codec: ModuleType) -> None:
    payload = os.urandom(256)
    data = bytes.fromhex("827e0100") + payload
    assert data == frame(OP_BINARY, payload)
    assert run(codec, data) == ([payload], [], None)


def test_rfc_64k_binary_64bit_length(codec: ModuleType) -> None:
    payload = os.urandom(65536)
    data = bytes.fromhex("827f0000000000010000") + payload
    assert data == frame(OP_BINARY, payload)
    assert run(codec, data) == ([payload], [], None)
    assert run(codec, data, [1, 3, 7, 100, 30000]) == ([payload], [], None)


def test_rfc_encoder_hello(codec: ModuleType) -> None:
    wire = codec.FrameEncoder().encode(codec.OP_TEXT, "Hello")
    assert type(wire) is bytes
    assert wire[0] == 0x81 and wire[1] == 0x85 and len(wire) == 11
    assert codec.apply_mask(wire[6:], wire[2:6]) == b"Hello"


@pytest.mark.parametrize(
    ("n", "header"),
    [
        (0, b"\x82\x80"),
        (125, b"\x82\xfd"),
        (126, b"\x82\xfe\x00\x7e"),
        (256, b"\x82\xfe\x01\x00"),
        (65535, b"\x82\xfe\xff\xff"),
        (65536, b"\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_encoder_length_encodings(codec: ModuleType, n: int, header: bytes) -> None:
    payload = os.urandom(n)
    wire = codec.FrameEncoder().encode(codec.OP_BINARY, payload)
    assert wire[: len(header)] == header
    key = wire[len(header) : len(header) + 4]
    assert len(wire) == len(header) + 4 + n
    assert codec.apply_mask(wire[len(header) + 4 :], key) == payload
    assert run(codec, to_server(codec, wire)) == ([payload], [], None)


# ------------------------------------------------------------------ lengths, chunking


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_minimal_lengths(codec: ModuleType, n: int) -> None:
    payload = os.urandom(n)
    data = frame(OP_BINARY, payload)
    assert run(codec, data) == ([payload], [], None)
    assert run(codec, data, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 5, 1000]) == ([payload], [], None)


@pytest.mark.parametrize("bits", [16, 64])
def test_non_minimal_lengths_are_accepted(codec: ModuleType, bits: int) -> None:
    data = frame(OP_TEXT, "hi", length_bits=bits) + frame(OP_BINARY, b"", length_bits=bits)
    assert code_of(codec, data) is None
    assert run(codec, data) == (["hi", b""], [], None)


def test_one_byte_at_a_time_equals_one_shot(codec: ModuleType) -> None:
    comp = Compressor()
    parts = [
        frame(OP_TEXT, "plain"),
        *fragments(OP_TEXT, "κόσμε κόσμε", [1, 2, 3, 1]),
        frame(OP_PING, b"p1"),
        frame(OP_BINARY, os.urandom(300)),
        fragments(OP_BINARY, b"abcdefgh", [3])[0],
        frame(OP_PONG, b""),
        fragments(OP_BINARY, b"abcdefgh", [3])[1],
        compressed_message(comp, OP_TEXT, "compressed " * 50, [5, 7]),
        compressed_message(comp, OP_TEXT, "compressed " * 50),
        frame(OP_TEXT, "x" * 70000),
        close(1000, "bye"),
        frame(OP_TEXT, "after close"),
    ]
    data = b"".join(parts)
    for mode in (0, 1, 2):
        kw = {"inflate": True, "mode": mode}
        one = run(codec, data, **kw)
        assert one[2] is None and len(one[0]) == 7
        assert one[1] == [(9, b"p1"), (10, b""), (8, b"\x03\xe8bye")]
        assert bytewise(codec, data, **kw) == one
        assert run(codec, data, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 1000, 4096], **kw) == one


def test_parser_copies_what_it_keeps(codec: ModuleType) -> None:
    """The engine feeds memoryviews of one reused receive buffer."""
    data = fragments(OP_TEXT, "hello world", [4])
    buf = bytearray(64)
    parser = codec.FrameParser()
    stream = b"".join(data)
    got: list[Any] = []
    for i in range(0, len(stream), 3):
        piece = stream[i : i + 3]
        buf[: len(piece)] = piece
        m, c, err = parser.feed(memoryview(buf)[: len(piece)])
        assert err is None and c == []
        got += m
        buf[:] = b"\xaa" * len(buf)  # scribble over it
    assert got == ["hello world"]
    assert parser.feed(bytearray(frame(OP_BINARY, b"ba"))) == ([b"ba"], [], None)


def test_empty_feed(codec: ModuleType) -> None:
    parser = codec.FrameParser()
    assert parser.feed(b"") == ([], [], None)
    assert parser.feed(b"\x81") == ([], [], None)
    assert parser.feed(b"") == ([], [], None)
    assert parser.feed(b"\x00") == ([""], [], None)


# ------------------------------------------------------------------ fragmentation


def test_fragmentation_with_interleaved_controls(codec: ModuleType) -> None:
    f = fragments(OP_TEXT, "abcdefghij", [2, 3, 0, 4])
    assert len(f) == 5
    data = b"".join(
        [
            f[0],
            frame(OP_PING, b"1"),
            f[1],
            frame(OP_PONG, b"2"),
            frame(OP_PING, b"3"),
            f[2],
            f[3],
            frame(OP_PONG, b"4"),
            f[4],
        ]
    )
    expected = (["abcdefghij"], [(9, b"1"), (10, b"2"), (9, b"3"), (10, b"4")], None)
    assert run(codec, data) == expected
    assert bytewise(codec, data) == expected


def test_binary_fragments_and_empty_fragments(codec: ModuleType) -> None:
    payload = os.urandom(1000)
    data = b"".join(fragments(OP_BINARY, payload, [0, 10, 0, 500]))
    assert run(codec, data) == ([payload], [], None)
    data = frame(OP_TEXT, b"", fin=False) + frame(OP_CONT, b"", fin=True)
    assert run(codec, data) == ([""], [], None)


def test_utf8_sequences_split_across_fragments(codec: ModuleType) -> None:
    text = "κόσμε \U0001f600 €"
    raw = text.encode()
    for cut in range(1, len(raw)):
        data = b"".join(fragments(OP_TEXT, raw, [cut]))
        assert run(codec, data) == ([text], [], None), cut


# ------------------------------------------------------------------ violations


VIOLATIONS_1002 = {
    "masked text": frame(OP_TEXT, b"abc", mask=b"\x01\x02\x03\x04"),
    "masked close": frame(OP_CLOSE, b"\x03\xe8", mask=b"\x01\x02\x03\x04"),
    "rsv1 without extension": frame(OP_TEXT, b"abc", rsv1=True),
    "rsv2": frame(OP_TEXT, b"abc", rsv2=True),
    "rsv3": frame(OP_BINARY, b"abc", rsv3=True),
    "rsv2 on ping": frame(OP_PING, b"", rsv2=True),
    **{f"opcode {op}": frame(op, b"x") for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)},
    "fragmented ping": frame(OP_PING, b"x", fin=False),
    "fragmented close": frame(OP_CLOSE, b"", fin=False),
    "ping of 126 bytes": frame(OP_PING, b"x" * 126),
    "pong of 126 bytes": frame(OP_PONG, b"x" * 126),
    "close with a 16-bit length": frame(OP_CLOSE, b"\x03\xe8", length_bits=16),
    "continuation without start": frame(OP_CONT, b"x"),
    "final continuation without start": frame(OP_CONT, b"x", fin=True),
    "text inside fragmented": frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"),
    "binary inside fragmented": frame(OP_BINARY, b"a", fin=False) + frame(OP_BINARY, b"b"),
    "continuation after complete": frame(OP_TEXT, b"a") + frame(OP_CONT, b"b"),
    "64-bit length with top bit": frame(OP_BINARY, b"", length=1 << 63, length_bits=64),
    "64-bit length all ones": frame(OP_BINARY, b"", length=(1 << 64) - 1, length_bits=64),
    "close of 1 byte": frame(OP_CLOSE, b"\x03"),
    **{f"close code {c}": close(c) for c in FORBIDDEN_CODES},
}


@pytest.mark.parametrize("name", sorted(VIOLATIONS_1002))
def test_violations_1002(codec: ModuleType, name: str) -> None:
    data = VIOLATIONS_1002[name]
    assert code_of(codec, data) == 1002
    if name != "rsv1 without extension":  # with the extension it is a compressed message
        assert code_of(codec, data, inflate=True, mode=codec.MODE_BYTES) == 1002


@pytest.mark.parametrize(
    "data",
    [
        frame(OP_CONT, b"x", rsv1=True),
        frame(OP_TEXT, b"a", fin=False, rsv1=True) + frame(OP_CONT, b"b", rsv1=True),
        frame(OP_PING, b"", rsv1=True),
        frame(OP_CLOSE, b"", rsv1=True),
        frame(3, b"", rsv1=True),
    ],
    ids=["continuation", "second fragment", "ping", "close", "opcode 3"],
)
def test_rsv1_allowed_only_on_first_data_frame(codec: ModuleType, data: bytes) -> None:
    assert code_of(codec, data, inflate=True) == 1002


@pytest.mark.parametrize("code", ALLOWED_CODES)
def test_allowed_close_codes(codec: ModuleType, code: int) -> None:
    data = close(code, "reason")
    assert run(codec, data) == ([], [(8, data[2:])], None)


@pytest.mark.parametrize(
    "data",
    [
        b"\x81",
        b"\x81\x7e\x01",
        b"\x82\x7f\x00\x00\x00",
        frame(OP_PING, b"abc")[:-1],
        frame(OP_CLOSE, b"\x03\xe8")[:-1],
    ],
)
def test_incomplete_input_is_no_error(codec: ModuleType, data: bytes) -> None:
    assert run(codec, data) == ([], [], None)


def test_header_errors_need_only_two_bytes(codec: ModuleType) -> None:
    """Decision 1: checks on the first two header bytes do not wait for the rest."""
    for head in (b"\x81\xfe", b"\xa1\x7f", b"\x83\x7e", b"\x09\x05", b"\x80\x7f", b"\x89\x7e"):
        parser = codec.FrameParser()
        _m, _c, err = parser.feed(head)
        assert err is not None and err.close_code == 1002, head
    # the extended length is needed for the 64-bit checks
    parser = codec.FrameParser(max_message_size=10)
    assert parser.feed(b"\x82\x7f\x80\x00\x00\x00") == ([], [], None)
    assert parser.feed(b"\x00\x00\x00")[2] is None
    assert parser.feed(b"\x00")[2].close_code == 1002  # top bit beats the size limit


def test_messages_before_an_error_are_returned(codec: ModuleType) -> None:
    data = (
        frame(OP_TEXT, "one")
        + frame(OP_PING, b"p")
        + frame(OP_BINARY, b"two")
        + frame(OP_TEXT, b"a", fin=False)
        + frame(OP_PONG, b"q")
        + frame(OP_TEXT, "three")  # new message inside a fragmented one
        + frame(OP_TEXT, "never")
    )
    expected = (["one", b"two"], [(9, b"p"), (10, b"q")], 1002)
    assert run(codec, data) == expected
    assert bytewise(codec, data) == expected
    parser = codec.FrameParser()
    _m, _c, err = parser.feed(data)
    assert parser.failed and not parser.closed
    assert parser.messages_received == 2
    again = parser.feed(frame(OP_TEXT, "ignored"))
    assert again[0] == [] and again[1] == [] and again[2] is err
    assert parser.feed(b"")[2] is err


def test_error_type_and_message(codec: ModuleType) -> None:
    _, _, err = codec.FrameParser().feed(frame(9, b"", fin=False))
    assert type(err) is WebSocketProtocolError
    assert err.close_code == 1002
    assert str(err)


# ------------------------------------------------------------------ UTF-8


AUTOBAHN_6_4 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"


def test_invalid_utf8_text_is_1007(codec: ModuleType) -> None:
    for bad in (b"\xff", b"\xed\xa0\x80", b"ok\xc0\xaf", b"\xce", b"a\xe1\xbd", b"\x80"):
        assert code_of(codec, frame(OP_TEXT, bad)) == 1007, bad
        assert code_of(codec, b"".join(fragments(OP_TEXT, bad, [1]))) == 1007, bad
        assert code_of(codec, frame(OP_TEXT, bad), mode=codec.MODE_BYTES) == 1007
        assert code_of(codec, frame(OP_TEXT, bad), mode=codec.MODE_JSON) == 1007
    # binary messages are not UTF-8-checked
    assert run(codec, frame(OP_BINARY, b"\xff\xed\xa0\x80")) == ([b"\xff\xed\xa0\x80"], [], None)


def test_utf8_fails_fast_inside_one_frame(codec: ModuleType) -> None:
    """Autobahn 6.4.3/6.4.4: the frame is sent in chops; fail at the bad byte."""
    data = frame(OP_TEXT, AUTOBAHN_6_4)
    cut = 2 + AUTOBAHN_6_4.index(b"\xed\xa0")
    parser = codec.FrameParser()
    assert parser.feed(data[: cut + 1]) == ([], [], None)  # ... \xed: still possible
    _m, _c, err = parser.feed(data[cut + 1 : cut + 2])  # \xa0: a surrogate, impossible
    assert err is not None and err.close_code == 1007


@pytest.mark.parametrize(
    ("valid", "bad"),
    [
        (b"ab", b"\xed\xa0"),
        (b"ab", b"\xed\xbf"),
        (b"", b"\xf4\x90"),
        (b"x", b"\xf0\x80"),
        (b"x", b"\xe0\x80"),
        (b"x", b"\xe0\x9f"),
        (b"x", b"\xc0"),
        (b"x", b"\xc1"),
        (b"x", b"\xf5"),
        (b"x", b"\xff"),
        (b"x", b"\x80"),
        (b"\xe2\x82", b"\x41"),
        (b"\xf0\x9f\x98", b"\xc3"),
    ],
)
def test_utf8_fails_at_the_first_impossible_byte(
    codec: ModuleType, valid: bytes, bad: bytes
) -> None:
    """Announce a long frame; feed the valid prefix, then byte by byte: the error comes
    with the last byte of ``bad``, while the frame is still incomplete."""
    data = frame(OP_TEXT, valid + bad, length=1000)
    parser = codec.FrameParser()
    head = len(data) - len(bad)
    assert parser.feed(data[:head]) == ([], [], None)
    for i in range(len(bad) - 1):
        assert parser.feed(data[head + i : head + i + 1]) == ([], [], None)
    assert parser.feed(data[-1:])[2].close_code == 1007


def test_utf8_fails_fast_across_fragments(codec: ModuleType) -> None:
    """Autobahn 6.4.1/6.4.2: the message is incomplete when the bad fragment arrives."""
    f = fragments(OP_TEXT, AUTOBAHN_6_4, [12, 1])
    parser = codec.FrameParser()
    assert parser.feed(f[0]) == ([], [], None)  # ends with \xed
    assert parser.feed(f[1])[2].close_code == 1007  # \xa0, message not finished
    # the same, with the prefix split in every way
    for cut in range(1, 14):
        data = b"".join(fragments(OP_TEXT, AUTOBAHN_6_4, [cut]))
        assert code_of(codec, data) == 1007


def test_text_ending_inside_a_sequence(codec: ModuleType) -> None:
    data = frame(OP_TEXT, b"ab\xe2\x82", fin=False)
    parser = codec.FrameParser()
    assert parser.feed(data) == ([], [], None)
    assert parser.feed(frame(OP_CONT, b"", fin=True))[2].close_code == 1007


# ------------------------------------------------------------------ max message size


def test_max_size_exact_and_one_more(codec: ModuleType) -> None:
    assert run(codec, frame(OP_BINARY, b"x" * 100), max_message_size=100)[2] is None
    assert code_of(codec, frame(OP_BINARY, b"x" * 101), max_message_size=100) == 1009
    data = b"".join(fragments(OP_TEXT, "x" * 100, [30, 30, 30]))
    assert run(codec, data, max_message_size=100) == (["x" * 100], [], None)
    data = b"".join(fragments(OP_TEXT, "x" * 101, [30, 30, 30]))
    assert code_of(codec, data, max_message_size=100) == 1009
    # the limit is per message
    data = frame(OP_TEXT, "x" * 100) * 3
    assert run(codec, data, max_message_size=100) == (["x" * 100] * 3, [], None)


def test_max_size_detected_from_the_header(codec: ModuleType) -> None:
    parser = codec.FrameParser(max_message_size=1000)
    _m, _c, err = parser.feed(frame(OP_BINARY, b"", length=1001, length_bits=16))
    assert err is not None and err.close_code == 1009
    parser = codec.FrameParser()
    _m, _c, err = parser.feed(frame(OP_BINARY, b"", length=1 << 62, length_bits=64))
    assert err is not None and err.close_code == 1009
    parser = codec.FrameParser()
    big = codec.DEFAULT_MAX_MESSAGE_SIZE + 1
    assert parser.feed(frame(OP_TEXT, b"", length=big))[2].close_code == 1009
    parser = codec.FrameParser()
    ok = frame(OP_TEXT, b"", length=codec.DEFAULT_MAX_MESSAGE_SIZE)
    assert parser.feed(ok) == ([], [], None)


def test_max_size_counts_fragments_before_buffering(codec: ModuleType) -> None:
    parser = codec.FrameParser(max_message_size=100)
    assert parser.feed(frame(OP_TEXT, "a" * 60, fin=False)) == ([], [], None)
    _m, _c, err = parser.feed(frame(OP_CONT, b"", length=41))
    assert err is not None and err.close_code == 1009


def test_control_frames_are_not_bound_by_max_size(codec: ModuleType) -> None:
    data = frame(OP_PING, b"x" * 125) + close(1000, "y" * 100)
    assert run(codec, data, max_message_size=10)[1:] == ([(9, b"x" * 125), (8, data[129:])], None)


# ------------------------------------------------------------------ close frames


def test_close_stops_the_parser(codec: ModuleType) -> None:
    data = (
        frame(OP_TEXT, "before")
        + frame(OP_TEXT, b"part", fin=False)
        + close(1001, "going away")
        + frame(OP_CONT, b"rest")
        + b"\xff\xff garbage"
    )
    expected = (["before"], [(8, b"\x03\xe9going away")], None)
    assert run(codec, data) == expected
    assert bytewise(codec, data) == expected
    parser = codec.FrameParser()
    parser.feed(data)
    assert parser.closed and not parser.failed
    n = parser.bytes_received
    assert n == len(data)
    assert parser.feed(frame(OP_TEXT, "more")) == ([], [], None)
    assert parser.bytes_received == n
    assert parser.messages_received == 1


def test_close_payloads(codec: ModuleType) -> None:
    assert run(codec, close()) == ([], [(8, b"")], None)
    assert run(codec, close(1000)) == ([], [(8, b"\x03\xe8")], None)
    reason = "κόσμε".encode() * 12
    assert run(codec, close(4999, reason)) == ([], [(8, b"\x13\x87" + reason)], None)
    assert code_of(codec, close(1000, b"\xed\xa0\x80")) == 1007
    assert code_of(codec, close(1000, b"ok\xce")) == 1007
    assert code_of(codec, close(1004, b"\xff")) == 1002
    assert code_of(codec, frame(OP_CLOSE, b"\x03")) == 1002


# ------------------------------------------------------------------ modes, counters


def test_modes(codec: ModuleType) -> None:
    data = frame(OP_TEXT, '{"a": [1, 2]}') + frame(OP_BINARY, b"\x00\x01") + frame(OP_TEXT, "é")
    assert run(codec, data, mode=codec.MODE_BYTES)[0] == [
        b'{"a": [1, 2]}',
        b"\x00\x01",
        "é".encode(),
    ]
    assert run(codec, data, mode=codec.MODE_TEXT)[0] == ['{"a": [1, 2]}', b"\x00\x01", "é"]
    parser = codec.FrameParser(mode=codec.MODE_JSON, loads=orjson.loads)
    m, _c, err = parser.feed(data)
    assert err is None
    assert m == [{"a": [1, 2]}, b"\x00\x01", "é"]
    assert parser.decode_errors == 1
    assert parser.messages_received == 3
    types = [type(x) for x in bytewise(codec, data, mode=codec.MODE_BYTES)[0]]
    assert types == [bytes, bytes, bytes]


def test_json_mode_passes_bytes_and_keeps_bad_json(codec: ModuleType) -> None:
    seen: list[Any] = []

    def loads(raw: Any) -> Any:
        seen.append(raw)
        return json.loads(raw)

    data = (
        frame(OP_TEXT, "[1]")
        + b"".join(fragments(OP_TEXT, '{"k": "κόσμε"}', [3, 4]))
        + frame(OP_TEXT, "not json")
        + frame(OP_TEXT, "")
        + frame(OP_TEXT, "2")
    )
    parser = codec.FrameParser(mode=codec.MODE_JSON, loads=loads)
    m, _c, err = parser.feed(data)
    assert err is None
    assert m == [[1], {"k": "κόσμε"}, "not json", "", 2]
    assert all(type(x) is bytes for x in seen)
    assert seen[1] == '{"k": "κόσμε"}'.encode()
    assert parser.decode_errors == 2
    assert parser.messages_received == 5


def test_json_mode_any_exception_counts(codec: ModuleType) -> None:
    def loads(raw: bytes) -> Any:
        raise RuntimeError("boom")

    parser = codec.FrameParser(mode=codec.MODE_JSON, loads=loads)
    assert parser.feed(frame(OP_TEXT, "{}") * 2) == (["{}", "{}"], [], None)
    assert parser.decode_errors == 2


def test_json_mode_default_loads(codec: ModuleType) -> None:
    parser = codec.FrameParser(mode=codec.MODE_JSON)
    assert parser.feed(frame(OP_TEXT, '{"x": 1.5}'))[0] == [{"x": 1.5}]


def test_counters(codec: ModuleType) -> None:
    parser = codec.FrameParser()
    assert (parser.messages_received, parser.bytes_received, parser.decode_errors) == (0, 0, 0)
    assert not parser.closed and not parser.failed
    a = frame(OP_TEXT, "x" * 200)
    b = frame(OP_PING, b"abc")
    parser.feed(a[:7])
    assert parser.bytes_received == 7 and parser.messages_received == 0
    parser.feed(a[7:] + b)
    assert parser.bytes_received == len(a) + len(b)
    assert parser.messages_received == 1
    bad = frame(OP_TEXT, b"\xff") + frame(OP_TEXT, "never counted")
    parser.feed(bad)
    assert parser.failed
    assert parser.bytes_received == len(a) + len(b) + len(bad)
    parser.feed(b"more")
    assert parser.bytes_received == len(a) + len(b) + len(bad)
    with pytest.raises(AttributeError):
        parser.messages_received = 5


@pytest.mark.parametrize(
    "kw",
    [
        {"max_message_size": 0},
        {"max_message_size": -1},
        {"mode": 3},
        {"mode": -1},
        {"inflate_window_bits": 7},
        {"inflate_window_bits": 16},
    ],
)
def test_parser_rejects_bad_options(codec: ModuleType, kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        codec.FrameParser(**kw)


@pytest.mark.parametrize(
    "kw", [{"deflate_window_bits": 7}, {"deflate_window_bits": 16}, {"fragment_size": -1}]
)
def test_encoder_rejects_bad_options(codec: ModuleType, kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        codec.FrameEncoder(**kw)


# ------------------------------------------------------------------ permessage-deflate


def test_rfc7692_examples(codec: ModuleType) -> None:
    one = bytes.fromhex("c107f248cdc9c90700")
    shared = bytes.fromhex("c105f200110000")
    stored = bytes.fromhex("c10b000500faff48656c6c6f00")
    two_blocks = frame(OP_TEXT, bytes.fromhex("f248050000" + "00ffffcac9c90700"), rsv1=True)
    fragmented = bytes.fromhex("4103f248cd" + "8004c9c90700")
    for data in (one, stored, two_blocks, fragmented):
        assert code_of(codec, data, inflate=True) is None
        assert run(codec, data, inflate=True) == (["Hello"], [], None)
    assert run(codec, one + shared, inflate=True) == (["Hello", "Hello"], [], None)
    assert bytewise(codec, one + shared, inflate=True) == (["Hello", "Hello"], [], None)
    # the second message needs the first one's window
    assert code_of(codec, one + shared, inflate=True, inflate_no_context_takeover=True) == 1007


def test_bfinal_block_restarts_with_the_window(codec: ModuleType) -> None:
    """RFC 7692 7.2.3.3 (decision 8)."""
    bfinal = frame(OP_TEXT, bytes.fromhex("f348cdc9c90700" + "00"), rsv1=True)
    shared = bytes.fromhex("c105f200110000")  # refers back to "Hello"
    data = bfinal + shared + bfinal
    assert code_of(codec, data, inflate=True) is None
    assert run(codec, data, inflate=True) == (["Hello"] * 3, [], None)


def test_bfinal_restarts_keep_32k_of_history(codec: ModuleType) -> None:
    """Several final blocks in one message and across messages: each new raw stream sees
    the last 32 KiB of output (earlier messages and the same frame) as its dictionary."""
    history = b""

    def stream(data: bytes, final: bool) -> bytes:
        nonlocal history
        kw = {"zdict": history[-32768:]} if history else {}
        c = zlib.compressobj(6, zlib.DEFLATED, -15, **kw)
        out = c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
        history += data
        return out if final else out[: -len(TAIL)]

    first = os.urandom(20000)
    x, y = os.urandom(3000), os.urandom(30000)
    second = [x, first[:5000] + x[:100], y + first[-2000:] + x]
    third = second[2][-30000:] + first[-1000:]
    msgs = [frame(OP_BINARY, stream(first, True) + b"\x00", rsv1=True)]
    body = stream(second[0], True) + stream(second[1], True) + stream(second[2], False)
    msgs += fragments(OP_BINARY, body, [len(body) // 2], rsv1=True)
    msgs.append(frame(OP_BINARY, stream(third, True) + b"\x00", rsv1=True))
    data = b"".join(msgs)
    expected = ([first, b"".join(second), third], [], None)
    assert run(codec, data, inflate=True) == expected
    assert run(codec, data, [7, 100, 3000, 1, 1, 20000], inflate=True) == expected


def test_deflate_round_trip(codec: ModuleType) -> None:
    enc = codec.FrameEncoder(deflate=True)
    texts = ["", "a", "hello " * 1000, "κόσμε" * 300, os.urandom(5000).hex()]
    wire = b"".join(enc.encode(codec.OP_TEXT, t) for t in texts)
    wire += enc.encode(codec.OP_BINARY, os.urandom(70000))
    data = to_server(codec, wire)
    msgs, _ctrls, err = run(codec, data, inflate=True)
    assert err is None
    assert msgs[:5] == texts and len(msgs[5]) == 70000
    assert bytewise(codec, data, inflate=True)[0] == msgs
    for b0, _b1, _key, _payload in split_client_frames(wire):
        assert b0 & 0x40  # every data message compressed
    frames_ = split_client_frames(wire)
    assert codec.apply_mask(frames_[0][3], frames_[0][2]) == b"\x00"  # empty message


def test_deflate_context_takeover(codec: ModuleType) -> None:
    text = "the quick brown fox jumps over the lazy dog " * 20
    enc = codec.FrameEncoder(deflate=True)
    first, second = enc.encode(codec.OP_TEXT, text), enc.encode(codec.OP_TEXT, text)
    assert len(second) < len(first)
    data = to_server(codec, first + second)
    assert run(codec, data, inflate=True) == ([text, text], [], None)
    # a parser that resets after each message cannot read the second one
    assert code_of(codec, data, inflate=True, inflate_no_context_takeover=True) == 1007


def test_deflate_no_context_takeover(codec: ModuleType) -> None:
    text = "the quick brown fox jumps over the lazy dog " * 20
    enc = codec.FrameEncoder(deflate=True, deflate_no_context_takeover=True)
    wires = [enc.encode(codec.OP_TEXT, text) for _ in range(3)]
    masked = [split_client_frames(w)[0] for w in wires]
    payloads = [codec.apply_mask(p, k) for _b0, _b1, k, p in masked]
    assert payloads[0] == payloads[1] == payloads[2]
    data = to_server(codec, b"".join(wires))
    for nct in (False, True):
        kw = {"inflate": True, "inflate_no_context_takeover": nct}
        assert run(codec, data, **kw) == ([text] * 3, [], None)
    # server side without context takeover, parser told so
    comp = Compressor(no_context_takeover=True)
    data = b"".join(compressed_message(comp, OP_TEXT, text, [3]) for _ in range(3))
    kw = {"inflate": True, "inflate_no_context_takeover": True}
    assert run(codec, data, **kw) == ([text] * 3, [], None)
    assert bytewise(codec, data, **kw) == ([text] * 3, [], None)


@pytest.mark.parametrize("bits", [8, 9, 10, 12, 15])
def test_deflate_window_bits_fit_the_peer(codec: ModuleType, bits: int) -> None:
    """Decision 12: what the encoder sends decodes with a ``bits`` window, even when every
    back reference has to go through the inflater's window (one byte at a time)."""
    enc = codec.FrameEncoder(deflate=True, deflate_window_bits=bits)
    peer = zlib.decompressobj(-bits)
    block = os.urandom(200)
    for i in range(20):
        text = block * (i % 4 + 1) + os.urandom(i * 20) + block[: i * 10]
        wire = enc.encode(codec.OP_BINARY, text)
        (_b0, _b1, key, payload), *_ = split_client_frames(wire)
        stream = codec.apply_mask(payload, key) + TAIL
        out = b"".join(peer.decompress(stream[j : j + 1]) for j in range(len(stream)))
        assert out == text


@pytest.mark.parametrize("server_bits", [9, 12, 15])
@pytest.mark.parametrize("parser_bits", [8, 9, 15])
def test_inflate_window_bits_are_not_enforced(
    codec: ModuleType, server_bits: int, parser_bits: int
) -> None:
    """Decision 6: the inflater always has a 32 KiB window."""
    comp = Compressor(window_bits=server_bits)
    block = os.urandom(3000)
    texts = [block * 3, block + os.urandom(10) + block]
    data = b"".join(compressed_message(comp, OP_BINARY, t, [100]) for t in texts)
    kw = {"inflate": True, "inflate_window_bits": parser_bits}
    assert run(codec, data, **kw) == (texts, [], None)
    assert run(codec, data, [1] * 300 + [7] * 300, **kw) == (texts, [], None)


def test_fragmented_compressed_message_and_plain_messages(codec: ModuleType) -> None:
    comp = Compressor()
    text = "market data " * 500
    data = (
        compressed_message(comp, OP_TEXT, text, [1, 10, 0, 50])
        + frame(OP_TEXT, "plain")
        + frame(OP_PING, b"ping")
        + compressed_message(comp, OP_TEXT, text)
    )
    expected = ([text, "plain", text], [(9, b"ping")], None)
    assert run(codec, data, inflate=True) == expected
    assert bytewise(codec, data, inflate=True) == expected


def test_corrupt_deflate_is_1007(codec: ModuleType) -> None:
    for payload in (b"\xff\xff\xff\xff", b"\x07" + b"\xff" * 10, bytes.fromhex("000100ffff41")):
        data = frame(OP_BINARY, payload, rsv1=True)
        assert code_of(codec, data, inflate=True) == 1007, payload


def test_invalid_utf8_in_compressed_text(codec: ModuleType) -> None:
    comp = Compressor()
    data = compressed_message(comp, OP_TEXT, b"valid " * 100 + b"\xed\xa0\x80")
    assert code_of(codec, data, inflate=True) == 1007
    assert run(codec, compressed_message(Compressor(), OP_BINARY, b"\xff"), inflate=True)[0] == [
        b"\xff"
    ]


def test_decompressed_size_limit(codec: ModuleType) -> None:
    text = "z" * 1000
    kw = {"inflate": True, "max_message_size": 1000}
    data = compressed_message(Compressor(), OP_TEXT, text)
    assert len(data) < 100
    assert run(codec, data, **kw) == ([text], [], None)
    data = compressed_message(Compressor(), OP_TEXT, text + "z")
    assert code_of(codec, data, **kw) == 1009
    data = compressed_message(Compressor(), OP_TEXT, text + "z", [2, 3])
    assert code_of(codec, data, **kw) == 1009


def test_corrupt_after_the_limit_is_chunking_invariant(codec: ModuleType) -> None:
    """Decision 7: the frame's output reaches the limit, then an invalid block header
    follows. zlib reads that header even with a full output buffer, so a frame inflated in
    one pass is 1007 - whatever the chunking, because frames are inflated whole."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(b"a" * 101) + c.flush(zlib.Z_SYNC_FLUSH)  # 00 00 ff ff kept
    for extra, expected in ((b"\xff", 1007), (b"", 1009)):
        data = frame(OP_BINARY, body + extra, rsv1=True)
        for cut in range(len(data) + 1):
            result = run(codec, data, [cut], inflate=True, max_message_size=100)
            assert result == ([], [], expected), (extra, cut)
    # over two frames: the first one passes the limit, the second one is corrupt
    data = frame(OP_BINARY, body, rsv1=True, fin=False) + frame(OP_CONT, b"\xff")
    for cut in range(len(data) + 1):
        assert run(codec, data, [cut], inflate=True, max_message_size=100)[2] == 1009


def test_compressed_wire_size_limit(codec: ModuleType) -> None:
    payload = os.urandom(600)  # incompressible: the compressed size is above 600
    data = compressed_message(Compressor(), OP_BINARY, payload)
    assert code_of(codec, data, inflate=True, max_message_size=600) == 1009
    parser = codec.FrameParser(inflate=True, max_message_size=600)
    assert parser.feed(data[:4])[2].close_code == 1009  # from the header alone


def test_size_limit_versus_utf8_order(codec: ModuleType) -> None:
    """Decision 7: invalid UTF-8 within the allowed bytes wins over the size limit."""
    kw = {"inflate": True, "max_message_size": 500}
    data = compressed_message(Compressor(), OP_TEXT, b"ab\xff" + b"a" * 2000)
    assert code_of(codec, data, **kw) == 1007
    data = compressed_message(Compressor(), OP_TEXT, b"a" * 600 + b"\xff")
    assert code_of(codec, data, **kw) == 1009
    data = compressed_message(Compressor(), OP_TEXT, b"a" * 499 + b"\xe2\x82\xac" + b"a" * 9)
    assert code_of(codec, data, **kw) == 1009  # the cut falls inside a valid sequence


BOMB_SCRIPT = textwrap.dedent(
    """
    import importlib, resource, sys, time, zlib
    codec = importlib.import_module(sys.argv[1])
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    parts = [c.compress(zeros) for _ in range(100)]
    body = b"".join(parts) + c.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\\x00\\x00\\xff\\xff")
    body = body[:-4]
    n = len(body)
    header = bytes((0xC2, 126)) + n.to_bytes(2, "big") if n < 65536 else (
        bytes((0xC2, 127)) + n.to_bytes(8, "big"))
    data = header + body
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    parser = codec.FrameParser(inflate=True, mode=0)
    m, ctl, err = parser.feed(data)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(len(data), err.close_code if err else None, (after - before) // 1024, len(m))
    """
)


def test_deflate_bomb_is_1009_with_bounded_memory(codec: ModuleType) -> None:
    """100 MiB of zeros (about 100 KiB compressed) against the default 16 MiB limit."""
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, codec.__name__],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr
    size, code, grown_mib, nmsgs = proc.stdout.split()
    assert int(size) < 200_000
    assert code == "1009"
    assert nmsgs == "0"
    assert int(grown_mib) < 64  # not the 100 MiB of output


# ------------------------------------------------------------------ encoder


def test_encoder_masks_with_a_fresh_key(codec: ModuleType) -> None:
    enc = codec.FrameEncoder()
    keys = set()
    for _ in range(50):
        wire = enc.encode(codec.OP_TEXT, "same payload")
        assert wire[1] & 0x80
        keys.add(wire[2:6])
        assert codec.apply_mask(wire[6:], wire[2:6]) == b"same payload"
    assert len(keys) >= 45  # 50 draws from 2**32 values
    a = enc.encode(codec.OP_BINARY, b"\x00" * 64)
    b = enc.encode(codec.OP_BINARY, b"\x00" * 64)
    assert a != b
    assert a[6:] != b"\x00" * 64


def test_encoder_frames(codec: ModuleType) -> None:
    enc = codec.FrameEncoder()
    for opcode, payload in [
        (codec.OP_TEXT, "κόσμε"),
        (codec.OP_TEXT, b"raw bytes \xff"),  # a bytes text payload is sent as is
        (codec.OP_BINARY, bytearray(b"\x00\x01")),
        (codec.OP_BINARY, memoryview(b"view")),
        (codec.OP_BINARY, "str as binary"),
        (codec.OP_PING, b"p" * 125),
        (codec.OP_PONG, ""),
        (codec.OP_CLOSE, b"\x03\xe8bye"),
        (codec.OP_CLOSE, b""),
    ]:
        wire = enc.encode(opcode, payload)
        ((b0, b1, key, masked),) = split_client_frames(wire)
        raw = payload.encode() if isinstance(payload, str) else bytes(payload)
        assert b0 == 0x80 | opcode
        assert b1 & 0x80
        assert codec.apply_mask(masked, key) == raw


def test_encoder_rejections(codec: ModuleType) -> None:
    enc = codec.FrameEncoder(fragment_size=10)
    for opcode in (0, 3, 7, 11, 15):
        with pytest.raises(ValueError):
            enc.encode(opcode, b"x")
    for opcode in (codec.OP_PING, codec.OP_PONG):
        with pytest.raises(ValueError):
            enc.encode(opcode, b"x" * 126)
    for payload in (b"\x03", b"\x03\xed", b"\x03\xe8\xff", b"\x03\xe8" + b"x" * 124):
        with pytest.raises(ValueError):
            enc.encode(codec.OP_CLOSE, payload)
    assert enc.messages_sent == 0 and enc.bytes_sent == 0


def test_encode_close(codec: ModuleType) -> None:
    enc = codec.FrameEncoder()

    def payload(wire: bytes) -> bytes:
        ((b0, _b1, key, masked),) = split_client_frames(wire)
        assert b0 == 0x88
        return codec.apply_mask(masked, key)

    assert payload(enc.encode_close()) == b""
    assert payload(enc.encode_close(1000)) == b"\x03\xe8"
    assert payload(enc.encode_close(4999, "κόσμε")) == b"\x13\x87" + "κόσμε".encode()
    assert payload(enc.encode_close(1000, "r" * 123)) == b"\x03\xe8" + b"r" * 123
    for code in ALLOWED_CODES:
        assert codec.parse_close(payload(enc.encode_close(code, "ok"))) == (code, "ok")
    for code in FORBIDDEN_CODES:
        with pytest.raises(ValueError):
            enc.encode_close(code)
    with pytest.raises(ValueError):
        enc.encode_close(1000, "r" * 124)
    with pytest.raises(ValueError):
        enc.encode_close(1000, "é" * 62)  # 2 + 124 bytes
    with pytest.raises(ValueError):
        enc.encode_close(None, "reason without code")


@pytest.mark.parametrize("deflate", [False, True])
def test_fragment_size(codec: ModuleType, deflate: bool) -> None:
    enc = codec.FrameEncoder(fragment_size=100, deflate=deflate)
    payload = os.urandom(1050)  # incompressible: more than 10 frames either way
    wire = enc.encode(codec.OP_BINARY, payload)
    parts = split_client_frames(wire)
    assert len(parts) >= 11
    assert all(len(p[3]) <= 100 for p in parts)
    assert all(len(p[3]) == 100 for p in parts[:-1])
    assert [p[0] & 0x0F for p in parts] == [2] + [0] * (len(parts) - 1)
    assert [bool(p[0] & 0x80) for p in parts] == [False] * (len(parts) - 1) + [True]
    assert [bool(p[0] & 0x40) for p in parts] == [deflate] + [False] * (len(parts) - 1)
    assert len({p[2] for p in parts}) == len(parts)  # a fresh key per frame
    assert run(codec, to_server(codec, wire), inflate=deflate) == ([payload], [], None)
    # exactly one fragment's worth, empty, and control frames stay whole
    assert (
        len(split_client_frames(enc.encode(codec.OP_TEXT, "x" * 100 if not deflate else ""))) == 1
    )
    assert len(split_client_frames(enc.encode(codec.OP_PING, b"x" * 125))) == 1
    assert enc.messages_sent == 2


def test_encoder_counters(codec: ModuleType) -> None:
    enc = codec.FrameEncoder()
    total = 0
    for opcode, payload in [(1, "a"), (2, b"b" * 300), (9, b""), (10, b"x"), (2, b"c" * 70000)]:
        total += len(enc.encode(opcode, payload))
    total += len(enc.encode_close(1000, "bye"))
    assert enc.messages_sent == 3
    assert enc.bytes_sent == total
    with pytest.raises(AttributeError):
        enc.bytes_sent = 0
