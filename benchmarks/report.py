"""Turn the raw measurements into RESULTS.md, results.json and results.png.

Medians are the headline; the spread is min-max over the repetitions. Ratios:
"vs best peer" divides by the best peer's median (for lower-is-better metrics, the best
peer's median is divided by ours), so a ratio above 1.00 always means "better than the
best peer"; "vs floor" divides by the floor's median (how close to the floor we get).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import relay, trading
from benchmarks.clients import FLOORS, OURS, PEERS
from benchmarks.scenarios import Case


@dataclass
class Summary:
    runner: str
    values: list[float]
    errors: list[str]
    extras: dict[str, float]

    @property
    def ok(self) -> bool:
        return bool(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    @property
    def low(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def high(self) -> float:
        return max(self.values) if self.values else math.nan


def summarize(case: Case, runs: dict[str, dict[str, list[Any]]]) -> dict[str, Summary]:
    """Per runner: the metric over successful runs, errors, and medians of the extras."""
    out: dict[str, Summary] = {}
    for runner in case.runners:
        entry = runs.get(runner, {"runs": [], "errors": []})
        good = [r for r in entry["runs"] if case.metric in r]
        extras = {
            key: statistics.median([r[key] for r in good if key in r])
            for key, _label, _fmt in case.extras
            if any(key in r for r in good)
        }
        out[runner] = Summary(
            runner, [float(r[case.metric]) for r in good], entry["errors"], extras
        )
    return out


def best_peer(case: Case, summaries: dict[str, Summary]) -> Summary | None:
    peers = [s for name, s in summaries.items() if name in PEERS and s.ok]
    if not peers:
        return None
    pick = max if case.higher_is_better else min
    return pick(peers, key=lambda s: s.median)


def ratio_vs(case: Case, ours: Summary, ref: Summary | None) -> float:
    """How much better than ``ref`` (> 1 is better), NaN when not comparable."""
    if ref is None or not ours.ok or not ref.ok:
        return math.nan
    if case.higher_is_better:
        return ours.median / ref.median if ref.median else math.nan
    if case.metric == "rss_growth_mb":
        return math.nan  # a growth near zero makes any ratio meaningless
    return ref.median / ours.median if ours.median > 0 else math.nan


def fmt_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "—"
    if unit in ("msg/s", "req/s"):
        return f"{value:,.0f}"
    if unit == "µs":
        return f"{value:,.1f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def fmt_ratio(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}x"


def kind_of(runner: str) -> str:
    if runner in OURS or runner.startswith("kstlib-"):
        return "ours"
    if runner in FLOORS:
        return "floor"
    return "peer"


# --------------------------------------------------------------------------- targets


def targets(
    cases: list[Case], summaries: dict[str, dict[str, Summary]]
) -> list[tuple[str, str, str]]:
    """The issue's targets, each as ``(target, measured, status)``."""
    rows: list[tuple[str, str, str]] = []

    def get(case: str, runner: str) -> Summary | None:
        s = summaries.get(case, {}).get(runner)
        return s if s is not None and s.ok else None

    def why(case: str, *runners: str) -> str:
        for r in runners:
            s = summaries.get(case, {}).get(r)
            if s is None:
                return f"n/a ({r} not run)"
            if not s.ok:
                return f"n/a ({r}: {s.errors[0] if s.errors else 'no data'})"
        return "n/a"

    def ratio_row(label: str, case: str, a: str, b: str, need: float) -> None:
        sa, sb = get(case, a), get(case, b)
        if sa is None or sb is None:
            if case in summaries:
                rows.append((label, "—", why(case, a, b)))
            return
        r = sa.median / sb.median
        rows.append(
            (
                label,
                f"{r:.2f}x ({sa.median:,.0f} vs {sb.median:,.0f})",
                "met" if r >= need else "not met",
            )
        )

    ratio_row("JSON, sync iterator >= 1.5x picows", "json", "kstlib-sync", "picows", 1.5)
    ratio_row(
        "JSON, sync iterator >= 70% of the orjson floor", "json", "kstlib-sync", "orjson-floor", 0.7
    )
    ratio_row(
        "JSON, sync with drop_oldest >= 1.5x picows", "json", "kstlib-sync-drop", "picows", 1.5
    )
    ratio_row("JSON, asyncio adapter ahead of picows", "json", "kstlib-asyncio", "picows", 1.0)
    for case in ("raw-str", "raw-bytes"):
        if case not in summaries:
            continue
        s = get(case, "kstlib-sync")
        if s is None:
            rows.append(
                (
                    f"{case}: sync iterator >= 3,000,000 msg/s and ahead of every peer",
                    "—",
                    why(case, "kstlib-sync"),
                )
            )
            continue
        peers = [p for p in (get(case, r) for r in PEERS) if p is not None]
        top = max(peers, key=lambda p: p.median) if peers else None
        ahead = top is None or s.median > top.median
        measured = f"{s.median:,.0f} msg/s" + (
            f"; best peer {top.runner} {top.median:,.0f}" if top else ""
        )
        rows.append(
            (
                f"{case}: sync iterator >= 3,000,000 msg/s and ahead of every peer",
                measured,
                "met" if s.median >= 3e6 and ahead else "not met",
            )
        )
    for case in ("large-64k", "large-1m"):
        ratio_row(
            f"{case}: sync iterator >= 50% of the transport floor",
            case,
            "kstlib-sync",
            "transport-floor",
            0.5,
        )
    ratio_row("Round trip, sync API req/s >= picows", "rtt", "kstlib-sync", "picows", 1.0)
    s = get("rtt", "kstlib-sync")
    if s is not None and "p99_us" in s.extras:
        peer = get("rtt", "picows")
        rows.append(
            (
                "Round trip, sync API p99 (reported)",
                f"{s.extras['p99_us']:.1f} µs"
                + (f" (picows {peer.extras.get('p99_us', math.nan):.1f} µs)" if peer else ""),
                "reported",
            )
        )
    for runner in OURS[:2]:
        s = get("many", runner)
        if s is None:
            if "many" in summaries:
                rows.append(
                    (f"Idle connections, {runner}: no measurable CPU", "—", why("many", runner))
                )
            continue
        idle = s.extras.get("idle_cpu_percent", math.nan)
        rows.append(
            (
                f"Idle connections, {runner}: no measurable CPU (<= 0.1% of a core)",
                f"{idle:.3f}% of a core",
                "met" if idle <= 0.1 else "not met",
            )
        )
        rss = s.extras.get("rss_mb", math.nan)
        rows.append(
            (
                f"Many connections, {runner}: well under 100 MB RSS",
                f"{rss:.1f} MB",
                "met" if rss < 100 else "not met",
            )
        )
    for runner in OURS[:2]:
        s = get("memory", runner)
        if s is None:
            if "memory" in summaries:
                rows.append(
                    (
                        f"Memory, {runner}: no growth beyond a small bound (<= 10 MB)",
                        "—",
                        why("memory", runner),
                    )
                )
            continue
        rows.append(
            (
                f"Memory, {runner}: no growth beyond a small bound (<= 10 MB)",
                f"{s.median:+.1f} MB",
                "met" if s.median <= 10 else "not met",
            )
        )
    return rows


