#!/usr/bin/env python3
"""Soak run: a high event rate, forced rotations and periodic faults, audited id by id.

An in-process :class:`~kstlib.websocket.testing.ExchangeSimulator` publishes
``btcusdt@trade`` events (ids ``t`` grow by 1, the same on every connection) at
``--rate`` events per second. One ``WebSocketManager`` consumes them with
``queue_overflow="block"``, make-before-break rotation every ``--rotate-every`` seconds
(``max_connection_age`` + ``handover`` + ``dedupe_key`` on the trade id) and
``stream(events=True)``, so every reactive interruption is bracketed by gap markers.

Every ``--fault-every`` seconds the next fault of a fixed cycle is injected:

``close_all``    the server closes every connection (1001)
``reset_all``    TCP RST on every connection
``silent``       half-open peer (no data, no pongs, no FIN) for ``--silent-for`` seconds;
                 the client must detect it by PING_TIMEOUT
``refuse``       every connection reset while new handshakes are refused (503, then 429
                 on the next round) for ``--refuse-for`` seconds
``kill``         the client drops its own socket (``ws.kill()``)

The consumer checks the id sequence:

* an id received a second time is a **duplicate** (must be 0); an id received after a
  higher one is **out of order** (must be 0; it is then no longer counted as lost);
* ids skipped between two messages are **lost**; when a ``Disconnected`` marker (or a
  ``Gap`` marker: the trade ids are the ``sequence``) came between the two messages they
  are counted as **lost in gaps** (reactive faults may lose
  data: the marker tells order-book code to resync), otherwise as **lost outside gaps**
  (must be 0: rotations are handovers and the queue blocks instead of dropping).

The script prints a summary (and writes it as JSON with ``--json OUT``): events published
and received, lost outside/inside gaps, duplicates, RSS sampled every ``--sample-every``
seconds (start, end, max), threads and file descriptors before/after, and the manager's
counters (connects, reconnect attempts, disconnects by reason, handovers, gaps).

Exit status: 0 when nothing was lost outside gaps, nothing was duplicated or reordered
and the consumer ended normally; 1 otherwise; 2 for bad arguments. ``--faults`` picks
the fault cycle (e.g. ``--faults close_all,reset_all,refuse,kill`` or ``none``).

Usage::

    python scripts/soak.py --duration 600 --rate 2000 --json /tmp/soak.json

The function :func:`run_soak` is the same run as a library call (the short soak test
uses it). Linux only (RSS and descriptors come from ``/proc/self``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from kstlib.websocket import WebSocketManager
from kstlib.websocket.models import Connected, Disconnected, Gap
from kstlib.websocket.testing import ExchangeSimulator

STREAM = "btcusdt@trade"
FAULTS = ("close_all", "reset_all", "silent", "refuse", "kill")


def rss_kib() -> int:
    """Resident set size of this process in KiB (``VmRSS`` of ``/proc/self/status``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/self/status")


def fd_count() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def trade_id(msg: Any) -> Any:
    """``dedupe_key``: the trade id of a trade event, None for anything else."""
    return msg.get("t") if isinstance(msg, dict) else None


def trade_sequence(msg: Any) -> tuple[str, int] | None:
    """``sequence``: the trade id as a counter of the one stream."""
    tid = trade_id(msg)
    return (STREAM, tid) if isinstance(tid, int) else None


_UNSEEN, _RECEIVED, _MISSING_IN_GAP, _MISSING_OUTSIDE = 0, 1, 2, 3


class IdAudit:
    """Consumer-side accounting of the id sequence (used by one consumer thread).

    One byte per id (a few MiB for hours at thousands of events per second) records
    whether it was received, or skipped inside or outside a gap; an id that arrives
    late (after a higher one) is counted as ``out_of_order`` and is no longer lost."""

    def __init__(self) -> None:
        self.first_id: int | None = None
        self.last_id: int | None = None
        self.received = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.disconnected_markers = 0
        self.connected_markers = 0
        self.sequence_gap_markers = 0
        self.other_messages = 0
        #: the first few skips outside gaps: [last id seen, next id seen]
        self.skip_runs: list[list[int]] = []
        #: the first few duplicates / late ids: [highest id so far, id received]
        self.duplicate_samples: list[list[int]] = []
        self.out_of_order_samples: list[list[int]] = []
        self._state = bytearray()
        self._in_gap = False

    def on_marker(self, marker: Connected | Disconnected | Gap) -> None:
        if isinstance(marker, Disconnected):
            self.disconnected_markers += 1
            self._in_gap = True
        elif isinstance(marker, Gap):  # a hole on a live connection, marked in place
            self.sequence_gap_markers += 1
            self._in_gap = True
        else:
            self.connected_markers += 1

    def _index(self, tid: int) -> int:
        assert self.first_id is not None
        i = tid - self.first_id
        if i >= len(self._state):
            self._state.extend(bytes(max(i + 1 - len(self._state), 1 << 16)))
        return i

    def on_message(self, msg: Any) -> None:
        tid = trade_id(msg)
        if not isinstance(tid, int):
            self.other_messages += 1
            return
        self.received += 1
        if self.first_id is None:
            self.first_id = self.last_id = tid
        if tid < self.first_id:  # older than the first one seen: only possible reordered
            self.out_of_order += 1
            return
        state = self._state
        i = self._index(tid)
        last = self.last_id
        assert last is not None
        if state[i] == _RECEIVED:
            self.duplicates += 1
            if len(self.duplicate_samples) < 20:
                self.duplicate_samples.append([last, tid])
            return
        if tid < last:
            self.out_of_order += 1
            if len(self.out_of_order_samples) < 20:
                self.out_of_order_samples.append([last, tid])
            state[i] = _RECEIVED
            return
        if tid > last + 1:
            j = self._index(last + 1)
            if self._in_gap:
                state[j:i] = bytes([_MISSING_IN_GAP]) * (i - j)
            else:
                state[j:i] = bytes([_MISSING_OUTSIDE]) * (i - j)
                if len(self.skip_runs) < 20:
                    self.skip_runs.append([last, tid])
        state[i] = _RECEIVED
        self.last_id = tid
        self._in_gap = False

    @property
    def lost_in_gaps(self) -> int:
        return self._state.count(_MISSING_IN_GAP)

    @property
    def lost_outside_gaps(self) -> int:
        return self._state.count(_MISSING_OUTSIDE)

    def summary(self) -> dict[str, Any]:
        span = 0 if self.first_id is None else self.last_id - self.first_id + 1  # type: ignore[operator]
        return {
            "first_id": self.first_id,
            "last_id": self.last_id,
            "id_span": span,
            "received": self.received,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "lost_in_gaps": self.lost_in_gaps,
            "lost_outside_gaps": self.lost_outside_gaps,
            "disconnected_markers": self.disconnected_markers,
            "connected_markers": self.connected_markers,
            "sequence_gap_markers": self.sequence_gap_markers,
            "other_messages": self.other_messages,
            "skip_runs_outside_gaps": self.skip_runs,
            "duplicate_samples": self.duplicate_samples,
            "out_of_order_samples": self.out_of_order_samples,
            # every id of the span is received once, or lost (in or outside a gap)
            "consistent": span
            == self.received - self.duplicates + self.lost_in_gaps + self.lost_outside_gaps,
        }


@dataclass
class SoakOptions:
    """Parameters of one soak run (the command line's options)."""

    duration: float = 600.0
    rate: float = 2000.0
    rotate_every: float = 2.0
    fault_every: float = 5.0
    silent_for: float = 2.5
    refuse_for: float = 1.5
    ping_interval: float = 0.5
    ping_timeout: float = 1.0
    queue_size: int = 1000
    sample_every: float = 1.0
    settle: float = 3.0
    #: the fault cycle, a subset of FAULTS in the order injected
    faults: tuple[str, ...] = FAULTS


def _inject(
    kind: str, round_no: int, sim: ExchangeSimulator, ws: WebSocketManager, opts: SoakOptions
) -> None:
    """Inject one fault; blocks for the faults that last a while (silent, refuse)."""
    if kind == "close_all":
        sim.close_all(1001, "going away")
    elif kind == "reset_all":
        sim.reset_all()
    elif kind == "silent":
        sim.go_silent(True)
        time.sleep(opts.silent_for)
        sim.go_silent(False)
    elif kind == "refuse":
        sim.refuse_handshake(503 if round_no % 2 == 0 else 429)
        sim.reset_all()
        time.sleep(opts.refuse_for)
        sim.refuse_handshake(None)
    elif kind == "kill":
        ws.kill()
    else:  # pragma: no cover - FAULTS is fixed
        raise ValueError(kind)


def run_soak(opts: SoakOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one soak and return its report (see the module docstring).

    The report's ``ok`` is True when nothing was lost outside gaps, nothing was
    duplicated, the id accounting is consistent and the consumer ended normally.
    """
    threads_before = threading.active_count()
    fds_before = fd_count()
    rss_samples: list[list[float]] = []
    faults_done: dict[str, int] = dict.fromkeys(opts.faults, 0)
    audit = IdAudit()
    consumer_error: list[BaseException] = []
    started = time.monotonic()

    def sample() -> None:
        rss_samples.append([round(time.monotonic() - started, 2), rss_kib()])

    sample()
    # a short connection history keeps the in-process server's memory bounded, so the
    # RSS samples show the client (the audit itself holds one byte per id)
    with ExchangeSimulator(event_rate=opts.rate, close_timeout=1.0, history=50) as sim:
        ws = WebSocketManager(
            sim.stream_url(STREAM),
            queue_overflow="block",
            queue_size=opts.queue_size,
            max_connection_age=opts.rotate_every,
            handover=True,
            dedupe_key=trade_id,
            # the trade ids are consecutive: a hole on a live connection (a stall the
            # server dropped events through) is marked in place with a Gap
            sequence=trade_sequence,
            reconnect_strategy="fixed_delay",
            reconnect_delay=0.1,
            max_reconnect_attempts=None,
            ping_interval=opts.ping_interval,
            ping_timeout=opts.ping_timeout,
            connect_timeout=5.0,
            close_timeout=2.0,
        )
        ws.connect(timeout=30)

        def consume() -> None:
            try:
                for item in ws.stream(events=True):
                    if isinstance(item, (Connected, Disconnected, Gap)):
                        audit.on_marker(item)
                    else:
                        audit.on_message(item)
            except BaseException as exc:  # reported, and fails the run
                consumer_error.append(exc)

        consumer = threading.Thread(target=consume, name="soak-consumer", daemon=True)
        consumer.start()

        fault_until = started + max(0.0, opts.duration - opts.settle)
        end = started + opts.duration
        next_fault = started + opts.fault_every
        next_sample = started + opts.sample_every
        next_log = started + 30.0
        round_no = 0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_sample:
                sample()
                next_sample += opts.sample_every
            if now >= next_log:
                next_log += 30.0
                st = ws.stats
                log(
                    f"[{now - started:7.1f}s] received={audit.received} "
                    f"lost_outside={audit.lost_outside_gaps} lost_in_gaps={audit.lost_in_gaps} "
                    f"dups={audit.duplicates} reordered={audit.out_of_order} "
                    f"handovers={st.handovers} gaps={st.gaps} "
                    f"rss={rss_samples[-1][1] / 1024:.1f}MiB"
                )
            if opts.faults and next_fault <= now < fault_until:
                kind = opts.faults[round_no % len(opts.faults)]
                _inject(kind, round_no // len(opts.faults), sim, ws, opts)
                faults_done[kind] += 1
                round_no += 1
                next_fault = time.monotonic() + opts.fault_every
                continue
            time.sleep(min(0.05, max(0.0, min(next_sample, end) - now)))

        # settle: connected and caught up with the server before closing
        sim.refuse_handshake(None)
        sim.go_silent(False)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            target = sim.last_event_id(STREAM)
            if ws.is_connected and audit.last_id is not None and audit.last_id >= target:
                break
            time.sleep(0.02)
        stats = ws.stats
        published = sim.events_published
        last_published = sim.last_event_id(STREAM)
        ws.close()
        consumer.join(30.0)
        if consumer.is_alive():
            consumer_error.append(RuntimeError("consumer did not end after close()"))
    sample()
    elapsed = time.monotonic() - started
    rss = [kib for _, kib in rss_samples]
    audit_out = audit.summary()
    ok = (
        audit.lost_outside_gaps == 0
        and audit.duplicates == 0
        and audit.out_of_order == 0
        and audit_out["consistent"]
        and not consumer_error
        and audit.received > 0
    )
    report: dict[str, Any] = {
        "ok": ok,
        "options": asdict(opts),
        "elapsed_seconds": round(elapsed, 2),
        "events_published": published,
        "last_event_id_published": last_published,
        "events_received": audit.received,
        "receive_rate_per_second": round(audit.received / elapsed, 1) if elapsed else 0.0,
        "lost_outside_gaps": audit.lost_outside_gaps,
        "lost_in_gaps": audit.lost_in_gaps,
        "duplicates": audit.duplicates,
        "out_of_order": audit.out_of_order,
        "audit": audit_out,
        "consumer_error": repr(consumer_error[0]) if consumer_error else None,
        "faults": faults_done,
        "stats": {
            "connects": stats.connects,
            "reconnect_attempts": stats.reconnect_attempts,
            "disconnects": stats.disconnects,
            "reactive_disconnects": stats.reactive_disconnects,
            "proactive_disconnects": stats.proactive_disconnects,
            "disconnects_by_reason": {
                r.name: n for r, n in sorted(stats.disconnects_by_reason.items(), key=str)
            },
            "handovers": stats.handovers,
            "handover_failures": stats.handover_failures,
            "duplicates_dropped": stats.duplicates_dropped,
            "overlap_seconds": round(stats.overlap_seconds, 3),
            "gaps": stats.gaps,
            "gap_seconds": round(stats.gap_seconds, 3),
            "messages_received": stats.messages_received,
            "messages_dropped": stats.messages_dropped,
            "callback_errors": stats.callback_errors,
        },
        "rss_kib": {
            "start": rss[0],
            "end": rss[-1],
            "max": max(rss),
            "samples": rss_samples,
        },
        "threads": {"before": threads_before, "after": threading.active_count()},
        "fds": {"before": fds_before, "after": fd_count()},
    }
    return report


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _fault_list(text: str) -> tuple[str, ...]:
    if text.strip().lower() == "none":
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault(s) {unknown}; choose from {FAULTS}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Soak the WebSocket client: high rate, rotations, faults; audit ids."
    )
    d = SoakOptions()
    parser.add_argument("--duration", type=_positive, default=d.duration, help="seconds")
    parser.add_argument("--rate", type=_positive, default=d.rate, help="events per second")
    parser.add_argument("--rotate-every", type=_positive, default=d.rotate_every)
    parser.add_argument("--fault-every", type=_positive, default=d.fault_every)
    parser.add_argument("--silent-for", type=_positive, default=d.silent_for)
    parser.add_argument("--refuse-for", type=_positive, default=d.refuse_for)
    parser.add_argument("--ping-interval", type=_positive, default=d.ping_interval)
    parser.add_argument("--ping-timeout", type=_positive, default=d.ping_timeout)
    parser.add_argument(
        "--faults",
        type=_fault_list,
        default=d.faults,
        help=f"comma-separated fault cycle (default: {','.join(FAULTS)}; 'none': no faults)",
    )
    parser.add_argument("--queue-size", type=int, default=d.queue_size)
    parser.add_argument("--sample-every", type=_positive, default=d.sample_every)
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT")
    args = parser.parse_args(argv)
    opts = SoakOptions(
        duration=args.duration,
        rate=args.rate,
        rotate_every=args.rotate_every,
        fault_every=args.fault_every,
        silent_for=args.silent_for,
        refuse_for=args.refuse_for,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        faults=args.faults,
        queue_size=args.queue_size,
        sample_every=args.sample_every,
    )
    report = run_soak(opts, log=lambda line: print(line, flush=True))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    brief = {k: v for k, v in report.items() if k not in ("rss_kib", "audit", "options")}
    brief["rss_mib"] = {k: round(report["rss_kib"][k] / 1024, 1) for k in ("start", "end", "max")}
    for key in ("skip_runs_outside_gaps", "duplicate_samples", "out_of_order_samples"):
        brief[key] = report["audit"][key]
    print(json.dumps(brief, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
