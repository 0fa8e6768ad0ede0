"""The Binance preset's parts without a network: request waits (registered with the
engine's ``expect()``; its rules around a manager's ``request()``), the unawaited
replies, and the pool's merge (the ``on_batch`` / ``on_error`` hooks
it installs on each manager), its back-pressure and the merged stream's iteration. The
managers here are created, never connected."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kstlib.websocket import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketRequestError,
    WebSocketTimeoutError,
)
from kstlib.websocket.binance import BinanceRequestError, BinanceStreams, ConnectionEvent
from kstlib.websocket.binance.pool import Connection, ConnectionPacer, Pool, preset_options
from kstlib.websocket.binance.requests import Requests
from kstlib.websocket.engine.intercept import Interceptor
from kstlib.websocket.models import Connected, Disconnected, DisconnectReason

URL = "ws://127.0.0.1:9/ws"


class Holds:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def requests(self) -> Requests:
        return Requests(lambda: self.calls.append("hold"), lambda: self.calls.append("release"))


def _call(_name: str, fn: Any, *args: Any) -> Any:
    return fn(*args)


class FakeConn:
    """A connection whose ``manager`` is an engine's interceptor (its ``expect`` and
    ``forget``, what ``WebSocketManager.expect`` / ``forget`` reach)."""

    def __init__(self) -> None:
        self.manager = Interceptor(_call)


def taken(req: Requests, conn: FakeConn, msg: Any) -> bool:
    """What an engine thread does with ``msg``: its interceptor takes an awaited reply
    out, the preset's ``on_batch`` then drops an unawaited one of ours. True if either
    took it (it never reaches the stream)."""
    return not conn.manager.take([msg]) or req.take_reply(msg, 0)


def make_pool(**options: Any) -> Pool:
    cancel = threading.Event()
    unwrap = options.pop("unwrap", False)
    return Pool(
        URL,
        preset_options(options, ConnectionPacer(), cancel),
        None,
        unwrap=unwrap,
        cancel=cancel,
    )


@pytest.fixture
def pool() -> Iterator[Pool]:
    p = make_pool()
    yield p
    p.close()


def hook(conn: Connection) -> Any:
    """The manager's ``on_batch`` as its engine thread calls it: the engine first takes
    the awaited replies out, and on a ``Disconnected`` first fails the waits the
    connection owed (except those made ``across_reconnects``)."""
    on_batch = conn.manager.settings.on_batch
    assert on_batch is not None
    intercept = conn.manager._engine._rt.delivery.intercept

    def engine_thread(batch: list[Any]) -> Any:
        if len(batch) == 1 and isinstance(batch[0], Disconnected):
            intercept.connection_lost()
        return on_batch(intercept.take(batch) if intercept.active else batch)

    return engine_thread


def trade(stream: str, t: int) -> dict[str, Any]:
    return {"stream": stream, "data": {"e": "trade", "s": stream, "t": t}}


# ----------------------------------------------------------------------------- requests


def test_requests_match_replies_by_id() -> None:
    holds = Holds()
    req = holds.requests()
    conn = FakeConn()
    a, b = req.new_id(), req.new_id()
    assert (a, b) == (1, 2)
    req.expect(a, "LIST_SUBSCRIPTIONS", conn)
    req.expect(b, "SUBSCRIBE", conn)
    assert holds.calls == ["hold"]  # once, for the first request waiting
    assert not taken(req, conn, {"stream": "x@trade", "data": {}, "id": 1})  # an event
    assert not taken(req, conn, {"result": None, "id": 99})  # not one of our ids
    assert taken(req, conn, {"result": ["x@trade"], "id": b})
    assert taken(req, conn, {"result": None, "id": a})
    assert req.wait([a, b], 1.0) == [{"result": None, "id": a}, {"result": ["x@trade"], "id": b}]
    assert holds.calls == ["hold", "release"]
    assert taken(req, conn, {"result": None, "id": a})  # late: still ours, dropped


def test_requests_error_reply_timeout_and_lost_connection() -> None:
    req = Holds().requests()
    conn, other = FakeConn(), FakeConn()
    rid = req.new_id()
    req.expect(rid, "SUBSCRIBE", conn)
    taken(req, conn, {"error": {"code": 2, "msg": "Invalid request"}, "id": rid})
    with pytest.raises(BinanceRequestError) as info:
        req.wait([rid], 1.0)
    assert (info.value.code, info.value.msg, info.value.request_id) == (2, "Invalid request", rid)

    rid = req.new_id()
    req.expect(rid, "SUBSCRIBE", conn)
    with pytest.raises(WebSocketTimeoutError):
        req.wait([rid], 0.01)

    unsub, sub, elsewhere = (req.new_id() for _ in range(3))
    req.expect(unsub, "UNSUBSCRIBE", conn)
    req.expect(sub, "SUBSCRIBE", conn)
    req.expect(elsewhere, "LIST_SUBSCRIPTIONS", other)
    conn.manager.connection_lost()  # the engine: the connection ended
    assert req.wait([unsub], 0.01) == []  # done: its entry is no longer resent
    with pytest.raises(WebSocketTimeoutError):  # the next connection answers it
        req.wait([sub], 0.01)

    req.expect(sub, "SUBSCRIBE", conn)
    req.close(WebSocketClosedError(None, "closed"))
    with pytest.raises(WebSocketClosedError):
        req.wait([sub, elsewhere], 1.0)
    with pytest.raises(WebSocketClosedError):
        req.expect(req.new_id(), "SUBSCRIBE", conn)


class FakeRequest:
    """A manager's ``request()``: records the call, then gives ``outcome`` (a reply, or
    an exception to raise) once ``go`` is set."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.calls: list[tuple[Any, Any, float]] = []
        self.called = threading.Event()
        self.go = threading.Event()
        self.go.set()

    def __call__(self, message: Any, *, match: Any = None, timeout: float = 10.0) -> Any:
        self.calls.append((message, match, timeout))
        self.called.set()
        assert self.go.wait(5)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def test_ask_is_the_managers_request_with_the_presets_rules() -> None:
    holds = Holds()
    req = holds.requests()
    rid = req.new_id()
    message = {"method": "LIST_SUBSCRIPTIONS", "id": rid}
    request = FakeRequest({"result": ["a@trade"], "id": rid})
    assert req.ask(request, message, 2.0) == {"result": ["a@trade"], "id": rid}
    [(sent, match, timeout)] = request.calls
    assert sent is message and timeout == 2.0
    assert match({"result": None, "id": rid}) and match({"error": {}, "id": rid})
    assert not match({"result": None, "id": rid + 1})  # another request's
    assert not match({"e": "trade", "id": rid, "result": 1})  # an event
    assert not match({"stream": "a@trade", "data": {}, "id": rid})
    assert holds.calls == ["hold", "release"]  # engines do not wait for room meanwhile

    refused = FakeRequest({"error": {"code": 2, "msg": "Invalid request"}, "id": rid})
    with pytest.raises(BinanceRequestError) as info:
        req.ask(refused, message, 1.0)
    assert (info.value.code, info.value.msg, info.value.request_id) == (2, "Invalid request", rid)

    # the engine fails a request whose connection ended (WebSocketRequestError): for a
    # LIST_SUBSCRIPTIONS the preset raises WebSocketClosedError ...
    lost = FakeRequest(WebSocketRequestError("the connection ended before the reply"))
    with pytest.raises(WebSocketClosedError) as closed:
        req.ask(lost, message, 1.0)
    assert isinstance(closed.value.__cause__, WebSocketRequestError)
    # ... or, when the client closed meanwhile, the error it closed with
    lost.go.clear()
    lost.called.clear()
    raised: list[BaseException] = []

    def waiting() -> None:
        try:
            req.ask(lost, message, 5.0)
        except BaseException as exc:
            raised.append(exc)

    thread = run(waiting)
    assert lost.called.wait(5)
    failure = WebSocketConnectionError("connection 1 gave up", url=URL)
    req.close(failure)
    lost.go.set()
    thread.join(5)
    assert raised == [failure]
    with pytest.raises(WebSocketClosedError):  # closed: nothing more is sent
        req.ask(request, message, 1.0)
    assert len(request.calls) == 1
    assert holds.calls == ["hold", "release"] * 4


