"""The opening handshake without I/O: where it goes, the request we send, the checks.

:mod:`kstlib.websocket.transport` does the I/O (sockets, proxies, TLS, the deadline) and
calls these pure pieces, split by job:

* here: :class:`Target` (a ``ws://`` / ``wss://`` URL split into host, port, request
  target, origin), :func:`build_request` (the Upgrade request: ``Sec-WebSocket-Key``,
  the caller's headers, subprotocols, the permessage-deflate offer), :func:`check_upgrade`
  (what RFC 6455 section 4.1 requires of a ``101`` response: ``Upgrade``,
  ``Connection``, ``Sec-WebSocket-Accept``, the subprotocol, the extensions), and
  :func:`redirect_url` with :meth:`Target.same_origin` (where a redirect leads and
  whether it leaves the origin; at most :data:`MAX_REDIRECTS` = 3 are followed, by the
  transport, same origin only);
* :mod:`kstlib.websocket._handshake_response`: reading the response head within limits
  (:class:`ResponseReader`, :class:`Response`, :class:`ErrorBody`; 8 KiB per line,
  128 headers, 64 KiB of head, 4 KiB of error body kept) and the errors
  (:class:`HandshakeError`, :class:`HTTPStatusError`, :class:`RedirectError`,
  :class:`ProxyError`);
* :mod:`kstlib.websocket._deflate_negotiation`: the permessage-deflate offer and the
  server's parameters (RFC 7692; :class:`DeflateParams`).

Every name of those two modules is re-exported here: import them from this module.

Thread-safety: pure functions, immutable values; a :class:`ResponseReader` or
:class:`ErrorBody` belongs to one caller.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from kstlib.websocket._deflate_negotiation import (
    DeflateParams,
    _accepted_deflate,
    build_deflate_offer,
    parse_deflate_response,
)
from kstlib.websocket._handshake_response import (
    MAX_ERROR_BODY,
    MAX_HEAD_SIZE,
    MAX_LINE_LENGTH,
    MAX_NUM_HEADERS,
    ErrorBody,
    HandshakeError,
    HTTPStatusError,
    ProxyError,
    RedirectError,
    Response,
    ResponseReader,
)
from kstlib.websocket._http import SINGLE_HEADERS, check_headers

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

#: Redirects followed at most, each to the same origin (scheme, host, port).
MAX_REDIRECTS = 3
#: Statuses that redirect (RFC 9110 section 15.4); other 3xx are errors like any status.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DEFAULT_PORTS = {False: 80, True: 443}


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
