"""Real ``redis-server`` and ``nats-server -js`` processes for the sink tests.

Each server listens on a free loopback port with its own data directory (under the
test's ``tmp_path``), is started by its fixture and stopped (SIGTERM, then SIGKILL) at
teardown, whatever the test did. :meth:`BusServer.kill` (SIGKILL) and
:meth:`BusServer.start` (same port, same data directory) let a test take the bus away
mid-stream and bring it back. Redis runs with an append-only file synced on every write
(``appendfsync always``), so what it acknowledged survives a SIGKILL; NATS JetStream
stores to its directory (``-sd``). Readiness is waited for event-based: Redis answers
``PING``, nats-server logs "Server is ready" (JetStream is up by then).

Without the binaries the fixtures skip and say which package to install (``.ci/run``
installs both).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

__all__ = [
    "BusServer",
    "NatsServer",
    "Recorder",
    "RedisServer",
    "bus",
    "bus_url",
    "find_binary",
    "free_port",
    "nats_server",
    "read_n",
    "redis_server",
    "relay_main",
    "segments",
    "text_frame",
    "trade_ids",
]

START_TIMEOUT = 20.0


def find_binary(name: str) -> str | None:
    """``name`` on PATH, or in the sbin folders Debian installs servers to."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


class BusServer:
    """One server process on :attr:`port` with data in :attr:`data`."""

    binary = ""
    package = ""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data / "server.log"
        data.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        """Start (again, on the same port and data) and wait until it serves."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.data
            )
        wait_until(lambda: self._alive() and self.ready(), START_TIMEOUT, f"{self.binary} ready")

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.binary} exited: {self.log.read_text()[-2000:]}")
        return True

    def kill(self) -> None:
        """SIGKILL: the bus vanishes mid-write, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


class RedisServer(BusServer):
    binary = "redis-server"
    package = "redis-server"

    def __init__(self, data: Path, *extra: str) -> None:
        super().__init__(data)
        self.extra = list(extra)

    def command(self) -> list[str]:
        return [
            find_binary(self.binary) or self.binary,
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--protected-mode", "no", *self.extra,
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def url(self, stream: str = "test", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"stream": stream, **params}.items())
        return f"redis://127.0.0.1:{self.port}/0?{query}"


class NatsServer(BusServer):
    binary = "nats-server"
    package = "nats-server"

    def command(self) -> list[str]:
        return [
            find_binary(self.binary) or self.binary,
            "-js", "-sd", str(self.data / "js"), "-a", "127.0.0.1", "-p", str(self.port),
        ]  # fmt: skip

    def ready(self) -> bool:
        return "Server is ready" in self.log.read_text(errors="replace") and self.accepts()

    def start(self) -> None:
        if self.log.exists():
            self.log.unlink()  # readiness is read from this run's log
        super().start()

    def url(self, subject: str = "test", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"subject": subject, **params}.items())
        return f"nats://127.0.0.1:{self.port}?{query}"


def _started(server: BusServer) -> Iterator[BusServer]:
    if find_binary(server.binary) is None:
        pytest.skip(f"{server.binary} not installed (apt-get install {server.package})")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started :class:`RedisServer`, stopped after the test."""
    server = RedisServer(tmp_path / "redis")
    yield from _started(server)  # type: ignore[misc]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started :class:`NatsServer` with JetStream, stopped after the test."""
    server = NatsServer(tmp_path / "nats")
    yield from _started(server)  # type: ignore[misc]


# ----------------------------------------------------------------------------- helpers


class Recorder:
    """An ``on_batch`` in front of a relay's: records what the relay was given, in order
    (raw payloads and markers), then hands the batch on. ``seen`` is appended to by the
    engine thread only; reading its length from the test thread is safe."""

    def __init__(self, hook: Callable[[list[Any]], list[Any]]) -> None:
        self.hook = hook
        self.seen: list[Any] = []

    def __call__(self, batch: list[Any]) -> list[Any]:
        self.seen.extend(batch)
        return self.hook(batch)

    def expected(self) -> list[Any]:
        """What a reader with ``decode="json"`` should yield."""
        return [orjson.loads(m) if isinstance(m, bytes) else m for m in self.seen]

    def messages(self) -> int:
        return sum(1 for m in self.seen if isinstance(m, bytes))


def read_n(reader: Iterable[Any], n: int) -> list[Any]:
    """The first ``n`` items of ``reader`` (fewer if it ends: give it an idle_timeout)."""
    got: list[Any] = []
    if n == 0:
        return got
    for item in reader:
        got.append(item)
        if len(got) >= n:
            break
    return got


def trade_ids(items: Iterable[Any]) -> list[int]:
    return [m["t"] for m in items if isinstance(m, dict)]


def segments(items: list[Any]) -> list[list[int]]:
    """Trade ids between markers: each segment must be consecutive."""
    out: list[list[int]] = [[]]
    for m in items:
        if isinstance(m, dict):
            out[-1].append(m["t"])
        elif out[-1]:
            out.append([])
    return [s for s in out if s]


@pytest.fixture(params=["redis", "nats"])
def bus(request: pytest.FixtureRequest) -> BusServer:
    """Each test using it runs once on Redis and once on NATS."""
    server: BusServer = request.getfixturevalue(f"{request.param}_server")
    return server


def bus_url(server: BusServer, name: str = "feed") -> str:
    """The relay/reader address of ``server`` for the stream / subject ``name``."""
    if isinstance(server, RedisServer):
        return server.url(name)
    assert isinstance(server, NatsServer)
    return server.url(name)


def text_frame(payload: bytes) -> bytes:
    """An unmasked server text frame carrying ``payload`` (for ``sim.send_raw``)."""
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def relay_main(bus: str, ws_url: str, name: str) -> None:
    """A relay process for the redundancy tests: publishes ``ws_url`` to ``bus`` with
    trade ids as dedupe keys until SIGTERM, printing ``READY`` once connected."""
    import signal as _signal
    import sys
    import threading

    from kstlib.websocket.sinks import Relay, open_sink

    stop = threading.Event()
    _signal.signal(_signal.SIGTERM, lambda *_: stop.set())
    relay = Relay(open_sink(bus), name=name, dedupe_key=lambda m: m["t"])
    relay.connect(ws_url, reconnect_delay=0.05, reconnect_delay_max=0.2)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    stop.wait()
    relay.close()
