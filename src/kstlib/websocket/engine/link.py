"""One open connection: its socket, its :class:`~kstlib.websocket.protocol.ClientProtocol`,
and the locks that let any thread write while the engine thread reads.

* Reads (:meth:`Link.read_into`, :attr:`Link.read_frames`) belong to one thread at a
  time: the engine thread, a consumer it lent the reading to (:mod:`.direct`), or the
  closer thread of a replaced connection.
* Writes (:meth:`Link.send_data`, :meth:`Link.send_ping`, :meth:`Link.flush`,
  :meth:`Link.send_close`) hold ``write_lock`` for the whole frame, so frames never
  interleave. A write waits for room in the socket for at most ``write_timeout``; a frame
  that could be written only in part breaks the byte stream, so the connection is then
  aborted (the reader sees it end) before the timeout is raised.
* Over TLS, ``io_lock`` serialises every call into the ``SSLSocket`` (OpenSSL objects
  must not be read and written by two threads at once). Lock order: ``write_lock``, then
  ``io_lock``; neither is held while waiting for the socket.

Thread-safety: as above; :meth:`Link.abort` may be called from any thread, twice.
"""

from __future__ import annotations

import functools
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from kstlib.websocket import transport
from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketProtocolError,
    WebSocketTimeoutError,
)
from kstlib.websocket.protocol import ClientProtocol

from .clock import Clock
from .keepalive import Keepalive

__all__ = ["Link"]

#: One read, framed: ``(messages, controls, error, nread, payload)`` (:attr:`Link.read_frames`).
Frames = tuple[list[Any], list[tuple[int, bytes]], WebSocketProtocolError | None, int, int]

