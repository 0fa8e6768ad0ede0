"""Redundant relays: two relay processes, each with its own exchange connection, publish
the same feed with the trade id as dedupe key; one is killed (SIGKILL) mid-stream, and a
reader still gets every event exactly once (Redis: a key per event set atomically with
the entry; NATS: ``Nats-Msg-Id`` within JetStream's duplicate window)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from busservers import BusServer, bus_url, trade_ids

from kstlib.websocket import Connected, Disconnected
from kstlib.websocket.sinks import open_reader
from kstlib.websocket.testing import ExchangeSimulator

HERE = Path(__file__).resolve().parent
TRADES = "btcusdt@trade"


def spawn_relay(bus: str, ws_url: str, name: str) -> subprocess.Popen[str]:
    code = f"import busservers; busservers.relay_main({bus!r}, {ws_url!r}, {name!r})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, cwd=HERE
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    return proc


@pytest.mark.timeout(120)
@pytest.mark.exchange_simulator(event_rate=2_000)
def test_two_relays_one_killed_mid_stream_the_reader_gets_every_event_exactly_once(
    sim: ExchangeSimulator, bus: BusServer
) -> None:
    url = bus_url(bus)
    ws_url = sim.stream_url(TRADES)
    procs = [spawn_relay(url, ws_url, "relay-a")]
    try:
        procs.append(spawn_relay(url, ws_url, "relay-b"))
        assert sim.wait_for_connections(2, timeout=10)
        start = sim.last_event_id(TRADES)
        assert sim.wait_until(lambda: sim.last_event_id(TRADES) >= start + 1_000, timeout=20)
        procs[0].send_signal(signal.SIGKILL)  # at any moment: here, mid-stream
        procs[0].wait(10)
        killed_at = sim.last_event_id(TRADES)
        assert sim.wait_until(lambda: sim.last_event_id(TRADES) >= killed_at + 1_000, timeout=20)
        procs[1].send_signal(signal.SIGTERM)  # the survivor publishes what it holds
        assert procs[1].wait(30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    with open_reader(url, idle_timeout=3) as reader:
        got = list(reader)
    ids = trade_ids(got)
    assert len(ids) == len(set(ids))  # exactly once
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # in order, no hole
    assert ids[-1] > killed_at + 900  # the survivor carried the feed past the kill
    markers = [m for m in got if not isinstance(m, dict)]
    assert [type(m) for m in markers] == [Connected, Connected]  # one per relay
    assert not any(isinstance(m, Disconnected) for m in got)
