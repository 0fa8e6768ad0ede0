"""Short versions of ``scripts/soak.py``: a high event rate with handover rotations and
faults, audited id by id (nothing lost outside gap markers, nothing duplicated or
reordered). The long run is ``python scripts/soak.py --duration 600``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import engine_threads

# each run lasts its fixed duration (9-13 s): every test here is slow
pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kstlib_soak_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _check_clean(report: dict[str, Any]) -> None:
    assert report["consumer_error"] is None
    assert report["events_received"] > 0
    assert report["lost_outside_gaps"] == 0, report["audit"]["skip_runs_outside_gaps"]
    assert report["duplicates"] == 0, report["audit"]["duplicate_samples"]
    assert report["out_of_order"] == 0, report["audit"]["out_of_order_samples"]
    assert report["audit"]["consistent"]
    assert report["ok"]


def test_short_soak_loses_nothing_outside_gaps_and_repeats_nothing(soak: ModuleType) -> None:
    opts = soak.SoakOptions(
        duration=13.0,
        rate=1000.0,
        rotate_every=1.0,
        fault_every=1.5,
        refuse_for=1.0,
        settle=2.0,
        sample_every=0.5,
        faults=("close_all", "reset_all", "refuse", "kill"),
    )
    report = soak.run_soak(opts, log=lambda _line: None)
    _check_clean(report)
    stats = report["stats"]
    assert all(n >= 1 for n in report["faults"].values()), report["faults"]
    assert stats["handovers"] >= 3  # rotations happened, without gaps
    assert stats["duplicates_dropped"] > 0  # and their overlaps really overlapped
    assert stats["gaps"] >= 4 and report["audit"]["disconnected_markers"] == stats["gaps"]
    assert stats["reconnect_attempts"] > stats["gaps"]  # refused handshakes were retried
    assert stats["messages_dropped"] == 0  # queue_overflow="block"
    assert engine_threads() == []
    assert report["threads"]["after"] == report["threads"]["before"]
    assert report["fds"]["after"] <= report["fds"]["before"]


def test_short_soak_with_a_half_open_peer_during_rotations(soak: ModuleType) -> None:
    """The simulator discards the events of a silent connection; when the stall also hits
    the replacement during a handover overlap and lifts before its ping_timeout, the hole
    on that live connection is seen only through the sequence numbers (the soak passes
    ``sequence=`` on the trade ids): a ``Gap`` marker brackets it."""
    # ping_timeout 2 s: the silence is always noticed after the 1 s rotation has begun
    opts = soak.SoakOptions(
        duration=9.0,
        rate=1000.0,
        rotate_every=1.0,
        fault_every=2.0,
        silent_for=2.5,
        ping_interval=0.5,
        ping_timeout=2.0,
        settle=1.0,
        faults=("silent",),
    )
    report = soak.run_soak(opts, log=lambda _line: None)
    _check_clean(report)
