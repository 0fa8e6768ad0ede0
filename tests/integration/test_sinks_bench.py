"""Smoke run of the relay benchmark through ``python -m benchmarks --quick --scenarios
relay``: exchange blast -> relay -> redis-server -> reader runs end to end for both
runners and lands in results.json and RESULTS.md. Asserts counts, never timings (the
figures live in the benchmark's output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from busservers import find_binary

RELAY_ONLY = (sys.executable, "-m", "benchmarks", "--quick", "--scenarios", "relay")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_the_relay_scenario_runs_both_runners_end_to_end_into_the_report(tmp_path: Path) -> None:
    if find_binary("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    proc = subprocess.run(
        [*RELAY_ONLY, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["cases"] == []  # the relay scenario alone
    relay = doc["relay"]
    assert set(relay["sizes"]) == {"kstlib-relay", "kstlib-relay-bytes", "obvious-xadd"}
    for runner, n in relay["sizes"].items():
        (run,) = relay["runs"][runner]
        assert run["messages"] == n and run["msg_per_s"] > 0, (runner, run)
        assert run["p50_ms"] is not None and run["p99_ms"] >= run["p50_ms"] >= 0
    section = (tmp_path / "RESULTS.md").read_text().split("## Relay", 1)[1].split("\n## ", 1)[0]
    for runner in relay["sizes"]:
        row = next(line for line in section.splitlines() if line.startswith(f"| {runner} |"))
        assert "error" not in row, row
    assert "kstlib-relay / obvious-xadd" in section
