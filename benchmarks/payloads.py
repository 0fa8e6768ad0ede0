"""Benchmark payloads and their pre-encoded WebSocket frames.

Every stream the server can send is a *block* of frames encoded once (server frames are
unmasked, RFC 6455 5.1) and sent as many times as needed: a stream of ``n`` messages is
``n // len(block)`` whole blocks plus a prefix of the block ending on a frame boundary.
The same generators run in the client processes for the floors (``orjson.loads`` over the
very same payload bytes), so both sides agree byte for byte. Everything is deterministic
(fixed seeds): two runs send the same bytes.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import orjson

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8

#: The fixed masking key of the benchmark's own client frames (transport floor, server
#: tests). Masking keys only need to be unpredictable against proxies; on loopback a fixed
#: key keeps the floor's per-message cost at zero.
FLOOR_MASK = b"\x37\xfa\x21\x3d"

# Number of distinct messages in each stream's block.
TRADE_BLOCK = 300_000


def trade_events(count: int, seed: int = 1) -> list[bytes]:
    """``count`` Binance-style trade events (JSON, about 170 bytes each).

    Ids, trade and event times, prices and quantities all differ from one event to the
    next, like a live ``btcusdt@trade`` stream.
    """
    rng = random.Random(seed)
    out: list[bytes] = []
    event_time = 1_700_000_000_000
    trade_id = 3_312_000_000
    buyer_id = 22_012_000_000
    price = 37_123.45
    dumps = orjson.dumps
    for _ in range(count):
        event_time += rng.randint(0, 3)
        trade_id += 1
        buyer_id += rng.randint(1, 3)
        price = max(1.0, price + rng.uniform(-0.5, 0.5))
        out.append(
            dumps(
                {
                    "e": "trade",
                    "E": event_time,
                    "s": "BTCUSDT",
                    "t": trade_id,
                    "p": f"{price:.8f}",
                    "q": f"{rng.randint(1, 500_000) / 100_000:.8f}",
                    "b": buyer_id,
                    "a": buyer_id + rng.randint(1, 50),
                    "T": event_time - rng.randint(0, 2),
                    "m": rng.random() < 0.5,
                    "M": True,
                }
            )
        )
    return out


def binary_messages(size: int, count: int, seed: int = 2) -> list[bytes]:
    """``count`` distinct pseudo-random binary messages of ``size`` bytes."""
    rng = random.Random(seed)
    return [rng.randbytes(size) for _ in range(count)]


def frame_header(opcode: int, length: int, masked: bool) -> bytes:
    """The header of one final (FIN) frame; ``masked`` sets the MASK bit (no key)."""
    first = 0x80 | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", first, mask_bit | length)
    if length < 65536:
        return struct.pack("!BBH", first, mask_bit | 126, length)
    return struct.pack("!BBQ", first, mask_bit | 127, length)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked server frame carrying ``payload``."""
    return frame_header(opcode, len(payload), masked=False) + payload


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` (RFC 6455 5.3), using big-int arithmetic."""
    n = len(payload)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(n, "little")


def client_frame(opcode: int, payload: bytes, key: bytes = FLOOR_MASK) -> bytes:
    """One masked client frame carrying ``payload``."""
    return frame_header(opcode, len(payload), masked=True) + key + mask_payload(payload, key)


@dataclass(frozen=True)
class Block:
    """Pre-encoded frames: ``data`` and the end offset of each frame in it."""

    data: bytes
    ends: tuple[int, ...]
    payload_bytes: int

    @property
    def frames(self) -> int:
        return len(self.ends)

    def stream_bytes(self, messages: int) -> int:
        """Wire bytes of a stream of ``messages`` frames made from this block."""
        whole, rest = divmod(messages, self.frames)
        return whole * len(self.data) + (self.ends[rest - 1] if rest else 0)

    def stream_payload_bytes(self, messages: int) -> int:
        """Payload bytes of a stream of ``messages`` frames (approximate for a partial block)."""
        return messages * self.payload_bytes // self.frames


def encode_block(opcode: int, payloads: list[bytes]) -> Block:
    frames = [server_frame(opcode, p) for p in payloads]
    ends: list[int] = []
    total = 0
    for f in frames:
        total += len(f)
        ends.append(total)
    return Block(b"".join(frames), tuple(ends), sum(len(p) for p in payloads))


@dataclass(frozen=True)
class StreamKind:
    """A named payload family: how to build its messages and which opcode carries them."""

    name: str
    opcode: int
    build: Callable[[], list[bytes]]
    message_size: int  # nominal payload size in bytes (for MB/s)


STREAM_KINDS: dict[str, StreamKind] = {
    "trade": StreamKind("trade", OP_TEXT, lambda: trade_events(TRADE_BLOCK), 170),
    "bin1k": StreamKind("bin1k", OP_BINARY, lambda: binary_messages(1024, 4096), 1024),
    "bin64k": StreamKind("bin64k", OP_BINARY, lambda: binary_messages(65536, 64), 65536),
    "bin1m": StreamKind("bin1m", OP_BINARY, lambda: binary_messages(1 << 20, 8), 1 << 20),
}


def build_block(kind: str) -> Block:
    """Build and encode the block of stream ``kind`` (one of :data:`STREAM_KINDS`)."""
    spec = STREAM_KINDS[kind]
    return encode_block(spec.opcode, spec.build())


#: Distinct trade events cycled through by the timed (latency) streams.
STAMPED_TEMPLATES = 4096


class StampedEvents:
    """Trade events whose ``"E"`` field carries the server's ``time.monotonic_ns()``.

    The latency scenarios measure one-way latency across processes: the server writes the
    value of ``time.monotonic_ns()`` into ``"E"`` (a Binance trade's event time) just
    before it hands the frame to the kernel, and the client subtracts it from its own
    ``time.monotonic_ns()`` once it holds the decoded message (``CLOCK_MONOTONIC`` is one
    clock for every process of a Linux machine). Each event is about 170 bytes, like the
    throughput scenarios' trades.

    :meth:`frames` builds ``count`` consecutive frames in one buffer (a burst, or a single
    frame). Every frame is built with a stamp taken before the build; the first and the
    last frame are then re-stamped right before the write (``restamp``), so that the two
    messages whose latency is reported (first and last of a burst; the only one of a
    single frame) carry the time of the write itself, not of the build.
    """

    def __init__(self, count: int = STAMPED_TEMPLATES, seed: int = 3) -> None:
        self.parts: list[tuple[bytes, bytes]] = []
        for event in trade_events(count, seed):
            start = event.index(b'"E":') + 4
            end = event.index(b",", start)
            self.parts.append((event[:start], event[end:]))

    def frames(self, first: int, count: int, stamp: bytes) -> tuple[bytearray, list[int]]:
        """Frames ``first .. first + count - 1`` (cyclic) stamped with ``stamp`` (ASCII
        digits), and the offset of the stamp of the first and of the last frame."""
        parts = self.parts
        size = len(parts)
        chunks: list[bytes] = []
        offsets: list[int] = []
        pos = 0
        for k in range(first, first + count):
            pre, post = parts[k % size]
            header = frame_header(OP_TEXT, len(pre) + len(stamp) + len(post), masked=False)
            pos += len(header) + len(pre)
            offsets.append(pos)
            pos += len(stamp) + len(post)
            chunks += (header, pre, stamp, post)
        return bytearray(b"".join(chunks)), [offsets[0], offsets[-1]]

    @staticmethod
    def restamp(data: bytearray, offsets: list[int], stamp: bytes, width: int) -> None:
        """Overwrite the stamps at ``offsets`` (each ``width`` digits) with ``stamp``."""
        if len(stamp) == width:
            for off in offsets:
                data[off : off + width] = stamp
