#!/usr/bin/env python3
"""Autobahn|Testsuite conformance run for the kstlib.websocket client.

Subcommands::

    python scripts/autobahn.py setup
        Create (once) a throwaway Python 2.7 virtualenv with ``autobahntestsuite`` under
        ``.autobahn/`` in the repository (gitignored).  Idempotent.

    python scripts/autobahn.py run [--codec python|cpp|both] [--cases '*']
        Start ``wstest -m fuzzingserver`` on a free port of 127.0.0.1, run the echo client
        (``tests/conformance/echo_client.py``) once per codec against every selected case,
        read ``reports/clients/index.json`` and print a table.  Exits non-zero unless every
        case's ``behavior`` and ``behaviorClose`` is OK or INFORMATIONAL (or NON-STRICT for
        a case listed in :data:`ALLOWED_NON_STRICT`); FAILED, UNIMPLEMENTED and WRONG CODE
        are never accepted.  The fuzzing server is always stopped.

The module is importable (``tests/conformance/test_autobahn.py`` uses :func:`setup`,
:func:`find_python27` and :func:`run_suite`).
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AUTOBAHN_DIR = ROOT / ".autobahn"
VENV_DIR = AUTOBAHN_DIR / "venv"
VIRTUALENV_TARGET = AUTOBAHN_DIR / "virtualenv-pkg"
WSTEST = VENV_DIR / "bin" / "wstest"
ECHO_CLIENT = ROOT / "tests" / "conformance" / "echo_client.py"
AUTOBAHN_VERSION = "25.10.1"
AGENT_PREFIX = "kstlib"

#: Results accepted for ``behavior`` / ``behaviorClose`` of every case.
ACCEPTED = frozenset({"OK", "INFORMATIONAL"})

#: Cases where NON-STRICT is accepted, with the reason the suite itself allows the choice.
#: Keys are case ids or fnmatch patterns of case ids.
ALLOWED_NON_STRICT: dict[str, str] = {}

CODECS = ("python", "cpp")


# --------------------------------------------------------------------------- setup


def _pyenv_roots() -> list[Path]:
    """Where pyenv may live: $PYENV_ROOT, the root of a pyenv shim on PATH, ~/.pyenv.

    The real home directory is looked up too, because test runs may point HOME elsewhere.
    """
    roots: list[Path] = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    shim = shutil.which("python2.7")
    if shim and Path(shim).parent.name == "shims":
        roots.append(Path(shim).parent.parent)
    roots.append(Path.home() / ".pyenv")
    try:
        import pwd

        roots.append(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".pyenv")
    except (ImportError, KeyError):
        pass
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def find_python27() -> str | None:
    """Return a working python2.7 interpreter path, or None when there is none.

    ``python2.7`` on PATH may be a pyenv shim that fails unless a version is selected, so
    every candidate is actually run (with ``PYENV_VERSION`` set to each installed 2.7).
    """
    env_versions: list[str] = []
    for root in _pyenv_roots():
        for path in sorted(glob.glob(str(root / "versions" / "2.7*" / "bin" / "python2.7"))):
            if path not in env_versions:
                env_versions.append(path)
    candidates: list[tuple[str, dict[str, str]]] = []
    on_path = shutil.which("python2.7")
    if on_path:
        candidates.append((on_path, {}))
        for path in env_versions:
            version = Path(path).parent.parent.name
            pyenv_root = str(Path(path).parent.parent.parent.parent)
            candidates.append((on_path, {"PYENV_VERSION": version, "PYENV_ROOT": pyenv_root}))
    candidates.extend((path, {}) for path in env_versions)
    for exe, extra_env in candidates:
        env = dict(os.environ, **extra_env)
        try:
            proc = subprocess.run(
                [exe, "-c", "import sys; print(sys.executable)"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        real = proc.stdout.strip()
        if proc.returncode == 0 and real and os.path.exists(real):
            return real
    return None


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def is_set_up() -> bool:
    """True when the Autobahn virtualenv exists and ``wstest`` runs."""
    if not WSTEST.exists():
        return False
    proc = subprocess.run([str(WSTEST), "--help"], capture_output=True, timeout=120, check=False)
    return proc.returncode == 0


def setup(python27: str | None = None) -> Path:
    """Create the Autobahn|Testsuite virtualenv once; return the ``wstest`` path.

    Recipe: ``python2.7 -m pip install --target DIR 'virtualenv<20.22'``, then
    ``PYTHONPATH=DIR python2.7 -m virtualenv VENV``, then
    ``VENV/bin/pip install autobahntestsuite==25.10.1``.  Raises ``RuntimeError`` when no
    python2.7 is found and ``subprocess.CalledProcessError`` when a step fails.
    """
    if is_set_up():
        return WSTEST
    py27 = python27 or find_python27()
    if py27 is None:
        raise RuntimeError("python2.7 not found (tried PATH and ~/.pyenv/versions/2.7*)")
    AUTOBAHN_DIR.mkdir(parents=True, exist_ok=True)
    if not (VIRTUALENV_TARGET / "virtualenv").exists():
        _run([py27, "-m", "pip", "install", "--target", str(VIRTUALENV_TARGET), "virtualenv<20.22"])
    if not (VENV_DIR / "bin" / "pip").exists():
        env = dict(os.environ, PYTHONPATH=str(VIRTUALENV_TARGET))
        _run([py27, "-m", "virtualenv", str(VENV_DIR)], env=env)
    _run([str(VENV_DIR / "bin" / "pip"), "install", f"autobahntestsuite=={AUTOBAHN_VERSION}"])
    if not is_set_up():
        raise RuntimeError(f"{WSTEST} does not run after installation")
    return WSTEST


# --------------------------------------------------------------------------- run


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _kstlib_path() -> str:
    """The sys.path entry that holds the kstlib.websocket this interpreter imports."""
    try:
        import kstlib.websocket as pkg
    except ImportError:
        return str(ROOT / "src")
    return str(Path(pkg.__file__).resolve().parents[2])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"wstest exited early with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"wstest did not listen on 127.0.0.1:{port} within {timeout:g}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@dataclass
class CaseResult:
    case: str
    behavior: str
    behavior_close: str
    duration_ms: int
    result: str = ""
    result_close: str = ""


@dataclass
class AgentReport:
    codec: str
    cases: list[CaseResult] = field(default_factory=list)
    client_seconds: float = 0.0
    client_returncode: int = 0

    def counts(self) -> Counter[str]:
        return Counter(c.behavior for c in self.cases)

    def problems(self) -> list[CaseResult]:
        return [
            c
            for c in self.cases
            if not (_acceptable(c.case, c.behavior) and _acceptable(c.case, c.behavior_close))
        ]


def _acceptable(case: str, value: str) -> bool:
    if value in ACCEPTED:
        return True
    return value == "NON-STRICT" and any(
        fnmatch.fnmatchcase(case, pattern) for pattern in ALLOWED_NON_STRICT
    )


def _case_key(case: str) -> tuple[int, ...]:
    return tuple(int(x) for x in case.split("."))


def _read_reports(outdir: Path, agent: str, codec: str) -> AgentReport:
    index = json.loads((outdir / "index.json").read_text())
    report = AgentReport(codec=codec)
    for case, info in sorted(index.get(agent, {}).items(), key=lambda kv: _case_key(kv[0])):
        res = CaseResult(case, info["behavior"], info["behaviorClose"], int(info["duration"]))
        if not (_acceptable(case, res.behavior) and _acceptable(case, res.behavior_close)):
            try:
                detail = json.loads((outdir / info["reportfile"]).read_text())
                res.result = str(detail.get("result", ""))
                res.result_close = str(detail.get("resultClose", ""))
            except (OSError, ValueError, KeyError):
                pass
        report.cases.append(res)
    return report


def _start_server(workdir: Path, cases: list[str]) -> tuple[subprocess.Popen[bytes], str, Any]:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    spec = {
        "url": url,
        "outdir": "./reports/clients",
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    (workdir / "spec.json").write_text(json.dumps(spec, indent=2))
    log = (workdir / "wstest.log").open("wb")
    server = subprocess.Popen(
        [str(WSTEST), "-m", "fuzzingserver", "-s", "spec.json", "--webport", "0"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_listening(port, server, 60.0)
    except BaseException:
        _stop(server)
        log.close()
        raise
    return server, url, log


def run_suite(
    codecs: list[str],
    cases: list[str] | None = None,
    *,
    workdir: Path | None = None,
    client_timeout: float = 3600.0,
) -> list[AgentReport]:
    """Run the selected cases against the echo client once per codec; return the reports.

    Each codec gets its own fuzzing server (a free port of 127.0.0.1, its own directory
    under a temporary one, or under ``workdir``) and the codecs run *in parallel*: the
    single-threaded Python 2 server is the bottleneck, so two server/client pairs use
    both cores.  Servers are always stopped.  Raises ``RuntimeError`` when the suite
    could not run (no ``wstest``, a server did not start, a client failed, no report).
    """
    if not WSTEST.exists():
        raise RuntimeError(f"{WSTEST} missing: run `python scripts/autobahn.py setup`")
    cases = cases or ["*"]
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="kstlib-autobahn-")
        workdir = Path(tmp.name)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_kstlib_path(), *filter(None, [env.get("PYTHONPATH")])])
    servers: list[tuple[subprocess.Popen[bytes], Any]] = []
    clients: list[tuple[str, Path, subprocess.Popen[bytes], float]] = []
    try:
        for codec in codecs:
            codec_dir = workdir / codec
            codec_dir.mkdir(parents=True, exist_ok=True)
            server, url, log = _start_server(codec_dir, cases)
            servers.append((server, log))
            client_env = dict(env, KSTLIB_WS_PURE_PYTHON="1" if codec == "python" else "0")
            cmd = [
                sys.executable,
                str(ECHO_CLIENT),
                "--server",
                url,
                "--agent",
                f"{AGENT_PREFIX}-{codec}",
                "--expect-codec",
                codec,
            ]
            clients.append(
                (codec, codec_dir, subprocess.Popen(cmd, env=client_env), time.monotonic())
            )
        deadline = time.monotonic() + client_timeout
        reports = []
        for codec, codec_dir, proc, started in clients:
            try:
                rc = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"echo client ({codec}) did not finish in time") from None
            seconds = time.monotonic() - started
            if rc != 0:
                raise RuntimeError(f"echo client ({codec}) exited with status {rc}")
            outdir = codec_dir / "reports" / "clients"
            if not (outdir / "index.json").exists():
                raise RuntimeError(f"no index.json in {outdir}; see {codec_dir / 'wstest.log'}")
            report = _read_reports(outdir, f"{AGENT_PREFIX}-{codec}", codec)
            if not report.cases:
                raise RuntimeError(f"no results for codec {codec} in index.json")
            report.client_seconds = seconds
            report.client_returncode = rc
            reports.append(report)
        return reports
    finally:
        for _codec, _dir, proc, _started in clients:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for server, log in servers:
            _stop(server)
            log.close()
        if tmp is not None:
            tmp.cleanup()


STATUSES = ("OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED")


def format_table(reports: list[AgentReport]) -> str:
    """Counts of ``behavior`` per codec, then every unaccepted case with its reason."""
    width = 14
    lines = ["codec   " + "".join(f"{s:>{width}}" for s in STATUSES) + f"{'total':>8}{'time':>9}"]
    for rep in reports:
        counts = rep.counts()
        other = sum(v for k, v in counts.items() if k not in STATUSES)
        row = f"{rep.codec:<8}" + "".join(f"{counts.get(s, 0):>{width}}" for s in STATUSES)
        row += f"{len(rep.cases):>8}{rep.client_seconds:>8.0f}s"
        if other:
            row += f"  (+{other} other)"
        lines.append(row)
    for rep in reports:
        for c in rep.problems():
            lines.append(
                f"[{rep.codec}] {c.case}: behavior={c.behavior} behaviorClose={c.behavior_close}"
                f" | {c.result} | {c.result_close}"
            )
    return "\n".join(lines)


def slowest(reports: list[AgentReport], n: int = 10) -> str:
    lines = []
    for rep in reports:
        top = sorted(rep.cases, key=lambda c: -c.duration_ms)[:n]
        lines.append(
            f"[{rep.codec}] slowest: " + ", ".join(f"{c.case} {c.duration_ms}ms" for c in top)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create the Python 2.7 virtualenv with autobahntestsuite")
    run = sub.add_parser("run", help="run the fuzzing server against the echo client")
    run.add_argument("--codec", choices=("python", "cpp", "both"), default="both")
    run.add_argument("--cases", default="*", help="comma-separated case ids or patterns")
    run.add_argument("--keep", metavar="DIR", help="keep spec, log and reports in DIR")
    args = ap.parse_args(argv)
    if args.command == "setup":
        print(setup())
        return 0
    codecs = list(CODECS) if args.codec == "both" else [args.codec]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    workdir = None
    if args.keep:
        workdir = Path(args.keep).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    reports = run_suite(codecs, cases, workdir=workdir)
    print(format_table(reports))
    print(slowest(reports))
    print(f"total {time.monotonic() - started:.0f}s")
    bad = sum(len(r.problems()) for r in reports)
    if bad:
        print(f"NOT CLEAN: {bad} case(s) not OK/INFORMATIONAL/allowed NON-STRICT")
        return 1
    print("clean sheet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
