"""The HTTP-level rules of the opening handshake, in one copy: checks and redaction.

Both :mod:`kstlib.websocket.config` (when a ``Settings`` is built) and
:mod:`kstlib.websocket.transport` (right before the handshake) use these functions, so a
value the settings accept is a value the handshake accepts, and a bad value fails when
the settings are built, not at ``connect()``.

* :func:`check_url`: a ``ws://`` or ``wss://`` URL with a host, no whitespace.
* :func:`check_headers` / :func:`check_header`: names are HTTP tokens (RFC 9110 section
  5.6.2), values are ``str`` without CR, LF or NUL, the handshake's own headers
  (:data:`RESERVED_HEADERS`) are refused, and ``Host`` / ``Origin`` / ``Cookie`` appear
  at most once.
* :func:`check_subprotocols`: a list of HTTP tokens.
* :func:`check_proxy`: ``http``, ``socks4``, ``socks4a``, ``socks5`` or ``socks5h`` with a
  host and no path. ``https://`` (TLS to the proxy) is refused with an explanation: the
  handshake library only opens plain ``CONNECT`` tunnels, and ``wss://`` through a TLS
  proxy would need TLS inside TLS, which a plain socket cannot carry.
* :func:`redact_url`: the URL with the password of its user information replaced by
  ``***``; every error message built here shows URLs redacted this way and never shows a
  header value.

Every check takes the value as given, returns it normalised, and raises
:class:`InvalidValue` (a ``ValueError``) whose message is the rule and the offending
value, without the option name (the caller adds it).

Thread-safety: pure functions and immutable constants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "PROXY_DEFAULT_PORTS",
    "RESERVED_HEADERS",
    "SINGLE_HEADERS",
    "InvalidValue",
    "check_header",
    "check_headers",
    "check_proxy",
    "check_subprotocols",
    "check_url",
    "is_token",
    "redact_url",
    "show",
]

#: Request headers the handshake itself writes or checks; a caller may not set them.
RESERVED_HEADERS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)
#: Headers a request carries at most once (lower case).
SINGLE_HEADERS = frozenset({"host", "origin", "cookie"})
#: Supported proxy schemes and the port used when the URL names none.
PROXY_DEFAULT_PORTS: Mapping[str, int] = MappingProxyType(
    {"http": 80, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}
)

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# "[scheme:]//user:password@" as urlsplit reads it: the authority ends at the first
# "/", "?" or "#", the user at the first ":", the password at the authority's last "@".
_USERINFO_RE = re.compile(r"^([\x00-\x20]*(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//[^:/?#]*):[^/?#]*@")
_PROXY_EXPECTED = "a proxy URL such as 'http://host:port' or 'socks5://host:port', or null/None"


class InvalidValue(ValueError):
    """A value broke a rule; ``str(self)`` is the reason, without option name or origin."""


def show(value: Any) -> str:
    """A short ``repr`` of a bad value and its type, for an error message (80 chars max)."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def is_token(value: object) -> bool:
    """True when ``value`` is a ``str`` made only of HTTP token characters (not empty)."""
    return isinstance(value, str) and _TOKEN_RE.fullmatch(value) is not None


def redact_url(url: str) -> str:
    """``url`` with the password of its user information replaced by ``***``.

    Everything else is kept verbatim (user name, host, path, query). Never raises. A
    malformed URL that seems to hold a password this cannot locate (tabs or newlines in
    the scheme, a bad IPv6 host) is replaced as a whole by ``<URL with a password>``. Only
    the userinfo password is hidden: a secret in the path or the query is shown as is.
    """
    redacted = _USERINFO_RE.sub(r"\1:***@", url, count=1)
    if redacted == url and _may_hold_password(url):
        return "<URL with a password>"
    return redacted


def _may_hold_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return "@" in url