# ----------------------------------------------------------------------------- the merge


def test_on_batch_takes_replies_out_and_queues_the_batch_in_one_put(pool: Pool) -> None:
    conn = pool.add(["a@trade"], [])
    rid = pool.requests.new_id()
    pool.requests.expect(rid, "LIST_SUBSCRIPTIONS", conn)
    foreign = {"result": None, "id": 10_000}
    batch = [trade("a@trade", 1), {"result": ["a@trade"], "id": rid}, trade("a@trade", 2), foreign]
    assert hook(conn)(batch) == []  # nothing for the manager's own inbox
    assert pool.requests.wait([rid], 1.0) == [{"result": ["a@trade"], "id": rid}]
    assert pool.inbox.drain() == [batch[0], batch[2], foreign]


def test_on_batch_unwraps() -> None:
    pool = make_pool(unwrap=True)
    conn = pool.add(["a@trade"], [])
    notice = {"e": "serverShutdown", "E": 1}
    hook(conn)([trade("a@trade", 1), notice])
    assert pool.inbox.drain() == [("a@trade", trade("a@trade", 1)["data"]), (None, notice)]
    pool.close()


def test_gap_markers_become_connection_events(pool: Pool) -> None:
    pool.add(["a@trade"], [])
    conn = pool.add(["b@trade", "c@trade"], [])
    on_batch = hook(conn)
    on_batch([Connected(0.0, 2, reconnect=False)])  # the first connection: no gap
    assert pool.inbox.drain() == []
    assert conn.sends.delay() == 0.0  # 2 of its 4 request slots taken
    rid = pool.requests.new_id()
    pool.requests.expect(rid, "UNSUBSCRIBE", conn)
    lost = Disconnected(DisconnectReason.NETWORK_ERROR, 1.0, 1006)
    on_batch([lost])
    assert pool.requests.wait([rid], 1.0) == []  # the lost connection resolved it
    back = Connected(2.0, 3)
    on_batch([back])
    assert conn.sends.delay() > 0.0  # the resent subscriptions count
    assert pool.inbox.drain() == [
        ConnectionEvent(1, ("b@trade", "c@trade"), lost),
        ConnectionEvent(1, ("b@trade", "c@trade"), back),
    ]


