"""CPU per message as a count: user-space instructions per message under callgrind.

CPU time per message (the ``latency-*`` cases) moves by tens of percent between runs
on a shared machine: other tenants, frequency, caches. The instructions a client
executes per message do not: ``valgrind --tool=callgrind`` counts them, whatever else
the machine is doing. One measurement runs the same paced feed (one connection, the
``/timed`` events of :mod:`benchmarks.latency`) in two worker processes under
callgrind, ``short`` and ``long`` messages long, and divides the difference of their
totals by the difference of their lengths: start-up, imports and the handshake cancel
out; what remains is the cost of one more message at that rate, idle time between
messages included (an engine's timers, the event loop's turns).

Limits: user space only (the kernel's share, the same system calls for every client
here, is not counted); valgrind runs one thread at a time, so the threads' work is
counted, not their overlap. Needs ``valgrind`` on the PATH (else the measurement fails
with an error row).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

__all__ = ["measure"]

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """``instr_per_msg`` for ``spec["runner"]`` over ``spec["counts"]`` (short, long)."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind not found (apt-get install valgrind)")
    short, long = (int(n) for n in spec["counts"])
    totals = [_total(spec, n) for n in (short, long)]
    return {
        "instr_per_msg": (totals[1] - totals[0]) / (long - short),
        "instructions_short": totals[0],
        "instructions_long": totals[1],
    }


def _total(spec: dict[str, Any], count: int) -> int:
    """Instructions of one worker measuring ``count`` paced messages under callgrind."""
    rate = float(spec["rate"])
    child = {
        "runner": spec["runner"],
        "kind": "timed",
        "url": f"{spec['url']}?conns=1&rate={rate:g}&count={count}&burst=1",
        "conns": 1,
        "count": count,
        "warm": int(spec["warm"]),
        "burst": 1,
        "seconds": count / rate,
    }
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={os.path.join(tmp, 'out')}",
                sys.executable,
                "-m",
                "benchmarks.worker",
                json.dumps(child),
            ],
            capture_output=True,
            text=True,
            timeout=float(spec["child_timeout"]),
        )
    result = next(
        (json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")),
        {"error": f"worker exited with code {proc.returncode}"},
    )
    if "error" in result:
        raise RuntimeError(f"under callgrind: {result['error']}")
    found = _COLLECTED.findall(proc.stderr)
    if not found:
        raise RuntimeError("callgrind printed no instruction count")
    return int(found[-1])
