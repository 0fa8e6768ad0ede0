"""Transport tests against real sockets on 127.0.0.1: handshake, hand-over, failures, close.

Every server here is a plain ``socket`` + thread written for the test, so each test controls
exactly which bytes go on the wire (and when).
"""

from __future__ import annotations

import base64
import os
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rawserver import (
    WAIT,
    Behaviour,
    RawServer,
    accept_key,
    drain_until_eof,
    parse_head,
    read_head,
    response_101,
    server_frame,
)

from kstlib.websocket import transport
from kstlib.websocket.exceptions import WebSocketConnectionError, WebSocketTimeoutError
from kstlib.websocket.transport import DeflateParams, open_connection, parse_deflate_response


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def recv_exactly(sock: socket.socket, n: int, prefix: bytes = b"") -> bytes:
    data = bytearray(prefix)
    sock.settimeout(WAIT)
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"EOF after {len(data)} of {n} bytes"
        data += chunk
    sock.settimeout(None)
    return bytes(data)


def codec_or_skip() -> Any:
    try:
        from kstlib.websocket import codec
    except ImportError as exc:  # the codec is built by another part of the project
        pytest.skip(f"codec not importable: {exc}")
    return codec


# --------------------------------------------------------------------------- hand-over

FRAMES = b"".join(
    [
        server_frame(0x1, b"first"),
        server_frame(0x2, bytes(range(256)) * 800),  # 200 KiB, 64-bit length
        server_frame(0x9, b"ping!"),
        server_frame(0x1, "é".encode() * 300),  # 16-bit length
        server_frame(0x1, b"frag-", fin=False),
        server_frame(0x0, b"end"),
    ]
)


def greet_and_burst(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
    """101 response and several frames in a single sendall."""
    conn.sendall(response_101(headers) + FRAMES)
    drain_until_eof(conn)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_no_byte_lost_after_101(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    tls: bool,
) -> None:
    srv = serve(greet_and_burst, server_tls if tls else None)
    hs = open_connection(srv.url, timeout=WAIT, ssl_context=client_tls, compression=False)
    try:
        assert isinstance(hs.sock, ssl.SSLSocket) is tls
        assert hs.sock.gettimeout() is None  # blocking, no timeout
        data = recv_exactly(hs.sock, len(FRAMES), hs.leftover)
        assert data == FRAMES
        assert hs.deflate is None
        assert hs.subprotocol is None
        assert hs.url == srv.url
        assert hs.response_headers["upgrade"].lower() == "websocket"
    finally:
        hs.sock.close()


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_burst_decodes_through_codec(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    tls: bool,
) -> None:
    codec = codec_or_skip()
    srv = serve(greet_and_burst, server_tls if tls else None)
    hs = open_connection(srv.url, timeout=WAIT, ssl_context=client_tls)
    parser, _encoder = transport.make_codec(hs, max_message_size=1 << 20, mode=codec.MODE_BYTES)
    messages: list[Any] = []
    controls: list[Any] = []
    try:
        got, ctl, err = parser.feed(hs.leftover)
        messages += got
        controls += ctl
        hs.sock.settimeout(WAIT)
        while len(messages) < 4:
            chunk = hs.sock.recv(65536)
            assert chunk
            got, ctl, err = parser.feed(chunk)
            assert err is None
            messages += got
            controls += ctl
    finally:
        hs.sock.close()
    assert [bytes(m) for m in messages] == [
        b"first",
        bytes(range(256)) * 800,
        "é".encode() * 300,
        b"frag-end",
    ]
    assert [(op, bytes(p)) for op, p in controls] == [(0x9, b"ping!")]


# --------------------------------------------------------------------------- request


def test_request_carries_headers_subprotocols_and_offer(
    serve: Callable[..., RawServer],
) -> None:
    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(response_101(headers, "Sec-WebSocket-Protocol: Chat.V2\r\n"))
        drain_until_eof(conn)

    srv = serve(behaviour)
    hs = open_connection(
        srv.url,
        timeout=WAIT,
        headers=[("X-Api-Key", "secret"), ("Origin", "https://example.test")],
        subprotocols=["chat.v1", "chat.v2"],
    )
    hs.sock.close()
    req = parse_head(srv.requests[0])
    first_line = srv.requests[0].split(b"\r\n", 1)[0]
    assert first_line == b"GET /path?q=1 HTTP/1.1"
    assert req["x-api-key"] == "secret"
    assert req["origin"] == "https://example.test"
    assert srv.requests[0].lower().count(b"\r\norigin:") == 1
    assert req["sec-websocket-protocol"] == "chat.v1,chat.v2"
    assert req["sec-websocket-extensions"] == "permessage-deflate; client_max_window_bits"
    assert hs.subprotocol == "chat.v2"  # spelled as offered


def test_compression_false_sends_no_offer(serve: Callable[..., RawServer]) -> None:
    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(response_101(headers))
        drain_until_eof(conn)

    srv = serve(behaviour)
    hs = open_connection(
        srv.url, timeout=WAIT, headers={"Host": "exchange.test"}, compression=False
    )
    hs.sock.close()
    req = parse_head(srv.requests[0])
    assert "sec-websocket-extensions" not in req
    assert req["host"] == "exchange.test"


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-WebSocket-Extensions": "x"},
        {"Upgrade": "h2c"},
        {"Sec-WebSocket-Key": "abc"},
        {"X-Evil": "a\r\nInjected: 1"},
        {"Bad Name": "x"},
    ],
)
def test_invalid_request_headers_raise_value_error(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        open_connection("ws://127.0.0.1:9/", timeout=1.0, headers=headers)


def test_deflate_parameters_are_negotiated(serve: Callable[..., RawServer]) -> None:
    ext = (
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
        'client_max_window_bits="10"; server_max_window_bits=12\r\n'
    )

    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(response_101(headers, ext))
        drain_until_eof(conn)

    srv = serve(behaviour)
    hs = open_connection(srv.url, timeout=WAIT)
    hs.sock.close()
    assert hs.deflate == DeflateParams(
        server_no_context_takeover=True,
        client_no_context_takeover=False,
        server_max_window_bits=12,
        client_max_window_bits=10,
    )


# --------------------------------------------------------------------------- deflate parsing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("permessage-deflate", DeflateParams(False, False, 15, 15)),
        ("Permessage-Deflate ;client_no_context_takeover", DeflateParams(False, True, 15, 15)),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=8; client_max_window_bits=15",
            DeflateParams(True, True, 8, 15),
        ),
        ('permessage-deflate; server_max_window_bits="9"', DeflateParams(False, False, 9, 15)),
    ],
)
def test_parse_deflate_response_accepts(value: str, expected: DeflateParams) -> None:
    assert parse_deflate_response(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; foo",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=abc",
        'permessage-deflate; client_max_window_bits="1 0"',
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
        "permessage-deflate;; server_no_context_takeover",
        'permessage-deflate; client_max_window_bits="10',
        "permessage-deflate; client_max_window_bits=1.5",
    ],
)
def test_parse_deflate_response_rejects(value: str) -> None:
    with pytest.raises(WebSocketConnectionError) as info:
        parse_deflate_response(value)
    assert isinstance(info.value.__cause__, ValueError)


