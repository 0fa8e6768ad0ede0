"""Publishing to a Redis stream: one ``EVALSHA`` per chunk, one entry per item.

Each chunk is one command (one round trip) running :data:`PUBLISH_SCRIPT` in Redis,
which adds one stream entry per message and per marker, in order, with ``XADD``, then
trims the stream once with ``XTRIM MAXLEN ~ maxlen`` (approximate: whole nodes only; the
stream may hold up to one chunk more than ``maxlen`` between chunks). A server-side
script rather than a pipeline of ``XADD`` s, because it makes the chunk atomic and
idempotent:

* **Retries.** The relay numbers its items; the script skips those at or below the
  relay's high-water mark (key ``<stream>:relay:<name>``, written by the same script,
  expiring after a day), so a chunk whose first attempt's outcome was unknown (the
  connection broke before the answer) is never published twice.
* **Redundant relays** (with a ``dedupe_key``): the script writes a message only when
  ``SET <stream>:dedupe:<key> 1 NX PX ttl`` succeeds. The check and the ``XADD`` run in
  one script, so two relays publishing the same event cannot both pass (scripts are
  atomic in Redis); no other Redis mechanism gives that without a round trip per event
  (``XADD`` with explicit ids would require one increasing id across every symbol of the
  feed). The key lives ``dedupe_ttl`` seconds (default 120): two relays must not lag
  each other by more than that. Memory: about 80 bytes per event kept for the ttl.
* **Speed.** The messages of one socket read are one run (``M t n payloads...``): no
  per-message argument besides the payload, one high-water check per run, one
  ``XADD`` per message with no trimming arguments. In Redis that costs about 1.75 µs of
  CPU per 170-byte message against 2.3 µs for a per-message script loop with
  ``MAXLEN ~`` on each ``XADD`` (and 1.8 µs for a plain pipeline of ``XADD`` s, which
  would give up atomicity and cost the client one reply per message). The command is
  packed by :func:`~kstlib.websocket.sinks._resp.pack`; the answer is one array.

The stream's entry fields are those of :mod:`~kstlib.websocket.sinks.records`. Payloads
larger than the server's ``proto-max-bulk-len`` (asked with ``CONFIG GET`` at connect;
Redis closes the connection on a larger one) or than ``max_payload`` are refused before
sending. Standalone Redis (the dedupe keys are not declared to the script: no Cluster).

Thread-safety: one publisher thread uses a sink; ``close()`` from any thread.
"""

from __future__ import annotations

import threading
from itertools import groupby
from typing import Any

from ._extras import require
from ._resp import pack
from .base import BusUnavailableError, Chunk, KeyFunction, PublishResult
from .records import marker_fields
from .urls import server_url

__all__ = ["PUBLISH_SCRIPT", "RedisSink", "redis_errors"]

#: KEYS: stream, relay high-water key. ARGV: maxlen ('' no trim), first seq, dedupe ttl
#: (ms), dedupe key prefix, then records: ``M t n p1 .. pn`` n messages received at t;
#: ``K t n p1 k1 .. pn kn`` n messages de-duplicated by their keys; ``X n f1 v1 ..`` a
#: marker with n field names and values. Returns {written, duplicates, refused, first
#: error, last entry id}. The hot loop (``M``) is one ``XADD`` per message and nothing
#: else: the high-water check is done once per run, the trim once per chunk.
PUBLISH_SCRIPT = """
local stream, seqkey = KEYS[1], KEYS[2]
local maxlen, ttl, prefix = ARGV[1], ARGV[3], ARGV[4]
local last = tonumber(redis.call('GET', seqkey) or '-1')
local seq = tonumber(ARGV[2]) - 1
local written, dupes, refused, err, lastid = 0, 0, 0, '', ''
local pcall = redis.pcall
local function booked(r)
  if type(r) == 'table' then
    refused = refused + 1
    if err == '' then err = r.err end
  else
    written = written + 1
    lastid = r
  end
end
local i, n = 5, #ARGV
while i <= n do
  local tag = ARGV[i]
  if tag == 'M' then
    local t, cnt = ARGV[i + 1], tonumber(ARGV[i + 2])
    local a, b = i + 3, i + 2 + cnt
    local skip = math.min(math.max(last - seq, 0), cnt)
    written = written + skip
    for j = a + skip, b do
      local r = pcall('XADD', stream, '*', 'k', 'm', 't', t, 'd', ARGV[j])
      if type(r) == 'table' then booked(r) else written = written + 1; lastid = r end
    end
    seq, i = seq + cnt, b + 1
  elseif tag == 'K' then
    local t, cnt = ARGV[i + 1], tonumber(ARGV[i + 2])
    for j = i + 3, i + 1 + 2 * cnt, 2 do
      seq = seq + 1
      if seq <= last then
        written = written + 1
      elseif redis.call('SET', prefix .. ARGV[j + 1], '1', 'NX', 'PX', ttl) then
        booked(pcall('XADD', stream, '*', 'k', 'm', 't', t, 'd', ARGV[j]))
      else
        dupes = dupes + 1
      end
    end
    i = i + 3 + 2 * cnt
  else
    seq = seq + 1
    local nf = tonumber(ARGV[i + 1])
    if seq > last then
      booked(pcall('XADD', stream, '*', unpack(ARGV, i + 2, i + 1 + nf)))
    else
      written = written + 1
    end
    i = i + 2 + nf
  end
end
if seq > last then redis.call('SET', seqkey, seq, 'EX', 86400) end
if maxlen ~= '' and lastid ~= '' then redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen) end
return {written, dupes, refused, err, lastid}
"""


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis is not reachable now" (loading included)."""
    redis = require("redis", "redis", "Redis Streams support")
    return (redis.ConnectionError, redis.TimeoutError, OSError)


