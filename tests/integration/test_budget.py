"""The shared connection budget: a sliding window kept in Redis (real ``redis-server``,
fixture) by several pacers, in several processes, counting against one limit; a waiting
acquire resumes when the window frees; Redis away fails closed; the Binance preset takes
its attempts from it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
from busservers import RedisServer
from helpers import FAST, wait_for

from kstlib.websocket._ratelimit import SlidingWindow
from kstlib.websocket.binance import BinanceStreams, ConnectionPacer
from kstlib.websocket.sinks import BudgetUnavailableError, RedisBudget, open_budget
from kstlib.websocket.testing import ExchangeSimulator

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"

#: A process taking slots of a shared budget (``slots`` over an hour) from 3 threads,
#: each trying again and again: prints ``TOOK`` per slot taken and ``WAITING`` once per
#: thread that has to wait; stops (cancelling the waits) when stdin closes.
TAKER = """
import sys, threading
from kstlib.websocket._ratelimit import SlidingWindow
from kstlib.websocket.sinks import RedisBudget

url, key, slots = sys.argv[1], sys.argv[2], int(sys.argv[3])
stop = threading.Event()
lock = threading.Lock()

def say(word):
    with lock:
        print(word, flush=True)

def run():
    window = SlidingWindow(slots, 3600.0)
    window.store = RedisBudget(url, key)
    waiting = []
    def sleep(seconds):
        if not waiting:
            waiting.append(1)
            say("WAITING")
        stop.wait(seconds)
    while not stop.is_set():
        if window.acquire(stop.is_set, sleep):
            say("TOOK")

threads = [threading.Thread(target=run) for _ in range(3)]
for t in threads:
    t.start()
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
"""


def server_of(redis_server: RedisServer) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/0"


def shared_window(url: str, key: str, slots: int, window: float) -> SlidingWindow:
    pacer = SlidingWindow(slots, window)
    pacer.store = RedisBudget(url, key, retry_delay_max=0.2)
    return pacer


@pytest.mark.timeout(60)
def test_two_processes_sharing_a_budget_never_take_more_than_it_together(
    redis_server: RedisServer,
) -> None:
    url = server_of(redis_server)
    procs = [spawn_taker(url, "ip-budget", 4) for _ in range(2)]
    lines: list[str] = []
    try:
        readers = [threading.Thread(target=collect, args=(p, lines)) for p in procs]
        for t in readers:
            t.start()
        # 6 threads against 4 slots of an hour: 4 taken, then every thread waits
        assert wait_for(lambda: lines.count("TOOK") >= 4 and lines.count("WAITING") >= 6, 30)
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            p.wait(20)
        for t in readers:
            t.join(5)
    assert lines.count("TOOK") == 4  # the budget, not 4 per process
    assert redis.Redis.from_url(url).zcard("ip-budget") == 4


def spawn_taker(url: str, key: str, slots: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *sys.path])}
    command = [sys.executable, "-c", TAKER, url, key, str(slots)]
    pipe = subprocess.PIPE
    return subprocess.Popen(command, stdin=pipe, stdout=pipe, text=True, env=env)


def collect(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.strip())


@pytest.mark.timeout(60)
def test_a_waiting_acquire_resumes_when_the_window_frees_without_polling(
    redis_server: RedisServer,
) -> None:
    url = server_of(redis_server)
    first, second = (shared_window(url, "short", 2, 0.5) for _ in range(2))
    assert first.acquire() and second.acquire()
    assert first.delay() > 0 and second.delay() > 0  # full for both
    sleeps: list[float] = []
    done = threading.Event()

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        threading.Event().wait(seconds)

    waiter = threading.Thread(target=lambda: first.acquire(sleep=sleep) and done.set())
    waiter.start()
    assert done.wait(30)
    waiter.join(5)
    assert 1 <= len(sleeps) <= 3  # told how long to wait, not polling


@pytest.mark.timeout(60)
def test_record_takes_slots_and_entries_expire(redis_server: RedisServer) -> None:
    url = server_of(redis_server)
    window = shared_window(url, "rec", 3, 0.2)
    window.record(5)  # more than the window holds: the last 3 count
    client = redis.Redis.from_url(url)
    assert client.zcard("rec") == 3
    assert 0 < client.pttl("rec") <= 1200  # the set expires after its last entry
    assert wait_for(lambda: client.exists("rec") == 0, 10)


@pytest.mark.timeout(60)
def test_with_redis_away_the_budget_fails_closed_and_goes_on_when_it_is_back(
    redis_server: RedisServer,
) -> None:
    url = server_of(redis_server)
    window = shared_window(url, "away", 2, 3600.0)
    budget = window.store
    assert isinstance(budget, RedisBudget)
    redis_server.kill()
    took = threading.Event()
    waiter = threading.Thread(target=lambda: window.acquire() and took.set())
    waiter.start()
    assert wait_for(lambda: budget.failures >= 3, 20)  # asking again, with backoff
    assert not took.is_set()  # no slot without Redis
    with pytest.raises(BudgetUnavailableError, match=r"key=away: cannot reach Redis"):
        window.delay()
    with pytest.raises(BudgetUnavailableError):
        window.record()
    redis_server.start()
    assert took.wait(20)
    waiter.join(5)
    assert redis.Redis.from_url(url).zcard("away") == 1


def test_bad_budget_addresses_and_an_unreachable_redis_are_clear_errors(
    redis_server: RedisServer,
) -> None:
    with pytest.raises(ValueError, match=r"add \?key=NAME"):
        open_budget(server_of(redis_server))
    with pytest.raises(ValueError, match="scheme must be redis"):
        open_budget("nats://127.0.0.1:4222?key=x")
    with pytest.raises(ValueError, match="database must be a number"):
        open_budget("redis://127.0.0.1:6379/x?key=x")
    port = redis_server.port
    redis_server.stop()
    with pytest.raises(BudgetUnavailableError, match=f"127.0.0.1:{port}/0 key=k"):
        open_budget(f"redis://127.0.0.1:{port}/0?key=k", timeout=2.0)
    with pytest.raises(BudgetUnavailableError) as caught:
        open_budget(f"redis://me:secret@127.0.0.1:{port}/0?key=k", timeout=2.0)
    assert "me:***@" in str(caught.value) and "secret" not in str(caught.value)


def test_without_the_redis_package_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from kstlib.websocket.sinks import MissingExtraError, RedisBudget\n"
        "try:\n    RedisBudget('redis://127.0.0.1:1/0', 'k')\n"
        "except MissingExtraError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'kstlib-websocket[redis]'" in out


@pytest.mark.timeout(60)
@pytest.mark.exchange_simulator(event_rate=40)
def test_the_binance_preset_takes_its_attempts_from_the_shared_budget(
    sim: ExchangeSimulator, redis_server: RedisServer
) -> None:
    url = server_of(redis_server)
    options: dict[str, Any] = {"base": sim.url, "budget": f"{url}?key=binance-ip", **FAST}
    with pytest.raises(ValueError, match="not both"):
        BinanceStreams(["btcusdt@trade"], pacer=ConnectionPacer(), **options)
    clients = [BinanceStreams([f"{s}@trade"], **options) for s in ("btcusdt", "ethusdt")]
    try:
        for bn in clients:
            bn.connect(timeout=10)
        assert redis.Redis.from_url(url).zcard("binance-ip") == 2  # one attempt each
    finally:
        for bn in clients:
            bn.close()
