"""The route to the server: direct, an HTTP ``CONNECT`` tunnel, or SOCKS.

* :func:`_proxy_spec`: a proxy URL checked (:func:`kstlib.websocket._http.check_proxy`,
  ``ValueError``) and split; a SOCKS proxy without ``python-socks`` raises
  ``ImportError``.
* :func:`_environment_proxy`: with no proxy given, the one ``http_proxy`` (``ws://``) or
  ``https_proxy`` (``wss://``) names, ``no_proxy`` honoured, as websocket-client did.
* :func:`_connect`: a connected socket to the target, directly or through the proxy: an
  HTTP ``CONNECT`` tunnel written here (``Proxy-Authorization: Basic`` when the URL has
  credentials; the proxy's answer is read within the response limits and must be 2xx
  with nothing after it, else :class:`~kstlib.websocket.handshake.ProxyError`), or
  SOCKS 4/4a/5/5h through ``python-socks`` on a helper thread, within the deadline.

TLS (for ``wss://``) is started over the returned socket by the caller, so it runs end
to end through the tunnel. Proxies over TLS (``https://``) are refused.

Thread-safety: no shared state; called from the handshake's thread (a cancel from
another thread goes through ``_Abort``). Reads the environment at each call.
"""

from __future__ import annotations

import base64
import socket
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from kstlib.websocket._deadline import _Abort, _Deadline, _Helper
from kstlib.websocket._handshake_io import (
    _close_quietly,
    _read_head,
    _send,
    _set_options,
    _tcp_connect,
)
from kstlib.websocket._http import PROXY_DEFAULT_PORTS, check_proxy
from kstlib.websocket.handshake import ProxyError, Target


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


# The no_proxy check of urllib (the one requests uses too); missing from typeshed.
_proxy_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


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
