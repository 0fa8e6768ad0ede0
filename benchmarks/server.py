"""The loopback benchmark server: a separate process that costs the clients almost nothing.

``python -m benchmarks.server --kinds trade,bin1k`` builds the requested blocks of
pre-encoded frames (:mod:`benchmarks.payloads`), listens on ``127.0.0.1`` (an ephemeral port
unless ``--port``), prints ``READY <port>`` on stdout and serves until killed.

It speaks just enough RFC 6455 by hand on plain TCP sockets, one thread per connection:
the opening handshake (``Sec-WebSocket-Accept`` computed here; no extension is ever
offered, so every client runs uncompressed), then one of three behaviours chosen by the
request path:

``/stream/<kind>/<n>``
    Wait for one data frame from the client (the start signal, so that connection set-up
    is outside the client's timing), then write ``n`` frames of ``kind`` with ``sendall``
    in big chunks straight from the pre-encoded block (no per-message work at all). The
    response carries ``X-Bench-Bytes``: the exact number of wire bytes that will follow.
``/echo``
    Send every data frame back unmasked with the same opcode (the round-trip scenario).
    This is a plain Python loop (read, unmask, ``sendall``): its cost is part of every
    client's round-trip time equally.
``/paced/<kind>/<n>``
    After the start frame, one shared pacer thread writes one frame of ``kind`` on every
    paced connection each 10 ms until ``n`` frames were sent, then nothing
    (the many-connections scenario, with its idle phase).
``/timed?conns=C&rate=R&count=N&burst=B&group=G``
    The latency scenarios. The ``C`` connections that name group ``G`` form one group;
    once all of them sent their start frame, one thread (for that group alone) writes to
    them in turn, round robin, a burst of ``B`` trade events every
    ``B / (C * R)`` seconds, so that each connection receives ``R`` messages/s on
    average, until each received ``N``. Every event carries the server's
    ``time.monotonic_ns()`` taken just before the write (:class:`StampedEvents`); a
    burst is one ``sendall``. The schedule is absolute (no drift); a pacer that falls a
    whole tick behind restarts the schedule rather than catching up with an unplanned
    burst.

After its data, a connection only reads: it answers pings, answers a close frame with a
close frame and closes on EOF, so the client always closes first and no unread data can
turn the close into a reset.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import socket
import struct
import sys
import threading
import time

from benchmarks.payloads import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    STREAM_KINDS,
    Block,
    StampedEvents,
    build_block,
    mask_payload,
    server_frame,
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_PING = 0x9
OP_PONG = 0xA
IDLE_TIMEOUT = 600.0
#: Seconds between two frames on one paced connection (100 messages/s each).
PACER_TICK = 0.01
#: Seconds between the last start frame of a timed group and its first write.
TIMED_START_DELAY = 0.05


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


class FrameReader:
    """Buffered reader of (masked) client frames on a blocking socket."""

    def __init__(self, sock: socket.socket, initial: bytes = b"") -> None:
        self.sock = sock
        self.buf = bytearray(initial)

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def read_frame(self) -> tuple[int, bytes]:
        """Return ``(opcode, unmasked payload)`` of the next frame; EOFError at EOF."""
        self._fill(2)
        b0, b1 = self.buf[0], self.buf[1]
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            self._fill(4)
            (length,) = struct.unpack_from("!H", self.buf, 2)
            pos = 4
        elif length == 127:
            self._fill(10)
            (length,) = struct.unpack_from("!Q", self.buf, 2)
            pos = 10
        key = b""
        if b1 & 0x80:
            self._fill(pos + 4)
            key = bytes(self.buf[pos : pos + 4])
            pos += 4
        self._fill(pos + length)
        payload = bytes(self.buf[pos : pos + length])
        del self.buf[: pos + length]
        if key:
            payload = mask_payload(payload, key)
        return b0 & 0x0F, payload


def read_request(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """Read the HTTP upgrade request: ``(path, lower-cased headers, bytes after it)``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError
        data += chunk
        if len(data) > 65536:
            raise ValueError("request head too large")
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return path, headers, rest


class _Paced:
    __slots__ = ("block", "sent", "sock", "total")

    def __init__(self, sock: socket.socket, block: Block, total: int) -> None:
        self.sock = sock
        self.block = block
        self.sent = 0
        self.total = total


