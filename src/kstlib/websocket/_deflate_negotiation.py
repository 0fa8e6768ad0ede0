"""permessage-deflate (RFC 7692) in the opening handshake: our offer, the server's answer.

* :func:`build_deflate_offer`: the ``Sec-WebSocket-Extensions`` value we send.
* :func:`parse_deflate_response`: the server's answer parsed into :class:`DeflateParams`
  (a bad answer raises :class:`~kstlib.websocket.exceptions.WebSocketConnectionError`).
* ``_accepted_deflate``: what :func:`kstlib.websocket.handshake.check_upgrade` uses; it
  raises ``ValueError``, which the check turns into a ``HandshakeError``.

The negotiated parameters then configure the codec
(:func:`kstlib.websocket.transport.make_codec`). The public names are re-exported by
:mod:`kstlib.websocket.handshake` and :mod:`kstlib.websocket.transport`.

Limits: exactly one extension element is accepted (we offer one); window bits 8..15.

Thread-safety: pure functions and immutable values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from kstlib.websocket._http import is_token
from kstlib.websocket.exceptions import WebSocketConnectionError

__all__ = ["DeflateParams", "build_deflate_offer", "parse_deflate_response"]


@dataclass(frozen=True)
class DeflateParams:
    """permessage-deflate parameters accepted by the server (RFC 7692 section 7.1).

    ``server_*`` apply to what the server sends (our inflater), ``client_*`` to what we
    send (our deflater).  Window bits are 8..15; 15 when the server did not limit them.
    """

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int


def build_deflate_offer() -> str:
    """Return our ``Sec-WebSocket-Extensions`` offer.

    We offer permessage-deflate with ``client_max_window_bits`` (no value), which lets the
    server limit the window we compress with; we accept any server window and context
    takeover, so nothing else is requested.
    """
    return "permessage-deflate; client_max_window_bits"


def parse_deflate_response(value: str) -> DeflateParams:
    """Parse the server's ``Sec-WebSocket-Extensions`` response to our offer.

    Accepts exactly one ``permessage-deflate`` element with the parameters RFC 7692
    section 7.1 allows in a response: ``server_no_context_takeover``,
    ``client_no_context_takeover`` (no value), ``server_max_window_bits=N`` and
    ``client_max_window_bits=N`` (N in 8..15, token or quoted string).  Anything else (an
    extension we did not offer, a second element, an unknown or duplicated parameter, a
    missing or bad value) raises
    :class:`~kstlib.websocket.exceptions.WebSocketConnectionError` with ``url=""``, as
    section 7 requires.
    """
    try:
        return _parse_deflate(value)
    except ValueError as exc:
        raise WebSocketConnectionError(
            f"invalid permessage-deflate response {value!r}: {exc}", url="", attempts=1
        ) from exc


def _accepted_deflate(values: Sequence[str], offered: bool) -> DeflateParams | None:
    """The parameters of the ``Sec-WebSocket-Extensions`` response ``values`` (None when
    empty); ``ValueError`` when we did not offer (``offered`` False) or it is invalid."""
    ext = ", ".join(v for v in values if v.strip())
    if not ext.strip():
        return None
    if not offered:
        raise ValueError(f"server accepted extensions we did not offer: {ext!r}")
    return _parse_deflate(ext)


def _split_outside_quotes(value: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and in_quotes:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            in_quotes = not in_quotes
        elif ch == sep and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if in_quotes:
        raise ValueError("unterminated quoted string")
    parts.append("".join(current))
    return parts


def _unquote_value(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    if not is_token(raw):
        raise ValueError(f"invalid parameter value {raw!r}")
    return raw


def _window_bits(name: str, value: str | None) -> int:
    if value is None:
        raise ValueError(f"{name} needs a value in a response")
    if not value.isdigit() or value.startswith("0") or not 8 <= int(value) <= 15:
        raise ValueError(f"{name}={value!r} is not an integer 8..15")
    return int(value)


def _parse_deflate(value: str) -> DeflateParams:
    elements = [e for e in _split_outside_quotes(value, ",") if e.strip()]
    if not elements:
        raise ValueError("empty extension list")
    if len(elements) > 1:
        raise ValueError("more than one extension accepted; we offered one")
    items = _split_outside_quotes(elements[0], ";")
    name = items[0].strip()
    if name.lower() != "permessage-deflate":
        raise ValueError(f"extension {name!r} was not offered")
    seen: dict[str, str | None] = {}
    for item in items[1:]:
        item = item.strip()
        if not item:
            raise ValueError("empty parameter")
        key, eq, raw = item.partition("=")
        key = key.strip().lower()
        if not is_token(key):
            raise ValueError(f"invalid parameter name {key!r}")
        if key in seen:
            raise ValueError(f"duplicate parameter {key}")
        seen[key] = _unquote_value(raw) if eq else None
    server_nct = client_nct = False
    server_bits = client_bits = 15
    for key, param in seen.items():
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if param is not None:
                raise ValueError(f"{key} takes no value")
            if key == "server_no_context_takeover":
                server_nct = True
            else:
                client_nct = True
        elif key == "server_max_window_bits":
            server_bits = _window_bits(key, param)
        elif key == "client_max_window_bits":
            client_bits = _window_bits(key, param)
        else:
            raise ValueError(f"unknown parameter {key!r}")
    return DeflateParams(
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
