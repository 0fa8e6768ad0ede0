"""Opening a WebSocket connection; the raw socket after it belongs to the engine and codec.

The opening handshake is done by `websocket-client`_ (TCP, TLS, HTTP and SOCKS proxies, the
HTTP Upgrade request and the ``Sec-WebSocket-Accept`` check).  As soon as the ``101``
response has been read, the socket is taken away from websocket-client (it keeps no
reference to it and will never close it) and every later byte goes through
:mod:`kstlib.websocket.codec`.

No byte is lost at the hand-over: websocket-client reads the response header one byte at
a time (``recv(sock, 1)`` until the empty line), so it never reads past the end of the
``101`` response; over TLS the records it already decrypted stay inside the
:class:`ssl.SSLSocket` object that is handed over.  :attr:`Handshake.leftover` therefore
is ``b""`` with the websocket-client versions supported; callers must still feed it to
the parser first, so that a future handshake reader that buffers keeps working.

Public API::

    hs = open_connection(url, timeout=10.0, compression=True)
    parser, encoder = make_codec(hs, max_message_size=16 << 20, mode=codec.MODE_TEXT)
    parser.feed(hs.leftover); ...  hs.sock.recv() / hs.sock.sendall(encoder.encode(...))

Thread-safety: the functions keep no shared state and may be called from any thread; a
:class:`Handshake`'s socket is then owned by its caller (the engine's single reader, and
writers serialised by the caller's write lock).

.. _websocket-client: https://pypi.org/project/websocket-client/
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import websocket
from kstlib.websocket._http import (
    PROXY_DEFAULT_PORTS,
    SINGLE_HEADERS,
    check_headers,
    check_proxy,
    check_subprotocols,
    is_token,
    redact_url,
)
from kstlib.websocket.exceptions import WebSocketConnectionError, WebSocketTimeoutError

__all__ = [
    "DeflateParams",
    "Handshake",
    "build_deflate_offer",
    "make_codec",
    "open_connection",
    "parse_deflate_response",
]


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


@dataclass
class Handshake:
    """A connection whose opening handshake succeeded.

    ``sock`` is a connected :class:`socket.socket` (or :class:`ssl.SSLSocket` for
    ``wss://``) in blocking mode with no timeout; the caller owns it and must close it
    (the engine does, in :mod:`kstlib.websocket.engine.closing`).  ``leftover`` holds
    bytes already read past the ``101`` response (feed them to the parser before reading
    the socket).  ``subprotocol`` is the one the server selected among those offered
    (spelled as offered), ``deflate`` the negotiated permessage-deflate parameters or
    None, ``response_headers`` the response headers with lower-cased names (a repeated
    header keeps its last value).
    """

    sock: socket.socket
    leftover: bytes
    subprotocol: str | None
    deflate: DeflateParams | None
    response_headers: dict[str, str]
    url: str


# --------------------------------------------------------------------------- deflate


def build_deflate_offer() -> str:
    """Return our ``Sec-WebSocket-Extensions`` offer.

    We offer permessage-deflate with ``client_max_window_bits`` (no value), which lets the
    server limit the window we compress with; we accept any server window and context
    takeover, so nothing else is requested.
    """
    return "permessage-deflate; client_max_window_bits"


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


def parse_deflate_response(value: str) -> DeflateParams:
    """Parse the server's ``Sec-WebSocket-Extensions`` response to our offer.

    Accepts exactly one ``permessage-deflate`` element with the parameters RFC 7692
    section 7.1 allows in a response: ``server_no_context_takeover``,
    ``client_no_context_takeover`` (no value), ``server_max_window_bits=N`` and
    ``client_max_window_bits=N`` (N in 8..15, token or quoted string).  Anything else (an
    extension we did not offer, a second element, an unknown or duplicated parameter, a
    missing or bad value) raises
    :class:`~kstlib.websocket.exceptions.WebSocketConnectionError` with ``url=""``
    (:func:`open_connection` re-raises it with the real URL), as section 7 requires.
    """
    try:
        return _parse_deflate(value)
    except ValueError as exc:
        raise WebSocketConnectionError(
            f"invalid permessage-deflate response {value!r}: {exc}", url="", attempts=1
        ) from exc


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


# --------------------------------------------------------------------------- options


def _header_options(
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
) -> tuple[list[str], dict[str, str]]:
    """Split the caller's headers into raw header lines and websocket-client options.

    ``Host``, ``Origin`` and ``Cookie`` become websocket-client's ``host`` / ``origin`` /
    ``cookie`` options (it would otherwise send its own copy as well).  The headers are
    checked by :func:`kstlib.websocket._http.check_headers` (the rules the settings
    apply): a bad one raises ``ValueError``.
    """
    if headers is None:
        return [], {}
    lines: list[str] = []
    options: dict[str, str] = {}
    for name, value in check_headers(headers):
        if name.lower() in SINGLE_HEADERS:
            options[name.lower()] = value.strip()
        else:
            lines.append(f"{name}: {value.strip()}")
    return lines, options


def _proxy_options(proxy: str, timeout: float) -> dict[str, Any]:
    """Turn ``scheme://[user:pass@]host[:port]`` into websocket-client proxy options.

    Schemes: ``http`` (CONNECT tunnel, port 80 by default), ``socks4``, ``socks4a``,
    ``socks5``, ``socks5h`` (``4a``/``5h`` resolve names on the proxy; port 1080 by
    default).  SOCKS needs the ``python-socks`` package.  The URL is checked by
    :func:`kstlib.websocket._http.check_proxy` (``ValueError``; ``https://`` is refused).
    """
    check_proxy(proxy)
    parts = urlsplit(proxy)
    scheme = parts.scheme.lower()
    port = parts.port or PROXY_DEFAULT_PORTS[scheme]
    if scheme != "http":
        try:
            import python_socks  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"a {scheme}:// proxy needs the python-socks package "
                "(pip install 'kstlib-websocket[socks]')"
            ) from exc
    options: dict[str, Any] = {
        "http_proxy_host": parts.hostname,
        "http_proxy_port": port,
        "proxy_type": scheme,
        "http_proxy_timeout": timeout,
    }
    if parts.username is not None:
        options["http_proxy_auth"] = (unquote(parts.username), unquote(parts.password or ""))
    return options


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, socket.timeout, websocket.WebSocketTimeoutException)):
        return True
    name = type(exc).__name__
    if name == "ProxyTimeoutError":  # python_socks
        return True
    return isinstance(exc, ssl.SSLError) and "timed out" in str(exc)


def _close_quietly(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.close()


# --------------------------------------------------------------------------- open


def open_connection(
    url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    subprotocols: Sequence[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | None = None,
    compression: bool = True,
    on_cancel: Callable[[Callable[[], None] | None], None] | None = None,
) -> Handshake:
    """Connect to ``url`` (``ws://`` or ``wss://``) and perform the opening handshake.

    * ``timeout`` (seconds) bounds each step: TCP connect, proxy negotiation, TLS
      handshake, and each read of the response.  A step that times out raises
      :class:`~kstlib.websocket.exceptions.WebSocketTimeoutError` ``("connect")``.
    * ``headers``: extra request headers (mapping, or list or tuple of ``(name, value)``
      pairs; ``str`` values). ``Host``/``Origin``/``Cookie`` (at most once each) replace
      the defaults; the handshake's own headers (``Upgrade``, ``Connection``,
      ``Sec-WebSocket-*``) are refused with ``ValueError``.
    * ``subprotocols``: a list or tuple of HTTP tokens, offered in order; the server must
      pick one of them (or none); answering with one that was not offered fails the
      connection.
    * ``ssl_context``: used as given for ``wss://``; by default
      :func:`ssl.create_default_context` (system trust store, host name checked).
    * ``proxy``: ``http://[user:pass@]host[:port]`` (CONNECT),
      ``socks4://``, ``socks4a://``, ``socks5://``, ``socks5h://`` (needs ``python-socks``);
      ``https://`` (TLS to the proxy) raises ``ValueError``.  With ``proxy=None``
      websocket-client honours the ``http_proxy`` / ``https_proxy`` / ``no_proxy``
      environment variables.
    * ``compression``: offer permessage-deflate (:func:`build_deflate_offer`) and accept
      the server's parameters (:func:`parse_deflate_response`).
    * ``on_cancel``: receives a callable (any thread may call it) that aborts this
      handshake at once by shutting its socket down, and ``None`` when the handshake is
      over. It lets a ``close()`` end a connect stuck on a silent server; the TCP connect
      itself is bounded by ``timeout``.

    Redirects (301/302/303/307/308) are followed up to 3 times, as websocket-client does.
    Every failure (refused, DNS, proxy, TLS verification, timeout, non-101 status, wrong
    ``Sec-WebSocket-Accept``, bad ``Upgrade``/``Connection``, invalid extension or
    subprotocol response, garbage) raises
    :class:`~kstlib.websocket.exceptions.WebSocketConnectionError` (``url``,
    ``attempts=1``) or ``WebSocketTimeoutError("connect", timeout)``, with the cause
    chained, after closing the socket.  Invalid arguments (bad header, bad proxy URL)
    raise ``ValueError``; a SOCKS proxy without ``python-socks`` raises ``ImportError``.
    """
    offered = list(check_subprotocols(subprotocols))
    options = _connect_options(headers, offered, proxy, timeout, compression)
    where = redact_url(url) + (f" via proxy {redact_url(proxy)}" if proxy is not None else "")
    context = ssl_context
    if context is None and urlsplit(url).scheme.lower() == "wss":
        context = ssl.create_default_context()
    sock, response = _upgrade(url, timeout, options, context, where, on_cancel)
    try:
        resp_headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
        subprotocol = _selected_subprotocol(resp_headers, offered)
        deflate = _accepted_deflate(resp_headers, compression)
        sock.settimeout(None)
    except Exception as exc:
        _close_quietly(sock)
        raise WebSocketConnectionError(
            f"cannot open WebSocket {where}: invalid handshake response: {exc}",
            url=url,
            attempts=1,
        ) from exc
    return Handshake(
        sock=sock,
        leftover=b"",
        subprotocol=subprotocol,
        deflate=deflate,
        response_headers=resp_headers,
        url=url,
    )


def _connect_options(
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
    offered: list[str],
    proxy: str | None,
    timeout: float,
    compression: bool,
) -> dict[str, Any]:
    """websocket-client's ``connect`` options for our arguments."""
    header_lines, single = _header_options(headers)
    options: dict[str, Any] = dict(single)
    if proxy is not None:
        options.update(_proxy_options(proxy, timeout))
    if compression:
        header_lines.append(f"Sec-WebSocket-Extensions: {build_deflate_offer()}")
    if offered:
        options["subprotocols"] = offered
    options["header"] = header_lines
    return options


def _upgrade(
    url: str,
    timeout: float,
    options: dict[str, Any],
    context: ssl.SSLContext | None,
    where: str,
    on_cancel: Callable[[Callable[[], None] | None], None] | None,
) -> tuple[socket.socket, Any]:
    """Run websocket-client's handshake; return the socket (now ours) and the response."""
    sslopt = {} if context is None else {"context": context}
    ws = websocket.WebSocket(sslopt=sslopt, enable_multithread=False, skip_utf8_validation=True)

    def cancel() -> None:
        sock = ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    if on_cancel is not None:
        on_cancel(cancel)
    try:
        ws.connect(url, timeout=timeout, **options)  # type: ignore[no-untyped-call]
    except Exception as exc:
        _close_quietly(ws.sock)
        ws.sock = None
        if _is_timeout(exc):
            raise WebSocketTimeoutError("connect", timeout) from exc
        raise WebSocketConnectionError(
            f"cannot open WebSocket {where}: {_describe(exc)}", url=url, attempts=1
        ) from exc
    finally:
        if on_cancel is not None:
            on_cancel(None)
    sock, response = ws.sock, ws.handshake_response
    ws.sock = None  # websocket-client no longer owns the socket: it never closes it now
    ws.connected = False
    if sock is None or response is None:  # pragma: no cover - websocket-client contract
        _close_quietly(sock)
        raise WebSocketConnectionError(f"cannot open WebSocket {url}: no socket", url=url)
    return sock, response


def _accepted_deflate(headers: Mapping[str, str], offered: bool) -> DeflateParams | None:
    ext = headers.get("sec-websocket-extensions")
    if ext is None or not ext.strip():
        return None
    if not offered:
        raise ValueError(f"server accepted extensions we did not offer: {ext!r}")
    return _parse_deflate(ext)


def _describe(exc: BaseException) -> str:
    text = str(exc).split(" -+-+- ", 1)[0]  # websocket-client appends headers and body
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _selected_subprotocol(headers: Mapping[str, str], offered: Sequence[str]) -> str | None:
    selected = headers.get("sec-websocket-protocol")
    if selected is None or not selected.strip():
        return None
    selected = selected.strip()
    for proto in offered:
        if proto.lower() == selected.lower():
            return proto
    raise ValueError(f"server selected subprotocol {selected!r}, which was not offered")


# --------------------------------------------------------------------------- codec


def make_codec(
    hs: Handshake,
    *,
    max_message_size: int,
    mode: int,
    loads: Callable[[bytes], Any] | None = None,
    fragment_size: int = 0,
) -> tuple[Any, Any]:
    """Return ``(FrameParser, FrameEncoder)`` of :mod:`kstlib.websocket.codec` for ``hs``.

    The parser inflates with the negotiated ``server_*`` parameters and the encoder
    deflates with the ``client_*`` ones when permessage-deflate was accepted.  The caller
    feeds ``hs.leftover`` to the parser before any byte read from ``hs.sock``.
    """
    from kstlib.websocket import codec

    deflate = hs.deflate
    parser = codec.FrameParser(
        max_message_size=max_message_size,
        mode=mode,
        loads=loads,
        inflate=deflate is not None,
        inflate_no_context_takeover=bool(deflate and deflate.server_no_context_takeover),
        inflate_window_bits=deflate.server_max_window_bits if deflate else 15,
    )
    encoder = codec.FrameEncoder(
        deflate=deflate is not None,
        deflate_no_context_takeover=bool(deflate and deflate.client_no_context_takeover),
        deflate_window_bits=deflate.client_max_window_bits if deflate else 15,
        fragment_size=fragment_size,
    )
    return parser, encoder
