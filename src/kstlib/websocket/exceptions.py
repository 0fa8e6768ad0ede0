"""The error hierarchy of kstlib.websocket.

Every error the library raises to user code derives from :class:`WebSocketError`::

    WebSocketError
    +-- WebSocketConnectionError(url, attempts)   could not (re)connect
    |   +-- WebSocketLoginError(reply)            the server refused the login
    +-- WebSocketClosedError(code, reason)        the connection is closed for good
    +-- WebSocketTimeoutError(operation)          an operation did not finish in time
    +-- WebSocketProtocolError(close_code)        the peer broke RFC 6455 / RFC 7692
    +-- WebSocketRequestError(reply)              a request() got no usable reply

The C++ codec (``_speedups``) raises :class:`WebSocketProtocolError` too: it imports this
module when it is loaded, so both codecs raise the very same class.
"""

from __future__ import annotations

__all__ = [
    "WebSocketClosedError",
    "WebSocketConnectionError",
    "WebSocketError",
    "WebSocketLoginError",
    "WebSocketProtocolError",
    "WebSocketRequestError",
    "WebSocketTimeoutError",
]


class WebSocketError(Exception):
    """Base class of every error raised by kstlib.websocket."""


class WebSocketConnectionError(WebSocketError):
    """Connecting failed: refused, DNS, TLS, timeout, bad handshake, or attempts exhausted.

    ``url`` is the address that was tried and ``attempts`` how many connection attempts
    were made before giving up. The underlying cause is chained (``__cause__``).
    """

    def __init__(self, message: str, *, url: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.url = url
        self.attempts = attempts

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_connection_error, (str(self), self.url, self.attempts))


def _rebuild_connection_error(message: str, url: str, attempts: int) -> WebSocketConnectionError:
    return WebSocketConnectionError(message, url=url, attempts=attempts)


class WebSocketClosedError(WebSocketError):
    """The connection is closed and will not be restored (or is not open for sending).

    ``code`` is the WebSocket close code (``None`` when no close frame was exchanged) and
    ``reason`` the close reason text.
    """

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        text = f"WebSocket closed (code={code}, reason={reason!r})"
        super().__init__(text)
        self.code = code
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, self.reason))


class WebSocketTimeoutError(WebSocketError):
    """An operation (``"connect"``, ``"close"``, ``"send"``, ...) did not finish in time."""

    def __init__(self, operation: str, timeout: float | None = None) -> None:
        text = f"WebSocket {operation} timed out"
        if timeout is not None:
            text += f" after {timeout:g}s"
        super().__init__(text)
        self.operation = operation
        self.timeout = timeout

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.operation, self.timeout))


class WebSocketProtocolError(WebSocketError):
    """The peer violated the protocol; ``close_code`` is the RFC 6455 code to close with.

    1002 protocol error, 1007 invalid payload data (bad UTF-8), 1009 message too big.
    """

    def __init__(self, close_code: int, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.close_code, str(self)))


class WebSocketLoginError(WebSocketConnectionError):
    """The server refused the ``login`` message of a connection attempt; ``reply`` is
    what it answered. Final by default (see ``is_permanent_failure``)."""

    def __init__(self, message: str, *, url: str, reply: object, attempts: int = 1) -> None:
        super().__init__(message, url=url, attempts=attempts)
        self.reply = reply

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_login_error, (str(self), self.url, self.reply, self.attempts))


def _rebuild_login_error(
    message: str, url: str, reply: object, attempts: int
) -> WebSocketLoginError:
    return WebSocketLoginError(message, url=url, reply=reply, attempts=attempts)


class WebSocketRequestError(WebSocketError):
    """A ``request()`` could not be answered: its connection ended first, or one reply
    matched several pending requests (``reply`` holds it, else None)."""

    def __init__(self, message: str, reply: object = None) -> None:
        super().__init__(message)
        self.reply = reply

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.reply))
