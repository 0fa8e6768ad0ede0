"""Regression tests for bugs found by fuzzing the C++ codec (``scripts/fuzz.sh``).

Each test pins one input a fuzzer reported, and runs against both codecs (the ``codec``
fixture of ``conftest.py``): the reference codec shows what the right answer is.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from frames import OP_BINARY, OP_TEXT, split_client_frames, to_server


@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_consecutive_empty_deflate_messages(codec: ModuleType, no_context_takeover: bool) -> None:
    """fuzz_inflate, input ``00 ff ff`` (three empty messages, compressed in a row).

    zlib emits nothing for a Z_SYNC_FLUSH that follows another one with no new input, so
    the C++ encoder sent the second empty message as an empty payload, which leaves the
    peer's inflater inside a stored-block header and corrupts the next message. Every
    empty message must compress to the single byte 00, and the stream must inflate back.
    """
    enc = codec.FrameEncoder(deflate=True, deflate_no_context_takeover=no_context_takeover)
    messages = [b"", b"", b"hello " * 20, b"", b"", b"hello again"]
    wires = [enc.encode(OP_BINARY, m) for m in messages]
    for m, wire in zip(messages, wires, strict=True):
        ((b0, _b1, _key, _payload),) = split_client_frames(wire)
        assert b0 == 0xC2  # FIN + RSV1 + binary: every data message is compressed
        if not m:
            assert to_server(wire)[2:] == b"\x00"
    parser = codec.FrameParser(
        mode=codec.MODE_BYTES, inflate=True, inflate_no_context_takeover=no_context_takeover
    )
    got, controls, err = parser.feed(b"".join(to_server(w) for w in wires))
    assert err is None
    assert controls == []
    assert got == messages


def test_consecutive_empty_deflate_text_messages_round_trip(codec: ModuleType) -> None:
    """The same with text messages given as ``str`` (decoded in MODE_TEXT)."""
    enc = codec.FrameEncoder(deflate=True)
    messages = ["", "", "é" * 10, "", "fin"]
    stream = b"".join(to_server(enc.encode(OP_TEXT, m)) for m in messages)
    parser = codec.FrameParser(mode=codec.MODE_TEXT, inflate=True)
    got: list[object] = []
    for i in range(len(stream)):  # one byte at a time
        m, _c, err = parser.feed(stream[i : i + 1])
        assert err is None
        got += m
    assert got == messages


@pytest.mark.parametrize("cut", [None, 1, 2, 3, 5])
def test_pings_then_empty_compressed_text(codec: ModuleType, cut: int | None) -> None:
    """fuzz_parser, input ``37 24 89 00 89 00 81 00`` (inflate, no context takeover,
    1000-byte limit): two empty pings, then an empty uncompressed text message.

    The harness first compared messages and controls as one merged sequence, which
    depends on the chunking by design (they are two separate lists); the codec itself
    was right. Pinned here: same two lists for every chunking.
    """
    data = bytes.fromhex("890089008100")
    parser = codec.FrameParser(
        inflate=True, inflate_no_context_takeover=True, max_message_size=1000
    )
    pieces = [data] if cut is None else [data[i : i + cut] for i in range(0, len(data), cut)]
    messages: list[object] = []
    controls: list[tuple[int, bytes]] = []
    for piece in pieces:
        m, c, err = parser.feed(piece)
        assert err is None
        messages += m
        controls += c
    assert messages == [""]
    assert controls == [(9, b""), (9, b"")]
    assert parser.messages_received == 1
