"""The opening handshake without I/O: the request we send, the response we read, limits.

:mod:`kstlib.websocket.transport` does the I/O (sockets, proxies, TLS, the deadline) and
calls these pure pieces:

* :class:`Target`: a ``ws://`` / ``wss://`` URL split into what the connection needs
  (host, port, request target, origin).
* :func:`build_request`: the HTTP Upgrade request (``Sec-WebSocket-Key``, the caller's
  headers, subprotocols, the permessage-deflate offer).
* :class:`ResponseReader`: reads a response head incrementally (``feed(bytes)`` returns
  ``None`` until the head is complete, then the :class:`Response`; the bytes received
  past the head are in ``leftover``), within the limits below.
* :class:`ErrorBody`: the body of a refused handshake, kept up to :data:`MAX_ERROR_BODY`
  bytes for the error message.
* :func:`check_upgrade`: the checks RFC 6455 section 4.1 requires of a ``101`` response
  (``Upgrade``, ``Connection``, ``Sec-WebSocket-Accept``, the subprotocol, the
  extensions) and the permessage-deflate parameters (RFC 7692).
* :func:`redirect_url` and :meth:`Target.same_origin`: where a redirect leads and whether
  it leaves the origin.

Limits on what a server may send (a response that breaks one fails the handshake with
:class:`HandshakeError`; nothing is buffered beyond them):

* :data:`MAX_LINE_LENGTH` = 8192 bytes per line (status line or one header line, line
  ending excluded), as python-websockets;
* :data:`MAX_NUM_HEADERS` = 128 header lines, as python-websockets;
* :data:`MAX_HEAD_SIZE` = 65536 bytes for the whole head (status line, headers, line
  endings, the empty line): 128 lines of 8 KiB would be 1 MiB, more than any real
  handshake needs (h11 allows 16 KiB; large cookies from CDNs fit in 64 KiB);
* :data:`MAX_ERROR_BODY` = 4096 bytes of the body of a non-``101`` response are kept
  (the rest is never read);
* :data:`MAX_REDIRECTS` = 3 redirects followed (by the transport, same origin only).

Thread-safety: pure functions, immutable values; a :class:`ResponseReader` or
:class:`ErrorBody` belongs to one caller.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from kstlib.websocket._http import SINGLE_HEADERS, check_headers, is_token
from kstlib.websocket.exceptions import WebSocketConnectionError

__all__ = [
    "MAX_ERROR_BODY",
    "MAX_HEAD_SIZE",
    "MAX_LINE_LENGTH",
    "MAX_NUM_HEADERS",
    "MAX_REDIRECTS",
    "REDIRECT_STATUSES",
    "DeflateParams",
    "ErrorBody",
    "HTTPStatusError",
    "HandshakeError",
    "ProxyError",
    "RedirectError",
    "Response",
    "ResponseReader",
    "Target",
    "accept_value",
    "build_deflate_offer",
    "build_request",
    "check_upgrade",
    "new_key",
    "parse_deflate_response",
    "redirect_url",
    "split_headers",
]

#: Longest status or header line accepted, in bytes, without its line ending.
MAX_LINE_LENGTH = 8192
#: Most header lines accepted in one response.
MAX_NUM_HEADERS = 128
#: Longest response head accepted, in bytes: status line, headers, line ends, empty line.
MAX_HEAD_SIZE = 65536
#: Bytes of a refused handshake's body kept (for the error message); the rest is not read.
MAX_ERROR_BODY = 4096
#: Redirects followed at most, each to the same origin (scheme, host, port).
MAX_REDIRECTS = 3
#: Statuses that redirect (RFC 9110 section 15.4); other 3xx are errors like any status.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DEFAULT_PORTS = {False: 80, True: 443}
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


# --------------------------------------------------------------------------- target


@dataclass(frozen=True)
class Target:
    """Where one connection attempt goes.

    ``host`` is the host name as :func:`urllib.parse.urlsplit` reads it (lower case,
    an IPv6 address without brackets), ``port`` the port (80 / 443 by default),
    ``resource`` the request target (path and query, non-ASCII and spaces
    percent-encoded, ``/`` when empty), ``secure`` True for ``wss://``, ``url`` the URL
    as given (relative redirects are resolved against it; never shown unredacted).
    """

    secure: bool
    host: str
    port: int
    resource: str
    url: str = field(repr=False)  # as given: may hold a password

    @classmethod
    def parse(cls, url: str) -> Target:
        """Split a ``ws://`` or ``wss://`` URL; ``ValueError`` for anything else."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("ws", "wss"):
            raise ValueError(f"expected a ws:// or wss:// URL, got scheme {parts.scheme!r}")
        host = parts.hostname
        if not host:
            raise ValueError("the URL has no host")
        secure = scheme == "wss"
        port = parts.port or _DEFAULT_PORTS[secure]
        resource = parts.path or "/"
        if parts.query:
            resource += "?" + parts.query
        resource = "".join(c if "!" <= c <= "~" else quote(c, safe="") for c in resource)
        _ascii_host(host)  # an invalid international name fails here, before any I/O
        return cls(secure=secure, host=host, port=port, resource=resource, url=url)

    @property
    def origin(self) -> tuple[bool, str, int]:
        """``(secure, host, port)``: two targets with the same origin share credentials."""
        return (self.secure, self.host, self.port)

    def same_origin(self, other: Target) -> bool:
        return self.origin == other.origin

    @property
    def authority(self) -> str:
        """``host[:port]`` as the ``Host`` header writes it (port omitted when default)."""
        host = _ascii_host(self.host)
        return host if self.port == _DEFAULT_PORTS[self.secure] else f"{host}:{self.port}"

    @property
    def host_port(self) -> str:
        """``host:port`` with the port always present (a proxy's ``CONNECT`` target)."""
        return f"{_ascii_host(self.host)}:{self.port}"


