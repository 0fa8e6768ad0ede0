"""``python -m benchmarks``: run every scenario for us, the peers and the floors, in one run.

Starts the loopback server (:mod:`benchmarks.server`), then runs each measurement in a
fresh worker process (:mod:`benchmarks.worker`), rotating the order of the clients from
one repetition to the next, with a one-line progress display on stderr. Writes
``RESULTS.md``, ``results.json`` and ``results.png`` to ``--out`` (default: this
directory; for ``--quick`` or ``--runners``, a temporary directory so that a smoke run,
or a run without every peer, never replaces the committed results).

A client that fails (not installed yet, a bug, a timeout) yields "error: ..." rows; the
others still run. An import error skips that client for the rest of the run.

The ``relay`` scenario (:mod:`benchmarks.relay`: exchange -> relay -> Redis Streams ->
reader, against the obvious per-message ``XADD`` loop) runs after the others with its own
``redis-server`` and feed; it is skipped, with the reason printed, when ``redis-server``
or the redis client library is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from benchmarks import relay, report
from benchmarks.scenarios import SCENARIOS, Case, build_cases, select

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PACKAGES = (
    "kstlib-websocket",
    "orjson",
    "websocket-client",
    "websockets",
    "aiohttp",
    "picows",
    "aiofastnet",
)


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    src = REPO / "src"
    paths = [str(src)] if (src / "kstlib").is_dir() else []
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


class Progress:
    """A single status line on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.start = time.monotonic()
        self.stream = stream
        self.tty = stream.isatty()
        self.width = 0

    def show(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.start)
        line = f"[{self.done:>3}/{self.total}] {elapsed // 60}:{elapsed % 60:02d} {text}"
        if self.tty:
            pad = max(0, self.width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class ServerProcess:
    """The loopback server, restarted if it ever dies."""

    def __init__(self, kinds: list[str]) -> None:
        self.kinds = kinds
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def ensure(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            return self.port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.server", "--kinds", ",".join(self.kinds)],
            cwd=REPO,
            env=worker_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"benchmark server failed to start: {line!r}")
        self.port = int(line.split()[1])
        return self.port

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh process; always returns a dict (maybe ``error``)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
            cwd=REPO,
            env=worker_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"worker exited with code {proc.returncode}: {tail[:200]}"}


