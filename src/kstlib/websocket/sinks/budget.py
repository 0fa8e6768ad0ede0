"""A sliding window shared through Redis: several processes, one limit.

Exchanges count connection attempts per IP (Binance: 300 per 5 minutes), not per
process: relay processes on one machine that each pace themselves may still exceed the
limit together. :class:`RedisBudget` is a
:class:`~kstlib.websocket._ratelimit.WindowStore` that keeps the window's times in one
Redis sorted set, so every window using the same Redis key counts against one budget::

    from kstlib.websocket.binance import BinanceStreams

    bn = BinanceStreams(["btcusdt@trade"], budget="redis://127.0.0.1:6379/0?key=binance-ip")

    # or any SlidingWindow / ConnectionPacer:
    pacer = ConnectionPacer(300, 300.0)
    pacer.store = RedisBudget("redis://127.0.0.1:6379/0", "binance-ip")

How: each call is one Lua script (``EVALSHA``), atomic on the server. It reads the
clock of the Redis server (``TIME``: one clock for every process and machine), removes
the entries older than ``window + margin``, and then takes a slot (``ZADD`` of a unique
member scored with that time) or answers how long to wait until the oldest of the last
``slots`` entries leaves the window. The set keeps at most ``slots`` entries and expires
one second after its newest would have left the window (``PEXPIRE``). A waiting
:meth:`~kstlib.websocket._ratelimit.SlidingWindow.acquire` sleeps that long (locally,
cancellable) and asks again: no polling, but no queue either (whoever asks first after
the slot frees takes it). Windows sharing a key should use the same ``slots``, ``window``
and ``margin``; each enforces its own over the shared entries.

When Redis cannot be reached the budget **fails closed**: no slot is taken without it.
:meth:`RedisBudget.take` (what ``acquire`` calls) answers "wait" with a reconnect delay
(``retry_delay`` doubled up to ``retry_delay_max``), logs a warning naming the address
and the error (once per outage, then when the delay reaches its cap) and counts
:attr:`RedisBudget.failures`; ``acquire`` keeps waiting (cancellable) until Redis
answers. Falling back to a local window would let every process spend the whole budget
on its own while Redis is away: exactly the burst a shared budget exists to prevent
(Binance answers it with an IP ban). :meth:`RedisBudget.wait` and
:meth:`RedisBudget.force` (``delay()`` and ``record()``), which cannot wait, raise
:class:`BudgetUnavailableError`; so does the constructor when Redis does not answer
then (a wrong address is a clear error at start, not a silent wait).

Needs the ``redis`` package: ``pip install 'kstlib-websocket[redis]'`` (without it,
:class:`~kstlib.websocket.sinks.MissingExtraError` names the extra).

Thread-safety: a budget may be shared by any number of threads (redis-py's connection
pool); the outage bookkeeping is under a lock.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._extras import require
from .urls import parse_budget_url

__all__ = ["BudgetUnavailableError", "RedisBudget", "open_budget"]

log = logging.getLogger("kstlib.websocket.sinks")

#: KEYS[1] the sorted set; ARGV mode ("take", "wait", "force"), slots, span (µs),
#: a unique member, count (force). Returns 0 (taken / free) or the µs to wait (>= 1).
_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end -- Redis < 5: TIME, then writes
local key, mode = KEYS[1], ARGV[1]
local slots, span = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
local n = redis.call('ZCARD', key)
if mode == 'force' then
  for i = 1, math.min(tonumber(ARGV[5]), slots) do
    redis.call('ZADD', key, now, ARGV[4] .. ':' .. i)
  end
elseif n >= slots then
  local oldest = redis.call('ZRANGE', key, n - slots, n - slots, 'WITHSCORES')
  return math.floor(tonumber(oldest[2]) + span - now) + 1
elseif mode == 'wait' then
  return 0
else
  redis.call('ZADD', key, now, ARGV[4])
end
redis.call('ZREMRANGEBYRANK', key, 0, -slots - 1)
redis.call('PEXPIRE', key, math.ceil(span / 1000) + 1000)
return 0
"""