def _split(value: str, expected: str) -> tuple[SplitResult, int | None]:
    """``urlsplit(value)`` and its port; whitespace and a bad port or IPv6 host refused."""
    shown = repr(redact_url(value))
    if any(c.isspace() for c in value):
        raise InvalidValue(f"a URL must not contain whitespace, got {shown}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidValue(f"expected {expected}, got {shown}: {exc}") from None
    if port == 0:
        raise InvalidValue(f"the port must be from 1 to 65535, got {shown}")
    return parts, port


def check_url(value: Any) -> str:
    """Return ``value`` if it is a ``ws://`` or ``wss://`` URL with a host and no spaces."""
    expected = "a 'ws://' or 'wss://' URL"
    if not isinstance(value, str):
        raise InvalidValue(f"expected {expected}, got {show(value)}")
    parts, _ = _split(value, expected)
    shown = repr(redact_url(value))
    if parts.scheme.lower() not in ("ws", "wss"):
        raise InvalidValue(f"expected {expected}, got {shown}")
    if not parts.hostname:
        raise InvalidValue(f"the URL has no host: {shown}")
    return value


def check_proxy(value: Any) -> str | None:
    """Return ``value`` if it is a supported proxy URL (``None``: no proxy).

    ``scheme://[user[:password]@]host[:port][/]`` with a scheme of
    :data:`PROXY_DEFAULT_PORTS` (any case). ``https://`` is refused: see the module
    docstring. The message shows the URL with its password hidden.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"expected {_PROXY_EXPECTED}, got {show(value)}")
    parts, _ = _split(value, _PROXY_EXPECTED)
    shown = repr(redact_url(value))
    scheme = parts.scheme.lower()
    if scheme == "https":
        raise InvalidValue(
            f"an https:// proxy (TLS to the proxy) is not supported, got {shown}; most "
            "proxies, even when named in https_proxy, are plain HTTP proxies: write "
            "http://host:port (a wss:// connection stays encrypted end to end through "
            "the proxy's CONNECT tunnel)"
        )
    if scheme not in PROXY_DEFAULT_PORTS:
        schemes = ", ".join(sorted(PROXY_DEFAULT_PORTS))
        raise InvalidValue(f"proxy scheme must be one of {schemes}, got {shown}")
    if not parts.hostname:
        raise InvalidValue(f"expected {_PROXY_EXPECTED}, got {shown} (no host)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidValue(f"a proxy URL has no path, query or fragment, got {shown}")
    return value


def check_header(name: Any, value: Any) -> tuple[str, str]:
    """Return ``(name, value)`` if ``name`` is a token the caller may set and ``value`` safe.

    The value is never shown in a message: headers often carry API keys.
    """
    if not is_token(name):
        raise InvalidValue(f"header name must be an HTTP token (str), got {show(name)}")
    if name.lower() in RESERVED_HEADERS:
        raise InvalidValue(
            f"header {name!r} is set by the WebSocket handshake itself "
            "(use subprotocols= or compression= instead)"
        )
    if not isinstance(value, str):
        raise InvalidValue(f"header {name!r}: value must be a str, got {type(value).__name__}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise InvalidValue(f"header {name!r}: value must not contain CR, LF or NUL")
    return (name, value)


def _header_pairs(value: Any) -> list[tuple[Any, Any]]:
    """The ``(name, value)`` pairs of a mapping or of a list of 2-item lists or tuples."""
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise InvalidValue(
            "expected a mapping name -> value or a list of [name, value] pairs, "
            f"got {type(value).__name__}"
        )
    for index, pair in enumerate(value):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InvalidValue(
                f"entry {index}: expected a [name, value] pair, got {type(pair).__name__}"
                + (f" of length {len(pair)}" if isinstance(pair, (list, tuple)) else "")
            )
    return [(pair[0], pair[1]) for pair in value]


def check_headers(value: Any) -> tuple[tuple[str, str], ...]:
    """Return the headers as a tuple of ``(name, value)`` pairs, in order.

    ``value`` is a mapping or a list of ``[name, value]`` pairs (a list may repeat a
    name, except the :data:`SINGLE_HEADERS`). Each pair passes :func:`check_header`.
    """
    pairs = tuple(check_header(name, item) for name, item in _header_pairs(value))
    seen: set[str] = set()
    for name, _ in pairs:
        lower = name.lower()
        if lower in SINGLE_HEADERS and lower in seen:
            raise InvalidValue(f"header {name!r} given twice (a request carries one)")
        seen.add(lower)
    return pairs


def check_subprotocols(value: Any) -> tuple[str, ...]:
    """Return the subprotocol names as a tuple: a list or tuple of HTTP tokens."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise InvalidValue(f"expected a list of subprotocol names, got {show(value)}")
    for index, item in enumerate(value):
        if not is_token(item):
            raise InvalidValue(f"entry {index}: expected an HTTP token (str), got {show(item)}")
    return tuple(value)
