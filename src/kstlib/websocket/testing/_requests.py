"""The simulator's control channel: Binance-style JSON requests and their replies.

:func:`reply` answers one data message a client sent: ``SUBSCRIBE`` / ``UNSUBSCRIBE``
(``params``: stream names), ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY ["combined", bool]``
and ``GET_PROPERTY ["combined"]``. A refused request gets Binance's error shape
``{"error": {"code": C, "msg": ".."}, "id": N}``: code 3 for invalid JSON (id null), 2
for an invalid request (bad id, unknown method, bad params, invalid stream, too many
streams), 0 for an unknown property, 1 for a property value of the wrong type. The
checks run in Binance's order; the first that fails gives the reply.

Thread-safety: runs on the simulator's loop; a connection's record is changed under
``SharedState.lock``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kstlib.websocket.testing._connection import Live

if TYPE_CHECKING:
    from kstlib.websocket.testing._server import SimServer

__all__ = ["reply"]

_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


def _error(code: int, msg: str, request_id: Any) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": request_id}


class _Refused(Exception):
    """A request that gets an error reply; ``reply`` is that reply."""

    def __init__(self, code: int, msg: str, request_id: Any) -> None:
        super().__init__(msg)
        self.reply = _error(code, msg, request_id)


def reply(server: SimServer, live: Live, message: str | bytes) -> dict[str, Any]:
    """The reply to ``message`` from ``live``, after acting on it (subscriptions...)."""
    try:
        request_id, method, params = _parse(message)
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            _subscription_request(server, live, method, params, request_id)
            return {"result": None, "id": request_id}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(live.streams), "id": request_id}
        return _property_request(server, live, method, params, request_id)
    except _Refused as refused:
        return refused.reply


def _parse(message: str | bytes) -> tuple[Any, str, list[Any]]:
    """``(id, method, params)`` of a well-formed request; :class:`_Refused` otherwise."""
    request = _json_object(message)
    request_id = request.get("id")
    if not (
        request_id is None
        or (type(request_id) is int and 0 <= request_id < 2**64)
        or (isinstance(request_id, str) and len(request_id) <= 36)
    ):
        raise _Refused(
            2,
            "Invalid request: request ID must be an unsigned integer"
            " or a string of at most 36 characters",
            None,
        )
    method = request.get("method")
    if method is None:
        raise _Refused(2, "Invalid request: missing field `method`", request_id)
    if method not in _METHODS:
        expected = ", ".join(f"`{m}`" for m in _METHODS)
        raise _Refused(
            2,
            f"Invalid request: unknown variant `{method}`, expected one of {expected}",
            request_id,
        )
    params = request.get("params", [])
    if not isinstance(params, list):
        raise _Refused(2, "Invalid request: `params` must be an array", request_id)
    return request_id, method, params


def _json_object(message: str | bytes) -> dict[str, Any]:
    """``message`` parsed as a JSON object (a binary frame must be UTF-8 JSON too)."""
    if isinstance(message, bytes):
        try:
            message = message.decode()
        except UnicodeDecodeError:
            raise _Refused(3, "Invalid JSON: binary frame is not UTF-8", None) from None
    try:
        request = json.loads(message)
    except ValueError as exc:
        raise _Refused(3, f"Invalid JSON: {exc}", None) from None
    if not isinstance(request, dict):
        raise _Refused(2, "Invalid request: expected a JSON object", None)
    return request


def _subscription_request(
    server: SimServer, live: Live, method: str, params: list[Any], request_id: Any
) -> None:
    """Apply a ``SUBSCRIBE`` or ``UNSUBSCRIBE``; all names are checked before any change."""
    for name in params:
        if not isinstance(name, str):
            raise _Refused(2, "Invalid request: stream names must be strings", request_id)
    names = list(dict.fromkeys(params))
    hub = server.hub
    if method == "UNSUBSCRIBE":
        for name in names:
            if name in live.streams:
                hub.unsubscribe(live, name)
        return
    for name in names:
        try:
            hub.spec(name)
        except ValueError as exc:
            raise _Refused(2, f"Invalid request: {exc}", request_id) from None
    new = [n for n in names if n not in live.streams]
    limit = server.opts.max_streams_per_connection
    if len(live.streams) + len(new) > limit:
        raise _Refused(
            2, f"Invalid request: too many streams, at most {limit} per connection", request_id
        )
    for name in new:
        hub.subscribe(live, name)


def _property_request(
    server: SimServer, live: Live, method: str, params: list[Any], request_id: Any
) -> dict[str, Any]:
    """``GET_PROPERTY`` / ``SET_PROPERTY``: only ``combined`` exists."""
    if not params or params[0] != "combined":
        raise _Refused(0, "Unknown property", request_id)
    if method == "GET_PROPERTY":
        return {"result": live.combined, "id": request_id}
    if len(params) != 2 or not isinstance(params[1], bool):
        raise _Refused(1, "Invalid value type: expected Boolean", request_id)
    live.combined = params[1]
    with server.shared.lock:
        live.record.combined = params[1]
    return {"result": None, "id": request_id}
