"""Publishing exchange streams to a message bus, gap markers included, and reading them back.

A **relay** holds the exchange connection and publishes what it receives to Redis
Streams or NATS JetStream; any number of consumers on other processes or machines read
the same items a local ``stream(events=True)`` would give them: the messages in order,
and the ``Connected`` / ``Disconnected`` markers where the connection had gaps, plus
:class:`RelayGap` where the relay itself could not publish something. Nothing is lost
silently::

    from kstlib.websocket.sinks import Relay, open_reader, open_sink

    # relay process
    with Relay(open_sink("redis://127.0.0.1:6379/0?stream=btc")) as relay:
        relay.connect("wss://stream.binance.com:9443/ws/btcusdt@trade")
        ...

    # consumer processes
    for item in open_reader("redis://127.0.0.1:6379/0?stream=btc&group=risk"):
        ...

Parts, one job each:

=================  ====================================================================
``relay``          :class:`Relay`: a manager's ``on_batch`` -> the buffer; stats
``buffer``         bounded (messages and bytes) buffer; ``block`` or ``drop_oldest``
``publisher``      the publisher thread: chunks, reconnect with backoff, gap markers
``base``           the :class:`Sink` interface, :class:`Chunk`, :class:`PublishResult`
``records``        the record format (below), :class:`RelayGap`, payload decoding
``redis_sink``     Redis Streams: one ``EVALSHA`` per chunk (atomic, idempotent)
``reader``         what every reader does: iterate, hand out, acknowledge, end (both fronts)
``redis_reader``   :class:`RedisReader` / :class:`AsyncRedisReader` (consumer group)
``nats_sink``      NATS JetStream: ``Nats-Msg-Id`` de-duplication, acknowledged publish
``nats_reader``    :class:`NatsReader` / :class:`AsyncNatsReader` (durable pull consumer)
``urls``           ``redis://...?stream=`` / ``nats://...?subject=``: checks, factories
``budget``         :class:`RedisBudget`: a connection-attempt window shared through Redis
=================  ====================================================================

Record format: one record per message or marker, in stream order; field ``k`` is the
kind: ``m`` (message: ``t`` receive time, ``d`` the raw payload bytes), ``c``
(``Connected``), ``d`` (``Disconnected``), ``g`` (:class:`RelayGap`); see
:mod:`~kstlib.websocket.sinks.records`. Payloads are never decoded or re-encoded on the
relay (the manager runs with ``decode="bytes"``); the reader decodes them.

Guarantees and limits: a relay publishes everything it received, in order, or marks
what it could not (buffer overflow under ``drop_oldest``, a payload too large for the
bus, a record the bus refused); only stopping a relay while its bus is away loses
unmarked data, and that is counted (``stats.lost``) and logged. Retries after a broken
bus connection are idempotent (each relay numbers its items). Two relays with a
``dedupe_key`` publish each event once (Redis: a key per event set atomically with the
entry; NATS: ``Nats-Msg-Id`` within the stream's duplicate window); each relay's own
markers are published, so a ``Disconnected`` from one of them may be a gap the other
covered. The client libraries are optional: ``pip install 'kstlib-websocket[redis]'``
or ``[nats]``; without them the error says which extra to install.

Thread-safety: see each module; a relay's hook runs on engine threads, its publisher
on its own thread; readers are iterated by one thread or task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._extras import MissingExtraError
from .base import BusUnavailableError, Chunk, PublishResult, Sink
from .budget import BudgetUnavailableError, RedisBudget, open_budget
from .buffer import Buffer
from .records import RELAY_MARKERS, RelayGap, decode_payload
from .relay import Relay, RelayStats, raw_key
from .urls import BusUrl, open_reader, open_sink, parse_budget_url, parse_bus_url

if TYPE_CHECKING:
    from .nats_reader import AsyncNatsReader, NatsReader
    from .nats_sink import NatsSink
    from .redis_reader import AsyncRedisReader, RedisReader
    from .redis_sink import RedisSink

__all__ = [
    "RELAY_MARKERS",
    "AsyncNatsReader",
    "AsyncRedisReader",
    "BudgetUnavailableError",
    "Buffer",
    "BusUnavailableError",
    "BusUrl",
    "Chunk",
    "MissingExtraError",
    "NatsReader",
    "NatsSink",
    "PublishResult",
    "RedisBudget",
    "RedisReader",
    "RedisSink",
    "Relay",
    "RelayGap",
    "RelayStats",
    "Sink",
    "decode_payload",
    "open_budget",
    "open_reader",
    "open_sink",
    "parse_budget_url",
    "parse_bus_url",
    "raw_key",
]

#: Names imported on first use, so that importing this package needs no client library.
_LAZY = {
    "RedisSink": "redis_sink",
    "RedisReader": "redis_reader",
    "AsyncRedisReader": "redis_reader",
    "NatsSink": "nats_sink",
    "NatsReader": "nats_reader",
    "AsyncNatsReader": "nats_reader",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
