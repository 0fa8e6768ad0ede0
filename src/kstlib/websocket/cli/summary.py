"""The table ``kstlib-ws demo`` prints at the end (after the duration, or on Ctrl-C).

Three parts: "Demo summary" (how the demo ended, its settings, what the consumer
received, the handovers and the trade-id check), "WebSocketStats" (every field of the
manager's :class:`~kstlib.websocket.WebSocketStats`, one per line) and
``disconnects_by_reason`` (every :class:`~kstlib.websocket.DisconnectReason`, with its
kind and count, zeros included). Lines stay within 80 columns for the default
settings; the console wraps any longer one.
"""

from __future__ import annotations

import dataclasses

from kstlib.websocket.cli.narrator import DemoCounts, kind_of, plural
from kstlib.websocket.cli.scenario import DemoOptions, DemoPolicy
from kstlib.websocket.models import DisconnectReason, WebSocketStats

__all__ = ["summary_lines"]


def _table(title: str, rows: list[tuple[str, str]], value_width: int = 0) -> list[str]:
    """``title``, underlined, then one ``  key  value`` line per row (keys aligned;
    values right-aligned in ``value_width`` columns when given)."""
    width = max(len(k) for k, _ in rows)
    return ["", title, "-" * len(title)] + [f"  {k:<{width}}  {v:>{value_width}}" for k, v in rows]


def _handovers(opts: DemoOptions, stats: WebSocketStats, counts: DemoCounts) -> str:
    """The handover row: how many, and what they cost."""
    if not opts.handover:
        return "off (--no-handover): every rotation leaves a gap"
    text = (
        f"{stats.handovers} make-before-break, "
        f"{plural(stats.duplicates_dropped, 'duplicate')} dropped"
    )
    if counts.handover_gaps:
        text += f", {counts.handover_gaps} reported as a gap"
    return text


def _demo_rows(
    opts: DemoOptions,
    policy: DemoPolicy,
    counts: DemoCounts,
    stats: WebSocketStats,
    ended_by: str,
    ran_for: float,
) -> list[tuple[str, str]]:
    """The "Demo summary" rows."""
    rotation = "make-before-break" if opts.handover else "break-before-make"
    return [
        ("ended by", ended_by),
        ("ran for", f"{ran_for:.1f} s"),
        ("candle length", f"{opts.candle_seconds:g} s (a 4h candle, compressed)"),
        (
            "rules",
            f"disconnect > {policy.disconnect_above:g} s to close, "
            f"reconnect < {policy.reconnect_below:g} s",
        ),
        (
            "max_connection_age",
            f"{opts.max_connection_age:g} s, {rotation} "
            f"(exchange cuts at {opts.server_connection_age:g} s)",
        ),
        ("candle closes received", str(counts.candles)),
        ("kline updates received", str(counts.kline_updates)),
        ("trades received", str(counts.trades)),
        ("handovers", _handovers(opts, stats, counts)),
        (
            "trade ids, gaps aside",
            f"{counts.trades_checked} in sequence, {counts.trades_missing} missing, "
            f"{counts.trades_repeated} repeated",
        ),
    ]


def _stat_text(value: object) -> str:
    """A statistics value as the table shows it: seconds with 2 decimals, a reason with
    its kind, ``-`` for none."""
    if isinstance(value, float):
        return f"{value:.2f} s"
    if isinstance(value, DisconnectReason):
        return f"{value.name} ({kind_of(value)})"
    if value is None:
        return "-"
    return str(value)


def _stats_rows(stats: WebSocketStats) -> list[tuple[str, str]]:
    """One row per :class:`WebSocketStats` field but ``disconnects_by_reason``."""
    return [
        (f.name, _stat_text(getattr(stats, f.name)))
        for f in dataclasses.fields(stats)
        if f.name != "disconnects_by_reason"
    ]


def _reason_lines(stats: WebSocketStats) -> list[str]:
    """``disconnects_by_reason``: every reason, its kind and its count."""
    lines = ["  disconnects_by_reason:"]
    for reason in DisconnectReason:
        n = stats.disconnects_by_reason.get(reason, 0)
        lines.append(f"    {reason.name:<20} {kind_of(reason):<9}  {n:>6}")
    return lines


def summary_lines(
    opts: DemoOptions,
    policy: DemoPolicy,
    counts: DemoCounts,
    stats: WebSocketStats,
    ended_by: str,
    ran_for: float,
) -> list[str]:
    """The whole final table, as lines (the first one empty)."""
    return (
        _table("Demo summary", _demo_rows(opts, policy, counts, stats, ended_by, ran_for))
        + _table("WebSocketStats", _stats_rows(stats), value_width=12)
        + _reason_lines(stats)
    )