class BudgetUnavailableError(ConnectionError):
    """The Redis server of a shared budget cannot be reached (refused, reset, timed
    out); the message names its address and key."""


class RedisBudget:
    """A :class:`~kstlib.websocket._ratelimit.WindowStore` in the Redis sorted set
    ``key`` of the server at ``url`` (``redis://HOST:PORT/DB``; see the module
    docstring). ``timeout``: seconds for one call; ``retry_delay`` /
    ``retry_delay_max``: the waits while Redis is away.

    Raises:
        MissingExtraError: the ``redis`` package is not installed.
        BudgetUnavailableError: Redis did not answer a first ``PING``.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 5.0,
        retry_delay: float = 0.1,
        retry_delay_max: float = 5.0,
    ) -> None:
        redis = require("redis", "redis", "The shared connection budget")
        self.key = key
        self.display_url = f"{_redacted(url)} key={key}"
        self.retry_delay, self.retry_delay_max = retry_delay, retry_delay_max
        #: How many calls found Redis unreachable.
        self.failures = 0
        self._errors = (redis.ConnectionError, redis.TimeoutError, OSError)
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._script = self._client.register_script(_SCRIPT)
        self._prefix = uuid.uuid4().hex  # members unique across processes
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._delay = retry_delay
        self._call(self._client.ping)

    def take(self, slots: int, span: float) -> float:
        """Take a slot (0.0) or the seconds to wait; while Redis is away, the reconnect
        delay (nothing taken: fail closed, see the module docstring)."""
        try:
            micros = self._run("take", slots, span)
        except BudgetUnavailableError as exc:
            return self._away(exc)
        return micros / 1e6

    def wait(self, slots: int, span: float) -> float:
        """Seconds until a slot is free. Raises :class:`BudgetUnavailableError`."""
        return self._run("wait", slots, span) / 1e6

    def force(self, slots: int, span: float, count: int) -> None:
        """Record ``count`` events now. Raises :class:`BudgetUnavailableError`."""
        self._run("force", slots, span, count)

    def clear(self) -> None:
        """Forget every entry of the budget (for all processes sharing it)."""
        self._call(self._client.delete, self.key)

    def close(self) -> None:
        """Close the connections to Redis (a later call connects again)."""
        self._client.close()

    def _run(self, mode: str, slots: int, span: float, count: int = 0) -> int:
        member = f"{self._prefix}:{next(self._counter)}"
        args = [mode, slots, math.ceil(span * 1e6), member, count]
        result = int(self._call(self._script, keys=[self.key], args=args))
        self._back()
        return result

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            with self._lock:
                self.failures += 1
            raise BudgetUnavailableError(
                f"connection budget {self.display_url}: cannot reach Redis: {exc}"
            ) from exc

    def _away(self, exc: BudgetUnavailableError) -> float:
        """The wait before asking again while Redis is away (doubled, capped)."""
        with self._lock:
            delay = self._delay
            self._delay = min(delay * 2, self.retry_delay_max)
            first = delay == self.retry_delay
            capped = delay < self.retry_delay_max == self._delay
        if first or capped:
            log.warning("%s; no slot until it answers (asking again in %.1f s)", exc, delay)
        return delay

    def _back(self) -> None:
        """A call went through: the next outage starts at ``retry_delay``."""
        with self._lock:
            if self._delay != self.retry_delay:
                log.warning("connection budget %s: Redis answers again", self.display_url)
            self._delay = self.retry_delay


def _redacted(url: str) -> str:
    """``url`` without its password (it goes into log lines and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def open_budget(url: str, **options: Any) -> RedisBudget:
    """The budget of ``redis://HOST:PORT/DB?key=NAME`` (ValueError: a bad address)."""
    server, key = parse_budget_url(url)
    return RedisBudget(server, key, **options)
