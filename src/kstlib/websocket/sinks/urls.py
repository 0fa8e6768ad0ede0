"""Bus addresses: ``redis://HOST:PORT/DB?stream=NAME`` and ``nats://HOST:PORT?subject=NAME``.

=====================  ===================================================================
``redis://`` (or       ``stream`` (required), ``maxlen`` (approximate trim, default
``rediss://`` TLS)     1 000 000; ``0``: never trimmed), ``group`` / ``consumer`` /
                       ``start`` (readers); ``user:password@`` and the database number
                       as usual
``nats://`` (or        ``subject`` (required), ``stream`` (JetStream stream name, default
``tls://``)            from the subject), ``durable`` (readers' consumer name)
=====================  ===================================================================

A shared connection budget (:mod:`~kstlib.websocket.sinks.budget`) is addressed as
``redis://HOST:PORT/DB?key=NAME`` (``key`` required: the Redis key of the budget);
:func:`parse_budget_url` checks it.

:func:`parse_bus_url` checks an address (ValueError with a one-line message naming what
is wrong); :func:`open_sink` and :func:`open_reader` build the sink or reader it names
(the client library of that bus must be installed: ``kstlib-websocket[redis]`` /
``[nats]``). Keywords passed to them override the address's parameters.

Thread-safety: pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "BusUrl",
    "open_reader",
    "open_sink",
    "parse_budget_url",
    "parse_bus_url",
    "server_url",
]

_PARAMS = {
    "redis": {"stream", "maxlen", "group", "consumer", "start"},
    "nats": {"subject", "stream", "durable"},
}
_SCHEMES = {"redis": "redis", "rediss": "redis", "nats": "nats", "tls": "nats"}


@dataclass(frozen=True)
class BusUrl:
    """A checked address: ``kind`` (``redis`` / ``nats``), ``server`` (the address
    without our parameters, for the client library) and ``params``."""

    kind: str
    server: str
    params: dict[str, str]

    @property
    def name(self) -> str:
        """The stream (Redis) or subject (NATS) published to."""
        return self.params["stream" if self.kind == "redis" else "subject"]


def parse_bus_url(url: str) -> BusUrl:
    """Check ``url`` (see the module docstring); ValueError says what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad bus URL {url!r}: {exc}") from None
    kind = _SCHEMES.get(parts.scheme)
    if kind is None:
        raise ValueError(
            f"bad bus URL {url!r}: scheme must be redis://, rediss://, nats:// or tls://"
        )
    if not parts.hostname:
        raise ValueError(f"bad bus URL {url!r}: no host")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _PARAMS[kind]}
    unknown = sorted({k for k, _ in query} - _PARAMS[kind])
    if kind == "nats" and unknown:
        raise ValueError(f"bad bus URL {url!r}: unknown parameter(s) {', '.join(unknown)}")
    required = "stream" if kind == "redis" else "subject"
    if not ours.get(required):
        raise ValueError(f"bad bus URL {url!r}: add ?{required}=NAME")
    if kind == "redis":
        _check_redis(url, parts.path, ours)
    rest = urlencode([(k, v) for k, v in query if k not in _PARAMS[kind]])
    server = urlunsplit(parts._replace(query=rest))
    if kind == "nats" and port is None:
        server = urlunsplit(parts._replace(query="", netloc=parts.netloc + ":4222"))
    return BusUrl(kind, server, ours)


def parse_budget_url(url: str) -> tuple[str, str]:
    """``(server, key)`` of a budget address ``redis://HOST:PORT/DB?key=NAME`` (or
    ``rediss://``); ValueError with a one-line message naming what is wrong."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a bad port raises here
    except ValueError as exc:
        raise ValueError(f"bad budget URL {url!r}: {exc}") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"bad budget URL {url!r}: scheme must be redis:// or rediss://")
    if not parts.hostname:
        raise ValueError(f"bad budget URL {url!r}: no host")
    query = parse_qsl(parts.query, keep_blank_values=True)
    key = dict(query).get("key")
    if not key:
        raise ValueError(f"bad budget URL {url!r}: add ?key=NAME")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"bad budget URL {url!r}: the database must be a number, got {db!r}")
    rest = urlencode([(k, v) for k, v in query if k != "key"])
    return urlunsplit(parts._replace(query=rest)), key


def server_url(url: str, kind: str) -> str:
    """``url`` without the parameters this package reads (for the client library)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    rest = urlencode([(k, v) for k, v in query if k not in _PARAMS[kind]])
    return urlunsplit(parts._replace(query=rest))


def _check_redis(url: str, path: str, params: dict[str, str]) -> None:
    db = path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"bad bus URL {url!r}: the database must be a number, got {db!r}")
    maxlen = params.get("maxlen")
    if maxlen is not None and not maxlen.isdigit():
        raise ValueError(f"bad bus URL {url!r}: maxlen must be an integer >= 0")


def open_sink(url: str, **options: Any) -> Any:
    """The sink for ``url``: :class:`~kstlib.websocket.sinks.redis_sink.RedisSink` or
    :class:`~kstlib.websocket.sinks.nats_sink.NatsSink`."""
    bus = parse_bus_url(url)
    if bus.kind == "redis":
        if "maxlen" in bus.params:
            options.setdefault("maxlen", int(bus.params["maxlen"]) or None)
        return _load("redis_sink", "RedisSink")(bus.server, bus.params["stream"], **options)
    if "stream" in bus.params:
        options.setdefault("stream", bus.params["stream"])
    return _load("nats_sink", "NatsSink")(bus.server, bus.params["subject"], **options)


def open_reader(url: str, *, asyncio: bool = False, **options: Any) -> Any:
    """A reader of ``url`` (sync, or asyncio with ``asyncio=True``)."""
    bus = parse_bus_url(url)
    prefix = "Async" if asyncio else ""
    if bus.kind == "redis":
        for key in ("group", "consumer", "start"):
            if key in bus.params:
                options.setdefault(key, bus.params[key])
        cls = _load("redis_reader", f"{prefix}RedisReader")
        return cls(bus.server, bus.params["stream"], **options)
    for key in ("stream", "durable"):
        if key in bus.params:
            options.setdefault(key, bus.params[key])
    return _load("nats_reader", f"{prefix}NatsReader")(bus.server, bus.params["subject"], **options)


def _load(module: str, name: str) -> Any:
    """``name`` from the sibling ``module``, imported now (it imports its client library)."""
    import importlib

    return getattr(importlib.import_module(f"{__package__}.{module}"), name)
