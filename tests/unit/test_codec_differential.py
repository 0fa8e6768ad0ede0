"""Differential and chunking-invariance tests of the two codecs, driven by hypothesis.

Hypothesis builds server byte streams out of valid and broken pieces: text and binary
messages (fragmented, with control frames interleaved), pings, pongs, close frames with
good and bad codes and reasons, invalid UTF-8, frames with random opcode / FIN / RSV /
MASK bits and announced lengths, oversize headers, garbage, and, when the parser inflates,
permessage-deflate messages (context takeover or not, various server windows, corrupted
ones, ones that inflate past the size limit). Then:

(a) for each codec, feeding the stream in any chunking (random cuts, one byte at a time)
    gives the same messages, control frames, error close code and final flags as feeding
    it in one call;
(b) the C++ and the Python codec give identical results on the same chunked input: the
    same ``(messages, controls, close code)`` from every ``feed`` call, and the same
    counters and flags at the end.

``KSTLIB_CODEC_EXAMPLES`` (default 150) sets the number of examples per test, so a deeper
run (for instance under the sanitizer build) can ask for more.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import orjson
import pytest
from frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Compressor,
    fragments,
    frame,
    split_client_frames,
    to_server,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("KSTLIB_CODEC_EXAMPLES", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ALLOWED_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
ALLOWED_CODES += [3000, 3999, 4000, 4999]
FORBIDDEN_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]
BAD_UTF8 = [
    b"\xff",
    b"\x80",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xed\xbf",
    b"\xf4\x90\x80\x80",
    b"\xe0\x80",
    b"\xf5",
    b"\xe2\x82",  # truncated (invalid only when the message ends here)
    b"\xe2\x82A",
]
JSON_TEXTS = ['{"e":"trade","p":"1.5"}', "[1,2,3]", "42", "null", '"s"', "{bad json", ""]

Opts = dict[str, Any]


# ------------------------------------------------------------------ strategies


def _interleave(draw: st.DrawFn, parts: list[bytes]) -> list[bytes]:
    """Maybe put ping/pong frames between the frames of a fragmented message."""
    out: list[bytes] = []
    for i, part in enumerate(parts):
        if i and draw(st.integers(0, 3)) == 0:
            op = draw(st.sampled_from([OP_PING, OP_PONG]))
            out.append(frame(op, draw(st.binary(max_size=8))))
        out.append(part)
    return out


def _sizes(draw: st.DrawFn, n: int) -> list[int]:
    if n == 0 or draw(st.booleans()):
        return []
    return draw(st.lists(st.integers(0, max(1, n // 2)), max_size=4))


def _text_payload(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.sampled_from(JSON_TEXTS)).encode()
    if kind == 1:  # invalid UTF-8 somewhere
        before = draw(st.text(max_size=10)).encode()
        after = draw(st.text(max_size=10)).encode()
        return before + draw(st.sampled_from(BAD_UTF8)) + after
    if kind == 2:
        return ("€κ\U0001f600" * draw(st.integers(0, 40))).encode()
    return draw(st.text(max_size=60)).encode()


@st.composite
def piece(draw: st.DrawFn, opts: Opts, comp: Compressor | None) -> bytes:
    """One element of a stream: usually a well-formed unit, sometimes a broken one."""
    kinds = ["text", "binary", "control", "close", "raw", "garbage", "big"]
    if comp is not None:
        kinds += ["deflate", "deflate", "deflate", "deflate_bad", "deflate_big"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("text", "binary"):
        if kind == "text":
            op, payload = OP_TEXT, _text_payload(draw)
        else:
            op, payload = OP_BINARY, draw(st.binary(max_size=300))
        return b"".join(_interleave(draw, fragments(op, payload, _sizes(draw, len(payload)))))
    if kind == "control":
        op = draw(st.sampled_from([OP_PING, OP_PONG]))
        size = draw(st.one_of(st.integers(0, 20), st.integers(120, 130)))
        return frame(op, draw(st.binary(min_size=size, max_size=size)))
    if kind == "close":
        shape = draw(st.integers(0, 5))
        if shape == 0:
            return frame(OP_CLOSE, b"")
        if shape == 1:
            return frame(OP_CLOSE, draw(st.binary(min_size=1, max_size=1)))
        code = draw(st.sampled_from(ALLOWED_CODES + FORBIDDEN_CODES))
        reason = draw(st.text(max_size=30)).encode()[:60]
        if shape == 2:
            reason += draw(st.sampled_from(BAD_UTF8))
        return frame(OP_CLOSE, code.to_bytes(2, "big") + reason)
    if kind == "raw":
        payload = draw(st.binary(max_size=140))
        length = len(payload) + draw(st.sampled_from([0, 0, 0, 1, -1, 5]))
        mask = draw(st.sampled_from([None, None, None, b"\x01\x02\x03\x04"]))
        return frame(
            draw(st.integers(0, 15)),
            payload,
            fin=draw(st.booleans()),
            rsv1=draw(st.integers(0, 4)) == 0,
            rsv2=draw(st.integers(0, 9)) == 0,
            rsv3=draw(st.integers(0, 9)) == 0,
            mask=mask,
            length=max(0, length),
            length_bits=draw(st.sampled_from([None, None, 16, 64])),
        )
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=12))
    if kind == "big":  # near or over the size limit, from the header or from fragments
        limit = opts["max_message_size"]
        if draw(st.booleans()) or limit > 5000:
            length = draw(
                st.sampled_from(
                    [limit, limit + 1, 1 << 62, (1 << 63) + 5, opts["max_message_size"] * 3]
                )
            )
            op = draw(st.sampled_from([OP_TEXT, OP_BINARY, OP_CONT]))
            return frame(op, b"", length=length, length_bits=64) + b"x" * 10
        size = draw(st.integers(max(0, limit - 3), limit + 3))
        data = b"y" * size
        return b"".join(fragments(OP_BINARY, data, _sizes(draw, size)))
    assert comp is not None
    if kind == "deflate_big":
        limit = opts["max_message_size"]
        size = draw(st.integers(max(0, limit - 2), limit + 3) if limit < 3000 else st.just(3000))
        op = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
        bad = draw(st.sampled_from([b"", b"\xff"]))
        if draw(st.booleans()):
            body = comp.compress(b"a" * size + bad)
        else:
            body = comp.compress(bad + b"a" * size)
        if draw(st.booleans()):  # then something zlib reads ahead of a full output buffer
            body += b"\x00\x00\xff\xff" + draw(st.binary(min_size=1, max_size=3))
        return b"".join(fragments(op, body, _sizes(draw, len(body)), rsv1=True))
    op = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
    shape = draw(st.integers(0, 3))
    if shape == 0:
        payload = _text_payload(draw)
    elif shape == 1:
        payload = draw(st.binary(max_size=200)) * draw(st.integers(1, 20))
    else:  # back references further than a small window, also to earlier messages
        block = draw(st.binary(min_size=300, max_size=600))
        payload = block + bytes(draw(st.integers(0, 400))) + block
        op = OP_BINARY
    body = comp.compress(payload)
    if kind == "deflate_bad" and body:
        pos = draw(st.integers(0, len(body) - 1))
        body = body[:pos] + bytes([body[pos] ^ draw(st.integers(1, 255))]) + body[pos + 1 :]
    parts = fragments(op, body, _sizes(draw, len(body)), rsv1=True)
    return b"".join(_interleave(draw, parts))


@st.composite
def scenario(draw: st.DrawFn, *, inflate: bool | None = None) -> tuple[Opts, bytes, list[int]]:
    """``(parser options, stream, chunk sizes)``."""
    if inflate is None:
        inflate = draw(st.booleans())
    opts: Opts = {
        "max_message_size": draw(st.sampled_from([16 * 1024 * 1024, 40, 200, 1000])),
        "mode": draw(st.integers(0, 2)),
        "inflate": inflate,
    }
    comp = None
    if inflate:
        nct = draw(st.booleans())
        opts["inflate_no_context_takeover"] = nct
        opts["inflate_window_bits"] = draw(st.integers(8, 15))
        comp = Compressor(window_bits=draw(st.integers(9, 15)), no_context_takeover=nct)
    stream = b"".join(draw(st.lists(piece(opts, comp), min_size=1, max_size=8)))
    chunks = draw(st.lists(st.integers(1, 40), max_size=30))
    return opts, stream, chunks


# ------------------------------------------------------------------ running


def split(stream: bytes, chunks: list[int]) -> list[bytes]:
    out = []
    pos = 0
    for size in chunks:
        if pos >= len(stream):
            break
        out.append(stream[pos : pos + size])
        pos += size
    if pos < len(stream) or not out:
        out.append(stream[pos:])
    return out


def make_parser(codec: ModuleType, opts: Opts) -> Any:
    kw = dict(opts)
    if kw["mode"] == codec.MODE_JSON:
        kw["loads"] = orjson.loads
    return codec.FrameParser(**kw)


def per_call(
    codec: ModuleType, opts: Opts, pieces: list[bytes]
) -> tuple[list[Any], tuple[Any, ...]]:
    """What every feed call returned, then the final counters and flags."""
    parser = make_parser(codec, opts)
    calls = []
    for data in pieces:
        msgs, ctrls, err = parser.feed(data)
        calls.append((msgs, ctrls, None if err is None else err.close_code))
    final = (
        parser.messages_received,
        parser.bytes_received,
        parser.decode_errors,
        parser.closed,
        parser.failed,
    )
    return calls, final


def flattened(codec: ModuleType, opts: Opts, pieces: list[bytes]) -> tuple[Any, ...]:
    """All messages, all controls, the error code, and the chunking-invariant state."""
    calls, (received, _bytes, decode_errors, closed, failed) = per_call(codec, opts, pieces)
    msgs = [m for call in calls for m in call[0]]
    ctrls = [c for call in calls for c in call[1]]
    code = next((call[2] for call in calls if call[2] is not None), None)
    return msgs, ctrls, code, received, decode_errors, closed, failed


# ------------------------------------------------------------------ tests


@SETTINGS
@given(case=scenario())
def test_any_chunking_gives_the_one_shot_result(codec: ModuleType, case: Any) -> None:
    opts, stream, chunks = case
    one_shot = flattened(codec, opts, [stream])
    assert flattened(codec, opts, split(stream, chunks)) == one_shot
    if len(stream) <= 1500:
        bytewise = [stream[i : i + 1] for i in range(len(stream))]
        assert flattened(codec, opts, bytewise) == one_shot


@SETTINGS
@given(case=scenario(inflate=True))
def test_any_chunking_gives_the_one_shot_result_deflate(codec: ModuleType, case: Any) -> None:
    opts, stream, chunks = case
    one_shot = flattened(codec, opts, [stream])
    assert flattened(codec, opts, split(stream, chunks)) == one_shot


@SETTINGS
@given(case=scenario())
def test_cpp_and_python_agree(pycodec: ModuleType, cppcodec: ModuleType, case: Any) -> None:
    opts, stream, chunks = case
    for pieces in ([stream], split(stream, chunks)):
        assert per_call(cppcodec, opts, pieces) == per_call(pycodec, opts, pieces)


@SETTINGS
@given(case=scenario(inflate=True))
def test_cpp_and_python_agree_deflate(pycodec: ModuleType, cppcodec: ModuleType, case: Any) -> None:
    opts, stream, chunks = case
    for pieces in ([stream], split(stream, chunks)):
        assert per_call(cppcodec, opts, pieces) == per_call(pycodec, opts, pieces)


@SETTINGS
@given(
    payload=st.one_of(st.binary(max_size=3000), st.text(max_size=500)),
    deflate=st.booleans(),
    nct=st.booleans(),
    bits=st.integers(8, 15),
    fragment_size=st.sampled_from([0, 1, 7, 125, 1000]),
)
def test_encoders_agree_after_unmasking(
    pycodec: ModuleType,
    cppcodec: ModuleType,
    payload: bytes | str,
    deflate: bool,
    nct: bool,
    bits: int,
    fragment_size: int,
) -> None:
    """Both encoders frame the same way and both parsers read both encoders' output.

    Compressed bytes may legitimately differ with the zlib build, so they are compared by
    what they inflate to; the frame structure (bits, lengths) must be identical.
    """
    kw = {
        "deflate": deflate,
        "deflate_no_context_takeover": nct,
        "deflate_window_bits": bits,
        "fragment_size": fragment_size,
    }
    op = 1 if isinstance(payload, str) else 2
    expected = [payload] * 2
    structure = []
    for enc_codec in (pycodec, cppcodec):
        enc = enc_codec.FrameEncoder(**kw)
        wire = enc.encode(op, payload) + enc.encode(op, payload)
        frames_ = split_client_frames(wire)
        structure.append([(b0, len(p)) for b0, _b1, _k, p in frames_] if not deflate else None)
        assert all(b1 & 0x80 for _b0, b1, _k, _p in frames_)
        assert enc.messages_sent == 2 and enc.bytes_sent == len(wire)
        server = to_server(wire, enc_codec.apply_mask)
        for dec_codec in (pycodec, cppcodec):
            parser = dec_codec.FrameParser(
                inflate=deflate, inflate_no_context_takeover=nct, max_message_size=1 << 20
            )
            assert parser.feed(server) == (expected, [], None)
    assert structure[0] == structure[1]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 15, 16, 17, 1000, 65536 + 3])
def test_apply_mask_agrees(pycodec: ModuleType, cppcodec: ModuleType, n: int) -> None:
    data = os.urandom(n)
    key = os.urandom(4)
    assert cppcodec.apply_mask(data, key) == pycodec.apply_mask(data, key)


@SETTINGS
@given(data=st.one_of(st.binary(max_size=40), st.binary(min_size=120, max_size=130)))
def test_utf8_and_close_parsing_agree(
    pycodec: ModuleType, cppcodec: ModuleType, data: bytes
) -> None:
    assert cppcodec.validate_utf8(data) == pycodec.validate_utf8(data)

    def close_result(codec: ModuleType) -> Any:
        try:
            return codec.parse_close(data)
        except Exception as exc:
            return type(exc).__name__, getattr(exc, "close_code", None)

    assert close_result(cppcodec) == close_result(pycodec)
