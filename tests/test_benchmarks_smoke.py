"""Smoke run of the benchmark suite: it runs end to end and reports peers and floors.

Asserts only that rows exist with numbers, never timings (speed lives in benchmarks/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.__main__ import split_relay

RELAY_ONLY = (sys.executable, "-m", "benchmarks", "--quick", "--scenarios", "relay")
REPO = Path(__file__).resolve().parents[1]
PEERS = ("websocket-client", "websockets-sync", "websockets-asyncio", "aiohttp", "picows")
OURS = ("kstlib-sync", "kstlib-asyncio")
FLOORS = ("orjson-floor", "transport-floor")


@pytest.mark.timeout(300)
def test_quick_json_run_reports_us_peers_and_floors(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--scenarios",
            "json",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    doc = json.loads((tmp_path / "results.json").read_text())
    (case,) = doc["cases"]
    assert case["name"] == "json"
    for runner in OURS + PEERS + FLOORS:
        entry = case["runners"][runner]
        assert entry["errors"] == [], (runner, entry["errors"])
        (run,) = entry["runs"]
        assert run["messages"] == case["parameters"]["n"]
        assert run["msg_per_s"] > 0

    table = (tmp_path / "RESULTS.md").read_text()
    for runner in OURS + PEERS + FLOORS:
        row = next(
            line
            for line in table.splitlines()
            if line.replace("**", "").startswith(f"| {runner} |")
        )
        assert "error" not in row
    assert (tmp_path / "results.png").stat().st_size > 0


TRADING_CASES = {
    # case: the keys every run must report (latency in µs, CPU in ms per 1,000 messages)
    "latency-1": ("p50_us", "p99_us", "p999_us", "cpu_ms_per_1k", "consumer_cpu_ms_per_1k"),
    "latency-50": ("p50_us", "p99_us", "p999_us", "cpu_ms_per_1k"),
    "burst": ("last_p50_us", "last_p99_us", "first_p50_us", "cpu_ms_per_1k"),
    "rtt": ("req_per_s", "p50_us", "p99_us"),
}


@pytest.mark.timeout(300)
def test_quick_trading_run_reports_every_client_and_the_floor(tmp_path: Path) -> None:
    """Issue 12's scenarios: paced latency (1 and 50 connections), bursts, round trip."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--scenarios",
            ",".join(TRADING_CASES),
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    doc = json.loads((tmp_path / "results.json").read_text())
    cases = {case["name"]: case for case in doc["cases"]}
    assert set(cases) == set(TRADING_CASES)
    runners = (*OURS, *PEERS, "transport-floor")
    for name, keys in TRADING_CASES.items():
        case = cases[name]
        for runner in runners:
            entry = case["runners"][runner]
            assert entry["errors"] == [], (name, runner, entry["errors"])
            (run,) = entry["runs"]
            for key in keys:
                assert run[key] > 0, (name, runner, key, run[key])
        if name != "rtt":
            params = case["parameters"]
            for runner in runners:
                (run,) = case["runners"][runner]["runs"]
                # The measured messages: those stamped after the window opened (every
                # connection got all of its messages, or summarize_run raised). Those in
                # flight when connection 0 opened it (read in the same batch) are not
                # measured; the other connections' late warm-up ones are.
                expected = (params["count"] - params["warm"]) * params["conns"]
                assert run["messages"] >= 0.9 * expected, (name, runner, run["messages"])

    table = (tmp_path / "RESULTS.md").read_text()
    section = table.split("## Trading rates", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| Scenario |"))
    for runner in runners:
        assert f" {runner} |" in header
    for line in section.splitlines():
        if line.startswith(("| 1 connection", "| 50 connections", "| bursts", "| round trip")):
            assert "error" not in line and "—" not in line, line
    for name in TRADING_CASES:
        title = next(c["title"] for c in doc["cases"] if c["name"] == name)
        rows = table.split(f"### {title}", 1)[1].split("\n### ", 1)[0].splitlines()
        for runner in runners:
            row = next(r for r in rows if r.replace("**", "").startswith(f"| {runner} |"))
            assert "error" not in row, row
    assert (tmp_path / "results.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("wanted", "relay", "others"),
    [
        (None, True, None),  # everything, the relay included
        ("relay", True, ""),  # the relay alone
        ("json,relay", True, "json"),
        ("json, rtt", False, "json,rtt"),
    ],
)
def test_scenarios_option_splits_off_the_relay_scenario(
    wanted: str | None, relay: bool, others: str | None
) -> None:
    assert split_relay(wanted) == (relay, others)


@pytest.mark.timeout(120)
def test_without_redis_server_the_relay_scenario_is_skipped_with_the_reason(
    tmp_path: Path,
) -> None:
    """The run goes on and says why; the report shows the skip (end to end with a real
    redis-server: tests/integration/test_sinks_bench.py)."""
    env = {**os.environ, "KSTLIB_BENCH_REDIS_SERVER": str(tmp_path / "no-redis-server")}
    proc = subprocess.run(
        [*RELAY_ONLY, "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "relay scenario skipped: redis-server not found" in proc.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["relay"]["skipped"].startswith("redis-server not found")
    assert "Skipped: redis-server not found" in (tmp_path / "RESULTS.md").read_text()
