"""kstlib.websocket: a proactive WebSocket client for trading programs.

``from kstlib.websocket import WebSocketManager`` is the sync, thread-backed client;
``from kstlib.websocket.aio import WebSocketManager`` is its asyncio adapter.
"""

from __future__ import annotations

from kstlib.websocket.exceptions import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketError,
    WebSocketProtocolError,
    WebSocketTimeoutError,
)
from kstlib.websocket.models import (
    ConnectionState,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketStats,
)

__all__ = [
    "ConnectionState",
    "DisconnectReason",
    "ReconnectStrategy",
    "WebSocketClosedError",
    "WebSocketConnectionError",
    "WebSocketError",
    "WebSocketProtocolError",
    "WebSocketStats",
    "WebSocketTimeoutError",
]
