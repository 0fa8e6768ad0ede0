"""The opening handshake against hostile servers and proxies on 127.0.0.1.

Each server here is hand-written to do one bad thing: redirect elsewhere (another host,
another port, a TLS downgrade) hoping to collect the request's credentials, trickle its
response one byte at a time, send an endless header line, an endless header list or an
endless error body, or hang a step the client cannot interrupt (name resolution, a SOCKS
negotiation). The client must keep the credentials at their origin, end every handshake
within its ``timeout`` and keep its memory bounded.

No test asserts wall-clock time: a test that proves "ends within the deadline" sets the
deadline small and the would-be hang far longer than its ``pytest.mark.timeout``, and
asserts the outcome; a memory test asserts the traced peak stays under a generous
bound, far below what an unbounded reader reaches.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers import FAST, no_leaks
from rawserver import (
    WAIT,
    RawServer,
    drain_until_eof,
    read_head,
    response_101,
    server_frame,
)

from kstlib.websocket import WebSocketManager, handshake
from kstlib.websocket.engine import backoff
from kstlib.websocket.exceptions import WebSocketConnectionError, WebSocketTimeoutError
from kstlib.websocket.handshake import (
    MAX_ERROR_BODY,
    MAX_HEAD_SIZE,
    MAX_LINE_LENGTH,
    MAX_NUM_HEADERS,
    HandshakeError,
    HTTPStatusError,
    ResponseReader,
)
from kstlib.websocket.transport import open_connection

pytestmark = pytest.mark.timeout(30)

MiB = 1 << 20
#: Bound on the traced memory peak of one handshake against an endless server: the
#: reader keeps at most a head (64 KiB) and one read (64 KiB); 4 MiB is a wide margin,
#: and the unbounded reader this replaces reached hundreds of MiB on the same input.
PEAK_BOUND = 4 * MiB
#: Seconds between two bytes of a trickling server: each read succeeds quickly, so only
#: a deadline on the whole handshake ends it.
TRICKLE = 0.05
SECRET = "Bearer do-not-leak-me"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def trickle(
    conn: socket.socket, data: bytes, every: float = TRICKLE, stop: threading.Event | None = None
) -> None:
    """Send ``data`` one byte at a time (until the client goes away or ``stop`` is set)."""
    for i in range(len(data)):
        conn.sendall(data[i : i + 1])
        if stop is not None and stop.wait(every):
            return
        if stop is None:
            time.sleep(every)


@contextmanager
def traced_peak() -> Iterator[list[int]]:
    """Trace allocations in the block; the list receives the peak (bytes)."""
    out: list[int] = []
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield out
    finally:
        out.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


class TcpServer:
    """A one-thread TCP server running ``handler(conn, stopping)`` per connection, no
    HTTP read first (for proxies that speak SOCKS, or servers that must not answer TLS);
    ``stopping`` is set when the test ends, and the handler should then return."""

    def __init__(self, handler: Callable[[socket.socket, threading.Event], None]) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.accepted = threading.Event()
        self.finished = threading.Event()  # a connection's handler returned, its socket closed
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.set()
            with conn:
                conn.settimeout(WAIT)
                try:
                    self.handler(conn, self.stopping)
                except OSError as exc:
                    self.errors.append(exc)
            self.finished.set()

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(WAIT)


StartTcp = Callable[[Callable[[socket.socket, threading.Event], None]], "TcpServer"]


@pytest.fixture
def tcp_server() -> Iterator[StartTcp]:
    servers: list[TcpServer] = []

    def start(handler: Callable[[socket.socket, threading.Event], None]) -> TcpServer:
        srv = TcpServer(handler)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


def greet(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
    conn.sendall(response_101(headers))
    drain_until_eof(conn)


def redirect(status: int, location: str) -> bytes:
    return (
        f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def request_target(raw: bytes) -> str:
    return raw.split(b"\r\n", 1)[0].split(b" ")[1].decode()


# --------------------------------------------------------------------------- 1. redirects


@pytest.mark.parametrize(
    "case", ["other-host", "other-port", "tls-downgrade", "downgrade-same-port"]
)
def test_a_redirect_to_another_origin_is_refused_and_carries_no_credentials(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    case: str,
) -> None:
    elsewhere = serve(greet)  # the would-be collector of the credentials
    locations = {
        "other-host": f"ws://localhost:{elsewhere.port}/collect",
        "other-port": f"ws://127.0.0.1:{elsewhere.port}/collect",
        "tls-downgrade": f"ws://127.0.0.1:{elsewhere.port}/collect",
        "downgrade-same-port": "ws://127.0.0.1:{port}/plain",
    }
    ports: list[int] = []

    def behaviour(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
        conn.sendall(redirect(302, locations[case].format(port=ports[0])))
        drain_until_eof(conn)

    tls = server_tls if "downgrade" in case else None
    origin = serve(behaviour, tls)
    ports.append(origin.port)
    before = open_fds()
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(
            origin.url, timeout=WAIT, headers={"Authorization": SECRET}, ssl_context=client_tls
        )
    err = info.value
    location = locations[case].format(port=origin.port)
    assert "302" in str(err) and location in str(err) and "refused" in str(err)
    assert SECRET not in str(err)
    assert isinstance(err.__cause__, HTTPStatusError)
    assert err.__cause__.status_code == 302
    assert err.__cause__.location == location
    origin.wait_handled(1)
    assert elsewhere.handled == 0 and elsewhere.requests == []  # never contacted
    assert origin.handled == 1  # not even the origin's port over plain ws://
    assert open_fds() == before


def test_same_origin_redirects_are_followed_with_the_headers_and_logged(
    serve: Callable[..., RawServer], caplog: pytest.LogCaptureFixture
) -> None:
    ports: list[int] = []

    def behaviour(conn: socket.socket, headers: dict[str, str], raw: bytes) -> None:
        target = request_target(raw)
        if target == "/path?q=1":
            conn.sendall(redirect(302, "/second"))  # relative
        elif target == "/second":  # http:// is the same origin as ws://
            conn.sendall(redirect(307, f"http://user:pw@127.0.0.1:{ports[0]}/third?x=1"))
        else:
            greet(conn, headers, raw)

    srv = serve(behaviour)
    ports.append(srv.port)
    url = f"ws://me:hunter2@127.0.0.1:{srv.port}/path?q=1"
    caplog.set_level(logging.INFO, logger="kstlib.websocket")
    hs = open_connection(url, timeout=WAIT, headers={"Authorization": SECRET})
    hs.sock.close()
    assert hs.url == f"ws://user:pw@127.0.0.1:{srv.port}/third?x=1"
    srv.wait_handled(3)
    targets = [request_target(r) for r in srv.requests]
    assert targets == ["/path?q=1", "/second", "/third?x=1"]
    assert all(f"Authorization: {SECRET}".encode() in r for r in srv.requests)
    lines = [r.getMessage() for r in caplog.records if "redirect" in r.getMessage()]
    assert [r.levelno for r in caplog.records if "redirect" in r.getMessage()] == [logging.INFO] * 2
    assert lines == [
        f"following HTTP 302 redirect from ws://me:***@127.0.0.1:{srv.port}/path?q=1 "
        f"to ws://me:***@127.0.0.1:{srv.port}/second",
        f"following HTTP 307 redirect from ws://me:***@127.0.0.1:{srv.port}/second "
        f"to ws://user:***@127.0.0.1:{srv.port}/third?x=1",
    ]
    assert "hunter2" not in caplog.text and ":pw@" not in caplog.text


def test_more_than_three_redirects_is_an_error(serve: Callable[..., RawServer]) -> None:
    def behaviour(conn: socket.socket, _h: dict[str, str], raw: bytes) -> None:
        conn.sendall(redirect(301, request_target(raw) + "x"))
        drain_until_eof(conn)

    srv = serve(behaviour)
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT)
    assert f"more than {handshake.MAX_REDIRECTS} redirects" in str(info.value)
    srv.wait_handled(handshake.MAX_REDIRECTS + 1)
    assert srv.handled == handshake.MAX_REDIRECTS + 1


def test_redirects_off_makes_a_redirect_an_error_naming_status_and_location(
    serve: Callable[..., RawServer],
) -> None:
    srv = serve(lambda conn, h, raw: conn.sendall(redirect(308, "/moved")))
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT, redirects="off")
    assert "HTTP 308 Moved redirect to /moved not followed (redirects='off')" in str(info.value)
    assert isinstance(info.value.__cause__, HTTPStatusError)
    srv.wait_handled(1)
    assert srv.handled == 1


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/x", "", "ws://"])
def test_a_redirect_that_is_not_a_websocket_url_is_an_error(
    serve: Callable[..., RawServer], location: str
) -> None:
    srv = serve(lambda conn, h, raw: conn.sendall(redirect(302, location)))
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT)
    assert "302" in str(info.value)


def test_an_unknown_redirect_policy_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="redirects"):
        open_connection("ws://127.0.0.1:1/", timeout=1.0, redirects="all")


# --------------------------------------------------------------------------- 2. deadline

PADDED = "X-Pad: " + "p" * 8000 + "\r\n"  # 8 KiB at TRICKLE s/byte: 400 s


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_a_trickled_response_ends_at_the_deadline(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    tls: bool,
) -> None:
    srv = serve(
        lambda conn, h, raw: trickle(conn, response_101(h, PADDED)), server_tls if tls else None
    )
    before = open_fds()
    with pytest.raises(WebSocketTimeoutError) as info:
        open_connection(srv.url, timeout=0.5, ssl_context=client_tls)
    assert (info.value.operation, info.value.timeout) == ("connect", 0.5)
    assert isinstance(info.value.__cause__, TimeoutError)
    srv.wait_handled(1)
    assert open_fds() == before


def test_a_trickling_http_proxy_ends_at_the_deadline(
    serve: Callable[..., RawServer],
) -> None:
    srv = serve(greet)

    def proxy(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
        trickle(conn, f"HTTP/1.1 200 Connection established\r\n{PADDED}\r\n".encode())

    slow = serve(proxy)
    with pytest.raises(WebSocketTimeoutError):
        open_connection(srv.url, timeout=0.5, proxy=f"http://127.0.0.1:{slow.port}")
    slow.wait_handled(1)
    assert srv.handled == 0


def test_a_trickling_socks_proxy_ends_at_the_deadline(
    serve: Callable[..., RawServer],
    tcp_server: StartTcp,
) -> None:
    pytest.importorskip("python_socks")
    srv = serve(greet)

    def proxy(conn: socket.socket, stop: threading.Event) -> None:
        conn.recv(3)  # greeting: version 5, one method, no authentication
        conn.sendall(b"\x05\x00")
        conn.recv(64)  # CONNECT request
        # a valid reply naming a 255-byte domain: 262 bytes at 0.25 s each (65 s),
        # every byte well within python-socks' per-read timeout
        reply = b"\x05\x00\x00\x03\xff" + b"a" * 255 + b"\x00\x50"
        trickle(conn, reply, every=0.25, stop=stop)

    slow = tcp_server(proxy)
    with pytest.raises(WebSocketTimeoutError) as info:
        open_connection(srv.url, timeout=0.5, proxy=f"socks5://127.0.0.1:{slow.port}")
    assert info.value.timeout == 0.5
    assert srv.handled == 0


@pytest.fixture
def hanging_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """``getaddrinfo`` hangs for ``*.hang.test`` until the test ends (then fails)."""
    release = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith("hang.test"):
            release.wait(WAIT)
            raise socket.gaierror(socket.EAI_NONAME, "released")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield release
    release.set()


def test_a_hanging_name_resolution_ends_at_the_deadline(hanging_resolver: threading.Event) -> None:
    with pytest.raises(WebSocketTimeoutError):
        open_connection("ws://ws.hang.test/", timeout=0.5)


def test_an_error_body_that_never_comes_does_not_hold_the_handshake(
    serve: Callable[..., RawServer],
) -> None:
    def behaviour(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
        conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 100\r\nRetry-After: 3\r\n\r\n{")
        drain_until_eof(conn)  # the other 99 bytes never come

    srv = serve(behaviour)
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=3600.0)  # only the body wait (1 s) ends it
    cause = info.value.__cause__
    assert isinstance(cause, HTTPStatusError)
    assert (cause.status_code, cause.body) == (503, b"{")
    assert backoff.retry_after(info.value, time.time()) == 3.0


# --------------------------------------------------------------------------- 2. size limits


def endless(prefix: bytes, chunks: Callable[[int], bytes], cap: int) -> Callable[..., None]:
    """A behaviour sending ``prefix`` then ``chunks(i)`` for i = 0, 1, ... until ``cap``
    bytes or until the client goes away."""

    def behaviour(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
        conn.sendall(prefix)
        sent = i = 0
        while sent < cap:
            chunk = chunks(i)
            conn.sendall(chunk)
            sent += len(chunk)
            i += 1

    return behaviour


FILL = b"a" * 65536
STATUS_101 = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"


def header_block(i: int) -> bytes:
    return b"".join(b"X-H%08d: v\r\n" % n for n in range(i * 4096, (i + 1) * 4096))


@pytest.mark.parametrize(
    ("case", "behaviour", "text"),
    [
        (
            "endless-header-line",
            endless(STATUS_101 + b"X-Long: ", lambda i: FILL, 8 * MiB),
            f"a response line is longer than {MAX_LINE_LENGTH} bytes",
        ),
        (
            "endless-status-line",
            endless(b"HTTP/1.1 101 ", lambda i: FILL, 8 * MiB),
            f"a response line is longer than {MAX_LINE_LENGTH} bytes",
        ),
        (
            "endless-header-list",
            endless(STATUS_101, header_block, 8 * MiB),
            f"the response has more than {MAX_NUM_HEADERS} headers",
        ),
        (
            "head-too-large",  # 120 lines of 1000 bytes: within the other two limits
            endless(STATUS_101, lambda i: b"X-%03d: %s\r\n" % (i, b"v" * 992), 120_000),
            f"the response head is longer than {MAX_HEAD_SIZE} bytes",
        ),
    ],
)
def test_an_endless_response_head_is_refused_with_bounded_memory(
    serve: Callable[..., RawServer], case: str, behaviour: Callable[..., None], text: str
) -> None:
    srv = serve(behaviour)
    before = open_fds()
    with traced_peak() as peak, pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT)
    assert text in str(info.value)
    assert isinstance(info.value.__cause__, HandshakeError)
    assert peak[0] < PEAK_BOUND, f"{case}: traced peak {peak[0] / MiB:.1f} MiB"
    srv.wait_handled(1)
    assert open_fds() == before


def test_a_4_gib_error_body_is_read_only_to_the_cap(serve: Callable[..., RawServer]) -> None:
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4294967296\r\n\r\n"
    srv = serve(endless(head, lambda i: b"b" * 65536, 32 * MiB))
    with traced_peak() as peak, pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT)
    cause = info.value.__cause__
    assert isinstance(cause, HTTPStatusError)
    assert cause.status_code == 403 and backoff.is_permanent(info.value)
    assert cause.body == b"b" * MAX_ERROR_BODY
    assert "HTTP 403 Forbidden" in str(info.value)
    assert peak[0] < PEAK_BOUND, f"traced peak {peak[0] / MiB:.1f} MiB"


def test_a_refused_handshake_keeps_status_headers_and_body_for_the_engine(
    serve: Callable[..., RawServer],
) -> None:
    body = b'{"code":-1003,"msg":"Too many requests"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    def behaviour(conn: socket.socket, _h: dict[str, str], _raw: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked
        )
        drain_until_eof(conn)

    srv = serve(behaviour)
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=3600.0)  # the last chunk ends the body
    cause = info.value.__cause__
    assert isinstance(cause, HTTPStatusError)
    assert (cause.status_code, cause.resp_headers["retry-after"], cause.body) == (429, "7", body)
    assert "Too many requests" in str(info.value)
    assert backoff.retry_after(info.value, time.time()) == 7.0
    assert not backoff.is_permanent(info.value)


# --------------------------------------------------------------------------- reader (no I/O)


def test_the_reader_limits_hold_at_their_boundary() -> None:
    status = b"HTTP/1.1 101 Switching Protocols\r\n"
    longest = b"X: " + b"v" * (MAX_LINE_LENGTH - 3)
    assert ResponseReader().feed(status + longest + b"\r\n\r\n") is not None
    with pytest.raises(HandshakeError, match="longer than"):
        ResponseReader().feed(status + longest + b"v\r\n\r\n")
    with pytest.raises(HandshakeError, match="longer than"):  # no line end yet: refused too
        ResponseReader().feed(status + longest + b"vv")
    most = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_NUM_HEADERS))
    response = ResponseReader().feed(status + most + b"\r\n")
    assert response is not None and len(response.headers) == MAX_NUM_HEADERS
    with pytest.raises(HandshakeError, match="more than"):
        ResponseReader().feed(status + most + b"X-Last: v\r\n\r\n")


@pytest.mark.parametrize("step", [1, 2, 3, 5, 8, 13, 4096])
def test_the_reader_gives_the_same_result_however_the_bytes_are_cut(step: int) -> None:
    data = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\nConnection:Upgrade\r\n"
        b"X-Folded: a\r\n  b\r\nSec-WebSocket-Accept: abc=\r\n\r\n" + b"\x81\x02hi" * 10
    )
    reader = ResponseReader()
    response = None
    offset = 0
    while response is None:
        response = reader.feed(data[offset : offset + step])
        offset += step
    leftover = reader.leftover + data[offset:]
    assert response.status == 101
    assert response.headers == (
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("x-folded", "a b"),
        ("sec-websocket-accept", "abc="),
    )
    assert leftover == b"\x81\x02hi" * 10


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 101 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nNo colon\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nX: a\rb\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nX: a\x00b\r\n\r\n",
        b"HTTP/1.1 101 OK\r\n folded first\r\n\r\n",
        b"HTTP/2 101 OK\r\n\r\n",
        b"HTTP/1.1 1O1 OK\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ],
)
def test_the_reader_refuses_malformed_heads(head: bytes) -> None:
    with pytest.raises(HandshakeError):
        ResponseReader().feed(head)


# --------------------------------------------------------------------------- leftover

FIRST_FRAMES = b"".join(
    [
        server_frame(0x1, b"first"),
        server_frame(0x2, bytes(range(256)) * 40),
        server_frame(0x9, b"ping!"),
        server_frame(0x1, "é".encode() * 300),
    ]
)


def read_rest(sock: socket.socket, n: int, prefix: bytes) -> bytes:
    data = bytearray(prefix)
    sock.settimeout(WAIT)
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"EOF after {len(data)} of {n} bytes"
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_frames_sent_with_the_101_are_kept_in_leftover(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    tls: bool,
) -> None:
    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(response_101(headers) + FIRST_FRAMES)  # one write, one TLS record
        drain_until_eof(conn)

    srv = serve(behaviour, server_tls if tls else None)
    hs = open_connection(srv.url, timeout=WAIT, ssl_context=client_tls, compression=False)
    try:
        # the response is read in chunks, so the first frames came with it
        assert hs.leftover and FIRST_FRAMES.startswith(hs.leftover)
        assert read_rest(hs.sock, len(FIRST_FRAMES), hs.leftover) == FIRST_FRAMES
    finally:
        hs.sock.close()


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
def test_no_byte_is_lost_wherever_the_end_of_the_head_is_cut(
    serve: Callable[..., RawServer], cut: int
) -> None:
    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        data = response_101(headers) + FIRST_FRAMES
        end = len(response_101(headers))
        conn.sendall(data[: end - cut])
        time.sleep(0.05)
        conn.sendall(data[end - cut : end + 3])
        time.sleep(0.05)
        conn.sendall(data[end + 3 :])
        drain_until_eof(conn)

    srv = serve(behaviour)
    hs = open_connection(srv.url, timeout=WAIT, compression=False)
    try:
        assert read_rest(hs.sock, len(FIRST_FRAMES), hs.leftover) == FIRST_FRAMES
    finally:
        hs.sock.close()


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_the_manager_delivers_messages_sent_with_the_101(
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    tls: bool,
) -> None:
    texts = [f"message {i}" for i in range(3)]

    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        frames = b"".join(server_frame(0x1, t.encode()) for t in texts)
        conn.sendall(response_101(headers) + frames)
        drain_until_eof(conn)

    srv = serve(behaviour, server_tls if tls else None)
    with no_leaks():
        ws = WebSocketManager(srv.url, decode=None, ssl=client_tls if tls else None, **FAST)
        try:
            ws.connect()
            got = []
            for msg in ws.stream():
                got.append(msg)
                if len(got) == len(texts):
                    break
        finally:
            ws.force_close()
    assert got == texts


# --------------------------------------------------------------------------- cancel


def test_a_cancel_before_the_first_step_contacts_nobody(serve: Callable[..., RawServer]) -> None:
    srv = serve(greet)

    def hook(cancel: Callable[[], None] | None) -> None:
        if cancel is not None:
            cancel()  # the engine does this when close() came before the handshake

    with pytest.raises(WebSocketConnectionError, match="cancelled"):
        open_connection(srv.url, timeout=WAIT, on_cancel=hook)
    assert srv.handled == 0 and srv.requests == []


def cancel_when(event: threading.Event, hooks: list[Callable[[], None] | None]) -> threading.Thread:
    def run() -> None:
        assert event.wait(WAIT)
        time.sleep(0.05)  # let the handshake block in its step
        cancel = hooks[0]
        assert cancel is not None
        cancel()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_cancel_ends_a_stuck_tls_handshake_at_once(
    tcp_server: StartTcp,
) -> None:
    srv = tcp_server(lambda conn, stop: drain_until_eof(conn))  # TCP only: never answers TLS
    hooks: list[Callable[[], None] | None] = []
    worker = cancel_when(srv.accepted, hooks)
    before = open_fds()
    with pytest.raises(WebSocketConnectionError, match="cancelled"):
        open_connection(f"wss://127.0.0.1:{srv.port}/", timeout=3600.0, on_cancel=hooks.append)
    worker.join(WAIT)
    assert hooks[-1] is None
    assert srv.finished.wait(WAIT)  # the server saw our socket close
    assert open_fds() == before


def test_a_cancel_ends_a_stuck_socks_negotiation_at_once(
    serve: Callable[..., RawServer],
    tcp_server: StartTcp,
) -> None:
    pytest.importorskip("python_socks")
    srv = serve(greet)
    proxy = tcp_server(lambda conn, stop: stop.wait(WAIT))  # takes the greeting, says nothing
    hooks: list[Callable[[], None] | None] = []
    worker = cancel_when(proxy.accepted, hooks)
    with pytest.raises(WebSocketConnectionError, match="cancelled"):
        open_connection(
            srv.url,
            timeout=3600.0,
            proxy=f"socks5://127.0.0.1:{proxy.port}",
            on_cancel=hooks.append,
        )
    worker.join(WAIT)
    assert srv.handled == 0


def test_a_cancel_ends_a_hanging_name_resolution_at_once(
    hanging_resolver: threading.Event,
) -> None:
    hooks: list[Callable[[], None] | None] = []
    started = threading.Event()

    def hook(cancel: Callable[[], None] | None) -> None:
        hooks.append(cancel)
        started.set()

    worker = cancel_when(started, hooks)
    with pytest.raises(WebSocketConnectionError, match="cancelled"):
        open_connection("ws://ws.hang.test/", timeout=3600.0, on_cancel=hook)
    worker.join(WAIT)


def test_a_late_cancel_does_not_touch_the_connection(serve: Callable[..., RawServer]) -> None:
    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(response_101(headers))
        conn.sendall(server_frame(0x1, b"after") if conn.recv(1) else b"")
        drain_until_eof(conn)

    srv = serve(behaviour)
    hooks: list[Callable[[], None] | None] = []
    hs = open_connection(srv.url, timeout=WAIT, on_cancel=hooks.append, compression=False)
    try:
        cancel = hooks[0]
        assert cancel is not None and hooks[-1] is None
        cancel()  # a close() racing with the end of the handshake
        hs.sock.sendall(b"!")
        frame = server_frame(0x1, b"after")
        assert read_rest(hs.sock, len(frame), hs.leftover) == frame
    finally:
        hs.sock.close()


# --------------------------------------------------------------------------- requests


def test_the_request_is_well_formed(serve: Callable[..., RawServer]) -> None:
    srv = serve(greet)
    url = f"ws://127.0.0.1:{srv.port}/a b/é?q=1#frag"
    hs = open_connection(url, timeout=WAIT, headers=[("X-A", "1"), ("Cookie", "c=1")])
    hs.sock.close()
    srv.wait_handled(1)
    raw = srv.requests[0]
    lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert lines[0] == b"GET /a%20b/%C3%A9?q=1 HTTP/1.1"
    assert lines[1] == f"Host: 127.0.0.1:{srv.port}".encode()
    assert f"Origin: http://127.0.0.1:{srv.port}".encode() in lines
    assert b"Sec-WebSocket-Version: 13" in lines
    assert lines[-2:] == [b"X-A: 1", b"Cookie: c=1"]
    assert raw.endswith(b"\r\n\r\n")


def test_a_subprotocol_answer_naming_two_is_refused(serve: Callable[..., RawServer]) -> None:
    def behaviour(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(
            response_101(headers, "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n")
        )

    srv = serve(behaviour)
    with pytest.raises(WebSocketConnectionError, match="more than one subprotocol"):
        open_connection(srv.url, timeout=WAIT, subprotocols=["a", "b"])


def test_environment_proxies_are_honoured(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = serve(greet)
    connects: list[bytes] = []

    def proxy(conn: socket.socket, _h: dict[str, str], raw: bytes) -> None:
        connects.append(raw)
        host, port = raw.split(b" ")[1].decode().rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=WAIT) as upstream:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            upstream.sendall(read_head(conn))
            conn.sendall(read_head(upstream))

    tunnel = serve(proxy)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"127.0.0.1:{tunnel.port}")  # no scheme: http://
    hs = open_connection(srv.url, timeout=WAIT)
    hs.sock.close()
    assert connects and connects[0].startswith(f"CONNECT 127.0.0.1:{srv.port} ".encode())
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    hs = open_connection(srv.url, timeout=WAIT)
    hs.sock.close()
    assert len(connects) == 1  # bypassed
    srv.wait_handled(2)


def test_a_proxy_refusing_connect_is_a_connection_error(serve: Callable[..., RawServer]) -> None:
    srv = serve(greet)
    refuse = serve(
        lambda conn, h, raw: conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    )
    with pytest.raises(WebSocketConnectionError) as info:
        open_connection(srv.url, timeout=WAIT, proxy=f"http://u:pw@127.0.0.1:{refuse.port}")
    assert "407" in str(info.value) and ":pw@" not in str(info.value)
    assert not hasattr(info.value.__cause__, "status_code")  # not the server's status
    assert srv.handled == 0
