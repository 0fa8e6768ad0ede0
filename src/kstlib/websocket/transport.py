"""Opening a WebSocket connection; the raw socket after it belongs to the engine and codec.

:func:`open_connection` does the opening handshake itself, all within one deadline
(``timeout``) and a cancel that ends any step, with redirects by policy
(``redirects=``). The jobs are split by module:

* here: the attempt (request, response, redirects), the errors it raises, and
  :func:`make_codec` for the connection it hands over;
* :mod:`kstlib.websocket.handshake`: the request and the checks of the response,
  without I/O, and the limits on what a server may send (header line, header count,
  head size, error body);
* :mod:`kstlib.websocket._proxies`: the route to the server (direct, an HTTP
  ``CONNECT`` tunnel written here, SOCKS through ``python-socks``, the proxy
  environment variables);
* :mod:`kstlib.websocket._handshake_io`: the blocking socket steps (resolve, TCP, TLS
  with the caller's :class:`ssl.SSLContext`, send, read a head);
* :mod:`kstlib.websocket._deadline`: the deadline, the cancel, the helper threads.

After the ``101`` response every byte goes through :mod:`kstlib.websocket.codec`.

No byte is lost at the hand-over: the response is read in chunks of up to
:data:`RECV_SIZE` bytes, so the first frames may arrive in the same read as the end of
the ``101`` response; those bytes are returned in :attr:`Handshake.leftover`, which the
caller feeds to the parser before reading the socket (over TLS, records already
decrypted and not yet read stay inside the :class:`ssl.SSLSocket` that is handed over).

Public API::

    hs = open_connection(url, timeout=10.0, compression=True)
    parser, encoder = make_codec(hs, max_message_size=16 << 20, mode=codec.MODE_TEXT)
    parser.feed(hs.leftover); ...  hs.sock.recv() / hs.sock.sendall(encoder.encode(...))

Thread-safety: the functions keep no shared state and may be called from any thread; a
:class:`Handshake`'s socket is then owned by its caller (the engine's single reader, and
writers serialised by the caller's write lock). The cancel callable given to
``on_cancel`` may be called from any thread.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kstlib.websocket._deadline import _Abort, _Deadline
from kstlib.websocket._handshake_io import (
    ERROR_BODY_WAIT,
    RECV_SIZE,
    _close_quietly,
    _read_error_body,
    _read_head,
    _send,
    _start_tls,
)
from kstlib.websocket._http import check_subprotocols, redact_url
from kstlib.websocket._proxies import _connect, _environment_proxy, _Proxy
from kstlib.websocket._proxies import _proxy_spec as _proxy_spec  # tests read it here
from kstlib.websocket.exceptions import (
    WebSocketConnectionError,
    WebSocketError,
    WebSocketTimeoutError,
)
from kstlib.websocket.handshake import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    DeflateParams,
    HandshakeError,
    HTTPStatusError,
    RedirectError,
    Response,
    Target,
    build_deflate_offer,
    build_request,
    check_upgrade,
    new_key,
    parse_deflate_response,
    redirect_url,
    split_headers,
)

__all__ = [
    "ERROR_BODY_WAIT",
    "RECV_SIZE",
    "REDIRECT_POLICIES",
    "DeflateParams",
    "Handshake",
    "build_deflate_offer",
    "make_codec",
    "open_connection",
    "parse_deflate_response",
]

log = logging.getLogger("kstlib.websocket")

#: Values of ``open_connection(redirects=...)``.
REDIRECT_POLICIES = ("off", "same_origin")


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
    header keeps its last value), ``url`` the URL finally connected to (after same-origin
    redirects, else the one given).
    """

    sock: socket.socket
    leftover: bytes
    subprotocol: str | None
    deflate: DeflateParams | None
    response_headers: dict[str, str]
    url: str


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
    redirects: str = "same_origin",
) -> Handshake:
    """Connect to ``url`` (``ws://`` or ``wss://``) and perform the opening handshake.

    * ``timeout`` (seconds) bounds the whole handshake (DNS, TCP, proxy, TLS, request,
      response, redirects), however slowly the server trickles bytes.
    * ``headers``: extra request headers (mapping or ``(name, value)`` pairs, ``str``
      values), sent only to the origin of ``url``. ``Host``/``Origin``/``Cookie`` (once
      each) replace the defaults; ``Upgrade``, ``Connection``, ``Sec-WebSocket-*`` are
      refused with ``ValueError``.
    * ``subprotocols``: HTTP tokens offered in order; the server may pick one or none
      (one not offered fails the connection).
    * ``ssl_context``: used as given for ``wss://``; by default
      :func:`ssl.create_default_context` (system trust store, host name checked).
    * ``proxy``: ``http://[user:pass@]host[:port]`` (CONNECT), ``socks4://``,
      ``socks4a://``, ``socks5://``, ``socks5h://`` (needs ``python-socks``);
      ``https://`` raises ``ValueError``. With None, ``http_proxy`` (``ws://``) /
      ``https_proxy`` (``wss://``) / ``no_proxy`` are honoured, as websocket-client did.
    * ``compression``: offer permessage-deflate (:func:`build_deflate_offer`) and accept
      the server's parameters (:func:`parse_deflate_response`).
    * ``on_cancel`` receives a callable (any thread may call it) that aborts the
      handshake at once, whatever the step (a connection error follows), then ``None``.
    * ``redirects``: ``"same_origin"`` (default) follows up to
      :data:`~kstlib.websocket.handshake.MAX_REDIRECTS` redirects (301, 302, 303, 307,
      308) to the same scheme, host and port (``http[s]`` count as ``ws[s]``), each
      logged at INFO on ``kstlib.websocket``; another origin (a ``wss://`` -> ``ws://``
      downgrade included) is refused. ``"off"``: a redirect is an error naming its
      status and ``Location``.

    The response is bounded (:mod:`kstlib.websocket.handshake`: line length, header
    count, head size, 4 KiB of error body). Every failure (DNS, refused, proxy, TLS,
    non-101 status, refused redirect, bad accept key, upgrade, extension or subprotocol,
    a limit, garbage, cancel) closes the socket and raises
    :class:`~kstlib.websocket.exceptions.WebSocketConnectionError` (``url`` as given,
    ``attempts=1``), or ``WebSocketTimeoutError("connect", timeout)`` past the deadline,
    the cause chained; for a non-101 status the cause is a
    :class:`~kstlib.websocket.handshake.HTTPStatusError` (``status_code``,
    ``resp_headers``, ``body``). Bad arguments (header, proxy URL, ``redirects``) raise
    ``ValueError``; a SOCKS proxy without ``python-socks`` raises ``ImportError``.
    """
    offered = list(check_subprotocols(subprotocols))
    lines, single = split_headers(headers)
    spec = _proxy_spec(proxy) if proxy is not None else None
    if redirects not in REDIRECT_POLICIES:
        raise ValueError(f"redirects must be one of {REDIRECT_POLICIES}, got {redirects!r}")
    deadline = _Deadline(timeout)
    abort = _Abort()
    state = _Attempt(url=url, current=url, proxy=spec)
    if on_cancel is not None:
        on_cancel(abort)
    try:
        return _open(
            state, deadline, abort, lines, single, offered, ssl_context, compression, redirects
        )
    except Exception as exc:
        raise _failure(exc, state, abort, timeout) from exc
    finally:
        abort.detach()
        if on_cancel is not None:
            on_cancel(None)


