"""The record format shared by every bus, and the relay's own gap marker.

A relay publishes one record per item of the engine's stream, in order:

====  =====================================================================================
kind  fields (Redis Streams entry fields; NATS: ``Kst-<field>`` headers, payload ``d``)
====  =====================================================================================
m     ``t`` receive time (``time.time()`` of the socket read, text, 6 decimals),
      ``d`` the payload bytes exactly as the exchange sent them
c     ``Connected``: ``at`` (the marker's time, read back exactly), ``n``
      (resubscribed), ``r`` (``1`` reconnect / ``0`` first), ``s`` (relay name)
d     ``Disconnected``: ``at``, ``why`` (the ``DisconnectReason`` value), ``code`` (close
      code, absent when none), ``s``
g     :class:`RelayGap`: ``at``, ``n`` (messages lost), ``why`` (``overflow``,
      ``too_large``, ``refused``), ``s``
x     any other marker the engine emits (e.g. a sequence ``Gap``): ``type`` (its class
      name in :mod:`kstlib.websocket.models`), ``v`` (its fields as JSON), ``s``
====  =====================================================================================

The kind is the field ``k``. Payloads are never decoded on the relay; a reader decodes
them like ``WebSocketManager(decode=...)`` would (:func:`decode_payload`).

Thread-safety: pure functions and immutable values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from kstlib.websocket import models
from kstlib.websocket.models import Connected, Disconnected, DisconnectReason

__all__ = [
    "RELAY_MARKERS",
    "Marker",
    "RelayGap",
    "decode_marker",
    "decode_payload",
    "marker_fields",
    "payload_decoder",
]


@dataclass(frozen=True)
class RelayGap:
    """Gap marker of a relay: ``dropped`` messages the exchange delivered were *not*
    published here (the relay's buffer overflowed while the bus was slow or away, or the
    bus refused them); ``why`` is ``overflow``, ``too_large`` or ``refused``; ``at`` the
    wall-clock time it was noticed; ``source`` the relay's name."""

    at: float
    dropped: int
    why: str
    source: str = ""


Marker = Any  # Connected | Disconnected | RelayGap, or another engine marker (``x``)

#: Every in-band marker a reader can yield.
RELAY_MARKERS: tuple[type, ...] = (Connected, Disconnected, RelayGap)


def _num(value: float) -> bytes:
    """A float as text that reads back to the very same float."""
    return repr(value).encode()


def marker_fields(marker: Marker, source: str) -> list[bytes]:
    """The record of ``marker`` as a flat ``[field, value, ...]`` list (kind first)."""
    s = source.encode()
    if isinstance(marker, Connected):
        return [b"k", b"c", b"at", _num(marker.at), b"n", b"%d" % marker.resubscribed,
                b"r", b"1" if marker.reconnect else b"0", b"s", s]  # fmt: skip
    if isinstance(marker, Disconnected):
        out = [b"k", b"d", b"at", _num(marker.at), b"why", marker.reason.value.encode(), b"s", s]
        if marker.code is not None:
            out += [b"code", b"%d" % marker.code]
        return out
    if isinstance(marker, RelayGap):
        return [b"k", b"g", b"at", _num(marker.at), b"n", b"%d" % marker.dropped,
                b"why", marker.why.encode(), b"s", (marker.source or source).encode()]  # fmt: skip
    # Another marker of the engine (e.g. a sequence Gap): its class name and fields.
    fields = orjson.dumps(dataclasses.asdict(marker), default=str)
    return [b"k", b"x", b"type", type(marker).__name__.encode(), b"v", fields, b"s", s]


def decode_marker(kind: bytes, fields: Mapping[bytes, bytes]) -> Marker:
    """The marker of a ``c``, ``d`` or ``g`` record; ValueError for another kind or a
    record that misses a field."""
    try:
        if kind == b"x":
            cls = getattr(models, fields[b"type"].decode())
            return cls(**orjson.loads(fields[b"v"]))
        at = float(fields[b"at"])
        if kind == b"c":
            return Connected(at, int(fields[b"n"]), fields[b"r"] == b"1")
        if kind == b"d":
            code = fields.get(b"code")
            reason = DisconnectReason(fields[b"why"].decode())
            return Disconnected(reason, at, None if code is None else int(code))
        if kind == b"g":
            src = fields.get(b"s", b"").decode()
            return RelayGap(at, int(fields[b"n"]), fields[b"why"].decode(), src)
    except (KeyError, ValueError, UnicodeDecodeError, AttributeError, TypeError) as exc:
        raise ValueError(f"malformed {kind!r} record: {exc}") from None
    raise ValueError(f"unknown record kind {kind!r}")


def _as_text(data: bytes) -> str | bytes:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _as_text(data)


def _identity(data: bytes) -> bytes:
    return data


def payload_decoder(decode: Any) -> Callable[[bytes], Any]:
    """The function a reader applies to each payload, like the manager's ``decode``:
    ``"json"`` (orjson; a payload that is not JSON comes as ``str``, or ``bytes`` when it
    is not UTF-8 either), ``"bytes"``, ``None`` (``str``, or ``bytes`` when not UTF-8) or
    a callable taking the payload ``bytes``. ValueError for anything else."""
    if decode == "json":
        return _json
    if decode == "bytes":
        return _identity
    if decode is None:
        return _as_text
    if callable(decode):
        fn: Callable[[bytes], Any] = decode
        return fn
    raise ValueError(f"decode: expected 'json', 'bytes', None or a callable, got {decode!r}")


def decode_payload(data: bytes, decode: Any = "json") -> Any:
    """One payload decoded as :func:`payload_decoder` says."""
    return payload_decoder(decode)(data)