def message_args(chunk: Chunk, args: list[bytes]) -> None:
    """Append the script's records for ``chunk`` to ``args``: one ``M`` (or ``K``) run
    per socket read, one ``X`` per marker."""
    key_of = chunk.key_of
    for at, items in chunk.parts:
        if not items:
            continue
        if type(items[0]) is not bytes:
            fields = marker_fields(items[0], chunk.source)
            args += (b"X", b"%d" % len(fields), *fields)
        elif key_of is None:
            args += (b"M", b"%.6f" % at, b"%d" % len(items))
            args += items
        else:
            keyed_args(items, b"%.6f" % at, key_of, args)


def keyed_args(items: list[bytes], t: bytes, key_of: KeyFunction, args: list[bytes]) -> None:
    """Runs of ``items`` received at ``t``: ``K`` for those with a key, ``M`` for those
    without (not de-duplicated), in order."""
    keyed = [(m, key_of(m)) for m in items]
    for has_key, group in groupby(keyed, lambda mk: mk[1] is not None):
        run = list(group)
        if has_key:
            args += (b"K", t, b"%d" % len(run))
            for m, k in run:
                args += (m, str(k).encode())
        else:
            args += (b"M", t, b"%d" % len(run))
            args += [m for m, _ in run]


class RedisSink:
    """Publishes chunks to the stream ``stream`` of the Redis at ``url``
    (``redis://[user:pass@]host:port/db``, ``rediss://`` for TLS).

    ``maxlen``: approximate length the stream is trimmed to (None: never trimmed);
    ``dedupe_ttl``: seconds a de-duplication key is kept; ``max_payload``: largest payload
    sent (bytes; the server's own limit applies too); ``timeout``: socket timeout (s).
    """

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        maxlen: int | None = 1_000_000,
        dedupe_ttl: float = 120.0,
        max_payload: int = 64 * 1024 * 1024,
        timeout: float = 10.0,
    ) -> None:
        self._redis = require("redis", "redis", "Redis Streams support")
        self.url = server_url(url, "redis")
        self.stream = stream.encode()
        self.display_url = f"{_redact(url)} stream={stream}"
        self.maxlen = b"" if maxlen is None else b"%d" % maxlen
        self.dedupe_ttl = b"%d" % int(dedupe_ttl * 1000)
        self._limit = max_payload
        self.max_payload = max_payload
        self.timeout = timeout
        self._errors = redis_errors()
        self._lock = threading.Lock()
        self._conn: Any = None
        self._sha = b""

    def connect(self) -> None:
        """(Re)connect, load the script, read the server's payload limit."""
        self.close()
        client = self._redis.Redis.from_url(
            self.url, protocol=2, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
        )
        conn: Any = None
        try:
            conn = client.connection_pool.get_connection()
            conn.send_command("SCRIPT", "LOAD", PUBLISH_SCRIPT)
            self._sha = conn.read_response()
            self.max_payload = min(self._limit, self._server_limit(conn))
        except self._errors as exc:
            if conn is not None:
                conn.disconnect()
            raise BusUnavailableError(f"{self.display_url}: {exc}") from exc
        with self._lock:
            self._conn = conn

    def _server_limit(self, conn: Any) -> int:
        try:
            conn.send_command("CONFIG", "GET", "proto-max-bulk-len")
            reply = conn.read_response()
            return int(reply[1]) - 1024 if reply else self._limit
        except self._redis.ResponseError:  # CONFIG disabled (managed Redis): keep ours
            return self._limit

    def publish(self, chunk: Chunk) -> PublishResult:
        """One ``EVALSHA`` for the chunk (see the module docstring)."""
        conn = self._conn
        if conn is None:
            raise BusUnavailableError("not connected")
        args = [b"EVALSHA", self._sha, b"2", self.stream, self._seq_key(chunk)]
        args += (self.maxlen, b"%d" % chunk.first_seq, self.dedupe_ttl, self._dedupe_prefix)
        message_args(chunk, args)
        try:
            conn.send_packed_command([pack(args)], check_health=False)
            reply = conn.read_response()
        except self._redis.exceptions.NoScriptError:  # restarted without its script cache
            self.connect()
            return self.publish(chunk)
        except self._errors as exc:
            self.close()
            raise BusUnavailableError(f"{self.display_url}: {exc}") from exc
        except self._redis.ResponseError as exc:  # the whole chunk refused (OOM, READONLY)
            return PublishResult(0, refused=chunk.count, error=str(exc))
        written, dupes, refused, error, last_id = reply
        return PublishResult(written, dupes, refused, error.decode(), last_id.decode())

    @property
    def _dedupe_prefix(self) -> bytes:
        return self.stream + b":dedupe:"

    def _seq_key(self, chunk: Chunk) -> bytes:
        return self.stream + b":relay:" + chunk.source.encode()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()


def _redact(url: str) -> str:
    """``url`` without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