def _failure(exc: Exception, state: _Attempt, abort: _Abort, timeout: float) -> WebSocketError:
    """The error :func:`open_connection` raises (chained to ``exc``) for a failed attempt."""
    where = state.where()
    if abort.cancelled:
        return WebSocketConnectionError(
            f"cannot open WebSocket {where}: the handshake was cancelled",
            url=state.url,
            attempts=1,
        )
    if _is_timeout(exc):
        return WebSocketTimeoutError("connect", timeout)
    return WebSocketConnectionError(
        f"cannot open WebSocket {where}: {_describe(exc)}", url=state.url, attempts=1
    )


@dataclass
class _Attempt:
    """Where the handshake stands: the URL given, the one being tried, the proxy."""

    url: str
    current: str
    proxy: _Proxy | None

    def where(self) -> str:
        text = redact_url(self.url)
        if self.current != self.url:
            text += f" (redirected to {redact_url(self.current)})"
        if self.proxy is not None:
            text += f" via proxy {redact_url(self.proxy.url)}"
        return text


def _open(
    state: _Attempt,
    deadline: _Deadline,
    abort: _Abort,
    lines: list[str],
    single: dict[str, str],
    offered: list[str],
    ssl_context: ssl.SSLContext | None,
    compression: bool,
    redirects: str,
) -> Handshake:
    fixed_proxy = state.proxy
    first = Target.parse(state.url)
    context = ssl_context
    followed = 0
    while True:
        abort.check()
        target = Target.parse(state.current)
        if fixed_proxy is None:
            state.proxy = _environment_proxy(target)
        key = new_key()
        request = build_request(
            target,
            key,
            lines=lines,
            single=single,
            subprotocols=offered,
            extensions=build_deflate_offer() if compression else None,
        )
        sock = _connect(target, state.proxy, deadline, abort)
        handed_over = False
        try:
            if target.secure:
                if context is None:
                    context = ssl.create_default_context()
                sock = _start_tls(sock, context, target, deadline, abort)
            _send(sock, request, deadline)
            response, leftover = _read_head(sock, deadline, abort)
            if response.status == 101:
                subprotocol, deflate = check_upgrade(response, key, offered, compression)
                sock.settimeout(None)
                abort.detach()  # from here on a late cancel must not touch the socket
                handed_over = True
                return Handshake(
                    sock=sock,
                    leftover=leftover,
                    subprotocol=subprotocol,
                    deflate=deflate,
                    response_headers=response.header_dict(),
                    url=state.current,
                )
            if response.status in REDIRECT_STATUSES:
                next_url = _follow(response, target, first, followed, redirects)
            else:
                body = _read_error_body(sock, response, leftover, deadline)
                raise HTTPStatusError(response, body)
        finally:
            if not handed_over:
                abort.detach()
                _close_quietly(sock)
        log.info(
            "following HTTP %d redirect from %s to %s",
            response.status,
            redact_url(state.current),
            redact_url(next_url),
        )
        followed += 1
        state.current = next_url


