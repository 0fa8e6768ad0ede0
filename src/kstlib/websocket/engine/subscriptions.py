"""The subscription messages, (re)sent in order on every connection.

A connection joins the subscribed set once the whole list was sent on it
(:meth:`Subscriptions.install`); ``subscribe()`` / ``unsubscribe()`` from any thread send
their message on every connection of that set (the current one, and a handover's new one
during the overlap), so no connection misses a change. The lock is held only while those
small messages are written, never across a handshake or a handover's overlap.

Thread-safety: every method may be called from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from .link import Link

__all__ = ["Message", "Subscriptions"]

Message = dict[str, Any] | str
#: Sends one message on a link; False when it was cancelled (the engine is stopping).
Sender = Callable[[Link, Message], bool]


class Subscriptions:
    """The list, and the connections that have it."""

    def __init__(self, initial: Iterable[Message] = ()) -> None:
        self._lock = threading.Lock()
        self._base: list[Message] = []  # what the subscriptions factory gave last
        self._items: list[Message] = list(initial)
        self._links: list[Link] = []

    def items(self) -> list[Message]:
        """The list a connection gets now: the factory's messages, then the others."""
        with self._lock:
            return self._base + self._items

    def install(self, link: Link, send: Sender, base: list[Message] | None = None) -> int | None:
        """Send the whole list on ``link`` and add it to the subscribed set; returns how
        many were sent, None when cancelled. ``base`` is what the subscriptions factory
        produced for this attempt (it replaces the previous one). Exceptions of ``send``
        propagate."""
        with self._lock:
            if base is not None:
                self._base = base
            messages = self._base + self._items
            for msg in messages:
                if not send(link, msg):
                    return None
            self._links.append(link)
            return len(messages)

    def forget(self, link: Link) -> None:
        """``link`` ended or was replaced: changes no longer go to it."""
        with self._lock:
            if link in self._links:
                self._links.remove(link)

    def add(self, msg: Message, send: Sender) -> None:
        """Append ``msg`` and send it on every subscribed connection."""
        with self._lock:
            self._items.append(msg)
            for link in list(self._links):
                send(link, msg)

    def remove(self, msg: Message, unsubscribe: Message | None, send: Sender) -> None:
        """Remove ``msg`` (``ValueError`` if absent, or if the subscriptions factory gave
        it: the factory decides its own list); send ``unsubscribe``, if given, on every
        subscribed connection."""
        with self._lock:
            try:
                self._items.remove(msg)
            except ValueError:
                raise ValueError(f"not subscribed: {msg!r}") from None
            if unsubscribe is not None:
                for link in list(self._links):
                    send(link, unsubscribe)
