"""What is measured: the scenarios of issue 4, their sizes (full and ``--quick``) and runners.

Each :class:`Case` is one table in RESULTS.md. A scenario (``json``, ``raw``, ``large``,
``rtt``, ``many``, ``memory``) groups one or more cases; ``--scenarios`` accepts either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.clients import FLOORS, OURS, PEERS
from benchmarks.payloads import STREAM_KINDS

SCENARIOS = ("json", "raw", "large", "rtt", "many", "memory", "latency", "burst", "instructions")

OURS_MAIN = ("kstlib-sync", "kstlib-asyncio")


@dataclass(frozen=True)
class Case:
    """One measured table: which runners, what the worker is asked, which number ranks."""

    scenario: str
    name: str
    title: str
    kind: str  # worker kind: stream | memory | rtt | many
    runners: tuple[str, ...]
    metric: str
    unit: str
    higher_is_better: bool
    spec: dict[str, Any]  # worker spec without runner/url
    path: str  # server path
    repeat: int  # repetitions (capped by --repeat)
    timeout: float  # seconds per measurement
    floors: tuple[str, ...] = ()
    extras: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)  # key, label, fmt
    note: str = ""
    compare: bool = True  # show the "vs best peer" column
    reference: str = ""  # compare with this runner instead of the best peer ("vs picows")


def build_cases(quick: bool, repeat: int) -> list[Case]:
    """The cases of a full run, or of a ``--quick`` run (small sizes, one repetition)."""

    def size(full: int, small: int) -> int:
        return small if quick else full

    def reps(cap: int) -> int:
        return 1 if quick else max(1, min(repeat, cap))

    throughput_runners = (*OURS_MAIN, *PEERS)
    cases: list[Case] = []
    n = size(300_000, 20_000)
    cases.append(
        Case(
            "json",
            "json",
            "1. Throughput, JSON: 166-byte trade events parsed to dicts",
            "stream",
            (*OURS, *PEERS, *FLOORS),
            "msg_per_s",
            "msg/s",
            True,
            {"n": n, "deliver": "json", "message_size": STREAM_KINDS["trade"].message_size},
            f"/stream/trade/{n}",
            reps(repeat),
            180,
            FLOORS,
            extras=(("delivered", "delivered", "{:,.0f}"),),
            note=f"{n:,} trade events (text frames, distinct ids and times), each parsed with "
            'orjson (ours: `decode="json"`). kstlib-sync-drop is the sync iterator with '
            '`queue_overflow="drop_oldest"`: its rate is all messages ingested over the '
            "time to the last one, and *delivered* says how many reached the loop (the others "
            "were dropped as the oldest while the consumer lagged). kstlib-sync-stamped is "
            "the sync iterator with `timestamps=True` (each message wrapped with its receive "
            "time).",
        )
    )
    for deliver, label in (("str", "delivered as str"), ("bytes", "delivered as bytes")):
        cases.append(
            Case(
                "raw",
                f"raw-{deliver}",
                f"2. Throughput, raw: trade events {label}",
                "stream",
                (*throughput_runners, "transport-floor"),
                "msg_per_s",
                "msg/s",
                True,
                {"n": n, "deliver": deliver, "message_size": STREAM_KINDS["trade"].message_size},
                f"/stream/trade/{n}",
                reps(repeat),
                180,
                ("transport-floor",),
                note=(
                    "The same text frames without JSON parsing, each message a `str` "
                    "(UTF-8 decoded; ours: `decode=None`)."
                    if deliver == "str"
                    else "The same text frames delivered as `bytes` where the API allows it "
                    '(ours: `decode="bytes"`; websocket-client `recv_data`, websockets '
                    "`recv(decode=False)`, aiohttp `decode_text=False`, picows "
                    "`get_payload_as_bytes`)."
                ),
            )
        )
    for kind, count, label in (
        ("bin1k", size(100_000, 5_000), "1 KiB"),
        ("bin64k", size(4_096, 128), "64 KiB"),
        ("bin1m", size(256, 16), "1 MiB"),
    ):
        cases.append(
            Case(
                "large",
                f"large-{kind[3:]}",
                f"3. Large messages: {label} binary",
                "stream",
                (*throughput_runners, "transport-floor"),
                "mb_per_s",
                "MB/s",
                True,
                {"n": count, "deliver": "bytes", "message_size": STREAM_KINDS[kind].message_size},
                f"/stream/{kind}/{count}",
                reps(repeat),
                180,
                ("transport-floor",),
                note=f"{count:,} binary messages of {label}, each delivered as `bytes`; "
                "MB/s of payload (10^6 bytes).",
            )
        )
    rtt_n = size(20_000, 2_000)
    cases.append(
        Case(
            "rtt",
            "rtt",
            "4. Round trip: 256-byte binary echo",
            "rtt",
            (*throughput_runners, "kstlib-consume", "transport-floor"),
            "req_per_s",
            "req/s",
            True,
            {"n": rtt_n, "warmup": size(1_000, 200), "size": 256},
            "/echo",
            reps(3),
            180,
            ("transport-floor",),
            extras=(("p50_us", "p50 µs", "{:.1f}"), ("p99_us", "p99 µs", "{:.1f}")),
            note=f"{rtt_n:,} sequential round trips after a warm-up; the echo server is a "
            "plain Python loop whose cost is in every row, the floor's included.",
        )
    )
    conns = size(100, 20)
    per_conn = size(400, 50)
    idle = float(size(3, 1))
    cases.append(
        Case(
            "many",
            "many",
            f"5. Many connections: {conns} connections, {conns * 100:,} msg/s combined",
            "many",
            throughput_runners,
            "cpu_s_per_million",
            "CPU s / 1M msgs",
            False,
            {"conns": conns, "per_conn": per_conn, "idle": idle},
            f"/paced/trade/{per_conn}",
            reps(3),
            300,
            extras=(
                ("idle_cpu_percent", "idle CPU %", "{:.2f}"),
                ("rss_mb", "RSS MB", "{:.1f}"),
            ),
            note=f"{conns} connections, each receiving one trade event every 10 ms "
            f"({per_conn} each, parsed with orjson), consumed by one thread per connection "
            "(sync clients) or one task per connection (asyncio clients). Process CPU "
            "(`time.process_time`) per million messages while streaming; then the "
            f"connections stay open with nothing to receive for {idle:g} s: idle CPU in % "
            "of one core. RSS (`VmRSS`) with all connections open.",
        )
    )
    mem_n = size(10_000_000, 300_000)
    step = size(1_000_000, 50_000)
    cases.append(
        Case(
            "memory",
            "memory",
            f"6. Memory: RSS growth over {mem_n:,} JSON messages",
            "memory",
            throughput_runners,
            "rss_growth_mb",
            "MB",
            False,
            {
                "n": mem_n,
                "step": step,
                "deliver": "json",
                "message_size": STREAM_KINDS["trade"].message_size,
            },
            f"/stream/trade/{mem_n}",
            1,
            1800,
            extras=(
                ("rss_start_mb", "RSS after warm-up MB", "{:.1f}"),
                ("msg_per_s", "msg/s", "{:,.0f}"),
            ),
            compare=False,
            note=f"One stream of {mem_n:,} trade events parsed to dicts; `VmRSS` sampled every "
            f"{step:,} messages. Growth = last sample minus the first (after {step:,} "
            "messages, once buffers and caches are warm).",
        )
    )
    cases += trading_cases(size, reps(3))
    return cases


#: The latency scenarios' runners: ours, every peer, and the floor (a blocking socket).
TIMED_RUNNERS = (*OURS_MAIN, "kstlib-consume", *PEERS, "transport-floor")
#: Those that read many connections from one thread (an event loop, ``merge()``, epoll).
ONE_LOOP_RUNNERS = (
    "kstlib-merge",
    "kstlib-asyncio",
    "kstlib-consume",
    "picows",
    "websockets-asyncio",
    "aiohttp",
    "transport-floor",
)

#: A quiet feed (an order channel): ours, the asyncio peers, picows and the floor.
QUIET_RUNNERS = (
    *OURS_MAIN,
    "kstlib-consume",
    "picows",
    "websockets-asyncio",
    "websocket-client",
    "transport-floor",
)

_LATENCY_EXTRAS = (
    ("p99_us", "p99 µs", "{:.1f}"),
    ("p999_us", "p99.9 µs", "{:.1f}"),
    ("max_us", "max µs", "{:,.0f}"),
    ("cpu_ms_per_1k", "CPU ms / 1k msgs", "{:.1f}"),
)
_CSW = (("vcsw_per_msg", "ctx switches / msg", "{:.2f}"),)

_TIMED_NOTE = (
    "The server (its own process) writes each trade event (~170 bytes) with its "
    '`time.monotonic_ns()` in `"E"`, taken just before the write; the client subtracts it '
    "from its own `time.monotonic_ns()` once its consumer holds the decoded dict "
    '(orjson; ours: `decode="json"`). Warm-up messages excluded. CPU: process CPU '
    "time (user + sys, every thread: ours is the engine thread and the consumer together) "
    "over the measured messages, per 1,000 messages. Context switches: voluntary, of the "
    "whole client process, per message. transport-floor: a blocking socket (`epoll` over "
    "the sockets for several connections) that frames by hand and parses with orjson, "
    "no WebSocket library."
)


def trading_cases(size: Callable[[int, int], int], repeat: int) -> list[Case]:
    """Issue 12: one-way latency, CPU per message and bursts at trading rates.

    ``size(full, quick)`` picks the full or the ``--quick`` size.
    """
    cases: list[Case] = []
    for name, conns, rate, warm, measured, title, how, runners in (
        (
            "latency-1",
            1,
            1000,
            size(1_000, 100),
            size(10_000, 400),
            "7. Latency: 1 connection, 1,000 msg/s",
            "one message every millisecond on one connection",
            TIMED_RUNNERS,
        ),
        (
            "latency-50",
            50,
            20,
            size(20, 3),
            size(200, 7),
            "8. Latency: 50 connections x 20 msg/s",
            "50 connections, 20 messages/s each, staggered: one message every millisecond "
            "on the next connection in turn (no bursts), consumed by one thread per "
            "connection (sync clients) or one task per connection (asyncio clients)",
            (*TIMED_RUNNERS, "kstlib-merge"),
        ),
        (
            "latency-500",
            500,
            2,
            size(4, 2),
            size(20, 3),
            "8b. Latency: 500 connections x 2 msg/s",
            "500 connections, 2 messages/s each, staggered as above (one message every "
            "millisecond on the next connection in turn); only the clients that read every "
            "connection from one thread (the thread-per-connection clients would need 500 "
            "threads each): merge() for the sync front, one task per connection for the "
            "asyncio ones",
            ONE_LOOP_RUNNERS,
        ),
        (
            "latency-quiet",
            1,
            0.4,
            size(1, 1),
            size(8, 2),
            "8c. Latency: 1 connection, one message every 2.5 s",
            "one message every 2.5 s on one connection (a quiet feed, as an order channel "
            "between fills: the machine idles between messages)",
            QUIET_RUNNERS,
        ),
    ):
        count = warm + measured
        extras: tuple[tuple[str, str, str], ...] = _LATENCY_EXTRAS
        if conns == 1:
            extras += (("consumer_cpu_ms_per_1k", "of which consumer thread", "{:.1f}"),)
        cases.append(
            Case(
                "latency",
                name,
                title,
                "timed",
                runners,
                "p50_us",
                "µs",
                False,
                {
                    "conns": conns,
                    "rate": rate,
                    "count": count,
                    "warm": warm,
                    "burst": 1,
                    "seconds": count / rate,
                },
                f"/timed?conns={conns}&rate={rate}&count={count}&burst=1",
                repeat,
                count / rate + 120,
                ("transport-floor",),
                extras=extras + _CSW,
                reference="picows",
                note=f"One-way latency (median p50 µs, lower is better), {how}: "
                f"{measured:,} measured messages per connection after {warm:,} of warm-up. "
                + _TIMED_NOTE,
            )
        )
    burst, every = 200, 0.1
    warm, measured = size(5, 1), size(100, 4)
    count = (warm + measured) * burst
    cases.append(
        Case(
            "burst",
            "burst",
            f"9. Bursts: {burst} messages every {every * 1000:g} ms, last of burst",
            "timed",
            TIMED_RUNNERS,
            "last_p50_us",
            "µs",
            False,
            {
                "conns": 1,
                "rate": burst / every,
                "count": count,
                "warm": warm * burst,
                "burst": burst,
                "seconds": count * every / burst,
            },
            f"/timed?conns=1&rate={burst / every:g}&count={count}&burst={burst}",
            repeat,
            count * every / burst + 120,
            ("transport-floor",),
            extras=(
                ("last_p99_us", "last p99 µs", "{:.1f}"),
                ("first_p50_us", "first p50 µs", "{:.1f}"),
                ("cpu_ms_per_1k", "CPU ms / 1k msgs", "{:.1f}"),
                *_CSW,
            ),
            reference="picows",
            note=f"{measured} bursts after {warm} of warm-up, one connection: every "
            f"{every * 1000:g} ms the server writes {burst} trade events in one `sendall`. "
            "Latency of the last message of each burst (the burst's write to the consumer "
            "holding that message: median p50 and p99 µs), and of the first. " + _TIMED_NOTE,
        )
    )
    cases.append(instructions_case(size, min(repeat, 2)))  # 2: the count hardly moves
    return cases


def instructions_case(size: Callable[[int, int], int], repeat: int) -> Case:
    """CPU per message as a count that the machine's load does not move
    (:mod:`benchmarks.instructions`)."""
    rate, warm = 200, 50
    short, long = size(300, 100), size(1_300, 300)
    return Case(
        "instructions",
        "instructions-1",
        f"9b. CPU per message as instructions: 1 connection, {rate} msg/s",
        "instructions",
        TIMED_RUNNERS,
        "instr_per_msg",
        "instr",
        False,
        {"rate": rate, "warm": warm, "counts": [short, long], "child_timeout": 600},
        "/timed",
        repeat,
        1300,
        ("transport-floor",),
        reference="picows",
        note=f"User-space instructions per message (lower is better), counted by "
        f"`valgrind --tool=callgrind`: the paced feed of the latency cases ({rate} msg/s, "
        f"one connection, JSON trade events decoded with orjson) measured in two worker "
        f"processes, {short:,} and {long:,} messages long; the difference of their totals "
        f"over the difference of their lengths (start-up and handshake cancel out). Unlike "
        "CPU time, the count does not move with the machine's load: repeated runs of the "
        "same code agreed within about 2% in ours. Kernel time is not counted "
        "(every client here makes one `poll`/`epoll_wait` and one `recv` per message).",
    )


def select(cases: list[Case], wanted: str | None, runners: str | None) -> list[Case]:
    """Filter by ``--scenarios`` (scenario or case names) and ``--runners``."""
    out = cases
    if wanted:
        names = {w.strip() for w in wanted.split(",") if w.strip()}
        unknown = names - {c.scenario for c in cases} - {c.name for c in cases}
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        out = [c for c in out if c.scenario in names or c.name in names]
    if runners:
        keep = {r.strip() for r in runners.split(",") if r.strip()}
        out = [
            Case(**{**c.__dict__, "runners": tuple(r for r in c.runners if r in keep)}) for c in out
        ]
        out = [c for c in out if c.runners]
    return out
