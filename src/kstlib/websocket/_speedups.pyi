"""Types of the C++ codec built from ``csrc/bindings.cpp``.

Behaviour is documented in :mod:`kstlib.websocket.codec`; ``_pycodec`` has the same
interface. Inputs typed ``ReadableBuffer`` accept any buffer-protocol object.
"""

from collections.abc import Callable
from typing import Any, Final

from _typeshed import ReadableBuffer

from kstlib.websocket.exceptions import WebSocketProtocolError

OP_CONTINUATION: Final = 0
OP_TEXT: Final = 1
OP_BINARY: Final = 2
OP_CLOSE: Final = 8
OP_PING: Final = 9
OP_PONG: Final = 10
MODE_BYTES: Final = 0
MODE_TEXT: Final = 1
MODE_JSON: Final = 2
DEFAULT_MAX_MESSAGE_SIZE: Final = 16777216

class FrameParser:
    def __init__(
        self,
        *,
        max_message_size: int = 16777216,
        mode: int = 1,
        loads: Callable[[bytes], Any] | None = None,
        inflate: bool = False,
        inflate_no_context_takeover: bool = False,
        inflate_window_bits: int = 15,
    ) -> None: ...
    def feed(
        self, data: ReadableBuffer
    ) -> tuple[list[Any], list[tuple[int, bytes]], WebSocketProtocolError | None]: ...
    def feed_from(
        self, fd: int, buf: bytearray
    ) -> (
        tuple[list[Any], list[tuple[int, bytes]], WebSocketProtocolError | None, int, int] | None
    ): ...
    @property
    def messages_received(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def payload_bytes(self) -> int: ...
    @property
    def decode_errors(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def failed(self) -> bool: ...

class FrameEncoder:
    def __init__(
        self,
        *,
        deflate: bool = False,
        deflate_no_context_takeover: bool = False,
        deflate_window_bits: int = 15,
        fragment_size: int = 0,
    ) -> None: ...
    def encode(self, opcode: int, payload: ReadableBuffer | str) -> bytes: ...
    def encode_close(self, code: int | None = None, reason: str | None = "") -> bytes: ...
    @property
    def messages_sent(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...

def apply_mask(data: ReadableBuffer, key: ReadableBuffer) -> bytes: ...
def validate_utf8(data: ReadableBuffer) -> bool: ...
def parse_close(payload: ReadableBuffer) -> tuple[int | None, str]: ...
