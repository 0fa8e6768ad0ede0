"""Opening a WebSocket connection; the raw socket after it belongs to the engine and codec.

:func:`open_connection` does the opening handshake itself: TCP, the proxy (an HTTP
``CONNECT`` tunnel written here, SOCKS through ``python-socks``), TLS with the caller's
:class:`ssl.SSLContext`, the Upgrade request and the response, all within one deadline
(``timeout``), and redirects by policy (``redirects=``). The request and the response
are built and parsed without I/O by :mod:`kstlib.websocket.handshake`, which also holds
the limits on what a server may send (header line, header count, head size, error
body). After the ``101`` response every byte goes through :mod:`kstlib.websocket.codec`.

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

import base64
import contextlib
import ipaddress
import logging
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

from kstlib.websocket._http import PROXY_DEFAULT_PORTS, check_proxy, check_subprotocols, redact_url
from kstlib.websocket.exceptions import WebSocketConnectionError, WebSocketTimeoutError
from kstlib.websocket.handshake import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    DeflateParams,
    ErrorBody,
    HandshakeError,
    HTTPStatusError,
    ProxyError,
    RedirectError,
    Response,
    ResponseReader,
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

#: Bytes asked of each ``recv`` while the response head is read.
RECV_SIZE = 65536
#: Seconds we wait at most (within the deadline) for the body of a refused handshake.
ERROR_BODY_WAIT = 1.0
#: Values of ``open_connection(redirects=...)``.
REDIRECT_POLICIES = ("off", "same_origin")

# websocket-client's socket options, kept: no Nagle delay, and TCP keepalive probes that
# notice a dead peer in about a minute even when the application sends nothing.
_SOCKET_OPTIONS: list[tuple[int, int, int]] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
if hasattr(socket, "SO_KEEPALIVE"):
    _SOCKET_OPTIONS.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
for _name, _value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
    if hasattr(socket, _name):
        _SOCKET_OPTIONS.append((socket.IPPROTO_TCP, getattr(socket, _name), _value))

_T = TypeVar("_T")


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


# --------------------------------------------------------------------------- deadline, cancel


class _Cancelled(Exception):
    """The handshake was aborted through the ``on_cancel`` callable."""


class _Deadline:
    """The end of the whole handshake; :meth:`remaining` raises once it has passed."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.end = time.monotonic() + timeout

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the opening handshake took longer than {self.timeout:g} s")
        return left


class _Abort:
    """The cancel callable handed to ``on_cancel``, and what it acts on.

    Calling it (any thread) marks the handshake cancelled, shuts the current socket down
    (a blocked ``connect``, TLS handshake, ``send`` or ``recv`` returns at once) and wakes
    a wait on a helper thread. The socket is attached and detached under the lock, so a
    late call never touches a socket that was closed or handed over.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._wakers: list[threading.Event] = []
        self.cancelled = False

    def __call__(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    # socket.socket's own method: SSLSocket.shutdown would also drop the
                    # TLS object that the handshake's thread is using.
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            for event in self._wakers:
                event.set()

    def check(self) -> None:
        if self.cancelled:
            raise _Cancelled("the handshake was cancelled")

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self.check()
            self._sock = sock

    def detach(self) -> None:
        with self._lock:
            self._sock = None

    def add_waker(self, event: threading.Event) -> None:
        with self._lock:
            self._wakers.append(event)
            if self.cancelled:
                event.set()

    def remove_waker(self, event: threading.Event) -> None:
        with self._lock:
            self._wakers.remove(event)


class _Helper(Generic[_T]):
    """Runs a blocking call we cannot interrupt (name resolution, python-socks) on a
    daemon thread, and waits for it within the deadline or until cancelled.

    If we stop waiting, the thread ends on its own (the call has its own timeouts or the
    system resolver's) and a socket it returns late is closed by ``discard``.
    """

    def __init__(
        self, call: Callable[[], _T], name: str, discard: Callable[[_T], None] | None = None
    ) -> None:
        self._call = call
        self._discard = discard
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._result: tuple[bool, Any] | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            value = self._call()
        except BaseException as exc:
            with self._lock:
                self._result = (False, exc)
            self._done.set()
            return
        with self._lock:
            late = self._abandoned
            if not late:
                self._result = (True, value)
        if late and self._discard is not None:
            self._discard(value)
        self._done.set()

    def wait(self, deadline: _Deadline, abort: _Abort) -> _T:
        self._thread.start()
        abort.add_waker(self._done)
        try:
            while True:
                abort.check()
                self._done.wait(deadline.remaining())
                with self._lock:
                    result = self._result
                if result is not None:
                    ok, value = result
                    if ok:
                        return value  # type: ignore[no-any-return]
                    raise value
        except BaseException:
            with self._lock:
                self._abandoned = True
                late, self._result = self._result, None
            if late is not None and late[0] and self._discard is not None:
                self._discard(late[1])
            raise
        finally:
            abort.remove_waker(self._done)


# --------------------------------------------------------------------------- proxies


@dataclass(frozen=True)
class _Proxy:
    """A proxy URL split: ``scheme`` (``http``, ``socks4``, ``socks4a``, ``socks5``,
    ``socks5h``), ``host``, ``port``, ``username`` / ``password`` (unquoted, or None),
    ``url`` as given (shown redacted)."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    url: str


def _proxy_spec(proxy: str) -> _Proxy:
    """Check and split a proxy URL (``ValueError``); a SOCKS proxy without the
    ``python-socks`` package raises ``ImportError``."""
    check_proxy(proxy)
    parts = urlsplit(proxy)
    scheme = parts.scheme.lower()
    if scheme != "http":
        try:
            import python_socks  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"a {scheme}:// proxy needs the python-socks package "
                "(pip install 'kstlib-websocket[socks]')"
            ) from exc
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.username is None else unquote(parts.password or "")
    host = parts.hostname
    assert host is not None  # check_proxy refused a proxy without one
    port = parts.port or PROXY_DEFAULT_PORTS[scheme]
    return _Proxy(scheme, host, port, username, password, proxy)


