"""Per-attempt factories: ``url``, ``headers`` and ``subscriptions`` computed before
every connection attempt, a credential refusal answered by asking them once more, and
factories that raise or return garbage."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable
from typing import Any

import pytest
from helpers import FAST, no_leaks, wait_for
from rawserver import RawServer, drain_until_eof, response_101

from kstlib.websocket import WebSocketConnectionError, WebSocketManager, aio
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(60)


def test_the_url_factory_runs_before_every_attempt(sim: ExchangeSimulator) -> None:
    tokens = itertools.count(1)

    def url() -> str:
        return f"{sim.stream_url('btcusdt@trade')}?token={next(tokens)}"

    with no_leaks(), WebSocketManager(url, **FAST) as ws:
        ws.kill()
        assert wait_for(lambda: ws.stats.connects == 2)
        assert ws.url.endswith("token=2")
    paths = [sim.connection_info(i).path for i in range(2)]
    assert paths[0].endswith("token=1") and paths[1].endswith("token=2")


def test_the_subscriptions_factory_and_subscribe_both_reach_every_connection(
    sim: ExchangeSimulator,
) -> None:
    symbols = iter(["btcusdt", "ethusdt"])

    def subscriptions() -> list[dict[str, Any]]:
        return [{"method": "SUBSCRIBE", "params": [f"{next(symbols)}@trade"], "id": 1}]

    with no_leaks(), WebSocketManager(sim.url + "/ws", subscriptions=subscriptions, **FAST) as ws:
        ws.subscribe({"method": "SUBSCRIBE", "params": ["solusdt@trade"], "id": 2})
        assert sim.wait_until(lambda: len(sim.connection_info(0).streams) == 2)
        ws.kill()
        assert wait_for(lambda: ws.stats.connects == 2)
        assert sim.wait_until(lambda: len(sim.connection_info(1).streams) == 2)
        assert [m["params"] for m in ws.subscriptions] == [["ethusdt@trade"], ["solusdt@trade"]]  # type: ignore[index]
    assert list(sim.connection_info(0).streams) == ["btcusdt@trade", "solusdt@trade"]
    assert list(sim.connection_info(1).streams) == ["ethusdt@trade", "solusdt@trade"]


def test_the_headers_factory_sends_fresh_credentials(serve: Callable[..., RawServer]) -> None:
    def greet(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(response_101(headers))
        drain_until_eof(conn)

    srv = serve(greet)
    tokens = itertools.count(1)
    with (
        no_leaks(),
        WebSocketManager(
            srv.url, headers=lambda: {"Authorization": f"Bearer t{next(tokens)}"}, **FAST
        ) as ws,
    ):
        ws.kill()
        assert wait_for(lambda: ws.stats.connects == 2)
    assert [b"Bearer t1" in r for r in srv.requests] == [True, False]
    assert b"Bearer t2" in srv.requests[1]


def test_a_refused_token_makes_the_factories_run_once_more(sim: ExchangeSimulator) -> None:
    calls = itertools.count(1)

    def url() -> str:
        return f"{sim.stream_url('btcusdt@trade')}?token={next(calls)}"

    sim.refuse_handshake(401, times=1)  # the first token is refused
    with no_leaks(), WebSocketManager(url, **FAST) as ws:  # the second is accepted
        assert ws.is_connected and sim.handshake_attempts == 2
        assert sim.connection_info(0).path.endswith("token=2")
    sim.refuse_handshake(401)  # every token refused: final after one more try
    with no_leaks(), pytest.raises(WebSocketConnectionError) as exc:
        WebSocketManager(url, connect_attempts=None, **FAST).connect()
    assert exc.value.attempts == 2 and "401" in str(exc.value)


def test_a_factory_that_raises_fails_that_attempt_only(sim: ExchangeSimulator) -> None:
    calls = itertools.count(1)

    def url() -> str:
        if next(calls) == 1:
            raise RuntimeError("token service down")
        return sim.stream_url("btcusdt@trade")

    errors: list[BaseException] = []
    with no_leaks(), WebSocketManager(url, on_error=errors.append, **FAST) as ws:
        assert ws.is_connected and ws.stats.callback_errors == 1
    assert isinstance(errors[0], RuntimeError)
    assert isinstance(errors[1], WebSocketConnectionError) and "url factory" in str(errors[1])


def test_a_factory_returning_an_invalid_url_is_a_clear_error() -> None:
    with no_leaks(), pytest.raises(WebSocketConnectionError) as exc:
        WebSocketManager(lambda: "http://not-a-websocket", **FAST).connect()
    assert "url factory returned an invalid value" in str(exc.value)
    assert exc.value.attempts == 3  # connect_attempts: retried, never a hang


def test_is_permanent_failure_overrides_the_rule(sim: ExchangeSimulator) -> None:
    sim.refuse_handshake(503)
    with no_leaks(), pytest.raises(WebSocketConnectionError) as exc:
        WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            is_permanent_failure=lambda e: "503" in str(e),
            connect_attempts=None,
            **FAST,
        ).connect()
    assert exc.value.attempts == 1


def test_asyncio_factories_may_be_coroutine_functions(sim: ExchangeSimulator) -> None:
    async def url() -> str:
        await asyncio.sleep(0)  # e.g. an HTTP call to the exchange for a token
        return sim.stream_url("btcusdt@trade")

    async def main() -> list[Any]:
        async with aio.WebSocketManager(url, **FAST) as ws:
            out = []
            async for msg in ws.stream():
                out.append(msg)
                if len(out) == 3:
                    return out
        return []

    with no_leaks():
        assert len(asyncio.run(main())) == 3
