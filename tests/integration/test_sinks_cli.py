"""``kstlib-ws stream URL --to BUS`` (a relay) and ``kstlib-ws read BUS`` (NDJSON of what a
consumer receives), as subprocesses against real buses; wrong addresses and unreachable
buses are one-line errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import orjson
import pytest
from busservers import BusServer, bus_url, free_port

from kstlib.websocket.testing import ExchangeSimulator

CLI = [sys.executable, "-m", "kstlib.websocket.cli"]


def run_cli(args: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(120)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_a_relay_then_a_reader_print_every_event_and_the_marker(
    sim: ExchangeSimulator, bus: BusServer
) -> None:
    url = bus_url(bus)
    relay = run_cli(["stream", sim.stream_url("btcusdt@trade"), "--to", url, "--count", "1500"])
    assert relay.returncode == 0, relay.stderr
    assert relay.stdout == ""  # a relay prints no data
    summary = relay.stderr.strip().splitlines()[-1]
    assert "message(s) relayed to" in summary and "0 dropped" in summary and "0 lost" in summary

    read = run_cli(["read", url, "--idle", "3"])
    assert read.returncode == 0, read.stderr
    lines = [orjson.loads(line) for line in read.stdout.splitlines()]
    assert lines[0]["marker"] == "Connected" and lines[0]["reconnect"] is False
    ids = [m["t"] for m in lines[1:]]
    assert len(ids) >= 1500 and ids == list(range(ids[0], ids[0] + len(ids)))
    assert read.stderr.strip().endswith(f"{len(lines)} item(s) read")

    again = run_cli(["read", url, "--idle", "1", "--count", "5"])  # same group: all acked
    assert again.returncode == 0 and again.stdout == ""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        (["stream", "ws://127.0.0.1:1/ws", "--to", "redis://127.0.0.1:1/0"], 2, "?stream=NAME"),
        (["stream", "ws://127.0.0.1:1/ws", "--to", "kafka://h:1?x=1"], 2, "scheme must be"),
        (["read", "nats://127.0.0.1:4222?subject=x&bad=1"], 2, "unknown parameter"),
        (["read", "redis://127.0.0.1:{port}/0?stream=x"], 1, "cannot reach the bus"),
        (["read", "nats://127.0.0.1:{port}?subject=x"], 1, "cannot reach the bus"),
        (["stream", "ws://127.0.0.1:1/ws", "--to", "redis://127.0.0.1:{port}/0?stream=x"], 1,
         "cannot reach the bus"),
        (["stream", "ws://127.0.0.1:1/ws", "--to", "nats://127.0.0.1:{port}?subject=x"], 1,
         "cannot reach the bus"),
    ],
)  # fmt: skip
def test_wrong_addresses_and_unreachable_buses_are_one_line_errors(
    args: list[str], status: int, says: str
) -> None:
    port = str(free_port())
    result = run_cli([a.replace("{port}", port) for a in args], timeout=30)
    assert result.returncode == status
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("kstlib-ws: error: ") and says in line
