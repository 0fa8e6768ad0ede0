"""The server's answer to the opening handshake, read without I/O and within limits.

:mod:`kstlib.websocket.transport` feeds the bytes it receives to :class:`ResponseReader`
(the Upgrade response, or an HTTP proxy's answer to ``CONNECT``) and, for a refused
handshake, to :class:`ErrorBody`; nothing here touches a socket.

* :class:`ResponseReader`: ``feed(bytes)`` returns ``None`` until the head is complete,
  then the :class:`Response`; the bytes received past the head are in ``leftover``.
* :class:`ErrorBody`: the body of a non-``101`` response, kept up to
  :data:`MAX_ERROR_BODY` bytes (``Content-Length``, chunked or until EOF).
* The errors a response can cause: :class:`HandshakeError` (protocol or limit broken),
  :class:`HTTPStatusError` (a status other than ``101``; the engine reads its
  ``status_code`` and ``resp_headers`` from the cause of a connection error),
  :class:`RedirectError`, :class:`ProxyError`.

Limits (a response that breaks one fails with :class:`HandshakeError` as soon as it is
seen; nothing is buffered beyond them): :data:`MAX_LINE_LENGTH` = 8192 bytes per line
(line ending excluded) and :data:`MAX_NUM_HEADERS` = 128 header lines, as
python-websockets; :data:`MAX_HEAD_SIZE` = 65536 bytes for the whole head (128 lines of
8 KiB would be 1 MiB, more than any real handshake needs; h11 allows 16 KiB, large CDN
cookies fit in 64 KiB); :data:`MAX_ERROR_BODY` = 4096 bytes of an error body kept (the
rest is never read).

Every name is re-exported by :mod:`kstlib.websocket.handshake`, the place to import
them from.

Thread-safety: immutable values and errors; a :class:`ResponseReader` or
:class:`ErrorBody` belongs to one caller (no lock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kstlib.websocket._http import is_token

__all__ = [
    "MAX_ERROR_BODY",
    "MAX_HEAD_SIZE",
    "MAX_LINE_LENGTH",
    "MAX_NUM_HEADERS",
    "ErrorBody",
    "HTTPStatusError",
    "HandshakeError",
    "ProxyError",
    "RedirectError",
    "Response",
    "ResponseReader",
]

#: Longest status or header line accepted, in bytes, without its line ending.
MAX_LINE_LENGTH = 8192
#: Most header lines accepted in one response.
MAX_NUM_HEADERS = 128
#: Longest response head accepted, in bytes: status line, headers, line ends, empty line.
MAX_HEAD_SIZE = 65536
#: Bytes of a refused handshake's body kept (for the error message); the rest is not read.
MAX_ERROR_BODY = 4096

_STATUS_RE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: (.*))?")
_BAD_VALUE_BYTES = re.compile(rb"[\x00\r\n]")


# --------------------------------------------------------------------------- errors


class HandshakeError(Exception):
    """The server's (or proxy's) response broke the protocol or one of the limits."""


class HTTPStatusError(HandshakeError):
    """The server answered the Upgrade request with a status other than ``101``.

    ``status_code``, ``reason``, ``resp_headers`` (lower-cased names, last value of a
    repeated header), ``body`` (at most :data:`MAX_ERROR_BODY` bytes) and ``location``
    (the ``Location`` header or None). The engine reads ``status_code`` (final
    statuses) and ``resp_headers`` (``Retry-After``) from the cause of a connection
    error.
    """

    def __init__(self, response: Response, body: bytes = b"", message: str | None = None) -> None:
        self.status_code = response.status
        self.reason = response.reason
        self.resp_headers = response.header_dict()
        self.body = body
        self.location = response.get("location")
        super().__init__(message if message is not None else self._describe())

    def _describe(self) -> str:
        text = f"HTTP {self.status_code} {self.reason}".rstrip()
        if self.body:
            snippet = " ".join(self.body.decode("utf-8", "replace").split())
            if len(snippet) > 200:
                snippet = snippet[:197] + "..."
            text += f" (body: {snippet!r})"
        return text


class RedirectError(HTTPStatusError):
    """A redirect that was not followed (policy, another origin, too many, no target)."""


class ProxyError(HandshakeError):
    """The HTTP proxy refused the ``CONNECT`` tunnel or answered it wrongly."""


# --------------------------------------------------------------------------- response


@dataclass(frozen=True)
class Response:
    """A response head: status, reason phrase, headers (names lower-cased, in order)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def get(self, name: str) -> str | None:
        """The last value of header ``name``, or None."""
        values = self.get_all(name)
        return values[-1] if values else None

    def header_dict(self) -> dict[str, str]:
        """Lower-cased name -> value; a repeated header keeps its last value."""
        return dict(self.headers)


