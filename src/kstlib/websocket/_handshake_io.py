"""The blocking socket steps of the opening handshake, each bounded by the deadline.

Name resolution (on a helper thread, see :mod:`kstlib.websocket._deadline`), TCP connect
(each address in turn), TLS, sending the request, reading a response head (in reads of
:data:`RECV_SIZE` bytes, through :class:`~kstlib.websocket.handshake.ResponseReader` and
its limits) and the start of a refused handshake's body (at most
:data:`ERROR_BODY_WAIT` seconds). Every socket a step opens is attached to the
handshake's cancel (``_Abort``) while it is in use, and closed if the step fails.

Sockets get websocket-client's options: no Nagle delay, and TCP keepalive probes that
notice a dead peer in about a minute even when the application sends nothing.

Thread-safety: no shared state; each call works on its caller's socket, from the
handshake's thread (a cancel from another thread goes through ``_Abort``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
from typing import Any

from kstlib.websocket._deadline import _Abort, _Deadline, _Helper
from kstlib.websocket.handshake import ErrorBody, Response, ResponseReader, Target

__all__ = ["ERROR_BODY_WAIT", "RECV_SIZE"]

#: Bytes asked of each ``recv`` while the response head is read.
RECV_SIZE = 65536
#: Seconds we wait at most (within the deadline) for the body of a refused handshake.
ERROR_BODY_WAIT = 1.0

# websocket-client's socket options, kept: no Nagle delay, and TCP keepalive probes that
# notice a dead peer in about a minute even when the application sends nothing.
_SOCKET_OPTIONS: list[tuple[int, int, int]] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
if hasattr(socket, "SO_KEEPALIVE"):
    _SOCKET_OPTIONS.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
for _name, _value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
    if hasattr(socket, _name):
        _SOCKET_OPTIONS.append((socket.IPPROTO_TCP, getattr(socket, _name), _value))


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