# --------------------------------------------------------------------------- outputs


def write_json(
    path: Path,
    meta: dict[str, Any],
    cases: list[Case],
    raw: dict[str, dict[str, dict[str, list[Any]]]],
    relay_result: dict[str, Any] | None = None,
) -> None:
    """results.json: the machine, every case with its raw runs, and under ``relay`` the
    relay scenario's result (:func:`benchmarks.relay.run_scenario`) when it was run."""
    doc: dict[str, Any] = {
        "meta": meta,
        "cases": [
            {
                "name": c.name,
                "scenario": c.scenario,
                "title": c.title,
                "metric": c.metric,
                "unit": c.unit,
                "higher_is_better": c.higher_is_better,
                "parameters": c.spec,
                "runners": raw.get(c.name, {}),
            }
            for c in cases
        ],
    }
    if relay_result is not None:
        doc["relay"] = relay_result
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def relay_section(result: dict[str, Any] | None) -> list[str]:
    """The relay scenario's section of RESULTS.md (none when it was not asked for)."""
    if result is None:
        return []
    lines = ["## Relay: exchange -> relay -> Redis Streams -> reader (issue 10)", ""]
    if "skipped" in result or "error" in result:
        why = result.get("skipped") or result.get("error")
        word = "Skipped" if "skipped" in result else "Failed"
        return [*lines, f"{word}: {why}.", ""]
    note = (
        "Trade events of about 170 bytes blasted by the loopback server; a relay process "
        "(`Relay`, payloads as received, one `EVALSHA` per chunk) publishes them to a "
        "`redis-server` of its own (default settings, no persistence, on this machine), "
        "and a reader process (`RedisReader`: consumer group, `XACK`, payloads parsed to "
        "dicts; kstlib-relay-bytes: left as bytes) reads them. msg/s runs from the relay's "
        "first socket read to the reader's last item; p50/p99 are the reader's clock minus "
        "the relay's receive time (under a blast: queueing). obvious-xadd is the "
        "per-message `XADD` loop with redis-py, read by the same JSON reader. Where the "
        "time goes: `benchmarks/relay.py`. Medians over the repetitions, runners "
        "interleaved; load "
        f"average (1 min) {result['load_start']:.2f} at the start, "
        f"{result['load_end']:.2f} at the end."
    )
    return [*lines, note, "", *relay.table(result), ""]


