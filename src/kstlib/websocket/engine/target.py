"""What the next connection attempt connects to: the URL, the headers and the
subscriptions, each fixed in the settings or produced by a factory before every attempt.

A factory lets a credential that expires (a JWT of a few minutes, a fresh token per
connection, a listenKey in the URL) be renewed on each reconnect. A factory that raises,
or returns a value the settings' own rules refuse, fails that attempt with a
``WebSocketConnectionError`` naming the factory (the cause chained); the error is counted
in ``callback_errors`` and the reconnect policy decides what follows.

Thread-safety: the engine thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kstlib.websocket._http import check_headers, check_url, redact_url
from kstlib.websocket.config.checks import check_subscriptions
from kstlib.websocket.exceptions import WebSocketConnectionError

from .runtime import Runtime
from .subscriptions import Message

__all__ = ["Target", "resolve"]

log = logging.getLogger("kstlib.websocket")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Target:
    """One attempt's URL and headers; ``subscriptions`` None when they are fixed."""

    url: str
    headers: tuple[tuple[str, str], ...]
    subscriptions: list[Message] | None


def resolve(rt: Runtime) -> Target:
    """Call the factories (if any) and check what they return; remember the URL."""
    s = rt.settings
    url = _produce(rt, "url", s.url, check_url)
    rt.url = url
    headers = _produce(rt, "headers", s.headers, check_headers)
    subs = None
    if callable(s.subscriptions):
        subs = list(_produce(rt, "subscriptions", s.subscriptions, check_subscriptions))
    return Target(url, headers, subs)


def has_factories(rt: Runtime) -> bool:
    s = rt.settings
    return callable(s.url) or callable(s.headers) or callable(s.subscriptions)


def _produce(rt: Runtime, name: str, value: Any, check: Callable[[Any], _T]) -> _T:
    if not callable(value):
        return value  # type: ignore[no-any-return]  # checked when the settings were built
    try:
        produced = value()
    except Exception as exc:
        rt.callbacks.failed(f"{name} factory", exc)
        raise _failure(rt, f"the {name} factory raised {exc!r}") from exc
    try:
        return check(produced)
    except ValueError as exc:  # the settings' own rules (InvalidValue, Invalid)
        rt.counters.add("callback_errors")
        raise _failure(rt, f"the {name} factory returned an invalid value: {exc}") from exc


def _failure(rt: Runtime, text: str) -> WebSocketConnectionError:
    return WebSocketConnectionError(f"cannot connect to {redact_url(rt.url)}: {text}", url=rt.url)
