"""What the NATS sink and readers share: an event loop on a thread, connecting, the stream.

nats-py is asyncio only; the sync sink and reader run its client on a private event loop
in a daemon thread (:class:`LoopThread`) and wait for each call's result, so the client's
own tasks (reading, PING/PONG) keep running between calls. The client is connected with
``allow_reconnect=False``: a lost connection ends it, and the caller reconnects with its
own backoff (nothing is buffered inside nats-py while the bus is away).

The JetStream stream is created when missing (:func:`ensure_stream`): ``subjects`` the
one subject, ``duplicate_window`` (the ``Nats-Msg-Id`` de-duplication window),
``max_msgs`` (oldest discarded beyond it).

Thread-safety: a :class:`LoopThread` may be called from any thread; the coroutines run
on its loop only.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._extras import require

__all__ = ["LoopThread", "connect", "ensure_stream", "nats_errors", "stream_name"]

log = logging.getLogger("kstlib.websocket.sinks")
_T = TypeVar("_T")


def nats() -> Any:
    return require("nats", "nats", "NATS JetStream support")


def nats_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "NATS is not reachable now"."""
    n = nats()
    js_errors = require("nats.js.errors", "nats", "NATS JetStream support")
    return (
        n.errors.ConnectionClosedError, n.errors.NoServersError, n.errors.TimeoutError,
        n.errors.StaleConnectionError, n.errors.OutboundBufferLimitError,
        n.errors.UnexpectedEOF, js_errors.NoStreamResponseError, asyncio.TimeoutError, OSError,
    )  # fmt: skip


def stream_name(subject: str) -> str:
    """The default JetStream stream of ``subject``: ``KSTLIB_`` + its name characters."""
    return "KSTLIB_" + re.sub(r"[^A-Za-z0-9_-]", "_", subject)


class LoopThread:
    """An asyncio loop running in a daemon thread; :meth:`run` waits for a coroutine."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """``coro``'s result; RuntimeError once the loop was stopped."""
        if not self._thread.is_alive() or self.loop.is_closed():
            coro.close()
            raise RuntimeError("the NATS client's loop is stopped")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %s", exc)


async def connect(url: str, timeout: float) -> Any:
    """A connected client (no automatic reconnect)."""
    return await nats().connect(
        url,
        allow_reconnect=False,
        connect_timeout=max(1, round(timeout)),
        max_reconnect_attempts=1,  # 0 would retry for ever (nats-py 2.x)
        reconnect_time_wait=0.1,
        error_cb=_quiet,
    )


async def ensure_stream(
    js: Any, stream: str, subject: str, duplicate_window: float, max_msgs: int | None
) -> None:
    """Create the stream when it does not exist (see the module docstring)."""
    js_errors = require("nats.js.errors", "nats", "NATS JetStream support")
    try:
        await js.stream_info(stream)
    except js_errors.NotFoundError:
        try:
            await js.add_stream(
                name=stream,
                subjects=[subject],
                duplicate_window=duplicate_window,
                max_msgs=max_msgs if max_msgs is not None else -1,
            )
        except js_errors.BadRequestError:  # created meanwhile (a reader, another relay)
            await js.stream_info(stream)


async def close(nc: Any) -> None:
    """Close a client, whatever state it is in."""
    try:
        await nc.close()
    except Exception as exc:
        log.debug("nats close: %s", exc)
