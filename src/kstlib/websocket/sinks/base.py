"""The sink interface: what a relay hands a bus, and what the bus answers.

A :class:`Sink` publishes :class:`Chunk` s, each a run of the engine's stream in order
(messages as raw ``bytes``, gap markers as objects), numbered by the relay: record
``first_seq + i`` is the ``i``-th item. The numbers make a retry idempotent: a sink
that is asked to publish a chunk again (the first attempt's outcome was unknown) must
not publish twice what the bus already holds (Redis: a per-relay high-water mark
written with the records; NATS: ``Nats-Msg-Id``).

Thread-safety: a sink is used by one publisher thread; ``close()`` may come from another
thread once that thread stopped using it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "BusUnavailableError",
    "Chunk",
    "KeyFunction",
    "PublishResult",
    "Sink",
]

#: ``(raw payload) -> key | None``: the identity of a message for de-duplication.
KeyFunction = Callable[[bytes], Hashable | None]


class BusUnavailableError(ConnectionError):
    """The bus cannot be reached (refused, reset, timed out, restarting). The publisher
    keeps the chunk and retries it after a reconnect with backoff."""


@dataclass
class Chunk:
    """Items to publish in one round trip.

    ``parts``: ``(received_at, items)`` pairs in stream order; ``items`` is either the
    raw messages of one socket read, or one marker. ``key_of`` extracts the de-duplication
    key of a message (redundant relays), None when off. ``source`` is the relay's name.
    """

    first_seq: int
    parts: list[tuple[float, list[Any]]]
    count: int
    nbytes: int
    source: str
    key_of: KeyFunction | None = None
    #: Filled by the publisher while it retries: attempts so far.
    attempts: int = field(default=0)


@dataclass(frozen=True)
class PublishResult:
    """What the bus did with a chunk: records ``written``, ``duplicates`` it skipped
    (already there: a retry, or the other relay of a redundant pair), ``refused`` records
    with the first ``error`` text, and the bus's position after it (``last_id``, e.g. the
    Redis entry id or the JetStream sequence, for display)."""

    written: int
    duplicates: int = 0
    refused: int = 0
    error: str = ""
    last_id: str = ""


class Sink(Protocol):
    """A bus a relay publishes to (see the module docstring)."""

    #: The bus's address for messages, credentials removed.
    display_url: str
    #: Largest payload the bus takes (bytes); larger messages are refused locally.
    max_payload: int

    def connect(self) -> None:
        """Open (or reopen) the connection; :class:`BusUnavailableError` on failure."""

    def publish(self, chunk: Chunk) -> PublishResult:
        """Publish ``chunk`` in one round trip; :class:`BusUnavailableError` when the
        connection failed (outcome unknown: the chunk is retried)."""

    def close(self) -> None:
        """Close the connection; idempotent."""
