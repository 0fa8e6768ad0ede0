"""The login step of a connection attempt (option ``login``): the login message goes
first, then the attempt waits for its acknowledgement before the subscriptions.

Messages that arrive before the acknowledgement are delivered as usual; the
acknowledgement (or the refusal) never reaches ``stream()``. A refusal raises
``WebSocketLoginError`` with the server's reply (final by default, see
``is_permanent_failure``); no answer within ``Login.timeout`` raises
``WebSocketTimeoutError("login")``; the connection ending meanwhile raises
``WebSocketConnectionError``. Pings are answered while waiting.

Thread-safety: the engine thread only.
"""

from __future__ import annotations

import select
from typing import Any

from kstlib.websocket.exceptions import (
    WebSocketConnectionError,
    WebSocketError,
    WebSocketLoginError,
    WebSocketTimeoutError,
)
from kstlib.websocket.models import Login

from .control import after_controls, send_message
from .link import Link
from .runtime import Runtime

__all__ = ["log_in"]


def log_in(rt: Runtime, link: Link) -> bool:
    """Run the login step on ``link`` (nothing without the ``login`` setting); False
    when a stop interrupted it. Raises as the module docstring says."""
    login = rt.settings.login
    if login is None:
        return True
    try:
        send_message(rt, link, _message(rt, login))
    except (OSError, WebSocketError) as exc:
        raise _failed(rt, f"the login could not be sent: {exc}") from exc
    deadline = rt.clock.monotonic() + login.timeout
    pending = link.take_leftover()
    while not rt.stopping:
        msgs = _read(rt, link, pending, deadline, login.timeout)
        pending = None
        if msgs and _answered(rt, login, msgs):
            return True
    return False


def _message(rt: Runtime, login: Login) -> Any:
    if not callable(login.send):
        return login.send
    try:
        return login.send()
    except Exception as exc:
        rt.callbacks.failed("login factory", exc)
        raise _failed(rt, f"the login factory raised {exc!r}") from exc


def _read(
    rt: Runtime, link: Link, pending: bytes | None, deadline: float, timeout: float
) -> list[Any]:
    """The messages of one read (none when nothing came in half a second)."""
    remaining = deadline - rt.clock.monotonic()
    if remaining <= 0:
        raise WebSocketTimeoutError("login", timeout)
    if pending is not None:
        data: Any = pending
    else:
        try:
            n = link.read_into(rt.buf)
        except OSError as exc:
            raise _failed(rt, f"connection lost during the login: {exc}") from exc
        if n == 0:
            raise _failed(rt, "the server closed the connection during the login")
        if n < 0:
            select.select([link.fileno(), rt.mailbox.fileno()], [], [], min(remaining, 0.5))
            return []
        data = memoryview(rt.buf)[:n]
    msgs = link.protocol.receive_data(data)
    if link.protocol.has_news:
        ending = after_controls(rt, link)
        if ending is not None:
            raise _failed(rt, f"the connection ended during the login ({ending.reason.value})")
    return msgs


def _answered(rt: Runtime, login: Login, msgs: list[Any]) -> bool:
    """Deliver the messages that are not the answer; True once it is the acknowledgement."""
    for i, msg in enumerate(msgs):
        verdict = rt.callbacks.call("login.is_reply", login.is_reply, msg)
        if verdict is None:
            continue
        others = msgs[:i] + msgs[i + 1 :]
        if others:
            rt.delivery.deliver(others)
        if verdict:
            return True
        raise WebSocketLoginError(
            f"{rt.where} refused the login: {msg!r}"[:500], url=rt.url, reply=msg
        )
    rt.delivery.deliver(msgs)
    return False


def _failed(rt: Runtime, text: str) -> WebSocketConnectionError:
    return WebSocketConnectionError(f"cannot connect to {rt.where}: {text}", url=rt.url)
