"""An independent WebSocket server (aiohttp) on loopback, run in a background thread.

Used so the manager is tested against a second, unrelated server implementation besides
the simulator (which is built on `websockets`). Routes:

* ``/echo``: echoes text as text and binary as binary.
* ``/burst?n=N``: sends N JSON text messages ``{"i": k}`` (k = 0..N-1), then echoes.
* ``/close?code=C&reason=R``: closes at once with that code and reason.
* ``/mixed``: sends a JSON text, a non-JSON text and a binary message, then echoes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from aiohttp import WSMsgType, web


async def _echo_loop(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    await _echo_loop(ws)
    return ws


async def _burst(request: web.Request) -> web.WebSocketResponse:
    n = int(request.query.get("n", "100"))
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    for k in range(n):
        await ws.send_str(orjson.dumps({"i": k}).decode())
    await _echo_loop(ws)
    return ws


async def _close(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(
        code=int(request.query.get("code", "1000")),
        message=request.query.get("reason", "").encode(),
    )
    return ws


async def _mixed(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str('{"kind": "json"}')
    await ws.send_str("plain text, not JSON")
    await ws.send_bytes(b"\x00\x01binary")
    await _echo_loop(ws)
    return ws


@contextmanager
def aiohttp_server() -> Iterator[str]:
    """Run the server; yields its base URL ``ws://127.0.0.1:PORT``."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, object] = {}

    async def start() -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/echo", _echo),
                web.get("/burst", _burst),
                web.get("/close", _close),
                web.get("/mixed", _mixed),
            ]
        )
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        box["port"] = server.sockets[0].getsockname()[1]
        box["runner"] = runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="aiohttp-test-server", daemon=True)
    thread.start()
    assert started.wait(10), "aiohttp server did not start"
    try:
        yield f"ws://127.0.0.1:{box['port']}"
    finally:
        runner = box["runner"]
        assert isinstance(runner, web.AppRunner)
        fut = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
        fut.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
