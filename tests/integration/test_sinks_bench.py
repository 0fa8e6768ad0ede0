"""Smoke run of the relay benchmark (``python -m benchmarks.relay --quick``): exchange blast
-> relay -> redis-server -> reader runs end to end for both runners. Asserts counts, never
timings (the figures live in the benchmark's output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from busservers import find_binary

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_the_relay_benchmark_runs_both_runners_end_to_end(tmp_path: Path) -> None:
    if find_binary("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.relay", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "relay.json").read_text())
    for runner, n in doc["sizes"].items():
        (run,) = doc["runs"][runner]
        assert run["messages"] == n and run["msg_per_s"] > 0, (runner, run)
    assert "kstlib-relay / obvious-xadd" in proc.stdout
