"""The ``kstlib-ws`` command line, run for real against the exchange simulator.

Most tests start ``python -m kstlib.websocket.cli`` (the code the console script runs)
as a subprocess, so exit statuses, stdout/stderr separation and signal handling are the
real ones. Waits are event-based: lines are read as the child prints them.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO

import orjson
import pytest

from kstlib.websocket import DisconnectReason, WebSocketStats
from kstlib.websocket.cli import main
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(60)

CLI = [sys.executable, "-m", "kstlib.websocket.cli"]


def run_cli(args: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class Child:
    """A running CLI subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, args: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.out = _Lines(self.proc.stdout)
        self.err = _Lines(self.proc.stderr)

    def wait_line(self, pattern: str, timeout: float = 20.0) -> str:
        """The first stdout line (not looked at before) matching ``pattern``."""
        return self.out.wait(pattern, timeout)

    def wait_err_line(self, pattern: str, timeout: float = 20.0) -> str:
        """The first stderr line (not looked at before) matching ``pattern``."""
        return self.err.wait(pattern, timeout)

    def finish(self, timeout: float = 20.0) -> tuple[int, list[str], str]:
        """Wait for the exit; return (status, every stdout line, the whole stderr)."""
        status = self.proc.wait(timeout)
        return status, self.out.all(timeout), "\n".join(self.err.all(timeout))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class _Lines:
    """Lines of a pipe, read by a thread as they arrive."""

    def __init__(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        self.pipe = pipe
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.ended = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.pipe:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def wait(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self.queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.ended = True
                break
            self.seen.append(line)
            if rx.search(line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; got {self.seen!r}")

    def all(self, timeout: float) -> list[str]:
        """Every line, once the pipe has ended."""
        self.thread.join(timeout)
        while not self.ended:
            line = self.queue.get(timeout=timeout)
            if line is None:
                self.ended = True
            else:
                self.seen.append(line)
        return self.seen


@contextmanager
def child(args: Sequence[str]) -> Iterator[Child]:
    c = Child(args)
    try:
        yield c
    finally:
        c.kill()
        for stream in (c.proc.stdout, c.proc.stderr):
            if stream is not None:
                stream.close()


def free_port() -> int:
    """A loopback port with nobody listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_clean_stderr(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


# ---------------------------------------------------------------------------- basics


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert re.fullmatch(r"kstlib-ws \S+\n", capsys.readouterr().out)
    for argv in (["--help"], ["demo", "--help"], ["stream", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: kstlib-ws")
    assert "--candle-seconds" in run_cli(["demo", "--help"]).stdout


def test_help_prints_literal_percent_signs(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse %-formats help strings only: a description must not double its %.
    for argv in (["--help"], ["demo", "--help"], ["stream", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "%%" not in out, argv
        if argv[0] == "demo":
            assert "60%" in out and "40%" in out and "25%" in out, out
    assert "60%" in run_cli(["demo", "--help"]).stdout


def test_console_script_is_installed() -> None:
    exe = shutil.which("kstlib-ws")
    if exe is None:
        pytest.skip("kstlib-websocket is not pip-installed (no console script)")
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("kstlib-ws ")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        [],
        ["stream"],
        ["stream", "ws://127.0.0.1:1/ws", "--subscribe", "{not json"],
        ["stream", "ws://127.0.0.1:1/ws", "--count", "0"],
        ["demo", "--candle-seconds", "0.5"],
        ["demo", "--duration", "-1"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err, argv


# ---------------------------------------------------------------------------- stream


@pytest.mark.exchange_simulator(event_rate=50)
def test_stream_prints_ndjson_and_stops_after_count(exchange_simulator: ExchangeSimulator) -> None:
    url = exchange_simulator.stream_url("btcusdt@trade")
    result = run_cli(["stream", url, "--count", "7"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 7
    events = [orjson.loads(line) for line in lines]
    assert all(e["e"] == "trade" and e["s"] == "BTCUSDT" for e in events)
    ids = [e["t"] for e in events]
    assert ids == list(range(ids[0], ids[0] + 7))  # consecutive: nothing lost or reordered
    assert f"connected to {url}" in result.stderr
    assert "7 message(s) received" in result.stderr
    assert_clean_stderr(result.stderr)
    # status never leaks into the data stream
    assert "kstlib-ws" not in result.stdout


@pytest.mark.exchange_simulator(event_rate=20)
def test_stream_subscribe_reaches_the_simulator(exchange_simulator: ExchangeSimulator) -> None:
    first = {"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 7}
    second = {"method": "LIST_SUBSCRIPTIONS", "id": 8}
    result = run_cli(
        [
            "stream",
            exchange_simulator.stream_url(),  # /ws: nothing until SUBSCRIBE
            "--subscribe",
            orjson.dumps(first).decode(),
            "--subscribe",
            orjson.dumps(second).decode(),
            "--count",
            "4",
        ]
    )
    assert result.returncode == 0, result.stderr
    messages = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(messages) == 4
    assert messages[0] == {"result": None, "id": 7}
    assert messages[1] == {"result": ["ethusdt@trade"], "id": 8}
    assert all(m["e"] == "trade" and m["s"] == "ETHUSDT" for m in messages[2:])
    # the server received both messages, in order, and holds the subscription
    received = [orjson.loads(m) for m in exchange_simulator.received(0)]
    assert received == [first, second]
    assert exchange_simulator.subscriptions_of(0) == ["ethusdt@trade"]


@pytest.mark.parametrize("raw", [False, True], ids=["json", "raw"])
def test_stream_text_and_binary_frames(exchange_simulator: ExchangeSimulator, raw: bool) -> None:
    url = exchange_simulator.stream_url()
    args = ["stream", url, "--count", "3"] + (["--raw"] if raw else [])
    with child(args) as c:
        assert exchange_simulator.wait_for_connections(1, timeout=20)
        # unmasked server frames: binary b"\x00\xffab", text "not json", text {"a": [1, 2]}
        exchange_simulator.send_raw(b"\x82\x04\x00\xffab")
        exchange_simulator.send_raw(b"\x81\x08not json")
        exchange_simulator.send_raw(b'\x81\x0d{"a":  [1,2]}')
        status, lines, stderr = c.finish()
    assert status == 0, stderr
    if raw:
        assert lines == ["AP9hYg==", "not json", '{"a":  [1,2]}']  # as received
    else:
        assert [orjson.loads(line) for line in lines] == [
            {"binary": "AP9hYg=="},
            "not json",
            {"a": [1, 2]},
        ]
    assert_clean_stderr(stderr)


@pytest.mark.exchange_simulator(event_rate=20)
def test_stream_timeout_ends_with_status_0(exchange_simulator: ExchangeSimulator) -> None:
    result = run_cli(["stream", exchange_simulator.stream_url("btcusdt@trade"), "--timeout", "1"])
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert orjson.loads(line)["e"] == "trade"
    assert "message(s) received" in result.stderr


def test_stream_connection_refused_is_one_line_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    result = run_cli(["stream", url, "--max-attempts", "2", "--reconnect-delay", "0.05"])
    assert result.returncode == 1
    assert result.stdout == ""
    assert_clean_stderr(result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("kstlib-ws: error: ")
    assert url in last and "2 attempt(s)" in last and "refused" in last.lower()


def test_stream_sigint_while_retrying_to_connect_ends_cleanly() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    with child(["stream", url, "--reconnect-delay", "5"]) as c:  # default: 10 attempts
        c.wait_err_line(r"connection attempt 1 to .* failed")
        c.proc.send_signal(signal.SIGINT)
        status, lines, stderr = c.finish()
    assert status == 0
    assert lines == []
    assert "0 message(s) received (SIGINT)" in stderr
    assert_clean_stderr(stderr)


def test_stream_http_404_fails_at_once(exchange_simulator: ExchangeSimulator) -> None:
    # default attempts: a permanent HTTP refusal is not retried
    result = run_cli(["stream", f"{exchange_simulator.url}/nowhere"])
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("kstlib-ws: error: ") and "404" in last
    assert exchange_simulator.handshake_attempts == 1
    assert_clean_stderr(result.stderr)


@pytest.mark.exchange_simulator(event_rate=20)
def test_stream_reconnects_then_server_close_without_reconnect(
    exchange_simulator: ExchangeSimulator,
) -> None:
    url = exchange_simulator.stream_url("btcusdt@trade")
    with child(["stream", url, "--reconnect-delay", "0.05"]) as c:
        c.wait_line(r'"e":"trade"')
        exchange_simulator.close_all(1011, "maintenance")
        assert exchange_simulator.wait_for_total_connections(2, timeout=20)
        c.wait_line(r'"e":"trade"')
        c.proc.send_signal(signal.SIGTERM)
        status, _, stderr = c.finish()
    assert status == 0
    assert "disconnected: SERVER_CLOSED (reactive); reconnecting" in stderr
    assert "(connect #2)" in stderr
    assert "message(s) received (SIGTERM)" in stderr
    assert_clean_stderr(stderr)

    with child(["stream", url, "--no-reconnect"]) as c:
        c.wait_line(r'"e":"trade"')
        exchange_simulator.close_all(1011, "maintenance")
        status, _, stderr = c.finish()
    assert status == 3
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("kstlib-ws: error: connection closed") and "1011" in last
    assert_clean_stderr(stderr)


@pytest.mark.exchange_simulator(event_rate=20)
def test_stream_sigint_ends_cleanly(exchange_simulator: ExchangeSimulator) -> None:
    with child(["stream", exchange_simulator.stream_url("btcusdt@trade")]) as c:
        c.wait_line(r'"e":"trade"')
        c.proc.send_signal(signal.SIGINT)
        status, lines, stderr = c.finish()
    assert status == 0
    for line in lines:
        orjson.loads(line)  # every line complete, even the last one
    assert "message(s) received (SIGINT)" in stderr
    assert_clean_stderr(stderr)


# ---------------------------------------------------------------------------- demo


def test_demo_proactive_disconnects_reconnects_and_summary() -> None:
    # 4 s candles: connected from < 1.6 s before each close until just after it, so a
    # 1 s connection limit rotates every window (CONNECTION_LIMIT) and the candle rule
    # disconnects after every close (CALLBACK_TRIGGERED). 8 s always spans a full cycle.
    result = run_cli(
        ["demo", "--duration", "8", "--candle-seconds", "4", "--connection-limit", "1"],
        timeout=40,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert_clean_stderr(result.stderr)
    assert re.search(
        r"DISCONNECTED: CALLBACK_TRIGGERED \(proactive\): should_disconnect\(\)", out
    ), out
    assert re.search(r"RECONNECTED \(connect #\d+\) after CALLBACK_TRIGGERED", out), out
    assert re.search(r"DISCONNECTED: CONNECTION_LIMIT \(proactive\)", out), out
    assert re.search(r"RECONNECTED \(connect #\d+\) after CONNECTION_LIMIT", out), out
    assert re.search(r"CANDLE CLOSED #1 BTCUSDT 4h .* c=\d+\.\d+", out), out
    # the final table: every WebSocketStats field, every reason
    table = out[out.index("WebSocketStats") :]
    for f in dataclasses.fields(WebSocketStats):
        assert re.search(rf"^\s+{f.name}\b", table, re.M), f.name
    for reason in DisconnectReason:
        assert re.search(rf"^\s+{reason.name}\s+(proactive|reactive)\s+\d+$", table, re.M)
    counts = {
        name: int(n)
        for name, n in re.findall(r"^\s+(\w+)\s+(?:proactive|reactive)\s+(\d+)$", table, re.M)
    }
    assert counts["CALLBACK_TRIGGERED"] >= 1 and counts["CONNECTION_LIMIT"] >= 1
    proactive = int(re.search(r"^\s+proactive_disconnects\s+(\d+)", table, re.M).group(1))  # type: ignore[union-attr]
    assert proactive == sum(counts[r.name] for r in DisconnectReason if r.is_proactive)
    assert "ended by" in out and "duration reached" in out
    # not a terminal: plain status lines, no carriage-return redraws
    assert "\r" not in result.stderr


def test_demo_sigint_prints_summary_and_exits_0() -> None:
    with child(["demo", "--candle-seconds", "2", "--connection-limit", "3"]) as c:
        c.wait_line(r"connected \(connect #1\)")
        c.proc.send_signal(signal.SIGINT)
        status, lines, stderr = c.finish()
    assert status == 0, stderr
    out = "\n".join(lines)
    assert re.search(r"^\s+ended by\s+SIGINT$", out, re.M), out
    assert "WebSocketStats" in out and "disconnects_by_reason" in out
    assert re.search(r"^\s+connects\s+[1-9]", out, re.M), out
    assert_clean_stderr(stderr)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_demo_live_status_line_on_a_terminal() -> None:
    primary, secondary = os.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO once the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(
            [*CLI, "demo", "--duration", "1.5", "--candle-seconds", "2"],
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
        )
        os.close(secondary)
        secondary = -1
        out, _ = proc.communicate(timeout=30)
        reader.join(10)
    finally:
        if secondary >= 0:
            os.close(secondary)
        os.close(primary)
    assert proc.returncode == 0
    tty = b"".join(chunks).decode()
    assert "\r\x1b[K" in tty  # redrawn in place
    assert re.search(r"(CONNECTED|DISCONNECTED|CONNECTING)\s+\| [\d.]+s to candle close", tty)
    assert "WebSocketStats" in out


# ---------------------------------------------------------------------------- demo: helpers

WIDTH = 80


def long_lines(text: str) -> list[str]:
    """The screen lines of ``text`` (split at CR and LF, erase-line codes removed) that
    are wider than 80 columns."""
    pieces = re.split(r"[\r\n]", text.replace("\x1b[K", ""))
    return [p for p in pieces if len(p) > WIDTH]


def run_in_pty(args: Sequence[str], columns: int) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal ``columns`` wide; return
    its exit status and everything it wrote."""
    import fcntl
    import struct
    import termios

    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO once the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen([*CLI, *args], stdout=secondary, stderr=secondary)
        os.close(secondary)
        secondary = -1
        status = proc.wait(timeout=40)
        reader.join(10)
    finally:
        if secondary >= 0:
            os.close(secondary)
        os.close(primary)
    return status, b"".join(chunks).decode()


# ---------------------------------------------------------------------------- demo: handover

HANDOVER_LINE = r"RECONNECTED \(connect #\d+\) after CONNECTION_LIMIT: HANDOVER #1$"
CANDLE_RULE_LINE = r"DISCONNECTED: CALLBACK_TRIGGERED \(proactive\): should_disconnect\(\)"


def test_demo_default_timeline_has_a_handover_within_30_seconds() -> None:
    # The README's command, default settings: the demo's own --duration 30 ends the
    # output, so a handover (or a candle-rule disconnect) after 30 s would leave the
    # wait without its line.
    with child(["demo", "--duration", "30"]) as c:
        line = c.wait_line(HANDOVER_LINE, timeout=50)
        if not any(re.search(CANDLE_RULE_LINE, seen) for seen in c.out.seen):
            c.wait_line(CANDLE_RULE_LINE, timeout=50)
        c.proc.send_signal(signal.SIGINT)
        status, lines, stderr = c.finish()
    assert status == 0, stderr
    assert_clean_stderr(stderr)
    out = "\n".join(lines)
    # the handover is told as the old connection's disconnect, then the new connect
    at = lines.index(line)
    before = [seen for seen in lines[:at] if "DISCONNECTED: " in seen][-1]
    assert re.search(r"DISCONNECTED: CONNECTION_LIMIT \(proactive\)", before), out
    details = lines[at + 1 : at + 3]
    assert re.search(r"make-before-break: #\d+ streamed beside #\d+", details[0]), out
    assert re.search(r"^\s+no gap, \d+ duplicates? dropped", details[1]), out
    # in the summary: the demo's row and the statistics
    assert re.search(r"^\s+handovers\s+[1-9]\d* make-before-break, ", out, re.M), out
    table = out[out.index("WebSocketStats") :]
    assert re.search(r"^\s+handovers\s+[1-9]", table, re.M), table
    for reason in ("CALLBACK_TRIGGERED", "CONNECTION_LIMIT"):
        assert re.search(rf"^\s+{reason}\s+proactive\s+[1-9]", table, re.M), table
    # nothing lost or repeated across the handovers: the trade ids follow each other
    assert re.search(
        r"^\s+trade ids, gaps aside\s+\d+ in sequence, 0 missing, 0 repeated$", out, re.M
    ), out


def test_demo_without_handover_rotates_break_before_make() -> None:
    with child(["demo", "--candle-seconds", "2", "--no-handover"]) as c:
        c.wait_line(r"RECONNECTED \(connect #\d+\) after CONNECTION_LIMIT$")
        c.wait_line(r"break-before-make rotation, a gap")
        c.proc.send_signal(signal.SIGINT)
        status, lines, stderr = c.finish()
    assert status == 0, stderr
    out = "\n".join(lines)
    assert "HANDOVER" not in out
    assert re.search(r"^\s+handovers\s+off \(--no-handover\)", out, re.M), out
    table = out[out.index("WebSocketStats") :]
    assert re.search(r"^\s+handovers\s+0$", table, re.M), table
    assert long_lines(out) == [] and long_lines(stderr) == []


# ---------------------------------------------------------------------------- demo: 80 columns


def test_demo_lines_fit_in_80_columns() -> None:
    # Short candles: candle closes, disconnects, reconnects and handovers in a few
    # seconds; 7 s includes a plain status line (printed every 5 s off a terminal).
    args = ["demo", "--duration", "7", "--candle-seconds", "2", "--connection-limit", "0.75"]
    result = run_cli(args, timeout=40)
    assert result.returncode == 0, result.stderr
    assert_clean_stderr(result.stderr)
    assert re.search(r"\| [\d.]+s to candle close \|", result.stderr), result.stderr
    assert "HANDOVER" in result.stdout and "CANDLE CLOSED" in result.stdout
    assert long_lines(result.stdout) == [] and long_lines(result.stderr) == []


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_demo_live_status_line_fits_in_80_columns_on_a_wide_terminal() -> None:
    status, tty = run_in_pty(["demo", "--duration", "2", "--candle-seconds", "2"], columns=200)
    assert status == 0, tty
    assert "\r\x1b[K" in tty  # redrawn in place
    assert re.search(r"\| [\d.]+s to candle close \| \d+ handovers? \|", tty), tty
    assert "WebSocketStats" in tty
    assert long_lines(tty) == []


def test_console_fits_the_longest_lines_to_80_columns() -> None:
    import io

    from kstlib.websocket.cli.console import Console

    out, err = io.StringIO(), io.StringIO()
    huge = [f"{'RECONNECTING':<12}", "123456.7s to candle close"] + [
        f"{10**9} field{i}" for i in range(8)
    ]
    plain = Console(out, err, live=False)
    plain.event(("[123456.78s] " + "word " * 60).rstrip(), indent=" " * 13)
    plain.event("x" * 200)
    plain.status(huge, "[123456.78s]")
    plain.error("kstlib-ws: error: " + "a long reason " * 20)
    live_err = io.StringIO()
    Console(io.StringIO(), live_err, live=True).status(huge, "")
    for text in (out.getvalue(), err.getvalue(), live_err.getvalue()):
        assert text and long_lines(text) == []
    assert all(line.startswith(" " * 13) for line in out.getvalue().splitlines()[1:2])
    assert err.getvalue().startswith("[123456.78s] RECONNECTING | 123456.7s to candle close")
