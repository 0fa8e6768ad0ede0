"""Venue rules the engine serves: application heartbeats, a login before the
subscriptions, request/reply, sequence gaps, ping round trips and receive stamps, each
against a scripted server on the independent ``websockets`` implementation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from helpers import FAST, no_leaks, wait_for
from scripted import ScriptedServer
from websockets.asyncio.server import ServerConnection

from kstlib.websocket import (
    Connected,
    Disconnected,
    DisconnectReason,
    Gap,
    Heartbeat,
    Login,
    Stamped,
    WebSocketConnectionError,
    WebSocketLoginError,
    WebSocketManager,
    WebSocketRequestError,
    WebSocketTimeoutError,
)

pytestmark = pytest.mark.timeout(60)
NO_PING: dict[str, Any] = {"ping_interval": None, **FAST}


def okx_like(answers: bool) -> Any:
    """Closes with 4004 after 0.5 s without a text ``ping``; answers ``pong`` when
    ``answers``; sends a data message every 50 ms."""

    async def handler(ws: ServerConnection) -> None:
        last_ping = time.monotonic()

        async def pings() -> None:
            nonlocal last_ping
            async for msg in ws:
                if msg == "ping":
                    last_ping = time.monotonic()
                    if answers:
                        await ws.send("pong")

        reader = asyncio.ensure_future(pings())
        n = 0
        while time.monotonic() - last_ping < 0.5:
            n += 1
            await ws.send(json.dumps({"n": n}))
            await asyncio.sleep(0.05)
        reader.cancel()
        await ws.close(4004, "no ping")

    return handler


def test_application_heartbeats_keep_a_silence_cut_venue_open() -> None:
    beat = Heartbeat(send="ping", every=0.2, is_reply=lambda m: m == "pong")
    with ScriptedServer(okx_like(answers=True)) as srv, no_leaks():
        with WebSocketManager(srv.url, heartbeat=beat, **NO_PING) as ws:
            got = []
            for msg in ws.stream():
                got.append(msg)
                if len(got) == 40:  # two seconds: four of the server's silence windows
                    break
            assert ws.stats.disconnects == 0
    assert all(isinstance(m, dict) for m in got)  # no "pong" in the stream
    assert [m["n"] for m in got] == list(range(1, 41))


def test_a_missing_heartbeat_answer_is_a_ping_timeout() -> None:
    beat = Heartbeat(send="ping", every=0.1, is_reply=lambda m: m == "pong", timeout=0.3)
    with ScriptedServer(okx_like(answers=False)) as srv, no_leaks():
        with WebSocketManager(srv.url, heartbeat=beat, **NO_PING) as ws:
            assert wait_for(lambda: ws.stats.disconnects >= 1)
            assert ws.stats.last_disconnect_reason is DisconnectReason.PING_TIMEOUT


def test_the_servers_own_application_pings_are_answered() -> None:
    async def deribit_like(ws: ServerConnection) -> None:
        for n in range(1, 30):
            await ws.send(json.dumps({"params": {"type": "test_request"}}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
            assert reply == {"method": "public/test"}
            await ws.send(json.dumps({"n": n}))
        await ws.wait_closed()

    def answer(m: Any) -> Any:
        is_test = isinstance(m, dict) and m.get("params", {}).get("type") == "test_request"
        return {"method": "public/test"} if is_test else None

    with ScriptedServer(deribit_like) as srv, no_leaks():
        with WebSocketManager(srv.url, heartbeat=Heartbeat(answer=answer), **NO_PING) as ws:
            got = [m for _, m in zip(range(29), ws.stream(), strict=False)]
    assert [m["n"] for m in got] == list(range(1, 30))  # no test_request in the stream


def login_venue(accept: bool, reply_after: float = 0.1) -> Any:
    async def handler(ws: ServerConnection) -> None:
        first = json.loads(await ws.recv())
        srv_log.append(("first", first))
        try:  # the answer comes after reply_after seconds, unless the client has left
            await asyncio.wait_for(ws.wait_closed(), reply_after)
            return
        except TimeoutError:
            pass
        srv_log.append(("ack sent", time.monotonic()))
        code = "0" if accept else "60009"
        await ws.send(json.dumps({"event": "login", "code": code}))
        async for msg in ws:
            srv_log.append(("after ack", json.loads(msg), time.monotonic()))
            await ws.send(json.dumps({"data": "tick"}))

    srv_log: list[Any] = []
    handler.log = srv_log  # type: ignore[attr-defined]
    return handler


def is_login_reply(m: Any) -> bool | None:
    if isinstance(m, dict) and m.get("event") == "login":
        return m.get("code") == "0"
    return None


def test_a_login_is_acknowledged_before_the_subscriptions_go_out() -> None:
    handler = login_venue(accept=True)
    login = Login(send=lambda: {"op": "login", "args": ["signed"]}, is_reply=is_login_reply)
    subs = [{"op": "subscribe", "args": ["trades"]}]
    with ScriptedServer(handler) as srv, no_leaks():
        with WebSocketManager(srv.url, login=login, subscriptions=subs, **NO_PING) as ws:
            assert next(iter(ws.stream())) == {"data": "tick"}  # the ack is not in it
    log = handler.log
    assert log[0] == ("first", {"op": "login", "args": ["signed"]})
    ack_at = log[1][1]
    assert log[2][1] == {"op": "subscribe", "args": ["trades"]} and log[2][2] >= ack_at


def test_a_refused_login_is_a_typed_error_with_the_reply() -> None:
    login = Login(send={"op": "login"}, is_reply=is_login_reply)
    with ScriptedServer(login_venue(accept=False)) as srv, no_leaks():
        with pytest.raises(WebSocketLoginError) as exc:
            WebSocketManager(srv.url, login=login, connect_attempts=None, **NO_PING).connect()
    assert exc.value.reply == {"event": "login", "code": "60009"}
    assert srv.connections == 1  # final: not retried


def test_a_login_answer_that_never_comes_fails_each_attempt() -> None:
    login = Login(send={"op": "login"}, is_reply=is_login_reply, timeout=0.2)
    with ScriptedServer(login_venue(accept=True, reply_after=30)) as srv, no_leaks():
        with pytest.raises(WebSocketConnectionError) as exc:
            WebSocketManager(srv.url, login=login, connect_attempts=2, **NO_PING).connect()
    assert exc.value.attempts == 2
    assert isinstance(exc.value.__cause__, WebSocketTimeoutError)


async def replying(ws: ServerConnection) -> None:
    twice = 0
    async for raw in ws:
        msg = json.loads(raw)
        if msg.get("method") == "silent":
            continue
        if msg.get("method") == "twice":
            twice += 1
            if twice == 2:  # one reply once both requests are in flight
                await ws.send(json.dumps({"result": "same"}))
            continue
        await ws.send(json.dumps({"tick": 1}))
        await ws.send(json.dumps({"id": msg["id"], "result": msg["method"]}))


def test_request_returns_the_reply_and_keeps_it_out_of_the_stream() -> None:
    with ScriptedServer(replying) as srv, no_leaks():
        with WebSocketManager(srv.url, **NO_PING) as ws:
            assert ws.request({"method": "LIST", "id": 7}) == {"id": 7, "result": "LIST"}
            reply = ws.request({"method": "AUTO"})  # gets an id of its own
            assert reply["result"] == "AUTO" and isinstance(reply["id"], int)
            with pytest.raises(WebSocketTimeoutError):
                ws.request({"method": "silent", "id": 9}, timeout=0.2)
            stream = ws.stream()
            assert [next(stream), next(stream)] == [{"tick": 1}, {"tick": 1}]


def test_a_reply_that_matches_two_requests_fails_both() -> None:
    errors: list[BaseException] = []
    with ScriptedServer(replying) as srv, no_leaks():
        with WebSocketManager(srv.url, **NO_PING) as ws:

            def ask() -> None:
                try:
                    ws.request({"method": "twice"}, match=lambda m: m.get("result") == "same")
                except Exception as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=ask) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
    assert len(errors) == 2 and all(isinstance(e, WebSocketRequestError) for e in errors)
    assert all(e.reply == {"result": "same"} for e in errors)  # type: ignore[attr-defined]


def test_a_request_whose_connection_ends_fails_at_once() -> None:
    asked = threading.Event()

    async def never_answers(ws: ServerConnection) -> None:
        async for raw in ws:
            if json.loads(raw).get("method") == "silent":
                asked.set()

    with ScriptedServer(never_answers) as srv, no_leaks():
        with WebSocketManager(srv.url, **NO_PING) as ws:
            result: list[BaseException] = []

            def ask() -> None:
                try:
                    ws.request({"method": "silent", "id": 1}, timeout=30)
                except Exception as exc:
                    result.append(exc)

            t = threading.Thread(target=ask)
            t.start()
            assert asked.wait(10)  # the request is in flight: then the connection ends
            ws.kill()
            t.join(10)
    assert len(result) == 1 and isinstance(result[0], WebSocketRequestError)


async def numbered(ws: ServerConnection) -> None:
    for seq in (1, 2, 3, 5, 6, 9, 8, 10):  # holes after 3 and 6; 8 is a late replay
        await ws.send(json.dumps({"ch": "book", "seq": seq}))
    await ws.wait_closed()


def test_sequence_gaps_are_marked_in_place_counted_and_reported() -> None:
    seen: list[Gap] = []
    with ScriptedServer(numbered) as srv, no_leaks():
        ws = WebSocketManager(
            srv.url, sequence=lambda m: (m["ch"], m["seq"]), on_gap=seen.append, **NO_PING
        )
        items = []
        for item in ws.stream(events=True):  # markers from the first message on
            items.append(item)
            if isinstance(item, dict) and item["seq"] == 10:
                break
        assert ws.stats.sequence_gaps == 2
        ws.close()
    shown = [
        ("gap", i.expected, i.received) if isinstance(i, Gap) else i.get("seq", i)
        for i in items
        if not isinstance(i, (Connected, Disconnected))
    ]
    assert shown == [1, 2, 3, ("gap", 4, 5), 5, 6, ("gap", 7, 9), 9, 8, 10]
    assert [(g.stream, g.expected, g.received) for g in seen] == [("book", 4, 5), ("book", 7, 9)]


def test_a_broken_sequence_callable_is_counted_and_never_stops_the_stream() -> None:
    def broken(m: Any) -> Any:
        return "garbage" if m["seq"] % 2 else (m["ch"], m["seq"])

    with ScriptedServer(numbered) as srv, no_leaks():
        with WebSocketManager(srv.url, sequence=broken, **NO_PING) as ws:
            got = [m["seq"] for _, m in zip(range(8), ws.stream(), strict=False)]
    assert got == [1, 2, 3, 5, 6, 9, 8, 10]


def test_ping_measures_the_round_trip() -> None:
    with ScriptedServer(replying) as srv, no_leaks():
        with WebSocketManager(srv.url, **NO_PING) as ws:
            rtt = ws.ping()
            assert 0 < rtt < 10
            assert ws.stats.ping_rtt is not None and ws.stats.ping_rtt_avg is not None


def test_timestamps_stamp_each_message_with_its_read() -> None:
    with ScriptedServer(numbered) as srv, no_leaks():
        before = time.monotonic_ns()
        with WebSocketManager(srv.url, timestamps=True, **NO_PING) as ws:
            got = [m for _, m in zip(range(8), ws.stream(), strict=False)]
    assert all(isinstance(m, Stamped) for m in got)
    stamps = [m.received_ns for m in got]
    assert stamps == sorted(stamps) and stamps[0] >= before
    assert [m.message["seq"] for m in got] == [1, 2, 3, 5, 6, 9, 8, 10]


def test_expect_takes_the_reply_to_a_subscription_out_of_the_stream() -> None:
    with ScriptedServer(replying) as srv, no_leaks():
        with WebSocketManager(srv.url, **NO_PING) as ws:
            pending = ws.expect(lambda m: m.get("id") == 5)
            ws.subscribe({"method": "SUB", "id": 5})
            assert pending.wait(10) == {"id": 5, "result": "SUB"}
            assert next(iter(ws.stream())) == {"tick": 1}  # the reply is not in it
            unused = ws.expect(lambda m: m.get("id") == 6)
            ws.forget(unused)
            ws.send({"method": "X", "id": 6})
            stream = ws.stream()
            assert [next(stream), next(stream)] == [{"tick": 1}, {"id": 6, "result": "X"}]


def test_an_expect_across_reconnects_is_answered_by_the_resent_subscription() -> None:
    connections = {"n": 0}

    async def answers_the_second_connection(ws: ServerConnection) -> None:
        connections["n"] += 1
        async for raw in ws:
            msg = json.loads(raw)
            if connections["n"] >= 2:
                await ws.send(json.dumps({"id": msg["id"], "result": None}))

    with ScriptedServer(answers_the_second_connection) as srv, no_leaks():
        with WebSocketManager(srv.url, **NO_PING) as ws:
            lasting = ws.expect(lambda m: m.get("id") == 1, across_reconnects=True)
            brittle = ws.expect(lambda m: m.get("id") == 2)
            ws.subscribe({"method": "SUBSCRIBE", "id": 1})
            ws.kill()  # no reply came on the first connection
            with pytest.raises(WebSocketRequestError):
                brittle.wait(10)
            assert lasting.wait(10) == {"id": 1, "result": None}  # from the resend