def test_build_deflate_offer() -> None:
    assert transport.build_deflate_offer() == "permessage-deflate; client_max_window_bits"


# --------------------------------------------------------------------------- failures


def _garbage(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
    conn.sendall(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")


def _forbidden(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
    body = b"go away"
    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def _bad_accept(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
    conn.sendall(response_101(headers, accept=accept_key("AAAAAAAAAAAAAAAAAAAAAA==")))


def _ok_200(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def _unknown_extension(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
    conn.sendall(response_101(headers, "Sec-WebSocket-Extensions: x-unknown\r\n"))


def _deflate_bad_param(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
    conn.sendall(response_101(headers, "Sec-WebSocket-Extensions: permessage-deflate; foo=1\r\n"))


def _unoffered_subprotocol(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
    conn.sendall(response_101(headers, "Sec-WebSocket-Protocol: other\r\n"))


def _eof_mid_headers(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")


def _no_upgrade_header(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
    acc = accept_key(headers["sec-websocket-key"])
    conn.sendall(
        f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {acc}\r\n\r\n".encode()
    )


FAILURES: dict[str, tuple[Behaviour, dict[str, Any], str]] = {
    "garbage": (_garbage, {}, "not an HTTP/1.x response"),
    "status-403": (_forbidden, {}, "HTTP 403 Forbidden (body: 'go away')"),
    "status-200": (_ok_200, {}, "200"),
    "bad-accept": (_bad_accept, {}, "Sec-WebSocket-Accept does not match"),
    "no-upgrade-header": (_no_upgrade_header, {}, "no 'Upgrade: websocket' header"),
    "eof-mid-headers": (_eof_mid_headers, {}, "closed before the end of the response head"),
    "unknown-extension": (_unknown_extension, {}, "x-unknown"),
    "deflate-bad-param": (_deflate_bad_param, {}, "foo"),
    "extension-not-offered": (
        lambda c, h, r: c.sendall(
            response_101(h, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
        ),
        {"compression": False},
        "did not offer",
    ),
    "subprotocol-not-offered": (_unoffered_subprotocol, {}, "not offered"),
    "subprotocol-not-in-offer": (_unoffered_subprotocol, {"subprotocols": ["a"]}, ""),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_handshake_failures_become_connection_errors(
    serve: Callable[..., RawServer], name: str
) -> None:
    behaviour, kwargs, text = FAILURES[name]
    srv = serve(behaviour)
    before = open_fds()
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT, **kwargs)
    err = info.value
    assert err.url == srv.url
    assert err.attempts == 1
    assert err.__cause__ is not None
    assert text in str(err)
    srv.wait_handled(1)
    assert open_fds() == before


def test_refused_port() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    url = f"ws://127.0.0.1:{port}/"
    before = open_fds()
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(url, timeout=WAIT)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert info.value.url == url
    assert open_fds() == before


def test_unresolvable_host_is_a_connection_error() -> None:
    # An invalid IDNA label fails inside getaddrinfo's argument encoding, locally.
    url = "ws://bad..host/"
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(url, timeout=WAIT)
    assert info.value.__cause__ is not None


def test_bad_scheme_is_a_connection_error() -> None:
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection("http://127.0.0.1:1/", timeout=1.0)
    assert isinstance(info.value.__cause__, ValueError)


def test_silent_server_times_out(serve: Callable[..., RawServer]) -> None:
    srv = serve(lambda conn, h, r: drain_until_eof(conn))
    before = open_fds()
    with pytest.raises(WebSocketTimeoutError) as info:
        open_connection(srv.url, timeout=0.3)
    assert info.value.operation == "connect"
    assert info.value.timeout == 0.3
    assert info.value.__cause__ is not None
    srv.wait_handled(1)
    assert open_fds() == before


def test_tls_untrusted_certificate(
    serve: Callable[..., RawServer], server_tls: ssl.SSLContext
) -> None:
    srv = serve(greet_and_burst, server_tls)
    before = open_fds()
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT)  # default context: system trust store
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    srv.wait_handled(1)
    assert open_fds() == before


def test_tls_hostname_mismatch(
    serve: Callable[..., RawServer], other_cert_files: tuple[Path, Path]
) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*other_cert_files)
    srv = serve(greet_and_burst, server_ctx)
    # The certificate is trusted but names only other.test, not 127.0.0.1.
    client_ctx = ssl.create_default_context(cafile=str(other_cert_files[0]))
    before = open_fds()
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT, ssl_context=client_ctx)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert "127.0.0.1" in str(info.value.__cause__)
    srv.wait_handled(1)
    assert open_fds() == before


def test_caller_ssl_context_is_honoured(
    serve: Callable[..., RawServer], server_tls: ssl.SSLContext
) -> None:
    srv = serve(greet_and_burst, server_tls)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    hs = open_connection(srv.url, timeout=WAIT, ssl_context=ctx)
    try:
        assert isinstance(hs.sock, ssl.SSLSocket)
        assert hs.sock.context is ctx
    finally:
        hs.sock.close()


def test_no_fd_leak_over_repeated_failures(serve: Callable[..., RawServer]) -> None:
    servers = [serve(_garbage), serve(_forbidden), serve(_bad_accept), serve(_unknown_extension)]
    before = open_fds()
    for _ in range(5):
        for srv in servers:
            with pytest.raises(WebSocketConnectionError):
                open_connection(srv.url, timeout=WAIT)
    for srv in servers:
        srv.wait_handled(5)
    assert open_fds() == before


# --------------------------------------------------------------------------- proxies


class Pump:
    """Copy bytes both ways between two sockets until either side closes."""

    @staticmethod
    def run(a: socket.socket, b: socket.socket) -> None:
        a.settimeout(None)
        b.settimeout(None)
        socks = [a, b]
        while True:
            readable, _, _ = select.select(socks, [], [], WAIT)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)


class ProxyServer:
    """A tiny HTTP CONNECT or SOCKS5 proxy (no auth / basic auth) for one connection."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(WAIT)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(WAIT)
            target = self._http(conn) if self.kind == "http" else self._socks5(conn)
            with target:
                Pump.run(conn, target)

    def _http(self, conn: socket.socket) -> socket.socket:
        head = read_head(conn)
        self.requests.append(head)
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        target = socket.create_connection((host, int(port)), timeout=WAIT)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return target

    def _socks5(self, conn: socket.socket) -> socket.socket:
        ver, nmethods = conn.recv(2)
        methods = conn.recv(nmethods)
        assert ver == 5 and 0 in methods
        conn.sendall(b"\x05\x00")
        req = conn.recv(4)
        assert req[:2] == b"\x05\x01"
        if req[3] == 1:
            host = socket.inet_ntoa(conn.recv(4))
        else:
            host = conn.recv(conn.recv(1)[0]).decode()
        (port,) = struct.unpack("!H", conn.recv(2))
        self.requests.append(f"{host}:{port}".encode())
        target = socket.create_connection((host, port), timeout=WAIT)
        conn.sendall(b"\x05\x00\x00\x01" + b"\x00" * 6)
        return target

    def close(self) -> None:
        self.listener.close()
        self.thread.join(WAIT)


@pytest.mark.parametrize(
    ("kind", "proxy_fmt"),
    [
        ("http", "http://alice:s%40cret@127.0.0.1:{port}"),
        ("socks5", "socks5://127.0.0.1:{port}"),
        ("socks5", "socks5h://127.0.0.1:{port}"),
    ],
)
def test_proxies_pass_through(serve: Callable[..., RawServer], kind: str, proxy_fmt: str) -> None:
    srv = serve(greet_and_burst)
    proxy = ProxyServer(kind)
    try:
        hs = open_connection(
            srv.url, timeout=WAIT, proxy=proxy_fmt.format(port=proxy.port), compression=False
        )
        try:
            assert recv_exactly(hs.sock, len(FRAMES), hs.leftover) == FRAMES
        finally:
            hs.sock.close()
    finally:
        proxy.close()
    if kind == "http":
        head = proxy.requests[0]
        assert head.startswith(f"CONNECT 127.0.0.1:{srv.port} HTTP/1.1".encode())
        expected = base64.b64encode(b"alice:s@cret")
        assert b"Proxy-Authorization: Basic " + expected in head
    else:
        assert proxy.requests == [f"127.0.0.1:{srv.port}".encode()]


def test_proxy_refused_is_a_connection_error() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    for scheme in ("http", "socks5"):
        with pytest.raises(WebSocketConnectionError) as info:
            open_connection(
                "ws://127.0.0.1:1/", timeout=WAIT, proxy=f"{scheme}://u:pw@127.0.0.1:{port}"
            )
        assert info.value.__cause__ is not None
        assert "pw" not in str(info.value)  # the proxy password is redacted


@pytest.mark.parametrize(
    "proxy", ["ftp://127.0.0.1:1", "http://", "http://127.0.0.1:1/path", "socks6://h:1"]
)
def test_bad_proxy_url_raises_value_error(proxy: str) -> None:
    with pytest.raises(ValueError):
        open_connection("ws://127.0.0.1:1/", timeout=1.0, proxy=proxy)


def test_proxy_spec_mapping() -> None:
    spec = transport._proxy_spec("socks4a://bob@proxy.test")
    assert (spec.scheme, spec.host, spec.port) == ("socks4a", "proxy.test", 1080)
    assert (spec.username, spec.password) == ("bob", "")
    spec = transport._proxy_spec("HTTP://a%3Ab:p%40ss@p.test")
    assert (spec.scheme, spec.port, spec.username, spec.password) == ("http", 80, "a:b", "p@ss")
    assert transport._proxy_spec("http://p.test").username is None
    assert transport._proxy_spec("socks5h://p:1").scheme == "socks5h"


def test_socks_without_python_socks_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "python_socks", None)
    with pytest.raises(ImportError, match="python-socks"):
        open_connection("ws://127.0.0.1:1/", timeout=1.0, proxy="socks5://127.0.0.1:1080")


# --------------------------------------------------------------------------- closing


def _close_frame(code: int, reason: bytes = b"") -> bytes:
    return server_frame(0x8, struct.pack("!H", code) + reason)


def test_on_cancel_aborts_a_stuck_handshake(serve: Callable[..., RawServer]) -> None:
    got_request = threading.Event()

    def behaviour(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
        got_request.set()
        drain_until_eof(conn)  # never answers

    srv = serve(behaviour)
    hooks: list[Callable[[], None] | None] = []

    def canceller() -> None:
        assert got_request.wait(WAIT)
        cancel = hooks[0]
        assert cancel is not None
        cancel()

    before = open_fds()
    worker = threading.Thread(target=canceller)
    worker.start()
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT, on_cancel=hooks.append)
    worker.join(WAIT)
    assert info.value.__cause__ is not None
    assert hooks[-1] is None  # the hook is withdrawn once the handshake is over
    srv.wait_handled(1)
    assert open_fds() == before
