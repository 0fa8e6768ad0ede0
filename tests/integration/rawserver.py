"""Hand-written servers on 127.0.0.1 for tests that must control every byte on the wire:
a ``socket`` + thread per server, running a test's ``behaviour`` on each connection.

``serve`` is the fixture that starts them and closes them after the test; ``cert_files``,
``other_cert_files``, ``server_tls`` and ``client_tls`` give them throwaway certificates.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WAIT = 30.0  # generous upper bound for event waits; never reached on success

Behaviour = Callable[[socket.socket, dict[str, str], bytes], None]


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """An unmasked (server-to-client) frame."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def response_101(headers: dict[str, str], extra: str = "", accept: str | None = None) -> bytes:
    acc = accept if accept is not None else accept_key(headers["sec-websocket-key"])
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {acc}\r\n{extra}\r\n"
    ).encode()


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def parse_head(raw: bytes) -> dict[str, str]:
    lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    out: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        out[name.strip().lower()] = value.strip()
    return out


def drain_until_eof(conn: socket.socket) -> bytes:
    """Read until the client closes (or WAIT passes); return what it sent."""
    conn.settimeout(WAIT)
    got = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    return got


class RawServer:
    """One-thread TCP (optionally TLS) server running ``behaviour`` per connection."""

    def __init__(self, behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> None:
        self.behaviour = behaviour
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.received: list[bytes] = []
        self.errors: list[BaseException] = []
        self.handled = 0
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/path?q=1"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                conn.settimeout(WAIT)
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                head = read_head(conn)
                self.requests.append(head)
                self.behaviour(conn, parse_head(head), head)
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(exc)
            finally:
                conn.close()
                with self.cond:
                    self.handled += 1
                    self.cond.notify_all()

    def wait_handled(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.handled >= n, WAIT)

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(WAIT)


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> RawServer:
        srv = RawServer(behaviour, tls)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


def make_cert(directory: Path, names: list[x509.GeneralName]) -> tuple[Path, Path]:
    """A throwaway self-signed certificate (its own CA) for ``names``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kstlib test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Certificate for 127.0.0.1 / localhost."""
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    return make_cert(tmp_path_factory.mktemp("tls"), names)


@pytest.fixture(scope="module")
def other_cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Certificate valid only for the name ``other.test``."""
    return make_cert(tmp_path_factory.mktemp("tls-other"), [x509.DNSName("other.test")])


@pytest.fixture
def server_tls(cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert_files)
    return ctx


@pytest.fixture
def client_tls(cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_files[0]))