def _ascii_host(host: str) -> str:
    """``host`` as written on the wire: IDNA for a name, brackets for an IPv6 address."""
    if ":" in host:
        return f"[{host}]"
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        return host.encode("idna").decode("ascii")
    return host


def redirect_url(current: str, location: str) -> str:
    """The absolute ``ws://`` / ``wss://`` URL a ``Location`` leads to from ``current``.

    Relative locations are resolved against ``current``; ``http`` / ``https`` become
    ``ws`` / ``wss`` (the same origin, RFC 6455 section 3); the fragment is dropped. A
    location that cannot be a WebSocket URL raises ``ValueError``.
    """
    location = location.strip()
    if not location or any(c in location for c in "\r\n\x00"):
        raise ValueError("empty or invalid Location")
    parts = urlsplit(urljoin(current, location))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    url = urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))
    Target.parse(url)
    return url


# --------------------------------------------------------------------------- request


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_value(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def split_headers(
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
) -> tuple[list[str], dict[str, str]]:
    """Check the caller's headers and split them into header lines and the single ones.

    Returns ``(lines, single)``: ``lines`` are ``"Name: value"`` strings in order,
    ``single`` maps ``host`` / ``origin`` / ``cookie`` (lower case) to the value that
    replaces our default (or adds the cookie). The checks are
    :func:`kstlib.websocket._http.check_headers` (``ValueError``); values are stripped.
    """
    if headers is None:
        return [], {}
    lines: list[str] = []
    single: dict[str, str] = {}
    for name, value in check_headers(headers):
        if name.lower() in SINGLE_HEADERS:
            single[name.lower()] = value.strip()
        else:
            lines.append(f"{name}: {value.strip()}")
    return lines, single


def build_request(
    target: Target,
    key: str,
    *,
    lines: Sequence[str] = (),
    single: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] = (),
    extensions: str | None = None,
) -> bytes:
    """The Upgrade request for ``target`` (RFC 6455 section 4.1), encoded.

    ``Host`` and ``Origin`` (``http[s]://`` + the authority, as websocket-client sent
    it) take their values from ``single`` when given there; ``Cookie`` is sent only
    when given. ``lines`` come after the handshake's own headers, in order.
    """
    single = single or {}
    origin_scheme = "https" if target.secure else "http"
    out = [
        f"GET {target.resource} HTTP/1.1",
        f"Host: {single.get('host', target.authority)}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Origin: {single.get('origin', f'{origin_scheme}://{target.authority}')}",
    ]
    if subprotocols:
        out.append(f"Sec-WebSocket-Protocol: {','.join(subprotocols)}")
    if extensions:
        out.append(f"Sec-WebSocket-Extensions: {extensions}")
    out.extend(lines)
    if "cookie" in single:
        out.append(f"Cookie: {single['cookie']}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8")


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


# --------------------------------------------------------------------------- validation


def check_upgrade(
    response: Response, key: str, offered: Sequence[str], compression: bool
) -> tuple[str | None, DeflateParams | None]:
    """Check a ``101`` response to the request made with ``key``; return
    ``(subprotocol, deflate)``.

    RFC 6455 section 4.1: ``Upgrade`` lists ``websocket`` and ``Connection`` lists
    ``upgrade`` (case-insensitive), ``Sec-WebSocket-Accept`` appears once and matches
    ``key``; the subprotocol, if any, is one of ``offered`` (returned spelled as
    offered); extensions are accepted only if offered (``compression``) and must be a
    valid permessage-deflate response. Raises :class:`HandshakeError`.
    """
    prefix = "invalid handshake response"
    if "websocket" not in _tokens(response.get_all("upgrade")):
        raise HandshakeError(f"{prefix}: no 'Upgrade: websocket' header")
    if "upgrade" not in _tokens(response.get_all("connection")):
        raise HandshakeError(f"{prefix}: no 'Connection: Upgrade' header")
    accepts = response.get_all("sec-websocket-accept")
    if len(accepts) != 1:
        raise HandshakeError(f"{prefix}: {len(accepts)} Sec-WebSocket-Accept headers, not 1")
    if accepts[0].strip() != accept_value(key):
        raise HandshakeError(f"{prefix}: Sec-WebSocket-Accept does not match the key we sent")
    try:
        subprotocol = _selected_subprotocol(response.get_all("sec-websocket-protocol"), offered)
        deflate = _accepted_deflate(response.get_all("sec-websocket-extensions"), compression)
    except ValueError as exc:
        raise HandshakeError(f"{prefix}: {exc}") from exc
    return subprotocol, deflate