class Pacer:
    """One thread writing one frame per tick (:data:`PACER_TICK`) on every paced connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: list[_Paced] = []
        self._thread = threading.Thread(target=self._run, name="pacer", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket, block: Block, total: int) -> None:
        with self._lock:
            self._conns.append(_Paced(sock, block, total))

    def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            next_at += PACER_TICK
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
            with self._lock:
                conns = list(self._conns)
            finished = []
            for c in conns:
                i = c.sent % c.block.frames
                start = c.block.ends[i - 1] if i else 0
                try:
                    c.sock.sendall(memoryview(c.block.data)[start : c.block.ends[i]])
                    c.sent += 1
                except OSError:
                    c.sent = c.total
                if c.sent >= c.total:
                    finished.append(c)
            if finished:
                with self._lock:
                    self._conns = [c for c in self._conns if c not in finished]


class TimedGroups:
    """The ``/timed`` streams: groups of connections, one pacing thread per group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, list[socket.socket]] = {}
        self._events: StampedEvents | None = None

    def join(self, query: str, sock: socket.socket) -> None:
        """Add ``sock`` to its group; the last member to join starts the group's pacer."""
        params = dict(item.partition("=")[::2] for item in query.split("&") if item)
        conns, rate = int(params["conns"]), float(params["rate"])
        count, burst = int(params["count"]), int(params.get("burst", "1"))
        if count % burst:
            raise ValueError("count must be a multiple of burst")
        with self._lock:
            members = self._groups.setdefault(params["group"], [])
            members.append(sock)
            if len(members) < conns:
                return
            del self._groups[params["group"]]
            if self._events is None:
                self._events = StampedEvents()
            events = self._events
        threading.Thread(
            target=self._pace,
            args=(members, rate, count, burst, events),
            name="timed-pacer",
            daemon=True,
        ).start()

    @staticmethod
    def _pace(
        socks: list[socket.socket], rate: float, count: int, burst: int, events: StampedEvents
    ) -> None:
        tick = burst / (rate * len(socks))
        monotonic, monotonic_ns, sleep = time.monotonic, time.monotonic_ns, time.sleep
        build, restamp = events.frames, events.restamp
        next_at = monotonic() + TIMED_START_DELAY
        first = 0
        for _ in range(count // burst):
            for sock in socks:
                delay = next_at - monotonic()
                if delay > 0:
                    sleep(delay)
                elif delay < -tick:
                    next_at = monotonic()
                stamp = b"%d" % monotonic_ns()
                data, offsets = build(first, burst, stamp)
                restamp(data, offsets, b"%d" % monotonic_ns(), len(stamp))
                try:
                    sock.sendall(data)
                except OSError:
                    pass  # that client is gone; the others keep their schedule
                next_at += tick
                first += burst


class Server:
    def __init__(self, kinds: list[str]) -> None:
        self.blocks = {kind: build_block(kind) for kind in kinds}
        self._pacer: Pacer | None = None
        self._pacer_lock = threading.Lock()
        self.timed = TimedGroups()

    @property
    def pacer(self) -> Pacer:
        """The shared pacer of ``/paced``, started on first use (so that a run without
        that scenario has no thread waking every 10 ms beside the timed pacers)."""
        with self._pacer_lock:
            if self._pacer is None:
                self._pacer = Pacer()
            return self._pacer

    def handle(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(IDLE_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            path, headers, rest = read_request(sock)
            parts = path.strip("/").split("?")[0].split("/")
            query = path.partition("?")[2]
            mode = parts[0]
            extra = b""
            block: Block | None = None
            count = 0
            if mode in ("stream", "paced"):
                block = self.blocks[parts[1]]
                count = int(parts[2])
                extra = b"X-Bench-Bytes: %d\r\n" % block.stream_bytes(count)
            elif mode not in ("echo", "timed"):
                raise ValueError(f"unknown path {path!r}")
            key = headers["sec-websocket-key"].encode()
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n" + extra + b"\r\n"
            )
            reader = FrameReader(sock, rest)
            if mode == "echo":
                self.echo(reader)
                return
            if mode == "timed":
                self.wait_start(reader)
                self.timed.join(query, sock)
                self.drain(reader)
                return
            assert block is not None
            self.wait_start(reader)
            if mode == "stream":
                self.stream(sock, block, count)
            else:
                self.pacer.add(sock, block, count)
            self.drain(reader)
        except (EOFError, OSError, ValueError, KeyError):
            pass
        finally:
            sock.close()

    @staticmethod
    def wait_start(reader: FrameReader) -> None:
        while True:
            opcode, payload = reader.read_frame()
            if opcode in (OP_TEXT, OP_BINARY):
                return
            if opcode == OP_CLOSE:
                raise EOFError
            if opcode == OP_PING:
                reader.sock.sendall(server_frame(OP_PONG, payload))

    @staticmethod
    def stream(sock: socket.socket, block: Block, count: int) -> None:
        view = memoryview(block.data)
        whole, rest = divmod(count, block.frames)
        for _ in range(whole):
            sock.sendall(view)
        if rest:
            sock.sendall(view[: block.ends[rest - 1]])

    @staticmethod
    def drain(reader: FrameReader) -> None:
        while True:
            opcode, payload = reader.read_frame()
            if opcode == OP_CLOSE:
                reader.sock.sendall(server_frame(OP_CLOSE, payload[:2]))
                reader.sock.shutdown(socket.SHUT_WR)
                # Wait for the client's EOF so that our close never resets the connection.
                while reader.sock.recv(65536):
                    pass
                return
            if opcode == OP_PING:
                reader.sock.sendall(server_frame(OP_PONG, payload))

    @staticmethod
    def echo(reader: FrameReader) -> None:
        sock = reader.sock
        read = reader.read_frame
        send = sock.sendall
        while True:
            opcode, payload = read()
            if opcode in (OP_TEXT, OP_BINARY):
                send(server_frame(opcode, payload))
            elif opcode == OP_PING:
                send(server_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                send(server_frame(OP_CLOSE, payload[:2]))
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
                return

    def serve(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1024)
        sys.stdout.write(f"READY {listener.getsockname()[1]}\n")
        sys.stdout.flush()
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(STREAM_KINDS))
    args = parser.parse_args(argv)
    Server([k for k in args.kinds.split(",") if k]).serve(args.port)


if __name__ == "__main__":
    main()
