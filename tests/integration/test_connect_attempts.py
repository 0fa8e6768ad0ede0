"""The first connect's retry budget (``connect_attempts``), its log lines, and the error
that ends the engine reaching ``on_error`` last."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from helpers import no_leaks, wait_for

from kstlib.websocket import WebSocketConnectionError, WebSocketManager


def refused_url() -> str:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


def test_connect_gives_up_after_connect_attempts_and_says_when(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kstlib.websocket")
    url = refused_url()
    errors: list[BaseException] = []
    seen_dead: list[bool] = []

    with no_leaks():
        ws = WebSocketManager(
            url,
            reconnect_delay=0.01,
            reconnect_delay_max=0.02,
            on_error=lambda e: (errors.append(e), seen_dead.append(ws.is_dead)),
        )
        with pytest.raises(WebSocketConnectionError) as exc:
            ws.connect()  # defaults: connect_attempts=3, max_reconnect_attempts=10
        assert exc.value.attempts == 3
        assert wait_for(lambda: errors and errors[-1] is exc.value)
    assert len(errors) == 4  # three failed attempts, then the end
    assert seen_dead == [False, False, False, True]
    retries = [r.getMessage() for r in caplog.records if "connection attempt" in r.getMessage()]
    assert len(retries) == 2
    assert all("giving up after attempt 3" in line for line in retries)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"connect_attempts": 1}, 1),
        ({"connect_attempts": 5, "max_reconnect_attempts": 2}, 2),  # never above the cap
        ({"connect_attempts": None, "max_reconnect_attempts": 4}, 4),
        ({"connect_attempts": 4, "auto_reconnect": False}, 1),
    ],
)
def test_connect_attempts_budget(options: dict[str, Any], expected: int) -> None:
    ws = WebSocketManager(refused_url(), reconnect_delay=0.0, reconnect_delay_max=0.0, **options)
    with no_leaks(), pytest.raises(WebSocketConnectionError) as exc:
        ws.connect()
    assert exc.value.attempts == expected