def _proxy_options(proxy: str, timeout: float) -> dict[str, Any]:
    """The proxy as a dict (``proxy_type`` is the scheme); ``timeout`` is unused.

    Kept for the callers of the websocket-client era (tests/unit/test_http.py);
    new code uses :func:`_proxy_spec`."""
    spec = _proxy_spec(proxy)
    return {
        "proxy_type": spec.scheme,
        "proxy_host": spec.host,
        "proxy_port": spec.port,
        "proxy_auth": None if spec.username is None else (spec.username, spec.password),
    }


# The no_proxy check of urllib (the one requests uses too); missing from typeshed.
_proxy_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]

#: The caller's headers as request lines and the Host / Origin / Cookie overrides.
_header_options = split_headers


def _environment_proxy(target: Target) -> _Proxy | None:
    """The proxy the environment names for ``target`` (``https_proxy`` for ``wss://``,
    ``http_proxy`` for ``ws://``, either case, ``no_proxy`` honoured), as
    websocket-client did when no proxy was given; None for a direct connection.

    A value without a scheme, or with ``https://`` (most proxies named in
    ``https_proxy`` are plain HTTP proxies), is used as an ``http://`` proxy."""
    proxies = urllib.request.getproxies_environment()
    variable = "https" if target.secure else "http"
    value = proxies.get(variable, "").strip()
    if not value or _proxy_bypass(target.host, proxies):
        return None
    if "://" not in value:
        value = "http://" + value
    elif value.lower().startswith("https://"):
        value = "http://" + value[len("https://") :]
    try:
        return _proxy_spec(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {variable}_proxy: {exc}") from exc


# --------------------------------------------------------------------------- I/O steps


def _close_quietly(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.close()


def _set_options(sock: socket.socket) -> None:
    for level, option, value in _SOCKET_OPTIONS:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, value)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_AddrInfo = list[tuple[Any, Any, int, str, Any]]


def _resolve(host: str, port: int, deadline: _Deadline, abort: _Abort) -> _AddrInfo:
    """``getaddrinfo`` for a TCP connection; a name is resolved on a helper thread so
    that a slow resolver is bounded by the deadline (and by a cancel)."""
    if _is_ip(host):
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)

    def lookup() -> _AddrInfo:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)

    return _Helper(lookup, "kstlib-ws-resolve").wait(deadline, abort)


def _tcp_connect(host: str, port: int, deadline: _Deadline, abort: _Abort) -> socket.socket:
    """A TCP connection to ``host:port`` (each address in turn, all within the deadline),
    attached to ``abort``."""
    first_error: OSError | None = None
    for family, kind, proto, _canon, address in _resolve(host, port, deadline, abort):
        sock = socket.socket(family, kind, proto)
        try:
            abort.attach(sock)
            sock.settimeout(deadline.remaining())
            sock.connect(address)
        except OSError as exc:
            abort.detach()
            sock.close()
            abort.check()
            if isinstance(exc, TimeoutError):
                raise
            first_error = first_error or exc
            continue
        except BaseException:
            abort.detach()
            sock.close()
            raise
        _set_options(sock)
        return sock
    raise first_error or OSError(f"no address found for {host!r}")