def _follow(response: Response, target: Target, first: Target, followed: int, policy: str) -> str:
    """The URL a redirect leads to, or :class:`RedirectError` when it is not followed."""
    location = response.get("location")
    status = f"HTTP {response.status} {response.reason}".rstrip()
    if location is None:
        raise RedirectError(response, message=f"{status} redirect without a Location header")
    shown = redact_url(location.strip())
    if policy == "off":
        raise RedirectError(
            response, message=f"{status} redirect to {shown} not followed (redirects='off')"
        )
    if followed >= MAX_REDIRECTS:
        raise RedirectError(
            response,
            message=f"{status} redirect to {shown}: more than {MAX_REDIRECTS} redirects",
        )
    try:
        next_url = redirect_url(target.url, location)
    except ValueError as exc:
        raise RedirectError(
            response, message=f"{status} redirect to {shown}: not a WebSocket URL ({exc})"
        ) from exc
    if not Target.parse(next_url).same_origin(first):
        raise RedirectError(
            response,
            message=(
                f"{status} redirect to {shown} refused: it leaves the origin of the URL "
                "(scheme, host and port), where the request headers may not go "
                "(redirects='same_origin')"
            ),
        )
    return next_url


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return True
    if type(exc).__name__ == "ProxyTimeoutError":  # python_socks
        return True
    return isinstance(exc, ssl.SSLError) and "timed out" in str(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HandshakeError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