def test_order_within_each_connection_is_kept(pool: Pool) -> None:
    conns = [pool.add([f"s{i}@trade"], []) for i in range(3)]

    def produce(conn: Connection) -> None:
        on_batch, name = hook(conn), f"s{conn.index}@trade"
        for start in range(0, 300, 10):
            on_batch([trade(name, t) for t in range(start, start + 10)])

    threads = [threading.Thread(target=produce, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    merged = pool.inbox.drain()
    for i in range(3):
        ids = [m["data"]["t"] for m in merged if m["stream"] == f"s{i}@trade"]
        assert ids == list(range(300))
    # a batch is put whole: its ten items are adjacent in the merged stream
    for j in range(0, len(merged), 10):
        assert len({m["stream"] for m in merged[j : j + 10]}) == 1


def run(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_full_queue_holds_the_engine_until_read_or_a_request_waits() -> None:
    pool = make_pool(queue_size=2)
    conn = pool.add(["a@trade"], [])
    on_batch = hook(conn)
    producer = run(lambda: on_batch([trade("a@trade", t) for t in range(3)]))
    producer.join(0.2)
    assert producer.is_alive()  # two fit; the third waits for room
    assert len(pool.inbox) == 2
    assert pool.inbox.get_batch() == [trade("a@trade", 0), trade("a@trade", 1)]
    producer.join(5)
    assert not producer.is_alive()
    assert pool.inbox.drain() == [trade("a@trade", 2)]

    on_batch([trade("a@trade", 3), trade("a@trade", 4)])  # full again
    producer = run(lambda: on_batch([trade("a@trade", 5)]))
    producer.join(0.2)
    assert producer.is_alive()
    rid = pool.requests.new_id()
    pool.requests.expect(rid, "LIST_SUBSCRIPTIONS", conn)  # a reply must not wait
    producer.join(5)
    assert not producer.is_alive() and len(pool.inbox) == 3  # past the bound
    pool.requests.forget([rid])

    producer = run(lambda: on_batch([trade("a@trade", 6)]))
    producer.join(0.2)
    assert producer.is_alive()  # waiting again once no request waits
    pool.close()
    producer.join(5)
    assert not producer.is_alive()
    assert [m["data"]["t"] for m in pool.messages(events=False)] == [3, 4, 5, 6]


def test_a_full_queue_does_not_hold_the_engine_while_an_engine_request_waits() -> None:
    """The engine takes a request()'s reply out of the batch before on_batch, but an
    engine thread waiting for room inside on_batch reads nothing: the wait must end while
    the request waits, or the reply is never read."""
    pool = make_pool(queue_size=2)
    conn = pool.add(["a@trade"], [])
    on_batch = hook(conn)
    on_batch([trade("a@trade", 1), trade("a@trade", 2)])  # full
    producer = run(lambda: on_batch([trade("a@trade", 3)]))
    producer.join(0.2)
    assert producer.is_alive()
    request = FakeRequest({"result": [], "id": 7})
    request.go.clear()
    asking = run(lambda: pool.requests.ask(request, {"method": "LIST_SUBSCRIPTIONS", "id": 7}, 5))
    producer.join(5)
    assert not producer.is_alive() and len(pool.inbox) == 3  # queued past the bound
    request.go.set()
    asking.join(5)
    assert not asking.is_alive()

    producer = run(lambda: on_batch([trade("a@trade", 4)]))
    producer.join(0.2)
    assert producer.is_alive()  # waiting again once no request waits
    pool.close()
    producer.join(5)
    assert not producer.is_alive()
    assert [m["data"]["t"] for m in pool.messages(events=False)] == [1, 2, 3, 4]


def test_messages_skip_events_and_put_the_rest_back(pool: Pool) -> None:
    conn = pool.add(["a@trade"], [])
    lost = Disconnected(DisconnectReason.KILLED, 1.0)
    hook(conn)([trade("a@trade", 1)])
    hook(conn)([lost])
    hook(conn)([trade("a@trade", 2), trade("a@trade", 3)])
    for m in pool.messages(events=False):
        assert m == trade("a@trade", 1)
        break
    assert len(pool.inbox) == 3  # the unread rest is back, the event too
    items = pool.messages(events=True)
    assert isinstance(next(items), ConnectionEvent)
    assert next(items) == trade("a@trade", 2)
    items.close()  # type: ignore[attr-defined]
    pool.close()
    assert list(pool.messages(events=False)) == [trade("a@trade", 3)]


def test_messages_async_skip_events(pool: Pool) -> None:
    conn = pool.add(["a@trade"], [])
    hook(conn)([trade("a@trade", 1), trade("a@trade", 2)])
    hook(conn)([Disconnected(DisconnectReason.KILLED, 1.0)])

    async def first() -> Any:
        items = pool.messages_async(events=False)
        try:
            async for m in items:
                return m
        finally:
            await items.aclose()

    assert asyncio.run(first()) == trade("a@trade", 1)
    assert len(pool.inbox) == 2
    pool.close()

    async def rest() -> list[Any]:
        return [m async for m in pool.messages_async(events=True)]

    got = asyncio.run(rest())
    assert got[0] == trade("a@trade", 2) and isinstance(got[1], ConnectionEvent)


def test_on_error_calls_the_users_hook_and_a_failure_before_start_is_kept() -> None:
    seen: list[BaseException] = []
    pool = make_pool(on_error=seen.append)
    conn = pool.add(["a@trade"], [])
    on_error = conn.manager.settings.on_error
    assert on_error is not None and on_error is not seen.append
    boom = RuntimeError("boom")
    on_error(boom)  # the manager never ran: is_dead, but not started
    assert seen == [boom] and not pool.closed and conn.early_error is boom
    pool.close()

    def raiser(exc: BaseException) -> None:
        raise KeyError("user hook")

    pool = make_pool(on_error=raiser)
    conn = pool.add([], [])
    on_error = conn.manager.settings.on_error
    assert on_error is not None
    with pytest.raises(KeyError):  # the engine logs and counts it ...
        on_error(boom)
    assert conn.early_error is boom  # ... after the pool did its part
    pool.close()


def test_the_client_refuses_on_batch_and_keeps_on_error() -> None:
    with pytest.raises(TypeError, match="on_batch"):
        BinanceStreams(["btcusdt@trade"], on_batch=lambda b: b)
    seen: list[BaseException] = []
    bn = BinanceStreams(["btcusdt@trade"], on_error=seen.append)
    on_error = bn.connections[0].settings.on_error
    assert on_error is not None
    on_error(ValueError("x"))
    assert [type(e) for e in seen] == [ValueError]
    bn.close()
    assert bn.closed and not bn.started
    assert list(bn.stream()) == []