def write_markdown(
    path: Path,
    meta: dict[str, Any],
    cases: list[Case],
    summaries: dict[str, dict[str, Summary]],
    relay_result: dict[str, Any] | None = None,
) -> None:
    """RESULTS.md: the machine, the targets, every case's table, the relay scenario."""
    lines: list[str] = ["# Benchmark results", ""]
    lines += [
        "Reproduce from the repository root (after `pip install -e '.[bench]'`, or with "
        "`PYTHONPATH=src`):",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"Run {meta['started']} to {meta['finished']} ({meta['duration_s'] / 60:.1f} min), "
        f"commit `{meta['git']}`.",
        "",
        "## Machine",
        "",
        f"- CPU: {meta['cpu_model']}, {meta['cores']} cores",
        f"- Load average (1 min) at start / end: {meta['load_start']:.2f} / "
        f"{meta['load_end']:.2f}"
        + (
            " — other work was running; absolute numbers are noisy, ratios within one run less so"
            if max(meta["load_start"], meta["load_end"]) > 0.5
            else ""
        ),
        *(
            [
                f"- Load average (1 min) at the end of each measurement: median "
                f"{meta['load_during'][0]:.2f}, max {meta['load_during'][1]:.2f}"
            ]
            if "load_during" in meta
            else []
        ),
        f"- {meta['platform']}",
        f"- Python {meta['python']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()),
        f"- kstlib.websocket codec: {meta['kstlib_codec']}",
        "",
    ]
    busy = meta.get("load_during", (meta["load_start"], 0.0))[0]
    if busy > (meta.get("cores") or 1):
        lines += [
            f"> **Warning:** the median load average during the measurements was {busy:.1f} "
            f"on {meta['cores']} cores: other processes competed for the CPU and the spreads "
            "are wide. Re-run on a quiet machine before reading small differences.",
            "",
        ]
    rows = targets(cases, summaries)
    if rows:
        lines += [
            "## Targets from issue 4",
            "",
            "| Target | Measured (medians) | Status |",
            "|---|---|---|",
        ]
        lines += [f"| {t} | {m} | {s} |" for t, m, s in rows]
        lines.append("")
    lines += trading.section(cases, summaries)
    lines += relay_section(relay_result)
    lines += (
        [
            "## Results",
            "",
            "Medians over the repetitions; spread is min\u2013max. Ratios above 1.00x are better "
            "than the reference (for CPU, the reference's cost divided by ours).",
            "",
        ]
        if cases
        else []
    )
    for case in cases:
        summ = summaries[case.name]
        best = best_peer(case, summ)
        versus = "vs best peer"
        if case.reference:
            ref = summ.get(case.reference)
            best = ref if ref is not None and ref.ok else None
            versus = f"vs {case.reference}"
        floors = [f for f in case.floors if f in summ and summ[f].ok]
        header = ["Client", "", f"Median {case.unit}", "Spread (min\u2013max)"]
        header += [label for _key, label, _fmt in case.extras]
        header += [versus] if case.compare else []
        header += [f"vs {f}" for f in floors] + ["Runs"]
        lines += [f"### {case.title}", "", case.note, ""]
        if best is not None and case.compare and not case.reference:
            lines += [f"Best peer: **{best.runner}**.", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        order = sorted(
            case.runners,
            key=lambda r: ({"ours": 0, "peer": 1, "floor": 2}[kind_of(r)], case.runners.index(r)),
        )
        for runner in order:
            s = summ[runner]
            if not s.ok:
                err = s.errors[0] if s.errors else "not run"
                cells = [
                    f"**{runner}**" if kind_of(runner) == "ours" else runner,
                    kind_of(runner),
                    f"error: {err}".replace("|", "/"),
                ]
                cells += [""] * (len(header) - len(cells))
                lines.append("| " + " | ".join(cells) + " |")
                continue
            cells = [
                f"**{runner}**" if kind_of(runner) == "ours" else runner,
                kind_of(runner),
                fmt_value(s.median, case.unit),
                f"{fmt_value(s.low, case.unit)} \u2013 {fmt_value(s.high, case.unit)}",
            ]
            for key, _label, fmt in case.extras:
                v = s.extras.get(key)
                cells.append(fmt.format(v) if v is not None else "—")
            if case.compare:
                cells.append(
                    fmt_ratio(ratio_vs(case, s, best)) if kind_of(runner) != "floor" else ""
                )
            for f in floors:
                cells.append("" if runner == f else fmt_ratio(ratio_vs(case, s, summ[f])))
            cells.append(str(len(s.values)) + (f" ({len(s.errors)} failed)" if s.errors else ""))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Method",
        "",
        "- Server: a separate process on 127.0.0.1 doing the handshake by hand on plain TCP "
        "sockets; every stream is written with `sendall` from frames encoded once at start-up "
        "(unmasked, no compression offered), so the server spends almost no CPU per message. "
        "The round-trip echo is a plain Python loop; its cost is in every row equally.",
        "- Every measurement runs in a fresh worker process (`python -m benchmarks.worker`); "
        "the order of the clients rotates from one repetition to the next. Timing starts "
        "after the connection is open and the start frame sent, and stops at the last "
        "message.",
        "- Peers run with compression and keepalive pings off, no message size limit, "
        "otherwise default settings; asyncio clients use the default event loop (no uvloop). "
        "picows uses aiofastnet when installed (its default).",
        "- Floors: `orjson.loads` alone over the very same payload bytes (no I/O), and a "
        "plain `recv_into` loop over the very same byte stream from the same server.",
        "- The machine has 2 cores shared by the server and the client; threads of the "
        "client (ours: an engine thread and the consumer) and the server compete for them.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_chart(path: Path, cases: list[Case], summaries: dict[str, dict[str, Summary]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in cases if any(s.ok for s in summaries[c.name].values())]
    if not shown:
        return
    cols = 3 if len(shown) > 4 else len(shown)
    rows = math.ceil(len(shown) / cols)
    ratio_labels, ratio_series = trading.ratio_series(cases, summaries)
    extra = 1 if ratio_series else 0
    fig, grid = plt.subplots(
        rows + extra,
        cols,
        figsize=(6.2 * max(cols, 2 * extra), 3.6 * rows + 4.6 * extra),
        squeeze=False,
        gridspec_kw={"height_ratios": [1.0] * rows + [1.3] * extra},
    )
    axes = grid[:rows]
    if extra:
        spec = grid[-1, 0].get_gridspec()
        for ax in grid[-1]:
            ax.remove()
        trading.draw_ratio_panel(fig.add_subplot(spec[-1, :]), ratio_labels, ratio_series)
    colors = {"ours": "#d62728", "peer": "#1f77b4", "floor": "#9a9a9a"}
    for ax, case in zip(axes.flat, shown, strict=False):
        summ = summaries[case.name]
        names = [r for r in case.runners if summ[r].ok]
        meds = [summ[r].median for r in names]
        lo = [max(0.0, summ[r].median - summ[r].low) for r in names]
        hi = [max(0.0, summ[r].high - summ[r].median) for r in names]
        ypos = list(range(len(names)))[::-1]
        ax.barh(ypos, meds, xerr=[lo, hi], color=[colors[kind_of(r)] for r in names], capsize=2)
        ax.set_yticks(ypos)
        ax.set_yticklabels(names, fontsize=8)
        positive = [m for m in meds if m > 0]
        if case.higher_is_better and positive and max(positive) / min(positive) > 20:
            ax.set_xscale("log")
        ax.set_title(case.title, fontsize=9)
        better = "higher is better" if case.higher_is_better else "lower is better"
        ax.set_xlabel(f"{case.unit} ({better})", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        for y, m in zip(ypos, meds, strict=True):
            ax.text(m, y, " " + fmt_value(m, case.unit), va="center", fontsize=7)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
