"""One measurement in a fresh process: ``python -m benchmarks.worker '<json spec>'``.

The spec names a runner (:data:`benchmarks.clients.RUNNERS`), a measurement kind and its
parameters. The worker prints exactly one line starting with ``RESULT `` followed by a
JSON object: the numbers, or ``{"error": "..."}`` when the runner failed (an import error
included: a client that is not installed yet yields an error row, never a crash of the
whole run).

Kinds: ``stream`` (throughput: messages/s and payload MB/s), ``memory`` (RSS sampled
along a long stream), ``rtt`` (round trips: requests/s and latency percentiles),
``many`` (CPU per million messages over many paced connections, CPU while idle, RSS) and
``timed`` (one-way latency of paced, time-stamped events, CPU per 1,000 messages:
:mod:`benchmarks.latency`) and ``instructions`` (user-space instructions per message
of that paced feed, counted under callgrind: :mod:`benchmarks.instructions`).
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import sys
import traceback
from typing import Any

from benchmarks.clients import RUNNERS, Marks


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[k])


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    runner = RUNNERS[spec["runner"]]()
    kind = spec["kind"]
    url = spec["url"]
    out: dict[str, Any] = {}
    if kind in ("stream", "memory"):
        n = int(spec["n"])
        if kind == "memory":
            step = int(spec["step"])
            marks = Marks(list(range(step, n + 1, step)), sample_rss=True)
        else:
            marks = Marks([n])
        t0, info = runner.stream(url, n, spec["deliver"], marks)
        elapsed = marks.samples[-1][1] - t0
        out.update(
            elapsed=elapsed,
            messages=n,
            msg_per_s=n / elapsed,
            mb_per_s=n * int(spec["message_size"]) / elapsed / 1e6,
        )
        if kind == "memory":
            series = [[c, rss] for c, _t, rss in marks.samples]
            out["rss_series_kb"] = series
            out["rss_start_mb"] = series[0][1] / 1024
            out["rss_end_mb"] = series[-1][1] / 1024
            out["rss_growth_mb"] = (series[-1][1] - series[0][1]) / 1024
    elif kind == "rtt":
        n = int(spec["n"])
        payload = bytes(i % 251 for i in range(int(spec["size"])))
        lat, info = runner.rtt(url, n, int(spec["warmup"]), payload)
        lat.sort()
        total = sum(lat) / 1e9
        out.update(
            requests=n,
            elapsed=total,
            req_per_s=n / total,
            p50_us=percentile(lat, 50) / 1000,
            p99_us=percentile(lat, 99) / 1000,
            max_us=lat[-1] / 1000,
        )
    elif kind == "timed":
        from benchmarks.latency import TIMED, summarize_run

        # The connections of this measurement form one group of the server's pacer.
        group = f"{os.getpid()}-{secrets.token_hex(4)}"
        rec = TIMED[spec["runner"]](
            f"{url}&group={group}",
            int(spec["conns"]),
            int(spec["count"]),
            int(spec["warm"]),
            float(spec["seconds"]),
        )
        info = summarize_run(rec, int(spec["burst"]))
    elif kind == "instructions":
        from benchmarks import instructions

        info = instructions.measure(spec)
    elif kind == "many":
        conns, per_conn = int(spec["conns"]), int(spec["per_conn"])
        info = runner.many(url, conns, per_conn, float(spec["idle"]))
        total = conns * per_conn
        out.update(info)
        out.update(
            messages=total,
            cpu_s_per_million=info["stream_cpu"] / total * 1e6,
            idle_cpu_percent=100 * info["idle_cpu"] / info["idle_seconds"],
            rss_mb=info["rss_kb"] / 1024,
        )
        info = {}
    else:
        raise ValueError(f"unknown kind {kind!r}")
    out.update(info)
    out["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["loadavg_1min"] = os.getloadavg()[0]
    return out


def _raise_fd_limit() -> None:
    """Up to the hard limit: 500 connections take several thousand descriptors with some
    clients (ours: the socket, and wake-up pairs per manager), past a soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    _raise_fd_limit()
    try:
        result = measure(spec)
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        message = f"{type(exc).__name__}: {exc}".strip().splitlines()
        result = {"error": message[0][:300] if message else type(exc).__name__}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