def machine_info(command: str) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages: dict[str, str] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed" if name != "kstlib-websocket" else "source tree"
    probe = subprocess.run(
        [sys.executable, "-c", "from kstlib.websocket import codec; print(codec.IMPLEMENTATION)"],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    codec = (
        probe.stdout.strip()
        or "unavailable (" + ((probe.stderr.strip().splitlines() or ["?"])[-1][:120]) + ")"
    )
    git = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return {
        "command": command,
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "kstlib_codec": codec,
        "git": git,
        "load_start": os.getloadavg()[0],
    }


def plan(cases: list[Case]) -> list[tuple[Case, int, str]]:
    """Every measurement in order; the client order rotates with the repetition."""
    steps: list[tuple[Case, int, str]] = []
    for case in cases:
        for rep in range(case.repeat):
            k = rep % len(case.runners)
            for runner in case.runners[k:] + case.runners[:k]:
                steps.append((case, rep, runner))
    return steps


def split_relay(wanted: str | None) -> tuple[bool, str | None]:
    """Whether ``--scenarios`` asks for the relay scenario, and the rest of it for
    :func:`~benchmarks.scenarios.select` (None: everything; ``""``: nothing else)."""
    if not wanted:
        return True, None
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    rest = [n for n in names if n != relay.SCENARIO]
    return len(rest) < len(names), ",".join(rest)


def run_relay(args: argparse.Namespace) -> dict[str, Any]:
    """The relay scenario (see the module docstring); prints why when it is skipped."""
    runners = {r.strip() for r in args.runners.split(",")} if args.runners else None
    sys.stderr.write("relay scenario (redis-server, relay and reader processes) ...\n")
    result = relay.run_scenario(args.quick, min(args.repeat, 3), runners)
    if "skipped" in result:
        sys.stderr.write(f"relay scenario skipped: {result['skipped']}\n")
    elif "error" in result:
        sys.stderr.write(f"relay scenario failed: {result['error']}\n")
    return result


def summary_text(case: Case, result: dict[str, Any]) -> str:
    if "error" in result:
        return "error"
    return f"{report.fmt_value(float(result[case.metric]), case.unit)} {case.unit}"


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and one repetition (smoke run)"
    )
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated subset of {','.join((*SCENARIOS, relay.SCENARIO))} or case names "
        "(json, raw-str, raw-bytes, large-1k, large-64k, large-1m, latency-1, latency-50, ...)",
    )
    parser.add_argument("--runners", help="comma-separated subset of the clients and floors")
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="repetitions per measurement (default 5; rtt, many, latency, burst and relay "
        "at most 3, instructions 2, memory 1)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: benchmarks/; with --quick or --runners, a "
        "temporary directory)",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: re-render RESULTS.md and results.png from a "
        "results.json (into --out, default: beside it)",
    )
    args = parser.parse_args(args_list)
    if args.from_json is not None:
        return rerender(args.from_json, args.out or args.from_json.parent)

    out: Path = args.out or (
        Path(tempfile.gettempdir()) / "kstlib-benchmarks-partial"
        if args.quick or args.runners
        else HERE
    )
    out.mkdir(parents=True, exist_ok=True)
    want_relay, others = split_relay(args.scenarios)
    cases = (
        [] if others == "" else select(build_cases(args.quick, args.repeat), others, args.runners)
    )
    if not cases and not want_relay:
        parser.error("nothing to run")
    command = "python -m benchmarks" + ("".join(" " + shlex.quote(a) for a in args_list))
    started = datetime.now(timezone.utc)
    meta = machine_info(command)
    kinds = sorted({c.path.split("/")[2] for c in cases if c.path.count("/") >= 3})
    steps = plan(cases)
    raw: dict[str, dict[str, dict[str, list[Any]]]] = {
        c.name: {r: {"runs": [], "errors": []} for r in c.runners} for c in cases
    }
    unavailable: dict[str, str] = {}
    failed: set[tuple[str, str]] = set()
    progress = Progress(len(steps))
    server = ServerProcess(kinds)
    try:
        if steps:
            progress.show("starting the server (encoding frames once)")
        for case, rep, runner in steps:
            entry = raw[case.name][runner]
            label = f"{case.name} rep {rep + 1}/{case.repeat} {runner}"
            if runner in unavailable:
                entry["errors"].append(unavailable[runner])
            elif (case.name, runner) in failed:
                entry["errors"].append("skipped after an earlier failure")
            else:
                progress.show(label + " ...")
                port = server.ensure()
                spec = {
                    "runner": runner,
                    "kind": case.kind,
                    "url": f"ws://127.0.0.1:{port}{case.path}",
                    **case.spec,
                }
                result = run_worker(spec, case.timeout)
                if "error" in result:
                    err = str(result["error"])
                    entry["errors"].append(err)
                    failed.add((case.name, runner))
                    if err.startswith(("ModuleNotFoundError", "ImportError")):
                        unavailable[runner] = err
                else:
                    entry["runs"].append(result)
                progress.done += 1
                progress.show(f"{label}: {summary_text(case, result)}")
                continue
            progress.done += 1
    except KeyboardInterrupt:
        progress.close()
        sys.stderr.write("interrupted; nothing written\n")
        return 130
    finally:
        server.stop()
    progress.close()
    try:
        relay_result = run_relay(args) if want_relay else None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; nothing written\n")
        return 130

    finished = datetime.now(timezone.utc)
    meta.update(
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        finished=finished.strftime("%Y-%m-%d %H:%M UTC"),
        duration_s=(finished - started).total_seconds(),
        load_end=os.getloadavg()[0],
        quick=args.quick,
    )
    report.write_json(out / "results.json", meta, cases, raw, relay_result)
    write_outputs(out, meta, cases, raw, relay_result)
    return 0


def write_outputs(
    out: Path,
    meta: dict[str, Any],
    cases: list[Case],
    raw: dict[str, Any],
    relay_result: dict[str, Any] | None = None,
) -> None:
    """RESULTS.md and results.png from the raw measurements (and the relay scenario's)."""
    summaries = {c.name: report.summarize(c, raw[c.name]) for c in cases}
    loads = sorted(
        run["loadavg_1min"]
        for entry in raw.values()
        for runner in entry.values()
        for run in runner["runs"]
        if "loadavg_1min" in run
    )
    if loads:
        meta = {**meta, "load_during": (loads[len(loads) // 2], loads[-1])}
    report.write_markdown(out / "RESULTS.md", meta, cases, summaries, relay_result)
    try:
        report.write_chart(out / "results.png", cases, summaries)
    except ImportError as exc:
        sys.stderr.write(f"no chart: {exc} (pip install matplotlib)\n")
    sys.stderr.write(f"wrote {out / 'RESULTS.md'} and results.png\n")


def rerender(path: Path, out: Path) -> int:
    """Re-render the report of an earlier run (same numbers, current report code)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    meta = doc["meta"]
    known = {c.name: c for c in build_cases(bool(meta.get("quick")), 5)}
    cases: list[Case] = []
    raw: dict[str, Any] = {}
    for entry in doc["cases"]:
        base = known[entry["name"]]
        runners = tuple(r for r in base.runners if r in entry["runners"])
        cases.append(Case(**{**base.__dict__, "runners": runners, "spec": entry["parameters"]}))
        raw[entry["name"]] = entry["runners"]
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(out, meta, cases, raw, doc.get("relay"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