def _send(sock: socket.socket, data: bytes, deadline: _Deadline) -> None:
    sock.settimeout(deadline.remaining())  # sendall: the timeout bounds the whole call
    sock.sendall(data)


def _read_head(
    sock: socket.socket, deadline: _Deadline, abort: _Abort, what: str = "response"
) -> tuple[Response, bytes]:
    """Read one response head (within the limits and the deadline): the response and
    the bytes received after it."""
    reader = ResponseReader(what=what)
    while True:
        sock.settimeout(deadline.remaining())
        data = sock.recv(RECV_SIZE)
        if not data:
            abort.check()
            reader.eof()
        response = reader.feed(data)
        if response is not None:
            return response, reader.leftover


def _read_error_body(
    sock: socket.socket, response: Response, initial: bytes, deadline: _Deadline
) -> bytes:
    """The start of a refused handshake's body: what fits in ``MAX_ERROR_BODY``, read
    for at most :data:`ERROR_BODY_WAIT` seconds (within the deadline). Never raises."""
    body = ErrorBody(response)
    done = body.feed(initial)
    end = min(deadline.end, time.monotonic() + ERROR_BODY_WAIT)
    while not done:
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            sock.settimeout(left)
            data = sock.recv(RECV_SIZE)
        except OSError:
            break
        if not data:
            break
        done = body.feed(data)
    return body.body


def _http_tunnel(
    proxy: _Proxy, target: Target, deadline: _Deadline, abort: _Abort
) -> socket.socket:
    """A ``CONNECT`` tunnel to ``target`` through an HTTP proxy."""
    sock = _tcp_connect(proxy.host, proxy.port, deadline, abort)
    try:
        lines = [f"CONNECT {target.host_port} HTTP/1.1", f"Host: {target.host_port}"]
        if proxy.username is not None:
            credentials = f"{proxy.username}:{proxy.password or ''}".encode()
            lines.append(f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode()}")
        _send(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("ascii"), deadline)
        response, extra = _read_head(sock, deadline, abort, what="proxy response")
        if not 200 <= response.status < 300:
            raise ProxyError(
                f"the proxy answered CONNECT with HTTP {response.status} {response.reason}".rstrip()
            )
        if extra:
            raise ProxyError("the proxy sent data after its CONNECT response")
        return sock
    except BaseException:
        abort.detach()
        sock.close()
        raise


def _socks_tunnel(
    proxy: _Proxy, target: Target, deadline: _Deadline, abort: _Abort
) -> socket.socket:
    """A connection to ``target`` through a SOCKS proxy, by ``python-socks``.

    python-socks makes its own socket and bounds each step (TCP connect, each read) by
    its ``timeout``, not the whole negotiation, and we cannot reach its socket to cut
    it short. So it runs on a helper thread and we wait for it only within the
    deadline (or until cancelled): the handshake ends on time, and an abandoned
    negotiation ends on its own thread within python-socks' per-step timeouts (each at
    most the time that was left), its socket then closed."""
    from python_socks import ProxyType
    from python_socks.sync import Proxy

    kind = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    client = Proxy(
        kind,
        proxy.host,
        proxy.port,
        username=proxy.username,
        password=proxy.password,
        rdns=proxy.scheme in ("socks4a", "socks5h"),
    )
    step_timeout = deadline.remaining()

    def connect() -> socket.socket:
        sock: socket.socket = client.connect(target.host, target.port, timeout=step_timeout)
        return sock

    sock = _Helper(connect, "kstlib-ws-socks", discard=_close_quietly).wait(deadline, abort)
    try:
        abort.attach(sock)
    except BaseException:
        sock.close()
        raise
    _set_options(sock)
    return sock


def _connect(
    target: Target, proxy: _Proxy | None, deadline: _Deadline, abort: _Abort
) -> socket.socket:
    if proxy is None:
        return _tcp_connect(target.host, target.port, deadline, abort)
    if proxy.scheme == "http":
        return _http_tunnel(proxy, target, deadline, abort)
    return _socks_tunnel(proxy, target, deadline, abort)


