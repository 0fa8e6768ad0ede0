"""The sans-I/O client protocol, on both codecs: bytes in, messages and replies out."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

import pytest
from frames import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, frame

from kstlib.websocket.protocol import ClientProtocol, ProtocolState


def make(codec: ModuleType) -> ClientProtocol:
    parser = codec.FrameParser(mode=codec.MODE_TEXT)
    return ClientProtocol(parser, codec.FrameEncoder())


def unmask(wire: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of one masked client frame with a payload < 126 bytes."""
    opcode, length = wire[0] & 0x0F, wire[1] & 0x7F
    key, payload = wire[2:6], wire[6 : 6 + length]
    return opcode, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_data_messages_pass_through_with_no_news(codec: ModuleType) -> None:
    p = make(codec)
    msgs = p.receive_data(frame(OP_TEXT, "hello") + frame(OP_BINARY, b"\x01\x02"))
    assert msgs == ["hello", b"\x01\x02"]
    assert not p.has_news and not p.wants_to_send and p.state is ProtocolState.OPEN


def test_a_ping_is_answered_with_a_pong_of_the_same_payload(codec: ModuleType) -> None:
    p = make(codec)
    msgs = p.receive_data(frame(OP_TEXT, "a") + frame(OP_PING, b"xyz") + frame(OP_TEXT, "b"))
    assert msgs == ["a", "b"]
    assert p.has_news and p.wants_to_send
    (wire,) = p.data_to_send()
    assert unmask(wire) == (OP_PONG, b"xyz")
    assert not p.wants_to_send and p.data_to_send() == []


def test_only_the_awaited_pong_clears_the_wait(codec: ModuleType) -> None:
    p = make(codec)
    first, waits = p.encode_ping()
    second, waits_again = p.encode_ping()
    assert waits and not waits_again  # the first ping's pong is the one awaited
    assert p.awaiting_pong
    p.receive_data(frame(OP_PONG, unmask(second)[1]))  # an answer to the later ping
    assert p.awaiting_pong and not p.pong_matched
    p.receive_data(frame(OP_PONG, b"unsolicited"))
    assert p.awaiting_pong and not p.pong_matched
    p.receive_data(frame(OP_PONG, unmask(first)[1]))
    assert not p.awaiting_pong and p.pong_matched


def test_the_peer_close_is_echoed_with_its_code_once(codec: ModuleType) -> None:
    p = make(codec)
    p.receive_data(frame(OP_CLOSE, struct.pack("!H", 4000) + b"bye"))
    assert p.close_received == (4000, "bye") and p.state is ProtocolState.CLOSED
    (wire,) = p.data_to_send()
    assert unmask(wire) == (OP_CLOSE, struct.pack("!H", 4000))
    assert p.close_sent and p.encode_close(1000) is None  # never a second close frame


def test_no_echo_when_we_closed_first(codec: ModuleType) -> None:
    p = make(codec)
    ours = p.encode_close(1000, "done")
    assert ours is not None and unmask(ours)[0] == OP_CLOSE
    assert p.state is ProtocolState.CLOSING
    p.receive_data(frame(OP_CLOSE, struct.pack("!H", 1000)))
    assert p.close_received == (1000, "") and p.data_to_send() == []


def test_an_empty_close_payload_is_echoed_empty(codec: ModuleType) -> None:
    p = make(codec)
    p.receive_data(frame(OP_CLOSE))
    assert p.close_received == (None, "")
    assert unmask(p.data_to_send()[0]) == (OP_CLOSE, b"")


@pytest.mark.parametrize(
    ("wire", "close_code"),
    [
        (frame(OP_TEXT, b"\xff\xfe"), 1007),  # invalid UTF-8
        (frame(0x3, b"x"), 1002),  # reserved opcode
        (frame(OP_PING, b"x" * 126), 1002),  # control frame too long
    ],
)
def test_a_violation_is_kept_with_its_close_code(
    codec: ModuleType, wire: bytes, close_code: int
) -> None:
    p = make(codec)
    msgs: list[Any] = p.receive_data(frame(OP_TEXT, "before") + wire + frame(OP_TEXT, "after"))
    assert msgs == ["before"]  # what completed before the violation is kept
    assert p.error is not None and p.error.close_code == close_code
    assert p.has_news and p.state is ProtocolState.CLOSED
    assert p.receive_data(frame(OP_TEXT, "later")) == []


def test_byte_by_byte_input_gives_the_same_result(codec: ModuleType) -> None:
    p = make(codec)
    wire = frame(OP_TEXT, "split") + frame(OP_PING, b"p") + frame(OP_TEXT, "anywhere")
    msgs = [m for i in range(len(wire)) for m in p.receive_data(wire[i : i + 1])]
    assert msgs == ["split", "anywhere"]
    assert unmask(p.data_to_send()[0]) == (OP_PONG, b"p")


def test_what_a_native_read_returned_is_acted_on_as_by_receive_data(codec: ModuleType) -> None:
    """The read path that feeds the parser itself (``feed_from``) hands the controls and
    the error to ``received``: same answers, same news as ``receive_data``."""
    p = make(codec)
    wire = frame(OP_TEXT, "a") + frame(OP_PING, b"xyz") + frame(OP_CLOSE, struct.pack("!H", 1001))
    msgs, controls, error = p.parser.feed(wire)
    assert msgs == ["a"] and error is None
    p.received([], None)
    assert not p.has_news
    p.received(controls, error)
    assert p.has_news and p.close_received == (1001, "")
    assert [unmask(w) for w in p.data_to_send()] == [
        (OP_PONG, b"xyz"),
        (OP_CLOSE, struct.pack("!H", 1001)),
    ]
    broken = make(codec)
    _, _, violation = broken.parser.feed(frame(3, b"?"))
    assert violation is not None
    broken.received([], violation)
    assert broken.has_news and broken.error is violation
    assert broken.state is ProtocolState.CLOSED