def _tokens(values: Sequence[str]) -> set[str]:
    return {token.strip().lower() for value in values for token in value.split(",")}


def _selected_subprotocol(values: Sequence[str], offered: Sequence[str]) -> str | None:
    values = [v.strip() for v in values if v.strip()]
    if not values:
        return None
    if len(values) > 1 or "," in values[0]:
        raise ValueError(f"server selected more than one subprotocol: {', '.join(values)!r}")
    selected = values[0]
    for proto in offered:
        if proto.lower() == selected.lower():
            return proto
    raise ValueError(f"server selected subprotocol {selected!r}, which was not offered")


def _accepted_deflate(values: Sequence[str], offered: bool) -> DeflateParams | None:
    ext = ", ".join(v for v in values if v.strip())
    if not ext.strip():
        return None
    if not offered:
        raise ValueError(f"server accepted extensions we did not offer: {ext!r}")
    return _parse_deflate(ext)


# --------------------------------------------------------------------------- deflate


@dataclass(frozen=True)
class DeflateParams:
    """permessage-deflate parameters accepted by the server (RFC 7692 section 7.1).

    ``server_*`` apply to what the server sends (our inflater), ``client_*`` to what we
    send (our deflater).  Window bits are 8..15; 15 when the server did not limit them.
    """

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int


def build_deflate_offer() -> str:
    """Return our ``Sec-WebSocket-Extensions`` offer.

    We offer permessage-deflate with ``client_max_window_bits`` (no value), which lets the
    server limit the window we compress with; we accept any server window and context
    takeover, so nothing else is requested.
    """
    return "permessage-deflate; client_max_window_bits"


def parse_deflate_response(value: str) -> DeflateParams:
    """Parse the server's ``Sec-WebSocket-Extensions`` response to our offer.

    Accepts exactly one ``permessage-deflate`` element with the parameters RFC 7692
    section 7.1 allows in a response: ``server_no_context_takeover``,
    ``client_no_context_takeover`` (no value), ``server_max_window_bits=N`` and
    ``client_max_window_bits=N`` (N in 8..15, token or quoted string).  Anything else (an
    extension we did not offer, a second element, an unknown or duplicated parameter, a
    missing or bad value) raises
    :class:`~kstlib.websocket.exceptions.WebSocketConnectionError` with ``url=""``, as
    section 7 requires.
    """
    try:
        return _parse_deflate(value)
    except ValueError as exc:
        raise WebSocketConnectionError(
            f"invalid permessage-deflate response {value!r}: {exc}", url="", attempts=1
        ) from exc


def _split_outside_quotes(value: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and in_quotes:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            in_quotes = not in_quotes
        elif ch == sep and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if in_quotes:
        raise ValueError("unterminated quoted string")
    parts.append("".join(current))
    return parts


def _unquote_value(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    if not is_token(raw):
        raise ValueError(f"invalid parameter value {raw!r}")
    return raw


def _window_bits(name: str, value: str | None) -> int:
    if value is None:
        raise ValueError(f"{name} needs a value in a response")
    if not value.isdigit() or value.startswith("0") or not 8 <= int(value) <= 15:
        raise ValueError(f"{name}={value!r} is not an integer 8..15")
    return int(value)


def _parse_deflate(value: str) -> DeflateParams:
    elements = [e for e in _split_outside_quotes(value, ",") if e.strip()]
    if not elements:
        raise ValueError("empty extension list")
    if len(elements) > 1:
        raise ValueError("more than one extension accepted; we offered one")
    items = _split_outside_quotes(elements[0], ";")
    name = items[0].strip()
    if name.lower() != "permessage-deflate":
        raise ValueError(f"extension {name!r} was not offered")
    seen: dict[str, str | None] = {}
    for item in items[1:]:
        item = item.strip()
        if not item:
            raise ValueError("empty parameter")
        key, eq, raw = item.partition("=")
        key = key.strip().lower()
        if not is_token(key):
            raise ValueError(f"invalid parameter name {key!r}")
        if key in seen:
            raise ValueError(f"duplicate parameter {key}")
        seen[key] = _unquote_value(raw) if eq else None
    server_nct = client_nct = False
    server_bits = client_bits = 15
    for key, param in seen.items():
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if param is not None:
                raise ValueError(f"{key} takes no value")
            if key == "server_no_context_takeover":
                server_nct = True
            else:
                client_nct = True
        elif key == "server_max_window_bits":
            server_bits = _window_bits(key, param)
        elif key == "client_max_window_bits":
            client_bits = _window_bits(key, param)
        else:
            raise ValueError(f"unknown parameter {key!r}")
    return DeflateParams(
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
