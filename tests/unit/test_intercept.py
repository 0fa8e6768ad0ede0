"""``Interceptor.active``: kept by every change, since the read path tests it without a
call to decide whether a batch may skip delivery (``Delivery.plain``)."""

from __future__ import annotations

from typing import Any

import pytest

from kstlib.websocket.engine.intercept import Interceptor
from kstlib.websocket.exceptions import WebSocketRequestError
from kstlib.websocket.models import Heartbeat


def _call(_name: str, fn: Any, *args: Any) -> Any:
    return fn(*args)


def _is(n: int) -> Any:
    return lambda m: isinstance(m, dict) and m.get("id") == n


def test_a_pending_request_makes_it_active_until_its_reply_is_taken() -> None:
    icp = Interceptor(_call)
    assert not icp.active
    pending = icp.expect(_is(1))
    assert icp.active
    assert icp.take([{"id": 2}, {"id": 1}]) == [{"id": 2}]
    assert pending.wait(0) == {"id": 1}
    assert not icp.active


def test_forgetting_the_last_request_ends_it() -> None:
    icp = Interceptor(_call)
    first, second = icp.expect(_is(1)), icp.expect(_is(2))
    icp.forget(first)
    assert icp.active
    icp.forget(second)
    assert not icp.active
    icp.forget(second)  # twice: nothing changes
    assert not icp.active


def test_a_lost_connection_keeps_it_active_only_for_waits_across_reconnects() -> None:
    icp = Interceptor(_call)
    lost = icp.expect(_is(1))
    icp.connection_lost()
    assert not icp.active
    with pytest.raises(WebSocketRequestError):
        lost.wait(0)
    icp.expect(_is(2), across_reconnects=True)
    icp.connection_lost()
    assert icp.active


def test_a_heartbeat_makes_it_active_while_it_is_set() -> None:
    icp = Interceptor(_call)
    icp.heartbeat = Heartbeat(send="ping", is_reply=lambda m: m == "pong")
    assert icp.active
    assert icp.take(["pong", "trade"]) == ["trade"]
    assert icp.beat_answered
    icp.heartbeat = None
    assert not icp.active
    assert icp.take(["pong"]) == ["pong"]