#: What a non-blocking read or write raises when it cannot go on without waiting.
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Link:
    """A connection whose opening handshake succeeded; the socket is non-blocking."""

    def __init__(
        self,
        hs: transport.Handshake,
        protocol: ClientProtocol,
        keepalive: Keepalive,
        *,
        clock: Clock,
        write_timeout: float,
    ) -> None:
        self.sock: socket.socket = hs.sock
        self.leftover = hs.leftover
        self.protocol = protocol
        self.keepalive = keepalive
        self.tls = isinstance(hs.sock, ssl.SSLSocket)
        self.io_lock = threading.Lock()
        #: One non-blocking read into a buffer: bytes read, 0 at EOF; raises one of
        #: :data:`WOULD_BLOCK` when nothing is there, another ``OSError`` when the
        #: connection broke.
        self._recv_into: Callable[[bytearray], int] = (
            self._tls_recv_into if self.tls else hs.sock.recv_into
        )
        #: One non-blocking read into a buffer, framed by the protocol's parser:
        #: ``(messages, controls, error, nread, payload)`` (``FrameParser.feed_from``;
        #: nread 0 at EOF), None when nothing waits; raises ``OSError`` when the
        #: connection broke. The caller hands ``controls`` and ``error`` to
        #: :meth:`ClientProtocol.received`. One native call on plain TCP (the hot path of
        #: :mod:`.direct`: no Python frame per read).
        self.read_frames: Callable[[bytearray], Frames | None] = (
            self._tls_read_frames
            if self.tls
            else functools.partial(protocol.parser.feed_from, hs.sock.fileno())
        )
        #: One non-blocking write of what the socket takes now (write lock held).
        self._send_some: Callable[[bytes | memoryview], int] = (
            self._tls_send if self.tls else hs.sock.send
        )
        self.write_lock = threading.Lock()
        self.open = True
        self.connected_at = clock.monotonic()
        self._clock = clock
        self._write_timeout = write_timeout

    def fileno(self) -> int:
        return self.sock.fileno()

    # ------------------------------------------------------------------ reading

    def read_into(self, buf: bytearray) -> int:
        """One non-blocking read: bytes read, -1 when nothing is there, 0 at EOF.

        Raises ``OSError`` when the connection broke."""
        try:
            return self._recv_into(buf)
        except WOULD_BLOCK:
            return -1

    def _tls_recv_into(self, buf: bytearray) -> int:
        with self.io_lock:  # an SSLSocket's reads and writes share its state
            return self.sock.recv_into(buf)

    def _tls_read_frames(self, buf: bytearray) -> Frames | None:
        """:attr:`read_frames` over TLS: the ``SSLSocket`` decrypts, then the parser."""
        try:
            n = self._tls_recv_into(buf)
        except WOULD_BLOCK:
            return None
        parser = self.protocol.parser
        before = parser.payload_bytes
        messages, controls, error = parser.feed(memoryview(buf)[:n])  # n 0: EOF, nothing
        return messages, controls, error, n, parser.payload_bytes - before

    def drained(self) -> bool:
        """After a read shorter than the buffer: nothing is left to read without waiting
        (over TLS, no decrypted bytes wait inside the ``SSLSocket``)."""
        return not self.tls or self.sock.pending() == 0  # type: ignore[attr-defined]

    def unread(self) -> bool:
        """True when bytes wait to be read: in the kernel (or its end of stream), or
        decrypted inside the ``SSLSocket``; True as well when that cannot be told now
        (another thread is inside the ``SSLSocket``). From any thread; never waits."""
        if self.tls:
            if not self.io_lock.acquire(blocking=False):
                return True
            try:
                if self.sock.pending():  # type: ignore[attr-defined]
                    return True
            finally:
                self.io_lock.release()
        poller = select.poll()
        try:
            poller.register(self.sock.fileno(), select.POLLIN)
        except (OSError, ValueError):  # closed meanwhile: its reader will see the end
            return True
        return bool(poller.poll(0))

    def take_leftover(self) -> bytes | None:
        """Bytes the handshake read past its response (to parse first), once."""
        data, self.leftover = self.leftover, b""
        return data or None

    # ------------------------------------------------------------------ writing

    def send_data(self, opcode: int, payload: Any) -> None:
        """Write one data message. Raises ``WebSocketClosedError`` when the connection is
        closing or gone, ``WebSocketTimeoutError`` when the peer stopped reading."""
        with self.write_lock:
            frame, sent = self._send_first(opcode, payload)
            if sent < len(frame):
                self._write(memoryview(frame)[sent:], partial=sent > 0)

    def try_send_data(self, opcode: int, payload: Any) -> Callable[[], None] | None:
        """Write one data message without waiting, when the write lock is free and the
        socket takes the whole frame at once: then None. Otherwise a function that does
        (or finishes) the job as :meth:`send_data` would, waiting; it holds the write lock
        meanwhile, so it **must** be called (from a thread that may block). Raises as
        :meth:`send_data` does."""
        if not self.write_lock.acquire(blocking=False):
            return lambda: self.send_data(opcode, payload)
        try:
            frame, sent = self._send_first(opcode, payload)
        except BaseException:
            self.write_lock.release()
            raise
        if sent == len(frame):
            self.write_lock.release()
            return None

        def finish() -> None:
            try:
                self._write(memoryview(frame)[sent:], partial=sent > 0)
            finally:
                self.write_lock.release()

        return finish

    def _send_first(self, opcode: int, payload: Any) -> tuple[bytes, int]:
        """Encode one data message and write what the socket takes of it now, without
        waiting (write lock held): ``(frame, bytes sent)``; the whole frame in the common
        case. Raises ``WebSocketClosedError`` when the connection is closing or gone."""
        self._check_writable()
        frame = self.protocol.encode_data(opcode, payload)
        try:
            return frame, self._send_some(frame)
        except WOULD_BLOCK:
            return frame, 0

    def send_ping(self) -> bool:
        """Write a ping; True when it is the one whose pong is awaited."""
        with self.write_lock:
            self._check_writable()
            frame, waits = self.protocol.encode_ping()
            self._write(frame)
            return waits

    def flush(self) -> int:
        """Write the control replies the protocol asks for; returns how many."""
        if not self.protocol.wants_to_send:
            return 0
        with self.write_lock:
            frames = self.protocol.data_to_send()
            for frame in frames:
                self._write(frame)
            return len(frames)

    def send_close(self, code: int | None, reason: str, timeout: float | None = None) -> bool:
        """Write our close frame once; False when one was sent already or it is gone.

        ``timeout`` bounds the whole call, the wait for a writer that holds the lock
        included (``WebSocketTimeoutError`` past it); None: the write timeout."""
        if not self.write_lock.acquire(timeout=-1 if timeout is None else timeout):
            raise WebSocketTimeoutError("close", timeout)
        try:
            if not self.open:
                return False
            frame = self.protocol.encode_close(code, reason)
            if frame is None:
                return False
            self._write(frame, timeout)
            return True
        finally:
            self.write_lock.release()

    def _check_writable(self) -> None:
        if not self.open or self.protocol.close_sent:
            raise WebSocketClosedError(None, "not connected (the connection is closing)")

    def _write(
        self, data: bytes | memoryview, timeout: float | None = None, partial: bool = False
    ) -> None:
        """Write all of ``data``, waiting at most ``timeout`` (None: the write timeout)
        for room in the socket; ``partial``: ``data`` is the rest of a frame begun
        already. Caller holds ``write_lock``."""
        view = memoryview(data)
        deadline: float | None = None
        while view:
            try:
                sent = self._send_some(view)
            except WOULD_BLOCK:
                partial = partial or len(view) < len(data)
                deadline = self._wait_writable(deadline, timeout, partial=partial)
                continue
            view = view[sent:]

    def _tls_send(self, view: bytes | memoryview) -> int:
        with self.io_lock:
            return self.sock.send(view)

    def _wait_writable(
        self, deadline: float | None, timeout: float | None, *, partial: bool
    ) -> float:
        now = self._clock.monotonic()
        timeout = self._write_timeout if timeout is None else timeout
        if deadline is None:
            deadline = now + timeout
        if now >= deadline:
            if partial:  # the peer holds half a frame: the stream cannot go on
                self._break()
            raise WebSocketTimeoutError("send", timeout)
        if not self.open:
            raise BrokenPipeError("connection closed while sending")
        select.select([], [self.sock], [], min(deadline - now, 0.5))
        return deadline

    # ------------------------------------------------------------------ ending

    def abort(self, send_close: bool = False) -> None:
        """Close the socket now, without waiting for anything. Idempotent.

        ``send_close`` first writes a close frame if the write lock is free at once and
        the frame fits the socket (never waits)."""
        if not self.open:
            return
        if send_close:
            self._try_close_frame()
        self.open = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self.write_lock:  # a writer that was waiting sees the socket gone
            self.sock.close()

    def _break(self) -> None:
        """Abort with ``write_lock`` already held (a write failed half-way)."""
        self.open = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _try_close_frame(self) -> None:
        if not self.write_lock.acquire(blocking=False):
            return  # a writer is stuck on this socket: do not wait behind it
        try:
            frame = self.protocol.encode_close(1000, "")
            if frame is not None:
                self._send_some(memoryview(frame))
        except (OSError, ValueError):
            pass
        finally:
            self.write_lock.release()

    # ------------------------------------------------------------------ counters

    def counters(self) -> tuple[int, int, int, int, int]:
        """``(messages_received, bytes_received, decode_errors, messages_sent, bytes_sent)``."""
        parser, encoder = self.protocol.parser, self.protocol.encoder
        return (
            parser.messages_received,
            parser.bytes_received,
            parser.decode_errors,
            encoder.messages_sent,
            encoder.bytes_sent,
        )
