"""kstlib.websocket: a proactive WebSocket client for trading programs.

``from kstlib.websocket import WebSocketManager`` is the sync, thread-backed client;
``from kstlib.websocket.aio import WebSocketManager`` is its asyncio adapter;
``merge(*managers)`` (and ``aio.merge``) reads several managers from one loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketError,
    WebSocketLoginError,
    WebSocketProtocolError,
    WebSocketRequestError,
    WebSocketTimeoutError,
)
from kstlib.websocket.models import (
    Connected,
    ConnectionState,
    Disconnected,
    DisconnectReason,
    Gap,
    Heartbeat,
    Login,
    ReconnectStrategy,
    Stamped,
    WebSocketStats,
)

__all__ = [
    "Connected",
    "ConnectionState",
    "DisconnectReason",
    "Disconnected",
    "Gap",
    "Heartbeat",
    "Login",
    "ReconnectStrategy",
    "Stamped",
    "WebSocketClosedError",
    "WebSocketConnectionError",
    "WebSocketError",
    "WebSocketLoginError",
    "WebSocketManager",
    "WebSocketProtocolError",
    "WebSocketRequestError",
    "WebSocketStats",
    "WebSocketTimeoutError",
    "merge",
]

if TYPE_CHECKING:
    from kstlib.websocket.manager import WebSocketManager
    from kstlib.websocket.merging import merge


def __getattr__(name: str) -> Any:
    # The manager pulls in the engine, transport and codec: load it on first use so that
    # importing a light submodule (exceptions, models, codec, testing) stays cheap.
    if name == "WebSocketManager":
        from kstlib.websocket.manager import WebSocketManager

        return WebSocketManager
    if name == "merge":
        from kstlib.websocket.merging import merge

        return merge
    raise AttributeError(f"module 'kstlib.websocket' has no attribute {name!r}")
