"""The opening handshake's clock and its cancel: every blocking step ends on time.

* :class:`_Deadline`: the end of the whole handshake (``timeout`` seconds from its
  start); :meth:`~_Deadline.remaining` is the timeout of the next blocking call and
  raises ``TimeoutError`` once it has passed.
* :class:`_Abort`: the cancel callable :func:`kstlib.websocket.transport.open_connection`
  hands to ``on_cancel``; calling it shuts down the socket the handshake is using and
  wakes any wait, so the step in progress fails at once (:class:`_Cancelled`).
* :class:`_Helper`: a blocking call that cannot be interrupted (name resolution,
  python-socks) run on a daemon thread and waited for within the deadline or until
  cancelled; a socket it returns after we stopped waiting is closed.

Thread-safety: :class:`_Abort` may be called from any thread (its state is under a
lock); a :class:`_Deadline` and a :class:`_Helper` belong to the handshake's thread.
A :class:`_Helper` abandoned at the deadline leaves its daemon thread running until the
call returns (bounded by the call's own timeouts or the system resolver's).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")


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
