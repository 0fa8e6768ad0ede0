"""The venue recipes of ``docs/recipes/``, run as written against the exchange
simulator's dialect of each venue.

Each page's ``python`` block is compiled from the Markdown file itself (line numbers
kept, so a traceback points into the page) and its functions are called with the
simulator's URL and scaled-down windows; nothing else of the recipe is replaced. The
"Done when" of issue 9, per venue: a connection stays up on application heartbeats
alone, a private stream logs in before it subscribes and survives an expired token by
running its factory again, a silent feed is replaced (the replacement and its reason are
asserted, never a duration), and every injected sequence gap is exactly one ``Gap``
marker, at its place.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import FAST, no_leaks, wait_for

from kstlib.websocket import Connected, Disconnected, DisconnectReason, Gap
from kstlib.websocket.testing import (
    BinanceDialect,
    BybitDialect,
    CoinbaseDialect,
    DeribitDialect,
    ExchangeSimulator,
    InjectedGap,
    KrakenDialect,
    OkxDialect,
)

pytestmark = pytest.mark.timeout(60)

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"
PAGES = ("binance-user-data", "okx", "bybit", "coinbase", "kraken", "deribit")
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)

Factory = Callable[..., ExchangeSimulator]


def load_recipe(name: str) -> ModuleType:
    """The page's ``python`` blocks, compiled from the Markdown file and run as a module."""
    path = RECIPES / f"{name}.md"
    text = path.read_text(encoding="utf-8")
    lines = ["" for _ in range(text.count("\n") + 1)]
    found = list(_BLOCK.finditer(text))
    assert found, f"no python block in {path}"
    for block in found:
        first = text.count("\n", 0, block.start(1))
        for i, line in enumerate(block.group(1).splitlines()):
            lines[first + i] = line
    module = ModuleType(f"recipe_{name.replace('-', '_')}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module  # typing and dataclasses look modules up
    exec(compile("\n".join(lines), str(path), "exec"), module.__dict__)
    return module


def test_every_venue_has_one_runnable_page() -> None:
    assert sorted(p.stem for p in RECIPES.glob("*.md")) == sorted([*PAGES, "README"])
    index = (RECIPES / "README.md").read_text(encoding="utf-8")
    assert not _BLOCK.findall(index)
    named = [
        test
        for row in index.splitlines()
        if row.startswith("| ")
        for test in re.findall(r"`(test_\w+)`", row.split("|")[-2])  # the last column
    ]
    assert len(named) >= 17
    assert all(callable(globals().get(test)) for test in named)  # tests that exist
    for name in PAGES:
        text = (RECIPES / f"{name}.md").read_text(encoding="utf-8")
        blocks = _BLOCK.findall(text)
        assert len(blocks) == 1, name  # the page shows one block of code: the one run
        imported = re.findall(r"^(?:from|import) (kstlib\S*)", blocks[0], re.M)
        assert set(imported) <= {"kstlib.websocket", "kstlib.websocket.aio"}, name  # public
        load_recipe(name)


# --------------------------------------------------------------------------- gaps


def as_triple(numbers: Any) -> tuple[Any, int, int] | None:
    """A ``sequence`` answer as ``(stream, prev, last)``."""
    if numbers is None:
        return None
    if len(numbers) == 2:
        return numbers[0], numbers[1] - 1, numbers[1]
    return numbers[0], numbers[1], numbers[2]


def collect_gaps(
    ws: Any,
    sim: ExchangeSimulator,
    numbers: Callable[[Any], Any],
    holes: tuple[int, ...] = (1, 4, 2),
    between: int = 5,
    limit: int = 10_000,
) -> list[Any]:
    """Read ``stream(events=True)``; after every ``between`` sequenced messages, make the
    next hole of ``holes`` (that many messages swallowed by the server); stop once every
    hole was marked and ``between`` more messages came."""
    items: list[Any] = []
    todo = list(holes)
    since = 0
    for item in ws.stream(events=True):
        items.append(item)
        assert not isinstance(item, Disconnected), item  # one connection throughout
        assert len(items) < limit, (
            f"holes {holes}, markers {[i for i in items if isinstance(i, Gap)]}"
        )
        if isinstance(item, Gap):
            since = 0
        elif not isinstance(item, Connected) and numbers(item) is not None:
            since += 1
        marked = sum(isinstance(i, Gap) for i in items)
        if since == between and marked == len(holes) - len(todo):
            if not todo:
                return items
            assert sim.inject_gap(todo.pop(0)) == 1
            since = -(10**9)  # wait for its marker
    raise AssertionError("the stream ended")


def check_gaps(items: list[Any], numbers: Callable[[Any], Any], made: list[InjectedGap]) -> None:
    """Each hole the server made is exactly one ``Gap``, between the last message before
    the hole and the first one after it."""
    markers = [i for i, item in enumerate(items) if isinstance(item, Gap)]
    assert [(items[i].expected, items[i].received) for i in markers] == [
        (g.expected, g.received) for g in made
    ]
    assert len(made) >= 3
    for i in markers:
        before = [as_triple(numbers(x)) for x in items[:i] if not isinstance(x, (Gap, Connected))]
        last_before = [n for n in before if n is not None][-1]
        after = as_triple(numbers(items[i + 1]))
        assert after is not None and after[1] == items[i].received - 1
        assert last_before[2] == items[i].expected - 1


# --------------------------------------------------------------------------- OKX


def test_okx_public_stays_up_on_application_heartbeats_alone(
    exchange_simulator_factory: Factory,
) -> None:
    sim = exchange_simulator_factory(dialect=OkxDialect(silence=0.5), event_rate=20)
    okx = load_recipe("okx")
    with no_leaks():
        with okx.okx_books(["BTC-USDT"], url=sim.endpoint("public"), ping_every=0.15, **FAST) as ws:
            data = (m for m in ws.stream() if isinstance(m, dict) and "data" in m)
            for _ in itertools.islice(data, 60):  # three seconds of books: six silence windows
                pass
            assert ws.stats.disconnects == 0
            assert sim.connection_info(0).is_open
    assert sim.total_connections == 1
    assert sim.received(0).count("ping") >= 6


def test_okx_books_mark_each_injected_gap_once_in_place(
    exchange_simulator_factory: Factory,
) -> None:
    sim = exchange_simulator_factory(dialect="okx", event_rate=100)
    okx = load_recipe("okx")
    with no_leaks():
        with okx.okx_books(["BTC-USDT"], url=sim.endpoint("public"), **FAST) as ws:
            items = collect_gaps(ws, sim, okx.book_numbers)
            assert ws.stats.sequence_gaps == 3
    check_gaps(items, okx.book_numbers, sim.injected_gaps(0))


def test_okx_private_logs_in_before_subscribing_and_survives_an_expired_login(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = OkxDialect(login_window=0.3)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    okx = load_recipe("okx")
    keys = (dialect.api_key, dialect.secret_key, dialect.passphrase)
    with no_leaks():
        with okx.okx_orders(*keys, url=sim.endpoint("private"), **FAST) as ws:
            items = ws.stream(events=True)
            next_order(items)
            login, subscribe = (json.loads(m) for m in sim.received(0)[:2])
            assert login["op"] == "login" and subscribe["op"] == "subscribe"
            stamp = float(login["args"][0]["timestamp"])
            assert wait_for(lambda: time.time() - stamp > dialect.login_window)  # expired
            sim.reset_all()
            assert any(isinstance(i, Connected) and i.reconnect for i in items)
            next_order(items)  # the new connection logged in again and streams orders
            again = json.loads(sim.received(1)[0])
            assert again["op"] == "login" and again["args"][0]["timestamp"] != f"{stamp:.3f}"
            assert ws.stats.connects == 2


def next_order(items: Iterator[Any]) -> Any:
    """The next order update; a server error (a refused subscription) fails the test."""
    for item in items:
        assert not (isinstance(item, dict) and item.get("event") == "error"), item
        if isinstance(item, dict) and "data" in item:
            return item
    raise AssertionError("the stream ended")


# --------------------------------------------------------------------------- Bybit


def test_bybit_books_silent_feed_is_replaced(exchange_simulator_factory: Factory) -> None:
    sim = exchange_simulator_factory(dialect="bybit", event_rate=50)
    bybit = load_recipe("bybit")
    url = sim.endpoint("public")
    with no_leaks():
        with bybit.bybit_books(
            ["BTCUSDT"], url=url, ping_every=0.4, receive_timeout=0.3, **FAST
        ) as ws:
            items = ws.stream(events=True)
            next(i for i in items if bybit.book_numbers(i) is not None)
            assert sim.stall(True, only=0) == 1  # the book stops; pongs still come
            ended = next(i for i in items if isinstance(i, Disconnected))
            assert ended.reason is DisconnectReason.DATA_TIMEOUT
            assert next(i for i in items if isinstance(i, Connected)).reconnect
            assert next(i for i in items if isinstance(i, dict) and "topic" in i)  # flowing
            assert ws.stats.disconnects_by_reason == {DisconnectReason.DATA_TIMEOUT: 1}
    assert sim.total_connections == 2


def test_bybit_books_mark_each_injected_gap_once_in_place(
    exchange_simulator_factory: Factory,
) -> None:
    sim = exchange_simulator_factory(dialect="bybit", event_rate=100)
    bybit = load_recipe("bybit")
    with no_leaks():
        with bybit.bybit_books(["BTCUSDT"], url=sim.endpoint("public"), **FAST) as ws:
            items = collect_gaps(ws, sim, bybit.book_numbers)
    check_gaps(items, bybit.book_numbers, sim.injected_gaps(0))


def test_bybit_private_auths_before_subscribing_and_signs_each_connection_afresh(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = BybitDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    bybit = load_recipe("bybit")
    keys = (dialect.api_key, dialect.api_secret)
    url = sim.endpoint("private")
    with no_leaks():
        with bybit.bybit_orders(*keys, url=url, auth_valid_for=0.3, **FAST) as ws:
            items = ws.stream(events=True)
            assert next_topic(items)["topic"] == "order"
            auth, subscribe = (json.loads(m) for m in sim.received(0)[:2])
            assert auth["op"] == "auth" and subscribe["op"] == "subscribe"
            expires = auth["args"][1]
            assert wait_for(lambda: time.time() * 1000 > expires)  # that auth is stale now
            sim.reset_all()
            assert any(isinstance(i, Connected) and i.reconnect for i in items)
            assert next_topic(items)["topic"] == "order"
            again = json.loads(sim.received(1)[0])
            assert again["op"] == "auth" and again["args"][1] > expires


def next_topic(items: Iterator[Any]) -> Any:
    """The next message with a topic; a refused request fails the test."""
    for item in items:
        assert not (isinstance(item, dict) and item.get("success") is False), item
        if isinstance(item, dict) and "topic" in item:
            return item
    raise AssertionError("the stream ended")


# --------------------------------------------------------------------------- Coinbase


def test_coinbase_user_survives_an_expired_jwt_by_running_the_factory_again(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = CoinbaseDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    coinbase = load_recipe("coinbase")
    url = sim.endpoint("private")
    with no_leaks():
        with coinbase.coinbase_user(["BTC-USD"], dialect.issue_jwt, url=url, **FAST) as ws:
            items = ws.stream(events=True)
            assert next_channel(items, "user")["events"][0]["type"] == "snapshot"
            first = [json.loads(m)["jwt"] for m in sim.received(0)]
            dialect.expire_jwts()  # two minutes later: every token so far is dead
            assert not any(dialect.jwt_valid(token) for token in first)
            sim.reset_all()
            assert any(isinstance(i, Connected) and i.reconnect for i in items)
            assert next_channel(items, "user")["events"][0]["type"] == "snapshot"
            again = [json.loads(m)["jwt"] for m in sim.received(1)]
            assert len(again) == 2 and not set(again) & set(first)


def test_coinbase_level2_marks_each_injected_gap_once_in_place(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = CoinbaseDialect(heartbeat_interval=0.05)  # heartbeats share the counter
    sim = exchange_simulator_factory(dialect=dialect, event_rate=100)
    coinbase = load_recipe("coinbase")
    url = sim.endpoint("public")
    with no_leaks():
        with coinbase.coinbase_level2(["BTC-USD"], dialect.issue_jwt, url=url, **FAST) as ws:
            items = collect_gaps(ws, sim, coinbase.sequence_num)
    check_gaps(items, coinbase.sequence_num, sim.injected_gaps(0))
    assert any(isinstance(i, dict) and i["channel"] == "heartbeats" for i in items)


def next_channel(items: Iterator[Any], channel: str) -> Any:
    """The next message of ``channel``; an error message fails the test."""
    for item in items:
        assert not (isinstance(item, dict) and item.get("type") == "error"), item
        if isinstance(item, dict) and item.get("channel") == channel:
            return item
    raise AssertionError("the stream ended")


# --------------------------------------------------------------------------- Kraken


def test_kraken_executions_take_a_fresh_token_on_every_connection(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = KrakenDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    kraken = load_recipe("kraken")
    url = sim.endpoint("private")
    with no_leaks():
        with kraken.kraken_executions(dialect.issue_token, url=url, **FAST) as ws:
            items = ws.stream(events=True)
            assert next_executions(items)["sequence"] == 1
            first = json.loads(sim.received(0)[0])["params"]["token"]
            dialect.expire_tokens()  # fifteen minutes later: that token opens nothing now
            sim.reset_all()
            assert any(isinstance(i, Connected) and i.reconnect for i in items)
            assert next_executions(items)["sequence"] == 1  # the new connection's snapshot
            again = json.loads(sim.received(1)[0])["params"]["token"]
            assert again != first and dialect.token_valid(again)


def test_kraken_executions_mark_each_injected_gap_once_in_place(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = KrakenDialect(heartbeat_interval=0.05)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=100)
    kraken = load_recipe("kraken")
    url = sim.endpoint("private")
    with no_leaks():
        with kraken.kraken_executions(dialect.issue_token, url=url, **FAST) as ws:
            items = collect_gaps(ws, sim, kraken.execution_numbers)
    check_gaps(items, kraken.execution_numbers, sim.injected_gaps(0))
    assert not any(isinstance(i, dict) and i.get("channel") == "heartbeat" for i in items)


def test_kraken_book_silent_behind_heartbeats_is_replaced(
    exchange_simulator_factory: Factory,
) -> None:
    sim = exchange_simulator_factory(dialect=KrakenDialect(heartbeat_interval=0.05), event_rate=50)
    kraken = load_recipe("kraken")
    options = {"receive_timeout": 0.3, "heartbeat_every": 0.2, **FAST}
    with no_leaks():
        with kraken.kraken_book(["BTC/USD"], url=sim.endpoint("public"), **options) as ws:
            items = ws.stream()
            next(i for i in items if isinstance(i, dict) and i.get("channel") == "book")
            assert sim.stall(True, only=0) == 1  # the book stops; the heartbeats go on
            replaced = wait_for(lambda: ws.stats.disconnects >= 1, timeout=3)
            assert replaced and ws.stats.last_disconnect_reason is DisconnectReason.DATA_TIMEOUT


def next_executions(items: Iterator[Any]) -> Any:
    """The next executions message; a refused subscription fails the test."""
    for item in items:
        assert not (isinstance(item, dict) and item.get("success") is False), item
        if isinstance(item, dict) and item.get("channel") == "executions":
            return item
    raise AssertionError("the stream ended")


# --------------------------------------------------------------------------- Deribit


def deribit_sim(factory: Factory, **options: Any) -> tuple[ExchangeSimulator, DeribitDialect]:
    dialect = DeribitDialect(min_heartbeat_interval=0.05)
    return factory(dialect=dialect, **options), dialect


def notification(item: Any) -> bool:
    return isinstance(item, dict) and item.get("method") == "subscription"


def test_deribit_answers_test_requests_and_stays_up(exchange_simulator_factory: Factory) -> None:
    sim, dialect = deribit_sim(exchange_simulator_factory, event_rate=20)
    deribit = load_recipe("deribit")
    keys = (dialect.client_id, dialect.client_secret)
    url = sim.endpoint("public")
    with no_leaks():
        with deribit.deribit(*keys, url=url, heartbeat_interval=0.15, **FAST) as ws:
            seen = list(itertools.islice(ws.stream(), 70))  # 1.5 s: ten heartbeat intervals
            assert ws.stats.disconnects == 0 and sim.connection_info(0).is_open
    tests = [m for m in sim.received(0) if json.loads(m)["method"] == "public/test"]
    assert len(tests) >= 5
    assert not [m for m in seen if isinstance(m, dict) and m.get("method") == "heartbeat"]
    assert not [m for m in seen if isinstance(m, dict) and m.get("id") == deribit.TEST_ID]
    assert sum(map(notification, seen)) >= 60


def test_deribit_logs_in_before_the_private_subscription_and_answers_requests(
    exchange_simulator_factory: Factory,
) -> None:
    sim, dialect = deribit_sim(exchange_simulator_factory, event_rate=20)
    deribit = load_recipe("deribit")
    keys = (dialect.client_id, dialect.client_secret)
    with no_leaks():
        with deribit.deribit(*keys, url=sim.endpoint("public"), **FAST) as ws:
            orders = (
                i for i in ws.stream() if notification(i) and "user" in i["params"]["channel"]
            )
            assert next(orders)["params"]["data"]["order_state"] == "open"
            assert isinstance(deribit.server_time(ws), int)
            sent = [json.loads(m)["method"] for m in sim.received(0)]
            assert sent[:3] == ["public/auth", "public/set_heartbeat", "private/subscribe"]


def test_deribit_book_marks_each_injected_gap_once_in_place(
    exchange_simulator_factory: Factory,
) -> None:
    sim, dialect = deribit_sim(exchange_simulator_factory, event_rate=100)
    deribit = load_recipe("deribit")
    keys = (dialect.client_id, dialect.client_secret)
    with no_leaks():
        with deribit.deribit(*keys, url=sim.endpoint("public"), **FAST) as ws:
            items = collect_gaps(ws, sim, deribit.change_numbers)
    check_gaps(items, deribit.change_numbers, sim.injected_gaps(0))


# --------------------------------------------------------------------------- Binance


def test_binance_keepalive_keeps_the_listen_key_past_its_validity(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = BinanceDialect(listen_key_ttl=0.3)
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    binance = load_recipe("binance-user-data")
    rest = (dialect.new_listen_key, dialect.keepalive_listen_key)
    with no_leaks():
        with binance.binance_user_data(*rest, base=sim.url, keepalive_every=0.05, **FAST) as ws:
            events = list(itertools.islice(binance.account_events(ws), 40))  # six validities
            assert ws.stats.connects == 1
    assert [e["i"] for e in events] == list(range(1, 41))  # one connection, nothing skipped
    key = sim.connection_info(0).path.rsplit("/", 1)[1]
    assert dialect.listen_key_active(key)


def test_binance_expired_listen_key_is_replaced_by_the_url_factory(
    exchange_simulator_factory: Factory,
) -> None:
    dialect = BinanceDialect()
    sim = exchange_simulator_factory(dialect=dialect, event_rate=20)
    binance = load_recipe("binance-user-data")
    rest = (dialect.new_listen_key, dialect.keepalive_listen_key)
    with no_leaks():
        with binance.binance_user_data(*rest, base=sim.url, **FAST) as ws:
            events = binance.account_events(ws)
            assert next(events)["i"] == 1
            dialect.expire_listen_key()  # no keepalive came: the key is dead
            assert next(e for e in events if ws.stats.connects == 2)["i"] == 1  # new connection
            assert ws.stats.disconnects_by_reason == {DisconnectReason.SCHEDULED: 1}
    old, new = (sim.connection_info(i).path.rsplit("/", 1)[1] for i in (0, 1))
    assert old != new and not dialect.listen_key_active(old) and dialect.listen_key_active(new)
