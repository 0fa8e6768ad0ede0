"""The relay scenario: exchange blast -> relay -> Redis Streams -> reader, end to end.

``python -m benchmarks.relay [--quick] [--repeat N] [--out DIR]`` starts its own
``redis-server`` (no persistence, a temporary directory, a free loopback port) and the
loopback benchmark server (:mod:`benchmarks.server`, ``/stream/trade/N``: N pre-encoded
170-byte trade events written as fast as the socket takes them once the client's first
frame arrives). Each measurement runs a relay process and a reader process:

``kstlib-relay``
    :class:`kstlib.websocket.sinks.Relay` (``decode="bytes"``, one ``EVALSHA`` per chunk)
    fed by a sync ``WebSocketManager``;
``obvious-xadd``
    the loop written the obvious way: ``for msg in ws.stream(): r.xadd(stream,
    {"k": "m", "t": ..., "d": msg})`` with redis-py, one ``XADD`` round trip per message.

The reader is the same for both: :class:`kstlib.websocket.sinks.RedisReader` (consumer
group, ``XACK`` of what it handed out). Reported: end-to-end messages per second (from
the relay's first socket read to the reader's last item) and the latency the bus adds
(reader's ``time.time()`` when it gets the item minus the relay's receive time), p50 and
p99, over every message. Under a blast the latency is mostly queueing: it says how far
behind the feed the reader runs, not the latency of one message on a quiet bus.

Every number goes to ``relay.json`` in ``--out`` (default: a temporary directory) and a
table to stdout. Needs ``redis-server`` and ``kstlib-websocket[redis]``.
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STREAM = "bench"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    return env


def _start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    import socket

    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
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


def role_reader(redis_url: str, n: int) -> None:
    """Read ``n`` messages; print a JSON line of the timings."""
    from kstlib.websocket.sinks import RedisReader

    lags: list[float] = []
    first_t = last_at = 0.0
    got = 0
    with RedisReader(redis_url, STREAM, count=4096, idle_timeout=120) as reader:
        for batch in reader._batches():  # one time.time() per batch read
            now = time.time()
            times = [float(t) for t in batch.times if t is not None]
            if times and not first_t:
                first_t = times[0]
            lags.extend(now - t for t in times)
            got += len(times)
            reader.cursor.handed_out(batch, len(batch.items))
            last_at = now
            if got >= n:
                break
    lags.sort()
    print(json.dumps({
        "messages": got, "seconds": last_at - first_t,
        "msg_per_s": got / (last_at - first_t) if last_at > first_t else 0.0,
        "p50_ms": lags[len(lags) // 2] * 1000 if lags else None,
        "p99_ms": lags[int(len(lags) * 0.99)] * 1000 if lags else None,
    }))  # fmt: skip


# ----------------------------------------------------------------------------- the run


def measure(runner: str, n: int, feed_port: int, redis_port: int) -> dict[str, Any]:
    import redis

    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    redis.Redis(port=redis_port).flushall()
    ws_url = f"ws://127.0.0.1:{feed_port}/stream/trade/{n}"
    me = [sys.executable, "-m", "benchmarks.relay", "--role"]
    reader = subprocess.Popen(
        [*me, "reader", redis_url, str(n)], cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True
    )
    relay = subprocess.run(
        [*me, runner, ws_url, redis_url, str(n)], cwd=REPO, env=_env(), timeout=900,
        capture_output=True, text=True,
    )  # fmt: skip
    out, _ = reader.communicate(timeout=300)
    if relay.returncode != 0:
        return {"error": relay.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
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
            role_reader(rest[0], int(rest[1]))
        else:
            role_relay(rest[0], rest[1], int(rest[2]), obvious=role == "obvious-xadd")
        return 0
    sizes = {"kstlib-relay": 100_000 if args.quick else 1_000_000,
             "obvious-xadd": 20_000 if args.quick else 200_000}  # fmt: skip
    repeat = 1 if args.quick else args.repeat
    results = run_all(sizes, repeat)
    out = args.out or Path(tempfile.gettempdir()) / "kstlib-benchmarks-relay"
    out.mkdir(parents=True, exist_ok=True)
    (out / "relay.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


def run_all(sizes: dict[str, int], repeat: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kstlib-relay-bench-"))
    redis_proc, redis_port = _start_redis(tmp)
    feed, feed_port = _start_feed()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sizes}
    try:
        for rep in range(repeat):
            for name, n in sizes.items():
                result = measure(name, n, feed_port, redis_port)
                runs[name].append(result)
                sys.stderr.write(f"rep {rep + 1}/{repeat} {name}: {result}\n")
    finally:
        for proc in (feed, redis_proc):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"sizes": sizes, "runs": runs, "load_end": os.getloadavg()[0]}


def table(results: dict[str, Any]) -> str:
    lines = ["| runner | messages | msg/s (median, min-max) | p50 ms | p99 ms |",
             "|---|---|---|---|---|"]  # fmt: skip
    medians = {}
    for name, runs in results["runs"].items():
        good = [r for r in runs if "msg_per_s" in r]
        if not good:
            lines.append(f"| {name} | error | {runs[0].get('error')} | | |")
            continue
        rates = [r["msg_per_s"] for r in good]
        medians[name] = statistics.median(rates)
        p50 = statistics.median(r["p50_ms"] for r in good)
        p99 = statistics.median(r["p99_ms"] for r in good)
        lines.append(
            f"| {name} | {results['sizes'][name]:,} | {medians[name]:,.0f} "
            f"({min(rates):,.0f}-{max(rates):,.0f}) | {p50:,.1f} | {p99:,.1f} |"
        )
    if len(medians) == 2:
        ratio = medians["kstlib-relay"] / medians["obvious-xadd"]
        lines.append(f"\nkstlib-relay / obvious-xadd: {ratio:.1f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
