"""Write the seed corpus of the libFuzzer harnesses (valid and broken frames).

    python3 fuzz/make_corpus.py OUT_DIR

creates ``OUT_DIR/parser`` (inputs of ``fuzz_parser``: option byte, chunking seed, server
byte stream) and ``OUT_DIR/inflate`` (inputs of ``fuzz_inflate``: option byte, data).
Standard library only; deterministic.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from pathlib import Path

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
TAIL = b"\x00\x00\xff\xff"


def frame(
    op: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = False,
    width: int | None = None,
) -> bytes:
    """One server frame; ``width`` forces the length encoding (7, 16 or 64 bits)."""
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    width = width or (7 if n < 126 else 16 if n < 65536 else 64)
    m = 0x80 if mask else 0
    if width == 7:
        head = bytes((b0, m | n))
    elif width == 16:
        head = bytes((b0, m | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, m | 127)) + struct.pack("!Q", n)
    if mask:
        key = b"\x12\x34\x56\x78"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def deflate(messages: list[bytes], wbits: int = 15, takeover: bool = True) -> list[bytes]:
    """Compress each message as permessage-deflate does (sync flush, tail stripped)."""
    out = []
    comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -wbits)
    for msg in messages:
        data = comp.compress(msg) + comp.flush(zlib.Z_SYNC_FLUSH)
        out.append(data[:-4] if data.endswith(TAIL) else data)
        if not takeover:
            comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -wbits)
    return out


def parser_seeds() -> list[bytes]:
    """(option byte, chunk seed, stream) triples, flattened."""
    trade = b'{"e":"trade","E":1700000000000,"s":"BTCUSDT","t":1,"p":"43251.12","q":"0.001"}'
    text = "héllo wörld € 𝄞".encode()
    close_ok = struct.pack("!H", 1000) + b"bye"
    streams: list[tuple[int, bytes]] = [
        # valid
        (0x00, frame(OP_TEXT, b"Hello")),
        (0x00, bytes.fromhex("010348656c80026c6f")),  # RFC 6455 5.7 fragmented
        (0x00, frame(OP_TEXT, trade) * 8),
        (0x00, frame(OP_TEXT, text, fin=False) + frame(OP_PING, b"p") + frame(OP_CONT, text)),
        (0x00, frame(OP_BINARY, bytes(range(256)), width=16) + frame(OP_BINARY, b"x", width=64)),
        (0x00, frame(OP_BINARY, b"\x00" * 70000)),
        (0x00, frame(OP_PONG, b"") + frame(OP_CLOSE, close_ok) + frame(OP_TEXT, b"after")),
        (0x00, frame(OP_CLOSE, b"")),
        (
            0x00,
            frame(OP_TEXT, b"", fin=False) + frame(OP_CONT, b"", fin=False) + frame(OP_CONT, b""),
        ),
        (0x04, frame(OP_BINARY, b"y" * 1000)),  # exactly the 1000-byte limit
        # broken
        (0x00, frame(OP_TEXT, b"x", rsv=0x40)),
        (0x00, frame(OP_TEXT, b"x", rsv=0x20)),
        (0x00, frame(3, b"")),
        (0x00, frame(OP_TEXT, b"x", mask=True)),
        (0x00, frame(OP_CONT, b"x")),
        (0x00, frame(OP_PING, b"x", fin=False)),
        (0x00, frame(OP_PING, b"x" * 126)),
        (0x00, frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b")),
        (0x00, bytes((0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1))),
        (0x00, frame(OP_CLOSE, b"\x03")),
        (0x00, frame(OP_CLOSE, struct.pack("!H", 1005))),
        (0x00, frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xc0\x80")),
        (0x00, frame(OP_TEXT, b"ok\xed\xa0\x80")),
        (0x00, frame(OP_TEXT, b"\xf4\x90\x80\x80")),
        (0x00, frame(OP_TEXT, b"\xe2\x82", fin=False) + frame(OP_CONT, b"\xac")),
        (0x00, frame(OP_TEXT, b"\xe2\x82")),
        (0x08, frame(OP_BINARY, b"z" * 101)),
        (0x08, frame(OP_BINARY, b"z" * 60, fin=False) + frame(OP_CONT, b"z" * 41)),
    ]
    # permessage-deflate
    msgs = [trade, text, b"", trade, b"\x00" * 5000]
    comp = deflate(msgs)
    streams.append((0x01, b"".join(frame(OP_TEXT, c, rsv=0x40) for c in comp[:4])))
    streams.append(
        (0x03, b"".join(frame(OP_TEXT, c, rsv=0x40) for c in deflate(msgs[:4], takeover=False)))
    )
    c = comp[0]
    streams.append(
        (
            0x01,
            frame(OP_TEXT, c[:5], rsv=0x40, fin=False)
            + frame(OP_PING, b"")
            + frame(OP_CONT, c[5:]),
        )
    )
    streams.append((0x05, frame(OP_BINARY, comp[4], rsv=0x40)))  # inflates past 1000 bytes
    streams.append((0x09, frame(OP_TEXT, deflate([b"ab\xff" + b"a" * 200])[0], rsv=0x40)))
    bad = bytearray(comp[0])
    bad[len(bad) // 2] ^= 0xFF
    streams.append((0x01, frame(OP_TEXT, bytes(bad), rsv=0x40)))
    final = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    bfinal = final.compress(b"Hello") + final.flush(zlib.Z_FINISH) + b"\x00"
    streams.append((0x01, frame(OP_TEXT, bfinal, rsv=0x40) + frame(OP_TEXT, comp[1], rsv=0x40)))
    streams.append((0x01, frame(OP_PING, b"x", rsv=0x40)))
    streams.append((0x01, frame(OP_TEXT, c, rsv=0x40, fin=False) + frame(OP_CONT, b"x", rsv=0x40)))
    out = []
    for i, (opts, stream) in enumerate(streams):
        out.append(bytes((opts, i & 0xFF)) + stream)
        out.append(bytes((opts, (i * 7 + 3) & 0xFF)) + stream[: max(1, len(stream) // 2)])
    return out


def inflate_seeds() -> list[bytes]:
    texts = [b"", b"hello", b"hello hello hello hello", bytes(range(256)) * 4, b"\x00" * 3000]
    out = []
    for opts in (0x00, 0x01, 0x0E, 0x10, 0x20, 0x30, 0x40, 0x80, 0xC1):
        for t in texts:
            out.append(bytes((opts,)) + b"\xff".join([t, t[::-1], t]))
        out.append(bytes((opts,)) + deflate([b"hello hello", b"hello"])[0])
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        out.append(bytes((opts,)) + c.compress(b"\x00" * 100000) + c.flush(zlib.Z_SYNC_FLUSH))
        out.append(bytes((opts,)) + b"\xff\xff\xff\xff\x00\x01")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[1])
    for name, seeds in (("parser", parser_seeds()), ("inflate", inflate_seeds())):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            (d / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        print(f"{d}: {len(seeds)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