class ResponseReader:
    """Reads one HTTP/1.x response head from the bytes fed to it, within the limits.

    ``feed(data)`` returns None while the head is incomplete and the :class:`Response`
    once its empty line arrived; the bytes after that line are then in ``leftover``
    (for a ``101``: the first WebSocket frames). A line longer than ``max_line``, more
    than ``max_headers`` headers, a head longer than ``max_head`` bytes or a malformed
    line raise :class:`HandshakeError` as soon as they are seen, so a server cannot make
    the reader buffer more than about ``max_head`` bytes. Lines may end in CRLF or LF;
    an obsolete folded line (starting with a space or tab) continues the previous value.
    """

    def __init__(
        self,
        *,
        max_line: int = MAX_LINE_LENGTH,
        max_headers: int = MAX_NUM_HEADERS,
        max_head: int = MAX_HEAD_SIZE,
        what: str = "response",
    ) -> None:
        self._max_line = max_line
        self._max_headers = max_headers
        self._max_head = max_head
        self._what = what
        self._buf = bytearray()
        self._scan = 0  # where to look for the next line end in _buf
        self._size = 0  # bytes of the head consumed so far
        self._status: tuple[int, str] | None = None
        self._headers: list[tuple[str, str]] = []
        self.response: Response | None = None
        self.leftover = b""

    @property
    def received(self) -> int:
        """Bytes of the head received so far."""
        return self._size + len(self._buf)

    def feed(self, data: bytes) -> Response | None:
        if self.response is not None:
            raise RuntimeError("the response head is already complete")
        buf = self._buf
        buf += data
        start = 0
        try:
            while True:
                end = buf.find(b"\n", max(start, self._scan))
                if end < 0:
                    self._check_partial(len(buf) - start)
                    self._scan = len(buf)
                    return None
                line = bytes(buf[start:end])
                self._size += end + 1 - start
                start = end + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > self._max_line:
                    raise HandshakeError(self._too_long())
                if self._size > self._max_head:
                    raise HandshakeError(self._too_big())
                if self._status is None:
                    self._status = self._parse_status(line)
                elif not line:
                    self.leftover = bytes(buf[start:])
                    buf.clear()
                    status, reason = self._status
                    self.response = Response(status, reason, tuple(self._headers))
                    return self.response
                else:
                    self._add_header(line)
        finally:
            if self.response is None and start:
                del buf[:start]
                self._scan = max(0, self._scan - start)

    def eof(self) -> None:
        """The peer closed before the head was complete: raises :class:`HandshakeError`."""
        raise HandshakeError(
            f"the connection closed before the end of the {self._what} head "
            f"({self.received} bytes received)"
        )

    def _check_partial(self, pending: int) -> None:
        if pending > self._max_line + 1:  # + 1: the CR of a CRLF may be there already
            raise HandshakeError(self._too_long())
        if self._size + pending > self._max_head:
            raise HandshakeError(self._too_big())

    def _too_long(self) -> str:
        return f"a {self._what} line is longer than {self._max_line} bytes"

    def _too_big(self) -> str:
        return f"the {self._what} head is longer than {self._max_head} bytes"

    def _parse_status(self, line: bytes) -> tuple[int, str]:
        match = _STATUS_RE.fullmatch(line)
        if match is None:
            raise HandshakeError(f"not an HTTP/1.x {self._what}: {_show(line)}")
        reason = (match.group(2) or b"").decode("latin-1")
        return int(match.group(1)), reason.strip()

    def _add_header(self, line: bytes) -> None:
        if line[:1] in (b" ", b"\t"):  # obs-fold (RFC 9112 section 5.2): one SP
            if not self._headers:
                raise HandshakeError(f"a folded header line starts the headers: {_show(line)}")
            name, value = self._headers[-1]
            self._headers[-1] = (name, f"{value} {line.strip().decode('latin-1')}".strip())
            return
        if len(self._headers) >= self._max_headers:
            raise HandshakeError(f"the {self._what} has more than {self._max_headers} headers")
        raw_name, sep, raw_value = line.partition(b":")
        name = raw_name.decode("latin-1")
        if not sep or not is_token(name):
            raise HandshakeError(f"invalid header line in the {self._what}: {_show(line)}")
        if _BAD_VALUE_BYTES.search(raw_value):
            raise HandshakeError(f"invalid header value in the {self._what}: {_show(line)}")
        self._headers.append((name.lower(), raw_value.strip(b" \t").decode("latin-1")))