def _start_tls(
    sock: socket.socket,
    context: ssl.SSLContext,
    target: Target,
    deadline: _Deadline,
    abort: _Abort,
) -> ssl.SSLSocket:
    """TLS over ``sock`` (which it takes over), host name ``target.host`` for SNI and
    verification; the handshake is bounded by the remaining time."""
    sock.settimeout(deadline.remaining())
    tls = context.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
    try:
        abort.attach(tls)
        tls.settimeout(deadline.remaining())
        tls.do_handshake()
    except BaseException:
        abort.detach()
        tls.close()
        raise
    return tls


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

    * ``timeout`` (seconds) bounds the whole handshake: name resolution, TCP connect,
      proxy negotiation, TLS handshake, request and response, and the redirects
      followed. Past it :class:`~kstlib.websocket.exceptions.WebSocketTimeoutError`
      ``("connect", timeout)`` is raised, however slowly the server trickles bytes.
    * ``headers``: extra request headers (mapping, or list or tuple of ``(name, value)``
      pairs; ``str`` values). ``Host``/``Origin``/``Cookie`` (at most once each) replace
      the defaults; the handshake's own headers (``Upgrade``, ``Connection``,
      ``Sec-WebSocket-*``) are refused with ``ValueError``. They are sent only to the
      origin (scheme, host, port) of ``url``.
    * ``subprotocols``: a list or tuple of HTTP tokens, offered in order; the server may
      pick one of them (or none); answering with one that was not offered fails the
      connection.
    * ``ssl_context``: used as given for ``wss://``; by default
      :func:`ssl.create_default_context` (system trust store, host name checked).
    * ``proxy``: ``http://[user:pass@]host[:port]`` (CONNECT),
      ``socks4://``, ``socks4a://``, ``socks5://``, ``socks5h://`` (needs ``python-socks``);
      ``https://`` (TLS to the proxy) raises ``ValueError``.  With ``proxy=None`` the
      ``http_proxy`` (``ws://``) / ``https_proxy`` (``wss://``) / ``no_proxy``
      environment variables are honoured, as websocket-client did.
    * ``compression``: offer permessage-deflate (:func:`build_deflate_offer`) and accept
      the server's parameters (:func:`parse_deflate_response`).
    * ``on_cancel``: receives a callable (any thread may call it) that aborts this
      handshake at once, whatever step it is in (a connection error follows), and
      ``None`` when the handshake is over.
    * ``redirects``: ``"same_origin"`` (default) follows up to
      :data:`~kstlib.websocket.handshake.MAX_REDIRECTS` redirects (301, 302, 303, 307,
      308) whose target has the same scheme, host and port (``http``/``https`` count as
      ``ws``/``wss``), each logged at INFO on ``kstlib.websocket``; a redirect to another
      origin (a ``wss://`` -> ``ws://`` downgrade included) is refused. ``"off"``: a
      redirect is an error naming its status and ``Location``.

    The server's response is bounded (:mod:`kstlib.websocket.handshake`: line length,
    header count, head size; only the first 4 KiB of an error body are read). Every
    failure (refused, DNS, proxy, TLS verification, non-101 status, refused redirect,
    wrong ``Sec-WebSocket-Accept``, bad ``Upgrade``/``Connection``, invalid extension or
    subprotocol response, a limit exceeded, garbage, cancel) raises
    :class:`~kstlib.websocket.exceptions.WebSocketConnectionError` (``url`` as given,
    ``attempts=1``) or ``WebSocketTimeoutError("connect", timeout)``, with the cause
    chained, after closing the socket. For a non-101 status the cause is a
    :class:`~kstlib.websocket.handshake.HTTPStatusError` (``status_code``,
    ``resp_headers``, ``body``). Invalid arguments (bad header, bad proxy URL, unknown
    ``redirects``) raise ``ValueError``; a SOCKS proxy without ``python-socks`` raises
    ``ImportError``.
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
        where = state.where()
        if abort.cancelled:
            raise WebSocketConnectionError(
                f"cannot open WebSocket {where}: the handshake was cancelled", url=url, attempts=1
            ) from exc
        if _is_timeout(exc):
            raise WebSocketTimeoutError("connect", timeout) from exc
        raise WebSocketConnectionError(
            f"cannot open WebSocket {where}: {_describe(exc)}", url=url, attempts=1
        ) from exc
    finally:
        abort.detach()
        if on_cancel is not None:
            on_cancel(None)


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
