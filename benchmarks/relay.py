"""The relay scenario: exchange blast -> relay -> Redis Streams -> reader, end to end.

``python -m benchmarks.relay [--quick] [--repeat N] [--out DIR]`` starts its own
``redis-server`` (no persistence, a temporary directory, a free loopback port) and the
loopback benchmark server (:mod:`benchmarks.server`, ``/stream/trade/N``: N pre-encoded
170-byte trade events written as fast as the socket takes them once the client's first
frame arrives). Each measurement runs a relay process and a reader process:

``kstlib-relay``
    :class:`kstlib.websocket.sinks.Relay` (``decode="bytes"``, one ``EVALSHA`` per chunk)
    fed by a sync ``WebSocketManager``;
``kstlib-relay-bytes``
    the same relay, read with ``decode="bytes"`` (the payloads as published, not parsed):
    the bus path without the consumer's JSON parsing, about 1 µs per message of the
    reader's CPU;
``obvious-xadd``
    the loop written the obvious way: ``for msg in ws.stream(): r.xadd(stream,
    {"k": "m", "t": ..., "d": msg})`` with redis-py, one ``XADD`` round trip per message.

The reader is otherwise the same for all: :class:`kstlib.websocket.sinks.RedisReader`
(consumer group, ``COUNT`` 4096, ``XACK`` of what it handed out, each payload parsed to a
dict: ``decode="json"``, what a consumer gets by default). Reported: end-to-end messages
per second (from the relay's first socket read to the reader's last item) and the
latency the bus adds (reader's ``time.time()`` when it gets the item minus the relay's
receive time), p50 and p99, over every message. Under a blast the latency is mostly
queueing: it says how far behind the feed the reader runs, not the latency of one
message on a quiet bus.

Where the time goes (profiled): the relay publishes at about 290,000 msg/s (its process
about 0.7 µs of CPU per message, Redis about 1.75 µs per ``XADD`` in the script); the
reader costs Redis about 1.9 µs per message for ``XREADGROUP`` + ``XACK`` and itself
about 2.0 µs (parsing JSON included), and sends its next ``XACK`` + ``XREADGROUP`` before
decoding the batch in hand, so the two overlap. Redis's one thread, about 3.6 µs per
message written and read, is the end-to-end limit.

Every number goes to ``relay.json`` in ``--out`` (default: a temporary directory) and a
table to stdout, with the issue's targets (at least 200,000 events/s, at least 5x the
obvious loop). ``python -m benchmarks --scenarios relay`` runs the same measurement
(:func:`run_scenario`) and puts it in ``results.json`` and ``RESULTS.md``.

Needs ``redis-server`` (``$KSTLIB_BENCH_REDIS_SERVER``, else PATH, else
``/usr/bin/redis-server``) and ``kstlib-websocket[redis]``; without them the scenario is
skipped with the reason printed, never an error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STREAM = "bench"
#: Entries per XREADGROUP of the reader.
READ_COUNT = 4096


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    return env


def _start_feed() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server", "--kinds", "trade"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        raise RuntimeError(f"benchmark server failed: {line!r}")
    return proc, int(line.split()[1])


# ----------------------------------------------------------------------------- roles


def role_relay(ws_url: str, redis_url: str, n: int, obvious: bool) -> None:
    """Publish the first ``n`` messages of ``ws_url`` to the stream, then exit."""
    from kstlib.websocket import WebSocketManager

    options: dict[str, Any] = {"subscriptions": ["go"], "compression": None}
    if obvious:
        import redis

        r = redis.Redis.from_url(redis_url)
        with WebSocketManager(ws_url, decode="bytes", **options) as ws:
            for i, msg in enumerate(ws.stream(), 1):
                r.xadd(STREAM, {"k": "m", "t": f"{time.time():.6f}", "d": msg})
                if i == n:
                    break
        return
    from kstlib.websocket.sinks import Relay, open_sink

    relay = Relay(open_sink(f"{redis_url}?stream={STREAM}&maxlen=10000000")).start()
    relay.connect(ws_url, **options)
    while relay.stats.received < n:
        time.sleep(0.01)
    relay.close()


def role_reader(redis_url: str, n: int, decode: str = "json") -> None:
    """Read ``n`` messages; print a JSON line of the timings.

    The messages of one socket read share their receive time, so the lags are counted
    per distinct time (one ``float`` per socket read, not per message); the percentiles
    are over every message all the same."""
    from kstlib.websocket.sinks import RedisReader

    lags: Counter[float] = Counter()
    first_t = last_at = 0.0
    got = 0
    reading = {"count": READ_COUNT, "idle_timeout": 120, "decode": decode}
    with RedisReader(redis_url, STREAM, **reading) as reader:
        for batch in reader._batches():  # one time.time() per batch read
            now = time.time()
            times = Counter(batch.times)
            times.pop(None, None)  # markers
            if times and not first_t:
                first_t = min(map(float, times))
            for t, k in times.items():
                lags[now - float(t)] += k
            got += times.total()
            reader.cursor.handed_out(batch, len(batch.items))
            last_at = now
            if got >= n:
                break
    print(json.dumps({
        "messages": got, "seconds": last_at - first_t,
        "msg_per_s": got / (last_at - first_t) if last_at > first_t else 0.0,
        "p50_ms": percentile(lags, 0.5), "p99_ms": percentile(lags, 0.99),
    }))  # fmt: skip


def percentile(counts: Counter[float], q: float) -> float | None:
    """The ``q`` quantile (ms) of values counted with their multiplicity."""
    total = counts.total()
    rank = int(total * q)
    for value in sorted(counts):
        rank -= counts[value]
        if rank < 0:
            return value * 1000
    return None


# ----------------------------------------------------------------------------- the run

#: Its name for ``python -m benchmarks --scenarios``.
SCENARIO = "relay"
RUNNERS = ("kstlib-relay", "kstlib-relay-bytes", "obvious-xadd")
#: Events/s end to end through Redis Streams, and the ratio to the obvious loop (issue 10).
TARGET_RATE = 200_000
TARGET_RATIO = 5.0


def sizes_for(quick: bool) -> dict[str, int]:
    """Messages per measurement of each runner (the obvious loop is ~15x slower)."""
    ours = 100_000 if quick else 1_000_000
    return {"kstlib-relay": ours, "kstlib-relay-bytes": ours,
            "obvious-xadd": 20_000 if quick else 200_000}  # fmt: skip


def redis_binary() -> str | None:
    """The ``redis-server`` to start: ``$KSTLIB_BENCH_REDIS_SERVER`` if set, else the one
    on PATH, else Debian's ``/usr/bin/redis-server``; None when there is none."""
    chosen = os.environ.get("KSTLIB_BENCH_REDIS_SERVER")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


