"""What the codecs hold in memory: a hostile fragmentation of one message (it cost the
pure-Python codec about 84 bytes of objects per fragment), and the payload-byte counter
the inbox's byte budget reads."""

from __future__ import annotations

import tracemalloc
from types import ModuleType

import pytest
from frames import OP_BINARY, OP_TEXT, Compressor, compressed_message, fragments, frame, join

FRAGMENTS = 200_000  # a legal 200 KB message in 1-byte frames


@pytest.mark.parametrize(("opcode", "mode_name"), [(0x2, "MODE_BYTES"), (0x1, "MODE_TEXT")])
def test_a_message_in_one_byte_fragments_is_assembled_in_one_buffer(
    pycodec: ModuleType, opcode: int, mode_name: str
) -> None:
    wire = (
        bytes([opcode, 1, 0x41]) + bytes([0x00, 1, 0x41]) * (FRAGMENTS - 2) + bytes([0x80, 1, 0x41])
    )
    parser = pycodec.FrameParser(mode=getattr(pycodec, mode_name), max_message_size=1 << 24)
    view = memoryview(wire)
    got: list[object] = []
    tracemalloc.start()
    try:
        for i in range(0, len(wire), 65536):
            msgs, _ctrl, err = parser.feed(view[i : i + 65536])
            assert err is None
            got += msgs
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(got) == 1 and len(got[0]) == FRAGMENTS  # type: ignore[arg-type]
    # the message itself (twice while the buffer becomes bytes or str) plus slack;
    # a list of 1-byte pieces needs over 40 MB
    assert peak < 8 * FRAGMENTS, f"peak {peak / 1e6:.1f} MB"


def test_payload_bytes_counts_what_the_messages_hold(codec: ModuleType) -> None:
    """The counter the inbox's byte budget reads: payload bytes after decompression, for
    whole, fragmented and compressed messages alike (both codecs)."""
    comp = Compressor()
    parser = codec.FrameParser(mode=codec.MODE_BYTES, inflate=True)
    wire = (
        frame(OP_BINARY, b"abc")
        + join(fragments(OP_TEXT, "defgh", [2, 2]))
        + compressed_message(comp, OP_BINARY, b"x" * 10_000, [3])
    )
    msgs, _ctrl, err = parser.feed(wire)
    assert err is None and [len(m) for m in msgs] == [3, 5, 10_000]
    assert parser.payload_bytes == 10_008
    assert parser.bytes_received == len(wire) < parser.payload_bytes  # wire bytes differ
