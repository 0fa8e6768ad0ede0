"""``FrameParser.feed_from(fd, buf)``: one non-blocking read of a real socket, then
``feed``, in one call; run against both codecs (``codec`` fixture) over a socketpair."""

from __future__ import annotations

import errno
import select
import socket
import struct
from collections.abc import Iterator
from types import ModuleType

import pytest
from frames import OP_BINARY, OP_PING, OP_TEXT, close, frame

from kstlib.websocket.exceptions import WebSocketProtocolError


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """``(ours, peer)``: ours is non-blocking, as a connection's socket is."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


def test_a_read_is_framed_and_counted(
    codec: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    wire = frame(OP_TEXT, b"hello") + frame(OP_BINARY, b"\x00\x01") + frame(OP_PING, b"p")
    peer.sendall(wire)
    parser = codec.FrameParser()
    buf = bytearray(4096)
    assert parser.feed_from(ours.fileno(), buf) == (
        ["hello", b"\x00\x01"],
        [(OP_PING, b"p")],
        None,
        len(wire),
        7,
    )
    assert parser.payload_bytes == 7
    assert parser.bytes_received == len(wire)


def test_nothing_to_read_is_none_not_an_exception(
    codec: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, _peer = pair
    assert codec.FrameParser().feed_from(ours.fileno(), bytearray(64)) is None


def test_a_frame_split_over_reads_and_a_small_buffer(
    codec: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    """At most ``len(buf)`` bytes per read; what is kept survives the buffer's reuse."""
    ours, peer = pair
    wire = frame(OP_TEXT, b"x" * 100)
    peer.sendall(wire)
    parser = codec.FrameParser(mode=codec.MODE_TEXT)
    buf = bytearray(40)
    got: list[object] = []
    reads = []
    while (out := parser.feed_from(ours.fileno(), buf)) is not None:
        messages, controls, error, nread, payload = out
        assert controls == [] and error is None
        got += messages
        reads.append((nread, payload))
        buf[:] = b"\xaa" * len(buf)  # scribble over it, as the next read would
    assert got == ["x" * 100]
    assert [n for n, _ in reads] == [40, 40, len(wire) - 80]
    assert [p for _, p in reads] == [0, 0, 100]


def test_end_of_stream_reads_zero(
    codec: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    peer.sendall(frame(OP_TEXT, b"last") + close(1000))
    peer.close()
    parser = codec.FrameParser(mode=codec.MODE_BYTES)
    messages, controls, error, nread, _ = parser.feed_from(ours.fileno(), bytearray(256))
    assert (messages, controls, error) == ([b"last"], [(8, b"\x03\xe8")], None)
    assert nread > 0
    assert parser.feed_from(ours.fileno(), bytearray(256)) == ([], [], None, 0, 0)


def test_a_violation_is_returned_then_kept(
    codec: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    peer.sendall(frame(OP_TEXT, b"ok") + frame(3, b"??"))  # opcode 3 is reserved
    parser = codec.FrameParser()
    buf = bytearray(256)
    messages, controls, error, _, payload = parser.feed_from(ours.fileno(), buf)
    assert messages == ["ok"] and controls == [] and payload == 2
    assert isinstance(error, WebSocketProtocolError) and error.close_code == 1002
    peer.sendall(frame(OP_TEXT, b"more"))
    later = parser.feed_from(ours.fileno(), buf)
    assert later is not None
    assert later[:3] == ([], [], error) and later[4] == 0


def test_a_reset_connection_raises_oserror(codec: ModuleType) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    ours.setblocking(False)
    try:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # linger 0: a reset, not an end of stream
        poller = select.poll()
        poller.register(ours, select.POLLIN)
        assert poller.poll(5000)
        with pytest.raises(ConnectionResetError):
            codec.FrameParser().feed_from(ours.fileno(), bytearray(64))
    finally:
        ours.close()


def test_a_closed_descriptor_raises_ebadf(codec: ModuleType) -> None:
    s = socket.socket()
    fd = s.detach()
    socket.socket(fileno=fd).close()
    with pytest.raises(OSError) as err:
        codec.FrameParser().feed_from(fd, bytearray(64))
    assert err.value.errno == errno.EBADF


def test_a_read_only_buffer_is_refused(
    codec: ModuleType, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    peer.sendall(frame(OP_TEXT, b"a"))
    with pytest.raises(BufferError):
        codec.FrameParser().feed_from(ours.fileno(), b"read-only buffer")
