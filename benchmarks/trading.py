"""Issue 12 in RESULTS.md and the chart: trading rates, every figure against picows.

One table in the layout of issue 12 (one-way latency at 1,000 msg/s on one connection and
at 50 x 20 msg/s, CPU per 1,000 messages, bursts, round trip; one column per client), the
same figures as ratios against picows, the issue's targets, and a ratio panel for
``results.png``. The per-scenario tables (spread, context switches, consumer-thread CPU)
stay in the "Results" section. Summaries are :class:`benchmarks.report.Summary` objects
(duck-typed here: ``ok``, ``median``, ``extras``, ``errors``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.report import Summary
    from benchmarks.scenarios import Case

REFERENCE = "picows"
#: Column order of the issue's table; runners absent from the run are left out.
COLUMNS = (
    "kstlib-sync",
    "kstlib-asyncio",
    "kstlib-consume",
    "kstlib-merge",
    "picows",
    "websockets-asyncio",
    "aiohttp",
    "websocket-client",
    "websockets-sync",
    "transport-floor",
)
OURS = ("kstlib-sync", "kstlib-asyncio", "kstlib-consume")
CASES = ("latency-1", "latency-50", "latency-500", "latency-quiet", "burst", "rtt")


@dataclass(frozen=True)
class Measure:
    """One figure of one case: the metric (``key == ""``) or one of its extras."""

    case: str
    key: str
    label: str
    higher_is_better: bool = False

    def value(self, summary: Summary | None) -> float:
        if summary is None or not summary.ok:
            return math.nan
        if not self.key:
            return float(summary.median)
        return float(summary.extras.get(self.key, math.nan))


#: The figures compared with picows, in the order of the ratio table and the chart.
MEASURES = (
    Measure("latency-1", "", "1 conn p50"),
    Measure("latency-1", "p99_us", "1 conn p99"),
    Measure("latency-1", "p999_us", "1 conn p99.9"),
    Measure("latency-1", "cpu_ms_per_1k", "1 conn CPU"),
    Measure("instructions-1", "", "1 conn instructions"),
    Measure("latency-50", "", "50 conns p50"),
    Measure("latency-50", "p99_us", "50 conns p99"),
    Measure("latency-50", "p999_us", "50 conns p99.9"),
    Measure("latency-50", "cpu_ms_per_1k", "50 conns CPU"),
    Measure("latency-500", "", "500 conns p50"),
    Measure("latency-500", "p99_us", "500 conns p99"),
    Measure("latency-500", "cpu_ms_per_1k", "500 conns CPU"),
    Measure("latency-quiet", "", "quiet feed p50"),
    Measure("burst", "", "burst last p50"),
    Measure("burst", "last_p99_us", "burst last p99"),
    Measure("burst", "cpu_ms_per_1k", "burst CPU"),
    Measure("rtt", "", "round trip req/s", higher_is_better=True),
    Measure("rtt", "p50_us", "RTT p50"),
    Measure("rtt", "p99_us", "RTT p99"),
)


def ratio(measure: Measure, ours: float, ref: float) -> float:
    """How much better than the reference (> 1 is better), NaN when not comparable."""
    if math.isnan(ours) or math.isnan(ref) or ours <= 0 or ref <= 0:
        return math.nan
    return ours / ref if measure.higher_is_better else ref / ours


def present(cases: list[Case], summaries: dict[str, dict[str, Summary]]) -> list[str]:
    """The runners of the issue-12 cases that ran, in :data:`COLUMNS` order."""
    names = {c.name for c in cases}
    seen = {r for c in cases if c.name in CASES for r in c.runners}
    if not names & {"latency-1", "latency-50", "latency-500", "latency-quiet", "burst"}:
        return []
    return [r for r in COLUMNS if r in seen]


def _get(summaries: dict[str, dict[str, Summary]], case: str, runner: str) -> Summary | None:
    return summaries.get(case, {}).get(runner)


def _f(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"


def _cell(summary: Summary | None, keys: tuple[str, ...], sep: str = " / ") -> str:
    if summary is None:
        return "—"
    if not summary.ok:
        return "error"
    values = [summary.median if not k else summary.extras.get(k, math.nan) for k in keys]
    return sep.join(_f(float(v)) for v in values)


def _fmt_ratio(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}x"


def section(cases: list[Case], summaries: dict[str, dict[str, Summary]]) -> list[str]:
    """The issue-12 section of RESULTS.md (empty when no latency scenario ran)."""
    runners = present(cases, summaries)
    if not runners:
        return []
    by_name = {c.name: c for c in cases}
    reps = sorted({c.repeat for c in cases if c.name in CASES})
    lines = [
        "## Trading rates: latency and CPU per message (issue 12)",
        "",
        "Same run, same machine; each figure is the median over "
        + "/".join(str(r) for r in reps)
        + " repetitions, the clients alternated. One-way latency is the time from the "
        "server's write (a `time.monotonic_ns()` stamp in each ~170-byte trade event, "
        "taken by the paced server in its own process) to the client's consumer holding "
        "the decoded message; CPU is the client process's CPU time (user + sys, all its "
        "threads) per 1,000 messages; for ours, *engine* is that minus the consumer thread's "
        "own CPU. Details and spread: tables 7 to 9 and 4 below.",
        "",
    ]
    header = ["Scenario", *runners]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))

    def row(label: str, case: str, keys: tuple[str, ...], extra: str | None = None) -> None:
        if case not in by_name:
            return
        cells = []
        for r in runners:
            s = _get(summaries, case, r)
            if s is None and r not in by_name[case].runners:
                cells.append("n/a")  # not a client of this case (merge: several connections)
                continue
            cell = _cell(s, keys)
            if extra and s is not None and s.ok and extra in s.extras and r in OURS:
                consumer = float(s.extras[extra])
                engine = float(s.extras.get(keys[0], math.nan)) - consumer
                cell += f" (engine {_f(engine)} + consumer {_f(consumer)})"
            cells.append(cell)
        lines.append("| " + " | ".join([label, *cells]) + " |")

    if "latency-1" in by_name:
        rate = by_name["latency-1"].spec.get("rate", 1000)
        row(
            f"1 connection, {rate:,} msg/s: one-way p50 / p99 / p99.9 (µs)",
            "latency-1",
            ("", "p99_us", "p999_us"),
        )
        row(
            "same: CPU per 1,000 messages (ms)",
            "latency-1",
            ("cpu_ms_per_1k",),
            extra="consumer_cpu_ms_per_1k",
        )
    for case in ("latency-50", "latency-500"):
        if case not in by_name:
            continue
        spec = by_name[case].spec
        row(
            f"{spec['conns']} connections x {spec['rate']} msg/s: p50 / p99 / p99.9 (µs)",
            case,
            ("", "p99_us", "p999_us"),
        )
        row("same: CPU per 1,000 messages (ms)", case, ("cpu_ms_per_1k",))
    if "latency-quiet" in by_name:
        every = 1 / float(by_name["latency-quiet"].spec.get("rate", 0.4))
        row(
            f"1 connection, one message every {every:g} s: p50 / p99 (µs)",
            "latency-quiet",
            ("", "p99_us"),
        )
    if "burst" in by_name:
        spec = by_name["burst"].spec
        burst = int(spec.get("burst", 200))
        every = burst / float(spec.get("rate", 2000)) * 1000
        row(
            f"bursts of {burst} every {every:g} ms: last-of-burst p50 / p99 (µs)",
            "burst",
            ("", "last_p99_us"),
        )
        row("same: CPU per 1,000 messages (ms)", "burst", ("cpu_ms_per_1k",))
    if "rtt" in by_name:
        row(
            "round trip (256 B send, echo, receive): req/s, RTT p50 / p99 (µs)",
            "rtt",
            ("", "p50_us", "p99_us"),
        )
    lines.append("")

    ref_ok = any(
        (s := _get(summaries, m.case, REFERENCE)) is not None and s.ok
        for m in MEASURES
        if m.case in by_name
    )
    if ref_ok:
        others = [r for r in runners if r != REFERENCE]
        lines += [
            f"Against {REFERENCE} (above 1.00x: better than {REFERENCE}; for latency and CPU "
            f"{REFERENCE}' figure divided by the client's, for req/s the client's divided by "
            f"{REFERENCE}'):",
            "",
            "| Measure | " + " | ".join(others) + " |",
            "|" + "---|" * (len(others) + 1),
        ]
        for m in MEASURES:
            if m.case not in by_name:
                continue
            ref = m.value(_get(summaries, m.case, REFERENCE))
            cells = [
                _fmt_ratio(ratio(m, m.value(_get(summaries, m.case, r)), ref))
                if r in by_name[m.case].runners
                else "n/a"
                for r in others
            ]
            lines.append(f"| {m.label} | " + " | ".join(cells) + " |")
        lines.append("")

    rows = targets(by_name, summaries)
    if rows:
        lines += [
            "### Targets from issue 12",
            "",
            "| Target | Measured (medians) | Status |",
            "|---|---|---|",
        ]
        lines += [f"| {t} | {m} | {s} |" for t, m, s in rows]
        lines.append("")
    return lines


def targets(
    by_name: dict[str, Case], summaries: dict[str, dict[str, Summary]]
) -> list[tuple[str, str, str]]:
    """Issue 12's targets, each as ``(target, measured, status)``."""
    rows: list[tuple[str, str, str]] = []
    front = {
        "kstlib-sync": "sync iterator",
        "kstlib-asyncio": "asyncio front (async for)",
        "kstlib-consume": "asyncio front (consume)",
    }

    def pair(case: str, runner: str) -> tuple[Summary | None, Summary | None, str]:
        ours, ref = _get(summaries, case, runner), _get(summaries, case, REFERENCE)
        for name, s in ((runner, ours), (REFERENCE, ref)):
            if s is None:
                return None, None, f"n/a ({name} not run)"
            if not s.ok:
                return None, None, f"n/a ({name}: {s.errors[0] if s.errors else 'no data'})"
        return ours, ref, ""

    conns = {"latency-1": "1 connection", "latency-50": "50 connections"}
    for case in ("latency-1", "latency-50"):
        if case not in by_name:
            continue
        for runner in OURS:
            for key, stat in (("", "p50"), ("p99_us", "p99")):
                label = (
                    f"One-way latency {stat}, {front[runner]}, {conns[case]}: >= 1.0x {REFERENCE}"
                )
                ours, ref, why = pair(case, runner)
                if ours is None or ref is None:
                    rows.append((label, "—", why))
                    continue
                m = Measure(case, key, stat)
                a, b = m.value(ours), m.value(ref)
                r = ratio(m, a, b)
                rows.append(
                    (
                        label,
                        f"{_fmt_ratio(r)} ({_f(a)} vs {_f(b)} µs)",
                        "met" if r >= 1.0 else "not met",
                    )
                )
    for case in ("latency-1", "latency-50"):
        if case not in by_name:
            continue
        for runner in OURS:
            label = f"CPU per message, {front[runner]}, {conns[case]}: at most 1.2x {REFERENCE}'"
            ours, ref, why = pair(case, runner)
            if ours is None or ref is None:
                rows.append((label, "—", why))
                continue
            a = float(ours.extras.get("cpu_ms_per_1k", math.nan))
            b = float(ref.extras.get("cpu_ms_per_1k", math.nan))
            r = a / b if b > 0 else math.nan
            rows.append(
                (
                    label,
                    f"{_fmt_ratio(r)} ({_f(a)} vs {_f(b)} ms per 1,000 messages)",
                    "met" if r <= 1.2 else "not met",
                )
            )

    def median_row(
        label: str, case: str, runner: str, unit: str, need: float, at_most: bool = False
    ) -> None:
        """Ours over the reference, medians: met at ``need`` or above (``at_most``: at
        ``need`` or below, for a cost)."""
        ours, ref, why = pair(case, runner)
        if ours is None or ref is None:
            rows.append((label, "—", why))
            return
        r = ours.median / ref.median if ref.median else math.nan
        met = r <= need if at_most else r >= need
        measured = f"{_fmt_ratio(r)} ({ours.median:,.0f} vs {ref.median:,.0f} {unit})"
        rows.append((label, measured, "met" if met else "not met"))

    for runner in OURS if "instructions-1" in by_name else ():
        median_row(
            f"CPU per message as instructions (callgrind), {front[runner]}, 1 connection: "
            f"at most 1.2x {REFERENCE}'",
            "instructions-1",
            runner,
            "per message",
            1.2,
            at_most=True,
        )
    for runner in OURS if "rtt" in by_name else ():
        label = f"Round trip, {front[runner]}: req/s >= 1.0x {REFERENCE}"
        median_row(label, "rtt", runner, "req/s", 1.0)
    for case, need in (("json", 1.5), ("raw-str", 1.3), ("raw-bytes", 1.3)):
        if case in summaries:
            label = f"Bulk {case}, sync iterator: >= {need}x {REFERENCE}"
            median_row(label, case, "kstlib-sync", "msg/s", need)
    return rows


