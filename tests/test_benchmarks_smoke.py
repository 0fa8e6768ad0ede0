"""Smoke run of the benchmark suite: it runs end to end and reports peers and floors.

Asserts only that rows exist with numbers, never timings (speed lives in benchmarks/).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