def _show(line: bytes) -> str:
    text = repr(line[:80])
    return text + ("..." if len(line) > 80 else "")


class ErrorBody:
    """The body of a non-``101`` response, kept up to ``limit`` bytes.

    ``feed(data)`` returns True once nothing more is wanted: the ``Content-Length`` (or
    ``limit``) reached, the last chunk of a chunked body seen, or ``limit`` bytes kept.
    A body without length ends at EOF (the caller stops at EOF or its own deadline).
    ``body`` is what was kept (chunked bodies decoded, best effort).
    """

    def __init__(self, response: Response, limit: int = MAX_ERROR_BODY) -> None:
        self._limit = limit
        self._raw = bytearray()
        encodings = ",".join(response.get_all("transfer-encoding")).lower()
        self._chunked = encodings.rstrip().endswith("chunked")
        self._length: int | None = None
        length = response.get("content-length")
        if not self._chunked and length is not None:
            text = length.strip()
            self._length = int(text) if text.isdigit() else 0
        no_body = response.status in (204, 304) or 100 <= response.status < 200
        self.done = no_body or self._length == 0

    @property
    def body(self) -> bytes:
        if self._chunked:
            return _dechunk(bytes(self._raw))[0][: self._limit]
        if self._length is not None:
            return bytes(self._raw[: min(self._length, self._limit)])
        return bytes(self._raw[: self._limit])

    def feed(self, data: bytes) -> bool:
        if self.done:
            return True
        cap = 2 * self._limit + 1024 if self._chunked else self._limit
        self._raw += data[: max(0, cap - len(self._raw))]
        if self._chunked:
            body, complete = _dechunk(bytes(self._raw))
            self.done = complete or len(body) >= self._limit or len(self._raw) >= cap
        elif self._length is not None:
            self.done = len(self._raw) >= min(self._length, self._limit)
        else:
            self.done = len(self._raw) >= self._limit
        return self.done


def _dechunk(raw: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body as far as it goes: ``(data, complete)``; garbage ends it."""
    out = bytearray()
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            return bytes(out), False
        size_text = raw[pos:end].split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            return bytes(out), True
        size = int(size_text, 16)
        if size == 0:
            return bytes(out), True
        start = end + 1
        out += raw[start : start + size]
        if len(raw) < start + size + 2:
            return bytes(out), False
        pos = start + size + (2 if raw[start + size : start + size + 2] == b"\r\n" else 1)