# --------------------------------------------------------------------------- chart


def ratio_series(
    cases: list[Case], summaries: dict[str, dict[str, Summary]]
) -> tuple[list[str], dict[str, list[float]]]:
    """Measure labels and, per runner but picows, its ratios against picows."""
    by_name = {c.name for c in cases}
    measures = [m for m in MEASURES if m.case in by_name]
    runners = [r for r in present(cases, summaries) if r != REFERENCE]
    if not measures or not runners:
        return [], {}
    series: dict[str, list[float]] = {}
    for r in runners:
        values = []
        for m in measures:
            ref = m.value(_get(summaries, m.case, REFERENCE))
            values.append(ratio(m, m.value(_get(summaries, m.case, r)), ref))
        if any(not math.isnan(v) for v in values):
            series[r] = values
    if not series:
        return [], {}
    return [m.label for m in measures], series


def draw_ratio_panel(ax: Any, labels: list[str], series: dict[str, list[float]]) -> None:
    """Grouped bars: for each measure, every runner's ratio against picows (log scale)."""
    colors = {
        "kstlib-sync": "#d62728",
        "kstlib-asyncio": "#ff7f0e",
        "kstlib-consume": "#e377c2",
        "kstlib-merge": "#8c564b",
        "websockets-asyncio": "#1f77b4",
        "aiohttp": "#17becf",
        "websocket-client": "#2ca02c",
        "websockets-sync": "#9467bd",
        "transport-floor": "#9a9a9a",
    }
    n = len(series)
    width = 0.8 / max(1, n)
    for k, (runner, values) in enumerate(series.items()):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(labels))]
        ys = [v if not math.isnan(v) else 0.0 for v in values]
        ax.bar(xs, ys, width, label=runner, color=colors.get(runner, "#8c564b"))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8, rotation=20, ha="right")
    ax.set_ylabel(f"ratio vs {REFERENCE} (> 1 is better)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(
        f"Trading rates (issue 12): every client against {REFERENCE} "
        "(latency and CPU: picows / client; req/s: client / picows)",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=min(n, 7), loc="upper center", bbox_to_anchor=(0.5, -0.28))