def unavailable() -> str | None:
    """Why the scenario cannot run on this machine, or None."""
    if redis_binary() is None:
        where = os.environ.get("KSTLIB_BENCH_REDIS_SERVER") or "PATH or /usr/bin"
        return f"redis-server not found ({where}); apt-get install redis-server"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis client library is missing: pip install 'kstlib-websocket[redis]'"
    return None


def run_scenario(quick: bool, repeat: int, runners: set[str] | None = None) -> dict[str, Any]:
    """The scenario for ``python -m benchmarks``: the results of :func:`run_all`, or
    ``{"skipped": reason}`` (nothing to run it with), or ``{"error": text}``; never
    raises (one scenario must not end the whole benchmark run)."""
    reason = unavailable()
    if reason is not None:
        return {"skipped": reason}
    sizes = {k: v for k, v in sizes_for(quick).items() if runners is None or k in runners}
    if not sizes:
        return {"skipped": f"none of its runners ({', '.join(RUNNERS)}) selected"}
    try:
        return run_all(sizes, 1 if quick else repeat)
    except Exception as exc:  # a server that does not start, a port taken, ...
        return {"error": f"{type(exc).__name__}: {exc}"}


def _start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    import socket

    exe = redis_binary() or "redis-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def measure(runner: str, n: int, feed_port: int, redis_port: int) -> dict[str, Any]:
    """One run of ``runner`` with its reader; ``{"error": ...}`` when either failed."""
    import redis

    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    redis.Redis(port=redis_port).flushall()
    ws_url = f"ws://127.0.0.1:{feed_port}/stream/trade/{n}"
    me = [sys.executable, "-m", "benchmarks.relay", "--role"]
    decode = "bytes" if runner == "kstlib-relay-bytes" else "json"
    reader = subprocess.Popen(
        [*me, "reader", redis_url, str(n), decode],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    role = "obvious-xadd" if runner == "obvious-xadd" else "kstlib-relay"
    try:
        relay = subprocess.run(
            [*me, role, ws_url, redis_url, str(n)], cwd=REPO, env=_env(), timeout=900,
            capture_output=True, text=True,
        )  # fmt: skip
        out, _ = reader.communicate(timeout=300)
    except subprocess.TimeoutExpired as exc:
        return {"error": f"timed out after {exc.timeout:.0f} s"}
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    if relay.returncode != 0:
        return {"error": (relay.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    lines = out.strip().splitlines()
    if reader.returncode != 0 or not lines:
        return {"error": f"reader exited with code {reader.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        role, *rest = args.role
        if role == "reader":
            role_reader(rest[0], int(rest[1]), rest[2])
        else:
            role_relay(rest[0], rest[1], int(rest[2]), obvious=role == "obvious-xadd")
        return 0
    reason = unavailable()
    if reason is not None:
        print(f"relay benchmark skipped: {reason}")
        return 0
    results = run_all(sizes_for(args.quick), 1 if args.quick else args.repeat)
    out = args.out or Path(tempfile.gettempdir()) / "kstlib-benchmarks-relay"
    out.mkdir(parents=True, exist_ok=True)
    (out / "relay.json").write_text(json.dumps(results, indent=1))
    print("\n".join(table(results)))
    return 0


def run_all(sizes: dict[str, int], repeat: int) -> dict[str, Any]:
    """Start redis-server and the feed, run each runner ``repeat`` times (alternating),
    stop both. Returns the sizes, every run, the load average at the start and end."""
    tmp = Path(tempfile.mkdtemp(prefix="kstlib-relay-bench-"))
    load_start = os.getloadavg()[0]
    redis_proc, redis_port = _start_redis(tmp)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sizes}
    try:
        feed, feed_port = _start_feed()
        try:
            for rep in range(repeat):
                for name, n in sizes.items():
                    result = measure(name, n, feed_port, redis_port)
                    runs[name].append(result)
                    sys.stderr.write(f"relay rep {rep + 1}/{repeat} {name}: {result}\n")
        finally:
            feed.terminate()
            feed.wait(10)
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"sizes": sizes, "runs": runs, "load_start": load_start, "load_end": os.getloadavg()[0]}


def medians(results: dict[str, Any]) -> dict[str, float]:
    """Median msg/s of each runner over its successful runs."""
    out = {}
    for name, runs in results["runs"].items():
        rates = [r["msg_per_s"] for r in runs if "msg_per_s" in r]
        if rates:
            out[name] = statistics.median(rates)
    return out


def table(results: dict[str, Any]) -> list[str]:
    """The markdown table of :func:`run_all`'s results, then the issue's targets."""
    lines = ["| runner | messages | msg/s (median, min-max) | p50 ms | p99 ms | runs |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, runs in results["runs"].items():
        good = [r for r in runs if "msg_per_s" in r]
        if not good:
            err = str(runs[0].get("error") if runs else "not run").replace("|", "/")
            lines.append(f"| {name} | {results['sizes'][name]:,} | error: {err} | | | 0 |")
            continue
        rates = [r["msg_per_s"] for r in good]
        p50 = statistics.median(r["p50_ms"] for r in good)
        p99 = statistics.median(r["p99_ms"] for r in good)
        lines.append(
            f"| {name} | {results['sizes'][name]:,} | {statistics.median(rates):,.0f} "
            f"({min(rates):,.0f}-{max(rates):,.0f}) | {p50:,.1f} | {p99:,.1f} | {len(good)} |"
        )
    return [*lines, "", *targets(medians(results))]


def targets(rates: dict[str, float]) -> list[str]:
    """The issue's two targets as lines (only those the runs can tell): the rate for each
    of our runners, the ratio with the same reader as the obvious loop's."""
    ours, obvious = rates.get("kstlib-relay"), rates.get("obvious-xadd")
    lines = []
    for name in ("kstlib-relay", "kstlib-relay-bytes"):
        if name in rates:
            met = "met" if rates[name] >= TARGET_RATE else "not met"
            lines.append(f"- {name} >= {TARGET_RATE:,} events/s: {rates[name]:,.0f} ({met})")
    if ours is not None and obvious:
        ratio = ours / obvious
        met = "met" if ratio >= TARGET_RATIO else "not met"
        lines.append(f"- kstlib-relay / obvious-xadd >= {TARGET_RATIO:.0f}x: {ratio:.1f}x ({met})")
    return lines


if __name__ == "__main__":
    sys.exit(main())
